"""Faults of the data link and of the charger's clock: gaps in the readings, wrong timestamps."""

from __future__ import annotations

from dataclasses import replace
from typing import Self

import numpy as np

from analytics.batch import NO_TIME, FloatArray, SessionBatch
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.prepared import (
    CLOCK_BEFORE_START_S,
    CLOCK_DISORDER_S,
    CLOCK_FUTURE_S,
    NS_PER_S,
    Prepared,
    prepared,
    stop_tolerance_s,
)
from analytics.detectors.reductions import nan_argmax, pick
from analytics.detectors.verdicts import (
    CLOCK_UNTRUSTED,
    build_result,
    clock_untrusted,
    excess_score,
    is_none,
    not_scored_reason,
)
from chargewatch.kinds import AnomalyKind

# CONTRACTS.md section 3: a gap is no reading for more than 5 sampling intervals and at least
# 5 minutes. One or two lost readings are ordinary, five in a row are not; the 5 minutes let a
# charger that samples every 10 s lose a minute without an alert. meter_mismatch leaves such
# gaps out of its integral.
GAP_INTERVALS = 5.0
GAP_MIN_S = 300.0

# A row's own median step says little when the row has few readings. A station that samples on
# the quarter hour (clock-aligned OCPP meter values) and sends its Transaction.Begin and End
# readings beside them gives a 20-min session the steps 2, 15 and 1 min: median 2 min, and the
# quarter hour it waited read as "a gap of 8 sampling intervals" (an independently written
# fleet, outside seed 19, 690925); a session read only twice, 50 min apart, has a median of
# 50 min and so never a gap, on a station that samples every 5 min (seed 20, 728667). Such a row
# takes its connector's interval instead (a station's connectors may be sampled apart): the
# median of the intervals of the connector's sessions that have at least OWN_INTERVAL_READINGS
# readings (six steps or more, of which at most two run to and from the begin and end readings:
# the median is one of the connector's own steps), where at least CONNECTOR_INTERVAL_ROWS such
# sessions are in the batch, or else the steps inside its sessions, pooled
# (``_pooled_inner_steps``); otherwise its own.
OWN_INTERVAL_READINGS = 7
CONNECTOR_INTERVAL_ROWS = 2
INNER_STEPS_MIN = 3


def fmt_span(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def superseded(batch: SessionBatch) -> np.ndarray:
    """Sessions still open on a connector where a later session has started. A connector
    carries one session at a time, so the open one ended before that start, and its stop was
    lost (an OCPP 1.6 StopTransaction the station never delivered): when it ended is unknown,
    so the time from its last reading on is no silence of an active session."""
    named = ~is_none(batch.session_id) & (batch.start_ns != NO_TIME)
    open_rows: np.ndarray = named & (batch.stop_ns == NO_TIME)
    if not open_rows.any():
        return open_rows
    _, code = np.unique(batch.connector_keys(), return_inverse=True)
    code = code.reshape(-1)
    latest = np.full(int(code.max()) + 1, NO_TIME, dtype=np.int64)
    np.maximum.at(latest, code[named], batch.start_ns[named])
    return np.asarray(open_rows & (latest[code] > batch.start_ns))


class ConnectorIntervals:
    """Each connector's sampling interval as its sessions showed it, kept from one batch to the
    next (``learn``): what ``sampling_interval_s`` takes for a short session whose connector's
    other sessions are not in the batch it is judged in. The scheduled job judges a window (and
    its look-back) at a time, so a connector's longer sessions of hours before are not beside a
    short one; a cold read of the whole span has them (an independently written fleet, outside
    seed 19, 690925: a 20-min session read at 2, 15 and 1 min, "a gap of 8 sampling intervals"
    in the job, not in the file path). Per connector, the intervals of its last
    ``KEPT_INTERVALS`` sessions with OWN_INTERVAL_READINGS readings or more, and the last
    ``KEPT_INNER_STEPS`` steps inside its shorter ones (as ``_pooled_inner_steps`` takes them).
    Bounded by the connectors it is shown."""

    KEPT_INTERVALS = 5
    KEPT_INNER_STEPS = 16

    def __init__(self) -> None:
        self._long: dict[str, list[float]] = {}
        self._inner: dict[str, list[float]] = {}

    def learn(self, batch: SessionBatch, prep: Prepared) -> None:
        """Remember the intervals the named rows of ``batch`` show (``prep``: its view), but
        for rows whose clock is shown wrong: their steps are the clock's (DataGap judges none)."""
        named = ~is_none(batch.session_id) & ~clock_untrusted(batch, prep)
        if not named.any():
            return
        keys = batch.connector_keys()
        own = prep.interval_s
        long_rows = named & (prep.count >= OWN_INTERVAL_READINGS) & np.isfinite(own)
        for r in np.flatnonzero(long_rows).tolist():
            kept = self._long.setdefault(str(keys[r]), [])
            kept.append(float(own[r]))
            del kept[: -self.KEPT_INTERVALS]
        for r in np.flatnonzero(named & ~long_rows & (prep.count >= 4)).tolist():
            inner = _inner_steps(prep, r)
            if inner.size:
                kept = self._inner.setdefault(str(keys[r]), [])
                kept.extend(inner.tolist())
                del kept[: -self.KEPT_INNER_STEPS]

    def interval_s(self, keys: np.ndarray) -> FloatArray:
        """Per connector key: the median of its sessions' intervals where there are
        CONNECTOR_INTERVAL_ROWS, else of its inner steps where there are INNER_STEPS_MIN, else
        NaN (as ``sampling_interval_s`` takes them from a batch)."""
        out = np.full(len(keys), np.nan)
        for i, key in enumerate(keys.tolist()):
            long_ = self._long.get(str(key), [])
            inner = self._inner.get(str(key), [])
            if len(long_) >= CONNECTOR_INTERVAL_ROWS:
                out[i] = float(np.median(long_))
            elif len(inner) >= INNER_STEPS_MIN:
                out[i] = float(np.median(inner))
        return out


_INTERVALS_KEY = "chargewatch.connector_intervals"


def with_intervals(batch: SessionBatch, known: ConnectorIntervals | None) -> SessionBatch:
    """``batch`` (history to fit on) carrying ``known``, which DataGap keeps (a reference:
    what ``known`` learns later, the fitted detector uses). The same arrays, nothing copied."""
    if known is None:
        return batch
    return replace(batch, extra={**batch.extra, _INTERVALS_KEY: known})


def sampling_interval_s(
    batch: SessionBatch, prep: Prepared, known: ConnectorIntervals | None = None
) -> FloatArray:
    """Per row, the sampling interval data_gap counts in: the row's own median step, or, for a
    row with fewer than OWN_INTERVAL_READINGS readings, its connector's (the comment above),
    from the batch, else from the batches before (``known``)."""
    own = prep.interval_s
    few = prep.count < OWN_INTERVAL_READINGS
    if not few.any():
        return own
    keys = batch.connector_keys()
    _, code = np.unique(keys, return_inverse=True)
    code = code.reshape(-1)
    named = ~is_none(batch.session_id)
    trusted = ~few & np.isfinite(own) & named
    theirs = _connector_medians(code, own, trusted, CONNECTOR_INTERVAL_ROWS)
    # a connector whose sessions are all short: the steps inside them (each session's first
    # and last step left out, those run to and from its begin and end readings), pooled, where
    # there are INNER_STEPS_MIN of them (a hub connector whose every session lasts 20 min,
    # seed 19). Not its readings between sessions: a station may sample an idle connector
    # more often than a charging one (blind fleet seed 355: every 5 min idle, 15 min in a
    # session, read as "6 sampling intervals of 300 s")
    wanted = few & named & ~np.isfinite(theirs)
    if wanted.any():
        theirs = np.where(wanted, _pooled_inner_steps(code, prep, named, wanted), theirs)
    wanted = few & named & ~np.isfinite(theirs)
    if known is not None and wanted.any():
        rows = np.flatnonzero(wanted)
        theirs[rows] = known.interval_s(keys[rows])
    return np.where(few & np.isfinite(theirs), theirs, own)


# The data's horizon (``DataGap``), where the batch holds HORIZON_FROM_STATIONS stations or
# more, is the latest reading that at least HORIZON_STATIONS of them (or HORIZON_SHARE, if
# more) have reached: one station's data among many is no evidence that the others' for that
# time has arrived. A station whose clock runs 25 min ahead (inside the trusted future), or a
# file in which one station's readings go on past everyone else's end, made every open session
# on a station sampling every 5 min "silent for 30 min" (an independently written fleet, depot
# seed 1: 65 such flags, all on normal sessions). Among two stations, the other's data counts.
HORIZON_FROM_STATIONS = 3
HORIZON_STATIONS = 2
HORIZON_SHARE = 0.01


def _corroborated_latest(station_id: np.ndarray, t_last: np.ndarray) -> np.int64:
    """The latest of ``t_last`` (per row, with its station) that HORIZON_STATIONS stations (or
    HORIZON_SHARE of them) reach; the latest of all among fewer than HORIZON_FROM_STATIONS."""
    _, code = np.unique(station_id.astype(str), return_inverse=True)
    latest = np.full(int(code.max()) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, code.reshape(-1), t_last.astype(np.int64))
    latest = np.sort(latest)[::-1]
    if latest.size < HORIZON_FROM_STATIONS:
        return np.int64(latest[0])
    k = max(HORIZON_STATIONS, int(np.ceil(HORIZON_SHARE * latest.size)))
    return np.int64(latest[min(k, latest.size) - 1])


def _inner_steps(prep: Prepared, r: int) -> FloatArray:
    """The steps inside row ``r``'s readings, its first and last step left out (those run to
    and from its begin and end readings), none across readings set aside for their clock."""
    k = int(prep.count[r])
    inner = prep.dt_s[r, 1 : k - 2]
    return np.asarray(inner[np.isfinite(inner) & (inner > 0) & ~prep.bridged[r, 1 : k - 2]])


def _pooled_inner_steps(
    code: np.ndarray, prep: Prepared, named: np.ndarray, wanted: np.ndarray
) -> FloatArray:
    """Per row of ``wanted``: the median of the steps inside its connector's sessions (``code``:
    the connector, ``named`` rows), each session's first and last step left out; NaN where
    there are fewer than INNER_STEPS_MIN."""
    out = np.full(code.size, np.nan)
    rows = np.flatnonzero(named & np.isin(code, np.unique(code[wanted])))
    pooled: dict[int, list[np.ndarray]] = {}
    for r in rows.tolist():
        if int(prep.count[r]) < 4:
            continue
        inner = _inner_steps(prep, r)
        if inner.size:
            pooled.setdefault(int(code[r]), []).append(inner)
    for connector, parts in pooled.items():
        steps = np.concatenate(parts)
        if steps.size >= INNER_STEPS_MIN:
            out[(code == connector) & wanted] = float(np.median(steps))
    return out


def _connector_medians(
    code: np.ndarray, values: FloatArray, rows_mask: np.ndarray, min_rows: int
) -> FloatArray:
    """Per row, the median of ``values`` over the ``rows_mask`` rows of its connector
    (``code``), NaN where the connector has fewer than ``min_rows`` of them."""
    out = np.full(code.size, np.nan)
    rows = np.flatnonzero(rows_mask)
    if not rows.size:
        return out
    order = np.lexsort((values[rows], code[rows]))
    codes, picked = code[rows][order], values[rows][order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, codes.size])
    medians = 0.5 * (picked[starts + (sizes - 1) // 2] + picked[starts + sizes // 2])
    by_code = np.full(int(code.max()) + 1, np.nan)
    known = sizes >= min_rows
    by_code[codes[starts[known]]] = medians[known]
    return np.asarray(by_code[code])


class DataGap(BaseDetector):
    """No reading for more than 5 sampling intervals (and at least 5 min) while the session is
    open: between readings, after the start, and before the stop (while open: before the
    latest reading of the batch, at most ``now``; ``score`` says why; not for a session whose
    connector has started another since: ``superseded``).
    The sampling interval of a row is the median time between its readings, or its
    connector's where the row has too few to tell (``sampling_interval_s``). Learns nothing
    from the history itself; keeps the ``ConnectorIntervals`` it carries (``with_intervals``:
    what the batches before showed of each connector), ``known_intervals_``.

    Parameters
    ----------
    max_missing_intervals : float, default GAP_INTERVALS (5.0)
        CONTRACTS.md section 3: one or two lost readings are ordinary, five in a row are not.
    min_gap_s : float, default GAP_MIN_S (300.0)
        CONTRACTS.md section 3: and at least 5 min, so a charger that samples every 10 s may
        lose a minute without an alert.
    """

    kind = AnomalyKind.DATA_GAP

    def __init__(
        self,
        *,
        max_missing_intervals: float = GAP_INTERVALS,
        min_gap_s: float = GAP_MIN_S,
    ) -> None:
        self.max_missing_intervals = max_missing_intervals
        self.min_gap_s = min_gap_s

    def fit(self, batch: SessionBatch) -> Self:
        known = batch.extra.get(_INTERVALS_KEY)
        self.known_intervals_ = known if isinstance(known, ConnectorIntervals) else None
        return super().fit(batch)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        n = batch.n_sessions
        steps = prep.dt_s
        at = nan_argmax(steps)
        inner = np.nan_to_num(pick(steps, at), nan=0.0)
        inner_from, inner_to = pick(prep.t_ns, at), pick(prep.t_ns, at + 1)

        last = np.maximum(prep.count - 1, 0)
        t_first, t_last = prep.t0_ns, pick(prep.t_ns, last).astype(np.int64)
        has = prep.count > 0
        has_start = (batch.start_ns != NO_TIME) & has
        lead = np.where(has_start, (t_first - batch.start_ns) / NS_PER_S, 0.0)
        # An open session's silence counts up to the data's horizon, not to ``now``: the latest
        # reading of the whole batch (any station), when that is earlier. A reading is missing
        # only where data for that time has arrived from elsewhere; when every station went
        # quiet (the end of a file or a simulated fleet, an ingest outage, which the service's
        # own health alerts), no session has a gap of its own.
        horizon = np.int64(now_ns)
        if has.any():
            horizon = min(horizon, _corroborated_latest(batch.station_id[has], t_last[has]))
        end_ref = np.where(batch.stop_ns != NO_TIME, batch.stop_ns, horizon)
        tail = np.where(has, (end_ref - t_last) / NS_PER_S, 0.0)
        lead, tail = np.maximum(lead, 0.0), np.maximum(tail, 0.0)
        tail = np.where(superseded(batch), 0.0, tail)

        gaps = np.stack((inner, lead, tail), axis=1)
        which = np.argmax(gaps, axis=1)
        gap = gaps[np.arange(n), which]
        gap_from = np.choose(which, (inner_from, batch.start_ns, t_last)).astype(np.int64)
        gap_to = np.choose(which, (inner_to, t_first, end_ref)).astype(np.int64)
        interval = sampling_interval_s(batch, prep, self.known_intervals_)
        threshold = np.maximum(self.max_missing_intervals * interval, self.min_gap_s)
        x = gap / threshold
        flagged = x > 1.0
        not_scored = not_scored_reason(prep)
        not_scored[is_none(batch.session_id)] = "readings outside any session"
        # a wrong clock moves readings away from where they were measured: the silence between
        # them, or to the start or stop, is then the clock's, clock_fault's to say (a clock
        # stepped back 12 min left "no reading for 13 min before the stop", and one stamped
        # hours away "no reading for 5 h between two readings": town fleet seeds 1-4, 14 such
        # flags; blind fleet seed 64, TX-0122-687137, its last 7 readings stamped 1970). An
        # independently written fleet counts such readings as missing (field fleet: 12 labels
        # of 487), the others as the clock's
        not_scored[clock_untrusted(batch, prep) & is_none(not_scored)] = CLOCK_UNTRUSTED

        is_open = batch.stop_ns == NO_TIME

        def describe(rows: np.ndarray) -> list[str]:
            where = ("between two readings", "after the session start", "before the stop")
            # an open session's tail runs to the latest data, not to a stop it does not have
            open_tail = "since the last reading, the session still open"
            return [
                f"no reading for {fmt_span(gap[i])} "
                f"{open_tail if which[i] == 2 and is_open[i] else where[which[i]]} "
                f"({gap[i] / interval[i]:.0f} sampling intervals of {interval[i]:.0f} s)"
                for i in rows
            ]

        return build_result(
            self.kind, excess_score(x), flagged, gap_from, gap_to, describe, not_scored
        )


class ClockFault(BaseDetector):
    """Readings stamped before the session start, far after ``now``, or earlier than readings
    that arrived before them (the batch's ``arrival`` order); and a session stop stamped
    before its start (timestamps out of order, CONTRACTS.md section 3, whether or not the
    session has readings). No parameters: the tolerances are those of the shared view, which
    sets such readings aside for every kind (``CLOCK_BEFORE_START_S``, ``CLOCK_FUTURE_S``,
    ``CLOCK_DISORDER_S``: the last also for the stop, two stamps of whole seconds that may
    round apart, or one unit of coarser stamps: ``stop_tolerance_s``). Learns nothing."""

    kind = AnomalyKind.CLOCK_FAULT

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        c = prep.clock
        has_both = (batch.start_ns != NO_TIME) & (batch.stop_ns != NO_TIME)
        stop_back_s = np.where(has_both, (batch.start_ns - batch.stop_ns) / NS_PER_S, 0.0)
        stop_back_s = np.maximum(stop_back_s, 0.0)
        # a stop within the stamps' rounding of the start is no fault (``stop_tolerance_s``)
        stop_tolerance = stop_tolerance_s(batch, prep)
        stop_first = stop_back_s > stop_tolerance
        x = np.maximum(
            np.maximum(c.before_start_s / CLOCK_BEFORE_START_S, c.future_s / CLOCK_FUTURE_S),
            np.maximum(c.disorder_s / CLOCK_DISORDER_S, stop_back_s / stop_tolerance),
        )
        flagged = (c.n_bad > 0) | stop_first
        # a single bad stamp at the tolerance still flags: lift it above 0.5 as a whole
        score = np.where(flagged, np.maximum(excess_score(x), 0.5), excess_score(x))
        n_readings = batch.valid.sum(axis=1) if batch.n_steps else np.zeros(batch.n_sessions)
        not_scored = np.full(batch.n_sessions, None, dtype=object)
        not_scored[(n_readings == 0) & ~stop_first] = "no readings"
        first_ts = pick(batch.t_ns, np.zeros(batch.n_sessions, dtype=np.int64)).astype(np.int64)
        last_ts = pick(batch.t_ns, np.maximum(batch.n_samples - 1, 0)).astype(np.int64)
        start = np.where(c.start_ns != NO_TIME, c.start_ns, first_ts)
        end = np.where(c.end_ns != NO_TIME, c.end_ns, last_ts)
        # the stop before the start: the flag spans from the one to the other
        alone = stop_first & (c.n_bad == 0)
        start = np.where(
            alone, batch.stop_ns, np.where(stop_first, np.minimum(start, batch.stop_ns), start)
        )
        end = np.where(
            alone, batch.start_ns, np.where(stop_first, np.maximum(end, batch.start_ns), end)
        )

        def describe(rows: np.ndarray) -> list[str]:
            out = []
            for i in rows:
                parts = []
                if c.before_start_s[i] > 0:
                    parts.append(f"up to {fmt_span(c.before_start_s[i])} before the session start")
                if c.future_s[i] > 0:
                    parts.append(
                        f"up to {fmt_span(c.future_s[i])} in the future or after the session's stop"
                    )
                if c.disorder_s[i] > 0:
                    parts.append(
                        f"up to {fmt_span(c.disorder_s[i])} earlier than readings sent before them"
                    )
                what = f"{int(c.n_bad[i])} readings with a wrong clock: " + "; ".join(parts)
                if stop_first[i]:
                    stop = f"the session stop stamped {fmt_span(stop_back_s[i])} before its start"
                    what = f"{what}; {stop}" if parts else stop
                out.append(what)
            return out

        return build_result(self.kind, score, flagged, start, end, describe, not_scored)
