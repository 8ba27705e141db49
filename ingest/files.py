"""Loading event files (JSON Lines, optionally gzip-compressed) into InfluxDB.

The file is streamed line by line: memory stays bounded whatever its size. A bad line is
reported with its number and reason and the rest carries on. Points are idempotent in InfluxDB
(same measurement, tags and time overwrite), so loading a file again after a failure is safe.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from chargewatch.errors import EventError
from chargewatch.events import EventDecoder, iter_jsonl
from chargewatch.schema import LineFormatter

_PROGRESS_EVERY_LINES = 20_000


class LineSink(Protocol):
    """Where formatted lines go (``chargewatch.influx.BatchWriter`` in production)."""

    def add(self, line: str) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """One line that was not ingested, and why."""

    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass(slots=True)
class IngestReport:
    """Counts of one ingest: lines seen, events written per type, lines rejected.

    ``written_by_type`` counts events handed to the sink; they are in InfluxDB once the ingest
    returns (the sink is flushed at the end).
    """

    lines: int = 0
    written_by_type: Counter[str] = field(default_factory=Counter)
    rejected: int = 0

    @property
    def written(self) -> int:
        return sum(self.written_by_type.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.written_by_type.items()))
        return (
            f"{self.written} events written ({kinds or 'none'}), "
            f"{self.rejected} lines rejected, {self.lines} lines read"
        )


def open_events(path: Path) -> IO[bytes]:
    """Open an event file for reading as bytes; ``.gz`` files are decompressed on the fly."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def ingest_stream(
    stream: IO[bytes],
    *,
    decoder: EventDecoder,
    sink: LineSink,
    on_reject: Callable[[Rejection], None],
    on_progress: Callable[[int], None] | None = None,
    report: IngestReport | None = None,
) -> IngestReport:
    """Decode, validate and write every line of ``stream``; flushes ``sink`` at the end.

    ``on_progress`` receives the number of bytes consumed so far, every few thousand lines.
    Pass ``report`` to have the counts kept even when writing fails part-way (the sink raises).
    """
    report = report if report is not None else IngestReport()
    formatter = LineFormatter()
    written = report.written_by_type
    for number, raw in iter_jsonl(stream):
        report.lines = number
        try:
            event = decoder.decode_line(raw)
            line = formatter.format(event)
        except EventError as exc:
            report.rejected += 1
            on_reject(Rejection(number, exc.field, exc.reason))
            continue
        except ValueError as exc:  # a value line protocol cannot carry
            report.rejected += 1
            on_reject(Rejection(number, None, str(exc)))
            continue
        sink.add(line)
        written[event.type] += 1
        if on_progress is not None and number % _PROGRESS_EVERY_LINES == 0:
            on_progress(stream.tell())
    sink.flush()
    if on_progress is not None:
        on_progress(stream.tell())
    return report
