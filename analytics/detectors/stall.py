"""Charging that stops mid-session (``stall``) with nothing to explain it.

What must not be flagged is most of the work here: a car that is full (SuspendedEV, near-zero
power, idle time plugged in), and power held down by a lower ``power_offered_w``.

Two shapes are stalls (CONTRACTS.md section 3):

- charging stops for 10 min or more and then resumes, the car shown not full where the
  stretch began as below: power coming back alone does not show it, a full car draws again
  hours later (a top-up, the cabin heated before its driver leaves), and the rest before that
  is idle time after full;
- charging stops for 10 min or more and never comes back: the driver gave up and stopped the
  session (or it is still open). Here "power never came back" must not be read as "the car was
  full", nor the other way round, so the car must be shown not full:

  * its state of charge, when reported, is below ``FULL_SOC_PCT`` where the stretch began (at
    or above it the car is full, whatever the charger says);
  * without SoC, the shape of the fall: a full car tapers (the constant-voltage phase; AC cars
    step down to a balancing current) and its last reading before zero is a small share of its
    plateau, while a stalled charge falls from the plateau to nothing between two readings.
    ``PLATEAU_SHARE`` of the peak so far (or of the offer, when lower) at the last reading
    before the stretch reads as such a fall (``DC_PLATEAU_SHARE`` on DC, where a full car
    draws a far smaller share of its peak).

  ``SuspendedEV`` (the car says it is done), or ``Finishing`` stamped before the last reading
  (the charge ended before the stop), since power last flowed are never a stall;
  ``Charging`` or ``SuspendedEVSE`` with nothing flowing is not a full car, which is why the
  status needs no rule of its own here: those readings stay in the stretch, the others break
  it. The energy delivered cannot serve: the stream carries neither the energy the car asked for
  nor which car it is, so "far below what this car takes" has nothing to compare with.

A station that reports no power but a fine register (``_power_from_register``) is judged on
the register's mean power over each step, the reason saying so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.meter import (
    AC_CONNECTOR_MAX_W,
    JUMP_JITTER_S,
    JUMP_RATED_MARGIN,
    ROUNDING_STEPS,
    fall_tolerance_wh,
    jump_allowance_wh,
    meter_values_resolution_wh,
)
from analytics.detectors.prepared import (
    NS_PER_S,
    REGISTER_POWER_MAX_RESOLUTION_WH,
    Prepared,
    power_from_current,
    prepared,
    register_brackets,
    register_span_power_w,
    take_rows,
)
from analytics.detectors.ratings import (
    AC_MAX_W,
    MIN_CHARGE_OFFER_W,
    StationRatings,
    rated_power_w,
)
from analytics.detectors.reductions import (
    Runs,
    forward_fill,
    nan_argmax,
    pick,
    row_max,
    run_labels,
    runs,
    smallest_rise,
    trapezoid_wh,
)
from analytics.detectors.verdicts import (
    CLOCK_UNTRUSTED,
    MIN_POWER_READINGS,
    Verdict,
    clock_untrusted,
    fmt_kw,
    fmt_kwh,
    fmt_min,
    is_none,
    not_scored_reason,
    scatter_verdict,
    verdict_result,
)
from chargewatch.kinds import AnomalyKind

# At or above this state of charge a car that stops drawing is taken as full: cars with a 100 %
# target taper from 90-97 % and display 100 (some 98-99) when done, and one this close to full
# lost little by a stop. Below it, a car that stops while the charger says Charging or
# SuspendedEVSE was stopped by the charger (one that stops at its own lower target says
# SuspendedEV, which is never part of a stall).
FULL_SOC_PCT = 95.0

# Without SoC: the last reading before a stretch that ends the session still shows at least this
# share of the plateau (the peak so far, or the offer when that is lower) means the charge fell
# from its plateau, not at the end of a taper. A car arriving at full draws a small share of its
# plateau before it stops: published DC curves 2-11 % of their peak at 95-100 % SoC, AC cars in
# their constant-voltage phase or at a balancing current 10-35 %. 70 % is twice the highest of
# those, with room for sensor noise and for a sample taken early in a taper.
PLATEAU_SHARE = 0.7

# The same on DC, known by a peak above what AC can deliver (ratings.AC_MAX_W): a DC car nears
# full at 2-11 % of its peak (the published curves, data/ev-curves), and a DC car's own taper is
# slow (the last 5 % of SoC take minutes), so the sample before zero sits near that floor. 25 %
# is twice the highest with room for noise; a DC charge that drops to nothing from a third or
# half of its peak (mid-taper, at 40-80 % SoC) fell, it did not finish.
DC_PLATEAU_SHARE = 0.25


_STATUS_WORDS = {
    int(StatusCode.CHARGING): ", the charger still saying Charging",
    int(StatusCode.SUSPENDED_EVSE): ", the charger saying SuspendedEVSE",
}


def _near_zero_w(prep: Prepared, floor_w: float, fraction: float) -> FloatArray:
    return np.asarray(np.maximum(floor_w, fraction * np.nan_to_num(prep.peak_power_w)))


def _power_from_register(prep: Prepared, rated: FloatArray) -> tuple[Prepared, BoolArray]:
    """``prep`` with each row that reports no power (fewer than ``MIN_POWER_READINGS`` values)
    but a fine register at three readings or more given the register's mean power over each
    step as the power of the reading that ends it; and which rows those are. OCPP 1.6 samples
    only ``Energy.Active.Import.Register`` unless configured otherwise, and a rest shows in
    that register as plainly as in a power reading: without this such a station's stalls
    could not be seen at all. A step that rose more than the connector could deliver (its
    ``rated`` power: meter_jump's bound) is a jump, not power: unknown there, and no peak (a
    bit flip read as 3.9 MW made 2 % of the peak 78 kW, and a car charging at 3.7 kW "at
    rest" for 136 min: town fleet seeds 1-4, 11 such stalls); so is one in which it fell."""
    has_power = (~np.isnan(prep.power_w)).sum(axis=1)
    rows = (
        (has_power < MIN_POWER_READINGS)
        & (prep.n_energy >= MIN_POWER_READINGS)
        & (prep.resolution_wh <= REGISTER_POWER_MAX_RESOLUTION_WH)
    )
    if not rows.any() or prep.power_w.shape[1] < 2:
        return prep, np.zeros(rows.shape, dtype=bool)
    which = np.flatnonzero(rows)
    power = prep.power_w.copy()
    power[which, 0] = np.nan
    sub = take_rows(prep, which)
    from_steps = register_span_power_w(sub)
    # a station with no rating known (none declared, offered or measured) is bounded as
    # meter_jump bounds it (``AC_CONNECTOR_MAX_W``, the most an AC connector delivers), so a
    # step meter_jump calls a jump is no power here either: a 1 MW bound took a bit flip's
    # step, "267 kW" between steps at 5 kW, for the peak, and the 5 kW around it for near
    # zero, a 42 min stall (town fleet seed 14 without station metadata, TF-0238-1-003)
    could_wh = jump_allowance_wh(
        sub,
        np.where(np.isnan(rated[which]), AC_CONNECTOR_MAX_W, rated[which]),
        rated_margin=JUMP_RATED_MARGIN,
        jitter_s=JUMP_JITTER_S,
        resolution_steps=ROUNDING_STEPS,
    )
    # ... nor is a step in which the register fell (a reset, a replaced meter: 0 W read from
    # it was "one reading at rest" between two at 3.7 kW; town fleet seeds 1-4, 9 such stalls)
    fell = sub.de_wh < -fall_tolerance_wh(sub.resolution_wh)[:, None]
    power[which, 1:] = np.where((sub.de_wh > could_wh) | fell, np.nan, from_steps)
    peak = prep.peak_power_w.copy()
    peak[which] = row_max(power[which])
    return replace(prep, power_w=power, peak_power_w=peak), rows


def _from_plateau(prep: Prepared, before: IntArray, averaged: BoolArray) -> BoolArray:
    """For reading indices ``before`` (2-D, -1: none), the last readings with power before
    stretches at rest: did power fall from the plateau there (``PLATEAU_SHARE`` of the peak so
    far, or of the offer when lower; ``DC_PLATEAU_SHARE`` on DC), rather than at the end of a
    full car's taper? In rows whose power is a mean over the step before each reading
    (``averaged``: the register's), the step in which the charge stopped is partly at rest,
    so the reading before it speaks for the plateau too."""
    p = prep.power_w
    at = np.maximum(before, 0)
    plateau = np.fmin(
        np.take_along_axis(np.fmax.accumulate(p, axis=1), at, axis=1),
        np.take_along_axis(prep.offered_w, at, axis=1),
    )
    share = np.where(prep.peak_power_w > AC_MAX_W, DC_PLATEAU_SHARE, PLATEAU_SHARE)[:, None]
    last_w = np.take_along_axis(_recent_max_w(prep), at, axis=1)
    if averaged.any():
        earlier_w = np.take_along_axis(p, np.maximum(before - 1, 0), axis=1)
        last_w = np.where(averaged[:, None], np.fmax(last_w, earlier_w), last_w)
    return np.asarray((before >= 0) & (last_w >= share * plateau))


# A charger told to stop ramps its current down within seconds (it must answer the car's request
# for zero current at once), so readings every 10-20 s can show the ramp as a few falling
# values; a full car's own taper into the end takes minutes (its last few % of SoC). What power
# drew this long before the last reading with power speaks for the plateau: 57 kW, then 13.6,
# 3.2 and 0.8 kW 10 s apart, then 21 min at rest, no SoC, the charger saying Charging, read as
# a full car's taper (outside fleet seed 4, 432605: the driver gave up).
RAMP_DOWN_S = 60.0
# ... looking back over at most this many readings (a station sampling every second shows its
# ramp in the last of them; readings crowded closer cost work and show nothing more)
RAMP_DOWN_READINGS = 64


def _recent_max_w(prep: Prepared) -> FloatArray:
    """Per reading: the highest power read at it or in the ``RAMP_DOWN_S`` before it (over
    ``RAMP_DOWN_READINGS`` readings at most)."""
    p, t = prep.power_w, prep.t_s
    out = p.copy()
    m = p.shape[1]
    for lag in range(1, min(m, RAMP_DOWN_READINGS + 1)):
        near = (t[:, lag:] - t[:, :-lag]) <= RAMP_DOWN_S  # NaN (padding): False
        if not near.any():
            break
        out[:, lag:] = np.where(near, np.fmax(out[:, lag:], p[:, :-lag]), out[:, lag:])
    return out


def _last_flowing(p: FloatArray, zero_w: FloatArray) -> IntArray:
    """Per reading: the index of the last reading up to it with power above ``zero_w`` (-1
    where none)."""
    idx = np.arange(p.shape[1])
    return np.asarray(np.maximum.accumulate(np.where(p > zero_w, idx, -1), axis=1))


# A rest's SoC stays where it stood, give or take a reporting step: a car's figure may lag the
# energy just taken by a reading or so when power stops (1-2 % at DC rates on a small battery),
# then it holds. At the stretch's last reading above the highest of its first half, by more than
# two of its steps (0.2 % at the least), it shows the battery taking charge however low power
# read.
SOC_CLIMB_STEPS = 2.0
SOC_CLIMB_MIN_PCT = 0.2


def _bracket_at_rest(prep: Prepared, still: BoolArray) -> BoolArray:
    """Per step ``(n, m - 1)``: every reading from the last one with a register at or before
    the step's start to the step's end is ``still`` (at rest): the register's step
    (``Prepared.de_wh``, which runs from that reading) covers the rest only."""
    last, _ = register_brackets(prep)
    moving = np.cumsum(~still, axis=1)  # readings not at rest, up to and including each
    m = still.shape[1]
    end = np.arange(1, m)[None, :]
    before = np.where(last > 0, np.take_along_axis(moving, np.maximum(last - 1, 0), axis=1), 0)
    return np.asarray((last >= 0) & (moving[:, end[0]] - before == 0))


def _register_counting(
    idle: BoolArray, prep: Prepared, floor_w: float, own: BoolArray | None = None
) -> BoolArray:
    """Per step ``(n, m - 1)``: the step belongs to a stretch of ``idle`` steps over which the
    register, taken whole, rose by more than its resolution (the rounding at its two ends,
    together) and ``floor_w`` over the stretch's time could give. A register in 100 Wh or kWh
    steps shows 1 kW as flat over one-minute steps, yet counts it over a quarter of an hour: a
    DC car drawing 0.9-1.6 kW for 17 min at 72 % SoC, within 2 % of its 76 kW peak, its
    register (100 Wh steps) counting 300 Wh, was read as a stall (an independently written
    fleet, seed 355, TX-0097-900189). Steps without a register at both ends count nothing, nor,
    where ``own`` is given, steps whose register step began before the rest (``_bracket_at_
    rest``)."""
    n, s = idle.shape
    out = np.zeros((n, s), dtype=bool)
    begins, label, runs_n = run_labels(idle)
    if runs_n == 0:
        return out
    which = label[idle]
    de = prep.de_wh if own is None else np.where(own, prep.de_wh, np.nan)
    rise = np.bincount(which, weights=np.nan_to_num(de[idle]), minlength=runs_n)
    span_s = np.bincount(which, weights=np.nan_to_num(prep.dt_s[idle]), minlength=runs_n)
    row = np.nonzero(begins)[0]
    counting = rise > prep.resolution_wh[row] + floor_w * span_s / 3600.0
    out[idle] = counting[which]
    return out


def _soc_climbing(idle: BoolArray, soc: FloatArray, t_s: FloatArray) -> BoolArray:
    """Per step ``(n, m - 1)``: the step belongs to a stretch of ``idle`` steps whose SoC at its
    last reading lies above the highest of its first half by more than ``SOC_CLIMB_STEPS``
    reporting steps (the row's finest rise) and ``SOC_CLIMB_MIN_PCT``: energy flowed, however
    low power read. The SoC is the battery's witness where the register is missing (a DC car
    at 0.8-1.6 kW for 21 min at 73 % SoC, its SoC climbing 0.9 % and no register in its
    readings, was read as a stall: an independently written fleet, seed 293)."""
    n, s = idle.shape
    out = np.zeros((n, s), dtype=bool)
    if s == 0 or np.isnan(soc).all():
        return out
    begins, label, runs_n = run_labels(idle)
    if runs_n == 0:
        return out
    filled = forward_fill(soc)
    rise = np.diff(filled, axis=1)
    finest = np.nan_to_num(smallest_rise(rise), nan=1.0)
    least = np.maximum(SOC_CLIMB_STEPS * finest, SOC_CLIMB_MIN_PCT)
    which = label[idle]
    ends = np.full(runs_n, -np.inf)
    np.maximum.at(ends, which, t_s[:, 1:][idle])
    middle = (t_s[:, :-1][begins] + ends) / 2.0
    late = np.zeros((n, s), dtype=bool)
    late[idle] = t_s[:, :-1][idle] >= middle[which]
    # the climb: the stretch's last reading over the highest of its first half (a SoC that
    # wavers by a step or two at rest, or lags and then holds, does not climb)
    column = np.broadcast_to(np.arange(s), (n, s))
    early = idle & ~late
    before = np.full(runs_n, -np.inf)
    row = np.nonzero(begins)[0]
    last = np.full(runs_n, -1, dtype=np.int64)
    np.maximum.at(last, label[idle], column[idle])
    with np.errstate(invalid="ignore"):  # NaN (no SoC reported yet) makes the stretch's NaN
        np.maximum.at(before, label[early], filled[:, 1:][early])
        before = np.maximum(before, filled[:, :-1][begins])  # the stretch's first reading too
        climbing = filled[row, last + 1] - before > least[row]
    out[idle] = climbing[which]
    return out


def _not_full(prep: Prepared, first: IntArray, flowing: IntArray, averaged: BoolArray) -> BoolArray:
    """Per step ``(n, m - 1)`` of a stretch at rest beginning at step ``first``: is the car shown
    not full (the module docstring), judged from what it showed up to that step: its SoC if
    reported since power last flowed (``flowing``: ``_last_flowing``), else the fall from the
    plateau."""
    idx = np.arange(prep.power_w.shape[1])
    before = np.take_along_axis(flowing, np.maximum(first, 0), axis=1)
    reported = np.maximum.accumulate(np.where(np.isnan(prep.soc_pct), -1, idx), axis=1)
    latest = reported[:, 1:]  # the latest SoC up to each step's end
    soc = np.take_along_axis(prep.soc_pct, np.maximum(latest, 0), axis=1)
    soc = np.where((latest >= 0) & (latest >= before), soc, np.nan)
    from_plateau = _from_plateau(prep, before, averaged)
    return np.asarray(np.where(np.isnan(soc), from_plateau, soc < FULL_SOC_PCT))


def _explained(prep: Prepared, *, finishing: bool = False) -> BoolArray:
    """Per reading: does something explain power at rest there? An offer below what the car
    needs to charge at all (not the station's rating: a car drawing 3.7 kW from a 150 kW unit is
    not held down by a 7 kW offer), or the car's own pause (SuspendedEV); with ``finishing``,
    Finishing too (the charge ended: the paths judged at the stop). SuspendedEVSE is not an
    explanation of its own: the charger stopped, and only a lower offer says it stopped on
    purpose (load management); an offer not reported is not a lower one (CONTRACTS.md section
    3). Nor is Faulted: a charger that faults mid-session stopped charging a car that was not
    full, which is what a stall is (the contract names only a lower offer as an explanation;
    ConnectorFaulted pages for the fault itself). It was taken for one, and an independently
    written fleet's stalls with Faulted and an error code (HighTemperature, GroundFailure,
    EVCommunicationError) were all missed: field seeds 1-4, 37 of 37."""
    need_w = np.maximum(MIN_CHARGE_OFFER_W, 0.05 * np.nan_to_num(prep.peak_power_w))
    status = prep.status
    out = (prep.offered_w < need_w[:, None]) | (status == StatusCode.SUSPENDED_EV)
    if finishing:
        out |= status == StatusCode.FINISHING
    return np.asarray(out)


def _flowed_s(step_wh: FloatArray, power_w: FloatArray, step_s: FloatArray) -> FloatArray:
    """How long power went on over a step from (or into) a reading with power ``power_w``,
    by the register's ``step_wh``: as if it fell (rose) in a straight line to (from) nothing,
    twice ``step_wh / power_w`` (the longest a monotone change can take), within the step;
    NaN where the register or the power is unknown."""
    return np.asarray(np.clip(2.0 * step_wh / power_w * 3600.0, 0.0, step_s))


def _known_to_ns(batch: SessionBatch, prep: Prepared, last: IntArray) -> IntArray:
    """Per row: how far a rest that ends the session is known, from its last reading (index
    ``last``): to the stop, or to the connector's next status report when that came before the
    stop. Which status was reported is not kept, and it may be the car's SuspendedEV (the car
    was done, a normal ending), so the rest is not counted past it. A DC car tapering from 33
    kW into its end between readings 15 min apart, SuspendedEV reported 5 s after its last
    reading (13 W), unplugged 12 min later, was flagged (an independently written fleet, seed
    356, TX-0053-198016: normal)."""
    stop_ns = batch.stop_ns
    until = pick(batch.status_until_ns[:, : prep.power_w.shape[1]], last)
    cut = (until != 0) & (stop_ns != NO_TIME) & (until < stop_ns)
    return np.asarray(np.where(cut, until, stop_ns))


def _until_words(known_ns: IntArray, stop_ns: IntArray, i: int) -> str:
    """How a rest counted to ``known_ns[i]`` (``_known_to_ns``) ended, in words."""
    if known_ns[i] != stop_ns[i]:
        return ", until the charger reported a new status (the stop came later)"
    return ", until the session ended without charging again"


class Stall(BaseDetector):
    """Power near zero and the register flat for 10 min or more mid-session, after charging had
    begun, with neither a lower offered power nor the car's own pause (SuspendedEV) to explain
    it; and then either charging resumes, or it never does and the car is shown not full
    (module docstring). Learns nothing: the rules are physical.

    Parameters
    ----------
    min_duration_s : float, default 600.0
        How long power must stay near zero: 10 min, CONTRACTS.md section 3.
    near_zero_w : float, default 200.0
        Power at or below this is "near zero": a connector at rest shows 0 W plus standby and
        noise.
    near_zero_fraction : float, default 0.02
        ... or at or below 2 % of the session's peak, whichever is higher (a sensor offset).
    resume_fraction : float, default 0.3
        Charging resumes when power is back to 30 % of what the car drew when it stopped
        (its last reading with power before the stall, at most its peak so far) ...
    min_resume_wh : float, default 300.0
        ... and delivers this much after it: a few minutes' worth of the slowest charge, a
        charge that went on, not a blip.
    """

    kind = AnomalyKind.STALL

    def __init__(
        self,
        *,
        min_duration_s: float = 600.0,
        near_zero_w: float = 200.0,
        near_zero_fraction: float = 0.02,
        resume_fraction: float = 0.3,
        min_resume_wh: float = 300.0,
    ) -> None:
        self.min_duration_s = min_duration_s
        self.near_zero_w = near_zero_w
        self.near_zero_fraction = near_zero_fraction
        self.resume_fraction = resume_fraction
        self.min_resume_wh = min_resume_wh

    def fit(self, batch: SessionBatch) -> Self:
        """Learns each station's rated power (``StationRatings``, as meter_jump does): a step of
        a register read for power that rises beyond it is a jump (``_power_from_register``)."""
        self.ratings_ = StationRatings.learn(batch)
        return super().fit(batch)

    def _idle(
        self, prep: Prepared, averaged: BoolArray | None = None
    ) -> tuple[BoolArray, BoolArray]:
        """Steps at near-zero power with a flat register and nothing explaining it;
        ``averaged``: rows whose power is the register's mean over each step
        (``_power_from_register``)."""
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)[:, None]
        low = p <= zero_w
        calm = ~_explained(prep) & prep.valid
        # a single missing power reading does not break a stretch at rest (the register says)
        still = (low | np.isnan(p)) & calm
        # the register has no sensor offset: what it counts flowed. Flat is at most
        # ``near_zero_w`` over the step (a car's standby), not the power readings' 2 % of the
        # peak: a DC car drawing 0.7-1.5 kW for 26 min at 72 % SoC, its register counting
        # 450 Wh, was read as a stall (an independently written fleet, seed 212, 460430)
        flat = ~(prep.de_wh > prep.resolution_wh[:, None] + self.near_zero_w * prep.dt_s / 3600.0)
        # ... where the register step is the rest's own: a register sent in some readings only
        # steps from the last reading that carried it, and a rise over a span that began while
        # power flowed says nothing of the rest after it (a register sent only in the
        # transaction's Begin and End readings put the whole charge's 4.25 kWh on the last
        # step of a 20 min stall that ended the session, which then lasted "0 s")
        own = _bracket_at_rest(prep, still)
        flat |= ~own
        # ... and a register that fell says nothing of what flowed over its step (meter_backwards
        # speaks for it): on a station that sends the register alone, a reset read as 15 min
        # at rest between two readings at 3.7 kW (town fleet seeds 1-4: 9 such stalls)
        flat &= ~(prep.de_wh < -fall_tolerance_wh(prep.resolution_wh)[:, None])
        idle = still[:, 1:] & still[:, :-1] & flat
        if averaged is not None and averaged.any():
            # a reading's power there is the mean over the step it ends: a step is at rest when
            # its own mean is, whatever the mean of the step before it (the one in which power
            # stopped, partly at rest). A register flat for one 15 min step under "Charging",
            # the steps either side partial, then 4 h more at the plateau, was never a step
            # with both ends at rest (town fleet seeds 1-4: 4 stalls of 32-41 min, missed)
            # (a mean left unknown, over a step the register leapt or fell in, is no rest)
            own_mean = still[:, 1:] & low[:, 1:] & calm[:, :-1] & flat
            idle = np.where(averaged[:, None], own_mean, idle)
        idle &= ~_register_counting(idle, prep, self.near_zero_w, own)
        idle &= ~_soc_climbing(idle, prep.soc_pct, prep.t_s)
        return np.asarray(idle), np.asarray(low)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        rated = rated_power_w(prep, self.ratings_.lookup(batch.station_id))
        # a station that sends current, not power: one phase's current x voltage is the
        # power, judged against the row's own level; read before the register (the current is
        # the instant's, the register a mean over the step, and in 100 Wh steps too coarse to
        # read power from: a stall of 41-76 min at 0 A under "Charging" was "fewer than 3
        # power readings"; town fleet seeds 1-4, 5 such stalls)
        prep, from_current = power_from_current(prep)
        prep, from_register = _power_from_register(prep, rated)
        idle, _ = self._idle(prep, from_register)
        # a stall is of a session (CONTRACTS.md section 3): readings outside any session (an
        # idle connector's after energy nobody authorized) are unauthorized_energy's business
        idle[is_none(batch.session_id)] = False
        # only a rest after charging had begun can be a stall (the judgement's conditions,
        # loosened): not the readings before power first flows, nor any in a row that never
        # charged (an idle connector's). A rest after power last flows stays: a stall may end
        # the session.
        lead_w = _charged_before_first_reading_w(batch, prep)
        rows = np.flatnonzero(idle.any(axis=1)) if idle.size else np.zeros(0, np.int64)
        if rows.size:
            p = prep.power_w[rows]
            began = np.argmax(p > MIN_CHARGE_OFFER_W, axis=1)
            began[lead_w[rows] > MIN_CHARGE_OFFER_W] = 0
            step = np.arange(p.shape[1] - 1)
            charged = np.fmax(prep.peak_power_w[rows], lead_w[rows]) > MIN_CHARGE_OFFER_W
            idle[rows] &= (step >= began[:, None]) & charged[:, None]
        not_scored = not_scored_reason(prep, MIN_POWER_READINGS, "power")
        rows = np.flatnonzero(idle.any(axis=1)) if idle.size else np.zeros(0, np.int64)
        verdict = scatter_verdict(
            batch.n_sessions,
            rows,
            self._judge(take_rows(prep, rows), from_register[rows], lead_w[rows]),
        )
        at_stop = self._ended_at_the_stop(batch, prep)
        verdict = _either(verdict, at_stop)
        verdict = _either(verdict, self._lone_rest(batch, prep))
        from_first = self._at_rest_from_the_first(batch, prep, lead_w)
        verdict = _either(verdict, from_first)
        by_status = self._suspended_by_the_charger(batch, prep, lead_w)
        verdict = _either(verdict, by_status)
        # the stop is the third data point there, and the register's mean power before the
        # first reading (``lead_w``) is one before the change: two readings are enough
        charged_before = lead_w > MIN_CHARGE_OFFER_W
        not_scored[((at_stop.x > 1.0) | charged_before) & (prep.count >= 2)] = None
        # ... and one reading is enough when the register counted a charge before it and is
        # flat from it to the stop (``_at_rest_from_the_first``)
        not_scored[(from_first.x > 0.0) | (by_status.x > 0.0)] = None
        # a wrong clock says nothing of how long anything lasted, however many readings
        not_scored[clock_untrusted(batch, prep)] = CLOCK_UNTRUSTED
        result = verdict_result(self.kind, verdict, not_scored, at_least=True)  # "10 min or more"
        for i in np.flatnonzero(result.flagged & from_register).tolist():
            result.reason[i] = f"{result.reason[i]} (power from the register's steps)"
        for i in np.flatnonzero(result.flagged & from_current).tolist():
            result.reason[i] = f"{result.reason[i]} (power: one phase's current x voltage)"
        return result

    def _ended_at_the_stop(self, batch: SessionBatch, prep: Prepared) -> Verdict:
        """A stall that ends the session with one reading at rest: on a station sampling every
        10-15 min (OCPP clock-aligned meter values) a driver who gives up 15 min after the
        charge stopped leaves a single reading at rest before the stop, and ``_judge`` needs a
        step with both ends at rest (and with several, ``_judge`` counts the rest between
        them, not from when power stopped to the stop: 134 kW, then two readings at rest 5
        min apart, the register flat from 10 s after the first to the stop 14 min later, was
        read as 7.5 min; an independently written fleet, seed 282). Here the stretch runs
        from when power stopped to the session's stop: the stop is a reading at rest of its
        own when the register at the stop (``meter_stop_wh``) is flat against the first
        reading at rest. When power stopped is dated by
        the register: what the step to the reading at rest counted, as if the power before it
        fell in a straight line to nothing (``t + 2 de / P``, the latest a monotone fall can
        stop); without a register, at the reading at rest (the least the stretch can be). The
        car must be shown not full: by its SoC where reported, else by the fall from the plateau
        as ``_ended`` reads it (a full car says SuspendedEV, which explains the rest here, and
        Charging or SuspendedEVSE with nothing flowing is not a full car: CONTRACTS section 3).
        Two readings and the stop are enough here (``MIN_POWER_READINGS`` asks three of the
        others). Not when anything explains the rest or
        says the car was done (as in ``_idle`` and ``_ended``)."""
        n = batch.n_sessions
        none = Verdict.nothing(n)
        if prep.power_w.shape[1] < 2:
            return none
        last = np.maximum(prep.count - 1, 1)
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)
        # the last reading with power (``prev``) and every one after it at rest: one reading
        # at rest before the stop, or several (then ``_judge`` sees the rest between them, but
        # not from when power stopped to the stop)
        prev = np.maximum(pick(_last_flowing(p, zero_w[:, None]), last), 0).astype(np.int64)
        first = np.minimum(prev + 1, last)  # the first reading at rest
        p_last, p_prev = pick(p, last), pick(p, prev)
        status = pick(prep.status, last)
        expl = np.cumsum(_explained(prep, finishing=True) & prep.valid, axis=1)
        explained = pick(expl, last) > pick(expl, prev)  # at a reading after ``prev``
        reg_first = pick(prep.energy_wh, first)
        res = prep.resolution_wh
        stop_ns = batch.stop_ns
        has_stop = stop_ns != NO_TIME
        t_last = pick(prep.t_ns, last)
        rest_s = np.where(has_stop, (stop_ns - t_last) / NS_PER_S, 0.0)
        flat_s = np.where(has_stop, (stop_ns - pick(prep.t_ns, first)) / NS_PER_S, 0.0)
        flat = batch.meter_stop_wh - reg_first <= res + zero_w * np.maximum(flat_s, 0.0) / 3600.0
        idx = np.arange(p.shape[1])
        after = (idx >= prev[:, None]) & (idx <= last[:, None])
        soc = row_max(np.where(after, prep.soc_pct, np.nan))
        # not full: by its SoC where reported, else by the fall from the plateau (the reading
        # before at its level: a full car says SuspendedEV, and Charging or SuspendedEVSE with
        # nothing flowing is not a full car, CONTRACTS section 3)
        from_plateau = _from_plateau(prep, prev[:, None], np.zeros(n, dtype=bool))[:, 0]
        not_full = np.where(np.isnan(soc), from_plateau, soc < FULL_SOC_PCT)
        candidate = (
            (prep.count >= 2)
            & has_stop
            & ~is_none(batch.session_id)
            & (p_last <= zero_w)
            & (p_prev > np.maximum(MIN_CHARGE_OFFER_W, zero_w))
            & ~explained
            & flat  # NaN on either side: no
            & not_full
            & (rest_s >= 0.0)
        )
        rows = np.flatnonzero(candidate)
        if rows.size == 0:
            return none
        t_prev = pick(prep.t_ns, prev)[rows]
        step_s = (pick(prep.t_ns, first)[rows] - t_prev) / NS_PER_S
        de = reg_first[rows] - pick(prep.energy_wh, prev)[rows]
        # the longest power can have gone on (``_flowed_s``): a car tapering into a stop
        # between the readings does not read as a long rest
        flowed_s = np.where(np.isnan(de), step_s, _flowed_s(de, p_prev[rows], step_s))
        stopped_ns = t_prev + (flowed_s * NS_PER_S).astype(np.int64)
        known_ns = _known_to_ns(batch, prep, last)
        dur_s = (known_ns[rows] - stopped_ns) / NS_PER_S
        x = np.zeros(n)
        x[rows] = dur_s / self.min_duration_s
        start = np.full(n, NO_TIME, dtype=np.int64)
        end = np.full(n, NO_TIME, dtype=np.int64)
        start[rows], end[rows] = stopped_ns, known_ns[rows]
        dur = np.zeros(n)
        dur[rows] = dur_s
        by_register = np.zeros(n, dtype=bool)
        by_register[rows] = np.isfinite(de / p_prev[rows])

        def describe(which: IntArray) -> list[str]:
            return [
                f"no power for {fmt_min(dur[i])}"
                + (
                    f" at {soc[i]:.0f} % SoC (not full)"
                    if soc[i] == soc[i]
                    else " (power fell from its plateau, no taper of a full car)"
                )
                + f", after charging at {fmt_kw(p_prev[i])}"
                + _until_words(known_ns, stop_ns, i)
                + f"{_STATUS_WORDS.get(int(status[i]), '')}; every reading"
                " after it at rest, the register flat from the first of them to the stop"
                + (", power stopped when the register says" if by_register[i] else "")
                + "; no lower offered power"
                for i in which
            ]

        return Verdict(x=x, start_ns=start, end_ns=end, describe=describe)

    def _at_rest_from_the_first(
        self, batch: SessionBatch, prep: Prepared, lead_w: FloatArray
    ) -> Verdict:
        """A stall that began before the first reading and ended the session: the register
        counted a charge from the transaction's start to the first reading (``lead_w``, the
        ``_charged_before_first_reading_w``), and every reading from then on shows nothing
        flowing, the register flat from the first reading to the stop (``meter_stop_wh``). On
        a station sampling every 10-15 min a driver who gives up 15 min after the charge
        stopped leaves one reading, or two, in all, and the paths above need a reading with
        power. The rest is counted from the first reading (it began before it, by the
        register; the least it can be) to the stop. The car must be shown not full: its SoC
        below ``FULL_SOC_PCT`` at every reading, or the charger saying SuspendedEVSE at every
        one (``_ended``'s rule; Charging at rest is not a full car either, but a car that filled
        its last few % before the first reading would look the same without SoC). Missed
        without it (an independently written fleet, seeds 242 and 243 with sparse sampling):
        4.6 kWh in the 4 min to the first reading at 10 % SoC, then 15 min at rest until the
        driver stopped; 0.7 kWh in 9 min, then 12 min at rest at 21 % SoC."""
        n, m = prep.power_w.shape
        none = Verdict.nothing(n)
        if m == 0:
            return none
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)
        valid = prep.valid
        at_rest = np.all(~valid | (p <= zero_w[:, None]), axis=1)
        at_rest &= np.any(valid & ~np.isnan(p), axis=1)
        quiet = np.all(~valid | ~_explained(prep, finishing=True), axis=1)
        last = np.maximum(prep.count - 1, 0)
        first_wh, last_wh = prep.energy_wh[:, 0], pick(prep.energy_wh, last)
        t_first, t_last = prep.t_ns[:, 0], pick(prep.t_ns, last)
        stop_ns = batch.stop_ns
        res = np.fmax(
            prep.resolution_wh, meter_values_resolution_wh(batch.meter_start_wh, first_wh)
        )
        rest_s = (stop_ns - t_first) / NS_PER_S
        # flat from the first reading to the stop (NaN on either side: no)
        flat = batch.meter_stop_wh - first_wh <= res + zero_w * np.maximum(rest_s, 0.0) / 3600.0
        flat &= last_wh - first_wh <= res + zero_w * (t_last - t_first) / NS_PER_S / 3600.0
        soc = np.where(valid, prep.soc_pct, np.nan)
        soc_high = row_max(soc)
        has_soc = np.all(~valid | ~np.isnan(soc), axis=1)
        evse = np.all(~valid | (prep.status == StatusCode.SUSPENDED_EVSE), axis=1)
        not_full = np.where(has_soc, soc_high < FULL_SOC_PCT, evse)
        candidate = (
            (prep.count >= 1)
            & ~is_none(batch.session_id)
            & (stop_ns != NO_TIME)
            & (lead_w > MIN_CHARGE_OFFER_W)
            & prep.has_energy[:, 0]
            & at_rest
            & quiet
            & flat
            & not_full
            & (stop_ns >= t_last)
        )
        rows = np.flatnonzero(candidate)
        if rows.size == 0:
            return none
        status = pick(prep.status, last)
        known_ns = _known_to_ns(batch, prep, last)
        known_s = (known_ns - t_first) / NS_PER_S

        def describe(which: IntArray) -> list[str]:
            return [
                f"no power for {fmt_min(known_s[i])}"
                + (
                    f" at {soc_high[i]:.0f} % SoC (not full)"
                    if has_soc[i]
                    else " (the charger, not the car, suspended it: a full car says SuspendedEV)"
                )
                + f", after the register counted {fmt_kw(lead_w[i])} on average before the first"
                " reading"
                + _until_words(known_ns, stop_ns, i)
                + f"{_STATUS_WORDS.get(int(status[i]), '')}; the register flat from the first"
                " reading to the stop; no lower offered power"
                for i in rows[which]
            ]

        part = Verdict(known_s[rows] / self.min_duration_s, t_first[rows], known_ns[rows], describe)
        return scatter_verdict(n, rows, part)

    def _suspended_by_the_charger(
        self, batch: SessionBatch, prep: Prepared, lead_w: FloatArray
    ) -> Verdict:
        """A stall dated by the charger's own StatusNotifications: SuspendedEVSE is "the EVSE
        is not offering energy to the EV" (OCPP 1.6, ChargePointStatus), so a stretch of it is
        a rest from when it was reported to the next status change (or the stop), however few
        readings fall in it. On a station sampling every 10-15 min such a stretch shows in one
        reading at rest, and the readings alone cannot tell 2 min from 20 (an independently
        written fleet, seeds 242 and 243: SuspendedEVSE for 14 and 17 min until the driver
        stopped, one reading at 35-59 % SoC; 17 min between two charges). Counted when every
        reading in the stretch shows nothing flowing (power near zero, the register flat) with
        nothing explaining it (a lower offer, the car's SuspendedEV), the car was charging
        before it (a reading with power, the register from meterStart to the first reading,
        or, for a stretch that ends the session, meterStop less meterStart beyond a few
        minutes of the slowest charge) or after it (a reading with power), and its SoC, where
        reported, below ``FULL_SOC_PCT`` (SuspendedEVSE with nothing flowing is not a full car:
        CONTRACTS section 3). A status whose report or end is not known (0) dates nothing."""
        n, m = prep.power_w.shape
        none = Verdict.nothing(n)
        if m == 0:
            return none
        valid = prep.valid
        p = prep.power_w
        since = batch.status_since_ns[:, :m]
        until = batch.status_until_ns[:, :m]
        evse = valid & (prep.status == StatusCode.SUSPENDED_EVSE) & (since != 0)
        evse &= ~is_none(batch.session_id)[:, None]
        if not evse.any():
            return none
        # stretches: consecutive readings of one SuspendedEVSE report (one ``since``)
        new = np.ones((n, m), dtype=bool)
        new[:, 1:] = ~evse[:, :-1] | (since[:, 1:] != since[:, :-1])
        flat_new = (new & evse).ravel()
        run_id = np.cumsum(flat_new) - 1  # per sample; meaningful where evse
        k = int(flat_new.sum())
        ev = evse.ravel()
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)
        at_rest = (p <= zero_w[:, None]) | np.isnan(p)
        bad = (~at_rest | _explained(prep)).ravel() & ev
        spoiled = np.bincount(run_id[bad], minlength=k) > 0
        seen = np.bincount(run_id[ev & ~np.isnan(p).ravel()], minlength=k) > 0
        soc = np.where(evse, prep.soc_pct, np.nan).ravel()
        soc_high = np.full(k, -np.inf)
        np.fmax.at(soc_high, run_id[ev], np.nan_to_num(soc[ev], nan=-np.inf))
        e = prep.energy_wh.ravel()
        e_hi, e_lo = np.full(k, -np.inf), np.full(k, np.inf)
        np.fmax.at(e_hi, run_id[ev], np.nan_to_num(e[ev], nan=-np.inf))
        np.fmin.at(e_lo, run_id[ev], np.nan_to_num(e[ev], nan=np.inf))
        rows_k, cols_k = np.divmod(np.flatnonzero(flat_new), m)
        last_k = np.zeros(k, dtype=np.int64)
        np.maximum.at(last_k, run_id[ev], np.flatnonzero(ev) % m)
        # reported within the session: a charger suspended before the session began did not
        # stop a charge, and a report stamped by a wrong clock (1970) dates nothing
        begin_ns = since[rows_k, cols_k]
        within = (batch.start_ns[rows_k] != NO_TIME) & (begin_ns >= batch.start_ns[rows_k])
        stop = batch.stop_ns[rows_k]
        has_stop = stop != NO_TIME
        nxt = until[rows_k, last_k]
        to_stop = has_stop & ((nxt == 0) | (nxt >= stop))
        end_ns = np.where(to_stop, stop, nxt)
        known_end = to_stop | ((nxt != 0) & (nxt > since[rows_k, cols_k]))
        # the register flat over the readings of the stretch, where it is read
        span_s = (prep.t_ns[rows_k, last_k] - prep.t_ns[rows_k, cols_k]) / NS_PER_S
        res = prep.resolution_wh[rows_k]
        flat = ~(e_hi - e_lo > res + zero_w[rows_k] * span_s / 3600.0)
        # charging before it: a reading with power, the register before the first reading, or
        # the transaction's meter values when the stretch ends the session
        p0 = np.where(valid, np.nan_to_num(p), 0.0)
        peak_before = np.concatenate((np.zeros((n, 1)), np.maximum.accumulate(p0, axis=1)), 1)
        charged = peak_before[rows_k, cols_k] > MIN_CHARGE_OFFER_W
        charged |= lead_w[rows_k] > MIN_CHARGE_OFFER_W
        meter_wh = batch.meter_stop_wh[rows_k] - batch.meter_start_wh[rows_k]
        step = meter_values_resolution_wh(batch.meter_start_wh[rows_k], batch.meter_stop_wh[rows_k])
        charged |= to_stop & (meter_wh > np.maximum(2.0 * step, self.min_resume_wh))
        # ... or a charge after it: the stretch was then a pause within the session, a car
        # that charges afterwards not full while it waited (SuspendedEVSE from 6 min after the
        # start for 31 min at 70 % SoC, then 25 kW; no reading nor register before it showed
        # the first minutes' charge: an independently written fleet, seed 356, TX-0021-197464)
        peak_from = np.maximum.accumulate(p0[:, ::-1], axis=1)[:, ::-1]
        after = np.minimum(last_k + 1, m - 1)
        charged |= (last_k + 1 < m) & (peak_from[rows_k, after] > MIN_CHARGE_OFFER_W)
        dur_s = (end_ns - begin_ns) / NS_PER_S
        ok = (
            within
            & ~spoiled
            & seen
            & known_end
            & flat
            & charged
            & ~(soc_high >= FULL_SOC_PCT)
            & (dur_s > 0.0)
        )
        ok &= (end_ns >= prep.t_ns[rows_k, last_k]) & (begin_ns <= prep.t_ns[rows_k, cols_k])
        which = np.flatnonzero(ok)
        if which.size == 0:
            return none
        # the longest stretch of each row (scattered in order of length: the last write wins)
        which = which[np.argsort(dur_s[which], kind="stable")]

        def describe(picked: IntArray) -> list[str]:
            return [
                f"no power for {fmt_min(dur_s[j])}"
                + (f" at {soc_high[j]:.0f} % SoC" if np.isfinite(soc_high[j]) else "")
                + ", the charger saying SuspendedEVSE (not offering energy) from then"
                + (
                    " until the session ended without charging again"
                    if to_stop[j]
                    else " until its next status change"
                )
                + "; every reading in it at rest; no lower offered power"
                for j in which[picked]
            ]

        x = dur_s[which] / self.min_duration_s
        part = Verdict(x, begin_ns[which], end_ns[which], describe)
        return scatter_verdict(n, rows_k[which], part)

    def _lone_rest(self, batch: SessionBatch, prep: Prepared) -> Verdict:
        """A stall mid-session seen in one reading at rest between two with power: on a station
        sampling every 10-15 min a 20-30 min rest leaves one such reading, and ``_judge`` needs
        a step with both ends at rest. The rest is dated by the register on both sides, as if
        power fell (rose) in a straight line between the readings: it began at the latest
        ``t[i-1] + 2 de / P[i-1]`` and ended at the earliest ``t[i+1] - 2 de / P[i+1]``, each
        step's energy taken one register resolution larger. Without a register on those three
        readings nothing dates it. Charging must resume (``resume_fraction`` of the power before,
        ``min_resume_wh`` after) and the car be shown not full where it stopped (its SoC, or
        the fall from the plateau), with nothing explaining the rest (as in ``_idle``)."""
        n, m = prep.power_w.shape
        none = Verdict.nothing(n)
        if m < 3:
            return none
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)[:, None]
        explained = _explained(prep, finishing=True)
        mid = p[:, 1:-1]
        before_w, after_w = p[:, :-2], p[:, 2:]
        lone = (
            (mid <= zero_w)
            & ~explained[:, 1:-1]
            & prep.valid[:, 2:]
            & (before_w > np.maximum(MIN_CHARGE_OFFER_W, zero_w))
            & (after_w >= self.resume_fraction * before_w)
        )
        lone[is_none(batch.session_id)] = False
        rows, cols = np.nonzero(lone)
        if rows.size == 0:
            return none
        i = cols + 1  # the reading at rest
        res = prep.resolution_wh[rows]
        e = prep.energy_wh
        de1 = e[rows, i] - e[rows, i - 1] + res
        de2 = e[rows, i + 1] - e[rows, i] + res
        t = prep.t_ns
        step1 = (t[rows, i] - t[rows, i - 1]) / NS_PER_S
        step2 = (t[rows, i + 1] - t[rows, i]) / NS_PER_S
        on1 = _flowed_s(de1, before_w[rows, cols], step1)
        on2 = _flowed_s(de2, after_w[rows, cols], step2)
        rest_s = np.where(np.isfinite(on1) & np.isfinite(on2), step1 - on1 + step2 - on2, 0.0)
        # charging went on after it, and the car was not full where it stopped
        step_wh = np.nan_to_num(np.maximum(trapezoid_wh(p, prep.dt_s), 0.0))
        after_wh = np.cumsum(step_wh[:, ::-1], axis=1)[:, ::-1]  # from each step to the end
        went_on = after_wh[rows, i] >= self.min_resume_wh
        flowing = _last_flowing(p, zero_w)
        first = np.full((n, m - 1), -1, dtype=np.int64)
        first[rows, i] = i
        not_full = _not_full(prep, np.maximum(first, 0), flowing, np.zeros(n, bool))
        ok = went_on & not_full[rows, i] & (rest_s > 0)
        rows, i, rest_s, on1 = rows[ok], i[ok], rest_s[ok], on1[ok]
        x = np.zeros(n)
        start = np.full(n, NO_TIME, dtype=np.int64)
        end = np.full(n, NO_TIME, dtype=np.int64)
        dur = np.zeros(n)
        prior, after = np.zeros(n), np.zeros(n)
        # the longest lone rest of each row (assigned in order of length: the last write wins)
        order = np.argsort(rest_s, kind="stable")
        rows, i, rest_s, on1 = rows[order], i[order], rest_s[order], on1[order]
        x[rows] = rest_s / self.min_duration_s
        dur[rows] = rest_s
        start[rows] = t[rows, i - 1] + (on1 * NS_PER_S).astype(np.int64)
        end[rows] = t[rows, i + 1]
        prior[rows], after[rows] = p[rows, i - 1], p[rows, i + 1]
        soc = np.full(n, np.nan)
        soc[rows] = forward_fill(prep.soc_pct)[rows, i]

        def describe(which: IntArray) -> list[str]:
            return [
                f"no power for {fmt_min(dur[r])}"
                + (f" at {soc[r]:.0f} % SoC" if soc[r] == soc[r] else "")
                + f", after charging at up to {fmt_kw(prior[r])} and before resuming at"
                f" {fmt_kw(after[r])}; one reading at rest between them, the rest dated by the"
                " register on both sides; no lower offered power"
                for r in which
            ]

        return Verdict(x=x, start_ns=start, end_ns=end, describe=describe)

    def _ended(
        self,
        prep: Prepared,
        candidate: BoolArray,
        resumed: BoolArray,
        run: Runs,
        flowing: IntArray,
        averaged: BoolArray,
    ) -> tuple[IntArray, BoolArray, FloatArray, BoolArray]:
        """Per row: the last step of its last stretch at rest after charging, whether that
        stretch ends the charge with the car shown not full (module docstring), the car's
        SoC where it began (NaN when not reported), and whether only the charger's
        SuspendedEVSE shows it not full. ``flowing``: ``_last_flowing``."""
        n, k = candidate.shape
        if k == 0:
            none = np.zeros(n, bool)
            return np.zeros(n, np.int64), none, np.full(n, np.nan), none
        last = (k - 1 - np.argmax(candidate[:, ::-1], axis=1)).astype(np.int64)
        never_resumed = candidate.any(axis=1) & ~pick(resumed, last).astype(bool)
        begin = np.maximum(pick(run.first, last), 0).astype(np.int64)
        # the last reading with power before the stretch, against the plateau it fell from
        idx = np.arange(prep.power_w.shape[1])
        before = pick(flowing, begin).astype(np.int64)
        # the car's SoC as reported from then to the stretch's end (nothing flows, so it
        # holds): not an older value carried forward, from a car that stopped reporting it
        # (or one reported only at the start and the stop)
        around = (idx >= before[:, None]) & (idx <= (last + 1)[:, None])
        soc = row_max(np.where(around, prep.soc_pct, np.nan))
        # nothing since power last flowed says that the car, or the session, was done
        # (SuspendedEV: the car; Finishing stamped before the last reading: the charge ended
        # before the stop. Finishing at the last reading's time is the stop itself, which
        # every session has, a driver's who gave up included: with stamps in whole seconds or
        # minutes the stop's readings and the Finishing that follows carry the same time)
        later = idx > before[:, None]
        last_ns = pick(prep.t_ns, prep.count - 1)
        finishing = (prep.status == StatusCode.FINISHING) & (prep.t_ns < last_ns[:, None])
        said_done = np.any(later & ((prep.status == StatusCode.SUSPENDED_EV) | finishing), axis=1)
        from_plateau = _from_plateau(prep, before[:, None], averaged)[:, 0]
        # the charger saying SuspendedEVSE at every reading of the stretch: it, not the car,
        # stopped (a full car says SuspendedEV; CONTRACTS section 3)
        stretch = (idx >= begin[:, None]) & (idx <= (last + 1)[:, None]) & prep.valid
        evse_said = np.all(~stretch | (prep.status == StatusCode.SUSPENDED_EVSE), axis=1)
        not_full = np.where(np.isnan(soc), from_plateau | evse_said, soc < FULL_SOC_PCT)
        by_status = np.isnan(soc) & ~from_plateau & evse_said
        return last, np.asarray(never_resumed & ~said_done & not_full), soc, by_status

    def _judge(self, prep: Prepared, averaged: BoolArray, lead_w: FloatArray) -> Verdict:
        """The verdict on rows with a candidate rest; ``averaged``: rows whose power is the
        register's mean over each step (``_power_from_register``); ``lead_w``: what the register
        says flowed before the first reading (``_charged_before_first_reading_w``)."""
        n, m = prep.power_w.shape
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)[:, None]
        idle, low = self._idle(prep, averaged)
        run = runs(idle, prep.dt_s)

        step_wh = np.where(low[:, 1:] & low[:, :-1], 0.0, trapezoid_wh(p, prep.dt_s))
        step_wh = np.nan_to_num(np.maximum(step_wh, 0.0))
        cum_wh = np.cumsum(step_wh, axis=1)
        total_wh = cum_wh[:, -1:] if m > 1 else np.zeros((n, 1))
        after_wh = total_wh - cum_wh  # energy after each step
        first = np.maximum(run.first, 0)
        p_filled = np.nan_to_num(p, nan=0.0)
        peak_so_far = np.maximum.accumulate(p_filled, axis=1)
        peak_so_far = np.maximum(peak_so_far, np.nan_to_num(lead_w)[:, None])
        peak_before = np.take_along_axis(peak_so_far[:, :-1], first, axis=1)
        peak_after = np.maximum.accumulate(p_filled[:, ::-1], axis=1)[:, ::-1]
        peak_after = np.concatenate((peak_after[:, 2:], np.zeros((n, min(2, m)))), axis=1)
        peak_after = peak_after[:, : max(m - 1, 0)]
        charged_before = peak_before > np.maximum(MIN_CHARGE_OFFER_W, 2.0 * zero_w)
        # resumed: back to a share of what the car drew when power stopped (its last reading
        # with power before the stretch), not of its peak: a DC car at 80 % SoC takes a
        # quarter of its peak, and after a stall there it takes that quarter again
        flowing = _last_flowing(p, zero_w)
        stopped_at = np.take_along_axis(flowing, first, axis=1)
        last_w = np.where(
            stopped_at >= 0, np.take_along_axis(p_filled, np.maximum(stopped_at, 0), axis=1), 0.0
        )
        # nothing flowed in the readings before: the register's mean before the first one
        last_w = np.where(last_w > 0.0, last_w, np.nan_to_num(lead_w)[:, None])
        stopped_w = np.minimum(peak_before, last_w)
        resumed = (peak_after >= self.resume_fraction * stopped_w) & (
            after_wh >= self.min_resume_wh
        )
        interval = np.nan_to_num(prep.interval_s)[:, None]
        # Resumed: power coming back shows that the car was not full, unless it was full when
        # the stretch began (its SoC, or a taper into it rather than a fall from the plateau):
        # a full car draws again hours later, to top up after its battery's self-discharge and
        # balancing or to heat the cabin before its driver leaves, and the rest before that is
        # idle time after full (CONTRACTS.md section 3; a workplace session that tapered, then
        # drew 3 kW for 20 min five hours later, was flagged as a 3 h stall).
        # The stall's start and end each lie somewhere in the interval before the first and
        # after the last zero reading, so the span between those readings is on average one
        # interval shorter than the stall: one interval is added back.
        # Where power is the register's mean over each step (``averaged``), the steps at rest
        # are the rest itself, proven by the register: nothing is added back.
        added = np.where(averaged[:, None], 0.0, interval)
        not_full = _not_full(prep, first, flowing, averaged)
        # ... and on DC, power coming back at a share of the peak that no full car draws (a
        # full DC car takes 2-11 % of its peak, ``DC_PLATEAU_SHARE``): nothing flowed in
        # between, so the car was as far from full while it rested (an independently written
        # fleet, seed 254: 10 kWh before the first reading, 10 min at rest, back at 121 kW, no
        # SoC and no reading on the plateau before the rest to show it; missed)
        peak = np.nan_to_num(prep.peak_power_w)[:, None]
        not_full |= (peak > AC_MAX_W) & (peak_after >= DC_PLATEAU_SHARE * peak)
        x_all = np.where(
            idle & charged_before & resumed & not_full,
            (run.total + added) / self.min_duration_s,
            0.0,
        )
        # Never resumed: the last stretch of each row, judged on the car's side (module
        # docstring). Its end is the last reading (the stop's, or the latest of an open
        # session), so only its start is uncertain: half an interval is added back.
        last, ended, soc_end, by_status = self._ended(
            prep, idle & charged_before, resumed, run, flowing, averaged
        )
        rows_ended = np.flatnonzero(ended)
        x_end = (pick(run.total, last) + 0.5 * added[:, 0]) / self.min_duration_s
        x_all[rows_ended, last[rows_ended]] = x_end[rows_ended]
        at = nan_argmax(x_all)
        x = pick(x_all, at)
        by_end = ended & (at == last)
        begin = pick(first, at).astype(np.int64)
        start = pick(prep.t_ns, begin).astype(np.int64)
        end = pick(prep.t_ns, at + 1).astype(np.int64)
        dur = pick(run.total, at) + np.where(by_end, 0.5, 1.0) * added[:, 0]
        # "register flat" where a reading at the stretch's start carried it (not one carried
        # forward from the transaction's Begin)
        read_at = pick(prep.has_energy, begin).astype(bool)
        register = np.where(read_at, pick(prep.energy_wh, begin), np.nan)
        prior = pick(peak_before, at)
        after = pick(peak_after, at)
        soc = pick(forward_fill(prep.soc_pct), begin)
        status_end = pick(prep.status, prep.count - 1)

        def describe(rows: IntArray) -> list[str]:
            out = []
            for i in rows:
                soc_text = f" at {soc[i]:.0f} % SoC" if not np.isnan(soc[i]) else ""
                reg = (
                    f", register flat at {fmt_kwh(register[i])}"
                    if register[i] == register[i]
                    else ""
                )
                if by_end[i]:
                    if soc_end[i] == soc_end[i]:
                        why = f"the car at {soc_end[i]:.0f} % SoC, not full"
                    elif by_status[i]:
                        why = "the charger, not the car, suspended it: a full car says SuspendedEV"
                    else:
                        why = "power fell from its plateau, no taper of a full car"
                    said = _STATUS_WORDS.get(int(status_end[i]), "")
                    out.append(
                        f"no power for {fmt_min(dur[i])}{soc_text}{reg}, after charging at up "
                        f"to {fmt_kw(prior[i])}, until the session ended without charging "
                        f"again{said} ({why}); no lower offered power"
                    )
                    continue
                out.append(
                    f"no power for {fmt_min(dur[i])}{soc_text}{reg}, after charging at up to "
                    f"{fmt_kw(prior[i])} and before resuming at {fmt_kw(after[i])}; "
                    f"no lower offered power"
                )
            return out

        return Verdict(x=np.nan_to_num(x), start_ns=start, end_ns=end, describe=describe)


def _either(a: Verdict, b: Verdict) -> Verdict:
    """Per row, the verdict with the stronger evidence of ``a`` and ``b``."""
    take_b = b.x > a.x

    def describe(rows: IntArray) -> list[str]:
        out = [""] * rows.size
        from_b = take_b[rows]
        for target, texts in (
            (np.flatnonzero(~from_b), a.describe(rows[~from_b])),
            (np.flatnonzero(from_b), b.describe(rows[from_b])),
        ):
            for j, text in zip(target.tolist(), texts, strict=True):
                out[j] = text
        return out

    return Verdict(
        x=np.where(take_b, b.x, a.x),
        start_ns=np.where(take_b, b.start_ns, a.start_ns),
        end_ns=np.where(take_b, b.end_ns, a.end_ns),
        describe=describe,
    )


# The register's mean power from the session's start (``meter_start_wh``) to its first reading
# counts as charging that had begun before it when that step is at least this long: shorter,
# and a first reading at rest is the ramp, not a stall ...
LEAD_MIN_S = 120.0
# ... unless the register counted at least this much in it: a charge that went on, not a ramp
# (``Stall.min_resume_wh``'s amount; a DC charger ramping to its first tens of kW over 10-30 s
# counts a few tens of Wh). An independently written fleet, seed 354, 160731: 1.2 kWh in the
# 70 s to the first reading at 8 % SoC, then 29 min at rest with the charger saying
# SuspendedEVSE before charging resumed at 96 kW; missed.
LEAD_MIN_WH = 300.0


def _charged_before_first_reading_w(batch: SessionBatch, prep: Prepared) -> FloatArray:
    """Per row: the mean power the register shows from the transaction's start (meterStart) to
    its first reading, NaN where either is missing or that step is under ``LEAD_MIN_S``. On a
    station sampling every 10-15 min a stall may begin before the first reading: every reading
    then shows rest, and only the register says the car had charged (an independently written
    fleet, seed 72 with --sparse-sampling 0.5: 2.3 kWh before the first reading, then 29 min at
    rest at 57 % SoC until the driver gave up, missed)."""
    n = batch.n_sessions
    out = np.full(n, np.nan)
    if prep.t_ns.shape[1] == 0:
        return out
    has = (batch.start_ns != NO_TIME) & (prep.count > 0) & ~np.isnan(batch.meter_start_wh)
    rows = np.flatnonzero(has & prep.has_energy[:, 0])
    if rows.size:
        first_wh, start_wh = prep.energy_wh[rows, 0], batch.meter_start_wh[rows]
        # the step both values are given in, where the readings show none finer (one
        # reading has no step of its own to show it)
        res = np.fmax(prep.resolution_wh[rows], meter_values_resolution_wh(start_wh, first_wh))
        _put_lead_w(batch, prep, rows, first_wh - start_wh, res, out)
    _bare_lead_w(batch, prep, has, out)
    return out


def _put_lead_w(
    batch: SessionBatch,
    prep: Prepared,
    rows: IntArray,
    lead_wh: FloatArray,
    resolution_wh: FloatArray,
    out: FloatArray,
) -> None:
    """Into ``out[rows]``: ``lead_wh`` over the time from the start to the first reading, where
    the energy is beyond twice its resolution and that lasts ``LEAD_MIN_S`` or more, or less
    with ``LEAD_MIN_WH`` counted in it."""
    lead_s = (prep.t_ns[rows, 0] - batch.start_ns[rows]) / NS_PER_S
    long_enough = (lead_s >= LEAD_MIN_S) | ((lead_s > 0.0) & (lead_wh >= LEAD_MIN_WH))
    ok = long_enough & (lead_wh > 2.0 * resolution_wh)
    out[rows[ok]] = lead_wh[ok] / lead_s[ok] * 3600.0


def _bare_lead_w(batch: SessionBatch, prep: Prepared, has: BoolArray, out: FloatArray) -> None:
    """``_charged_before_first_reading_w`` (into ``out``) for a stopped session whose readings
    carry no register, only power, and show it at rest at every one: the transaction's meter
    values (meterStop less meterStart, beyond twice their step) say energy flowed, and the
    readings' power (their trapezoid, the last one held to the stop) says not while they were
    read. When the stop follows the last reading within one sampling interval, that energy came
    before the first reading (an independently written fleet, seed 203 with --coarse-meters
    0.3: 1.5 kWh in the 5 min before the first reading, then 21 min at 20 W at 21 % SoC with
    the charger saying Charging, until the driver unplugged; missed)."""
    last = np.maximum(prep.count - 1, 0)
    bare = has & ~prep.has_energy.any(axis=1) & (batch.stop_ns != NO_TIME)
    bare &= ~np.isnan(batch.meter_stop_wh) & ~(prep.peak_power_w > MIN_CHARGE_OFFER_W)
    # ... power read at every reading: one without power shows no rest (a DC station sending
    # current and voltage under 24 kW, which give no power, SoC 21 -> 81 % over 20 min, read
    # as 8.2 kWh before the first reading at 142 kW, then 22 min at rest: outside fleet seed
    # 11, 452653)
    bare &= ~np.any(prep.valid & np.isnan(prep.power_w), axis=1)
    tail_s = (batch.stop_ns - pick(prep.t_ns, last)) / NS_PER_S
    bare &= (tail_s >= 0.0) & (tail_s <= prep.interval_s)
    rows = np.flatnonzero(bare)
    if rows.size == 0:
        return
    seen_wh = np.nansum(trapezoid_wh(prep.power_w[rows], prep.dt_s[rows]), axis=1)
    seen_wh += np.nan_to_num(pick(prep.power_w[rows], last[rows])) * tail_s[rows] / 3600.0
    start_wh, stop_wh = batch.meter_start_wh[rows], batch.meter_stop_wh[rows]
    resolution_wh = meter_values_resolution_wh(start_wh, stop_wh)
    _put_lead_w(batch, prep, rows, stop_wh - start_wh - seen_wh, resolution_wh, out)
