"""What happens at one station: who arrives when, with which car, and how long they stay.

Plans are drawn from each station's own random stream before any physics runs, so cross-station
decisions (user cards, concurrent use of one card, which sessions carry an anomaly) can be made
on the whole fleet while the heavy per-sample work still runs station by station.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from chargewatch.kinds import AnomalyKind

from .fleet import StationSpec, make_id_tags
from .physics import (
    DerateWindow,
    LimitWindow,
    ac_capability_w,
    ac_car_limit_w,
    dc_capability_w,
    time_to_target_s,
)
from .sites import SiteSpec
from .vehicles import AC_VEHICLE_P, DC_VEHICLE_P, VEHICLES, FloatArray

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
UTC_OFFSET_H = 1.0  # the fleet lives in Central European (winter) time
UNPLUG_MAX_S = 120.0  # Available follows the stop within this

# Arrivals per connector and hour of local time. AC: commuters in the morning, residents in the
# evening; DC: travellers through the day, few at night.
_AC_RATE = np.array(
    [
        0.01,
        0.01,
        0.01,
        0.01,
        0.02,
        0.04,
        0.08,
        0.20,
        0.25,
        0.15,
        0.10,
        0.10,
        0.10,
        0.10,
        0.08,
        0.08,
        0.10,
        0.18,
        0.22,
        0.18,
        0.12,
        0.08,
        0.05,
        0.03,
    ]
)
_DC_RATE = np.array(
    [
        0.10,
        0.06,
        0.05,
        0.05,
        0.08,
        0.15,
        0.30,
        0.50,
        0.80,
        0.80,
        0.85,
        0.90,
        1.10,
        1.10,
        1.00,
        1.00,
        1.05,
        1.05,
        0.95,
        0.70,
        0.55,
        0.40,
        0.30,
        0.20,
    ]
)

ERROR_CODES: tuple[tuple[str, float, str | None], ...] = (
    # (OCPP 1.6 ChargePointErrorCode, weight, typical info text)
    ("GroundFailure", 0.15, "RCD tripped"),
    ("OverCurrentFailure", 0.1, None),
    ("PowerMeterFailure", 0.1, "meter not responding"),
    ("HighTemperature", 0.1, "connector temperature limit"),
    ("EVCommunicationError", 0.2, "PLC link lost"),
    ("ConnectorLockFailure", 0.1, None),
    ("PowerSwitchFailure", 0.05, "contactor feedback mismatch"),
    ("ReaderFailure", 0.05, None),
    ("UnderVoltage", 0.05, None),
    ("InternalError", 0.05, None),
    ("OtherError", 0.05, None),
)


@dataclass(slots=True)
class SessionPlan:
    """One charging session as planned; anomaly assignment may still adjust it."""

    session_id: str
    station: int
    connector: int
    arrival_ms: int  # the authorize request
    departure_ms: int  # latest stop: the user leaves (DC sessions may stop earlier)
    vehicle: int
    soc0_pct: float
    target_pct: float
    efficiency: float
    car_factor: float  # DC acceptance relative to the published curve
    taper_width_pct: float  # AC: soft decline over this last stretch before the target
    taper_floor: float
    auth_to_start_s: float
    charge_start_s: float  # after the session start
    ramp_s: float
    linger_s: float | None  # stop this long after full; None: stay until departure
    est_charge_s: float  # time from charge start to target with nothing in the way
    est_energy_wh: float
    stop_reason: str
    limits: list[LimitWindow] = field(default_factory=list)
    derates: list[DerateWindow] = field(default_factory=list)
    # the charger reports SuspendedEVSE here (start_s, end_s) while its offer stays as it was
    suspended_evse: list[tuple[float, float]] = field(default_factory=list)
    next_busy_ms: int = 0  # the connector is needed again from here
    id_tag: str = ""
    auth_result: str = "Accepted"
    anomaly: AnomalyKind | None = None
    partner: str | None = None  # concurrent_id_tag: the other session with the same card

    @property
    def start_ms(self) -> int:
        return self.arrival_ms + round(self.auth_to_start_s * 1000)

    @property
    def min_duration_ms(self) -> int:
        """The session lasts at least this long after its arrival."""
        charge_ms = round((self.auth_to_start_s + self.charge_start_s + self.est_charge_s) * 1000)
        return min(self.departure_ms - self.arrival_ms, charge_ms)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    connector: int
    start_ms: int
    end_ms: int
    error_code: str
    vendor_error_code: str | None
    info: str | None


@dataclass(frozen=True, slots=True)
class RejectPlan:
    connector: int
    at_ms: int
    id_tag: str
    result: str
    plugged: bool  # the driver plugged in first: Preparing, then Available again


@dataclass(frozen=True, slots=True)
class GhostPlan:
    """Energy drawn on a connector with no session open (unauthorized_energy)."""

    connector: int
    start_ms: int
    end_ms: int
    vehicle: int
    soc0_pct: float
    with_status: bool  # the charger reports Charging while it happens
    anomaly: AnomalyKind  # what its label says


@dataclass(slots=True)
class StationPlan:
    station: StationSpec
    sessions: list[SessionPlan]
    faults: list[FaultPlan]
    rejects: list[RejectPlan]
    ghosts: list[GhostPlan] = field(default_factory=list)
    site: SiteSpec | None = None  # where it stands (sites.place_sites)

    def busy(self, connector: int) -> list[tuple[int, int]]:
        """Intervals in which the connector is taken, with margins, sorted."""
        spans = [
            (s.arrival_ms - MINUTE_MS, s.departure_ms + 3 * MINUTE_MS)
            for s in self.sessions
            if s.connector == connector
        ]
        spans += [
            (f.start_ms - MINUTE_MS, f.end_ms + MINUTE_MS)
            for f in self.faults
            if f.connector == connector
        ]
        spans += [
            (r.at_ms - MINUTE_MS, r.at_ms + 2 * MINUTE_MS)
            for r in self.rejects
            if r.connector == connector
        ]
        spans += [
            (g.start_ms - 2 * MINUTE_MS, g.end_ms + 2 * MINUTE_MS)
            for g in self.ghosts
            if g.connector == connector
        ]
        return sorted(spans)


def free_gaps(busy: list[tuple[int, int]], lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """The complement of ``busy`` within [lo, hi)."""
    gaps = []
    cursor = lo_ms
    for a, b in busy:
        if a > cursor:
            gaps.append((cursor, min(a, hi_ms)))
        cursor = max(cursor, b)
    if cursor < hi_ms:
        gaps.append((cursor, hi_ms))
    return [(a, b) for a, b in gaps if b > a]


def local_hour(t_ms: float) -> float:
    return (t_ms / HOUR_MS + UTC_OFFSET_H) % 24.0


def plan_station(
    station: StationSpec,
    start_ms: int,
    end_ms: int,
    pool: list[str],
    rng: np.random.Generator,
) -> StationPlan:
    """Sessions, faults and rejected cards of one station over the run."""
    sessions: list[SessionPlan] = []
    counter = 0
    rate = (_DC_RATE if station.is_dc else _AC_RATE) * station.popularity
    rate_max = float(rate.max())
    for connector in range(1, station.connectors + 1):
        t_ms = start_ms + int(rng.uniform(2, 30) * MINUTE_MS)
        while True:
            # thinning: candidates at the peak rate, kept in proportion to the hour's rate
            t_ms += int(rng.exponential(HOUR_MS / rate_max))
            if t_ms >= end_ms - 5 * MINUTE_MS:
                break
            if rng.random() * rate_max > rate[int(local_hour(t_ms))]:
                continue
            counter += 1
            session = _plan_session(station, connector, t_ms, counter, rng)
            sessions.append(session)
            t_ms = session.departure_ms + int((UNPLUG_MAX_S + rng.uniform(60, 600)) * 1000)
    plan = StationPlan(station, sessions, [], [])
    hours = (end_ms - start_ms) / HOUR_MS
    for connector in range(1, station.connectors + 1):
        for _ in range(rng.poisson(0.05 * hours / 24.0)):
            _place_fault(plan, connector, start_ms, end_ms, rng)
        for _ in range(rng.poisson(0.4 * hours / 24.0)):
            _place_reject(plan, connector, start_ms, end_ms, pool, rng)
    update_next_busy(plan, end_ms)
    return plan


def update_next_busy(plan: StationPlan, end_ms: int) -> None:
    """Record, per session, when its connector is needed next (room to extend a stay)."""
    for connector in range(1, plan.station.connectors + 1):
        starts = sorted(a + MINUTE_MS for a, _ in plan.busy(connector))
        for s in plan.sessions:
            if s.connector == connector:
                later = [a for a in starts if a > s.arrival_ms]
                s.next_busy_ms = min(later, default=end_ms + 24 * HOUR_MS)


def capability_for(station: StationSpec, s: SessionPlan) -> FloatArray:
    vehicle = VEHICLES[s.vehicle]
    if station.is_dc:
        return dc_capability_w(station, vehicle, s.car_factor)
    return ac_capability_w(station, vehicle, s.target_pct, s.taper_width_pct, s.taper_floor)


def _plan_session(
    station: StationSpec,
    connector: int,
    arrival_ms: int,
    counter: int,
    rng: np.random.Generator,
) -> SessionPlan:
    is_dc = station.is_dc
    vehicle_index = int(rng.choice(len(VEHICLES), p=DC_VEHICLE_P if is_dc else AC_VEHICLE_P))
    vehicle = VEHICLES[vehicle_index]
    if is_dc:
        target = float(
            rng.choice([80.0, rng.uniform(80, 90), rng.uniform(90, 98)], p=[0.4, 0.4, 0.2])
        )
        soc0 = 5.0 + 55.0 * float(rng.beta(1.8, 2.6))
        efficiency = float(rng.uniform(0.92, 0.96))
    else:
        target = (
            100.0
            if not vehicle.dc_capable
            else float(rng.choice([100.0, 90.0, 80.0], p=[0.55, 0.25, 0.2]))
        )
        soc0 = 5.0 + 80.0 * float(rng.beta(2.0, 2.2))
        efficiency = float(rng.uniform(0.86, 0.93))
    soc0 = min(soc0, target - 8.0 - 4.0 * float(rng.random()))
    session = SessionPlan(
        session_id=f"{station.station_id}-{connector}-{counter:05d}",
        station=station.index,
        connector=connector,
        arrival_ms=arrival_ms,
        departure_ms=arrival_ms,
        vehicle=vehicle_index,
        soc0_pct=soc0,
        target_pct=target,
        efficiency=efficiency,
        car_factor=float(rng.uniform(0.85, 1.0)),
        taper_width_pct=float(rng.uniform(3.0, 8.0)),
        taper_floor=float(rng.uniform(0.15, 0.35)),
        auth_to_start_s=float(rng.uniform(3.0, 12.0)),
        charge_start_s=float(rng.uniform(15.0, 50.0) if is_dc else rng.uniform(3.0, 10.0)),
        ramp_s=float(rng.uniform(30.0, 75.0) if is_dc else rng.uniform(4.0, 12.0)),
        linger_s=None,
        est_charge_s=0.0,
        est_energy_wh=0.0,
        stop_reason="EVDisconnected",
    )
    if not is_dc and target < 100.0:
        # a charge limit below full: the car stops at it from its plateau (at AC rates its
        # cells are far from the voltage where they would taper) and says SuspendedEV
        session.taper_floor = 1.0
    capability = capability_for(station, session)
    session.est_charge_s = time_to_target_s(
        capability, soc0, target, vehicle.battery_kwh * 1000.0, efficiency
    )
    session.est_energy_wh = (target - soc0) * vehicle.battery_kwh * 10.0 / efficiency
    lead_s = session.auth_to_start_s + session.charge_start_s
    if is_dc:
        if rng.random() < 0.15:  # leaves before the car reaches its target
            stay_s = lead_s + session.est_charge_s * float(rng.uniform(0.35, 0.9))
            session.stop_reason = str(rng.choice(["Local", "Remote"], p=[0.8, 0.2]))
        else:
            stay_s = lead_s + session.est_charge_s * float(rng.uniform(1.1, 1.35)) + 300.0
            session.stop_reason = str(rng.choice(["EVDisconnected", "Local"], p=[0.6, 0.4]))
        session.linger_s = float(rng.uniform(20.0, 180.0))
    else:
        stay_s = _ac_stay_s(arrival_ms, rng)
        if rng.random() < 0.15:  # unplugs soon after the car is full
            session.linger_s = float(rng.uniform(5.0, 40.0)) * 60.0
        session.stop_reason = str(
            rng.choice(["EVDisconnected", "Local", "Remote"], p=[0.75, 0.15, 0.1])
        )
    session.departure_ms = arrival_ms + int(max(stay_s, 20 * 60.0) * 1000)
    if rng.random() < (0.1 if is_dc else 0.2):
        session.limits.append(_load_management(station, session, rng))
    return session


def _ac_stay_s(arrival_ms: int, rng: np.random.Generator) -> float:
    hour = local_hour(arrival_ms)
    if 6.0 <= hour < 10.0:  # at work
        return float(np.clip(rng.normal(8.0, 1.5), 3.0, 11.0)) * 3600.0
    if 10.0 <= hour < 16.0:  # shopping, visits
        return float(np.clip(rng.lognormal(math.log(2.0), 0.5), 0.5, 6.0)) * 3600.0
    # evening and night: overnight, gone around 7:00 the next morning
    leave_hour = float(np.clip(rng.normal(7.0, 1.0), 5.5, 10.0))
    hours_left = (leave_hour - hour) % 24.0
    return max(hours_left, 1.0) * 3600.0


def _load_management(
    station: StationSpec,
    s: SessionPlan,
    rng: np.random.Generator,
) -> LimitWindow:
    """A site limit that holds the charge down for a while; power follows it (not an anomaly)."""
    begin_s = (
        s.auth_to_start_s
        + s.charge_start_s
        + float(rng.uniform(120.0, max(180.0, 0.7 * s.est_charge_s)))
    )
    vehicle = VEHICLES[s.vehicle]
    if station.is_dc:
        car_max_w = min(station.rating_w, max(p[1] for p in vehicle.dc_curve) * 1000.0)
        limit_w = float(rng.uniform(0.4, 0.75)) * car_max_w
        return LimitWindow(begin_s, begin_s + float(rng.uniform(10, 45)) * 60.0, limit_w, limit_w)
    if rng.random() < 0.25:  # a pause: the charger offers nothing (SuspendedEVSE)
        return LimitWindow(begin_s, begin_s + float(rng.uniform(10, 30)) * 60.0, 0.0, 0.0)
    current_a = float(rng.integers(6, 11))
    offered_w = station.phases * current_a * station.phase_voltage_v
    return LimitWindow(
        begin_s,
        begin_s + float(rng.uniform(15, 60)) * 60.0,
        ac_car_limit_w(station, vehicle, current_a),
        offered_w,
    )


def _pick_slot(
    plan: StationPlan,
    connector: int,
    duration_ms: int,
    lo_ms: int,
    hi_ms: int,
    rng: np.random.Generator,
) -> int | None:
    gaps = [
        (a, b)
        for a, b in free_gaps(plan.busy(connector), lo_ms, hi_ms)
        if b - a >= duration_ms + 2 * MINUTE_MS
    ]
    if not gaps:
        return None
    a, b = gaps[int(rng.integers(len(gaps)))]
    return int(rng.integers(a + MINUTE_MS, b - duration_ms - MINUTE_MS + 1))


def _place_fault(
    plan: StationPlan,
    connector: int,
    start_ms: int,
    end_ms: int,
    rng: np.random.Generator,
) -> None:
    duration_ms = int(np.clip(rng.lognormal(math.log(20.0), 1.0), 2.0, 240.0) * MINUTE_MS)
    at_ms = _pick_slot(plan, connector, duration_ms, start_ms + 5 * MINUTE_MS, end_ms, rng)
    if at_ms is None:
        return
    weights = np.array([w for _, w, _ in ERROR_CODES])
    code, _, info = ERROR_CODES[int(rng.choice(len(ERROR_CODES), p=weights / weights.sum()))]
    vendor = f"E-{int(rng.integers(100, 999)):04d}" if rng.random() < 0.5 else None
    plan.faults.append(
        FaultPlan(
            connector,
            at_ms,
            at_ms + duration_ms,
            code,
            vendor,
            info if rng.random() < 0.7 else None,
        )
    )


def _place_reject(
    plan: StationPlan,
    connector: int,
    start_ms: int,
    end_ms: int,
    pool: list[str],
    rng: np.random.Generator,
) -> None:
    at_ms = _pick_slot(plan, connector, MINUTE_MS, start_ms + 5 * MINUTE_MS, end_ms, rng)
    if at_ms is None:
        return
    result = str(rng.choice(["Invalid", "Blocked", "Expired"], p=[0.5, 0.3, 0.2]))
    # unknown cards are Invalid; Blocked and Expired ones belong to known users
    tag = make_id_tags(1, rng)[0] if result == "Invalid" else pool[int(rng.integers(len(pool)))]
    plan.rejects.append(RejectPlan(connector, at_ms, tag, result, bool(rng.random() < 0.6)))
