"""town_fleet: a fifth, independently written labelled fleet of a town's charging network.

Writes CONTRACTS.md section 1 events, section 2 labels, a stations.csv and one note per labelled
session (or per energy outside any session), all deterministic for a seed; ``--check DIR``
re-derives every label from the files by the rules below and exits non-zero on any difference.
Standard library only.

The town (Europe, local time UTC+01:00 in the default November window)
-----------------------------------------------------------------------
Shares of stations (rounded, at least two DC and two far-town stations):

- ``home`` 38 %: one connector, 10 A 230 V granny cable (2.3 kW), 16 A or 32 A single phase
  (3.7 / 7.4 kW), 16 A three phase (11 kW); evening plug-in 16:30-21:30 until 06:30-08:30
  (cut at the end of the window), 30 % a daytime top-up; 35 % of evening sessions wait for a
  departure-timer / off-peak start (23:00, 00:30, 01:00) in ``SuspendedEV``.
- ``work`` 16 %: 2-4 connectors at 11 kW (16 A) or 22 kW (32 A) three phase, car parks of 3-5
  stations on one site; 50 % load-managed (``power_offered_w`` steps through the day, never
  between 0 and 6 A per phase), 25 % a smart-charging pause (offer 0 W for an hour at noon or
  17:00). Commuters 07:00-09:30 until 15:30-18:30, some leave at lunch and a colleague plugs in
  within minutes (back-to-back), visitors 1-2 h.
- ``kerb`` 25 %: lamp posts, 1-2 connectors, 16 A or 22 A single phase (3.7 / 5.1 kW), mostly
  15-minute clock-aligned sampling, half of them energy register only (OCPP 1.6 default).
- ``dc`` 5 %: supermarket car park, two CCS connectors, 50 kW or 150 kW (the 150 kW units share:
  75 kW each while both are busy), 10-60 s sampling with SoC and battery temperature.
- ``us`` 10 %: US-built public posts, 208 V or 240 V single phase, 30-48 A, two connectors.
- ``far`` 6 %: kerb/DC posts in a town 250 km away (where cloned cards show up).

Vehicles: a compact table built from open-ev-data (Chargeprice, github.com/chargeprice/
open-ev-data, data/ev-data.json, commit e495ff9, MIT): usable battery, AC phases and on-board
limit, DC curve (kW over SoC). BEVs 78 %, PHEVs 22 % (small packs, 3.3-7.4 kW single phase).
AC: current = min(station amps, car amps, offer amps); power = amps x volts x min(car, station
phases); efficiency 0.90 AC / 0.94 DC; constant power until the driver's limit (100 %, 90 % or
80 %), at 100 % a 3-8 minute taper; then ``SuspendedEV``, plugged in until departure, with 0-2
wakes of 3-10 minutes at 0.6-3 kW (balancing, cabin preconditioning: normal). DC: 5 s steps
along the car's curve capped by the charger and its offer; the driver stops at 70-90 % or after
15-45 minutes. Also: sessions under a minute, zero-energy sessions (car already full, or a
``DeAuthorized`` start after a refused card), remote starts with no authorize, refused and
``ConcurrentTx`` authorizations with no session after them.

Station habits: sampling 10 s - 15 min (clock-aligned 15 min on most kerb/home boxes), report
``power_w`` or only ``current_a``/``voltage_v`` plus the invented extra key ``phase_count`` (the
number of phases carrying current; ``current_a`` is the current per active phase, ``voltage_v``
the phase-to-neutral voltage, or the line voltage on US single phase; power = current x voltage x
phase_count) or only ``energy_wh``; register resolution 1/10/100/1000 Wh (coarse only where
power is reported; energy-only stations sample every 60 s or slower at 1 or 10 Wh); zone ``Z``,
``+00:00``, ``+01:00`` or ``-05:00``; 0/3/6 fractional digits; numbers as strings on 30 %;
meterStart/meterStop on 90 %; connector 0 (the station's main meter: sum of all connectors) on
some multi-connector stations; heartbeats; boots; ``Faulted`` episodes while idle; 5 % of
stations offline for an hour that upload their buffered events in one burst on reconnecting
(file order is arrival order); 4 % retransmit ~3 % of readings (exact duplicates); 1 % of
readings individually lost. ``temperature_c`` is only ever the battery temperature reported by
the car (DC); AC wallboxes put their own board temperature in the extra key
``board_temperature_c``.

Label rules (what ``--check`` re-derives; the same code labels the generated data)
----------------------------------------------------------------------------------
Common: per session, readings carrying its ``session_id`` in file order; a reading identical to
one already seen on the connector (same ts text and values) is a retransmission and is dropped.
Power P = ``power_w`` or else current x voltage x ``phase_count`` (1 if absent). Register
series: meterStart, the readings' ``energy_wh``, meterStop. Station sampling interval I = median
of the positive gaps between consecutive readings of a session on that station. Physical cap of
a connector = ``rated_power_w`` from stations.csv, or 350 kW where it is not declared. Status at
a reading = last status event of the connector with ts <= the reading's ts. Every metric has a
grey band around its threshold; generation re-draws any session that lands in one, and
``--check`` reports any found.

- clock_fault: a reading before start-60 s or after stop+60 s, or a reading more than 60 s
  earlier than the previous reading of the session in file order (grey: 20-60 s, or outside
  the window by 5-60 s). Window: session start..stop. A session with a clock fault has no
  trustworthy time axis: stall, early_taper, meter_stuck, meter_jump, meter_mismatch and data_gap
  are not judged on it (meter_backwards, soc_inconsistent, unauthorized_energy and
  concurrent_id_tag are).
- meter_backwards: the register decreases between consecutive values (normal data never does).
- meter_jump: a rise dE > 1.5 x cap x dt + 2000 Wh (grey above 1.1 x cap x dt + 1100 Wh).
- meter_stuck: a run of consecutive reading pairs with equal registers and P >= 500 W at both
  ends whose trapezoid energy is >= 3000 Wh (grey 1200-3000 Wh).
- meter_mismatch: over readings with both register and power (>= 6 of them, energy >= 2 kWh):
  d = (|E_reg - E_int| - B - 2 x resolution) / max(E_reg, E_int) > 0.15, where E_reg sums the
  positive register steps, E_int is the trapezoid integral of P and B = sum |dP| x dt / 2 is
  what the sampling cannot resolve (grey 0.08-0.20). Resolution: the largest of 1/10/100/1000
  dividing every register value of the session.
- stall: a pair of consecutive readings carries no flow when every measure says so (P < 100 W at
  both ends if power is reported, register rate < 150 W if registers are); it is unexplained when
  the status at both ends is Charging, SuspendedEVSE or unknown, no SoC >= 95 and no
  ``power_offered_w`` < 1380 W. A run of unexplained no-flow pairs lasting >= 10 min is a stall
  (grey 5-15 min).
- early_taper: plateau = second highest P among Charging readings with P >= 100 W (needs 3);
  a reading is explained when its offer < 0.95 x the highest offer seen at readings within 10 %
  of the plateau. A Charging reading with 100 W <= P < threshold, unexplained, is low; the
  threshold is 0.75 x plateau in sessions without SoC (grey up to 0.88) and 0.6 x ENV(SoC) x
  plateau with SoC (grey up to 0.8), ENV being the lowest curve/peak ratio at that SoC over
  the DC cars of the vehicle table. A run of low readings (until the next reading, or the stop)
  lasting >= 45 min without SoC (grey 20-45) or >= 5 min with SoC (grey 2-5) is early_taper.
- data_gap (not judged on a station whose interval is unknown): m = min(gap / (5 I),
  gap / 300 s) over consecutive times start, readings, stop; m >= 1.4 labels (grey 0.7-1.4).
- unauthorized_energy: the session's authorization is the last ``authorize`` of its station and
  id_tag within [start-10 min, start+60 s] (none: a remote start, taken as accepted); if it is
  not Accepted and the session delivered > 300 Wh (register, else power integral) it is labelled
  (grey 20-300 Wh). Outside sessions, per connector >= 1 in file order: the register values
  from a meterStop (or first session-less reading) through the session-less readings to the next
  meterStart; > 300 Wh of rises, or (no register rise seen) >= 2 session-less readings with
  P >= 1000 W, labels one ``session_id: null`` episode (grey 20-300 Wh, or one such reading).
  Connector 0 (the main meter) is never judged.
- soc_inconsistent: between consecutive SoC readings with >= 100 Wh delivered, a fall of >= 3
  points (grey 2); a rise of >= 10 points and > 2 x (100 x dE / 8 kWh) + 5 (grey above
  100 x dE / 8 kWh + 3); a stretch with SoC within 3 points while >= 20 kWh flow (grey 10-20);
  ``temperature_c`` > 60 or < -25 degC at a reading with P >= 500 W (grey 55-60, -25..-20).
- concurrent_id_tag: one id_tag in sessions at two different stations whose [start, stop]
  overlap by >= 5 min; both carry it, window = the overlap (grey: overlap or separation < 5 min).

Labels bound: clock_fault, mismatch, unauthorized (in session): start..stop; others: the
first..last timestamp of the evidence. A kind seen several times in one session is one label from
its first to its last evidence. When one fault meets several definitions (a frozen register that
then jumps to catch up is also a jump and a mismatch), every kind met is labelled and the note
says so.

Left out: sessions already running at the window start or still open at its end, OCPP 2.0.1
shapes, V2G export, reservations.
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
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
EPOCH = datetime(1970, 1, 1)
LOCAL_OFF_MS = 3_600_000  # the town's local time is UTC+01:00 in the default window
DEFAULT_CAP_W = 350_000.0
DEBUG = False

# --- vehicles (open-ev-data, Chargeprice, MIT; see the module docstring) -------------------------
# name, type, usable kWh, AC phases, AC kW, DC curve [(SoC %, kW)] or None
Curve = list[tuple[float, float]]
VEHICLES: list[tuple[str, str, float, int, float, Curve | None]] = [
    ("Volkswagen ID.3 58 kWh", "bev", 58.0, 3, 11.0, [(0, 100), (30, 100), (70, 50), (80, 50),
                                                       (100, 20)]),
    ("Tesla Model 3 LR", "bev", 74.0, 3, 11.0, [(0, 180), (40, 195), (60, 110), (100, 12)]),
    ("Renault Zoe R135 ZE50", "bev", 52.0, 3, 22.0, [(0, 41), (52, 46), (80, 27), (100, 22)]),
    ("Kia e-Niro 64 kWh 7.2 kW", "bev", 64.0, 1, 7.2, [(0, 70), (40, 77), (42, 70), (53, 71),
                                                         (55, 57), (71, 58), (72, 38), (76, 38),
                                                         (78, 25), (88, 25), (100, 8)]),
    ("Peugeot e-208 7.4 kW", "bev", 45.0, 1, 7.4, [(0, 97), (16, 97), (17, 78), (46, 78),
                                                     (47, 52), (68, 52), (69, 27), (83, 27),
                                                     (84, 11), (100, 11)]),
    ("Nissan Leaf 40 kWh", "bev", 38.0, 1, 6.6, [(0, 41), (62, 45), (65, 36), (100, 15)]),
    ("Hyundai Ioniq 5", "bev", 72.6, 3, 11.0, [(0, 200), (10, 210), (22, 232), (23, 185),
                                                 (37, 185), (38, 175), (47, 175), (48, 155),
                                                 (55, 155), (56, 130), (70, 130), (80, 100),
                                                 (100, 11)]),
    ("Skoda Enyaq iV 80", "bev", 77.0, 3, 11.0, [(0, 125), (35, 125), (50, 100), (70, 70),
                                                   (80, 70), (90, 37), (100, 25)]),
    ("Polestar 2", "bev", 72.5, 3, 11.0, [(0, 150), (18, 150), (20, 130), (40, 130), (42, 100),
                                           (55, 90), (57, 70), (79, 70), (80, 25), (100, 11)]),
    ("Dacia Spring", "bev", 26.8, 1, 6.6, [(0, 28.5), (75, 30), (100, 6.6)]),
    ("BMW i3 120 Ah", "bev", 37.9, 3, 11.0, [(0, 44), (85, 50), (100, 3)]),
    ("Tesla Model Y LR", "bev", 72.5, 3, 11.0, [(0, 246), (35, 238), (75, 99), (100, 18)]),
    ("Volkswagen e-Golf 35.8", "bev", 31.5, 2, 7.2, [(0, 39), (60, 40), (80, 37), (100, 10)]),
    ("Fiat 500e 42 kWh", "bev", 42.0, 3, 11.0, [(0, 80.8), (75, 85), (100, 11)]),
    ("Volkswagen Golf GTE", "phev", 8.7, 1, 3.7, None),
    ("Kia Niro PHEV", "phev", 8.9, 1, 3.3, None),
    ("BMW 330e", "phev", 11.15, 1, 3.7, None),
    ("Audi A6 55 TFSI e", "phev", 14.1, 1, 7.4, None),
    ("Mitsubishi Outlander PHEV", "phev", 11.0, 1, 3.7, [(0, 20.9), (75, 22), (100, 3.7)]),
    ("Peugeot 3008 Hybrid4 7.4 kW", "phev", 11.2, 1, 7.4, None),
]  # fmt: skip
BEVS = [v for v in VEHICLES if v[1] == "bev"]
PHEVS = [v for v in VEHICLES if v[1] == "phev"]
DC_CARS = [v for v in VEHICLES if v[5] is not None and v[2] > 20]


def curve_at(curve: Curve, soc: float) -> float:
    if soc <= curve[0][0]:
        return curve[0][1]
    for (s0, p0), (s1, p1) in pairwise(curve):
        if soc <= s1:
            return p0 + (p1 - p0) * (soc - s0) / (s1 - s0)
    return curve[-1][1]


def _envelope() -> list[float]:
    out = []
    for soc in range(101):
        out.append(min(curve_at(c[5], soc) / max(p for _, p in c[5]) for c in DC_CARS if c[5]))
    return out


ENV = _envelope()


def env_at(soc: float) -> float:
    i = max(0, min(100, int(soc)))
    return ENV[i]


# --- time formatting ------------------------------------------------------------------------------
def fmt_ts(ms: int, off_min: int, digits: int, zulu: bool) -> str:
    dt = EPOCH + timedelta(milliseconds=ms + off_min * 60_000)
    s = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if digits == 3:
        s += f".{ms % 1000:03d}"
    elif digits == 6:
        s += f".{ms % 1000:03d}000"
    if off_min == 0:
        return s + ("Z" if zulu else "+00:00")
    sign = "+" if off_min > 0 else "-"
    a = abs(off_min)
    return f"{s}{sign}{a // 60:02d}:{a % 60:02d}"


def parse_ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def iso(sec: float) -> str:
    return (
        datetime.fromtimestamp(sec, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# ==================================================================================================
# Label rules (shared by generation and --check)
# ==================================================================================================
class Rd:
    __slots__ = ("E", "P", "offer", "soc", "temp", "ts")

    def __init__(self, o: dict[str, Any]) -> None:
        self.ts = parse_ts(o["ts"])
        self.E = num(o.get("energy_wh"))
        p = num(o.get("power_w"))
        if p is None:
            i, v = num(o.get("current_a")), num(o.get("voltage_v"))
            if i is not None and v is not None:
                n = num(o.get("phase_count"))
                p = i * v * (1.0 if n is None else n)
        self.P = p
        self.offer = num(o.get("power_offered_w"))
        self.soc = num(o.get("soc_pct"))
        self.temp = num(o.get("temperature_c"))


@dataclass
class SessView:
    sid: str
    station: str
    conn: int
    tag: str = ""
    start: float = 0.0
    stop: float | None = None
    mstart: float | None = None
    mstop: float | None = None
    rds: list[Rd] = field(default_factory=list)
    auth: str | None = None


Found = dict[str, tuple[float, float]]


def _add(found: Found, kind: str, a: float, b: float) -> None:
    if kind in found:
        x, y = found[kind]
        found[kind] = (min(x, a), max(y, b))
    else:
        found[kind] = (a, b)


def status_at(statuses: list[tuple[float, str]], keys: list[float], ts: float) -> str | None:
    i = bisect.bisect_right(keys, ts)
    return statuses[i - 1][1] if i else None


def _resolution(values: list[float]) -> float:
    for res in (1000.0, 100.0, 10.0):
        if len(values) >= 3 and all(abs(v / res - round(v / res)) < 1e-9 for v in values):
            return res
    return 1.0


def derive_session(  # noqa: C901
    sv: SessView,
    interval: float | None,
    cap_w: float,
    statuses: list[tuple[float, str]],
) -> tuple[Found, list[str]]:
    found: Found = {}
    grey: list[str] = []
    keys = [s[0] for s in statuses]
    rds = sv.rds
    stop = sv.stop if sv.stop is not None else math.inf
    end = sv.stop if sv.stop is not None else (rds[-1].ts if rds else sv.start)
    # clock_fault
    prev = None
    for r in rds:
        if r.ts < sv.start - 60 or r.ts > stop + 60:
            _add(found, "clock_fault", sv.start, end)
        elif r.ts < sv.start - 5 or r.ts > stop + 5:
            grey.append("clock: reading 5-60 s outside the session")
        if prev is not None:
            if r.ts < prev - 60:
                _add(found, "clock_fault", sv.start, end)
            elif r.ts < prev - 20:
                grey.append("clock: step back of 20-60 s")
        prev = r.ts
    sound = "clock_fault" not in found
    # register series
    regs: list[tuple[float, float]] = []
    if sv.mstart is not None:
        regs.append((sv.start, sv.mstart))
    regs += [(r.ts, r.E) for r in rds if r.E is not None]
    if sv.mstop is not None and sv.stop is not None:
        regs.append((sv.stop, sv.mstop))
    for (ta, ea), (tb, eb) in pairwise(regs):
        if eb < ea:
            _add(found, "meter_backwards", ta, tb)
        elif sound:
            lim = cap_w * max(0.0, tb - ta) / 3600.0
            if eb - ea > 1.5 * lim + 2000:
                _add(found, "meter_jump", ta, tb)
            elif eb - ea > 1.1 * lim + 1100:
                grey.append(f"meter_jump: rise {eb - ea:.0f} Wh near the limit")
    e_reg_total = sum(max(0.0, b[1] - a[1]) for a, b in pairwise(regs))
    if sound:
        _stuck_mismatch(rds, found, grey)
        _stall(rds, statuses, keys, found, grey)
        _taper(rds, statuses, keys, stop if sv.stop is not None else end, found, grey)
        if interval is not None:  # no two readings in a row on the station: no interval known
            _gap(sv, interval, end, found, grey)
    _soc(rds, found, grey)
    # unauthorized in session
    if sv.auth is not None and sv.auth != "Accepted":
        energy = e_reg_total
        if not regs:
            energy = sum(
                (a.P + b.P) / 2 * max(0.0, b.ts - a.ts) / 3600
                for a, b in pairwise(rds)
                if a.P is not None and b.P is not None
            )
        if energy > 300:
            _add(found, "unauthorized_energy", sv.start, end)
        elif energy > 20:
            grey.append(f"unauthorized: {energy:.0f} Wh")
    return found, grey


def _stuck_mismatch(rds: list[Rd], found: Found, grey: list[str]) -> None:  # noqa: C901
    pts = [r for r in rds if r.E is not None and r.P is not None]
    run_w, run_a = 0.0, 0.0
    for a, b in pairwise(pts):
        dt = b.ts - a.ts
        assert a.P is not None and b.P is not None
        if a.E == b.E and a.P >= 500 and b.P >= 500 and dt > 0:
            if run_w == 0.0:
                run_a = a.ts
            run_w += (a.P + b.P) / 2 * dt / 3600
            if run_w >= 3000:
                _add(found, "meter_stuck", run_a, b.ts)
        else:
            if 1200 <= run_w < 3000:
                grey.append(f"meter_stuck: flat run of {run_w:.0f} Wh")
            run_w = 0.0
    if 1200 <= run_w < 3000:
        grey.append(f"meter_stuck: flat run of {run_w:.0f} Wh")
    if len(pts) < 6:
        return
    e_reg = e_int = bound = 0.0
    for a, b in pairwise(pts):
        assert a.P is not None and b.P is not None and a.E is not None and b.E is not None
        dt = max(0.0, b.ts - a.ts) / 3600
        e_reg += max(0.0, b.E - a.E)
        e_int += (a.P + b.P) / 2 * dt
        bound += abs(b.P - a.P) * dt / 2
    top = max(e_reg, e_int)
    if top < 2000:
        return
    res = _resolution([r.E for r in pts if r.E is not None])
    d = (abs(e_reg - e_int) - bound - 2 * res) / top
    if d > 0.15:
        if d < 0.20:
            grey.append(f"meter_mismatch: d={d:.3f}")
        _add(found, "meter_mismatch", pts[0].ts, pts[-1].ts)
    elif d > 0.08:
        grey.append(f"meter_mismatch: d={d:.3f}")


def _stall(  # noqa: C901
    rds: list[Rd],
    statuses: list[tuple[float, str]],
    keys: list[float],
    found: Found,
    grey: list[str],
) -> None:
    def unexplained(r: Rd) -> bool:
        st = status_at(statuses, keys, r.ts)
        if st not in (None, "Charging", "SuspendedEVSE"):
            return False
        if r.soc is not None and r.soc >= 95:
            return False
        return not (r.offer is not None and r.offer < 1380)

    run, run_a = 0.0, 0.0

    def close(b_ts: float) -> None:
        if run >= 600:
            _add(found, "stall", run_a, b_ts)
            if run < 900:
                grey.append(f"stall: {run:.0f} s")
        elif run >= 300:
            grey.append(f"stall: {run:.0f} s")

    last_b = 0.0
    for a, b in pairwise(rds):
        dt = b.ts - a.ts
        p_ok = a.P is not None and b.P is not None
        e_ok = a.E is not None and b.E is not None
        zero = False
        if (p_ok or e_ok) and dt > 0:
            zero = True
            if p_ok:
                assert a.P is not None and b.P is not None
                zero = a.P < 100 and b.P < 100
            if e_ok and zero:
                assert a.E is not None and b.E is not None
                zero = 0 <= (b.E - a.E) * 3600 / dt < 150
        if zero and unexplained(a) and unexplained(b):
            if run == 0.0:
                run_a = a.ts
            run += dt
            last_b = b.ts
        else:
            close(last_b)
            run = 0.0
    close(last_b)


def _taper(  # noqa: C901
    rds: list[Rd],
    statuses: list[tuple[float, str]],
    keys: list[float],
    stop: float,
    found: Found,
    grey: list[str],
) -> None:
    stat = [status_at(statuses, keys, r.ts) for r in rds]
    flow = [r.P for r, s in zip(rds, stat, strict=True) if r.P is not None and s == "Charging"
            and r.P >= 100]  # fmt: skip
    if len(flow) < 3:
        return
    plateau = sorted(flow, reverse=True)[1]
    offers = [r.offer for r in rds if r.P is not None and 0.9 * plateau <= r.P and r.offer]
    offer_ref = max(offers) if offers else None
    with_soc = any(r.soc is not None for r in rds)
    lab_s, grey_s = (300.0, 120.0) if with_soc else (2700.0, 1200.0)
    # level: 2 low, 1 grey-low, 0 fine
    levels: list[int] = []
    for r, st in zip(rds, stat, strict=True):
        lv = 0
        explained = offer_ref is not None and r.offer is not None and r.offer < 0.95 * offer_ref
        if r.P is not None and st == "Charging" and r.P >= 100 and not explained:
            if with_soc:
                if r.soc is not None:
                    e = env_at(r.soc)
                    lv = 2 if 0.6 * e * plateau > r.P else (1 if 0.8 * e * plateau > r.P else 0)
            else:
                lv = 2 if 0.75 * plateau > r.P else (1 if 0.88 * plateau > r.P else 0)
        levels.append(lv)

    def runs(minlevel: int) -> list[tuple[int, int]]:
        out, i = [], 0
        while i < len(rds):
            if levels[i] >= minlevel:
                j = i
                while j + 1 < len(rds) and levels[j + 1] >= minlevel:
                    j += 1
                out.append((i, j))
                i = j + 1
            else:
                i += 1
        return out

    def dur(i: int, j: int) -> float:
        nxt = rds[j + 1].ts if j + 1 < len(rds) else stop
        return nxt - rds[i].ts

    for i, j in runs(2):
        d = dur(i, j)
        if d >= lab_s:
            _add(found, "early_taper", rds[i].ts, rds[j].ts)
        elif d >= grey_s:
            grey.append(f"early_taper: low run of {d:.0f} s")
    if "early_taper" not in found:
        for i, j in runs(1):
            if dur(i, j) >= grey_s and any(levels[k] == 1 for k in range(i, j + 1)):
                grey.append(f"early_taper: near-threshold run of {dur(i, j):.0f} s")


def _gap(sv: SessView, interval: float, end: float, found: Found, grey: list[str]) -> None:
    times = [sv.start] + [r.ts for r in sv.rds] + [end]
    for a, b in pairwise(times):
        g = b - a
        m = min(g / (5 * interval), g / 300.0)
        if m >= 1.4:
            _add(found, "data_gap", a, b)
        elif m > 0.7:
            grey.append(f"data_gap: {g:.0f} s with I={interval:.0f}")


def _soc(rds: list[Rd], found: Found, grey: list[str]) -> None:  # noqa: C901
    seq = [r for r in rds if r.soc is not None]
    # energy between SoC readings: the power integral where power is reported at both ends over
    # a sane interval (so a meter fault does not read as a battery fault), else the register
    cum = [0.0]
    for a, b in pairwise(seq):
        dt = b.ts - a.ts
        if a.P is not None and b.P is not None and 0 <= dt <= 600:
            de = (a.P + b.P) / 2 * dt / 3600
        elif a.E is not None and b.E is not None:
            de = b.E - a.E
        else:
            de = 0.0
        cum.append(cum[-1] + max(0.0, de))
        assert a.soc is not None and b.soc is not None
        ds = b.soc - a.soc
        if de >= 100 and ds <= -3:
            _add(found, "soc_inconsistent", a.ts, b.ts)
        elif de >= 100 and ds <= -2:
            grey.append("soc: fall of 2")
        plaus = 100 * max(de, 0.0) / 8000
        if ds >= 10 and ds > 2 * plaus + 5:
            _add(found, "soc_inconsistent", a.ts, b.ts)
        elif ds > plaus + 3:
            grey.append(f"soc: rise {ds:.0f} for {de:.0f} Wh")
    for i, a in enumerate(seq):
        assert a.soc is not None
        lo = hi = a.soc
        best = 0.0
        for j in range(i + 1, len(seq)):
            b = seq[j]
            assert b.soc is not None
            lo, hi = min(lo, b.soc), max(hi, b.soc)
            if hi - lo > 3:
                break
            best = max(best, cum[j] - cum[i])
            if best >= 20000:
                _add(found, "soc_inconsistent", a.ts, b.ts)
                break
        if 10000 <= best < 20000:
            grey.append(f"soc: flat while {best:.0f} Wh")
    for r in rds:
        if r.temp is None or r.P is None or r.P < 500:
            continue
        if r.temp > 60 or r.temp < -25:
            _add(found, "soc_inconsistent", r.ts, r.ts)
        elif r.temp > 55 or r.temp < -20:
            grey.append(f"soc: temperature {r.temp}")


# --- whole-file derivation ------------------------------------------------------------------------
@dataclass
class Derived:
    labels: list[dict[str, Any]]
    grey: list[str]
    sessions: int


def derive_all(  # noqa: C901
    lines: list[str], caps: dict[str, float], intervals: dict[str, float] | None = None
) -> Derived:
    sess: dict[str, SessView] = {}
    statuses: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    auths: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    conn_seq: dict[tuple[str, int], list[tuple[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, int, str]] = set()
    for line in lines:
        o = json.loads(line)
        typ = o["type"]
        if typ == "reading":
            key = (o["station_id"], int(o["connector_id"]), line)
            if key in seen:
                continue
            seen.add(key)
            ck = (o["station_id"], int(o["connector_id"]))
            r = Rd(o)
            sid = o.get("session_id")
            if sid:
                sv = sess.setdefault(sid, SessView(sid, ck[0], ck[1]))
                sv.rds.append(r)
            elif ck[1] >= 1:
                conn_seq[ck].append(("r", r))
        elif typ == "status":
            statuses[(o["station_id"], int(o["connector_id"]))].append(
                (parse_ts(o["ts"]), o["status"])
            )
        elif typ == "authorize":
            auths[(o["station_id"], o["id_tag"])].append((parse_ts(o["ts"]), o["result"]))
        elif typ == "session_start":
            ck = (o["station_id"], int(o["connector_id"]))
            sv = sess.setdefault(o["session_id"], SessView(o["session_id"], ck[0], ck[1]))
            sv.tag, sv.start, sv.mstart = (
                o["id_tag"],
                parse_ts(o["ts"]),
                num(o.get("meter_start_wh")),
            )
            conn_seq[ck].append(("start", sv))
        elif typ == "session_stop":
            ck = (o["station_id"], int(o["connector_id"]))
            sv = sess.setdefault(o["session_id"], SessView(o["session_id"], ck[0], ck[1]))
            sv.stop, sv.mstop = parse_ts(o["ts"]), num(o.get("meter_stop_wh"))
            conn_seq[ck].append(("stop", sv))
    for v in statuses.values():
        v.sort(key=lambda x: x[0])
    # station sampling interval
    diffs: dict[str, list[float]] = defaultdict(list)
    for sv in sess.values():
        for a, b in pairwise(sv.rds):
            if b.ts > a.ts:
                diffs[sv.station].append(b.ts - a.ts)
    interval = {k: statistics.median(v) for k, v in diffs.items()}
    if intervals is not None:
        interval = intervals
    labels: list[dict[str, Any]] = []
    grey: list[str] = []
    per_session: dict[str, Found] = {}
    for sv in sess.values():
        sv.auth = None
        for ts, res in auths.get((sv.station, sv.tag), []):
            if sv.start - 600 <= ts <= sv.start + 60:
                sv.auth = res
        found, g = derive_session(
            sv,
            interval.get(sv.station),
            caps.get(sv.station, DEFAULT_CAP_W),
            statuses.get((sv.station, sv.conn), []),
        )
        per_session[sv.sid] = found
        grey += [f"{sv.sid}: {x}" for x in g]
    # concurrent_id_tag
    by_tag: dict[str, list[SessView]] = defaultdict(list)
    for sv in sess.values():
        by_tag[sv.tag].append(sv)
    for group in by_tag.values():
        for i, sa in enumerate(group):
            for sb in group[i + 1 :]:
                if sa.station == sb.station:
                    continue
                lo = max(sa.start, sb.start)
                hi = min(sa.stop if sa.stop else math.inf, sb.stop if sb.stop else math.inf)
                if hi - lo >= 300:
                    _add(per_session[sa.sid], "concurrent_id_tag", lo, hi)
                    _add(per_session[sb.sid], "concurrent_id_tag", lo, hi)
                elif hi - lo > -300:
                    grey.append(f"{sa.sid}/{sb.sid}: same tag {hi - lo:.0f} s apart")
    for sid, found in per_session.items():
        sv = sess[sid]
        for kind in KINDS:
            if kind in found:
                t_a, t_b = found[kind]
                labels.append(_label(sid, sv.station, sv.conn, kind, t_a, t_b))
    # energy outside sessions
    for (st, conn), seq in conn_seq.items():
        labels_g = _orphans(st, conn, seq)
        labels += labels_g[0]
        grey += labels_g[1]
    return Derived(labels, grey, len(sess))


def _label(sid: str | None, st: str, conn: int, kind: str, a: float, b: float) -> dict[str, Any]:
    return {"session_id": sid, "station_id": st, "connector_id": conn, "kind": kind,
            "start": iso(a), "end": iso(b)}  # fmt: skip


def _orphans(  # noqa: C901
    st: str, conn: int, seq: list[tuple[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    grey: list[str] = []
    obs: list[tuple[float, float | None, float | None]] = []  # ts, E, P
    has_orphan = False

    def flush() -> None:
        if not has_orphan:
            return
        rise = 0.0
        first = last = None
        regs = [(t, e) for t, e, _ in obs if e is not None]
        for (ta, ea), (tb, eb) in pairwise(regs):
            if eb > ea:
                rise += eb - ea
                first = ta if first is None else first
                last = tb
        hot = [t for t, _, p in obs if p is not None and p >= 1000]
        if rise > 300 and first is not None and last is not None:
            out.append(_label(None, st, conn, "unauthorized_energy", first, last))
        elif rise <= 20 and len(hot) >= 2 and not any(r > 0 for r in [rise]):
            out.append(_label(None, st, conn, "unauthorized_energy", hot[0], hot[-1]))
        elif rise > 20 or len(hot) == 1:
            grey.append(f"{st}/{conn}: {rise:.0f} Wh, {len(hot)} hot readings outside sessions")

    for what, x in seq:
        if what == "start":
            if x.mstart is not None:
                obs.append((x.start, x.mstart, None))
            flush()
            obs, has_orphan = [], False
        elif what == "stop":
            obs, has_orphan = [], False
            if x.mstop is not None:
                obs.append((x.stop, x.mstop, None))
        else:
            obs.append((x.ts, x.E, x.P))
            has_orphan = True
    flush()
    return out, grey


# ==================================================================================================
# Generator
# ==================================================================================================
@dataclass
class Station:
    sid: str
    site: str
    stype: str
    town: str
    lat: float | None
    lon: float | None
    conns: int
    phases: int
    amps: float
    volts: float
    dc_kw: float
    rated_w: float
    declare_rated: bool
    report: str  # power | iv | energy
    res_wh: int
    interval_s: int
    aligned: bool
    strings: bool
    meter_ss: bool
    off_min: int
    digits: int
    zulu: bool
    conn0: bool
    hb_s: int
    offers: bool
    load_steps: list[tuple[int, float]]  # (ms from, amps)
    pause: tuple[int, int] | None
    offline: tuple[int, int] | None
    dups: bool
    idle_readings: bool

    def offer_amps(self, t: int) -> float:
        a = self.amps
        for t0, amps in self.load_steps:
            if t >= t0:
                a = amps
        if self.pause and self.pause[0] <= t < self.pause[1]:
            return 0.0
        return a

    def changes(self) -> list[int]:
        out = [t for t, _ in self.load_steps]
        if self.pause:
            out += list(self.pause)
        return out


@dataclass
class Plan:
    sid: str
    st: Station
    conn: int
    t_plug: int
    t_leave: int
    car: tuple[str, str, float, int, float, Curve | None]
    soc0: float
    limit: float
    sched: int | None
    remote: bool
    kind: str = "normal"  # normal | short | full | deauth
    fault: str | None = None
    other: list[tuple[int, int]] = field(default_factory=list)  # other DC connector's sessions


@dataclass
class Out:
    plan: Plan
    events: list[tuple[int, int, dict[str, Any]]]  # arrival ms, priority, event
    segs: list[tuple[int, float]]  # (t, power) true power steps for connector 0
    end_reg: float
    t_end: int
    tag_refs: list[dict[str, Any]]
    note: dict[str, Any] | None
    found: Found
    energy_wh: float


H = 3_600_000
MIN = 60_000


def local_hour(t: int) -> float:
    return ((t + LOCAL_OFF_MS) % (24 * H)) / H


def day_start_local(t: int) -> int:
    return t - (t + LOCAL_OFF_MS) % (24 * H)


def make_stations(n: int, rng: random.Random, t0: int, t1: int) -> list[Station]:  # noqa: C901
    shares = [("home", 0.38), ("work", 0.16), ("kerb", 0.25), ("dc", 0.05), ("us", 0.10),
              ("far", 0.06)]  # fmt: skip
    counts = {k: int(n * s) for k, s in shares}
    counts["dc"] = max(2, counts["dc"])
    counts["far"] = max(2, counts["far"])
    while sum(counts.values()) < n:
        counts["home"] += 1
    while sum(counts.values()) > n:
        k = max(("home", "kerb", "work", "us"), key=lambda x: counts[x])
        counts[k] -= 1
    types = [k for k, _ in shares for _ in range(counts[k])]
    out: list[Station] = []
    site_left, site = 0, ""
    for i, stype in enumerate(types):
        town = "far" if stype == "far" else "home"
        if stype == "far":
            stype = rng.choice(["kerb", "kerb", "dc"])
        base_lat, base_lon = (53.22, 6.57) if town == "far" else (51.44, 5.47)
        lat: float | None = round(base_lat + rng.uniform(-0.03, 0.03), 5)
        lon: float | None = round(base_lon + rng.uniform(-0.05, 0.05), 5)
        sid = f"TF-{i + 1:04d}"
        if stype in ("work", "dc"):
            if site_left <= 0 or not site.startswith(stype):
                site, site_left = f"{stype}-site-{i + 1:03d}", rng.randint(2, 5)
            site_left -= 1
        elif stype == "kerb":
            if site_left <= 0 or not site.startswith("street"):
                site, site_left = f"street-{i + 1:03d}", rng.randint(1, 3)
            site_left -= 1
        else:
            site = f"{stype}-{i + 1:03d}"
        volts, phases, amps, dc_kw, conns = 230.0, 1, 16.0, 0.0, 1
        if stype == "home":
            phases, amps = rng.choice([(1, 10.0), (1, 16.0), (1, 32.0), (1, 32.0), (3, 16.0),
                                       (3, 16.0)])  # fmt: skip
            if rng.random() < 0.15:
                volts, phases, amps = 240.0, 1, rng.choice([32.0, 40.0, 48.0])
            if rng.random() < 0.5:
                lat = lon = None
        elif stype == "work":
            phases, amps, conns = 3, rng.choice([16.0, 32.0]), rng.randint(2, 4)
        elif stype == "kerb":
            phases, amps, conns = 1, rng.choice([16.0, 22.0]), rng.choice([1, 2])
        elif stype == "us":
            volts, phases, amps, conns = (
                rng.choice([208.0, 240.0]),
                1,
                rng.choice([30.0, 40.0, 48.0]),
                2,
            )
        else:
            dc_kw, conns = rng.choice([50.0, 150.0]), 2
        rated = dc_kw * 1000 if dc_kw else volts * amps * phases
        if stype == "dc":
            report, interval, aligned = "power", rng.choice([10, 15, 30, 60]), False
        elif stype in ("home", "kerb"):
            report = rng.choice(["power", "iv", "energy", "energy"] if stype == "kerb"
                                else ["power", "power", "iv", "energy"])  # fmt: skip
            interval = rng.choice([900, 900, 900, 300, 60])
            aligned = interval == 900 or rng.random() < 0.5
        else:
            report = rng.choice(["power", "power", "iv", "energy"])
            interval, aligned = rng.choice([60, 300, 900, 30]), rng.random() < 0.5
        if report == "energy":
            interval = max(interval, 60)
            res = rng.choice([1, 1, 10])
        else:
            res = rng.choice([1, 1, 10, 100, 1000]) if interval >= 60 else rng.choice([1, 10])
        offers = report != "energy" and (stype in ("dc", "work") or rng.random() < 0.4)
        load_steps: list[tuple[int, float]] = []
        pause = None
        if stype == "work" and offers and rng.random() < 0.5:
            d0 = day_start_local(t0)
            while d0 < t1:
                for h, frac in ((8.5, rng.choice([0.5, 0.625])), (11.0, rng.choice([0.375, 0.5])),
                                (14.0, 1.0), (17.5, rng.choice([0.5, 1.0]))):  # fmt: skip
                    load_steps.append((d0 + int(h * H), max(6.0, round(amps * frac))))
                d0 += 24 * H
        if stype == "work" and offers and rng.random() < 0.25:
            h0 = rng.choice([12.0, 17.0])
            p0 = day_start_local(t0) + int(h0 * H)
            if p0 < t0:
                p0 += 24 * H
            pause = (p0, p0 + H)
        offline = None
        if rng.random() < 0.05:
            a = t0 + rng.randint(2 * H, max(3 * H, t1 - t0 - 3 * H))
            offline = (a, a + H)
        off_min, zulu = rng.choice([(0, True), (0, True), (0, False), (60, True), (-300, True)])
        out.append(Station(
            sid=sid, site=site, stype=stype, town=town, lat=lat, lon=lon, conns=conns,
            phases=phases, amps=amps, volts=volts, dc_kw=dc_kw, rated_w=rated,
            declare_rated=rng.random() < 0.88, report=report, res_wh=res, interval_s=interval,
            aligned=aligned, strings=rng.random() < 0.3, meter_ss=rng.random() < 0.9,
            off_min=off_min, digits=rng.choice([0, 3, 6]), zulu=zulu,
            conn0=conns >= 2 and interval >= 30 and rng.random() < 0.3,
            hb_s=rng.choice([300, 900, 3600]), offers=offers, load_steps=load_steps,
            pause=pause, offline=offline, dups=rng.random() < 0.04,
            idle_readings=interval >= 300 and rng.random() < 0.3,
        ))  # fmt: skip
    return out


def pick_car(rng: random.Random, st: Station) -> tuple[str, str, float, int, float, Curve | None]:
    if st.stype == "dc":
        return rng.choice(DC_CARS)
    return rng.choice(PHEVS) if rng.random() < 0.22 else rng.choice(BEVS)


def plan_connector(st: Station, conn: int, rng: random.Random, t0: int, t1: int) -> list[Plan]:  # noqa: C901
    """Session windows (plug, leave) for one connector, in order."""
    wins: list[tuple[int, int]] = []
    d0 = day_start_local(t0) - 24 * H
    while d0 < t1:
        if st.stype in ("home", "kerb", "us"):
            if rng.random() < (0.3 if st.stype == "home" else 0.6):
                a = d0 + int(rng.uniform(9, 14) * H)
                wins.append((a, a + int(rng.uniform(0.7, 4) * H)))
            if st.stype == "us" and rng.random() < 0.6:
                a = d0 + int(rng.uniform(14.5, 17) * H)
                wins.append((a, a + int(rng.uniform(0.5, 2) * H)))
            if rng.random() < (0.85 if st.stype == "home" else 0.7):
                a = d0 + int(rng.uniform(16.5, 21.5) * H)
                wins.append((a, d0 + 24 * H + int(rng.uniform(6.5, 8.5) * H)))
        elif st.stype == "work":
            if rng.random() < 0.85:
                a = d0 + int(rng.uniform(7, 9.5) * H)
                if rng.random() < 0.3:
                    b = d0 + int(rng.uniform(12, 13) * H)
                    wins.append((a, b))
                    c = b + int(rng.uniform(1.5, 10) * MIN)
                    wins.append((c, d0 + int(rng.uniform(17, 19) * H)))
                else:
                    wins.append((a, d0 + int(rng.uniform(15.5, 18.5) * H)))
            elif rng.random() < 0.5:
                a = d0 + int(rng.uniform(10, 15) * H)
                wins.append((a, a + int(rng.uniform(1, 2) * H)))
        else:  # dc
            t = d0 + int(rng.uniform(7, 8) * H)
            while t < d0 + int(21.5 * H):
                dur = int(rng.uniform(15, 45) * MIN)
                wins.append((t, t + dur))
                t += dur + (int(rng.uniform(1.5, 5) * MIN) if rng.random() < 0.3
                            else int(rng.expovariate(1 / 40) * MIN) + 2 * MIN)  # fmt: skip
        d0 += 24 * H
    plans: list[Plan] = []
    last = t0 + int(rng.uniform(2, 30) * MIN)
    for a, b in sorted(wins):
        if a < last + 90_000:
            continue
        if b > t1 - 5 * MIN:
            b = t1 - int(rng.uniform(5, 60) * MIN)
        if b - a < 5 * MIN:
            continue
        a, b = a - a % 1000, b - b % 1000
        car = pick_car(rng, st)
        kind = "normal"
        u = rng.random()
        if u < 0.03:
            kind, b = "short", a + int(rng.uniform(20, 50) * 1000)
        elif u < 0.06:
            kind = "full"
        elif u < 0.08:
            kind = "deauth"
        limit = 100.0 if st.stype == "dc" else rng.choice([100.0, 100.0, 100.0, 90.0, 80.0])
        soc0 = rng.uniform(8, 45) if st.stype == "dc" else rng.uniform(15, 70)
        if st.stype == "dc":
            limit = rng.choice([70.0, 80.0, 80.0, 85.0, 90.0])
        sched = None
        if st.stype == "home" and local_hour(a) > 16 and rng.random() < 0.35 and kind == "normal":
            s = day_start_local(a) + int(rng.choice([23.0, 24.5, 25.0]) * H)
            if s < b - 2 * H:
                sched = s
        plans.append(Plan(f"{st.sid}-{conn}-{len(plans) + 1:03d}", st, conn, a, b, car, soc0,
                          limit, sched, rng.random() < 0.15, kind))  # fmt: skip
        last = b
    return plans


CO_KINDS = {
    "meter_stuck": {"meter_mismatch", "meter_jump"},
    "meter_backwards": {"meter_jump", "meter_mismatch"},
    "meter_jump": {"meter_mismatch", "meter_backwards"},
}
_SEQ = [0]


class Sim:
    """One session (or one charge with no session) on one connector, with an optional fault."""

    def __init__(self, p: Plan, base: float, rng: random.Random, fault: str | None) -> None:
        self.p, self.st, self.rng, self.fault = p, p.st, rng, fault
        self.base = base
        self.events: list[tuple[int, int, int, dict[str, Any]]] = []
        self.params: dict[str, Any] = {}
        self.variant = ""
        self.segs: list[list[Any]] = []  # [t, P, status, offer_w, nph]
        self.tag_refs: list[dict[str, Any]] = []
        self.auth_result: str | None = None
        self.stop_reason = "EVDisconnected"
        self.params_note: dict[str, Any] = {}
        self.start = self.stop = self.t_end = 0
        self.end_reg = base
        self.seg_t: list[int] = []
        self.cum: list[float] = []

    # --- helpers ----------------------------------------------------------------------------
    def v(self, x: float, nd: int = 0) -> Any:
        y: float | int = round(x, nd) if nd else round(x)
        return str(y) if self.st.strings else y

    def ts(self, t: int) -> str:
        return fmt_ts(t, self.st.off_min, self.st.digits, self.st.zulu)

    def emit(self, arrival: int, prio: int, ev: dict[str, Any]) -> dict[str, Any]:
        _SEQ[0] += 1
        self.events.append((arrival, prio, _SEQ[0], ev))
        return ev

    def status(self, t: int, s: str, **extra: Any) -> None:
        ev = {"type": "status", "ts": self.ts(t), "station_id": self.st.sid,
              "connector_id": self.p.conn, "status": s, "error_code": "NoError"}  # fmt: skip
        ev.update(extra)
        self.emit(t, 2, ev)

    def seg(self, t: int, pw: float, status: str, offer: float | None, nph: int) -> None:
        t -= t % 1000
        if self.segs and self.segs[-1][1:] == [pw, status, offer, nph]:
            return
        if self.segs and self.segs[-1][0] == t:
            self.segs[-1] = [t, pw, status, offer, nph]
            return
        self.segs.append([t, pw, status, offer, nph])

    # --- physics ----------------------------------------------------------------------------
    def car_amps(self) -> tuple[float, int]:
        st, car = self.st, self.p.car
        neff = min(car[3], st.phases)
        if st.volts != 230.0:
            return min(48.0, car[4] * 1000 / st.volts), 1
        return car[4] * 1000 / (car[3] * 230.0), neff

    def run_ac(self, t_c: int, t_end: int) -> int:  # noqa: C901
        st, p, rng = self.st, self.p, self.rng
        cap_wh = p.car[2] * 1000
        soc = p.soc0
        i_car, neff = self.car_amps()
        bounds = sorted({x for x in st.changes() if t_c < x < t_end} | {t_end})
        stall = self.params.get("stall")  # (a, b, status)
        derate = self.params.get("derate")  # (a, factor, nph)
        extra = []
        if stall:
            extra += [stall[0], stall[1]]
        if derate:
            extra.append(derate[0])
        if p.sched:
            extra.append(p.sched)
        bounds = sorted(set(bounds) | {x for x in extra if t_c < x < t_end})
        wakes: list[tuple[int, int, float]] = []
        full_at: int | None = None
        t = t_c
        taper_left = [rng.randint(90, 240) * 1000, rng.randint(90, 240) * 1000]
        while t < t_end:
            nxt = next(b for b in bounds if b > t) if any(b > t for b in bounds) else t_end
            amps_off = st.offer_amps(t)
            offer = amps_off * st.volts * st.phases if st.offers else None
            if st.stype == "us" and offer is not None:
                offer = amps_off * st.volts
            if stall and stall[0] <= t < stall[1]:
                self.seg(t, 0.0, stall[2], offer, 0)
                t = nxt
                continue
            if p.sched and t < p.sched:
                self.seg(t, 0.0, "SuspendedEV", offer, 0)
                t = min(nxt, p.sched)
                continue
            if full_at is not None:
                w = next((w for w in wakes if w[0] <= t < w[1]), None)
                if w:
                    self.seg(t, w[2], "Charging", offer, 1)
                    t = min(nxt, w[1])
                else:
                    self.seg(t, 0.0, "SuspendedEV", offer, 0)
                    starts = [w[0] for w in wakes if w[0] > t]
                    t = min([nxt, *starts])
                continue
            if amps_off < 6:
                self.seg(t, 0.0, "SuspendedEVSE", offer, 0)
                t = nxt
                continue
            amps = min(st.amps, i_car, amps_off)
            n = neff
            pw = amps * st.volts * n
            if derate and t >= derate[0]:
                if derate[2]:
                    n = min(n, derate[2])
                    pw = amps * st.volts * n
                else:
                    pw *= derate[1]
            target = p.limit - 1.5 if p.limit >= 100 else p.limit
            if soc >= target:
                if p.limit >= 100 and taper_left:
                    d = taper_left.pop(0)
                    frac = 0.5 if len(taper_left) == 1 else 0.25
                    self.seg(t, pw * frac, "Charging", offer, n)
                    t = min(nxt, t + d)
                    continue
                full_at = t
                self.seg(t, 0.0, "SuspendedEV", offer, 0)
                idle = t_end - t
                if idle > H and rng.random() < 0.6:
                    for _ in range(rng.randint(1, 2)):
                        a = t + int(rng.uniform(0.3, 0.95) * idle)
                        a -= a % 1000
                        wakes.append((a, a + rng.randint(180, 600) * 1000,
                                      round(rng.uniform(600, min(3000, pw)), 0)))  # fmt: skip
                    wakes.sort()
                    ok = all(b[0] > a[1] + 40 * MIN for a, b in pairwise(wakes))
                    if not ok:
                        wakes = wakes[:1]
                continue
            dt_full = (target - soc) / 100 * cap_wh / (pw * 0.9) * H
            t2 = min(nxt, t + max(1000, int(dt_full) - int(dt_full) % 1000 + 1000))
            self.seg(t, pw, "Charging", offer, n)
            soc += pw * 0.9 * (t2 - t) / H / cap_wh * 100
            t = t2
        return t_end

    def run_dc(self, t_c: int, t_end: int) -> int:
        st, p = self.st, self.p
        assert p.car[5] is not None
        curve = p.car[5]
        cap_wh = p.car[2] * 1000
        soc = p.soc0
        stall = self.params.get("stall")
        derate = self.params.get("derate")
        t = t_c
        while t < t_end:
            busy = st.dc_kw >= 150 and any(a <= t < b for a, b in p.other)
            offer = st.dc_kw * 1000 / (2 if busy else 1)
            if stall and stall[0] <= t < stall[1]:
                self.seg(t, 0.0, "Charging", offer, 0)
                t += 5000
                continue
            if soc >= p.limit:
                return t
            pw = min(curve_at(curve, soc) * 1000, offer)
            if t - t_c < 20_000:
                pw *= 0.3 + 0.035 * (t - t_c) / 1000
            if derate and soc >= derate[0]:
                pw *= derate[1]
            pw = round(pw, -2)
            self.seg(t, pw, "Charging", offer, 0)
            soc += pw * 0.94 * 5 / 3600 / cap_wh * 100
            t += 5000
        return t_end

    # --- the session ------------------------------------------------------------------------
    def build(self) -> None:  # noqa: C901
        p, st, rng = self.p, self.st, self.rng
        self.choose_fault()
        t_plug, t_leave = p.t_plug, p.t_leave
        self.status(t_plug, "Preparing")
        ghost = p.kind == "ghost"
        if p.remote or ghost:
            start = t_plug + int(rng.uniform(10, 40)) * 1000
        else:
            ta = t_plug + int(rng.uniform(3, 20)) * 1000
            res = "Accepted"
            if p.kind == "deauth":
                res = rng.choice(["Invalid", "Blocked", "Expired"])
            if self.fault == "unauthorized_energy":
                res = self.params["auth"]
            self.auth_result = res
            ev = self.emit(ta, 1, {"type": "authorize", "ts": self.ts(ta), "station_id": st.sid,
                                   "id_tag": "", "result": res})  # fmt: skip
            self.tag_refs.append(ev)
            start = ta + int(rng.uniform(1, 3)) * 1000
        self.start = start
        if not ghost:
            ev = {"type": "session_start", "ts": self.ts(start), "station_id": st.sid,
                  "connector_id": p.conn, "session_id": p.sid, "id_tag": ""}  # fmt: skip
            if st.meter_ss:
                ev["meter_start_wh"] = self.v(self.base)
            self.emit(start, 3, ev)
            self.tag_refs.append(ev)
        t_c = start + int(rng.uniform(3, 10)) * 1000
        self.seg(t_plug, 0.0, "Preparing", None, 0)
        if p.kind == "deauth":
            t_end = start + int(rng.uniform(2, 10)) * 1000
            self.stop_reason = "DeAuthorized"
        elif p.kind == "full":
            self.seg(t_c, 0.0, "SuspendedEV", None, 0)
            t_end = min(t_leave, t_c + int(rng.uniform(5, 60) * MIN))
        elif p.kind == "short":
            self.seg(t_c, self.car_amps()[0] * 0 + 2000.0, "Charging", None, 1)
            t_end = t_c + int(rng.uniform(15, 40)) * 1000
            self.stop_reason = "Local"
        elif st.stype == "dc":
            if "giveup" in self.params:
                t_leave = self.params["giveup"]
            t_c += int(rng.uniform(15, 40)) * 1000
            t_end = self.run_dc(t_c, t_leave)
            t_end = min(t_leave, t_end + int(rng.uniform(10, 60)) * 1000)
            self.stop_reason = "Local"
        else:
            if "giveup" in self.params:
                t_leave = self.params["giveup"]
                self.stop_reason = "Local"
            t_end = self.run_ac(t_c, t_leave)
        t_end -= t_end % 1000
        self.segs = [s for s in self.segs if s[0] < t_end]
        # statuses from segments
        last = "Preparing"
        for s in self.segs[1:]:
            if s[2] != last:
                self.status(s[0], s[2])
                last = s[2]
        self.status(t_end, "Finishing")
        stop = t_end + int(rng.uniform(1, 3)) * 1000
        self.stop = stop
        self.seg(t_end, 0.0, "Finishing", None, 0)
        self.cum_prefix()
        self.readings(start, stop, None if ghost else p.sid)
        end_reg = self.reg_at(stop)
        if not ghost:
            ev = {
                "type": "session_stop",
                "ts": self.ts(stop),
                "station_id": st.sid,
                "connector_id": p.conn,
                "session_id": p.sid,
                "reason": self.stop_reason,
            }
            if st.meter_ss:
                ev["meter_stop_wh"] = self.v(end_reg)
            self.emit(stop, 5, ev)
        t_av = stop + int(rng.uniform(5, 60)) * 1000
        orphan = self.params.get("after_stop")
        if orphan:
            # the contactor stays closed: the car goes on charging with no session open
            pw = max(1400.0, max(s[1] for s in self.segs))
            t_off = stop + orphan
            self.segs.append([stop, pw, "Charging", None, 1])
            self.segs.append([t_off, 0.0, "Finishing", None, 0])
            self.cum_prefix()
            self.readings(stop + 1000, t_off, None, orphan_mode=True)
            end_reg = self.reg_at(t_off)
            t_av = t_off + int(rng.uniform(20, 90)) * 1000
        self.status(t_av, "Available")
        self.t_end = t_av
        self.end_reg = end_reg

    # energy ----------------------------------------------------------------------------------
    def cum_prefix(self) -> None:
        self.seg_t = [s[0] for s in self.segs]
        self.cum = [0.0]
        for a, b in pairwise(self.segs):
            self.cum.append(self.cum[-1] + a[1] * (b[0] - a[0]) / H)

    def true_e(self, t: int) -> float:
        i = max(0, bisect.bisect_right(self.seg_t, t) - 1)
        return float(self.cum[i] + self.segs[i][1] * max(0, t - self.segs[i][0]) / H)

    def seg_at(self, t: int) -> list[Any]:
        i = max(0, bisect.bisect_right(self.seg_t, t) - 1)
        return self.segs[i]

    def reg_at(self, t: int) -> float:
        e = self.true_e(t)
        f = self.params
        if "reg_k" in f:
            e *= f["reg_k"]
        if "stuck" in f:
            a, b, mode = f["stuck"]
            ea, eb = self.true_e(a), self.true_e(b)
            if a <= t < b:
                e = ea
            elif t >= b and mode == "lost":
                e -= eb - ea
        if "reset" in f and t >= f["reset"][0]:
            e = e - self.true_e(f["reset"][0]) + f["reset"][1] - self.base
        if "jump" in f and t >= f["jump"][0]:
            e += f["jump"][1]
        r = self.base + e
        return math.floor(r / self.st.res_wh) * self.st.res_wh

    # readings --------------------------------------------------------------------------------
    def sample_times(self, a: int, b: int) -> list[int]:
        iv = self.st.interval_s * 1000
        if self.st.aligned:
            t = (a // iv + 1) * iv
        else:
            t = a + self.rng.randint(1, self.st.interval_s) * 1000
        out = []
        while t < b:
            out.append(t)
            t += iv
        return out

    def readings(self, a: int, b: int, sid: str | None, orphan_mode: bool = False) -> None:  # noqa: C901
        st, p, rng, f = self.st, self.p, self.rng, self.params
        times = self.sample_times(a, b)
        gap = f.get("gap")
        drop = {i for i in range(1, len(times) - 1) if rng.random() < 0.01}
        drop = {i for i in drop if i - 1 not in drop}
        clock = f.get("clock")
        soc_f = f.get("soc")
        cap_wh = p.car[2] * 1000
        temp0 = rng.uniform(8, 22)
        spiked = False
        for k, t in enumerate(times):
            if k in drop or (gap and gap[0] <= t < gap[1]):
                continue
            s = self.seg_at(t)
            pw_true = s[1]
            jitter = rng.randint(0, 999) if st.digits else 0
            ev: dict[str, Any] = {"type": "reading", "ts": "", "station_id": st.sid,
                                  "connector_id": p.conn}  # fmt: skip
            if sid:
                ev["session_id"] = sid
            reg = self.reg_at(t)
            if "spike" in f and not spiked and t >= f["spike"][0] and sid:
                reg += f["spike"][1]
                spiked = True
            ev["energy_wh"] = self.v(reg)
            pw = pw_true * (1 + rng.gauss(0, 0.006)) if pw_true > 0 else rng.choice([0.0, 0.0, 4.0])
            pw *= f.get("pow_k", 1.0)
            if st.report == "power":
                ev["power_w"] = self.v(pw / 1000 if "kw_as_w" in f else pw, 1)
            elif st.report == "iv":
                n = s[4] if pw_true > 0 else 0
                volt = st.volts + rng.gauss(0, 1.2)
                ev["current_a"] = self.v(pw / (volt * n) if n else 0.0, 2)
                ev["voltage_v"] = self.v(volt, 1)
                ev["phase_count"] = n
            if st.offers and s[3] is not None and not orphan_mode:
                ev["power_offered_w"] = self.v(s[3])
            if st.stype == "dc" and not orphan_mode:
                soc = p.soc0 + self.true_e(t) * 0.94 / cap_wh * 100
                if soc_f:
                    mode, t_f, d, _x = soc_f
                    if mode == "frozen":
                        soc = p.soc0
                    elif t >= t_f and mode in ("fall", "jump"):
                        soc += d
                ev["soc_pct"] = self.v(max(0.0, min(100.0, math.floor(soc))))
                temp = temp0 + min(18.0, (t - a) / MIN * 0.35)
                if soc_f and soc_f[0] in ("sensor", "overheat") and soc_f[1] <= t < soc_f[2]:
                    temp = soc_f[3]
                ev["temperature_c"] = self.v(temp, 1)
            elif st.stype in ("home", "work") and st.report == "power" and not orphan_mode:
                ev["board_temperature_c"] = round(35 + pw_true / 1000, 1)
            wts = t + jitter
            if clock:
                mode, c0, c1, shift = clock
                if c0 <= t < c1:
                    wts = (t - c0 + 40_000) if mode == "1970" else t + shift
            ev["ts"] = self.ts(wts)
            self.emit(t + jitter, 4, ev)
            if st.dups and rng.random() < 0.03:
                self.emit(t + jitter + rng.randint(2, 40) * 1000, 4, dict(ev))

    # --- faults -----------------------------------------------------------------------------
    def est(self) -> tuple[int, int, float]:
        """Estimated charging start, charging end and power of the fault-free session."""
        p, st = self.p, self.st
        t_c = max(p.t_plug + 40_000, p.sched or 0)
        if st.stype == "dc":
            return p.t_plug + 60_000, p.t_leave, st.dc_kw * 600
        i_car, neff = self.car_amps()
        pw = min(st.amps, i_car) * st.volts * neff
        hours = max(0.0, p.limit - p.soc0) / 100 * p.car[2] * 1000 / (pw * 0.9)
        return t_c, min(p.t_leave, t_c + int(hours * H)), pw

    def choose_fault(self) -> None:  # noqa: C901
        f, rng, p, st = self.fault, self.rng, self.p, self.st
        if f is None:
            return
        t_c, t_full, pw = self.est()
        span = max(MIN, t_full - t_c)
        iv = st.interval_s * 1000
        par = self.params

        def at(lo: float, hi: float) -> int:
            x = t_c + int(rng.uniform(lo, hi) * span)
            return x - x % 1000

        if f == "stall":
            a = at(0.15, 0.55)
            if st.stype == "dc":
                a = p.t_plug + rng.randint(150, 400) * 1000
            d = (
                int(rng.uniform(17, 30) * MIN)
                if st.stype == "dc"
                else int(rng.uniform(25, 90) * MIN)
            )
            self.variant = rng.choice(
                ["vehicle_comms_lost", "rcd_auto_retry", "contactor_open"] if st.stype != "dc"
                else ["isolation_fault_retry", "power_module_trip"])  # fmt: skip
            status = "SuspendedEVSE" if self.variant == "rcd_auto_retry" else "Charging"
            if st.stype == "dc":
                d = min(d, p.t_leave - a - 2 * MIN)
            par["stall"] = (a, a + d, status)
            if rng.random() < 0.3:
                par["giveup"] = a + d
                self.variant += "+driver_gave_up"
            self.params_note = {"stall_min": round(d / MIN, 1), "status": status}
        elif f == "early_taper":
            if st.stype == "dc":
                s0 = p.soc0 + rng.uniform(8, 15)
                k = rng.uniform(0.15, 0.3)
                self.variant = rng.choice(["cold_battery", "failing_power_module"])
                par["derate"] = (s0, k, 0)
                self.params_note = {"from_soc": round(s0, 1), "factor": round(k, 2)}
            else:
                a = t_c + int(rng.uniform(30, 60) * MIN)
                _, neff = self.car_amps()
                if neff == 3 and rng.random() < 0.6:
                    n = rng.choice([2, 1])
                    self.variant = "lost_phase"
                    par["derate"] = (a, n / 3, n)
                    self.params_note = {"phases_left": n}
                else:
                    k = rng.uniform(0.4, 0.65)
                    self.variant = "wallbox_thermal_derating"
                    par["derate"] = (a, k, 0)
                    self.params_note = {"factor": round(k, 2)}
        elif f == "meter_stuck":
            a = at(0.1, 0.3)
            length = max(45 * MIN, int(6500 / pw * H))
            self.variant = rng.choice(["lost", "catchup", "until_end"])
            par["stuck"] = (a, a + length if self.variant != "until_end" else 10**15, self.variant)
            self.params_note = {"frozen_min": round(length / MIN)}
        elif f == "meter_backwards":
            a = at(0.2, 0.7)
            self.variant = rng.choice(["reset_to_zero", "meter_replaced", "one_low_reading"])
            if self.variant == "one_low_reading":
                par["spike"] = (a, -rng.randint(1000, 5000))
            else:
                new = (
                    rng.randint(0, 50)
                    if self.variant == "reset_to_zero"
                    else rng.randint(100, 5000)
                )
                par["reset"] = (a, new)
            self.params_note = {}
        elif f == "meter_jump":
            a = at(0.2, 0.7)
            cap = st.rated_w if st.declare_rated else DEFAULT_CAP_W
            need = 3 * (1.5 * cap * 2 * st.interval_s / 3600 + 2000)
            j = next(x for x in (65_536, 1_048_576, 16_777_216, 268_435_456) if x > need)
            self.variant = rng.choice(["register_carry", "register_carry", "one_high_reading"])
            par["spike" if self.variant == "one_high_reading" else "jump"] = (a, j)
            self.params_note = {"jump_wh": j}
        elif f == "meter_mismatch":
            k = rng.choice([rng.uniform(0.6, 0.78), rng.uniform(1.3, 1.65)])
            opts = ["register_miscalibrated", "power_sensor_miscalibrated"]
            if st.report == "power":
                opts.append("power_in_kw")
            self.variant = rng.choice(opts)
            if self.variant == "power_in_kw":
                par["kw_as_w"] = True
            else:
                par["reg_k" if self.variant.startswith("register") else "pow_k"] = k
            self.params_note = {"factor": round(k, 3)} if self.variant != "power_in_kw" else {}
        elif f == "data_gap":
            g = int(rng.uniform(1.6, 4) * max(5 * iv, 300_000))
            lo, hi = p.t_plug + 2 * iv, p.t_leave - g - 2 * iv
            if st.stype == "dc":
                g = int(rng.uniform(1.6, 2.5) * max(5 * iv, 300_000))
                lo, hi = t_c + 3 * MIN, t_c + 5 * MIN
            if st.stype != "dc" and rng.random() < 0.6:
                hi = min(hi, t_full - g)
            a = rng.randint(lo // 1000, max(lo, hi) // 1000) * 1000
            par["gap"] = (a, a + g)
            self.variant = rng.choice(["modem_dropout_no_buffer", "firmware_hang"])
            self.params_note = {"gap_min": round(g / MIN, 1)}
            if self.variant == "modem_dropout_no_buffer":
                self.emit(
                    a + 300_000,
                    0,
                    {
                        "type": "station",
                        "ts": fmt_ts(a + 300_000, 0, 3, True),
                        "station_id": st.sid,
                        "event": "disconnect",
                    },
                )
                self.emit(a + g, 0, {"type": "station", "ts": fmt_ts(a + g, 0, 3, True),
                                     "station_id": st.sid, "event": "connect"})  # fmt: skip
            else:
                self.emit(a + g, 0, {"type": "station", "ts": self.ts(a + g), "station_id": st.sid,
                                     "event": "boot", "reason": "Watchdog"})  # fmt: skip
        elif f == "clock_fault":
            a = p.t_plug + int(rng.uniform(0.3, 0.7) * (p.t_leave - p.t_plug))
            a -= a % 1000
            self.variant = rng.choice(["booted_1970", "hours_ahead", "stepped_back"])
            if self.variant == "booted_1970":
                par["clock"] = ("1970", a, a + int(1.5 * iv), 0)
                self.emit(a - 30_000, 0, {"type": "station", "ts": self.ts(10_000),
                                          "station_id": st.sid, "event": "boot",
                                          "reason": "PowerUp"})  # fmt: skip
            elif self.variant == "hours_ahead":
                h = rng.randint(1, 6)
                par["clock"] = ("shift", a, a + int(rng.uniform(2, 4) * iv), h * H)
                self.params_note = {"hours": h}
            else:
                x = int(rng.uniform(5, 40) * MIN)
                par["clock"] = ("shift", a, 10**15, -x)
                self.params_note = {"step_back_min": round(x / MIN, 1)}
        elif f == "unauthorized_energy":
            par["auth"] = rng.choice(["Blocked", "Expired", "Invalid"])
            self.variant = rng.choice(
                ["free_vend_mode", "offline_local_accept", "stale_auth_cache"]
            )
            self.params_note = {"authorize_result": par["auth"]}
        elif f == "soc_inconsistent":
            opts = ["fall", "jump", "sensor", "overheat"]
            if p.car[2] * (p.limit - p.soc0) / 100 >= 30:
                opts.append("frozen")
            self.variant = rng.choice(opts)
            a = t_c + int(rng.uniform(3, 8) * MIN)
            if self.variant == "fall":
                par["soc"] = ("fall", a, -rng.randint(5, 15), 0)
            elif self.variant == "jump":
                par["soc"] = ("jump", a, rng.randint(20, 40), 0)
            elif self.variant == "frozen":
                par["soc"] = ("frozen", 0, 0, 0)
            else:
                temp = (
                    rng.choice([-40.0, 127.0])
                    if self.variant == "sensor"
                    else round(rng.uniform(62, 70), 1)
                )
                par["soc"] = (self.variant, a, a + int(rng.uniform(2, 6) * MIN), temp)
            self.params_note = {k: v for k, v in zip(("mode", "t", "d", "x"), par["soc"],
                                                     strict=True) if k != "t"}  # fmt: skip
        elif f == "orphan_after_stop":
            par["after_stop"] = int(rng.uniform(12, 40) * MIN)
            self.variant = "contactor_not_opened"
            self.params_note = {"minutes": round(par["after_stop"] / MIN, 1)}


# --- the fleet ------------------------------------------------------------------------------------
EXPLAIN = {
    "stall": "charging stopped with the car not full while the charger kept saying {status} and "
    "offered full power; nothing flowed for {stall_min} min",
    "early_taper": "power fell well below what car and charger deliver at that state of charge, "
    "with the offer unchanged",
    "meter_stuck": "the energy register froze while power kept flowing",
    "meter_backwards": "the energy register went down",
    "meter_jump": "the energy register rose by more than the connector can deliver",
    "meter_mismatch": "register energy and the power integral disagree",
    "data_gap": "no readings for {gap_min} min while the session was open",
    "clock_fault": "reading timestamps out of order, far ahead or before the session start",
    "unauthorized_energy": "energy delivered although the id_tag was answered {authorize_result}",
    "soc_inconsistent": "the car's SoC or battery temperature contradicts the energy delivered",
    "concurrent_id_tag": "one id_tag in two overlapping sessions at different stations",
}
WEIGHTS = {"stall": 14, "early_taper": 12, "meter_stuck": 8, "meter_backwards": 7,
           "meter_jump": 7, "meter_mismatch": 9, "data_gap": 12, "clock_fault": 9,
           "unauthorized_energy": 8, "soc_inconsistent": 8}  # fmt: skip


def eligible(kind: str, p: Plan) -> bool:  # noqa: C901
    st = p.st
    dur = p.t_leave - p.t_plug
    iv = st.interval_s * 1000
    if p.kind != "normal":
        return False
    if kind == "soc_inconsistent":
        return st.stype == "dc" and dur >= 20 * MIN
    if kind == "unauthorized_energy" and p.remote:
        return False
    if st.stype == "dc":
        return dur >= 20 * MIN and (kind != "data_gap" or dur >= 20 * iv + 10 * MIN)
    sim = Sim(p, 0.0, random.Random(0), None)
    t_c, t_full, pw = sim.est()
    charge = t_full - t_c
    if kind in ("early_taper", "meter_stuck", "meter_mismatch") and st.report == "energy":
        return False
    if kind == "early_taper":
        return charge >= 3 * H and not st.load_steps and st.pause is None
    if kind == "meter_stuck":
        return charge >= 2 * H and pw >= 3000
    if kind == "meter_mismatch":
        return charge >= max(2 * H, 10 * iv) and pw >= 2000
    if kind == "stall":
        return charge >= 90 * MIN and dur >= 3 * H and st.pause is None
    if kind == "data_gap":
        return dur >= max(3 * H, 30 * iv)
    if kind == "unauthorized_energy":
        return not p.remote and charge >= 30 * MIN
    if kind in ("meter_backwards", "meter_jump"):
        return charge >= max(H, 6 * iv)
    if kind == "clock_fault":
        return dur >= max(H, 8 * iv)
    return False


def lines_of(events: list[tuple[int, int, int, dict[str, Any]]]) -> list[str]:
    return [json.dumps(e[3], separators=(",", ":")) for e in sorted(events, key=lambda x: x[:3])]


def caps_of(stations: list[Station]) -> dict[str, float]:
    return {s.sid: s.rated_w for s in stations if s.declare_rated}


def simulate_one(
    p: Plan, base: float, fault: str | None, seed: int, caps: dict[str, float]
) -> tuple[Sim, Found]:
    tries: list[str | None] = [fault] * 6 + [None] * 6 if fault else [None] * 8
    sim: Sim | None = None
    found: Found = {}
    for k, f in enumerate(tries):
        sim = Sim(p, base, random.Random(f"{seed}|{p.sid}|{k}"), f)
        sim.build()
        d = derive_all(lines_of(sim.events), caps, {p.st.sid: float(p.st.interval_s)})
        found = {lab["kind"]: (0.0, 0.0) for lab in d.labels if lab["session_id"] is not None}
        orphans = [lab for lab in d.labels if lab["session_id"] is None]
        if d.grey:
            if DEBUG:
                print(f"debug: {p.sid} {f} {sim.variant} grey {d.grey[:2]}", file=sys.stderr)
            continue
        if f is None or f == "orphan_after_stop" or p.kind == "ghost":
            want_orphan = f == "orphan_after_stop" or p.kind == "ghost"
            if not found and len(orphans) == (1 if want_orphan else 0):
                return sim, found
            continue
        if f in found and set(found) <= {f} | CO_KINDS.get(f, set()) and not orphans:
            return sim, found
        if DEBUG:
            print(f"debug: {p.sid} {f} {sim.variant} -> {sorted(found)} {len(orphans)} "
                  f"{d.grey[:2]}", file=sys.stderr)  # fmt: skip
    # last resort: the car turns out to be full on arrival (no energy), if that meets nothing
    p.kind = "full"
    sim = Sim(p, base, random.Random(f"{seed}|{p.sid}|last"), None)
    sim.build()
    d = derive_all(lines_of(sim.events), caps, {p.st.sid: float(p.st.interval_s)})
    if not d.labels and not d.grey:
        return sim, {}
    raise RuntimeError(f"could not draw session {p.sid}: {found} {d.grey[:3]}")


def generate(args: argparse.Namespace) -> int:  # noqa: C901
    t_start = time.time()
    rng = random.Random(f"town-{args.seed}")
    t0 = int(parse_ts(args.start) * 1000)
    t0 -= t0 % 1000
    t1 = t0 + int(args.hours * H)
    stations = make_stations(args.stations, rng, t0, t1)
    caps = caps_of(stations)
    plans: dict[tuple[str, int], list[Plan]] = {}
    for st in stations:
        for c in range(1, st.conns + 1):
            plans[(st.sid, c)] = plan_connector(st, c, random.Random(f"{args.seed}|{st.sid}|{c}"),
                                                t0, t1)  # fmt: skip
        if st.stype == "dc" and st.conns == 2:
            for c in (1, 2):
                other = [(q.t_plug, q.t_leave) for q in plans[(st.sid, 3 - c)]]
                for q in plans[(st.sid, c)]:
                    q.other = other
    all_plans = [q for v in plans.values() for q in v]
    n = len(all_plans)
    target = round(args.anomaly_rate * n)
    pairs = max(1, round(0.04 * target / 2)) if target >= 4 else 0
    singles = max(0, target - 2 * pairs)
    frng = random.Random(f"faults-{args.seed}")
    order = all_plans[:]
    frng.shuffle(order)
    assigned: dict[str, str] = {}
    for kind in WEIGHTS:  # every kind at least once
        if len(assigned) >= singles:
            break
        for q in order:
            if q.sid not in assigned and eligible(kind, q):
                assigned[q.sid] = kind
                break
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    for q in order:
        if len(assigned) >= singles:
            break
        if q.sid in assigned:
            continue
        opts = [(k, w) for k, w in zip(kinds, weights, strict=True) if eligible(k, q)]
        if opts:
            assigned[q.sid] = frng.choices([k for k, _ in opts], [w for _, w in opts])[0]
    # energy outside sessions: contactors that stay closed, free-vend charges with no session
    n_orph = max(2, round(0.012 * n)) if args.anomaly_rate > 0 else 0
    orphan_hosts: set[str] = set()
    ghosts = 0
    for (sid, _c), lst in sorted(plans.items()):
        if len(orphan_hosts) + ghosts >= n_orph:
            break
        if not lst or frng.random() > 0.25:
            continue
        for i, q in enumerate(lst):
            nxt = lst[i + 1].t_plug if i + 1 < len(lst) else t1
            if q.sid in assigned or q.kind != "normal" or q.remote:
                continue
            if frng.random() < 0.5 and nxt - q.t_leave > 60 * MIN:
                orphan_hosts.add(q.sid)
                break
            if nxt - q.t_leave > 4 * H and q.st.stype != "dc":
                a = q.t_leave + int(frng.uniform(20, 60) * MIN)
                a -= a % 1000
                g = Plan(
                    f"{sid}-{_c}-ghost{i}",
                    q.st,
                    q.conn,
                    a,
                    a + int(1.5 * H),
                    pick_car(frng, q.st),
                    frng.uniform(20, 50),
                    100.0,
                    None,
                    True,
                    "ghost",
                )
                lst.insert(i + 1, g)
                ghosts += 1
                break
    # simulate
    sims: dict[tuple[str, int], list[Sim]] = defaultdict(list)
    intended: dict[str, Found] = {}
    for key, lst in plans.items():
        base = float(random.Random(f"reg-{args.seed}-{key}").randint(100_000, 9_000_000))
        if lst:
            base = math.floor(base / lst[0].st.res_wh) * lst[0].st.res_wh
        for q in lst:
            f = assigned.get(q.sid) or ("orphan_after_stop" if q.sid in orphan_hosts else None)
            sim, found = simulate_one(q, base, f, args.seed, caps)
            sims[key].append(sim)
            intended[q.sid] = found
            base = sim.end_reg
    # id tags, concurrent pairs
    events: list[tuple[int, int, int, dict[str, Any]]] = []
    flat = [s for v in sims.values() for s in v if s.p.kind != "ghost"]
    trng = random.Random(f"tags-{args.seed}")

    def new_tag() -> str:
        if trng.random() < 0.7:
            return "04" + "".join(trng.choice("0123456789ABCDEF") for _ in range(12))
        return f"NL-TWN-C{trng.randint(10**7, 10**8 - 1)}-{trng.choice('ABCDEFGHJK')}"

    tag_of: dict[str, str] = {}
    conc_note: dict[str, dict[str, Any]] = {}
    cands = [s for s in flat if not intended[s.p.sid] and s.fault is None and s.p.kind == "normal"
             and s.p.sid not in orphan_hosts and s.stop - s.start > 40 * MIN]  # fmt: skip
    trng.shuffle(cands)
    used: set[str] = set()
    made = 0
    for want_far in (True, False, None, None, None, None) * 20:
        if made >= pairs:
            break
        for ca in cands:
            if ca.p.sid in used:
                continue
            cb = next((b for b in cands if b.p.sid not in used and b is not ca
                      and b.st.sid != ca.st.sid
                      and min(ca.stop, b.stop) - max(ca.start, b.start) >= 20 * MIN
                      and (want_far is None or (ca.st.town != b.st.town) == want_far)
                      and (want_far is not False or ca.st.site == b.st.site
                           or ca.st.stype == b.st.stype)), None)  # fmt: skip
            if cb is None:
                continue
            tag = new_tag()
            var = (
                "cloned_card_distant_town"
                if ca.st.town != cb.st.town
                else (
                    "shared_card_same_site" if ca.st.site == cb.st.site else "shared_card_in_town"
                )
            )
            for s, o in ((ca, cb), (cb, ca)):
                tag_of[s.p.sid] = tag
                used.add(s.p.sid)
                conc_note[s.p.sid] = {"variant": var, "other_session": o.p.sid,
                                      "other_station": o.st.sid}  # fmt: skip
            made += 1
            break
    last_stop: dict[str, int] = {}
    pool: list[str] = []
    home_tag: dict[str, str] = {}
    for s in sorted(flat, key=lambda s: s.start):
        if s.p.sid in tag_of:
            continue
        if s.st.stype == "home":
            tag = home_tag.setdefault(s.st.sid, new_tag())
        else:
            free = [t for t in pool if last_stop.get(t, 0) < s.start - 45 * MIN]
            tag = trng.choice(free) if free and trng.random() < 0.35 else new_tag()
            if tag not in pool:
                pool.append(tag)
            last_stop[tag] = max(last_stop.get(tag, 0), s.stop)
        tag_of[s.p.sid] = tag
    for s in flat:
        for ev in s.tag_refs:
            ev["id_tag"] = tag_of[s.p.sid]
    for v in sims.values():
        for s in v:
            events += s.events
    events += station_events(stations, sims, t0, t1, args.seed, tag_of)
    # offline stations upload buffered events late, in one burst
    by_station = {s.sid: s for s in stations}
    final: list[tuple[int, int, int, dict[str, Any]]] = []
    for e in events:
        st = by_station[e[3]["station_id"]]
        if st.offline and st.offline[0] <= e[0] < st.offline[1]:
            if e[3]["type"] == "station" and e[3].get("event") == "heartbeat":
                continue
            final.append((st.offline[1] + 2000, e[0], e[2], e[3]))
        else:
            final.append(e)
    lines = lines_of(final)
    d = derive_all(lines, caps)
    # compare with what each session was drawn to be
    problems = 0
    got: dict[str, set[str]] = defaultdict(set)
    for lab in d.labels:
        if lab["session_id"]:
            got[lab["session_id"]].add(lab["kind"])
    for s in flat:
        want = set(intended[s.p.sid]) | ({"concurrent_id_tag"} if s.p.sid in conc_note else set())
        if want != got.get(s.p.sid, set()):
            problems += 1
            print(f"warning: {s.p.sid} drawn as {sorted(want)} but derives "
                  f"{sorted(got.get(s.p.sid, set()))}", file=sys.stderr)  # fmt: skip
    for grey_msg in d.grey:
        problems += 1
        print(f"warning: grey: {grey_msg}", file=sys.stderr)
    write_outputs(args, stations, lines, d, sims, conc_note)
    labelled = len(got)
    print(f"events {len(lines)} sessions {len(flat)} labelled {labelled} "
          f"({labelled / max(1, len(flat)):.3f}) labels {len(d.labels)} "
          f"time {time.time() - t_start:.1f}s", file=sys.stderr)  # fmt: skip
    return 1 if problems else 0


def _val(st: Station, x: float, nd: int = 0) -> Any:
    y: float | int = round(x, nd) if nd else round(x)
    return str(y) if st.strings else y


def station_events(  # noqa: C901
    stations: list[Station],
    sims: dict[tuple[str, int], list[Sim]],
    t0: int,
    t1: int,
    seed: int,
    tag_of: dict[str, str],
) -> list[tuple[int, int, int, dict[str, Any]]]:
    out: list[tuple[int, int, int, dict[str, Any]]] = []

    def emit(t: int, prio: int, ev: dict[str, Any]) -> None:
        _SEQ[0] += 1
        out.append((t, prio, _SEQ[0], ev))

    for st in stations:
        rng = random.Random(f"station-{seed}-{st.sid}")

        def ts(t: int, st: Station = st) -> str:
            return fmt_ts(t, st.off_min, st.digits, st.zulu)

        if rng.random() < 0.1:
            tb = t0 + rng.randint(5, 60) * 1000
            emit(tb, 0, {"type": "station", "ts": ts(tb), "station_id": st.sid, "event": "boot",
                         "vendor": rng.choice(["Alfen", "Zaptec", "ABB", "Wallbox", "Easee"]),
                         "model": "TF-" + str(rng.randint(10, 99)), "firmware": "4.2.1",
                         "ocpp_version": "1.6", "heartbeat_interval_s": st.hb_s})  # fmt: skip
            for c in range(1, st.conns + 1):
                emit(tb + 2000, 2, {"type": "status", "ts": ts(tb + 2000), "station_id": st.sid,
                                    "connector_id": c, "status": "Available"})  # fmt: skip
        t = t0 + rng.randint(1, st.hb_s) * 1000
        while t < t1:
            emit(t, 0, {"type": "station", "ts": ts(t), "station_id": st.sid,
                        "event": "heartbeat"})  # fmt: skip
            t += st.hb_s * 1000
        if st.offline:
            a, b = st.offline
            emit(a + 2 * st.hb_s * 1000, 0, {"type": "station", "ts": fmt_ts(
                a + 2 * st.hb_s * 1000, 0, 3, True), "station_id": st.sid, "event": "disconnect",
                "reason": "heartbeat timeout"})  # fmt: skip
            emit(b, 0, {"type": "station", "ts": fmt_ts(b, 0, 3, True), "station_id": st.sid,
                        "event": "connect"})  # fmt: skip
        st_sims = [s for c in range(1, st.conns + 1) for s in sims.get((st.sid, c), [])]
        # refused cards with no session after them
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            ta = t0 + rng.randint(0, max(1, (t1 - t0) // 1000 - 1)) * 1000
            tag = "04" + "".join(rng.choice("0123456789ABCDEF") for _ in range(12))
            emit(ta, 1, {"type": "authorize", "ts": ts(ta), "station_id": st.sid, "id_tag": tag,
                         "result": rng.choice(["Invalid", "Expired", "Blocked"])})  # fmt: skip
        if st.conns >= 2 and st_sims and rng.random() < 0.3:
            s = rng.choice(st_sims)
            ctag = tag_of.get(s.p.sid)
            tx = s.start + (s.stop - s.start) // 2
            same = [o.start for o in st_sims if tag_of.get(o.p.sid) == ctag and o is not s]
            if ctag and s.stop - s.start > 20 * MIN and not any(tx <= x <= tx + 11 * MIN
                                                                 for x in same):  # fmt: skip
                emit(tx, 1, {"type": "authorize", "ts": ts(tx), "station_id": st.sid,
                             "id_tag": ctag, "result": "ConcurrentTx"})  # fmt: skip
        for c in range(1, st.conns + 1):
            lst = sims.get((st.sid, c), [])
            if not lst:
                continue
            # idle periods: idle readings, faulted episodes
            reg = lst[0].base
            prev_end = t0
            periods = []
            for s in lst:
                periods.append((prev_end, s.p.t_plug, reg))
                reg, prev_end = s.end_reg, s.t_end
            periods.append((prev_end, t1, reg))
            faulted = c == 1 and rng.random() < 0.05
            for a, b, r in periods:
                if st.idle_readings:
                    iv = st.interval_s * 1000
                    t = (a // iv + 1) * iv
                    while t < b - 1000:
                        ev: dict[str, Any] = {
                            "type": "reading",
                            "ts": ts(t),
                            "station_id": st.sid,
                            "connector_id": c,
                            "energy_wh": _val(st, r),
                        }
                        if st.report == "power":
                            ev["power_w"] = _val(st, 0.0, 1)
                        emit(t, 4, ev)
                        t += iv
                if faulted and b - a > 2 * H:
                    fa = a + 20 * MIN
                    fb = fa + rng.randint(20, 60) * MIN
                    emit(fa, 2, {"type": "status", "ts": ts(fa), "station_id": st.sid,
                                 "connector_id": c, "status": "Faulted",
                                 "error_code": rng.choice(["GroundFailure", "PowerMeterFailure",
                                                           "HighTemperature"])})  # fmt: skip
                    emit(fb, 2, {"type": "status", "ts": ts(fb), "station_id": st.sid,
                                 "connector_id": c, "status": "Available"})  # fmt: skip
                    faulted = False
        if st.conn0 and st_sims:
            iv = max(60, st.interval_s) * 1000
            base0 = float(rng.randint(1_000_000, 50_000_000))
            t = (t0 // iv + 1) * iv
            while t < t1:
                e = base0 + sum(s.true_e(t) for s in st_sims) + 8 * (t - t0) / H
                pw = sum(s.seg_at(t)[1] for s in st_sims if s.seg_t and s.seg_t[0] <= t)
                ev = {
                    "type": "reading",
                    "ts": ts(t),
                    "station_id": st.sid,
                    "connector_id": 0,
                    "energy_wh": _val(st, e),
                }
                if st.report == "power":
                    ev["power_w"] = _val(st, pw + 8, 1)
                emit(t, 4, ev)
                t += iv
    return out


def write_outputs(  # noqa: C901
    args: argparse.Namespace,
    stations: list[Station],
    lines: list[str],
    d: Derived,
    sims: dict[tuple[str, int], list[Sim]],
    conc_note: dict[str, dict[str, Any]],
) -> None:
    for path in (args.out, args.labels, args.stations_out, args.notes):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line + "\n")
    with open(args.labels, "w", encoding="utf-8", newline="\n") as fh:
        for lab in d.labels:
            fh.write(json.dumps(lab, separators=(",", ":")) + "\n")
    with open(args.stations_out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["station_id", "site_id", "latitude", "longitude", "rated_power_w"])
        for st in stations:
            w.writerow([st.sid, st.site, "" if st.lat is None else st.lat,
                        "" if st.lon is None else st.lon,
                        int(st.rated_w) if st.declare_rated else ""])  # fmt: skip
    by_sid = {s.p.sid: s for v in sims.values() for s in v}
    kinds_of: dict[str, list[str]] = defaultdict(list)
    for lab in d.labels:
        if lab["session_id"]:
            kinds_of[lab["session_id"]].append(lab["kind"])
    with open(args.notes, "w", encoding="utf-8", newline="\n") as fh:
        for sid, kinds in kinds_of.items():
            s = by_sid[sid]
            fault = s.fault if s.fault and s.fault in kinds else "concurrent_id_tag"
            params = dict(s.params_note)
            variant = s.variant
            if "concurrent_id_tag" in kinds:
                params.update(conc_note.get(sid, {}))
                if fault == "concurrent_id_tag":
                    variant = conc_note.get(sid, {}).get("variant", "")
            fmt = defaultdict(str, params)
            text = EXPLAIN[fault].format_map(fmt)
            also = [k for k in kinds if k != fault]
            if also:
                text += "; the same fault also meets " + ", ".join(
                    f"{k} ({EXPLAIN[k].format_map(fmt)})" for k in also
                )
            fh.write(json.dumps(note(s, kinds, fault, variant, params, text)) + "\n")
        for lab in d.labels:
            if lab["session_id"] is not None:
                continue
            t_a, t_b = parse_ts(lab["start"]) * 1000, parse_ts(lab["end"]) * 1000
            host = next((s for s in sims.get((lab["station_id"], lab["connector_id"]), [])
                         if (s.p.kind == "ghost" or s.fault == "orphan_after_stop")
                         and s.start - MIN <= t_b and t_a <= s.t_end + MIN), None)  # fmt: skip
            if host is None:
                n = {"session_id": None, "station_id": lab["station_id"],
                     "connector_id": lab["connector_id"], "kinds": ["unauthorized_energy"],
                     "fault": "energy_outside_session", "variant": "unknown", "params": {},
                     "explanation": "energy with no session open", "vehicle": None,
                     "station_type": None, "sampling_interval_s": None}  # fmt: skip
            else:
                ghost = host.p.kind == "ghost"
                n = note(host, ["unauthorized_energy"], "energy_outside_session",
                         "free_vend_no_transaction" if ghost else host.variant,
                         host.params_note, "a car charged on the connector with no session open"
                         + (" (station in free-vend mode, no StartTransaction)" if ghost else
                            f" after session {host.p.sid} was stopped: the contactor stayed "
                            "closed"))  # fmt: skip
                n["session_id"] = None
                n["after_session"] = None if ghost else host.p.sid
            fh.write(json.dumps(n) + "\n")


def note(
    s: Sim, kinds: list[str], fault: str, variant: str, params: dict[str, Any], text: str
) -> dict[str, Any]:
    return {"session_id": s.p.sid, "station_id": s.st.sid, "connector_id": s.p.conn,
            "kinds": kinds, "fault": fault, "variant": variant, "params": params,
            "explanation": text, "vehicle": s.p.car[0], "station_type": s.st.stype,
            "sampling_interval_s": s.st.interval_s, "town": s.st.town,
            "station_reports": s.st.report}  # fmt: skip


# --- check ----------------------------------------------------------------------------------------
def check(directory: Path) -> int:  # noqa: C901
    problems: list[str] = []
    caps: dict[str, float] = {}
    with (directory / "stations.csv").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if rows[0] != ["station_id", "site_id", "latitude", "longitude", "rated_power_w"]:
        problems.append(f"stations.csv header {rows[0]}")
    for row in rows[1:]:
        if row[4]:
            caps[row[0]] = float(row[4])
    lines = (directory / "events.jsonl").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        o = json.loads(line)
        if "type" not in o or "ts" not in o:
            problems.append(f"events line {i}: no type/ts")
    d = derive_all(lines, caps)
    problems += [f"grey: {g}" for g in d.grey]
    want = sorted(json.dumps(x, sort_keys=True) for x in d.labels)
    with (directory / "labels.jsonl").open(encoding="utf-8") as fh:
        have_l = [json.loads(x) for x in fh if x.strip()]
    have = sorted(json.dumps(x, sort_keys=True) for x in have_l)
    for x in sorted(set(want) - set(have)):
        problems.append(f"derived but not labelled: {x}")
    for x in sorted(set(have) - set(want)):
        problems.append(f"labelled but not derived: {x}")
    with (directory / "notes.jsonl").open(encoding="utf-8") as fh:
        notes = [json.loads(x) for x in fh if x.strip()]
    need = {"session_id", "station_id", "connector_id", "kinds", "fault", "variant", "params",
            "explanation", "vehicle", "station_type", "sampling_interval_s"}  # fmt: skip
    kinds_of: dict[str, set[str]] = defaultdict(set)
    for lab in have_l:
        if lab["session_id"]:
            kinds_of[lab["session_id"]].add(lab["kind"])
    noted: dict[str, set[str]] = {}
    orphan_notes = 0
    for n in notes:
        if not need <= set(n):
            problems.append(f"note lacks {sorted(need - set(n))}")
        if n.get("session_id") is None:
            orphan_notes += 1
        else:
            noted[n["session_id"]] = set(n["kinds"])
    if noted != dict(kinds_of):
        problems.append("notes and labels disagree on the labelled sessions or their kinds")
    orphans = sum(1 for lab in have_l if lab["session_id"] is None)
    if orphans != orphan_notes:
        problems.append(f"{orphans} orphan labels but {orphan_notes} orphan notes")
    for p in problems[:50]:
        print(p)
    counts: dict[str, int] = defaultdict(int)
    for lab in have_l:
        counts[lab["kind"]] += 1
    if problems:
        print(f"FAILED: {len(problems)} problems")
        return 1
    print(f"OK: {len(lines)} events, {d.sessions} sessions, {len(kinds_of)} labelled, "
          f"{len(have_l)} labels: " + ", ".join(f"{k} {counts[k]}" for k in KINDS))  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--stations", type=int, default=200)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--anomaly-rate", type=float, default=0.25)
    ap.add_argument("--start", default="2026-11-23T23:00:00Z")
    ap.add_argument("--out", default="events.jsonl")
    ap.add_argument("--labels", default="labels.jsonl")
    ap.add_argument("--stations-out", default="stations.csv")
    ap.add_argument("--notes", default="notes.jsonl")
    ap.add_argument("--check", type=Path, default=None)
    ap.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global DEBUG
    DEBUG = args.debug
    if args.check is not None:
        return check(args.check)
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
