"""Faults of the energy register: stuck, backwards, jumping, or disagreeing with the power.

All four read the register steps between consecutive trusted readings (``Prepared.de_wh``) and
judge them against physics: a register counts up, never down; it cannot count faster than the
connector's rated power; it must count when power flows; over a session it must add up to the
integral of the power.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.energy import within_sessions_meter_values
from analytics.detectors.prepared import (
    NS_PER_S,
    Prepared,
    power_from_current,
    prepared,
    readings_sharing_stamp,
    register_brackets,
    register_resolution_wh,
    take_rows,
)
from analytics.detectors.ratings import (
    AC_MAX_W,
    MIN_CHARGE_OFFER_W,
    StationRatings,
    rated_power_w,
    station_connectors,
)
from analytics.detectors.reductions import (
    backward_fill,
    forward_fill,
    nan_argmax,
    pick,
    row_max,
    row_median,
    row_sum_where,
    runs,
    trapezoid_wh,
)
from analytics.detectors.timing import GAP_INTERVALS, GAP_MIN_S
from analytics.detectors.verdicts import (
    CLOCK_UNTRUSTED,
    MIN_READINGS,
    Verdict,
    build_result,
    clock_untrusted,
    excess_score,
    fmt_kw,
    fmt_kwh,
    fmt_min,
    is_none,
    judge_candidates,
    not_scored_reason,
)
from chargewatch.kinds import AnomalyKind

_INT_MIN = np.iinfo(np.int64).min


# A register step may be off by this many steps of the register's resolution without any fault:
# both of its ends are rounded to the resolution.
ROUNDING_STEPS = 2.0


def fall_tolerance_wh(resolution_wh: FloatArray, resolutions: float = ROUNDING_STEPS) -> FloatArray:
    """How far a register may seem to fall with no fault: its two ends rounded to its resolution
    (``prepared.register_resolution_wh``). meter_backwards and the billing view of profiles
    both judge a fall by this."""
    return np.asarray(resolutions * resolution_wh)


# What an AC connector can deliver at most: 3 x 32 A at 230 V (22 kW, the largest type 2
# wallbox; ``ratings.AC_MAX_W`` adds the mains' tolerance to tell AC from DC). A station that
# declares nothing and offers nothing is rated by the highest power cars drew from it, and on
# AC that is the car's onboard charger, not the connector: single-phase cars draw 3.7-7.4 kW
# from 11 and 22 kW wallboxes, and on a station sampling every 10-15 min the highest reading
# is rarer still. meter_jump then bounds a step by this instead (an independently written
# fleet, seed 72 with --sparse-sampling 0.5: an 11 kW wallbox that had served a 3.7 kW car all
# morning, judged as a 3.75 kW one, its meter counting 22 % over read as a jump). On DC no
# such bound is known short of the largest chargers: there the measured rating stands.
AC_CONNECTOR_MAX_W = 22_000.0


# How far a register step may rise beyond the rated power over its time (``jump_allowance_wh``):
# meter_jump's defaults, which unauthorized_energy shares to tell a meter's jump from energy.
# See ``MeterJump`` for why.
JUMP_RATED_MARGIN = 0.1
JUMP_JITTER_S = 2.0

# Stamps in whole minutes add a minute of the rating to every step's bound (a step stamped "0 s"
# may have lasted up to a minute): 5 kWh at 300 kW, more than most jumps. Where such a station
# samples at least once a minute, its power readings show what the car drew all session long,
# and the bound is also taken from the session's highest power read, PEAK_MARGIN (25 %) over it
# (a car's power does not climb a quarter above every reading of its session between two of
# them a minute apart) over the same span. Only on rows with whole-minute stamps and at least
# PEAK_MIN_PER_MINUTE readings a minute, and only where at most one step of the row rises
# beyond that bound: a jump is one step, and readings whose power does not account for the
# register at several steps (a power sensor off scale, a lagging average) say nothing of it.
# An independently written fleet (seeds 211-214, 30 % of stations stamping whole minutes): 9
# of 50 jumps missed, all at such stations (0.4-3.6 kWh against 3.6-122 kW read).
PEAK_MARGIN = 0.25
PEAK_MIN_PER_MINUTE = 1.0
COARSE_STAMP_S = 60.0
# ... and a step between two full minutes of a station that samples at a fixed interval lasted
# about that interval, however its stamps read (``_peak_bound``): the interval is read off the
# count of readings a minute, where at least REGULAR_SHARE of the readings lie in minutes that
# hold the usual count (or one more).
REGULAR_SHARE = 0.8

# A register that counts k times the power all session long (a miscalibrated meter, k 1.15-1.25
# on real DC stations) rises k times as fast at every step: near the station's rated power each
# step is then "more than the connector could deliver", though nothing jumped. That is a scale,
# meter_mismatch's kind; a jump is a step out of line with the register's own rate. So the rated
# bound is stretched by the register's steady scale when it is above 1: the median, over the
# session's steps, of the register's rise against the power's trapezoid. The median is the
# session's, not one step's: a jump is one step (or a few) and leaves it where it was. Steps
# count only where the trapezoid holds at least SCALE_MIN_RESOLUTIONS of the register's
# resolution (its rounding then moves the ratio by at most 5 %), and the scale only when at
# least SCALE_MIN_STEPS of them (a minute or more of steady charging at the slowest common
# sampling) and half of the session's register steps qualify. Without power values, or with a
# register shown only now and then, the scale is 1: the bound stays the rated power's.
SCALE_MIN_RESOLUTIONS = 20.0
SCALE_MIN_STEPS = 5
# ... or, on a station sampling every few minutes, at least SCALE_FEW_STEPS such steps over
# SCALE_FEW_STEPS_S in all: the median of three is still that of the steady steps when one of
# them jumped (an independently written fleet, seed 173 with --sparse-sampling: a meter 21 %
# over, read every 5 min over 15 min, flagged meter_jump as well as meter_mismatch).
SCALE_FEW_STEPS = 3
SCALE_FEW_STEPS_S = 600.0


def register_scale(prep: Prepared) -> FloatArray:
    """Per row, how many times the power's energy the register counts, steadily (the median of
    its steps' ratios), or 1 where too few steps can tell (see the comment above); never below
    1 (a register short of the power rises more slowly than any bound)."""
    if prep.de_wh.shape[1] == 0:
        return np.ones(prep.de_wh.shape[0])
    by_power, span_s = _power_over_register_steps(prep)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = (
            np.isfinite(prep.de_wh)
            & np.isfinite(by_power)
            & (by_power >= (SCALE_MIN_RESOLUTIONS * prep.resolution_wh)[:, None])
            & ~prep.bridged
        )
        ratio = np.where(usable, prep.de_wh / by_power, np.nan)
    n_usable = usable.sum(axis=1)
    n_steps = np.isfinite(prep.de_wh).sum(axis=1)
    usable_s = np.where(usable, span_s, 0.0).sum(axis=1)
    enough = (n_usable >= SCALE_MIN_STEPS) | (
        (n_usable >= SCALE_FEW_STEPS) & (usable_s >= SCALE_FEW_STEPS_S)
    )
    trusted = enough & (2 * n_usable >= n_steps)
    scale = np.where(trusted, row_median(ratio), 1.0)
    return np.asarray(np.maximum(np.nan_to_num(scale, nan=1.0), 1.0))


def _power_over_register_steps(prep: Prepared) -> tuple[FloatArray, FloatArray]:
    """Per register step ``(n, m - 1)`` (``Prepared.de_wh``, from the last reading with a
    register value to the step's end): the power's trapezoid over the same readings, NaN where
    a power value in them is missing, and the time they span. A register sent in every fourth
    reading steps over four readings: its step against one reading's trapezoid read as a meter
    counting 4 times the power (outside fleet seed 4, TRX-0143-00001: a 17 kWh spike in 40 s
    at a 350 kW station then fitted within the stretched bound)."""
    n, m = prep.power_w.shape
    trap = trapezoid_wh(prep.power_w, prep.dt_s)
    cum = np.zeros((n, m))
    np.cumsum(np.nan_to_num(trap), axis=1, out=cum[:, 1:])
    gaps = np.zeros((n, m), dtype=np.int64)
    np.cumsum(np.isnan(trap), axis=1, out=gaps[:, 1:])
    last, _ = register_brackets(prep)
    start = np.maximum(last, 0)
    by_power = cum[:, 1:] - np.take_along_axis(cum, start, axis=1)
    whole = (last >= 0) & (gaps[:, 1:] == np.take_along_axis(gaps, start, axis=1))
    return np.asarray(np.where(whole, by_power, np.nan)), register_read_span_s(prep)


# Power at or below this (or this share of the session's peak, whichever is higher) is a
# connector at rest: 0 W plus standby and sensor noise (stall's "near zero"). A register that
# holds its value while every power reading is this low had nothing to count.
HOLD_FLOW_W = 200.0
HOLD_FLOW_SHARE = 0.02


def register_span_s(prep: Prepared, shown: BoolArray | None = None) -> FloatArray:
    """The time each register step ``(n, m - 1)`` counts over: from the reading where the value
    it starts from was first shown, to the reading that ends it.

    A step ends at a reading that carries a register value and starts from the last reading
    before it that carried one (stations that send the register only at the start and the stop
    of a transaction, or less often than the power, send readings without it in between: the
    step spans them all, "0.3 kWh in 1 s" is in truth 0.3 kWh over minutes). If that value
    repeats earlier readings' (a register polled less often than it is sent), the step counts
    from the first reading that showed it: the meter may have counted since then. Unless the
    power readings over that hold say nothing flowed (all measured, none above
    ``HOLD_FLOW_SHARE`` of the peak or ``HOLD_FLOW_W``): then a stale register has nothing to
    catch up on, and the step counts from the last reading that carried the value (an
    independently written fleet, seed 32: +563 Wh in 20 s on an idle 7.4 kW connector, after a
    4 min hold at 0-19 W, passed as 563 Wh in 4 min)."""
    t = prep.t_s
    n, m = t.shape
    if m < 2:
        return np.zeros((n, 0))
    shown = _hold_starts(prep) if shown is None else shown
    # times never decrease along a row, so the reading a step counts from has the running max
    # of the times where a value was first shown (int64: a fast accumulate, where a float one
    # checks every element for NaN); rows out of order are done below
    from_ns = np.where(shown, prep.t_ns[:, :-1], _INT_MIN)
    np.maximum.accumulate(from_ns, axis=1, out=from_ns)
    # to seconds since the row's first reading exactly as ``t_s`` is built, so a step that
    # starts at reading j gets ``t_s[:, j]`` to the bit
    from_ns -= np.where(prep.count > 0, prep.t0_ns, 0)[:, None]
    span_s = np.divide(from_ns, NS_PER_S)
    np.subtract(t[:, 1:], span_s, out=span_s)
    disordered = np.flatnonzero(~prep.in_order)
    if disordered.size:
        span_s[disordered] = _span_by_index(t[disordered], shown[disordered])
    return span_s


def register_read_span_s(prep: Prepared) -> FloatArray:
    """Per step ``(n, m - 1)``: the time from the last reading with a register value at or
    before its start to its end (its own time where every reading carries the register)."""
    last, _ = register_brackets(prep)
    t = prep.t_s
    return np.asarray(t[:, 1:] - np.take_along_axis(t, np.maximum(last, 0), axis=1))


def _hold_starts(prep: Prepared) -> BoolArray:
    """``(n, m - 1)``: does a step count from its own first reading (``register_span_s``)? Where
    that reading shows a new register value, or where nothing can have flowed since the reading
    that first showed it (``_hold_flowed``)."""
    shown = _new_value(prep)
    if shown.shape[1] > 1:
        shown = shown | ~_hold_flowed(prep, shown)
    return shown


def _hold_flowed(prep: Prepared, shown: BoolArray) -> BoolArray:
    """``(n, m - 1)``: could energy have flowed while the register held the value that reading
    j shows (from the reading that first showed it to j)? True where a power reading in that
    stretch is missing or above the flow threshold, and for readings without a register value
    (their steps are unknown, and they never start a hold)."""
    p = prep.power_w[:, :-1]
    floor_w = np.maximum(HOLD_FLOW_W, HOLD_FLOW_SHARE * np.nan_to_num(prep.peak_power_w))
    flow = (np.isnan(p) | (p > floor_w[:, None])) & prep.valid[:, :-1]
    seen = np.cumsum(flow, axis=1)
    k = shown.shape[1]
    idx = np.arange(k)
    first = np.maximum.accumulate(np.where(shown, idx, 0), axis=1)
    before = np.where(first > 0, np.take_along_axis(seen, np.maximum(first - 1, 0), axis=1), 0)
    flowed = (seen - before) > 0
    # the first showing of a value is a reading with flow for this purpose: it starts the hold
    return np.asarray(flowed | shown | ~prep.has_energy[:, :-1])


def _new_value(prep: Prepared) -> BoolArray:
    """``(n, m - 1)``: reading j shows a register value that the register readings before it did
    not (the first one with a value, or one that differs from the last value before it). The
    first reading always counts, so that every step has a reading to count from (a step that
    starts before the first register value is unknown anyway)."""
    n, m = prep.de_wh.shape[0], prep.de_wh.shape[1] + 1
    shown = np.empty((n, m - 1), dtype=bool)
    shown[:, 0] = True
    # de_wh[j - 1] is the step from the last value before reading j to its own (NaN when
    # reading j has none, or no reading before it had one: NaN != 0, so counted; masked below)
    np.not_equal(prep.de_wh[:, :-1], 0, out=shown[:, 1:])
    shown[:, 1:] &= prep.has_energy[:, 1:-1]
    return shown


def jump_allowance_wh(
    prep: Prepared,
    rated_w: FloatArray,
    *,
    rated_margin: float,
    jitter_s: float,
    resolution_steps: float,
) -> FloatArray:
    """Most a register step may rise, ``(n, m - 1)``: the physical bound.

    rated power x (1 + margin) x (span + one time resolution + jitter) + steps x resolution:

    - span: the time since the register last showed a new value (``register_span_s``);
    - one unit of the stamps' resolution (``Prepared.time_resolution_s``): both ends of the span
      are truncated to it, so the true span may be longer by up to one unit (a session table
      in whole minutes shows "0 s" for a session shorter than a minute);
    - jitter: the lag between reading the meter and stamping the message;
    - margin: the meter's accuracy class and a rating that is estimated, not declared;
    - the register's resolution: both ends of the step are rounded to it."""
    if prep.dt_s.shape[1] == 0:
        return np.zeros(prep.dt_s.shape)
    shown = _hold_starts(prep)  # once, for the span and the hold
    span_s = register_span_s(prep, shown)
    # counted from a reading before the step's own (NaN: False), with the register showing
    # its value again in between: a hold. A register merely absent from the readings between
    # (sent in every fourth reading only) shows no hold, and power readings do not stand in
    # for it: a meter whose power came in kW in the W field (43 "W" at 43 kW) read as a
    # register jumping 0.97 kWh in 15 s after "holding" for 60 s (outside fleet, seed 4,
    # 433066: a meter_mismatch, not a jump)
    held = (span_s > prep.dt_s) & _hold_shown(prep, _span_start(prep, shown))
    margins = (rated_margin, jitter_s, resolution_steps)
    allowed = _at_rating_wh(prep, span_s, rated_w, *margins)  # in place on ``span_s``
    rows = np.flatnonzero(held.any(axis=1))
    if rows.size:  # a hold lends the rating no more than its power readings allow
        sub = take_rows(prep, rows)
        # ... and nothing where the hold was a stuck register (meter_stuck's): its catch-up
        # rises by more than the connector could deliver in the step it comes in, which is
        # a jump by the contract's words (a register frozen 12 min at 75 kW that then rose
        # 14 kWh in 10 s was excused as catching up on what flowed: outside fleet, 46 such
        # labels over seeds 1-8). A register polled more slowly than the readings are sent,
        # for less than meter_stuck's 2 min, still catches up unflagged.
        # ... over the time since the register was last read (where it is sent in some
        # readings only, the frozen value may stand a few readings back: 8.4 kWh in 30 s at
        # 350 kW, 90 s after the last register reading, is no jump; outside fleet seed 5)
        stuck = MeterStuck().ends_stuck(sub)
        own_s = np.where(stuck, register_read_span_s(sub), sub.dt_s) if stuck.any() else sub.dt_s
        own = _at_rating_wh(sub, own_s.copy(), rated_w[rows], *margins)
        own += np.where(stuck, 0.0, _hold_flow_wh(sub, rated_w[rows], rated_margin))
        allowed[rows] = np.where(held[rows], np.fmin(allowed[rows], own), allowed[rows])
    return allowed


def _at_rating_wh(
    prep: Prepared,
    span_s: FloatArray,
    rated_w: FloatArray,
    rated_margin: float,
    jitter_s: float,
    resolution_steps: float,
) -> FloatArray:
    """``jump_allowance_wh``'s bound over ``span_s`` (worked in place on it, and returned)."""
    span_s += (prep.time_resolution_s + jitter_s)[:, None]
    span_s *= (rated_w * (1.0 + rated_margin) / 3600.0)[:, None]
    span_s += (resolution_steps * prep.resolution_wh)[:, None]
    return span_s


# A register that held its value over readings with power (a hold, ``register_span_s``) may catch
# up, at the step that ends it, on what flowed meanwhile: no more than the rating over the hold's
# steps where power is unknown or read more than HOLD_READ_S apart, and where it is read closer,
# or both ends are at rest, the higher of each step's two readings (a car's draw does not climb
# above both ends of a step of 2 min and come back unseen), never above the rating's bound.
# Without it a hold whose power stopped soon after it began lent the rating its whole length:
# an 11 kW connector whose register, counting in 100 Wh, held 4.6 h after a taper at 0.9 kW
# ended, then rose 700 Wh in 30 s at rest, was allowed 58 kWh (an independently written fleet,
# seed 313, 701751).
HOLD_READ_S = 120.0
# ... the readings' power taken HOLD_SCALE_MAX times over: a register that counts up to half again
# what its power shows over a hold is a meter out of calibration (meter_mismatch's: real meters
# are found 15-25 % off), not a jump. With the rating's 10 % margin instead, the simulator's meter
# 18 % fast that sends its register only at the start and the stop (56.7 kWh after a hold of
# 411 min whose power readings show 47.8 kWh) read as a jump.
HOLD_SCALE_MAX = 1.5


def _span_start(prep: Prepared, shown: BoolArray | None = None) -> IntArray:
    """Per step ``(n, m - 1)``: the reading it counts from, as ``register_span_s`` finds it
    (``shown``: ``_hold_starts``, where the caller has it)."""
    m = prep.power_w.shape[1]
    start = np.where(_hold_starts(prep) if shown is None else shown, np.arange(m - 1), 0)
    np.maximum.accumulate(start, axis=1, out=start)
    return np.asarray(start)


def _hold_shown(prep: Prepared, start: IntArray | None = None) -> BoolArray:
    """Per step ``(n, m - 1)``: a reading after the one it counts from (``start``:
    ``_span_start``), up to its own first reading, carries a register value (the held one)."""
    m = prep.power_w.shape[1]
    if m < 2:
        return np.zeros((prep.power_w.shape[0], max(m - 1, 0)), dtype=bool)
    has = np.cumsum(prep.has_energy & prep.valid, axis=1)
    start = _span_start(prep) if start is None else start
    return np.asarray(has[:, :-1] > np.take_along_axis(has, start, axis=1))


def _hold_flow_wh(prep: Prepared, rated_w: FloatArray, rated_margin: float) -> FloatArray:
    """Per step ``(n, m - 1)``: the most that can have flowed over the steps of its hold before
    it, from the reading the step counts from (``register_span_s``) to its own first reading
    (``HOLD_READ_S``); 0 where the step counts from its own first reading."""
    p, dt = prep.power_w, prep.dt_s
    m = p.shape[1]
    if m < 2:
        return np.zeros((p.shape[0], max(m - 1, 0)))
    close = ~np.isnan(p[:, 1:]) & ~np.isnan(p[:, :-1]) & (dt <= HOLD_READ_S)
    # ... or both ends at rest, however far apart: what ``_hold_flowed`` trusts a hold's rest
    # readings for (a register held at rest between readings 5 min apart, then +1.5 kWh; seed
    # 313, TX-0019-700580)
    floor_w = np.maximum(HOLD_FLOW_W, HOLD_FLOW_SHARE * np.nan_to_num(prep.peak_power_w))
    close |= (p[:, 1:] <= floor_w[:, None]) & (p[:, :-1] <= floor_w[:, None])
    most_w = (rated_w * (1.0 + rated_margin))[:, None]
    read_w = np.fmax(p[:, 1:], p[:, :-1]) * HOLD_SCALE_MAX
    rate = np.where(close, np.fmin(read_w, most_w), most_w)
    step_wh = np.nan_to_num(rate * dt) / 3600.0
    cum = np.zeros((p.shape[0], m))
    np.cumsum(step_wh, axis=1, out=cum[:, 1:])
    start = _span_start(prep)  # the reading each step counts from
    return np.asarray(cum[:, :-1] - np.take_along_axis(cum, start, axis=1))


def _peak_bound(
    prep: Prepared,
    allowed: FloatArray,
    rows_judged: BoolArray,
    jitter_s: float,
    resolution_steps: float,
) -> BoolArray:
    """Lower ``allowed`` (in place) to the session's highest power read (``PEAK_MARGIN`` over
    it) on rows stamped in whole minutes that sample densely, where at most one step rises
    beyond that bound; per row, whether it was lowered.

    The span: a step between readings of full minutes (each holding at least the row's usual
    count of readings a minute, k) lasted about one sampling interval, 60 / k s, however its
    stamps read ("0 s", or "60 s" across two minutes): a station samples at a fixed interval
    (OCPP's MeterValueSampleInterval or clock-aligned values), and a minute that holds its
    usual count lost no reading. Twice that interval is allowed, plus the jitter. A step next
    to a minute with fewer readings keeps the stamps' span and one minute more."""
    n = prep.power_w.shape[0]
    out = np.zeros(n, dtype=bool)
    if allowed.shape[1] == 0:
        return out
    minutes = (row_max(prep.t_s) - prep.t_s[:, 0]) / 60.0 + 1.0
    dense = prep.count >= PEAK_MIN_PER_MINUTE * minutes
    rows = np.flatnonzero((prep.time_resolution_s >= COARSE_STAMP_S) & dense & rows_judged)
    rows = rows[prep.peak_power_w[rows] >= MIN_CHARGE_OFFER_W]  # below, no car charged
    if rows.size == 0:
        return out
    sub = take_rows(prep, rows)
    register_s = register_span_s(sub)
    per_minute, usual = readings_sharing_stamp(sub.t_ns, sub.valid)
    interval_s = 60.0 / usual
    # a fixed interval fills its minutes alike (k, or k + 1 where 60 s is no multiple of it);
    # readings sent on events (a change of power) do not, and say nothing of a step's length
    alike = sub.valid & (per_minute >= usual[:, None]) & (per_minute <= usual[:, None] + 1.0)
    regular = alike.sum(axis=1) >= REGULAR_SHARE * sub.count
    full = (per_minute[:, :-1] >= usual[:, None]) & (per_minute[:, 1:] >= usual[:, None])
    full &= regular[:, None]
    full &= sub.dt_s <= COARSE_STAMP_S  # the same minute or the next
    full &= register_s == sub.dt_s  # a register at both ends
    stamps_s = register_s + (sub.time_resolution_s + jitter_s)[:, None]
    span_s = np.where(full, (2.0 * interval_s + jitter_s)[:, None], stamps_s)
    peak = span_s * (sub.peak_power_w * (1.0 + PEAK_MARGIN) / 3600.0)[:, None]
    peak += (resolution_steps * sub.resolution_wh)[:, None]
    lower = np.fmin(allowed[rows], peak)
    beyond = (sub.de_wh > lower).sum(axis=1)
    keep = beyond <= 1
    allowed[rows[keep]] = lower[keep]
    out[rows[keep]] = True
    return out


def _span_by_index(t: FloatArray, shown: BoolArray) -> FloatArray:
    """The time since the register last showed a new value, for rows whose times are not in
    order: by the index of the reading the step counts from (a gather, slower; such rows are
    rare)."""
    m = t.shape[1]
    idx = np.where(shown, np.arange(m - 1), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    t_from = np.take_along_axis(t, idx, axis=1)
    return np.asarray(t[:, 1:] - t_from)


# A hold is stuck after this many of the register's usual intervals between changes, and no
# less than MIN_HOLD_S (``MeterStuck._min_hold_s``).
HOLD_UPDATES = 4
MIN_HOLD_S = 30.0


# meter_stuck on a station read sparsely (``MeterStuck.min_steps``): two flat steps where the
# readings are at least this many times ``min_duration_s`` apart
SPARSE_HOLD_INTERVALS = 2.0
SPARSE_HOLD_STEPS = 2


@dataclass(frozen=True, slots=True)
class _CatchUp:
    """A register step judged beside the readings' own (``MeterJump._stop_catch_up``: the
    meterStop's after a stuck register; ``MeterJump._start_lead``: the meterStart's to the
    first register): per row its rise, what the connector could deliver over it, their ratio
    (0 elsewhere) and its two ends."""

    x: FloatArray
    rise_wh: FloatArray
    could_wh: FloatArray
    from_ns: IntArray
    to_ns: IntArray

    @classmethod
    def none(cls, n: int) -> _CatchUp:
        zero = np.zeros(n)
        no_time = np.full(n, NO_TIME, dtype=np.int64)
        return cls(zero, zero.copy(), zero.copy(), no_time, no_time.copy())

    def stronger(self, other: _CatchUp) -> tuple[_CatchUp, BoolArray]:
        """Per row, whichever of the two steps is the stronger evidence (``other`` where its
        ratio is higher), and where that is ``other``."""
        take = other.x > self.x
        best = _CatchUp(
            *(
                np.where(take, getattr(other, name), getattr(self, name))
                for name in ("x", "rise_wh", "could_wh", "from_ns", "to_ns")
            )
        )
        return best, take


class MeterStuck(BaseDetector):
    """The register stays constant while power clearly flows (CONTRACTS.md section 3). Learns
    nothing: the register is judged against the power reported with it.

    Parameters
    ----------
    min_power_w : float, default 100.0
        Power clearly above zero: a meter at rest shows 0 W and a few watts of noise; the
        smallest real charge (6 A) is 1.4 kW.
    min_steps : int, default 3
        Flat steps in a row: one or two repeated values are a register polled less often than
        the readings are sent, not a frozen meter. Where the readings are further apart than
        twice ``min_duration_s`` (a station sampling every 4 min or less often), two: each
        flat step is then longer than any meter's poll, and two in a row are one register
        value over three readings that all show power (an independently written fleet, seed
        1: 1.9 kW read every 5 min, the register unchanged for 10 min, missed).
    min_duration_s : float, default 120.0
        Meters are polled at least once a minute; twice that.
    min_missing_resolutions : float, default 3.0
        Energy not counted, in steps of the register's resolution: a coarse register may
        legitimately not move while less than its resolution flows.
    """

    kind = AnomalyKind.METER_STUCK

    def __init__(
        self,
        *,
        min_power_w: float = 100.0,
        min_steps: int = 3,
        min_duration_s: float = 120.0,
        min_missing_resolutions: float = 3.0,
    ) -> None:
        self.min_power_w = min_power_w
        self.min_steps = min_steps
        self.min_duration_s = min_duration_s
        self.min_missing_resolutions = min_missing_resolutions

    def _flat(self, prep: Prepared) -> BoolArray:
        """Steps at power over which the register held, and the steps after them over which it
        held on: its last value at or before the step's start is its next value at or after
        the step's end. A station that sends the
        register in some readings only (every third, with power in all: OCPP sampled values
        of two configurations) shows a frozen register over every step between two equal
        values; taking only steps with a value at both ends, a register frozen for 17 min at
        72 kW was read as three readings' worth of steps, none of them consecutive (an
        independently written fleet, outside seed 1, 120754: missed)."""
        p = prep.power_w
        flowing = (p[:, 1:] >= self.min_power_w) & (p[:, :-1] >= self.min_power_w)
        held = prep.energy_ff_wh[:, :-1] == backward_fill(prep.energy_wh)[:, 1:]
        # ... and the steps after them while the register still holds, power or none: a meter
        # polled at least once a minute shows what flowed at its next poll, so a register that
        # owes the energy of its flowing steps and holds on after the car stopped drawing has
        # stopped too (a register flat from 40 s before a DC car stopped at 49 kW to 5 min
        # after, then +661 Wh at 0 W: an independently written fleet, field seed 5, missed as
        # "two readings"). Only the flowing steps count energy not counted (``run_x``)
        idx = np.arange(held.shape[1])
        last_break = np.maximum.accumulate(np.where(~held, idx, -1), axis=1)
        last_flow = np.maximum.accumulate(np.where(held & flowing, idx, -1), axis=1)
        return np.asarray(held & (last_flow > last_break))

    def run_x(self, prep: Prepared, flat: BoolArray) -> FloatArray:
        """Per step, how far the run of ``flat`` steps so far meets the thresholds (1: all of
        them; its last step holds the run's own figure)."""
        run = runs(flat, prep.dt_s)
        r_wh = runs(flat, self._flowing_wh(prep))
        min_wh = self.min_missing_resolutions * prep.resolution_wh[:, None]
        # ``min_steps`` flat steps are enough (a flag needs x > 1: half a step more counted,
        # so that the count meets it; with ``length / min_steps`` three flat steps, a register
        # frozen 45 min at 11 kW read every 15 min, scored 1.0 and were missed: outside
        # fleet, 11 such labels over seeds 1-12)
        x = np.minimum(
            np.minimum(
                (run.length + 0.5) / self._steps_needed(prep),
                run.total / self._min_hold_s(prep)[:, None],
            ),
            r_wh.total / min_wh,
        )
        return np.asarray(np.where(flat, x, 0.0))

    def _flowing_wh(self, prep: Prepared) -> FloatArray:
        """Per step, the energy its power readings show where power flows at both of its ends
        (``min_power_w``), 0 elsewhere: what a held register owes. Over a step into a reading
        at rest the power stopped somewhere in it, and the trapezoid's straight line is a
        guess: a charge cut at 6.9 kW, the next reading 4 min later at 0 W, read as 0.23 kWh
        "not counted" (an independently written fleet, seed 401 with --minute-stamps 0.5: an
        idle connector's register in 100 Wh flagged stuck)."""
        p = prep.power_w
        flowing = (p[:, 1:] >= self.min_power_w) & (p[:, :-1] >= self.min_power_w)
        return np.asarray(np.where(flowing, trapezoid_wh(p, prep.dt_s), 0.0))

    def _steps_needed(self, prep: Prepared) -> FloatArray:
        """Per row ``(n, 1)``: the flat steps in a row a hold needs (``min_steps``, or two
        where the readings are further apart than twice ``min_duration_s``)."""
        sparse = prep.interval_s >= SPARSE_HOLD_INTERVALS * self.min_duration_s
        need = np.where(sparse, min(self.min_steps, SPARSE_HOLD_STEPS), self.min_steps)
        return np.asarray(need, dtype=np.float64)[:, None]

    def _min_hold_s(self, prep: Prepared) -> FloatArray:
        """Per row, how long a hold must last to be stuck: ``min_duration_s`` (a register
        polled once a minute holds for a minute between its values), or HOLD_UPDATES times
        how often the row's register changed while power flowed, if that is shorter (not under
        MIN_HOLD_S): a register that moves at every reading 20 s apart and then holds for 100
        s at 52 kW has stopped (field fleet seed 1, FLD0003C-48219: 1.4 kWh not counted,
        missed)."""
        p = prep.power_w
        flowing = (p[:, 1:] >= self.min_power_w) & (p[:, :-1] >= self.min_power_w)
        counted = flowing & np.isfinite(prep.de_wh)
        changes = (counted & (prep.de_wh != 0)).sum(axis=1)
        span_s = np.where(counted, prep.dt_s, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            update_s = span_s / changes
        hold_s = np.clip(HOLD_UPDATES * update_s, MIN_HOLD_S, self.min_duration_s)
        return np.asarray(np.where(changes >= HOLD_UPDATES, hold_s, self.min_duration_s))

    def stuck_to_the_last(self, prep: Prepared) -> BoolArray:
        """Per row ``(n,)``: its register held a value this detector judges stuck (while power
        flowed) and never rose again to its last reading (the car may have stopped drawing
        meanwhile: the catch-up, if any, is the transaction's meterStop)."""
        prep = power_from_current(prep)[0]
        flat = self._flat(prep)
        n, k = flat.shape
        if not k or not flat.any():
            return np.zeros(n, dtype=bool)
        stuck = self.run_x(prep, flat) >= 1.0
        steps = np.arange(k)
        last_stuck = np.where(stuck, steps, -1).max(axis=1)
        rose_after = np.any((prep.de_wh > 0.0) & (steps > last_stuck[:, None]), axis=1)
        return np.asarray((last_stuck >= 0) & ~rose_after)

    def ends_stuck(self, prep: Prepared) -> BoolArray:
        """Per step ``(n, m - 1)``: the step in which the register next rises after a run of
        flat steps that this detector judges stuck (where a frozen register may catch up): the
        first step from the end of the run on whose register rises, with the register in some
        readings only the first that ends at one of them."""
        prep = power_from_current(prep)[0]
        flat = self._flat(prep)
        out: BoolArray = np.zeros(flat.shape, dtype=bool)
        if flat.shape[1] > 1 and flat.any():
            out[:, 1:] = (self.run_x(prep, flat)[:, :-1] >= 1.0) & ~flat[:, 1:]
        rows, cols = np.nonzero(out)
        if rows.size:
            # a register sent in some readings only catches up at the first step that ends at
            # one of them (the steps between carry no step of it: outside fleet seed 2,
            # 01811c7a, a catch-up two readings after the frozen stretch, missed as a jump)
            # ... and at the first step that rises: a register frozen until the car stopped
            # drawing shows its catch-up a step later, the step between flat at 0 W (field
            # fleet seed 1, 2116c9b2: 38 kWh in 60 s after SuspendedEV, missed as a jump)
            k = out.shape[1]
            idx = np.where(prep.de_wh > 0.0, np.arange(k), k)
            next_step = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
            target = next_step[rows, cols]
            out[:] = False
            keep = target < k
            out[rows[keep], target[keep]] = True
        return out

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        # a station that sends current, not power: one phase's current x voltage is power
        # enough to say the car drew (6 A is 1.4 kW, min_power_w 100 W) and a lower bound on
        # what the register did not count (town fleet seeds 1-4: 8 registers frozen 45-108
        # min at 16 A "not scored")
        prep, from_current = power_from_current(prep)
        flat = self._flat(prep)
        # the costly part only on rows with a flat step while power flows
        not_scored = not_scored_reason(prep, MIN_READINGS, "energy")
        # the energy not counted is power over the readings' times: a wrong clock says nothing
        # of it (a clock stepped back 4.8 h interleaved a 1 kWh register's readings, so that it
        # seemed to count in smaller steps and "0.185 kWh not counted" read as stuck: an
        # independently written fleet, seed 282); clock_fault speaks for the row
        not_scored[clock_untrusted(batch, prep) & is_none(not_scored)] = CLOCK_UNTRUSTED
        result = judge_candidates(self.kind, prep, flat, self._judge, not_scored)
        for i in np.flatnonzero(result.flagged & from_current).tolist():
            result.reason[i] = f"{result.reason[i]} (power: one phase's current x voltage)"
        return result

    def _judge(self, prep: Prepared) -> Verdict:
        p = prep.power_w
        flat = self._flat(prep)
        run = runs(flat, prep.dt_s)
        r_wh = runs(flat, self._flowing_wh(prep))
        x = self.run_x(prep, flat)
        at = nan_argmax(x)
        best = pick(x, at)
        first = pick(run.first, at).astype(np.int64)
        value = pick(prep.energy_ff_wh, first)
        duration = pick(run.total, at)
        missing = pick(r_wh.total, at)
        idx = np.arange(p.shape[1])
        within = (idx >= first[:, None]) & (idx <= (at + 1)[:, None])
        peak_power = row_max(np.where(within, p, np.nan))
        n_readings = pick(run.length, at) + 1

        def describe(rows: IntArray) -> list[str]:
            return [
                f"register flat at {fmt_kwh(value[i])} for {fmt_min(duration[i])} "
                f"({int(n_readings[i])} readings) while the power readings show "
                f"{fmt_kwh(missing[i])} flowing (up to {fmt_kw(peak_power[i])}): not counted"
                for i in rows
            ]

        return Verdict(
            x=np.nan_to_num(best),
            start_ns=pick(prep.t_ns, first).astype(np.int64),
            end_ns=pick(prep.t_ns, at + 1).astype(np.int64),
            describe=describe,
        )


def _arrival_fall_wh(batch: SessionBatch, row: int) -> float:
    """The largest fall of row ``row``'s register between two of its readings that carry one,
    taken in the order they arrived, where the later one is stamped later too (a reading
    delivered late was measured before the one that arrived ahead of it); 0 where none."""
    has = batch.valid[row] & ~np.isnan(batch.energy_wh[row])
    order = np.argsort(batch.arrival[row][has], kind="stable")
    values, stamps = batch.energy_wh[row][has][order], batch.t_ns[row][has][order]
    if values.size < 2:
        return 0.0
    onward = stamps[1:] > stamps[:-1]
    falls = np.where(onward, values[:-1] - values[1:], 0.0)
    return float(max(0.0, falls.max()))


class MeterBackwards(BaseDetector):
    """The register decreases (a reset, a wrap, a replaced meter). Learns nothing.

    Parameters
    ----------
    tolerance_resolutions : float, default ROUNDING_STEPS (2.0)
        A register only counts up; a fall of more than the rounding of a step's two ends to
        the register's resolution is real.
    """

    kind = AnomalyKind.METER_BACKWARDS

    def __init__(self, *, tolerance_resolutions: float = ROUNDING_STEPS) -> None:
        self.tolerance_resolutions = tolerance_resolutions

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        drop = np.where(prep.de_wh < 0, -prep.de_wh, 0.0)  # no NaN left: a plain argmax
        at = np.argmax(drop, axis=1) if drop.shape[1] else np.zeros(batch.n_sessions, np.int64)
        worst = pick(drop, at)
        tolerance_wh = fall_tolerance_wh(prep.resolution_wh, self.tolerance_resolutions)
        x = worst / tolerance_wh
        # where readings were set aside for a wrong clock, the register must fall in the order
        # they arrived too, between readings stamped in that order: a clock stepped back 4 min
        # leaves some readings stamped after the step among the trusted ones before it, and in
        # time order the register "fell" 3.1 kWh between such a pair (outside fleet seed 26,
        # 2ec997f1). A reset falls in both orders.
        for r in np.flatnonzero((prep.clock.n_bad > 0) & (x > 1.0)).tolist():
            x[r] = min(x[r], _arrival_fall_wh(batch, r) / tolerance_wh[r])
        before = pick(prep.energy_ff_wh, at)
        after = pick(prep.energy_ff_wh, at + 1)

        def describe(rows: np.ndarray) -> list[str]:
            # only the flagged rows' falls are counted
            n_drops = np.zeros(batch.n_sessions, dtype=np.int64)
            n_drops[rows] = np.sum(drop[rows] > tolerance_wh[rows, None], axis=1)
            return [
                f"register fell from {fmt_kwh(before[i])} to {fmt_kwh(after[i])} "
                f"({fmt_kwh(worst[i])} backwards"
                + (f"; {int(n_drops[i])} falls in all)" if n_drops[i] > 1 else ")")
                for i in rows
            ]

        not_scored = not_scored_reason(prep, MIN_READINGS, "energy")
        mv = meter_values_rows(batch, prep)
        if not mv.size:
            return step_result(self.kind, prep, x, at, describe, not_scored)
        # readings without a register: the transaction's meter values, one step from its start
        # to its stop (a session table's energy; "8 negative registers" in real tables)
        ends = np.stack((batch.meter_start_wh[mv], batch.meter_stop_wh[mv]), axis=1)
        worst[mv] = np.maximum(ends[:, 0] - ends[:, 1], 0.0)
        tolerance_wh[mv] = fall_tolerance_wh(
            register_resolution_wh(np.diff(ends, axis=1), ends), self.tolerance_resolutions
        )
        x[mv] = worst[mv] / tolerance_wh[mv]
        before[mv], after[mv] = ends[:, 0], ends[:, 1]
        not_scored[mv] = None
        start_ns = pick(prep.t_ns, at).astype(np.int64)
        end_ns = pick(prep.t_ns, at + 1).astype(np.int64)
        start_ns[mv], end_ns[mv] = batch.start_ns[mv], batch.stop_ns[mv]
        by_values = np.zeros(batch.n_sessions, dtype=bool)
        by_values[mv] = True

        def describe_all(rows: IntArray) -> list[str]:
            texts = describe(rows)
            return [
                f"{text} (meterStart to meterStop)" if by_values[i] else text
                for i, text in zip(rows, texts, strict=True)
            ]

        return build_result(
            self.kind, excess_score(x), x > 1.0, start_ns, end_ns, describe_all, not_scored
        )


def meter_values_rows(batch: SessionBatch, prep: Prepared) -> IntArray:
    """Rows judged by the transaction's meter values (meterStart, meterStop) for want of
    register readings: fewer than two readings carry it, both values were sent, and the
    session has stopped, not before its start."""
    return np.flatnonzero(
        (prep.n_energy < MIN_READINGS)
        & ~np.isnan(batch.meter_start_wh)
        & ~np.isnan(batch.meter_stop_wh)
        & (batch.stop_ns != NO_TIME)
        & (batch.stop_ns >= batch.start_ns)
    )


def station_meter_rated_w(
    batch: SessionBatch, rated: FloatArray, known: Mapping[str, int] | None = None
) -> FloatArray:
    """``rated`` (per row, a connector's rating), with the rows of connector 0 rated for every
    connector of their station at once. Connector 0 is the station itself (OCPP 1.6: its main
    energy meter, sent in clock-aligned MeterValues; 2.0.1: EVSE 0): its register counts what
    all its connectors deliver together, so a two-connector 11 kW station's main meter rises by
    22 kW when both charge (a third-party station through ``serve``: "5.500 kWh in 15 min; at
    most 3.235 kWh possible"). Its connectors are those the batch holds rows of, or as many as
    the highest connector number seen of the station (``known``: ``ratings.station_connectors``
    of the history the detector was fitted on), at least one: a window of the job holds rows
    of the connectors busy in it only (town fleet seed 4, a four-connector workplace station's
    main meter rising 6.9 kWh in 15 min read as a jump against two connectors' 22 kW, by the
    job alone)."""
    main = batch.connector_id == 0
    if not main.any():
        return rated
    per_station: dict[str, set[int]] = {}
    for station, connector in zip(
        batch.station_id.tolist(), batch.connector_id.tolist(), strict=True
    ):
        if connector > 0:
            per_station.setdefault(str(station), set()).add(int(connector))
    known = known if known is not None else {}

    def count_of(station: str) -> int:
        seen = per_station.get(station, set())
        return max(len(seen), max(seen, default=0), known.get(station, 0), 1)

    count = np.array([count_of(str(s)) for s in batch.station_id[main].tolist()], dtype=np.float64)
    out = rated.copy()
    out[main] = rated[main] * count
    return out


class MeterJump(BaseDetector):
    """The register rises by more than the connector could deliver in that interval. Learns
    each station's rated power (``ratings_``).

    Parameters
    ----------
    rated_margin : float, default JUMP_RATED_MARGIN (0.1)
        Relative slack on the rated power: the meter's accuracy class, and a rating that is
        estimated (from history), not declared.
    jitter_s : float, default JUMP_JITTER_S (2.0)
        Slack on the step's time: sampling jitter plus the lag between reading the meter and
        stamping the message. One unit of the stamps' own resolution is added to it (see
        ``jump_allowance_wh``).
    resolution_steps : float, default ROUNDING_STEPS (2.0)
        Slack in steps of the register's resolution: both ends of the step are rounded to it.

    A session whose readings carry fewer than two register values is judged by the
    transaction's meter values (meterStart, meterStop) over its start to its stop.
    """

    kind = AnomalyKind.METER_JUMP

    def __init__(
        self,
        *,
        rated_margin: float = JUMP_RATED_MARGIN,
        jitter_s: float = JUMP_JITTER_S,
        resolution_steps: float = ROUNDING_STEPS,
    ) -> None:
        self.rated_margin = rated_margin
        self.jitter_s = jitter_s
        self.resolution_steps = resolution_steps

    def fit(self, batch: SessionBatch) -> Self:
        self.ratings_ = StationRatings.learn(batch)
        self.connectors_ = station_connectors(batch)
        return super().fit(batch)

    def _rated(self, batch: SessionBatch, prep: Prepared) -> FloatArray:
        learned = self.ratings_.lookup(batch.station_id)
        rated = rated_power_w(prep, learned)
        # an AC rating that is only what cars drew (nothing declared, nothing offered on the
        # station or in the row; a station the history does not know is rated by the row's own
        # power) is a lower bound: ``AC_CONNECTOR_MAX_W`` bounds the jump
        guessed = self.ratings_.lookup_measured_only(batch.station_id) | np.isnan(learned)
        guessed &= np.isnan(prep.max_offered_w) & ~(rated > AC_MAX_W)
        rated = np.where(guessed, np.fmax(rated, AC_CONNECTOR_MAX_W), rated)
        # a detector whose state was loaded, not fitted, knows no connectors beyond the batch's
        return station_meter_rated_w(batch, rated, getattr(self, "connectors_", None))

    def allowance_wh(self, batch: SessionBatch, prep: Prepared) -> FloatArray:
        """Most each register step may rise; cached in ``batch.extra`` (meter_mismatch reads
        it too)."""
        self.check_is_fitted()
        allowed, _ = self._allowance(batch, prep, self._rated(batch, prep))
        return allowed

    def rating_allowance_wh(self, prep: Prepared, rated: FloatArray) -> FloatArray:
        """Most each register step may rise at the connector's rating ``rated`` alone
        (``jump_allowance_wh`` with this detector's margins), before the readings' peak
        (``_peak_bound``) and the register's steady scale are taken into account."""
        return jump_allowance_wh(
            prep,
            rated,
            rated_margin=self.rated_margin,
            jitter_s=self.jitter_s,
            resolution_steps=self.resolution_steps,
        )

    def _allowance(
        self, batch: SessionBatch, prep: Prepared, rated: FloatArray
    ) -> tuple[FloatArray, BoolArray]:
        """Most each register step may rise, and per row whether that bound was lowered to its
        readings' peak (``_peak_bound``)."""
        # keyed by the ratings' values, not the detector: meter_mismatch's own MeterJump, fitted
        # on the same history, shares it; ``prep`` is held in the key (compared by identity), so
        # a new ``Prepared`` never meets a stale entry under a reused id
        params = (self.rated_margin, self.jitter_s, self.resolution_steps, rated.tobytes())
        cached = batch.extra.get("_allowance")
        if isinstance(cached, tuple) and cached[0] is prep and cached[1] == params:
            return cached[2], cached[3]
        allowed = self.rating_allowance_wh(prep, rated)
        # sessions only: readings outside any (unauthorized_energy's) carry no car's charge
        in_session = ~is_none(batch.session_id)
        by_peak = _peak_bound(prep, allowed, in_session, self.jitter_s, self.resolution_steps)
        # stretched by the register's steady scale (a miscalibrated meter is no jump, see
        # ``register_scale``), for meter_mismatch too, which judges the steps within this bound:
        # worked out only for rows with a step over the rated bound, the only ones it can change
        if allowed.size:
            over = np.flatnonzero((prep.de_wh > allowed).any(axis=1)).astype(np.int64)
            if over.size:
                allowed[over] = allowed[over] * register_scale(take_rows(prep, over))[:, None]
        batch.extra["_allowance"] = (prep, params, allowed, by_peak)
        return allowed, by_peak

    def _span_could_wh(
        self,
        prep: Prepared,
        rated: FloatArray,
        rows: IntArray,
        from_ns: IntArray,
        to_ns: IntArray,
        resolution_wh: FloatArray,
    ) -> FloatArray:
        """``span_allowance_wh`` with this detector's margins, for ``rows``."""
        return span_allowance_wh(
            rated[rows],
            from_ns,
            to_ns,
            prep.time_resolution_s[rows],
            resolution_wh,
            rated_margin=self.rated_margin,
            jitter_s=self.jitter_s,
            resolution_steps=self.resolution_steps,
        )

    def _stop_catch_up(self, batch: SessionBatch, prep: Prepared, rated: FloatArray) -> _CatchUp:
        """The step from the last reading with a register to the transaction's meterStop where
        the register was stuck to that reading (``MeterStuck``), judged by the rated bound over
        the step's own time."""
        n, m = prep.has_energy.shape
        out = _CatchUp.none(n)
        if not m:
            return out
        rows = np.flatnonzero(~np.isnan(batch.meter_stop_wh) & (batch.stop_ns != NO_TIME))
        rows = rows[MeterStuck().stuck_to_the_last(take_rows(prep, rows))] if rows.size else rows
        if not rows.size:
            return out
        last = np.where(prep.has_energy[rows], np.arange(m), -1).max(axis=1)
        from_ns, to_ns = prep.t_ns[rows, last].astype(np.int64), batch.stop_ns[rows]
        could = self._span_could_wh(prep, rated, rows, from_ns, to_ns, prep.resolution_wh[rows])
        rise = np.maximum(batch.meter_stop_wh[rows] - prep.energy_wh[rows, last], 0.0)
        out.x[rows] = np.nan_to_num(rise / could)
        out.rise_wh[rows], out.could_wh[rows] = rise, could
        out.from_ns[rows], out.to_ns[rows] = from_ns, to_ns
        return out

    def _start_lead(self, batch: SessionBatch, prep: Prepared, rated: FloatArray) -> _CatchUp:
        """The step from the transaction's meterStart to the first reading with a register,
        judged by the rated bound over the step's own time. A register read only every 45 min
        whose first reading leaps 62 kWh past the meterStart in 14 min on a 22 kW wallbox, and
        falls back at the next, showed a fall and no jump (outside fleet seed 20,
        TRX-0121-00007). Only where the meter values are the register's own, as the meterStop
        shows: at or above the last reading with one and no further than the connector
        delivers from there (a station that sends meterStart 0 and meterStop as the session's
        energy, beside an absolute register, would read as a leap of the register's whole
        count)."""
        n, m = prep.has_energy.shape
        out = _CatchUp.none(n)
        if not m or not n:
            return out
        known = (
            ~np.isnan(batch.meter_start_wh)
            & ~np.isnan(batch.meter_stop_wh)
            & (batch.start_ns != NO_TIME)
            & (batch.stop_ns != NO_TIME)
            & (prep.n_energy >= 1)
        )
        rows = np.flatnonzero(known)
        if not rows.size:
            return out
        idx = np.arange(m)
        has = prep.has_energy[rows]
        first = np.where(has, idx, m).min(axis=1)
        last = np.where(has, idx, -1).max(axis=1)
        first_wh, last_wh = prep.energy_wh[rows, first], prep.energy_wh[rows, last]
        start_wh, stop_wh = batch.meter_start_wh[rows], batch.meter_stop_wh[rows]
        res = np.fmax(prep.resolution_wh[rows], meter_values_resolution_wh(start_wh, stop_wh))
        last_ns = prep.t_ns[rows, last].astype(np.int64)
        tail = stop_wh - last_wh
        own = tail >= -res
        own &= tail <= self._span_could_wh(prep, rated, rows, last_ns, batch.stop_ns[rows], res)
        from_ns, to_ns = batch.start_ns[rows], prep.t_ns[rows, first].astype(np.int64)
        could = self._span_could_wh(prep, rated, rows, from_ns, to_ns, res)
        rise = np.maximum(first_wh - start_wh, 0.0)
        x = np.where(own, np.nan_to_num(rise / could), 0.0)
        # stretched by the register's steady scale, as the steps between readings are (a
        # miscalibrated meter is no jump): worked out where the rated bound is exceeded
        over = np.flatnonzero(x > 1.0)
        if over.size:
            could[over] *= register_scale(take_rows(prep, rows[over]))
            x[over] = np.nan_to_num(rise[over] / could[over])
        out.x[rows], out.rise_wh[rows], out.could_wh[rows] = x, rise, could
        out.from_ns[rows], out.to_ns[rows] = from_ns, to_ns
        return out

    def rated_w(self, batch: SessionBatch, prep: Prepared) -> FloatArray:
        """Each row's rated power as this detector judges it (``ratings.rated_power_w``)."""
        self.check_is_fitted()
        return self._rated(batch, prep)

    def _meter_values_allowance(
        self, batch: SessionBatch, prep: Prepared, rated: FloatArray, rows: IntArray
    ) -> FloatArray:
        return meter_values_allowance_wh(
            batch,
            prep,
            rated,
            rows,
            rated_margin=self.rated_margin,
            jitter_s=self.jitter_s,
            resolution_steps=self.resolution_steps,
        )

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        rated = self._rated(batch, prep)
        # the register's steady scale included
        allowed, by_peak = self._allowance(batch, prep, rated)
        rise = np.where(prep.de_wh > 0, prep.de_wh, 0.0)
        ratio = rise / allowed
        at = nan_argmax(ratio)
        x_readings = pick(ratio, at)
        by_readings = _CatchUp(
            np.where(np.isnan(x_readings), 0.0, x_readings),
            pick(rise, at),
            pick(allowed, at),
            pick(prep.t_ns, at).astype(np.int64),
            pick(prep.t_ns, at + 1).astype(np.int64),
        )
        # a register stuck to its last reading that the transaction's meterStop shows caught
        # up: the catch-up is judged on its own step, from that reading to the stop, as one
        # within the readings is (depot fleet seeds 1-4: 13 registers frozen for 5-305 min
        # until the stop, whose meterStop counted what flowed, missed)
        best, at_stop = by_readings.stronger(self._stop_catch_up(batch, prep, rated))
        # ... and the step from the meterStart to the first reading with a register
        best, at_start = best.stronger(self._start_lead(batch, prep, rated))
        at_stop &= ~at_start
        x, step, could = best.x, best.rise_wh, best.could_wh
        start_ns, end_ns = best.from_ns, best.to_ns  # new arrays: written below for meter values
        not_scored = not_scored_reason(prep, MIN_READINGS, "energy")
        # readings without a register: the transaction's meter values, one step from its start
        # to its stop, judged by the same bound
        mv = meter_values_rows(batch, prep)
        mv_span_s = (batch.stop_ns[mv] - batch.start_ns[mv]) / NS_PER_S
        if mv.size:
            step[mv] = np.maximum(batch.meter_stop_wh[mv] - batch.meter_start_wh[mv], 0.0)
            could[mv] = self._meter_values_allowance(batch, prep, rated, mv)
            x[mv] = np.nan_to_num(step[mv] / could[mv])
            start_ns[mv], end_ns[mv] = batch.start_ns[mv], batch.stop_ns[mv]
            not_scored[mv] = None
        not_scored[np.isnan(rated) & is_none(not_scored)] = (
            "no rated power known for this connector (no offered or measured power)"
        )
        # a rise over an interval the clock cannot measure: no rate to judge
        not_scored[clock_untrusted(batch, prep) & is_none(not_scored)] = CLOCK_UNTRUSTED

        def describe(rows: np.ndarray) -> list[str]:
            # the time the step counted over, from the last reading that carried a register
            # (worked out for the flagged rows only); the transaction's span for meter values
            flagged = take_rows(prep, rows)
            dt = pick(register_span_s(flagged), at[rows])
            own_s = pick(flagged.dt_s, at[rows])
            hold_wh = pick(_hold_flow_wh(flagged, rated[rows], self.rated_margin), at[rows])
            scale = register_scale(flagged)
            by_values = np.isin(rows, mv)
            dt[by_values] = mv_span_s[np.searchsorted(mv, rows[by_values])]
            # a step that ends a hold: its own time, and what the hold's power readings allow
            # (``_hold_flow_wh``) where that bound is the one that held
            held = ~by_values & (dt > own_s) & (hold_wh < rated[rows] * (dt - own_s) / 3600.0)
            held &= pick(_hold_shown(flagged), at[rows])
            stuck = ~by_values & pick(MeterStuck().ends_stuck(flagged), at[rows])
            own_s = np.where(stuck, pick(register_read_span_s(flagged), at[rows]), own_s)
            when = [
                f"in {fmt_min(o)} after it was stuck for {fmt_min(d - o)} while power flowed"
                " (a stuck register's catch-up is judged on its own step)"
                if sk
                else f"in {fmt_min(o)} after holding its value for {fmt_min(d - o)}, over which"
                f" its power readings show at most {fmt_kwh(h)} could flow"
                if hd
                else f"in {fmt_min(d)}"
                for d, o, h, hd, sk in zip(dt, own_s, hold_wh, held, stuck, strict=True)
            ]
            when = [
                f"in {fmt_min((int(end_ns[i]) - int(start_ns[i])) / NS_PER_S)} from its last"
                " reading to the meterStop, after it was stuck while power flowed"
                if at_stop[i] and not v
                else f"in {fmt_min((int(end_ns[i]) - int(start_ns[i])) / NS_PER_S)} from the"
                " meterStart to its first reading"
                if at_start[i] and not v
                else w
                for i, w, v in zip(rows, when, by_values, strict=True)
            ]
            return [
                f"register rose {fmt_kwh(step[i])} {w}; at most "
                f"{fmt_kwh(could[i])} possible at the connector's {fmt_kw(rated[i])}"
                + (
                    f", or at the {fmt_kw(prep.peak_power_w[i])} its readings show at most"
                    " (stamps in whole minutes)"
                    if by_peak[i] and not v
                    else ""
                )
                + (" (meterStart to meterStop)" if v else "")
                + (
                    f" times the register's steady {k:.2f} x the power"
                    if round(float(k), 2) > 1.0 and not v
                    else ""
                )
                for i, w, v, k in zip(rows, when, by_values, scale, strict=True)
            ]

        return build_result(
            self.kind, excess_score(x), x > 1.0, start_ns, end_ns, describe, not_scored
        )


# Accuracy classes that bound how far register and integrated power may disagree with no fault:
# the power reading of a charger's measuring electronics (IEC 61557-12 class 2 for AC; DC
# current shunts and voltage dividers to about 2 %), and the meter (MID class B: 1 %; DC meters
# under EN IEC 62053-41, class 0.5 to 1).
POWER_SENSOR_CLASS = 0.02
METER_CLASS = 0.01


# Register and integrated power may disagree by this share of the energy (CONTRACTS.md
# section 3); a session whose samples cannot tell that much is "unverifiable".
MISMATCH_MAX_RELATIVE = 0.15


def integration_doubt_wh(
    power_w: FloatArray, dt_s: FloatArray, time_res_s: FloatArray
) -> FloatArray:
    """How far the trapezoid of each step ``(n, m - 1)`` may be from the true energy, in Wh.

    Between two samples the true power may follow any path between their values; the trapezoid
    and the step rule differ by half the change times the step, ``|dP| dt / 2``, and a path
    that stays between the two values lies within that of the trapezoid. Stamps truncated to a
    resolution ``r`` (``time_res_s``, per row) are late by 0 to ``r``: moving sample i by d_i
    changes the trapezoid by ``d_i (P[i-1] - P[i+1]) / 2``; the common part of the d_i (r / 2)
    only shifts the session's two ends (``energy_balance`` counts them), what varies (up to
    r / 2 either way) adds ``|dP| r / 2`` per step, hence ``|dP| (dt + r) / 2``.
    NaN where either power is unknown."""
    doubt = np.diff(power_w, axis=1)
    np.abs(doubt, out=doubt)
    doubt *= 0.5
    doubt *= dt_s + time_res_s[:, None]
    doubt /= 3600.0
    return np.asarray(doubt)


# A charger's power reading below this is a sensor offset and is read as 0 W, though up to
# this much may truly flow unseen: a car plugged in draws tens of W for its 12 V system and
# electronics (a register creeping a few Wh an hour at 0 W), and chargers that report power in
# tenths of kW show 0 for anything under 50 W.
SENSOR_OFFSET_W = 50.0


def deadband_doubt_wh(power_w: FloatArray, dt_s: FloatArray, offset_w: float) -> FloatArray:
    """The energy each step ``(n, m - 1)`` may hide under the sensor offset: at an end read
    below ``offset_w`` (taken as 0 W) up to ``offset_w`` may flow, half the step's time each.
    8 h plugged after a charge hide at most 0.4 kWh, a few % of any charge worth judging;
    without it a car's standby counted by the meter reads as a miscalibrated register (a
    workplace session that never charged: "0.200 kWh but power integrates to 0.021 kWh")."""
    low = (power_w < offset_w).astype(np.float64)
    ends = low[:, 1:] + low[:, :-1]
    return np.asarray(0.5 * offset_w * ends * dt_s / 3600.0)


def step_doubt_wh(
    power_w: FloatArray,
    raw_power_w: FloatArray,
    dt_s: FloatArray,
    time_res_s: FloatArray,
    offset_w: float,
) -> FloatArray:
    """How far each step's trapezoid (of ``power_w``) may be from the energy that truly flowed:
    the integration doubt and what the sensor offset may hide (of the power as read,
    ``raw_power_w``). meter_mismatch's bound, and the billing view's."""
    doubt = integration_doubt_wh(power_w, dt_s, time_res_s)
    doubt += deadband_doubt_wh(raw_power_w, dt_s, offset_w)
    return doubt


@dataclass(frozen=True, slots=True)
class EnergyBalance:
    """Per row: the register's energy and the integral of power over the same clean spans, and
    how far apart the samples allow them to be with no fault (``bound_wh``)."""

    register_wh: FloatArray
    power_wh: FloatArray
    bound_wh: FloatArray
    n_spans: IntArray  # register spans compared
    # True where only the steady spans were compared (``STEADY_SPAN_DOUBT``), and the share
    # of the clean spans' integrated energy they hold (1.0 where all were compared)
    steady_only: BoolArray | None = None
    steady_share: FloatArray | None = None
    # True where a steady span the register counts right contradicts the rows' ratio
    # (``SCALE_WITNESS_SHARE``): the disagreement is not the meter's scale
    scale_witness: BoolArray | None = None


# Where a session's spans together cannot tell 15 % apart (a station sampling every 10-15 min,
# whose ramp-down step alone leaves the trapezoid hundreds of Wh of doubt), its steady spans
# still can: a span whose integration doubt is at most STEADY_SPAN_DOUBT (5 %) of its energy
# (power within about 5 % at both ends). A meter counts its share of what flows the same way in
# every span, so a register 20 % off over the steady spans is 20 % off over the session; the
# steady spans are compared alone when they hold at least STEADY_MIN_SHARE (half) of the clean
# spans' energy and bound it within the allowance themselves, each span left out counting as a
# break in the run (its two ends' rounding and stamp resolution added to the bound). Missed
# without it: registers 22-24 % off on 3.6 kW AC sampled every 10-15 min (an independently
# written fleet, seed 72 with --sparse-sampling 0.5: "unverifiable" at 17-19 %).
STEADY_SPAN_DOUBT = 0.05
STEADY_MIN_SHARE = 0.5

# ... and for the same reason, a steady span over which the register agrees with power within
# that span's own bound, while the session's ratio is beyond it, says the meter's scale is right:
# the session's disagreement lies in spans where power changed between two like readings (11 kW
# at both ends of a 15 min step, the register 7.0 kW on average, the step before it counted
# right to 1 Wh: "-18 %" on a normal AC session, an independently written fleet, seed 301). Such
# a span must hold SCALE_WITNESS_SHARE (a fifth) of the energy compared: one short span's
# agreement is not the session's.
SCALE_WITNESS_SHARE = 0.2

# A session's first reading may be taken while the power still ramps up (a DC charger's cable
# check, insulation test and pre-charge take 30-120 s; an AC contactor a few seconds). The power
# then climbs to the car's level right after it, and the car's taper may bring it back down by
# the next reading: on a station sampling every 10-15 min the first step's trapezoid then misses
# a third of its energy or more, outside any bound drawn from its two ends (an independently
# written fleet, seed 122 with --sparse-sampling 0.5: 6 normal sessions "+22 % to +73 %"). So
# the first step is left out, as a span across a data gap is, when the first reading comes within
# RAMP_S of the session's start, the first two readings both carry the register (where the
# register comes only now and then, its first span holds more than the ramp: it stays), and the
# step lasts RAMP_S or more (a shorter one holds less than the connector's 2 min, and leaving it
# out would cost more: the bound counts a break in the run at the stamps' resolution, 2 x 60 s
# of the peak with whole-minute stamps; a step of exactly 2 min, 33 kW in the ramp to 26 W at
# rest, held 4.3 kWh of a charge at 130 kW before a stall: seed 213, "+683 %").
RAMP_S = 120.0
# ... and a step from a reading at rest (at most RESUME_FROM_W, or RESUME_FROM_SHARE of the
# session's peak: stall's "near zero") to one with power, on the same grounds: charging resumed
# in it after a pause (an offer of 0 lifted, the car waking) and ramped up past the next
# reading's power (seed 133 with --sparse-sampling 0.5: 0 W, then 57 kW 15 min later, the
# register 18 kWh: "+155 %" on a normal session).
RESUME_FROM_W = 200.0
RESUME_FROM_SHARE = 0.02
# ... and a step with power at both ends over which the charger paused or resumed: its status
# at the two readings differs, one of them a pause (SuspendedEVSE, SuspendedEV, Faulted). Power
# stopped and started again somewhere inside it, and both ends' power says nothing of how long
# (seed 132 with sparse and coarse stations: 50 kW at both ends of a 15 min step, SuspendedEVSE
# for 11 of its minutes, the register 3.2 kWh: "-38 %" on a normal session). A step with an end
# at rest is left in: its trapezoid and doubt follow the fall (a car that finished in it).
PAUSE_STATUSES = np.array(
    [StatusCode.SUSPENDED_EVSE, StatusCode.SUSPENDED_EV, StatusCode.FAULTED], dtype=np.int8
)
# ... and a step over which the charger's offer moved while it held the power: the offers in
# force at its two readings differ by more than OFFER_MOVED (5 %) of the higher, and the power
# at the end with the lower offer is at that offer (OFFER_HELD, 90 % of it or more). The limit
# changed somewhere inside the step, and the power followed it from a moment the two ends do
# not tell (seed 332 with stations sampling every 15 min: 50 kW at 50 kW offered, then 24 kW at
# 24 kW offered, then 25 kW with 50 kW offered again; the register 46 and 32 kW on average
# over the two steps: "+28 %" on a normal session).
OFFER_MOVED = 0.05
OFFER_HELD = 0.9


def first_reading_in_ramp(batch: SessionBatch, prep: Prepared) -> BoolArray:
    """Per row: does its first trusted reading come within ``RAMP_S`` of the session's start
    (so that its power may still be ramping up)?"""
    has_start = batch.start_ns != NO_TIME
    first_ns = prep.t_ns[:, 0] if prep.t_ns.shape[1] else np.zeros(batch.n_sessions, np.int64)
    after_ns = first_ns - np.where(has_start, batch.start_ns, first_ns)
    return np.asarray(has_start & (prep.count > 1) & (after_ns < RAMP_S * NS_PER_S))


def energy_balance(
    prep: Prepared,
    allowed_wh: FloatArray,
    *,
    sensor_offset_w: float,
    gap_intervals: float,
    gap_min_s: float,
    trapezoid_doubt: float = 1.0,
    max_relative: float = MISMATCH_MAX_RELATIVE,
    skip_first: BoolArray | None = None,
) -> EnergyBalance:
    """Register against integrated power, span by span.

    A register span runs from one reading that carries a register value to the next one that
    does (one step when every reading carries it; the whole session when only the start and
    the stop do). The power is integrated over the same span. A span is left out of both sums
    when another kind explains it or the trapezoid cannot follow it: the register falls (beyond
    its rounding) or jumps (beyond ``allowed_wh``), power is missing inside it, it holds a
    data gap (as data_gap defines it), or it is the first step of a row in ``skip_first`` (a
    first reading taken in the ramp-up, ``RAMP_S``) with a register at both ends, or a step
    (with a register at both ends) that charging resumed in (``RESUME_FROM_W``) or that the
    charger paused or resumed in (``PAUSE_STATUSES``).

    The bound is what the samples can support: the integration doubt of the spans compared
    (``integration_doubt_wh``), the accuracy classes of power sensor and meter on the energy,
    the register's rounding (twice its resolution for each unbroken run of spans: a run's
    steps add up to the difference of its two ends), and the power at the ends of the runs
    times the stamps' resolution (the ends whose stamp errors do not cancel). Where that bound
    is wider than ``max_relative`` of the energy, the steady spans alone are compared if they
    can tell (``STEADY_SPAN_DOUBT``)."""
    n, k = prep.de_wh.shape
    if k == 0:  # nothing to compare; the bound is the rounding, never 0
        zero = np.zeros(n)
        rounding = ROUNDING_STEPS * prep.resolution_wh
        return EnergyBalance(zero, zero.copy(), rounding, np.zeros(n, dtype=np.int64))
    power = np.where(prep.power_w < sensor_offset_w, 0.0, prep.power_w)
    res_t = prep.time_resolution_s
    step_pw = trapezoid_wh(power, prep.dt_s)
    step_doubt = step_doubt_wh(power, prep.power_w, prep.dt_s, res_t, sensor_offset_w)
    step_bad = np.isnan(step_pw)
    step_bad |= (prep.dt_s > gap_intervals * prep.interval_s[:, None]) & (prep.dt_s >= gap_min_s)
    span_pw, span_doubt, span_bad = step_pw, step_doubt, step_bad
    # at rest: at most RESUME_FROM_W, or RESUME_FROM_SHARE of the session's peak
    rest_w = np.maximum(RESUME_FROM_W, RESUME_FROM_SHARE * np.nan_to_num(prep.peak_power_w))
    # a step from a reading at rest to one with power, longer than the ramp: charging (re)began
    # in it and may have climbed past its end before the car's taper brought it down (as the
    # first step's ramp, ``RAMP_S``)
    p0, p1 = prep.power_w[:, :-1], prep.power_w[:, 1:]
    resumed = (p0 <= rest_w[:, None]) & (p1 > rest_w[:, None]) & (prep.dt_s > RAMP_S)
    # rows where some reading carries no register: their spans cover several steps (where every
    # reading carries one, the common case, a span is its step); a span that holds such a
    # step is left out whole (a DC charge read every 15 min, the register in the first and
    # the last readings only: 0 W at the start, 77 kW 15 min on, 29 kWh counted where the
    # straight line from 0 W allowed 21: "+154 %"; outside fleet seed 27, TRX-0270-00005)
    sparse = np.flatnonzero(np.any(prep.valid & ~prep.has_energy, axis=1))
    if sparse.size:
        last_reg = np.where(prep.has_energy[sparse, :-1], np.arange(k), 0)
        np.maximum.accumulate(last_reg, axis=1, out=last_reg)
        bad_ = step_bad[sparse] | resumed[sparse]
        span_pw[sparse] = _span_sums(step_pw[sparse], bad_, last_reg)
        span_doubt[sparse] = _span_sums(step_doubt[sparse], bad_, last_reg)
        span_bad[sparse] = _span_sums(bad_.astype(np.float64), None, last_reg) > 0
    res = prep.resolution_wh[:, None]
    # a step with a register value at both ends closes a span (NaN de_wh fails every test)
    closing = ~np.isnan(prep.de_wh)
    clean = prep.de_wh >= -ROUNDING_STEPS * res
    clean &= ~(prep.de_wh > allowed_wh)
    clean &= ~span_bad
    if skip_first is not None:  # the ramp's first step, where it is a long span of its own
        # (a step stamped exactly RAMP_S long in whole minutes may have lasted 60 s)
        ramp_long = prep.dt_s[:, 0] >= RAMP_S + np.where(res_t >= 60.0, 1.0, 0.0)
        # ... or a shorter one that ends at rest with its register beyond what its two ends
        # allow: the power climbed past the ramp's reading and stopped inside it (76 kW in the
        # ramp 25 s after the start, 0 W a minute later, the register 2.1 kWh, 126 kW on
        # average before a stall: "+230 %"; an independently written fleet, seed 244)
        ends_at_rest = prep.power_w[:, 1] <= rest_w
        beyond = prep.de_wh[:, 0] > step_pw[:, 0] + step_doubt[:, 0] + ROUNDING_STEPS * res[:, 0]
        stopped_in_it = ends_at_rest & beyond
        clean[:, 0] &= ~(skip_first & closing[:, 0] & (ramp_long | stopped_in_it))
    # ... and a step where charging (re)began that is a span of its own
    clean &= ~(resumed & closing & prep.has_energy[:, :-1])
    s0, s1 = prep.status[:, :-1], prep.status[:, 1:]
    paused = (s0 != s1) & (np.isin(s0, PAUSE_STATUSES) | np.isin(s1, PAUSE_STATUSES))
    paused &= (p0 > rest_w[:, None]) & (p1 > rest_w[:, None])  # an end at rest: the ramp's own
    clean &= ~(paused & closing & prep.has_energy[:, :-1])
    offered = forward_fill(prep.offered_w)  # an offer holds until the next one
    o0, o1 = offered[:, :-1], offered[:, 1:]
    with np.errstate(invalid="ignore"):
        moved = np.abs(o1 - o0) > OFFER_MOVED * np.fmax(o0, o1)  # NaN (no offer): False
        moved &= np.where(o0 < o1, p0, p1) >= OFFER_HELD * np.fmin(o0, o1)
    clean &= ~(moved & closing & prep.has_energy[:, :-1])
    ends_w = np.nan_to_num(_first_last_power(power)).sum(axis=1)

    def balance(compared: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        e_reg = row_sum_where(prep.de_wh, compared)
        e_pow = row_sum_where(span_pw, compared)
        doubt = row_sum_where(span_doubt, compared)
        # runs of compared spans: at most one more than the spans left out between them
        n_runs = 1 + (closing & ~compared).sum(axis=1)
        # the two ends of the row, and two ends (power at most the peak) per span left out
        ends = ends_w + 2.0 * (n_runs - 1) * np.nan_to_num(prep.peak_power_w)
        bound = trapezoid_doubt * doubt
        bound += (POWER_SENSOR_CLASS + METER_CLASS) * np.abs(e_pow)
        bound += ROUNDING_STEPS * prep.resolution_wh * n_runs
        bound += res_t * ends / 3600.0
        return e_reg, e_pow, bound

    e_reg, e_pow, bound = balance(clean)
    n_spans = clean.sum(axis=1)
    share = np.ones(n)
    steady_only = np.zeros(n, dtype=bool)
    wide = np.flatnonzero((bound > max_relative * e_pow) & (n_spans > 1))
    if wide.size:  # the steady spans alone (``STEADY_SPAN_DOUBT``), on those rows only
        with np.errstate(invalid="ignore"):
            steady = clean & (span_doubt <= STEADY_SPAN_DOUBT * span_pw) & (span_pw > 0)
        steady[np.setdiff1d(np.arange(n), wide)] = False
        s_reg, s_pow, s_bound = balance(steady)
        with np.errstate(invalid="ignore", divide="ignore"):
            s_share = np.where(e_pow > 0, s_pow / e_pow, 0.0)
        use = np.zeros(n, dtype=bool)
        use[wide] = True
        use &= (s_share >= STEADY_MIN_SHARE) & (s_bound <= max_relative * s_pow)
        e_reg = np.where(use, s_reg, e_reg)
        e_pow = np.where(use, s_pow, e_pow)
        bound = np.where(use, s_bound, bound)
        n_spans = np.where(use, steady.sum(axis=1), n_spans)
        share = np.where(use, s_share, share)
        steady_only = use
    # the scale's witness: a steady span compared, counted right, the rows' ratio beyond its
    # own bound (its doubt, the classes, the rounding of its two ends and their stamps')
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(e_pow > 0, e_reg / e_pow, np.nan)[:, None]
        span_bound = span_doubt + (POWER_SENSOR_CLASS + METER_CLASS) * np.abs(span_pw)
        span_bound += ROUNDING_STEPS * res
        span_bound += res_t[:, None] * np.fmax(power[:, :-1], power[:, 1:]) * 2.0 / 3600.0
        witness = clean & closing & (span_doubt <= STEADY_SPAN_DOUBT * span_pw)
        witness &= span_pw >= SCALE_WITNESS_SHARE * e_pow[:, None]
        witness &= np.abs(prep.de_wh - span_pw) <= span_bound
        witness &= np.abs(prep.de_wh - ratio * span_pw) > span_bound
    witnessed = np.asarray(witness.any(axis=1))
    return EnergyBalance(e_reg, e_pow, bound, n_spans, steady_only, share, witnessed)


def meter_values_balance(
    batch: SessionBatch,
    prep: Prepared,
    rows: IntArray,
    *,
    sensor_offset_w: float,
    gap_intervals: float,
    gap_min_s: float,
    trapezoid_doubt: float = 1.0,
    rated_w: FloatArray | None = None,
) -> EnergyBalance:
    """Register against integrated power for ``rows`` whose readings carry no register span but
    whose transaction sent its meter values (``meter_start_wh``, ``meter_stop_wh``: OCPP
    StartTransaction's meterStart and StopTransaction's meterStop): the one span from the
    start to the stop.

    Nothing flows before the transaction starts or after it stops, so the power is taken as 0
    at those two instants; the steps from the start to the first sample and from the last to
    the stop count like any other, in the integral and in its doubt. A first sample more than
    ``RAMP_S`` after the start was taken after the ramp: power may have climbed to anything the
    connector delivers (``rated_w``, per row of ``rows``) before it, so the lead's doubt is the
    most it could have held above its trapezoid (a row whose rating is unknown is left out);
    the same for the step after a first sample taken in the ramp, when it is longer than
    ``RAMP_S``.
    A meterStop below the meterStart counts 0 (the register read as a counter: a reset). A row
    with a data gap or a step without power inside (an end included) is left out (``n_spans``
    0)."""
    k = rows.size
    sub = take_rows(prep, rows)
    power = np.where(sub.power_w < sensor_offset_w, 0.0, sub.power_w)
    first = np.zeros(k, dtype=np.int64)
    last = np.maximum(sub.count - 1, 0)
    p_first, p_last = pick(power, first), pick(power, last)
    lead_s = (pick(sub.t_ns, first) - batch.start_ns[rows]) / NS_PER_S
    tail_s = (batch.stop_ns[rows] - pick(sub.t_ns, last)) / NS_PER_S
    lead_s, tail_s = np.maximum(lead_s, 0.0), np.maximum(tail_s, 0.0)
    step_pw = trapezoid_wh(power, sub.dt_s)
    res_t = sub.time_resolution_s
    step_doubt = step_doubt_wh(power, sub.power_w, sub.dt_s, res_t, sensor_offset_w)
    dt = np.concatenate((lead_s[:, None], sub.dt_s, tail_s[:, None]), axis=1)
    gap = (dt > gap_intervals * sub.interval_s[:, None]) & (dt >= gap_min_s)
    inner = ~np.isnan(step_pw) | ~sub.valid[:, 1:]  # padding is no hole
    whole = np.all(inner, axis=1) & ~np.any(gap, axis=1) & ~np.isnan(p_first) & ~np.isnan(p_last)
    e_pow = row_sum_where(step_pw, ~np.isnan(step_pw))
    e_pow += 0.5 * (p_first * lead_s + p_last * tail_s) / 3600.0
    doubt = row_sum_where(step_doubt, ~np.isnan(step_doubt))
    lead_doubt = 0.5 * p_first * (lead_s + res_t) / 3600.0
    rated = np.full(k, np.nan) if rated_w is None else np.fmax(rated_w, sub.peak_power_w)
    late = lead_s > RAMP_S
    if late.any():  # the most the lead could have held above its trapezoid (0 to p_first)
        most = rated * (lead_s + res_t) / 3600.0 - 0.5 * p_first * lead_s / 3600.0
        lead_doubt = np.where(late, np.fmax(lead_doubt, most), lead_doubt)
        whole &= ~(late & np.isnan(lead_doubt))
    doubt += lead_doubt + 0.5 * p_last * (tail_s + res_t) / 3600.0
    # a first sample in the ramp and a long step after it: as ``energy_balance``'s first step
    first_dt = sub.dt_s[:, 0] if sub.dt_s.shape[1] else np.zeros(k)
    in_ramp = ~late & (first_dt > RAMP_S) & (sub.count > 1)
    if in_ramp.any():
        most = rated * (first_dt + res_t) / 3600.0 - np.nan_to_num(step_pw[:, 0])
        extra = np.fmax(most - np.nan_to_num(step_doubt[:, 0]), 0.0)
        doubt += np.where(in_ramp, np.nan_to_num(extra, nan=0.0), 0.0)
        whole &= ~(in_ramp & np.isnan(most))
    e_reg = batch.meter_stop_wh[rows] - batch.meter_start_wh[rows]
    # the two meter values are whole Wh at best: the rounding of one span's two ends
    bound = trapezoid_doubt * doubt
    res = meter_values_resolution_wh(batch.meter_start_wh[rows], batch.meter_stop_wh[rows])
    # read as a counter, a register that fell from start to stop (reset or replaced,
    # meter_backwards') counted nothing the bill can use: 0 against what flowed
    e_reg = np.maximum(e_reg, 0.0)
    bound += (POWER_SENSOR_CLASS + METER_CLASS) * np.abs(e_pow) + ROUNDING_STEPS * res
    return EnergyBalance(
        np.where(whole, e_reg, 0.0),
        np.where(whole, e_pow, 0.0),
        np.where(whole, bound, ROUNDING_STEPS),
        whole.astype(np.int64),
    )


def meter_values_allowance_wh(
    batch: SessionBatch,
    prep: Prepared,
    rated: FloatArray,
    rows: IntArray,
    *,
    rated_margin: float = JUMP_RATED_MARGIN,
    jitter_s: float = JUMP_JITTER_S,
    resolution_steps: float = ROUNDING_STEPS,
) -> FloatArray:
    """For ``rows``: the most meterStop - meterStart may rise with no fault, the bound of
    ``jump_allowance_wh`` over the transaction's span (start and stop known), at the step the
    meter values are given in (``meter_values_resolution_wh``). meter_jump judges meter values
    by it, and unauthorized_energy counts them up to it."""
    res = meter_values_resolution_wh(batch.meter_start_wh[rows], batch.meter_stop_wh[rows])
    return span_allowance_wh(
        rated[rows],
        batch.start_ns[rows],
        batch.stop_ns[rows],
        prep.time_resolution_s[rows],
        res,
        rated_margin=rated_margin,
        jitter_s=jitter_s,
        resolution_steps=resolution_steps,
    )


def span_allowance_wh(
    rated_w: FloatArray,
    from_ns: IntArray,
    to_ns: IntArray,
    time_res_s: FloatArray,
    resolution_wh: FloatArray,
    *,
    rated_margin: float,
    jitter_s: float,
    resolution_steps: float,
) -> FloatArray:
    """Per row, the most a register may rise from ``from_ns`` to ``to_ns``: the bound of
    ``jump_allowance_wh`` over one span given by its ends (a transaction's meter values, the
    meterStart to the first reading, the last reading to the meterStop)."""
    span_s = np.maximum((to_ns - from_ns) / NS_PER_S, 0.0) + time_res_s + jitter_s
    rate = rated_w * (1.0 + rated_margin) / 3600.0
    return np.asarray(span_s * rate + resolution_steps * resolution_wh)


def meter_values_resolution_wh(start_wh: FloatArray, stop_wh: FloatArray) -> FloatArray:
    """Per row: the step the transaction's meter values are given in, read off the two values:
    1 Wh, or 10, 100 or 1,000 Wh when both are multiples of it (a meter that counts in kWh
    with 2, 1 or 0 decimals; two values of a 1 Wh meter are both multiples of 1,000 once in a
    million). The readings carry no register to read it from (``register_resolution_wh``)
    where only these two are compared. Missed without it: meterStart 2,818 kWh, meterStop
    2,823 kWh against 4.27 kWh of power, "+17 %" on a normal session whose true energy lay
    anywhere from 4 to 6 kWh (an independently written fleet, seed 142 with --coarse-meters)."""
    out = np.ones(np.shape(start_wh))
    for step in (10.0, 100.0, 1000.0):
        both = (np.fmod(start_wh, step) == 0) & (np.fmod(stop_wh, step) == 0)
        out = np.where(both, step, out)
    return out


def _span_sums(step: FloatArray, bad: BoolArray | None, last_reg: IntArray) -> FloatArray:
    """Sum of ``step`` (where not ``bad``) over each step's register span: from the reading
    ``last_reg`` to the step's end, as the difference of running sums (sequential, so they do
    not depend on the padding's width)."""
    values = step if bad is None else np.where(bad, 0.0, step)
    cum = np.zeros((step.shape[0], step.shape[1] + 1))
    np.cumsum(values, axis=1, out=cum[:, 1:])
    return np.asarray(cum[:, 1:] - np.take_along_axis(cum, last_reg, axis=1))


def _first_last_power(power: FloatArray) -> FloatArray:
    """``(n, 2)``: each row's first and last known power (NaN when none)."""
    known = ~np.isnan(power)
    m = power.shape[1]
    first = np.argmax(known, axis=1)
    last = m - 1 - np.argmax(known[:, ::-1], axis=1)
    return np.stack((pick(power, first), pick(power, last)), axis=1)


# A station that reports current and voltage but no power (OCPP Current.Import and Voltage,
# common on AC wallboxes) still says what flowed: per phase, voltage times current is the
# apparent power, and the real power is that times the power factor, which an on-board
# charger holds at 0.95-1.0 above a few amperes (IEC 61000-3-2 limits its harmonics; 0.9 is
# left for the lowest currents, ``CURRENT_MIN_POWER_FACTOR``). The event format gives the
# current per phase (the average of the phases that OCPP names) and not how many phases the
# car draws on: one, two or three (``CURRENT_PHASES``). So a register is in agreement with the
# current when it lies, within meter_mismatch's allowance, between power factor 0.9 and 1 of
# that for some number of phases; a register that fits none of them (0.7 of one phase, or 1.4
# of it: between one and two) is a mismatch. A meter 50 % off on a three-phase car can look
# like a two-phase one and stays unflagged: the test errs towards silence.
CURRENT_PHASES = (1.0, 2.0, 3.0)
CURRENT_MIN_POWER_FACTOR = 0.9


def phases_evidence(e_reg: FloatArray, e_one: FloatArray, allow_one: FloatArray) -> FloatArray:
    """How far the register ``e_reg`` is from every number of phases (``CURRENT_PHASES``):
    1 at the edge of the nearest one's band. ``e_one`` is the energy of one phase at power
    factor 1 (voltage x current, integrated), ``allow_one`` its allowance (the larger of 15 %
    and the samples' bound), both scaling with the phases."""
    x = np.full(e_reg.shape, np.inf)
    for n in CURRENT_PHASES:
        hi, lo, allow = n * e_one, n * CURRENT_MIN_POWER_FACTOR * e_one, n * allow_one
        with np.errstate(invalid="ignore", divide="ignore"):
            beyond = np.maximum(lo - e_reg, e_reg - hi)  # negative inside the band
            x = np.fmin(x, np.maximum(beyond, 0.0) / allow)
    return x


class MeterMismatch(BaseDetector):
    """The register's energy and the integral of power disagree by more than 15 % over the
    session (CONTRACTS.md section 3), beyond what the samples can support.

    Register and power are compared span by span between readings that carry a register
    (``energy_balance``). A row is flagged when the disagreement is over ``max_relative`` of
    the integrated energy AND over the bound the samples put on it (integration doubt from the
    sampling interval and how fast power changes, accuracy classes, rounding): a session whose
    samples cannot tell 15 % apart (its bound is wider) is flagged only when the disagreement
    exceeds that bound too; when it does not, it is left unscored, "unverifiable". A session
    whose readings carry fewer than two register values is compared through the transaction's
    own meter values (``meter_values_balance``) when it sent both.
    The register is read as a counter: every rise counts (a jump too), and a step in which
    it falls is a reset, left out (as it is of the power). Learns what its ``MeterJump``
    learns (``jump_``), for the connector's rating where meter values stand in.

    Parameters
    ----------
    max_relative : float, default MISMATCH_MAX_RELATIVE (0.15)
        CONTRACTS.md section 3.
    gap_intervals : float, default GAP_INTERVALS (5.0)
        Steps longer than this many sampling intervals ...
    gap_min_s : float, default GAP_MIN_S (300.0)
        ... and this long are left out: across a data gap (as data_gap defines it) the
        trapezoid cannot follow the power.
    trapezoid_doubt : float, default 1.0
        Multiplier on the integration doubt (``integration_doubt_wh``): 1 is the bound itself.
    sensor_offset_w : float, default SENSOR_OFFSET_W (50.0)
        Power below this is a sensor offset, read as 0 W; up to this much may flow unseen
        (``deadband_doubt_wh``), which the bound allows.
    min_energy_wh : float, default 100.0
        Below this the comparison is resolution and offset: not scored.
    jump : MeterJump or None, default None
        Its ratings bound meter values that stand in for readings; None: ``MeterJump()``.
        Fitted as a copy.
    """

    kind = AnomalyKind.METER_MISMATCH

    def __init__(
        self,
        *,
        max_relative: float = MISMATCH_MAX_RELATIVE,
        gap_intervals: float = GAP_INTERVALS,
        gap_min_s: float = GAP_MIN_S,
        trapezoid_doubt: float = 1.0,
        sensor_offset_w: float = SENSOR_OFFSET_W,
        min_energy_wh: float = 100.0,
        jump: MeterJump | None = None,
    ) -> None:
        self.sensor_offset_w = sensor_offset_w
        self.min_energy_wh = min_energy_wh
        self.max_relative = max_relative
        self.gap_intervals = gap_intervals
        self.gap_min_s = gap_min_s
        self.trapezoid_doubt = trapezoid_doubt
        self.jump = jump

    def fit(self, batch: SessionBatch) -> Self:
        jump = MeterJump(**self.jump.get_params()) if self.jump is not None else MeterJump()
        self.jump_ = jump.fit(batch)
        return super().fit(batch)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        # the register is read as a counter, as Prometheus' increase() reads one: every rise
        # counts, a jump too (the session is billed by the register, and a stuck register's
        # catch-up adds up, with the steps it held over, to what flowed), and a fall is a reset
        # whose step is left out (meter_backwards'). So a single high reading that comes back
        # counts its rise, and a single low one the rise back from it. Three of the four
        # independently written fleets count the register so (they sum its rises); the fourth
        # takes the last reading less the first, where a single low reading changes nothing.
        # Left out, a rise the register fell back from read "register and power agree" beside
        # a 524 kWh spike
        allowed = np.full(prep.de_wh.shape, np.inf)
        # an orphan segment's rise that a session on its connector counted as its own (a
        # session stamped years ahead, ``within_sessions_meter_values``) is no step to compare
        every = np.arange(batch.n_sessions)
        allowed = np.where(within_sessions_meter_values(batch, every, prep), -np.inf, allowed)
        skip_first = first_reading_in_ramp(batch, prep)

        def balance(view: Prepared, rows: IntArray | slice) -> EnergyBalance:
            return energy_balance(
                view,
                allowed[rows],
                sensor_offset_w=self.sensor_offset_w,
                gap_intervals=self.gap_intervals,
                gap_min_s=self.gap_min_s,
                trapezoid_doubt=self.trapezoid_doubt,
                max_relative=self.max_relative,
                skip_first=skip_first[rows],
            )

        b = balance(prep, slice(None))
        steady_share = b.steady_share if b.steady_share is not None else np.ones(batch.n_sessions)
        steady_only = (
            b.steady_only if b.steady_only is not None else np.zeros(batch.n_sessions, bool)
        )
        # readings without a register span: the transaction's own meter values, if it sent them
        by_meter_values = meter_values_rows(batch, prep)
        by_meter_values = by_meter_values[prep.count[by_meter_values] >= MIN_READINGS]
        compared_by_meter_values = np.zeros(batch.n_sessions, dtype=bool)
        if by_meter_values.size:
            mv = meter_values_balance(
                batch,
                prep,
                by_meter_values,
                sensor_offset_w=self.sensor_offset_w,
                gap_intervals=self.gap_intervals,
                gap_min_s=self.gap_min_s,
                trapezoid_doubt=self.trapezoid_doubt,
                rated_w=self.jump_.rated_w(batch, prep)[by_meter_values],
            )
            # meter values beyond what the connector could deliver count as well: they are
            # what the session is billed (a jump the stop's meter value kept)
            for name in ("register_wh", "power_wh", "bound_wh", "n_spans"):
                getattr(b, name)[by_meter_values] = getattr(mv, name)
            steady_only[by_meter_values] = False
            compared_by_meter_values[by_meter_values] = mv.n_spans > 0
        # readings with current and voltage but no power: one phase's power at power factor 1
        # in its place, and the register judged against one, two and three phases
        # (a measured voltage only: mains differ by more than the 15 % compared)
        by_phase, judged = power_from_current(prep, ~compared_by_meter_values, default_v=np.nan)
        by_current = np.flatnonzero(judged)
        if by_current.size:
            one = balance(take_rows(by_phase, by_current), by_current)
            for name in ("register_wh", "power_wh", "bound_wh", "n_spans"):
                getattr(b, name)[by_current] = getattr(one, name)
            steady_only[by_current] = one.steady_only if one.steady_only is not None else False
            if one.steady_share is not None:
                steady_share[by_current] = one.steady_share
        e_reg, e_pow = b.register_wh, b.power_wh
        allow = np.maximum(self.max_relative * e_pow, b.bound_wh)
        x = np.abs(e_reg - e_pow) / allow
        x[judged] = phases_evidence(e_reg[judged], e_pow[judged], allow[judged])
        witnessed = np.zeros(batch.n_sessions, dtype=bool)
        if b.scale_witness is not None:
            witnessed = b.scale_witness & ~compared_by_meter_values & (x > 1.0)
        x = np.where(witnessed, np.minimum(x, 1.0), x)
        flagged = x > 1.0
        not_scored = not_scored_reason(prep, MIN_READINGS, "energy")
        # the meter values stand in for register readings where they were compared
        not_scored[compared_by_meter_values] = None
        cannot = (b.n_spans < 1) | (np.maximum(e_reg, e_pow) < self.min_energy_wh)
        not_scored[cannot & is_none(not_scored)] = (
            f"less than {self.min_energy_wh:.0f} Wh counted: too little energy to compare"
        )
        untrusted = clock_untrusted(batch, prep)
        not_scored[untrusted & is_none(not_scored)] = CLOCK_UNTRUSTED
        unverifiable = ~cannot & ~flagged & (b.bound_wh > self.max_relative * e_pow)
        if unverifiable.any():
            rel = b.bound_wh / np.where(e_pow > 0, e_pow, np.nan) * 100.0
            not_scored[unverifiable & is_none(not_scored)] = [
                f"unverifiable: the samples bound the integrated energy only to "
                f"{r:.0f} % (more than {self.max_relative:.0%})"
                for r in rel[unverifiable & is_none(not_scored)]
            ]
        not_scored[witnessed & is_none(not_scored)] = (
            "the register counts right over a steady span of a fifth of the energy or more: the"
            " session's disagreement is power that changed between samples, not the meter's scale"
        )
        x = np.where(cannot, np.nan, x)
        last = np.maximum(prep.count - 1, 0)

        def describe(rows: np.ndarray) -> list[str]:
            out = []
            for i in rows:
                rel = (e_reg[i] / e_pow[i] - 1.0) * 100.0 if e_pow[i] > 0 else float("inf")
                over = (
                    f" over the steady spans ({steady_share[i]:.0%} of the energy; the others"
                    " change too fast between samples to integrate)"
                    if steady_only[i]
                    else ""
                )
                if judged[i]:
                    out.append(
                        f"register counted {fmt_kwh(e_reg[i])} but voltage x current"
                        f" integrates to {fmt_kwh(e_pow[i])} a phase{over}:"
                        f" {e_reg[i] / e_pow[i]:.2f} times it,"
                        " which fits neither one, two nor three phases at a power factor"
                        f" of {CURRENT_MIN_POWER_FACTOR}-1 (the samples allow"
                        f" {fmt_kwh(allow[i])} a phase)"
                    )
                    continue
                out.append(
                    f"register counted {fmt_kwh(e_reg[i])} but power integrates to "
                    f"{fmt_kwh(e_pow[i])}{over} ({rel:+.0f} %; the samples allow "
                    f"{fmt_kwh(allow[i])})"
                )
            return out

        return build_result(
            self.kind,
            excess_score(x),
            flagged,
            pick(prep.t_ns, np.zeros_like(last)).astype(np.int64),
            pick(prep.t_ns, last).astype(np.int64),
            describe,
            not_scored,
        )


def step_result(
    kind: str,
    prep: Prepared,
    x: FloatArray,
    at: IntArray,
    describe: Callable[[IntArray], list[str]],
    not_scored: np.ndarray,
) -> KindResult:
    """The result of evidence ``x`` (1 at the threshold) found at one register step per row,
    ``at``: flagged over the threshold, spanning that step."""
    return build_result(
        kind,
        excess_score(x),
        x > 1.0,
        pick(prep.t_ns, at).astype(np.int64),
        pick(prep.t_ns, at + 1).astype(np.int64),
        describe,
        not_scored,
    )
