"""HTTP event batches, decoded and encoded in worker processes.

A batch body is joined, gunzipped, split into its events (``api.bodies``) and validated,
pseudonymized and formatted as line protocol (``ingest.encode``) in a worker process, never in
``serve``'s own: that work is mostly Python, one object per event on the per-event path (4-5 s
for 100,000 invalid events), and in a thread of ``serve`` it would hold the interpreter lock
against the event loop that every OCPP station waits on. The workers are also niced, so that
when a station and a batch both want a core, the station comes first. The caller spools what
comes back: the line protocol as one string, counts, and the first rejections.

Bodies that wait for a worker at the same time are encoded together (``BatchGroups``): one
worker call, one columnar pass and one spool record (one fsync) for the group. The columnar
path's cost is largely fixed per call (polars' cost per query and per expression, whatever
the rows): a body of 1,000 events costs about 1.7 times its share in a group of four
(``bench/events_api.py --encode-only``). Each body still gets its own answer: its counts and
rejections.
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from api.bodies import BodyError, EventSpans, gunzip, split_events
from chargewatch.errors import BackpressureError, TooLargeError
from chargewatch.events import EventDecoder, EventType
from ingest.encode import ChunkEncoder
from ingest.pseudonym import Pseudonymizer

__all__ = ["BatchEncoders", "BatchGroups", "EncodedBatch"]

CHUNK_EVENTS = 10_000  # events encoded at a time: the columnar path's batch, bounded memory
# A group at least this large runs beside others; below it, bodies wait for it to end and go
# together in the next group (``BatchGroups``). A worker call costs a fixed 10-12 ms of CPU
# (polars' queries) plus about 13 us per event; 1 MiB is some 3,700 events of the
# canonical format (~280 bytes each), about 60 ms of encoding: waiting behind a group up to
# that size costs a small body about one more encode of its own, while a larger group would
# hold it for up to seconds (16 MiB bodies, gzip bodies of unknown size).
LARGE_GROUP_BYTES = 1 << 20
_NICENESS = 5
_STOP_WAIT_S = 10.0  # for a worker to end once its pipe is closed (it ends at once when idle)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """What became of a batch: its line protocol (one line per accepted event, joined by
    newlines: one object is cheap to hand back), counts, and the first rejections."""

    lines: str
    accepted_by_type: dict[str, int]
    rejected_by_field: dict[str, int]  # "event" when the whole event is bad
    listed: list[tuple[int, str | None, str]]  # (index, field, reason)


class BatchEncoders:
    """``workers`` processes encoding batches, each started when a batch finds no idle one.

    Each worker has a pipe of its own: the thread that hands it a body writes the call into it
    and waits for the answer on it, one wake-up when the answer comes. (A ``ProcessPoolExecutor``
    passes each call and answer through two threads of its own, a feeder and a manager, each a
    wake-up and a hand-over of the interpreter lock in ``serve``: 3 ms of latency per batch at
    the median, 9 ms on average, with one client posting batches of 1,000.)
    """

    def __init__(
        self,
        pseudonymize: Pseudonymizer,
        *,
        workers: int,
        max_body_bytes: int,
        max_events: int,
    ) -> None:
        self._pseudonymize = pseudonymize
        self._workers = workers
        self._max_body_bytes = max_body_bytes
        self._max_events = max_events
        # spawn: serve has threads, which a forked child must not inherit half-way
        self._context = multiprocessing.get_context("spawn")
        self._free = threading.Condition()
        self._idle: list[_Worker] = []  # guarded by _free, as the two below
        self._live: set[_Worker] = set()
        self._starting = 0
        self._closed = False

    def encode(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> EncodedBatch:
        """Encode a body (the parts it arrived in); blocks until a worker has done it. Raises
        ``api.bodies.BodyError`` for a body that cannot be taken whole, ``BackpressureError``
        when a worker died (killed for memory, say): the batch may be sent again."""
        batch: EncodedBatch = self._call(
            _encode, parts, gzipped, self._max_body_bytes, self._max_events, max_listed
        )
        return batch

    def encode_group(
        self, bodies: Sequence[tuple[list[bytes], bool]], *, max_listed: int
    ) -> tuple[str, list[EncodedBatch | BodyError]]:
        """Encode several bodies (parts, gzipped) in one worker call: the line protocol of
        them all, and each body's outcome (its ``lines`` empty) or the ``BodyError`` that
        refuses it alone. Raises ``BackpressureError`` as ``encode`` does."""
        group: tuple[str, list[EncodedBatch | BodyError]] = self._call(
            _encode_group, list(bodies), self._max_body_bytes, self._max_events, max_listed
        )
        return group

    def close(self) -> None:
        """Stop the workers once their calls are done (a worker ends when its pipe closes)."""
        with self._free:
            self._closed = True
            while len(self._idle) < len(self._live) or self._starting:
                self._free.wait()
            workers, self._idle, self._live = list(self._live), [], set()
        for worker in workers:
            worker.stop()

    def _call(self, function: Callable[..., Any], *args: object) -> Any:
        worker = self._take()
        try:
            answer = worker.call(function, args)
        except BaseException as exc:  # the pipe broke, or the call could not be sent whole
            worker.stop()
            with self._free:
                self._live.discard(worker)  # the next batch that needs one starts a new one
                self._free.notify()
            if isinstance(exc, _WorkerDiedError):
                raise BackpressureError("the batch worker stopped; send the batch again") from None
            raise
        with self._free:
            self._idle.append(worker)
            self._free.notify()
        return answer.result()

    def _take(self) -> _Worker:
        """An idle worker, or a new one while there are fewer than ``workers``; else wait."""
        with self._free:
            while (
                not self._closed
                and not self._idle
                and len(self._live) + self._starting >= self._workers
            ):
                self._free.wait()
            if self._closed:
                raise BackpressureError("the service is stopping; send the batch again")
            if self._idle:
                return self._idle.pop()
            self._starting += 1
        worker: _Worker | None = None
        try:
            worker = _Worker(self._context, self._pseudonymize)  # outside the lock: ~50 ms
        finally:
            with self._free:
                self._starting -= 1
                if worker is not None:
                    self._live.add(worker)
                self._free.notify()
        return worker


class _WorkerDiedError(Exception):
    """The worker's pipe broke: the process is gone (killed for memory, say)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """A call's return value, or the exception it raised (raised again in the caller)."""

    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Worker:
    """One worker process and the parent's end of its pipe; used by one thread at a time."""

    def __init__(self, context: Any, pseudonymize: Pseudonymizer) -> None:
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_work, args=(child, pseudonymize), name="event-batch-worker", daemon=True
        )
        self._process.start()
        child.close()

    def call(self, function: Callable[..., Any], args: tuple[object, ...]) -> _Answer:
        try:
            self._pipe.send((function, args))
            answer: _Answer = self._pipe.recv()
        except (EOFError, OSError):
            raise _WorkerDiedError from None
        return answer

    def stop(self) -> None:
        """Close the pipe (an idle worker then ends) and reap the process."""
        self._pipe.close()
        self._process.join(_STOP_WAIT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


@dataclass(eq=False, slots=True)
class _Waiting:
    """A body waiting for its group, and, once the group is done, its outcome."""

    parts: list[bytes]
    gzipped: bool
    size: int
    outcome: EncodedBatch | None = None
    error: Exception | None = None
    taken: bool = False  # into a group, by the body that leads it
    done: bool = False


@dataclass(slots=True)
class _Queue:
    waiting: list[_Waiting] = field(default_factory=list)
    running: int = 0  # groups in the workers now
    small: int = 0  # of them, those under LARGE_GROUP_BYTES


class BatchGroups:
    """Encodes and stores bodies, those that wait at the same time as one group.

    At most ``workers`` groups are in the workers at once (a group is out once encoded: the
    next one is encoded while it is stored, its fsync), and while a small group (under
    ``LARGE_GROUP_BYTES``) is in one, no other group starts: a body that comes meanwhile
    waits, and the first waiting body to find the workers free takes every body waiting
    behind it too, up to ``max_group_bytes`` of bodies (a group holds no more memory than one
    large body; a gzipped body is a group of its own). A small group's encode is mostly the
    columnar path's fixed cost per call, so a body that waits for it and joins the next group
    saves that cost (CPU that the two cores, shared with serve and InfluxDB, are short of when
    bodies queue) for a wait of about one encode. Beside a large group, which may take a
    worker for seconds, another group starts at once. The group's lines are stored with one
    ``store`` call (one spool record: all of them or none) before any of its bodies is
    answered. When ``store`` refuses a group of
    several bodies (the spool is full), each body is encoded and stored alone again, so that
    each gets the answer it would have had alone (503, or 413 when it could never fit).
    """

    def __init__(
        self,
        encoders: BatchEncoders,
        store: Callable[[EncodedBatch], None],
        *,
        workers: int,
        max_group_bytes: int,
    ) -> None:
        self._encoders = encoders
        self._store = store
        self._workers = workers
        self._max_group_bytes = max_group_bytes
        self._queue = _Queue()
        self._changed = threading.Condition()

    def accept(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> EncodedBatch:
        """Encode and store one body with whatever waits with it; its outcome (``lines``
        empty: they are stored). Raises what ``BatchEncoders.encode`` and ``store`` raise."""
        # A gzipped body goes alone: what it holds once decompressed is not known here.
        size = self._max_group_bytes if gzipped else sum(len(part) for part in parts)
        mine = _Waiting(parts, gzipped, size)
        queue = self._queue
        with self._changed:
            queue.waiting.append(mine)
            while not mine.done and (mine.taken or queue.small or queue.running >= self._workers):
                self._changed.wait()
            if not mine.done:  # a worker is free: lead a group of what waits, this first
                queue.waiting.remove(mine)
                group, size = [mine], mine.size
                while queue.waiting and size + queue.waiting[0].size <= self._max_group_bytes:
                    size += queue.waiting[0].size
                    group.append(queue.waiting.pop(0))
                for waiting in group:
                    waiting.taken = True
                small = size < LARGE_GROUP_BYTES
                queue.running += 1
                queue.small += small
        if not mine.done:
            out = False

            def encoded() -> None:  # out of the worker: the next group may start (once)
                nonlocal out
                if not out:
                    out = True
                    with self._changed:
                        queue.running -= 1
                        queue.small -= small
                        self._changed.notify_all()

            try:
                self._run(group, max_listed, encoded)
            finally:
                encoded()
                with self._changed:
                    for waiting in group:
                        waiting.done = True
                    self._changed.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.outcome is not None
        return mine.outcome

    def _run(self, group: list[_Waiting], max_listed: int, encoded: Callable[[], None]) -> None:
        """Encode the group, call ``encoded``, store the group; each body's outcome."""
        if len(group) == 1:
            self._alone(group[0], max_listed, encoded)
            return
        try:
            try:
                lines, outcomes = self._encoders.encode_group(
                    [(w.parts, w.gzipped) for w in group], max_listed=max_listed
                )
            finally:
                encoded()
            taken = [o for o in outcomes if isinstance(o, EncodedBatch)]
            self._store(EncodedBatch(lines, _sum(taken, "accepted_by_type"), {}, []))
        except (BackpressureError, TooLargeError):
            for waiting in group:  # each alone: its own verdict
                self._alone(waiting, max_listed, _nothing)
            return
        except Exception as exc:  # every body of the group gets it
            for waiting in group:
                waiting.error = exc
            return
        for waiting, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BodyError):
                waiting.error = outcome
            else:
                waiting.outcome = outcome

    def _alone(self, waiting: _Waiting, max_listed: int, encoded: Callable[[], None]) -> None:
        try:
            try:
                batch = self._encoders.encode(
                    waiting.parts, gzipped=waiting.gzipped, max_listed=max_listed
                )
            finally:
                encoded()
            self._store(batch)
        except Exception as exc:  # raised in the body's own thread
            waiting.error = exc
            return
        waiting.outcome = EncodedBatch(
            "", batch.accepted_by_type, batch.rejected_by_field, batch.listed
        )


def _nothing() -> None:
    pass


def _sum(batches: Sequence[EncodedBatch], name: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for batch in batches:
        total.update(getattr(batch, name))
    return dict(total)


# -- in the worker process -----------------------------------------------------------------------

_encoder: ChunkEncoder | None = None


def _start_worker(pseudonymize: Pseudonymizer) -> None:
    global _encoder  # one per worker process, made once
    os.nice(_NICENESS)
    _encoder = ChunkEncoder(EventDecoder(pseudonymize))


def _work(pipe: Connection, pseudonymize: Pseudonymizer) -> None:
    """A worker's life: calls from its pipe, each answered on it, until the pipe closes."""
    _start_worker(pseudonymize)
    while True:
        try:
            function, args = pipe.recv()
        except EOFError:  # serve closed the pipe, or is gone
            return
        try:
            answer = _Answer(function(*args))
        except Exception as exc:  # raised again in serve, in the caller's thread
            answer = _Answer(error=exc)
        pipe.send(answer)


def _split(parts: list[bytes], gzipped: bool, max_body_bytes: int, max_events: int) -> EventSpans:
    body = b"".join(parts)
    parts.clear()
    data = gunzip(body, max_bytes=max_body_bytes) if gzipped else body
    return split_events(data, max_events=max_events)


def _encode(
    parts: list[bytes], gzipped: bool, max_body_bytes: int, max_events: int, max_listed: int
) -> EncodedBatch:
    return _encode_spans(_split(parts, gzipped, max_body_bytes, max_events), max_listed)


def _encode_spans(events: EventSpans, max_listed: int) -> EncodedBatch:
    assert _encoder is not None, "the worker was not started"
    lines: list[str] = []
    accepted: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    listed: list[tuple[int, str | None, str]] = []
    for positions, raws in events.chunks(CHUNK_EVENTS):
        chunk = _encoder.encode_raw(positions, raws)
        lines += chunk.lines
        accepted.update(chunk.accepted_by_type)
        rejected.update(r.field or "event" for r in chunk.rejections)
        room = max_listed - len(listed)
        listed += [(r.position, r.field, r.reason) for r in chunk.rejections[:room]]
    return EncodedBatch("\n".join(lines), dict(accepted), dict(rejected), listed)


def _encode_group(
    bodies: list[tuple[list[bytes], bool]], max_body_bytes: int, max_events: int, max_listed: int
) -> tuple[str, list[EncodedBatch | BodyError]]:
    """The bodies' events encoded as one stream, each body's outcome read back from it by
    position: its rejections, and its accepted events by type. Each body's receive times are
    estimated from its own stamps (``ChunkEncoder.encode_lines``' streams: the bodies may come
    from senders hours apart)."""
    outcomes: list[EncodedBatch | BodyError] = []
    spans: list[tuple[int, EventSpans]] = []
    for k, (parts, gzipped) in enumerate(bodies):
        try:
            spans.append((k, _split(parts, gzipped, max_body_bytes, max_events)))
        except BodyError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(EncodedBatch("", {}, {}, []))
    return _encode_together(spans, outcomes, max_listed), outcomes


def _encode_together(
    spans: list[tuple[int, EventSpans]], outcomes: list[EncodedBatch | BodyError], max_listed: int
) -> str:
    assert _encoder is not None, "the worker was not started"
    starts: list[int] = []  # each body's first position in the stream
    raws: list[bytes] = []
    for _k, events in spans:
        starts.append(len(raws))
        for _positions, part in events.chunks(CHUNK_EVENTS):
            raws += part
    lines: list[str] = []
    by_field = [Counter[str]() for _ in spans]
    listed: list[list[tuple[int, str | None, str]]] = [[] for _ in spans]
    # each body's accepted events by type: those taken one at a time as the encoder says, and
    # the rest of its events not rejected are readings the columnar path took
    accepted = [Counter[str]() for _ in spans]
    for first in range(0, len(raws), CHUNK_EVENTS):
        part = raws[first : first + CHUNK_EVENTS]
        positions = range(first, first + len(part))
        chunk = _encoder.encode_raw(positions, part, streams=[s for s in starts if s >= first])
        lines += chunk.lines
        for r in chunk.rejections:
            b = bisect.bisect_right(starts, r.position) - 1
            by_field[b][r.field or "event"] += 1
            if len(listed[b]) < max_listed:
                listed[b].append((r.position - starts[b], r.field, r.reason))
        for position, kind in chunk.accepted_apart.items():
            accepted[bisect.bisect_right(starts, position) - 1][kind] += 1
    for b, (k, _events) in enumerate(spans):
        end = starts[b + 1] if b + 1 < len(starts) else len(raws)
        apart = sum(accepted[b].values())
        readings = end - starts[b] - sum(by_field[b].values()) - apart
        if readings:
            accepted[b][EventType.READING] += readings
        outcomes[k] = EncodedBatch("", dict(accepted[b]), dict(by_field[b]), listed[b])
    return "\n".join(lines)
