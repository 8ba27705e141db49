"""depot_fleet: an independently written, labelled fleet generator for chargewatch.

Written from CONTRACTS.md sections 1-3, the published vehicle figures (open-ev-data by Chargeprice,
MIT licence, commit e495ff9) and OCPP 1.6 / 2.0.1 habits; it shares no code with the project.
Standard library only. Deterministic: the same arguments give the same bytes.

    python bench/depot_fleet.py --stations 200 --hours 24 --seed 1 --anomaly-rate 0.25 \
        --out events.jsonl --labels labels.jsonl --stations-out stations.csv --notes notes.jsonl
    python bench/depot_fleet.py --check DIR     # re-derive every label from DIR's events

How labels are made. Every session is simulated, turned into events, and then run through the
same rule set that ``--check`` uses (section "Rules" below) on the events alone. A session keeps
the labels the rules derive from its events; a session planned with a fault must derive that
fault, and a planned normal session must derive nothing. Each rule has a "clear" band on both
sides of its threshold; a session whose measure falls between the bands (a coin flip) is drawn
again. When a fault also meets another kind's definition (a meter stuck to the end also makes
the register disagree with the power integral) both kinds are labelled and the note says so.

Conventions (all times from the event's own ``ts``; "in-window" readings are those of the session
whose ts lies within [session_start ts, session_stop ts] - or the last reading when the session is
still open; sequences are taken in file order, which is arrival order):

* Power of a reading: ``power_w``; without it ``current_a * voltage_v`` (DC stations that only send
  current and voltage). AC stations always send power when they send current.
* Integration: trapezoid between consecutive in-window readings that both carry power and energy,
  pairs with dt <= 0 are skipped (duplicates, clock faults).
* Near zero: <= 200 W (a parked car's electronics draw 0-150 W). Clearly above zero: >= 1000 W.
* A charging limit explains nothing flowing when ``power_offered_w`` <= 1500 W (below the 6 A
  IEC 61851 minimum of a single phase); it explains a lower power when power >= 0.75 * offered.
* The car is full when its last SoC in the session is >= 95 % or the connector's status (latest
  status of that connector at that ts) is SuspendedEV or Finishing.
* stall: a run of consecutive readings with power near zero, not explained, car not full, register
  rising <= max(100 Wh, the register's smallest step in the session); the run lasts
  ts(last) - ts(first) >= 600 s. Clear bands: >= 720 s / < 480 s.
* early_taper: needs SoC. For each reading j (SoC < 80 %, power > 200 W, not explained, car not
  full) the reference is R_j = max over readings i in the 600 s before j (power >= 2 kW, SoC known)
  of P_i * floor(SoC_i, SoC_j), where floor is the steepest decline any published curve shows
  between those SoCs (exp of the summed per-percent log drop, taken over all 174 curves of
  ev-data.json, table ``FLOOR_DROP``). Holds when a run of consecutive readings with
  P_j < 0.6 R_j lasts >= 300 s ("well below" = under 60 % of the least any real car would still
  draw). Clear bands: ratio < 0.52 for >= 400 s / no run below 0.72 of 240 s or more.
* meter_stuck: a run of consecutive readings with an identical register and power >= 1000 W whose
  power integral is >= 2000 Wh (the coarsest register here steps by 1000 Wh). Bands 3000 / 1400 Wh.
* meter_backwards: the register sequence meter_start, readings, meter_stop falls at any step
  (> 0.5 Wh). Bands: >= 100 Wh / no fall at all.
* meter_jump: a rise between consecutive register points with dt > 0 above
  1.25 * capacity * dt + 1000 Wh (1000 Wh = one step of the coarsest register). Capacity is the
  station's declared rated_power_w, else the largest power or offer seen at the station, else
  350 kW. Bands: > 2 * cap * dt + 3000 Wh / <= 1.1 * cap * dt + 1000 Wh.
* meter_mismatch: register rise (last - first of readings with power and energy) against the
  power integral over the same readings; evaluated with >= 6 such readings and an integral of at
  least max(2000 Wh, 20 register steps); holds when |reg - int| / int > 0.15. Bands 0.20 / 0.10.
* data_gap: sampling interval = median positive ts step of the in-window readings (>= 3 needed);
  holds when a step of [start, readings..., stop] exceeds 5 intervals and is >= 300 s.
  Bands: > 6 intervals and >= 360 s / <= 4 intervals or < 240 s. Readings delivered late in a burst
  carry their measurement ts and so are not a gap; lost readings are.
* clock_fault: a session ts (start, reading, stop) decreases by > 1 s in file order, a reading
  ts is > 1 s before the session start, or any session ts is > 6 h after the time it was received.
  The receive time is estimated with the median ts of the file's 1000-line block (and neighbours).
  Bands: faults are >= 5 min back / >= 12 h ahead; normal sessions show no decrease at all.
* unauthorized_energy: (a) the latest ``authorize`` of the session's id_tag at its station in
  the 15 min before the start (+60 s) is not Accepted and the session delivers >= 100 Wh (register
  rise or integral); bands 500 / 50 Wh; no authorize at all (local list, free vend) is not judged.
  (b) readings without session_id: consecutive runs per connector in file order, labelled with a
  null session_id when the register rises or the integral reaches >= 200 Wh (bands 500 / 50 Wh).
* soc_inconsistent: SoC falls >= 2 points below an earlier SoC of the session while the register
  rose >= 200 Wh in between; or between consecutive SoC readings it rises by more than
  dE / 5.5 kWh * 100 + step + 2 points (5.5 kWh = the smallest usable battery in ev-data.json,
  step = the smallest SoC increment the car reports); or it stays within 1 point while the register
  rises >= 20 kWh (bands 25 / 15 kWh); or ``temperature_c`` (battery) is > 60 or < -20 C while
  power >= 1 kW (faults use -40 C, a sensor default, or >= 75 C; normal packs stay -5..48 C).
* concurrent_id_tag: two sessions with one id_tag at different station_ids whose
  [start, stop] intervals overlap (open sessions end at their last event); both carry the label.
  Bands: overlap >= 300 s / separated by >= 60 s. Fleet cards and same-site moves are labelled too;
  the note records whether the two stations share a site.

What is normal here and must not be labelled: taper near full, SuspendedEV pauses (balancing,
preconditioning, departure timers), idle hours after full, offered-limited power (load management,
solar, a reported cabinet share), single missing samples, duplicated readings, late bursts after
an offline period, coarse or missing SoC, registers with 10/100/1000 Wh resolution, numbers as
strings, ts with zone offsets and 0/3/6 fractional digits.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
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

STEP = 5.0  # physics step, s
ZERO_W = 200.0
FLOW_W = 1000.0
OFFER_EXPLAINS_ZERO_W = 1500.0
B_MIN_KWH = 5.5
FUTURE_S = 6 * 3600.0
Json = dict[str, Any]

# Steepest published decline per SoC percent (ln P(s)/P(s+1)), s = 0..79, over all 174 curves
# of ev-data.json (open-ev-data, Chargeprice, MIT).
FLOOR_DROP = (
    [0.009] * 10
    + [0.013, 0.013, 0.013, 0.014, 0.014, 0.014, 0.219, 0.014, 0.069, 0.075]
    + [0.237, 0.077, 0.227, 0.011, 0.011, 0.011, 0.011, 0.012, 0.012, 0.012]
    + [0.022, 0.022, 0.023, 0.014, 0.014, 0.015, 0.015, 0.056, 0.016, 0.016]
    + [0.123, 0.14, 0.024, 0.024, 0.025, 0.025, 0.406, 0.348, 0.027, 0.028]
    + [0.029, 0.116, 0.131, 0.104, 0.116, 0.176, 0.134, 0.183, 0.224, 0.044]
    + [0.036, 0.037, 0.069, 0.075, 0.081, 0.052, 0.055, 0.257, 0.656, 0.043]
    + [0.044, 0.423, 3.021, 0.588, 0.192, 0.237, 0.188, 0.232, 0.111, 1.03]
)
_FLOOR_CUM = [0.0]
for _d in FLOOR_DROP:
    _FLOOR_CUM.append(_FLOOR_CUM[-1] + _d)


def floor_ratio(s1: float, s2: float) -> float:
    """Least P(s2)/P(s1) any published curve shows (1.0 when s2 <= s1)."""
    if s2 <= s1:
        return 1.0

    def cum(s: float) -> float:
        s = min(max(s, 0.0), 80.0)
        k = min(int(s), 79)
        return _FLOOR_CUM[k] + (s - k) * FLOOR_DROP[k]

    return math.exp(-(cum(s2) - cum(s1)))


# name, usable kWh, AC phases, AC max kW, DC curve [(soc %, kW)]  (from ev-data.json)
CARS: list[tuple[str, float, int, float, list[tuple[float, float]]]] = [
    (
        "Audi Q4 e-tron",
        77.0,
        3,
        11.0,
        [(0, 125), (35, 125), (70, 65), (80, 65), (90, 35), (100, 25)],
    ),
    (
        "Audi e-tron 55",
        86.5,
        3,
        11.0,
        [(0, 137), (70, 155), (72, 150), (78, 120), (82, 105), (100, 50)],
    ),
    ("BMW i3 120Ah", 37.9, 3, 11.0, [(0, 44), (85, 50), (100, 3)]),
    ("BMW iX3", 74.0, 1, 7.4, [(0, 148), (35, 147), (60, 118), (75, 86), (100, 44)]),
    ("CUPRA Born 58", 58.0, 3, 11.0, [(0, 100), (30, 100), (70, 50), (80, 50), (100, 25)]),
    ("Chevrolet Bolt", 58.0, 2, 7.2, [(0, 55), (56, 38), (68, 24), (85, 16), (100, 1)]),
    (
        "Hyundai Ioniq 5",
        72.6,
        3,
        11.0,
        [
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
        ],
    ),
    (
        "Kia e-Niro 64",
        64.0,
        3,
        11.0,
        [
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
        ],
    ),
    (
        "MG ZS EV",
        44.5,
        1,
        6.6,
        [(0, 70), (10, 80), (20, 70), (80, 55), (83, 18), (90, 18), (100, 6.6)],
    ),
    ("Mercedes EQA 250", 66.6, 3, 11.0, [(0, 99), (35, 98), (65, 70), (85, 36), (100, 1)]),
    ("Nissan Leaf 40", 38.0, 1, 6.6, [(0, 41), (62, 45), (65, 36), (100, 15)]),
    ("Nissan e-NV200 40", 38.0, 1, 6.6, [(0, 40), (62, 45), (75, 36), (100, 15)]),
    (
        "Peugeot e-208 11kW",
        45.0,
        3,
        11.0,
        [
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
        ],
    ),
    (
        "Peugeot e-Traveller",
        45.0,
        3,
        11.0,
        [
            (0, 98),
            (20, 87),
            (22, 75),
            (57, 75),
            (59, 50),
            (65, 50),
            (67, 45),
            (73, 45),
            (74, 25),
            (84, 25),
            (85, 12),
            (100, 12),
        ],
    ),
    ("Citroen e-Spacetourer 75", 75.0, 3, 11.0, [(0, 99), (40, 95), (60, 77), (75, 55), (100, 13)]),
    (
        "Polestar 2",
        72.5,
        3,
        11.0,
        [
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
        ],
    ),
    ("Renault Zoe ZE50", 52.0, 3, 22.0, [(0, 41), (52, 46), (80, 27), (100, 22)]),
    (
        "Skoda Enyaq 82",
        77.0,
        3,
        11.0,
        [(0, 125), (35, 125), (50, 100), (70, 70), (80, 70), (90, 37), (100, 25)],
    ),
    ("Tesla Model 3 LR", 74.0, 3, 11.0, [(0, 180), (40, 195), (60, 110), (100, 12)]),
    ("Tesla Model Y LR", 72.5, 3, 11.0, [(0, 246), (35, 238), (75, 99), (100, 18)]),
    ("VW ID.3 58", 58.0, 3, 11.0, [(0, 100), (30, 100), (70, 50), (80, 50), (100, 20)]),
    ("VW e-up 2020", 32.3, 2, 7.2, [(0, 32), (27, 34), (80, 14), (100, 7)]),
    ("Volvo XC40 P8", 75.0, 3, 11.0, [(0, 148), (35, 147), (70, 98), (85, 59), (100, 10)]),
    ("Ford Mach-E 98.8", 88.0, 3, 11.0, [(0, 148), (35, 147), (60, 118), (80, 73), (100, 27)]),
]
VANS = ("Nissan e-NV200 40", "Peugeot e-Traveller", "Citroen e-Spacetourer 75", "Renault Zoe ZE50")


def curve_kw(curve: list[tuple[float, float]], soc: float) -> float:
    for (s1, p1), (s2, p2) in itertools.pairwise(curve):
        if s1 <= soc <= s2:
            return p1 + (p2 - p1) * (soc - s1) / max(s2 - s1, 1e-9)
    return curve[-1][1]


# ---------------------------------------------------------------------------------------------
# Parsing and the rules (shared by generation and --check)
# ---------------------------------------------------------------------------------------------


def parse_ts(s: Any) -> float:
    return datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp()


def num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@dataclass
class Rd:
    ts: float
    rcv: float
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
    tag: str
    start: float
    start_rcv: float
    stop: float | None = None
    stop_rcv: float = 0.0
    meter_start: float | None = None
    meter_stop: float | None = None
    readings: list[Rd] = field(default_factory=list)
    statuses: list[tuple[float, str]] = field(default_factory=list)  # sorted by ts
    auth: str | None = None


Verdict = tuple[bool, bool, float, float]  # holds, clear, start, end


def reading_of(d: Json, rcv: float) -> Rd:
    p = num(d.get("power_w"))
    if p is None:
        i, v = num(d.get("current_a")), num(d.get("voltage_v"))
        if i is not None and v is not None:
            p = i * v
    return Rd(
        parse_ts(d["ts"]),
        rcv,
        num(d.get("energy_wh")),
        p,
        num(d.get("power_offered_w")),
        num(d.get("soc_pct")),
        num(d.get("temperature_c")),
    )


def band(value: float, th: float, yes: float, no: float) -> tuple[bool, bool]:
    """holds = value > th; clear when beyond the yes or the no band."""
    return value > th, value >= yes or value < no


def session_end(s: SessView) -> float:
    if s.stop is not None:
        return s.stop
    sane = [r.ts for r in s.readings if r.ts <= r.rcv + FUTURE_S]
    return max([*sane, s.start])


def in_window(s: SessView) -> list[Rd]:
    end = session_end(s)
    return [r for r in s.readings if s.start - 1 <= r.ts <= end + 1]


def status_at(s: SessView, t: float) -> str:
    keys = [x[0] for x in s.statuses]
    i = bisect.bisect_right(keys, t + 0.5) - 1
    return s.statuses[i][1] if i >= 0 else "Charging"


def full_flags(s: SessView, rs: list[Rd]) -> list[bool]:
    out = []
    last_soc = None
    for r in rs:
        if r.soc is not None:
            last_soc = r.soc
        st = status_at(s, r.ts)
        out.append((last_soc is not None and last_soc >= 95) or st in ("SuspendedEV", "Finishing"))
    return out


def min_step(vals: list[float]) -> float:
    steps = [b - a for a, b in itertools.pairwise(vals) if b - a > 1e-9]
    return min(steps) if steps else 1.0


def rule_stall(s: SessView, rs: list[Rd]) -> Verdict:
    full = full_flags(s, rs)
    step = min_step([r.e for r in rs if r.e is not None])
    best = [0.0, 0.0, 0.0]
    run: list[Rd] = []

    def close() -> None:
        if run and run[-1].ts - run[0].ts > best[0]:
            best[:] = [run[-1].ts - run[0].ts, run[0].ts, run[-1].ts]

    for r, f in zip(rs, full, strict=True):
        zero = (
            r.p is not None
            and r.e is not None
            and r.p <= ZERO_W
            and not f
            and not (r.off is not None and r.off <= OFFER_EXPLAINS_ZERO_W)
        )
        if zero and run and r.e - run[0].e > max(100.0, step):  # type: ignore[operator]
            close()
            run = [r]
        elif zero:
            run.append(r)
        else:
            close()
            run = []
    close()
    holds, clear = band(best[0], 599.999, 720, 480)
    return holds, clear, best[1], best[2]


def _runs(flags: list[bool], rs: list[Rd]) -> tuple[float, float, float]:
    best, b0, b1 = 0.0, 0.0, 0.0
    i = 0
    while i < len(flags):
        if not flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flags) and flags[j + 1]:
            j += 1
        if rs[j].ts - rs[i].ts > best:
            best, b0, b1 = rs[j].ts - rs[i].ts, rs[i].ts, rs[j].ts
        i = j + 1
    return best, b0, b1


def rule_taper(s: SessView, rs: list[Rd]) -> Verdict:
    full = full_flags(s, rs)
    socs: list[float | None] = []
    last: tuple[float, float] | None = None
    for r in rs:
        if r.soc is not None:
            last = (r.ts, r.soc)
        socs.append(last[1] if last is not None and r.ts - last[0] <= 900 else None)
    ratios: list[float] = []
    for j, r in enumerate(rs):
        ratio = 9.0
        sj = socs[j]
        eligible = (
            sj is not None
            and sj < 80
            and r.p is not None
            and r.p > ZERO_W
            and not full[j]
            and not (r.off is not None and r.p >= 0.75 * r.off)
        )
        if eligible:
            ref = 0.0
            for i in range(j - 1, -1, -1):
                q = rs[i]
                if q.ts < r.ts - 600:
                    break
                si = socs[i]
                if q.p is not None and q.p >= 2000 and si is not None:
                    ref = max(ref, q.p * floor_ratio(si, sj))  # type: ignore[arg-type]
            if ref > 0:
                ratio = r.p / ref  # type: ignore[operator]
        ratios.append(ratio)
    d_th, t0, t1 = _runs([x < 0.6 for x in ratios], rs)
    d_yes = _runs([x < 0.52 for x in ratios], rs)[0]
    d_no = _runs([x < 0.72 for x in ratios], rs)[0]
    holds = d_th >= 300
    clear = d_yes >= 400 if holds else d_no < 240
    return holds, clear, t0, t1


def trapz(a: Rd, b: Rd) -> float:
    dt = b.ts - a.ts
    if dt <= 0 or a.p is None or b.p is None:
        return 0.0
    return (a.p + b.p) / 2 * dt / 3600


def rule_stuck(s: SessView, rs: list[Rd]) -> Verdict:
    best, b0, b1 = 0.0, 0.0, 0.0
    i = 0
    while i < len(rs):
        r = rs[i]
        if r.e is None or r.p is None or r.p < FLOW_W:
            i += 1
            continue
        j, acc = i, 0.0
        while j + 1 < len(rs):
            q = rs[j + 1]
            if q.e is None or q.p is None or q.p < FLOW_W or abs(q.e - r.e) > 1e-9:
                break
            acc += trapz(rs[j], q)
            j += 1
        if acc > best:
            best, b0, b1 = acc, r.ts, rs[j].ts
        i = j + 1
    holds, clear = band(best, 2000, 3000, 1400)
    return holds, clear, b0, b1


def register_points(s: SessView, rs: list[Rd]) -> list[tuple[float, float]]:
    pts = []
    if s.meter_start is not None:
        pts.append((s.start, s.meter_start))
    pts += [(r.ts, r.e) for r in rs if r.e is not None]
    if s.meter_stop is not None and s.stop is not None:
        pts.append((s.stop, s.meter_stop))
    return pts


def rule_backwards(s: SessView, rs: list[Rd]) -> Verdict:
    pts = register_points(s, rs)
    worst, t0, t1 = 0.0, 0.0, 0.0
    for (ta, a), (tb, b) in itertools.pairwise(pts):
        if a - b > worst:
            worst, t0, t1 = a - b, ta, tb
    return worst > 0.5, worst >= 100 or worst == 0, t0, t1


def rule_jump(s: SessView, rs: list[Rd], cap: float) -> Verdict:
    pts = register_points(s, rs)
    holds, clear, t0, t1 = False, True, 0.0, 0.0
    for (ta, a), (tb, b) in itertools.pairwise(pts):
        dt = tb - ta
        if dt <= 0:
            continue
        lim = cap * dt / 3600
        rise = b - a
        if rise > 1.25 * lim + 1000:
            if not holds:
                t0, t1 = ta, tb
            holds = True
            if rise < 2 * lim + 3000:
                clear = False
        elif rise > 1.1 * lim + 1000:
            clear = False
    return holds, clear, t0, t1


def rule_mismatch(s: SessView, rs: list[Rd]) -> Verdict:
    both = [r for r in rs if r.e is not None and r.p is not None]
    if len(both) < 6:
        return False, True, 0.0, 0.0
    e_int = sum(trapz(a, b) for a, b in itertools.pairwise(both))
    step = min_step([r.e for r in both])  # type: ignore[misc]
    if e_int < max(2000.0, 20 * step):
        return False, True, 0.0, 0.0
    e_reg = both[-1].e - both[0].e  # type: ignore[operator]
    rel = abs(e_reg - e_int) / e_int
    holds, clear = band(rel, 0.15, 0.20, 0.10)
    return holds, clear, both[0].ts, both[-1].ts


def rule_gap(s: SessView, rs: list[Rd]) -> Verdict:
    if len(rs) < 3:
        return False, True, 0.0, 0.0
    steps = [b.ts - a.ts for a, b in itertools.pairwise(rs) if b.ts - a.ts > 0]
    if not steps:
        return False, True, 0.0, 0.0
    iv = statistics.median(steps)
    seq = [s.start] + [r.ts for r in rs] + ([s.stop] if s.stop is not None else [])
    holds, clear, t0, t1 = False, True, 0.0, 0.0
    for a, b in itertools.pairwise(seq):
        g = b - a
        h = g > 5 * iv and g >= 300
        if h and not holds:
            holds, t0, t1 = True, a, b
        if h and not (g > 6 * iv and g >= 360):
            clear = False
        if not h and not (g <= 4 * iv or g < 240):
            clear = False
    return holds, clear, t0, t1


def rule_clock(s: SessView) -> Verdict:
    seq: list[tuple[float, float]] = [(s.start, s.start_rcv)]
    seq += [(r.ts, r.rcv) for r in s.readings]
    if s.stop is not None:
        seq.append((s.stop, s.stop_rcv))
    holds, clear, t0, t1 = False, True, 0.0, 0.0
    hi = -math.inf
    for ts, rcv in seq:
        bad = False
        if ts < hi - 1:
            bad = True
            clear = clear and ts < hi - 300
        if ts < s.start - 1:
            bad = True
            clear = clear and ts < s.start - 300
        ahead = ts - rcv
        if ahead > FUTURE_S:
            bad = True
            clear = clear and ahead > 12 * 3600 - 600
        elif ahead > 3 * 3600:
            clear = False
        if 0 < hi - ts <= 1 or 0 < s.start - ts <= 1:
            clear = False
        if bad and not holds:
            holds, t0, t1 = True, ts, ts
        if bad:
            t1 = max(t1, ts)
        hi = max(hi, ts)
    return holds, clear, min(t0, t1), max(t0, t1)


def session_energy(s: SessView, rs: list[Rd]) -> float:
    pts = [v for _, v in register_points(s, rs)]
    rise = pts[-1] - pts[0] if len(pts) >= 2 else 0.0
    integ = sum(trapz(a, b) for a, b in itertools.pairwise(rs))
    return max(rise, integ)


def rule_unauth(s: SessView, rs: list[Rd]) -> Verdict:
    if s.auth is None or s.auth == "Accepted":
        return False, True, 0.0, 0.0
    e = session_energy(s, rs)
    end = s.stop if s.stop is not None else (rs[-1].ts if rs else s.start)
    holds, clear = band(e, 100, 500, 50)
    return holds, clear, s.start, end


def rule_soc(s: SessView, rs: list[Rd]) -> Verdict:  # noqa: C901
    res: list[tuple[bool, bool, float, float]] = []
    # temperature
    bad = [r for r in rs if r.temp is not None and r.p is not None and r.p >= FLOW_W]
    hot = [r for r in bad if r.temp > 60 or r.temp < -20]  # type: ignore[operator]
    unclear = [r for r in bad if 48 < r.temp < 75 or -35 < r.temp < -5]  # type: ignore[operator]
    res.append((bool(hot), not unclear, hot[0].ts if hot else 0, hot[-1].ts if hot else 0))
    pts: list[tuple[float, float, float]] = []  # ts, soc, energy
    last_e: float | None = None
    for r in rs:
        if r.e is not None:
            last_e = r.e
        if r.soc is not None and last_e is not None:
            pts.append((r.ts, r.soc, last_e))
    if len(pts) >= 2:
        qstep = min_step(sorted({p[1] for p in pts}))
        # falls
        hi = pts[0]
        fall, fclear, f0, f1 = False, True, 0.0, 0.0
        for p in pts[1:]:
            drop = hi[1] - p[1]
            if drop >= 2 and p[2] - hi[2] >= 200:
                if not fall:
                    f0, f1 = hi[0], p[0]
                fall = True
                fclear = fclear and drop >= 5 and p[2] - hi[2] >= 400
            elif drop > 0.5:
                fclear = False
            if p[1] > hi[1]:
                hi = p
        res.append((fall, fclear, f0, f1))
        # jumps
        jh, jc, j0, j1 = False, True, 0.0, 0.0
        for a, b in itertools.pairwise(pts):
            allow = max(b[2] - a[2], 0) / 1000 / B_MIN_KWH * 100 + qstep
            rise = b[1] - a[1]
            if rise > allow + 2:
                if not jh:
                    j0, j1 = a[0], b[0]
                jh = True
                jc = jc and rise > allow + 10
            elif rise > allow + 0.5:
                jc = False
        res.append((jh, jc, j0, j1))
        # flat
        best, fl0, fl1 = 0.0, 0.0, 0.0
        i = 0
        while i < len(pts):
            j = i
            lo_v = hi_v = pts[i][1]
            while j + 1 < len(pts):
                v = pts[j + 1][1]
                if max(hi_v, v) - min(lo_v, v) > 1:
                    break
                lo_v, hi_v = min(lo_v, v), max(hi_v, v)
                j += 1
            if pts[j][2] - pts[i][2] > best:
                best, fl0, fl1 = pts[j][2] - pts[i][2], pts[i][0], pts[j][0]
            i = j + 1
        h, c = band(best, 19999.999, 25000, 15000)
        res.append((h, c, fl0, fl1))
    holds = any(x[0] for x in res)
    clear = all(x[1] for x in res)
    hits = [x for x in res if x[0]]
    return holds, clear, min((x[2] for x in hits), default=0), max((x[3] for x in hits), default=0)


def derive_session(s: SessView, cap: float) -> dict[str, Verdict]:
    rs = in_window(s)
    return {
        "stall": rule_stall(s, rs),
        "early_taper": rule_taper(s, rs),
        "meter_stuck": rule_stuck(s, rs),
        "meter_backwards": rule_backwards(s, rs),
        "meter_jump": rule_jump(s, rs, cap),
        "meter_mismatch": rule_mismatch(s, rs),
        "data_gap": rule_gap(s, rs),
        "clock_fault": rule_clock(s),
        "unauthorized_energy": rule_unauth(s, rs),
        "soc_inconsistent": rule_soc(s, rs),
    }


def orphan_runs(rds: list[tuple[str | None, Rd]]) -> list[tuple[bool, bool, float, float]]:
    """Runs of readings without a session on one connector (file order)."""
    out = []
    run: list[Rd] = []
    for sid, r in [*rds, ("__end__", Rd(0, 0, None, None, None, None, None))]:
        if sid is None:
            run.append(r)
            continue
        if len(run) >= 2:
            es = [x.e for x in run if x.e is not None]
            rise = es[-1] - es[0] if len(es) >= 2 else 0.0
            integ = sum(trapz(a, b) for a, b in itertools.pairwise(run))
            e = max(rise, integ)
            h, c = band(e, 200, 500, 50)
            out.append((h, c, run[0].ts, run[-1].ts))
        run = []
    return out


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def concurrent_pairs(
    spans: dict[str, tuple[str, str, float, float]],
) -> tuple[dict[str, list[str]], bool]:
    """spans: sid -> (tag, station, start, end). Returns sid -> partners, and all-clear."""
    by_tag: dict[str, list[str]] = {}
    for sid, (tag, _st, _a, _b) in spans.items():
        by_tag.setdefault(tag, []).append(sid)
    out: dict[str, list[str]] = {}
    clear = True
    for sids in by_tag.values():
        for i, a in enumerate(sids):
            for b in sids[i + 1 :]:
                sa, sb = spans[a], spans[b]
                if sa[1] == sb[1]:
                    continue
                ov = overlap((sa[2], sa[3]), (sb[2], sb[3]))
                if ov > 0:
                    out.setdefault(a, []).append(b)
                    out.setdefault(b, []).append(a)
                    clear = clear and ov >= 300
                elif ov > -60:
                    clear = False
    return out, clear


# ---------------------------------------------------------------------------------------------
# Stations and sessions
# ---------------------------------------------------------------------------------------------


@dataclass
class Station:
    sid: str
    site: str
    stype: str  # depot, dc_hub, home, work, solar, carpark
    lat: float | None
    lon: float | None
    hw_w: float  # per-connector hardware maximum
    declared: bool
    n_conn: int
    dc: bool
    phases: int
    amps: float
    iv: int
    aligned: bool
    txn_readings: bool
    reg_only: bool
    res: int
    has_power: bool
    send_iv: bool
    offered: str  # none, managed, solar, share
    soc_style: str  # none, fine, coarse
    send_temp: bool
    strnum: bool
    tz_min: int
    zulu: bool
    frac: int
    extra: dict[str, Any]
    idle_readings: bool
    hb: int
    ocpp: str
    vendor: str
    reg0: float


def make_stations(rng: random.Random, n: int) -> list[Station]:
    out: list[Station] = []
    site_no = 0
    kinds = ["depot", "dc_hub", "home", "work", "solar", "carpark"]
    weights = [0.22, 0.22, 0.22, 0.14, 0.08, 0.12]
    while len(out) < n:
        stype = rng.choices(kinds, weights)[0]
        site_no += 1
        size = {
            "depot": (3, 10),
            "dc_hub": (2, 5),
            "home": (1, 1),
            "work": (2, 6),
            "solar": (1, 1),
            "carpark": (3, 8),
        }[stype]
        k = min(rng.randint(*size), n - len(out))
        lat0, lon0 = rng.uniform(43.5, 54.5), rng.uniform(-1.5, 15.0)
        site = f"site-{stype}-{site_no:03d}"
        hw_common = None
        for i in range(k):
            out.append(make_station(rng, stype, site, len(out), i, lat0, lon0, hw_common))
            hw_common = out[-1].hw_w
    return out


def make_station(
    rng: random.Random,
    stype: str,
    site: str,
    idx: int,
    i: int,
    lat0: float,
    lon0: float,
    hw_common: float | None,
) -> Station:
    style = rng.randrange(5)
    sid = [
        f"DE*CWT*E{10000 + idx:05d}",
        f"CP{100000 + idx * 7:06d}",
        f"{site.split('-')[1]}{idx:03d}-wb{i + 1:02d}",
        f"{rng.getrandbits(32):08x}-{idx:04d}",
        f"FR-PAR-{idx:04d}",
    ][style]
    dc = stype == "dc_hub"
    if dc:
        hw = hw_common or rng.choice([50_000.0, 150_000.0, 300_000.0, 350_000.0])
        phases, amps = 3, 0.0
    elif stype == "home":
        phases = rng.choice([1, 1, 3])
        amps = rng.choice([16.0, 32.0]) if phases == 1 else 16.0
        hw = phases * 230 * amps
    else:
        phases, amps = 3, rng.choice([16.0, 32.0])
        hw = phases * 230 * amps
    ocpp = rng.choice(["1.6", "1.6", "2.0.1"])
    iv = rng.choice([10, 15, 30, 60, 60]) if dc else rng.choice([30, 60, 60, 300, 300, 900])
    offered = "none"
    if stype in ("work", "carpark"):
        offered = "managed" if rng.random() < 0.8 else "none"
    elif stype == "solar":
        offered = "solar"
    elif dc and rng.random() < 0.5:
        offered = "share"
    soc_style = "none"
    if dc:
        soc_style = rng.choice(["fine", "fine", "fine", "coarse"])
    elif rng.random() < 0.15:
        soc_style = "fine"
    reg_only = (not dc) and stype in ("home", "depot") and rng.random() < 0.08
    return Station(
        sid=sid,
        site=site,
        stype=stype,
        lat=None if rng.random() < 0.1 else round(lat0 + rng.uniform(-0.002, 0.002), 6),
        lon=None if rng.random() < 0.1 else round(lon0 + rng.uniform(-0.002, 0.002), 6),
        hw_w=hw,
        declared=rng.random() < 0.85,
        n_conn=rng.choice([1, 2, 2, 4]) if dc else (2 if stype in ("work", "carpark") else 1),
        dc=dc,
        phases=phases,
        amps=amps,
        iv=iv,
        aligned=rng.random() < 0.4,
        txn_readings=rng.random() < 0.7,
        reg_only=reg_only,
        res=rng.choice([1, 1, 10, 100, 1000]) if not dc else rng.choice([1, 10]),
        has_power=not (dc and rng.random() < 0.2),
        send_iv=rng.random() < 0.4,
        offered=offered,
        soc_style=soc_style,
        send_temp=dc and rng.random() < 0.4,
        strnum=ocpp == "1.6" and rng.random() < 0.7,
        tz_min=rng.choice([0, 0, 60, 120, -300]),
        zulu=rng.random() < 0.5,
        frac=rng.choice([0, 3, 6]),
        extra=rng.choice([{}, {}, {"context": "Sample.Periodic"}, {"vendor_id": "ACME"}]),
        idle_readings=rng.random() < 0.15,
        hb=rng.choice([300, 900, 1800, 3600]),
        ocpp=ocpp,
        vendor=rng.choice(["Alfen", "ABB", "Kempower", "Wallbox", "Easee", "Keba", "Tritium"]),
        reg0=float(rng.randint(100_000, 40_000_000)),
    )


@dataclass
class Plan:
    """One session as planned, before faults turn into events."""

    sid: str
    st: Station
    conn: int
    car: tuple[str, float, int, float, list[tuple[float, float]]]
    tag: str
    t_plug: float
    t_unplug: float  # planned departure (DC: upper bound)
    soc0: float
    target: float
    var: float
    temp0: float
    dc_leave_idle: float
    reg0: float = 0.0
    timer_until: float = 0.0
    pauses: list[tuple[float, float]] = field(default_factory=list)
    offers: list[tuple[float, float]] = field(default_factory=list)  # (t, W) reported limit
    derate: list[tuple[float, float, float]] = field(default_factory=list)  # unreported
    stalls: list[tuple[float, float, str]] = field(default_factory=list)
    give_up_after_stall: bool = False
    cold_taper: tuple[float, float] | None = None  # (soc, factor)
    soc_report: str = "none"
    soc_stop_at: float = 1e18
    auth: str | None = "Accepted"
    stop_reason: str = "EVDisconnected"
    fault: str = "normal"
    variant: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)


@dataclass
class Traj:
    t0: float
    p: list[float]
    e: list[float]
    soc: list[float]
    temp: list[float]
    status: list[str]
    offered: list[float | None]
    t_stop: float

    def at(self, t: float) -> int:
        return max(0, min(len(self.p) - 1, int((t - self.t0) / STEP)))


def car_ac_w(pl: Plan) -> float:
    _, _, ph, kw, _ = pl.car
    st = pl.st
    per_phase_a = kw * 1000 / (ph * 230)
    return min(ph, st.phases) * 230 * min(per_phase_a, st.amps)


def offer_at(pl: Plan, t: float) -> float | None:
    val = None
    for tt, w in pl.offers:
        if tt <= t:
            val = w
    return val


def simulate(pl: Plan, t_end: float) -> Traj:  # noqa: C901
    """Physics of one session on a 5 s grid from the session start to the stop."""
    st = pl.st
    t0 = pl.t_plug
    bat = pl.car[1] * 1000
    soc, e, temp = pl.soc0, 0.0, pl.temp0
    ps: list[float] = []
    es: list[float] = []
    socs: list[float] = []
    temps: list[float] = []
    stats: list[str] = []
    offs: list[float | None] = []
    full_at: float | None = None
    began: float | None = None
    t = t0
    stop = min(pl.t_unplug, t_end)
    while t < stop:
        off = offer_at(pl, t)
        status = "Charging"
        pw = 0.0
        stall = next((x for x in pl.stalls if x[0] <= t < x[1]), None)
        if t < pl.timer_until or any(a <= t < a + d for a, d in pl.pauses):
            status = "SuspendedEV"
        elif full_at is not None:
            status = "SuspendedEV"
            pw = 40.0 if st.dc else 0.0
        elif stall is not None:
            status = stall[2]
        else:
            if st.dc:
                req = curve_kw(pl.car[4], soc) * 1000 * pl.var
                tf = 1.0 if temp >= 15 else max(0.85, 1 - (15 - temp) * 0.015)
                req *= tf
                if pl.cold_taper is not None and soc >= pl.cold_taper[0]:
                    req *= pl.cold_taper[1]
            else:
                req = car_ac_w(pl) * pl.var
                if soc > 97:
                    req *= max(0.1, (100 - soc) / 3)
            lim = st.hw_w
            for a, b, f in pl.derate:
                if a <= t < b:
                    lim *= f
            if off is not None:
                lim = min(lim, off)
            if lim < (1380 if not st.dc else 1000):
                status = "SuspendedEVSE"
            else:
                if began is None:
                    began = t
                ramp = min(1.0, (t - began + STEP) / (40 if st.dc else 15))
                pw = min(req, lim) * ramp
        ps.append(pw)
        es.append(e)
        socs.append(soc)
        temps.append(temp)
        stats.append(status)
        offs.append(off)
        de = pw * STEP / 3600
        e += de
        soc = min(100.0, soc + de * (0.94 if st.dc else 0.9) / bat * 100)
        if st.dc:
            temp = min(44.0, temp + de / 1000 * 0.22)
        if full_at is None and soc >= pl.target:
            full_at = t
            if st.dc:
                stop = min(stop, t + pl.dc_leave_idle)
        if pl.give_up_after_stall and pl.stalls and t >= pl.stalls[-1][1]:
            stop = min(stop, t + STEP)
        t += STEP
    if not ps:
        ps, es, socs, temps, stats, offs = [0.0], [0.0], [soc], [temp], ["SuspendedEV"], [None]
    return Traj(t0, ps, es, socs, temps, stats, offs, max(stop, t0 + STEP))


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


class Emitter:
    """Collects raw events: '_arr' arrival, '_t' true time, '_ts' charger clock (None = true)."""

    def __init__(self) -> None:
        self.events: list[Json] = []

    def add(self, t: float, typ: str, st: Station, **kw: Any) -> Json:
        ev: Json = {"_t": t, "_arr": t + 0.3, "_ts": t, "type": typ, "station_id": st.sid}
        ev.update(kw)
        self.events.append(ev)
        return ev


def reading_times(pl: Plan, tr: Traj) -> list[tuple[float, str]]:
    st = pl.st
    t_a, t_b = tr.t0, tr.t_stop
    out: list[tuple[float, str]] = []
    if st.txn_readings or st.reg_only:
        out.append((t_a, "Transaction.Begin"))
    if not st.reg_only:
        t = math.floor(t_a / st.iv) * st.iv + st.iv if st.aligned else t_a + st.iv
        while t < t_b - 0.5:
            out.append((t, "Sample.Clock" if st.aligned else "Sample.Periodic"))
            t += st.iv
    if (st.txn_readings or st.reg_only) and pl.stop_reason != "__open__":
        out.append((t_b, "Transaction.End"))
    return out


def make_reading(pl: Plan, tr: Traj, t: float, ctx: str, rng: random.Random) -> Json:
    st = pl.st
    k = tr.at(t)
    frac = (t - (tr.t0 + k * STEP)) / STEP
    p_true = tr.p[k]
    e_true = tr.e[k] + p_true * frac * STEP / 3600
    d: Json = {"connector_id": pl.conn, "session_id": pl.sid, "_reg": pl.reg0 + e_true, "_ctx": ctx}
    if st.reg_only:
        return d
    pw = max(0.0, p_true * (1 + rng.gauss(0, 0.004)) + (rng.uniform(0, 15) if p_true > 0 else 0))
    if st.dc:
        volt = (
            360
            + 0.9 * tr.soc[k]
            + (400 if pl.car[0].startswith(("Hyundai Ioniq 5", "Porsche")) else 0)
        )
        if st.has_power:
            d["power_w"] = round(pw, 1)
        if st.send_iv or not st.has_power:
            d["voltage_v"] = round(volt, 1)
            d["current_a"] = round(pw / volt, 2)
    else:
        d["power_w"] = round(pw, 0)
        if st.send_iv:
            d["voltage_v"] = round(230 + rng.gauss(0, 1.5), 1)
            d["current_a"] = round(pw / (230 * min(pl.car[2], st.phases)), 2)
    off = tr.offered[k]
    if off is not None:
        d["power_offered_w"] = round(off, 0)
    elif st.offered == "share" or (st.dc and st.declared and rng.random() < 0.0):
        d["power_offered_w"] = round(st.hw_w, 0)
    if pl.soc_report != "none" and t < pl.soc_stop_at and t - tr.t0 >= 20:
        s = tr.soc[k]
        d["soc_pct"] = float(int(s // 5 * 5)) if pl.soc_report == "coarse" else float(int(s))
    if st.send_temp:
        d["temperature_c"] = round(tr.temp[k], 1)
    return d


def build_events(pl: Plan, tr: Traj, rng: random.Random, em: Emitter) -> list[Json]:
    """Session events (statuses, authorize, start, readings, stop) with true times."""
    st = pl.st
    evs: list[Json] = []

    def add(t: float, typ: str, **kw: Any) -> Json:
        ev = em.add(t, typ, st, **kw)
        ev["_sid"] = pl.sid
        evs.append(ev)
        return ev

    t_plug = pl.t_plug
    add(t_plug - 8, "status", connector_id=pl.conn, status="Preparing", error_code="NoError")
    if rng.random() < 0.03:
        add(
            t_plug - 30,
            "authorize",
            id_tag=f"{rng.getrandbits(40):010X}",
            result=rng.choice(["Invalid", "Blocked", "Expired"]),
        )
    if pl.auth is not None:
        add(t_plug - 4, "authorize", id_tag=pl.tag, result=pl.auth)
    add(
        t_plug,
        "session_start",
        connector_id=pl.conn,
        session_id=pl.sid,
        id_tag=pl.tag,
        meter_start_wh=pl.reg0 + tr.e[0],
        _ms=True,
    )
    last = ""
    for k, s in enumerate(tr.status):
        if s != last:
            add(
                tr.t0 + k * STEP + 1, "status", connector_id=pl.conn, status=s, error_code="NoError"
            )
            last = s
    for t, ctx in reading_times(pl, tr):
        r = add(t, "reading", **make_reading(pl, tr, t, ctx, rng))
        r["_sid"] = pl.sid
    if pl.stop_reason != "__open__":
        k = len(tr.e) - 1
        e_stop = tr.e[k] + tr.p[k] * STEP / 3600
        add(
            tr.t_stop + 0.4,
            "session_stop",
            connector_id=pl.conn,
            session_id=pl.sid,
            meter_stop_wh=pl.reg0 + e_stop,
            reason=pl.stop_reason,
            _ms=True,
        )
        add(tr.t_stop + 1, "status", connector_id=pl.conn, status="Finishing", error_code="NoError")
        add(
            tr.t_stop + rng.uniform(5, 60),
            "status",
            connector_id=pl.conn,
            status="Available",
            error_code="NoError",
        )
    return evs


def fmt_ts(t: float, st: Station) -> str:
    if st.zulu or st.tz_min == 0:
        dt = datetime.fromtimestamp(t, tz=UTC)
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
        suffix = "Z"
    else:
        tz = timezone(timedelta(minutes=st.tz_min))
        dt = datetime.fromtimestamp(t, tz=tz)
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
        off = st.tz_min
        suffix = f"{'+' if off >= 0 else '-'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    if st.frac:
        us = dt.microsecond
        base += "." + f"{us:06d}"[: st.frac]
    return base + suffix


NUM_KEYS = (
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


def quant(v: float, res: int) -> float:
    return float(math.floor(v / res + 1e-9) * res)


def finalize(ev: Json, st: Station) -> Json:
    """The event as written: ts string, quantized register, station number style."""
    out: Json = {"type": ev["type"], "ts": fmt_ts(ev["_ts"], st)}
    for k, v in ev.items():
        if k.startswith("_") or k in ("type",):
            continue
        out[k] = v
    if ev["type"] == "reading":
        reg = ev.get("_reg")
        if reg is not None and not ev.get("_noreg"):
            out["energy_wh"] = reg if ev.get("_rawreg") else quant(reg, st.res)
        out.update(st.extra)
        if "_ctx" in ev:
            out["context"] = ev["_ctx"]
    for k in ("meter_start_wh", "meter_stop_wh"):
        if k in out and not ev.get("_rawreg"):
            out[k] = quant(out[k], st.res)
    for k in NUM_KEYS:
        if k in out and out[k] is not None:
            v = out[k]
            if k in ("energy_wh", "meter_start_wh", "meter_stop_wh") and float(v).is_integer():
                v = int(v)
            out[k] = str(v) if st.strnum else v
    return out


def view_from(evs: list[Json], fin: list[Json], st: Station) -> SessView | None:
    """Build the session view from finalized events (the generation-side check)."""
    sv: SessView | None = None
    for raw, d in zip(evs, fin, strict=True):
        if d["type"] == "session_start":
            sv = SessView(
                d["session_id"],
                d["station_id"],
                int(d["connector_id"]),
                d["id_tag"],
                parse_ts(d["ts"]),
                raw["_arr"],
                meter_start=num(d.get("meter_start_wh")),
            )
    if sv is None:
        return None
    auths: list[tuple[float, str]] = []
    for raw, d in zip(evs, fin, strict=True):
        typ = d["type"]
        if typ == "reading" and d.get("session_id") == sv.sid:
            sv.readings.append(reading_of(d, raw["_arr"]))
        elif typ == "session_stop":
            sv.stop, sv.stop_rcv = parse_ts(d["ts"]), raw["_arr"]
            sv.meter_stop = num(d.get("meter_stop_wh"))
        elif typ == "status":
            sv.statuses.append((parse_ts(d["ts"]), d["status"]))
        elif typ == "authorize" and d["id_tag"] == sv.tag:
            auths.append((parse_ts(d["ts"]), d["result"]))
    sv.statuses.sort(key=lambda x: x[0])
    sv.auth = pick_auth(auths, sv.start)
    return sv


def pick_auth(auths: list[tuple[float, str]], start: float) -> str | None:
    best: tuple[float, str] | None = None
    for t, res in auths:
        if start - 900 <= t <= start + 60 and (best is None or t >= best[0]):
            best = (t, res)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

FAULT_WEIGHTS = {
    "stall": 1.0,
    "early_taper": 1.0,
    "meter_stuck": 0.8,
    "meter_backwards": 0.8,
    "meter_jump": 0.8,
    "meter_mismatch": 0.8,
    "data_gap": 1.0,
    "clock_fault": 0.9,
    "unauthorized_energy": 0.8,
    "soc_inconsistent": 1.0,
    "concurrent_id_tag": 0.7,
}


def feasible(kind: str, st: Station) -> bool:
    if st.reg_only:
        return kind in (
            "unauthorized_energy",
            "meter_backwards",
            "clock_fault",
            "concurrent_id_tag",
        )
    if kind in ("early_taper", "soc_inconsistent"):
        return st.dc
    if kind == "meter_mismatch":
        return st.has_power
    return True


def plan_fault(pl: Plan, rng: random.Random) -> None:
    """Physics-level faults: set on the plan before simulation."""
    k = pl.fault
    dur_total = pl.t_unplug - pl.t_plug
    if k == "stall":
        at = pl.t_plug + rng.uniform(0.1, 0.4) * min(dur_total, 3 * 3600)
        d = rng.uniform(16, 70) * 60
        status = rng.choice(["Charging", "SuspendedEVSE", "Faulted"])
        pl.give_up_after_stall = status == "Faulted" or rng.random() < 0.4
        pl.stalls = [(at, at + d, status)]
        pl.timer_until = 0
        pl.pauses = []
        pl.offers = [(t, w) for t, w in pl.offers if w >= 3000] or pl.offers[:1]
        pl.variant = f"stall_under_{status}" + (
            "_gave_up" if pl.give_up_after_stall else "_resumed"
        )
        if pl.give_up_after_stall:
            pl.stop_reason = rng.choice(["Local", "EVDisconnected"])
        pl.params = {"stall_min": round(d / 60, 1), "status": status}
        pl.soc0 = min(pl.soc0, 50)
        pl.target = max(pl.target, 90)
    elif k == "early_taper":
        v = rng.choice(
            [
                "charger_derating",
                "cable_overheat",
                "failing_module",
                "cold_battery",
                "undeclared_cabinet_share",
            ]
        )
        pl.variant = v
        pl.soc0 = rng.uniform(5, 30)
        pl.target = max(pl.target, 85)
        pl.offers = []
        at = pl.t_plug + rng.uniform(4, 12) * 60
        if v == "cold_battery":
            pl.temp0 = rng.uniform(0, 6)
            s = pl.soc0 + rng.uniform(8, 20)
            f = rng.uniform(0.25, 0.4)
            pl.cold_taper = (s, f)
            pl.params = {
                "from_soc": round(s, 1),
                "factor": round(f, 2),
                "temp_c": round(pl.temp0, 1),
            }
        else:
            lo_hi = {
                "charger_derating": (0.3, 0.45),
                "cable_overheat": (0.25, 0.4),
                "failing_module": (0.25, 0.34),
                "undeclared_cabinet_share": (0.35, 0.45),
            }[v]
            frac = rng.uniform(*lo_hi)
            end = at + rng.uniform(15, 60) * 60 if rng.random() < 0.5 else 1e18
            pl.derate = [(at, end, frac)]
            pl.params = {
                "factor_of_rating": round(frac, 2),
                "from_min": round((at - pl.t_plug) / 60, 1),
            }
            # derate is of the charger rating; make the car ask for more than the derated limit
            pl.derate = [
                (at, end, frac * min(1.0, curve_kw(pl.car[4], pl.soc0) * 1000 / pl.st.hw_w))
            ]
    elif k == "unauthorized_energy":
        pl.auth = rng.choice(["Blocked", "Expired", "Invalid", "ConcurrentTx"])
        pl.variant = f"started_after_{pl.auth}"
        pl.params = {"authorize_result": pl.auth}
    elif k == "soc_inconsistent":
        pl.soc_report = "fine"
        pl.soc_stop_at = 1e18


def _regkey(r: Json) -> str:
    if "_reg" in r:
        return "_reg"
    return "meter_start_wh" if "meter_start_wh" in r else "meter_stop_wh"


def apply_reading_fault(pl: Plan, evs: list[Json], rng: random.Random, em: Emitter) -> None:  # noqa: C901
    k = pl.fault
    rds = [e for e in evs if e["type"] == "reading"]
    meters = [e for e in evs if e.get("_ms")]
    if not rds:
        return
    t_a, t_b = rds[0]["_t"], rds[-1]["_t"]
    span = t_b - t_a
    mid = t_a + rng.uniform(0.25, 0.6) * span
    regs = rds + meters
    if k == "meter_stuck":
        v = rng.choice(["frozen_to_end", "frozen_then_resumes", "frozen_then_catches_up"])
        t_end = t_b + 10 if v == "frozen_to_end" else mid + rng.uniform(0.3, 0.45) * span
        pl.variant, pl.params = v, {"frozen_min": round((min(t_end, t_b) - mid) / 60, 1)}
        frozen = None
        lost = 0.0
        for r in sorted(regs, key=lambda x: x["_t"]):
            key = _regkey(r)
            if r["_t"] >= mid and frozen is None:
                frozen = r[key]
            if frozen is not None and mid <= r["_t"] < t_end:
                lost = r[key] - frozen
                r[key] = frozen
            elif frozen is not None and r["_t"] >= t_end and v == "frozen_then_resumes":
                r[key] -= lost
    elif k == "meter_backwards":
        v = rng.choice(["reset_to_zero", "wrap_7_digits", "meter_replaced", "single_low_reading"])
        pl.variant = v
        after = sorted((r for r in regs if r["_t"] >= mid), key=lambda x: x["_t"])
        if v == "single_low_reading":
            cand = [r for r in rds if r["_t"] >= mid]
            if cand:
                cand[0]["_reg"] -= rng.uniform(2000, 30000)
        elif after:
            first = float(after[0][_regkey(after[0])])
            shift = {
                "reset_to_zero": first,
                "wrap_7_digits": first - first % 10_000_000,
                "meter_replaced": first - rng.uniform(0, 50_000),
            }[v]
            if v == "wrap_7_digits" and shift < 1:
                shift = first - rng.uniform(0, 5000)
            for r in after:
                key = _regkey(r)
                r[key] = r[key] - shift
        pl.params = {"at_min": round((mid - t_a) / 60, 1)}
    elif k == "meter_jump":
        v = rng.choice(["bit_flip", "spurious_step"])
        pl.variant = v
        add = float(2 ** rng.randint(17, 23)) if v == "bit_flip" else rng.uniform(8000, 50000)
        add = max(add, 3 * pl.st.hw_w * pl.st.iv / 3600 + 8000)
        for r in regs:
            key = _regkey(r)
            if r["_t"] >= mid:
                r[key] += add
        pl.params = {"step_wh": round(add), "at_min": round((mid - t_a) / 60, 1)}
    elif k == "meter_mismatch":
        v = rng.choice(["ct_ratio", "wh_as_kwh", "power_sensor"])
        pl.variant = v
        f = rng.choice([rng.uniform(0.6, 0.76), rng.uniform(1.25, 1.45)])
        if v == "ct_ratio":
            base = pl.reg0
            for r in regs:
                key = _regkey(r)
                r[key] = base + (r[key] - base) * f
        elif v == "wh_as_kwh":
            for r in regs:
                key = _regkey(r)
                r[key] = round(r[key] / 1000, 3)
                r["_rawreg"] = True
        else:
            for r in rds:
                for key in ("power_w", "current_a"):
                    if key in r:
                        r[key] = round(r[key] * f, 2)
        pl.params = {"factor": round(f, 3)} if v != "wh_as_kwh" else {"unit": "kWh written as Wh"}
    elif k == "data_gap":
        charging = [r for r in rds if (r.get("power_w") or r.get("current_a") or 0) > 0]
        if not charging:
            return
        a = charging[len(charging) // 3]["_t"]
        g = max(8 * pl.st.iv, 420) * rng.uniform(1.1, 2.2)
        for r in rds:
            if a < r["_t"] < a + g:
                r["_drop"] = True
        em.add(a + 1, "station", pl.st, event="disconnect", reason="LinkLost")
        em.add(a + g, "station", pl.st, event="connect")
        pl.variant = rng.choice(["lte_link_lost", "backend_unreachable"])
        pl.params = {"gap_min": round(g / 60, 1)}
    elif k == "clock_fault":
        v = rng.choice(["boot_1970", "hours_ahead", "years_ahead", "stepped_back"])
        pl.variant = v
        if v in ("boot_1970", "hours_ahead"):
            later = [r for r in rds if r["_t"] >= mid]
            n = rng.randint(1, 3)
            off = rng.uniform(12, 30) * 3600
            for j, r in enumerate(later[:n]):
                r["_ts"] = (86400 * 0 + 40 + j * pl.st.iv) if v == "boot_1970" else r["_t"] + off
            pl.params = {"bad_readings": min(n, len(later))}
            if v == "hours_ahead":
                pl.params["ahead_h"] = round(off / 3600, 1)
        elif v == "years_ahead":
            yrs = rng.randint(1, 12)
            for ev in evs:
                ev["_ts"] = ev["_t"] + yrs * 365.25 * 86400
            pl.params = {"years": yrs}
        else:
            back = rng.uniform(5, 45) * 60
            for ev in evs:
                if ev["_t"] >= mid:
                    ev["_ts"] = ev["_t"] - back
            pl.params = {"back_min": round(back / 60, 1)}
    elif k == "soc_inconsistent":
        v = rng.choice(
            ["soc_falls", "soc_jumps", "soc_frozen", "temp_sensor_default", "temp_overheat"]
        )
        pl.variant = v
        withsoc = [r for r in rds if "soc_pct" in r]
        later = [r for r in withsoc if r["_t"] >= mid]
        if v == "soc_falls" and later:
            d = rng.uniform(8, 25)
            for r in later:
                r["soc_pct"] = float(max(0, int(r["soc_pct"] - d)))
            pl.params = {"drop_pts": round(d, 1)}
        elif v == "soc_jumps" and later:
            d = rng.uniform(25, 45)
            for r in later:
                r["soc_pct"] = float(min(100, int(r["soc_pct"] + d)))
            pl.params = {"jump_pts": round(d, 1)}
        elif v == "soc_frozen" and withsoc:
            a = withsoc[len(withsoc) // 5]
            for r in withsoc:
                if r["_t"] > a["_t"]:
                    r["soc_pct"] = a["soc_pct"]
            pl.params = {"frozen_at": a["soc_pct"]}
        else:
            val = -40.0 if v == "temp_sensor_default" else rng.choice([85.0, 95.5, 127.0])
            for r in rds:
                if r["_t"] >= mid:
                    r["temperature_c"] = val
            pl.params = {"temperature_c": val}


# ---------------------------------------------------------------------------------------------
# The fleet
# ---------------------------------------------------------------------------------------------


@dataclass
class Slot:
    st: Station
    conn: int
    t_plug: float
    t_unplug: float


def plan_slots(rng: random.Random, st: Station, t0: float, t1: float) -> list[Slot]:
    slots: list[Slot] = []
    day0 = math.floor(t0 / 86400) * 86400
    for c in range(1, st.n_conn + 1):
        t = t0 + rng.uniform(300, 1800)
        while t < t1 - 600:
            hour = (t - day0) % 86400 / 3600
            if st.stype == "dc_hub":
                rate = 1.2 if 7 <= hour <= 21 else 0.25
                t += rng.expovariate(rate / 3600)
                dwell = rng.uniform(10, 60) * 60
                if rng.random() < 0.05:
                    dwell = rng.uniform(40, 110)
            elif st.stype in ("depot", "home"):
                evening = day0 + math.ceil((t - day0 - 17 * 3600) / 86400) * 86400 + 17 * 3600
                nxt = max(t, evening) + rng.uniform(0, 4) * 3600
                if rng.random() < 0.35:
                    nxt = t + rng.uniform(0.5, 6) * 3600
                    dwell = rng.uniform(0.3, 3) * 3600
                else:
                    dwell = rng.uniform(9, 14) * 3600
                t = nxt
            else:
                t += rng.uniform(0.5, 5) * 3600 * (3 if not 7 <= hour <= 19 else 1)
                dwell = (
                    rng.uniform(1, 8) * 3600 if st.stype != "solar" else rng.uniform(3, 9) * 3600
                )
                if rng.random() < 0.05:
                    dwell = rng.uniform(60, 110)
            if t >= t1 - 600:
                break
            slots.append(Slot(st, c, t, t + dwell))
            t += dwell + rng.uniform(120, 3600)
    return slots


def base_plan(rng: random.Random, slot: Slot, sid: str, tag: str) -> Plan:
    st = slot.st
    if st.stype == "depot":
        van = rng.choice(VANS)
        car = next(c for c in CARS if c[0] == van)
    else:
        car = rng.choice(CARS)
    pl = Plan(
        sid=sid,
        st=st,
        conn=slot.conn,
        car=car,
        tag=tag,
        t_plug=slot.t_plug,
        t_unplug=slot.t_unplug,
        soc0=rng.uniform(8, 60),
        target=rng.choice([80.0, 90.0, 100.0]) if not st.dc else rng.uniform(70, 92),
        var=rng.uniform(0.96, 1.04),
        temp0=rng.uniform(14, 32) if rng.random() < 0.8 else rng.uniform(5, 14),
        dc_leave_idle=rng.uniform(30, 900) if rng.random() < 0.85 else rng.uniform(1800, 5400),
    )
    pl.soc_report = st.soc_style
    if pl.soc_report != "none" and rng.random() < 0.1:
        pl.soc_stop_at = slot.t_plug + rng.uniform(5, 30) * 60
    if st.offered == "solar":
        pl.offers = solar_offers(rng, slot.t_plug, slot.t_unplug, st.hw_w)
    elif st.offered == "managed":
        pl.offers = managed_offers(rng, slot.t_plug, slot.t_unplug, st.hw_w)
    elif st.offered == "share" and rng.random() < 0.3:
        a = slot.t_plug + rng.uniform(3, 15) * 60
        pl.offers = [
            (slot.t_plug, st.hw_w),
            (a, st.hw_w / 2),
            (a + rng.uniform(10, 30) * 60, st.hw_w),
        ]
        pl.params["reported_cabinet_share"] = True
    r = rng.random()
    if not st.dc and r < 0.15:
        pl.timer_until = slot.t_plug + rng.uniform(0.5, 4) * 3600
        pl.params["departure_timer"] = True
    elif r < 0.25:
        a = slot.t_plug + rng.uniform(5, 60) * 60
        pl.pauses = [(a, rng.uniform(2, 25) * 60)]
        pl.params["suspended_ev_pause"] = True
    if rng.random() < 0.03:
        pl.soc0 = 100.0 if not st.dc else 95.0
        pl.target = 90.0
        pl.params["zero_energy"] = True
    pl.stop_reason = rng.choices(["EVDisconnected", "Local", "Remote"], [0.7, 0.2, 0.1])[0]
    if rng.random() < 0.05 and st.ocpp == "1.6":
        pl.auth = None  # local authorization list / free vend
    return pl


def solar_offers(rng: random.Random, a: float, b: float, hw: float) -> list[tuple[float, float]]:
    out = []
    t = a
    while t < b:
        hour = t % 86400 / 3600
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 13)) * rng.uniform(0.6, 1.0)
        w = round(min(hw, 11000 * sun) / 230) * 230
        out.append((t, float(w if w >= 1380 else 0)))
        t += rng.uniform(5, 20) * 60
    return out


def managed_offers(rng: random.Random, a: float, b: float, hw: float) -> list[tuple[float, float]]:
    out = [(a, hw)]
    t = a
    while t < b:
        t += rng.uniform(20, 120) * 60
        out.append((t, rng.choice([hw, hw, hw / 2, 4140.0, 0.0])))
    return out


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        self.t0 = parse_ts(args.start)
        self.t1 = self.t0 + args.hours * 3600
        self.rate = args.anomaly_rate
        self.stations = make_stations(self.rng, args.stations)
        self.em = Emitter()
        self.notes: list[Json] = []
        self.labels: list[Json] = []
        self.plans: dict[str, Plan] = {}
        self.spans: dict[str, tuple[str, str, float, float]] = {}
        self.sess_kinds: dict[str, list[tuple[str, float, float]]] = {}
        self.session_count = 0
        self.skipped = 0
        self.drawn: dict[str, int] = {}
        self.busy: dict[int, list[tuple[float, float, float]]] = {}
        self.reg: dict[int, float] = {}
        self.first_reg: dict[int, float] = {}

    def run(self) -> None:
        for st in self.stations:
            self.station_events(st)
            slots = sorted(plan_slots(self.rng, st, self.t0, self.t1), key=lambda s: s.t_plug)
            tags = [f"{self.rng.getrandbits(40):010X}" for _ in range(3)]
            self.busy = {}
            self.reg = {c: st.reg0 + c * 1_000_003.0 for c in range(1, st.n_conn + 1)}
            for i, slot in enumerate(slots):
                nxt = min((x.t_plug for x in slots[i + 1 :] if x.conn == slot.conn), default=1e18)
                self.session(slot, self.rng.choice(tags), nxt)
            self.idle_events(st)
            self.offline_burst(st)
        self.concurrency()

    def free(self, conn: int, t: float, margin: float) -> bool:
        return all(not (a - margin <= t <= b + margin) for a, b, _ in self.busy.get(conn, []))

    def idle_events(self, st: Station) -> None:
        """Clock-aligned idle readings (register flat) and an occasional Faulted connector."""
        rng = self.rng
        if st.idle_readings and st.txn_readings:
            t = math.ceil(self.t0 / 900) * 900
            while t < self.t1:
                if self.free(1, t, 300):
                    reg = self.reg_at(1, t)
                    self.em.add(t, "reading", st, connector_id=1, _reg=reg, power_w=0.0)
                t += 900
        if rng.random() < 0.08:
            a = self.t0 + rng.uniform(0.05, 0.9) * (self.t1 - self.t0)
            c = rng.randint(1, st.n_conn)
            if self.free(c, a, 900) and self.free(c, a + 600, 900):
                self.em.add(
                    a,
                    "status",
                    st,
                    connector_id=c,
                    status="Faulted",
                    error_code=rng.choice(
                        [
                            "GroundFailure",
                            "HighTemperature",
                            "OverCurrentFailure",
                            "PowerMeterFailure",
                            "EVCommunicationError",
                        ]
                    ),
                    vendor_error_code="E" + str(rng.randint(100, 999)),
                )
                self.em.add(
                    a + 600, "status", st, connector_id=c, status="Available", error_code="NoError"
                )

    def reg_at(self, conn: int, t: float) -> float:
        best = (-1e18, 0.0)
        for _a, b, reg in self.busy.get(conn, []):
            if b <= t and b > best[0]:
                best = (b, reg)
        return best[1] if best[0] > -1e18 else self.first_reg.get(conn, 0.0)

    def station_events(self, st: Station) -> None:
        em = self.em
        em.add(
            self.t0 + self.rng.uniform(0, 120),
            "station",
            st,
            event="boot",
            vendor=st.vendor,
            model="X" + str(st.hw_w // 1000),
            firmware="v1." + str(self.rng.randint(0, 9)),
            ocpp_version=st.ocpp,
            heartbeat_interval_s=st.hb,
        )
        for c in range(1, st.n_conn + 1):
            em.add(
                self.t0 + 130 + c,
                "status",
                st,
                connector_id=c,
                status="Available",
                error_code="NoError",
            )
        t = self.t0 + self.rng.uniform(0, st.hb)
        while t < self.t1:
            em.add(t, "station", st, event="heartbeat")
            t += st.hb
        self.first_reg = {c: st.reg0 + c * 1_000_003.0 for c in range(1, st.n_conn + 1)}

    def offline_burst(self, st: Station) -> None:
        """Some stations lose their link and deliver everything queued on reconnect."""
        if self.rng.random() > 0.06:
            return
        a = self.t0 + self.rng.uniform(0.1, 0.8) * (self.t1 - self.t0)
        b = a + self.rng.uniform(10, 90) * 60
        queued = []
        for ev in self.em.events:
            if ev["station_id"] == st.sid and a <= ev["_t"] < b and not ev.get("_drop"):
                if ev["type"] == "station":
                    ev["_drop"] = True
                    continue
                queued.append(ev)
        queued.sort(key=lambda e: e["_arr"])
        for k, ev in enumerate(queued):
            ev["_arr"] = b + 0.01 + 0.2 * k / max(len(queued), 1)
        self.em.add(b, "station", st, event="connect", reason="queued messages follow")

    def pick_fault(self, st: Station) -> str:
        if self.rng.random() >= self.rate:
            return "normal"
        kinds = [k for k in FAULT_WEIGHTS if feasible(k, st)]
        # the kind furthest behind its share goes next, so every kind shows up in small fleets
        key = {k: (self.drawn.get(k, 0) + self.rng.random()) / FAULT_WEIGHTS[k] for k in kinds}
        kind = min(kinds, key=lambda k: key[k])
        self.drawn[kind] = self.drawn.get(kind, 0) + 1
        return kind

    def session(self, slot: Slot, tag: str, nxt: float) -> None:
        self.session_count += 1
        sid = f"{slot.st.sid[-6:]}-{self.session_count:06d}"
        want = self.pick_fault(slot.st)
        for attempt in range(40):
            fault = want if attempt < 30 else "normal"
            simple = attempt >= 35
            res = self.try_session(slot, sid, tag, fault, simple, nxt)
            if res is not None:
                return
        self.skipped += 1

    def try_session(
        self, slot: Slot, sid: str, tag: str, fault: str, simple: bool, nxt: float
    ) -> bool | None:
        rng = self.rng
        mark = len(self.em.events)
        pl = base_plan(rng, slot, sid, tag)
        pl.reg0 = self.reg[slot.conn]
        if simple:
            pl.pauses, pl.timer_until, pl.offers, pl.soc_report = [], 0.0, [], "none"
        pl.fault = "normal" if fault == "concurrent_id_tag" else fault
        plan_fault(pl, rng)
        orphan = (
            fault == "unauthorized_energy"
            and rng.random() < 0.35
            and nxt > slot.t_unplug + 3 * 3600
        )
        if orphan:
            pl.fault, pl.auth = "normal", "Accepted"
        tr = simulate(pl, self.t1)
        if tr.t_stop >= self.t1 - 1:
            pl.stop_reason = "__open__"
        evs = build_events(pl, tr, rng, self.em)
        apply_reading_fault(pl, evs, rng, self.em)
        orphan_evs: list[Json] = []
        if orphan and pl.stop_reason != "__open__":
            orphan_evs = self.orphan_energy(pl, tr, evs)
        evs = [e for e in evs if not e.get("_drop")]
        fin = [finalize(e, pl.st) for e in evs]
        sv = view_from(evs, fin, pl.st)
        if sv is None:
            del self.em.events[mark:]
            return None
        cap = (
            pl.st.hw_w
            if pl.st.declared
            else max([r.p or 0 for r in sv.readings] + [r.off or 0 for r in sv.readings] + [0.0])
            or 350_000.0
        )
        verdicts = derive_session(sv, cap)
        kinds = [k for k, v in verdicts.items() if v[0]]
        clear = all(v[1] for v in verdicts.values())
        ok = clear and ((pl.fault == "normal" and not kinds) or (pl.fault in kinds))
        if ok and orphan_evs:
            ok = self.orphan_ok(pl, orphan_evs)
        if not ok:
            del self.em.events[mark:]
            return None
        if fault == "concurrent_id_tag":
            pl.fault = "concurrent_id_tag"
        reg_end = max(
            [e.get("_reg", 0.0) for e in evs + orphan_evs if "_rawreg" not in e] + [pl.reg0]
        )
        t_end = max(e["_t"] for e in evs + orphan_evs)
        self.reg[slot.conn] = max(reg_end, self.reg[slot.conn]) + 1.0
        self.busy.setdefault(slot.conn, []).append(
            (pl.t_plug - 60, t_end + 120, self.reg[slot.conn])
        )
        end = session_end(sv)
        self.spans[sid] = (tag, pl.st.sid, sv.start, end)
        self.plans[sid] = pl
        self.sess_kinds[sid] = [(k, verdicts[k][2], verdicts[k][3]) for k in kinds]
        return True

    def orphan_energy(self, pl: Plan, tr: Traj, evs: list[Json]) -> list[Json]:
        """The charger reboots, closes the transaction, and the car keeps drawing."""
        st, rng = pl.st, self.rng
        stop_ev = next(e for e in evs if e["type"] == "session_stop")
        stop_ev["reason"] = rng.choice(["Reboot", "PowerLoss"])
        t = tr.t_stop
        self.em.add(
            t + 20,
            "station",
            st,
            event="boot",
            vendor=st.vendor,
            ocpp_version=st.ocpp,
            reason="watchdog",
        )
        p = min(st.hw_w, car_ac_w(pl) if not st.dc else 40_000.0) * rng.uniform(0.8, 1.0)
        dur = rng.uniform(15, 60) * 60
        reg = stop_ev["meter_stop_wh"]
        out = []
        k = 0
        iv = max(st.iv, 30)
        while k * iv <= dur:
            ev = self.em.add(
                t + 60 + k * iv,
                "reading",
                st,
                connector_id=pl.conn,
                _reg=reg + p * k * iv / 3600,
                power_w=round(p, 0),
            )
            ev["_orphan"] = True
            out.append(ev)
            k += 1
        for e in evs:
            if e["type"] == "status" and e["_t"] > tr.t_stop:
                e["_t"] = e["_ts"] = t + 90 + dur
                e["_arr"] = e["_t"] + 0.3
        pl.variant = "reboot_lost_transaction"
        pl.params = {"orphan_min": round(dur / 60, 1), "orphan_power_w": round(p)}
        return out

    def orphan_ok(self, pl: Plan, orphan_evs: list[Json]) -> bool:
        rds = [(None, reading_of(finalize(e, pl.st), e["_arr"])) for e in orphan_evs]
        runs = orphan_runs(rds)  # type: ignore[arg-type]
        if not runs or not all(r[0] and r[1] for r in runs):
            return False
        self.labels.append(
            {
                "session_id": None,
                "station_id": pl.st.sid,
                "connector_id": pl.conn,
                "kind": "unauthorized_energy",
                "_s": runs[0][2],
                "_e": runs[0][3],
            }
        )
        self.notes.append(
            {
                "session_id": None,
                "station_id": pl.st.sid,
                "connector_id": pl.conn,
                "kinds": ["unauthorized_energy"],
                "fault": "orphan_energy",
                "variant": "reboot_lost_transaction",
                "params": dict(pl.params),
                "explanation": f"The charger rebooted and closed session {pl.sid}; the car kept "
                "drawing with no session open, so the readings carry no session_id.",
                "vehicle": pl.car[0],
                "station_type": pl.st.stype,
                "sampling_interval_s": pl.st.iv,
            }
        )
        pl.params = {}
        pl.variant = ""
        return True

    def concurrency(self) -> None:  # noqa: C901
        """Cloned cards, fleet cards, same-site moves: share a tag between overlapping sessions."""
        rng = self.rng
        wanted = [s for s, p in self.plans.items() if p.fault == "concurrent_id_tag"]
        used: set[str] = set()
        site_of = {st.sid: st.site for st in self.stations}
        normals = [
            s for s, p in self.plans.items() if p.fault == "normal" and not self.sess_kinds[s]
        ]
        tag_count: dict[str, int] = {}
        for tag, *_ in self.spans.values():
            tag_count[tag] = tag_count.get(tag, 0) + 1
        for a in wanted:
            if a in used:
                continue
            ta, sa, a0, a1 = self.spans[a]
            variant = rng.choice(["cloned_card", "same_site"])
            cands = []
            for b in normals:
                if b in used or b == a:
                    continue
                __tb, sb, b0, b1 = self.spans[b]
                if sb == sa or overlap((a0, a1), (b0, b1)) < 900:
                    continue
                same = site_of[sb] == site_of[sa]
                if (variant == "cloned_card") == same:
                    continue
                cands.append(b)
            if not cands:
                self.plans[a].fault = "normal"
                continue
            b = rng.choice(cands)
            used.update({a, b})
            self.retag(b, ta)
            if variant == "same_site":
                variant = "fleet_card" if self.plans[a].st.stype == "depot" else "same_site_move"
            self.plans[a].variant = self.plans[b].variant = variant
        pairs, _clear = concurrent_pairs(self.spans)
        for sid, partners in pairs.items():
            lo = min(self.spans[p][2] for p in partners)
            hi = max(self.spans[p][3] for p in partners)
            s0, s1 = self.spans[sid][2], self.spans[sid][3]
            self.sess_kinds[sid].append(("concurrent_id_tag", max(s0, lo), min(s1, hi)))
            pl = self.plans[sid]
            same = any(site_of[self.spans[p][1]] == site_of[pl.st.sid] for p in partners)
            pl.params["concurrent_with"] = partners
            pl.params["same_site"] = same
            if pl.fault == "normal":
                pl.fault = "concurrent_id_tag"
        for sid, pl in self.plans.items():
            if pl.fault == "concurrent_id_tag" and sid not in pairs:
                pl.fault = "normal"

    def retag(self, sid: str, tag: str) -> None:
        for ev in self.em.events:
            if ev.get("_sid") == sid and "id_tag" in ev:
                ev["id_tag"] = tag
        _t, st, a, b = self.spans[sid]
        self.spans[sid] = (tag, st, a, b)

    def write(self, args: argparse.Namespace) -> dict[str, int]:
        st_by = {st.sid: st for st in self.stations}
        evs = [e for e in self.em.events if not e.get("_drop")]
        # duplicates: some readings arrive twice
        dup = []
        for e in evs:
            if e["type"] == "reading" and self.rng.random() < 0.004:
                d = dict(e)
                d["_arr"] = e["_arr"] + 1e-6
                dup.append(d)
        evs += dup
        order = sorted(range(len(evs)), key=lambda i: (evs[i]["_arr"], i))
        with open(args.out, "w", encoding="utf-8") as fh:
            for i in order:
                fh.write(json.dumps(finalize(evs[i], st_by[evs[i]["station_id"]])) + "\n")
        self.write_meta(args)
        return {"events": len(evs)}

    def write_meta(self, args: argparse.Namespace) -> None:
        st_by = {st.sid: st for st in self.stations}
        with open(args.stations_out, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["station_id", "site_id", "latitude", "longitude", "rated_power_w"])
            for st in self.stations:
                w.writerow(
                    [
                        st.sid,
                        st.site,
                        "" if st.lat is None else st.lat,
                        "" if st.lon is None else st.lon,
                        int(st.hw_w) if st.declared else "",
                    ]
                )
        labels = []
        notes = list(self.notes)
        for sid, pl in self.plans.items():
            kinds = self.sess_kinds[sid]
            if not kinds:
                continue
            st = pl.st
            for k, a, b in kinds:
                labels.append(
                    {
                        "session_id": sid,
                        "station_id": st.sid,
                        "connector_id": pl.conn,
                        "kind": k,
                        "start": fmt_ts(a, st),
                        "end": fmt_ts(b, st),
                    }
                )
            names = [k for k, _, _ in kinds]
            notes.append(
                {
                    "session_id": sid,
                    "station_id": st.sid,
                    "connector_id": pl.conn,
                    "kinds": names,
                    "fault": pl.fault,
                    "variant": pl.variant,
                    "params": pl.params,
                    "explanation": explain(pl, names),
                    "vehicle": pl.car[0],
                    "station_type": st.stype,
                    "sampling_interval_s": st.iv,
                }
            )
        for lab in self.labels:
            st = st_by[lab["station_id"]]
            labels.append(
                {
                    "session_id": None,
                    "station_id": lab["station_id"],
                    "connector_id": lab["connector_id"],
                    "kind": lab["kind"],
                    "start": fmt_ts(lab["_s"], st),
                    "end": fmt_ts(lab["_e"], st),
                }
            )
        with open(args.labels, "w", encoding="utf-8") as fh:
            for lab in labels:
                fh.write(json.dumps(lab) + "\n")
        with open(args.notes, "w", encoding="utf-8") as fh:
            for n in notes:
                fh.write(json.dumps(n, default=str) + "\n")


EXPLAIN = {
    "stall": "Charging stopped mid-session with the car not full and no lower offer ({variant}).",
    "early_taper": "Power fell well below what this car draws at that SoC, with no offer to "
    "explain it ({variant}).",
    "meter_stuck": "The energy register froze while power kept flowing ({variant}).",
    "meter_backwards": "The energy register went down ({variant}).",
    "meter_jump": "The register rose by more than the connector can deliver ({variant}).",
    "meter_mismatch": "The register and the power integral disagree by more than 15 % ({variant}).",
    "data_gap": "The link was lost while charging and the readings of that time never arrived "
    "({variant}).",
    "clock_fault": "The charger's clock was wrong for part of the session ({variant}).",
    "unauthorized_energy": "The charger delivered energy although the card was not Accepted "
    "({variant}).",
    "soc_inconsistent": "The car's SoC or battery temperature contradicts the energy delivered "
    "({variant}).",
    "concurrent_id_tag": "The same id_tag was charging at another station at the same time "
    "({variant}).",
    "normal": "A normal session that another session's card made concurrent.",
}


def explain(pl: Plan, kinds: list[str]) -> str:
    text = EXPLAIN.get(pl.fault, "").format(variant=pl.variant or "as drawn")
    extra = [k for k in kinds if k != pl.fault]
    if extra:
        text += " It also meets the definition of " + ", ".join(extra) + ", labelled too."
    return text


# ---------------------------------------------------------------------------------------------
# --check
# ---------------------------------------------------------------------------------------------


def load_jsonl(path: Path) -> list[Json]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def receive_estimates(ts: list[float], block: int = 1000) -> list[float]:
    meds = [statistics.median(ts[i : i + block]) for i in range(0, len(ts), block)]
    out = []
    for i in range(len(ts)):
        b = i // block
        out.append(max(meds[max(0, b - 1) : b + 2]))
    return out


def check(d: Path) -> int:  # noqa: C901
    events = load_jsonl(d / "events.jsonl")
    labels = load_jsonl(d / "labels.jsonl")
    notes = load_jsonl(d / "notes.jsonl")
    with open(d / "stations.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    problems: list[str] = []
    if list(rows[0].keys()) != ["station_id", "site_id", "latitude", "longitude", "rated_power_w"]:
        problems.append("stations.csv columns differ from the contract")
    rated = {r["station_id"]: float(r["rated_power_w"]) for r in rows if r["rated_power_w"]}
    ts = [parse_ts(e["ts"]) for e in events]
    rcv = receive_estimates(ts)
    sess: dict[str, SessView] = {}
    statuses: dict[tuple[str, int], list[tuple[float, str]]] = {}
    auths: dict[tuple[str, str], list[tuple[float, str]]] = {}
    per_conn: dict[tuple[str, int], list[tuple[str | None, Rd]]] = {}
    seen_power: dict[str, float] = {}
    pending: list[tuple[Json, float, float]] = []
    for e, t, r in zip(events, ts, rcv, strict=True):
        typ = e["type"]
        if typ == "session_start":
            sess[e["session_id"]] = SessView(
                e["session_id"],
                e["station_id"],
                int(e["connector_id"]),
                e["id_tag"],
                t,
                r,
                meter_start=num(e.get("meter_start_wh")),
            )
        elif typ == "session_stop" and e["session_id"] in sess:
            s = sess[e["session_id"]]
            s.stop, s.stop_rcv, s.meter_stop = t, r, num(e.get("meter_stop_wh"))
        elif typ == "status":
            statuses.setdefault((e["station_id"], int(e["connector_id"])), []).append(
                (t, e["status"])
            )
        elif typ == "authorize":
            auths.setdefault((e["station_id"], e["id_tag"]), []).append((t, e["result"]))
        elif typ == "reading":
            rd = reading_of(e, r)
            sid = e.get("session_id")
            per_conn.setdefault((e["station_id"], int(e["connector_id"])), []).append((sid, rd))
            seen_power[e["station_id"]] = max(
                seen_power.get(e["station_id"], 0.0), rd.p or 0.0, rd.off or 0.0
            )
            if sid is not None:
                pending.append((e, t, r))
    for e, _t, r in pending:
        owner = sess.get(e["session_id"])
        if owner is None:
            problems.append(f"reading for unknown session {e['session_id']}")
            continue
        owner.readings.append(reading_of(e, r))
    derived: set[tuple[str | None, str]] = set()
    for s in sess.values():
        s.statuses = sorted(statuses.get((s.station, s.conn), []), key=lambda x: x[0])
        s.auth = pick_auth(auths.get((s.station, s.tag), []), s.start)
        cap = rated.get(s.station) or seen_power.get(s.station) or 350_000.0
        for k, v in derive_session(s, cap).items():
            if v[0]:
                derived.add((s.sid, k))
    spans = {}
    for s in sess.values():
        end = session_end(s)
        spans[s.sid] = (s.tag, s.station, s.start, end)
    pairs, _ = concurrent_pairs(spans)
    derived |= {(sid, "concurrent_id_tag") for sid in pairs}
    orphan: list[tuple[str, int, float, float]] = []
    for (station, conn), rds in per_conn.items():
        for h, _c, a, b in orphan_runs(rds):
            if h:
                orphan.append((station, conn, a, b))
    labelled = {(lab["session_id"], lab["kind"]) for lab in labels if lab["session_id"]}
    for lab in labels:
        if lab["kind"] not in KINDS:
            problems.append(f"unknown kind {lab['kind']}")
        if lab["session_id"] is None and lab["kind"] != "unauthorized_energy":
            problems.append(f"null session_id on {lab['kind']}")
    for key in sorted(labelled - derived, key=str):
        problems.append(f"label not supported by the events: {key}")
    for key in sorted(derived - labelled, key=str):
        problems.append(f"events meet a definition with no label: {key}")
    null_labels = [
        (lab["station_id"], int(lab["connector_id"]), parse_ts(lab["start"]))
        for lab in labels
        if lab["session_id"] is None
    ]
    for station, conn, a, _b in orphan:
        if not any(x[0] == station and x[1] == conn and abs(x[2] - a) < 2 for x in null_labels):
            problems.append(f"orphan energy without label: {station} {conn} at {a}")
    for station, conn, a in null_labels:
        if not any(o[0] == station and o[1] == conn and abs(o[2] - a) < 2 for o in orphan):
            problems.append(f"orphan label not supported: {station} {conn} at {a}")
    noted = {n["session_id"] for n in notes if n.get("session_id")}
    for sid, _k in labelled:
        if sid not in noted:
            problems.append(f"labelled session without a note: {sid}")
    for p in problems[:200]:
        print(p)
    n_norm = len(sess) - len({sid for sid, _ in labelled})
    print(
        f"checked {len(events)} events, {len(sess)} sessions, {len(labels)} labels, "
        f"{n_norm} normal sessions, {len(orphan)} orphan-energy runs: "
        f"{len(problems)} problems"
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--anomaly-rate", type=float, default=0.25)
    ap.add_argument("--start", default="2026-11-24T00:00:00Z")
    ap.add_argument("--out", default="events.jsonl")
    ap.add_argument("--labels", default="labels.jsonl")
    ap.add_argument("--stations-out", default="stations.csv")
    ap.add_argument("--notes", default="notes.jsonl")
    ap.add_argument("--check", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.check is not None:
        return check(args.check)
    t = time.monotonic()
    fleet = Fleet(args)
    fleet.run()
    counts = fleet.write(args)
    print(
        f"{counts['events']} events, {len(fleet.plans)} sessions, {time.monotonic() - t:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
