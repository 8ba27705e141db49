"""The durable spool: nothing acknowledged to a charger or a back office is ever lost.

Accepted events are appended here, already validated, pseudonymized and formatted as line
protocol, and the append is fsynced before the caller acknowledges anything. A drainer sends the
spool to InfluxDB in batches and only then moves its cursor forward. When InfluxDB is down the
spool grows, and it drains when InfluxDB comes back; after a crash the next start replays from
the cursor. A batch sent twice (sent, then a crash before the cursor moved) is harmless: the
replayed lines are byte-identical, and InfluxDB overwrites a point with the same measurement,
tags and time.

On disk (``data_dir/spool``): segment files ``000000000001.seg`` ... of records (their format:
``ingest.spool_records``), a ``cursor`` file naming the segment and offset of the first record not
yet in InfluxDB, and a ``lock`` file that one opener at a time holds.

Damage never costs more than the damaged record. A record that fails its checksums (a flipped
byte, a bad sector) is skipped: reading resumes at the next intact record, and the damaged bytes
are kept in the quarantine directory (``<segment>-<offset>.bad``, fsynced before the cursor
passes them), logged and counted; the records around it are sent in order. Only a torn tail is
cut off: the start of a record that stops short of its declared end at the end of the last
segment, with nothing intact after it, which is what a crash in the middle of an append leaves
(that append was never acknowledged). Batches InfluxDB refuses as malformed (HTTP 400) are not
retried forever: they go to ``rejected/`` beside the segments, counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from chargewatch.errors import BackpressureError, ChargewatchError, InfluxRequestError
from chargewatch.lockfile import ExclusiveLock

from .spool_records import Damage, Record, Tail, encode, encode_payload, scan

logger = logging.getLogger(__name__)

_SEGMENT_SUFFIX = ".seg"
_QUARANTINE_SUFFIX = ".bad"
_NO_LOCK = contextlib.nullcontext()
# When the drainer has caught up with a trickle (its last batch under a tenth of a full one),
# it waits this long after the next append before sending, so that what trickles in (an OCPP
# station's message is one record of a few lines, hundreds of them a second) goes to InfluxDB
# as a few batches a second rather than one request and one cursor fsync per message
# (bench/ocpp_load.py --serve). Larger batches (the HTTP API's) go at once: InfluxDB's time
# is per line, and it must not idle while they wait. Detection reads windows of minutes.
DEFAULT_LINGER_S = 0.2
_TRICKLE_SHARE = 10
# InfluxDB writes in flight at once: on this two-core machine one writer gets 79 k points/s into
# InfluxDB 1.6 and two get 135 k (DESIGN.md, "Measured on this machine"), because a single
# writer leaves InfluxDB idle while the drainer reads the next batch and moves its cursor.
DEFAULT_WRITES_IN_FLIGHT = 2


class SpoolFullError(BackpressureError):
    """The spool holds ``max_bytes`` already: refuse (503 / CallError) rather than drop."""


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    """What waits in the spool for InfluxDB."""

    lines: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Damaged stretches of the spool set aside: ``records`` and ``bytes`` since the spool was
    opened (one stretch is normally one record), and ``files`` in the quarantine directory now,
    earlier runs' included, until an operator moves them away."""

    records: int
    bytes: int
    files: int


@dataclass(slots=True)
class _Batch:
    """What one drain reads: intact records from ``start``, and where the cursor goes once they
    are sent (``segment``, ``offset``)."""

    start: tuple[int, int]
    segment: int
    offset: int
    records: list[Record] = field(default_factory=list)
    count: int = 0  # lines in ``records``
    payload_bytes: int = 0
    damage: list[tuple[int, int]] = field(default_factory=list)  # keys of ``Spool._damage``

    @property
    def end(self) -> tuple[int, int]:
        return (self.segment, self.offset)

    def lines(self) -> list[str]:
        return [line for record in self.records for line in record.lines]

    def body(self) -> bytes:
        """The records' payloads as one body of line protocol (no line split or joined)."""
        return b"".join(record.payload for record in self.records)


class Spool:
    """An append-only, fsynced, size-limited queue of line-protocol batches on disk.

    Thread-safe: appends may come from any thread while one drainer reads. One opener at a time:
    a second ``Spool`` on the same directory, in this process or another, raises ``InUseError``
    until the first is closed.
    """

    def __init__(
        self,
        directory: Path,
        *,
        quarantine_dir: Path | None = None,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
    ) -> None:
        self._dir = directory
        self._quarantine_dir = quarantine_dir or directory / "quarantine"
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        # Held while the cursor file is written and fsynced (1.6-14 ms): never _lock, which
        # appends need. Lock order, where both are held: _cursor_lock, then _lock.
        self._cursor_lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._owner = ExclusiveLock(
            directory / "lock", what=f"the spool {directory}", holder="another opener"
        )
        try:
            self._open()
        except BaseException:
            self._owner.release()
            raise

    def _open(self) -> None:
        (self._dir / "rejected").mkdir(exist_ok=True)
        self.rejected_lines = 0
        self.quarantined_records = 0
        self.quarantined_bytes = 0
        # Damaged stretches met and kept, by (segment, offset): the lines and payload bytes they
        # still count for in the depth, taken off when the cursor passes them.
        self._damage: dict[tuple[int, int], tuple[int, int]] = {}
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
        self.appended = threading.Event()  # set by each append; the drainer waits on it
        self._sync_lock = threading.Lock()
        self._written_seq = 0  # appends written to the active file so far
        self._synced_seq = 0  # appends known to be on disk

    # -- writing --------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Store ``lines`` durably (fsync) before returning. Raises ``SpoolFullError``."""
        if not lines:
            return
        record, payload_bytes = encode(lines)
        self._append(record, payload_bytes, len(lines))

    def append_payload(self, payload: bytes, count: int) -> None:
        """``append`` for lines already encoded: ``count`` lines of line protocol in UTF-8, each
        ending in a newline (a batch worker's output, stored without splitting it)."""
        if not count:
            return
        record, payload_bytes = encode_payload(payload, count)
        self._append(record, payload_bytes, count)

    def _append(self, record: bytes, payload_bytes: int, count: int) -> None:
        # Lock order, everywhere both are held: _sync_lock, then _lock. Rolling to a new
        # segment closes the file, so it happens only with _sync_lock held by this thread.
        roll = self._needs_roll()
        with self._sync_lock if roll else _NO_LOCK, self._lock:
            if self._pending_bytes + payload_bytes > self._max_bytes:
                raise SpoolFullError(
                    f"the spool holds {self._pending_bytes} bytes waiting for InfluxDB "
                    f"(limit {self._max_bytes}); try again later"
                )
            if roll and self._file.tell() >= self._segment_bytes:
                self._roll()
            self._file.write(record)
            self._file.flush()
            self._written_seq += 1
            seq = self._written_seq
            self._pending_lines += count
            self._pending_bytes += payload_bytes
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

    def quarantine(self) -> Quarantine:
        """What damage was set aside (``/healthz``, ``/metrics``)."""
        try:
            with os.scandir(self._quarantine_dir) as entries:
                files = sum(1 for entry in entries if entry.name.endswith(_QUARANTINE_SUFFIX))
        except FileNotFoundError:
            files = 0
        return Quarantine(self.quarantined_records, self.quarantined_bytes, files)

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self._owner.release()

    # -- draining -------------------------------------------------------------------------------

    def drain_once(self, write: Callable[[list[str]], None], *, max_lines: int = 5000) -> int:
        """Send the oldest records (up to about ``max_lines`` lines) with ``write``; move the
        cursor only after it returns. Returns the number of lines sent (0: nothing waits).

        Damaged records on the way are quarantined and skipped, never sent and never a reason
        to stop. Errors of ``write`` propagate (the caller retries later), except
        ``InfluxRequestError`` (InfluxDB refused the batch as malformed; it kept any valid
        points): that batch is moved to ``rejected/`` and the cursor moves on, so one bad batch
        cannot block the spool.
        """
        batch = self._read_batch(max_lines)
        if batch is None:
            return 0
        if batch.count:
            lines = batch.lines()
            try:
                write(lines)
            except InfluxRequestError as exc:
                self._reject(batch, exc)
        self._advance(batch)
        return batch.count

    def _read_batch(self, max_lines: int, after: tuple[int, int] | None = None) -> _Batch | None:
        """The intact records after the cursor (or after ``after``, where an earlier batch not
        yet sent ends), up to about ``max_lines`` lines; quarantines the damage met on the way.
        None when nothing follows."""
        with self._lock:
            self._file.flush()
            segment, offset = self._cursor if after is None else after
            active, active_end = self._active, self._file.tell()
        start = (segment, offset)
        batch: _Batch | None = None
        while batch is None or batch.count < max_lines:
            path = self._segment_path(segment)
            if not path.exists():
                if segment >= active:
                    break
                segment, offset = segment + 1, 0  # a segment removed by hand: go on
                continue
            # Appends write whole records under _lock, so the active segment's end as read
            # there is a record boundary: anything bad before it is damage, not an append
            # in flight.
            with _mapped(path, active_end if segment == active else None) as buf:
                items = scan(buf, offset, len(buf))
                with contextlib.closing(items):
                    for item in items:
                        if batch is None:
                            batch = _Batch(start, segment, offset)
                        if isinstance(item, Record):
                            batch.records.append(item)
                            batch.count += item.count
                            batch.payload_bytes += item.payload_bytes
                        else:
                            batch.damage.append(self._keep_damage(path, buf, item, counted=True))
                        batch.segment, batch.offset = segment, item.end
                        if batch.count >= max_lines:
                            break
            if segment >= active or (batch is not None and batch.count >= max_lines):
                break
            segment, offset = segment + 1, 0  # the segment is done: go on in the next one
        return batch

    def _advance(self, batch: _Batch) -> None:
        """Move the cursor past ``batch`` (sent), which begins where the cursor is."""
        lines, payload_bytes = batch.count, batch.payload_bytes
        with self._cursor_lock:
            # Durable before the memory says so; appends meanwhile go on (they need _lock only).
            tmp = self._cursor_path.with_suffix(".tmp")
            tmp.write_text(f"{batch.segment} {batch.offset}\n")
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(self._cursor_path)
            with self._lock:
                for key in batch.damage:
                    damaged_lines, damaged_bytes = self._damage.pop(key, (0, 0))
                    lines += damaged_lines
                    payload_bytes += damaged_bytes
                drained = range(self._cursor[0], batch.segment)  # wholly sent now: remove
                self._cursor = (batch.segment, batch.offset)
                if self._cursor == (self._active, self._file.tell()):
                    # Nothing waits: whatever a damaged header hid from the count is settled.
                    self._pending_lines = self._pending_bytes = 0
                else:
                    self._pending_lines = max(0, self._pending_lines - lines)
                    self._pending_bytes = max(0, self._pending_bytes - payload_bytes)
        for number in drained:
            self._segment_path(number).unlink(missing_ok=True)

    def _reject(self, batch: _Batch, exc: InfluxRequestError) -> None:
        segment, offset = batch.start
        path = self._dir / "rejected" / f"{segment:012d}-{offset}.lp"
        path.write_bytes(batch.body())
        with self._lock:  # batches in flight at once may be refused at once
            self.rejected_lines += batch.count
        logger.error(
            "InfluxDB refused a batch of %d lines as malformed (%s); kept in %s",
            batch.count,
            exc,
            path,
        )

    # -- damage ---------------------------------------------------------------------------------

    def _keep_damage(
        self, segment_path: Path, buf: bytes | mmap.mmap, item: Damage | Tail, *, counted: bool
    ) -> tuple[int, int]:
        """Copy a damaged stretch into the quarantine directory (once), durably, before the
        cursor can pass it. ``counted``: whether its lines are in the depth (they are when it
        was intact when counted, at start-up or append). Returns its key in ``_damage``."""
        segment = int(segment_path.stem)
        key = (segment, item.start)
        if key in self._damage:
            return key
        name = f"{segment:012d}-{item.start:012d}{_QUARANTINE_SUFFIX}"
        kept = self._quarantine_dir / name
        self._quarantine_dir.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            handle.write(buf[item.start : item.end])
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(kept)
        _fsync_dir(self._quarantine_dir)
        claimed = (item.lines, item.payload_bytes) if isinstance(item, Damage) else (None, None)
        with self._lock:
            self._damage[key] = (claimed[0] or 0, claimed[1] or 0) if counted else (0, 0)
            self.quarantined_records += 1
            self.quarantined_bytes += item.end - item.start
        logger.error(
            "spool %s: %d bytes at offset %d fail their checksums (%s); skipped, the records "
            "around them kept, the bytes kept in %s",
            segment_path,
            item.end - item.start,
            item.start,
            "header damaged" if claimed[0] is None else f"{claimed[0]} lines by its header",
            kept,
        )
        return key

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
        """Count what waits after the cursor, quarantine damage, cut a torn tail off the last
        segment."""
        lines = payload = 0
        for number in segments:
            path = self._segment_path(number)
            if not path.exists():
                continue
            offset = self._cursor[1] if number == self._cursor[0] else 0
            cut: int | None = None
            with _mapped(path, None) as buf:
                items = scan(buf, offset, len(buf))
                with contextlib.closing(items):
                    for item in items:
                        if isinstance(item, Record):
                            lines += len(item.lines)
                            payload += item.payload_bytes
                            continue
                        if isinstance(item, Tail) and number == segments[-1]:
                            cut = item.start  # the end of everything: a torn append
                        else:
                            # Left in place, so no offset is ever reused: a later drain
                            # resynchronizes past it again and knows it by its offset.
                            self._keep_damage(path, buf, item, counted=False)
            if cut is not None:
                logger.warning(
                    "cutting a torn, unacknowledged append (%d bytes) off the end of %s",
                    path.stat().st_size - cut,
                    path,
                )
                with path.open("r+b") as handle:
                    handle.truncate(cut)
                    os.fsync(handle.fileno())
        return lines, payload


@contextlib.contextmanager
def _mapped(path: Path, limit: int | None) -> Iterator[bytes | mmap.mmap]:
    """The file's first ``limit`` bytes (all of it when None), mapped read-only."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        size = size if limit is None else min(size, limit)
        if size == 0:
            yield b""
            return
        with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as buf:
            yield buf


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolDrainer:
    """One background thread that keeps sending the spool to InfluxDB.

    ``write`` sends one batch of lines (``InfluxClient.write``); with ``write_body``, each batch
    goes instead as one body of line protocol, the records' payloads as they lie in the spool,
    never split into lines and joined again. Up to ``writes_in_flight`` batches are sent at
    once, read one after the other; the cursor moves past each batch once it and every batch
    before it are in. While writes fail (InfluxDB down, 5xx after the client's own retries),
    the drainer waits with capped exponential backoff and sends again from the cursor (batches
    after it that were in already go twice: harmless, each is the same points); nothing is
    dropped. ``errors`` and ``last_error`` say what is going on.
    """

    def __init__(
        self,
        spool: Spool,
        write: Callable[[list[str]], None],
        *,
        write_body: Callable[[bytes], None] | None = None,
        batch_lines: int = 5000,
        writes_in_flight: int = DEFAULT_WRITES_IN_FLIGHT,
        idle_wait_s: float = 0.5,
        linger_s: float = DEFAULT_LINGER_S,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        if writes_in_flight < 1:
            raise ValueError(f"writes_in_flight must be >= 1, not {writes_in_flight}")
        self._spool = spool
        self._write = write
        self._write_body = write_body
        self._batch_lines = batch_lines
        self._in_flight = writes_in_flight
        self._idle_wait_s = idle_wait_s
        self._linger_s = linger_s
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
        """Stop after the batches in flight; what is left stays in the spool for the next
        start."""
        self._stop.set()
        self._spool.appended.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def _send(self, batch: _Batch) -> None:
        """One batch to InfluxDB; a batch it refuses as malformed goes to ``rejected/``."""
        try:
            if self._write_body is not None:
                self._write_body(batch.body())
            else:
                self._write(batch.lines())
        except InfluxRequestError as exc:
            self._spool._reject(batch, exc)

    def _run(self) -> None:
        with ThreadPoolExecutor(self._in_flight, thread_name_prefix="spool-write") as senders:
            self._drain(senders)

    def _drain(self, senders: ThreadPoolExecutor) -> None:
        failures = 0
        flight: deque[tuple[_Batch, Future[None]]] = deque()  # in the spool's order
        after: tuple[int, int] | None = None  # where the last batch read ends; None: the cursor
        while not self._stop.is_set():
            # Behind a short batch in flight, what trickles in meanwhile gathers into one write
            # after it, rather than many small ones beside it.
            caught_up = bool(flight) and flight[-1][0].count < self._batch_lines
            sent = 0
            try:
                # Read ahead while writes are in flight, so InfluxDB never waits for a read or
                # for the cursor's fsync.
                while len(flight) < self._in_flight and not caught_up:
                    self._spool.appended.clear()  # an append from now on ends the idle wait
                    batch = self._spool._read_batch(self._batch_lines, after)
                    if batch is None:
                        caught_up = True
                        break
                    after = batch.end
                    flight.append((batch, senders.submit(self._send, batch)))
                    if batch.count < self._batch_lines:  # the rest is still being appended
                        caught_up = True
                        break
                if flight:
                    batch, future = flight[0]
                    future.result()
                    flight.popleft()
                    self._spool._advance(batch)
                    sent = batch.count
            except Exception as exc:  # a background thread must never die quietly
                wait([future for _, future in flight])
                flight.clear()
                after = None  # send again from the cursor
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
            if (
                caught_up
                and not flight  # nothing to send: wait for more
                and self._spool.appended.wait(self._idle_wait_s)
                and sent < self._batch_lines // _TRICKLE_SHARE
                and self._linger_s > 0
            ):
                self._stop.wait(self._linger_s)  # a trickle: let it gather
