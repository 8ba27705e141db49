"""Detection end to end: events -> sessions -> detectors -> flags.

Two sources feed the same steps: an event file (``detect_stream``, no database needed) and a
window of InfluxDB (``analytics.window.detect_window``). Sessions are assembled in chunks of at
most ``max_sessions`` so memory stays bounded whatever the input's size; the detectors are fitted
on the first chunk (a sample of its rows when it spans several batches; they fall back to
built-in defaults when it is small) and score every chunk.

An event file is decoded a chunk of lines at a time (``decode_chunks``; a chunk is the slice of
a block read that holds its lines, ``analytics.lines``): readings, nearly all of the lines, are
read and checked as columns (``chargewatch.columns``) and reach the assembler as
arrays; every other line, and any reading the columnar checks do not take, goes through
``EventDecoder`` one at a time. The result is the same as decoding every line on its own
(``decode_events``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import polars as pl

from analytics.assemble import MAX_CELLS, Assembler, Handout, PeakWatch, ReadingColumns
from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors import BLOCK_CELLS, default_detectors, detect, fit_detectors
from analytics.detectors.base import Detector, KindResult
from analytics.detectors.identity import session_ends
from analytics.detectors.prepared import prepared
from analytics.detectors.ratings import with_peaks, with_stations
from analytics.detectors.timing import ConnectorIntervals, with_intervals
from analytics.flags import flags_from_results
from analytics.late import judge_late_again, revise
from analytics.lines import LineBlock, iter_line_blocks
from chargewatch.columns import judge_readings, reading_frame_from_block, reading_frame_from_ndjson
from chargewatch.errors import EventError
from chargewatch.events import MAX_LINE_BYTES, Event, EventDecoder, Reading, iter_jsonl
from chargewatch.flags import Flag
from chargewatch.schema import READING_FIELDS
from chargewatch.sites import StationMetadata

__all__ = [
    "CHUNK_LINES",
    "DecodedChunk",
    "DetectReport",
    "Detection",
    "decode_chunks",
    "decode_events",
    "detect_chunks",
    "detect_events",
    "detect_stream",
    "run_detectors",
]

logger = logging.getLogger(__name__)

CHUNK_LINES = 50_000  # lines decoded together as columns: ~12 MB of JSON
# What ``_reading_columns`` reads of a judged frame.
_TAKEN_COLUMNS = ("station_id", "connector_id", "session_id", "ts_ns", *READING_FIELDS)


@dataclass(slots=True)
class DetectReport:
    """What one detection run saw and found."""

    lines: int = 0
    rejected: int = 0
    sessions: int = 0  # rows with a session id
    orphan_segments: int = 0
    late_readings: int = 0
    late_sessions_judged: int = 0  # sessions judged again for them (``analytics.late``)
    flags_by_kind: Counter[str] = field(default_factory=Counter)
    now_ns: int = NO_TIME
    seconds: float = 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.flags_by_kind.items()))
        total = sum(self.flags_by_kind.values())
        # readings that came after their session had been scored (beyond the assembler's
        # grace of one hand-out) are not in any verdict: say how many, never drop them quietly
        late = ""
        if self.late_sessions_judged:
            late = (
                f", {self.late_readings} late readings ({self.late_sessions_judged} sessions"
                " judged again with them)"
            )
        elif self.late_readings:
            late = f", {self.late_readings} late readings left out"
        return (
            f"{self.sessions} sessions and {self.orphan_segments} orphan segments scored, "
            f"{total} flags ({kinds or 'none'}), {self.rejected} lines rejected{late}, "
            f"{self.seconds:.1f} s"
        )


@dataclass(frozen=True, slots=True)
class DecodedChunk:
    """The valid lines of a chunk: readings taken as columns, and the other events (with their
    line numbers, in order) decoded one by one."""

    readings: ReadingColumns
    events: list[tuple[int, Event]]


@dataclass(frozen=True, slots=True)
class Detection:
    """One chunk's outcome: its batch, every detector's verdict, and the flags."""

    batch: SessionBatch
    results: list[KindResult]
    flags: list[Flag]


def run_detectors(
    batch: SessionBatch, detectors: Sequence[Detector], *, now_ns: int
) -> list[KindResult]:
    """Every (fitted) detector's verdict on ``batch``."""
    return detect(batch, now_ns=now_ns, detectors=list(detectors))


def decode_events(
    stream: IO[bytes],
    decoder: EventDecoder,
    report: DetectReport,
    on_reject: Callable[[int, EventError], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Event]]:
    """``(line_number, event)`` for each valid line; bad lines are counted and reported.
    ``on_progress`` gets the bytes read so far every 10,000 lines."""
    for number, line in iter_jsonl(stream):
        report.lines = number
        if on_progress is not None and number % 10_000 == 0:
            on_progress(stream.tell())
        try:
            event = decoder.decode_line(line)
        except EventError as exc:
            report.rejected += 1
            if on_reject is not None:
                on_reject(number, exc)
            continue
        yield number, event


def decode_chunks(
    stream: IO[bytes],
    decoder: EventDecoder,
    report: DetectReport,
    on_reject: Callable[[int, EventError], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    *,
    chunk_lines: int = CHUNK_LINES,
) -> Iterator[DecodedChunk]:
    """``decode_events`` a chunk of lines at a time, readings as columns; bad lines are counted
    and reported in order. ``on_progress`` gets the bytes read so far after each chunk."""
    for lines in iter_line_blocks(stream, chunk_lines):
        report.lines = int(lines.numbers[-1])
        yield _decode_chunk(lines, decoder, report, on_reject)
        if on_progress is not None:
            on_progress(stream.tell())


def _decode_chunk(
    lines: LineBlock,
    decoder: EventDecoder,
    report: DetectReport,
    on_reject: Callable[[int, EventError], None] | None,
) -> DecodedChunk:
    numbers = lines.numbers
    # Over-long lines were cut short by the reader: the per-event way rejects them.
    short = np.flatnonzero(lines.lengths <= MAX_LINE_BYTES)
    if short.size == len(lines):
        frame = reading_frame_from_block(lines.data, len(lines))
    else:
        frame = (
            reading_frame_from_ndjson([lines[i] for i in short.tolist()]) if short.size else None
        )
    fast = np.zeros(len(lines), dtype=bool)
    if frame is not None:
        frame = judge_readings(frame)
        fast[short] = frame["ok"].to_numpy()
        # only the columns read on: the lines' texts (type, ts) are not copied by the filter
        taken = frame.select(*_TAKEN_COLUMNS).filter(frame["ok"])
        readings = _reading_columns(taken, numbers[fast])
    else:
        readings = _no_readings()
    events: list[tuple[int, Event]] = []
    for i in np.flatnonzero(~fast).tolist():
        number = int(numbers[i])
        try:
            events.append((number, decoder.decode_line(lines[i])))
        except EventError as exc:
            report.rejected += 1
            if on_reject is not None:
                on_reject(number, exc)
    return DecodedChunk(readings, events)


def _reading_columns(frame: pl.DataFrame, arrival: np.ndarray) -> ReadingColumns:
    """The judged rows of ``frame`` (all valid readings) as ``ReadingColumns``."""
    station, connector = frame["station_id"], frame["connector_id"]
    # a station id has no space: the text is unique per (station, connector)
    key_text = station + " " + connector.cast(pl.String)
    key, key_rows = _codes(key_text)
    session_id = frame["session_id"]
    session, session_rows = _codes(session_id)
    return ReadingColumns(
        arrival=arrival,
        ts_ns=frame["ts_ns"].to_numpy(),
        key=key,
        keys=list(
            zip(
                station.gather(key_rows).to_list(),
                connector.gather(key_rows).to_list(),
                strict=True,
            )
        ),
        session=session,
        session_ids=session_id.gather(session_rows).to_list(),
        values=tuple(frame[key].fill_null(float("nan")).to_numpy() for key in READING_FIELDS),
    )


def _codes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of a text column (-1 where null) and the first row of each code. Grouped by
    a 64-bit hash (no sort of the texts), then checked against the texts themselves: if two
    texts ever shared a hash, they are ranked instead, which is exact."""
    rows = np.flatnonzero(texts.is_not_null().to_numpy())
    codes = np.full(texts.len(), -1, dtype=np.int64)
    if not rows.size:
        return codes, rows
    present = texts.gather(rows)
    _hashes, first, inverse = np.unique(
        present.hash().to_numpy(), return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    if not (present == present.gather(first[inverse])).all():
        ranks = present.rank("dense").cast(pl.Int64).to_numpy() - 1
        _ranks, first, inverse = np.unique(ranks, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    codes[rows] = inverse
    return codes, rows[first]


def _no_readings() -> ReadingColumns:
    none = np.zeros(0, dtype=np.int64)
    nan = np.zeros(0, dtype=np.float64)
    return ReadingColumns(none, none, none, [], none, [], tuple(nan for _ in READING_FIELDS))


class _Scoring:
    """Fits the detectors on the first chunk handed out and scores every chunk.

    Kinds that compare sessions with each other (``per_row`` False: one id tag at two
    stations) cannot be judged a chunk at a time, since a pair may fall into two chunks. For
    them each chunk leaves its sessions' spans (no samples: a few values per session), and
    ``finish`` scores those kinds once over every session of the run.
    """

    def __init__(
        self,
        assembler: Assembler,
        detectors: Sequence[Detector],
        report: DetectReport,
        *,
        fit: bool,
        stations: StationMetadata | None = None,
    ) -> None:
        self._assembler = assembler
        self._stations = stations
        self._detectors = detectors
        self._per_row = [d for d in detectors if d.per_row]
        self._across = [d for d in detectors if not d.per_row]
        self._spans: list[SessionBatch] = []
        self._report = report
        self._fitted = not fit
        self._began = time.perf_counter()
        # every reading's peak per station until the detectors are fitted: stations are rated
        # by all of the first chunk, not only the rows fitted on (``ratings.with_peaks``)
        self.watch: PeakWatch | None = PeakWatch() if fit else None
        # each connector's sampling interval as the batches so far showed it: a short session
        # is timed by its connector's, which may lie in an earlier batch (``DataGap``)
        self.intervals = ConnectorIntervals()

    def score(self, handout: Handout) -> Iterator[Detection]:
        report = self._report
        now_ns = self._assembler.now_ns
        report.now_ns = now_ns
        if not self._fitted and handout.has_sample:
            # history is a sample of the first chunk's rows (it spans several batches): fitted
            # on before any batch is built, and let go of after, so that the sample (and what
            # the detectors derived from it) and a batch are never held at once. Its rows come
            # as blocks of like length (``Handout.history``), not as one padded batch.
            history = handout.history()
            handout.sample = None
            if history is not None:
                self._fit(history)
        for batch in handout:
            if not batch.n_sessions:
                continue
            if not self._fitted:
                self._fit(batch)  # history is the first chunk itself: on purpose
            results = run_detectors(batch, self._per_row, now_ns=now_ns)
            self.intervals.learn(batch, prepared(batch, now_ns))
            if self._across:
                self._spans.append(batch.sessions_only(session_ends(batch, now_ns)))
            yield self._detection(batch, results)
            orphans = sum(1 for sid in batch.session_id if sid is None)
            report.sessions += batch.n_sessions - orphans
            report.orphan_segments += orphans

    def cells(self, max_cells: int) -> dict[str, int]:
        """How the assembler is to hand out: batches of rows of like length in at most
        ``BLOCK_CELLS`` padded samples (little padding for the detectors to cross, and none of
        it built), and, until the detectors are fitted, the history they are fitted on as
        batches of ``max_cells`` would have given it (``Assembler.pop_complete``)."""
        return {
            "max_cells": min(max_cells, BLOCK_CELLS),
            "sample_cells": 0 if self._fitted else max_cells,
        }

    def _fit(self, history: SessionBatch) -> None:
        peaks = self.watch.peaks() if self.watch is not None else None
        self.watch = None  # what is fitted stays fitted
        fitted_on = with_intervals(
            with_peaks(with_stations(history, self._stations), peaks), self.intervals
        )
        fit_detectors(fitted_on, self._detectors)
        # what the detectors derived from the history while fitting, cached with it
        fitted_on.extra.clear()
        self._fitted = True

    def finish(self) -> Iterator[Detection]:
        """The kinds judged across chunks, over every session of the run; then the report."""
        report = self._report
        if self._across and self._spans:
            spans = SessionBatch.concatenate(self._spans)
            self._spans = []
            yield self._detection(spans, run_detectors(spans, self._across, now_ns=report.now_ns))
        report.late_readings = self._assembler.late_readings
        if report.late_readings:
            logger.warning(
                "%d readings arrived after their session was scored (judged again with it"
                " where the input can be read twice: analytics.late)",
                report.late_readings,
            )
        report.seconds = time.perf_counter() - self._began

    def _detection(self, batch: SessionBatch, results: list[KindResult]) -> Detection:
        flags = flags_from_results(batch, results)
        self._report.flags_by_kind.update(flag.kind for flag in flags)
        self._report.seconds = time.perf_counter() - self._began
        return Detection(batch, results, flags)


def detect_events(
    events: Iterable[tuple[int, Event]],
    *,
    detectors: Sequence[Detector] | None = None,
    report: DetectReport | None = None,
    max_sessions: int = 10_000,
    max_cells: int = MAX_CELLS,
    fit: bool = True,
    stations: StationMetadata | None = None,
) -> Iterator[Detection]:
    """Assemble ``events`` in chunks, fit the detectors on the first chunk (on a sample of its
    rows when it takes several batches), score every chunk.

    Chunks: once ``max_sessions`` sessions have stopped they are scored, in batches of rows of
    like length of at most ``BLOCK_CELLS`` padded samples; the detectors are fitted on what
    batches of ``max_cells`` would have given (the first batch, or a sample of rows spread over
    them: ``Assembler.pop_complete``'s ``sample_cells``). ``fit=False`` scores with
    ``detectors`` fitted elsewhere (on history); unfitted ones raise ``NotFittedError``.
    ``stations`` (sites, declared ratings, fleet cards) goes to the detectors with the history
    they are fitted on (``ratings.with_stations``).

    ``now_ns`` for scoring is ``Assembler.now_ns``: the latest control event or, if later, the
    median over stations of their latest reading (one charger with its clock years ahead must
    not move "now" for everyone).
    """
    report = report if report is not None else DetectReport()
    chosen = list(detectors) if detectors is not None else default_detectors()
    assembler = Assembler()
    scoring = _Scoring(assembler, chosen, report, fit=fit, stations=stations)
    for arrival, event in events:
        if scoring.watch is not None and type(event) is Reading:
            scoring.watch.reading(event)
        assembler.add(arrival, event)
        if assembler.stopped >= max_sessions:
            yield from scoring.score(assembler.pop_complete(**scoring.cells(max_cells)))
    yield from scoring.score(assembler.finish(**scoring.cells(max_cells)))
    yield from scoring.finish()


def detect_chunks(
    chunks: Iterable[DecodedChunk],
    *,
    detectors: Sequence[Detector] | None = None,
    report: DetectReport | None = None,
    max_sessions: int = 10_000,
    max_cells: int = MAX_CELLS,
    fit: bool = True,
    stations: StationMetadata | None = None,
    assembler: Assembler | None = None,
) -> Iterator[Detection]:
    """``detect_events`` for decoded chunks, with the same result: each chunk's connectors and
    sessions are registered first, in order of first sight, then its readings are added as
    arrays, held back only as far as order matters (before sessions are handed out).
    ``assembler`` (a new one), if given, is used, so the caller can see afterwards which
    sessions got readings after they were scored (``Assembler.late_sessions``)."""
    report = report if report is not None else DetectReport()
    chosen = list(detectors) if detectors is not None else default_detectors()
    assembler = assembler if assembler is not None else Assembler()
    scoring = _Scoring(assembler, chosen, report, fit=fit, stations=stations)
    for chunk in chunks:
        readings = chunk.readings
        assembler.register_first_seen(readings, chunk.events)
        if scoring.watch is not None:
            scoring.watch.columns(readings)
        added = 0  # readings before this one are in the assembler
        for number, event in chunk.events:
            if scoring.watch is not None and type(event) is Reading:
                scoring.watch.reading(event)
            assembler.add(number, event)
            if assembler.stopped >= max_sessions:
                added = _add_readings_before(assembler, readings, added, number)
                yield from scoring.score(assembler.pop_complete(**scoring.cells(max_cells)))
        assembler.add_readings(readings.rows(added, len(readings)))
    yield from scoring.score(assembler.finish(**scoring.cells(max_cells)))
    yield from scoring.finish()


def _add_readings_before(
    assembler: Assembler, readings: ReadingColumns, added: int, number: int
) -> int:
    """Add ``readings[added:]`` that arrived before line ``number``; the new ``added``."""
    end = int(np.searchsorted(readings.arrival, number))
    assembler.add_readings(readings.rows(added, end))
    return end


def detect_stream(
    stream: IO[bytes],
    *,
    decoder: EventDecoder,
    detectors: Sequence[Detector] | None = None,
    on_reject: Callable[[int, EventError], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_sessions: int = 10_000,
    report: DetectReport | None = None,
    stations: StationMetadata | None = None,
) -> tuple[list[Flag], DetectReport]:
    """Every flag of an event stream (JSON Lines), ordered by start, and the run's report."""
    report = report if report is not None else DetectReport()
    chosen = list(detectors) if detectors is not None else default_detectors()
    chunks = decode_chunks(stream, decoder, report, on_reject, on_progress)
    flags: list[Flag] = []
    assembler = Assembler()
    for detection in detect_chunks(
        chunks,
        detectors=chosen,
        report=report,
        max_sessions=max_sessions,
        stations=stations,
        assembler=assembler,
    ):
        flags.extend(detection.flags)
    late = assembler.late_sessions
    if late and stream.seekable():
        # readings that came after their session was scored: judged again with them
        revised = judge_late_again(
            stream, decoder, late, assembler.late_stations, chosen, now_ns=report.now_ns
        )
        flags = revise(flags, revised, late, chosen)
        report.late_sessions_judged = len(late)
        report.flags_by_kind = Counter(flag.kind for flag in flags)
    flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    return flags, report
