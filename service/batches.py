"""HTTP event batches, decoded and encoded in worker processes.

A batch body is joined, gunzipped, split into its events (``api.bodies``) and validated,
pseudonymized and formatted as line protocol (``ingest.encode``) in a worker process, never in
``serve``'s own: that work is mostly Python, one object per event on the per-event path (4-5 s
for 100,000 invalid events), and in a thread of ``serve`` it would hold the interpreter lock
against the event loop that every OCPP station waits on. The workers are also niced, so that
when a station and a batch both want a core, the station comes first. The caller spools what
comes back: the line protocol as one string, counts, and the first rejections.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from api.bodies import gunzip, split_events
from chargewatch.errors import BackpressureError
from chargewatch.events import EventDecoder
from ingest.encode import ChunkEncoder
from ingest.pseudonym import Pseudonymizer

__all__ = ["BatchEncoders", "EncodedBatch"]

CHUNK_EVENTS = 10_000  # events encoded at a time: the columnar path's batch, bounded memory
_NICENESS = 5


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """What became of a batch: its line protocol (one line per accepted event, joined by
    newlines: one object is cheap to hand back), counts, and the first rejections."""

    lines: str
    accepted_by_type: dict[str, int]
    rejected_by_field: dict[str, int]  # "event" when the whole event is bad
    listed: list[tuple[int, str | None, str]]  # (index, field, reason)


class BatchEncoders:
    """``workers`` processes encoding batches, started when the first batch comes."""

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
        self._pool: ProcessPoolExecutor | None = None

    def encode(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> EncodedBatch:
        """Encode a body (the parts it arrived in); blocks until a worker has done it. Raises
        ``api.bodies.BodyError`` for a body that cannot be taken whole, ``BackpressureError``
        when a worker died (killed for memory, say): the batch may be sent again."""
        pool = self._pool or self._start()
        future = pool.submit(
            _encode, parts, gzipped, self._max_body_bytes, self._max_events, max_listed
        )
        try:
            return future.result()
        except BrokenProcessPool:
            self._pool = None  # the next batch starts new workers
            pool.shutdown(wait=False, cancel_futures=True)
            raise BackpressureError("the batch worker stopped; send the batch again") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _start(self) -> ProcessPoolExecutor:
        # spawn: serve has threads, which a forked child must not inherit half-way
        self._pool = ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._pseudonymize,),
        )
        return self._pool


# -- in the worker process -----------------------------------------------------------------------

_encoder: ChunkEncoder | None = None


def _start_worker(pseudonymize: Pseudonymizer) -> None:
    global _encoder  # one per worker process, made once
    os.nice(_NICENESS)
    _encoder = ChunkEncoder(EventDecoder(pseudonymize))


def _encode(
    parts: list[bytes], gzipped: bool, max_body_bytes: int, max_events: int, max_listed: int
) -> EncodedBatch:
    assert _encoder is not None, "the worker was not started"
    body = b"".join(parts)
    parts.clear()
    data = gunzip(body, max_bytes=max_body_bytes) if gzipped else body
    events = split_events(data, max_events=max_events)
    lines: list[str] = []
    accepted: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    listed: list[tuple[int, str | None, str]] = []
    for numbered in events.chunks(CHUNK_EVENTS):
        chunk = _encoder.encode_lines(numbered)
        lines += chunk.lines
        accepted.update(chunk.accepted_by_type)
        rejected.update(r.field or "event" for r in chunk.rejections)
        room = max_listed - len(listed)
        listed += [(r.position, r.field, r.reason) for r in chunk.rejections[:room]]
    return EncodedBatch("\n".join(lines), dict(accepted), dict(rejected), listed)
