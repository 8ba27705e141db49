"""Detection over a window of InfluxDB: read the window's sessions, score them, store the results.

The sessions of a window ``[since, until)`` are those that stopped in it, those still open at
``until``, those that readings arriving late ask to be judged again, and the orphan segments
(energy on a connector with no session open) that ended in it: a session starts on the
connector after them, or its meter stays at rest (or silent) for ``ORPHAN_GAP_NS``: a connector
that reports an idle meter every quarter hour must not hold a segment open for ever. It is judged
whole when it has ended (the reader carries it back to the connector's last stop), as the file
path judges it, and again should its meter start working again before a session opens. What
is read, and how arrival order and wrong clocks survive InfluxDB, is
``analytics.read.partition``.

Stations are taken a partition at a time (``partition_size`` of them), so memory follows the
partition, not the network. Kinds that compare sessions with each other (one id tag at two
stations) are judged first, across every partition, on the sessions' spans alone (starts and
stops; a session open at ``until`` is in use until then); the per-row kinds then partition by
partition. Given ``partitions`` (the station partitions this instance holds, of
``partition_count``: ``analytics.read.partition.partition_of``), only their stations' rows are
judged and stored, in chunks of at most ``partition_size`` stations; the cross-session kinds
still see the spans of every station (read for the others as spans only), so a session's verdict
does not depend on who holds the partition of its partner, and each session's flags and row are
written by the one holder of its partition.

Results go back as ``profile`` and ``flag`` points stamped with the session's (flag's) start, so
running a window again, or overlapping windows, overwrites points instead of adding new ones;
so do the sessions' ``usage`` pieces (``analytics.usage``: a point per quarter hour of a session).
A flag stored by an earlier judgement of a session (while it was open, or before late readings
came) that the latest judgement does not hold any more is deleted: the stored flags are always
the latest verdict. A session judged again for late readings says so in its flags' reasons.
Given the state database, every judged session also gets its row in the session catalogue
(``chargewatch.catalog``), with every kind's score, replacing the row of an earlier judgement,
and its usage pieces there too (``analytics.usage_table``, where the API sums them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import islice

import numpy as np

from analytics.assemble import (
    AUTHORIZE_WINDOW_NS,
    ORPHAN_GAP_NS,
    Assembler,
    Handout,
    PeakWatch,
    empty_batch,
)
from analytics.batch import NO_TIME, SessionBatch
from analytics.cataloguing import catalog_rows
from analytics.detectors import (
    ClockFault,
    DataGap,
    EarlyTaper,
    MeterBackwards,
    MeterJump,
    MeterMismatch,
    MeterStuck,
    SocInconsistent,
    Stall,
    UnauthorizedEnergy,
    default_detectors,
    fit_detectors,
)
from analytics.detectors.base import Detector, KindResult
from analytics.detectors.meter import ROUNDING_STEPS
from analytics.detectors.prepared import clock_unsure, prepared
from analytics.detectors.ratings import StationPeaks, StationRatings, with_peaks, with_stations
from analytics.detectors.reductions import pick, row_median
from analytics.detectors.timing import OWN_INTERVAL_READINGS, ConnectorIntervals, with_intervals
from analytics.flags import flags_from_results
from analytics.late import noted
from analytics.pipeline import DetectReport, run_detectors
from analytics.profiles import profiles, profiles_to_lines
from analytics.read.partition import (
    SESSION_LOOKBACK_NS,
    PartitionEvents,
    ReadingCache,
    SessionEvents,
    list_stations,
    partition_stations,
    read_partition,
    read_sessions,
    read_spans,
    station_partitions,
)
from analytics.usage import Pieces, usage_lines, usage_pieces
from analytics.usage_table import replace_pieces
from chargewatch.catalog import upsert_sessions
from chargewatch.events import SessionStart, SessionStop
from chargewatch.flags import FLAG_MEASUREMENT, Flag, flags_from_series, flags_to_lines
from chargewatch.influx import InfluxClient, quote_ident, quote_literal
from chargewatch.schema import Lookback
from chargewatch.sites import StationMetadata
from chargewatch.state import StateStore

__all__ = ["PARTITION_STATIONS", "SESSION_LOOKBACK_NS", "WINDOW_LOOKBACK", "detect_window"]

WINDOW_LOOKBACK = Lookback(
    session_ns=SESSION_LOOKBACK_NS,
    status_ns=24 * 3600 * 1_000_000_000,
    authorize_ns=AUTHORIZE_WINDOW_NS,
)
# Stations read and judged together. A station's open sessions hold a few thousand readings at
# most (a day at 10 s is 8,640), so 100 stations stay within tens of MB of padded arrays.
PARTITION_STATIONS = 100
# A flag starts within its session, but a wrong clock's evidence may begin before the start;
# earlier flags of the judged sessions are looked for this much around them.
_FLAG_SLACK_NS = 3600 * 1_000_000_000
# Padded samples judged at once: each (n, m) array of a batch is 4 MB, and the batch, the
# detectors' temporaries and the profiles together stay near a hundred MB whatever the window.
WINDOW_MAX_CELLS = 500_000
_WRITE_LINES = 5000
# Power above this flows: a meter at rest shows 0 W and a few watts of noise (unauthorized_energy's
# own ``flowing_w``). An orphan segment ends ``ORPHAN_GAP_NS`` after its last flow
# (``_orphan_end``).
ORPHAN_FLOW_W = 100.0
# The taper band (``EarlyTaper``: power over level per rated-power class and SoC bin) is learned
# from every charging sample of a day or two of sessions, the costliest fit of all, and a job
# interval's new samples hardly move it: a partition learns it again this often (or when its
# history has doubled), not at every window. Everything else is fitted at every window.
REFIT_NS = 3600 * 1_000_000_000
# The per-row detectors whose verdict on a row is a function of the row's data and of what they
# learned, and of the clock only through ``prepared`` (a stamp too far after ``now`` is not
# trusted: ``CLOCK_FUTURE_S``) and, for DataGap, through the silence after an open session's
# last reading (``_holds_until``). A stall is measured between readings (its last stretch ends
# at the latest reading of an open session), so it does not grow while nothing arrives. A
# window judges an open session again only when its data changed or the clock may have changed
# its verdict (``_unchanged``); with any detector not named here (a learned model's), always.
_CLOCK_FREE = (
    Stall,
    EarlyTaper,
    MeterStuck,
    MeterBackwards,
    MeterJump,
    MeterMismatch,
    ClockFault,
    SocInconsistent,
    UnauthorizedEnergy,
    DataGap,
)
_NS = 1_000_000_000
_FOREVER_NS = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class _Across:
    """The verdicts of the kinds judged across partitions, by session id."""

    index: dict[str, int]
    results: list[KindResult]

    def take(self, session_ids: np.ndarray) -> list[KindResult]:
        rows = np.array([self.index.get(str(s), -1) for s in session_ids], dtype=np.int64)
        out = []
        for result in self.results:
            part = KindResult.empty(result.kind, rows.size)
            hit = rows >= 0
            for name in ("score", "flagged", "start_ns", "end_ns", "reason"):
                getattr(part, name)[hit] = getattr(result, name)[rows[hit]]
            out.append(part)
        return out


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What an open session's last verdict was given: a digest of its row (``_digests``) and
    the verdicts of the kinds judged across partitions; and the latest window end up to which
    the clock alone cannot change it (``_holds_until``)."""

    digest: int
    across: tuple[tuple[bool, int, int], ...]
    holds_until_ns: int


def _digests(batch: SessionBatch, latest_start: dict[tuple[str, int], int]) -> list[int]:
    """A digest of each row of ``batch``: every column (the samples up to the row's count:
    stamps, arrival, values, statuses in force) and the latest session start on its connector
    (a later start supersedes an open session: ``timing.superseded``). Equal digests, equal
    data: a hash of 64 bits taken for another's is a chance of 2^-64 per pair."""
    out: list[int] = []
    names = [name for name in batch.__dataclass_fields__ if name != "extra"]
    counts = batch.n_samples.tolist()
    for i, count in enumerate(counts):
        parts: list[object] = []
        for name in names:
            column = getattr(batch, name)
            value = column[i, :count] if column.ndim == 2 else column[i : i + 1]
            # numbers by their bits (a NaN's hash is its object's, not its value's)
            parts.append(value.tobytes() if value.dtype.kind != "O" else tuple(value.tolist()))
        key = (str(batch.station_id[i]), int(batch.connector_id[i]))
        parts.append(latest_start.get(key, NO_TIME))
        out.append(hash(tuple(parts)))
    return out


def _across_of(results: list[KindResult], rows: int) -> list[tuple[tuple[bool, int, int], ...]]:
    """Per row, the flags of the kinds judged across partitions (flagged, start, end; an
    unflagged kind's span is nobody's: an open session's runs to the window's end)."""
    columns = [
        [
            (True, start, end) if flagged else (False, 0, 0)
            for flagged, start, end in zip(
                r.flagged.tolist(), r.start_ns.tolist(), r.end_ns.tolist(), strict=True
            )
        ]
        for r in results
    ]
    return [tuple(column[i] for column in columns) for i in range(rows)]


def _holds_until(batch: SessionBatch, fitted: list[Detector], now_ns: int) -> np.ndarray:
    """For each row judged at ``now_ns``, the latest window end at which the same data still
    gets the same verdict (``_CLOCK_FREE``): ``now_ns`` (judged again at the next window) when
    a detector is not known to be clock-free, or when ``prepared`` would set some of its
    stamps aside or reorder them (a reading that arrived before an earlier one, a stamp before
    the start or beyond the trusted future, which may be trusted later); else until the
    silence after its last reading reaches DataGap's threshold for the row (no sooner can the
    clock alone raise a gap), or for ever. Those rows' stamps are the ones ``prepared``
    trusts, so the threshold is computed from them here as DataGap does (the interval: the
    median positive step), without preparing the batch again."""
    n, m = batch.n_sessions, batch.n_steps
    if any(not isinstance(d, _CLOCK_FREE) for d in fitted):
        return np.full(n, now_ns, dtype=np.int64)
    holds = np.full(n, _FOREVER_NS, dtype=np.int64)
    if not m:
        return holds
    valid, t = batch.valid, batch.t_ns
    unsure = clock_unsure(batch, now_ns)
    gap = next((d for d in fitted if isinstance(d, DataGap)), None)
    if gap is not None:
        rows = np.arange(n)
        count = valid.sum(axis=1)
        last = t[rows, np.maximum(count - 1, 0)]
        steps = np.diff(t, axis=1) / _NS
        positive = valid[:, 1:] & valid[:, :-1] & (steps > 0)
        interval = row_median(np.where(positive, steps, np.nan))  # as ``prepared`` takes it
        few = count < OWN_INTERVAL_READINGS
        if gap.known_intervals_ is not None and few.any():
            # ... or what the windows before showed of its connector, if shorter: a verdict
            # holds no longer than the shorter of the two can raise a gap
            known = gap.known_intervals_.interval_s(batch.connector_keys()[few])
            interval[few] = np.fmin(interval[few], known)
        threshold_s = np.fmax(gap.max_missing_intervals * interval, gap.min_gap_s)
        # a second short of it: the steps here and DataGap's may differ in the last bits
        threshold_ns = (threshold_s * _NS).astype(np.int64) - _NS
        holds = np.where(count > 0, last + threshold_ns, holds)
        # a session with few readings is timed by its connector's interval where the connector
        # has other rows, which set it (``timing.sampling_interval_s``): judged at every window
        _, connector = np.unique(batch.connector_keys(), return_inverse=True)
        connector = connector.reshape(-1)
        shared = np.bincount(connector)[connector] > 1
        holds = np.where(few & shared, now_ns, holds)
    return np.asarray(np.where(unsure, now_ns, holds), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Band:
    """A partition's taper detector as fitted at ``at_ns`` on a history of ``rows`` sessions,
    copied from ``given``: its band serves the windows after (``serves``), with the ratings of
    each window's own history."""

    taper: EarlyTaper
    given: EarlyTaper
    at_ns: int
    rows: int

    def serves(self, given: Detector, history: SessionBatch, now_ns: int) -> bool:
        """Can a window ending at ``now_ns`` keep this band rather than learn it from
        ``history``? When ``given`` is the same detector (class and parameters), the band is
        younger than ``REFIT_NS`` and the history has not doubled since (a job started cold
        learns from a thin first window)."""
        return (
            type(given) is type(self.given)
            and isinstance(given, EarlyTaper)
            and given.get_params() == self.given.get_params()
            and 0 <= now_ns - self.at_ns < REFIT_NS
            and history.n_sessions <= 2 * max(self.rows, 1)
        )


def _fit(
    band: _Band | None,
    given: list[Detector],
    history: SessionBatch,
    stations: StationMetadata | None,
    now_ns: int,
    peaks: StationPeaks | None = None,
    intervals: ConnectorIntervals | None = None,
) -> tuple[list[Detector], _Band | None]:
    """Copies of the per-row detectors ``given``, fitted on ``history``, and the taper band
    learned: ``band``'s still when it serves (``_Band.serves``), the taper then rated as
    ``history`` rates each station, as its own fit would (a station new to the partition, or
    whose measured power rose, is rated anew at every window: the ratings set the power
    thresholds of several kinds). Copies: the same detectors are fitted on every partition in
    turn, and each partition keeps its band from one window to the next (``fit`` sets the
    learned attributes anew, so a shallow copy leaves the original as it was). DataGap keeps
    the partition's ``intervals`` (``timing.with_intervals``)."""
    history = with_intervals(with_peaks(with_stations(history, stations), peaks), intervals)
    fitted: list[Detector] = []
    learned = None
    for detector in given:
        if band is not None and band.serves(detector, history, now_ns):
            taper = copy.copy(band.taper)
            taper.ratings_ = StationRatings.learn(history)
            taper.n_fit_rows_ = history.n_sessions
            fitted.append(taper)
            learned = band
            continue
        fresh = copy.copy(detector).fit(history)
        if isinstance(fresh, EarlyTaper) and isinstance(detector, EarlyTaper):
            learned = _Band(fresh, detector, now_ns, history.n_sessions)
        fitted.append(fresh)
    return fitted, learned


class _Lines:
    """The result lines (profiles, usage pieces) of a partition's window, less those its
    predecessor wrote word for word: rewriting a point as it is stored changes nothing, and
    most of an open session's usage pieces (its past quarter hours) come out the same at every
    window. ``now`` keeps every line of this window, written or not, for the next, as its
    64-bit hash: a tenth of the line's memory, and a changed line taken for an unchanged one
    is a chance of n^2 / 2^64 per window, below 10^-11 for a partition's n = 10^4 lines."""

    def __init__(self, before: set[int]) -> None:
        self.before = before
        self.now: set[int] = set()

    def changed(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            key = hash(line)
            self.now.add(key)
            if key not in self.before:
                yield line

    def changed_pieces(self, pieces: Pieces) -> Pieces:
        """The usage pieces whose line differs from every line of the predecessor, told apart
        by their values rather than their formatted lines: a piece's line is a function of
        its session, station, connector, start and four numbers (``usage_lines``), and
        formatting every past quarter hour of every open session at every window, only to
        find it unchanged, was most of the cost of writing usage. The four numbers are
        hashed by their bits."""
        if not len(pieces):
            return pieces
        numbers = np.stack(
            [
                np.asarray(getattr(pieces, name), dtype=np.float64)
                for name in ("occupied_s", "charging_s", "idle_after_full_s", "energy_wh")
            ],
            axis=1,
        ).view(np.int64)
        keys = [
            hash(("usage", *row))
            for row in zip(
                pieces.session_id.tolist(),
                pieces.station_id.tolist(),
                pieces.connector_id.tolist(),
                pieces.start_ns.tolist(),
                *numbers.T.tolist(),
                strict=True,
            )
        ]
        self.now.update(keys)
        fresh = np.fromiter((key not in self.before for key in keys), bool, count=len(keys))
        return _take_pieces(pieces, fresh)


def _take_pieces(pieces: Pieces, mask: np.ndarray) -> Pieces:
    return Pieces(**{f.name: getattr(pieces, f.name)[mask] for f in fields(Pieces)})


class _Verdicts:
    """The last verdicts of a partition's open sessions (``_Verdict``): those of the window
    before (``before``, from its cache when it is this one's predecessor), and those this
    window gives or keeps (``now``), for the next.

    An open session whose row is the same as when it was last judged (no reading, stop or
    status of its own arrived, no session started after it on its connector), whose verdicts
    across partitions are the same, and whose verdict the clock cannot have changed yet
    (``_holds_until``) is not judged again: its stored flags, profile, usage and catalogue row
    stand. Nothing else would change them but what the detectors learn from the partition's
    history, which moves a little at every window: the session is judged with it again as soon
    as anything of its own arrives, and at the latest when it stops. A session judged again
    for late readings or a late stop (``SessionEvents.late``) always is."""

    def __init__(self, before: dict[str, object]) -> None:
        self.before = before
        self.now: dict[str, object] = {}
        self.skipped = 0
        self._digests: dict[str, tuple[int, tuple[tuple[bool, int, int], ...]]] = {}

    def judge_again(
        self,
        batch: SessionBatch,
        found: SessionEvents,
        across: _Across,
        fitted: list[Detector] | None,
        until_ns: int,
    ) -> SessionBatch:
        """The rows of ``batch`` to judge: all but the open sessions whose verdict holds."""
        sid = [None if s is None else str(s) for s in batch.session_id]
        candidates = [
            i
            for i, s in enumerate(sid)
            if s is not None and int(batch.stop_ns[i]) == NO_TIME and s not in found.late
        ]
        if not candidates or fitted is None:
            return batch
        rows = np.array(candidates, dtype=np.int64)
        part = batch.take(rows)
        latest: dict[tuple[str, int], int] = {}
        for start in found.starts:
            key = (start.station_id, start.connector_id)
            latest[key] = max(latest.get(key, NO_TIME), start.ts_ns)
        digests = _digests(part, latest)
        crossed = _across_of(across.take(part.session_id), part.n_sessions)
        # two sessions open on a connector: the later supersedes the earlier
        # (``timing.superseded``), which both must be judged together to see
        connector = [(str(batch.station_id[i]), int(batch.connector_id[i])) for i in candidates]
        shared = {key for key in connector if connector.count(key) > 1}
        keep = np.ones(batch.n_sessions, dtype=bool)
        for row, digest, cross, key in zip(candidates, digests, crossed, connector, strict=True):
            s = sid[row]
            assert s is not None
            self._digests[s] = (digest, cross)
            last = self.before.get(s)
            if (
                isinstance(last, _Verdict)
                and key not in shared
                and last.digest == digest
                and last.across == cross
                and until_ns <= last.holds_until_ns
            ):
                keep[row] = False
                self.now[s] = last
        # a session with few readings is timed by its connector's other rows (DataGap): it is
        # judged again whenever one of them is, and then with all of them, as a cold window
        # judges it
        if batch.n_steps and not keep.all():
            by_connector = batch.connector_keys()
            short = batch.valid.sum(axis=1) < OWN_INTERVAL_READINGS
            keep |= short & np.isin(by_connector, by_connector[keep])
            keep |= np.isin(by_connector, by_connector[keep & short])
        if keep.all():
            return batch
        if batch.n_steps and keep.any():
            # DataGap times an open session's silence to the batch's latest reading: the
            # rows left out must not hold it, or the rows judged would be judged shorter
            stamps = np.where(batch.valid, batch.t_ns, np.iinfo(np.int64).min).max(axis=1)
            if stamps[~keep].max() > stamps[keep].max():
                for s in [sid[i] for i in np.flatnonzero(~keep)]:
                    self.now.pop(str(s), None)
                return batch
        self.skipped += int((~keep).sum())
        return batch.take(np.flatnonzero(keep))

    def judged(self, batch: SessionBatch, fitted: list[Detector] | None, until_ns: int) -> None:
        """Remember the verdicts about to be given to the open sessions of ``batch``."""
        if fitted is None:
            return
        holds = _holds_until(batch, fitted, until_ns).tolist()
        for i, s in enumerate(batch.session_id.tolist()):
            known = None if s is None else self._digests.get(str(s))
            if known is not None and int(batch.stop_ns[i]) == NO_TIME:
                self.now[str(s)] = _Verdict(known[0], known[1], holds[i])


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
    partition_size: int = PARTITION_STATIONS,
    caches: dict[tuple[str, ...], ReadingCache] | None = None,
    partitions: Sequence[int] | None = None,
    partition_count: int = 1,
) -> tuple[list[Flag], DetectReport]:
    """Score the window's sessions with ``now_ns = until_ns`` and store profiles and flags
    (withdrawing stored flags the new verdicts do not hold), and, given ``catalog`` (the state
    database), each session's catalogue row stamped ``judged_at_ns`` (the wall clock, read by
    the caller; ``until_ns`` when not given).

    The detectors are fitted on everything read of a partition (the window and its look-back),
    so history just before the window informs what is normal; ``stations`` (sites, declared
    ratings, fleet cards: ``chargewatch.site_store.load_metadata``) goes to them with it.
    ``caches`` (kept by the caller from one window to the next, by partition) holds what the
    next window reads again: the readings of open sessions cross InfluxDB once; the profile
    and usage lines written, so the next window writes only those that changed; and the taper
    band learned, which the next windows score with for up to ``REFIT_NS`` (``_fit``: the
    ratings and every other detector are still fitted on each window's history).
    ``partitions`` (of ``partition_count``): judge only their stations (module docstring);
    None: every station.
    """
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    began = time.perf_counter()
    report = DetectReport(now_ns=until_ns)
    chosen = list(detectors) if detectors is not None else default_detectors()
    per_row = [d for d in chosen if d.per_row]
    everyone = list_stations(client)
    judged, others = everyone, list[str]()
    if partitions is not None:
        judged, others = partition_stations(everyone, partitions, partition_count)
    parts = station_partitions(judged, partition_size)
    sessions = [
        read_sessions(client, part, since_ns, until_ns, lookback=WINDOW_LOOKBACK) for part in parts
    ]
    across_kinds = [d for d in chosen if not d.per_row]
    spans = [
        read_spans(client, part, since_ns, until_ns, lookback=WINDOW_LOOKBACK)
        for part in (station_partitions(others, partition_size) if across_kinds else [])
    ]
    across = _judge_across([*sessions, *spans], across_kinds, until_ns, stations)
    del spans
    flags: list[Flag] = []
    stamp = until_ns if judged_at_ns is None else judged_at_ns
    for part, found in zip(parts, sessions, strict=True):
        cache = caches.pop(part, None) if caches is not None else None
        events, kept = read_partition(
            client, part, found, since_ns, until_ns, lookback=WINDOW_LOOKBACK, cache=cache
        )
        # what the window before wrote, if it is this one's predecessor, is not written again
        follows = cache is not None and cache.follows(since_ns, until_ns)
        lines = _Lines(cache.written if cache is not None and follows else set())
        prior = cache.band if cache is not None and follows else None
        verdicts = _Verdicts(cache.verdicts if cache is not None and follows else {})
        watch = cache.peaks if cache is not None and follows else None
        intervals = cache.intervals if cache is not None and follows else None
        if not isinstance(intervals, ConnectorIntervals):
            intervals = ConnectorIntervals()
        if caches is not None:
            caches[part] = kept
        found_flags, band, peak_watch = _judge_partition(
            client,
            events,
            found,
            across,
            per_row,
            since_ns,
            until_ns,
            stations,
            report,
            catalog=catalog,
            judged_at_ns=stamp,
            lines=lines,
            band=prior if isinstance(prior, _Band) else None,
            verdicts=verdicts,
            watch=watch if isinstance(watch, PeakWatch) else None,
            intervals=intervals,
        )
        flags += found_flags
        kept.written = lines.now
        kept.band = band
        kept.verdicts = verdicts.now
        kept.peaks = peak_watch
        kept.intervals = intervals
    if caches is not None:
        for gone in set(caches) - set(parts):  # partitions that changed with new stations
            del caches[gone]
    flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    report.flags_by_kind.update(flag.kind for flag in flags)
    report.seconds = time.perf_counter() - began
    return flags, report


def _assemble(events: PartitionEvents) -> Handout:
    """The partition's rows (every session of the look-back, then orphan segments), in
    batches of at most ``WINDOW_MAX_CELLS`` padded samples."""
    assembler = Assembler()
    for event in events.control:
        assembler.add(0, event)  # arrival matters for readings only: theirs is their rx
    assembler.add_readings(events.readings)
    return assembler.finish(max_cells=WINDOW_MAX_CELLS)


def _judge_across(
    sessions: list[SessionEvents],
    detectors: list[Detector],
    until_ns: int,
    stations: StationMetadata | None,
) -> _Across:
    """The cross-session kinds over the spans of every session of every partition."""
    if not detectors:
        return _Across({}, [])
    assembler = Assembler()
    for found in sessions:
        events: list[SessionStart | SessionStop] = [*found.starts, *found.stops]
        for event in sorted(events, key=lambda e: e.ts_ns):
            assembler.add(0, event)
    spans = next(iter(assembler.finish()), empty_batch())
    stop = np.where(spans.stop_ns != NO_TIME, spans.stop_ns, np.int64(until_ns))
    spans = spans.sessions_only(np.maximum(stop, spans.start_ns))
    fitted = fit_detectors(with_stations(spans, stations), detectors)
    results = run_detectors(spans, fitted, now_ns=until_ns)
    index = {str(sid): i for i, sid in enumerate(spans.session_id) if sid is not None}
    return _Across(index, results)


def _judged_rows(
    batch: SessionBatch, found: SessionEvents, since_ns: int, until_ns: int
) -> np.ndarray:
    """Sessions the window judges, and orphan segments that ended in it (module docstring)."""
    sid = batch.session_id
    orphan = np.array([s is None for s in sid], dtype=bool)
    known = {s.session_id for s in found.starts} | {s.session_id for s in found.stops}
    named = np.array(
        [s is not None and (s in found.judged or s not in known) for s in sid], dtype=bool
    )
    ended = _orphan_end(batch, orphan, until_ns, found.starts)
    return named | (orphan & (ended >= since_ns) & (ended < until_ns))


def _orphan_end(
    batch: SessionBatch, orphan: np.ndarray, until_ns: int, starts: Sequence[SessionStart]
) -> np.ndarray:
    """When each orphan segment ended: the next session start on its connector after its
    last activity (``_last_activity``), else ``ORPHAN_GAP_NS`` after that; NO_TIME for other
    rows and for segments that may still grow (neither has happened by ``until_ns``)."""
    end = np.full(batch.n_sessions, NO_TIME, dtype=np.int64)
    rows = np.flatnonzero(orphan)
    if not rows.size:
        return end
    row_keys = np.char.add(
        batch.station_id[rows].astype(str), np.char.mod("#%d", batch.connector_id[rows])
    )
    start_keys = np.array([f"{s.station_id}#{s.connector_id}" for s in starts], dtype=str)
    start_t = np.array([s.ts_ns for s in starts], dtype=np.int64)
    _, codes = np.unique(np.concatenate([row_keys, start_keys]), return_inverse=True)
    codes = codes.reshape(-1)
    key, s_code = codes[: rows.size], codes[rows.size :]
    # session starts sorted by (connector, start): each connector's starts are one sorted run
    order = np.lexsort((start_t, s_code))
    s_key, s_t = s_code[order], start_t[order]
    last = _last_activity(batch, rows, until_ns)
    lo = np.searchsorted(s_key, key, side="left")
    hi = np.searchsorted(s_key, key, side="right")
    after = _first_after(s_t, lo, hi, last)
    nxt = np.full(rows.size, NO_TIME, dtype=np.int64)
    if s_t.size:
        nxt = np.where(after >= 0, s_t[np.maximum(after, 0)], NO_TIME)
    silent = last + ORPHAN_GAP_NS
    ended = np.where((nxt != NO_TIME) & (nxt < silent), nxt, silent)
    end[rows] = np.where(ended < until_ns, ended, NO_TIME)
    return end


def _last_activity(batch: SessionBatch, rows: np.ndarray, now_ns: int) -> np.ndarray:
    """When each orphan row ``rows`` last showed its meter at work: a trusted sample with power
    flowing (above ``ORPHAN_FLOW_W``) or the register moving by more than its rounding
    (``ROUNDING_STEPS`` of its resolution, either way); the row's first reading when it never
    did. A connector that reports an idle meter every quarter hour (OCPP's clock-aligned
    readings) sends readings outside sessions all day: timed from its last reading, the segment
    would not end while the connector lives, and energy that flowed on it would never be
    judged. The file path judges every segment at the end of its data and sees the same."""
    prep = prepared(batch.take(rows), now_ns)
    active = prep.valid & (prep.power_w > ORPHAN_FLOW_W)
    if prep.de_wh.shape[1]:
        moved = np.abs(prep.de_wh) > ROUNDING_STEPS * prep.resolution_wh[:, None]
        active[:, 1:] |= moved  # NaN steps (no register at either end) compare False
    first: np.ndarray = batch.start_ns[rows]  # an orphan row starts at its first reading
    if not active.shape[1]:
        return first
    m = active.shape[1]
    last = pick(prep.t_ns, m - 1 - np.argmax(active[:, ::-1], axis=1)).astype(np.int64)
    ended: np.ndarray = np.where(active.any(axis=1), np.maximum(last, first), first)
    return ended


def _first_after(sorted_t: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each query, the index of the first of ``sorted_t[lo:hi]`` (sorted within each
    connector's run) that is after ``t``; -1 when none."""
    if not sorted_t.size:
        return np.full(t.size, -1, dtype=np.int64)
    # binary search inside each [lo, hi) run at once: the runs are sorted by time
    left, right = lo.copy(), hi.copy()
    while np.any(left < right):
        active = left < right
        mid = (left + right) // 2
        go_right = active & (sorted_t[np.minimum(mid, sorted_t.size - 1)] <= t)
        left = np.where(go_right, mid + 1, left)
        right = np.where(active & ~go_right, mid, right)
    return np.where(left < hi, left, -1)


def _judge_partition(
    client: InfluxClient,
    events: PartitionEvents,
    found: SessionEvents,
    across: _Across,
    per_row: list[Detector],
    since_ns: int,
    until_ns: int,
    stations: StationMetadata | None,
    report: DetectReport,
    *,
    catalog: StateStore | None,
    judged_at_ns: int,
    lines: _Lines,
    band: _Band | None,
    verdicts: _Verdicts,
    watch: PeakWatch | None = None,
    intervals: ConnectorIntervals | None = None,
) -> tuple[list[Flag], _Band | None, PeakWatch]:
    """Judge and store the partition's rows, but for the open sessions whose last verdict
    still holds (``_Verdicts.unchanged``); its flags, and the taper band it scored with
    (learned from the partition's history, or ``band`` still: ``_fit``)."""
    handout = _assemble(events)
    report.lines += len(events.readings) + len(events.control)
    report.late_readings += sum(found.late.values())
    fitted: list[Detector] | None = None
    # stations are rated by every reading of this window and the ones before it (``watch``,
    # carried in the partition's cache), not only the rows fitted on
    watch = watch if watch is not None else PeakWatch()
    watch.columns(events.readings)
    peaks = watch.peaks()
    if handout.sample is not None:  # several batches: fitted on rows spread over them all
        fitted, band = _fit(band, per_row, handout.sample, stations, until_ns, peaks, intervals)
    flags: list[Flag] = []
    for batch in handout:
        if fitted is None:  # one batch: the window and its look-back are the history
            fitted, band = _fit(band, per_row, batch, stations, until_ns, peaks, intervals)
        kept = batch.take(_judged_rows(batch, found, since_ns, until_ns))
        del batch
        if kept.n_sessions:
            kept = verdicts.judge_again(kept, found, across, fitted, until_ns)
        if kept.n_sessions:
            verdicts.judged(kept, fitted, until_ns)
            flags += _judge_rows(
                client,
                kept,
                found,
                across,
                fitted,
                until_ns,
                report,
                catalog=catalog,
                judged_at_ns=judged_at_ns,
                lines=lines,
            )
            if intervals is not None:  # what the windows after time short sessions by
                intervals.learn(kept, prepared(kept, until_ns))
    return flags, band, watch


def _judge_rows(
    client: InfluxClient,
    kept: SessionBatch,
    found: SessionEvents,
    across: _Across,
    fitted: list[Detector],
    until_ns: int,
    report: DetectReport,
    *,
    catalog: StateStore | None,
    judged_at_ns: int,
    lines: _Lines,
) -> list[Flag]:
    """Score the judged rows of one batch, store their profiles, flags (withdrawing what
    they no longer hold), usage and catalogue rows (profiles and usage as they changed)."""
    results = run_detectors(kept, fitted, now_ns=until_ns)
    results += across.take(kept.session_id)
    flags = noted(flags_from_results(kept, results), found.late)
    orphans = sum(1 for sid in kept.session_id if sid is None)
    report.sessions += kept.n_sessions - orphans
    report.orphan_segments += orphans
    judged = profiles(kept)
    _write(client, lines.changed(profiles_to_lines(judged)))
    _withdraw(client, kept, flags, found.earliest_ns, until_ns)
    _write(client, flags_to_lines(flags))
    pieces = usage_pieces(kept, until_ns=until_ns)
    _write(client, usage_lines(lines.changed_pieces(pieces)))
    if catalog is not None:
        upsert_sessions(catalog, catalog_rows(kept, judged, results, judged_at_ns=judged_at_ns))
        replace_pieces(catalog, pieces, [str(s) for s in kept.session_id if s is not None])
    return flags


def _withdraw(
    client: InfluxClient, kept: SessionBatch, flags: list[Flag], earliest_ns: int, until_ns: int
) -> int:
    """Delete the stored flags of the judged sessions that the new verdicts do not hold (a flag
    of an earlier judgement: the session was open, or late readings changed it); how many."""
    judged = {str(s) for s in kept.session_id if s is not None}
    if not judged:
        return 0
    stations = sorted({str(s) for s in kept.station_id})
    where = " OR ".join(f"station_id = {quote_literal(s)}" for s in stations)
    # an earlier flag starts at a sample of its session or its start: a wrong clock's (1970)
    # as well, so the search reaches back to the earliest stamp of the judged rows
    stamps = np.where(kept.valid, kept.t_ns, np.iinfo(np.int64).max) if kept.n_steps else None
    first = int(stamps.min()) if stamps is not None and stamps.size else earliest_ns
    since = min(earliest_ns, first, int(kept.start_ns.min())) - _FLAG_SLACK_NS
    query = (
        f"SELECT * FROM {quote_ident(FLAG_MEASUREMENT)} WHERE ({where}) "
        f"AND time >= {since} AND time < {until_ns + _FLAG_SLACK_NS} "
        'GROUP BY "station_id", "connector_id", "kind"'
    )
    keep = {(f.station_id, f.connector_id, f.kind, f.start_ns) for f in flags}
    stale = [
        f
        for f in flags_from_series(client.query(query), sort=False)
        if f.session_id in judged and (f.station_id, f.connector_id, f.kind, f.start_ns) not in keep
    ]
    if stale:
        client.query(
            "; ".join(
                f"DELETE FROM {quote_ident(FLAG_MEASUREMENT)} WHERE "
                f"station_id = {quote_literal(f.station_id)} AND "
                f"connector_id = {quote_literal(str(f.connector_id))} AND "
                f"kind = {quote_literal(f.kind)} AND time = {f.start_ns}"
                for f in stale
            )
        )
    return len(stale)
