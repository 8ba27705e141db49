"""The energy delivered between consecutive readings, from two witnesses: the register and the
integral of power.

Where the two agree they give the same figure. Where they disagree one of them is wrong (a
stuck, jumping or miscalibrated meter, a power sensor's glitch) and which one is not known
here, so ``energy_bounds`` gives per step the least and the most energy that both allow; a
detector that must not blame something else on a faulty meter takes the bound that is lenient
for its test. Power is interpolated in time over readings that lack it; within a step the true
power may lie anywhere between the readings around it, which widens the bounds by half their
difference over the step, and where no register counts the step, up to the session's highest
power over it.
"""

from __future__ import annotations

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray, SessionBatch
from analytics.detectors.prepared import Prepared, register_brackets
from analytics.detectors.reductions import forward_fill, trapezoid_wh
from analytics.detectors.verdicts import is_none

# Power below this is a sensor offset, not energy (as meter_mismatch reads it).
SENSOR_OFFSET_W = 50.0


def _power_steps(prep: Prepared) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Power at every reading, linear in time between the readings that report it (NaN before
    the first and after the last); and per step, the reported powers that bracket it: at the
    last reporting reading at or before its start, and the first at or after its end. Only
    rows with a reading that lacks power are interpolated (a gather; most rows have none)."""
    p = prep.power_w
    missing = prep.valid & np.isnan(p)
    rows = np.flatnonzero(missing.any(axis=1))
    if not rows.size:
        return p, p[:, :-1], p[:, 1:]
    p = p.copy()
    before, after = p[:, :-1].copy(), p[:, 1:].copy()
    p[rows], before[rows], after[rows] = _interpolate(p[rows], prep.t_s[rows])
    return p, before, after


def _interpolate(p: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``_power_steps`` for rows with readings that lack power."""
    n, m = p.shape
    has = ~np.isnan(p)
    cols = np.broadcast_to(np.arange(m), (n, m))
    last = np.maximum.accumulate(np.where(has, cols, -1), axis=1)
    following = np.minimum.accumulate(np.where(has, cols, m)[:, ::-1], axis=1)[:, ::-1]
    a, b = np.clip(last, 0, m - 1), np.clip(following, 0, m - 1)
    pa = np.where(last >= 0, np.take_along_axis(p, a, axis=1), np.nan)
    pb = np.where(following < m, np.take_along_axis(p, b, axis=1), np.nan)
    ta, tb = np.take_along_axis(t, a, axis=1), np.take_along_axis(t, b, axis=1)
    span = tb - ta
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(span > 0, (t - ta) / span, 0.0)
    inner = pa + (pb - pa) * share
    return np.asarray(np.where(has, p, inner)), pa[:, :-1], pb[:, 1:]


def energy_bounds(
    prep: Prepared, session_wh: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per step between consecutive readings, ``(n, m - 1)``: the least and the most energy
    delivered that the register and the integral of power both allow (NaN: unknown).
    ``session_wh``: per row, the most the whole session delivered by its meter values
    (meterStop less meterStart, and their step; NaN where unknown)."""
    n, m = prep.power_w.shape
    if m < 2:
        return np.zeros((n, 0)), np.zeros((n, 0))
    p, before, after = _power_steps(prep)
    trap = trapezoid_wh(np.where(p < SENSOR_OFFSET_W, 0.0, p), prep.dt_s)
    # within a step the true power lies anywhere between the reported powers around it: the
    # trapezoid is uncertain by half their difference over the step
    doubt = np.subtract(after, before)
    np.abs(doubt, out=doubt)
    doubt *= prep.dt_s
    doubt *= 0.5 / 3600.0
    # the register's step where both ends carry a value
    both = prep.has_energy[:, :-1] & prep.has_energy[:, 1:]
    reg = np.where(both, prep.de_wh, np.nan)
    sane = reg >= -2.0 * prep.resolution_wh[:, None]  # a fall is a meter fault, not energy
    # What each witness allows: the trapezoid within its doubt; a step shorter than the
    # stamps' resolution (readings sharing a whole-second or whole-minute stamp) hides how long
    # it lasted, so its trapezoid ("0 Wh" at "0 s") allows anything from nothing to the higher
    # of its powers over one unit of the stamps. The register counts within its resolution: a
    # step shown as 0 in 1 kWh steps may hold anything under 1 kWh.
    trap_lo, trap_hi = trap - doubt, trap + doubt
    hidden = prep.dt_s < prep.time_resolution_s[:, None]
    if hidden.any():
        unit_s = prep.dt_s + prep.time_resolution_s[:, None]
        trap_lo = np.where(hidden, 0.0, trap_lo)
        trap_hi = np.where(hidden, np.fmax(before, after) * unit_s / 3600.0, trap_hi)
    res_e = prep.resolution_wh[:, None]
    # Where the two ranges meet, the witnesses agree and the least energy is the higher of
    # their lower ends; where they do not, one of them is wrong and the least is the lower
    # (a SoC that fell 17 points in 15 s at 50 kW, the register in whole kWh unchanged over
    # it, and 31 kWh counted at a SoC held at 51 %, two thirds of it between readings of one
    # minute, were both read as nothing flowing: an independently written fleet, seeds 246
    # and 245)
    agree = sane & (reg - res_e <= trap_hi) & (reg + res_e >= trap_lo)
    lo = np.where(agree, np.fmax(trap_lo, reg - res_e), np.fmin(trap - doubt, reg))
    lo = np.maximum(lo, 0.0)
    hi = np.fmax(trap + doubt, np.where(sane, np.maximum(reg, 0.0), np.nan))
    # Without a register at both ends, power between two readings is not bounded by theirs: a
    # charge that ramps up after a reading taken in its first seconds and stops before the next
    # shows neither its plateau nor its energy. The most such a step can have delivered is the
    # session's highest power read over it (a SoC that rose 26 % in 10 min between 14.6 kW in
    # the ramp and 22 W at rest, the car having drawn about 95 kW in between, was called
    # impossible: an independently written fleet, seed 243, a stall read every 10 min)
    peak_wh = np.nan_to_num(prep.peak_power_w)[:, None] * prep.dt_s / 3600.0
    hi = np.where(both, hi, np.fmax(hi, peak_wh))
    # ... and that highest power may itself have been missed: a charge whose only reading with
    # power came in its ramp (4.7 kW 5 s after the start, then 0 W 5 min later; the car drew
    # about 25 kW in between and its SoC rose 14 %, a plug-in hybrid's 12 kWh pack: called
    # impossible, an independently written fleet, seed 356, 352b5711). Where the session's
    # meter values bound its energy, such a step may have held all of it that the other
    # steps did not surely take.
    if session_wh is not None and m > 1:
        surely = np.nan_to_num(np.maximum(lo, 0.0))
        room = session_wh[:, None] - (surely.sum(axis=1, keepdims=True) - surely)
        hi = np.where(both, hi, np.fmax(hi, np.maximum(room, 0.0)))
    hi = _within_register_brackets(prep, both, hi)
    unknown = np.isnan(lo) | np.isnan(hi)
    lo[unknown] = np.nan
    hi[unknown] = np.nan
    return np.asarray(lo), np.asarray(hi)


def _within_register_brackets(prep: Prepared, both: BoolArray, hi: FloatArray) -> FloatArray:
    """``hi`` raised, over the steps between two readings that carry the register (a register
    sent in every third or fourth reading only), to what the register counted between them
    where their power's bounds add up to less: shared out in proportion to those bounds. The
    register counts what flowed whatever the power readings say (a station sending its power
    in kW in the field for W: 43 "W" at 43 kW, the SoC rising 1 % a minute, read as "only a
    battery of 0.1 kWh or less could"; outside fleet seed 4, 433066)."""
    n, k = hi.shape
    energy = prep.energy_wh
    last, nxt = register_brackets(prep)
    bracketed = ~both & (last >= 0) & (nxt <= k)
    if not bracketed.any():
        return hi
    lo_i, hi_i = np.maximum(last, 0), np.minimum(nxt, k)
    rise = np.take_along_axis(energy, hi_i, axis=1) - np.take_along_axis(energy, lo_i, axis=1)
    rise += prep.resolution_wh[:, None]
    cum = np.zeros((n, k + 1))
    np.cumsum(np.nan_to_num(hi), axis=1, out=cum[:, 1:])
    bounds = np.take_along_axis(cum, hi_i, axis=1) - np.take_along_axis(cum, lo_i, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(bracketed & (rise > bounds) & (bounds > 0.0), rise / bounds, 1.0)
    return np.asarray(hi * scale)


def register_covers(prep: Prepared, tolerance: float) -> BoolArray:
    """Per row: every step between its readings has a register value at both ends, and the
    register's total agrees with the integral of power within ``tolerance`` (a share of the
    integral). Such a register counts the energy between the readings' true instants, whatever
    their stamps say; rows with a step it does not cover, where it falls, or where it disagrees
    (a meter that counts short: then it is the register that is wrong), get False."""
    n, m = prep.power_w.shape
    if m < 2:
        return np.zeros(n, dtype=bool)
    steps = prep.valid[:, 1:]
    both = prep.has_energy[:, :-1] & prep.has_energy[:, 1:]
    covered = np.all(both | ~steps, axis=1) & steps.any(axis=1)
    p = np.where(prep.power_w < SENSOR_OFFSET_W, 0.0, prep.power_w)
    trap = np.nansum(np.where(steps, trapezoid_wh(p, prep.dt_s), 0.0), axis=1)
    reg = np.nansum(np.where(both & steps, prep.de_wh, 0.0), axis=1)
    agrees = np.abs(reg - trap) <= tolerance * trap
    # a register that falls anywhere (beyond its rounding, as ``energy_bounds`` reads a step)
    # did not count that step's energy, however well its total agrees: a fall of 0.7 kWh in
    # a 40 kWh session is 2 %, and the SoC rising between the fallen readings of one minute
    # read as 2 % on 0 kWh (an independent fleet stamped to the minute, seed 81)
    fell = np.any(both & steps & (prep.de_wh < -2.0 * prep.resolution_wh[:, None]), axis=1)
    return np.asarray(covered & agrees & ~fell & (trap > 0.0))


def cumulative_wh(step: FloatArray) -> FloatArray:
    """Energy since the row's first reading at every reading, unknown steps counted as 0."""
    n = step.shape[0]
    return np.concatenate((np.zeros((n, 1)), np.cumsum(np.nan_to_num(step), axis=1)), axis=1)


# How much of an orphan's register rise must lie within a session's span to be that session's:
# a register never counts one watt-hour twice, so any real share says so; most of it, to leave
# the rounding of two registers' ends and a session's unseen last minutes aside.
WITHIN_SHARE = 0.9


def within_sessions_meter_values(batch: SessionBatch, rows: IntArray, prep: Prepared) -> BoolArray:
    """``(len(rows), m - 1)``: the register rises of orphan segments ``rows`` of ``batch``
    (``prep`` is the prepared view of those rows alone, or of the whole batch when ``rows`` is
    every row) that lie within the register span of a session on the same connector.

    A register counts each watt-hour once: a rise that lies within a session's own span was
    delivered in that session, whatever the stamps say. A station whose clock stamped a whole
    session, its start, statuses, readings and stop, years ahead leaves the register rising
    between its idle readings with no session open in time; the session it belongs to
    (authorized, and flagged clock_fault) holds that very rise (an independently written fleet,
    outside seed 19, DE*SWM*E001801: "9.775 kWh delivered with no session open ... over 0 s",
    and the same as a meter_mismatch of the idle segment). A session's span runs from the
    least to the most of its meter values and register readings (all of them, their stamps
    trusted or not), and counts only where its readings rise by as much as the span is wide
    (a register that was reset spans everything below it, and explains nothing). A rise counts
    as the session's when WITHIN_SHARE of it lies in that span, within twice the register's
    resolution: the energy after a session's last reading, before its stop, is in no reading
    of it (106 Wh of that session's 9,775).
    """
    n, k = len(rows), prep.de_wh.shape[1] if prep.de_wh.ndim == 2 else 0
    out = np.zeros((n, k), dtype=bool)
    if not n or not k:
        return out
    orphan = is_none(batch.session_id[rows]) & (batch.connector_id[rows] != 0)
    rising = (prep.de_wh > 0) & orphan[:, None]
    candidates = np.flatnonzero(rising.any(axis=1))
    if not candidates.size:
        return out
    key = batch.connector_keys()
    sessions = np.flatnonzero(~is_none(batch.session_id) & np.isin(key, key[rows[candidates]]))
    if not sessions.size:
        return out
    lo, hi = _register_spans(batch, sessions)
    by_key: dict[str, list[int]] = {}
    for j, row in enumerate(sessions.tolist()):
        if np.isfinite(lo[j]) and hi[j] > lo[j]:
            by_key.setdefault(str(key[row]), []).append(j)
    tol = 2.0 * np.nan_to_num(prep.resolution_wh, nan=1.0)
    for i in candidates.tolist():
        mine = by_key.get(str(key[rows[i]]))
        if not mine:
            continue
        steps = np.flatnonzero(rising[i])
        below = prep.energy_ff_wh[i, steps]
        above = below + prep.de_wh[i, steps]
        shared = np.minimum(above[:, None], hi[mine][None, :]) - np.maximum(
            below[:, None], lo[mine][None, :]
        )
        out[i, steps] = np.any(shared >= WITHIN_SHARE * (above - below)[:, None] - tol[i], axis=1)
    return out


def _register_spans(batch: SessionBatch, rows: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per row of ``rows``: the least and the most of its meter values and register readings,
    or NaN where its readings (in time order, every one) rise by less than that width."""
    values = np.where(batch.valid[rows], batch.energy_wh[rows], np.nan)
    with np.errstate(all="ignore"):
        reg_lo = np.fmin.reduce(values, axis=1) if values.shape[1] else np.full(len(rows), np.nan)
        reg_hi = np.fmax.reduce(values, axis=1) if values.shape[1] else np.full(len(rows), np.nan)
    ms, me = batch.meter_start_wh[rows], batch.meter_stop_wh[rows]
    lo, hi = np.fmin(reg_lo, ms), np.fmax(reg_hi, me)
    chain = np.column_stack((ms, values, me))
    filled = forward_fill(chain)
    rise = np.nansum(np.clip(np.diff(filled, axis=1), 0.0, None), axis=1)
    plausible = rise >= (hi - lo) - 1.0
    return np.where(plausible, lo, np.nan), np.where(plausible, hi, np.nan)
