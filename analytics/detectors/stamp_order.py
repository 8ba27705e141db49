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
read as a jump of 1.2 kWh in 0 s followed by a fall). A register order must also keep the pace of
the readings around its group (``PACE_SHARE``): a reading that fell by part of a step and still
fits between the stamps around it leaves a short step where a late one, sorted back into its
slot, leaves steps like its neighbours'. Readings without the value keep their order of arrival,
after those with one. What stays out of reach: a fall within a group on a meter whose steps are
a few of its units (a meter counting in 100 Wh, read often), or whose neighbours are too few to
give a pace, reads as a late reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray
from analytics.detectors.reductions import register_unit_wh


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
        if k == 0 and take.size:  # the register: its order must also keep the steps' pace
            take = take[_keeps_pace(value, r, t, starts, take, before, after)]
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


# A register sorted into order must rise at about the pace of the readings around its group:
# each of its steps (from the highest register before the group to the lowest after it) at
# least PACE_SHARE of the median step of up to PACE_NEIGHBOURS readings on either side. A late
# reading sorted back into its slot gives steps like its neighbours'; a register that fell by
# part of a step and still fits between the minutes around it gives one short step, or several
# (7.4 kW read every 15 s, 31 Wh a step: one reading 58 Wh back, sorted, gave steps of 4, 27,
# 3, 28 and 3 Wh; an independently written fleet with every station stamping whole minutes,
# seed 343, ec600417: the fall unseen). Only where that median is PACE_MIN_UNITS steps of the
# register or more: a meter counting in 100 Wh read every 15 s rises by 0 or 100 Wh, and its
# sorted order may hold equal values.
PACE_SHARE = 0.5
PACE_NEIGHBOURS = 8
PACE_MIN_UNITS = 4.0
# ... and only where the neighbours themselves share stamps at least this often (stamps coarser
# than the sampling: whole minutes over readings every 10-20 s, where the readings of one stamp
# lie a sampling interval apart). Where they seldom do, two readings of one stamp are an extra
# one (a transaction's end reading) taken within that moment, its step anything from nothing to
# a moment's worth: whole-second stamps, the end reading 9 Wh under the periodic one of the
# same second at 58 kW, read as a register falling (outside fleet seed 10, TRX-0070-00027).
PACE_TIES_SHARE = 0.5


def _keeps_pace(
    value: FloatArray,
    r: IntArray,
    t: IntArray,
    starts: IntArray,
    take: IntArray,
    before: FloatArray,
    after: FloatArray,
) -> BoolArray:
    """Per group of ``take``: does the register order keep the pace of the readings around it
    (``PACE_SHARE``)? True where the order of arrival already rises (nothing moves) or the
    pace cannot be told, or where the neighbours seldom share a stamp (``PACE_TIES_SHARE``). A
    loop over the groups whose register fell in the order of arrival: late readings and faults,
    a few in a batch."""
    n = value.size
    ends = np.append(starts[1:], n)
    out = np.ones(take.size, dtype=bool)
    # the groups whose register fell in the order of arrival (NaN compares False), at once
    fell = np.zeros(starts.size, dtype=bool)
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    group = np.cumsum(first) - 1
    within = group[1:] == group[:-1]
    fell[group[1:][within & (value[1:] < value[:-1])]] = True
    for i in np.flatnonzero(fell[take]).tolist():
        g = int(take[i])
        s, e = int(starts[g]), int(ends[g])
        inside = value[s:e]
        lo, hi = max(s - PACE_NEIGHBOURS, 0), min(e + PACE_NEIGHBOURS, n)
        around = np.concatenate((value[lo:s][r[lo:s] == r[s]], value[e:hi][r[e:hi] == r[s]]))
        left = int(np.count_nonzero(r[lo:s] == r[s]))
        # the neighbours' stamps, of those with a value (padding ties at one stamp, valueless)
        mine = np.concatenate((r[lo:s] == r[s], r[e:hi] == r[s]))
        known = ~np.isnan(np.concatenate((value[lo:s], value[e:hi])))[mine]
        stamps = np.concatenate((t[lo:s], t[e:hi]))[mine]
        left_known = int(np.count_nonzero(known[:left]))
        stamps = stamps[known]
        gaps = np.concatenate((np.diff(stamps[:left_known]), np.diff(stamps[left_known:])))
        if gaps.size and np.count_nonzero(gaps == 0) < PACE_TIES_SHARE * gaps.size:
            continue  # readings a full interval apart: the group's share a moment (see above)
        steps = np.concatenate((np.diff(around[:left]), np.diff(around[left:])))
        steps = steps[steps > 0]
        if steps.size < 2:
            continue
        pace = float(np.median(steps))
        unit = float(register_unit_wh(np.concatenate((around, inside))[None, :])[0])
        if pace < PACE_MIN_UNITS * unit:
            continue
        ends_around = [x for x in (before[g], after[g]) if not np.isnan(x)]
        sequence = np.sort(np.concatenate((inside[~np.isnan(inside)], ends_around)))
        out[i] = bool(np.diff(sequence).min() >= PACE_SHARE * pace)
    return out


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
