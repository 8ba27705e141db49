"""Connection limits of `serve`, below the ASGI app: header timeout, total and per-address caps.

uvicorn closes idle keep-alive connections, but never a request whose headers do not finish,
and it counts connections only to answer complete HTTP requests with 503: half-sent requests
and WebSocket upgrades are never counted. Slow clients could so hold every file descriptor of
the process. ``guarded_protocols`` gives uvicorn its own protocol classes with a guard:

- a connection beyond ``max_connections``, or beyond ``per_address`` from one client address,
  is closed as soon as it is made;
- a client has ``header_timeout_s`` from connecting (or from its last response) to finish its
  next request's headers, else it is closed. Once upgraded to a WebSocket, the route's own
  admission bounds the handshake, and pings find dead peers.

``raise_open_file_limit`` lifts the process's soft limit on open files to the hard one.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["ConnectionGuard", "guarded_protocols", "raise_open_file_limit"]

logger = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0  # refusals are counted each, logged at most this often (a flood is one line)
# WebSocket messages received and not yet taken by the application before reading from the
# peer pauses. OCPP-J's synchronicity rule lets a station have one Call unanswered at a time,
# so a conforming station never has two waiting; a peer that floods is held at a few messages
# (each at most ``ws_max_size``, plus what one read of the socket holds) in memory.
_MAX_QUEUED_MESSAGES = 4
# Bytes read from a WebSocket peer at a time: a station's message is a few kB; 16 KiB of the
# smallest Calls (30 bytes each) take about 3 ms to parse and queue.
_READ_BYTES = 16 * 1024


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit to %d: %s", hard, exc)
    return soft


class ConnectionGuard:
    """Counts open connections, in all and by client address, and refuses those over a cap.

    ``on_close(reason)`` is told of each connection the guard closes: ``connection_limit``,
    ``address_limit`` or ``header_timeout``.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        per_address: int,
        on_close: Callable[[str], None] = lambda _reason: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self._on_close = on_close
        self._clock = clock
        self._open: dict[object, str] = {}  # transport -> client address
        self._by_address: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -_LOG_EVERY_S

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self, transport: object, address: str) -> bool:
        """Count a new connection; False (and counted as closed) when it is over a cap."""
        if len(self._open) >= self.max_connections:
            self.closing("connection_limit", address)
            return False
        if self.per_address and self._by_address[address] >= self.per_address:
            self.closing("address_limit", address)
            return False
        self._open[transport] = address
        self._by_address[address] += 1
        return True

    def release(self, transport: object) -> None:
        """The connection is gone (idempotent)."""
        address = self._open.pop(transport, None)
        if address is not None:
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

    def closing(self, reason: str, address: str) -> None:
        self._on_close(reason)
        self._unlogged[reason] += 1
        now = self._clock()
        if now - self._logged_at >= _LOG_EVERY_S:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self._unlogged.items()))
            logger.warning(
                "closed connections at the server's limits (%s; latest from %s); "
                "%d open, at most %d, %s per address",
                summary,
                address,
                len(self._open),
                self.max_connections,
                self.per_address or "any",
            )
            self._unlogged.clear()
            self._logged_at = now


def _client_address(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple | list) and peer else "unknown"


def guarded_protocols(
    guard: ConnectionGuard, header_timeout_s: float
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """uvicorn's HTTP (h11) and WebSocket (websockets-sansio) protocols under ``guard``, for
    ``uvicorn.Config(http=..., ws=...)``."""
    http = type(
        "GuardedHttp", (_GuardedHttp,), {"guard": guard, "header_timeout_s": header_timeout_s}
    )
    return http, type("GuardedWebSocket", (_GuardedWebSocket,), {"guard": guard})


class _GuardedHttp(H11Protocol):
    guard: ClassVar[ConnectionGuard]
    header_timeout_s: ClassVar[float]
    _header_timer: asyncio.TimerHandle | None = None
    _address = "unknown"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = _client_address(transport)
        if not self.guard.admit(transport, self._address):
            transport.abort()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers get the same time

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or upgraded to a WebSocket
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.guard.closing("header_timeout", self._address)
            self.transport.close()


class _GuardedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with two costs per message taken out.

    - Reading is paused only once ``_MAX_QUEUED_MESSAGES`` messages wait for the application,
      not after every message: pausing and resuming are two ``epoll_ctl`` calls per message,
      and a station following OCPP-J never has more than one message waiting.
    - A keepalive ping goes out only once the peer has been quiet for a whole ping interval:
      any frame it sent proves the link as well as a pong would. A station sending every few
      seconds is never pinged; one that falls silent is pinged an interval after its last frame
      and closed a ping timeout later, as before.

    And two limits on what one peer costs:

    - The socket is read ``_READ_BYTES`` at a time (asyncio reads 256 KiB): all that one read
      holds is parsed in one callback, and 256 KiB of small frames from a station that does not
      wait for its answers are thousands of frames, tens of milliseconds of the event loop.
    - Reading stops while the answers to the peer wait in our write buffer over its high-water
      mark (a peer that does not read): uvicorn answers each ping at once without looking at
      the buffer, and a ping flood from a peer that never reads grew serve by 14 MB a second.
    """

    guard: ClassVar[ConnectionGuard]
    _heard_at = 0.0  # loop time of the latest bytes from the peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._heard_at = self.loop.time()
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = _READ_BYTES  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        super().data_received(data)
        self._hold_while_unread()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._hold_while_unread()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()  # what the application's queue allows, again

    async def receive(self) -> Any:
        message = await super().receive()  # may resume reading: its queue has room
        self._hold_while_unread()
        return message

    def _hold_while_unread(self) -> None:
        """Stop reading while the peer has not taken what we wrote (``resume_writing``)."""
        if not self.writable.is_set() and not self.transport.is_closing():
            self.transport.pause_reading()

    def send_receive_event_to_app(self) -> None:
        if self.read_paused or self.queue.qsize() + 1 >= _MAX_QUEUED_MESSAGES:
            super().send_receive_event_to_app()  # queued, and reading paused (if not already)
            return
        # uvicorn pauses reading unless it is paused already: say it is, for this message only.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False

    def send_keepalive_ping(self) -> None:
        assert self.ping_interval is not None  # a ping is scheduled only with an interval
        quiet_s = self.loop.time() - self._heard_at
        if quiet_s < self.ping_interval:  # heard from within the interval: look again later
            self.ping_timer = self.loop.call_later(
                self.ping_interval - quiet_s, self.send_keepalive_ping
            )
            return
        super().send_keepalive_ping()
