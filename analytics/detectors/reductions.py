"""NaN-aware reductions along the rows of ``(n, m)`` arrays, run lengths, and picking per row.

No Python loop per row or per sample: each helper is a few whole-array NumPy passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray


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


def row_percentile(values: FloatArray, q: float) -> FloatArray:
    """NaN-ignoring percentile ``q`` along axis 1 by one sort, as ``np.nanpercentile``'s
    linear method computes it (the same numbers, bit for bit, without its loop over rows); NaN
    for an empty row (no warning)."""
    n, m = values.shape
    if m == 0:
        return np.full(n, np.nan)
    ordered = np.sort(values, axis=1)  # NaN sorts last
    k = np.sum(~np.isnan(values), axis=1)
    share = q / 100.0
    virtual = (k - 1) * share  # numpy's virtual index for "linear"
    below = np.floor(virtual)
    last = np.maximum(k - 1, 0)
    at_end = virtual >= k - 1
    lo = np.where(at_end, last, np.clip(below, 0, m - 1)).astype(np.intp)
    hi = np.where(at_end, last, np.clip(below + 1, 0, m - 1)).astype(np.intp)
    rows = np.arange(n)
    a, b = ordered[rows, lo], ordered[rows, hi]
    t = virtual - below
    diff = b - a
    out = np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
    return np.asarray(np.where(k > 0, out, np.nan))


def smallest_rise(steps: FloatArray) -> FloatArray:
    """Per row of ``steps`` ``(n, k)``, the smallest positive one; NaN for a row without (NaN
    steps ignored): the finest step a register or a SoC figure is seen to move by."""
    n, k = steps.shape
    if k == 0:
        return np.full(n, np.nan)
    # a masked reduction starting from NaN: NaN for a row without a positive step, like row_min
    return np.asarray(np.fmin.reduce(steps, axis=1, where=steps > 0, initial=np.nan))


# The units a register counts in (Wh): meters show Wh, tens of Wh, or kWh with one or two
# decimals (100 or 10 Wh) or none (1 kWh: billing registers and session tables in whole kWh,
# whose steps at a few kW come minutes apart and look like a stuck register, then a jump); the
# values' own granularity says which.
REGISTER_UNITS_WH = (10.0, 100.0, 1_000.0)


# A corrupt reading (a flipped bit, a value half-written) is no whole multiple of anything:
# up to one value in REGISTER_UNIT_OUTLIERS (none below that many) may miss the unit. A
# register counting single Wh shows a whole kWh one time in a thousand, so the rest still say
# which unit it counts in (a 1 kWh register with one reading 65536 Wh high read as counting
# single Wh, and 123 Wh not counted over 6 min as stuck: town fleet seed 8, TF-0156-3-001).
REGISTER_UNIT_OUTLIERS = 20


def register_unit_wh(energy_wh: FloatArray) -> FloatArray:
    """Per row of register values ``(n, m)`` (NaN where not read), the coarsest of
    ``REGISTER_UNITS_WH`` that every value is a whole multiple of, but one in
    ``REGISTER_UNIT_OUTLIERS``; 1 Wh where none is, or nothing was read."""
    read = ~np.isnan(energy_wh)
    n_read = read.sum(axis=1)
    spare = n_read // REGISTER_UNIT_OUTLIERS
    unit = np.ones(energy_wh.shape[0])
    for step in REGISTER_UNITS_WH:  # finest first: the coarsest whole unit wins
        # kWh decimals times 1000 may miss a whole number by a rounding error: 1 mWh of slack
        off = np.abs(energy_wh - step * np.round(energy_wh / step))
        whole = ((read & (off > 1e-3)).sum(axis=1) <= spare) & (n_read > 0)
        unit[whole] = step
    return unit


def forward_fill(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the last value before it in its row (leading NaN stay)."""
    m = values.shape[1]
    idx = np.where(np.isnan(values), 0, np.arange(m))
    np.maximum.accumulate(idx, axis=1, out=idx)
    return np.asarray(np.take_along_axis(values, idx, axis=1))


def backward_fill(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the first value after it in its row (trailing NaN stay)."""
    return np.asarray(forward_fill(values[:, ::-1])[:, ::-1])


def run_labels(mask: BoolArray) -> tuple[BoolArray, IntArray, int]:
    """The runs of consecutive True in ``mask`` (along rows): where each begins, each
    position's run (a number counted over the whole array; meaningful where ``mask``), and
    how many runs there are."""
    n, k = mask.shape
    begins = mask & ~np.concatenate((np.zeros((n, 1), dtype=bool), mask[:, :-1]), axis=1)
    label = (np.cumsum(begins.ravel()) - 1).reshape(n, k)
    return np.asarray(begins), np.asarray(label), int(begins.sum())


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
