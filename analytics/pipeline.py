"""Detection end to end: events -> sessions -> detectors -> flags.

Two sources feed the same steps: an event file (``detect_stream``, no database needed) and a
window of InfluxDB (``analytics.window.detect_window``). Sessions are assembled in chunks of at
most ``max_sessions`` so memory stays bounded whatever the input's size; the detectors are fitted
on the first chunk (a sample of its rows when it spans several batches; they fall back to
built-in defaults when it is small) and score every chunk.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from analytics.assemble import MAX_CELLS, Assembler, Handout
from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors import default_detectors, detect
from analytics.detectors.base import Detector, KindResult
from analytics.flags import Flag, flags_from_results
from chargewatch.errors import EventError
from chargewatch.events import Event, EventDecoder, iter_jsonl

__all__ = [
    "DetectReport",
    "Detection",
    "decode_events",
    "detect_events",
    "detect_stream",
    "run_detectors",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class DetectReport:
    """What one detection run saw and found."""

    lines: int = 0
    rejected: int = 0
    sessions: int = 0  # rows with a session id
    orphan_segments: int = 0
    late_readings: int = 0
    flags_by_kind: Counter[str] = field(default_factory=Counter)
    now_ns: int = NO_TIME
    seconds: float = 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.flags_by_kind.items()))
        total = sum(self.flags_by_kind.values())
        return (
            f"{self.sessions} sessions and {self.orphan_segments} orphan segments scored, "
            f"{total} flags ({kinds or 'none'}), {self.rejected} lines rejected, "
            f"{self.seconds:.1f} s"
        )


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


def detect_events(
    events: Iterable[tuple[int, Event]],
    *,
    detectors: Sequence[Detector] | None = None,
    report: DetectReport | None = None,
    max_sessions: int = 10_000,
    max_cells: int = MAX_CELLS,
    fit: bool = True,
) -> Iterator[Detection]:
    """Assemble ``events`` in chunks, fit the detectors on the first chunk (on a sample of its
    rows when it takes several batches), score every chunk.

    Chunks: once ``max_sessions`` sessions have stopped they are scored, in batches of at most
    ``max_cells`` padded samples (see ``Assembler.pop_complete``). ``fit=False`` scores with
    detectors fitted elsewhere (on history).

    ``now_ns`` for scoring is ``Assembler.now_ns``: the latest control event or, if later, the
    median over stations of their latest reading (one charger with its clock years ahead must
    not move "now" for everyone).
    """
    report = report if report is not None else DetectReport()
    chosen = list(detectors) if detectors is not None else default_detectors()
    assembler = Assembler()
    fitted = not fit
    began = time.perf_counter()

    def score(handout: Handout) -> Iterator[Detection]:
        nonlocal fitted
        now_ns = assembler.now_ns
        report.now_ns = now_ns
        for batch in handout:
            if not batch.n_sessions:
                continue
            if not fitted:
                learn_from = handout.sample if handout.sample is not None else batch
                for detector in chosen:
                    detector.fit(learn_from)
                fitted = True
            results = run_detectors(batch, chosen, now_ns=now_ns)
            flags = flags_from_results(batch, results)
            orphans = sum(1 for sid in batch.session_id if sid is None)
            report.sessions += batch.n_sessions - orphans
            report.orphan_segments += orphans
            report.flags_by_kind.update(flag.kind for flag in flags)
            report.seconds = time.perf_counter() - began
            yield Detection(batch, results, flags)

    for arrival, event in events:
        assembler.add(arrival, event)
        if assembler.stopped >= max_sessions:
            yield from score(assembler.pop_complete(max_cells=max_cells))
    yield from score(assembler.finish(max_cells=max_cells))
    report.late_readings = assembler.late_readings
    if report.late_readings:
        logger.warning(
            "%d readings arrived after their session was scored and were left out",
            report.late_readings,
        )
    report.seconds = time.perf_counter() - began


def detect_stream(
    stream: IO[bytes],
    *,
    decoder: EventDecoder,
    detectors: Sequence[Detector] | None = None,
    on_reject: Callable[[int, EventError], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_sessions: int = 10_000,
    report: DetectReport | None = None,
) -> tuple[list[Flag], DetectReport]:
    """Every flag of an event stream (JSON Lines), ordered by start, and the run's report."""
    report = report if report is not None else DetectReport()
    events = decode_events(stream, decoder, report, on_reject, on_progress)
    flags: list[Flag] = []
    for detection in detect_events(
        events, detectors=detectors, report=report, max_sessions=max_sessions
    ):
        flags.extend(detection.flags)
    flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    return flags, report
