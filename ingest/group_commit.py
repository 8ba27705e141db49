"""Group commit into the spool for many small writers on one event loop (OCPP stations).

Each OCPP message is a few lines that must be fsynced before its answer goes out. Handing every
message (or every few) to a thread of the default executor costs more on the event loop than
the message itself: a future chained across threads, a wake-up of the loop per hand-off, and the
GIL passed back and forth each time (``bench/ocpp_load.py --serve``: about 0.4 ms of the loop's
CPU per message, as much as validating and converting it).

``GroupCommit`` keeps one writer thread of its own. ``append`` adds the lines to the group being
gathered and waits; the writer takes the whole group, appends it to the spool as one record with
one fsync (``Spool.append``), and wakes the loop once for all its callers. While it writes, the
next group gathers. The writer also starts a group at most every ``min_interval_s``: at a high
message rate groups grow instead of hand-offs and fsyncs multiplying; at a low rate the first
message after a quiet spell goes at once.

A group is one record: all of it is stored, or none of it. When ``Spool.append`` raises (a full
spool, a disk error), every caller of the group gets that error and none of its lines count as
stored. A caller cancelled while it waits does not take its lines out of the group.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from chargewatch.errors import ChargewatchError

__all__ = ["DEFAULT_MIN_INTERVAL_S", "GroupCommit", "GroupCommitClosedError"]

logger = logging.getLogger(__name__)

# A group starts at most this often: at most 200 fsyncs and loop wake-ups a second however many
# stations send. The answer to a message waits this much longer at most, next to an OCPP
# station's call timeout of tens of seconds and the endpoint's p99 target of 100 ms.
DEFAULT_MIN_INTERVAL_S = 0.005


class Appendable(Protocol):
    """What a group is stored into: ``ingest.spool.Spool``."""

    def append(self, lines: Sequence[str]) -> None: ...


class GroupCommitClosedError(ChargewatchError):
    """``append`` after ``close``: the service is stopping."""


class _Group:
    __slots__ = ("lines", "waiters")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.waiters: list[asyncio.Future[None]] = []


class GroupCommit:
    """``spool.append`` shared by the coroutines that call ``append`` together (see the module).

    Parameters
    ----------
    spool
        Where groups go, one ``append`` (one record, one fsync) per group.
    min_interval_s
        The least time between the starts of two groups.
    """

    def __init__(
        self, spool: Appendable, *, min_interval_s: float = DEFAULT_MIN_INTERVAL_S
    ) -> None:
        self._spool = spool
        self._min_interval_s = min_interval_s
        self._wake = threading.Condition()
        self._gathering = _Group()  # guarded by _wake
        self._closed = False  # guarded by _wake
        self._thread: threading.Thread | None = None  # started at the first append

    async def append(self, lines: Sequence[str]) -> None:
        """Store ``lines`` durably with the group they join; raises what storing it raised."""
        if not lines:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._wake:
            if self._closed:
                raise GroupCommitClosedError("the spool's group commit is closed")
            group = self._gathering
            group.lines.extend(lines)
            group.waiters.append(waiter)
            if len(group.waiters) == 1:
                self._wake.notify()  # the writer may be waiting for a first caller
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="spool-group-commit", daemon=True
                )
                self._thread.start()
        await waiter

    def close(self) -> None:
        """Store the group gathered so far, then stop the writer (idempotent)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        started = -self._min_interval_s
        while True:
            with self._wake:
                while not self._gathering.waiters and not self._closed:
                    self._wake.wait()
                if not self._gathering.waiters:
                    return  # closed, nothing left
                # At a high rate, let the group grow until the interval since the last one is
                # over (close cuts this short).
                pause_s = started + self._min_interval_s - time.monotonic()
                if pause_s > 0 and not self._closed:
                    self._wake.wait(pause_s)
                group, self._gathering = self._gathering, _Group()
            started = time.monotonic()
            self._store(group)

    def _store(self, group: _Group) -> None:
        error: BaseException | None = None
        try:
            self._spool.append(group.lines)
        except Exception as exc:  # every caller of the group gets it
            error = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for waiter in group.waiters:
            by_loop.setdefault(waiter.get_loop(), []).append(waiter)
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, waiters, error)
            except RuntimeError:  # that loop is closed: its callers are gone
                logger.warning(
                    "%d spool appends finished after their event loop closed", len(waiters)
                )


def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """On the waiters' loop: each caller gets the group's outcome (unless it was cancelled)."""
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
