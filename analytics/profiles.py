"""Charging profiles: what each session's samples add up to, for the whole batch at once.

Time in each segment is summed over sample intervals, each interval taking the state of the
sample that opens it: charging (power clearly above zero); suspended by the charger (status
SuspendedEVSE, or power offered ~0); suspended by the car (SuspendedEV, or power ~0 while more
charging follows); idle after full (power ~0 once charging has ended for good). A sample without
a power value is in none of them (not measured is not "suspended by the car"), unless its status
says so; in a row without a single power value, a fine register's steps stand in for the power
(``power_or_register_w``: a station sampling only the register, OCPP 1.6's default), for the
segments and figures, never for the energy that checks the register. Intervals are capped
at ``MAX_INTERVAL_S`` so one gap or a wrong clock cannot swallow a session's time budget. A
stop stamped before the start is a clock fault: the duration is then read from the samples.

Billing confidence starts at 1 and is multiplied down by each defect of the meter data (a falling
register beyond its rounding, register and integrated power disagreeing beyond what the samples
allow, gaps, start/stop meter values that do not match the readings, timestamps out of arrival
order); ``billing_notes`` says which and by how much. The register's rounding and the samples'
bound are the meter detectors' own rules (``fall_tolerance_wh``, ``integration_doubt_wh``), so a
fall meter_backwards calls rounding costs no confidence. When nothing checks the register (no
power values, or samples too sparse to tell 15 % apart) and no defect was found, the confidence
is NaN, "unverifiable", with a note saying why. Where the readings carry no register at all,
the transaction's meter values (meterStart, meterStop) stand in for it.

``resample`` puts sessions on a regular grid (register interpolated, power averaged per step) for
plots and models; the summaries above use the real samples, which is exact and cheaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from analytics.batch import (
    NO_TIME,
    BoolArray,
    FloatArray,
    IntArray,
    ObjectArray,
    SessionBatch,
    StatusCode,
)
from analytics.detectors.meter import (
    METER_CLASS,
    MISMATCH_MAX_RELATIVE,
    POWER_SENSOR_CLASS,
    SENSOR_OFFSET_W,
    fall_tolerance_wh,
    step_doubt_wh,
)
from analytics.detectors.prepared import (
    REGISTER_POWER_MAX_RESOLUTION_WH,
    register_mean_power_w,
    register_resolution_wh,
    time_resolution_s,
)
from analytics.detectors.reductions import row_percentile
from chargewatch.influx import format_point
from chargewatch.schema import READING_FIELDS

__all__ = [
    "MAX_INTERVAL_S",
    "PROFILE_MEASUREMENT",
    "Profiles",
    "Resampled",
    "Segments",
    "power_or_register_w",
    "profiles",
    "profiles_to_lines",
    "resample",
    "segments",
    "taper_onset",
]

PROFILE_MEASUREMENT = "profile"
MAX_INTERVAL_S = 3600.0
_NS = 1e9
_FLOW_W = 100.0  # below this a connector is not charging, whatever the car
_FLOW_FRACTION = 0.05  # ... nor below this share of its own plateau
_OFFERED_ZERO_W = 500.0  # an offer below this is the charger pausing the session
_PLATEAU_PERCENTILE = 80.0
_TAPER_FRACTION = 0.9
_METER_TOLERANCE_WH = 10.0
_GAP_INTERVALS = 5.0
_GAP_MIN_S = 300.0


@dataclass(frozen=True, slots=True, eq=False)
class Profiles:
    """One charging profile per batch row, column by column (arrays of shape ``(n,)``)."""

    session_id: ObjectArray
    station_id: ObjectArray
    connector_id: IntArray
    start_ns: IntArray
    duration_s: FloatArray  # start to stop (or to the last sample while open)
    energy_register_wh: FloatArray  # last - first register reading; with none, the meter values
    energy_meter_wh: FloatArray  # meter_stop - meter_start (NaN unless both were sent)
    energy_power_wh: FloatArray  # trapezoid of power over the real samples
    charging_s: FloatArray
    suspended_ev_s: FloatArray
    suspended_evse_s: FloatArray
    idle_s: FloatArray
    peak_power_w: FloatArray
    mean_power_w: FloatArray  # over the charging time
    mean_offered_w: FloatArray
    plateau_power_w: FloatArray  # 80th percentile of charging power
    taper_onset_s: FloatArray  # since start; NaN when power never leaves its plateau for good
    taper_onset_soc_pct: FloatArray
    billing_confidence: FloatArray  # [0, 1]; NaN: unverifiable (nothing checks the register)
    billing_notes: ObjectArray  # str: why the confidence is below 1 or unknown ("" when it is 1)

    def __len__(self) -> int:
        return int(self.session_id.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class Segments:
    """Which segment each sample's interval belongs to (arrays of shape ``(n, m)``, the batch's).

    Sample ``k``'s interval runs from its time for ``dt_s[:, k]`` seconds: to the next sample,
    the last one to the stop, each capped at ``MAX_INTERVAL_S``. At most one of the four masks
    is set for a sample; none for padding.
    """

    dt_s: FloatArray
    charging: BoolArray
    suspended_evse: BoolArray
    suspended_ev: BoolArray
    idle: BoolArray  # resting once charging has ended for good
    plateau_power_w: FloatArray  # (n,) 80th percentile of charging power


def segments(batch: SessionBatch) -> Segments:
    """The segment of every sample interval of ``batch`` (see the module docstring); ``batch``
    must have at least one sample column (``profiles`` pads one)."""
    n, m = batch.n_sessions, batch.n_steps
    valid = batch.valid
    power = power_or_register_w(batch)
    rows = np.arange(n)

    # intervals between consecutive samples, capped; the last sample's interval runs to the stop
    dt = np.zeros((n, m))
    if m > 1:
        dt[:, :-1] = np.where(valid[:, 1:], np.diff(batch.t_ns, axis=1) / _NS, 0.0)
    if m:
        last = np.maximum(batch.n_samples - 1, 0)
        stopped = (batch.n_samples > 0) & (batch.stop_ns != NO_TIME)
        tail = np.where(stopped, (batch.stop_ns - batch.t_ns[rows, last]) / _NS, 0.0)
        dt[rows, last] = tail
    dt = np.clip(dt, 0.0, MAX_INTERVAL_S)

    flowing_w = np.where(power > _FLOW_W, power, np.nan)
    plateau = row_percentile(flowing_w, _PLATEAU_PERCENTILE)
    threshold = np.maximum(_FLOW_W, _FLOW_FRACTION * np.nan_to_num(plateau))
    charging = power > threshold[:, None]
    evse = (batch.status == StatusCode.SUSPENDED_EVSE) | (batch.power_offered_w < _OFFERED_ZERO_W)
    evse &= ~charging & valid
    idx = np.arange(m)[None, :]
    last_charging = np.where(charging.any(axis=1), m - 1 - np.argmax(charging[:, ::-1], axis=1), -1)
    # resting needs a power value, or the car saying it rests: a sample without power was not
    # measured, and a session without any is not "suspended by the car"
    measured = ~np.isnan(power) | (batch.status == StatusCode.SUSPENDED_EV)
    resting = valid & ~charging & ~evse & measured
    idle = resting & (idx > last_charging[:, None]) & (last_charging[:, None] >= 0)
    return Segments(
        dt_s=dt,
        charging=charging,
        suspended_evse=evse,
        suspended_ev=resting & ~idle,
        idle=idle,
        plateau_power_w=plateau,
    )


def profiles(batch: SessionBatch) -> Profiles:
    """The charging profile of every row of ``batch`` (vectorized over rows and samples)."""
    batch = _at_least_one_step(batch)
    n, m = batch.n_sessions, batch.n_steps
    valid = batch.valid
    t_s = (batch.t_ns - batch.start_ns[:, None]) / _NS
    # measured power: the only witness the register is checked against
    measured = np.where(valid, batch.power_w, np.nan)
    # what the session's figures are drawn from (the register's steps where nothing else)
    power = power_or_register_w(batch)
    energy = np.where(valid, batch.energy_wh, np.nan)
    rows = np.arange(n)

    stop_s = np.where(batch.stop_ns != NO_TIME, (batch.stop_ns - batch.start_ns) / _NS, np.nan)
    # a stop before the start (a clock at 1970) is a clock fault: the duration is then the
    # last sample at or after the start (0 when there is none), never negative
    stop_s[stop_s < 0] = np.nan
    after_start = np.where(valid & (t_s >= 0), t_s, -np.inf)
    last_t_s = np.max(after_start, axis=1, initial=-np.inf)
    duration_s = np.where(np.isfinite(stop_s), stop_s, np.maximum(last_t_s, 0.0))

    seg = segments(batch)
    dt, charging, evse, plateau = seg.dt_s, seg.charging, seg.suspended_evse, seg.plateau_power_w
    idle, suspended_ev = seg.idle, seg.suspended_ev

    e_first, e_last, e_has = _first_last(energy)
    # a station that reports the register only in meterStart and meterStop: those are it
    energy_register = np.where(e_has, e_last - e_first, batch.meter_stop_wh - batch.meter_start_wh)
    time_res_s = time_resolution_s(batch.t_ns, valid)
    energy_power, _ = _trapezoid_wh(batch.t_ns, measured, time_res_s)
    # the register is checked against the power over its own span: from its first reading to
    # its last (a station that reports it only now and then, or only at a start so far); where
    # no reading carries it, the transaction's meter values span the whole session
    reg_first_s, reg_last_s, _ = _first_last(np.where(np.isfinite(energy), t_s, np.nan))
    in_span = (t_s >= reg_first_s[:, None]) & (t_s <= reg_last_s[:, None])
    in_span |= ~e_has[:, None]
    span_power, span_doubt = _trapezoid_wh(
        batch.t_ns, np.where(in_span, measured, np.nan), time_res_s
    )
    charging_s = (dt * charging).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        charged_wh = np.where(charging, power * dt, 0.0).sum(axis=1)
        has_power = np.isfinite(power).any(axis=1)
        # 0 W when it never charged; unknown (NaN) when nothing measured it
        mean_power = np.where(
            charging_s > 0, charged_wh / charging_s, np.where(has_power, 0.0, np.nan)
        )
        peak = np.where(has_power, np.nanmax(_fill(power), axis=1), np.nan)
    offered_count = np.isfinite(batch.power_offered_w).sum(axis=1)
    mean_offered = np.where(
        offered_count > 0,
        np.nansum(batch.power_offered_w, axis=1) / np.maximum(offered_count, 1),
        np.nan,
    )

    onset = taper_onset(power, charging, plateau)
    has_onset = onset >= 0
    taper_s = np.where(has_onset, t_s[rows, np.maximum(onset, 0)] if m else 0.0, np.nan)
    taper_soc = np.where(has_onset, batch.soc_pct[rows, np.maximum(onset, 0)] if m else 0, np.nan)

    n_register = np.isfinite(energy).sum(axis=1)
    confidence, notes = _billing(
        batch, energy, energy_register, span_power, span_doubt, n_register, dt, e_first, e_last
    )
    return Profiles(
        session_id=batch.session_id,
        station_id=batch.station_id,
        connector_id=batch.connector_id,
        start_ns=batch.start_ns,
        duration_s=duration_s,
        energy_register_wh=energy_register,
        energy_meter_wh=batch.meter_stop_wh - batch.meter_start_wh,
        energy_power_wh=energy_power,
        charging_s=charging_s,
        suspended_ev_s=(dt * suspended_ev).sum(axis=1),
        suspended_evse_s=(dt * evse).sum(axis=1),
        idle_s=(dt * idle).sum(axis=1),
        peak_power_w=peak,
        mean_power_w=mean_power,
        mean_offered_w=mean_offered,
        plateau_power_w=plateau,
        taper_onset_s=taper_s,
        taper_onset_soc_pct=taper_soc,
        billing_confidence=confidence,
        billing_notes=notes,
    )


def _at_least_one_step(batch: SessionBatch) -> SessionBatch:
    """``batch`` with one padding column when it has none (rows without any sample), so every
    reduction over samples has something to reduce."""
    if batch.n_steps > 0:
        return batch
    n = batch.n_sessions
    floats: dict[str, Any] = {name: np.full((n, 1), np.nan) for name in _SAMPLE_FLOATS}
    return replace(
        batch,
        t_ns=np.zeros((n, 1), dtype=np.int64),
        valid=np.zeros((n, 1), dtype=bool),
        arrival=np.zeros((n, 1), dtype=np.int64),
        status=np.zeros((n, 1), dtype=np.int8),
        **floats,
    )


_SAMPLE_FLOATS = READING_FIELDS


def power_or_register_w(batch: SessionBatch) -> FloatArray:
    """Each sample's power (NaN in the padding); in rows without a single power value but with
    a fine register (``REGISTER_POWER_MAX_RESOLUTION_WH``), the register's mean power
    from each sample to the next, so that a station sampling only the register (OCPP 1.6's
    default) still shows when it charged, rested, or was idle after full. It is never
    integrated for billing: the register cannot check itself."""
    valid = batch.valid
    power = np.where(valid, batch.power_w, np.nan)
    if power.shape[1] < 2:
        return power
    energy = np.where(valid, batch.energy_wh, np.nan)
    rows = np.flatnonzero(~np.isfinite(power).any(axis=1) & (np.isfinite(energy).sum(axis=1) >= 2))
    if not rows.size:
        return power
    de = np.diff(energy[rows], axis=1)
    fine = register_resolution_wh(de, energy[rows]) <= REGISTER_POWER_MAX_RESOLUTION_WH
    rows, de = rows[fine], de[fine]
    power[rows, :-1] = register_mean_power_w(de, np.diff(batch.t_ns[rows], axis=1) / _NS)
    return power


def _fill(values: FloatArray) -> FloatArray:
    """NaN as -inf, so a max over a row ignores it without a RuntimeWarning."""
    return np.where(np.isnan(values), -np.inf, values)


def _first_last(values: FloatArray) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Each row's first and last finite value, and whether it has any."""
    finite = np.isfinite(values)
    has = np.asarray(finite.any(axis=1))
    if values.shape[1] == 0:
        empty = np.full(values.shape[0], np.nan)
        return empty, empty, has
    rows = np.arange(values.shape[0])
    first = np.argmax(finite, axis=1)
    last = values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    return (
        np.where(has, values[rows, first], np.nan),
        np.where(has, values[rows, last], np.nan),
        has,
    )


def _compact(t_ns: IntArray, values: FloatArray) -> tuple[IntArray, FloatArray, np.ndarray]:
    """Each row's finite values moved to its front, in order, with their times."""
    finite = np.isfinite(values)
    order = np.argsort(~finite, axis=1, kind="stable")
    kept = np.take_along_axis(finite, order, axis=1)
    return np.take_along_axis(t_ns, order, axis=1), np.take_along_axis(values, order, axis=1), kept


def _trapezoid_wh(
    t_ns: IntArray, power_w: FloatArray, time_res_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Energy by the trapezoid rule over each row's samples that have a power value, and how
    far from the truth it may be (meter_mismatch's ``step_doubt_wh``); intervals over
    ``MAX_INTERVAL_S`` count as that long (a wrong clock must not make up energy). NaN for a
    row without power values."""
    if power_w.shape[1] < 2:
        zero = np.where(np.isfinite(power_w).any(axis=1), 0.0, np.nan)
        return zero, zero.copy()
    t, p, kept = _compact(t_ns, power_w)
    pair = kept[:, 1:] & kept[:, :-1]
    dt_s = np.clip(np.diff(t, axis=1) / _NS, 0.0, MAX_INTERVAL_S)
    area = np.where(pair, dt_s * (p[:, 1:] + p[:, :-1]) / 2.0, 0.0)
    # meter_mismatch's bound: the integration doubt and what the sensor offset may hide
    doubt = np.where(pair, step_doubt_wh(p, p, dt_s, time_res_s, SENSOR_OFFSET_W), 0.0)
    some = kept.any(axis=1)
    return (
        np.where(some, area.sum(axis=1) / 3600.0, np.nan),
        np.where(some, doubt.sum(axis=1), np.nan),
    )


def taper_onset(power: FloatArray, charging: np.ndarray, plateau: FloatArray) -> IntArray:
    """Index of the first charging sample after which power stays below 90 % of the plateau
    for good; -1 when there is none."""
    n, m = power.shape
    if m == 0:
        return np.full(n, -1, dtype=np.int64)
    above = power >= _TAPER_FRACTION * plateau[:, None]
    last_above = np.where(above.any(axis=1), m - 1 - np.argmax(above[:, ::-1], axis=1), m)
    after = charging & (np.arange(m)[None, :] > last_above[:, None])
    return np.where(after.any(axis=1), np.argmax(after, axis=1), -1).astype(np.int64)


def _billing(
    batch: SessionBatch,
    energy: FloatArray,
    energy_register: FloatArray,
    energy_power: FloatArray,
    power_doubt: FloatArray,
    n_register: IntArray,
    dt: FloatArray,
    e_first: FloatArray,
    e_last: FloatArray,
) -> tuple[FloatArray, ObjectArray]:
    """Billing confidence and notes; ``energy_power`` and ``power_doubt``: the power integrated
    over the register's span, and how far off it may be."""
    n = batch.n_sessions
    confidence = np.ones(n)
    notes: list[list[str]] = [[] for _ in range(n)]

    def penalize(mask: np.ndarray, factor: FloatArray | float, text: list[str]) -> None:
        confidence[mask] *= np.broadcast_to(factor, (n,))[mask]
        for i in np.flatnonzero(mask).tolist():
            notes[i].append(text[i])

    # a station that reports the register only in the transaction's meterStart and meterStop
    # has no register readings, but its meter values are the register
    meter_values_wh = batch.meter_stop_wh - batch.meter_start_wh
    no_readings = np.asarray(~np.isfinite(energy).any(axis=1))
    no_register = no_readings & ~np.isfinite(meter_values_wh)
    confidence[no_register] = 0.0
    for i in np.flatnonzero(no_register).tolist():
        notes[i].append("no register readings")
    energy_register = np.where(no_readings, meter_values_wh, energy_register)
    # one register reading (and no meter values to stand in) spans nothing: nothing to compare
    energy_register = np.where(~no_readings & (n_register < 2), np.nan, energy_register)

    _t, e, kept = _compact(batch.t_ns, energy)
    steps = (
        np.where(kept[:, 1:] & kept[:, :-1], np.diff(e, axis=1), np.nan)
        if e.shape[1] > 1
        else np.zeros((n, 0))
    )
    # a fall within the register's rounding is no defect: meter_backwards' own rule
    tolerance = fall_tolerance_wh(register_resolution_wh(steps, np.where(kept, e, np.nan)))
    drop = np.asarray(-np.minimum(np.min(np.nan_to_num(steps), axis=1, initial=0.0), 0.0))
    # where the meter values stand in for the register, a meterStop below the meterStart is
    # its fall (meter_backwards judges it so: a session table's negative energy)
    by_values = no_readings & np.isfinite(meter_values_wh)
    if by_values.any():
        ends = np.stack((batch.meter_start_wh[by_values], batch.meter_stop_wh[by_values]), axis=1)
        drop[by_values] = np.maximum(-meter_values_wh[by_values], 0.0)
        tolerance[by_values] = fall_tolerance_wh(
            register_resolution_wh(np.diff(ends, axis=1), ends)
        )
    penalize(drop > tolerance, 0.2, [f"register falls by {d:.0f} Wh" for d in drop])

    # register against integrated power, beyond what the samples allow: the integration doubt
    # and the accuracy classes of sensor and meter (meter_mismatch's bound)
    scale = np.maximum(np.fmax(np.abs(energy_register), np.abs(energy_power)), 100.0)
    allowed = power_doubt + (POWER_SENSOR_CLASS + METER_CLASS) * np.abs(energy_power)
    with np.errstate(invalid="ignore"):
        rel = np.abs(energy_register - energy_power) / scale
        ok_rel = allowed / scale
    off = np.isfinite(rel) & (rel > ok_rel)
    factor = np.clip(1.0 - 3.0 * (np.nan_to_num(rel) - np.nan_to_num(ok_rel)), 0.3, 1.0)
    penalize(
        off,
        factor,
        [
            f"register {r:.0f} Wh vs integrated power {p:.0f} Wh ({x:.0%} apart)"
            for r, p, x in zip(energy_register, energy_power, np.nan_to_num(rel), strict=True)
        ],
    )

    inner = dt[:, :-1] if dt.shape[1] > 1 else np.zeros((n, 0))
    real = inner > 0
    typical = row_percentile(np.where(real, inner, np.nan), 50.0)
    longest = np.max(inner, axis=1, initial=0.0)
    gap = longest > np.maximum(_GAP_INTERVALS * np.nan_to_num(typical), _GAP_MIN_S)
    penalize(gap, 0.7, [f"gap of {g / 60:.0f} min between readings" for g in longest])

    for name, sent, seen in (
        ("meter_start", batch.meter_start_wh, e_first),
        ("meter_stop", batch.meter_stop_wh, e_last),
    ):
        with np.errstate(invalid="ignore"):
            apart = np.abs(sent - seen)
        bad = np.isfinite(apart) & (apart > np.maximum(_METER_TOLERANCE_WH, 0.01 * np.abs(seen)))
        penalize(bad, 0.7, [f"{name} {a:.0f} Wh off the readings" for a in np.nan_to_num(apart)])

    arrival = np.where(batch.valid, batch.arrival, np.iinfo(np.int64).max)
    reordered = (np.diff(arrival, axis=1) < 0).any(axis=1) if arrival.shape[1] > 1 else no_register
    reordered &= ~no_register
    penalize(reordered, 0.7, ["timestamps out of arrival order"] * n)

    # nothing checked the register and nothing was found: unknown, not 1
    single = ~no_readings & (n_register < 2)
    no_power = ~np.isfinite(energy_power) & ~single
    with np.errstate(invalid="ignore"):
        too_sparse = ~no_power & (allowed > MISMATCH_MAX_RELATIVE * np.abs(energy_power))
        # meter_mismatch compares when either witness counted 100 Wh (a car's standby counted
        # by the meter over a session that never charged is within the samples' bound only)
        too_sparse &= np.fmax(np.abs(energy_register), np.abs(energy_power)) >= 100.0
    too_sparse &= ~single
    unverifiable = (confidence == 1.0) & ~no_register & (no_power | too_sparse | single)
    confidence[unverifiable] = np.nan
    for i in np.flatnonzero(unverifiable).tolist():
        notes[i].append(
            "unverifiable: one register reading, nothing to compare yet"
            if single[i]
            else "unverifiable: no power values to check the register against"
            if no_power[i]
            else "unverifiable: the power values integrate to 0 Wh, nothing to scale the"
            " samples' bound by"
            if energy_power[i] == 0.0
            else f"unverifiable: the samples bound the integrated power only to "
            f"{allowed[i] / abs(energy_power[i]):.0%}"
        )

    out = np.empty(n, dtype=object)
    out[:] = ["; ".join(parts) for parts in notes]
    return confidence, out


@dataclass(frozen=True, slots=True, eq=False)
class Resampled:
    """Sessions on a regular grid: step ``k`` covers ``[start + k*step, start + (k+1)*step)``."""

    step_s: float
    energy_wh: FloatArray  # (n, k) register interpolated at the start of each step
    power_w: FloatArray  # (n, k) mean of the power samples in each step (NaN: none)
    power_offered_w: FloatArray  # (n, k) mean of the offered power in each step
    soc_pct: FloatArray  # (n, k) mean of the state of charge in each step


def resample(batch: SessionBatch, *, step_s: float = 60.0, max_steps: int = 1440) -> Resampled:
    """The batch on a ``step_s`` grid from each row's start, at most ``max_steps`` long (samples
    beyond are left out: a clock years ahead must not allocate years of grid)."""
    batch = _at_least_one_step(batch)
    n = batch.n_sessions
    rel_s = np.where(batch.valid, (batch.t_ns - batch.start_ns[:, None]) / _NS, np.nan)
    span = np.nanmax(np.where(np.isnan(rel_s), -np.inf, rel_s), initial=0.0)
    k = int(min(max_steps, np.floor(span / step_s) + 1))  # the steps that hold a sample
    step = np.floor(rel_s / step_s)
    inside = np.isfinite(step) & (step >= 0) & (step < k)
    cell = np.where(inside, step, 0).astype(np.int64) + np.arange(n)[:, None] * k

    def step_means(values: FloatArray) -> FloatArray:
        has = inside & np.isfinite(values)
        sums = np.bincount(cell[has], values[has], minlength=n * k)
        counts = np.bincount(cell[has], minlength=n * k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan).reshape(n, k)

    grid = np.arange(k) * step_s
    # One np.interp for all rows: each row's times are shifted into a range of their own.
    finite = np.isfinite(rel_s) & np.isfinite(batch.energy_wh)
    order = np.argsort(~finite, axis=1, kind="stable")
    t = np.take_along_axis(rel_s, order, axis=1)
    e = np.take_along_axis(batch.energy_wh, order, axis=1)
    kept = np.take_along_axis(finite, order, axis=1)
    shift = (np.abs(np.nan_to_num(t)).max(initial=0.0) + grid[-1] + 1.0) * 2.0
    offsets = np.arange(n)[:, None] * shift
    energy = np.full((n, k), np.nan)
    if kept.any():
        flat = np.interp((grid[None, :] + offsets).ravel(), (t + offsets)[kept], e[kept])
        first, last, has = _first_last(np.where(kept, t, np.nan))
        inside_e = (
            has[:, None] & (grid[None, :] >= first[:, None]) & (grid[None, :] <= last[:, None])
        )
        energy = np.where(inside_e, flat.reshape(n, k), np.nan)
    return Resampled(
        step_s=step_s,
        energy_wh=energy,
        power_w=step_means(batch.power_w),
        power_offered_w=step_means(batch.power_offered_w),
        soc_pct=step_means(batch.soc_pct),
    )


_PROFILE_FIELDS = tuple(
    f.name
    for f in fields(Profiles)
    if f.name not in ("session_id", "station_id", "connector_id", "start_ns")
)


def profiles_to_lines(p: Profiles) -> Iterator[str]:
    """Line protocol: measurement ``profile``, tags station/connector, time = the row's start;
    NaN figures are left out (InfluxDB has no NaN)."""
    columns = {name: getattr(p, name) for name in _PROFILE_FIELDS}
    for i in range(len(p)):
        values: dict[str, float | str | None] = {"session_id": p.session_id[i]}
        for name, column in columns.items():
            value = column[i]
            if isinstance(value, str):
                values[name] = value or None
            else:
                number = float(value)
                values[name] = number if np.isfinite(number) else None
        yield format_point(
            PROFILE_MEASUREMENT,
            {"station_id": str(p.station_id[i]), "connector_id": str(int(p.connector_id[i]))},
            values,
            int(p.start_ns[i]),
        )
