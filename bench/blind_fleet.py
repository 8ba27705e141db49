"""An independently written labeled fleet: real car curves, mixed station styles, blind faults.

Written without reading ``simulator/`` or ``analytics/detectors/``, to test the detectors on
data whose assumptions are not theirs (issue 11). It writes events (CONTRACTS.md section 1) and
labels (section 2) for the eleven kinds of section 3, deterministic for a seed:

    .venv/bin/python bench/blind_fleet.py --stations 120 --hours 24 --seed 5 \\
        --out /tmp/blind/events.jsonl --labels /tmp/blind/labels.jsonl

What it generates, from physics and OCPP practice rather than from the simulator's tables:

- Cars are the vehicles of open-ev-data (``--ev-data``, Chargeprice, MIT): usable battery
  size, onboard-charger limits per wallbox size, and for DC the model's own curve of power over
  state of charge. AC wallboxes are 3.7/7.4/11/22 kW, DC chargers 50/150/300 kW.
- The battery is integrated every 5 s: power is the lesser of the car's limit at its SoC, the
  charger's offer and the station's rating; AC cars taper in the last few percent (constant
  voltage), DC cars follow their curve. The register counts the true energy, the power
  readings are instantaneous samples with sensor noise, so the two differ by what sampling
  misses, as on a real meter.
- Each station has its own style: sampling every 10-60 s, the register in every reading or
  only at start and stop (OCPP's ``SampledData`` without ``Energy.Active.Import.Register``),
  SoC only on DC and only from some cars, temperature from some, numbers as numeric strings
  (OCPP 1.6) or JSON numbers, zone offsets, second/millisecond/microsecond stamps, UUID,
  integer or prefixed transaction ids, extra vendor keys, readings while idle.
- Drivers: arrivals by time of day, DC drivers leaving at 80 %, AC cars idling after full,
  load management lowering ``power_offered_w`` (down to 0, ``SuspendedEVSE``), rejected cards
  followed by an accepted one, fleet cards used at several chargers of one site, drivers
  moving to the next charger (a transaction kept open after the EV left, as with
  ``StopTransactionOnEVSideDisconnect=false``), readings delivered a few lines late, a link
  that uploads its held readings after the stop, single missing samples, 1 Wh register
  flicker, whole-percent SoC, a car that stops reporting SoC.
- Anomalies at ``--anomaly-rate``, built from section 3's definitions, each checked after it
  is built so that no label contradicts the contract (a fault that came out too weak to meet
  its definition is dropped and the session generated again as normal).

How it differs from ``simulator/``: a different code base and vehicle table (the real file, not a
compact table), a 5 s battery integration instead of per-sample power, faults applied to the
measured series after the physics, and traps that are normal by the contract (an offer of 0 W, SoC
reported in whole percent, out-of-order delivery, same-site card overlaps). Same-site overlaps of
one card at two stations are normal here as the brief asks; CONTRACTS section 3 reads "at different
stations" and would label them: ``--same-site-overlaps labelled`` writes them as
``concurrent_id_tag`` labels instead (by the stops as stamped: where a clock fault stamped a
session's stop early, only the part the stamps show). ``--notes FILE`` writes, per session, how
each fault was made and which normal traps it carries (``normal late_reading`` ...), to read misses
and false alarms by cause; ``--minute-stamps SHARE`` makes that share of the stations (chosen
without drawing from the seed's random stream, so the fleet is otherwise the same) stamp whole
minutes, as stations that drop the seconds do; ``--coarse-meters SHARE`` makes that share send
the register in kWh with 2, 1 or 0 decimals and power in kW with 2 or 1 (faults on them are
made at least 4 register steps large, or not at all); ``--sparse-sampling SHARE`` makes that
share sample every 2-15 minutes (clock-aligned readings); ``--stations-out`` writes the sites,
coordinates and ratings for ``detect --stations``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# the shared reference data beside the checkout, as CI has it (../shared)
EV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ev-curves" / "ev-data.json"
DT_S = 5.0  # battery integration step: far below every sampling interval (10-60 s)
AC_RATINGS_KW = (3.7, 7.4, 11.0, 22.0)  # 16 A 1-phase, 32 A 1-phase, 16 A 3-phase, 32 A 3-phase
DC_RATINGS_KW = (50.0, 150.0, 300.0)
INTERVALS_S = (10, 15, 20, 30, 45, 60)  # what OCPP MeterValueSampleInterval is set to in practice
# --sparse-sampling: MeterValueSampleInterval of a few minutes, or ClockAlignedDataInterval 900
SPARSE_INTERVALS_S = (120, 300, 600, 900)
# --coarse-meters: registers sent in kWh with 2, 1 or 0 decimals; power in kW with 2 or 1
COARSE_REGISTERS_WH = (10.0, 100.0, 1000.0)
COARSE_POWERS_W = (10.0, 100.0)
# A fault on a coarse meter is made at least this many register steps large (or not at all):
# both ends of any step are rounded, so smaller ones are within what the meter can say.
CLEAR_OF_ROUNDING_STEPS = 4.0
AC_EFFICIENCY = 0.90  # onboard charger losses: energy at the meter that reaches the battery
DC_EFFICIENCY = 0.95  # cable and pack resistance only
# A clone must be where one card cannot be in time: 300 km in less than the overlap is > 200 km/h.
CLONE_MIN_KM = 300.0
SMALLEST_PACK_KWH = 8.0  # the smallest plug-in packs in open-ev-data (PHEVs) hold 8-9 kWh
KINDS = (
    "stall",
    "early_taper",
    "meter_stuck",
    "meter_backwards",
    "meter_jump",
    "meter_mismatch",
    "data_gap",
    "clock_fault",
    "unauthorized_energy",
    "soc_inconsistent",
    "concurrent_id_tag",
)


# ---------------------------------------------------------------- vehicles and stations


@dataclass(frozen=True)
class Car:
    name: str
    capacity_kwh: float
    ac_by_rating: dict[str, float]  # open-ev-data's power_per_charging_point
    ac_max_kw: float
    dc_curve: tuple[tuple[float, float], ...]  # (soc %, kW); empty: no DC
    reports_soc: bool

    def ac_limit_kw(self, rating_kw: float) -> float:
        key = f"{rating_kw:g}"
        return min(rating_kw, self.ac_by_rating.get(key, self.ac_max_kw))

    def dc_limit_kw(self, soc_pct: float) -> float:
        points = self.dc_curve
        socs = [p[0] for p in points]
        i = bisect.bisect_right(socs, soc_pct)
        if i == 0:
            return points[0][1]
        if i >= len(points):
            return points[-1][1]
        (s0, p0), (s1, p1) = points[i - 1], points[i]
        return p0 + (p1 - p0) * (soc_pct - s0) / max(s1 - s0, 1e-9)


def load_cars(path: Path) -> tuple[list[Car], list[Car]]:
    """(AC cars, DC cars with a model-specific curve) from open-ev-data."""
    data = json.loads(path.read_text())["data"]
    ac: list[Car] = []
    dc: list[Car] = []
    for item in data:
        if item.get("vehicle_type") != "car" or not item.get("usable_battery_size"):
            continue
        charger = item["ac_charger"]
        curve: tuple[tuple[float, float], ...] = ()
        dc_item = item.get("dc_charger")
        if dc_item and not dc_item.get("is_default_charging_curve", True):
            curve = tuple(
                (float(p["percentage"]), float(p["power"])) for p in dc_item["charging_curve"]
            )
        car = Car(
            name=f"{item['brand']} {item['model']}",
            capacity_kwh=float(item["usable_battery_size"]),
            ac_by_rating={k: float(v) for k, v in charger["power_per_charging_point"].items()},
            ac_max_kw=float(charger["max_power"]),
            dc_curve=curve,
            reports_soc=True,
        )
        ac.append(car)
        if curve:
            dc.append(car)
    return ac, dc


@dataclass
class Style:
    """How one station writes its messages (all valid per CONTRACTS section 1)."""

    strings: bool  # OCPP 1.6 sends numbers as strings
    offset: timezone
    precision: str  # "s", "ms", "us"
    id_style: str  # "uuid", "int", "prefixed"
    extra_keys: bool
    key_rank: dict[str, float]
    minute: bool = False  # stamps cut to the whole minute (--minute-stamps)


@dataclass
class Station:
    station_id: str
    site_id: str
    lat: float
    lon: float
    dc: bool
    rated_kw: float
    connectors: int
    interval_s: int
    register_every: bool  # False: energy only in session_start/session_stop
    sends_offered: bool
    sends_temperature: bool
    sends_current: bool
    soc_whole_pct: bool
    idle_reading_s: int  # 0: no readings outside sessions
    stall_status: str  # what it says while nothing flows without a reason: Charging/SuspendedEVSE
    style: Style
    register_wh: dict[int, float] = field(default_factory=dict)
    register_wh_initial: dict[int, float] = field(default_factory=dict)
    # --coarse-meters: the register's step (1 Wh; 10 Wh, 0.1 kWh or 1 kWh on meters that report
    # kWh with 2, 1 or 0 decimals) and the power's (0.1 W; 10 W or 100 W when sent in kW)
    register_res_wh: float = 1.0
    power_res_w: float = 0.1


def haversine_km(a: Station, b: Station) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def make_stations(count: int, rng: random.Random) -> list[Station]:
    stations: list[Station] = []
    site = 0
    while len(stations) < count:
        site += 1
        # Sites spread over Germany's bounding box: some pairs are 500+ km apart.
        lat, lon = rng.uniform(47.5, 54.5), rng.uniform(6.5, 14.5)
        dc_site = rng.random() < 0.35
        for _ in range(min(rng.choice((1, 1, 2, 2, 3, 4)), count - len(stations))):
            stations.append(make_station(len(stations), f"site-{site:03d}", lat, lon, dc_site, rng))
    return stations


def make_station(
    index: int, site_id: str, lat: float, lon: float, dc: bool, rng: random.Random
) -> Station:
    vendor = rng.choice(("DE*CWB*E", "CP-", "evse-", "ABB_T", "wallbox:"))
    offsets = (timedelta(0), timedelta(hours=1), timedelta(hours=-5), timedelta(hours=5.5))
    keys = ("station_id", "connector_id", "session_id", "energy_wh", "power_w", "ts", "type")
    style = Style(
        strings=rng.random() < 0.4,
        offset=timezone(rng.choice(offsets)),
        precision=rng.choice(("s", "ms", "us")),
        id_style=rng.choice(("uuid", "int", "prefixed")),
        extra_keys=rng.random() < 0.3,
        key_rank={k: rng.random() for k in keys},
    )
    return Station(
        station_id=f"{vendor}{index + 1:04d}",
        site_id=site_id,
        lat=lat + rng.uniform(-0.001, 0.001),
        lon=lon + rng.uniform(-0.001, 0.001),
        dc=dc,
        rated_kw=rng.choice(DC_RATINGS_KW) if dc else rng.choice(AC_RATINGS_KW),
        connectors=rng.choice((1, 2)),
        interval_s=rng.choice(INTERVALS_S),
        register_every=rng.random() < 0.75,
        sends_offered=rng.random() < 0.6,
        sends_temperature=dc and rng.random() < 0.5,
        sends_current=rng.random() < 0.5,
        soc_whole_pct=rng.random() < 0.6,
        idle_reading_s=rng.choice((0, 0, 300, 600, 900)),
        stall_status=rng.choice(("Charging", "SuspendedEVSE")),
        style=style,
    )


# ---------------------------------------------------------------- one session's physics


@dataclass
class Sample:
    """One reading: true values, then what the station reports."""

    t: float  # true time, s since the epoch
    power_w: float
    offered_w: float
    soc_pct: float | None
    temp_c: float | None
    energy_wh: float  # true energy of the session so far
    stamp: float = 0.0  # what the station's clock says
    register_wh: float | None = None
    soc_out: float | None = None
    temp_out: float | None = None
    dropped: bool = False


@dataclass
class Session:
    station: Station
    connector: int
    session_id: str
    id_tag: str
    t0: float
    t_end: float
    samples: list[Sample]
    statuses: list[tuple[float, str]]
    meter_start_wh: float
    meter_stop_wh: float
    stop_reason: str
    auth_result: str = "Accepted"
    stop_stamp: float | None = None
    start_stamp: float | None = None
    late_upload: bool = False
    late_reading: bool = False
    labels: list[tuple[str, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how each fault was made, for --notes
    true_energy_wh: float = 0.0
    rejected_tag: str | None = None
    shared_tag: bool = False  # a fleet card, a clone or a driver's move: not for other pairings


@dataclass
class Plan:
    """What happens to a session's physics (not its measurement)."""

    stall_soc: float | None = None
    stall_s: float = 0.0
    give_up: bool = False
    derate_soc: float | None = None
    derate_factor: float = 1.0
    derate_s: float = math.inf
    limit_at_s: float | None = None  # load management: offer lowered from this time
    limit_kw: float = 0.0
    limit_s: float = 0.0


@dataclass
class Trajectory:
    samples: list[Sample]
    statuses: list[tuple[float, str]]
    t_end: float
    energy_wh: float
    stall: tuple[float, float] | None = None
    derate: tuple[float, float] | None = None
    stop_reason: str = "EVDisconnected"


class Charge:
    """One session's battery, integrated every DT_S, with a reading every station interval."""

    def __init__(
        self, station: Station, car: Car, t0: float, soc0: float, plan: Plan, rng: random.Random
    ) -> None:
        self.station, self.car, self.t0, self.plan, self.rng = station, car, t0, plan, rng
        self.rated_w = station.rated_kw * 1000
        self.scale = rng.uniform(0.95, 1.02)  # car-to-car spread around the published curve
        self.efficiency = DC_EFFICIENCY if station.dc else AC_EFFICIENCY
        self.capacity_wh = car.capacity_kwh * 1000
        self.ramp_s = 45.0 if station.dc else 8.0  # DC cable check and pre-charge; AC contactor
        self.soc, self.energy_wh, self.t = soc0, 0.0, t0
        self.temp_c = rng.uniform(8.0, 24.0)
        self.full_at: float | None = None
        self.stall_start: float | None = None
        self.derate_start: float | None = None

    def offered_w(self) -> float:
        plan, elapsed = self.plan, self.t - self.t0
        if plan.limit_at_s is not None and 0 <= elapsed - plan.limit_at_s < plan.limit_s:
            return plan.limit_kw * 1000
        return self.rated_w

    def stalled(self) -> bool:
        stall_soc = self.plan.stall_soc
        if stall_soc is not None and self.stall_start is None and self.soc >= stall_soc:
            self.stall_start = self.t
        return self.stall_start is not None and self.t < self.stall_start + self.plan.stall_s

    def derating(self) -> bool:
        derate_soc = self.plan.derate_soc
        if derate_soc is not None and self.derate_start is None and self.soc >= derate_soc:
            self.derate_start = self.t
        return self.derate_start is not None and self.t < self.derate_start + self.plan.derate_s

    def power_w(self, offered: float, stalled: bool) -> float:
        if self.full_at is not None or stalled:
            return self.rng.uniform(0.0, 30.0)  # auxiliary draw, leakage: nothing charging
        if self.station.dc:
            limit = self.car.dc_limit_kw(self.soc) * 1000 * self.scale
        else:
            limit = self.car.ac_limit_kw(self.station.rated_kw) * 1000
            limit *= min(1.0, max(0.08, (100.0 - self.soc) / 4.0))  # constant-voltage phase
        power = min(limit, offered, self.rated_w)
        if self.derating():
            power *= self.plan.derate_factor
        return power * min(1.0, max(0.05, (self.t - self.t0) / self.ramp_s))

    def status(self, offered: float, stalled: bool) -> str:
        if self.full_at is not None:
            return "SuspendedEV"
        if stalled:
            return self.station.stall_status
        return "SuspendedEVSE" if offered < 100 else "Charging"

    def advance(self, power: float, stalled: bool) -> None:
        self.energy_wh += power * DT_S / 3600
        if self.full_at is None and not stalled:
            self.soc += power * self.efficiency * DT_S / 3600 / self.capacity_wh * 100
            if self.temp_c < 42:  # the pack warms ~0.25 K per kWh until its cooling holds it
                self.temp_c += power * DT_S / 3600 / 1000 * 0.25
            if self.soc >= 100.0:
                self.soc, self.full_at = 100.0, self.t
        self.t += DT_S


def simulate_charge(
    station: Station,
    car: Car,
    t0: float,
    soc0: float,
    dwell_s: float,
    target_soc: float,
    plan: Plan,
    rng: random.Random,
) -> Trajectory:
    """The true series of one session: it ends when the driver leaves, at the target SoC, a
    few minutes after full on DC, or when the driver gives up on a stall."""
    charge = Charge(station, car, t0, soc0, plan, rng)
    next_sample = t0 + rng.uniform(1.0, station.interval_s)
    samples: list[Sample] = []
    statuses: list[tuple[float, str]] = [(t0 + rng.uniform(1, 4), "Charging")]
    t_leave = t0 + dwell_s
    leave_after_full_s = rng.uniform(120, 900) if station.dc else math.inf
    stall: tuple[float, float] | None = None
    stop_reason = "EVDisconnected"
    while True:
        t = charge.t
        offered = charge.offered_w()
        stalled = charge.stalled()
        if charge.stall_start is not None and not stalled and stall is None:
            stall = (charge.stall_start, t)
            if plan.give_up:
                stop_reason = rng.choice(("Local", "EVDisconnected", "Remote"))
                break
        power = charge.power_w(offered, stalled)
        status = charge.status(offered, stalled)
        if status != statuses[-1][1]:
            statuses.append((t + rng.uniform(0.5, min(20.0, station.interval_s)), status))
        if t >= next_sample:
            samples.append(Sample(t, power, offered, charge.soc, charge.temp_c, charge.energy_wh))
            next_sample += station.interval_s
        if charge.full_at is not None:
            t_leave = min(t_leave, charge.full_at + leave_after_full_s)
        if t >= t_leave or (target_soc < 100 and charge.soc >= target_soc):
            break
        charge.advance(power, stalled)
    t = charge.t
    if charge.stall_start is not None and stall is None:
        stall = (charge.stall_start, t)
    derate = None
    if charge.derate_start is not None:
        derate = (charge.derate_start, min(t, charge.derate_start + plan.derate_s))
    return Trajectory(samples, statuses, t, charge.energy_wh, stall, derate, stop_reason)


# ---------------------------------------------------------------- faults on the measurement


def interval_wh(station: Station, seconds: float) -> float:
    """The most energy the connector can deliver in ``seconds``."""
    return station.rated_kw * 1000 * seconds / 3600


def fault_meter_mismatch(s: Session, rng: random.Random) -> bool:
    # 15-25 % off the power integral; over-counting only where the faster apparent rate stays
    # below the rating, or it would also be a meter_jump by the contract's definition.
    peak = max((x.power_w for x in s.samples), default=0.0)
    over_ok = peak * 1.27 < s.station.rated_kw * 1000 * 0.95
    factor = rng.uniform(1.18, 1.25) if over_ok and rng.random() < 0.5 else rng.uniform(0.75, 0.82)
    if s.true_energy_wh < 2000:  # a register of a few hundred Wh is rounding, not calibration
        return False
    if len(s.samples) < 4:  # one or two power samples cannot say what flowed (sparse sampling)
        return False
    # 15 % of the session must be far beyond the register's rounding at both ends
    if s.true_energy_wh * 0.15 < 3 * CLEAR_OF_ROUNDING_STEPS * s.station.register_res_wh:
        return False
    for x in s.samples:
        x.register_wh = s.meter_start_wh + factor * x.energy_wh
    s.meter_stop_wh = s.meter_start_wh + factor * s.true_energy_wh
    s.labels.append(("meter_mismatch", s.t0, s.t_end))
    s.notes.append(f"meter_mismatch factor {factor:.3f}")
    return True


def _middle(s: Session, rng: random.Random, margin: int = 3) -> int | None:
    if len(s.samples) < 2 * margin + 4:
        return None
    return rng.randrange(margin, len(s.samples) - margin - 3)


def fault_meter_jump(s: Session, rng: random.Random) -> bool:
    k = _middle(s, rng)
    if k is None or not s.station.register_every:
        return False
    dt = s.samples[k].t - s.samples[k - 1].t
    # 2.5-6 times what the rating allows in the interval, at least 0.3 kWh (clear of rounding),
    # and under 9 % of the session (the whole-session mismatch stays well inside 15 %).
    jump = max(interval_wh(s.station, dt) * rng.uniform(2.5, 6.0), rng.uniform(300, 800))
    jump = max(jump, 1.25 * CLEAR_OF_ROUNDING_STEPS * s.station.register_res_wh)
    if jump > 0.09 * s.true_energy_wh:
        return False
    for x in s.samples[k:]:
        x.register_wh = (x.register_wh or 0.0) + jump
    s.meter_stop_wh += jump
    s.labels.append(("meter_jump", s.samples[k - 1].t, s.samples[k].t))
    s.notes.append(f"meter_jump +{jump:.0f} Wh over {dt:.0f} s")
    return True


def fault_meter_backwards(s: Session, rng: random.Random) -> bool:
    k = _middle(s, rng)
    if k is None or not s.station.register_every:
        return False
    rise = s.samples[k].energy_wh - s.samples[k - 1].energy_wh
    drop = rise + rng.uniform(50.0, max(60.0, min(2000.0, 0.06 * s.true_energy_wh)))
    drop = max(drop, rise + CLEAR_OF_ROUNDING_STEPS * s.station.register_res_wh)
    if drop - rise > 0.07 * s.true_energy_wh:
        return False
    for x in s.samples[k:]:
        x.register_wh = (x.register_wh or 0.0) - drop
    s.meter_stop_wh -= drop
    s.labels.append(("meter_backwards", s.samples[k - 1].t, s.samples[k].t))
    s.notes.append(f"meter_backwards -{drop - rise:.0f} Wh at reading {k}")
    return True


def fault_meter_stuck(s: Session, rng: random.Random) -> bool:
    """The register freezes while power flows, then counts on from the frozen value."""
    if not s.station.register_every:
        return False
    n = max(5, math.ceil(360 / s.station.interval_s))  # >= 5 readings and >= 6 minutes
    charging = [i for i, x in enumerate(s.samples) if x.power_w > 1500 and i > 0]
    runs = [i for i in charging if all(j in charging for j in range(i, i + n))]
    if not runs:
        return False
    k = rng.choice(runs)
    frozen = s.samples[k - 1].register_wh or 0.0
    lost = s.samples[k + n - 1].energy_wh - s.samples[k - 1].energy_wh
    if lost > 0.08 * s.true_energy_wh or lost < CLEAR_OF_ROUNDING_STEPS * s.station.register_res_wh:
        return False
    for x in s.samples[k : k + n]:
        x.register_wh = frozen
    for x in s.samples[k + n :]:
        x.register_wh = (x.register_wh or 0.0) - lost
    s.meter_stop_wh -= lost
    s.labels.append(("meter_stuck", s.samples[k].t, s.samples[k + n - 1].t))
    return True


def fault_data_gap(s: Session, rng: random.Random) -> bool:
    # More than 5 intervals and 5 minutes: 7 intervals and 7 minutes at least.
    shortest = max(7 * s.station.interval_s, 420.0)
    span = s.samples[-2].t - s.samples[1].t if len(s.samples) > 3 else 0.0
    if span < shortest + 120:
        return False
    length = rng.uniform(shortest, min(span - 60, 5400.0))
    a = rng.uniform(s.samples[1].t, s.samples[-2].t - length)
    inside = [x for x in s.samples if a < x.t < a + length]
    before = [x for x in s.samples if x.t <= a]
    after = [x for x in s.samples if x.t >= a + length]
    if not inside or not before or not after:
        return False
    for x in inside:
        x.dropped = True
    s.labels.append(("data_gap", before[-1].t, after[0].t))
    return True


def fault_clock(s: Session, rng: random.Random) -> bool:
    k = _middle(s, rng, margin=2)
    if k is None:
        return False
    variant = rng.choice(("future", "epoch", "step_back", "stop_before_start"))
    if variant == "future":  # a firmware writing the wrong year, or a day ahead
        ahead = rng.choice((366 * 86400.0, rng.uniform(2, 40) * 86400.0))
        faulty = s.samples[k : k + rng.randint(1, 4)]
        for x in faulty:
            x.stamp = x.t + ahead
    elif variant == "epoch":  # a comms module rebooted mid-session with its clock at 1970
        faulty = s.samples[k : k + rng.randint(2, 8)]
        for x in faulty:
            x.stamp = rng.uniform(20, 200) + (x.t - faulty[0].t)
    elif variant == "step_back":  # the clock stepped back hours (local time written as UTC)
        back = rng.uniform(1.5, 5.0) * 3600
        faulty = s.samples[k:]
        for x in faulty:
            x.stamp = x.t - back
        s.stop_stamp = s.t_end - back
    else:
        faulty = []
        s.stop_stamp = s.t0 - rng.uniform(600, 7200)
    first = faulty[0].t if faulty else s.t_end
    last = s.t_end if variant in ("step_back", "stop_before_start") else faulty[-1].t
    s.labels.append(("clock_fault", first, last))
    s.notes.append(f"clock_fault {variant}, {len(faulty)} readings")
    return True


def fault_unauthorized(s: Session, rng: random.Random) -> bool:
    # The card was refused, the charger (offline local auth, a free-vend bug) charged anyway.
    s.auth_result = rng.choice(("Invalid", "Blocked", "Expired"))
    if s.true_energy_wh < 300:
        return False
    s.labels.append(("unauthorized_energy", s.t0, s.t_end))
    return True


def fault_soc(s: Session, rng: random.Random) -> bool:
    with_soc = [i for i, x in enumerate(s.samples) if x.soc_out is not None and i > 0]
    variants: list[Callable[[Session, int, random.Random], bool]] = []
    if len(with_soc) > 8:
        variants += [soc_falls, soc_jumps, soc_flat]
    if s.station.sends_temperature and (not variants or rng.random() < 0.25):
        return pack_too_hot(s, rng)
    if not variants:
        return False
    return rng.choice(variants)(s, rng.choice(with_soc[2:-3]), rng)


def pack_too_hot(s: Session, rng: random.Random) -> bool:
    """Above 60 °C no maker lets a pack charge: 68-85 °C while power flows."""
    k = _middle(s, rng, margin=1)
    if k is None:
        return False
    faulty = s.samples[k : k + rng.randint(3, 10)]
    if any(x.power_w < 1000 for x in faulty):  # the contract speaks of a pack *charging*
        return False
    for x in faulty:
        x.temp_out = rng.uniform(68.0, 85.0)
    s.labels.append(("soc_inconsistent", faulty[0].t, faulty[-1].t))
    s.notes.append(f"soc_inconsistent hot, {len(faulty)} readings")
    return True


def soc_falls(s: Session, k: int, rng: random.Random) -> bool:
    """SoC falls 12-35 points while energy keeps flowing afterwards."""
    x = s.samples[k]
    drop = rng.uniform(12.0, 35.0)
    if (x.soc_out or 0) < drop + 2 or s.samples[-1].energy_wh - x.energy_wh < 500:
        return False
    for y in s.samples[k:]:
        if y.soc_out is not None:
            y.soc_out = max(0.0, y.soc_out - drop)
    s.labels.append(("soc_inconsistent", s.samples[k - 1].t, x.t))
    s.notes.append(f"soc_inconsistent fall {drop:.0f} points")
    return True


def soc_jumps(s: Session, k: int, rng: random.Random) -> bool:
    """SoC jumps 25-45 points more than the interval's energy could add to the smallest pack."""
    x = s.samples[k]
    delivered_kwh = (x.energy_wh - s.samples[k - 1].energy_wh) / 1000
    jump = delivered_kwh / SMALLEST_PACK_KWH * 100 + rng.uniform(25.0, 45.0)
    if (x.soc_out or 100) + jump > 100:
        return False
    for y in s.samples[k:]:
        if y.soc_out is not None:
            y.soc_out = min(100.0, y.soc_out + jump)
    s.labels.append(("soc_inconsistent", s.samples[k - 1].t, x.t))
    s.notes.append(f"soc_inconsistent jump {jump:.0f} points with {delivered_kwh:.2f} kWh")
    return True


def soc_flat(s: Session, k: int, rng: random.Random) -> bool:
    """SoC frozen while 25 kWh or more flow: more than a whole small pack."""
    x, rest = s.samples[k], s.samples[k:]
    if rest[-1].energy_wh - x.energy_wh < 25000:
        return False
    for y in rest:
        if y.soc_out is not None:
            y.soc_out = x.soc_out
    s.labels.append(("soc_inconsistent", x.t, rest[-1].t))
    s.notes.append("soc_inconsistent flat")
    return True


MEASUREMENT_FAULTS: dict[str, Callable[[Session, random.Random], bool]] = {
    "meter_mismatch": fault_meter_mismatch,
    "meter_jump": fault_meter_jump,
    "meter_backwards": fault_meter_backwards,
    "meter_stuck": fault_meter_stuck,
    "data_gap": fault_data_gap,
    "clock_fault": fault_clock,
    "unauthorized_energy": fault_unauthorized,
    "soc_inconsistent": fault_soc,
}


# ---------------------------------------------------------------- the fleet


@dataclass
class Orphan:
    """Energy on a connector with no session open (free vending, a welded contactor)."""

    station: Station
    connector: int
    t0: float
    t_end: float
    samples: list[Sample]
    register_end_wh: float


@dataclass
class Config:
    stations: int
    hours: float
    seed: int
    start: datetime
    anomaly_rate: float
    same_site_labelled: bool
    ev_data: Path
    minute_stamps: float = 0.0  # share of stations stamping whole minutes
    coarse_meters: float = 0.0  # share of stations whose register and power are coarse
    sparse_sampling: float = 0.0  # share of stations sampling every 2-15 minutes


def hour_weight(t: float) -> float:
    """Arrivals by hour of day (UTC ~ CET here): quiet nights, busy days, an evening peak."""
    hour = datetime.fromtimestamp(t, UTC).hour
    if hour < 6:
        return 0.12
    if hour < 9:
        return 0.7
    if hour < 17:
        return 1.0
    if hour < 21:
        return 0.85
    return 0.35


class Fleet:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.ac_cars, self.dc_cars = load_cars(config.ev_data)
        self.start = config.start.timestamp()
        self.end = self.start + config.hours * 3600
        self.stations = make_stations(config.stations, self.rng)
        for i, station in enumerate(self.stations):  # drawing nothing: the fleet stays the same
            station.style.minute = (i * 2_654_435_761) % 1000 < config.minute_stamps * 1000
            pick = (i * 40_503 + 7) % 1000
            if pick < config.coarse_meters * 1000:
                station.register_res_wh = COARSE_REGISTERS_WH[pick % len(COARSE_REGISTERS_WH)]
                station.power_res_w = COARSE_POWERS_W[(pick // 7) % len(COARSE_POWERS_W)]
            pick = (i * 69_069 + 3) % 1000
            if pick < config.sparse_sampling * 1000:
                station.interval_s = SPARSE_INTERVALS_S[pick % len(SPARSE_INTERVALS_S)]
        self.sessions: list[Session] = []
        self.orphans: list[tuple[Orphan, bool]] = []  # (window, labelled)
        self.transaction = self.rng.randrange(10_000, 900_000)
        self.fleet_cards = {
            s.site_id: self.card() for s in self.stations if self.rng.random() < 0.15
        }

    # ---------------------------------------------------------------- identities

    def card(self) -> str:
        if self.rng.random() < 0.7:  # a MIFARE UID, 7 bytes in hex
            return f"{self.rng.getrandbits(56):014X}"
        return f"DE-{self.rng.choice(('ABC', 'EVX', 'CHW'))}-C{self.rng.randrange(10**8):08d}-X"

    def session_id(self, station: Station) -> str:
        self.transaction += 1
        if station.style.id_style == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if station.style.id_style == "int":
            return str(self.transaction)
        return f"TX-{station.station_id[-4:]}-{self.transaction}"

    # ---------------------------------------------------------------- sessions

    def run(self) -> None:
        for station in self.stations:
            for connector in range(1, station.connectors + 1):
                station.register_wh[connector] = float(self.rng.randrange(0, 4_000_000))
                station.register_wh_initial[connector] = station.register_wh[connector]
                self.connector_timeline(station, connector)
        self.sessions.sort(key=lambda s: s.t0)
        self.clone_cards()
        self.driver_moves()
        if self.config.same_site_labelled:
            self.label_same_site_overlaps()

    def connector_timeline(self, station: Station, connector: int) -> None:
        rng = self.rng
        t = self.start + rng.uniform(0, 1800)
        mean_gap_s = (1800.0 if station.dc else 4800.0) / (1 if station.connectors == 1 else 0.8)
        previous_end = t
        while True:
            t += rng.expovariate(hour_weight(t) / mean_gap_s)
            if t >= self.end:
                return
            if (
                station.idle_reading_s
                and station.register_every
                and rng.random() < self.config.anomaly_rate / 10
                and t - previous_end > 3600
            ):
                self.orphan(station, connector, previous_end, t)
            session = self.session(station, connector, t)
            self.sessions.append(session)
            t = previous_end = session.t_end + rng.uniform(30, 300)

    def orphan(self, station: Station, connector: int, after: float, before: float) -> None:
        rng = self.rng
        welded = rng.random() < 0.4  # energy right after a stop: a welded contactor
        length = rng.uniform(600, min(2400, before - after - 900))
        t0 = after + (
            rng.uniform(20, 90) if welded else rng.uniform(300, before - after - length - 300)
        )
        power = station.rated_kw * 1000 * rng.uniform(0.4, 0.95)
        register = station.register_wh[connector]
        samples = []
        t = t0
        while t < t0 + length:
            samples.append(Sample(t, power * rng.uniform(0.98, 1.02), power, None, None, 0.0))
            samples[-1].register_wh = register
            register += power * station.interval_s / 3600
            t += station.interval_s
        station.register_wh[connector] = register
        self.orphans.append((Orphan(station, connector, t0, t, samples, register), True))

    def choose_kind(self, station: Station, soc: bool) -> str | None:
        if self.rng.random() >= self.config.anomaly_rate:
            return None
        kinds = ["stall", "meter_mismatch", "data_gap", "clock_fault", "unauthorized_energy"]
        if soc:  # "below what the car should deliver at that state of charge": needs the SoC
            kinds.append("early_taper")
        if station.register_every:
            kinds += ["meter_jump", "meter_backwards", "meter_stuck"]
        if soc or station.sends_temperature:
            kinds.append("soc_inconsistent")
        return self.rng.choice(kinds)

    def session(self, station: Station, connector: int, t0: float) -> Session:
        rng = self.rng
        if station.dc:
            car = rng.choice(self.dc_cars)
            soc0 = rng.uniform(5, 55)
            target = rng.choice((80.0, 80.0, 80.0, 85.0, 90.0, 100.0))
            dwell = rng.uniform(15, 50) * 60 if rng.random() < 0.35 else 3 * 3600.0
            reports_soc = rng.random() < 0.85  # not every car sends SoC over the charger's link
        else:
            car = rng.choice(self.ac_cars)
            soc0 = rng.uniform(10, 75)
            target = 100.0
            dwell = min(12 * 3600, max(1200, rng.lognormvariate(math.log(9000), 0.8)))
            reports_soc = False
        kind = self.choose_kind(station, reports_soc)
        for attempt in (kind, None):
            plan = self.plan(attempt, station, car, soc0, target)
            if plan is None:
                continue
            traj = simulate_charge(station, car, t0, soc0, dwell, target, plan, rng)
            labels = physical_labels(attempt, traj)
            if labels is None:
                continue
            session = self.measure(station, connector, t0, traj, reports_soc)
            session.labels += labels
            if attempt in ("stall", "early_taper"):
                session.notes.append(f"{attempt} {plan} status={station.stall_status}")
            fault = MEASUREMENT_FAULTS.get(attempt or "")
            if fault is not None and not fault(session, rng):
                continue
            if attempt is None:
                self.normal_noise(session)
            station.register_wh[connector] = session.meter_stop_wh
            return session
        raise AssertionError("the normal attempt always succeeds")

    def plan(
        self, kind: str | None, station: Station, car: Car, soc0: float, target: float
    ) -> Plan | None:
        rng = self.rng
        plan = Plan()
        if kind is None and station.sends_offered and rng.random() < 0.15:
            # Load management: the offer drops (to 0 sometimes) for a while. Normal.
            plan.limit_at_s = rng.uniform(300, 3600)
            plan.limit_s = rng.uniform(600, 3000)
            plan.limit_kw = rng.choice((0.0, station.rated_kw * rng.uniform(0.2, 0.5)))
        if kind == "stall":
            top = min(target, 92.0) - 8
            if top <= soc0 + 3:
                return None
            plan.stall_soc = rng.uniform(soc0 + 2, top)
            plan.stall_s = rng.uniform(13, 50) * 60
            plan.give_up = rng.random() < 0.5
        elif kind == "early_taper":
            plateau = [s for s, p in car.dc_curve if p >= 0.6 * max(q for _, q in car.dc_curve)]
            top = min(max(plateau, default=50.0), target) - 5
            if top <= soc0 + 3:
                return None
            plan.derate_soc = rng.uniform(soc0 + 2, top)
            plan.derate_factor = rng.uniform(0.3, 0.55)
            plan.derate_s = math.inf if rng.random() < 0.6 else rng.uniform(15, 45) * 60
        return plan

    def measure(
        self, station: Station, connector: int, t0: float, traj: Trajectory, reports_soc: bool
    ) -> Session:
        rng = self.rng
        start_wh = math.floor(station.register_wh[connector])
        fleet_card = self.fleet_cards.get(station.site_id)
        card = fleet_card if fleet_card and rng.random() < 0.25 else self.card()
        for x in traj.samples:
            x.stamp = x.t
            x.power_w = max(0.0, x.power_w * rng.gauss(1.0, 0.008) + rng.gauss(0, 8))
            if station.register_every:
                x.register_wh = start_wh + x.energy_wh
            if reports_soc and x.soc_pct is not None:
                x.soc_out = math.floor(x.soc_pct) if station.soc_whole_pct else round(x.soc_pct, 1)
            if station.sends_temperature:
                x.temp_out = round(x.temp_c or 20.0, 1)
        return Session(
            station=station,
            connector=connector,
            session_id=self.session_id(station),
            id_tag=card,
            shared_tag=card == fleet_card,
            t0=t0,
            t_end=traj.t_end,
            samples=traj.samples,
            statuses=traj.statuses,
            meter_start_wh=start_wh,
            meter_stop_wh=start_wh + traj.energy_wh,
            stop_reason=traj.stop_reason,
            true_energy_wh=traj.energy_wh,
        )

    def normal_noise(self, s: Session) -> None:
        """Things the contract calls normal, on sessions with no label."""
        rng = self.rng
        last_drop = -5
        for i, x in enumerate(s.samples[1:-1], start=1):
            if rng.random() < 0.012 and i - last_drop > 3:  # a single missing sample
                x.dropped = True
                last_drop = i
            if x.register_wh is not None and x.power_w < 200 and rng.random() < 0.03:
                x.register_wh = max(0.0, x.register_wh - 1)  # 1 Wh flicker of the last digit
        if any(x.soc_out is not None for x in s.samples) and rng.random() < 0.05:
            cut = rng.randrange(len(s.samples))
            for x in s.samples[cut:]:
                x.soc_out = None  # the car stopped reporting SoC
        if rng.random() < 0.03 and s.samples:
            s.late_upload = True  # the link drops; held readings come after the stop
            s.notes.append("normal late_upload")
        s.late_reading = rng.random() < 0.03
        if s.late_reading:
            s.notes.append("normal late_reading")
        if any(x.offered_w < s.station.rated_kw * 1000 for x in s.samples):
            s.notes.append("normal offer_lowered")
        if s.station.dc is False and rng.random() < 0.03:
            s.rejected_tag = self.card()  # another card was refused first: no energy on it

    # ---------------------------------------------------------------- cards across sessions

    def clone_cards(self) -> None:
        """Cloned cards: one tag in two overlapping sessions at sites too far apart to travel."""
        rng = self.rng
        wanted = round(self.config.anomaly_rate * len(self.sessions) / len(KINDS) / 2)
        free = [s for s in self.sessions if not s.labels and not s.shared_tag]
        rng.shuffle(free)
        made = 0
        for a in free:
            if made >= wanted:
                return
            if a.shared_tag:
                continue
            for b in free:
                if b is a or b.shared_tag or haversine_km(a.station, b.station) < CLONE_MIN_KM:
                    continue
                lo, hi = max(a.t0, b.t0), min(a.t_end, b.t_end)
                if hi - lo < 900:  # a quarter hour at least, at both far-apart places
                    continue
                b.id_tag = a.id_tag
                a.shared_tag = b.shared_tag = True
                a.labels.append(("concurrent_id_tag", lo, hi))
                b.labels.append(("concurrent_id_tag", lo, hi))
                made += 1
                break

    def driver_moves(self) -> None:
        """A driver unplugs at one AC charger and starts at the next one of the site, while
        the first keeps its transaction open a few minutes (StopTransactionOnEVSideDisconnect
        false): one tag, two stations of one site, a short overlap. Normal."""
        rng = self.rng
        by_connector: dict[tuple[str, int], list[Session]] = {}
        for s in self.sessions:
            by_connector.setdefault((s.station.station_id, s.connector), []).append(s)
        orphan_spans = [(o.station.station_id, o.connector, o.t0, o.t_end) for o, _ in self.orphans]
        for a in self.sessions:
            if a.station.dc or a.labels or a.shared_tag or rng.random() > 0.08:
                continue
            for b in self.sessions:
                if (
                    b.station.site_id != a.station.site_id
                    or b.station is a.station
                    or b.labels
                    or b.shared_tag
                    or not 60 <= b.t0 - a.t_end <= 600
                ):
                    continue
                stop = b.t0 + rng.uniform(60, 420)
                line = by_connector[(a.station.station_id, a.connector)]
                after = [s for s in line if s.t0 > a.t0]
                if after and after[0].t0 < stop + 120:
                    continue
                if any(
                    st == a.station.station_id
                    and c == a.connector
                    and t0 < stop + 120
                    and t1 > a.t_end
                    for st, c, t0, t1 in orphan_spans
                ):
                    continue
                self.extend_open(a, stop)
                b.id_tag = a.id_tag
                a.shared_tag = b.shared_tag = True
                break

    def extend_open(self, s: Session, stop: float) -> None:
        """The EV left at ``s.t_end``; the transaction stays open, nothing flows, until ``stop``."""
        last = s.samples[-1] if s.samples else None
        register = s.meter_stop_wh if s.station.register_every else None
        s.statuses.append((s.t_end + self.rng.uniform(1, 5), "SuspendedEV"))
        t = (last.t if last else s.t0) + s.station.interval_s
        while t < stop:
            x = Sample(t, 0.0, last.offered_w if last else 0.0, None, None, s.true_energy_wh)
            x.stamp, x.register_wh = t, register
            s.samples.append(x)
            t += s.station.interval_s
        s.t_end = stop
        s.stop_reason = "Local"  # the driver badged the first charger to end it

    def label_same_site_overlaps(self) -> None:
        """With --same-site-overlaps labelled: every overlap of one tag at two stations."""
        by_tag: dict[str, list[Session]] = {}
        for s in self.sessions:
            by_tag.setdefault(s.id_tag, []).append(s)
        for group in by_tag.values():
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    # by the stops as stamped: a stop stamped early (a clock stepped back) shows
                    # part of the session only, and an overlap there is one in truth too; one
                    # the stamps hide (a stop stamped before its start) cannot be seen
                    ends = [x.t_end if x.stop_stamp is None else x.stop_stamp for x in (a, b)]
                    ends = [as_stamped(t, x.station) for t, x in zip(ends, (a, b), strict=True)]
                    lo = max(as_stamped(a.t0, a.station), as_stamped(b.t0, b.station))
                    hi = min(ends)
                    if hi <= lo or a.station is b.station:
                        continue
                    for s in (a, b):
                        if not any(k == "concurrent_id_tag" for k, _, _ in s.labels):
                            s.labels.append(("concurrent_id_tag", lo, hi))


def physical_labels(kind: str | None, traj: Trajectory) -> list[tuple[str, float, float]] | None:
    """The labels a physical fault earned, or None when it came out too weak for its definition."""
    if kind == "stall":
        if traj.stall is None or traj.stall[1] - traj.stall[0] < 12 * 60:
            return None
        return [("stall", traj.stall[0], traj.stall[1])]
    if kind == "early_taper":
        if traj.derate is None or traj.derate[1] - traj.derate[0] < 10 * 60:
            return None
        # a derate before the first reading (a station sampling every 10-15 min) shows no
        # power before it: nothing in the data says the car could draw more
        if not any(x.t < traj.derate[0] and x.power_w > 1000 for x in traj.samples):
            return None
        return [("early_taper", traj.derate[0], traj.derate[1])]
    return []


# ---------------------------------------------------------------- writing


def stamp_text(t: float, style: Style) -> str:
    moment = datetime.fromtimestamp(t, UTC).astimezone(style.offset)
    if style.minute:  # a station that drops the seconds: every stamp a whole minute
        return moment.replace(second=0, microsecond=0).isoformat(timespec="seconds")
    spec = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}[style.precision]
    text = moment.isoformat(timespec=spec)
    return text[:-6] + "Z" if text.endswith("+00:00") and style.precision != "s" else text


def as_stamped(t: float, station: Station) -> float:
    """``t`` as the station's stamp gives it back (cut to the minute where it drops seconds)."""
    return math.floor(t / 60.0) * 60.0 if station.style.minute else t


def utc_text(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Writer:
    """Collects events as (delivery time, order, stamp, station, fields); formats them last."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rows: list[tuple[float, int, float, Station, dict[str, Any]]] = []

    def add(self, station: Station, delivered: float, stamp: float, fields: dict[str, Any]) -> None:
        self.rows.append((delivered, len(self.rows), stamp, station, fields))

    def number(self, style: Style, value: float, digits: int) -> float | int | str:
        rounded: float | int = int(value) if digits == 0 else round(value, digits)
        return str(rounded) if style.strings else rounded

    def line(self, stamp: float, station: Station, fields: dict[str, Any]) -> str:
        style = station.style
        obj: dict[str, Any] = {"ts": stamp_text(stamp, style), "station_id": station.station_id}
        for key, value in fields.items():
            if isinstance(value, tuple):  # (value, digits): a measured number
                obj[key] = self.number(style, value[0], value[1])
            elif value is not None or key in ("soc_pct",):
                obj[key] = value
        if style.extra_keys:
            obj["vendor_id"] = "blind"
            if obj["type"] == "reading":
                obj["context"] = "Sample.Periodic"
        ranked = sorted(obj, key=lambda k: style.key_rank.get(k, 0.5))
        return json.dumps({k: obj[k] for k in ranked}, separators=(",", ":"))

    def write(self, path: Path) -> int:
        self.rows.sort(key=lambda r: (r[0], r[1]))
        with path.open("w") as out:
            for _, _, stamp, station, fields in self.rows:
                out.write(self.line(stamp, station, fields) + "\n")
        return len(self.rows)


def emit_session(w: Writer, s: Session, rng: random.Random) -> None:
    st, c = s.station, s.connector
    if rng.random() < 0.6:
        w.add(
            st, s.t0 - 60, s.t0 - 60, {"type": "status", "connector_id": c, "status": "Preparing"}
        )
    if s.rejected_tag:
        auth = {"type": "authorize", "id_tag": s.rejected_tag, "result": "Invalid"}
        w.add(st, s.t0 - 40, s.t0 - 40, auth)
    auth = {"type": "authorize", "id_tag": s.id_tag, "result": s.auth_result}
    w.add(st, s.t0 - 5, s.t0 - 5, auth)
    start: dict[str, Any] = {
        "type": "session_start",
        "connector_id": c,
        "session_id": s.session_id,
        "id_tag": s.id_tag,
        "meter_start_wh": (register_text_wh(st, s.meter_start_wh), 0),
    }
    w.add(st, s.t0, s.start_stamp if s.start_stamp is not None else s.t0, start)
    for t, status in s.statuses:
        w.add(st, t, t, {"type": "status", "connector_id": c, "status": status})
    link_lost = s.t_end - rng.uniform(300, 1500) if s.late_upload else math.inf
    late = rng.randrange(len(s.samples)) if s.late_reading and s.samples else -1
    for i, x in enumerate(s.samples):
        if x.dropped:
            continue
        delivered = x.t
        if x.t >= link_lost:  # the held readings go out in order once the link is back
            delivered = s.t_end + 30 + (x.t - link_lost) / 100
        elif i == late:  # one MeterValues retried: it lands after the next one, stamp intact
            delivered = x.t + st.interval_s + rng.uniform(1, 5)
        w.add(st, delivered, x.stamp, reading_fields(s, x))
    stop: dict[str, Any] = {
        "type": "session_stop",
        "connector_id": c,
        "session_id": s.session_id,
        "meter_stop_wh": (register_text_wh(st, s.meter_stop_wh), 0),
        "reason": s.stop_reason,
    }
    w.add(st, s.t_end, s.stop_stamp if s.stop_stamp is not None else s.t_end, stop)
    w.add(
        st, s.t_end + 2, s.t_end + 2, {"type": "status", "connector_id": c, "status": "Finishing"}
    )
    after = s.t_end + rng.uniform(10, 90)
    w.add(st, after, after, {"type": "status", "connector_id": c, "status": "Available"})


def register_text_wh(station: Station, register_wh: float) -> float:
    """The register as the meter shows it: cut to its step (whole Wh, or 0.01/0.1/1 kWh)."""
    return math.floor(register_wh / station.register_res_wh) * station.register_res_wh


def reading_fields(s: Session | None, x: Sample, station: Station | None = None) -> dict[str, Any]:
    st = station or (s.station if s else None)
    assert st is not None
    fields: dict[str, Any] = {"type": "reading", "connector_id": s.connector if s else 0}
    if s is not None:
        fields["session_id"] = s.session_id
    power = x.power_w
    if st.power_res_w != 0.1:  # sent in kW: 10 or 100 W steps
        power = round(power / st.power_res_w) * st.power_res_w
    fields["power_w"] = (power, 1)
    if x.register_wh is not None:
        fields["energy_wh"] = (register_text_wh(st, x.register_wh), 0)
    if st.sends_offered:
        fields["power_offered_w"] = (x.offered_w, 0)
    if st.sends_current:
        volts = (400.0 if st.rated_kw < 200 else 780.0) if st.dc else 230.0
        phases = 3 if (not st.dc and st.rated_kw >= 11) else 1
        fields["voltage_v"] = (volts, 1)
        fields["current_a"] = (x.power_w / volts / phases, 2)
    if x.soc_out is not None:
        fields["soc_pct"] = (x.soc_out, 0 if st.soc_whole_pct else 1)
    if x.temp_out is not None:
        fields["temperature_c"] = (x.temp_out, 1)
    return fields


def emit_idle(w: Writer, fleet: Fleet) -> None:
    """Station boots and heartbeats; readings while idle on stations that send them."""
    rng = fleet.rng
    busy: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for s in fleet.sessions:
        key = (s.station.station_id, s.connector)
        busy.setdefault(key, []).append((s.t0, s.t_end, s.meter_stop_wh))
    for o, _ in fleet.orphans:
        busy.setdefault((o.station.station_id, o.connector), []).append(
            (o.t0, o.t_end, o.register_end_wh)
        )
    for st in fleet.stations:
        boot = fleet.start - rng.uniform(60, 3600)
        w.add(
            st,
            boot,
            boot,
            {"type": "station", "event": "boot", "vendor": "Blind", "heartbeat_interval_s": 300},
        )
        t = boot + 300
        while t < fleet.end + 3600:
            w.add(st, t, t, {"type": "station", "event": "heartbeat"})
            t += 300
        if not st.idle_reading_s:
            continue
        for c in range(1, st.connectors + 1):
            spans = sorted(busy.get((st.station_id, c), []))
            register = st.register_wh_initial[c]
            t, i = fleet.start + rng.uniform(0, st.idle_reading_s), 0
            while t < fleet.end:
                while i < len(spans) and spans[i][1] + 30 < t:
                    register = spans[i][2]  # the register where the last session left it
                    i += 1
                if i >= len(spans) or t < spans[i][0] - 30:
                    x = Sample(t, 0.0, st.rated_kw * 1000, None, None, 0.0)
                    x.register_wh = register if st.register_every else None
                    fields = reading_fields(None, x, st)
                    fields["connector_id"] = c
                    w.add(st, t, t, fields)
                t += st.idle_reading_s


def emit_orphan(w: Writer, o: Orphan) -> None:
    st = o.station
    w.add(
        st,
        o.t0 - 2,
        o.t0 - 2,
        {"type": "status", "connector_id": o.connector, "status": "Charging"},
    )
    for x in o.samples:
        x.stamp = x.t
        fields = reading_fields(None, x, st)
        fields["connector_id"] = o.connector
        w.add(st, x.t, x.t, fields)
    w.add(
        st, o.t_end, o.t_end, {"type": "status", "connector_id": o.connector, "status": "Available"}
    )


def label_line(
    session_id: str | None, station: Station, connector: int, kind: str, start: float, end: float
) -> str:
    return json.dumps(
        {
            "session_id": session_id,
            "station_id": station.station_id,
            "connector_id": connector,
            "kind": kind,
            "start": utc_text(start),
            "end": utc_text(end),
        }
    )


def generate(
    config: Config, events: Path, labels: Path, stations_csv: Path | None, notes: Path | None = None
) -> dict[str, int]:
    fleet = Fleet(config)
    fleet.run()
    writer = Writer(random.Random(config.seed + 1))
    for s in fleet.sessions:
        emit_session(writer, s, fleet.rng)
    for o, _ in fleet.orphans:
        emit_orphan(writer, o)
    emit_idle(writer, fleet)
    counts = {"events": writer.write(events), "sessions": len(fleet.sessions)}
    lines = [
        label_line(s.session_id, s.station, s.connector, kind, a, b)
        for s in fleet.sessions
        for kind, a, b in s.labels
    ]
    lines += [
        label_line(None, o.station, o.connector, "unauthorized_energy", o.t0, o.t_end)
        for o, labelled in fleet.orphans
        if labelled
    ]
    labels.write_text("".join(line + "\n" for line in lines))
    counts["labels"] = len(lines)
    counts["normal_sessions"] = sum(1 for s in fleet.sessions if not s.labels)
    if notes is not None:
        notes.write_text(
            "".join(
                json.dumps({"session_id": s.session_id, "notes": s.notes}) + "\n"
                for s in fleet.sessions
                if s.notes
            )
        )
    if stations_csv is not None:
        rows = ["station_id,site_id,latitude,longitude,rated_power_w"]
        rows += [
            f"{s.station_id},{s.site_id},{s.lat:.5f},{s.lon:.5f},{s.rated_kw * 1000:.0f}"
            for s in fleet.stations
        ]
        stations_csv.write_text("\n".join(rows) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2026-11-16T00:00:00Z")
    parser.add_argument("--anomaly-rate", type=float, default=0.2)
    parser.add_argument("--same-site-overlaps", choices=("normal", "labelled"), default="normal")
    parser.add_argument(
        "--minute-stamps",
        type=float,
        default=0.0,
        help="share of stations whose stamps are whole minutes (0-1; the rest is unchanged)",
    )
    parser.add_argument(
        "--coarse-meters",
        type=float,
        default=0.0,
        help="share of stations sending the register in kWh (0.01, 0.1 or 1 kWh steps) and power"
        " in kW (10 or 100 W steps)",
    )
    parser.add_argument(
        "--sparse-sampling",
        type=float,
        default=0.0,
        help="share of stations sampling every 120, 300, 600 or 900 s",
    )
    parser.add_argument("--ev-data", type=Path, default=EV_DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--stations-out", type=Path, default=None)
    parser.add_argument("--notes", type=Path, default=None, help="how each fault was made")
    args = parser.parse_args()
    config = Config(
        stations=args.stations,
        hours=args.hours,
        seed=args.seed,
        start=datetime.fromisoformat(args.start.replace("Z", "+00:00")),
        anomaly_rate=args.anomaly_rate,
        same_site_labelled=args.same_site_overlaps == "labelled",
        ev_data=args.ev_data,
        minute_stamps=args.minute_stamps,
        coarse_meters=args.coarse_meters,
        sparse_sampling=args.sparse_sampling,
    )
    counts = generate(config, args.out, args.labels, args.stations_out, args.notes)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
