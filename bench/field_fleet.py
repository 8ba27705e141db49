#!/usr/bin/env python3
"""Field fleet: a labelled chargewatch event stream with the habits of real charging networks.

The third, independently written generator of labelled test data. It was written from the shared
documents only (CONTRACTS.md: the event format, the anomaly kinds and their definitions, the
labels; DESIGN.md) and from real vehicle figures, never from the detectors, and uses the standard
library only.

    .venv/bin/python bench/field_fleet.py --stations 150 --hours 24 --seed 1 --anomaly-rate 0.25 \
        --out DIR/events.jsonl --labels DIR/labels.jsonl --stations-out DIR/stations.csv \
        --notes DIR/notes.jsonl
    .venv/bin/python bench/field_fleet.py --check DIR

Normal traffic (none of it labelled; the definitions of CONTRACTS section 3 do not hold on it):

* stations of one to two connectors on one grid connection: when a second car plugs in, the
  offer (``power_offered_w``) of the first is lowered and its power follows the offer; smart
  charging that cuts the offer to 0 for the peak-tariff hour (``SuspendedEVSE``) or halves it for
  three hours; DC cabinets shared by two dispensers;
* overnight AC visits: full after a few hours, then hours of ``SuspendedEV`` with the car waking
  up to draw 1-3 kW for battery conditioning; cars waiting for their departure timer;
* 1-, 2- and 3-phase cars with 16 A or 32 A on-board chargers on 16 A or 32 A wallboxes (current
  per phase, phase voltage, power over the phases the car uses);
* meters: Wh integers, or kWh meters (3 or 2 decimals) scaled to Wh by the back office (floats
  such as 64775.99999999999), 1 or 10 Wh resolution, lifetime registers of millions of Wh, an
  accuracy within +-0.7 %, standby self-consumption of 1-8 Wh an hour counted between sessions
  (visible in clock-aligned readings outside sessions; far below "energy delivered");
* DC: the published charging curves (step-shaped ones too), 125 A on 50 kW units, preconditioned
  or simply warm batteries;
* stops by cable, card, app (``Remote``) and power loss; plug-in-and-leave sessions; cards refused
  with no session; reboots (boot event, status burst, the open transaction closed with
  ``PowerLoss``/``Reboot`` and restarted); heartbeats; stations offline for hours that replay
  their queue on reconnect; ``Z``/``+00:00``/``+01:00``/``+02:00`` timestamps to the second,
  millisecond or microsecond; OCPP 1.6 numeric strings; single missing samples.

Faults: every kind of CONTRACTS section 3, with parameters drawn over a range, injected after the
physics (power-changing faults as overrides of the simulated charger or car, so that energy and
state of charge stay consistent; meter, clock, data and state-of-charge faults on the readings).
Each labelled session is then re-judged from its events by the definitions below (the same code
``--check`` runs): the injected kind must hold (else the fault is withdrawn and tried elsewhere),
and every other kind that holds as a consequence is labelled too and explained in the notes.

Readings of the contract taken here (the constants below): near zero is <= 100 W; a full car says
so by SoC >= 97 % or SuspendedEV; an offer under 1380 W (6 A on one phase) explains zero power;
"well below" is under 60 % of what the car's published curve (or its on-board charger), the
declared rating and the offer allow, for 3 readings and 3 minutes; the physical limit of a meter
step is 1.25 x the declared rating over the interval; register and power disagree when the
register's increments leave the band the power readings allow by 15 %; a sampling interval is the
session's median; the register sequence is the order the charger sent it (the file order), so a
clock fault is not also a backwards register; readings stamped outside their session count as
missing (a long enough clock fault is also a data gap); "any plausible battery" is 5 kWh; a pack
tolerates -20..60 C while charging; energy delivered with no session open is >= 100 Wh at >= 300 W
between two readings outside sessions, or a reading >= 500 W, and is labelled with session_id
null (as flags are in CONTRACTS section 4). early_taper needs the vehicle, which the events do not
carry: --check takes it from the session's note, so it can judge labelled sessions only (the
generator, which knows every car, judges them all). stations.csv has the columns of
``chargewatch stations import``: station_id, site_id, latitude, longitude, rated_power_w.

Vehicle figures: open-ev-data by Chargeprice (github.com/chargeprice/open-ev-data,
data/ev-data.json, MIT licence), a compact selection below.
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
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

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

# ---------------------------------------------------------------------------------------------
# CONTRACTS section 3 in numbers: what the labeller and --check take each definition to mean.
# ---------------------------------------------------------------------------------------------
P_ZERO_W = 100.0  # "power near zero"
P_FLOW_W = 300.0  # "energy flows" / "power clearly above zero"
CHARGED_W = 500.0  # a stall is charging that *stops*: some reading above this came first
MIN_OFFER_W = 1380.0  # an offer below 6 A on one phase lets no car charge: it explains zero power
NOT_STALLING = frozenset({"SuspendedEV", "Finishing", "Preparing", "Available", "Reserved"})
FULL_SOC = 97.0  # a state of charge this high says the car is full
STALL_S = 600.0
STALL_FLAT_WH = 50.0
TAPER_RATIO = 0.6  # "well below": under 60 % of what car, charger and offer allow
TAPER_READINGS = 3
TAPER_S = 180.0
TAPER_MIN_EXPECTED_W = 3000.0
STUCK_WH = 250.0  # register constant while at least this much flowed by the power readings
BACKWARDS_EPS = 0.5
JUMP_FACTOR = 1.25  # more than the declared rating could deliver in the interval, with margin
JUMP_SLACK_WH = 25.0
MISMATCH_TOL = 0.15
MISMATCH_MIN_WH = 3000.0
MISMATCH_MAX_STEP = 2.5  # intervals longer than this many sampling intervals are left out
GAP_INTERVALS = 5
GAP_MIN_S = 300.0
CLOCK_TOL_S = 1.0
SOC_FALL = 2.0
SMALLEST_BATTERY_WH = 5000.0  # "any plausible battery": a 5 kWh quadricycle pack
SOC_SLACK_WH = 100.0
SOC_FLAT_WH = 20000.0  # "tens of kWh"
TEMP_MAX_C = 60.0
TEMP_MIN_C = -20.0
UNAUTH_WH = 20.0
IDLE_FLOW_W = 300.0
IDLE_FLOW_WH = 100.0
IDLE_POWER_W = 500.0
OVERLAP_S = 60.0
AC_PHASE_V = 230.0
AC_W_PER_A = 3 * AC_PHASE_V  # offers of three-phase wallboxes, in W per ampere

LOCAL_OFFSET_S = 3600  # the network's wall clock (CET) for arrivals, tariffs and timers
AC_BOUNDARY_W = 44000.0  # stations rated below this are AC wallboxes

# ---------------------------------------------------------------------------------------------
# Vehicles (open-ev-data, MIT): name, usable kWh, AC phases, AC kW, 800 V pack, share, DC curve
# ---------------------------------------------------------------------------------------------
# The Kona and the e-Niro 64 kWh share a drivetrain and a published DC curve.
HYUNDAI_KIA_64_KWH_CURVE = (
    (0, 70),
    (40, 77),
    (42, 70),
    (53, 71),
    (55, 57),
    (71, 58),
    (72, 38),
    (76, 38),
    (78, 25),
    (88, 25),
    (100, 8),
)

VEHICLE_TABLE: tuple[tuple[Any, ...], ...] = (
    (
        "Tesla Model 3 Long Range",
        74.0,
        3,
        11.0,
        False,
        8,
        ((0, 180), (40, 195), (60, 110), (100, 12)),
    ),
    ("Tesla Model 3 SR+", 50.0, 3, 11.0, False, 6, ((0, 130), (52, 149), (60, 110), (100, 12))),
    (
        "Tesla Model Y Long Range",
        72.5,
        3,
        11.0,
        False,
        9,
        ((0, 246), (35, 238), (75, 99), (100, 18)),
    ),
    (
        "Tesla Model S Long Range",
        95.0,
        3,
        16.5,
        False,
        2,
        ((0, 197), (30, 149), (50, 133), (80, 73), (100, 10)),
    ),
    (
        "Volkswagen ID.3 58 kWh",
        58.0,
        3,
        11.0,
        False,
        6,
        ((0, 100), (30, 100), (70, 50), (80, 50), (100, 20)),
    ),
    (
        "Volkswagen ID.3 77 kWh",
        77.0,
        3,
        11.0,
        False,
        3,
        ((0, 125), (30, 125), (70, 65), (80, 65), (100, 22)),
    ),
    (
        "Volkswagen ID.4 77 kWh",
        77.0,
        3,
        11.0,
        False,
        6,
        ((0, 125), (30, 125), (70, 65), (80, 65), (100, 22)),
    ),
    ("Volkswagen e-Golf", 31.5, 2, 7.2, False, 2, ((0, 39), (60, 40), (80, 37), (100, 10))),
    ("Volkswagen e-up", 32.3, 2, 7.2, False, 3, ((0, 32), (27, 34), (80, 14), (100, 7))),
    (
        "Skoda Enyaq iV 80",
        77.0,
        3,
        11.0,
        False,
        5,
        ((0, 125), (35, 125), (50, 100), (70, 70), (80, 70), (90, 37), (100, 25)),
    ),
    (
        "CUPRA Born 58 kWh",
        58.0,
        3,
        11.0,
        False,
        2,
        ((0, 100), (30, 100), (70, 50), (80, 50), (100, 25)),
    ),
    (
        "Hyundai Ioniq 5 72.6 kWh",
        72.6,
        3,
        11.0,
        True,
        4,
        (
            (0, 200),
            (10, 210),
            (22, 232),
            (23, 185),
            (37, 185),
            (38, 175),
            (47, 175),
            (48, 155),
            (55, 155),
            (56, 130),
            (70, 130),
            (80, 100),
            (100, 11),
        ),
    ),
    (
        "Hyundai Kona 64 kWh",
        64.0,
        3,
        11.0,
        False,
        4,
        HYUNDAI_KIA_64_KWH_CURVE,
    ),
    (
        "Kia e-Niro 64 kWh (7.2 kW AC)",
        64.0,
        1,
        7.2,
        False,
        3,
        HYUNDAI_KIA_64_KWH_CURVE,
    ),
    ("Kia EV6 Long Range", 77.4, 3, 11.0, True, 3, ((0, 237.5), (75, 250), (100, 11))),
    ("Porsche Taycan 4S Plus", 83.7, 3, 11.0, True, 1, ((0, 256.5), (75, 270), (100, 11))),
    ("Renault Zoe R135 ZE50", 52.0, 3, 22.0, False, 6, ((0, 41), (52, 46), (80, 27), (100, 22))),
    ("Nissan Leaf 40 kWh", 38.0, 1, 6.6, False, 4, ((0, 41), (62, 45), (65, 36), (100, 15))),
    ("Nissan Leaf e+ 62 kWh", 62.0, 1, 6.6, False, 1, ((0, 95), (75, 100), (100, 6.6))),
    (
        "Peugeot e-208",
        45.0,
        3,
        11.0,
        False,
        5,
        (
            (0, 97),
            (16, 97),
            (17, 78),
            (46, 78),
            (47, 52),
            (68, 52),
            (69, 27),
            (83, 27),
            (84, 11),
            (100, 11),
        ),
    ),
    (
        "Peugeot e-2008 (7.4 kW AC)",
        47.5,
        1,
        7.4,
        False,
        2,
        (
            (0, 97),
            (16, 97),
            (17, 78),
            (46, 78),
            (47, 52),
            (68, 52),
            (69, 27),
            (83, 27),
            (84, 11),
            (100, 11),
        ),
    ),
    (
        "Opel Corsa-e",
        45.0,
        3,
        11.0,
        False,
        3,
        (
            (0, 99),
            (16, 99),
            (20, 95),
            (21, 75),
            (47, 75),
            (48, 53),
            (67, 53),
            (68, 41),
            (72, 41),
            (73, 27),
            (83, 27),
            (84, 11),
            (100, 11),
        ),
    ),
    ("BMW i3s 120 Ah", 37.9, 3, 11.0, False, 2, ((0, 47.5), (75, 50), (100, 11))),
    ("BMW iX3", 74.0, 1, 7.4, False, 2, ((0, 148), (35, 147), (60, 118), (75, 86), (100, 44))),
    (
        "Mercedes-Benz EQA 250",
        66.6,
        3,
        11.0,
        False,
        2,
        ((0, 99), (35, 98), (65, 70), (85, 36), (100, 1)),
    ),
    (
        "Mercedes-Benz EQC",
        80.0,
        3,
        11.0,
        False,
        1,
        ((0, 105), (39, 125), (70, 87), (84, 68), (100, 25)),
    ),
    (
        "Audi e-tron 55",
        86.5,
        3,
        11.0,
        False,
        2,
        ((0, 137), (70, 155), (72, 150), (78, 120), (82, 105), (100, 50)),
    ),
    (
        "Audi Q4 e-tron 50",
        77.0,
        3,
        11.0,
        False,
        3,
        ((0, 125), (35, 125), (70, 65), (80, 65), (90, 35), (100, 25)),
    ),
    (
        "Ford Mustang Mach-E 88 kWh",
        88.0,
        3,
        11.0,
        False,
        2,
        ((0, 148), (35, 147), (60, 118), (80, 73), (100, 27)),
    ),
    (
        "Polestar 2",
        72.5,
        3,
        11.0,
        False,
        3,
        (
            (0, 150),
            (18, 150),
            (20, 130),
            (40, 130),
            (42, 100),
            (55, 90),
            (57, 70),
            (79, 70),
            (80, 25),
            (100, 11),
        ),
    ),
    (
        "Volvo XC40 Recharge",
        75.0,
        3,
        11.0,
        False,
        2,
        ((0, 148), (35, 147), (70, 98), (85, 59), (100, 10)),
    ),
    (
        "Jaguar I-Pace",
        84.0,
        3,
        11.0,
        False,
        1,
        ((0, 100), (30, 105), (80, 55), (90, 37), (100, 12)),
    ),
    (
        "MG ZS EV",
        44.5,
        1,
        6.6,
        False,
        2,
        ((0, 70), (10, 80), (20, 70), (80, 55), (83, 18), (90, 18), (100, 6.6)),
    ),
    ("Mini Cooper SE", 28.9, 3, 11.0, False, 2, ((0, 47.5), (75, 50), (100, 11))),
    ("Fiat 500e", 42.0, 3, 11.0, False, 3, ((0, 80.8), (75, 85), (100, 11))),
    ("Dacia Spring", 26.8, 1, 6.6, False, 3, ((0, 28.5), (75, 30), (100, 6.6))),
    ("Honda e", 32.0, 1, 6.6, False, 1, ((0, 57), (75, 60), (100, 6.6))),
    ("Mazda MX-30", 32.0, 1, 6.6, False, 1, ((0, 30), (55, 38), (70, 30), (90, 18), (100, 12))),
    (
        "Hyundai Ioniq 38 kWh",
        38.3,
        1,
        7.2,
        False,
        2,
        ((0, 40), (51, 46), (53, 36), (67, 37), (69, 23), (74, 23), (76, 15), (90, 15), (100, 8)),
    ),
    ("smart fortwo EQ", 17.6, 1, 3.6, False, 2, None),
    ("Renault Zoe Q90", 41.0, 3, 30.0, False, 1, None),
    ("Volkswagen Golf GTE", 13.0, 1, 3.7, False, 3, None),
    ("BMW 330e", 12.0, 1, 3.7, False, 3, None),
    ("Mercedes-Benz C 300 e", 13.5, 1, 7.4, False, 2, None),
    ("Volvo XC60 T8", 10.4, 1, 3.7, False, 2, None),
    ("Kia Niro PHEV", 8.9, 1, 3.3, False, 2, None),
    ("Mercedes-Benz A 250 e", 10.7, 2, 7.4, False, 2, None),
    ("Mitsubishi Outlander PHEV", 11.0, 1, 3.7, False, 2, None),
)


@dataclass(frozen=True)
class Car:
    name: str
    cap: float
    phases: int
    ac_kw: float
    v800: bool
    weight: float
    curve: tuple[tuple[float, float], ...] | None

    @property
    def i_ac(self) -> float:
        """The on-board charger's current per phase (16 A, 32 A, ...)."""
        return self.ac_kw * 1000.0 / (AC_PHASE_V * self.phases)

    def dc_kw(self, soc: float) -> float:
        curve = self.curve
        if curve is None:
            return 0.0
        if soc <= curve[0][0]:
            return curve[0][1]
        for (s0, p0), (s1, p1) in pairwise(curve):
            if soc <= s1:
                return p0 + (p1 - p0) * (soc - s0) / (s1 - s0)
        return curve[-1][1]

    def pack_v(self, soc: float) -> float:
        return 640.0 + 1.4 * soc if self.v800 else 350.0 + 0.6 * soc


CARS = tuple(Car(*row) for row in VEHICLE_TABLE)
DC_CARS = tuple(c for c in CARS if c.curve is not None)
CAR_BY_NAME = {c.name: c for c in CARS}

# ---------------------------------------------------------------------------------------------
# Time and numbers
# ---------------------------------------------------------------------------------------------
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_DATES: dict[int, str] = {}


def fmt_ts(t: float, offset_min: int = 0, zulu: bool = True, prec: int = 3) -> str:
    """RFC 3339 with a zone, truncated to whole seconds, milliseconds or microseconds."""
    us = round((t + offset_min * 60) * 1_000_000)
    day, rem = divmod(us, 86_400_000_000)
    d = _DATES.get(day)
    if d is None:
        d = _DATES[day] = date.fromordinal(_EPOCH_ORD + day).isoformat()
    sec, frac = divmod(rem, 1_000_000)
    h, r = divmod(sec, 3600)
    m, s = divmod(r, 60)
    out = f"{d}T{h:02d}:{m:02d}:{s:02d}"
    if prec == 3:
        out += f".{frac // 1000:03d}"
    elif prec == 6:
        out += f".{frac:06d}"
    if zulu:
        return out + "Z"
    sign = "+" if offset_min >= 0 else "-"
    hh, mm = divmod(abs(offset_min), 60)
    return f"{out}{sign}{hh:02d}:{mm:02d}"


def utc(t: float) -> str:
    return fmt_ts(t, 0, True, 3)


def parse_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def fnum(value: Any) -> float | None:
    """A JSON number or an OCPP 1.6 numeric string; None when not measured."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def num(value: float, strings: bool, digits: int) -> int | float | str:
    if digits == 0:
        iv = round(value)
        return str(iv) if strings else iv
    r = round(value, digits)
    return f"{r:.{digits}f}" if strings else r


def loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def local_hour(t: float) -> float:
    return ((t + LOCAL_OFFSET_S) % 86400) / 3600.0


def at_local(t: float, hour: float, day_offset: int = 0) -> int:
    day0 = math.floor((t + LOCAL_OFFSET_S) / 86400)
    return int((day0 + day_offset) * 86400 + hour * 3600 - LOCAL_OFFSET_S)


# ---------------------------------------------------------------------------------------------
# The fleet's objects
# ---------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    seed: int
    t0: int
    t1: int


class Undo:
    """What a fault changed, so that a fault whose definition does not show can be withdrawn."""

    _MISSING = object()

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []

    def set(self, obj: Any, attr: str, value: Any) -> None:
        self.ops.append(("set", obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def setitem(self, mapping: dict[str, Any], key: str, value: Any) -> None:
        self.ops.append(("item", mapping, key, mapping.get(key, self._MISSING)))
        mapping[key] = value

    def append(self, items: list[Any], item: Any) -> None:
        items.append(item)
        self.ops.append(("append", items, item))

    def revert(self) -> None:
        for op in reversed(self.ops):
            if op[0] == "set":
                setattr(op[1], op[2], op[3])
            elif op[0] == "item":
                if op[3] is self._MISSING:
                    del op[1][op[2]]
                else:
                    op[1][op[2]] = op[3]
            else:
                op[1].remove(op[2])
        self.ops.clear()


@dataclass(eq=False)
class RegFx:
    """A change of a connector's energy register (a meter fault), on top of the raw integral."""

    kind: str  # stuck | offset | reset | wrap | calib | single
    t_a: float
    t_b: float = math.inf
    value: float = 0.0
    factor: float = 1.0
    lost: bool = False

    def apply(self, reg: Register, t: float, raw: float, val: float) -> float:
        if self.kind == "wrap":  # the register's lifetime value reaches the modulus at t_b
            top = self.factor - reg.raw(self.t_b)
            return val + (top if t < self.t_b else top - self.factor)
        if t < self.t_a:
            return val
        if self.kind == "offset":
            return val + self.value
        if self.kind == "reset":
            return val + self.value - reg.raw(self.t_a)
        if self.kind == "stuck":
            ra = reg.raw(self.t_a)
            if t <= self.t_b:
                return val - (raw - ra)
            return val - (reg.raw(self.t_b) - ra) if self.lost else val
        if self.kind == "calib":
            ra = reg.raw(self.t_a)
            return val + (self.factor - 1.0) * (min(raw, reg.raw(self.t_b)) - ra)
        if t == self.t_a:  # single: one reading only
            return val * self.factor + self.value
        return val


@dataclass
class Station:
    idx: int
    station_id: str
    site_id: str
    lat: float
    lon: float
    typ: str
    kind: str
    t1: int
    n_conn: int = 1
    rated_w: float = 0.0
    shared_w: float = 0.0
    i_conn: int = 0
    i_site: int = 0
    volt: float = 230.0
    imax: float = 0.0
    sample_s: int = 60
    aligned_s: int = 0
    hb_s: int = 900
    zulu: bool = True
    offset_min: int = 0
    prec: int = 3
    strings: bool = False
    res: int = 1
    kwh_meter: bool = False
    report_offer: bool = True
    report_cv: bool = True
    soc_forward: bool = False
    report_temp: bool = False
    begin_end: bool = True
    meter_start: bool = True
    auth_p: float = 0.9
    sid_style: str = "uuid"
    vendor: tuple[str, str, str] = ("", "", "")
    ocpp: str = "1.6"
    boot_at_start: bool = False
    latency: float = 0.2
    smart: list[tuple[int, int, str]] = field(default_factory=list)
    bases: dict[int, float] = field(default_factory=dict)
    drifts: dict[int, float] = field(default_factory=dict)
    meter_k: dict[int, float] = field(default_factory=dict)
    fx: dict[int, list[RegFx]] = field(default_factory=dict)
    reboots: list[tuple[int, int, str]] = field(default_factory=list)
    offline: list[tuple[float, float, bool]] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)

    @property
    def interval(self) -> int:
        return self.sample_s or self.aligned_s

    @property
    def conns(self) -> range:
        return range(1, self.n_conn + 1)


@dataclass(eq=False)
class Visit:
    """A car plugged into a connector: zero, one or two sessions (a reboot splits one)."""

    st: Station
    conn: int
    vid: int
    prof: str  # dc | day | night | work | noenergy | rejected
    arr: int
    dep: int
    car: Car
    soc0: float
    target: float
    factor: float
    temp0: float
    soc_rep: bool
    soc_dec: bool
    taper_start: float
    t_start: int
    t_stop: int
    reason: str
    auth: bool
    seed: str
    timer: int | None = None
    precond: tuple[int, int, float] | None = None
    tag: str = ""
    regular: bool = False
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    reboot: tuple[int, int, str] | None = None
    after: str = ""
    t_resume: int = 0
    ov: dict[str, Any] = field(default_factory=dict)
    sessions: list[Sess] = field(default_factory=list)
    trace: Trace | None = None
    offers: OfferLine | None = None
    faulted: bool = False
    dirty: bool = False

    @property
    def t_end(self) -> int:
        return min(self.dep, self.st.t1)


@dataclass(eq=False)
class Sess:
    sid: str
    visit: Visit
    part: int
    t_start: int
    t_stop: int | None
    reason: str
    tag: str = ""
    auth_result: str = "Accepted"
    locked: bool = False
    fault: Fault | None = None
    drop: tuple[float, float] | None = None
    clock: tuple[str, int, int, float, float] | None = None
    soc_fx: tuple[str, int, dict[str, float]] | None = None
    power_fx: tuple[str, float] | None = None
    unit_kwh: bool = False
    partner: str = ""


@dataclass(eq=False)
class Fault:
    kind: str
    variant: str
    sess: Sess
    params: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    undo: Undo = field(default_factory=Undo)
    null_session: bool = False
    window: tuple[float, float] = (0.0, 0.0)
    resim: bool = False


class Trace:
    """The simulated visit on a time grid: power (constant until the next point), energy at the
    meter since the visit began, true state of charge, battery temperature, offer, status."""

    __slots__ = ("es", "offs", "ps", "socs", "sts", "temps", "ts")

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.ps: list[float] = []
        self.es: list[float] = []
        self.socs: list[float] = []
        self.temps: list[float] = []
        self.offs: list[float] = []
        self.sts: list[str] = []

    def add(
        self, t: float, p: float, e: float, soc: float, temp: float, off: float, st: str
    ) -> None:
        self.ts.append(t)
        self.ps.append(p)
        self.es.append(e)
        self.socs.append(soc)
        self.temps.append(temp)
        self.offs.append(off)
        self.sts.append(st)

    def idx(self, t: float) -> int:
        return max(0, bisect.bisect_right(self.ts, t) - 1)

    def energy(self, t: float) -> float:
        i = self.idx(t)
        return self.es[i] + self.ps[i] * max(0.0, t - self.ts[i]) / 3600.0

    def soc(self, t: float) -> float:
        i = self.idx(t)
        if i + 1 >= len(self.ts) or self.ts[i + 1] <= self.ts[i]:
            return self.socs[i]
        frac = min(1.0, max(0.0, (t - self.ts[i]) / (self.ts[i + 1] - self.ts[i])))
        return self.socs[i] + (self.socs[i + 1] - self.socs[i]) * frac

    def status(self, t: float) -> str:
        return self.sts[self.idx(t)]


class OfferLine:
    def __init__(self, edges: list[int], values: list[float]) -> None:
        self.edges = edges
        self.values = values

    def at(self, t: float) -> float:
        return self.values[max(0, bisect.bisect_right(self.edges, t) - 1)]

    def minimum(self, a: float, b: float) -> float:
        lo = self.at(a)
        for e, v in zip(self.edges, self.values, strict=True):
            if a < e < b:
                lo = min(lo, v)
        return lo


# ---------------------------------------------------------------------------------------------
# Stations
# ---------------------------------------------------------------------------------------------
SITE_TYPES = (
    ("ac_public", 34, (1, 3)),
    ("ac_work", 14, (2, 4)),
    ("ac_home", 10, (1, 1)),
    ("dc_50", 12, (1, 2)),
    ("dc_150", 18, (2, 3)),
    ("dc_hpc", 12, (2, 5)),
)
CITIES = (
    (52.520, 13.405),
    (53.551, 9.994),
    (48.137, 11.575),
    (50.938, 6.960),
    (52.370, 4.895),
    (52.091, 5.122),
    (48.208, 16.373),
    (47.377, 8.540),
    (55.676, 12.568),
    (50.850, 4.352),
)
VENDORS = {
    "ac": (
        ("Alfen", "Eve Double Pro-line", "6.4.0-4184"),
        ("ABB", "Terra AC W22-T-RD-M-0", "1.6.8"),
        ("Mennekes", "AMTRON Professional+ 22", "5.22.3"),
        ("Wallbox", "Commander 2", "6.1.14"),
        ("KEBA", "KeContact P30 x-series", "1.14.1"),
    ),
    "dc": (
        ("Alpitronic", "HYC300", "2.3.7"),
        ("Kempower", "S-Series Satellite", "1.34.2"),
        ("ABB", "Terra 54 CJG", "1.7.6"),
        ("Tritium", "RTM75", "2.6.1"),
        ("Ekoenergetyka", "Axon Side 360", "3.9.0"),
    ),
}
# (sample interval, clock-aligned interval) of the station's OCPP configuration, with weights
AC_SAMPLING = (
    ((60, 0), 20),
    ((60, 900), 8),
    ((120, 0), 8),
    ((300, 0), 20),
    ((300, 900), 6),
    ((600, 0), 8),
    ((0, 900), 20),
    ((0, 300), 10),
)
DC_SAMPLING = (
    ((10, 0), 20),
    ((15, 0), 12),
    ((20, 0), 8),
    ((30, 0), 20),
    ((60, 0), 22),
    ((30, 900), 8),
    ((60, 900), 10),
)
_DC_DAY = [0.08] * 6 + [
    0.5,
    0.9,
    0.9,
    0.8,
    0.9,
    1.0,
    1.1,
    1.0,
    0.9,
    1.0,
    1.1,
    1.2,
    1.1,
    0.9,
    0.7,
    0.5,
    0.3,
    0.15,
]
RATES = {  # arrivals per hour at a free connector, by local hour
    "ac_home": [0.0] * 7 + [0.02] * 3 + [0.05] * 7 + [0.5, 0.6, 0.6, 0.5, 0.3, 0.05, 0.02],
    "ac_work": [0.0] * 6 + [0.1, 1.2, 1.5, 0.8] + [0.15] * 5 + [0.05] * 3 + [0.0] * 6,
    "ac_public": [0.02] * 6
    + [
        0.15,
        0.3,
        0.35,
        0.3,
        0.3,
        0.35,
        0.35,
        0.3,
        0.3,
        0.3,
        0.35,
        0.4,
        0.35,
        0.3,
        0.2,
        0.1,
        0.05,
        0.03,
    ],
    "dc_50": [r * 0.55 for r in _DC_DAY],
    "dc_150": [r * 0.8 for r in _DC_DAY],
    "dc_hpc": list(_DC_DAY),
}
ERROR_CODES = (
    "GroundFailure",
    "OtherError",
    "EVCommunicationError",
    "HighTemperature",
    "PowerSwitchFailure",
)
BOOT_REASONS = ("PowerUp", "Watchdog", "FirmwareUpdate", "RemoteReset", "ScheduledReset")


def build_stations(ctx: Ctx, n: int) -> list[Station]:
    rng = random.Random(f"{ctx.seed}/sites")
    out: list[Station] = []
    site_no = 0
    while len(out) < n:
        typ, _, (lo, hi) = rng.choices(SITE_TYPES, weights=[w for _, w, _ in SITE_TYPES])[0]
        lat0, lon0 = rng.choice(CITIES)
        lat, lon = lat0 + rng.uniform(-0.12, 0.12), lon0 + rng.uniform(-0.18, 0.18)
        for j in range(min(rng.randint(lo, hi), n - len(out))):
            pos = (lat + rng.uniform(-2e-4, 2e-4), lon + rng.uniform(-2e-4, 2e-4))
            out.append(make_station(ctx, len(out), typ, site_no, j, pos))
        site_no += 1
    return out


def make_station(
    ctx: Ctx, idx: int, typ: str, site_no: int, j: int, pos: tuple[float, float]
) -> Station:
    rng = random.Random(f"{ctx.seed}/station/{idx}")
    st = Station(
        idx=idx,
        station_id=f"FLD{site_no:04d}{chr(65 + j)}",
        site_id=f"site-{site_no:04d}",
        lat=round(pos[0], 6),
        lon=round(pos[1], 6),
        typ=typ,
        kind="dc" if typ.startswith("dc") else "ac",
        t1=ctx.t1,
    )
    configure_power(ctx, st, rng)
    configure_reporting(st, rng)
    configure_meters(st, rng)
    configure_events(ctx, st, rng)
    return st


def configure_power(ctx: Ctx, st: Station, rng: random.Random) -> None:
    if st.kind == "dc":
        st.n_conn = rng.choice((1, 2)) if st.typ == "dc_50" else 2
        st.rated_w, st.imax, shared = {
            "dc_50": (50000.0, 125.0, (50000.0,)),
            "dc_150": (150000.0, 500.0, (150000.0, 300000.0)),
            "dc_hpc": (300000.0, 600.0, (300000.0, 400000.0, 600000.0)),
        }[st.typ]
        st.shared_w = rng.choice(shared)
        return
    st.n_conn = 1 if st.typ == "ac_home" else 2
    st.i_conn = {
        "ac_home": rng.choice((16, 16, 32)),
        "ac_work": rng.choice((16, 32)),
        "ac_public": 32 if rng.random() < 0.7 else 16,
    }[st.typ]
    one_feed = st.n_conn > 1 and rng.random() < (0.7 if st.typ == "ac_work" else 0.5)
    st.i_site = st.i_conn if one_feed or st.n_conn == 1 else st.n_conn * st.i_conn
    st.rated_w = float(st.i_conn * AC_W_PER_A)
    st.shared_w = float(st.i_site * AC_W_PER_A)
    st.volt = round(rng.uniform(224.0, 238.0), 1)
    r = rng.random()
    days = range(-1, (ctx.t1 - ctx.t0) // 86400 + 2)
    if r < 0.3:  # the peak-tariff hour: offer 0
        hour = rng.choice((17, 18))
        st.smart = [(at_local(ctx.t0, hour, d), at_local(ctx.t0, hour + 1, d), "cut") for d in days]
    elif r < 0.5:  # three hours at half the current
        st.smart = [(at_local(ctx.t0, 16, d), at_local(ctx.t0, 19, d), "half") for d in days]


def configure_reporting(st: Station, rng: random.Random) -> None:
    table = DC_SAMPLING if st.kind == "dc" else AC_SAMPLING
    st.sample_s, st.aligned_s = rng.choices([c for c, _ in table], weights=[w for _, w in table])[0]
    st.hb_s = rng.choice((300, 600, 900, 900, 1800, 3600))
    st.zulu, st.offset_min = rng.choices(
        ((True, 0), (False, 0), (False, 60), (False, 120)), weights=(45, 10, 40, 5)
    )[0]
    st.prec = rng.choices((0, 3, 6), weights=(40, 50, 10))[0]
    st.strings = rng.random() < 0.3
    shared = st.n_conn > 1 and st.shared_w < st.n_conn * st.rated_w
    st.report_offer = shared or bool(st.smart) or rng.random() < 0.5
    st.report_cv = rng.random() < 0.7
    st.soc_forward = rng.random() < (0.9 if st.kind == "dc" else 0.15)
    st.report_temp = st.kind == "dc" and rng.random() < 0.45
    st.begin_end = rng.random() < 0.6
    st.meter_start = rng.random() < 0.9
    st.auth_p = 0.95 if rng.random() < 0.7 else 0.6
    st.sid_style = rng.choice(("uuid", "int"))
    st.vendor = rng.choice(VENDORS[st.kind])
    st.ocpp = "1.6" if rng.random() < 0.75 else "2.0.1"
    st.boot_at_start = rng.random() < 0.2
    st.latency = round(rng.uniform(0.05, 0.6), 3)


def configure_meters(st: Station, rng: random.Random) -> None:
    st.res = 1 if rng.random() < 0.7 else 10
    st.kwh_meter = rng.random() < 0.3
    for c in st.conns:
        st.bases[c] = rng.uniform(0, 60000) if rng.random() < 0.4 else rng.uniform(3e5, 4e7)
        st.drifts[c] = rng.uniform(1.0, 8.0) if rng.random() < 0.35 else 0.0
        st.meter_k[c] = rng.uniform(0.993, 1.007)
        st.fx[c] = []


def configure_events(ctx: Ctx, st: Station, rng: random.Random) -> None:
    hours = (ctx.t1 - ctx.t0) / 3600
    if hours >= 3 and rng.random() < 0.15 * hours / 24:
        t_r = rng.randint(ctx.t0 + 3600, ctx.t1 - 3600)
        st.reboots.append((t_r, t_r + rng.randint(40, 180), rng.choice(BOOT_REASONS)))
    if hours >= 4 and rng.random() < 0.08 * hours / 24:
        a = rng.randint(ctx.t0 + 1800, ctx.t1 - 7200)
        b = min(a + rng.randint(3600, 5 * 3600), ctx.t1 - 60)
        if not any(a - 600 < t_r < b + 600 for t_r, _, _ in st.reboots):
            st.offline.append((float(a), float(b), True))


# ---------------------------------------------------------------------------------------------
# Visits and sessions
# ---------------------------------------------------------------------------------------------
def plan_station(ctx: Ctx, st: Station) -> list[Visit]:
    rng = random.Random(f"{ctx.seed}/plan/{st.idx}")
    visits: list[Visit] = []
    for c in st.conns:
        t = ctx.t0 + rng.uniform(300, 1800)
        while True:
            arr = next_arrival(st, t, ctx.t1, rng)
            if arr is None:
                break
            v = make_visit(ctx, st, c, arr, rng, len(visits))
            visits.append(v)
            t = v.dep + rng.uniform(120, 900)
    visits = apply_reboots(ctx, st, visits, rng)
    counter = [rng.randint(1000, 60000)]
    for v in visits:
        make_sessions(ctx, v, rng, counter)
    return visits


def next_arrival(st: Station, t: float, t1: int, rng: random.Random) -> int | None:
    rates = RATES[st.typ]
    top = max(rates)
    while True:
        t += rng.expovariate(top) * 3600
        if t >= t1 - 900:
            return None
        if rng.random() * top < rates[int(local_hour(t))]:
            return int(t)


def pick_profile(st: Station, arr: int, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return "rejected"
    if r < 0.03 + (0.04 if st.kind == "ac" else 0.01):
        return "noenergy"
    if st.kind == "dc":
        return "dc"
    h = local_hour(arr)
    if st.typ == "ac_home":
        return "night" if h >= 16 or h < 4 else "day"
    if st.typ == "ac_work":
        return "work" if 5 <= h < 10 else "day"
    return "night" if (h >= 18 or h < 4) and rng.random() < 0.35 else "day"


def pick_car(st: Station, prof: str, rng: random.Random) -> Car:
    pool = DC_CARS if st.kind == "dc" else CARS
    weights = [
        c.weight * (2.5 if c.curve is None and prof in ("night", "work") else 1.0) for c in pool
    ]
    return rng.choices(pool, weights=weights)[0]


def initial_soc(car: Car, prof: str, rng: random.Random) -> float:
    if prof == "dc":
        return rng.triangular(5, 45, 18)
    if car.curve is None:
        return rng.uniform(0, 30)
    if prof == "day":
        return rng.uniform(20, 75)
    return rng.uniform(10, 60)


def dc_duration(st: Station, car: Car, soc0: float, target: float, rng: random.Random) -> int:
    pts = [car.dc_kw(soc0 + (target - soc0) * k / 4) for k in range(5)]
    p_kw = min(sum(pts) / 5, st.rated_w / 1000) * 0.85
    est = (target - soc0) / 100 * car.cap / max(p_kw, 5.0) * 3600 + 120
    return int(min(5400, max(420, est * rng.uniform(0.75, 1.35) + rng.uniform(60, 420))))


def stay_s(
    st: Station, car: Car, prof: str, arr: int, socs: tuple[float, float], rng: random.Random
) -> int:
    if prof == "rejected":
        return rng.randint(60, 300)
    if prof == "noenergy":
        return rng.randint(180, 1500)
    if prof == "dc":
        return dc_duration(st, car, socs[0], socs[1], rng)
    if prof == "night":
        return at_local(arr, rng.uniform(6.3, 8.7), 1 if local_hour(arr) >= 6 else 0) - arr
    if prof == "work":
        return max(at_local(arr, rng.uniform(15.8, 18.5)) - arr, rng.randint(7200, 14400))
    return int(min(8 * 3600, max(900, math.exp(rng.gauss(math.log(2.2 * 3600), 0.6)))))


def make_visit(ctx: Ctx, st: Station, c: int, arr: int, rng: random.Random, vid: int) -> Visit:
    prof = pick_profile(st, arr, rng)
    car = pick_car(st, prof, rng)
    soc0 = initial_soc(car, prof, rng)
    target = (80.0 if rng.random() < 0.45 else rng.uniform(60, 95)) if prof == "dc" else 100.0
    dep = arr + stay_s(st, car, prof, arr, (soc0, target), rng)
    t_start = arr + rng.randint(8, 50)
    dep = max(dep, t_start + 180)
    if prof == "dc":
        reason = rng.choices(("EVDisconnected", "Local", "Remote"), weights=(45, 40, 15))[0]
    elif prof == "noenergy":
        reason = "EVDisconnected"
    else:
        reason = rng.choices(
            ("EVDisconnected", "Local", "Remote", "Other"), weights=(60, 25, 10, 5)
        )[0]
    t_stop = dep if reason == "EVDisconnected" else max(t_start + 60, dep - rng.randint(30, 240))
    precond = rng.random() < 0.45
    v = Visit(
        st=st,
        conn=c,
        vid=vid,
        prof=prof,
        arr=arr,
        dep=dep,
        car=car,
        soc0=soc0,
        target=target,
        factor=rng.uniform(0.92, 1.03),
        temp0=rng.uniform(25, 38) if precond else rng.uniform(12, 30),
        soc_rep=st.soc_forward and rng.random() < 0.95,
        soc_dec=rng.random() < 0.2,
        taper_start=rng.uniform(90, 96),
        t_start=t_start,
        t_stop=t_stop,
        reason=reason,
        auth=rng.random() < st.auth_p,
        seed=f"{ctx.seed}/visit/{st.idx}/{vid}",
    )
    if prof == "night" and rng.random() < 0.25:
        timer = at_local(arr, rng.uniform(0.0, 2.5), 1 if local_hour(arr) >= 12 else 0)
        if t_start < timer < dep - 4 * 3600:
            v.timer = timer
    if prof == "night" and rng.random() < 0.3:
        v.precond = (dep - rng.randint(1200, 2400), dep - 120, rng.uniform(1500, 3000))
    return v


def apply_reboots(ctx: Ctx, st: Station, visits: list[Visit], rng: random.Random) -> list[Visit]:
    for t_r, t_boot, reason in st.reboots:
        keep: list[Visit] = []
        for v in visits:
            if t_r <= v.arr < t_boot + 10:
                continue
            if not v.arr <= t_r < v.dep:
                keep.append(v)
                continue
            if (
                v.reboot is None
                and v.prof not in ("rejected", "noenergy")
                and v.t_start + 60 < t_r < v.t_stop - 300
            ):
                v.reboot = (t_r, t_boot, reason)
                t_res = t_boot + rng.randint(20, 90)
                if rng.random() < 0.7 and t_res < v.t_stop - 300 and t_res < ctx.t1 - 300:
                    v.after, v.t_resume = "resume", t_res
                else:
                    v.after = "wait"
                keep.append(v)
        visits = keep
    return visits


def new_uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def make_sessions(ctx: Ctx, v: Visit, rng: random.Random, counter: list[int]) -> None:
    if v.prof == "rejected":
        return

    def sid() -> str:
        counter[0] += rng.randint(1, 3)
        return new_uuid(rng) if v.st.sid_style == "uuid" else f"{v.st.station_id}-{counter[0]}"

    def stop(t: int) -> int | None:
        return t if t <= ctx.t1 else None

    if v.reboot:
        reason0 = "PowerLoss" if v.reboot[2] == "PowerUp" else "Reboot"
        v.sessions.append(Sess(sid(), v, 0, v.t_start, stop(v.reboot[0]), reason0))
        if v.after == "resume":
            v.sessions.append(Sess(sid(), v, 1, v.t_resume, stop(v.t_stop), v.reason))
    else:
        v.sessions.append(Sess(sid(), v, 0, v.t_start, stop(v.t_stop), v.reason))


def new_tag(rng: random.Random, used: set[str]) -> str:
    while True:
        r = rng.random()
        if r < 0.4:
            tag = f"{rng.getrandbits(32):08X}"
        elif r < 0.65:
            tag = f"{rng.getrandbits(56):014X}"
        elif r < 0.9:
            cc = rng.choice(("DE", "NL", "AT", "BE", "DK", "CH"))
            prov = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
            tag = f"{cc}-{prov}-C{rng.randint(10**7, 10**8 - 1)}-{rng.randint(0, 9)}"
        else:
            tag = f"APP{rng.getrandbits(40):010x}"
        if tag not in used:
            used.add(tag)
            return tag


def assign_tags(ctx: Ctx, visits: list[Visit]) -> None:
    """Regular drivers reuse their card, never in two places at once; others are one-off."""
    rng = random.Random(f"{ctx.seed}/tags")
    used: set[str] = set()
    pool: list[list[Any]] = []
    for v in sorted(visits, key=lambda v: (v.arr, v.st.idx, v.conn)):
        if v.prof == "rejected":
            v.rejects = [
                (
                    rng.randint(2, 6),
                    new_tag(rng, used),
                    rng.choice(("Invalid", "Expired", "Blocked")),
                )
            ]
            continue
        tag = ""
        if pool and rng.random() < 0.55:
            for _ in range(6):
                user = pool[rng.randrange(len(pool))]
                if user[1] <= v.arr - 1800:
                    tag, user[1], v.regular = user[0], v.dep, True
                    break
        if not tag:
            tag = new_tag(rng, used)
            if rng.random() < 0.5:
                pool.append([tag, v.dep])
                v.regular = True
        v.tag = tag
        for s in v.sessions:
            s.tag = tag
        if rng.random() < 0.04:  # a refused card first, then the right one
            v.rejects.append(
                (
                    rng.randint(2, 6),
                    new_tag(rng, used),
                    rng.choice(("Invalid", "Expired", "Blocked")),
                )
            )


def plan_concurrent(ctx: Ctx, visits: list[Visit], target: int) -> list[tuple[Sess, Sess]]:
    """concurrent_id_tag: a cloned card or shared credentials, one id_tag at two stations."""
    rng = random.Random(f"{ctx.seed}/concurrent")
    want = max(1, round(target / len(KINDS) / 2)) if target > 0 else 0
    elig = [
        v.sessions[0]
        for v in visits
        if not v.regular
        and v.prof not in ("rejected", "noenergy")
        and not v.reboot
        and len(v.sessions) == 1
        and v.sessions[0].t_stop is not None
    ]
    rng.shuffle(elig)
    pairs: list[tuple[Sess, Sess]] = []
    for a in elig:
        if len(pairs) >= want:
            break
        if a.locked:
            continue
        for b in rng.sample(elig, min(len(elig), 400)):
            if b.locked or b is a or b.visit.st is a.visit.st:
                continue
            assert a.t_stop is not None and b.t_stop is not None
            if min(a.t_stop, b.t_stop) - max(a.t_start, b.t_start) >= 900:
                b.tag = b.visit.tag = a.tag
                a.locked = b.locked = True
                a.partner, b.partner = b.sid, a.sid
                pairs.append((a, b))
                break
    return pairs


# ---------------------------------------------------------------------------------------------
# Physics: offers, car and charger
# ---------------------------------------------------------------------------------------------
def offer_lines(ctx: Ctx, st: Station, visits: list[Visit]) -> dict[int, OfferLine]:
    edges_set = {ctx.t0}
    for v in visits:
        edges_set.update((v.arr, v.dep))
    for a, b, _ in st.smart:
        edges_set.update((a, b))
    edges = sorted(edges_set)
    lines: dict[int, OfferLine] = {}
    for c in st.conns:
        vals = []
        for e in edges:
            here = [v for v in visits if v.arr <= e < v.dep]
            n = len(here) + (0 if any(v.conn == c for v in here) else 1)
            vals.append(offer_value(st, n, e))
        lines[c] = OfferLine(edges, vals)
    return lines


def offer_value(st: Station, n: int, t: int) -> float:
    if st.kind == "dc":
        return min(st.rated_w, st.shared_w / max(1, n))
    amps = min(st.i_conn, st.i_site // max(1, n))
    for a, b, mode in st.smart:
        if a <= t < b:
            amps = 0 if mode == "cut" else max(6, amps // 2)
    return float(amps * AC_W_PER_A)


@dataclass
class CarState:
    seg_start: float
    cable_s: float
    full: bool = False
    next_top: float = math.inf
    top_end: float = -1.0
    top_p: float = 0.0


def visit_breaks(v: Visit) -> list[float]:
    bs: set[float] = {float(v.t_stop), float(v.t_end)}
    if v.reboot:
        bs.update((v.reboot[0], v.reboot[1] + 3, v.t_resume))
    if v.timer:
        bs.add(v.timer)
    if v.precond:
        bs.update(v.precond[:2])
    if "stall" in v.ov:
        bs.update(v.ov["stall"][:2])
    tap = v.ov.get("taper")
    if tap and tap[0] == "derate":
        bs.update((tap[1], tap[2]))
    assert v.offers is not None
    bs.update(e for e in v.offers.edges if v.t_start < e < v.t_end)
    return sorted(float(b) for b in bs if v.t_start < b <= v.t_end)


def simulate(v: Visit) -> Trace:
    st = v.st
    assert v.offers is not None
    h = 5.0 if st.kind == "dc" else 30.0
    rng = random.Random(v.seed + "/sim")
    cs = CarState(seg_start=float(v.t_start), cable_s=rng.uniform(15, 40))
    end = float(v.t_end)
    breaks = visit_breaks(v)
    k_soc = (0.94 if st.kind == "dc" else 0.9) / (36000.0 * v.car.cap)
    tr = Trace()
    t, soc, e, bi = float(v.t_start), v.soc0, 0.0, 0
    status = "Preparing"
    while t < end - 1e-9:
        off = v.offers.at(t)
        p, status = visit_step(v, cs, t, soc, off, rng)
        tr.add(t, p, e, soc, battery_temp(v, t, e), off, status)
        while bi < len(breaks) and breaks[bi] <= t + 1e-9:
            bi += 1
        nxt = min(t + h, end, breaks[bi] if bi < len(breaks) else end)
        if cs.top_end > t:
            nxt = min(nxt, cs.top_end)
        dt = nxt - t
        e += p * dt / 3600.0
        if p > 0 and soc < 100:
            soc = min(100.0, soc + p * dt * k_soc)
        t = nxt
    tr.add(end, 0.0, e, soc, battery_temp(v, end, e), v.offers.at(end), status)
    return tr


def phase(v: Visit, t: float) -> str | None:
    """What overrides the car's physics: a reboot, a closed session, a stall."""
    if v.reboot:
        t_r, t_boot, _ = v.reboot
        if t_r <= t < t_boot + 3:
            return "down"
        if t >= t_boot + 3:
            if v.after == "free":
                return None
            if v.after == "wait" or t < v.t_resume:
                return "wait"
    if t >= v.t_stop and not v.ov.get("welded"):
        return "stopped"
    stall = v.ov.get("stall")
    if stall and stall[0] <= t < stall[1]:
        return "stall"
    return None


_PHASE_STATE = {"down": "Unavailable", "wait": "Preparing", "stopped": "Finishing"}


def visit_step(
    v: Visit, cs: CarState, t: float, soc: float, off: float, rng: random.Random
) -> tuple[float, str]:
    ph = phase(v, t)
    if ph == "stall":
        return 0.0, v.ov["stall"][2]
    if ph is not None:
        return 0.0, _PHASE_STATE[ph]
    seg = float(v.t_start)
    if v.reboot and t >= v.reboot[1] + 3:
        seg = float(v.t_resume if v.after == "resume" else v.reboot[1] + 3)
    if seg != cs.seg_start:
        cs.seg_start, cs.cable_s = seg, rng.uniform(15, 40)
    if v.st.kind == "dc":
        p, status = dc_power(v, cs, t, soc, off)
    else:
        p, status = ac_power(v, cs, t, soc, off, rng)
    if v.ov.get("welded") and t >= v.t_stop:
        status = "Finishing"
    return p, status


def apply_taper(tap: tuple[Any, ...], t: float, x: float) -> float:
    if tap[0] == "cold":
        _, f0, t_ref, warm = tap
        return float(x * (f0 + (1 - f0) * min(1.0, max(0.0, t - t_ref) / warm)))
    if tap[0] == "derate":
        _, a, b, f = tap
        return float(x * f) if a <= t < b else x
    return float(min(x, tap[1]))


def dc_power(v: Visit, cs: CarState, t: float, soc: float, off: float) -> tuple[float, str]:
    if v.prof == "noenergy":
        return 0.0, "SuspendedEV"
    since = t - cs.seg_start - cs.cable_s
    if since < 0:
        return 0.0, "Charging"
    if soc >= v.target:
        return 0.0, "SuspendedEV"
    st, car = v.st, v.car
    p = car.dc_kw(soc) * 1000.0 * v.factor
    p = min(p, st.rated_w, st.imax * car.pack_v(soc), off)
    p *= min(1.0, (since + 5.0) / 25.0)
    tap = v.ov.get("taper")
    if tap:
        p = apply_taper(tap, t, p)
    return p, "Charging"


def ac_power(
    v: Visit, cs: CarState, t: float, soc: float, off: float, rng: random.Random
) -> tuple[float, str]:
    if v.prof == "noenergy" or (v.timer is not None and t < v.timer):
        return 0.0, "SuspendedEV"
    st, car = v.st, v.car
    if soc < 99.999:
        want = car.i_ac
        if soc > v.taper_start:
            want = max(1.5, want * (100 - soc) / (100 - v.taper_start))
    else:
        want = conditioning_amps(v, cs, t, rng)
        if want <= 0:
            return 0.0, "SuspendedEV"
    i_off = off / AC_W_PER_A
    if i_off < 6:
        return 0.0, "SuspendedEVSE"
    amps = min(want, float(st.i_conn), i_off)
    tap = v.ov.get("taper")
    if tap:
        amps = apply_taper(tap, t, amps)
    return amps * st.volt * car.phases * 0.995, "Charging"


def conditioning_amps(v: Visit, cs: CarState, t: float, rng: random.Random) -> float:
    """A full car wakes up now and then (and before departure) to condition its battery."""
    per_amp = v.st.volt * v.car.phases
    if not cs.full:
        cs.full = True
        cs.next_top = t + rng.uniform(3600, 10800)
    if v.precond and v.precond[0] <= t < v.precond[1]:
        return v.precond[2] / per_amp
    if t < cs.top_end:
        return cs.top_p / per_amp
    if t >= cs.next_top:
        iv = v.st.interval
        cs.top_end = t + rng.uniform(max(300, 2 * iv), max(1200, 2 * iv + 600))
        cs.top_p = rng.uniform(1000, 3000)
        cs.next_top = cs.top_end + rng.uniform(3600, 10800)
        return cs.top_p / per_amp
    return 0.0


def battery_temp(v: Visit, t: float, e: float) -> float:
    cold = v.ov.get("cold")
    if cold:
        t0c, t_ref, warm = cold
        return float(t0c + (15.0 - t0c) * min(1.0, max(0.0, t - t_ref) / warm) + 0.15 * e / 1000)
    return min(50.0, v.temp0 + 0.2 * e / 1000)


# ---------------------------------------------------------------------------------------------
# Meters and readings
# ---------------------------------------------------------------------------------------------
class Register:
    """A connector's import register: lifetime base, standby drift, k x the energy delivered."""

    def __init__(self, st: Station, c: int, visits: list[Visit], t0: int) -> None:
        self.drift, self.k, self.fx = st.drifts[c], st.meter_k[c], st.fx[c]
        self.starts: list[float] = []
        self.segs: list[tuple[float, float, Visit | None]] = []
        r, t = st.bases[c], float(t0)
        mine = sorted(
            (v for v in visits if v.conn == c and v.trace is not None), key=lambda v: v.t_start
        )
        for v in mine:
            assert v.trace is not None
            self._seg(t, r, None)
            r += self.drift * max(0.0, v.t_start - t) / 3600
            self._seg(v.t_start, r, v)
            r += self.k * v.trace.es[-1]
            t = float(v.t_end)
        self._seg(t, r, None)

    def _seg(self, t: float, r: float, v: Visit | None) -> None:
        self.starts.append(t)
        self.segs.append((t, r, v))

    def raw(self, t: float) -> float:
        t_a, r_a, v = self.segs[max(0, bisect.bisect_right(self.starts, t) - 1)]
        if v is None or v.trace is None:
            return r_a + self.drift * max(0.0, t - t_a) / 3600
        return r_a + self.k * v.trace.energy(t)

    def value(self, t: float) -> float:
        raw = self.raw(t)
        val = raw
        for fx in self.fx:
            val = fx.apply(self, t, raw, val)
        return val


def energy_out(st: Station, s: Sess | None, value: float) -> int | float | str:
    v = math.floor(max(0.0, value) / st.res) * st.res
    if s is not None and s.unit_kwh:
        x = round(v / 1000, 3)
        return f"{x:.3f}" if st.strings else x
    if st.kwh_meter:  # a kWh meter (3 or 2 decimals) scaled to Wh by the back office
        kwh = round(v / 1000, 3 if st.res == 1 else 2)
        return f"{v:.1f}" if st.strings else kwh * 1000
    return str(int(v)) if st.strings else int(v)


def schedule(ctx: Ctx, s: Sess) -> list[float]:
    """The reading times of a session: sampled and/or clock-aligned, single samples missing."""
    st = s.visit.st
    rng = random.Random(f"{ctx.seed}/sched/{s.sid}/{s.t_start}/{s.t_stop}")
    a = float(s.t_start)
    b = float(s.t_stop) if s.t_stop is not None else float(ctx.t1)
    ts: list[float] = []
    if st.sample_s:
        t = a + st.sample_s
        while t < b:
            jitter = (
                rng.randrange(800) / 1000
                if st.prec == 3
                else (rng.randrange(800000) / 1e6 if st.prec == 6 else 0.0)
            )
            ts.append(t + jitter)
            t += st.sample_s
    if st.aligned_s:
        t = (math.floor(a / st.aligned_s) + 1) * st.aligned_s
        while t < b:
            if not any(abs(t - x) < 2 for x in ts[-3:]) and all(abs(t - x) >= 2 for x in ts):
                ts.append(float(t))
            t += st.aligned_s
        ts.sort()
    kept: list[float] = []
    dropped = False
    for t in ts:
        if not dropped and rng.random() < 0.01:
            dropped = True
            continue
        dropped = False
        kept.append(t)
    if st.begin_end:
        kept = [a, *kept] + ([b] if s.t_stop is not None else [])
    return kept


class Out:
    """The station's outgoing events: (arrival, sequence, object)."""

    def __init__(self, st: Station, seed: int) -> None:
        self.st = st
        self.rng = random.Random(f"{seed}/emit/{st.idx}")
        self.items: list[tuple[float, int, dict[str, Any]]] = []

    def add(
        self,
        t: float,
        typ: str,
        fields: dict[str, Any],
        *,
        ts: float | None = None,
        arrival: float | None = None,
        meter: bool = False,
        live: bool = False,
    ) -> None:
        """Queue an event measured (or sent) at t. A station's messages reach the central system
        after its fixed link latency, in the order they were measured; an offline station's
        queue arrives on reconnect (meter values of an unqueued outage are lost)."""
        st = self.st
        win = None if live else offline_window(st, t)
        if win is not None:
            if meter and not win[2]:
                return
            # the queue is replayed on reconnect, in order, before any live message
            arrival = max(arrival or 0.0, win[1] + (t - win[0]) * 1e-6)
        if arrival is None:
            arrival = t + st.latency + ARRIVAL_ORDER.get(typ, 0.0)
        stamp = fmt_ts(t if ts is None else ts, st.offset_min, st.zulu, st.prec)
        obj: dict[str, Any] = {"type": typ, "ts": stamp}
        obj.update(fields)
        self.items.append((arrival, len(self.items), obj))


# messages measured at the same instant arrive in this order
ARRIVAL_ORDER = {
    "station": 0.0,
    "authorize": 0.0005,
    "session_start": 0.001,
    "status": 0.002,
    "reading": 0.003,
    "session_stop": 0.004,
}


def offline_window(st: Station, t: float) -> tuple[float, float, bool] | None:
    for w in st.offline:
        if w[0] <= t < w[1]:
            return w
    return None


def station_down(st: Station, t: float) -> bool:
    return any(t_r <= t < t_boot + 3 for t_r, t_boot, _ in st.reboots)


def emit_station(
    ctx: Ctx, st: Station, visits: list[Visit]
) -> list[tuple[float, int, dict[str, Any]]]:
    out = Out(st, ctx.seed)
    emit_station_events(out, ctx, st, visits)
    regs = {c: Register(st, c, visits, ctx.t0) for c in st.conns}
    for v in visits:
        emit_visit(out, ctx, v, regs[v.conn])
    emit_idle(out, ctx, st, visits, regs)
    out.items.sort(key=lambda x: (x[0], x[1]))
    return out.items


def add_boot(out: Out, st: Station, t: float, reason: str) -> None:
    out.add(
        t,
        "station",
        {
            "station_id": st.station_id,
            "event": "boot",
            "vendor": st.vendor[0],
            "model": st.vendor[1],
            "firmware": st.vendor[2],
            "ocpp_version": st.ocpp,
            "heartbeat_interval_s": st.hb_s,
            "reason": reason,
        },
    )


def emit_station_events(out: Out, ctx: Ctx, st: Station, visits: list[Visit]) -> None:
    sid = st.station_id
    t = ctx.t0 + out.rng.randint(1, 60)
    if st.boot_at_start:
        add_boot(out, st, t, "PowerUp")
        t += 1
    out.add(t, "station", {"station_id": sid, "event": "connect"})
    for c in range(st.n_conn + 1):
        out.add(t + 1, "status", {"station_id": sid, "connector_id": c, "status": "Available"})
    hb = t + st.hb_s
    while hb < ctx.t1:
        if not station_down(st, hb) and offline_window(st, hb) is None:
            out.add(hb, "station", {"station_id": sid, "event": "heartbeat"})
        hb += st.hb_s
    for t_r, t_boot, reason in st.reboots:
        out.add(
            t_r + 25,
            "station",
            {"station_id": sid, "event": "disconnect", "reason": "connection lost"},
            live=True,
        )
        add_boot(out, st, t_boot, reason)
        out.add(t_boot + 1, "station", {"station_id": sid, "event": "connect"})
        out.add(t_boot + 2, "status", {"station_id": sid, "connector_id": 0, "status": "Available"})
        for c in st.conns:
            out.add(
                t_boot + 2,
                "status",
                {"station_id": sid, "connector_id": c, "status": "Unavailable"},
            )
            out.add(
                t_boot + 3,
                "status",
                {
                    "station_id": sid,
                    "connector_id": c,
                    "status": status_after_boot(visits, c, t_boot + 3),
                },
            )
    for a, b, _ in st.offline:
        out.add(
            a + 40,
            "station",
            {"station_id": sid, "event": "disconnect", "reason": "network"},
            live=True,
        )
        out.add(b, "station", {"station_id": sid, "event": "connect"}, live=True)


def status_after_boot(visits: list[Visit], c: int, t: float) -> str:
    for v in visits:
        if v.conn == c and v.arr <= t < v.dep:
            if v.trace is not None and t >= v.t_start:
                return v.trace.status(t)
            return "Preparing"
    return "Available"


def emit_visit(out: Out, ctx: Ctx, v: Visit, reg: Register) -> None:
    st = v.st
    base = {"station_id": st.station_id, "connector_id": v.conn}
    out.add(v.arr, "status", {**base, "status": "Preparing"})
    for dt, tag, res in v.rejects:
        out.add(
            v.arr + dt, "authorize", {"station_id": st.station_id, "id_tag": tag, "result": res}
        )
    if v.trace is not None:
        emit_trace_status(out, v, base)
        for s in v.sessions:
            emit_session(out, ctx, s, reg)
    if v.dep < ctx.t1:
        out.add(v.dep + 1, "status", {**base, "status": "Available"})


def emit_trace_status(out: Out, v: Visit, base: dict[str, Any]) -> None:
    tr = v.trace
    assert tr is not None
    prev: str | None = "Preparing"
    down = (v.reboot[0], v.reboot[1] + 3) if v.reboot else None
    faulted = False
    for t, status in zip(tr.ts[:-1], tr.sts[:-1], strict=True):
        if down and down[0] <= t < down[1]:
            prev = None
            continue
        if prev is None and down:
            prev = tr.status(down[1])
        if status == prev:
            continue
        fields: dict[str, Any] = {**base, "status": status}
        if status == "Faulted":
            err = v.ov["stall"][4]
            fields.update(
                error_code=err,
                vendor_error_code=f"E{sum(map(ord, err)) % 900 + 100}",
                info="charging interrupted",
            )
            faulted = True
        elif faulted:
            fields["error_code"] = "NoError"
            faulted = False
        out.add(t, "status", fields)
        prev = status


def emit_session(out: Out, ctx: Ctx, s: Sess, reg: Register) -> None:
    v, st = s.visit, s.visit.st
    base = {"station_id": st.station_id, "connector_id": v.conn, "session_id": s.sid}
    if s.part == 0 and (v.auth or s.auth_result != "Accepted"):
        out.add(
            s.t_start - out.rng.randint(2, 8),
            "authorize",
            {"station_id": st.station_id, "id_tag": s.tag, "result": s.auth_result},
        )
    fields = {**base, "id_tag": s.tag}
    if st.meter_start:
        fields["meter_start_wh"] = energy_out(st, s, reg.value(s.t_start))
    out.add(s.t_start, "session_start", fields)
    for t, ts, row in session_rows(ctx, s, reg, out.rng):
        out.add(t, "reading", {**base, **row}, ts=ts, meter=True)
    if s.t_stop is not None:
        stop = {**base, "meter_stop_wh": energy_out(st, s, reg.value(s.t_stop)), "reason": s.reason}
        arrival = v.reboot[1] + 4.0 if v.reboot and s.part == 0 else None
        out.add(s.t_stop, "session_stop", stop, arrival=arrival)


def session_rows(
    ctx: Ctx, s: Sess, reg: Register, rng: random.Random
) -> list[tuple[float, float | None, dict[str, Any]]]:
    v, st = s.visit, s.visit.st
    tr = v.trace
    assert tr is not None
    rows = []
    for j, t in enumerate(schedule(ctx, s)):
        if s.drop and s.drop[0] <= t < s.drop[1]:
            continue
        i = tr.idx(t)
        p = tr.ps[i]
        stall = v.ov.get("stall")
        if stall and stall[0] <= t < stall[1]:
            p_rep = stall[3] * rng.uniform(0.5, 1.0)
        else:
            p_rep = p * (1 + rng.gauss(0, 0.004)) if p > 0 else 0.0
        row: dict[str, Any] = {"energy_wh": energy_out(st, s, reg.value(t))}
        volt, amps = electrics(v, tr.soc(t), p_rep, rng)
        if s.power_fx:
            p_rep *= s.power_fx[1]
        row["power_w"] = num(p_rep, st.strings, 0)
        if st.report_offer:
            row["power_offered_w"] = num(tr.offs[i], st.strings, 0)
        if st.report_cv:
            row["current_a"] = num(amps, st.strings, 2)
            row["voltage_v"] = num(volt, st.strings, 1)
        soc, temp = soc_fx(ctx, s, j, t, tr.soc(t), tr.temps[i])
        if v.soc_rep:
            soc = max(0.0, min(100.0, soc))
            row["soc_pct"] = (
                num(math.floor(soc * 10) / 10, st.strings, 1)
                if v.soc_dec
                else num(math.floor(soc), st.strings, 0)
            )
        if st.report_temp:
            row["temperature_c"] = num(temp, st.strings, 1)
        rows.append((t, clock_fx(ctx, s, j, t), row))
    return rows


def electrics(v: Visit, soc: float, p: float, rng: random.Random) -> tuple[float, float]:
    if v.st.kind == "dc":
        volt = v.car.pack_v(soc) + rng.gauss(0, 0.8)
        return volt, p / volt
    volt = v.st.volt + rng.gauss(0, 1.2)
    return volt, p / (volt * v.car.phases * 0.995)


def soc_fx(ctx: Ctx, s: Sess, j: int, t: float, soc: float, temp: float) -> tuple[float, float]:
    if s.soc_fx is None or j < s.soc_fx[1]:
        return soc, temp
    var, i, prm = s.soc_fx
    if var == "fall":
        return (soc - prm["drop"] if prm["persistent"] or j == i else soc), temp
    if var == "jump":
        return soc + prm["jump"], temp
    if var == "flat":
        return prm["frozen"], temp
    if j < i + prm["count"]:  # temperature
        return soc, prm["temp"] + prm["rise"] * (j - i)
    return soc, temp


def clock_fx(ctx: Ctx, s: Sess, j: int, t: float) -> float | None:
    if s.clock is None:
        return None
    var, i, k, prm, t_i = s.clock
    if not i <= j < i + k:
        return None
    if var == "epoch_1970":
        return prm + (t - t_i)
    return t + prm


def emit_idle(
    out: Out, ctx: Ctx, st: Station, visits: list[Visit], regs: dict[int, Register]
) -> None:
    """Readings outside sessions: clock-aligned values and energy flowing with no session."""
    for c in st.conns:
        mine = [v for v in visits if v.conn == c]
        busy = [
            (s.t_start, s.t_stop if s.t_stop is not None else ctx.t1)
            for v in mine
            for s in v.sessions
        ]
        times: set[float] = set()
        if st.aligned_s:
            first = (math.floor(ctx.t0 / st.aligned_s) + 1) * st.aligned_s
            times.update(float(x) for x in range(first, ctx.t1, st.aligned_s))
        for v in mine:
            for a, b in flows(v):
                iv = st.sample_s or st.aligned_s
                times.update(a + k * iv for k in range(1, int((b - a) // iv) + 1) if a + k * iv < b)
        for t in sorted(times):
            if any(a <= t <= b for a, b in busy) or station_down(st, t):
                continue
            idle_reading(out, st, c, t, mine, regs[c])


def flows(v: Visit) -> list[tuple[float, float]]:
    if v.after == "free" and v.reboot:
        return [(v.reboot[1] + 3.0, float(v.t_end))]
    if v.ov.get("welded"):
        return [(float(v.t_stop), float(v.t_end))]
    return []


def idle_reading(out: Out, st: Station, c: int, t: float, mine: list[Visit], reg: Register) -> None:
    p = 0.0
    for v in mine:
        if v.trace is not None and v.t_start <= t < v.t_end:
            p = v.trace.ps[v.trace.idx(t)]
            break
    p_rep = p * (1 + out.rng.gauss(0, 0.004)) if p > 0 else float(round(st.drifts[c]))
    row: dict[str, Any] = {
        "station_id": st.station_id,
        "connector_id": c,
        "energy_wh": energy_out(st, None, reg.value(t)),
        "power_w": num(p_rep, st.strings, 0),
    }
    if st.kind == "ac" and st.report_cv:
        row["voltage_v"] = num(st.volt + out.rng.gauss(0, 1.2), st.strings, 1)
    out.add(t, "reading", row, meter=True)


# ---------------------------------------------------------------------------------------------
# The definitions, judged from the events (labeller and --check)
# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Rd:
    t: float | None
    e: float | None
    p: float | None
    off: float | None
    soc: float | None
    temp: float | None


@dataclass
class SessView:
    sid: str
    station: str
    conn: int
    tag: str | None = None
    t_start: float | None = None
    t_stop: float | None = None
    meter_start: float | None = None
    meter_stop: float | None = None
    readings: list[Rd] = field(default_factory=list)

    def valid(self, r: Rd) -> bool:
        if r.t is None or self.t_start is None or r.t < self.t_start - CLOCK_TOL_S:
            return False
        return self.t_stop is None or r.t <= self.t_stop + CLOCK_TOL_S

    def end(self) -> float:
        if self.t_stop is not None:
            return self.t_stop
        ts = [r.t for r in self.readings if self.valid(r) and r.t is not None]
        return max([self.t_start or 0.0, *ts])

    def points(self) -> list[tuple[float | None, float]]:
        """The register in the order the charger sent it: start, readings, stop."""
        pts: list[tuple[float | None, float]] = []
        if self.meter_start is not None:
            pts.append((self.t_start, self.meter_start))
        pts.extend((r.t if self.valid(r) else None, r.e) for r in self.readings if r.e is not None)
        if self.meter_stop is not None:
            pts.append((self.t_stop, self.meter_stop))
        return pts


@dataclass
class EvalCtx:
    rated: float
    ac: bool
    cars: dict[str, Car]
    status: dict[int, list[tuple[float, str]]]
    auth: dict[str, list[tuple[float, str]]]
    interval: float | None = None  # the station's sampling interval, as its readings show it
    _times: dict[int, list[float]] = field(default_factory=dict)

    def interval_for(self, steps: list[float]) -> float | None:
        """The sampling interval: the station's (a configuration value), else the session's."""
        if self.interval is not None:
            return self.interval
        return statistics.median(steps) if len(steps) >= 4 else None

    def status_at(self, conn: int, t: float) -> str | None:
        lst = self.status.get(conn)
        if not lst:
            return None
        times = self._times.get(conn)
        if times is None:
            times = self._times[conn] = [x[0] for x in lst]
        i = bisect.bisect_right(times, t) - 1
        return lst[i][1] if i >= 0 else None

    def auth_result(self, tag: str | None, t: float) -> str | None:
        res = None
        for ta, r in self.auth.get(tag or "", []):
            if ta <= t + CLOCK_TOL_S:
                res = r
        return res


Span = tuple[float, float, str]


def _valid_sorted(sv: SessView, need_p: bool = True) -> list[Rd]:
    rs = [r for r in sv.readings if sv.valid(r) and (r.p is not None or not need_p)]
    rs.sort(key=lambda r: r.t or 0.0)
    return rs


def ev_clock(sv: SessView, ec: EvalCtx) -> list[Span]:
    bad: list[int] = []
    prev: float | None = None
    for i, r in enumerate(sv.readings):
        late = sv.t_stop is not None and r.t is not None and r.t > sv.t_stop + CLOCK_TOL_S
        if (
            r.t is None
            or (sv.t_start is not None and r.t < sv.t_start - CLOCK_TOL_S)
            or late
            or (prev is not None and r.t < prev - 0.5)
        ):
            bad.append(i)
        prev = r.t if r.t is not None else prev
    if not bad:
        return []
    good = [i for i in range(len(sv.readings)) if i not in set(bad) and sv.valid(sv.readings[i])]
    before = [sv.readings[i].t for i in good if i < bad[0]]
    after = [sv.readings[i].t for i in good if i > bad[-1]]
    t0 = before[-1] if before and before[-1] is not None else (sv.t_start or 0.0)
    t1 = after[0] if after and after[0] is not None else sv.end()
    shown = ", ".join(utc(sv.readings[i].t or 0.0) for i in bad[:3])
    return [
        (
            t0,
            max(t0, t1),
            f"{len(bad)} reading(s) stamped out of order or outside the session ({shown})",
        )
    ]


def ev_data_gap(sv: SessView, ec: EvalCtx) -> list[Span]:
    ts = sorted(r.t for r in sv.readings if sv.valid(r) and r.t is not None)
    if len(ts) < 3:
        return []
    med = ec.interval_for([b - a for a, b in pairwise(ts) if b - a > 0.5])
    if not med:
        return []
    pts = [sv.t_start or ts[0], *ts] + ([sv.t_stop] if sv.t_stop is not None else [])
    return [
        (
            a,
            b,
            f"no reading for {b - a:.0f} s, {(b - a) / med:.1f} sampling intervals of {med:.0f} s",
        )
        for a, b in pairwise(pts)
        if b - a > GAP_INTERVALS * med and b - a >= GAP_MIN_S
    ]


def _unexplained_zero(r: Rd, status: str | None) -> bool:
    return (
        status not in NOT_STALLING
        and (r.soc is None or r.soc < FULL_SOC)
        and (r.off is None or r.off >= MIN_OFFER_W)
    )


def ev_stall(sv: SessView, ec: EvalCtx) -> list[Span]:
    hits: list[Span] = []
    run: list[Rd] = []
    charged = False

    def close(end: float | None) -> None:
        if not run:
            return
        es = [r.e for r in run if r.e is not None]
        if es and max(es) - min(es) > STALL_FLAT_WH:
            return
        t_a = run[0].t or 0.0
        t_b = end if end is not None else (run[-1].t or t_a)
        if t_b - t_a >= STALL_S:
            status = ec.status_at(sv.conn, t_a)
            hits.append(
                (
                    t_a,
                    t_b,
                    f"power <= {P_ZERO_W:.0f} W and register flat for "
                    f"{(t_b - t_a) / 60:.0f} min, status {status}, car not full, "
                    f"no lower offer",
                )
            )

    for r in _valid_sorted(sv):
        assert r.p is not None and r.t is not None
        if charged and r.p <= P_ZERO_W and _unexplained_zero(r, ec.status_at(sv.conn, r.t)):
            run.append(r)
            continue
        close(None)
        run = []
        charged = charged or r.p > CHARGED_W
    close(sv.t_stop)
    return hits


def expected_power(car: Car, soc: float, off: float | None, rated: float, ac: bool) -> float | None:
    """What car, charger and offer allow at that state of charge (None: not judged there)."""
    if ac:
        if soc >= 89:
            return None
        amps = min(car.i_ac, rated / AC_W_PER_A, off / AC_W_PER_A if off is not None else math.inf)
        if amps < 6:
            return None
        exp = amps * AC_PHASE_V * car.phases
    else:
        if car.curve is None or soc >= 95:
            return None
        exp = 1000 * min(
            car.dc_kw(max(0.0, soc - 1)), car.dc_kw(soc), car.dc_kw(min(100.0, soc + 1))
        )
        exp = min(exp, rated, off if off is not None else math.inf)
    return exp if exp >= TAPER_MIN_EXPECTED_W else None


def ev_early_taper(sv: SessView, ec: EvalCtx) -> list[Span]:
    car = ec.cars.get(sv.sid)
    if car is None:
        return []
    hits: list[Span] = []
    run: list[tuple[Rd, float]] = []

    def close() -> None:
        if len(run) >= TAPER_READINGS and (run[-1][0].t or 0) - (run[0][0].t or 0) >= TAPER_S:
            ratios = [r.p / exp for r, exp in run if r.p is not None]
            hits.append(
                (
                    run[0][0].t or 0.0,
                    run[-1][0].t or 0.0,
                    f"power {100 * min(ratios):.0f}-{100 * max(ratios):.0f} % of what the "
                    f"{car.name}, the charger and the offer allow at SoC "
                    f"{run[0][0].soc:.0f}-{run[-1][0].soc:.0f} %",
                )
            )

    for r in _valid_sorted(sv):
        assert r.p is not None and r.t is not None
        exp = expected_power(car, r.soc, r.off, ec.rated, ec.ac) if r.soc is not None else None
        if (
            exp is not None
            and ec.status_at(sv.conn, r.t) == "Charging"
            and P_ZERO_W < r.p < TAPER_RATIO * exp
        ):
            run.append((r, exp))
            continue
        close()
        run = []
    close()
    return hits


def _energy_band(rs: list[Rd]) -> tuple[float, float]:
    lo = hi = 0.0
    for a, b in pairwise(rs):
        if a.t is None or b.t is None or a.p is None or b.p is None or b.t <= a.t:
            continue
        lo += min(a.p, b.p) * (b.t - a.t) / 3600
        hi += max(a.p, b.p) * (b.t - a.t) / 3600
    return lo, hi


def ev_meter_stuck(sv: SessView, ec: EvalCtx) -> list[Span]:
    rs = [r for r in sv.readings if sv.valid(r) and r.e is not None and r.p is not None]
    hits: list[Span] = []
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1].e == rs[i].e:
            j += 1
        if j > i:
            lo, _ = _energy_band(rs[i : j + 1])
            if lo >= STUCK_WH:
                hits.append(
                    (
                        rs[i].t or 0.0,
                        rs[j].t or 0.0,
                        f"register constant at {rs[i].e:g} over {j - i + 1} readings while "
                        f"at least {lo:.0f} Wh flowed by the power readings",
                    )
                )
        i = j + 1
    return hits


def ev_meter_backwards(sv: SessView, ec: EvalCtx) -> list[Span]:
    hits: list[Span] = []
    for (ta, a), (tb, b) in pairwise(sv.points()):
        if b < a - BACKWARDS_EPS:
            t0 = ta if ta is not None else (sv.t_start or 0.0)
            t1 = tb if tb is not None else sv.end()
            hits.append((t0, max(t0, t1), f"register {a:g} -> {b:g}"))
    return hits


def ev_meter_jump(sv: SessView, ec: EvalCtx) -> list[Span]:
    pts = [(t, e) for t, e in sv.points() if t is not None]
    hits: list[Span] = []
    for (ta, a), (tb, b) in pairwise(pts):
        assert ta is not None and tb is not None
        dt = tb - ta
        if dt <= 0:
            continue
        limit = ec.rated * dt / 3600 * JUMP_FACTOR + JUMP_SLACK_WH
        if b - a > limit:
            hits.append(
                (
                    ta,
                    tb,
                    f"register +{b - a:.0f} in {dt:.0f} s, the {ec.rated:.0f} W "
                    f"connector could deliver {ec.rated * dt / 3600:.0f} Wh",
                )
            )
    return hits


def ev_meter_mismatch(sv: SessView, ec: EvalCtx) -> list[Span]:
    rs = [r for r in sv.readings if sv.valid(r) and r.e is not None and r.p is not None]
    steps = [
        b.t - a.t
        for a, b in pairwise(rs)
        if a.t is not None and b.t is not None and b.t - a.t > 0.5
    ]
    med = ec.interval_for(steps)
    if len(steps) < 4 or not med:
        return []
    reg = lo = hi = 0.0
    for a, b in pairwise(rs):
        assert a.t is not None and b.t is not None and a.e is not None and b.e is not None
        dt = b.t - a.t
        if dt <= 0 or dt > MISMATCH_MAX_STEP * med:
            continue
        reg += max(0.0, b.e - a.e)
        band_lo, band_hi = _energy_band([a, b])
        lo, hi = lo + band_lo, hi + band_hi
    if max(reg, hi) < MISMATCH_MIN_WH:
        return []
    if reg > (1 + MISMATCH_TOL) * hi or reg < (1 - MISMATCH_TOL) * lo:
        return [
            (
                sv.t_start or 0.0,
                sv.end(),
                f"register counts {reg:.0f} while the power readings integrate to "
                f"{lo:.0f}-{hi:.0f} Wh",
            )
        ]
    return []


def ev_soc(sv: SessView, ec: EvalCtx) -> list[Span]:
    rs = [r for r in sv.readings if sv.valid(r) and r.t is not None]
    hits: list[Span] = []
    soc_rs = [r for r in rs if r.soc is not None]
    for a, b in pairwise(soc_rs):
        assert a.t is not None and b.t is not None and a.soc is not None and b.soc is not None
        dt = b.t - a.t
        if dt <= 0:
            continue
        p_max = max(a.p or 0.0, b.p or 0.0)
        d = b.soc - a.soc
        if d <= -SOC_FALL and p_max > P_FLOW_W:
            hits.append((a.t, b.t, f"SoC falls {a.soc:g} -> {b.soc:g} % while {p_max:.0f} W flow"))
        de = (b.e - a.e) if a.e is not None and b.e is not None else 0.0
        e = max(0.0, de, p_max * dt / 3600)
        if d > 100 * (e + SOC_SLACK_WH) / SMALLEST_BATTERY_WH + 1:
            hits.append((a.t, b.t, f"SoC jumps {a.soc:g} -> {b.soc:g} % on {e:.0f} Wh"))
    hits.extend(_soc_flat(soc_rs))
    for r in rs:
        if (
            r.temp is not None
            and (r.p or 0.0) > P_FLOW_W
            and not TEMP_MIN_C <= r.temp <= TEMP_MAX_C
        ):
            hits.append((r.t or 0.0, r.t or 0.0, f"battery at {r.temp:g} C while charging"))
    return hits


def _soc_flat(soc_rs: list[Rd]) -> list[Span]:
    hits: list[Span] = []
    i = 0
    while i < len(soc_rs):
        lo = hi = soc_rs[i].soc or 0.0
        j = i
        while j + 1 < len(soc_rs):
            s = soc_rs[j + 1].soc or 0.0
            if max(hi, s) - min(lo, s) > 1:
                break
            lo, hi, j = min(lo, s), max(hi, s), j + 1
        flowed, _ = _energy_band(soc_rs[i : j + 1])
        if flowed >= SOC_FLAT_WH:
            hits.append(
                (
                    soc_rs[i].t or 0.0,
                    soc_rs[j].t or 0.0,
                    f"SoC stays at {lo:g}-{hi:g} % while {flowed / 1000:.1f} kWh flow",
                )
            )
        i = j + 1
    return hits


def ev_unauthorized(sv: SessView, ec: EvalCtx) -> list[Span]:
    if sv.t_start is None:
        return []
    res = ec.auth_result(sv.tag, sv.t_start)
    if res is None or res == "Accepted":
        return []
    reg = sum(max(0.0, b - a) for (_, a), (_, b) in pairwise(sv.points()))
    lo, _ = _energy_band([r for r in sv.readings if sv.valid(r)])
    energy = max(reg, lo)
    if energy < UNAUTH_WH:
        return []
    return [(sv.t_start, sv.end(), f"id_tag answered {res}, yet {energy:.0f} Wh delivered")]


SESSION_CHECKS: tuple[tuple[str, Callable[[SessView, EvalCtx], list[Span]]], ...] = (
    ("stall", ev_stall),
    ("early_taper", ev_early_taper),
    ("meter_stuck", ev_meter_stuck),
    ("meter_backwards", ev_meter_backwards),
    ("meter_jump", ev_meter_jump),
    ("meter_mismatch", ev_meter_mismatch),
    ("data_gap", ev_data_gap),
    ("clock_fault", ev_clock),
    ("unauthorized_energy", ev_unauthorized),
    ("soc_inconsistent", ev_soc),
)


def ev_no_session(items: list[tuple[str, Rd | None, bool]]) -> list[Span]:
    """Energy delivered on a connector with no session open (readings without session_id)."""
    hits: list[Span] = []
    prev: Rd | None = None
    cur: list[float] = []
    for kind, r, in_session in items:
        if kind != "r" or in_session or r is None or r.t is None:
            if cur:
                hits.append((cur[0], cur[1], "energy flows with no session open"))
            prev, cur = None, []
            continue
        flow = (r.p or 0.0) >= IDLE_POWER_W
        if (
            prev is not None
            and prev.t is not None
            and r.e is not None
            and prev.e is not None
            and r.t > prev.t
        ):
            de = r.e - prev.e
            flow = flow or (de >= IDLE_FLOW_WH and de / (r.t - prev.t) * 3600 >= IDLE_FLOW_W)
        if flow:
            cur = [
                cur[0] if cur else (prev.t if prev is not None and prev.t is not None else r.t),
                r.t,
            ]
        elif cur:
            hits.append((cur[0], cur[1], "energy flows with no session open"))
            cur = []
        prev = r
    if cur:
        hits.append((cur[0], cur[1], "energy flows with no session open"))
    return hits


@dataclass
class StationVerdict:
    hits: dict[str, dict[str, list[Span]]]
    no_session: list[tuple[str, int, float, float, str]]
    summaries: list[tuple[str, str, int, str | None, float, float]]


def collect(
    events: list[dict[str, Any]],
) -> tuple[
    dict[str, SessView],
    dict[int, list[tuple[float, str]]],
    dict[str, list[tuple[float, str]]],
    dict[int, list[tuple[str, Rd | None, bool]]],
]:
    svs: dict[str, SessView] = {}
    status: dict[int, list[tuple[float, str]]] = defaultdict(list)
    auth: dict[str, list[tuple[float, str]]] = defaultdict(list)
    items: dict[int, list[tuple[str, Rd | None, bool]]] = defaultdict(list)

    def view(ev: dict[str, Any]) -> SessView:
        sid = str(ev.get("session_id"))
        sv = svs.get(sid)
        if sv is None:
            sv = SessView(sid, str(ev.get("station_id")), int(ev.get("connector_id") or 0))
            svs[sid] = sv
        return sv

    for ev in events:
        typ, t = ev.get("type"), parse_ts(ev.get("ts"))
        conn = ev.get("connector_id")
        conn = conn if isinstance(conn, int) else -1
        if typ == "reading":
            rd = Rd(
                t,
                fnum(ev.get("energy_wh")),
                fnum(ev.get("power_w")),
                fnum(ev.get("power_offered_w")),
                fnum(ev.get("soc_pct")),
                fnum(ev.get("temperature_c")),
            )
            in_session = ev.get("session_id") is not None
            if in_session:
                view(ev).readings.append(rd)
            items[conn].append(("r", rd, in_session))
        elif typ == "session_start":
            sv = view(ev)
            sv.t_start, sv.tag, sv.meter_start = t, ev.get("id_tag"), fnum(ev.get("meter_start_wh"))
            items[conn].append(("b", None, True))
        elif typ == "session_stop":
            sv = view(ev)
            sv.t_stop, sv.meter_stop = t, fnum(ev.get("meter_stop_wh"))
            items[conn].append(("b", None, True))
        elif typ == "status" and t is not None:
            status[conn].append((t, str(ev.get("status"))))
        elif typ == "authorize" and t is not None:
            auth[str(ev.get("id_tag"))].append((t, str(ev.get("result"))))
    for lst in (*status.values(), *auth.values()):
        lst.sort(key=lambda x: x[0])
    return svs, status, auth, items


def station_interval(svs: dict[str, SessView]) -> float | None:
    """The median step between a station's in-session readings, over all its sessions."""
    steps: list[float] = []
    for sv in svs.values():
        ts = sorted(r.t for r in sv.readings if sv.valid(r) and r.t is not None)
        steps.extend(b - a for a, b in pairwise(ts) if b - a > 0.5)
    return statistics.median(steps) if len(steps) >= 8 else None


def evaluate_station(
    events: list[dict[str, Any]], rated: float, cars: dict[str, Car]
) -> StationVerdict:
    svs, status, auth, items = collect(events)
    ec = EvalCtx(
        rated=rated,
        ac=rated < AC_BOUNDARY_W,
        cars=cars,
        status=status,
        auth=auth,
        interval=station_interval(svs),
    )
    hits: dict[str, dict[str, list[Span]]] = {}
    summaries = []
    for sv in svs.values():
        if sv.t_start is None:
            continue
        found = {}
        for kind, check in SESSION_CHECKS:
            spans = check(sv, ec)
            if spans:
                found[kind] = spans
        if found:
            hits[sv.sid] = found
        summaries.append((sv.sid, sv.station, sv.conn, sv.tag, sv.t_start, sv.end()))
    station = str(events[0].get("station_id")) if events else ""
    no_session = [
        (station, int(conn), a, b, why)
        for conn, lst in items.items()
        for a, b, why in ev_no_session(lst)
    ]
    return StationVerdict(hits, no_session, summaries)


def ev_concurrent(
    summaries: list[tuple[str, str, int, str | None, float, float]],
) -> dict[str, list[Span]]:
    by_tag: dict[str, list[tuple[str, str, int, str | None, float, float]]] = defaultdict(list)
    for s in summaries:
        if s[3]:
            by_tag[s[3]].append(s)
    hits: dict[str, list[Span]] = defaultdict(list)
    for group in by_tag.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if a[1] == b[1]:
                    continue
                lo, hi = max(a[4], b[4]), min(a[5], b[5])
                if hi - lo >= OVERLAP_S:
                    hits[a[0]].append(
                        (
                            lo,
                            hi,
                            f"same id_tag in session {b[0]} at {b[1]}, "
                            f"overlapping {(hi - lo) / 60:.0f} min",
                        )
                    )
                    hits[b[0]].append(
                        (
                            lo,
                            hi,
                            f"same id_tag in session {a[0]} at {a[1]}, "
                            f"overlapping {(hi - lo) / 60:.0f} min",
                        )
                    )
    return hits


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------
class Budget:
    def __init__(self, target: int, sessions: int) -> None:
        self.target = target
        self.remaining = sessions
        self.labelled = 0
        self.counts: Counter[str] = Counter()
        self.withdrawn: Counter[str] = Counter()
        self.unauth_sessions = 0

    def quota(self, n: int, rng: random.Random) -> int:
        need = max(0, self.target - self.labelled)
        ratio = min(1.0, need / max(1, self.remaining))
        return int(ratio * n + rng.random())

    def order(self, rng: random.Random) -> list[str]:
        kinds = [k for k in KINDS if k != "concurrent_id_tag"]
        rng.shuffle(kinds)
        return sorted(kinds, key=lambda k: self.counts[k])

    def take(self, f: Fault) -> None:
        self.counts[f.kind] += 1
        if f.kind == "unauthorized_energy" and not f.null_session:
            self.unauth_sessions += 1

    def release(self, f: Fault) -> None:
        """A fault whose definition does not show in the events is withdrawn."""
        self.counts[f.kind] -= 1
        self.withdrawn[f.kind] += 1
        if f.kind == "unauthorized_energy" and not f.null_session:
            self.unauth_sessions -= 1


def clean_points(ctx: Ctx, s: Sess) -> list[tuple[float, float, float]]:
    tr = s.visit.trace
    assert tr is not None
    return [(t, tr.ps[tr.idx(t)], tr.soc(t)) for t in schedule(ctx, s)]


def session_energy(s: Sess) -> float:
    tr = s.visit.trace
    assert tr is not None
    end = s.t_stop if s.t_stop is not None else s.visit.t_end
    return tr.energy(end) - tr.energy(s.t_start)


def usable(s: Sess) -> bool:
    v = s.visit
    return s.t_stop is not None and not v.reboot and v.prof != "noenergy"


def between(rng: random.Random, a: float, b: float) -> float:
    return a + (b - a) * rng.uniform(0.2, 0.8)


def plan_stall(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if not usable(s) or v.trace is None:
        return None
    assert s.t_stop is not None and v.offers is not None
    iv = st.interval
    dmin = max(720.0, 600.0 + 2.5 * iv)
    abandon = rng.random() < 0.4 and not neighbours(v)
    tail = 0.0 if abandon else 2 * iv + 120
    for d in (loguniform(rng, dmin, max(dmin + 1200, 7200.0)), dmin):
        cands = [
            t
            for t, p, soc in zip(v.trace.ts, v.trace.ps, v.trace.socs, strict=True)
            if p > 1000 and soc < 85 and s.t_start + 2 * iv + 60 <= t <= s.t_stop - d - tail
        ]
        if cands:
            break
    else:
        return None
    a = int(rng.choice(cands))
    b = int(a + d)
    if v.offers.minimum(a, b) < MIN_OFFER_W:
        return None
    status = rng.choices(("Charging", "SuspendedEVSE", "Faulted"), weights=(55, 25, 20))[0]
    err = rng.choice(ERROR_CODES) if status == "Faulted" else None
    residual = 0.0 if rng.random() < 0.5 else rng.uniform(5, 40)
    f = Fault("stall", "abandoned" if abandon else "resumed", s, resim=True)
    f.undo.setitem(v.ov, "stall", (a, b, status, residual, err))
    how = "the driver gives up and stops the session"
    if abandon:
        reason = rng.choice(("Local", "EVDisconnected"))
        dep = b if reason == "EVDisconnected" else b + rng.randint(30, 240)
        for obj, attr, val in (
            (v, "t_stop", b),
            (v, "dep", dep),
            (v, "reason", reason),
            (s, "t_stop", b),
            (s, "reason", reason),
        ):
            f.undo.set(obj, attr, val)
    else:
        how = "charging resumes"
    f.params = {
        "start": utc(a),
        "duration_min": round(d / 60, 1),
        "status": status,
        "error_code": err,
        "residual_w": round(residual, 1),
        "offer_w": v.offers.at(a),
    }
    f.text = (
        f"Charging stops at {utc(a)} for {d / 60:.0f} min: power falls to "
        f"~{residual:.0f} W and the register stays flat while the status says {status}"
        f"{' (' + err + ')' if err else ''} and the offer stays at {v.offers.at(a):.0f} W; "
        f"the car is not full; then {how}."
    )
    return f


def neighbours(v: Visit) -> bool:
    return any(
        o is not v and o.conn != v.conn and o.arr < v.dep and v.t_start < o.dep for o in v.st.visits
    )


def plan_taper(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v = s.visit
    if not usable(s) or not v.soc_rep:
        return None
    if v.st.kind == "ac":
        return taper_derate(ctx, s, rng, 3000.0)

    def derate(c: Ctx, x: Sess, r: random.Random) -> Fault | None:
        return taper_derate(c, x, r, 15000.0)

    planners = [taper_cold, taper_module, derate]
    rng.shuffle(planners)
    for planner in planners:
        f = planner(ctx, s, rng)
        if f is not None:
            return f
    return None


def taper_cold(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    v = s.visit
    tr = v.trace
    assert tr is not None
    if v.soc0 > 55 or tr.ps[tr.idx(s.t_start + 180)] < 8000:
        return None
    f0, warm, t0c = rng.uniform(0.2, 0.45), rng.uniform(720, 2400), rng.uniform(-2, 8)
    f = Fault("early_taper", "cold_battery", s, resim=True)
    f.undo.setitem(v.ov, "taper", ("cold", f0, float(s.t_start), warm))
    f.undo.setitem(v.ov, "cold", (t0c, float(s.t_start), warm))
    f.params = {
        "battery_c": round(t0c, 1),
        "power_share_at_start": round(f0, 2),
        "warm_up_min": round(warm / 60, 1),
    }
    f.text = (
        f"Cold, unconditioned battery ({t0c:.0f} C): the car draws only {100 * f0:.0f} % of "
        f"its curve at first and recovers over {warm / 60:.0f} min; the offer does not "
        f"explain it."
    )
    return f


def taper_module(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    v, st = s.visit, s.visit.st
    tr = v.trace
    assert tr is not None
    if st.rated_w < 100000:
        return None
    peak = max(tr.ps)
    n = rng.choice((4, 5, 6, 8))
    ks = [k for k in range(1, n) if st.rated_w * k / n <= 0.5 * peak]
    if not ks:
        return None
    k = rng.choice(ks)
    cap = st.rated_w * k / n
    f = Fault("early_taper", "failed_power_modules", s, resim=True)
    f.undo.setitem(v.ov, "taper", ("module", cap))
    f.params = {"modules": n, "working": k, "cap_w": cap, "car_peak_w": round(peak)}
    f.text = (
        f"{n - k} of {n} power modules failed: the charger delivers at most {cap / 1000:.0f} "
        f"kW while the car could take {peak / 1000:.0f} kW and the offer still says "
        f"{st.rated_w / 1000:.0f} kW."
    )
    return f


def taper_derate(ctx: Ctx, s: Sess, rng: random.Random, min_w: float) -> Fault | None:
    v, st = s.visit, s.visit.st
    tr = v.trace
    assert tr is not None and s.t_stop is not None
    iv = st.interval
    span = max(900.0 if st.kind == "ac" else 600.0, (5 if st.kind == "ac" else 6) * iv)
    cands = [
        t
        for t, p, soc in zip(tr.ts, tr.ps, tr.socs, strict=True)
        if p >= min_w
        and soc < (85 if st.kind == "ac" else 75)
        and s.t_start + 120 <= t <= s.t_stop - span
    ]
    if not cands:
        return None
    a = int(rng.choice(cands))
    lo = 0.25
    if st.kind == "ac":
        if st.i_conn < 12:
            return None
        lo = max(0.3, 6.0 / min(st.i_conn, v.car.i_ac))
        if lo >= 0.5:
            return None
    fac = rng.uniform(lo, 0.5)
    b = math.inf if rng.random() < 0.4 else a + rng.uniform(span, max(span + 600, 3600.0))
    f = Fault("early_taper", "thermal_derating", s, resim=True)
    f.undo.setitem(v.ov, "taper", ("derate", a, b, fac))
    f.params = {
        "start": utc(a),
        "end": utc(b) if b < math.inf else None,
        "power_share": round(fac, 2),
    }
    f.text = (
        f"The charger derates (heat) from {utc(a)}"
        f"{' to ' + utc(b) if b < math.inf else ' to the end'}: power held at "
        f"{100 * fac:.0f} % of what the car would take, offer unchanged."
    )
    return f


def register_free(s: Sess) -> bool:
    """One meter fault per connector, on a session that closes and is not split by a reboot."""
    v = s.visit
    return s.t_stop is not None and not v.reboot and not v.st.fx[v.conn]


def plan_stuck(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if not register_free(s):
        return None
    assert s.t_stop is not None
    pts = clean_points(ctx, s)
    cands = [i for i in range(1, len(pts) - 2) if pts[i][1] > 1000]
    if not cands:
        return None
    i = rng.choice(cands)
    t_a = between(rng, pts[i - 1][0], pts[i][0])
    var = rng.choices(("to_end", "catch_up", "lost_counts"), weights=(35, 35, 30))[0]
    iv = st.interval
    if var == "to_end":
        t_b = float(s.t_stop)
    else:
        t_b = min(t_a + rng.uniform(max(6 * iv, 900), max(6 * iv + 900, 5400)), s.t_stop - iv - 1)
        if t_b <= t_a + 2 * iv:
            return None
    f = Fault("meter_stuck", var, s)
    f.undo.append(st.fx[v.conn], RegFx("stuck", t_a, t_b, lost=var != "catch_up"))
    after = {
        "to_end": "until the session ends (the counts are lost)",
        "catch_up": "then catches up in one step",
        "lost_counts": "then counts on from the frozen value (the energy of the freeze is lost)",
    }[var]
    f.params = {"from": utc(t_a), "to": utc(t_b), "minutes": round((t_b - t_a) / 60, 1)}
    f.text = f"The register freezes at {utc(t_a)} while power flows, {after}."
    return f


def plan_backwards(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if not register_free(s):
        return None
    pts = clean_points(ctx, s)
    if len(pts) < 5:
        return None
    i = rng.randint(2, len(pts) - 2)
    t_x = between(rng, pts[i - 1][0], pts[i][0])
    var = rng.choices(("reset", "wrap", "glitch", "step_back"), weights=(30, 25, 25, 20))[0]
    base = st.bases[v.conn]
    if var == "reset":
        new = 0.0 if base < 1000 else rng.uniform(0, 300)
        fx = RegFx("reset", t_x, value=new)
        f_text = f"The meter resets at {utc(t_x)} and counts on from {new:.0f} Wh."
        prm: dict[str, Any] = {"at": utc(t_x), "new_value_wh": round(new)}
    elif var == "wrap":
        modulus = rng.choice((10**7, 10**8, 2**32))
        fx = RegFx("wrap", -math.inf, t_b=t_x, factor=float(modulus))
        f_text = (
            f"The register wraps at {modulus} Wh at {utc(t_x)} (a lifetime counter rolling over)."
        )
        prm = {"at": utc(t_x), "modulus_wh": modulus}
    elif var == "glitch":
        share = 0.0 if rng.random() < 0.4 else rng.uniform(0.05, 0.95)
        fx = RegFx("single", pts[i][0], factor=share)
        f_text = (
            f"One reading at {utc(pts[i][0])} reports {100 * share:.0f} % of the register "
            f"(a bad read), the next ones are right again."
        )
        prm = {"at": utc(pts[i][0]), "share": round(share, 3)}
    else:
        drop = rng.uniform(50, min(20000.0, max(60.0, 0.5 * base)))
        fx = RegFx("offset", t_x, value=-drop)
        f_text = f"The register steps back by {drop:.0f} Wh at {utc(t_x)} and counts on from there."
        prm = {"at": utc(t_x), "step_wh": round(drop)}
    f = Fault("meter_backwards", var, s, params=prm, text=f_text)
    f.undo.append(st.fx[v.conn], fx)
    return f


def plan_jump(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if not register_free(s):
        return None
    pts = clean_points(ctx, s)
    if len(pts) < 5:
        return None
    i = rng.randint(2, len(pts) - 2)
    t_x = between(rng, pts[i - 1][0], pts[i][0])
    phys = st.rated_w * st.interval / 3600
    flips = [k for k in range(16, 25) if 2**k > 4 * phys + 100]
    if rng.random() < 0.5 or not flips:
        delta, how = phys * rng.uniform(4, 60) + 100, "a spurious step"
    else:
        k = rng.choice(flips)
        delta, how = float(2**k), f"bit {k} flipping"
    transient = rng.random() < 0.25
    fx = RegFx("single", pts[i][0], value=delta) if transient else RegFx("offset", t_x, value=delta)
    f = Fault("meter_jump", "transient" if transient else "persistent", s)
    f.undo.append(st.fx[v.conn], fx)
    f.params = {
        "at": utc(pts[i][0] if transient else t_x),
        "jump_wh": round(delta),
        "connector_max_per_interval_wh": round(phys),
    }
    f.text = (
        f"The register jumps by {delta:.0f} Wh ({how}) where the connector could deliver "
        f"{phys:.0f} Wh per {st.interval} s interval"
        + ("; the next reading is right again." if transient else " and counts on from there.")
    )
    return f


def plan_mismatch(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if s.t_stop is None or v.reboot or len(clean_points(ctx, s)) < 8 or session_energy(s) < 4000:
        return None
    opts = [("unit", 35), ("power_scale", 20)]
    if not st.fx[v.conn]:
        opts.append(("calibration", 30))
    if st.kind == "ac" and v.car.phases < 3:
        opts.append(("phase_power", 15))
    var = rng.choices([o for o, _ in opts], weights=[w for _, w in opts])[0]
    f = Fault("meter_mismatch", var, s)
    if var == "unit":
        f.undo.set(s, "unit_kwh", True)
        f.text = "The session's register values arrive in kWh in the Wh field (a unit mix-up)."
    elif var == "calibration":
        r = rng.uniform(0.45, 0.78) if rng.random() < 0.5 else rng.uniform(1.25, 2.2)
        fx = RegFx("calib", float(s.t_start), t_b=float(s.t_stop), factor=r)
        f.undo.append(st.fx[v.conn], fx)
        f.params = {"register_factor": round(r, 3)}
        f.text = f"A miscalibrated meter (wrong CT ratio) counts {r:.2f} x the energy this session."
    elif var == "phase_power":
        r = 3.0 / v.car.phases
        f.undo.set(s, "power_fx", ("phase", r))
        f.params = {"power_factor": r, "car_phases": v.car.phases}
        f.text = (
            f"The charger computes power as 3 x V x I for a {v.car.phases}-phase car: the "
            f"power readings are {r:.1f} x too high."
        )
    else:
        r = rng.uniform(1.25, 2.2)
        f.undo.set(s, "power_fx", ("scale", r))
        f.params = {"power_factor": round(r, 3)}
        f.text = f"The charger's power readings are scaled by {r:.2f} (firmware scaling fault)."
    return f


def plan_gap(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    st = s.visit.st
    if not usable(s):
        return None
    assert s.t_stop is not None
    iv = st.interval
    base = max(GAP_INTERVALS * iv, GAP_MIN_S)
    for g in (rng.uniform(1.15, 6.0) * base + iv, 1.15 * base + iv):
        lo, hi = s.t_start + 2 * iv + 30, s.t_stop - g - 2 * iv - 30
        if hi > lo:
            break
    else:
        return None
    a = rng.uniform(lo, hi)
    b = a + g
    clash = any(t_r - 600 < b and a < t_boot + 600 for t_r, t_boot, _ in st.reboots) or any(
        w[0] - 600 < b and a < w[1] + 600 for w in st.offline
    )
    offline = rng.random() < 0.4 and not clash
    f = Fault("data_gap", "station_offline" if offline else "meter_link_lost", s)
    if offline:
        f.undo.append(st.offline, (a, b, False))
        f.text = (
            f"The station is offline {utc(a)} - {utc(b)} and does not queue its meter "
            f"values (transaction messages are replayed on reconnect)."
        )
    else:
        f.undo.set(s, "drop", (a, b))
        f.text = f"The meter link is lost {utc(a)} - {utc(b)}: no readings while charging goes on."
    f.params = {"from": utc(a), "to": utc(b), "minutes": round(g / 60, 1), "sampling_s": iv}
    return f


def plan_clock(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if s.t_stop is None or v.reboot:
        return None
    times = schedule(ctx, s)
    core = list(range(1, len(times) - 1)) if st.begin_end else list(range(len(times)))
    if len(core) < 8:
        return None
    var = rng.choices(("epoch_1970", "future", "step_back"), weights=(35, 30, 35))[0]
    k = min(
        {
            "epoch_1970": rng.randint(1, 8),
            "future": rng.randint(1, 10),
            "step_back": rng.randint(2, 12),
        }[var],
        len(core) - 4,
    )
    i = rng.randint(core[1], core[-1] - k)
    iv = st.interval
    if var == "epoch_1970":
        prm = rng.uniform(20, 900)
        text = (
            f"{k} reading(s) from {utc(times[i])} carry a 1970 timestamp (the meter board "
            f"rebooted with its clock at the epoch, {prm:.0f} s of uptime)."
        )
    elif var == "future":
        prm = loguniform(rng, 86400, 30 * 365.25 * 86400)
        text = f"{k} reading(s) from {utc(times[i])} are stamped {prm / 86400:.0f} days ahead."
    else:
        prm = rng.uniform(max(120.0, 2.2 * iv), max(2700.0, 2.2 * iv + 600))
        text = (
            f"The clock runs {prm / 60:.0f} min ahead for {k} reading(s) from {utc(times[i])}, "
            f"then NTP steps it back: timestamps go backwards."
        )
    f = Fault("clock_fault", var, s, text=text)
    f.undo.set(s, "clock", (var, i, k, prm, times[i]))
    f.params = {
        "first_reading": utc(times[i]),
        "readings": k,
        "shift_s" if var != "epoch_1970" else "uptime_s": round(prm, 1),
    }
    return f


def plan_unauthorized(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    opts = []
    if s.part == 0 and not v.regular and usable(s) and session_energy(s) >= 300:
        opts += ["refused_but_charged", "deauthorized"]
    if budget.unauth_sessions > 0 and st.kind == "ac" and s.part == 0:
        if v.reboot and v.after in ("resume", "wait"):
            opts.append("free_after_reboot")
        if usable(s) and v.prof in ("day", "night", "work"):
            opts.append("welded_contactor")
    if not opts:
        return None
    var = rng.choice(opts)
    return UNAUTH_VARIANTS[var](ctx, s, rng)


def unauth_refused(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    result = rng.choice(("Invalid", "Blocked", "Expired", "ConcurrentTx"))
    f = Fault("unauthorized_energy", "refused_but_charged", s)
    f.undo.set(s, "auth_result", result)
    f.undo.set(s.visit, "auth", True)
    f.params = {"authorize_result": result}
    f.text = (
        f"The card is answered {result}, yet the station starts the session anyway "
        f"(free-vend / stale local list) and delivers the whole charge."
    )
    return f


def unauth_deauthorized(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    assert s.t_stop is not None
    t_c = s.t_start + rng.randint(60, 480)
    tr = s.visit.trace
    assert tr is not None
    if t_c >= s.t_stop - 60 or tr.energy(t_c) - tr.energy(s.t_start) < 50:
        return None
    result = rng.choice(("Invalid", "Blocked", "Expired"))
    f = Fault("unauthorized_energy", "deauthorized_late", s, resim=True)
    for obj, attr, val in (
        (s, "auth_result", result),
        (s.visit, "auth", True),
        (s.visit, "t_stop", t_c),
        (s, "t_stop", t_c),
        (s, "reason", "DeAuthorized"),
    ):
        f.undo.set(obj, attr, val)
    f.params = {"authorize_result": result, "stopped_after_s": t_c - s.t_start}
    f.text = (
        f"The card is answered {result}; the station charges until the central system's "
        f"answer stops it {t_c - s.t_start} s later (DeAuthorized)."
    )
    return f


def unauth_free(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    v = s.visit
    assert v.reboot is not None and v.trace is not None
    t_r = v.reboot[0]
    if v.trace.soc(t_r) >= 95 or v.trace.ps[v.trace.idx(t_r - 1)] < 1000 or v.t_end - t_r < 1800:
        return None
    f = Fault(
        "unauthorized_energy",
        "free_after_reboot",
        s,
        resim=True,
        null_session=True,
        window=(v.reboot[1] + 3.0, float(v.t_end)),
    )
    f.undo.set(v, "after", "free")
    f.undo.set(v, "sessions", v.sessions[:1])
    f.params = {"reboot": utc(t_r), "after_session": s.sid}
    f.text = (
        f"After the reboot at {utc(t_r)} the wallbox resumes charging the plugged car "
        f"without opening a transaction: energy flows with no session open."
    )
    return f


def unauth_welded(ctx: Ctx, s: Sess, rng: random.Random) -> Fault | None:
    v = s.visit
    tr = v.trace
    assert tr is not None and s.t_stop is not None
    cands = [
        t
        for t, p in zip(tr.ts, tr.ps, strict=True)
        if p > 1000 and s.t_start + 600 <= t <= s.t_stop - 1800 and tr.ps[tr.idx(t + 1800)] > 1000
    ]
    if not cands:
        return None
    t_w = int(rng.choice(cands))
    reason = rng.choice(("Remote", "Other", "Local"))
    f = Fault(
        "unauthorized_energy",
        "welded_contactor",
        s,
        resim=True,
        null_session=True,
        window=(float(t_w), float(v.t_end)),
    )
    for obj, attr, val in ((v, "t_stop", t_w), (s, "t_stop", t_w), (s, "reason", reason)):
        f.undo.set(obj, attr, val)
    f.undo.setitem(v.ov, "welded", True)
    f.params = {"stopped_at": utc(t_w), "stop_reason": reason, "after_session": s.sid}
    f.text = (
        f"The transaction ends at {utc(t_w)} ({reason}) but the contactor stays closed: "
        f"the car keeps charging with no session open until it is unplugged."
    )
    return f


UNAUTH_VARIANTS: dict[str, Callable[[Ctx, Sess, random.Random], Fault | None]] = {
    "refused_but_charged": unauth_refused,
    "deauthorized": unauth_deauthorized,
    "free_after_reboot": unauth_free,
    "welded_contactor": unauth_welded,
}


def plan_soc(ctx: Ctx, s: Sess, rng: random.Random, budget: Budget) -> Fault | None:
    v, st = s.visit, s.visit.st
    if s.t_stop is None or v.reboot:
        return None
    opts = ["fall", "jump", "flat"] if v.soc_rep else []
    if st.report_temp:
        opts.append("temperature")
    if not opts:
        return None
    pts = clean_points(ctx, s)
    var = rng.choice(opts)
    charging = [i for i in range(1, len(pts) - 1) if pts[i][1] > 1000]
    if not charging:
        return None
    if var == "fall":
        cands = [i for i in charging if pts[i][2] >= 12]
        if not cands:
            return None
        i = rng.choice(cands)
        drop = rng.uniform(4, min(35.0, pts[i][2] - 2))
        persistent = rng.random() >= 0.3
        prm: dict[str, float] = {"drop": drop, "persistent": float(persistent)}
        text = (
            f"The car's SoC drops {drop:.0f} points at {utc(pts[i][0])} while charging"
            f"{' and stays offset' if persistent else ' for one reading'} (BMS recalibration)."
        )
    elif var == "jump":
        found = soc_jump(s, pts, charging, rng)
        if found is None:
            return None
        i, prm, text = found
    elif var == "flat":
        tr = v.trace
        assert tr is not None
        total = tr.energy(s.t_stop)
        cands = [i for i in charging if total - tr.energy(pts[i][0]) >= 25000]
        if not cands:
            return None
        i = rng.choice(cands)
        prm = {"frozen": float(math.floor(pts[i][2]))}
        text = (
            f"The car's SoC freezes at {prm['frozen']:.0f} % from {utc(pts[i][0])} while "
            f"{(total - tr.energy(pts[i][0])) / 1000:.0f} kWh still flow."
        )
    else:
        i = rng.choice(charging)
        hot = rng.random() < 0.6
        prm = {
            "temp": rng.uniform(65, 90) if hot else -40.0,
            "rise": 0.5 if hot else 0.0,
            "count": float(rng.randint(3, 12)),
        }
        text = (
            f"The battery temperature reads {prm['temp']:.0f} C from {utc(pts[i][0])} "
            f"for {prm['count']:.0f} readings while charging"
            f"{' (overheating pack)' if hot else ' (sensor default value)'}."
        )
    f = Fault("soc_inconsistent", var, s, text=text)
    f.undo.set(s, "soc_fx", (var, i, prm))
    f.params = {"at": utc(pts[i][0]), **{k: round(x, 2) for k, x in prm.items()}}
    return f


def soc_jump(
    s: Sess, pts: list[tuple[float, float, float]], charging: list[int], rng: random.Random
) -> tuple[int, dict[str, float], str] | None:
    tr = s.visit.trace
    assert tr is not None
    rng.shuffle(charging)
    for i in charging:
        (ta, pa, _), (tb, pb, soc) = pts[i - 1], pts[i]
        e = max(tr.energy(tb) - tr.energy(ta), max(pa, pb) * (tb - ta) / 3600) * 1.05
        need = 100 * (e + SOC_SLACK_WH) / SMALLEST_BATTERY_WH + 1.5
        jump = need + rng.uniform(3, 30)
        if soc + jump <= 99.5:
            text = (
                f"The car's SoC jumps {jump:.0f} points at {utc(tb)} on {e:.0f} Wh "
                f"(a BMS estimate reset)."
            )
            return i, {"jump": jump}, text
    return None


PLANNERS: dict[str, Callable[[Ctx, Sess, random.Random, Budget], Fault | None]] = {
    "stall": plan_stall,
    "early_taper": plan_taper,
    "meter_stuck": plan_stuck,
    "meter_backwards": plan_backwards,
    "meter_jump": plan_jump,
    "meter_mismatch": plan_mismatch,
    "data_gap": plan_gap,
    "clock_fault": plan_clock,
    "unauthorized_energy": plan_unauthorized,
    "soc_inconsistent": plan_soc,
}


def plan_faults(ctx: Ctx, st: Station, visits: list[Visit], budget: Budget) -> list[Fault]:
    rng = random.Random(f"{ctx.seed}/faults/{st.idx}")
    sessions = [s for v in visits for s in v.sessions if not s.locked]
    k = budget.quota(len(sessions), rng)
    rng.shuffle(sessions)
    faults: list[Fault] = []
    for s in sessions:
        if len(faults) >= k:
            break
        if s.visit.faulted or s.visit.trace is None:
            continue
        for kind in budget.order(rng):
            f = PLANNERS[kind](ctx, s, rng, budget)
            if f is None:
                continue
            f.undo.set(s, "fault", f)
            s.visit.faulted = True
            s.visit.dirty = f.resim
            budget.take(f)
            faults.append(f)
            break
    return faults


def confirmed(f: Fault, verdict: StationVerdict) -> bool:
    if f.null_session:
        return any(
            c == f.sess.visit.conn and a <= f.window[1] and b >= f.window[0]
            for _, c, a, b, _ in verdict.no_session
        )
    return f.kind in verdict.hits.get(f.sess.sid, {})


# ---------------------------------------------------------------------------------------------
# A station from plan to labelled events
# ---------------------------------------------------------------------------------------------
@dataclass
class StationResult:
    lines: list[tuple[float, int, int, str]]
    labels: list[dict[str, Any]]
    notes: dict[str, dict[str, Any]]
    summaries: list[tuple[str, str, int, str | None, float, float]]
    sessions: dict[str, Sess]
    labelled_sessions: int
    incidental: int


def run_station(ctx: Ctx, st: Station, visits: list[Visit], budget: Budget) -> StationResult:
    st.visits = visits
    lines = offer_lines(ctx, st, visits)
    for v in visits:
        v.offers = lines[v.conn]
        if v.prof != "rejected":
            v.trace = simulate(v)
    faults = plan_faults(ctx, st, visits, budget)
    while True:
        for v in visits:
            if v.dirty and v.prof != "rejected":
                v.trace = simulate(v)
            v.dirty = False
        items = emit_station(ctx, st, visits)
        events = [obj for _, _, obj in items]
        cars = {s.sid: s.visit.car for v in visits for s in v.sessions}
        verdict = evaluate_station(events, st.rated_w, cars)
        failed = [f for f in faults if not confirmed(f, verdict)]
        if not failed:
            break
        for f in failed:
            f.undo.revert()
            faults.remove(f)
            budget.release(f)
            f.sess.visit.faulted = False
            f.sess.visit.dirty = True
    result = label_station(st, visits, faults, verdict)
    result.lines = [
        (arr, st.idx, seq, json.dumps(obj, separators=(",", ":"))) for arr, seq, obj in items
    ]
    for v in visits:  # the traces are no longer needed
        v.trace = None
        v.offers = None
    return result


def note_for(
    st: Station, s: Sess, kinds: dict[str, list[Span]], faults: list[Fault] | None = None
) -> dict[str, Any]:
    f = s.fault
    v = s.visit
    evidence = {k: spans[0][2] for k, spans in sorted(kinds.items())}
    cause = outage_cause(faults or [], kinds.get("data_gap", []))
    note: dict[str, Any] = {
        "session_id": s.sid,
        "station_id": st.station_id,
        "connector_id": v.conn,
        "kinds": sorted(kinds),
        "fault": f.kind if f else None,
        "variant": f.variant if f else None,
        "params": f.params if f else {},
        "explanation": f.text
        if f
        else "no fault injected here; the definitions below hold as the events show",
        "implied": {k: why for k, why in evidence.items() if not f or k != f.kind},
        "evidence": evidence,
        "vehicle": v.car.name,
        "battery_kwh": v.car.cap,
        "station_type": st.typ,
        "rated_power_w": st.rated_w,
        "sampling_interval_s": st.interval,
    }
    if f is None and cause is not None and set(kinds) == {"data_gap"}:
        note.update(
            fault="data_gap",
            variant="station_offline",
            implied={},
            params={**cause.params, "outage_of_session": cause.sess.sid},
            explanation=f"{cause.text} This session was open on another connector "
            f"during that outage and lost its readings too.",
        )
    elif f and evidence.keys() - {f.kind}:
        others = sorted(evidence.keys() - {f.kind})
        note["explanation"] += " " + implied_text(f.kind, others)
        if cause is not None and cause is not f and "data_gap" in others:
            note["explanation"] += (
                f" (The data gap comes from the station outage injected with "
                f"session {cause.sess.sid}: {cause.text})"
            )
    return note


def outage_cause(faults: list[Fault], spans: list[Span]) -> Fault | None:
    """The injected station outage that explains a data gap, if any."""
    for f in faults:
        if f.variant != "station_offline":
            continue
        a, b = parse_ts(f.params["from"]) or 0.0, parse_ts(f.params["to"]) or 0.0
        if any(s0 <= b + 1 and s1 >= a - 1 for s0, s1, _ in spans):
            return f
    return None


def implied_text(kind: str, others: list[str]) -> str:
    return (
        f"As a consequence the definition of {', '.join(others)} holds too (CONTRACTS "
        f"section 3 read literally on these events), so the session carries "
        f"{'that label' if len(others) == 1 else 'those labels'} as well."
    )


def label_station(
    st: Station, visits: list[Visit], faults: list[Fault], verdict: StationVerdict
) -> StationResult:
    sessions = {s.sid: s for v in visits for s in v.sessions}
    labels: list[dict[str, Any]] = []
    notes: dict[str, dict[str, Any]] = {}
    incidental = 0
    for sid, kinds in verdict.hits.items():
        s = sessions[sid]
        for kind, spans in kinds.items():
            labels.append(
                label(
                    sid,
                    st.station_id,
                    s.visit.conn,
                    kind,
                    min(a for a, _, _ in spans),
                    max(b for _, b, _ in spans),
                )
            )
        notes[sid] = note_for(st, s, kinds, faults)
        if notes[sid]["fault"] is None:
            incidental += 1
    for _, c, a, b, why in verdict.no_session:
        labels.append(label(None, st.station_id, c, "unauthorized_energy", a, b))
        f = next(
            (
                f
                for f in faults
                if f.null_session
                and f.sess.visit.conn == c
                and a <= f.window[1]
                and b >= f.window[0]
            ),
            None,
        )
        if f is None:
            incidental += 1
        key = f"{st.station_id}/{c}/{utc(a)}"
        notes[key] = {
            "session_id": None,
            "station_id": st.station_id,
            "connector_id": c,
            "kinds": ["unauthorized_energy"],
            "start": utc(a),
            "end": utc(b),
            "fault": "unauthorized_energy" if f else None,
            "variant": f.variant if f else None,
            "params": f.params if f else {},
            "explanation": f.text if f else why,
            "evidence": {"unauthorized_energy": why},
            "vehicle": f.sess.visit.car.name if f else None,
            "station_type": st.typ,
            "rated_power_w": st.rated_w,
        }
    return StationResult(
        [],
        labels,
        notes,
        verdict.summaries,
        sessions,
        len(verdict.hits) + len(verdict.no_session),
        incidental,
    )


def label(
    sid: str | None, station: str, conn: int, kind: str, a: float, b: float
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "station_id": station,
        "connector_id": conn,
        "kind": kind,
        "start": utc(a),
        "end": utc(b),
    }


# ---------------------------------------------------------------------------------------------
# Generate
# ---------------------------------------------------------------------------------------------
def generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    t0 = parse_ts(args.start)
    if t0 is None:
        print(f"--start {args.start!r} is not RFC 3339 with a zone", file=sys.stderr)
        return 2
    ctx = Ctx(args.seed, int(t0), int(t0 + args.hours * 3600))
    stations = build_stations(ctx, args.stations)
    plans = [plan_station(ctx, st) for st in stations]
    every = [v for vs in plans for v in vs]
    assign_tags(ctx, every)
    n_sessions = sum(len(v.sessions) for v in every)
    target = round(args.anomaly_rate * n_sessions)
    pairs = plan_concurrent(ctx, every, target)
    budget = Budget(target - 2 * len(pairs), n_sessions - 2 * len(pairs))
    lines: list[tuple[float, int, int, str]] = []
    labels: list[dict[str, Any]] = []
    notes: dict[str, dict[str, Any]] = {}
    summaries: list[tuple[str, str, int, str | None, float, float]] = []
    sessions: dict[str, Sess] = {}
    incidental = 0
    for st, visits in zip(stations, plans, strict=True):
        n_here = sum(1 for v in visits for s in v.sessions if not s.locked)
        res = run_station(ctx, st, visits, budget)
        budget.remaining -= n_here
        budget.labelled += res.labelled_sessions
        lines.extend(res.lines)
        labels.extend(res.labels)
        notes.update(res.notes)
        summaries.extend(res.summaries)
        sessions.update(res.sessions)
        incidental += res.incidental
    add_concurrent(ev_concurrent(summaries), sessions, labels, notes)
    write_outputs(args, stations, lines, labels, notes)
    elapsed = time.perf_counter() - started
    report(labels, notes, n_sessions, incidental, elapsed, len(lines), budget.withdrawn)
    return 0


def add_concurrent(
    hits: dict[str, list[Span]],
    sessions: dict[str, Sess],
    labels: list[dict[str, Any]],
    notes: dict[str, dict[str, Any]],
) -> None:
    for sid, spans in hits.items():
        s = sessions[sid]
        st = s.visit.st
        labels.append(
            label(
                sid,
                st.station_id,
                s.visit.conn,
                "concurrent_id_tag",
                min(a for a, _, _ in spans),
                max(b for _, b, _ in spans),
            )
        )
        text = (
            f"A cloned card or shared credentials: the same id_tag opens session "
            f"{s.partner} at another station while this one is open."
        )
        note = notes.get(sid)
        if note is None:
            note = note_for(st, s, {})
            note.update(
                fault="concurrent_id_tag",
                variant="cloned_card",
                params={"other_session": s.partner},
                explanation=text,
                implied={},
            )
            notes[sid] = note
        elif note["fault"] is None:
            note.update(
                fault="concurrent_id_tag",
                variant="cloned_card",
                params={"other_session": s.partner},
            )
            note["explanation"] = text + " " + implied_text("concurrent_id_tag", note["kinds"])
        note["kinds"] = sorted({*note["kinds"], "concurrent_id_tag"})
        note["evidence"]["concurrent_id_tag"] = spans[0][2]


def write_outputs(
    args: argparse.Namespace,
    stations: list[Station],
    lines: list[tuple[float, int, int, str]],
    labels: list[dict[str, Any]],
    notes: dict[str, dict[str, Any]],
) -> None:
    out = Path(args.out)
    paths = {
        "events": out,
        "labels": Path(args.labels),
        "stations": Path(args.stations_out) if args.stations_out else out.with_name("stations.csv"),
        "notes": Path(args.notes) if args.notes else out.with_name("notes.jsonl"),
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    lines.sort(key=lambda x: (x[0], x[1], x[2]))
    with paths["events"].open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(line + "\n" for *_, line in lines)
    labels.sort(
        key=lambda d: (
            d["start"],
            d["station_id"],
            d["connector_id"],
            d["session_id"] or "",
            d["kind"],
        )
    )
    with paths["labels"].open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(d, separators=(",", ":")) + "\n" for d in labels)
    with paths["notes"].open("w", encoding="utf-8", newline="\n") as fh:
        for key in sorted(notes):
            fh.write(json.dumps(notes[key], separators=(",", ":"), sort_keys=False) + "\n")
    with paths["stations"].open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(STATION_COLUMNS)
        for st in stations:
            w.writerow(
                [st.station_id, st.site_id, f"{st.lat:.6f}", f"{st.lon:.6f}", int(st.rated_w)]
            )


STATION_COLUMNS = ("station_id", "site_id", "latitude", "longitude", "rated_power_w")


def report(
    labels: list[dict[str, Any]],
    notes: dict[str, dict[str, Any]],
    n_sessions: int,
    incidental: int,
    elapsed: float,
    n_events: int,
    withdrawn: Counter[str],
) -> None:
    per_kind = Counter(d["kind"] for d in labels)
    with_session = Counter(d["kind"] for d in labels if d["session_id"] is not None)
    labelled = {d["session_id"] for d in labels if d["session_id"] is not None}
    print(
        f"{n_events} events, {n_sessions} sessions, {len(labelled)} labelled "
        f"({100 * len(labelled) / max(1, n_sessions):.1f} %), {len(labels)} labels, "
        f"{incidental} without an injected fault, {elapsed:.1f} s"
    )
    for kind in KINDS:
        extra = per_kind[kind] - with_session[kind]
        more = f"  ({extra} with no session)" if extra else ""
        print(f"  {kind:20s} {per_kind[kind]:5d}{more}")
    injected = Counter(n["fault"] for n in notes.values() if n.get("fault"))
    implied = sum(len(n.get("implied") or {}) for n in notes.values() if n.get("fault"))
    print(f"  injected faults: {dict(sorted(injected.items()))}")
    print(f"  labels implied by another fault's effect: {implied}")
    print(f"  withdrawn, their definition did not show: {dict(sorted(withdrawn.items()))}")


# ---------------------------------------------------------------------------------------------
# --check
# ---------------------------------------------------------------------------------------------
def read_jsonl(path: Path, failures: list[str]) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                failures.append(f"{path.name}:{no}: not JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                failures.append(f"{path.name}:{no}: not an object")
                continue
            out.append(obj)
    return out


def read_stations(path: Path, failures: list[str]) -> dict[str, float]:
    rated: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if tuple(header) != STATION_COLUMNS:
            failures.append(f"stations.csv: header {header} is not {list(STATION_COLUMNS)}")
        for row in reader:
            try:
                rated[row[0]] = float(row[4])
            except (IndexError, ValueError):
                failures.append(f"stations.csv: bad row {row}")
    return rated


def check(directory: str) -> int:
    base = Path(directory)
    failures: list[str] = []
    events = read_jsonl(base / "events.jsonl", failures)
    labels = read_jsonl(base / "labels.jsonl", failures)
    notes = read_jsonl(base / "notes.jsonl", failures)
    rated = read_stations(base / "stations.csv", failures)
    check_events(events, failures)
    by_station: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        by_station[str(ev.get("station_id"))].append(ev)
    cars = {
        str(n["session_id"]): CAR_BY_NAME[n["vehicle"]]
        for n in notes
        if n.get("session_id") and n.get("vehicle") in CAR_BY_NAME
    }
    hits: dict[str, dict[str, list[Span]]] = {}
    no_session: list[tuple[str, int, float, float, str]] = []
    summaries: list[tuple[str, str, int, str | None, float, float]] = []
    for station, evs in by_station.items():
        if station not in rated:
            failures.append(f"station {station} is in the events but not in stations.csv")
            continue
        verdict = evaluate_station(evs, rated[station], cars)
        hits.update(verdict.hits)
        no_session.extend(verdict.no_session)
        summaries.extend(verdict.summaries)
    for sid, spans in ev_concurrent(summaries).items():
        hits.setdefault(sid, {})["concurrent_id_tag"] = spans
    check_labels(labels, hits, no_session, cars, failures)
    check_notes(labels, notes, failures)
    for line in failures:
        print(f"FAIL {line}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    per_kind = Counter(d["kind"] for d in labels)
    print(
        f"OK: {len(labels)} labels hold by the definitions, no unlabelled session satisfies one; "
        + ", ".join(f"{k} {per_kind[k]}" for k in KINDS)
    )
    return 0


REQUIRED = {
    "reading": ("station_id", "connector_id"),
    "session_start": ("station_id", "connector_id", "session_id", "id_tag"),
    "session_stop": ("station_id", "connector_id", "session_id"),
    "status": ("station_id", "connector_id", "status"),
    "authorize": ("station_id", "id_tag", "result"),
    "station": ("station_id", "event"),
}
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
)
ENUMS = {
    "status": {
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    },
    "result": {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"},
    "event": {"boot", "connect", "disconnect", "heartbeat"},
}


def event_problem(ev: dict[str, Any]) -> str | None:
    """Why ingest would reject this line under CONTRACTS section 1 (None: it would not)."""
    keys = REQUIRED.get(str(ev.get("type")))
    if keys is None or parse_ts(ev.get("ts")) is None:
        return "unknown type or ts not RFC 3339 with a zone"
    missing = [k for k in keys if ev.get(k) is None]
    if missing:
        return f"lacks {missing}"
    conn = ev.get("connector_id")
    if conn is not None and (not isinstance(conn, int) or isinstance(conn, bool) or conn < 0):
        return "connector_id is not an int >= 0"
    for key in NUMERIC:
        if ev.get(key) is not None and fnum(ev[key]) is None:
            return f"{key} is not a number"
    for key, allowed in ENUMS.items():
        if key in keys and ev[key] not in allowed:
            return f"{key} {ev[key]!r} is not one of the contract's values"
    if (fnum(ev.get("voltage_v")) or 0.0) < 0 or not 0 <= (fnum(ev.get("soc_pct")) or 0.0) <= 100:
        return "physically impossible value"
    return None


def check_events(events: list[dict[str, Any]], failures: list[str]) -> None:
    bad = 0
    for no, ev in enumerate(events, 1):
        why = event_problem(ev)
        if why is not None:
            bad += 1
            if bad <= 20:
                failures.append(f"events.jsonl:{no}: {why}")
    if bad > 20:
        failures.append(f"events.jsonl: {bad - 20} more invalid lines")


def _overlaps(a: float, b: float, spans: list[Span]) -> bool:
    return any(a <= s1 + 1 and b >= s0 - 1 for s0, s1, _ in spans)


def check_labels(
    labels: list[dict[str, Any]],
    hits: dict[str, dict[str, list[Span]]],
    no_session: list[tuple[str, int, float, float, str]],
    cars: dict[str, Car],
    failures: list[str],
) -> None:
    seen: set[tuple[str, str]] = set()
    ns_seen: set[int] = set()
    for lab in labels:
        sid, kind = lab.get("session_id"), lab.get("kind")
        a, b = parse_ts(lab.get("start")), parse_ts(lab.get("end"))
        if kind not in KINDS or a is None or b is None or b < a:
            failures.append(f"label {lab}: bad kind or start/end")
            continue
        if sid is None:
            match = [
                i
                for i, (st, c, s0, s1, _) in enumerate(no_session)
                if st == lab.get("station_id")
                and c == lab.get("connector_id")
                and kind == "unauthorized_energy"
                and a <= s1 + 1
                and b >= s0 - 1
            ]
            if not match:
                failures.append(
                    f"label {kind} on {lab.get('station_id')}/{lab.get('connector_id')}"
                    f" with no session at {lab.get('start')}: no energy flows there "
                    f"outside a session"
                )
            ns_seen.update(match)
            continue
        spans = hits.get(sid, {}).get(kind)
        if not spans or not _overlaps(a, b, spans):
            failures.append(
                f"label {kind} on session {sid}: the definition does not hold "
                f"{'there' if spans else 'in its events'}"
            )
        seen.add((sid, kind))
    for sid, kinds in hits.items():
        for kind, spans in kinds.items():
            if (sid, kind) not in seen:
                failures.append(
                    f"session {sid} satisfies {kind} but carries no label: {spans[0][2]}"
                )
    for i, (st, c, _, _, why) in enumerate(no_session):
        if i not in ns_seen:
            failures.append(f"{st}/{c}: unlabelled unauthorized_energy: {why}")


def check_notes(
    labels: list[dict[str, Any]], notes: list[dict[str, Any]], failures: list[str]
) -> None:
    by_session: dict[str, set[str]] = defaultdict(set)
    for lab in labels:
        if lab.get("session_id") is not None:
            by_session[str(lab["session_id"])].add(str(lab["kind"]))
    noted = {str(n["session_id"]): set(n.get("kinds") or []) for n in notes if n.get("session_id")}
    for sid, kinds in by_session.items():
        if sid not in noted:
            failures.append(f"labelled session {sid} has no note")
        elif noted[sid] != kinds:
            failures.append(f"note of {sid} lists {sorted(noted[sid])}, labels {sorted(kinds)}")
    for sid in noted.keys() - by_session.keys():
        failures.append(f"note for session {sid} that has no label")
    n_null = sum(1 for lab in labels if lab.get("session_id") is None)
    n_null_notes = sum(1 for n in notes if n.get("session_id") is None)
    if n_null != n_null_notes:
        failures.append(f"{n_null} labels without a session but {n_null_notes} notes for them")


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--anomaly-rate",
        type=float,
        default=0.2,
        help="share of sessions that carry a label (about)",
    )
    ap.add_argument("--start", default="2026-11-23T12:00:00Z", help="RFC 3339 with a zone")
    ap.add_argument("--out", help="events, JSON Lines (CONTRACTS section 1)")
    ap.add_argument("--labels", help="labels, JSON Lines (CONTRACTS section 2)")
    ap.add_argument("--stations-out", help="station metadata CSV (default: beside --out)")
    ap.add_argument("--notes", help="one JSON line per labelled session (default: beside --out)")
    ap.add_argument(
        "--check",
        metavar="DIR",
        help="re-verify DIR/events.jsonl, labels.jsonl, notes.jsonl, stations.csv",
    )
    args = ap.parse_args(argv)
    if args.check:
        return check(args.check)
    if not args.out or not args.labels:
        ap.error("--out and --labels are required (or --check DIR)")
    if args.stations < 1 or args.hours <= 0 or not 0 <= args.anomaly_rate <= 1:
        ap.error("--stations >= 1, --hours > 0 and 0 <= --anomaly-rate <= 1")
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
