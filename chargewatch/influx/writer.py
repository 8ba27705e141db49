"""A bounded, background batch writer: formatting and sending overlap, nothing fails silently."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from queue import Queue
from types import TracebackType
from typing import Final, Self

from chargewatch.errors import InfluxError
from chargewatch.influx.client import _PRECISIONS, InfluxClient

logger = logging.getLogger(__name__)

_STOP: Final = object()  # tells the sender thread to finish


class BatchWriter:
    """Accumulates lines into batches of ``batch_lines`` and sends them from ONE background thread
    through a bounded queue (``max_pending_batches``), so formatting and sending overlap.

    Nothing fails silently: the first error of the background thread is re-raised by the next
    ``add``/``add_many``/``flush``/``close`` (and by every later one: a writer that failed stays
    failed, and the batches queued behind the failure are dropped, not sent out of order).
    Counters: ``lines_written``, ``batches_written``, ``retries``, ``bytes_sent`` (request bodies
    accepted by the server, after gzip).
    """

    def __init__(
        self,
        client: InfluxClient,
        *,
        batch_lines: int = 5000,
        max_pending_batches: int = 4,
        precision: str = "ns",
    ) -> None:
        if batch_lines < 1:
            raise ValueError(f"batch_lines must be >= 1, not {batch_lines}")
        if max_pending_batches < 1:
            raise ValueError(f"max_pending_batches must be >= 1, not {max_pending_batches}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, not {precision!r}")
        self._client = client
        self._batch_lines = batch_lines
        self._precision = precision
        self._batch: list[str] = []
        self._queue: Queue[list[str] | object] = Queue(maxsize=max_pending_batches)
        self._error: BaseException | None = None
        self._error_tb: TracebackType | None = None
        self._closed = False
        self._lines_written = 0
        self._batches_written = 0
        self._retries = 0
        self._bytes_sent = 0
        self._thread = threading.Thread(
            target=self._run, name=f"influx-batch-writer-{client.database}", daemon=True
        )
        self._thread.start()

    @property
    def lines_written(self) -> int:
        return self._lines_written

    @property
    def batches_written(self) -> int:
        return self._batches_written

    @property
    def retries(self) -> int:
        return self._retries

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent

    def add(self, line: str) -> None:
        """Queue one line; blocks while ``max_pending_batches`` full batches wait to be sent."""
        self._check()
        self._batch.append(line)
        if len(self._batch) >= self._batch_lines:
            self._enqueue()

    def add_many(self, lines: Iterable[str]) -> None:
        """Queue many lines, batch by batch."""
        self._check()
        batch, size = self._batch, self._batch_lines
        for line in lines:
            batch.append(line)
            if len(batch) >= size:
                self._enqueue()
                self._check()
                batch = self._batch

    def flush(self) -> None:
        """Block until everything added so far is written; raise the first background error."""
        self._check()
        if self._batch:
            self._enqueue()
        self._queue.join()
        self._check()

    def close(self) -> None:
        """Flush, then stop the background thread. Closing twice does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as close_exc:
            # The body's exception propagates; the writer's own failure rides along as a note.
            exc.add_note(f"and the BatchWriter failed too: {type(close_exc).__name__}: {close_exc}")

    def _check(self) -> None:
        if self._closed:
            raise InfluxError("this BatchWriter is closed")
        error = self._error
        if error is not None:
            # The same exception object each time, with the background thread's traceback
            # rather than one that grows by a frame at every re-raise.
            raise error.with_traceback(self._error_tb)

    def _enqueue(self) -> None:
        batch, self._batch = self._batch, []
        self._queue.put(batch)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, list)
                if self._error is not None:
                    continue  # dropped: the failure is re-raised to the caller instead
                try:
                    sent = self._client._write(item, precision=self._precision)
                except BaseException as exc:  # handed over to the caller's thread
                    self._error_tb = exc.__traceback__
                    self._error = exc
                    logger.info(
                        "BatchWriter to %s stopped writing after %d lines: %s",
                        self._client.url,
                        self._lines_written,
                        type(exc).__name__,
                    )
                    continue
                self._lines_written += len(item)
                self._batches_written += 1
                self._retries += sent.retries
                self._bytes_sent += sent.body_bytes
            finally:
                self._queue.task_done()
