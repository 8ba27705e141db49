"""Fleet-wide decisions: which sessions carry which anomaly, and whose card each session uses.

Anomalies that change the physics (a stall, a derating) are written into the session plan here;
anomalies of the meter, the clock or the data link are applied later to the readings
(``inject.py``). Cards are handed out so that no card is ever in two places at once, except for
the pairs chosen for ``concurrent_id_tag``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .config import ANOMALY_KINDS
from .fleet import StationSpec, make_id_tags
from .physics import DerateWindow, time_to_target_s
from .planning import (
    MINUTE_MS,
    GhostPlan,
    SessionPlan,
    StationPlan,
    capability_for,
    free_gaps,
    update_next_busy,
)
from .vehicles import AC_VEHICLE_P, DC_VEHICLE_P, VEHICLES

_MIN_S = 60.0


class _Fleet:
    """Flat views over all planned sessions, for vectorized eligibility."""

    def __init__(self, plans: list[StationPlan], end_ms: int) -> None:
        self.plans = plans
        self.end_ms = end_ms
        self.sessions = [s for p in plans for s in p.sessions]
        stations = [p.station for p in plans]
        self.station_of = np.array([s.station for s in self.sessions], dtype=np.int64)
        self.arrival_ms = np.array([s.arrival_ms for s in self.sessions], dtype=np.int64)
        self.departure_ms = np.array([s.departure_ms for s in self.sessions], dtype=np.int64)
        self.est_charge_s = np.array([s.est_charge_s for s in self.sessions])
        self.est_energy_wh = np.array([s.est_energy_wh for s in self.sessions])
        self.interval_s = np.array(
            [stations[s.station].interval_s for s in self.sessions], dtype=np.float64
        )
        # room below the SoC where a derating could still be told from the car's own taper
        self.taper_room_pct = np.array(
            [
                (
                    min(55.0, s.target_pct - 20.0)
                    if stations[s.station].is_dc
                    else s.target_pct - 20.0
                )
                - s.soc0_pct
                for s in self.sessions
            ]
        )
        lead_s = np.array([s.auth_to_start_s + s.charge_start_s for s in self.sessions])
        self.charge_end_ms = self.arrival_ms + ((lead_s + self.est_charge_s) * 1000).astype(
            np.int64
        )
        self.min_duration_ms = np.array([s.min_duration_ms for s in self.sessions], dtype=np.int64)
        self.taken = np.zeros(len(self.sessions), dtype=bool)

    def eligible(self, kind: str) -> np.ndarray:
        inside = self.charge_end_ms + 10 * MINUTE_MS <= self.end_ms
        est = self.est_charge_s
        if kind == "stall":
            ok = est >= 30 * _MIN_S
        elif kind == "early_taper":
            ok = (est >= 30 * _MIN_S) & (self.taper_room_pct >= 5.0)
        elif kind == "meter_stuck":
            # a stuck stretch of >= 5 samples must stay under 10 % of the session's energy
            ok = est >= np.maximum(30 * _MIN_S, 12 * np.maximum(5 * self.interval_s, 180.0))
        elif kind == "meter_mismatch":
            ok = (self.est_energy_wh >= 3000.0) & (self.departure_ms <= self.end_ms)
        elif kind == "data_gap":
            ok = self.min_duration_ms >= 3 * 1000 * np.maximum(6 * self.interval_s, 300.0)
        elif kind == "clock_fault":
            ok = self.min_duration_ms >= 1000 * np.maximum(16 * self.interval_s, 600.0)
        elif kind == "unauthorized_energy":
            ok = self.est_energy_wh >= 1000.0
        else:
            ok = est >= 10 * _MIN_S
        return np.asarray(inside & ok & ~self.taken)


def assign_anomalies(
    plans: list[StationPlan],
    start_ms: int,
    end_ms: int,
    rate: float,
    rng: np.random.Generator,
) -> None:
    """Choose about ``rate`` x sessions anomalies, the kinds in turn, and set them up."""
    fleet = _Fleet(plans, end_ms)
    wanted = round(rate * len(fleet.sessions))
    kinds: list[str] = []
    while len(kinds) < wanted:
        kinds.extend(rng.permutation(ANOMALY_KINDS).tolist())
    setups: dict[str, Callable[[StationSpec, SessionPlan, np.random.Generator], bool]] = {
        "stall": lambda st, s, r: _setup_stall(st, s, end_ms, r),
        "early_taper": lambda st, s, r: _setup_early_taper(st, s, end_ms, r),
    }
    for kind in kinds[:wanted]:
        if kind == "concurrent_id_tag":
            _setup_concurrent(fleet, rng)
            continue
        if (
            kind == "unauthorized_energy"
            and rng.random() < 0.5
            and _setup_ghost(plans, start_ms, end_ms, rng)
        ):
            continue
        candidates = np.flatnonzero(fleet.eligible(kind))
        for index in rng.permutation(candidates)[:20].tolist():
            session = fleet.sessions[index]
            setup = setups.get(kind)
            if setup is not None and not setup(plans[session.station].station, session, rng):
                continue
            if kind == "unauthorized_energy":
                session.auth_result = str(rng.choice(["Blocked", "Invalid", "Expired"]))
            if kind in setups:  # the offered power must stay unchanged around these
                session.limits = []
            session.anomaly = kind
            fleet.taken[index] = True
            break


def _setup_stall(
    station: StationSpec,
    s: SessionPlan,
    end_ms: int,
    rng: np.random.Generator,
) -> bool:
    """Power drops to zero for 12-40 min while the car is far from full, then resumes."""
    if s.target_pct - 12.0 < s.soc0_pct + 2.0:
        return False
    soc_pct = float(rng.uniform(s.soc0_pct + 2.0, s.target_pct - 12.0))
    begin_s = s.charge_start_s + max(180.0, _seconds_to(station, s, soc_pct))
    duration_s = float(rng.uniform(12.0, 40.0)) * 60.0
    # DC drivers wait for the car; AC drivers keep their plan but must see charging resume
    needed_s = begin_s + duration_s + (12.0 * 60 if s.linger_s is None else s.est_charge_s)
    return _extend_to(s, needed_s, end_ms) and _add_derate(s, begin_s, duration_s, (0.0,))


def _setup_early_taper(
    station: StationSpec,
    s: SessionPlan,
    end_ms: int,
    rng: np.random.Generator,
) -> bool:
    """Power declines over a few minutes to 30-60 % of what it should be, and stays there.

    It starts while the car should still take high power (DC below 55 % SoC, AC well before
    its own taper), so the car's normal taper cannot explain it.
    """
    highest = min(55.0, s.target_pct - 20.0) if station.is_dc else s.target_pct - 20.0
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


def _setup_concurrent(fleet: _Fleet, rng: np.random.Generator) -> None:
    """Two overlapping sessions at different stations with one card (a cloned card)."""
    ok = fleet.eligible("concurrent_id_tag") & (fleet.min_duration_ms >= 20 * MINUTE_MS)
    order = np.argsort(fleet.arrival_ms, kind="stable")
    sorted_arrival = fleet.arrival_ms[order]
    for a in rng.permutation(np.flatnonzero(ok))[:30].tolist():
        lo = fleet.arrival_ms[a] + 2 * MINUTE_MS
        overlap_ms = min(15 * MINUTE_MS, int(fleet.min_duration_ms[a]) - 5 * MINUTE_MS)
        hi = fleet.arrival_ms[a] + overlap_ms
        window = order[np.searchsorted(sorted_arrival, lo) : np.searchsorted(sorted_arrival, hi)]
        partners = [
            b
            for b in window.tolist()
            if not fleet.taken[b]
            and fleet.station_of[b] != fleet.station_of[a]
            and fleet.arrival_ms[b] + 10 * MINUTE_MS < fleet.end_ms
        ]
        if not partners:
            continue
        b = partners[int(rng.integers(len(partners)))]
        first, second = fleet.sessions[a], fleet.sessions[b]
        first.anomaly = second.anomaly = "concurrent_id_tag"
        second.partner = first.session_id
        first.partner = second.session_id
        fleet.taken[[a, b]] = True
        return


def _setup_ghost(
    plans: list[StationPlan],
    start_ms: int,
    end_ms: int,
    rng: np.random.Generator,
) -> bool:
    """Energy flows on an idle connector with no session (a bypassed or free-vend charger)."""
    duration_ms = int(rng.uniform(10.0, 45.0) * MINUTE_MS)
    for station_index in rng.permutation(len(plans))[:20].tolist():
        plan = plans[station_index]
        connector = int(rng.integers(1, plan.station.connectors + 1))
        gaps = [
            (a, b)
            for a, b in free_gaps(
                plan.busy(connector), start_ms + 10 * MINUTE_MS, end_ms - 10 * MINUTE_MS
            )
            if b - a >= duration_ms + 4 * MINUTE_MS
        ]
        if not gaps:
            continue
        a, b = gaps[int(rng.integers(len(gaps)))]
        at_ms = int(rng.integers(a + 2 * MINUTE_MS, b - duration_ms - 2 * MINUTE_MS + 1))
        p = DC_VEHICLE_P if plan.station.is_dc else AC_VEHICLE_P
        plan.ghosts.append(
            GhostPlan(
                connector=connector,
                start_ms=at_ms,
                end_ms=at_ms + duration_ms,
                vehicle=int(rng.choice(len(VEHICLES), p=p)),
                soc0_pct=float(rng.uniform(15.0, 60.0)),
                with_status=bool(rng.random() < 0.5),
            )
        )
        update_next_busy(plan, end_ms)  # a later stay may not be extended into it
        return True
    return False


def assign_id_tags(plans: list[StationPlan], pool: list[str], rng: np.random.Generator) -> None:
    """Give every session a card from the pool; one card is never in two places at once.

    A few users charge often (fleet cards, taxis), most rarely. A card is free again 30 min after
    its previous session's latest departure. The second session of a concurrent pair takes the
    first one's card, which is then held for both.
    """
    sessions = sorted((s for p in plans for s in p.sessions), key=lambda s: s.arrival_ms)
    by_id = {s.session_id: s for s in sessions}
    weights = 1.0 / (np.arange(len(pool)) + 8.0) ** 0.7
    weights /= weights.sum()
    draws = iter(rng.choice(len(pool), size=len(sessions) * 8 + 64, p=weights).tolist())
    free_at = np.full(len(pool), -math.inf)
    for s in sessions:
        partner = by_id.get(s.partner) if s.partner else None
        if partner is not None and partner.arrival_ms < s.arrival_ms:
            s.id_tag = partner.id_tag
            continue
        busy_until = max(s.departure_ms, partner.departure_ms if partner else 0)
        user = next((u for u in (next(draws) for _ in range(8)) if free_at[u] <= s.arrival_ms), -1)
        if user < 0:  # the popular cards are all out: take any free one
            free = np.flatnonzero(free_at <= s.arrival_ms)
            user = int(free[rng.integers(len(free))]) if free.size else len(pool)
        if user == len(pool):  # every card is out: a new user joins
            pool.append(make_id_tags(1, rng)[0])
            free_at = np.append(free_at, -math.inf)
        free_at[user] = busy_until + 30 * MINUTE_MS
        s.id_tag = pool[user]
