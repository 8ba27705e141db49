"""The cleaned view of a batch that every detector reads, and which timestamps it trusts.

Every detector reads the same ``Prepared`` view of a batch, built once per ``(batch, now_ns)``
and cached in ``batch.extra``:

- samples whose timestamp cannot be trusted (before the session start, far after ``now_ns``,
  or earlier than a reading that arrived before them) are set aside, so a charger with a bad
  clock shows as a ``clock_fault`` and not also as a gap, a backwards register or a jump;
- the trusted samples of each row are packed to the left, in time order, so a diff along
  axis 1 is always between consecutive trusted readings;
- per row: the sampling interval (median time step), the register resolution, the peak power.

All of it is masked NumPy work over ``(n, m)`` arrays; affected rows (a few) are reordered as a
sub-array, never one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.reductions import (
    REGISTER_UNITS_WH,
    forward_fill,
    register_unit_wh,
    row_max,
    run_labels,
    smallest_rise,
)
from analytics.detectors.stamp_order import stamp_order

NS_PER_S = 1_000_000_000


# Rows are scored in blocks of about this many padded samples: each temporary (n, m) array of a
# block is a few MB, so it stays in cache and the allocator reuses it, where arrays of a whole
# batch (tens of MB each) are fresh memory, page-faulted in, every time.
BLOCK_CELLS = 1 << 19
# A batch whose real samples fill less than this share of its padded cells is scored in blocks
# of rows of like length, each cut to its longest row. A day's fleet holds sessions of a few
# samples next to ones (and orphan segments) of thousands: padded to the longest, a batch is
# ~90 % padding (bench/detect.py's mixed fleet: 1,037 rows x 1,910 columns, 8 % filled), which
# every pass of every detector crosses. Above this share the copy would cost more than it saves.
COMPACT_BELOW_FILL = 0.5
# Where a batch made by ``compact_history`` keeps its blocks (``row_blocks``).
_COMPACT_KEY = "_compact_rows"


_INT_MAX = np.iinfo(np.int64).max


_INT_MIN = np.iinfo(np.int64).min


# ``now_ns`` for history (fitting): the data is complete, every reading lies in the past, so no
# clock counts as fast and no session as still open. Half the int64 range, so that adding a
# tolerance to it (``CLOCK_FUTURE_S``) cannot overflow.
HISTORY_COMPLETE_NS = _INT_MAX // 2


# A clock more than this before the session start is wrong: firmware may stamp the first reading
# with the plug-in time, a few seconds before the back office opened the transaction.
CLOCK_BEFORE_START_S = 60.0


# Readings stamped this far after the time the data is complete up to come from a fast clock.
CLOCK_FUTURE_S = 15 * 60.0


# Two readings sent within a second or two may carry swapped second-resolution stamps.
CLOCK_DISORDER_S = 5.0


@dataclass(frozen=True, slots=True)
class ClockEvidence:
    """Per row: how many readings carry an untrusted time and how far off the worst one is."""

    n_bad: IntArray
    before_start_s: FloatArray  # worst distance before the start, 0 when none
    future_s: FloatArray  # worst distance after now
    disorder_s: FloatArray  # worst step back against arrival order
    start_ns: IntArray  # trusted times bounding the bad stretch (NO_TIME when none)
    end_ns: IntArray


@dataclass(frozen=True, slots=True)
class Prepared:
    """The trusted samples of a batch, packed left and in time order (see module docstring)."""

    count: IntArray  # trusted samples per row
    valid: BoolArray  # (n, m) the first ``count`` columns
    t_ns: IntArray  # (n, m), padding 0
    t_s: FloatArray  # (n, m) seconds since the row's first trusted sample, NaN padding
    t0_ns: IntArray  # (n,) first trusted sample, NO_TIME for an empty row
    energy_wh: FloatArray  # (n, m) as reported, NaN when not measured
    energy_ff_wh: FloatArray  # forward-filled over missing values
    has_energy: BoolArray
    n_energy: IntArray  # (n,) readings with a register value (``has_energy`` per row)
    power_w: FloatArray
    offered_w: FloatArray
    soc_pct: FloatArray
    current_a: FloatArray  # (n, m) as reported, NaN when not measured
    voltage_v: FloatArray
    status: np.ndarray  # int8 StatusCode
    dt_s: FloatArray  # (n, m - 1) time between consecutive trusted samples, NaN when not both
    de_wh: FloatArray  # (n, m - 1) register step, NaN when either end has no register value
    bridged: BoolArray  # (n, m - 1) readings with a bad clock were set aside inside this step
    interval_s: FloatArray  # (n,) median time step, NaN with fewer than two samples
    in_order: BoolArray  # (n,) the trusted times never decrease along the row (by the batch's
    #                      contract they do not; a row that breaks it has ``dt_s`` clipped at 0)
    resolution_wh: FloatArray  # (n,) register resolution (smallest positive step, capped)
    time_resolution_s: FloatArray  # (n,) resolution of the row's stamps (``time_resolution_s``)
    peak_power_w: FloatArray  # (n,) highest reported power, NaN when none
    max_offered_w: FloatArray  # (n,) highest offered power, NaN when none
    clock: ClockEvidence


def prepared(batch: SessionBatch, now_ns: int) -> Prepared:
    """The cached ``Prepared`` view of ``batch`` for ``now_ns`` (built on first use)."""
    key = ("chargewatch.detectors.prepared", int(now_ns))
    cached = batch.extra.get("_prepared")
    if isinstance(cached, tuple) and cached[0] == key:
        result = cached[1]
        assert isinstance(result, Prepared)
        return result
    result = _prepare(batch, int(now_ns))
    batch.extra["_prepared"] = (key, result)
    return result


def _prepare(batch: SessionBatch, now_ns: int) -> Prepared:
    n, m = batch.n_sessions, batch.n_steps
    valid = batch.valid.astype(bool, copy=False) if m else np.zeros((n, 0), dtype=bool)
    t = batch.t_ns if m else np.zeros((n, 0), dtype=np.int64)
    columns = {
        "energy_wh": batch.energy_wh,
        "power_w": batch.power_w,
        "offered_w": batch.power_offered_w,
        "soc_pct": batch.soc_pct,
        "current_a": batch.current_a,
        "voltage_v": batch.voltage_v,
    }
    status = batch.status
    clock = _clock_evidence_empty(n)
    bridged = np.zeros((n, max(m - 1, 0)), dtype=bool)

    start = batch.start_ns
    has_start = start != NO_TIME
    affected = np.flatnonzero(clock_unsure(batch, now_ns))
    if affected.size:
        t = t.copy()
        valid = valid.copy()
        columns = {name: col.copy() for name, col in columns.items()}
        status = status.copy()
        fixed = _fix_rows(
            t[affected],
            valid[affected],
            np.where(valid[affected], batch.arrival[affected], _INT_MAX),
            start[affected],
            has_start[affected],
            now_ns,
            {name: col[affected] for name, col in columns.items()},
            status[affected],
            batch.stop_ns[affected],
        )
        t[affected], valid[affected], status[affected] = fixed.t, fixed.valid, fixed.status
        for name in columns:
            columns[name][affected] = fixed.columns[name]
        bridged[affected] = fixed.bridged
        clock = _scatter_clock(n, affected, fixed.clock)

    count = valid.sum(axis=1).astype(np.int64)
    t0 = np.where(count > 0, t[:, 0] if m else NO_TIME, NO_TIME).astype(np.int64)
    # (t - t0) / 1e9, then NaN in the padding (a masked fill, not a third full array);
    # jump_allowance_wh rebuilds values of it from t_ns by the same two operations, to the bit
    t_s = np.divide(np.subtract(t, np.where(count > 0, t0, 0)[:, None]), NS_PER_S)
    np.copyto(t_s, np.nan, where=~valid)
    # padding is NaN by the batch's contract: the columns are used as they are, not copied
    energy = columns["energy_wh"]
    has_energy = ~np.isnan(energy)
    energy_ff = forward_fill(energy) if np.any(valid & ~has_energy) else energy
    power, offered, soc = columns["power_w"], columns["offered_w"], columns["soc_pct"]
    dt = np.diff(t_s, axis=1)
    in_order = ~np.any(dt < 0, axis=1)
    np.maximum(dt, 0.0, out=dt)  # within the disorder tolerance (NaN stays NaN)
    de = np.diff(energy_ff, axis=1)
    if energy_ff is not energy:
        # a step to a reading without a register value is unknown, not a step from the last
        # known value (without forward filling, NaN already propagated through the diff)
        np.copyto(de, np.nan, where=~has_energy[:, 1:])
    positive_dt = dt > 0
    interval = _median_of(np.where(positive_dt, dt, np.nan), positive_dt.sum(axis=1))
    stamp_unit_s = time_resolution_s(t, valid)
    coarse = np.flatnonzero((stamp_unit_s >= 60.0) & (count >= 3))
    if coarse.size:
        interval[coarse] = np.fmin(interval[coarse], _minute_interval_s(t[coarse], valid[coarse]))
    resolution = register_resolution_wh(de, energy)
    return Prepared(
        count=count,
        valid=valid,
        t_ns=np.where(valid, t, 0),
        t_s=t_s,
        t0_ns=t0,
        energy_wh=energy,
        energy_ff_wh=energy_ff,
        has_energy=has_energy,
        n_energy=has_energy.sum(axis=1),
        power_w=power,
        offered_w=offered,
        soc_pct=soc,
        current_a=columns["current_a"],
        voltage_v=columns["voltage_v"],
        status=status,
        dt_s=dt,
        de_wh=de,
        bridged=bridged,
        interval_s=interval,
        in_order=in_order,
        resolution_wh=resolution,
        time_resolution_s=stamp_unit_s,
        peak_power_w=row_max(power),
        max_offered_w=row_max(offered),
        clock=clock,
    )


def register_resolution_wh(de_wh: FloatArray, energy_wh: FloatArray | None = None) -> FloatArray:
    """Per row, the register's resolution from its steps ``(n, k)`` (NaN: unknown): the
    smallest positive step bounds it from above; a meter counts in 1, 10, 100 or 1000 Wh, so
    more than that is not a resolution but a coarse sampling; 1 Wh when no step rose. Given the
    register values ``energy_wh`` (n, m; NaN where not read), the coarsest unit they are all
    whole multiples of bounds it too: sampled every 15 s at 45 kW every step rises by about
    190 Wh, yet values such as 1648373 count single Wh, so a fall of 136 Wh is no rounding;
    without the values, 100 Wh at most (a step of whole kWh says little by itself). Where no
    step rose, that unit is the resolution: a register that read 40958000 over a session of
    0.22 kWh counts in whole kWh as likely as not (a Wh register shows three zeros one time in
    a thousand), and "counted 0.000 kWh against 0.220 kWh" was no mismatch (depot fleet seed 1,
    R-0153-001083). The one rule for everything that asks whether a register step is within
    its rounding (meter_backwards, the billing view of profiles)."""
    smallest = smallest_rise(de_wh)
    resolution = np.clip(np.nan_to_num(smallest, nan=1.0), 1.0, REGISTER_UNITS_WH[-1])
    if energy_wh is None or not energy_wh.size:
        return np.asarray(np.minimum(resolution, 100.0))
    unit = register_unit_wh(energy_wh)
    return np.asarray(np.where(np.isnan(smallest), unit, np.minimum(resolution, unit)))


# A register this fine shows a step's mean power to within 1 % at the slowest charge (1.4 kW
# for a minute is 23 Wh); a coarser one (0.1 or 1 kWh) stays flat for minutes while a car
# charges, which would read as a rest.
REGISTER_POWER_MAX_RESOLUTION_WH = 10.0


def register_mean_power_w(de_wh: FloatArray, dt_s: FloatArray) -> FloatArray:
    """The register's mean power over each step (W, never below 0; NaN where the step has no
    time): what stall and the profiles take for power where a station samples only the
    register (OCPP 1.6's default), for a register of ``REGISTER_POWER_MAX_RESOLUTION_WH``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_w = np.where(dt_s > 0, de_wh * 3600.0 / dt_s, np.nan)
    return np.asarray(np.maximum(mean_w, 0.0))


def register_brackets(prep: Prepared) -> tuple[IntArray, IntArray]:
    """Per step ``(n, m - 1)``: the last reading with a register value at or before the step's
    start (-1: none) and the first at or after its end (``m``: none). Where every reading
    carries the register they are the step's own two; where a station sends it in some
    readings only, they bracket the steps between two such readings."""
    m = prep.has_energy.shape[1]
    idx = np.arange(m)
    last = np.maximum.accumulate(np.where(prep.has_energy, idx, -1), axis=1)[:, :-1]
    ahead = np.where(prep.has_energy, idx, m)[:, ::-1]
    nxt = np.minimum.accumulate(ahead, axis=1)[:, ::-1][:, 1:]
    return np.asarray(last), np.asarray(nxt)


def register_span_power_w(prep: Prepared) -> FloatArray:
    """Per step ``(n, m - 1)``: the register's mean power over the readings that bracket it
    (``register_brackets``; NaN where one is missing). A register sent in every fourth reading
    counts over four steps: its rise over one step's time read as four times the power, and the
    steps between as unknown (an AC station read every 15 min, the register hourly, charging at
    3.6 kW throughout, read as 45 min at rest: outside fleet seed 4, 433078)."""
    last, nxt = register_brackets(prep)
    m = prep.has_energy.shape[1]
    ok = (last >= 0) & (nxt < m)
    first, end = np.maximum(last, 0), np.minimum(nxt, m - 1)
    de = np.take_along_axis(prep.energy_wh, end, 1) - np.take_along_axis(prep.energy_wh, first, 1)
    dt = np.take_along_axis(prep.t_s, end, 1) - np.take_along_axis(prep.t_s, first, 1)
    return np.asarray(np.where(ok, register_mean_power_w(de, dt), np.nan))


# A phase's voltage where a reading carries current but no voltage (EU mains).
PHASE_V = 230.0
# Power values a row needs to be judged by its power: one before a change and two that show it
# held (``verdicts.MIN_POWER_READINGS``).
POWER_READINGS = 3


def power_from_current(
    prep: Prepared, rows: BoolArray | None = None, *, default_v: float = PHASE_V
) -> tuple[Prepared, BoolArray]:
    """``prep`` with each row that reports no power (fewer than ``POWER_READINGS`` values) but
    current at that many readings or more (and in ``rows``, if given) given each reading's
    current times its voltage (``default_v`` without one: NaN leaves such a reading's power
    unknown) as its power and peak; and which rows those are. An AC station sending
    Current.Import and Voltage, not power, is common (OCPP 1.6 leaves the measurands to
    configuration). The current is per phase (the event format's;
    ``ingest.ocppj.meter`` averages the phases) and the phases a car draws on are unknown, so
    the figure is one phase's power: a third of a three-phase car's. Judgements that compare
    a row's power with its own level, or with a floor far below any charge, can take it; one
    that needs the power itself (``MeterMismatch``) weighs the phases."""
    has_power = (~np.isnan(prep.power_w)).sum(axis=1)
    has_current = (~np.isnan(prep.current_a)).sum(axis=1)
    chosen = (has_power < POWER_READINGS) & (has_current >= POWER_READINGS)
    if rows is not None:
        chosen &= rows
    if not chosen.any():
        return prep, chosen
    volts = np.where(prep.voltage_v > 0, prep.voltage_v, default_v)
    power = np.where(chosen[:, None], prep.current_a * volts, prep.power_w)
    peak = np.where(chosen, row_max(power), prep.peak_power_w)
    return replace(prep, power_w=power, peak_power_w=peak), chosen


# Units that stamps are commonly truncated to: whole minutes (session tables), whole seconds
# (OCPP 1.6 firmware), milliseconds, microseconds; finer than that, nanoseconds.
_STAMP_UNITS_NS = (1_000, 1_000_000, NS_PER_S, 60 * NS_PER_S)


# The stamps a row's resolution is read from: its first few. A station's firmware stamps all
# its messages alike, and 16 stamps of millisecond resolution are all whole seconds only with
# a chance of 1e-48; reading every stamp would cost a few integer passes over the batch.
_STAMPS_READ = 16


def time_resolution_s(t_ns: IntArray, valid: BoolArray) -> FloatArray:
    """Per row, the coarsest unit that its trusted stamps are whole multiples of (seconds):
    60 for stamps in whole minutes, 1 for whole seconds, 0.001 for milliseconds. A time
    difference between two such stamps may be short of the true one by up to one unit (each
    end is truncated), so tolerances on time follow it. (A row without stamps: 60, unused.)"""
    n = t_ns.shape[0]
    if t_ns.shape[1] == 0:  # no row has a stamp (a batch of session tables' rows)
        return np.full(n, _STAMP_UNITS_NS[-1] / NS_PER_S)
    out = np.full(n, 1.0 / NS_PER_S)
    # the remainder within a minute: all the finer units divide a minute
    head = slice(0, _STAMPS_READ)
    rem = np.where(valid[:, head], t_ns[:, head] % (60 * NS_PER_S), 0)
    for unit_ns in _STAMP_UNITS_NS:  # finest first: the coarsest whole unit wins
        whole = ~np.any(rem % unit_ns != 0, axis=1)
        out[whole] = unit_ns / NS_PER_S
    return out


def stop_tolerance_s(batch: SessionBatch, prep: Prepared) -> FloatArray:
    """Per row, how far a session stop may be stamped before its start with no clock at
    fault: ``CLOCK_DISORDER_S``, or one unit of the stamps' resolution when the start, the
    stop and the readings (if any) are all stamped that coarsely. Session tables stamp both
    ends in whole minutes, rounded apart (the start up, the stop down) for a session shorter
    than a minute: a stop one minute before its start is their rounding, not a clock (a stop
    further back, or one in 1970, is)."""
    ends = np.stack((batch.start_ns, batch.stop_ns), axis=1)
    own = time_resolution_s(ends, ends != NO_TIME)
    return np.asarray(np.maximum(CLOCK_DISORDER_S, np.minimum(own, prep.time_resolution_s)))


def clock_unsure(batch: SessionBatch, now_ns: int) -> BoolArray:
    """Per row: would ``prepared`` set some stamps aside or reorder them at ``now_ns``? A
    reading after one that arrived later, a stamp more than ``CLOCK_BEFORE_START_S`` before the
    session's start, or beyond the trusted future (``CLOCK_FUTURE_S``)."""
    n, m = batch.n_sessions, batch.n_steps
    if not m:
        return np.zeros(n, dtype=bool)
    valid = batch.valid.astype(bool, copy=False)
    t, start = batch.t_ns, batch.start_ns
    early = (start - int(CLOCK_BEFORE_START_S * NS_PER_S))[:, None]
    before = valid & (start != NO_TIME)[:, None] & (t < early)
    future = valid & (t > now_ns + int(CLOCK_FUTURE_S * NS_PER_S))
    stop = _stop_bound_ns(batch.start_ns, batch.stop_ns)
    late = (stop + int(CLOCK_FUTURE_S * NS_PER_S))[:, None]
    future |= valid & (stop != NO_TIME)[:, None] & (t > late)
    disordered = _arrival_disordered(batch.arrival, valid)
    return np.asarray(disordered | before.any(axis=1) | future.any(axis=1))


def _stop_bound_ns(start: IntArray, stop: IntArray) -> IntArray:
    """Per row: the stop, where it can bound the readings' stamps: known, and not before the
    start (a stop stamped before its start is itself the wrong clock); NO_TIME elsewhere."""
    usable = (stop != NO_TIME) & ((start == NO_TIME) | (stop >= start))
    return np.asarray(np.where(usable, stop, NO_TIME))


def _arrival_disordered(arrival: IntArray, valid: BoolArray) -> BoolArray:
    """Per row: does a reading come after one that arrived later? Padding ranks as arriving
    last, so a reading after a padding hole counts too (as if arrival were set to the int64
    maximum in the padding, without building that copy)."""
    n, m = valid.shape
    if m < 2:
        return np.zeros(n, dtype=bool)
    back = arrival[:, 1:] < arrival[:, :-1]
    back |= ~valid[:, :-1]
    back &= valid[:, 1:]
    return np.asarray(back.any(axis=1))


def _median_of(values: FloatArray, k: IntArray) -> FloatArray:
    """``row_median`` of a temporary whose rows hold ``k`` values and NaN: sorted in place."""
    n, m = values.shape
    if m == 0:
        return np.full(n, np.nan)
    values.sort(axis=1)  # NaN sorts last
    lo = np.clip((k - 1) // 2, 0, m - 1)
    hi = np.clip(k // 2, 0, m - 1)
    rows = np.arange(n)
    med = 0.5 * (values[rows, lo] + values[rows, hi])
    return np.asarray(np.where(k > 0, med, np.nan))


@dataclass(frozen=True, slots=True)
class _Fixed:
    t: IntArray
    valid: BoolArray
    status: np.ndarray
    columns: dict[str, FloatArray]
    bridged: BoolArray
    clock: ClockEvidence


def _clock_evidence_empty(n: int) -> ClockEvidence:
    return ClockEvidence(
        n_bad=np.zeros(n, dtype=np.int64),
        before_start_s=np.zeros(n),
        future_s=np.zeros(n),
        disorder_s=np.zeros(n),
        start_ns=np.full(n, NO_TIME, dtype=np.int64),
        end_ns=np.full(n, NO_TIME, dtype=np.int64),
    )


def _scatter_clock(n: int, rows: IntArray, part: ClockEvidence) -> ClockEvidence:
    full = _clock_evidence_empty(n)
    for name in ClockEvidence.__dataclass_fields__:
        getattr(full, name)[rows] = getattr(part, name)
    return full


def _trusted_order(t: IntArray, trusted: BoolArray, keys: Sequence[FloatArray]) -> IntArray:
    """Per row, the column order that puts the trusted readings first in time order (ties of
    stamps as ``stamp_order`` orders them), the others after them in arrival order."""
    k, m = t.shape
    row = np.repeat(np.arange(k, dtype=np.int64), m)
    flat = stamp_order(
        row,
        np.where(trusted, t, _INT_MAX).reshape(-1),
        [np.where(trusted, key, np.nan).reshape(-1) for key in keys],
        np.tile(np.arange(m, dtype=np.int64), k),
    )
    return np.asarray((flat - row * m).reshape(k, m))


def _repeated(t: IntArray, valid: BoolArray, columns: dict[str, FloatArray]) -> BoolArray:
    """Per reading (rows in arrival order): an earlier-arrived reading of its row carries the
    same stamp and the same values in every column: it is a copy sent again. A town station
    re-sent readings 10-30 s after it first sent them, and the copy of one sent just before
    the latest, followed by a copy of the latest, read as a clock stepped back (town fleet seed
    13, TF-0250-2-008: normal)."""
    k, m = t.shape
    out = np.zeros((k, m), dtype=bool)
    if m < 2:
        return out
    order = np.argsort(np.where(valid, t, _INT_MAX), axis=1, kind="stable")  # ties: arrival
    ts = np.take_along_axis(t, order, axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    same = (ts[:, 1:] == ts[:, :-1]) & ok[:, 1:] & ok[:, :-1]
    for col in columns.values():
        if not same.any():
            return out
        c = np.take_along_axis(col, order, axis=1)
        a, b = c[:, 1:], c[:, :-1]
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    rows, cols = np.nonzero(same)
    out[rows, order[rows, cols + 1]] = True
    return out


def _fix_rows(
    t: IntArray,
    valid: BoolArray,
    arrival: IntArray,
    start: IntArray,
    has_start: BoolArray,
    now_ns: int,
    columns: dict[str, FloatArray],
    status: np.ndarray,
    stop: IntArray,
) -> _Fixed:
    """Reorder the affected rows by arrival, find the untrusted stamps, keep the trusted ones
    packed left in time order (``stop``: the rows' stops, NO_TIME while open). Works on the
    sub-array of affected rows at once."""
    order = np.argsort(arrival, axis=1, kind="stable")
    t = np.take_along_axis(t, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    status = np.take_along_axis(status, order, axis=1)
    columns = {name: np.take_along_axis(col, order, axis=1) for name, col in columns.items()}
    # a reading sent again (a MeterValues retried after a lost answer) says nothing new of the
    # clock: the copy is set aside (InfluxDB keeps one point per series and time as well)
    valid = valid & ~_repeated(t, valid, columns)

    before_ns = np.where(
        valid & has_start[:, None], (start[:, None] - t).astype(np.float64), -np.inf
    )
    future_ns = np.where(valid, (t - now_ns).astype(np.float64), -np.inf)
    # ... or after the session's own stop, by as much: a session's readings are taken while it
    # is open (a kerb station's clock 6 h ahead for its last four readings, the stop stamped
    # right: nothing was "in the future" of a day's file, and a 375 min stall took the clock
    # fault's place; town fleet seed 15, TF-0188-1-001)
    bound = _stop_bound_ns(start, stop)
    after_stop_ns = np.where(valid & (bound != NO_TIME)[:, None], (t - bound[:, None]), -np.inf)
    future_ns = np.fmax(future_ns, after_stop_ns.astype(np.float64))
    before = before_ns > CLOCK_BEFORE_START_S * NS_PER_S
    future = future_ns > CLOCK_FUTURE_S * NS_PER_S
    plausible = valid & ~before & ~future
    back_ns = _back_ns(t, plausible)
    disorder = back_ns > CLOCK_DISORDER_S * NS_PER_S
    interval_ns = _interval_ns(t, valid)
    ahead = _ahead_runs(t, plausible, disorder, columns, stop, interval_ns)
    if ahead.any():
        # the run that ran ahead is set aside; the readings after it are judged without it
        back_ns = _back_ns(t, plausible & ~ahead)
        disorder = (back_ns > CLOCK_DISORDER_S * NS_PER_S) & ~ahead
        ahead_by = _ahead_by_ns(t, plausible, ahead)
        back_ns = np.where(ahead, ahead_by, back_ns)
        disorder |= ahead
    _continue_stepped_runs(disorder, back_ns, before & valid)
    late = disorder & _delivered_late(disorder, back_ns, t, valid, columns, interval_ns)
    late &= ~ahead
    np.copyto(back_ns, -np.inf, where=late)
    disorder &= ~late
    trusted = plausible & ~disorder
    bad = valid & ~trusted

    # the trusted times around the bad readings: the last one before, the first one after
    last_trusted = np.maximum.accumulate(np.where(trusted, t, _INT_MIN), axis=1)
    next_trusted = np.minimum.accumulate(np.where(trusted, t, _INT_MAX)[:, ::-1], axis=1)[:, ::-1]
    lo = np.where(bad & (last_trusted != _INT_MIN), last_trusted, _INT_MAX).min(axis=1)
    hi = np.where(bad & (next_trusted != _INT_MAX), next_trusted, _INT_MIN).max(axis=1)
    n_bad = bad.sum(axis=1).astype(np.int64)
    clock = ClockEvidence(
        n_bad=n_bad,
        before_start_s=np.maximum(before_ns.max(axis=1, initial=-np.inf), 0.0) / NS_PER_S,
        future_s=np.maximum(future_ns.max(axis=1, initial=-np.inf), 0.0) / NS_PER_S,
        disorder_s=np.maximum(back_ns.max(axis=1, initial=-np.inf), 0.0) / NS_PER_S,
        start_ns=np.where((n_bad > 0) & (lo != _INT_MAX), lo, NO_TIME).astype(np.int64),
        end_ns=np.where((n_bad > 0) & (hi != _INT_MIN), hi, NO_TIME).astype(np.int64),
    )
    clock.future_s[~future.any(axis=1)] = 0.0
    clock.before_start_s[~before.any(axis=1)] = 0.0
    clock.disorder_s[~disorder.any(axis=1)] = 0.0

    # bad readings set aside between two trusted ones: that step is not a gap in the data
    bad_before = np.cumsum(bad, axis=1)
    # readings of one stamp by their registers where that fits, as ``assemble`` orders them
    # (``stamp_order``): the order of arrival is not the order of measurement for a reading
    # sent late
    keep_order = _trusted_order(t, trusted, [columns["energy_wh"], columns["soc_pct"]])
    t = np.take_along_axis(t, keep_order, axis=1)
    trusted_sorted = np.take_along_axis(trusted, keep_order, axis=1)
    bad_seen = np.take_along_axis(bad_before, keep_order, axis=1)
    bridged = (np.diff(bad_seen, axis=1) != 0) & trusted_sorted[:, 1:]
    status = np.take_along_axis(status, keep_order, axis=1)
    columns = {
        name: np.where(trusted_sorted, np.take_along_axis(col, keep_order, axis=1), np.nan)
        for name, col in columns.items()
    }
    status = np.where(trusted_sorted, status, np.int8(StatusCode.UNKNOWN)).astype(np.int8)
    return _Fixed(
        t=np.where(trusted_sorted, t, 0),
        valid=trusted_sorted,
        status=status,
        columns=columns,
        bridged=bridged,
        clock=clock,
    )


def _back_ns(t: IntArray, trusted: BoolArray) -> FloatArray:
    """Per reading (in arrival order): how far its stamp lies before the latest stamp of the
    ``trusted`` readings that arrived before it (-inf where not ``trusted`` or none before)."""
    k = t.shape[0]
    running = np.maximum.accumulate(np.where(trusted, t, _INT_MIN), axis=1)
    previous = np.concatenate((np.full((k, 1), _INT_MIN), running[:, :-1]), axis=1)
    return np.where(trusted & (previous != _INT_MIN), (previous - t).astype(np.float64), -np.inf)


# A clock that runs ahead for a while and is then stepped back (an RTC glitch that NTP corrects)
# leaves a short run of readings stamped too late between readings on the right clock. Judged
# by the running stamp alone, the run looked right and every reading after the step wrong,
# until the clock caught up: a 37-min "data gap" where those were set aside (field fleet seed
# 1, FLD0017A-45014: 11 readings 37 min ahead, then 66 set aside). Where a step back follows
# a run of fewer readings than the step would set aside, and the run's register (or SoC)
# shows it measured before the readings after the step (a run delivered out of order the
# other way round holds higher values: those after it were late), the run is set aside
# instead. At most AHEAD_RUNS per row are looked for.
AHEAD_RUNS = 8


def _ahead_runs(
    t: IntArray,
    plausible: BoolArray,
    disorder: BoolArray,
    columns: dict[str, FloatArray],
    stop: IntArray,
    interval_ns: FloatArray,
) -> BoolArray:
    """Per reading (in arrival order): part of a run stamped ahead (see above). A run stamped
    wholly after the session's stop (beyond CLOCK_BEFORE_START_S) is ahead however few readings
    follow it: the stop came on the right clock (field fleet seed 9, 5d1da108: 3 readings 24
    min ahead, 2 after them before the stop, a 25-min "data gap")."""
    ahead = np.zeros_like(plausible)
    tol = CLOCK_DISORDER_S * NS_PER_S
    energy, soc = columns["energy_wh"], columns["soc_pct"]
    late_ns = _late_behind_ns(interval_ns)
    for r in np.flatnonzero(disorder.any(axis=1)).tolist():
        for _ in range(AHEAD_RUNS):
            ok = plausible[r] & ~ahead[r]
            back = _back_ns(t[r : r + 1], ok[None, :])[0]
            stepped = np.flatnonzero(back > tol)
            if not stepped.size:
                break
            b = int(stepped[0])
            run: list[int] = []
            for j in range(b - 1, -1, -1):
                if not ok[j]:
                    continue
                if t[r, j] <= t[r, b] + tol:
                    break
                run.append(j)
            if not run:
                break
            top = t[r, run].max()
            after = np.flatnonzero(ok & (np.arange(ok.size) >= b) & (t[r] < top - tol))
            after_stop = stop[r] != NO_TIME and bool(
                (t[r, run] > stop[r] + CLOCK_BEFORE_START_S * NS_PER_S).all()
            )
            fewer = len(run) < after.size or (after_stop and after.size > 0)
            if not fewer or not _measured_before(energy[r], soc[r], run, after):
                break
            # ... unless the readings after it may as well have come late, and nothing they
            # show says otherwise: a few, as little behind as a late delivery can be, their
            # register and SoC the run's (one reading arriving 20 s early, then two 20-30 s
            # late, at a SoC that did not move: read as a clock 20 s ahead, a normal session
            # of outside fleet seed 20, 3473d648)
            small = float(top - t[r, after].min()) <= late_ns[r] and after.size <= LATE_RUN_MAX
            if small and not _values_moved(energy[r], soc[r], run, after):
                break
            ahead[r, run] = True
    return ahead


def _values_moved(energy: FloatArray, soc: FloatArray, run: list[int], after: IntArray) -> bool:
    """Whether the register or the SoC of the readings ``run`` and ``after`` differ at all
    (where both are known)."""
    for values in (energy, soc):
        mine = values[run][np.isfinite(values[run])]
        theirs = values[after][np.isfinite(values[after])]
        if (
            mine.size
            and theirs.size
            and not (np.all(theirs == mine[0]) and np.all(mine == mine[0]))
        ):
            return True
    return False


def _measured_before(energy: FloatArray, soc: FloatArray, run: list[int], after: IntArray) -> bool:
    """Whether the readings ``run`` may have been measured before ``after``, by the register
    (else the SoC): the run's last value at or below the first value after it, and below the
    last. Where neither moved (nothing flowed: a car plugged in and left) the values tell
    nothing either way, and the run, the smaller part, is taken for the wrong clock (field
    fleet seed 7, FLD0073B-24909: 3 readings 20 min ahead, then 12, at 0 W)."""
    known = False
    for values in (energy, soc):
        mine = values[run[0]] if np.isfinite(values[run[0]]) else np.nan
        theirs = values[after][np.isfinite(values[after])]
        if np.isfinite(mine) and theirs.size:
            if not np.all(theirs == mine):
                return bool(mine <= theirs[0] and mine < theirs[-1])
            known = True
    return known


def _ahead_by_ns(t: IntArray, plausible: BoolArray, ahead: BoolArray) -> FloatArray:
    """Per reading of an ahead run: how far it is stamped after the next trusted reading that
    arrived after it (how far its clock ran ahead); -inf elsewhere."""
    trusted_t = np.where(plausible & ~ahead, t, _INT_MAX)
    following = np.minimum.accumulate(trusted_t[:, ::-1], axis=1)[:, ::-1]
    nxt = np.concatenate((following[:, 1:], np.full((t.shape[0], 1), _INT_MAX)), axis=1)
    return np.where(ahead & (nxt != _INT_MAX), (t - nxt).astype(np.float64), -np.inf)


# Readings within CLOCK_DISORDER_S of a stamp that arrived before them are "swapped neighbours"
# only as neighbours: a run of readings set aside for a clock stepped back ends where its stamps
# climb back past the last trusted one, and its readings stamped in the last few seconds before
# that are the same wrong clock, not a swap. Left trusted, such a reading (measured an interval
# of the step later, so its register is higher) sits before the last right one in time order:
# a register "falling" by everything counted since (blind fleet seed 72: 29 Wh on a clock 118
# min back). The same for a run stamped before the session start that climbs back past the
# first reading: a clock stepped back 80 min on a station sampling every 5 min put a reading
# 0.5 s before the first one, 8.8 kWh above it (outside fleet seed 21, 07a2a74f). A run is
# followed this way for at most this many readings: the tolerance is a few seconds, so a run
# cannot end in more readings than there are seconds in it.
STEPPED_RUN_TAIL = int(CLOCK_DISORDER_S) + 1


def _continue_stepped_runs(disorder: BoolArray, back_ns: FloatArray, before: BoolArray) -> None:
    """Mark (in place) a reading stamped earlier than one that arrived before it, within the
    tolerance, as disorder too when the reading that arrived just before it is, or is stamped
    before the session start (``before``: a clock stepped back across the start, whose run
    climbs back past the first trusted reading; see above)."""
    within = (back_ns > 0) & ~disorder
    for _ in range(STEPPED_RUN_TAIL):
        prev = np.zeros_like(disorder)
        prev[:, 1:] = disorder[:, :-1] | before[:, :-1]
        grow = within & prev & ~disorder
        if not grow.any():
            return
        disorder |= grow


# A reading held back in transport (an OCPP call retried after its timeout, a queue flushed
# out of order) arrives minutes late at most, or after the next reading or two where a station
# samples every 10-15 min (a retried MeterValues lands after the next one: one interval back);
# a clock stepped back (local time written as UTC, a wrong NTP server) is off by a zone's
# offset, an hour or more in all but a few zones, and a lone such reading is more than
# LATE_DELIVERY_INTERVALS behind only where the station samples less often than every 30 min.
LATE_DELIVERY_MAX_S = 5 * 60.0
LATE_DELIVERY_INTERVALS = 2.0
# A value that rose by at most this many of its smallest steps rose by its rounding (both ends
# rounded: meter.ROUNDING_STEPS), which says nothing of when it was measured.
LATE_ROUNDING_STEPS = 2.0
# ... compared with at most this many readings that arrived before it (a retried MeterValues
# lands after the next one or two; a row whose every stamp is out of order would otherwise cost
# its length squared)
LATE_AHEAD_ARRIVALS = 32


def _late_behind_ns(interval_ns: FloatArray) -> FloatArray:
    """Per row, how far behind a reading delivered late may be stamped: LATE_DELIVERY_MAX_S, or
    LATE_DELIVERY_INTERVALS sampling intervals (``interval_ns``, NaN: unknown) if longer."""
    return np.asarray(
        np.fmax(LATE_DELIVERY_MAX_S * NS_PER_S, LATE_DELIVERY_INTERVALS * interval_ns)
    )


def readings_sharing_stamp(t_ns: IntArray, valid: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Per reading ``(n, m)``: how many readings of its row share its stamp (rows in time
    order, so that equal stamps are neighbours: whole minutes, say), NaN where not valid; and
    per row the usual count, the median of those over its readings, rounded down."""
    n, m = t_ns.shape
    idx = np.arange(m)
    new = np.ones((n, m), dtype=bool)
    new[:, 1:] = t_ns[:, 1:] != t_ns[:, :-1]
    ends = np.concatenate((new[:, 1:], np.ones((n, 1), dtype=bool)), axis=1)
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, idx, m)[:, ::-1], axis=1)[:, ::-1]
    counts = np.where(valid, last - first + 1, np.nan).astype(np.float64)
    usual = np.floor(_median_of(counts.copy(), valid.sum(axis=1)))  # sorts its argument
    return counts, usual


def _minute_interval_s(t: IntArray, valid: BoolArray) -> FloatArray:
    """Per row stamped in whole minutes (in time order): the sampling interval read off how many
    readings a minute holds, 60 s over the usual count (the median, over its readings, of the
    count of readings sharing its stamp); NaN where that is under 2. Between such stamps the
    only positive steps are whole minutes, and a data gap among a few readings lengthens their
    median: 7 readings at 30 s, a gap of 24 min among them, gave "750 s" and hid the gap (an
    independently written fleet, seed 154, 6654e9a1)."""
    _, usual = readings_sharing_stamp(t, valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(usual >= 2.0, 60.0 / usual, np.nan))


def _interval_ns(t: IntArray, valid: BoolArray) -> FloatArray:
    """Per row: the sampling interval, the median step between its valid stamps in time
    order (NaN with fewer than two)."""
    ordered = np.sort(np.where(valid, t, _INT_MAX), axis=1)
    steps = np.diff(ordered, axis=1).astype(np.float64)
    both = (ordered[:, 1:] != _INT_MAX) & (ordered[:, :-1] != _INT_MAX)
    steps = np.where(both & (steps > 0), steps, np.nan)
    out = np.full(t.shape[0], np.nan)
    some = np.isfinite(steps).any(axis=1)
    if some.any():
        out[some] = np.nanmedian(steps[some], axis=1)
    return out


def _delivered_late(
    disorder: BoolArray,
    back_ns: FloatArray,
    t: IntArray,
    valid: BoolArray,
    columns: dict[str, FloatArray],
    interval_ns: FloatArray,
) -> BoolArray:
    """Per reading (in arrival order) stamped earlier than one that arrived before it: was it
    delivered late with a right stamp, rather than stamped by a wrong clock?

    - Its register (or SoC) is below what an earlier-arriving reading already showed: it was
      measured before that one, as its stamp says. A clock stepped back stamps a later
      measurement earlier: its register is the highest yet. (Both count up while charging; a
      flat register tells nothing.)
    - Without such evidence (and none against it: a register above those of the readings
      that arrived before it stamped later, read after them): it is alone (the readings
      arriving just before and after it are in order) and at most ``LATE_DELIVERY_MAX_S``
      behind, or ``LATE_DELIVERY_INTERVALS`` sampling intervals (``interval_ns``, per row):
      the stream goes on at the right time after it, where a stepped clock would go on from
      its wrong time.
    Independently written fleets deliver a few readings late (blind fleet seed 23: 27 normal
    sessions were flagged ``clock_fault`` for one such reading; seed 72 with stations sampling
    every 10 min: one reading 10 min late). Evidence against compares only with the readings
    it is out of order with: a SoC above that of a reading stamped (and measured) before it
    says nothing (seed 334 with stations sampling every 10 min, 456112: a reading with SoC
    retried after one from a car that had stopped reporting SoC, read as a stepped clock)."""
    k, m = valid.shape
    evidence = np.zeros((k, m), dtype=bool)
    against = np.zeros((k, m), dtype=bool)
    # the readings that may have come late
    near = disorder & (back_ns <= _late_behind_ns(interval_ns)[:, None])
    stamps = np.where(valid, t, _INT_MIN)
    latest = np.maximum.accumulate(stamps, axis=1)
    for name in ("energy_wh", "soc_pct"):
        col = np.where(valid, columns[name], np.nan)
        running = np.fmax.accumulate(col, axis=1)
        before = np.concatenate((np.full((k, 1), np.nan), running[:, :-1]), axis=1)
        evidence |= col < before  # NaN on either side compares False
        # the lowest value among the readings that arrived before it, stamped after it: by
        # lag, until no earlier arrival is stamped after any reading that may have come late
        # (``latest``; those are at most ``_late_behind_ns`` back); above it by more than
        # the values' rounding (LATE_ROUNDING_STEPS of their smallest step: an idle register
        # wavers by 1 Wh, seed 314, 505839). Both count up: a reading measured at its stamp
        # shows no more than any measured after it, so one above the lowest of them was
        # measured after that one. The highest was asked once, and a clock 36 min ahead for
        # six readings, then stepped back to two readings on the old grid, passed for late
        # deliveries: the register at the end was flat, so the last reading ahead matched them
        # (field fleet seed 14, FLD0083B-14281: missed, and its interleaved register a "fall")
        steps = np.abs(np.diff(col, axis=1)) if m > 1 else np.zeros((k, 0))
        if name == "energy_wh":
            unit = register_resolution_wh(steps, col)
        else:  # SoC in whole percents or finer
            unit = np.fmin(np.nan_to_num(smallest_rise(steps), nan=1.0), 1.0)
        rounding = LATE_ROUNDING_STEPS * unit
        ahead = np.full((k, m), np.nan)
        for lag in range(1, min(m, LATE_AHEAD_ARRIVALS + 1)):
            if not ((latest[:, :-lag] > stamps[:, lag:]) & near[:, lag:]).any():
                break
            later = np.where(stamps[:, :-lag] > stamps[:, lag:], col[:, :-lag], np.nan)
            np.fmin(ahead[:, lag:], later, out=ahead[:, lag:])
        # measured after the readings it is out of order with
        against |= col > ahead + rounding[:, None]
    excusable = near & ~against & ~_stream_follows_the_run(disorder, t, valid, interval_ns)
    return np.asarray(evidence | _short_late_runs(disorder, excusable))


# How closely a stream's next reading keeps its sampling interval: a tenth of it, and a few
# seconds of jitter. A triggered reading (a status change) may fall anywhere, so the test below
# asks both that the next reading keeps the interval from the run and that it is well off the
# interval (a quarter of it) from the reading before the run.
STREAM_KEEPS_INTERVAL = 0.1
STREAM_JITTER_S = 2.0
STREAM_OFF_INTERVAL = 0.25
STREAM_MIN_STEPS = 3


def _stream_follows_the_run(
    disorder: BoolArray, t: IntArray, valid: BoolArray, interval_ns: FloatArray
) -> BoolArray:
    """Per reading of a run of ``disorder`` readings (in arrival order): the reading that
    arrived next goes on one sampling interval (``interval_ns``) after the run's last stamp,
    not one after the latest stamp before the run. A reading delivered late leaves the
    stream's timing as it was; a clock stepped back carries it on from its wrong time. A home
    charger sampling every 5 min stepped 9.7 min back: 22:26:24, then 22:21:40, then 22:26:40
    and on every 5 min from there, its register flat (the car done): read as one reading
    delivered 4.7 min late (town fleet seeds 3-7, 5 such clocks, 9.7-39 min back)."""
    out = np.zeros(disorder.shape, dtype=bool)
    begins, label, count = run_labels(disorder)
    if count == 0:
        return out
    k, m = disorder.shape
    stamps = np.where(valid, t, _INT_MIN)
    latest = np.maximum.accumulate(stamps, axis=1)  # the latest stamp arrived so far
    rows, first = np.nonzero(begins)
    ends = disorder & ~np.concatenate((disorder[:, 1:], np.zeros((k, 1), dtype=bool)), axis=1)
    last = np.nonzero(ends)[1]  # runs in the same order as their beginnings
    after = last + 1
    has_next = (first > 0) & (after < m)
    rows, first, last, after = rows[has_next], first[has_next], last[has_next], after[has_next]
    nxt = t[rows, after]
    ok = valid[rows, after] & valid[rows, last] & (latest[rows, first - 1] != _INT_MIN)
    # the interval in arrival order: in time order a clock stepped back interleaves its
    # readings with the ones before (15 min sampling read as 12)
    # (only the rows with a run)
    arrival_iv = np.full(k, np.nan)
    judged = np.unique(rows)
    part = stamps[judged]
    steps = np.diff(part, axis=1).astype(np.float64)
    steps[(part[:, 1:] == _INT_MIN) | (part[:, :-1] == _INT_MIN) | (steps <= 0)] = np.nan
    # ... from STREAM_MIN_STEPS steps in order at least: in a session of three readings, one
    # delivered an interval late leaves one step in arrival order, two intervals long, and the
    # stream "kept" it (an independently written fleet, seed 133 half sparse, TX-0109-664996:
    # 12:25, then 12:10, then 12:40 on a 15 min grid, read as a stepped clock)
    some = np.isfinite(steps).sum(axis=1) >= STREAM_MIN_STEPS
    if some.any():
        arrival_iv[judged[some]] = np.nanmedian(steps[some], axis=1)
    iv = np.where(np.isfinite(arrival_iv[rows]), arrival_iv[rows], interval_ns[rows])
    from_run = (nxt - t[rows, last]).astype(np.float64)
    from_before = (nxt - latest[rows, first - 1]).astype(np.float64)
    keeps = np.abs(from_run - iv) <= STREAM_KEEPS_INTERVAL * iv + STREAM_JITTER_S * NS_PER_S
    off = np.abs(from_before - iv) > STREAM_OFF_INTERVAL * iv
    # ... told apart only where the stamps are much finer than the interval (whole minutes on
    # a station sampling every minute put two readings in one minute and none in the next: a
    # reading delivered a minute late read as a stepped clock, first fleet seed 351, 81375)
    res_ns = np.full(k, np.inf)
    res_ns[judged] = time_resolution_s(t[judged], valid[judged]) * NS_PER_S
    fine = res_ns[rows] <= STREAM_KEEPS_INTERVAL * iv
    follows = ok & keeps & off & fine & np.isfinite(iv)
    # ... or, on a station sampling every minute or less often, the readings after the run keep
    # its phase in the sampling grid and those before it kept another: a stepped clock moves
    # the grid, a late delivery leaves it (a reading missing after the run, the next one came
    # two intervals on: town fleet seed 8, a clock 11.7 min back on a 15 min grid)
    phased = fine & np.isfinite(iv) & (iv >= PHASE_MIN_INTERVAL_S * NS_PER_S)
    if phased.any():
        follows |= phased & _grid_moved(
            t, valid, disorder, rows, first, last, np.where(phased, iv, np.nan)
        )
    which = label[rows, first]
    stepped = np.zeros(count, dtype=bool)
    stepped[which[follows]] = True
    out[disorder] = stepped[label[disorder]]
    return out


# The sampling grid's phase (a stamp modulo the interval) is read from PHASE_READINGS readings
# on each side of a run, on stations sampling every PHASE_MIN_INTERVAL_S or less often (faster,
# a clock stepped back puts many readings behind and is told by their number): readings agree
# within PHASE_AGREE of the interval (and 2 s), and a grid moved by more than PHASE_MOVED of
# it (and 4 times the agreement) is another grid.
PHASE_READINGS = 3
PHASE_MIN_INTERVAL_S = 60.0
PHASE_AGREE = 0.01
PHASE_MOVED = 0.05


def _phase_gap(a: FloatArray, b: FloatArray, iv: FloatArray) -> FloatArray:
    """How far apart two phases in a grid of ``iv`` are, the short way round."""
    d = np.abs(np.mod(a - b, iv))
    return np.asarray(np.fmin(d, iv - d))


def _grid_moved(
    t: IntArray,
    valid: BoolArray,
    disorder: BoolArray,
    rows: IntArray,
    first: IntArray,
    last: IntArray,
    iv: FloatArray,
) -> BoolArray:
    """Per run (``rows``, ``first``, ``last`` in arrival order): the ``PHASE_READINGS`` valid
    readings before it share one phase, the run's last reading and the ones after it
    (``PHASE_READINGS``, in order) share another, and the two lie ``PHASE_MOVED`` apart."""
    m = t.shape[1]
    agree = np.fmax(PHASE_AGREE * iv, 2.0 * NS_PER_S)
    moved = np.fmax(PHASE_MOVED * iv, 4.0 * agree)
    run_phase = np.mod(t[rows, last].astype(np.float64), iv)
    ok = np.isfinite(iv)
    befores = []
    for j in range(1, PHASE_READINGS + 1):  # the readings just before the run
        at = first - j
        inside = at >= 0
        ok &= inside
        at = np.maximum(at, 0)
        ok &= valid[rows, at] & ~disorder[rows, at]
        befores.append(np.mod(t[rows, at].astype(np.float64), iv))
    before_phase = befores[0]
    for phase in befores[1:]:
        ok &= _phase_gap(phase, before_phase, iv) <= agree
    for j in range(1, PHASE_READINGS + 1):  # the readings just after it
        at = last + j
        inside = at < m
        ok &= inside
        at = np.minimum(at, m - 1)
        ok &= valid[rows, at] & ~disorder[rows, at]
        ok &= _phase_gap(np.mod(t[rows, at].astype(np.float64), iv), run_phase, iv) <= agree
    return np.asarray(ok & (_phase_gap(run_phase, before_phase, iv) > moved))


# Readings out of order together, at most this many in a row, may all have come late: a retried
# MeterValues carries its neighbours with it, and one reading that arrives early makes the next
# ones look late (minute stamps, 14:18 before 14:16 and 14:17: read as two readings with a
# wrong clock on a normal session; outside fleet seed 3, 710353). A clock stepped back stamps
# every reading until it is set again: far more of them, or further behind.
LATE_RUN_MAX = 3


def _short_late_runs(disorder: BoolArray, excusable: BoolArray) -> BoolArray:
    """Per reading: part of a run of consecutive ``disorder`` readings of at most
    ``LATE_RUN_MAX``, every one of them ``excusable`` (near enough, nothing against it)."""
    out = np.zeros(disorder.shape, dtype=bool)
    _, label, count = run_labels(disorder)
    if count == 0:
        return out
    length = np.bincount(label[disorder], minlength=count)
    spoiled = np.bincount(label[disorder & ~excusable], minlength=count) > 0
    good = (length <= LATE_RUN_MAX) & ~spoiled
    out[disorder] = good[label[disorder]]
    return out


def take_rows(prep: Prepared, rows: IntArray) -> Prepared:
    """The ``Prepared`` view of some rows only (detectors do their costly work on the rows
    that a cheap first pass found worth a closer look)."""
    fields: dict[str, object] = {}
    for name in Prepared.__dataclass_fields__:
        value = getattr(prep, name)
        if isinstance(value, ClockEvidence):
            fields[name] = ClockEvidence(
                **{k: getattr(value, k)[rows] for k in ClockEvidence.__dataclass_fields__}
            )
        else:
            fields[name] = value[rows]
    return Prepared(**fields)  # type: ignore[arg-type]


def row_blocks(
    batch: SessionBatch, block_cells: int = BLOCK_CELLS
) -> tuple[list[SessionBatch], IntArray | None]:
    """``batch`` in blocks of rows of about ``block_cells`` padded samples, and the row of the
    batch each block row is (None: the blocks are the rows in order, views of the batch). A
    batch that is mostly padding comes in blocks of rows of like length, each cut to its
    widest row (``COMPACT_BELOW_FILL``): for work whose result for a row depends on that row
    alone (per-row scoring, the features a detector learns from), the same results. A
    ``compact_history`` gives the blocks it was made of."""
    held = batch.extra.get(_COMPACT_KEY)
    if isinstance(held, tuple):
        cells, blocks, order = held
        if cells != block_cells:
            raise ValueError(f"a compact history holds its rows in blocks of {cells} cells")
        return list(blocks), order
    n, m = batch.n_sessions, batch.n_steps
    valid = batch.valid
    # each row's width: up to its last valid sample (padding is after them, by the contract)
    width = (
        np.where(valid.any(axis=1), m - np.argmax(valid[:, ::-1], axis=1), 0)
        if m
        else np.zeros(n, dtype=np.int64)
    )
    layout = block_layout(width, m, block_cells)
    if layout is None:
        if n * max(m, 1) <= block_cells:
            return [batch], None
        step = max(1, block_cells // max(m, 1))
        return [batch.rows(start, min(start + step, n)) for start in range(0, n, step)], None
    order, bounds = layout
    return [_trimmed(batch, order[begin:end], cut) for begin, end, cut in bounds], order


def is_compact(batch: SessionBatch) -> bool:
    """Whether ``batch`` is a ``compact_history`` (its samples only in its blocks)."""
    return isinstance(batch.extra.get(_COMPACT_KEY), tuple)


def block_layout(
    width: IntArray, m: int, block_cells: int = BLOCK_CELLS
) -> tuple[IntArray, list[tuple[int, int, int]]] | None:
    """How ``row_blocks`` cuts rows ``width`` samples wide in a batch ``m`` wide: None when it
    takes the batch as it is (mostly samples, ``COMPACT_BELOW_FILL``); else the rows in order
    of width and each block as ``(begin, end, columns)`` in that order."""
    n = int(width.size)
    if int(width.sum()) >= COMPACT_BELOW_FILL * n * m:
        return None
    order = np.argsort(width, kind="stable")
    # at least two columns (as many as there are): a step between samples always has a shape
    cut: list[int] = np.minimum(np.maximum(width[order], 2), m).tolist()
    bounds: list[tuple[int, int, int]] = []
    begin = 0
    for end in range(1, n + 1):
        # widths ascend: the row just taken is the block's widest
        if end == n or (end + 1 - begin) * cut[end] > block_cells:
            bounds.append((begin, end, cut[end - 1]))
            begin = end
    return np.asarray(order, dtype=np.int64), bounds


def compact_history(
    blocks: Sequence[SessionBatch], order: IntArray, width: int, block_cells: int = BLOCK_CELLS
) -> SessionBatch:
    """A batch of the rows ``blocks`` hold (as ``row_blocks`` cuts a batch ``width`` wide:
    ``order`` gives each block row's row), to fit detectors on without the padded arrays: its
    per-session values are the rows' own, its sample arrays only padding, without memory
    (read-only views of one value), and ``row_blocks`` gives back ``blocks``. What detectors
    learn from samples they read a block at a time (``row_blocks``), where each row's result
    is its own: the same as from the padded batch (``tests/analytics/test_compact_history.py``).
    The padded one of a mixed fleet's history is ~150 MB, nine tenths padding."""
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    fields: dict[str, Any] = {}
    for name in SessionBatch.__dataclass_fields__:
        if name == "extra":
            continue
        first = getattr(blocks[0], name)
        if first.ndim == 1:
            fields[name] = np.concatenate([getattr(block, name) for block in blocks])[back]
        else:
            pad = np.array(np.nan if first.dtype.kind == "f" else 0, dtype=first.dtype)
            fields[name] = np.broadcast_to(pad, (order.size, width))
    return SessionBatch(**fields, extra={_COMPACT_KEY: (block_cells, tuple(blocks), order)})


def _trimmed(batch: SessionBatch, rows: IntArray, width: int) -> SessionBatch:
    """The chosen rows of ``batch`` with the first ``width`` columns of each sample array."""
    picked = {}
    for name in batch.__dataclass_fields__:
        if name == "extra":
            continue
        value = getattr(batch, name)
        picked[name] = value[:, :width][rows] if value.ndim == 2 else value[rows]
    return SessionBatch(**picked)
