"""Detection over a window of InfluxDB: read the window's sessions, score them, store the results.

The sessions of a window ``[since, until)`` are those that stopped in it, those still open at
``until`` and the orphan segments whose last reading falls in it. Their starts may lie before
``since``: starts are looked up ``SESSION_LOOKBACK_NS`` back, readings from the earliest start
on, statuses a day before that (the status in force is the latest one before a sample) and
authorizations ``AUTHORIZE_WINDOW_NS`` before that. Every query bounds time on both ends.

Results go back as ``profile`` and ``flag`` points stamped with the session's (flag's) start, so
running a window again, or overlapping windows, overwrites points instead of adding new ones;
so do the sessions' ``usage`` pieces (``analytics.usage``: a point per quarter hour of a session).
Given the state database, every judged session also gets its row in the session catalogue
(``chargewatch.catalog``), with every kind's score, replacing the row of an earlier judgement,
and its usage pieces there too (``analytics.usage_table``, where the API sums them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import islice

import numpy as np

from analytics.assemble import AUTHORIZE_WINDOW_NS, assemble
from analytics.batch import NO_TIME, SessionBatch
from analytics.cataloguing import catalog_rows
from analytics.detectors import fit_detectors
from analytics.detectors.base import Detector, KindResult
from analytics.detectors.ratings import with_stations
from analytics.flags import flags_from_results
from analytics.pipeline import DetectReport, run_detectors
from analytics.profiles import profiles, profiles_to_lines
from analytics.usage import usage_lines, usage_pieces
from analytics.usage_table import replace_pieces
from chargewatch.catalog import upsert_sessions
from chargewatch.flags import Flag, flags_to_lines
from chargewatch.influx import InfluxClient
from chargewatch.schema import Lookback, read_events
from chargewatch.sites import StationMetadata
from chargewatch.state import StateStore

__all__ = ["SESSION_LOOKBACK_NS", "WINDOW_LOOKBACK", "detect_window"]

SESSION_LOOKBACK_NS = 48 * 3600 * 1_000_000_000  # no session is expected to last longer
WINDOW_LOOKBACK = Lookback(
    session_ns=SESSION_LOOKBACK_NS,
    status_ns=24 * 3600 * 1_000_000_000,
    authorize_ns=AUTHORIZE_WINDOW_NS,
)
_WRITE_LINES = 5000


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
    catalog: StateStore | None = None,
    judged_at_ns: int | None = None,
    stations: StationMetadata | None = None,
) -> tuple[list[Flag], DetectReport]:
    """Score the window's sessions with ``now_ns = until_ns`` and store profiles and flags,
    and, given ``catalog`` (the state database), each session's catalogue row stamped
    ``judged_at_ns`` (the wall clock, read by the caller; ``until_ns`` when not given).

    The detectors are fitted on everything read (the window and its look-back), so history
    just before the window informs what is normal; ``stations`` (sites, declared ratings, fleet
    cards: ``chargewatch.site_store.load_metadata``) goes to them with it.
    """
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    began = time.perf_counter()
    report = DetectReport(now_ns=until_ns)
    events = read_events(client, since_ns, until_ns, lookback=WINDOW_LOOKBACK)
    report.lines = len(events)
    batch = assemble(enumerate(events, start=1))
    # the window and its look-back are the history
    chosen = fit_detectors(with_stations(batch, stations), detectors)
    results = run_detectors(batch, chosen, now_ns=until_ns)
    rows = _in_window(batch, since_ns, until_ns)
    kept = batch.take(rows)
    kept_results = [_take(result, rows) for result in results]
    flags = flags_from_results(kept, kept_results)
    orphans = sum(1 for sid in kept.session_id if sid is None)
    report.sessions = kept.n_sessions - orphans
    report.orphan_segments = orphans
    report.flags_by_kind.update(flag.kind for flag in flags)
    judged = profiles(kept)
    _write(client, profiles_to_lines(judged))
    _write(client, flags_to_lines(flags))
    pieces = usage_pieces(kept, until_ns=until_ns)
    _write(client, usage_lines(pieces))
    if catalog is not None:
        stamp = until_ns if judged_at_ns is None else judged_at_ns
        upsert_sessions(catalog, catalog_rows(kept, judged, kept_results, judged_at_ns=stamp))
        replace_pieces(catalog, pieces, [str(s) for s in kept.session_id if s is not None])
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
