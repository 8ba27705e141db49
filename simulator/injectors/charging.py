"""Faults of the charge itself: a stall and an early taper, written into the physics.

Both are planned as derating windows on the session (power times a factor), so the charge, the
register and the car's state of charge all follow them as they would on a real charger. Both
need a session long enough to show them and the user still there when it does; the offered
power stays unchanged around them, so no charging limit can explain them.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np

from chargewatch.kinds import AnomalyKind

from ..fleet import StationSpec
from ..inject import Readings, Window
from ..physics import DerateWindow, time_to_target_s
from ..planning import MINUTE_MS, SessionPlan, capability_for
from ..vehicles import VEHICLES
from .base import MIN_S, BoolArray, FleetSessions, Injector, SessionCharge


class _Derate(Injector):
    """A kind planned as derating windows; it shows from the first window to the last."""

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        return np.asarray(fleet.est_charge_s >= 30 * MIN_S)

    def prepare(
        self,
        station: StationSpec,
        session: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        if not self._add_derates(station, session, end_ms, rng):
            return False
        session.limits = []  # the offered power must stay unchanged around it
        return True

    @abstractmethod
    def _add_derates(
        self,
        station: StationSpec,
        s: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        """Write the kind's derating windows into the plan; ``False`` if they do not fit."""

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        derates, trace = charge.plan.derates, charge.trace
        begin_s = min(d.start_s for d in derates)
        end_s = min(
            max(d.end_s for d in derates),
            trace.stop_s,
            trace.full_s if trace.full_s is not None else math.inf,
        )
        r.guard(int(np.searchsorted(r.t_s, begin_s)), int(np.searchsorted(r.t_s, end_s)))
        return charge.at_ms(begin_s), charge.at_ms(end_s)


class Stall(_Derate):
    """Power drops to zero for 12-40 min while the car is far from full, then resumes."""

    kind = AnomalyKind.STALL

    def _add_derates(
        self,
        station: StationSpec,
        s: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        if s.target_pct - 12.0 < s.soc0_pct + 2.0:
            return False
        soc_pct = float(rng.uniform(s.soc0_pct + 2.0, s.target_pct - 12.0))
        begin_s = s.charge_start_s + max(180.0, _seconds_to(station, s, soc_pct))
        duration_s = float(rng.uniform(12.0, 40.0)) * 60.0
        # DC drivers wait for the car; AC drivers keep their plan but must see charging resume
        needed_s = begin_s + duration_s + (12.0 * 60 if s.linger_s is None else s.est_charge_s)
        return _extend_to(s, needed_s, end_ms) and _add_derate(s, begin_s, duration_s, (0.0,))


class EarlyTaper(_Derate):
    """Power declines over a few minutes to 30-60 % of what it should be, and stays there.

    It starts while the car should still take high power (DC below 55 % SoC, AC well before
    its own taper), so the car's normal taper cannot explain it.
    """

    kind = AnomalyKind.EARLY_TAPER

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        stations = [p.station for p in fleet.plans]
        # room below the SoC where a derating could still be told from the car's own taper
        room_pct = np.array(
            [_highest_soc_pct(stations[s.station], s) - s.soc0_pct for s in fleet.sessions]
        )
        return np.asarray(super().can_carry(fleet) & (room_pct >= 5.0))

    def _add_derates(
        self,
        station: StationSpec,
        s: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        highest = _highest_soc_pct(station, s)
        if highest < s.soc0_pct + 2.0:
            return False
        soc_pct = float(rng.uniform(s.soc0_pct + 2.0, highest))
        begin_s = s.charge_start_s + max(300.0, _seconds_to(station, s, soc_pct))
        duration_s = float(rng.uniform(20.0, 60.0)) * 60.0
        factor = float(rng.uniform(0.3, 0.6))
        steps = tuple(1.0 - (1.0 - factor) * k / 3.0 for k in (1, 2, 3))
        return _extend_to(s, begin_s + 20.0 * 60, end_ms) and _add_derate(
            s, begin_s, duration_s, steps, float(rng.uniform(90.0, 240.0))
        )


def _highest_soc_pct(station: StationSpec, s: SessionPlan) -> float:
    """The highest SoC at which a derating still stands out from the car's own taper."""
    return min(55.0, s.target_pct - 20.0) if station.is_dc else s.target_pct - 20.0


def _seconds_to(station: StationSpec, s: SessionPlan, soc_pct: float) -> float:
    """Charging time from the session's initial SoC to ``soc_pct`` with nothing in the way."""
    return time_to_target_s(
        capability_for(station, s),
        s.soc0_pct,
        soc_pct,
        VEHICLES[s.vehicle].battery_kwh * 1000.0,
        s.efficiency,
    )


def _extend_to(s: SessionPlan, needed_s: float, end_ms: int) -> bool:
    """Keep the user until ``needed_s`` after the session start if the connector allows."""
    needed_ms = s.start_ms + round(needed_s * 1000)
    if needed_ms + MINUTE_MS > end_ms:
        return False
    if needed_ms > s.departure_ms:
        if needed_ms + 5 * MINUTE_MS > s.next_busy_ms:
            return False
        s.departure_ms = needed_ms
    return True


def _add_derate(
    s: SessionPlan,
    begin_s: float,
    duration_s: float,
    factors: tuple[float, ...],
    ramp_s: float = 0.0,
) -> bool:
    """Stepped factors over ``ramp_s``, the last one held until ``begin + duration``."""
    step_s = ramp_s / len(factors)
    for k, factor in enumerate(factors):
        last = k == len(factors) - 1
        end_s = begin_s + duration_s if last else begin_s + (k + 1) * step_s
        s.derates.append(DerateWindow(begin_s + k * step_s, end_s, factor))
    return True
