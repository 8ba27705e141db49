"""The order of a session's readings when stamps tie.

Stations that stamp whole seconds or minutes give several readings one stamp, and the stamp
alone does not say which was measured first. The order of arrival usually does, but not for a
reading a station sent late (a link that held it): taken in arrival order, the late one, stamped
the same minute as an earlier one, read as a register running backwards (an independently
written fleet with its stamps cut to the minute, seed 71: 14 false ``meter_backwards`` on 901
normal sessions). A register does not run backwards, so readings of one stamp are ordered by
their registers, lowest first, when that order fits between the readings of the stamps around
them (every register of the group at or above the highest before it and at or below the lowest
after it): a healthy meter measured them so, whatever order they came in. When it does not fit,
the group holds a register that fell, and the SoC (which does not fall while a car charges)
orders it if its order fits as well; an order that makes the other value fall within the group
is not taken either (a register that fell a little and still fits, against a SoC that rises in
the order of arrival); else the order of arrival is kept, so the fall is seen
where it happened (sorted by register, a register that fell by 1.2 kWh and went on from there
read as a jump of 1.2 kWh in 0 s followed by a fall). Readings without the value keep their
order of arrival, after those with one. What stays out of reach: a single reading that fell
within its stamp's group and stays between the stamps around it reads as a late one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analytics.batch import FloatArray, IntArray


def stamp_order(
    row: IntArray, t_ns: IntArray, keys: Sequence[FloatArray], arrival: IntArray
) -> IntArray:
    """Indices ordering samples by ``(row, t_ns)``; within a stamp, by the first of ``keys``
    (the register, then the SoC: neither falls while a car charges) whose order fits between
    the stamps around it (module docstring), else by ``arrival``. NaN where a sample has no
    value of a key."""
    order = np.lexsort((arrival, t_ns, row))
    n = order.size
    if n < 2:
        return np.asarray(order)
    r, t = row[order], t_ns[order]
    same = (r[1:] == r[:-1]) & (t[1:] == t[:-1])
    if not same.any():  # stamps to the millisecond: the usual case costs one comparison
        return np.asarray(order)
    # the rest works on the rows that hold a tie only (a few stations' sessions in a batch)
    tie_rows = np.zeros(int(r.max()) + 1, dtype=bool)
    tie_rows[r[1:][same]] = True
    keep = np.flatnonzero(tie_rows[r])
    inner = _tie_order(r[keep], t[keep], [key[order[keep]] for key in keys])
    if inner is None:
        return np.asarray(order)
    out = order.copy()
    out[keep] = order[keep][inner]
    return np.asarray(out)


def _tie_order(r: IntArray, t: IntArray, values: list[FloatArray]) -> IntArray | None:
    """``stamp_order``'s work on samples already ordered by (row, stamp, arrival): the
    permutation that orders the groups of one stamp, or None when none moves."""
    n = r.size
    same = (r[1:] == r[:-1]) & (t[1:] == t[:-1])
    new = np.concatenate(([True], ~same))
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    g_row = r[starts]
    many = np.diff(np.append(starts, n)) > 1
    chosen = np.full(starts.size, -1)  # per group, the value that orders it (-1: arrival)
    for k, value in enumerate(values):
        with np.errstate(invalid="ignore"):
            least = np.fmin.reduceat(value, starts)
            most = np.fmax.reduceat(value, starts)
        before = _running(g_row, most, highest=True)  # the highest of earlier groups
        after = _running(g_row, least, highest=False)  # the lowest of later groups
        fits = ~(least < before) & ~(most > after)  # NaN compares False: nothing contradicts
        take = np.flatnonzero(many & (chosen < 0) & fits & ~np.isnan(most))
        if take.size == 0:
            continue
        # in that order, the other values must not fall either (a register that fell a little
        # and still fits, against a SoC that rises in the order of arrival: arrival is right)
        members = np.flatnonzero(np.isin(group, take))
        by_k = members[np.lexsort((members, value[members], group[members]))]
        for j, other in enumerate(values):
            if j != k:
                v = other[by_k]
                fell = v < _running(group[by_k], v, highest=True)
                take = np.setdiff1d(take, group[by_k][fell])
        chosen[take] = k
    reorder = np.flatnonzero(chosen >= 0)
    if reorder.size == 0:
        return None
    # only the samples of those groups move, among their own slots
    members = np.flatnonzero(np.isin(group, reorder))
    by = chosen[group[members]]
    sub = np.full(members.size, np.nan)
    for k, value in enumerate(values):
        sub = np.where(by == k, value[members], sub)
    inner = np.lexsort((members, sub, group[members]))  # NaN sorts last
    out = np.arange(n)
    out[members] = members[inner]
    return np.asarray(out)


def _running(g_row: IntArray, values: FloatArray, *, highest: bool) -> FloatArray:
    """Per group: the highest (``highest``) of ``values`` over the earlier groups of its row,
    or the lowest over the later ones; NaN where there are none. Values are ranked, and each
    row's ranks offset past the previous row's, so one accumulate runs over all rows."""
    k = values.size
    missing = np.isnan(values)
    ranked, rank = np.unique(np.where(missing, 0.0, values), return_inverse=True)
    width = np.int64(ranked.size + 1)
    # rank 0 stands for "none": below every value for a maximum, above every one for a minimum
    rank = np.where(missing, 0 if highest else width - 1, rank.reshape(-1) + (1 if highest else 0))
    key = g_row.astype(np.int64) * width + rank
    if highest:
        run = np.maximum.accumulate(key)
        prior = np.concatenate(([-1], run[:-1]))
    else:
        run = np.minimum.accumulate(key[::-1])[::-1]
        prior = np.concatenate((run[1:], [-1]))
    same_row = (prior >= 0) & (prior // width == g_row)
    at = prior % width
    none = (at == 0) if highest else (at == width - 1)
    value_index = at - 1 if highest else at
    out = np.full(k, np.nan)
    take = same_row & ~none
    out[take] = ranked[value_index[take]]
    return out
