"""Faults of the meter, the clock and the data link, applied to one session's readings.

Each function changes what the charger reports (never the physical truth), returns the true
times that bound where the anomaly shows, or ``None`` when this session offers no place to put it
cleanly. Placement avoids creating a second kind by accident: a stuck stretch stays small against
the session's energy (no mismatch), a gap is put where the power is steady (the trapezoid across
it stays right), and the readings around every anomaly are protected from random loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .vehicles import FloatArray

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Window = tuple[int, int]
DAY_MS = 86_400_000


@dataclass(slots=True)
class Readings:
    """One session's readings: truth, what is reported, and which lines are written."""

    t_s: FloatArray  # since the session start
    sent_ms: IntArray  # true time: orders the file
    ts_ms: IntArray  # time written in the line (differs only under a clock fault)
    power_w: FloatArray  # true power
    energy_wh: FloatArray  # true energy since the session start
    register_wh: FloatArray  # the meter's register as reported (rounded when written)
    periodic: BoolArray  # taken on the sampling interval (not Begin, End or a status trigger)
    keep: BoolArray
    protect: BoolArray  # never lost at random
    # what the car reports where an injector changed it (the car's side): SoC at every reading
    # (None: as the physics has it), battery temperature (NaN: as the sensors have it)
    soc_pct: FloatArray | None = None
    temperature_c: FloatArray | None = None
    # a second kind the same fault shows as, and where (a reading that leaps and comes back
    # is a jump and a fall): labelled beside the injector's own
    also: list[tuple[str, Window]] = field(default_factory=list)

    def guard(self, lo: int, hi: int) -> None:
        self.protect[max(lo - 2, 0) : hi + 3] = True


def _charging_runs(r: Readings, length: int) -> BoolArray:
    """Where ``length`` consecutive periodic readings all show clearly positive power."""
    charging = r.periodic & (r.power_w >= 0.3 * float(r.power_w.max()))
    charging[:1] = False
    charging[-1:] = False
    if charging.size < length:
        return np.zeros(0, dtype=bool)
    runs = np.convolve(charging.astype(np.int64), np.ones(length, dtype=np.int64), "valid")
    return np.asarray(runs == length)


def meter_stuck(r: Readings, interval_s: int, rng: np.random.Generator) -> Window | None:
    """The register repeats one value for a while though power flows, then counts on from it."""
    total_wh = float(r.energy_wh[-1])
    shortest = max(5, math.ceil(180 / interval_s))
    for length in (shortest + int(rng.integers(0, 5)), shortest):
        starts = np.flatnonzero(_charging_runs(r, length))
        missed_wh = r.energy_wh[starts + length - 1] - r.energy_wh[starts]
        starts = starts[missed_wh <= 0.1 * total_wh]
        if starts.size:
            i = int(rng.choice(starts))
            last = i + length - 1
            missed = float(r.energy_wh[last] - r.energy_wh[i])
            r.register_wh[i + 1 : last + 1] = r.register_wh[i]
            r.register_wh[last + 1 :] -= missed
            r.guard(i, last)
            return int(r.sent_ms[i]), int(r.sent_ms[last])
    return None


def _step_index(r: Readings, rng: np.random.Generator) -> int | None:
    runs = _charging_runs(r, 3)  # a reading with charging neighbours on both sides
    candidates = np.flatnonzero(runs) + 1
    return int(rng.choice(candidates)) if candidates.size else None


# What the register counts beyond what flowed is kept under JUMP_CLEAR_UNDER or over
# JUMP_CLEAR_OVER of the session's energy, clear of meter_mismatch's 15 % either way.
JUMP_CLEAR_UNDER = 0.10
JUMP_CLEAR_OVER = 0.25
# Share of register faults that show in one reading only, the next right again (a corrupt
# answer from the meter: a bit flipped, a value read as 0 or half-written).
SINGLE_READING_P = 0.3


def counted_extra_wh(r: Readings) -> float:
    """How much more the register counted than flowed, read as a counter (every rise counts, a
    step in which it falls is a reset and left out, with what flowed in it): what
    meter_mismatch compares (CONTRACTS.md section 3 on the register's energy)."""
    d_reg, d_true = np.diff(r.register_wh), np.diff(r.energy_wh)
    rising = d_reg >= 0.0
    return float(d_reg[rising].sum() - d_true[rising].sum())


def _clear_of_mismatch(extra_wh: float, session_wh: float, *, power_of_two: bool) -> float:
    """``extra_wh`` (a power of two where a bit flipped) made clearly larger where it would
    land within a few points of meter_mismatch's 15 % of ``session_wh``: within a few points
    that is a coin flip against the power integral's own doubt."""
    if power_of_two:
        extra_wh = float(2 ** math.ceil(math.log2(extra_wh)))
    if JUMP_CLEAR_UNDER * session_wh < extra_wh < JUMP_CLEAR_OVER * session_wh:
        extra_wh = JUMP_CLEAR_OVER * session_wh
        if power_of_two:
            extra_wh = float(2 ** math.ceil(math.log2(extra_wh)))
    return extra_wh


def meter_backwards(
    r: Readings, resolution_wh: int, rng: np.random.Generator, capacity_w: float = 0.0
) -> Window | None:
    """The register falls: reset to about zero (meter swapped or rebooted) or steps down; or
    one reading low and the next right again (``SINGLE_READING_P``), whose climb back is a
    leap beyond what the connector (``capacity_w``) could deliver: a jump too."""
    j = _step_index(r, rng)
    if j is None:
        return None
    step_wh = float(r.energy_wh[j] - r.energy_wh[j - 1])
    before_wh = float(r.register_wh[j - 1])
    if capacity_w > 0.0 and rng.random() < SINGLE_READING_P:
        possible_wh = capacity_w * float(r.t_s[j + 1] - r.t_s[j]) / 3600.0
        drop_wh = max(3.0 * possible_wh, 2000.0) * float(rng.uniform(1.0, 3.0))
        if rng.random() < 0.3 or drop_wh > 0.9 * before_wh:
            drop_wh = float(r.register_wh[j])  # read as 0
        session_wh = float(r.energy_wh[-1] - r.energy_wh[0])
        drop_wh = _clear_of_mismatch(drop_wh, session_wh, power_of_two=False)
        drop_wh = min(drop_wh, float(r.register_wh[j]))
        r.register_wh[j] -= drop_wh
        r.guard(j - 1, j + 1)
        r.also.append(("meter_jump", (int(r.sent_ms[j]), int(r.sent_ms[j + 1]))))
        return int(r.sent_ms[j - 1]), int(r.sent_ms[j])
    drop_wh = max(float(rng.uniform(500.0, 5000.0)), step_wh + 200.0, 30.0 * resolution_wh)
    if rng.random() < 0.4 or drop_wh > 0.9 * before_wh:
        drop_wh = before_wh + float(rng.uniform(0.0, 1.0)) * step_wh  # restarts near zero
    r.register_wh[j:] -= drop_wh
    r.guard(j - 1, j)
    return int(r.sent_ms[j - 1]), int(r.sent_ms[j])


def meter_jump(r: Readings, capacity_w: float, rng: np.random.Generator) -> Window | None:
    """The register leaps by several times what the connector could deliver in that interval,
    and keeps the leap or, in one reading only (``SINGLE_READING_P``), falls back at the next:
    a fall too."""
    j = _step_index(r, rng)
    if j is None:
        return None
    possible_wh = capacity_w * float(r.t_s[j] - r.t_s[j - 1]) / 3600.0
    jump_wh = max(3.0 * possible_wh, 2000.0) * float(rng.uniform(1.0, 3.0))
    # the register counts the jump (read as a counter, whether it keeps it or falls back), so
    # over 15 % of the session's energy it is a meter_mismatch too (``counted_extra_wh``,
    # labelled so); near 15 % it is made clearly larger
    session_wh = float(r.energy_wh[-1] - r.energy_wh[0])
    flipped = bool(rng.random() < 0.25)  # a flipped bit: a power of two
    jump_wh = _clear_of_mismatch(jump_wh, session_wh, power_of_two=flipped)
    if rng.random() < SINGLE_READING_P:  # in one reading only: the next falls back
        r.register_wh[j] += jump_wh
        r.guard(j - 1, j + 1)
        r.also.append(("meter_backwards", (int(r.sent_ms[j]), int(r.sent_ms[j + 1]))))
    else:
        r.register_wh[j:] += jump_wh
        r.guard(j - 1, j)
    return int(r.sent_ms[j - 1]), int(r.sent_ms[j])


# How far off a miscalibrated meter counts: beyond the 15 % of CONTRACTS.md section 3 by at
# least a point (a meter 15.2 % off against a power integral known to about 1 % is a coin
# flip, not a fault that shows), to a quarter.
MISMATCH_OFF = (0.16, 0.25)
# Gross miscalibrations: a current transformer missing (half) or the meter wired to one phase
# of three (a third).
MISMATCH_GROSS = (0.5, 1.0 / 3.0)


def meter_mismatch(
    r: Readings, capacity_w: float, resolution_wh: int, rng: np.random.Generator
) -> Window | None:
    """A miscalibrated meter: the register counts 16-25 % short or long, or grossly short.

    Over-reading is used only where the inflated rate stays within the connector's rating, so
    the register never seems to rise faster than the connector could deliver (a meter_jump).
    A gross under-count only on a register that counts in single Wh: a coarser one would stand
    still for minutes at low power (a stuck meter as well).
    """
    off = float(rng.uniform(*MISMATCH_OFF))
    over_ok = float(r.power_w.max()) * (1.0 + off) <= capacity_w
    roll = rng.random()
    if roll < 0.2 and resolution_wh == 1:
        factor = float(MISMATCH_GROSS[int(rng.integers(len(MISMATCH_GROSS)))])
    elif over_ok and roll < 0.6:
        factor = 1.0 + off
    else:
        factor = 1.0 - off
    r.register_wh[:] = r.register_wh[0] + factor * r.energy_wh
    r.protect[:] = True
    return int(r.sent_ms[0]), int(r.sent_ms[-1])


def data_gap(r: Readings, interval_s: int, rng: np.random.Generator) -> Window | None:
    """No readings for 6 or more intervals (and at least 5 min); the register keeps counting."""
    gap_s = max(6.0 * interval_s, 300.0) * float(rng.uniform(1.2, 2.2))
    n = r.t_s.size
    first = np.flatnonzero(r.periodic[1:]) + 1
    last = np.searchsorted(r.t_s, r.t_s[first] + gap_s)
    ok = last <= n - 2
    first, last = first[ok], last[ok]
    # the trapezoid across the gap must still match the energy (no accidental mismatch)
    true_wh = r.energy_wh[last] - r.energy_wh[first]
    trapezoid_wh = 0.5 * (r.power_w[first] + r.power_w[last]) * (r.t_s[last] - r.t_s[first]) / 3600
    ok = np.abs(true_wh - trapezoid_wh) <= 0.01 * float(r.energy_wh[-1])
    candidates = np.flatnonzero(ok)
    if not candidates.size:
        return None
    pick = int(rng.choice(candidates))
    i, j = int(first[pick]), int(last[pick])
    r.keep[i + 1 : j] = False
    r.guard(i, j)
    return int(r.sent_ms[i]), int(r.sent_ms[j])


# Share of clock faults that step the clock back by a little more than one sampling interval
# for the rest of the session (a clock set from a wrong source): one reading lands behind the
# last, as far back as a reading delivered late could be, and the stream goes on from there.
CLOCK_STEP_P = 0.2


def clock_fault(
    r: Readings,
    start_ms: int,
    rng: np.random.Generator,
    interval_s: float = 0.0,
    stamp_unit_ms: int = 1,
) -> Window | None:
    """A stretch of readings stamped by a wrong clock: 1970 after a reboot, years ahead, or
    earlier than the readings before it (out of order, sometimes before the session start);
    or (``CLOCK_STEP_P``) every reading from one on stamped 1.3-1.7 sampling intervals
    (``interval_s``; 20 s more than one at least) back, where the stamps are fine enough to
    show it (``stamp_unit_ms``: a tenth of the interval at most)."""
    if interval_s > 0 and stamp_unit_ms <= 100 * interval_s and rng.random() < CLOCK_STEP_P:
        steps = np.flatnonzero(r.periodic[2:-3]) + 2  # periodic readings with some after them
        if steps.size:
            i = int(rng.choice(steps))
            # behind the last reading by a third to two thirds of an interval, and by 20 s at
            # least: four times the few seconds two neighbours' stamps may swap by
            behind_s = max(float(rng.uniform(0.3, 0.7)) * interval_s, 20.0)
            r.ts_ms[i:] -= int((interval_s + behind_s) * 1000.0)
            r.guard(i - 1, i + 2)
            return int(r.sent_ms[i]), int(r.sent_ms[-1])
    length = int(rng.integers(3, 11))
    runs = np.flatnonzero(
        np.convolve(r.periodic.astype(np.int64), np.ones(length, np.int64), "valid") == length
    )
    runs = runs[(runs >= 2) & (runs + length <= r.t_s.size - 2)]
    if not runs.size:
        return None
    i = int(rng.choice(runs))
    stretch = slice(i, i + length)
    roll = rng.random()
    if roll < 0.4:  # rebooted with its clock at the epoch, counting up from there
        r.ts_ms[stretch] = int(rng.integers(20_000, 90_000)) + r.sent_ms[stretch] - r.sent_ms[i]
    elif roll < 0.7:  # years ahead
        r.ts_ms[stretch] += int(rng.integers(180 * DAY_MS, 4000 * DAY_MS))
    else:  # set back: earlier than the reading before the stretch, at times before the start
        back_ms = int(r.sent_ms[i + length - 1] - r.sent_ms[i - 1]) + int(
            rng.integers(2 * 60_000, 3 * 3_600_000)
        )
        if rng.random() < 0.3:
            back_ms = max(back_ms, int(r.sent_ms[i] - start_ms) + 60_000)
        r.ts_ms[stretch] -= back_ms
    r.guard(i, i + length - 1)
    return int(r.sent_ms[i]), int(r.sent_ms[i + length - 1])


def drop_single_samples(r: Readings, prob: float, rng: np.random.Generator) -> None:
    """Lose the odd periodic reading: never two in a row, never near an anomaly, and not where
    power is changing fast (a lost sample in a ramp would bend the session's energy balance
    beyond what a lost sample does on a real charger at steady power)."""
    lost = (rng.random(r.t_s.size) < prob) & r.periodic & r.keep & ~r.protect
    lost[0] = lost[-1] = False
    lost[1:] &= ~lost[:-1]
    index = np.flatnonzero(lost)
    if not index.size:
        return
    t, p = r.t_s, r.power_w
    before, after = index - 1, index + 1
    with_it = 0.5 * (
        (p[before] + p[index]) * (t[index] - t[before])
        + (p[index] + p[after]) * (t[after] - t[index])
    )
    without = 0.5 * (p[before] + p[after]) * (t[after] - t[before])
    bend_wh = np.abs(with_it - without) / 3600.0
    budget_wh = 0.003 * max(float(r.energy_wh[-1]), 1.0)
    index = index[np.cumsum(bend_wh) <= budget_wh]
    r.keep[index] = False
