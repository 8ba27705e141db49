"""Array helpers the detectors share: the cleaned sample view, masked diffs, run lengths, scores.

Every detector reads the same ``Prepared`` view of a batch, built once per ``(batch, now_ns)``
and cached in ``batch.extra``:

- samples whose timestamp cannot be trusted (before the session start, far after ``now_ns``,
  or earlier than a reading that arrived before them) are set aside, so a charger with a bad
  clock shows as a ``clock_fault`` and not also as a gap, a backwards register or a jump;
- the trusted samples of each row are packed to the left, in time order, so a diff along
  axis 1 is always between consecutive trusted readings;
- per row: the sampling interval (median time step), the register resolution, the rated power.

All of it is masked NumPy work over ``(n, m)`` arrays; affected rows (a few) are reordered as a
sub-array, never one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.base import KindResult

NS_PER_S = 1_000_000_000
_INT_MAX = np.iinfo(np.int64).max
_INT_MIN = np.iinfo(np.int64).min

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
    status: np.ndarray  # int8 StatusCode
    dt_s: FloatArray  # (n, m - 1) time between consecutive trusted samples, NaN when not both
    de_wh: FloatArray  # (n, m - 1) register step, NaN when either end has no register value
    bridged: BoolArray  # (n, m - 1) readings with a bad clock were set aside inside this step
    interval_s: FloatArray  # (n,) median time step, NaN with fewer than two samples
    in_order: BoolArray  # (n,) the trusted times never decrease along the row (by the batch's
    #                      contract they do not; a row that breaks it has ``dt_s`` clipped at 0)
    resolution_wh: FloatArray  # (n,) register resolution (smallest positive step, capped)
    peak_power_w: FloatArray  # (n,) highest reported power, NaN when none
    max_offered_w: FloatArray  # (n,) highest offered power, NaN when none
    clock: ClockEvidence


def excess_score(x: FloatArray, *, steepness: float = 4.0) -> FloatArray:
    """Map evidence over threshold (``x``, 1 at the threshold) to [0, 1]: 0.5 at the threshold,
    rising smoothly (0.94 at twice it); NaN stays NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        xk = np.power(np.maximum(x, 0.0), steepness)
        out = xk / (1.0 + xk)
    return np.asarray(np.where(np.isinf(xk), 1.0, out))


def row_max(values: FloatArray) -> FloatArray:
    """NaN-ignoring max along axis 1; NaN for a row without values (no warning)."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    return np.asarray(np.fmax.reduce(values, axis=1))


def row_min(values: FloatArray) -> FloatArray:
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    return np.asarray(np.fmin.reduce(values, axis=1))


def row_sum(values: FloatArray) -> FloatArray:
    """NaN-ignoring sum along axis 1 that does not depend on how wide the batch's padding is
    (see ``row_sum_where``)."""
    return row_sum_where(values, ~np.isnan(values))


def row_sum_where(values: FloatArray, where: BoolArray) -> FloatArray:
    """Sum along axis 1 of ``values`` where ``where`` is True (elsewhere, NaN included, counts
    0), in a way that does not depend on how wide the batch's padding is.

    NumPy's own sum is pairwise with split points that move with the row length, so the last
    bits of a row's total would change with the padding, and with them, rarely, a flag at its
    threshold. Here the tree is fixed from the first column: groups of 8 columns are summed left
    to right, then groups of 8 of those, and so on; trailing zeros only add zeros to it. About
    as fast as one pass over the data."""
    n, k = values.shape
    if k == 0 or n == 0:
        return np.zeros(n)
    x = np.where(where, values, 0.0)
    while (width := x.shape[1]) > 1:
        whole = width - width % 8
        sums = [_sum_of_eights(x[:, :whole])] if whole else []
        if whole < width:  # the last, partial group, padded with zeros
            last = np.zeros((n, 8))
            last[:, : width - whole] = x[:, whole:]
            sums.append(_sum_of_eights(last))
        x = np.concatenate(sums, axis=1) if len(sums) > 1 else sums[0]
    return np.asarray(x[:, 0] + 0.0)  # + 0.0: a total of -0.0 reads 0.0 whatever the padding


def _sum_of_eights(x: FloatArray) -> FloatArray:
    """Each group of 8 columns summed left to right, ``(n, 8 g) -> (n, g)``: eight strided
    additions over the whole array (faster than a reduction over a short axis)."""
    total = x[:, 0::8] + x[:, 1::8]
    for j in range(2, 8):
        total += x[:, j::8]
    return np.asarray(total)


def row_median(values: FloatArray) -> FloatArray:
    """NaN-ignoring median along axis 1 by one sort; NaN for an empty row (no warning)."""
    n, m = values.shape
    if m == 0:
        return np.full(n, np.nan)
    ordered = np.sort(values, axis=1)  # NaN sorts last
    k = np.sum(~np.isnan(values), axis=1)
    lo = np.clip((k - 1) // 2, 0, m - 1)
    hi = np.clip(k // 2, 0, m - 1)
    rows = np.arange(n)
    med = 0.5 * (ordered[rows, lo] + ordered[rows, hi])
    return np.asarray(np.where(k > 0, med, np.nan))


def forward_fill(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the last value before it in its row (leading NaN stay)."""
    m = values.shape[1]
    idx = np.where(np.isnan(values), 0, np.arange(m))
    np.maximum.accumulate(idx, axis=1, out=idx)
    return np.asarray(np.take_along_axis(values, idx, axis=1))


@dataclass(frozen=True, slots=True)
class Runs:
    """For each position of a boolean ``(n, k)`` mask: the run of True it belongs to so far."""

    length: np.ndarray  # int32: positions in the run up to and including this one (0: False)
    total: FloatArray  # sum of ``weight`` over the run so far
    first: np.ndarray  # int32: index where the run began (-1 where False)


def runs(mask: BoolArray, weight: FloatArray | None = None) -> Runs:
    """Run lengths and running sums of a non-negative ``weight`` over runs of True, by
    cumulative sums reset at every False (no loop). ``total`` is 0 without a weight. ``weight``
    must not be NaN where ``mask`` is True. Only rows with a True are worked on."""
    n, k = mask.shape
    rows = np.flatnonzero(mask.any(axis=1)) if k else np.zeros(0, dtype=np.int64)
    length = np.zeros((n, k), dtype=np.int32)
    first = np.full((n, k), -1, dtype=np.int32)
    total = np.zeros((n, k))
    if rows.size == 0:
        return Runs(length=length, total=total, first=first)
    sub = mask[rows]
    pos = np.arange(k, dtype=np.int32)
    last_false = np.maximum.accumulate(np.where(sub, np.int32(-1), pos), axis=1)
    length[rows] = np.where(sub, pos - last_false, 0)
    first[rows] = np.where(sub, last_false + 1, -1)
    if weight is not None:
        cs = np.cumsum(np.where(sub, weight[rows], 0.0), axis=1)
        base = np.maximum.accumulate(np.where(sub, 0.0, cs), axis=1)  # cs at the last False
        total[rows] = np.where(sub, cs - base, 0.0)
    return Runs(length=length, total=total, first=first)


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
    }
    status = batch.status
    clock = _clock_evidence_empty(n)
    bridged = np.zeros((n, max(m - 1, 0)), dtype=bool)

    start = batch.start_ns
    has_start = start != NO_TIME
    before = (
        valid & has_start[:, None] & (t < (start - int(CLOCK_BEFORE_START_S * NS_PER_S))[:, None])
    )
    future = valid & (t > now_ns + int(CLOCK_FUTURE_S * NS_PER_S))
    disordered = _arrival_disordered(batch.arrival, valid)
    affected = np.flatnonzero(disordered | before.any(axis=1) | future.any(axis=1))
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
    # the smallest positive register step bounds the resolution from above; a meter counts in
    # 1, 10 or 100 Wh, so more than 100 Wh is not a resolution but a coarse sampling. (A masked
    # reduction starting from NaN: NaN for a row without a positive step, like row_min.)
    smallest = (
        np.fmin.reduce(de, axis=1, where=de > 0, initial=np.nan) if m > 1 else np.full(n, np.nan)
    )
    resolution = np.clip(np.nan_to_num(smallest, nan=1.0), 1.0, 100.0)
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
        status=status,
        dt_s=dt,
        de_wh=de,
        bridged=bridged,
        interval_s=interval,
        in_order=in_order,
        resolution_wh=resolution,
        peak_power_w=row_max(power),
        max_offered_w=row_max(offered),
        clock=clock,
    )


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


def _fix_rows(
    t: IntArray,
    valid: BoolArray,
    arrival: IntArray,
    start: IntArray,
    has_start: BoolArray,
    now_ns: int,
    columns: dict[str, FloatArray],
    status: np.ndarray,
) -> _Fixed:
    """Reorder the affected rows by arrival, find the untrusted stamps, keep the trusted ones
    packed left in time order. Works on the sub-array of affected rows at once."""
    k = t.shape[0]
    order = np.argsort(arrival, axis=1, kind="stable")
    t = np.take_along_axis(t, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    status = np.take_along_axis(status, order, axis=1)
    columns = {name: np.take_along_axis(col, order, axis=1) for name, col in columns.items()}

    before_ns = np.where(
        valid & has_start[:, None], (start[:, None] - t).astype(np.float64), -np.inf
    )
    future_ns = np.where(valid, (t - now_ns).astype(np.float64), -np.inf)
    before = before_ns > CLOCK_BEFORE_START_S * NS_PER_S
    future = future_ns > CLOCK_FUTURE_S * NS_PER_S
    plausible = valid & ~before & ~future
    running = np.maximum.accumulate(np.where(plausible, t, _INT_MIN), axis=1)
    previous = np.concatenate((np.full((k, 1), _INT_MIN), running[:, :-1]), axis=1)
    back_ns = np.where(
        plausible & (previous != _INT_MIN), (previous - t).astype(np.float64), -np.inf
    )
    disorder = back_ns > CLOCK_DISORDER_S * NS_PER_S
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
    keep_order = np.argsort(np.where(trusted, t, _INT_MAX), axis=1, kind="stable")
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


@dataclass(frozen=True, slots=True)
class StationRatings:
    """Rated power per station learned from history: the highest ``power_offered_w`` seen on it,
    else the highest reported power (a charger offers its rating whenever nothing limits it)."""

    station_ids: np.ndarray  # sorted, object (str)
    rated_w: FloatArray
    # ``station_ids`` as a fixed-width str array for ``searchsorted``: converted once here,
    # not on every lookup (a few thousand stations take longer to convert than to search)
    _keys: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", self.station_ids.astype(str))

    @classmethod
    def learn(cls, batch: SessionBatch) -> StationRatings:
        if batch.n_sessions == 0 or batch.n_steps == 0:
            return cls(np.zeros(0, dtype=object), np.zeros(0))
        valid = batch.valid
        offered = row_max(np.where(valid, batch.power_offered_w, np.nan))
        power = row_max(np.where(valid, batch.power_w, np.nan))
        keys, inverse = np.unique(batch.station_id.astype(str), return_inverse=True)
        best_offered = np.full(keys.size, np.nan)
        best_power = np.full(keys.size, np.nan)
        np.fmax.at(best_offered, inverse, offered)
        np.fmax.at(best_power, inverse, power)
        rated = np.where(np.isnan(best_offered), best_power, best_offered)
        return cls(keys.astype(object), rated)

    def lookup(self, station_id: np.ndarray) -> FloatArray:
        """The learned rating of each row's station, NaN for a station never seen."""
        n = station_id.shape[0]
        if self.station_ids.size == 0 or n == 0:
            return np.full(n, np.nan)
        ids = station_id.astype(str)
        keys = self._keys
        pos = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
        return np.asarray(np.where(keys[pos] == ids, self.rated_w[pos], np.nan))


def rated_power_w(prep: Prepared, learned: FloatArray) -> FloatArray:
    """Each row's rated power: the learned station rating, or what the row itself shows (its
    highest offered power, else its highest power), whichever is higher; NaN when unknown."""
    own = np.where(np.isnan(prep.max_offered_w), prep.peak_power_w, prep.max_offered_w)
    rated = np.fmax(learned, own)
    return np.asarray(np.where(rated > 0, rated, np.nan))


def trapezoid_wh(power_w: FloatArray, dt_s: FloatArray) -> FloatArray:
    """Energy of each step by the trapezoid rule, ``(n, m - 1)``, NaN where unknown."""
    # ((0.5 * (a + b)) * dt) / 3600 in place on one temporary: the same rounding, one allocation
    step = np.add(power_w[:, 1:], power_w[:, :-1])
    step *= 0.5
    step *= dt_s
    step /= 3600.0
    return np.asarray(step)


def pick(values: np.ndarray, index: IntArray) -> np.ndarray:
    """``values[i, index[i]]`` for every row (index clipped into range)."""
    if values.shape[1] == 0:
        if np.issubdtype(values.dtype, np.floating):
            return np.full(values.shape[0], np.nan)
        return np.zeros(values.shape[0], dtype=values.dtype)
    idx = np.clip(index, 0, values.shape[1] - 1)
    return np.asarray(np.take_along_axis(values, idx[:, None], axis=1)[:, 0])


def nan_argmax(values: FloatArray) -> IntArray:
    """Per row, the index of the largest value ignoring NaN (0 for an all-NaN row)."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=np.int64)
    # the first place that holds the row's NaN-ignoring max (a reduction, a comparison and a
    # bool argmax; no float copy with the NaN replaced); a row of only NaN and -inf: 0
    top = np.fmax.reduce(values, axis=1)
    at = np.argmax(values == top[:, None], axis=1)
    at[~(top > -np.inf)] = 0
    return np.asarray(at)


def fmt_kwh(wh: float) -> str:
    return f"{wh / 1000.0:.3f} kWh"


def fmt_kw(w: float) -> str:
    return f"{w / 1000.0:.1f} kW"


def fmt_min(s: float) -> str:
    return f"{s / 60.0:.0f} min" if s >= 90 else f"{s:.0f} s"


def not_scored_reason(prep: Prepared, needed: int = 2, column: str = "") -> np.ndarray:
    """Why a row cannot be judged for lack of readings (of ``column``: "energy" or "power"
    when given), or None when it has enough."""
    reason = np.full(prep.count.shape[0], None, dtype=object)
    if column == "energy":
        reason[prep.n_energy < needed] = f"fewer than {needed} register readings"
    elif column == "power":
        has_power = ~np.isnan(prep.power_w)
        reason[has_power.sum(axis=1) < needed] = f"fewer than {needed} power readings"
    reason[prep.count == 0] = "no readings with a trustworthy time"
    reason[(prep.count > 0) & (prep.count < needed)] = (
        f"fewer than {needed} readings with a trustworthy time"
    )
    return reason


def build_result(
    kind: str,
    score: FloatArray,
    flagged: BoolArray,
    start_ns: IntArray,
    end_ns: IntArray,
    describe: Callable[[IntArray], list[str]],
    not_scored: np.ndarray,
) -> KindResult:
    """Assemble a ``KindResult``: flagged rows get ``describe``'s evidence (formatted for the
    flagged rows only, a small share of the batch), unscored rows their ``not_scored`` reason."""
    score = np.clip(score, 0.0, 1.0)
    unscored = np.isnan(score) | ~is_none(not_scored)
    score = np.where(unscored, np.nan, score)
    flagged = flagged & ~unscored
    reason = np.full(score.shape[0], None, dtype=object)
    reason[unscored] = not_scored[unscored]
    rows = np.flatnonzero(flagged)
    if rows.size:
        texts = np.empty(rows.size, dtype=object)
        texts[:] = describe(rows)
        reason[rows] = texts
    reason[unscored & is_none(reason)] = "not enough data to judge"
    return KindResult(
        kind=kind,
        score=score,
        flagged=flagged,
        start_ns=np.where(flagged, start_ns, NO_TIME).astype(np.int64),
        end_ns=np.where(flagged, end_ns, NO_TIME).astype(np.int64),
        reason=reason,
    )


_NONE = np.array(None, dtype=object)


def is_none(values: np.ndarray) -> BoolArray:
    """Element-wise ``is None`` of an object array, without a Python loop."""
    return np.asarray(np.equal(values, _NONE), dtype=bool)


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """A detector's evidence for some rows: x (1 at the threshold), where, and the words."""

    x: FloatArray
    start_ns: IntArray
    end_ns: IntArray
    describe: Callable[[IntArray], list[str]]


def scatter_verdict(n: int, rows: IntArray, part: Verdict) -> Verdict:
    """A verdict over all ``n`` rows from one over ``rows`` (the others: x 0, nowhere)."""
    x = np.zeros(n)
    start = np.full(n, NO_TIME, dtype=np.int64)
    end = np.full(n, NO_TIME, dtype=np.int64)
    x[rows], start[rows], end[rows] = part.x, part.start_ns, part.end_ns
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)

    def describe(which: IntArray) -> list[str]:
        return part.describe(position[which])

    return Verdict(x=x, start_ns=start, end_ns=end, describe=describe)


def judge_candidates(
    kind: str,
    prep: Prepared,
    candidates: BoolArray,
    judge: Callable[[Prepared], Verdict],
    not_scored: np.ndarray,
) -> KindResult:
    """Run the costly ``judge`` only on rows with a candidate sample (``candidates`` is per
    sample), score the rest 0, and build the result: the shape several detectors share."""
    n = prep.power_w.shape[0]
    rows = np.flatnonzero(candidates.any(axis=1)) if candidates.size else np.zeros(0, np.int64)
    return verdict_result(kind, scatter_verdict(n, rows, judge(take_rows(prep, rows))), not_scored)


def verdict_result(kind: str, verdict: Verdict, not_scored: np.ndarray) -> KindResult:
    """The result of a verdict over all rows: flagged over the threshold (x > 1)."""
    return build_result(
        kind,
        excess_score(verdict.x),
        verdict.x > 1.0,
        verdict.start_ns,
        verdict.end_ns,
        verdict.describe,
        not_scored,
    )
