"""The car's side: a state of charge that contradicts the energy delivered, or a battery
temperature outside what a pack tolerates while charging (``soc_inconsistent``).

Four tests, each against physics with the most lenient reading of the evidence:

- **falls**: the SoC falls by more than its reporting resolution while energy flows (more than
  a car's climate control could draw, so the battery must be gaining);
- **rises**: the SoC rises by more than the energy delivered could raise any plausible battery
  (the smallest one that can draw the power seen, from published capacities, aged), plus the
  resolution, and what the stamps' resolution may hide (whole-minute stamps: two minutes at the
  power held); checked over every pair of readings, so a value that sat stale and then leapt
  is judged against the energy since it last changed;
- **flat**: the SoC stays at one value (not full) while more energy flows than one resolution
  step of the largest plausible battery could absorb, and at least 10 kWh ("tens of kWh"),
  beyond what climate control could draw meanwhile;
- **temperature**: ``temperature_c`` outside -20..60 °C while charging (at least two
  readings, one while power flows, the others then or within ``TEMP_AFTER_CHARGE_S`` after
  a reading with power); readings outside what a sensor can plausibly show are sensor
  errors, not flags.

What must not be flagged: SoC in coarse steps (the resolution is read off the values: all
multiples of 10, 5 or 2, else 1 %), a car that stops reporting (only readings that carry a SoC
are compared), SoC only at the start and the end, a full car at 100 % with trickle power or
idle. A SoC of 0 is read as "not reported" (chargers send 0 when the car tells them nothing; a
car that is really empty leaves 0 within its first kWh).

The energy of each step between readings comes from two witnesses, the register and the
integral of power (``energy.energy_bounds``): where they disagree one of them is wrong (a
stuck, jumping or miscalibrated meter, a power sensor's glitch), and each test takes only what
both allow: the rise test the larger, the fall and flat tests the smaller. So a meter fault
never makes the battery look wrong; a step neither can measure is not judged across.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.energy import (
    cumulative_wh,
    energy_bounds,
    register_covers,
)
from analytics.detectors.meter import meter_values_resolution_wh
from analytics.detectors.prepared import (
    NS_PER_S,
    REGISTER_POWER_MAX_RESOLUTION_WH,
    Prepared,
    prepared,
    take_rows,
)
from analytics.detectors.reductions import forward_fill, nan_argmax, pick
from analytics.detectors.verdicts import (
    build_result,
    excess_score,
    fmt_kw,
    fmt_kwh,
    fmt_min,
    is_none,
    not_scored_reason,
)
from chargewatch.kinds import AnomalyKind


def _capacities() -> tuple[float, float, FloatArray, FloatArray]:
    table = json.loads(
        files("analytics.detectors").joinpath("battery_capacity.json").read_text("utf-8")
    )
    floor = np.array(table["floor"], dtype=np.float64)
    return (
        float(table["smallest_kwh"]),
        float(table["largest_kwh"]),
        np.asarray(floor[:, 0]),
        np.asarray(floor[:, 1]),
    )


# Published usable capacities of the 293 vehicles of open-ev-data (Chargeprice, MIT licence):
# the smallest is 5.5 kWh (a Citroen Ami; plug-in hybrids start at 7.4 kWh), the largest 200 kWh
# (the Tesla Roadster); FLOOR_KWH[i] is the smallest capacity of any vehicle that can draw
# FLOOR_POWER_KW[i] or more. Made by battery_capacity.py from ../shared/data/ev-curves.
SMALLEST_KWH, LARGEST_KWH, FLOOR_POWER_KW, FLOOR_KWH = _capacities()

# SoC is a share of the pack's capacity today: traction battery warranties run until 70 % of
# the original capacity is left, so an aged pack may hold that little.
SOH_MIN = 0.7

# The data ends in 2022 and its fastest packs take about 3.4C (Model Y, Taycan); packs since
# take 4-5C (CATL Shenxing, BYD's 2025 platform): a pack this many times smaller than those of
# the data may draw the same power.
C_RATE_HEADROOM = 1.5

# Reported power is read to within a few per cent (sensor accuracy and noise): the power a car
# is known to have drawn is this share of what was reported.
POWER_ACCURACY = 0.95

# The largest packs on sale since the data (electric pickups, about 200-215 kWh) are within
# this of its largest.
LARGEST_MARGIN = 1.1

# The least share of metered energy that reaches the battery: on-board chargers convert 85-93 %
# at their rated current and less at 6 A, DC loses a few per cent in cable and pack.
EFFICIENCY_MIN = 0.8

# What a car's climate control may draw for hours from the grid while plugged in (a cabin kept
# warm in frost, 1-3 kW): while more than this flows, the battery must be gaining.
CLIMATE_W = 3_000.0

# Charging at all: IEC 61851's least current, 6 A on one phase, is 1.3-1.4 kW; below about 1 kW
# only the car's 12 V system and climate loads draw.
CHARGING_W = 1_000.0

# A register within this share of the integral of power counts the energy itself (sensor 2 % and
# meter 1 % accuracy, 2 % for the integral's own error at one reading a minute); beyond it the
# register may be the one that is wrong (meter_mismatch flags 15 % and more).
REGISTER_AGREEMENT = 0.05
# The steps in which cars report SoC: whole percent, or coarse steps of 2, 5 or 10 %.
SOC_STEPS_PCT = (10.0, 5.0, 2.0)

# A temperature sensor on a pack reads no lower than the coldest air a car is driven in; -40 °C
# is also what a disconnected NTC sensor reads. Above 100 °C cells are in thermal runaway (the
# separator melts at about 130 °C) and no car would still be charging: such readings are a
# sensor's limit or an encoding overflowing (127, 255), judged only where they hold for
# LIMIT_READINGS readings while charging (``_TempEvidence``).
SENSOR_MIN_C = -40.0
SENSOR_MAX_C = 100.0
LIMIT_READINGS = 3

# A pack's temperature does not fall by tens of degrees within minutes of the current stopping
# (its thermal time constant is tens of minutes): readings this soon after one taken while
# charging still show the charge's heat. A BMS that cuts the charge for an overheating pack
# stops the power first, so its hot readings come just after the last one with power.
TEMP_AFTER_CHARGE_S = 300.0

# Offsets that keep running maxima and minima inside one stretch of a row: larger than any
# value they separate (SoC in 0..100; SoC less energy times the per-Wh rise, within 1e5).
_RUN_OFFSET = 1_000.0
_SEGMENT_OFFSET = 1e7


def capacity_floor_wh(power_w: FloatArray) -> FloatArray:
    """The smallest plausible usable capacity (Wh) of a car seen holding ``power_w``: the
    smallest published capacity among the vehicles that can draw that power (allowing for newer
    packs' higher C-rates and for the power reading's accuracy), aged to ``SOH_MIN``."""
    drawn_kw = np.nan_to_num(power_w, nan=0.0) * (POWER_ACCURACY / C_RATE_HEADROOM) / 1000.0
    at = np.minimum(np.searchsorted(FLOOR_POWER_KW, drawn_kw, side="left"), FLOOR_KWH.size - 1)
    return np.asarray(FLOOR_KWH[at] * SOH_MIN * 1000.0)


def largest_capacity_wh() -> float:
    """The largest plausible usable capacity (Wh)."""
    return LARGEST_KWH * LARGEST_MARGIN * 1000.0


def soc_resolution_pct(soc: FloatArray, has: BoolArray) -> FloatArray:
    """Per row, the step the car reports SoC in: the coarsest of 10, 5, 2 % that divides every
    value after the first (the first, from the handshake, may come in whole percent from a car
    that reports in coarse steps after it), else 1 %."""
    n, m = soc.shape
    res = np.ones(n)
    if not m:
        return res
    filled = np.where(has, soc, 0.0)
    filled[np.arange(n), np.argmax(has, axis=1)] = 0.0
    for step in SOC_STEPS_PCT[::-1]:  # finest first: a coarser step that fits overrides it
        ratio = filled / step  # exact for whole multiples (a division is correctly rounded)
        fits = np.all(ratio == np.trunc(ratio), axis=1)
        res = np.where(fits, step, res)
    return res


def _session_wh(batch: SessionBatch) -> FloatArray:
    """Per row: the most a stopped session delivered by its meter values, meterStop less
    meterStart and their step (NaN where either is missing or they fall)."""
    start, stop = batch.meter_start_wh, batch.meter_stop_wh
    delivered = stop - start + meter_values_resolution_wh(start, stop)
    known = (batch.stop_ns != NO_TIME) & (stop >= start)
    return np.asarray(np.where(known, delivered, np.nan))


def _scatter(n: int, rows: IntArray, values: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Arrays over ``rows`` spread over all ``n`` rows (0 elsewhere)."""
    out = []
    for v in values:
        full = np.zeros(n, dtype=v.dtype)
        full[rows] = v
        out.append(full)
    return tuple(out)


def _nan_argmin(values: FloatArray) -> IntArray:
    return nan_argmax(-values)


class SocInconsistent(BaseDetector):
    """The car's state of charge contradicts the energy delivered, or the battery temperature is
    outside what a pack tolerates while charging (CONTRACTS.md section 3; the module docstring
    says how each is judged). Learns nothing: the bounds are physical and from published
    vehicle data.

    Parameters
    ----------
    min_flat_wh : float, default 10000.0
        A flat SoC is judged only over at least this much energy: "tens of kWh"; more when one
        resolution step of the largest plausible battery needs more.
    climate_w : float, default CLIMATE_W (3000.0)
        What climate control may draw from the grid while plugged in: while more flows the
        battery must be gaining (falls), and a flat stretch is judged on the energy beyond it.
    temp_low_c : float, default -20.0
        Below about -20 °C a battery management system does not charge at all (it heats the
        pack first; lithium plates on the anode when charged cold).
    temp_high_c : float, default 60.0
        Above about 60 °C packs cut off charging (cells are specified to charge up to 45-55 °C;
        the cooling holds them under it).
    min_temp_readings : int, default 2
        Readings out of that band while charging: one alone may be a sensor's glitch.
    """

    kind = AnomalyKind.SOC_INCONSISTENT

    def __init__(
        self,
        *,
        min_flat_wh: float = 10_000.0,
        climate_w: float = CLIMATE_W,
        temp_low_c: float = -20.0,
        temp_high_c: float = 60.0,
        min_temp_readings: int = 2,
    ) -> None:
        self.min_flat_wh = min_flat_wh
        self.climate_w = climate_w
        self.temp_low_c = temp_low_c
        self.temp_high_c = temp_high_c
        self.min_temp_readings = min_temp_readings

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        n = batch.n_sessions
        # the SoC tests only on rows with two SoC readings or more (a view of those rows)
        n_soc = np.sum(prep.soc_pct > 0.0, axis=1)
        rows = np.flatnonzero(n_soc >= 2)
        # (a copy of the rows pays when they are few; most rows of a DC batch carry SoC)
        whole = rows.size > n // 2
        session_wh = _session_wh(batch)
        soc = _SocEvidence.of(
            prep if whole else take_rows(prep, rows),
            self.climate_w,
            self.min_flat_wh,
            session_wh if whole else session_wh[rows],
        )
        if whole:
            rows = np.arange(n)
        position = np.full(n, -1, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        temp = _TempEvidence.of(batch, self.temp_low_c, self.temp_high_c, self.min_temp_readings)
        found = (soc.rise, soc.fall, soc.flat)
        windows = [_scatter(n, rows, soc.window(f, soc.t_ns)) for f in found]
        windows.append((temp.first, temp.last))
        xs = [_scatter(n, rows, (f.x,))[0] for f in found]
        parts = np.stack((*xs, temp.x), axis=1)
        x = parts.max(axis=1) if n else np.zeros(0)
        over = parts > 1.0
        starts = np.stack([w[0] for w in windows], axis=1)
        ends = np.stack([w[1] for w in windows], axis=1)
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        start = np.where(over, starts, big).min(axis=1) if n else np.zeros(0, np.int64)
        end = np.where(over, ends, small).max(axis=1) if n else np.zeros(0, np.int64)
        flagged = x > 1.0
        start = np.where(flagged, start, NO_TIME).astype(np.int64)
        end = np.where(flagged, end, NO_TIME).astype(np.int64)

        not_scored = not_scored_reason(prep)
        nothing = (n_soc < 2) & (temp.n_charging == 0)
        not_scored[nothing & is_none(not_scored)] = (
            "fewer than 2 state-of-charge readings and no battery temperature while charging"
        )
        low, high = self.temp_low_c, self.temp_high_c

        def describe(rows: IntArray) -> list[str]:
            out = []
            for i in rows:
                texts = []
                order = np.argsort(-parts[i], kind="stable")
                for which in order[over[i, order]]:
                    if which == 0:
                        texts.append(soc.describe_rise(int(position[i])))
                    elif which == 1:
                        texts.append(soc.describe_fall(int(position[i])))
                    elif which == 2:
                        texts.append(soc.describe_flat(int(position[i])))
                    else:
                        texts.append(temp.describe(i, low, high))
                out.append("; ".join(texts))
            return out

        return build_result(self.kind, excess_score(x), flagged, start, end, describe, not_scored)


@dataclass(frozen=True, slots=True)
class _Found:
    """One SoC test's evidence per row: ``x`` (1 at its threshold) and the two readings that
    show it (``i`` before ``j``)."""

    x: FloatArray
    i: IntArray
    j: IntArray


def _rises(
    soc: FloatArray,
    begins: BoolArray,
    hi: FloatArray,
    segment: FloatArray,
    per_wh: FloatArray,
    slack: FloatArray,
) -> _Found:
    """SoC less what the most energy delivered could add to the smallest plausible battery
    never climbs by more than ``slack`` (the SoC's resolution, and what the stamps'
    resolution may hide) within one known stretch, counted from the reading
    where a value first showed (a value repeated while stale says nothing new): the largest
    climb over every such pair, by a running minimum."""
    n, m = soc.shape
    if not m:
        zero = np.zeros(n, np.int64)
        return _Found(np.zeros(n), zero, zero)
    g = soc - per_wh[:, None] * hi - segment * _SEGMENT_OFFSET
    since = np.where(begins, g, np.nan)
    climb = g - np.fmin.accumulate(since, axis=1)
    j = nan_argmax(climb)
    cols = np.arange(m)[None, :]
    i = _nan_argmin(np.where(cols <= j[:, None], since, np.nan))
    return _Found(np.nan_to_num(pick(climb, j)) / slack, i, j)


def _rise_by_either(
    prep: Prepared,
    soc: FloatArray,
    begins: BoolArray,
    hi: FloatArray,
    segment: FloatArray,
    per_wh: FloatArray,
    slack: FloatArray,
) -> _Found:
    """``_rises`` against the most energy the steps allow (``hi``, summed), and, where the
    row has a register, against its own count over the pair of readings and one step of its
    resolution: the steps' sum takes each step's register within its rounding as no more than
    shown, while over any span a register in 1 kWh steps may hold up to 1 kWh more than its
    two values say. A rise is impossible only if both say so (a 1 kWh register counting 39 kW
    while the power was sent in kW: "SoC rose 2 % in 60 s on at most 0.000 kWh", the power
    being the witness that was wrong; town fleet seed 6, 3 such sessions)."""
    snapped = _snapped_to_full(soc)
    by_steps = _rises(snapped, begins, hi, segment, per_wh, slack)
    if not prep.has_energy.any():
        return by_steps
    # the register's count from the first reading that carried it (NaN before it)
    counted = prep.energy_ff_wh - np.fmin.reduce(prep.energy_ff_wh, axis=1, initial=np.inf)[:, None]
    resets = np.cumsum(np.nan_to_num(prep.de_wh) < 0.0, axis=1).astype(np.float64)
    falls: FloatArray = np.concatenate((np.zeros((soc.shape[0], 1)), resets), axis=1)
    by_register = _rises(snapped, begins, counted, falls[:, : soc.shape[1]], per_wh, slack)
    spare = per_wh * prep.resolution_wh / slack  # one step of the register, in units of x
    x_register = np.where(np.isnan(by_register.x), np.inf, by_register.x - spare)
    has_register = prep.n_energy >= 2
    x = np.where(has_register, np.fmin(by_steps.x, x_register), by_steps.x)
    return _Found(x, by_steps.i, by_steps.j)


# A battery management system resets its SoC to 100 % when the cells reach their top voltage,
# correcting the drift of counting charge in and out (a few per cent over a charge): a snap to
# 100 % is read as a rise to this at most.
FULL_SNAP_FROM_PCT = 95.0


def _snapped_to_full(soc: FloatArray) -> FloatArray:
    """SoC for the rise test: a reading of 100 % counts as the last value below it, or
    ``FULL_SNAP_FROM_PCT`` if that was lower (none before: 100 %)."""
    full = soc >= 100.0
    rows = np.flatnonzero(full.any(axis=1))
    if not rows.size:
        return soc
    part, at_full = soc[rows], full[rows]
    below = forward_fill(np.where(at_full, np.nan, part))  # the last value below 100 %
    snapped = np.maximum(np.fmin(below, 100.0), FULL_SNAP_FROM_PCT)
    out = soc.copy()
    out[rows] = np.where(at_full, snapped, part)
    return out


def _begins(soc: FloatArray) -> BoolArray:
    """The readings where a SoC value first shows (differs from the last one reported)."""
    n = soc.shape[0]
    previous = np.concatenate((np.full((n, 1), np.nan), forward_fill(soc)[:, :-1]), axis=1)
    return np.asarray(~np.isnan(soc) & ~(soc == previous))


def _falls(soc: FloatArray, flowing: BoolArray, res: FloatArray) -> _Found:
    """The largest fall of SoC within a run of steps where energy flows (a running maximum
    per run: each run is lifted above the ones before it)."""
    n, m = soc.shape
    if not m:
        zero = np.zeros(n, np.int64)
        return _Found(np.zeros(n), zero, zero)
    run = np.concatenate((np.zeros((n, 1)), np.cumsum(~flowing, axis=1, dtype=np.float64)), 1)
    h = soc + run * _RUN_OFFSET
    drop = np.fmax.accumulate(h, axis=1) - h
    j = nan_argmax(drop)
    cols = np.arange(m)[None, :]
    i = nan_argmax(np.where(cols <= j[:, None], h, np.nan))
    return _Found(np.nan_to_num(pick(drop, j)) / res, i, j)


def _flats(
    soc: FloatArray,
    begins: BoolArray,
    lo: FloatArray,
    t_s: FloatArray,
    climate_w: float,
    need_wh: FloatArray,
    res: FloatArray,
) -> _Found:
    """The most energy, beyond what climate control could draw, delivered while the SoC held
    one value below full (from the reading where the value first showed to one that repeats
    it), over ``need_wh``."""
    n, m = soc.shape
    if not m:
        zero = np.zeros(n, np.int64)
        return _Found(np.zeros(n), zero, zero)
    has = ~np.isnan(soc)
    cols = np.broadcast_to(np.arange(m), (n, m))
    first = np.maximum.accumulate(np.where(begins, cols, 0), axis=1)
    flat_wh = lo - np.take_along_axis(lo, first, axis=1)
    flat_s = t_s - np.take_along_axis(t_s, first, axis=1)
    unexplained = flat_wh - climate_w * flat_s / 3600.0
    judged = has & (soc < 100.0 - res[:, None])
    x = np.where(judged, unexplained / need_wh[:, None], np.nan)
    j = nan_argmax(x)
    return _Found(np.maximum(np.nan_to_num(pick(x, j)), 0.0), pick(first, j).astype(np.int64), j)


@dataclass(frozen=True, slots=True)
class _SocEvidence:
    """The three SoC tests over every row (see the module docstring), with their evidence."""

    res: FloatArray  # the reporting step, %
    soc: FloatArray  # (n, m) NaN where not reported
    t_s: FloatArray
    t_ns: IntArray
    lo: FloatArray  # (n, m) least and most energy since the first reading
    hi: FloatArray
    held_w: FloatArray  # the power the car held, and the smallest battery that can take it
    floor_wh: FloatArray
    need_wh: FloatArray  # energy a flat SoC is judged over
    rise: _Found
    fall: _Found
    flat: _Found

    @classmethod
    def of(
        cls, prep: Prepared, climate_w: float, min_flat_wh: float, session_wh: FloatArray
    ) -> _SocEvidence:
        n, m = prep.soc_pct.shape
        soc = np.where(prep.soc_pct > 0.0, prep.soc_pct, np.nan)
        has = ~np.isnan(soc)
        res = soc_resolution_pct(soc, has)
        begins = _begins(soc)
        lo_step, hi_step = energy_bounds(prep, session_wh)
        if prep.bridged.any():
            # readings set aside for their clock inside a step: the two around them may come
            # from two clocks (one stepped back), so the time between them, and the energy it
            # bounds, is not known (a clock 30 min back: "SoC rose 55 % in 7 s" across the
            # seam, outside fleet seed 22, 810567); no rise or fall is judged over it
            lo_step = np.where(prep.bridged, np.nan, lo_step)
            hi_step = np.where(prep.bridged, np.nan, hi_step)
        lo, hi = cumulative_wh(lo_step), cumulative_wh(hi_step)
        segment = np.concatenate((np.zeros((n, 1)), np.cumsum(np.isnan(hi_step), axis=1)), 1)
        held_w = _held_power_w(prep.power_w)
        floor_wh = capacity_floor_wh(held_w)
        per_wh = 100.0 / floor_wh
        # two readings' stamps may each be off by the stamps' resolution: the energy of that
        # much time at the power held may have flowed unseen between them; not where a register
        # that agrees with the power counts every step (it and the SoC come in one reading)
        stamp_pct = per_wh * held_w * 2.0 * prep.time_resolution_s / 3600.0
        # ... and fine enough to count a stamp's worth: a register in 0.1 or 1 kWh steps stays
        # flat over minutes of charging (normal sessions of an independently written fleet,
        # seed 253: 1 kWh registers at stations stamping whole minutes, "SoC rose 2 % in 0 s
        # on at most 0.000 kWh", 37 of 9,352 flagged)
        fine = prep.resolution_wh <= REGISTER_POWER_MAX_RESOLUTION_WH
        stamp_pct[register_covers(prep, REGISTER_AGREEMENT) & fine] = 0.0
        flowing = (lo_step >= climate_w * prep.dt_s / 3600.0) & (prep.dt_s > 0)
        # readings of one stamp (stations stamping whole seconds or minutes) hide how long
        # passed between them, not whether energy flowed: both drawing more than the car's
        # climate control says it did (a SoC that fell 27 points between two readings of one
        # minute at 45 kW was missed: an independently written fleet stamped to the minute)
        both_w = np.fmin(prep.power_w[:, 1:], prep.power_w[:, :-1])
        flowing |= (prep.dt_s == 0) & (both_w > climate_w)
        # ... nor a register that held while both readings drew more than that: it is the
        # register that stopped (meter_stuck's), not the flow (a SoC falling 11 points at 90
        # kW, the register frozen over it, was read as nothing flowing: outside fleet seed 4,
        # 432765)
        flowing |= (prep.de_wh == 0) & (both_w > climate_w)
        need_wh = np.maximum(min_flat_wh, res / 100.0 * largest_capacity_wh() / EFFICIENCY_MIN)
        return cls(
            res=res,
            soc=soc,
            t_s=prep.t_s,
            t_ns=prep.t_ns,
            lo=lo,
            hi=hi,
            held_w=held_w,
            floor_wh=floor_wh,
            need_wh=need_wh,
            rise=_rise_by_either(prep, soc, begins, hi, segment[:, :m], per_wh, res + stamp_pct),
            fall=_falls(soc, flowing, res),
            flat=_flats(soc, begins, lo, prep.t_s, climate_w, need_wh, res),
        )

    def window(self, found: _Found, t_ns: IntArray) -> tuple[IntArray, IntArray]:
        return pick(t_ns, found.i).astype(np.int64), pick(t_ns, found.j).astype(np.int64)

    def _pair(self, found: _Found, k: int) -> tuple[int, int, float, float, float]:
        i, j = int(found.i[k]), int(found.j[k])
        a, b = float(self.soc[k, i]), float(self.soc[k, j])
        return i, j, a, b, float(self.t_s[k, j] - self.t_s[k, i])

    def describe_rise(self, k: int) -> str:
        i, j, a, b, span = self._pair(self.rise, k)
        energy = float(self.hi[k, j] - self.hi[k, i])
        rise, res = b - a, float(self.res[k])
        could = energy / max(rise - res, 1e-9) * 100.0
        return (
            f"SoC rose {rise:.0f} % ({a:.0f} to {b:.0f} %) in {fmt_min(span)} on at most "
            f"{fmt_kwh(energy)}: only a battery of {could / 1000.0:.1f} kWh or less could "
            f"(less a {res:.0f} % step), the smallest plausible at "
            f"{fmt_kw(self.held_w[k])} is {self.floor_wh[k] / 1000.0:.1f} kWh"
        )

    def describe_fall(self, k: int) -> str:
        i, j, a, b, span = self._pair(self.fall, k)
        energy = float(self.lo[k, j] - self.lo[k, i])
        flowed = (
            f"at least {fmt_kwh(energy)} flowed"
            if energy > 0
            else f"power read about {fmt_kw(self.held_w[k])}, the register holding its value"
        )
        return (
            f"SoC fell {a - b:.0f} % ({a:.0f} to {b:.0f} %) in {fmt_min(span)} while {flowed}"
            f" (reported in steps of {self.res[k]:.0f} %)"
        )

    def describe_flat(self, k: int) -> str:
        i, j, a, _, span = self._pair(self.flat, k)
        energy = float(self.lo[k, j] - self.lo[k, i])
        step_wh = self.res[k] / 100.0 * largest_capacity_wh() / EFFICIENCY_MIN
        return (
            f"SoC stayed at {a:.0f} % for {fmt_min(span)} while at least {fmt_kwh(energy)} "
            f"flowed: more than {fmt_kwh(self.need_wh[k])} beyond what climate control draws "
            f"moves any plausible battery a {self.res[k]:.0f} % step (the largest, "
            f"{largest_capacity_wh() / 1000.0:.0f} kWh, takes at most {fmt_kwh(step_wh)})"
        )


def _held_power_w(power_w: FloatArray) -> FloatArray:
    """Per row, the highest power held over two consecutive readings (a single spike of a
    power sensor does not count); 0 without two readings of power."""
    if power_w.shape[1] < 2:
        return np.zeros(power_w.shape[0])
    held = np.fmin(power_w[:, 1:], power_w[:, :-1])
    held = np.where(np.isnan(power_w[:, 1:]) | np.isnan(power_w[:, :-1]), np.nan, held)
    return np.asarray(np.nan_to_num(np.fmax.reduce(held, axis=1), nan=0.0))


@dataclass(frozen=True, slots=True)
class _TempEvidence:
    """Battery temperatures out of the tolerated band while charging."""

    x: FloatArray
    first: IntArray
    last: IntArray
    n_out: IntArray
    n_charging: IntArray
    worst_c: FloatArray
    power_w: FloatArray

    @classmethod
    def of(
        cls, batch: SessionBatch, low_c: float, high_c: float, min_readings: int
    ) -> _TempEvidence:
        # the order of the readings does not matter here: the batch's own columns are read,
        # on the rows with a plausible temperature while charging only
        n, m = batch.n_sessions, batch.n_steps
        flowing = np.asarray(batch.valid & (batch.power_w >= CHARGING_W), dtype=bool)
        # ... and the readings within TEMP_AFTER_CHARGE_S after one with power: a pack at 87 °C
        # at 89 kW, then 87 and 88 °C as the charge was cut, was one reading "while charging"
        # (field fleet seed 9, FLD0113A-24599, missed)
        since = forward_fill(np.where(flowing, batch.t_ns.astype(np.float64), np.nan))
        after = (batch.t_ns - since) <= TEMP_AFTER_CHARGE_S * NS_PER_S
        charging = batch.valid.astype(bool, copy=False) & (flowing | after)
        charging &= ~np.isnan(batch.temperature_c)
        plausible = (batch.temperature_c > SENSOR_MIN_C) & (batch.temperature_c < SENSOR_MAX_C)
        # readings at a sensor's limits count where they hold for LIMIT_READINGS while
        # charging: a sensor that reports -40 °C for minutes (a wire come loose in the pack, a
        # BMS fault) contradicts the charge as much as 65 °C does (field fleet seeds 1-4: 10
        # runs of 4-12 readings at -40 °C amid real ones, missed), and so does 127 °C all
        # session long while 100 kW flow (depot fleet seeds 1-4: 43 sessions at 127 °C and 43
        # at -40 °C, labelled; the battery's temperature as the charger reports it is outside
        # what a pack tolerates, whatever broke). One or two such readings are a glitch: a
        # limit held is LIMIT_READINGS readings at the lower limit or at one value past the
        # upper (127 twice and 255 twice are two glitches)
        cold = charging & (batch.temperature_c <= SENSOR_MIN_C)
        hot = charging & (batch.temperature_c >= SENSOR_MAX_C)
        held = cold.sum(axis=1) >= LIMIT_READINGS
        for r in np.flatnonzero(hot.sum(axis=1) >= LIMIT_READINGS).tolist():
            _, counts = np.unique(batch.temperature_c[r, hot[r]], return_counts=True)
            held[r] |= bool(counts.max() >= LIMIT_READINGS)
        charging &= plausible | ((cold | hot) & held[:, None])
        n_charging = charging.sum(axis=1).astype(np.int64)
        rows = np.flatnonzero(n_charging > 0)
        temp, power, t = batch.temperature_c[rows], batch.power_w[rows], batch.t_ns[rows]
        margin = np.where(charging[rows], np.maximum(temp - high_c, low_c - temp), -np.inf)
        out = margin > 0.0
        # one of them at least taken while power flowed
        margin = np.where((out & flowing[rows]).any(axis=1)[:, None], margin, -np.inf)
        k = min(min_readings, m)
        # the k-th largest margin: k readings at least this far out of the band
        kth = -np.partition(-margin, k - 1, axis=1)[:, k - 1] if m and k else np.full(0, -np.inf)
        # 1 at the band's edge, 2 ten degrees beyond it (the span between a BMS's derating and
        # its cut-off)
        x = np.maximum(1.0 + kth / 10.0, 0.0)
        x = np.where(np.isfinite(x), x, 0.0)
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        worst = nan_argmax(np.where(out, margin, np.nan))
        x_, n_out, worst_c, power_w = _scatter(
            n, rows, (x, out.sum(axis=1).astype(np.int64), pick(temp, worst), pick(power, worst))
        )
        first, last = np.full(n, NO_TIME, dtype=np.int64), np.full(n, NO_TIME, dtype=np.int64)
        # ``initial``: a batch without readings (m == 0) reduces over nothing
        first[rows] = np.where(out, t, big).min(axis=1, initial=big)
        last[rows] = np.where(out, t, small).max(axis=1, initial=small)
        return cls(
            x=x_,
            first=first,
            last=last,
            n_out=n_out,
            n_charging=n_charging,
            worst_c=worst_c,
            power_w=power_w,
        )

    def describe(self, k: int, low_c: float, high_c: float) -> str:
        when = (
            f"while charging at {fmt_kw(self.power_w[k])}"
            if self.power_w[k] >= CHARGING_W
            else f"within {TEMP_AFTER_CHARGE_S / 60:.0f} min of charging"
        )
        return (
            f"battery at {self.worst_c[k]:.1f} °C {when} "
            f"({int(self.n_out[k])} readings outside {low_c:.0f}..{high_c:.0f} °C)"
        )
