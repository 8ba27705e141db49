"""Detection over a window of InfluxDB: read the window's sessions, score them, store the results.

The sessions of a window ``[since, until)`` are those that stopped in it, those still open at
``until`` and the orphan segments whose last reading falls in it. Their starts may lie before
``since``: starts are looked up ``SESSION_LOOKBACK_NS`` back, readings from the earliest start
on, statuses a day before that (the status in force is the latest one before a sample) and
authorizations ``AUTHORIZE_WINDOW_NS`` before that. Every query bounds time on both ends.

Results go back as ``profile`` and ``flag`` points stamped with the session's (flag's) start, so
running a window again, or overlapping windows, overwrites points instead of adding new ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np

from analytics.assemble import AUTHORIZE_WINDOW_NS, assemble
from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors import default_detectors
from analytics.detectors.base import Detector, KindResult
from analytics.flags import (
    FLAG_MEASUREMENT,
    Flag,
    flags_from_results,
    flags_from_series,
    flags_to_lines,
)
from analytics.pipeline import DetectReport, run_detectors
from analytics.profiles import profiles, profiles_to_lines
from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Event,
    EventType,
    Reading,
    SessionStart,
    SessionStop,
    StatusChange,
)
from chargewatch.influx import InfluxClient, Series, quote_ident
from chargewatch.schema import READING_FIELDS

__all__ = ["SESSION_LOOKBACK_NS", "detect_window", "query_flags", "window_events"]

SESSION_LOOKBACK_NS = 48 * 3600 * 1_000_000_000  # no session is expected to last longer
_STATUS_LOOKBACK_NS = 24 * 3600 * 1_000_000_000
_WRITE_LINES = 5000


def _select(measurement: str, since_ns: int, until_ns: int, *, group: bool = True) -> str:
    where = f"time >= {since_ns} AND time < {until_ns}"
    by = ' GROUP BY "station_id", "connector_id"' if group else ' GROUP BY "station_id"'
    return f"SELECT * FROM {quote_ident(measurement)} WHERE {where}{by}"


def _rows(series: Iterable[Series]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """Each row of each series as (tags, {column: value}); NaN and None mean "not measured"."""
    for s in series:
        names = list(s.columns)
        for values in zip(*(s.columns[name].tolist() for name in names), strict=True):
            yield s.tags, dict(zip(names, values, strict=True))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, float | int) and value == value else None


def window_events(client: InfluxClient, since_ns: int, until_ns: int) -> list[Event]:
    """The events needed to judge the window's sessions, in time order."""
    events: list[Event] = []
    lookback = since_ns - SESSION_LOOKBACK_NS
    starts: list[SessionStart] = []
    for tags, row in _rows(client.query(_select(EventType.SESSION_START, lookback, until_ns))):
        session_id, pseudonym = _text(row.get("session_id")), _text(row.get("id_pseudonym"))
        if session_id is not None and pseudonym is not None:
            starts.append(
                SessionStart(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    pseudonym,
                    _number(row.get("meter_start_wh")),
                )
            )
    stops: list[SessionStop] = []
    for tags, row in _rows(client.query(_select(EventType.SESSION_STOP, lookback, until_ns))):
        session_id = _text(row.get("session_id"))
        if session_id is not None:
            stops.append(
                SessionStop(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    _number(row.get("meter_stop_wh")),
                    _text(row.get("reason")),
                )
            )
    # Readings are read from the earliest start of a session this window judges (one that stops
    # in it or is still open), not from the whole look-back.
    stopped_before = {stop.session_id for stop in stops if stop.ts_ns < since_ns}
    judged = [start.ts_ns for start in starts if start.session_id not in stopped_before]
    earliest = min([since_ns, *judged])
    events += starts
    events += stops
    for tags, row in _rows(client.query(_select(EventType.READING, earliest, until_ns))):
        values = [_number(row.get(name)) for name in READING_FIELDS]
        events.append(
            Reading(
                int(row["time"]),
                tags["station_id"],
                int(tags["connector_id"]),
                _text(row.get("session_id")),
                *values,
            )
        )
    status_from = earliest - _STATUS_LOOKBACK_NS
    for tags, row in _rows(client.query(_select(EventType.STATUS, status_from, until_ns))):
        try:
            status = ChargePointStatus(str(row.get("status")))
            error = ChargePointErrorCode(str(row.get("error_code") or "NoError"))
        except ValueError:
            continue  # written by something else: not ours to guess
        events.append(
            StatusChange(
                int(row["time"]), tags["station_id"], int(tags["connector_id"]), status, error
            )
        )
    auth_from = earliest - AUTHORIZE_WINDOW_NS
    query = _select(EventType.AUTHORIZE, auth_from, until_ns, group=False)
    for tags, row in _rows(client.query(query)):
        pseudonym = _text(row.get("id_pseudonym"))
        try:
            result = AuthorizationStatus(str(row.get("result")))
        except ValueError:
            continue
        if pseudonym is not None:
            events.append(Authorize(int(row["time"]), tags["station_id"], pseudonym, result))
    events.sort(key=lambda e: e.ts_ns)
    return events


def _in_window(batch: SessionBatch, since_ns: int, until_ns: int) -> np.ndarray:
    """The rows this window judges: stopped in it, still open, or orphans that ended in it."""
    orphan = np.array([sid is None for sid in batch.session_id], dtype=bool)
    stopped_here = (batch.stop_ns >= since_ns) & (batch.stop_ns < until_ns)
    open_now = (batch.stop_ns == NO_TIME) & (batch.start_ns < until_ns)
    return np.asarray(np.where(orphan, stopped_here, stopped_here | open_now), dtype=bool)


def _write(client: InfluxClient, lines: Iterable[str]) -> int:
    written = 0
    iterator = iter(lines)
    while chunk := list(islice(iterator, _WRITE_LINES)):
        client.write(chunk)
        written += len(chunk)
    return written


def detect_window(
    client: InfluxClient,
    since_ns: int,
    until_ns: int,
    *,
    detectors: Sequence[Detector] | None = None,
) -> tuple[list[Flag], DetectReport]:
    """Score the window's sessions with ``now_ns = until_ns`` and store profiles and flags.

    The detectors are fitted on everything read (the window and its look-back), so history
    just before the window informs what is normal.
    """
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    began = time.perf_counter()
    report = DetectReport(now_ns=until_ns)
    events = window_events(client, since_ns, until_ns)
    report.lines = len(events)
    batch = assemble(enumerate(events, start=1))
    chosen = list(detectors) if detectors is not None else default_detectors()
    for detector in chosen:
        detector.fit(batch)
    results = run_detectors(batch, chosen, now_ns=until_ns)
    rows = _in_window(batch, since_ns, until_ns)
    kept = batch.take(rows)
    flags = flags_from_results(kept, [_take(result, rows) for result in results])
    orphans = sum(1 for sid in kept.session_id if sid is None)
    report.sessions = kept.n_sessions - orphans
    report.orphan_segments = orphans
    report.flags_by_kind.update(flag.kind for flag in flags)
    _write(client, profiles_to_lines(profiles(kept)))
    _write(client, flags_to_lines(flags))
    report.seconds = time.perf_counter() - began
    return flags, report


def _take(result: KindResult, rows: np.ndarray) -> KindResult:
    return KindResult(
        kind=result.kind,
        score=result.score[rows],
        flagged=result.flagged[rows],
        start_ns=result.start_ns[rows],
        end_ns=result.end_ns[rows],
        reason=result.reason[rows],
    )


def query_flags(client: InfluxClient, since_ns: int, until_ns: int) -> list[Flag]:
    """The stored flags that start in ``[since, until)``, ordered by start."""
    query = (
        f"SELECT * FROM {quote_ident(FLAG_MEASUREMENT)} "
        f"WHERE time >= {since_ns} AND time < {until_ns} "
        'GROUP BY "station_id", "connector_id", "kind"'
    )
    return flags_from_series(client.query(query))
