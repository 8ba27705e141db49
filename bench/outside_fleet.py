"""Outside fleet: a second, independently written generator of labeled EV-charging event data.

What it writes (CONTRACTS.md sections 1-3 are the only definition of truth it follows):

* ``events.jsonl`` - what a back office receives from a fleet of AC wallboxes and DC chargers
  spread over sites in several cities (Europe at ``+01:00``, North America at ``-05:00``):
  ``station`` boot/connect/heartbeat/disconnect, ``status`` (OCPP 1.6 ChargePointStatus, the odd
  ``Faulted`` with an error code), ``authorize`` (rejected cards too), ``session_start``/``stop``,
  and ``reading`` lines in and between sessions, in the order they are *received* (a few
  readings late, some uploaded after the stop, stamps always the charger's own).
* ``labels.jsonl`` - one line per (session, kind) for every anomaly of section 3 it injected,
  ``start``/``end`` (UTC, true time) bounding where it shows; energy on an idle connector has
  ``session_id`` null.
* ``stations.csv`` - ``station_id,site_id,latitude,longitude,rated_power_w``.
* ``notes.jsonl`` - one object per session (and per idle-connector episode): car, station style,
  each fault with how it was made, the normal traps it carries. For a human reading misses.

How it differs from a naive generator
-------------------------------------
* Physics first: the battery is integrated every ``DT_S`` = 2 s (far below any sampling period,
  so a sampled ``power_w`` is instantaneous and the register is the true integral, not the sum
  of the samples). Cars come from the 293 real vehicles of ``ev-data.json`` weighted toward
  common models; AC power is the car's published power at that wallbox size (onboard charger and
  phases), DC power follows the car's own curve over SoC, capped by the charger's rating and its
  current limit at the pack voltage (a 400 V car gets 200 kW at most from a 500 A/350 kW post).
* Stations differ: sampling every 10-60 s or clock-aligned every 5/15 min, register in every
  reading, in some, or only in meter_start/meter_stop, 1/10/100 Wh resolution, power missing
  where ``current_a``/``voltage_v`` are sent, ``power_offered_w`` on some, numbers as strings on
  OCPP 1.6 stations, ``Z``/``+01:00``/``-05:00`` stamps with 0/3/6 fraction digits, some stamping
  whole seconds or minutes, integer/UUID/prefixed session ids, vendor keys.
* Normal traps are deliberate and stay unlabeled: load management lowering the offer (to 0 with
  ``SuspendedEVSE``) and power following it, the car's own taper, ``SuspendedEV`` and hours idle
  after full, single missing samples, late readings, readings uploaded after the stop, cars that
  stop sending SoC, rejected cards followed by a good one, fleet cards at one site.
* Every label is checked after building against the definition, on the rendered events alone
  (the same code ``--check`` runs). A fault that came out too weak, or a session that meets a
  definition it was not labeled with (other than the meter faults' own consequences, which are
  labeled too, e.g. a stuck meter that catches up is also a jump), is rebuilt; after two tries the
  session is built as normal. What was dropped is counted and written to the notes.

Thresholds and their physical reasons
-------------------------------------
* Power noise 1 % (``NOISE_REL``): an IEC 62053-21 class 1 meter.
* Stall: >= 10 min by the contract; built as ``max(12..80 min, 10 min + 2.5 sampling periods +
  90 s)`` so that the zero readings themselves span 10 min even on a 15-min station, always below
  85 % SoC, offer unchanged. "Zero" is below ``max(100 W, 0.2 % of rating)``: auxiliary draw of a
  car that is not charging, well under the 1.4 kW a car draws at the 6 A IEC 61851 minimum (a
  real curve from the data, the Corsa-e's, goes down to 2 kW at 73 %).
* Early taper: 30-60 % of what car and charger deliver at that SoC (a failed DC module out of
  two or three, a thermally derated cable), from 5 min into charging and below 72 % (DC) or 85 %
  (AC) SoC, so it is not the car's own taper. The check flags readings at <= 70 % of the expected
  power for >= 5 min; a normal session never goes below 80 % (cars are drawn at 90-102 % of
  their published curve: pack temperature and cell spread, never the cold-battery case the
  contract calls a fault). The expectation is the lowest within +-2.5 % SoC (published curves
  have steps, and SoC is estimated from the energy when the car does not send it) and never above
  ``power_offered_w``. Readings above 90 % SoC are not judged: the CV phase is physics.
* AC constant-voltage taper from 94-97 % SoC down to ``max(25 %, 1 kW)`` (termination current
  about C/50), then ``SuspendedEV``; a car with a charge limit of 80/90 % stops there.
* Meter stuck: >= max(6 min, 4 register periods + 3 min) with power above 20 % of the session's
  peak; the check wants >= 3 equal register readings over >= 3 min and at least 3 register steps
  + 200 Wh of power integral in that time, so a 100 Wh register at low power is not "stuck".
* Meter jump: the step is >= 2.5x the energy the rating allows over the register period plus the
  stamp resolution, and >= 2 kWh (a corrupt read, a firmware glitch); the check allows rating x
  (interval + stamp resolution) x 1.1 + one register step.
* Meter mismatch: factor 0.72-0.82 or 1.20-1.32 (a wrong current-transformer ratio; a little wider
  than 0.75-0.85/1.15-1.3 so that > 15 % holds whichever side is the reference), or power sent
  in kW in the W field; sessions landing between 10 and 15 % are rebuilt. The register's energy
  is the sum of its rises; the power integral is only judged where the sampling allows it (its
  trapezoid error bound under 5 % of the energy). Normal sessions stay under 4 %.
* Data gap: > 5 periods and >= 5 min by the contract; built as max(6..45 min, 7-11 periods,
  7.5 min). Single missing samples (1 %, never two in a row) are normal.
* SoC: falls of 6-25 points, jumps beyond 100 x energy / 10 kWh + 3 points (10 kWh: the smallest
  DC-capable car battery in ev-data is 10.7 kWh), stuck while >= 28 kWh flow (the contract says
  "tens of kWh"; the check uses 20), pack temperature 62-85 C or -28..-40 C (an NTC thermistor
  open circuit reads -40 C) against the contract's tolerance of roughly -25..60 C.
* Meter backwards/jump are judged in both orders: a register that falls in stamp order *and* in
  arrival order is backwards; one that falls only in stamp order, on a line that came later, is a
  clock fault (a late line with its true stamp falls in neither). Clock faults make every
  stamp-based check (stall, taper, gap, jump, SoC) moot, so they only share a session with
  ``unauthorized_energy``.
* Concurrent id tag: a cloned card at a station in another city, overlapping >= 10 min.
  Fleet cards at several stations of one site overlap too: labeled or not as
  ``--same-site-overlaps`` says (default ``labelled``: the contract says "at different stations").
* Occupancy: each connector gets a utilization target of 20-60 %; arrivals follow a local
  time-of-day profile per site kind (street, residential, workplace, retail, highway hub, depot).

Known limits: a clock fault mis-stamps the session's own events (and the boot of a 1970
reboot), not the heartbeats or the other connector of the station; a data gap from a network
loss suppresses the station's heartbeats and idle readings, not the other connector's session
readings; DC posts with two connectors do not share power; no plug-and-charge sessions (every
session has an ``authorize``); sessions start inside the window (none carried over from before).

Usage::

    .venv/bin/python bench/outside_fleet.py --stations 150 --hours 24 --seed 7 \\
        --anomaly-rate 0.25 --out DIR/events.jsonl --labels DIR/labels.jsonl \\
        --stations-out DIR/stations.csv --notes DIR/notes.jsonl
    .venv/bin/python bench/outside_fleet.py --check DIR

Only the standard library is used (no project module), so the detectors' assumptions cannot
leak in. Same seed, same arguments: byte-identical files.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import random
import statistics
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

DEFAULT_EV_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ev-curves" / "ev-data.json"
)
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
SESSION_CHECKED = KINDS[:-1]
METER_KINDS = frozenset({"meter_stuck", "meter_backwards", "meter_jump", "meter_mismatch"})
# share of the faulty sessions per kind (before eligibility); concurrent pairs count twice
KIND_WEIGHTS = {
    "stall": 1.3,
    "early_taper": 1.1,
    "meter_stuck": 0.9,
    "meter_backwards": 0.8,
    "meter_jump": 0.8,
    "meter_mismatch": 1.0,
    "data_gap": 1.0,
    "clock_fault": 0.9,
    "unauthorized_energy": 0.7,
    "soc_inconsistent": 2.5,  # eligible only where a DC station forwards the car's SoC
    "concurrent_id_tag": 0.45,
}
SECOND_FAULT_P = 0.12
# which second kind may join a first one without one hiding the other
GROUP = {
    "stall": "A",
    "early_taper": "A",
    "meter_stuck": "M",
    "meter_backwards": "M",
    "meter_jump": "M",
    "meter_mismatch": "M",
    "data_gap": "G",
    "clock_fault": "C",
    "soc_inconsistent": "S",
    "unauthorized_energy": "X",
    "concurrent_id_tag": "Y",
}
COMPATIBLE = {
    "A": {"M", "S", "X", "Y"},
    "M": {"A", "S", "X", "Y"},
    "G": {"S", "X", "Y"},
    "C": {"X"},
    "S": {"A", "M", "G", "X", "Y"},
    "X": {"A", "M", "G", "C", "S"},
    "Y": {"A", "M", "G", "S"},
}

# ---------------------------------------------------------------------------- physics constants
DT_S = 2.0  # integration step: 5x below the fastest sampling (10 s)
NOISE_REL = 0.01  # class 1 meter
AC_VOLTAGE = 230.0  # line to neutral
AC_RAMP_TAU_S = 3.0  # an onboard charger reaches its current in a few seconds
DC_RAMP_TAU_S = 8.0  # a DC post ramps its modules over ~30 s
MAX_SESSION_S = 20 * 3600.0
AC_KEYS = {3700: "3.7", 7400: "7.4", 11000: "11", 22000: "22"}
AC_PHASES = {3700: 1, 7400: 1, 11000: 3, 22000: 3}
DC_CURRENT_LIMIT_A = {50000: 125.0, 100000: 250.0, 150000: 375.0, 350000: 500.0}
PACK_V_400 = (330.0, 410.0)  # 96s NMC pack, empty to full
PACK_V_800 = (620.0, 800.0)  # 192s pack (Taycan, Ioniq 5, EV6)
AC_CV_MIN_SOC = 94.0
AC_TAPER_FLOOR = 0.25
AC_TAPER_FLOOR_W = 1000.0
PH_HANDSHAKE, PH_CHARGING, PH_EVSE, PH_FULL, PH_STALL = range(5)
IDLE_SAMPLE_S = 900.0  # OCPP ClockAlignedDataInterval of idle meter values

# ---------------------------------------------------------------------------- definition checks
STALL_MIN_S = 600.0
ZERO_POWER_W = 100.0
TAPER_FAULT_RATIO = 0.70
TAPER_NORMAL_RATIO = 0.80
TAPER_MAX_SOC = 90.0
STUCK_MIN_S = 180.0
JUMP_MARGIN = 1.1
MISMATCH_LIMIT = 0.15
MISMATCH_CLEAN = 0.10
MISMATCH_MAX_UNCERTAINTY = 0.05
GAP_INTERVALS = 5.0
GAP_MIN_S = 300.0
SOC_MIN_BATTERY_KWH = 10.0
SOC_STUCK_KWH = 20.0
TEMP_MAX_C = 60.0
TEMP_MIN_C = -25.0
PLAUSIBLE_PAST_S = 86400.0
PLAUSIBLE_FUTURE_S = 2 * 86400.0
OVERLAP_MIN_S = 600.0


# ============================================================================ cars
POPULARITY: dict[tuple[str, str], float] = {
    ("Tesla", "Model 3"): 14,
    ("Tesla", "Model Y"): 12,
    ("Volkswagen", "ID.3"): 9,
    ("Volkswagen", "ID.4"): 8,
    ("Renault", "Zoe"): 8,
    ("Skoda", "Enyaq iV"): 7,
    ("Hyundai", "Kona"): 6,
    ("Kia", "e-Niro"): 6,
    ("Nissan", "Leaf"): 5,
    ("Peugeot", "e-208"): 5,
    ("Hyundai", "Ioniq 5"): 5,
    ("Fiat", "500e"): 4,
    ("Kia", "EV6"): 4,
    ("Polestar", "2"): 4,
    ("Audi", "Q4 e-tron"): 4,
    ("Ford", "Mustang Mach e"): 4,
    ("Dacia", "Spring Electric"): 4,
    ("Volkswagen", "e-up"): 4,
    ("BMW", "i3"): 3,
    ("Volkswagen", "e-Golf"): 3,
    ("Mercedes Benz", "EQA"): 3,
    ("CUPRA", "Born"): 3,
    ("MG", "ZS EV"): 3,
    ("Opel", "Corsa-e"): 3,
    ("Peugeot", "e-2008"): 3,
    ("Tesla", "Model S"): 3,
    ("Audi", "e-tron 55"): 2,
    ("Audi", "e-tron 50"): 2,
    ("BMW", "i3S"): 2,
    ("BMW", "iX3"): 2,
    ("Hyundai", "Ioniq"): 2,
    ("Mercedes Benz", "EQC"): 2,
    ("Mini", "Cooper SE"): 2,
    ("Porsche", "Taycan"): 2,
    ("Tesla", "Model X"): 2,
    ("Volvo", "XC40"): 2,
    ("Volkswagen", "Golf GTE"): 2,
    ("Volkswagen", "Passat GTE"): 2,
    ("BMW", "330e"): 2,
    ("Mitsubishi", "Outlander PHEV"): 2,
}
VANS = {
    ("Nissan", "e-NV 200"),
    ("Opel", "Vivaro-e"),
    ("Peugeot", "E-Traveller"),
    ("Peugeot", "Partner"),
    ("Citroen", "Berlingo Electric"),
    ("Citroen", "ë-Spacetourer"),
    ("Mercedes Benz", "EQV"),
    ("Mercedes Benz", "eVito"),
    ("MAN", "e TGE"),
    ("Maxus", "EV80"),
}
EXCLUDED_MODELS = {("Tesla", "Roadster")}  # announced, never delivered
HIGH_VOLTAGE = {("Porsche", "Taycan"), ("Hyundai", "Ioniq 5"), ("Kia", "EV6")}


@dataclass(frozen=True)
class Car:
    car_id: str
    name: str
    battery_kwh: float
    phev: bool
    van: bool
    ac_table: dict[str, float]
    curve: tuple[tuple[float, float], ...]
    volt_800: bool
    weight: float

    @property
    def dc(self) -> bool:
        return bool(self.curve)

    def ac_limit_w(self, rated_w: float) -> float:
        key = AC_KEYS.get(int(rated_w), "11")
        return 1000.0 * float(self.ac_table.get(key, 0.0))

    def curve_w(self, soc: float) -> float:
        pts = self.curve
        if soc <= pts[0][0]:
            return 1000.0 * pts[0][1]
        for (s0, p0), (s1, p1) in pairwise(pts):
            if soc <= s1:
                if s1 <= s0:
                    return 1000.0 * p1
                return 1000.0 * (p0 + (p1 - p0) * (soc - s0) / (s1 - s0))
        return 1000.0 * pts[-1][1]


def _car_from_record(v: dict[str, Any]) -> Car | None:
    key = (str(v["brand"]), str(v["model"]))
    if v.get("vehicle_type") != "car" or key in EXCLUDED_MODELS:
        return None
    dc = v.get("dc_charger") or {}
    curve = tuple(
        (float(p["percentage"]), float(p["power"])) for p in (dc.get("charging_curve") or [])
    )
    phev = v.get("type") == "phev"
    name = f"{v['brand']} {v['model']} {v.get('variant') or ''}".strip()
    base = POPULARITY.get(key, 0.35 if phev else 0.5)
    return Car(
        car_id=str(v["id"]),
        name=f"{name} ({float(v['usable_battery_size']):g} kWh)",
        battery_kwh=float(v["usable_battery_size"]),
        phev=phev,
        van=key in VANS,
        ac_table={k: float(x) for k, x in v["ac_charger"]["power_per_charging_point"].items()},
        curve=curve,
        volt_800=key in HIGH_VOLTAGE,
        weight=base,
    )


def load_cars(path: Path) -> list[Car]:
    """The real vehicles of ev-data.json; a model's weight is shared among its variants."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    cars = [c for c in (_car_from_record(v) for v in data) if c is not None]
    groups: dict[str, int] = defaultdict(int)
    for c in cars:
        groups[_group_key(c)] += 1
    return [replace(c, weight=c.weight / groups[_group_key(c)]) for c in cars]


def _group_key(c: Car) -> str:
    return " ".join(c.name.split(" ")[:3])


def cars_by_id(cars: list[Car]) -> dict[str, Car]:
    return {c.car_id: c for c in cars}


def pack_voltage(volt_800: bool, soc: float) -> float:
    lo, hi = PACK_V_800 if volt_800 else PACK_V_400
    return lo + (hi - lo) * max(0.0, min(100.0, soc)) / 100.0


def charger_limit_w(dc: bool, rated_w: float, i_max: float, volt_800: bool, soc: float) -> float:
    if not dc:
        return rated_w
    return min(rated_w, i_max * pack_voltage(volt_800, soc))


def expected_power_w(car: Car, dc: bool, rated_w: float, i_max: float, soc: float) -> float:
    """What car and charger should deliver at this SoC (no fault, no load management)."""
    if dc:
        return min(car.curve_w(soc), charger_limit_w(True, rated_w, i_max, car.volt_800, soc))
    return min(car.ac_limit_w(rated_w), rated_w)


# ============================================================================ geography, styles
@dataclass(frozen=True)
class City:
    name: str
    code: str
    country: str
    lat: float
    lon: float
    utc_offset_h: int
    weight: float


CITIES = (
    City("Berlin", "BER", "DE", 52.520, 13.405, 1, 3.0),
    City("Hamburg", "HAM", "DE", 53.551, 9.994, 1, 2.0),
    City("Munich", "MUC", "DE", 48.137, 11.576, 1, 2.0),
    City("Cologne", "CGN", "DE", 50.938, 6.960, 1, 1.5),
    City("Amsterdam", "AMS", "NL", 52.370, 4.895, 1, 1.5),
    City("Vienna", "VIE", "AT", 48.208, 16.373, 1, 1.0),
    City("New York", "NYC", "US", 40.713, -74.006, -5, 1.5),
    City("Boston", "BOS", "US", 42.360, -71.059, -5, 1.0),
)


def _hours(spec: str) -> tuple[float, ...]:
    """24 values, local hours 0..23."""
    values = tuple(float(x) for x in spec.split())
    assert len(values) == 24
    return values


# relative arrival intensity per local hour (commuters, shoppers, evening home-comers, depots)
PROFILES: dict[str, tuple[float, ...]] = {
    "street": _hours(".2 .1 .1 .1 .1 .2 .4 .8 1 1 1 1.1 1.1 1.1 1.2 1.4 1.7 2 2.2 2 1.6 1.1 .6 .3"),
    "residential": _hours(
        ".1 .05 .05 .05 .05 .1 .2 .3 .3 .3 .3 .4 .5 .5 .6 .9 1.5 2.5 3 2.8 2.2 1.4 .7 .3"
    ),
    "workplace": _hours("0 0 0 0 0 .2 1.5 4 5 3 1.2 .6 .8 .8 .5 .3 .2 .1 .05 0 0 0 0 0"),
    "retail": _hours(
        "0 0 0 0 0 0 .1 .4 .9 1.3 1.5 1.6 1.6 1.5 1.5 1.6 1.7 1.8 1.7 1.3 .8 .3 .05 0"
    ),
    "hub": _hours(
        ".2 .15 .1 .1 .15 .3 .6 1 1.3 1.4 1.5 1.6 1.7 1.6 1.5 1.5 1.6 1.7 1.5 1.2 1 .7 .5 .3"
    ),
    "depot": _hours("0 0 0 0 0 0 0 0 0 0 .1 .2 .3 .4 .8 2 4 5 3 1 .3 .1 0 0"),
}
MEAN_DWELL_H = {"street": 6.0, "residential": 10.0, "workplace": 7.5, "retail": 1.5, "depot": 11.0}
DC_MEAN_DWELL_H = 0.6
# site kind: (weight, stations min/max, [(rating W, weight)], connectors per station)
SITE_KINDS: dict[str, tuple[float, tuple[int, int], list[tuple[int, float]], tuple[int, int]]] = {
    "street": (3.0, (1, 2), [(11000, 0.5), (22000, 0.5)], (2, 2)),
    "residential": (2.0, (2, 4), [(3700, 0.15), (7400, 0.4), (11000, 0.45)], (1, 1)),
    "workplace": (2.0, (3, 8), [(11000, 0.6), (22000, 0.4)], (1, 2)),
    "retail": (2.0, (2, 6), [(22000, 0.5), (50000, 0.3), (100000, 0.2)], (1, 2)),
    "hub": (1.5, (2, 8), [(150000, 0.5), (350000, 0.5)], (1, 2)),
}
VENDORS = (
    ("ABB", "Terra 184", "1.6"),
    ("Alpitronic", "HYC300", "1.6"),
    ("Kempower", "S-Series", "2.0.1"),
    ("Tritium", "RTM75", "1.6"),
    ("Wallbox", "Commander 2", "1.6"),
    ("Mennekes", "AMTRON Professional", "1.6"),
    ("KEBA", "KeContact P30", "1.6"),
    ("Alfen", "Eve Double Pro-line", "1.6"),
    ("Easee", "Charge Core", "2.0.1"),
    ("ChargePoint", "CT4000", "1.6"),
    ("Compleo", "Cito 500", "1.6"),
    ("Enel X", "JuicePole", "1.6"),
)
ERROR_CODES = (
    "GroundFailure",
    "OverCurrentFailure",
    "EVCommunicationError",
    "ConnectorLockFailure",
)


@dataclass
class Style:
    """How one station reports: sampling, register, units, stamps, ids, delivery."""

    interval_s: float
    aligned: bool
    reg_mode: str  # every | some | startstop
    reg_every: int
    reg_step: int
    reg_float: bool
    power_mode: str  # power | both | iv
    offer: bool
    soc: bool
    ocpp: str
    strings: bool
    zone_local: bool
    utc_offset_h: int
    frac: int
    trunc: int  # 0, 1 or 60 s stamp resolution
    sid: str  # int | uuid | prefix
    vendor: str
    model: str
    firmware: str
    idle_readings: bool
    late_p: float
    buffer_p: float
    heartbeat_s: int
    begin_end: bool
    meter_startstop: bool
    extras: dict[str, Any]

    @property
    def reg_period_s(self) -> float:
        return self.interval_s * (self.reg_every if self.reg_mode == "some" else 1)

    @property
    def res_s(self) -> float:
        return float(max(self.trunc, 1 if self.frac == 0 else 0))

    def summary(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("extras")
        out["extra_keys"] = sorted(self.extras)
        return out


@dataclass
class Site:
    site_id: str
    city: City
    kind: str
    lat: float
    lon: float
    lm: list[tuple[float, float, float]]  # (from, to, level: W if > 1 else share of rating)
    fleet_tags: list[str] = field(default_factory=list)


@dataclass
class Station:
    sid: str
    site: Site
    dc: bool
    rated_w: float
    phases: int
    n_conn: int
    style: Style
    lat: float
    lon: float
    i_max: float
    util: list[float]
    offline: list[tuple[float, float]] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)
    counter: int = 0


def _pick(rng: random.Random, options: list[tuple[Any, float]]) -> Any:
    vals = [o for o, _ in options]
    return rng.choices(vals, weights=[w for _, w in options], k=1)[0]


def _sampling(rng: random.Random, dc: bool) -> tuple[float, bool]:
    if dc:
        opts = [(10, 0.25), (15, 0.15), (20, 0.15), (30, 0.2), (60, 0.15), (300, 0.07), (900, 0.03)]
    else:
        opts = [(10, 0.03), (30, 0.15), (60, 0.35), (300, 0.25), (900, 0.22)]
    iv = float(_pick(rng, opts))
    return iv, iv >= 300


def _register_style(rng: random.Random, dc: bool, rated_w: float) -> tuple[str, int, int, bool]:
    mode = _pick(rng, [("every", 0.6), ("some", 0.25), ("startstop", 0.15)])
    every = rng.randint(2, 4) if mode == "some" else 1
    if dc or rated_w >= 22000:
        step = int(_pick(rng, [(1, 0.5), (10, 0.25), (100, 0.25)]))
    else:
        step = int(_pick(rng, [(1, 0.7), (10, 0.3)]))
    return mode, every, step, step == 1 and rng.random() < 0.2


def _power_mode(rng: random.Random, dc: bool, phases: int) -> str:
    # current/voltage only where V x I is the power without knowing the phases in use
    if dc or phases == 1:
        return str(_pick(rng, [("power", 0.6), ("both", 0.2), ("iv", 0.2)]))
    return str(_pick(rng, [("power", 0.75), ("both", 0.25)]))


def _stamp_style(rng: random.Random, interval_s: float) -> tuple[bool, int, int]:
    zone_local = rng.random() < 0.4
    frac = int(_pick(rng, [(0, 0.4), (3, 0.45), (6, 0.15)]))
    trunc_opts = [(0, 0.7), (1, 0.2)] + ([(60, 0.1)] if interval_s >= 60 else [])
    return zone_local, frac, int(_pick(rng, trunc_opts))


def _extras(rng: random.Random, vendor: str, sid_hint: str) -> dict[str, Any]:
    pool: list[tuple[str, Any]] = [
        ("vendor_id", vendor),
        ("evse_uid", f"{sid_hint}*1"),
        ("context", "Sample.Periodic"),
        ("meter_serial", f"{rng.randrange(10**7, 10**8)}"),
        ("phase_rotation", "RST"),
        ("signed", rng.random() < 0.5),
    ]
    k = rng.randint(0, 3)
    return dict(rng.sample(pool, k))


def make_style(rng: random.Random, dc: bool, rated_w: float, phases: int, city: City) -> Style:
    interval, aligned = _sampling(rng, dc)
    reg_mode, reg_every, reg_step, reg_float = _register_style(rng, dc, rated_w)
    vendor, model, ocpp = rng.choice(VENDORS)
    zone_local, frac, trunc = _stamp_style(rng, interval)
    return Style(
        interval_s=interval,
        aligned=aligned,
        reg_mode=reg_mode,
        reg_every=reg_every,
        reg_step=reg_step,
        reg_float=reg_float,
        power_mode=_power_mode(rng, dc, phases),
        offer=rng.random() < 0.4,
        soc=dc and rng.random() < 0.8,
        ocpp=ocpp,
        strings=ocpp == "1.6" and rng.random() < 0.7,
        zone_local=zone_local,
        utc_offset_h=city.utc_offset_h,
        frac=frac,
        trunc=trunc,
        sid=str(_pick(rng, [("int", 0.4), ("uuid", 0.35), ("prefix", 0.25)])),
        vendor=vendor,
        model=model,
        firmware=f"{rng.randint(1, 6)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        idle_readings=reg_mode != "startstop" and rng.random() < 0.5,
        late_p=float(_pick(rng, [(0.0, 0.5), (0.003, 0.3), (0.01, 0.2)])),
        buffer_p=0.25 if rng.random() < 0.25 else 0.0,
        heartbeat_s=int(rng.choice([300, 600, 900, 1800, 3600])),
        begin_end=rng.random() < 0.5,
        meter_startstop=reg_mode == "startstop" or rng.random() < 0.95,
        extras=_extras(rng, vendor, city.country),
    )


# ============================================================================ time formatting
def fmt_ts(t: float, style: Style) -> str:
    """RFC 3339 as the station writes it: its zone, its fraction digits, its resolution."""
    if style.trunc:
        t = math.floor(t / style.trunc) * style.trunc
    off = style.utc_offset_h if style.zone_local else 0
    d = datetime.fromtimestamp(t, tz=timezone(timedelta(hours=off)))
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if style.frac == 3:
        s += f".{d.microsecond // 1000:03d}"
    elif style.frac == 6:
        s += f".{d.microsecond:06d}"
    return s + ("Z" if off == 0 else f"{off:+03d}:00")


def utc_label(t: float) -> str:
    d = datetime.fromtimestamp(t, tz=UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{d.microsecond // 1000:03d}Z"


def parse_ts(s: Any) -> float | None:
    if not isinstance(s, str) or "T" not in s:
        return None
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None:
        return None
    return d.timestamp()


def local_hour(t: float, city: City) -> float:
    return ((t + city.utc_offset_h * 3600.0) % 86400.0) / 3600.0


# ============================================================================ plan and physics
@dataclass
class Plan:
    """What the driver, the car and the site intend, before any fault."""

    idx: int
    station: Station
    conn: int
    car: Car
    t_plug: float
    t_start: float
    t_flow: float
    soc0: float
    full_soc: float  # the car's own limit (AC charge limit, DC 100)
    dc_target: float  # the DC driver stops here
    t_leave: float  # AC departure, or DC time limit
    eff: float
    car_factor: float
    s_cv: float
    linger_s: float
    stop_reason: str
    unplug_s: float
    temp0: float
    reports_soc: bool
    reports_temp: bool
    soc_dropout: float | None
    rejected_first: str | None
    lm: list[tuple[float, float, float]]
    fleet: bool
    auth_result: str = "Accepted"

    def offer_at(self, t: float) -> float:
        rated = self.station.rated_w
        level = rated
        for a, b, v in self.lm:
            if a <= t < b:
                level = min(level, v if v > 1.0 else v * rated)
        return level


@dataclass
class PhysFaults:
    stall: tuple[float, float, bool] | None = None  # (from, to, driver gives up at the end)
    derate: tuple[float, float, float] | None = None  # (from, to, factor)


@dataclass
class Traj:
    t0: float
    p: list[float]
    e: list[float]
    soc: list[float]
    runs: list[tuple[float, int]]
    t_stop: float
    peak_w: float

    def idx(self, t: float) -> int:
        return max(0, min(len(self.p) - 1, int((t - self.t0) / DT_S)))

    def power(self, t: float) -> float:
        return self.p[self.idx(t)] if self.p else 0.0

    def energy(self, t: float) -> float:
        if not self.p:
            return 0.0
        i = self.idx(t)
        frac = max(0.0, min(DT_S, t - (self.t0 + i * DT_S)))
        return self.e[i] + self.p[i] * frac / 3600.0

    def soc_at(self, t: float) -> float:
        return self.soc[self.idx(t)] if self.soc else 0.0

    @property
    def total_wh(self) -> float:
        return self.energy(self.t_stop)


def limit_table(plan: Plan) -> list[float]:
    """Car x charger limit every 0.5 % SoC (before offer and faults)."""
    st, car = plan.station, plan.car
    out = []
    for k in range(201):
        soc = k / 2.0
        if st.dc:
            w = min(
                car.curve_w(soc) * plan.car_factor,
                charger_limit_w(True, st.rated_w, st.i_max, car.volt_800, soc),
            )
        else:
            w = expected_power_w(car, False, st.rated_w, st.i_max, soc)
            if plan.full_soc >= 100.0 and soc >= plan.s_cv:
                floor = max(AC_TAPER_FLOOR, min(1.0, AC_TAPER_FLOOR_W / max(w, 1.0)))
                w *= 1.0 - (1.0 - floor) * (soc - plan.s_cv) / (100.0 - plan.s_cv)
        out.append(max(0.0, w))
    return out


def target_power(
    plan: Plan, lim: list[float], pf: PhysFaults, t: float, soc: float
) -> tuple[float, int]:
    if t < plan.t_flow:
        return 0.0, PH_HANDSHAKE
    if pf.stall and pf.stall[0] <= t < pf.stall[1]:
        return 0.0, PH_STALL
    if soc >= plan.full_soc:
        return 0.0, PH_FULL
    offer = plan.offer_at(t)
    if offer <= 0.0:
        return 0.0, PH_EVSE
    w = lim[min(200, int(soc * 2.0))]
    if pf.derate and pf.derate[0] <= t < pf.derate[1]:
        w *= pf.derate[2]
    return min(w, offer), PH_CHARGING


def simulate(plan: Plan, pf: PhysFaults) -> Traj:
    """Integrate the battery every DT_S from the start to the stop of the session."""
    lim = limit_table(plan)
    per_pct_wh = plan.car.battery_kwh * 10.0
    alpha = min(1.0, DT_S / (DC_RAMP_TAU_S if plan.station.dc else AC_RAMP_TAU_S))
    t, soc, e, p = plan.t_start, plan.soc0, 0.0, 0.0
    stop_at = min(plan.t_leave, plan.t_start + MAX_SESSION_S)
    if pf.stall and pf.stall[2]:
        stop_at = min(stop_at, pf.stall[1])
    decided = not plan.station.dc
    ps: list[float] = []
    es: list[float] = []
    socs: list[float] = []
    runs: list[tuple[float, int]] = []
    while t < stop_at:
        tgt, ph = target_power(plan, lim, pf, t, soc)
        p = tgt if abs(tgt - p) < 5.0 else p + (tgt - p) * alpha
        if not runs or runs[-1][1] != ph:
            runs.append((t, ph))
        ps.append(p)
        es.append(e)
        socs.append(soc)
        e += p * DT_S / 3600.0
        soc = min(100.0, soc + p * plan.eff * DT_S / 3600.0 / per_pct_wh)
        t += DT_S
        if not decided and soc >= plan.dc_target:
            decided = True
            stop_at = min(stop_at, t + plan.linger_s)
        if ph == PH_FULL and p == 0.0:
            n = max(0, math.ceil((stop_at - t) / DT_S))
            ps.extend([0.0] * n)
            es.extend([e] * n)
            socs.extend([soc] * n)
            t += n * DT_S
            break
    return Traj(plan.t_start, ps, es, socs, runs, t, max(ps, default=0.0))


def pack_temp(plan: Plan, traj: Traj, t: float) -> float:
    """Pack temperature: starts at temp0, warms with the energy put in, levels off near 48 C."""
    e_batt = traj.energy(t) * plan.eff
    rise = 24.0 * (1.0 - math.exp(-e_batt / (0.6 * plan.car.battery_kwh * 1000.0)))
    return min(48.0, plan.temp0 + rise)


# ============================================================================ fault models
@dataclass
class Fault:
    kind: str
    variant: str
    t_a: float
    t_b: float
    params: dict[str, Any]


@dataclass
class MeterOp:
    kind: str  # scale | stuck | reset | jump
    t_a: float
    t_b: float
    value: float
    mode: str = ""


@dataclass
class Mods:
    """Everything that makes the rendered events differ from the physics."""

    meter: list[MeterOp] = field(default_factory=list)
    spike: tuple[float, float] | None = None  # (from, Wh) on one register reading
    kwh_power: bool = False
    gap: tuple[float, float] | None = None
    gap_network: bool = False
    clock: tuple[str, float, float, float] | None = None  # (variant, from, to, offset s)
    soc: tuple[str, float, float, float] | None = None  # (variant, from, to, value)
    stall_status: str | None = None
    stall_window: tuple[float, float] | None = None
    buffered_from: float | None = None


def _op_fn(f: Callable[[float], float], op: MeterOp, base: float) -> Callable[[float], float]:
    a, b = op.t_a, op.t_b
    if op.kind == "scale":
        k = op.value

        def scaled(t: float) -> float:
            return base + k * (f(t) - base)

        return scaled
    if op.kind == "jump":

        def jumped(t: float) -> float:
            return f(t) + (op.value if t >= a else 0.0)

        return jumped
    if op.kind == "reset":
        v_a = f(a)
        drop = v_a - _reset_value(v_a, op)

        def reset(t: float) -> float:
            return f(t) - (drop if t >= a else 0.0)

        return reset
    fa, fb = f(a), f(b)
    held = fb - fa if op.mode == "resume" else 0.0

    def stuck(t: float) -> float:
        if t < a:
            return f(t)
        return fa if t <= b else f(t) - held

    return stuck


def _reset_value(v: float, op: MeterOp) -> float:
    if op.mode == "wrap":  # the leading digit is lost
        return float(v % (10 ** (len(str(int(v))) - 1)))
    if op.mode == "swap":  # another meter answers, with its own, lower register
        return v * op.value
    return 0.0


def display_fn(base: float, traj: Traj, ops: list[MeterOp]) -> Callable[[float], float]:
    def true_reg(t: float) -> float:
        return base + traj.energy(t)

    f: Callable[[float], float] = true_reg
    for op in sorted(ops, key=lambda o: (o.kind != "scale", o.t_a)):
        f = _op_fn(f, op, base)
    return f


def quantize(v: float, style: Style) -> float:
    if style.reg_float:
        return math.floor(v * 10.0) / 10.0
    return float(math.floor(v / style.reg_step) * style.reg_step)


def stamp_fn(mods: Mods) -> Callable[[float], float]:
    if mods.clock is None or mods.clock[0] == "stop_before_start":
        return _identity
    variant, a, b, off = mods.clock
    if variant == "reboot_1970":

        def boot(t: float) -> float:
            return 20.0 + (t - a) if a <= t < b else t

        return boot

    def shifted(t: float) -> float:
        return t + off if a <= t <= b else t

    return shifted


def _identity(t: float) -> float:
    return t


def soc_reported(traj: Traj, mods: Mods, t: float) -> float:
    soc = traj.soc_at(t)
    if mods.soc is not None:
        variant, a, _b, val = mods.soc
        if variant == "fall" and t >= a:
            soc = max(0.0, soc - val)
        elif variant == "jump" and t >= a:
            soc = min(100.0, soc + val)
        elif variant == "stuck" and t >= a:
            soc = traj.soc_at(a)
    return float(math.floor(soc))


def temp_reported(plan: Plan, traj: Traj, mods: Mods, t: float, rng: random.Random) -> float:
    if mods.soc is not None and mods.soc[0] in ("temp_hot", "temp_cold"):
        _v, a, b, val = mods.soc
        if a <= t <= b:
            return val + rng.gauss(0.0, 0.4)
    return pack_temp(plan, traj, t) + rng.gauss(0.0, 0.2)


# ============================================================================ definition checks
# The same code judges a freshly built session (before it is kept) and a whole file (--check).
# It reads events only, plus the session's note for what the car and the station are.
@dataclass
class Rd:
    ts: float
    line: int
    e: float | None
    p: float | None
    offer: float | None
    soc: float | None
    temp: float | None


@dataclass
class View:
    sid: str
    station: str
    conn: int
    tag: str | None = None
    start_ts: float | None = None
    stop_ts: float | None = None
    start_line: int = -1
    stop_line: int = -1
    meter_start: float | None = None
    meter_stop: float | None = None
    readings: list[Rd] = field(default_factory=list)
    statuses: list[tuple[float, int, str]] = field(default_factory=list)
    auths: list[tuple[float, int, str, str]] = field(default_factory=list)
    other_ts: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Ctx:
    rated_w: float
    dc: bool
    i_max: float
    interval_s: float
    reg_step: float
    res_s: float
    car: Car | None
    soc0: float
    eff: float
    win0: float
    win1: float

    @property
    def zero_w(self) -> float:
        return max(ZERO_POWER_W, 0.002 * self.rated_w)


@dataclass
class Finding:
    windows: list[tuple[float, float]] = field(default_factory=list)
    ambiguous: bool = False
    detail: str = ""


def num(x: Any) -> float | None:
    """A JSON number or a numeric string (OCPP 1.6); None when absent or not a number."""
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def reading_of(o: dict[str, Any], ts: float, line: int) -> Rd:
    p = num(o.get("power_w"))
    if p is None:
        i, v = num(o.get("current_a")), num(o.get("voltage_v"))
        p = i * v if i is not None and v is not None else None
    return Rd(
        ts,
        line,
        num(o.get("energy_wh")),
        p,
        num(o.get("power_offered_w")),
        num(o.get("soc_pct")),
        num(o.get("temperature_c")),
    )


@dataclass
class Book:
    """All events of a file (or of one session) grouped for the checks."""

    views: dict[str, View] = field(default_factory=dict)
    statuses: dict[tuple[str, int], list[tuple[float, int, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    auths: dict[str, list[tuple[float, int, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    idle: dict[tuple[str, int], list[Rd]] = field(default_factory=lambda: defaultdict(list))


def _view(book: Book, o: dict[str, Any]) -> View:
    sid = str(o["session_id"])
    v = book.views.get(sid)
    if v is None:
        v = View(sid, str(o.get("station_id")), int(o.get("connector_id") or 0))
        book.views[sid] = v
    return v


def _add_event(book: Book, line: int, o: dict[str, Any]) -> None:
    ts = parse_ts(o.get("ts"))
    if ts is None:
        return
    typ = o.get("type")
    if typ == "reading":
        rd = reading_of(o, ts, line)
        if o.get("session_id") is None:
            book.idle[(str(o["station_id"]), int(o["connector_id"]))].append(rd)
        else:
            _view(book, o).readings.append(rd)
    elif typ == "session_start":
        v = _view(book, o)
        v.start_ts, v.start_line, v.tag = ts, line, str(o.get("id_tag"))
        v.meter_start = num(o.get("meter_start_wh"))
    elif typ == "session_stop":
        v = _view(book, o)
        v.stop_ts, v.stop_line, v.meter_stop = ts, line, num(o.get("meter_stop_wh"))
    elif typ == "status":
        key = (str(o["station_id"]), int(o["connector_id"]))
        book.statuses[key].append((ts, line, str(o["status"])))
    elif typ == "authorize":
        book.auths[str(o["station_id"])].append((ts, line, str(o["id_tag"]), str(o["result"])))


def build_book(items: Iterable[tuple[int, dict[str, Any]]]) -> Book:
    book = Book()
    for line, o in items:
        _add_event(book, line, o)
    for v in book.views.values():
        _attach(book, v)
    return book


def _attach(book: Book, v: View) -> None:
    stamps = [x for x in (v.start_ts, v.stop_ts) if x is not None] + [r.ts for r in v.readings]
    if not stamps:
        return
    lo, hi = min(stamps) - 5.0, max(stamps) + 5.0
    allst = sorted(book.statuses.get((v.station, v.conn), []))
    i = bisect.bisect_left(allst, (lo - 86400.0 * 400, -1, ""))
    v.statuses = [s for s in allst[i:] if s[0] <= hi and s[0] >= lo - 1.0]
    # the status in effect when the session started
    before = [s for s in allst if s[0] < lo]
    if before:
        v.statuses.insert(0, before[-1])
    if v.start_ts is not None:
        v.auths = [
            a for a in book.auths.get(v.station, []) if v.start_ts - 900 <= a[0] <= v.start_ts + 5
        ]


def by_ts(rds: list[Rd]) -> list[Rd]:
    return sorted(rds, key=lambda r: (r.ts, r.line))


def in_session(v: View) -> list[Rd]:
    rds = by_ts(v.readings)
    if v.start_ts is None or v.stop_ts is None:
        return rds
    return [r for r in rds if v.start_ts - 1.0 <= r.ts <= v.stop_ts + 1.0]


def status_at(v: View, t: float) -> str:
    cur = ""
    for ts, _line, s in v.statuses:
        if ts > t:
            break
        cur = s
    return cur


def statuses_between(v: View, a: float, b: float) -> set[str]:
    out = {status_at(v, a)}
    out.update(s for ts, _l, s in v.statuses if a < ts <= b)
    return out


# ---------------------------------------------------------------------------- stall
def find_stalls(v: View, ctx: Ctx) -> Finding:
    rds = [r for r in in_session(v) if r.p is not None]
    offers = [r.offer for r in v.readings if r.offer is not None]
    top_offer = max(offers, default=0.0)
    out = Finding()
    run: list[Rd] = []
    for r in [*rds, None]:
        if r is not None and r.p is not None and r.p <= ctx.zero_w:
            run.append(r)
            continue
        if run:
            _judge_stall_run(run, v, ctx, top_offer, out)
        run = []
    return out


def _judge_stall_run(run: list[Rd], v: View, ctx: Ctx, top_offer: float, out: Finding) -> None:
    span = run[-1].ts - run[0].ts
    if span < STALL_MIN_S * 0.8:
        return
    es = [r.e for r in run if r.e is not None]
    if es and max(es) - min(es) > ctx.reg_step + 0.5:
        return
    if any(r.soc is not None and r.soc >= 95.0 for r in run):
        return
    offers = [r.offer for r in run if r.offer is not None]
    if any(o < 0.9 * top_offer or o <= ctx.zero_w for o in offers):
        return
    if "SuspendedEV" in statuses_between(v, run[0].ts, run[-1].ts):
        return
    if span >= STALL_MIN_S:
        out.windows.append((run[0].ts, run[-1].ts))
    else:
        out.ambiguous = True


# ---------------------------------------------------------------------------- early taper
def soc_estimates(v: View, ctx: Ctx, rds: list[Rd]) -> list[float]:
    """SoC per reading: the larger of the reported one and the energy-based estimates."""
    start = v.start_ts if v.start_ts is not None else (rds[0].ts if rds else 0.0)
    reg0 = v.meter_start
    e_int, last_t, last_p, last_reg = 0.0, start, 0.0, None
    out = []
    for r in rds:
        p = r.p if r.p is not None else last_p
        e_int += (p + last_p) / 2.0 * max(0.0, r.ts - last_t) / 3600.0
        last_t, last_p = r.ts, p
        if r.e is not None:
            last_reg = r.e
            reg0 = r.e if reg0 is None else reg0
        e_reg = (last_reg - reg0) if last_reg is not None and reg0 is not None else 0.0
        cap = ctx.car.battery_kwh * 10.0 if ctx.car else 1e9
        est = ctx.soc0 + max(e_int, e_reg) * ctx.eff / cap
        out.append(max(est, r.soc if r.soc is not None else 0.0))
    return out


def _expected_near(ctx: Ctx, soc: float) -> float:
    """The lowest expectation within +-2.5 % SoC: curves from data have steps, SoC is estimated."""
    assert ctx.car is not None
    lo, hi = max(0.0, soc - 2.5), min(100.0, soc + 2.5)
    # piecewise linear: the minimum is at an edge or at a breakpoint of the curve
    points = [lo, hi] + [s for s, _p in ctx.car.curve if lo < s < hi]
    return min(expected_power_w(ctx.car, ctx.dc, ctx.rated_w, ctx.i_max, x) for x in points)


def _taper_flags(v: View, ctx: Ctx, rds: list[Rd]) -> list[str]:
    assert ctx.car is not None
    start = v.start_ts if v.start_ts is not None else 0.0
    flags = []
    for r, soc in zip(rds, soc_estimates(v, ctx, rds), strict=True):
        ref = _expected_near(ctx, soc)
        if r.offer is not None:
            ref = min(ref, r.offer)
        judged = r.p is not None and r.p > ctx.zero_w and soc < TAPER_MAX_SOC and ref >= 1000.0
        if not judged or r.ts < start + 180.0:
            flags.append("skip")
        else:
            ratio = (r.p or 0.0) / ref
            flags.append(
                "low"
                if ratio <= TAPER_FAULT_RATIO
                else "mid"
                if ratio < TAPER_NORMAL_RATIO
                else "ok"
            )
    return flags


def find_tapers(v: View, ctx: Ctx) -> Finding:
    out = Finding()
    if ctx.car is None or (ctx.dc and not ctx.car.dc):
        return out
    rds = in_session(v)
    flags = _taper_flags(v, ctx, rds)
    run: list[int] = []
    for i, fl in enumerate([*flags, "end"]):
        if fl in ("low", "mid"):
            run.append(i)
            continue
        if run:
            _judge_taper_run([rds[j] for j in run], [flags[j] for j in run], out)
        run = []
    return out


def _judge_taper_run(run: list[Rd], flags: list[str], out: Finding) -> None:
    span = run[-1].ts - run[0].ts
    long_enough = (span >= 300.0 and len(run) >= 3) or (span >= 600.0 and len(run) >= 2)
    if not long_enough:
        return
    if flags.count("low") >= 0.8 * len(flags):
        out.windows.append((run[0].ts, run[-1].ts))
    else:
        out.ambiguous = True


# ---------------------------------------------------------------------------- meter
def _register_points(v: View) -> list[tuple[float, int, float]]:
    pts = [(r.ts, r.line, r.e) for r in v.readings if r.e is not None]
    if v.meter_start is not None and v.start_ts is not None:
        pts.append((v.start_ts, v.start_line, v.meter_start))
    if v.meter_stop is not None and v.stop_ts is not None:
        pts.append((v.stop_ts, v.stop_line, v.meter_stop))
    pts.sort(key=lambda x: (x[0], x[2]))
    return pts


def find_stuck(v: View, ctx: Ctx) -> Finding:
    regs = [r for r in by_ts(v.readings) if r.e is not None]
    out = Finding()
    i = 0
    while i < len(regs):
        j = i
        while j + 1 < len(regs) and abs((regs[j + 1].e or 0.0) - (regs[i].e or 0.0)) < 0.5:
            j += 1
        if j - i >= 2 and regs[j].ts - regs[i].ts >= STUCK_MIN_S:
            _judge_stuck(v, ctx, regs[i].ts, regs[j].ts, out)
        i = j + 1
    return out


def _judge_stuck(v: View, ctx: Ctx, a: float, b: float, out: Finding) -> None:
    inside = [r for r in by_ts(v.readings) if a <= r.ts <= b and r.p is not None]
    if len(inside) < 2:
        return
    energy = sum(
        ((x.p or 0.0) + (y.p or 0.0)) / 2.0 * (y.ts - x.ts) / 3600.0 for x, y in pairwise(inside)
    )
    med = statistics.median(r.p or 0.0 for r in inside)
    if med > max(1000.0, 0.05 * ctx.rated_w) and energy >= 3 * ctx.reg_step + 200.0:
        out.windows.append((a, b))
    elif med > 500.0 and energy >= 2 * ctx.reg_step + 100.0:
        out.ambiguous = True


def find_backwards(v: View, ctx: Ctx) -> Finding:
    """A decrease both in stamp order and in arrival order (late lines are not a decrease)."""
    pts = _register_points(v)
    out = Finding()
    for (ta, la, ea), (tb, lb, eb) in pairwise(pts):
        if eb < ea - 0.5 and la < lb:
            out.windows.append((ta, tb))
    return out


def find_jumps(v: View, ctx: Ctx) -> Finding:
    pts = _register_points(v)
    out = Finding()
    for (ta, la, ea), (tb, lb, eb) in pairwise(pts):
        if la > lb or tb < ta:
            continue
        allowed = ctx.rated_w * (tb - ta + ctx.res_s) / 3600.0 * JUMP_MARGIN + ctx.reg_step + 20.0
        if eb - ea > allowed:
            out.windows.append((ta, tb))
    return out


def register_energy(v: View) -> float | None:
    pts = _register_points(v)
    if len(pts) < 2:
        return None
    return sum(max(0.0, b[2] - a[2]) for a, b in pairwise(pts))


def power_integral(v: View, rds: list[Rd]) -> tuple[float, float]:
    """Trapezoid integral of power over the session (Wh) and a bound of its error."""
    start = v.start_ts if v.start_ts is not None else rds[0].ts
    stop = v.stop_ts if v.stop_ts is not None else rds[-1].ts
    first, last = rds[0], rds[-1]
    fp, lp = first.p or 0.0, last.p or 0.0
    head = max(0.0, first.ts - start)
    tail = max(0.0, stop - last.ts)
    energy = fp * head / 2.0 + lp * tail
    unc = fp * head / 2.0 + lp * tail / 2.0
    for x, y in pairwise(rds):
        dt = y.ts - x.ts
        xp, yp = x.p or 0.0, y.p or 0.0
        energy += (xp + yp) / 2.0 * dt
        unc += abs(xp - yp) / 2.0 * dt
    return energy / 3600.0, unc / 3600.0


def mismatch_ratio(v: View) -> float | None:
    rds = [r for r in in_session(v) if r.p is not None]
    reg = register_energy(v)
    if reg is None or len(rds) < 4:
        return None
    integ, unc = power_integral(v, rds)
    top = max(reg, integ)
    if top < 1000.0 or unc > MISMATCH_MAX_UNCERTAINTY * max(integ, 1.0):
        return None
    return abs(reg - integ) / top


def find_mismatch(v: View, ctx: Ctx) -> Finding:
    ratio = mismatch_ratio(v)
    out = Finding(detail="" if ratio is None else f"{ratio:.3f}")
    if ratio is None:
        return out
    if ratio > MISMATCH_LIMIT:
        out.windows.append((v.start_ts or 0.0, v.stop_ts or 0.0))
    elif ratio > MISMATCH_CLEAN:
        out.ambiguous = True
    return out


# ---------------------------------------------------------------------------- gaps, clock
def find_gaps(v: View, ctx: Ctx) -> Finding:
    out = Finding()
    if v.start_ts is None or v.stop_ts is None:
        return out
    pts = [v.start_ts] + [r.ts for r in in_session(v)] + [v.stop_ts]
    for a, b in pairwise(pts):
        g = b - a
        if g > GAP_INTERVALS * ctx.interval_s and g >= GAP_MIN_S:
            out.windows.append((a, b))
        elif g > 3.5 * ctx.interval_s and g >= 240.0:
            out.ambiguous = True
    return out


def find_clock(v: View, ctx: Ctx) -> Finding:
    out = Finding()
    lo, hi = ctx.win0 - PLAUSIBLE_PAST_S, ctx.win1 + PLAUSIBLE_FUTURE_S
    stamps = [r.ts for r in v.readings] + v.other_ts
    stamps += [x for x in (v.start_ts, v.stop_ts) if x is not None]
    bad = [t for t in stamps if t < lo or t > hi]
    if bad:
        out.windows.append((min(bad), max(bad)))
        out.detail = "implausible year"
    if v.start_ts is not None:
        early = [r.ts for r in v.readings if r.ts < v.start_ts - ctx.res_s - 1.0]
        if early or (v.stop_ts is not None and v.stop_ts < v.start_ts - ctx.res_s - 1.0):
            out.windows.append((v.start_ts, v.start_ts))
            out.detail += " before start"
    pts = _register_points(v)
    for (ta, la, ea), (tb, lb, eb) in pairwise(pts):
        if eb < ea - ctx.reg_step - 0.5 and la > lb:
            out.windows.append((ta, tb))
            out.detail += " stamps contradict the register"
            break
    return out


# ---------------------------------------------------------------------------- auth, soc
def session_energy(v: View) -> float:
    reg = register_energy(v) or 0.0
    rds = [r for r in in_session(v) if r.p is not None]
    integ = power_integral(v, rds)[0] if rds else 0.0
    return max(reg, integ)


def find_unauth(v: View, ctx: Ctx) -> Finding:
    out = Finding()
    mine = [a for a in v.auths if a[2] == v.tag and (v.start_ts is None or a[0] <= v.start_ts + 5)]
    if not mine:
        out.ambiguous = True
        out.detail = "no authorize for the tag"
        return out
    result = max(mine)[3]
    if result != "Accepted" and session_energy(v) > 100.0:
        out.windows.append((v.start_ts or 0.0, v.stop_ts or 0.0))
        out.detail = result
    return out


def _cumulative_energy(v: View, rds: list[Rd]) -> list[tuple[float, float]]:
    """(integral, register) Wh since the start for each reading."""
    e_int, last_t, last_p = 0.0, v.start_ts or (rds[0].ts if rds else 0.0), 0.0
    reg0, last_reg = v.meter_start, v.meter_start
    out = []
    for r in rds:
        p = r.p if r.p is not None else last_p
        e_int += (p + last_p) / 2.0 * max(0.0, r.ts - last_t) / 3600.0
        last_t, last_p = r.ts, p
        if r.e is not None:
            reg0 = r.e if reg0 is None else reg0
            last_reg = r.e
        out.append((e_int, (last_reg or 0.0) - (reg0 or 0.0)))
    return out


def find_soc(v: View, ctx: Ctx) -> Finding:
    out = Finding()
    rds = in_session(v)
    cum = _cumulative_energy(v, rds)
    socs = [(r, c) for r, c in zip(rds, cum, strict=True) if r.soc is not None]
    for (ra, ca), (rb, cb) in pairwise(socs):
        _judge_soc_pair(ra, ca, rb, cb, ctx, out)
    _judge_soc_flat(socs, out)
    for r in rds:
        if r.temp is None or r.p is None or r.p <= ctx.zero_w:
            continue
        if r.temp > TEMP_MAX_C or r.temp < TEMP_MIN_C:
            out.windows.append((r.ts, r.ts))
        elif r.temp > TEMP_MAX_C - 5 or r.temp < TEMP_MIN_C + 5:
            out.ambiguous = True
    return out


def _judge_soc_pair(
    ra: Rd, ca: tuple[float, float], rb: Rd, cb: tuple[float, float], ctx: Ctx, out: Finding
) -> None:
    assert ra.soc is not None and rb.soc is not None
    d_soc = rb.soc - ra.soc
    flowing = (ra.p or 0.0) > ctx.zero_w and (rb.p or 0.0) > ctx.zero_w
    if d_soc <= -2.0 and flowing:
        out.windows.append((ra.ts, rb.ts))
        return
    # the most energy that can have flowed between the two readings
    top_w = max(ra.p or 0.0, rb.p or 0.0)
    de_kwh = max(cb[0] - ca[0], cb[1] - ca[1], top_w * (rb.ts - ra.ts) / 3600.0, 0.0) / 1000.0
    allowed = 100.0 * de_kwh / SOC_MIN_BATTERY_KWH + 3.0
    if d_soc > allowed:
        out.windows.append((ra.ts, rb.ts))
    elif d_soc > 0.7 * allowed and d_soc > 5.0:
        out.ambiguous = True


def _judge_soc_flat(socs: list[tuple[Rd, tuple[float, float]]], out: Finding) -> None:
    i = 0
    while i < len(socs):
        j = i
        while j + 1 < len(socs) and socs[j + 1][0].soc == socs[i][0].soc:
            j += 1
        if j > i:
            lo = min(socs[j][1][0] - socs[i][1][0], socs[j][1][1] - socs[i][1][1]) / 1000.0
            hi = max(socs[j][1][0] - socs[i][1][0], socs[j][1][1] - socs[i][1][1]) / 1000.0
            if lo >= SOC_STUCK_KWH:
                out.windows.append((socs[i][0].ts, socs[j][0].ts))
            elif hi >= 0.6 * SOC_STUCK_KWH:
                out.ambiguous = True
        i = j + 1


def evaluate(v: View, ctx: Ctx) -> dict[str, Finding]:
    """Every per-session definition of CONTRACTS section 3, judged on the events."""
    res = {"clock_fault": find_clock(v, ctx)}
    clock = bool(res["clock_fault"].windows)
    timed: dict[str, Callable[[View, Ctx], Finding]] = {
        "stall": find_stalls,
        "early_taper": find_tapers,
        "meter_stuck": find_stuck,
        "meter_jump": find_jumps,
        "meter_mismatch": find_mismatch,
        "data_gap": find_gaps,
        "soc_inconsistent": find_soc,
    }
    for kind, fn in timed.items():
        res[kind] = Finding() if clock else fn(v, ctx)
    res["meter_backwards"] = find_backwards(v, ctx)
    res["unauthorized_energy"] = find_unauth(v, ctx)
    return res


# ============================================================================ building one session
@dataclass
class Attempt:
    plan: Plan
    rng: random.Random
    traj: Traj
    pf: PhysFaults = field(default_factory=PhysFaults)
    mods: Mods = field(default_factory=Mods)
    faults: list[Fault] = field(default_factory=list)
    offline: list[tuple[float, float]] = field(default_factory=list)


def charge_times(
    traj: Traj, lo: float, hi: float, frac: float, soc_max: float, soc_min: float = 0.0
) -> list[float]:
    """Times (30 s apart) where the car draws >= frac of its peak, between two SoC bounds."""
    out = []
    thr = frac * traj.peak_w
    t = max(lo, traj.t0)
    end = min(hi, traj.t_stop)
    while t < end:
        i = traj.idx(t)
        if traj.p[i] >= thr > 0.0 and soc_min <= traj.soc[i] < soc_max:
            out.append(t)
        t += 30.0
    return out


def flowing(traj: Traj, a: float, b: float, frac: float) -> bool:
    thr = frac * traj.peak_w
    i, j = traj.idx(a), traj.idx(b)
    if b > traj.t_stop or thr <= 0.0:
        return False
    return all(traj.p[k] >= thr for k in range(i, j + 1, 5))


def _choose_flowing(
    at: Attempt, lo: float, hi: float, dur: float, frac: float = 0.2
) -> float | None:
    cands = charge_times(at.traj, lo, hi - dur, frac, 101.0)
    at.rng.shuffle(cands)
    for a in cands[:40]:
        if flowing(at.traj, a, a + dur, frac):
            return a
    return None


def make_stall(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    iv = plan.station.style.interval_s
    dur = max(rng.uniform(12.0, 80.0) * 60.0, STALL_MIN_S + 2.5 * iv + 90.0)
    give_up = rng.random() < 0.35
    cands = charge_times(
        traj, plan.t_flow + 180.0, traj.t_stop - (60.0 if give_up else 300.0), 0.3, 85.0
    )
    if not cands:
        return False
    a = rng.choice(cands)
    status = "SuspendedEVSE" if rng.random() < 0.4 else "Charging"
    at.pf.stall = (a, a + dur, give_up)
    at.mods.stall_status, at.mods.stall_window = status, (a, a + dur)
    if give_up:
        at.plan = _replace(at.plan, stop_reason="Local", unplug_s=rng.uniform(20.0, 120.0))
    causes = (
        ["power module dropped out, no error reported", "isolation monitor re-check loop"]
        if plan.station.dc
        else ["contactor opened without a Faulted status", "pilot signal stuck in state B"]
    )
    at.faults.append(
        Fault(
            "stall",
            "gives_up" if give_up else "resumes",
            a,
            a + dur,
            {
                "duration_min": round(dur / 60.0, 1),
                "status_shown": status,
                "soc_at_start": round(traj.soc_at(a), 1),
                "cause": rng.choice(causes),
                "offer_unchanged": True,
            },
        )
    )
    return True


def make_taper(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    iv = plan.station.style.interval_s
    factor = rng.uniform(0.3, 0.6)
    cands = charge_times(
        traj, plan.t_flow + 300.0, traj.t_stop - 600.0, 0.5, 72.0 if plan.station.dc else 85.0
    )
    if not cands:
        return False
    a = rng.choice(cands)
    to_end = rng.random() < 0.5
    b = math.inf if to_end else a + max(rng.uniform(15.0, 60.0) * 60.0, 4 * iv + 300.0)
    at.pf.derate = (a, b, factor)
    causes = (
        ["one of the power modules failed", "cable thermal derating", "cold battery, no preheat"]
        if plan.station.dc
        else ["wallbox thermal derating", "one phase lost (fuse)"]
    )
    at.faults.append(
        Fault(
            "early_taper",
            "to_end" if to_end else "temporary",
            a,
            b,
            {
                "factor": round(factor, 3),
                "soc_at_start": round(traj.soc_at(a), 1),
                "expected_w_at_start": round(
                    expected_power_w(
                        plan.car,
                        plan.station.dc,
                        plan.station.rated_w,
                        plan.station.i_max,
                        traj.soc_at(a),
                    )
                ),
                "cause": rng.choice(causes),
                "offer_unchanged": True,
            },
        )
    )
    return True


def _jump_size(at: Attempt) -> float | None:
    st = at.plan.station
    sty = st.style
    allowed = st.rated_w * (sty.reg_period_s + sty.res_s) / 3600.0 * JUMP_MARGIN + sty.reg_step + 20
    size = max(2000.0, 2.5 * allowed) * at.rng.uniform(1.0, 2.0)
    return None if size > 400_000.0 else size


def make_stuck(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    sty = plan.station.style
    if sty.reg_mode == "startstop":
        return False
    dur = max(rng.uniform(6.0, 45.0) * 60.0, 4 * sty.reg_period_s + 180.0)
    a = _choose_flowing(at, plan.t_flow + 120.0, traj.t_stop - 30.0, dur)
    if a is None:
        return False
    mode = str(_pick(rng, [("resume", 0.45), ("catchup", 0.35), ("until_stop", 0.2)]))
    b = traj.t_stop if mode == "until_stop" else a + dur
    at.mods.meter.append(MeterOp("stuck", a, b, 0.0, mode))
    at.faults.append(
        Fault(
            "meter_stuck",
            mode,
            a,
            b,
            {
                "duration_min": round((b - a) / 60.0, 1),
                "power_w_at_start": round(traj.power(a)),
                "cause": "meter's pulse counter frozen (firmware); power read from another "
                "register",
            },
        )
    )
    return True


def make_backwards(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    sty = plan.station.style
    opts = [("reset", 0.35), ("wrap", 0.2), ("swap", 0.2)]
    if sty.reg_mode != "startstop":
        opts.append(("spike", 0.25))
    variant = str(_pick(rng, opts))
    lo, hi = plan.t_start + 120.0, traj.t_stop - max(2 * sty.reg_period_s, 120.0)
    if hi <= lo:
        return False
    a = rng.uniform(lo, hi)
    params: dict[str, Any] = {}
    if variant == "spike":
        size = _jump_size(at)
        if size is None:
            return False
        at.mods.spike = (a, size)
        params["spike_wh"] = round(size)
    else:
        frac = rng.uniform(0.02, 0.5)
        at.mods.meter.append(MeterOp("reset", a, a, frac, variant))
        params["new_value"] = {
            "reset": "0 Wh (meter power-cycled)",
            "wrap": "leading digit lost (counter overflow)",
            "swap": f"{frac:.2f} x old (a second meter answers)",
        }[variant]
    at.faults.append(
        Fault("meter_backwards", variant, a, min(traj.t_stop, a + sty.reg_period_s + 60), params)
    )
    return True


def make_jump(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    sty = plan.station.style
    size = _jump_size(at)
    if sty.reg_mode == "startstop" or size is None:
        return False
    lo, hi = plan.t_start + 60.0, traj.t_stop - 2 * sty.reg_period_s - 30.0
    if hi <= lo:
        return False
    a = rng.uniform(lo, hi)
    spike = rng.random() < 0.3
    if spike:
        at.mods.spike = (a, size)
    else:
        at.mods.meter.append(MeterOp("jump", a, a, size))
    at.faults.append(
        Fault(
            "meter_jump",
            "spike" if spike else "persistent",
            a,
            min(traj.t_stop, a + sty.reg_period_s + 60.0),
            {
                "step_wh": round(size),
                "rating_allows_wh": round(plan.station.rated_w * sty.reg_period_s / 3600),
                "cause": "corrupt meter read (bit error in the high word)",
            },
        )
    )
    return True


def make_mismatch(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    sty = plan.station.style
    params: dict[str, Any]
    if sty.power_mode == "power" and rng.random() < 0.2:
        at.mods.kwh_power = True
        variant, params = "power_in_kw", {"cause": "power sent in kW in the W field"}
    else:
        k = rng.uniform(0.72, 0.82) if rng.random() < 0.5 else rng.uniform(1.2, 1.32)
        at.mods.meter.append(MeterOp("scale", plan.t_start, plan.t_start, k))
        variant, params = "scale", {"factor": round(k, 3), "cause": "wrong CT ratio / calibration"}
    at.faults.append(Fault("meter_mismatch", variant, plan.t_start, traj.t_stop, params))
    return True


def make_gap(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    iv = plan.station.style.interval_s
    gap = max(rng.uniform(6.0, 45.0) * 60.0, GAP_INTERVALS * iv * rng.uniform(1.4, 2.2), 450.0)
    lo, hi = plan.t_start + iv + 30.0, traj.t_stop - iv - gap - 30.0
    if hi <= lo:
        return False
    a = rng.uniform(lo, hi)
    network = rng.random() < 0.5
    at.mods.gap, at.mods.gap_network = (a, a + gap), network
    if network:
        at.offline.append((a, a + gap))
    at.faults.append(
        Fault(
            "data_gap",
            "network_loss" if network else "meter_bus_timeout",
            a,
            a + gap,
            {"gap_min": round(gap / 60.0, 1), "intervals": round(gap / iv, 1), "buffered": False},
        )
    )
    return True


def make_clock(at: Attempt) -> bool:
    plan, traj, rng = at.plan, at.traj, at.rng
    variant = str(
        _pick(
            rng,
            [
                ("reboot_1970", 0.25),
                ("future", 0.2),
                ("step_back", 0.25),
                ("stop_before_start", 0.15),
                ("tail_before_start", 0.15),
            ],
        )
    )
    end = traj.t_stop + plan.unplug_s + 5.0
    spec = _clock_spec(at, variant, end)
    if spec is None:
        return False
    at.mods.clock = spec
    a, b, off = spec[1], spec[2], spec[3]
    at.faults.append(
        Fault(
            "clock_fault",
            variant,
            a,
            min(b, traj.t_stop),
            {"offset_s": round(off), "window_true_utc": [utc_label(a), utc_label(min(b, end))]},
        )
    )
    return True


def _clock_spec(at: Attempt, variant: str, end: float) -> tuple[str, float, float, float] | None:
    plan, traj, rng = at.plan, at.traj, at.rng
    sty = plan.station.style
    t0, t1 = plan.t_start, traj.t_stop
    if variant == "reboot_1970":
        if t1 - t0 < 900.0:
            return None
        a = rng.uniform(t0 + 120.0, t1 - 300.0)
        return variant, a, min(a + rng.uniform(3.0, 20.0) * 60.0, t1 - 30.0), 0.0
    if variant == "future":
        off = rng.uniform(2.0, 12.0) * 365.25 * 86400.0
        a = (
            plan.t_plug - 5.0
            if rng.random() < 0.4 or t1 - t0 < 300
            else rng.uniform(t0 + 60, t1 - 120)
        )
        return variant, a, end, off
    if variant == "step_back":
        back = max(4 * sty.reg_period_s, rng.uniform(3.0, 40.0) * 60.0)
        start = (
            _choose_flowing(at, plan.t_flow + 60.0, t1, back)
            if sty.reg_mode != "startstop"
            else None
        )
        return None if start is None else (variant, start, end, -back)
    if variant == "stop_before_start":
        return variant, t1, t1, rng.uniform(120.0, 3 * 3600.0)
    if t1 - t0 < 600.0:
        return None
    a = rng.uniform(t0 + 300.0, t1 - 60.0)
    return variant, a, end, -((a - t0) + rng.uniform(5.0, 60.0) * 60.0)


def make_unauth(at: Attempt) -> bool:
    result = at.rng.choice(["Invalid", "Blocked", "Expired"])
    at.plan = _replace(at.plan, auth_result=result, rejected_first=None)
    at.faults.append(
        Fault(
            "unauthorized_energy",
            "rejected_card_charged",
            at.plan.t_start,
            at.traj.t_stop,
            {
                "result": result,
                "mechanism": "station ignores the result (offline local authorization / free-vend)",
            },
        )
    )
    return True


def make_soc(at: Attempt) -> bool:
    plan = at.plan
    if not (plan.station.dc and plan.station.style.soc and plan.reports_soc):
        return False
    variants = ["fall", "jump", "stuck", "temp_hot", "temp_cold"]
    at.rng.shuffle(variants)
    return any(_soc_variant(at, v) for v in variants)


def _soc_variant(at: Attempt, variant: str) -> bool:
    plan, traj = at.plan, at.traj
    iv = plan.station.style.interval_s
    lo, hi = plan.t_start + 2 * iv + 60.0, traj.t_stop - 3 * iv - 60.0
    spec = _soc_spec(at, variant, lo, hi, iv)
    if spec is None:
        return False
    _v, a, b, val = spec
    at.mods.soc = spec
    if variant.startswith("temp"):
        at.plan = _replace(at.plan, reports_temp=True)
    at.plan = _replace(at.plan, soc_dropout=None)
    end = min(b, traj.t_stop)
    if variant in ("fall", "jump"):
        end = min(traj.t_stop, a + iv + 1.0)
    at.faults.append(
        Fault(
            "soc_inconsistent",
            variant,
            a - (iv if variant in ("fall", "jump") else 0),
            end,
            {"value": round(val, 1), "soc_at_start": round(traj.soc_at(a), 1)},
        )
    )
    return True


def _soc_spec(
    at: Attempt, variant: str, lo: float, hi: float, iv: float
) -> tuple[str, float, float, float] | None:
    traj, rng = at.traj, at.rng
    if variant == "fall":
        cands = charge_times(traj, lo, hi, 0.3, 95.0, soc_min=12.0)
        if not cands:
            return None
        a = rng.choice(cands)
        return variant, a, math.inf, rng.uniform(6.0, min(25.0, traj.soc_at(a) - 2.0))
    if variant == "jump":
        per_iv = 100.0 * traj.peak_w * iv / 3.6e6 / SOC_MIN_BATTERY_KWH + 3.0
        size = max(20.0, 1.6 * per_iv + 8.0)
        cands = charge_times(traj, lo, hi, 0.3, 99.0 - size)
        return None if not cands or size > 60.0 else (variant, rng.choice(cands), math.inf, size)
    if variant == "stuck":
        need = 28000.0
        cands = [
            t
            for t in charge_times(traj, lo, hi, 0.3, 95.0)
            if traj.total_wh - traj.energy(t) >= need
        ]
        return (
            None
            if not cands
            else (variant, rng.choice(cands[: max(1, len(cands) // 3)]), math.inf, 0.0)
        )
    dur = max(rng.uniform(5.0, 30.0) * 60.0, 2 * iv + 60.0)
    t_a = _choose_flowing(at, lo, hi, dur, 0.1)
    if t_a is None:
        return None
    val = rng.uniform(62.0, 85.0) if variant == "temp_hot" else rng.uniform(-40.0, -28.0)
    return variant, t_a, t_a + dur, val


def _replace(plan: Plan, **changes: Any) -> Plan:
    new = Plan(**{**plan.__dict__, **changes})
    return new


PHYS_MAKERS: dict[str, Callable[[Attempt], bool]] = {"stall": make_stall, "early_taper": make_taper}
OTHER_MAKERS: dict[str, Callable[[Attempt], bool]] = {
    "meter_stuck": make_stuck,
    "meter_backwards": make_backwards,
    "meter_jump": make_jump,
    "meter_mismatch": make_mismatch,
    "data_gap": make_gap,
    "clock_fault": make_clock,
    "unauthorized_energy": make_unauth,
    "soc_inconsistent": make_soc,
}


def eligible(kind: str, plan: Plan) -> bool:
    sty = plan.station.style
    if kind in ("meter_stuck", "meter_jump"):
        return sty.reg_mode != "startstop"
    if kind == "soc_inconsistent":
        return plan.station.dc and sty.soc and plan.reports_soc
    if kind == "early_taper":
        return plan.car.dc or not plan.station.dc
    return True


@dataclass
class Session:
    plan: Plan
    sid: str
    traj: Traj
    faults: list[Fault]
    mods: Mods
    reg_start: float
    reg_end: float
    t_unplug: float
    offline: list[tuple[float, float]]
    events: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)
    labels: list[tuple[str, float, float]] = field(default_factory=list)
    consequences: list[str] = field(default_factory=list)
    traps: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    want_concurrent: bool = False
    partner: str | None = None
    tag: str = ""
    rej_tag: str = ""

    @property
    def t_start(self) -> float:
        return self.plan.t_start

    @property
    def t_stop(self) -> float:
        return self.traj.t_stop


def fmt_num(style: Style, x: float, nd: int) -> Any:
    v: Any = round(x) if nd == 0 else round(x, nd)
    return str(v) if style.strings else v


class Renderer:
    """Turns one session (physics + faults) into the events its station sends."""

    def __init__(self, s: Session, rng: random.Random) -> None:
        self.s = s
        self.rng = rng
        self.st = s.plan.station
        self.sty = self.st.style
        self.stamp = stamp_fn(s.mods)
        self.disp = display_fn(s.reg_start, s.traj, s.mods.meter)
        self.out: list[tuple[float, float, dict[str, Any]]] = []
        self.v_bias = rng.uniform(-3.0, 4.0)
        car, rated = s.plan.car, self.st.rated_w
        amps = rated / (AC_VOLTAGE * max(1, self.st.phases))
        self.ph_used = (
            1
            if self.st.phases == 1
            else min(3, max(1, round(car.ac_limit_w(rated) / (AC_VOLTAGE * amps))))
        )

    def ts(self, t: float) -> str:
        return fmt_ts(self.stamp(t), self.sty)

    def base(self, typ: str, t: float) -> dict[str, Any]:
        return {"type": typ, "ts": self.ts(t), "station_id": self.st.sid}

    def emit(self, t: float, obj: dict[str, Any], delay: float | None = None) -> None:
        d = self.rng.uniform(0.05, 1.2) if delay is None else delay
        self.out.append((t, t + d, obj))

    def register(self, t: float) -> float:
        return quantize(self.disp(t), self.sty)

    def meter_value(self, t: float) -> float | int:
        """meter_start/stop: a JSON number at the register's own resolution."""
        v = self.register(t)
        return round(v, 1) if self.sty.reg_float else int(v)

    def reg_value(self, v: float) -> Any:
        if self.sty.reg_float:
            return fmt_num(self.sty, v, 1)
        return fmt_num(self.sty, v, 0)

    def run(self) -> list[tuple[float, float, dict[str, Any]]]:
        self.pre_events()
        self.status_events()
        self.reading_events()
        self.post_events()
        self.station_side_events()
        self.out.sort(key=lambda x: x[1])
        return self.out

    # -- around the session
    def pre_events(self) -> None:
        p, s = self.s.plan, self.s
        self.emit(
            p.t_plug,
            {
                **self.base("status", p.t_plug),
                "connector_id": p.conn,
                "status": "Preparing",
                "error_code": "NoError",
            },
        )
        if p.rejected_first:
            t = p.t_plug + self.rng.uniform(3.0, 10.0)
            self.emit(t, {**self.base("authorize", t), "id_tag": "REJ", "result": p.rejected_first})
        t = p.t_start - self.rng.uniform(0.5, 2.0)
        self.emit(t, {**self.base("authorize", t), "id_tag": "TAG", "result": p.auth_result}, 0.1)
        obj = {
            **self.base("session_start", p.t_start),
            "connector_id": p.conn,
            "session_id": s.sid,
            "id_tag": "TAG",
        }
        if self.sty.meter_startstop:
            obj["meter_start_wh"] = self.meter_value(p.t_start)
        self.emit(p.t_start, obj, 0.3)

    def post_events(self) -> None:
        p, s = self.s.plan, self.s
        t = s.t_stop
        obj = {**self.base("session_stop", t), "connector_id": p.conn, "session_id": s.sid}
        if s.mods.clock is not None and s.mods.clock[0] == "stop_before_start":
            obj["ts"] = fmt_ts(p.t_start - s.mods.clock[3], self.sty)
        if self.sty.meter_startstop:
            obj["meter_stop_wh"] = self.meter_value(t)
        obj["reason"] = p.stop_reason
        self.emit(t, obj, 0.4)
        for tt, status in ((t + 0.8, "Finishing"), (s.t_unplug, "Available")):
            self.emit(
                tt,
                {
                    **self.base("status", tt),
                    "connector_id": p.conn,
                    "status": status,
                    "error_code": "NoError",
                },
            )

    def status_events(self) -> None:
        s = self.s
        mapping = {
            PH_CHARGING: "Charging",
            PH_EVSE: "SuspendedEVSE",
            PH_FULL: "SuspendedEV",
            PH_STALL: s.mods.stall_status or "Charging",
        }
        prev = "Preparing"
        runs = [*s.traj.runs, (s.t_stop, -1)]
        for (t, ph), (t_next, _) in pairwise(runs):
            status = mapping.get(ph)
            if status is None or status == prev or (t_next - t < 20.0 and ph != PH_FULL):
                continue
            tt = t + 0.5
            self.emit(
                tt,
                {
                    **self.base("status", tt),
                    "connector_id": s.plan.conn,
                    "status": status,
                    "error_code": "NoError",
                },
            )
            prev = status

    def station_side_events(self) -> None:
        m = self.s.mods
        if m.gap is not None and m.gap_network:
            a, b = m.gap
            self.emit(
                a + 60.0,
                {
                    **self.base("station", a + 60.0),
                    "event": "disconnect",
                    "reason": "websocket ping timeout",
                },
            )
            self.emit(b, {**self.base("station", b), "event": "connect"})
        if m.clock is not None and m.clock[0] == "reboot_1970":
            a = m.clock[1]
            self.emit(
                a,
                {
                    **self.base("station", a),
                    "event": "boot",
                    "vendor": self.sty.vendor,
                    "model": self.sty.model,
                    "firmware": self.sty.firmware,
                    "ocpp_version": self.sty.ocpp,
                    "reason": "Watchdog",
                },
            )
            self.emit(a + 25.0, {**self.base("station", a + 25.0), "event": "connect"})

    # -- readings
    def sample_times(self) -> list[tuple[float, str]]:
        s, sty, rng = self.s, self.sty, self.rng
        t0, t1, iv = s.t_start, s.t_stop, sty.interval_s
        out: list[tuple[float, str]] = []
        if sty.begin_end:
            out.append((t0 + 0.5, "Transaction.Begin"))
        if sty.aligned:
            t = math.ceil((t0 + 1.0) / iv) * iv
            jit = 0.0
        else:
            t = t0 + rng.uniform(0.2, iv)
            jit = 0.0 if sty.trunc >= 60 else 0.4
        missing, prev_missing = 0, False
        while t < t1 - 0.6:
            gap = s.mods.gap
            if gap is not None and gap[0] < t < gap[1]:
                t += iv
                continue
            if not prev_missing and rng.random() < 0.01:
                prev_missing = True
                missing += 1
            else:
                prev_missing = False
                out.append(
                    (
                        t + rng.uniform(0.0, jit),
                        "Sample.Clock" if sty.aligned else "Sample.Periodic",
                    )
                )
            t += iv
        if sty.begin_end:
            out.append((t1 - 0.3, "Transaction.End"))
        self.s.traps["single_missing_samples"] = missing
        return out

    def reading_events(self) -> None:
        s, sty = self.s, self.sty
        spike = s.mods.spike
        late = 0
        for n, (t, context) in enumerate(self.sample_times()):
            obj = {**self.base("reading", t), "connector_id": s.plan.conn, "session_id": s.sid}
            periodic = context.startswith("Sample")
            if sty.reg_mode == "every" or (
                sty.reg_mode == "some" and (n % sty.reg_every == 0 or not periodic)
            ):
                v = self.disp(t)
                if spike is not None and t >= spike[0]:
                    v += spike[1]
                    spike = None
                obj["energy_wh"] = self.reg_value(quantize(v, sty))
            self.add_electrical(obj, t)
            self.add_battery(obj, t)
            for k, x in sty.extras.items():
                obj[k] = context if k == "context" else x
            delay = self.delivery_delay(t, periodic)
            late += delay > sty.interval_s
            self.emit(t, obj, delay)
        if late:
            s.traps["late_readings"] = late

    def delivery_delay(self, t: float, periodic: bool) -> float:
        s, sty, rng = self.s, self.sty, self.rng
        if s.mods.buffered_from is not None and t >= s.mods.buffered_from:
            return s.t_stop - t + 3.0 + (t - s.mods.buffered_from) * 1e-3
        if periodic and sty.late_p and rng.random() < sty.late_p:
            return min(240.0, rng.uniform(1.3, 3.5) * sty.interval_s)
        return rng.uniform(0.1, 1.5)

    def add_electrical(self, obj: dict[str, Any], t: float) -> None:
        s, sty, rng = self.s, self.sty, self.rng
        p_true = s.traj.power(t)
        p = p_true * (1.0 + rng.gauss(0.0, NOISE_REL)) if p_true > 1.0 else 0.0
        nd = 1 if sty.frac == 6 else 0
        if sty.power_mode in ("power", "both"):
            obj["power_w"] = fmt_num(
                sty, p / 1000.0 if s.mods.kwh_power else p, 3 if s.mods.kwh_power else nd
            )
        if sty.offer:
            obj["power_offered_w"] = fmt_num(sty, s.plan.offer_at(t), 0)
        if sty.power_mode in ("iv", "both"):
            if self.st.dc:
                volts = pack_voltage(s.plan.car.volt_800, s.traj.soc_at(t)) + rng.gauss(0.0, 0.5)
                amps = p / volts
            else:
                volts = AC_VOLTAGE + self.v_bias + rng.gauss(0.0, 0.8)
                amps = p / (volts * self.ph_used)
            obj["current_a"] = fmt_num(sty, amps, 2)
            obj["voltage_v"] = fmt_num(sty, volts, 1)

    def add_battery(self, obj: dict[str, Any], t: float) -> None:
        s, sty, p = self.s, self.sty, self.s.plan
        if not (self.st.dc and sty.soc):
            return
        if p.soc_dropout is not None and t >= p.soc_dropout:
            return
        if p.reports_soc:
            obj["soc_pct"] = fmt_num(sty, soc_reported(s.traj, s.mods, t), 0)
        if p.reports_temp:
            obj["temperature_c"] = fmt_num(sty, temp_reported(p, s.traj, s.mods, t, self.rng), 1)


def note_of(fleet: Fleet, s: Session) -> dict[str, Any]:
    p, st = s.plan, s.plan.station
    sty = st.style.summary()
    sty["res_s"] = st.style.res_s
    sty["reg_resolution_wh"] = 0.1 if st.style.reg_float else st.style.reg_step
    return {
        "session_id": s.sid,
        "station_id": st.sid,
        "connector_id": p.conn,
        "car": p.car.name,
        "car_id": p.car.car_id,
        "station": {
            "kind": "DC" if st.dc else "AC",
            "rated_w": st.rated_w,
            "phases": st.phases,
            "i_max_a": st.i_max,
            "site_id": st.site.site_id,
            "site_kind": st.site.kind,
            "city": st.site.city.name,
        },
        "style": sty,
        "physics": {
            "soc0": round(p.soc0, 2),
            "efficiency": round(p.eff, 4),
            "car_factor": round(p.car_factor, 3),
            "full_soc": p.full_soc,
            "dc_target": round(p.dc_target, 1),
            "cv_start_soc": round(p.s_cv, 1),
            "true_energy_wh": round(s.traj.total_wh, 1),
            "soc_end": round(s.traj.soc_at(s.t_stop), 1),
            "plug": utc_label(p.t_plug),
            "start": utc_label(p.t_start),
            "stop": utc_label(s.t_stop),
            "unplug": utc_label(s.t_unplug),
            "stop_reason": p.stop_reason,
            "auth_result": p.auth_result,
        },
        "faults": [
            {
                "kind": f.kind,
                "variant": f.variant,
                "start": utc_label(f.t_a),
                "end": utc_label(min(f.t_b, s.t_stop)),
                **f.params,
            }
            for f in s.faults
        ],
        "consequences": s.consequences,
        "traps": s.traps,
        "dropped_faults": s.dropped,
        "same_site_overlaps": fleet.mode,
        "window": [utc_label(fleet.t0), utc_label(fleet.t1)],
    }


def ctx_from_note(note: dict[str, Any], cars: dict[str, Car]) -> Ctx:
    stn, sty, phy = note["station"], note["style"], note["physics"]
    return Ctx(
        rated_w=float(stn["rated_w"]),
        dc=stn["kind"] == "DC",
        i_max=float(stn["i_max_a"]),
        interval_s=float(sty["interval_s"]),
        reg_step=float(sty["reg_resolution_wh"]),
        res_s=float(sty["res_s"]),
        car=cars.get(str(note["car_id"])),
        soc0=float(phy["soc0"]),
        eff=float(phy["efficiency"]),
        win0=parse_ts(note["window"][0]) or 0.0,
        win1=parse_ts(note["window"][1]) or 0.0,
    )


def judge(s: Session, res: dict[str, Finding]) -> str:
    """Empty when the session shows exactly its labels (plus meter consequences), else why not."""
    injected = {f.kind for f in s.faults}
    for kind in sorted(injected):
        if not res[kind].windows:
            return f"{kind} not met"
    meter = bool(injected & METER_KINDS)
    s.consequences = []
    for kind, f in res.items():
        if kind in injected or not (f.windows or f.ambiguous):
            continue
        if meter and kind in METER_KINDS and f.windows and not f.ambiguous:
            s.consequences.append(kind)
            continue
        return f"unexpected {kind}{' (marginal)' if f.ambiguous else ''}"
    return ""


def labels_of(s: Session, res: dict[str, Finding]) -> list[tuple[str, float, float]]:
    out = [(f.kind, f.t_a, min(f.t_b, s.t_stop)) for f in s.faults]
    for kind in s.consequences:
        w = res[kind].windows
        out.append((kind, min(a for a, _ in w), max(b for _, b in w)))
    seen: set[str] = set()
    uniq = []
    for lab in out:
        if lab[0] not in seen:
            seen.add(lab[0])
            uniq.append(lab)
    return uniq


# ============================================================================ the fleet
def ac_dwell_s(rng: random.Random, kind: str, hour: float) -> float:
    overnight = kind in ("residential", "depot") and not (7.0 <= hour < 15.0)
    overnight = overnight or (kind == "street" and (hour >= 16.0 or hour < 3.0))
    if overnight:
        morning = 6.0 + rng.uniform(0.0, 3.5)
        return max(1.5, (morning - hour) % 24.0) * 3600.0
    span = {
        "workplace": (5.5, 9.5),
        "retail": (0.5, 2.5),
        "residential": (2.0, 6.0),
        "depot": (2.0, 5.0),
    }.get(kind, (1.0, 4.0))
    return rng.uniform(*span) * 3600.0


def next_arrival(
    rng: random.Random, st: Station, t: float, mean_idle_s: float, t_end: float
) -> float:
    """Non-homogeneous Poisson arrival: hazard = local-hour profile / mean idle time."""
    prof = PROFILES["hub" if st.dc else st.site.kind]
    norm = sum(prof) / len(prof)
    need = rng.expovariate(1.0)
    acc, step = 0.0, 300.0
    while t < t_end:
        acc += prof[int(local_hour(t, st.site.city))] / norm * step / mean_idle_s
        if acc >= need:
            return t + rng.uniform(0.0, step)
        t += step
    return t_end


class Fleet:
    def __init__(self, args: argparse.Namespace, cars: list[Car]) -> None:
        self.seed = int(args.seed)
        self.n_stations = int(args.stations)
        self.t0 = parse_ts(args.start) or 0.0
        self.t1 = self.t0 + float(args.hours) * 3600.0
        self.rate = float(args.anomaly_rate)
        self.mode = str(args.same_site_overlaps)
        self.cars = cars
        self.car_index = cars_by_id(cars)
        self.pops = {
            "ac": [c for c in cars if not c.van or c.weight > 0],
            "dc": [c for c in cars if c.dc],
            "van": [c for c in cars if c.van] or cars,
        }
        self.stations: list[Station] = []
        self.sessions: list[Session] = []
        self.notes: dict[str, dict[str, Any]] = {}
        self.extra_notes: list[dict[str, Any]] = []
        self.idle_labels: list[dict[str, Any]] = []
        self.out: list[tuple[float, int, Any]] = []
        self.seq = 0
        self.tx = self.rng("tx").randint(100_000, 900_000)
        self.issued: set[str] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self.busy_s = 0.0
        self.conn_count = 0

    def rng(self, name: str) -> random.Random:
        return random.Random(f"outside-fleet:{self.seed}:{name}")

    # -- emitting
    def emit(self, recv: float, payload: Any) -> None:
        self.seq += 1
        if isinstance(payload, dict):
            payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self.out.append((recv, self.seq, payload))

    def emit_tagged(self, recv: float, s: Session, obj: dict[str, Any]) -> None:
        self.seq += 1
        self.out.append((recv, self.seq, (s, obj)))

    # -- sites and stations
    def build(self) -> None:
        rng = self.rng("sites")
        site_no = 0
        while len(self.stations) < self.n_stations:
            site_no += 1
            depot = self.n_stations >= 40 and site_no == 4
            kind = "depot" if depot else _pick(rng, [(k, v[0]) for k, v in SITE_KINDS.items()])
            city = _pick(rng, [(c, c.weight) for c in CITIES])
            self.make_site(rng, site_no, str(kind), city)

    def make_site(self, rng: random.Random, no: int, kind: str, city: City) -> None:
        lo, hi = (4, 6) if kind == "depot" else SITE_KINDS[kind][1]
        n = min(rng.randint(lo, hi), self.n_stations - len(self.stations))
        dist = rng.uniform(0.1, 0.25) if kind == "hub" else rng.uniform(0.0, 0.09)
        ang = rng.uniform(0.0, 2 * math.pi)
        lat = city.lat + dist * math.sin(ang)
        lon = city.lon + dist * math.cos(ang) / math.cos(math.radians(city.lat))
        site = Site(
            f"site-{city.code.lower()}-{no:03d}", city, kind, round(lat, 5), round(lon, 5), []
        )
        id_fmt = rng.choice(["emi3", "serial", "named"])
        op = rng.choice(["EBW", "ION", "ALL", "VER", "SWM", "CPI", "EVG", "NUO"])
        ratings = [(11000, 0.6), (22000, 0.4)] if kind == "depot" else SITE_KINDS[kind][2]
        conns = (1, 1) if kind == "depot" else SITE_KINDS[kind][3]
        for k in range(n):
            rated = int(_pick(rng, ratings))
            sid = {
                "emi3": f"{city.country}*{op}*E{no:04d}{k + 1:02d}",
                "serial": f"{op}{rng.randrange(10**5, 10**6)}-{no:03d}{k + 1}",
                "named": f"{city.code}-{kind[:3].upper()}-{no:03d}-{k + 1:02d}",
            }[id_fmt]
            self.stations.append(self.make_station(rng, site, sid, rated, conns))
        site.lm = self.make_lm(rng, city, any(s.dc for s in self.stations if s.site is site))
        if kind == "depot":
            site.fleet_tags = [self.new_tag(rng, city) for _ in range(rng.randint(1, 2))]

    def make_station(
        self, rng: random.Random, site: Site, sid: str, rated: int, conns: tuple[int, int]
    ) -> Station:
        dc = rated >= 50000
        phases = 3 if dc else AC_PHASES[rated]
        n_conn = 1 if rated >= 350000 else rng.randint(*conns)
        style = make_style(rng, dc, rated, phases, site.city)
        i_max = DC_CURRENT_LIMIT_A[rated] if dc else rated / (AC_VOLTAGE * phases)
        util = [rng.uniform(0.2, 0.45) if dc else rng.uniform(0.25, 0.6) for _ in range(n_conn)]
        return Station(
            sid,
            site,
            dc,
            float(rated),
            phases,
            n_conn,
            style,
            round(site.lat + rng.gauss(0.0, 0.00008), 6),
            round(site.lon + rng.gauss(0.0, 0.00008), 6),
            i_max,
            util,
        )

    def make_lm(
        self, rng: random.Random, city: City, has_dc: bool
    ) -> list[tuple[float, float, float]]:
        """Load management: daily windows where the site lowers what its stations offer."""
        if rng.random() >= 0.5:
            return []
        levels = [(0.5, 0.4), (0.0, 0.2)] + ([(0.6, 0.4)] if has_dc else [(4200.0, 0.4)])
        specs = []
        for _ in range(rng.randint(1, 3)):
            hour = rng.choice([7.5, 11.0, 12.5, 17.0, 18.0, 19.5, 21.0]) + rng.uniform(-0.5, 0.5)
            level = float(_pick(rng, levels))
            dur = rng.uniform(20.0, 120.0) * 60.0 if level > 0 else rng.uniform(10.0, 40.0) * 60.0
            specs.append((hour, dur, level))
        off = city.utc_offset_h * 3600.0
        day0 = math.floor((self.t0 + off) / 86400.0) * 86400.0 - off - 86400.0
        days = int((self.t1 - self.t0) / 86400.0) + 4
        return [
            (day0 + d * 86400.0 + h * 3600.0, day0 + d * 86400.0 + h * 3600.0 + dur, lev)
            for d in range(days)
            for h, dur, lev in specs
        ]

    def new_tag(self, rng: random.Random, city: City) -> str:
        while True:
            kind = rng.random()
            if kind < 0.45:
                tag = "04" + "".join(rng.choice("0123456789ABCDEF") for _ in range(12))
            elif kind < 0.7:
                tag = "".join(rng.choice("0123456789ABCDEF") for _ in range(8))
            elif kind < 0.9:
                op = rng.choice(["EBW", "8PL", "ION", "TNM", "MOB"])
                tag = f"{city.country}-{op}-C{rng.randrange(10**7, 10**8)}-{rng.randrange(10)}"
            else:
                tag = f"{rng.randrange(10**9, 10**10)}"
            if tag not in self.issued:
                self.issued.add(tag)
                return tag

    # -- sessions
    def run(self) -> None:
        self.build()
        for st in self.stations:
            for conn in range(1, st.n_conn + 1):
                self.run_connector(st, conn)
        self.pair_concurrent()
        self.fleet_overlaps()
        self.assign_tags()
        for st in self.stations:
            self.station_events(st)

    def run_connector(self, st: Station, conn: int) -> None:
        rng = self.rng(f"conn:{st.sid}:{conn}")
        reg = float(rng.randrange(200_000, 60_000_000))
        util = st.util[conn - 1]
        dwell = (DC_MEAN_DWELL_H if st.dc else MEAN_DWELL_H[st.site.kind]) * 3600.0
        mean_idle = dwell * (1.0 - util) / util
        t = free = self.t0
        segments: list[tuple[float, float, float]] = []
        self.conn_count += 1
        while True:
            t_arr = next_arrival(rng, st, t, mean_idle, self.t1)
            if t_arr >= self.t1:
                break
            reg, free = self.maybe_episode(st, conn, free, t_arr, reg, rng, segments)
            plan = self.make_plan(st, conn, t_arr, rng)
            s = self.build_session(plan, reg, rng)
            segments.append((free, plan.t_plug, reg))
            self.accept(s)
            reg, free = s.reg_end, s.t_unplug
            t = free + rng.uniform(60.0, 300.0)
        segments.append((free, self.t1, reg))
        self.emit_idle(st, conn, segments, rng)

    def pick_car(self, rng: random.Random, st: Station) -> Car:
        pop = self.pops["van" if st.site.kind == "depot" else "dc" if st.dc else "ac"]
        return rng.choices(pop, weights=[c.weight for c in pop], k=1)[0]

    def make_plan(self, st: Station, conn: int, t_plug: float, rng: random.Random) -> Plan:
        car = self.pick_car(rng, st)
        rejected = rng.choice(["Invalid", "Blocked", "Expired"]) if rng.random() < 0.04 else None
        t_start = t_plug + rng.uniform(5.0, 40.0) + (rng.uniform(15.0, 45.0) if rejected else 0.0)
        t_flow = t_start + (rng.uniform(20.0, 75.0) if st.dc else rng.uniform(3.0, 15.0))
        if st.dc:
            soc0, full, target, leave = self.dc_intent(rng, t_start)
        else:
            soc0, full, target, leave = self.ac_intent(rng, st, t_plug)
        reason = str(
            _pick(
                rng,
                [("Local", 0.6), ("EVDisconnected", 0.3), ("Remote", 0.1)]
                if st.dc
                else [("EVDisconnected", 0.7), ("Local", 0.25), ("Remote", 0.05)],
            )
        )
        unplug = rng.uniform(0.5, 4.0) if reason == "EVDisconnected" else rng.uniform(15.0, 240.0)
        soc = st.dc and st.style.soc and rng.random() < 0.75
        self.stats["plans"] += 1
        return Plan(
            idx=self.stats["plans"],
            station=st,
            conn=conn,
            car=car,
            t_plug=t_plug,
            t_start=t_start,
            t_flow=t_flow,
            soc0=soc0,
            full_soc=full,
            dc_target=target,
            t_leave=leave,
            eff=rng.uniform(0.92, 0.96) if st.dc else rng.uniform(0.86, 0.93),
            car_factor=rng.uniform(0.9, 1.02),
            s_cv=rng.uniform(AC_CV_MIN_SOC, 97.0),
            linger_s=rng.uniform(30.0, 240.0),
            stop_reason=reason,
            unplug_s=unplug,
            temp0=rng.uniform(-8.0, 25.0),
            reports_soc=soc,
            reports_temp=soc and rng.random() < 0.6,
            soc_dropout=t_start + rng.uniform(300.0, 1500.0)
            if soc and rng.random() < 0.08
            else None,
            rejected_first=rejected,
            lm=st.site.lm if st.style.offer else [],
            fleet=st.site.kind == "depot",
        )

    def dc_intent(self, rng: random.Random, t_start: float) -> tuple[float, float, float, float]:
        soc0 = rng.triangular(4.0, 55.0, 18.0)
        r = rng.random()
        limit = None
        if r < 0.45:
            target = rng.uniform(78.0, 82.0)
        elif r < 0.65:
            target = rng.uniform(85.0, 95.0)
        elif r < 0.9:
            target = 100.0 if r < 0.75 else rng.uniform(60.0, 75.0)
        else:
            target, limit = 100.0, rng.uniform(12.0, 35.0) * 60.0
        if target < soc0 + 15.0:
            soc0 = max(3.0, target - rng.uniform(20.0, 45.0))
        return soc0, 100.0, target, t_start + (limit or MAX_SESSION_S)

    def ac_intent(
        self, rng: random.Random, st: Station, t_plug: float
    ) -> tuple[float, float, float, float]:
        full = float(_pick(rng, [(100.0, 0.55), (90.0, 0.2), (80.0, 0.25)]))
        soc0 = rng.uniform(15.0, 75.0)
        if soc0 > full - 8.0:
            soc0 = full - rng.uniform(10.0, 40.0)
        dwell = ac_dwell_s(rng, st.site.kind, local_hour(t_plug, st.site.city))
        return soc0, full, full, t_plug + dwell

    def new_sid(self, st: Station, rng: random.Random) -> str:
        st.counter += 1
        if st.style.sid == "int":
            self.tx += 1
            return str(self.tx)
        if st.style.sid == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return f"TRX-{self.stations.index(st):04d}-{st.counter:05d}"

    def choose_kinds(self, plan: Plan, rng: random.Random) -> list[str]:
        if plan.fleet or rng.random() >= self.rate:
            return []
        cands = [(k, w) for k, w in KIND_WEIGHTS.items() if eligible(k, plan)]
        first = str(_pick(rng, cands))
        kinds = [first]
        if rng.random() < SECOND_FAULT_P:
            second = [(k, w) for k, w in cands if GROUP[k] in COMPATIBLE[GROUP[first]]]
            if second:
                kinds.append(str(_pick(rng, second)))
        return kinds

    def build_session(self, plan: Plan, reg: float, rng: random.Random) -> Session:
        kinds = self.choose_kinds(plan, rng)
        sid = self.new_sid(plan.station, rng)
        tries: list[list[str]] = [kinds, kinds] if kinds else []
        if kinds:
            alt = [(k, w) for k, w in KIND_WEIGHTS.items() if eligible(k, plan) and k not in kinds]
            tries.append([str(_pick(rng, alt))])
        dropped: list[str] = []
        for k, ks in enumerate(tries):
            s, why = self.attempt(plan, ks, reg, sid, k)
            if not why:
                s.dropped = dropped
                return s
            dropped.append(f"{'+'.join(ks)}: {why}")
            self.stats[f"retry {ks[0]}"] += 1
        for k in range(3):
            s, why = self.attempt(plan, [], reg, sid, 10 + k)
            if not why:
                break
            dropped.append(f"normal: {why}")
            self.stats["normal rebuilt"] += 1
        if why:
            s.traps["normal_check_failed"] = why
            self.stats["normal check failed"] += 1
        if kinds:
            self.stats["faulty plan built as normal"] += 1
        s.dropped = dropped
        return s

    def attempt(
        self, plan: Plan, kinds: list[str], reg: float, sid: str, k: int
    ) -> tuple[Session, str]:
        rng = random.Random(f"outside-fleet:{self.seed}:s{plan.idx}:{k}")
        want = "concurrent_id_tag" in kinds
        kinds = [x for x in kinds if x != "concurrent_id_tag"]
        if any(x in PHYS_MAKERS for x in kinds):
            plan = _replace(plan, lm=[])
        at = Attempt(plan, rng, simulate(plan, PhysFaults()))
        why = ""
        for kind in kinds:
            if kind in PHYS_MAKERS and not PHYS_MAKERS[kind](at):
                why = why or f"{kind}: no room"
        if at.pf.stall or at.pf.derate:
            at.traj = simulate(at.plan, at.pf)
        for kind in kinds:
            if kind in OTHER_MAKERS and not OTHER_MAKERS[kind](at):
                why = why or f"{kind}: no room"
        s = Session(
            at.plan,
            sid,
            at.traj,
            at.faults,
            at.mods,
            reg,
            0.0,
            at.traj.t_stop + at.plan.unplug_s,
            at.offline,
            want_concurrent=want,
        )
        self.decide_traps(s, rng)
        s.reg_end = display_fn(reg, at.traj, at.mods.meter)(at.traj.t_stop)
        s.events = Renderer(s, rng).run()
        if why:
            return s, why
        note = note_of(self, s)
        book = build_book((i, obj) for i, (_t, _r, obj) in enumerate(s.events))
        res = evaluate(book.views[sid], ctx_from_note(note, self.car_index))
        why = judge(s, res)
        if not why:
            s.labels = labels_of(s, res)
        return s, why

    def decide_traps(self, s: Session, rng: random.Random) -> None:
        p, traj, sty = s.plan, s.traj, s.plan.station.style
        if sty.buffer_p and rng.random() < sty.buffer_p and s.t_stop - s.t_start > 900.0:
            s.mods.buffered_from = s.t_stop - rng.uniform(120.0, 1200.0)
            s.traps["buffered_after_stop_from"] = utc_label(s.mods.buffered_from)
        lowered = [lev for a, b, lev in p.lm if a < s.t_stop and b > s.t_start]
        if lowered:
            s.traps["load_management_levels"] = lowered
        full = [t for t, ph in traj.runs if ph == PH_FULL]
        if full:
            s.traps["idle_after_full_min"] = round((s.t_stop - full[0]) / 60.0, 1)
            if not p.station.dc and p.full_soc >= 100.0:
                s.traps["ac_cv_taper_from_soc"] = round(p.s_cv, 1)
        if p.station.dc and p.dc_target < 100.0:
            s.traps["driver_left_at_soc"] = round(traj.soc_at(s.t_stop), 1)
        if p.rejected_first:
            s.traps["rejected_card_then_accepted"] = p.rejected_first
        if p.soc_dropout is not None and p.reports_soc:
            s.traps["soc_stops_reporting"] = utc_label(p.soc_dropout)

    def accept(self, s: Session) -> None:
        self.sessions.append(s)
        st = s.plan.station
        st.busy.append((s.plan.t_plug, s.t_unplug))
        st.offline.extend(s.offline)
        self.busy_s += max(0.0, min(s.t_unplug, self.t1) - s.plan.t_plug)
        for _t, recv, obj in s.events:
            if obj["type"] in ("authorize", "session_start"):
                self.emit_tagged(recv, s, obj)
            else:
                self.emit(recv, obj)
        self.notes[s.sid] = note_of(self, s)
        s.events = []
        s.traj = Traj(s.traj.t0, [], [], [], [], s.traj.t_stop, s.traj.peak_w)

    # -- between sessions
    def maybe_episode(
        self,
        st: Station,
        conn: int,
        free: float,
        t_arr: float,
        reg: float,
        rng: random.Random,
        segments: list[tuple[float, float, float]],
    ) -> tuple[float, float]:
        """Energy on a connector with no session open (free-vend after a backend loss)."""
        if t_arr - free < 3600.0 or rng.random() >= min(0.2, 0.03 * self.rate / 0.25):
            return reg, free
        # long enough for >= 2 readings of the station's own period
        dur = max(rng.uniform(10.0, 40.0) * 60.0, 2.5 * st.style.interval_s + 120.0)
        if t_arr - free < dur + 1500.0:
            return reg, free
        ua = rng.uniform(free + 600.0, t_arr - 600.0 - dur)
        ub = ua + dur
        power = (
            rng.uniform(0.3, 0.8) * st.rated_w
            if st.dc
            else min(st.rated_w, float(rng.choice([3700, 7400, 11000])))
        )
        segments.append((free, ua, reg))
        self.emit_episode(st, conn, ua, ub, power, reg, rng)
        self.idle_labels.append(
            {
                "session_id": None,
                "station_id": st.sid,
                "connector_id": conn,
                "kind": "unauthorized_energy",
                "start": utc_label(ua),
                "end": utc_label(ub),
            }
        )
        self.extra_notes.append(
            {
                "session_id": None,
                "station_id": st.sid,
                "connector_id": conn,
                "faults": [
                    {
                        "kind": "unauthorized_energy",
                        "variant": "no_session",
                        "start": utc_label(ua),
                        "end": utc_label(ub),
                        "power_w": round(power),
                        "energy_wh": round(power * dur / 3600.0),
                        "mechanism": "free-vend after the backend link "
                        "dropped; no transaction sent",
                    }
                ],
                "same_site_overlaps": self.mode,
            }
        )
        return reg + power * dur / 3600.0, ub

    def emit_episode(
        self,
        st: Station,
        conn: int,
        ua: float,
        ub: float,
        power: float,
        reg: float,
        rng: random.Random,
    ) -> None:
        sty = st.style
        for t, status in (
            (ua - 30.0, "Preparing"),
            (ua, "Charging"),
            (ub, "Finishing"),
            (ub + 60.0, "Available"),
        ):
            self.emit(
                t + 0.3,
                {
                    "type": "status",
                    "ts": fmt_ts(t, sty),
                    "station_id": st.sid,
                    "connector_id": conn,
                    "status": status,
                    "error_code": "NoError",
                },
            )
        t = ua + rng.uniform(1.0, sty.interval_s)
        while t < ub:
            p = power * (1.0 + rng.gauss(0.0, NOISE_REL))
            obj: dict[str, Any] = {
                "type": "reading",
                "ts": fmt_ts(t, sty),
                "station_id": st.sid,
                "connector_id": conn,
            }
            if sty.reg_mode != "startstop":
                obj["energy_wh"] = fmt_num(sty, quantize(reg + power * (t - ua) / 3600.0, sty), 0)
            if sty.power_mode == "iv":
                volts = 380.0 if st.dc else AC_VOLTAGE
                obj["current_a"] = fmt_num(sty, p / volts, 2)
                obj["voltage_v"] = fmt_num(sty, volts, 1)
            else:
                obj["power_w"] = fmt_num(sty, p, 0)
            self.emit(t + rng.uniform(0.1, 1.5), obj)
            t += sty.interval_s

    def emit_idle(
        self, st: Station, conn: int, segments: list[tuple[float, float, float]], rng: random.Random
    ) -> None:
        sty = st.style
        if sty.idle_readings:
            for a, b, reg in segments:
                t = math.ceil((a + 60.0) / IDLE_SAMPLE_S) * IDLE_SAMPLE_S
                while t < b - 60.0:
                    if not any(x <= t <= y for x, y in st.offline):
                        self.emit(t + rng.uniform(0.1, 2.0), self.idle_reading(st, conn, t, reg))
                    t += IDLE_SAMPLE_S
        long = [(a, b) for a, b, _r in segments if b - a >= 2400.0]
        if long and rng.random() < 0.04:
            a, b = rng.choice(long)
            tf = rng.uniform(a + 600.0, b - 1800.0)
            code = rng.choice(ERROR_CODES)
            for t, status, err in (
                (tf, "Faulted", code),
                (tf + rng.uniform(60.0, 900.0), "Available", "NoError"),
            ):
                self.emit(
                    t + 0.3,
                    {
                        "type": "status",
                        "ts": fmt_ts(t, sty),
                        "station_id": st.sid,
                        "connector_id": conn,
                        "status": status,
                        "error_code": err,
                        **({"info": "self-test failed, retrying"} if err != "NoError" else {}),
                    },
                )

    def idle_reading(self, st: Station, conn: int, t: float, reg: float) -> dict[str, Any]:
        sty = st.style
        obj: dict[str, Any] = {
            "type": "reading",
            "ts": fmt_ts(t, sty),
            "station_id": st.sid,
            "connector_id": conn,
            "energy_wh": fmt_num(sty, quantize(reg, sty), 1 if sty.reg_float else 0),
        }
        if sty.power_mode == "iv":
            obj["current_a"] = fmt_num(sty, 0.0, 2)
            obj["voltage_v"] = fmt_num(sty, (0.0 if st.dc else AC_VOLTAGE), 1)
        else:
            obj["power_w"] = fmt_num(sty, 0.0, 0)
        if "context" in sty.extras:
            obj["context"] = "Sample.Clock"
        return obj

    def station_events(self, st: Station) -> None:
        rng = self.rng(f"station:{st.sid}")
        sty = st.style
        hb = float(sty.heartbeat_s)
        if rng.random() < 0.05:
            self.idle_station_event(st, rng, "boot")
        if rng.random() < 0.05:
            self.idle_station_event(st, rng, "drop")
        t = self.t0 + rng.uniform(0.0, hb)
        while t < self.t1:
            if not any(a <= t <= b for a, b in st.offline):
                self.emit(
                    t + rng.uniform(0.05, 0.5),
                    {
                        "type": "station",
                        "ts": fmt_ts(t, sty),
                        "station_id": st.sid,
                        "event": "heartbeat",
                    },
                )
            t += hb + rng.gauss(0.0, 0.3)

    def idle_station_event(self, st: Station, rng: random.Random, what: str) -> None:
        busy = sorted(st.busy)
        t = rng.uniform(self.t0 + 600.0, self.t1 - 1200.0)
        if any(a - 900.0 <= t <= b + 900.0 for a, b in busy):
            return
        sty = st.style
        base = {"type": "station", "station_id": st.sid}
        if what == "boot":
            self.emit(
                t + 0.2,
                {
                    **base,
                    "ts": fmt_ts(t, sty),
                    "event": "boot",
                    "vendor": sty.vendor,
                    "model": sty.model,
                    "firmware": sty.firmware,
                    "ocpp_version": sty.ocpp,
                    "heartbeat_interval_s": sty.heartbeat_s,
                    "reason": rng.choice(["PowerUp", "FirmwareUpdate", "RemoteReset"]),
                },
            )
            self.emit(t + 2.0, {**base, "ts": fmt_ts(t + 1.5, sty), "event": "connect"})
            for c in range(1, st.n_conn + 1):
                self.emit(
                    t + 3.0,
                    {
                        "type": "status",
                        "ts": fmt_ts(t + 2.5, sty),
                        "station_id": st.sid,
                        "connector_id": c,
                        "status": "Available",
                        "error_code": "NoError",
                    },
                )
            return
        back = t + rng.uniform(60.0, 300.0)
        st.offline.append((t, back))
        self.emit(
            t + 60.0,
            {
                **base,
                "ts": fmt_ts(t + 60.0, sty),
                "event": "disconnect",
                "reason": "websocket ping timeout",
            },
        )
        self.emit(back + 0.5, {**base, "ts": fmt_ts(back, sty), "event": "connect"})

    # -- across sessions
    def pair_concurrent(self) -> None:
        rng = self.rng("pairs")
        taken: set[str] = set()
        for a in self.sessions:
            if not a.want_concurrent or a.sid in taken:
                continue
            cands = [
                b
                for b in self.sessions
                if b.sid not in taken and b.sid != a.sid and self.far_overlap(a, b)
            ]
            pref = [b for b in cands if b.want_concurrent] or cands
            if not pref:
                a.want_concurrent = False
                a.dropped.append("concurrent_id_tag: no overlapping session in another city")
                self.notes[a.sid]["dropped_faults"] = a.dropped
                continue
            b = rng.choice(pref)
            taken.update((a.sid, b.sid))
            tag = self.new_tag(rng, a.plan.station.site.city)
            w0, w1 = max(a.t_start, b.t_start), min(a.t_stop, b.t_stop)
            for x, y in ((a, b), (b, a)):
                x.partner, x.tag, x.want_concurrent = y.sid, tag, True
                x.labels.append(("concurrent_id_tag", w0, w1))
                self.notes[x.sid]["faults"].append(
                    {
                        "kind": "concurrent_id_tag",
                        "variant": "cloned_card",
                        "start": utc_label(w0),
                        "end": utc_label(w1),
                        "partner_session": y.sid,
                        "partner_city": y.plan.station.site.city.name,
                    }
                )

    def far_overlap(self, a: Session, b: Session) -> bool:
        if b.plan.fleet or b.plan.station.site.city is a.plan.station.site.city:
            return False
        if any(f.kind == "clock_fault" for f in b.faults) or b.plan.auth_result != "Accepted":
            return False
        return min(a.t_stop, b.t_stop) - max(a.t_start, b.t_start) >= OVERLAP_MIN_S

    def fleet_overlaps(self) -> None:
        """Depot sessions share fleet cards: label the overlaps or not, as the flag says."""
        rng = self.rng("fleet-cards")
        depot = [s for s in self.sessions if s.plan.fleet]
        for s in depot:
            s.tag = rng.choice(s.plan.station.site.fleet_tags)
        for s in depot:
            over = [
                (max(s.t_start, o.t_start), min(s.t_stop, o.t_stop))
                for o in depot
                if o.tag == s.tag
                and o.plan.station is not s.plan.station
                and min(s.t_stop, o.t_stop) > max(s.t_start, o.t_start)
            ]
            if not over:
                continue
            w0, w1 = min(a for a, _ in over), max(b for _, b in over)
            self.notes[s.sid]["traps"]["fleet_card_same_site_overlap"] = self.mode
            if self.mode == "labelled":
                s.labels.append(("concurrent_id_tag", w0, w1))
                self.notes[s.sid]["faults"].append(
                    {
                        "kind": "concurrent_id_tag",
                        "variant": "fleet_card_same_site",
                        "start": utc_label(w0),
                        "end": utc_label(w1),
                        "why": "--same-site-overlaps labelled (CONTRACTS: at different stations)",
                    }
                )

    def assign_tags(self) -> None:
        rng = self.rng("tags")
        pool: dict[str, list[list[Any]]] = defaultdict(list)
        for s in sorted(self.sessions, key=lambda x: x.plan.t_plug):
            city = s.plan.station.site.city
            if s.plan.rejected_first:
                s.rej_tag = self.new_tag(rng, city)
            if s.tag:
                continue
            if s.plan.auth_result != "Accepted" or any(f.kind == "clock_fault" for f in s.faults):
                # a fresh card: a reused one would overlap by the faulty stamps
                s.tag = self.new_tag(rng, city)
                continue
            slot = None
            if rng.random() < 0.15:
                slot = next((x for x in pool[city.code] if x[1] + 3600.0 < s.plan.t_plug), None)
            if slot is None:
                slot = [self.new_tag(rng, city), 0.0]
                pool[city.code].append(slot)
            s.tag, slot[1] = slot[0], s.t_unplug

    # -- output
    def labels(self) -> list[dict[str, Any]]:
        out = list(self.idle_labels)
        for s in self.sessions:
            st = s.plan.station
            out.extend(
                {
                    "session_id": s.sid,
                    "station_id": st.sid,
                    "connector_id": s.plan.conn,
                    "kind": k,
                    "start": utc_label(a),
                    "end": utc_label(b),
                }
                for k, a, b in s.labels
            )
        out.sort(key=lambda x: (x["start"], x["session_id"] or "", x["kind"]))
        return out

    def event_lines(self) -> Iterable[str]:
        self.out.sort(key=lambda x: (x[0], x[1]))
        for _recv, _seq, payload in self.out:
            if isinstance(payload, str):
                yield payload
                continue
            s, obj = payload
            obj = dict(obj)
            obj["id_tag"] = s.rej_tag if obj["id_tag"] == "REJ" else s.tag
            yield json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    def write(self, args: argparse.Namespace) -> dict[str, Any]:
        n_events = 0
        with _open_out(args.out) as fh:
            for line in self.event_lines():
                fh.write(line + "\n")
                n_events += 1
        labels = self.labels()
        with _open_out(args.labels) as fh:
            fh.writelines(json.dumps(x, separators=(",", ":")) + "\n" for x in labels)
        with _open_out(args.stations_out) as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["station_id", "site_id", "latitude", "longitude", "rated_power_w"])
            w.writerows(
                [s.sid, s.site.site_id, f"{s.lat:.6f}", f"{s.lon:.6f}", int(s.rated_w)]
                for s in self.stations
            )
        if args.notes:
            with _open_out(args.notes) as fh:
                for s in self.sessions:
                    note = self.notes[s.sid]
                    note["id_tag_shared_with"] = s.partner
                    fh.write(json.dumps(note, ensure_ascii=False, separators=(",", ":")) + "\n")
                fh.writelines(json.dumps(n, separators=(",", ":")) + "\n" for n in self.extra_notes)
        return self.summary(n_events, labels)

    def summary(self, n_events: int, labels: list[dict[str, Any]]) -> dict[str, Any]:
        per_kind: dict[str, int] = dict.fromkeys(KINDS, 0)
        for lab in labels:
            per_kind[lab["kind"]] += 1
        faulty = {lab["session_id"] for lab in labels if lab["session_id"]}
        return {
            "events": n_events,
            "sessions": len(self.sessions),
            "normal_sessions": len(self.sessions) - len(faulty),
            "faulty_sessions": len(faulty),
            "faulty_share": round(len(faulty) / max(1, len(self.sessions)), 3),
            "labels": len(labels),
            "labels_per_kind": per_kind,
            "idle_connector_episodes": len(self.idle_labels),
            "occupancy": round(self.busy_s / max(1.0, self.conn_count * (self.t1 - self.t0)), 3),
            "build": dict(sorted(self.stats.items())),
        }


def _open_out(path: str) -> Any:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p.open("w", encoding="utf-8", newline="\n")


# ============================================================================ --check
TYPES: dict[str, tuple[str, ...]] = {
    "reading": ("station_id", "connector_id"),
    "session_start": ("station_id", "connector_id", "session_id", "id_tag"),
    "session_stop": ("station_id", "connector_id", "session_id"),
    "status": ("station_id", "connector_id", "status"),
    "authorize": ("station_id", "id_tag", "result"),
    "station": ("station_id", "event"),
}
STATUSES = {
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
}
RESULTS = {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}
STATION_EVENTS = {"boot", "connect", "disconnect", "heartbeat"}
NUMERIC = (
    "energy_wh",
    "power_w",
    "power_offered_w",
    "current_a",
    "voltage_v",
    "soc_pct",
    "temperature_c",
    "meter_start_wh",
    "meter_stop_wh",
    "heartbeat_interval_s",
)
ENUMS = {"status": STATUSES, "result": RESULTS, "event": STATION_EVENTS}


def validate_event(o: Any) -> str:
    """Why a line breaks CONTRACTS section 1, or '' when it is valid."""
    if not isinstance(o, dict):
        return "not an object"
    typ = o.get("type")
    if typ not in TYPES:
        return f"unknown type {typ!r}"
    if parse_ts(o.get("ts")) is None:
        return "ts not RFC 3339 with a zone"
    missing = [k for k in TYPES[typ] if o.get(k) is None]
    if missing:
        return f"missing {missing[0]}"
    return _validate_types(o) or _validate_values(o, str(typ))


def _validate_types(o: dict[str, Any]) -> str:
    cid = o.get("connector_id")
    if cid is not None and (not isinstance(cid, int) or isinstance(cid, bool) or cid < 0):
        return "connector_id not an int >= 0"
    for k in ("station_id", "session_id", "id_tag", "status", "result", "event", "error_code"):
        if o.get(k) is not None and not isinstance(o[k], str):
            return f"{k} not a string"
    bad = [k for k in NUMERIC if o.get(k) is not None and num(o[k]) is None]
    return f"{bad[0]} not a number" if bad else ""


def _validate_values(o: dict[str, Any], typ: str) -> str:
    for k, allowed in ENUMS.items():
        if k in TYPES[typ] and o[k] not in allowed:
            return f"{k} {o[k]!r} not allowed"
    volts, soc = num(o.get("voltage_v")), num(o.get("soc_pct"))
    if volts is not None and volts < 0:
        return "negative voltage"
    if soc is not None and not 0.0 <= soc <= 100.0:
        return "soc outside 0..100"
    return ""


def read_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                yield n, json.loads(raw)
            except json.JSONDecodeError:
                yield n, None


@dataclass
class Report:
    lines: int = 0
    invalid: list[str] = field(default_factory=list)
    label_ok: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    label_bad: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    normal: int = 0
    normal_bad: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    normal_marginal: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    other: dict[str, Any] = field(default_factory=dict)

    def failures(self) -> int:
        return (
            len(self.invalid)
            + sum(len(x) for x in self.label_bad.values())
            + sum(len(x) for x in self.normal_bad.values())
            + int(self.other.get("idle_energy_unlabelled", 0))
            + int(self.other.get("idle_labels_unverified", 0))
            + int(self.other.get("concurrent_unlabelled_pairs", 0))
            + int(self.other.get("concurrent_labels_without_overlap", 0))
            + int(self.other.get("sessions_without_note", 0))
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "invalid_lines": len(self.invalid),
            "invalid_examples": self.invalid[:5],
            "labels_verified": {k: v for k, v in self.label_ok.items() if v},
            "labels_failed": {k: v[:5] for k, v in self.label_bad.items()},
            "normal_sessions": self.normal,
            "normal_meeting_a_definition": {k: v[:5] for k, v in self.normal_bad.items()},
            "normal_marginal": dict(self.normal_marginal),
            **self.other,
            "failures": self.failures(),
        }


def verify_label(lab: dict[str, Any], res: dict[str, Finding], ctx: Ctx) -> bool:
    f = res[lab["kind"]]
    if not f.windows:
        return False
    if lab["kind"] in ("clock_fault", "meter_mismatch", "unauthorized_energy"):
        return True
    slack = 2 * ctx.interval_s + 120.0
    a = (parse_ts(lab["start"]) or 0.0) - slack
    b = (parse_ts(lab["end"]) or 0.0) + slack
    return any(x <= b and y >= a for x, y in f.windows)


def check_sessions(
    book: Book,
    notes: dict[str, dict[str, Any]],
    labels: list[dict[str, Any]],
    cars: dict[str, Car],
    rep: Report,
) -> None:
    by_sid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        if lab["session_id"] is not None:
            by_sid[str(lab["session_id"])].append(lab)
    missing = 0
    for sid, v in book.views.items():
        note = notes.get(sid)
        if note is None:
            missing += 1
            continue
        ctx = ctx_from_note(note, cars)
        res = evaluate(v, ctx)
        mine = by_sid.get(sid, [])
        for lab in mine:
            if lab["kind"] == "concurrent_id_tag":
                continue
            if verify_label(lab, res, ctx):
                rep.label_ok[lab["kind"]] += 1
            else:
                rep.label_bad[lab["kind"]].append(sid)
        if not mine:
            rep.normal += 1
            for kind, f in res.items():
                if f.windows:
                    rep.normal_bad[kind].append(f"{sid} {f.detail}".strip())
                elif f.ambiguous:
                    rep.normal_marginal[kind] += 1
    rep.other["sessions_without_note"] = missing


def check_idle(book: Book, labels: list[dict[str, Any]], rep: Report) -> None:
    """Energy on a connector with no session open, against the null-session labels."""
    spans: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for v in book.views.values():
        if v.start_ts is not None:
            spans[(v.station, v.conn)].append((v.start_ts, v.stop_ts or v.start_ts))
    found: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for key, rds in book.idle.items():
        rds = by_ts(rds)
        for r in rds:
            if r.p is not None and r.p > 200.0:
                found[key].append((r.ts, r.ts))
        for x, y in pairwise(rds):
            between = any(x.ts <= a <= y.ts for a, _ in spans[key])
            if x.e is not None and y.e is not None and y.e - x.e > 101.0 and not between:
                found[key].append((x.ts, y.ts))
    null = [lab for lab in labels if lab["session_id"] is None]
    covered = 0
    unverified = 0
    for lab in null:
        key = (lab["station_id"], int(lab["connector_id"]))
        a, b = (parse_ts(lab["start"]) or 0.0) - 120.0, (parse_ts(lab["end"]) or 0.0) + 120.0
        hits = [w for w in found[key] if w[0] <= b and w[1] >= a]
        covered += len(hits)
        unverified += not hits
        if hits:
            rep.label_ok["unauthorized_energy"] += 1
    total = sum(len(w) for w in found.values())
    rep.other["idle_labels_unverified"] = unverified
    rep.other["idle_energy_unlabelled"] = total - covered


def check_concurrent(
    book: Book, labels: list[dict[str, Any]], sites: dict[str, str], mode: str, rep: Report
) -> None:
    labelled = {str(lab["session_id"]) for lab in labels if lab["kind"] == "concurrent_id_tag"}
    by_tag: dict[str, list[View]] = defaultdict(list)
    for v in book.views.values():
        if v.tag and v.start_ts is not None and v.stop_ts is not None:
            by_tag[v.tag].append(v)
    overlapping: set[str] = set()
    unlabelled = same_site = 0
    for views in by_tag.values():
        views.sort(key=lambda x: x.start_ts or 0.0)
        for i, a in enumerate(views):
            for b in views[i + 1 :]:
                if a.station == b.station or (b.start_ts or 0.0) >= (a.stop_ts or 0.0):
                    continue
                overlapping.update((a.sid, b.sid))
                same = sites.get(a.station) == sites.get(b.station)
                same_site += same
                ok_unlabelled = same and mode == "normal"
                if not ok_unlabelled and not (a.sid in labelled and b.sid in labelled):
                    unlabelled += 1
    rep.label_ok["concurrent_id_tag"] = len(labelled & overlapping)
    rep.other["concurrent_overlapping_pairs_same_site"] = same_site
    rep.other["concurrent_unlabelled_pairs"] = unlabelled
    rep.other["concurrent_labels_without_overlap"] = len(labelled - overlapping)


def order_stats(items: list[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    last: dict[str, float] = {}
    back = 0
    for _n, o in items:
        ts = parse_ts(o.get("ts"))
        key = str(o.get("station_id"))
        if ts is None:
            continue
        if key in last and ts < last[key] - 1.0:
            back += 1
        last[key] = max(ts, last.get(key, ts))
    return {"lines_stamped_before_an_earlier_line_of_their_station": back}


def run_check(folder: Path, ev_data: Path) -> int:
    rep = Report()
    items: list[tuple[int, dict[str, Any]]] = []
    for n, o in read_jsonl(folder / "events.jsonl"):
        rep.lines += 1
        why = "not JSON" if o is None else validate_event(o)
        if why:
            rep.invalid.append(f"line {n}: {why}")
        else:
            items.append((n, o))
    labels = [o for _n, o in read_jsonl(folder / "labels.jsonl")]
    notes_all = [o for _n, o in read_jsonl(folder / "notes.jsonl")]
    notes = {str(o["session_id"]): o for o in notes_all if o.get("session_id")}
    mode = next(
        (o["same_site_overlaps"] for o in notes_all if "same_site_overlaps" in o), "labelled"
    )
    with (folder / "stations.csv").open(encoding="utf-8") as fh:
        sites = {row["station_id"]: row["site_id"] for row in csv.DictReader(fh)}
    cars = cars_by_id(load_cars(ev_data))
    book = build_book(items)
    check_sessions(book, notes, labels, cars, rep)
    check_idle(book, labels, rep)
    check_concurrent(book, labels, sites, mode, rep)
    rep.other["sessions"] = len(book.views)
    rep.other["same_site_overlaps"] = mode
    rep.other.update(order_stats(items))
    print(json.dumps(rep.as_dict(), indent=1))
    return 0 if rep.failures() == 0 else 1


# ============================================================================ command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=150)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--anomaly-rate", type=float, default=0.25, help="share of sessions with at least one fault"
    )
    ap.add_argument("--start", default="2026-01-20T00:00:00Z", help="window start (UTC)")
    ap.add_argument("--out", help="events.jsonl")
    ap.add_argument("--labels", help="labels.jsonl")
    ap.add_argument("--stations-out", help="stations.csv")
    ap.add_argument("--notes", help="notes.jsonl")
    ap.add_argument("--ev-data", type=Path, default=DEFAULT_EV_DATA)
    ap.add_argument(
        "--same-site-overlaps",
        choices=("labelled", "normal"),
        default="labelled",
        help="label fleet cards overlapping at several stations of one site",
    )
    ap.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="verify DIR/{events,labels,notes}.jsonl and stations.csv, generate nothing",
    )
    args = ap.parse_args(argv)
    if args.check is None and not (args.out and args.labels and args.stations_out):
        ap.error("--out, --labels and --stations-out are required (or --check DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check is not None:
        return run_check(args.check, args.ev_data)
    fleet = Fleet(args, load_cars(args.ev_data))
    fleet.run()
    print(json.dumps(fleet.write(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
