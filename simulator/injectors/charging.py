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
from ..vehicles import SOC_GRID_PCT, VEHICLES
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
    """Power drops to zero for 12-40 min while the car is far from full; then either charging
    resumes or the driver gives up and stops the session (CONTRACTS.md section 3: both are
    stalls). The charger keeps saying Charging, or says SuspendedEVSE, its offer unchanged."""

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
        gives_up = bool(rng.random() < 0.5)
        says_suspended = bool(rng.random() < 0.5)
        reason = str(rng.choice(["Local", "Remote", "EVDisconnected"], p=[0.5, 0.2, 0.3]))
        if gives_up:
            # nothing flows again: the derate outlasts the session, which the driver stops
            if not _leave_at(s, begin_s + duration_s, end_ms):
                return False
            s.stop_reason = reason
            _add_derate(s, begin_s, duration_s + 3600.0, (0.0,))
        else:
            # DC drivers wait for the car; AC drivers keep their plan but must see it resume
            needed_s = begin_s + duration_s + (12.0 * 60 if s.linger_s is None else s.est_charge_s)
            if not _extend_to(s, needed_s, end_ms):
                return False
            _add_derate(s, begin_s, duration_s, (0.0,))
        if says_suspended:
            s.suspended_evse.append((begin_s, begin_s + duration_s))
        return True


class EarlyTaper(_Derate):
    """Power declines over a few minutes to 30-60 % of what it should be, and stays there.

    Three kinds, as real derates come: one well before the car's own taper (DC below 55 %
    SoC, AC well before its taper); one late, within the last 8 % of SoC before the car's
    plateau ends; and one cut short, the driver leaving while it lasts. Each starts where the
    car's own curve cannot explain it (see ``_late_range``). A fourth, on DC: a cold pack
    (CONTRACTS.md section 3 names it), which takes 25-50 % of the car's curve from the start
    and gives the rest back as it warms over 6-35 min (``_cold_start``).
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
        variant = str(
            rng.choice(["early", "late", "cut_short", "cold_start"], p=[0.3, 0.25, 0.25, 0.2])
        )
        if variant == "cold_start":
            if station.is_dc:
                return _cold_start(station, s, end_ms, rng)
            variant = "early"  # an AC car's onboard charger, not its pack, sets its power
        lo, hi = s.soc0_pct + 2.0, _highest_soc_pct(station, s)
        if variant == "late":
            late_lo, late_hi = _late_range(station, s)
            lo, hi = max(lo, late_lo), late_hi
        if hi < lo:
            return False
        soc_pct = float(rng.uniform(lo, hi))
        begin_s = s.charge_start_s + max(300.0, _seconds_to(station, s, soc_pct))
        duration_s = float(rng.uniform(20.0, 60.0)) * 60.0
        factor = float(rng.uniform(0.3, 0.6))
        ramp_s = float(rng.uniform(90.0, 240.0))
        # the driver leaves while it lasts: DC 6-15 min after it settled; AC 35-60 min (without
        # SoC, a shorter derate before the stop cannot be told from an AC car's last steps)
        after_min = float(rng.uniform(6.0, 15.0) if station.is_dc else rng.uniform(35.0, 60.0))
        reason = str(rng.choice(["Local", "Remote", "EVDisconnected"], p=[0.5, 0.2, 0.3]))
        steps = tuple(1.0 - (1.0 - factor) * k / 3.0 for k in (1, 2, 3))
        if variant == "cut_short":
            leave_s = begin_s + ramp_s + after_min * 60.0
            if not _leave_at(s, leave_s, end_ms):
                return False
            s.stop_reason = reason
            return _add_derate(s, begin_s, leave_s - begin_s + 3600.0, steps, ramp_s)
        # the driver stays until it is over and charging has gone on for 10 min (a stop
        # before then is the cut-short kind)
        return _extend_to(s, begin_s + duration_s + 10.0 * 60, end_ms) and _add_derate(
            s, begin_s, duration_s, steps, ramp_s
        )


def _cold_start(
    station: StationSpec, s: SessionPlan, end_ms: int, rng: np.random.Generator
) -> bool:
    """A cold, unconditioned pack: from the start of charging the car takes ``f0`` (25-50 %)
    of its curve, and its acceptance climbs back in a straight line, a step a minute, as the
    pack warms over 6-35 min (a pack's thermal time constant is tens of minutes; real cold
    starts at 0-8 C take 15-40 % of the curve). The driver stays until it has warmed and
    charging has gone on for 10 min: what it draws then shows what it could. All of it
    within the car's plateau (``_highest_soc_pct``), where the curve itself does not fall
    far: the warm-up is cut to end 10 min before full power would have got there."""
    f0 = float(rng.uniform(0.25, 0.5))
    plateau_s = _seconds_to(station, s, _highest_soc_pct(station, s))
    warm_s = min(float(rng.uniform(6.0, 35.0)) * 60.0, plateau_s - 10.0 * 60)
    if warm_s < 6.0 * 60:
        return False
    steps = max(round(warm_s / 60.0), 4)
    factors = tuple(f0 + (1.0 - f0) * k / steps for k in range(steps))
    begin_s = s.charge_start_s
    return _extend_to(s, begin_s + warm_s + 10.0 * 60, end_ms) and _add_derate(
        s, begin_s, warm_s, factors, warm_s
    )


def _late_range(station: StationSpec, s: SessionPlan) -> tuple[float, float]:
    """The SoC range of a late derate: the last 8 % before the car's plateau ends.

    DC: the plateau ends where the car's acceptance (capped by the charger) first falls under
    90 % of its highest; a derate there must begin by 60 % SoC, where its fall still completes
    before published curves fall that far on their own (about 68 %). AC: the plateau ends where
    the car's own taper begins; a derate must leave a quarter hour of charging at full power
    to come, as without SoC nothing else tells it from the car's own last steps.
    """
    capability = capability_for(station, s)
    if station.is_dc:
        from_here = s.soc0_pct <= SOC_GRID_PCT
        top = float(capability[from_here].max())
        below = from_here & (capability < 0.9 * top)
        end_pct = float(SOC_GRID_PCT[np.argmax(below)]) if below.any() else s.target_pct
        hi = min(end_pct, 60.0, s.target_pct - 20.0)
    else:
        peak_w = float(capability.max())
        quarter_hour_pct = 0.25 * peak_w / (VEHICLES[s.vehicle].battery_kwh * 10.0)
        taper_from = s.target_pct - (0.0 if s.taper_floor >= 1.0 else s.taper_width_pct)
        hi = taper_from - max(3.0, quarter_hour_pct)
    return hi - 8.0, hi


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


def _leave_at(s: SessionPlan, leave_s: float, end_ms: int) -> bool:
    """The driver stops the session ``leave_s`` after its start, earlier or later than planned,
    if the run and the connector allow."""
    leave_ms = s.start_ms + round(leave_s * 1000)
    if leave_ms + MINUTE_MS > end_ms or leave_ms + 5 * MINUTE_MS > s.next_busy_ms:
        return False
    s.departure_ms = leave_ms
    return True


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
