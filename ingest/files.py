"""Loading event files (JSON Lines, optionally gzip-compressed) into InfluxDB.

The file is streamed in chunks of lines: memory stays bounded whatever its size. A bad line is
reported with its number and reason and the rest carries on. Points are idempotent in InfluxDB
(same measurement, tags and time overwrite), so loading a file again after a failure is safe.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast

from chargewatch.events import EventDecoder, iter_jsonl_blocks

# The encoder (line protocol, and the columnar path's polars) is imported where it is used:
# `detect --input` opens event files with this module and never encodes a line.
if TYPE_CHECKING:
    from ingest.encode import Rejection

CHUNK_LINES = 10_000


class LineSink(Protocol):
    """Where formatted lines go (``chargewatch.influx.BatchWriter`` in production)."""

    def add_many(self, lines: Iterable[str]) -> None: ...

    def flush(self) -> None: ...


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


UTF8_BOM = b"\xef\xbb\xbf"


def event_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an event file (a regular file); None when it can."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "no such file"
        return os.strerror(exc.errno) if exc.errno else "cannot be looked at"
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, a socket or a device)"
    return None


def _open_raw(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def open_events(path: Path) -> IO[bytes]:
    """Open an event file for reading as bytes; ``.gz`` files are decompressed on the fly.

    A UTF-8 byte order mark at the start (what Windows tools and spreadsheet exports write) is
    skipped: it is no part of the first line, which would otherwise be rejected as not JSON."""
    stream = _open_raw(path)
    try:
        if stream.read(len(UTF8_BOM)) != UTF8_BOM:
            stream.seek(0)
    except BaseException:
        stream.close()
        raise
    return stream


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

    ``on_progress`` receives the number of bytes consumed so far after each chunk. Pass
    ``report`` to have the counts kept even when writing fails part-way (the sink raises).
    """
    from ingest.encode import ChunkEncoder

    report = report if report is not None else IngestReport()
    encoder = ChunkEncoder(decoder)
    for numbers, lines in iter_jsonl_blocks(stream, CHUNK_LINES):
        chunk = encoder.encode_raw(numbers, lines)
        sink.add_many(chunk.lines)
        report.lines = numbers[-1]
        report.written_by_type.update(chunk.accepted_by_type)
        report.rejected += len(chunk.rejections)
        for rejection in chunk.rejections:
            on_reject(rejection)
        if on_progress is not None:
            on_progress(stream.tell())
    sink.flush()
    return report
