"""The durable spool: nothing acknowledged to a charger or a back office is ever lost.

Accepted events are appended here, already validated, pseudonymized and formatted as line
protocol, and the append is fsynced before the caller acknowledges anything. A drainer sends the
spool to InfluxDB in batches and only then moves its cursor forward. When InfluxDB is down the
spool grows, and it drains when InfluxDB comes back; after a crash the next start replays from
the cursor. A batch sent twice (sent, then a crash before the cursor moved) is harmless: the
replayed lines are byte-identical, and InfluxDB overwrites a point with the same measurement,
tags and time.

On disk (``data_dir/spool``): segment files ``000000000001.seg`` ... of records, each
``B <payload bytes> <lines> <crc32 hex>\\n`` followed by the payload (the lines, each ending in a
newline), and a ``cursor`` file naming the segment and offset of the first record not yet in
InfluxDB. A record torn by a crash mid-append (it was never acknowledged) fails its length or
checksum and is cut off when the spool is opened. Batches InfluxDB refuses as malformed (HTTP 400)
are not retried forever: they go to ``rejected/`` beside the segments, counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from chargewatch.errors import BackpressureError, ChargewatchError, InfluxRequestError

logger = logging.getLogger(__name__)

_SEGMENT_SUFFIX = ".seg"
_NO_LOCK = contextlib.nullcontext()
_HEADER_MAX = 64


class SpoolFullError(BackpressureError):
    """The spool holds ``max_bytes`` already: refuse (503 / CallError) rather than drop."""


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    """What waits in the spool for InfluxDB."""

    lines: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Record:
    segment: int
    offset: int
    end: int
    lines: list[str]


class Spool:
    """An append-only, fsynced, size-limited queue of line-protocol batches on disk.

    Thread-safe: appends may come from any thread while one drainer reads.
    """

    def __init__(
        self, directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 8 << 20
    ) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / "rejected").mkdir(exist_ok=True)
        self._cursor_path = self._dir / "cursor"
        self._cursor = self._read_cursor()
        segments = self._segments()
        # Segments wholly before the cursor were drained before a crash: remove them now.
        for number in segments:
            if number < self._cursor[0]:
                self._segment_path(number).unlink()
        segments = [n for n in segments if n >= self._cursor[0]] or [max(self._cursor[0], 1)]
        self._active = segments[-1]
        self._pending_lines, self._pending_bytes = self._recover(segments)
        self._file = self._segment_path(self._active).open("ab")
        self.rejected_lines = 0
        self.appended = threading.Event()  # set by each append; the drainer waits on it
        self._sync_lock = threading.Lock()
        self._written_seq = 0  # appends written to the active file so far
        self._synced_seq = 0  # appends known to be on disk

    # -- writing --------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Store ``lines`` durably (fsync) before returning. Raises ``SpoolFullError``."""
        if not lines:
            return
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        header = f"B {len(payload)} {len(lines)} {zlib.crc32(payload):08x}\n".encode("ascii")
        # Lock order, everywhere both are held: _sync_lock, then _lock. Rolling to a new
        # segment closes the file, so it happens only with _sync_lock held by this thread.
        roll = self._needs_roll()
        with self._sync_lock if roll else _NO_LOCK, self._lock:
            if self._pending_bytes + len(payload) > self._max_bytes:
                raise SpoolFullError(
                    f"the spool holds {self._pending_bytes} bytes waiting for InfluxDB "
                    f"(limit {self._max_bytes}); try again later"
                )
            if roll and self._file.tell() >= self._segment_bytes:
                self._roll()
            self._file.write(header + payload)
            self._file.flush()
            self._written_seq += 1
            seq = self._written_seq
            self._pending_lines += len(lines)
            self._pending_bytes += len(payload)
        self._sync_through(seq)
        self.appended.set()

    def _needs_roll(self) -> bool:
        with self._lock:
            return self._file.tell() >= self._segment_bytes

    def _sync_through(self, seq: int) -> None:
        """Group commit: one fsync covers every append written before it, so concurrent
        appenders (many stations at once) share the cost instead of queueing one fsync each."""
        with self._sync_lock:
            if self._synced_seq >= seq:
                return  # another appender's fsync already covered this record
            with self._lock:
                target, file = self._written_seq, self._file
            os.fsync(file.fileno())  # the file cannot be rolled away: rolling needs _sync_lock
            self._synced_seq = target

    def depth(self) -> SpoolDepth:
        with self._lock:
            return SpoolDepth(self._pending_lines, self._pending_bytes)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    # -- draining -------------------------------------------------------------------------------

    def drain_once(self, write: Callable[[list[str]], None], *, max_lines: int = 5000) -> int:
        """Send the oldest records (up to about ``max_lines`` lines) with ``write``; move the
        cursor only after it returns. Returns the number of lines sent (0: nothing waits).

        Errors of ``write`` propagate (the caller retries later), except ``InfluxRequestError``
        (InfluxDB refused the batch as malformed; it kept any valid points): that batch is moved
        to ``rejected/`` and the cursor moves on, so one bad batch cannot block the spool.
        """
        records = self._read_records(max_lines)
        if not records:
            return 0
        lines = [line for record in records for line in record.lines]
        try:
            write(lines)
        except InfluxRequestError as exc:
            self._reject(records, exc)
        last = records[-1]
        self._advance(last.segment, last.end, lines)
        return len(lines)

    def _read_records(self, max_lines: int) -> list[_Record]:
        with self._lock:
            self._file.flush()
            segment, offset = self._cursor
            active = self._active
        records: list[_Record] = []
        count = 0
        while count < max_lines:
            path = self._segment_path(segment)
            if not path.exists():
                if segment >= active:
                    break
                segment, offset = segment + 1, 0  # a segment removed by hand: go on
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                while count < max_lines:
                    record = _read_record(handle, segment)
                    if record is None:
                        break
                    records.append(record)
                    count += len(record.lines)
                    offset = record.end
            if count >= max_lines or segment >= active:
                break
            segment, offset = segment + 1, 0  # the segment is done: go on in the next one
        return records

    def _advance(self, segment: int, offset: int, lines: list[str]) -> None:
        payload_bytes = sum(len(line.encode("utf-8")) + 1 for line in lines)
        with self._lock:
            drained = range(self._cursor[0], segment)  # wholly sent now: remove
            self._cursor = (segment, offset)
            tmp = self._cursor_path.with_suffix(".tmp")
            tmp.write_text(f"{segment} {offset}\n")
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(self._cursor_path)
            self._pending_lines -= len(lines)
            self._pending_bytes -= payload_bytes
        for number in drained:
            self._segment_path(number).unlink(missing_ok=True)

    def _reject(self, records: list[_Record], exc: InfluxRequestError) -> None:
        first = records[0]
        path = self._dir / "rejected" / f"{first.segment:012d}-{first.offset}.lp"
        lines = [line for record in records for line in record.lines]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.rejected_lines += len(lines)
        logger.error(
            "InfluxDB refused a batch of %d lines as malformed (%s); kept in %s",
            len(lines),
            exc,
            path,
        )

    # -- files ----------------------------------------------------------------------------------

    def _segment_path(self, number: int) -> Path:
        return self._dir / f"{number:012d}{_SEGMENT_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(
            int(path.stem) for path in self._dir.glob(f"*{_SEGMENT_SUFFIX}") if path.stem.isdigit()
        )

    def _read_cursor(self) -> tuple[int, int]:
        try:
            segment, offset = self._cursor_path.read_text().split()
            return int(segment), int(offset)
        except FileNotFoundError:
            return (1, 0)
        except ValueError as exc:
            raise ChargewatchError(f"the spool cursor {self._cursor_path} is corrupt") from exc

    def _roll(self) -> None:
        # Caller holds _sync_lock and _lock: make the old segment durable before leaving it.
        os.fsync(self._file.fileno())
        self._synced_seq = self._written_seq
        self._file.close()
        self._active += 1
        self._file = self._segment_path(self._active).open("ab")
        _fsync_dir(self._dir)

    def _recover(self, segments: list[int]) -> tuple[int, int]:
        """Count what waits after the cursor; cut off a torn record at the end of a segment."""
        lines = payload = 0
        for number in segments:
            path = self._segment_path(number)
            if not path.exists():
                continue
            offset = self._cursor[1] if number == self._cursor[0] else 0
            with path.open("rb") as handle:
                handle.seek(offset)
                while (record := _read_record(handle, number)) is not None:
                    lines += len(record.lines)
                    payload += sum(len(line.encode("utf-8")) + 1 for line in record.lines)
                    offset = record.end
                torn = handle.seek(0, os.SEEK_END) > offset
            if torn:
                logger.warning("cutting a torn, unacknowledged record off %s at %d", path, offset)
                with path.open("r+b") as handle:
                    handle.truncate(offset)
                    os.fsync(handle.fileno())
        return lines, payload


def _read_record(stream: BinaryIO, segment: int) -> _Record | None:
    """The next whole, intact record of an open segment, or None (end, or a torn record)."""
    start = stream.tell()
    header = stream.readline(_HEADER_MAX)
    parts = header.split()
    if len(parts) != 4 or parts[0] != b"B" or not header.endswith(b"\n"):
        stream.seek(start)
        return None
    size, count, crc = int(parts[1]), int(parts[2]), parts[3].decode("ascii")
    payload = stream.read(size)
    if len(payload) != size or f"{zlib.crc32(payload):08x}" != crc:
        stream.seek(start)
        return None
    lines = payload.decode("utf-8").split("\n")[:-1]
    if len(lines) != count:
        stream.seek(start)
        return None
    return _Record(segment, start, stream.tell(), lines)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolDrainer:
    """One background thread that keeps sending the spool to InfluxDB.

    ``write`` sends one batch (``InfluxClient.write``). While it fails (InfluxDB down, 5xx after
    the client's own retries), the drainer waits with capped exponential backoff and tries
    again; nothing is dropped. ``errors`` and ``last_error`` say what is going on.
    """

    def __init__(
        self,
        spool: Spool,
        write: Callable[[list[str]], None],
        *,
        batch_lines: int = 5000,
        idle_wait_s: float = 0.5,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self._spool = spool
        self._write = write
        self._batch_lines = batch_lines
        self._idle_wait_s = idle_wait_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-drainer", daemon=True)
        self.errors = 0
        self.last_error: str | None = None
        self.lines_sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop after the batch in flight; what is left stays in the spool for the next start."""
        self._stop.set()
        self._spool.appended.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                sent = self._spool.drain_once(self._write, max_lines=self._batch_lines)
            except Exception as exc:  # a background thread must never die quietly
                failures += 1
                self.errors += 1
                self.last_error = str(exc)
                delay = min(self._backoff_cap_s, self._backoff_base_s * 2 ** (failures - 1))
                logger.warning(
                    "spool drain failed (%s); retrying in %.1f s",
                    exc,
                    delay,
                    exc_info=not isinstance(exc, ChargewatchError),
                )
                self._stop.wait(delay)
                continue
            failures = 0
            self.last_error = None
            self.lines_sent += sent
            if sent == 0:
                self._spool.appended.wait(self._idle_wait_s)
                self._spool.appended.clear()
