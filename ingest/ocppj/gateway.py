"""The OCPP-J gateway: one object serving every station connection of a service instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed as WebSocketsConnectionClosed

from chargewatch.events import StationEventKind

from .admission import Admission, Admit, Refusal, station_id_problem
from .book import Book, LocalBook
from .interface import (
    AuthPolicy,
    ConnectionClosedError,
    EventSink,
    GatewayStats,
    OcppConnection,
    TransactionIds,
)
from .liveness import DEFAULT_SAMPLE_S, DisconnectReason, Liveness, disconnect_reason
from .rpc import Version
from .station import GatewayContext, StationBase
from .transport import closed_error
from .v16 import Station16
from .v201 import Station201

__all__ = ["CLOSE_REPLACED", "OcppGateway", "valid_station_id"]

logger = logging.getLogger(__name__)

_STATIONS: dict[Version, type[StationBase]] = {Version.V16: Station16, Version.V201: Station201}
# WebSocket close codes (RFC 6455): normal closure, protocol error, policy violation.
CLOSE_REPLACED = 1000
_CLOSE_PROTOCOL_ERROR = 1002
_CLOSE_POLICY_VIOLATION = 1008
# How long a new connection waits for the one it replaces to finish its last message, so that
# the station's messages are handled in the order it sent them.
_REPLACE_WAIT_S = 5.0
# OCPP-J messages are small; see rpc.MAX_ITEMS_PER_MESSAGE for the largest a charger sends.
_MAX_FRAME_BYTES = 1 << 20


def _utc_now() -> datetime:
    return datetime.now(UTC)


def valid_station_id(station_id: str) -> bool:
    """Whether ``station_id`` is an OCPP identity the gateway takes (``admission``)."""
    return station_id_problem(station_id) is None


class _Session:
    __slots__ = ("connection", "done", "replaced_ns")

    def __init__(self, connection: OcppConnection) -> None:
        self.connection = connection
        self.done = asyncio.Event()
        self.replaced_ns: int | None = None  # when a newer connection began to replace it


class OcppGateway:
    """Serves OCPP 1.6 and 2.0.1 stations, turning their messages into canonical events.

    Each message's events go to ``sink`` and the station gets its answer only once the sink has
    returned, so nothing acknowledged is lost. Clear id tags go through ``pseudonymize`` at once.
    ``check_password`` (station id, password) turns on station authentication: ``admit``
    then asks for HTTP Basic credentials. One connection per station: a new one replaces the
    one before (closed with ``CLOSE_REPLACED``), as central systems do. ``close`` stops the
    worker threads.

    Each station's link is recorded as ``station`` events (``liveness``): connect, boot,
    disconnect with its reason, and a heartbeat at most every ``liveness_sample_s`` while it
    sends anything. ``heartbeat_interval_s`` is what BootNotification answers.

    ``book`` keeps the open transactions (``book.LocalBook`` by default: this process only;
    ``shared_book.SharedBook`` when several instances serve the same stations).
    """

    def __init__(
        self,
        *,
        sink: EventSink,
        pseudonymize: Callable[[str], str],
        transactions: TransactionIds,
        auth: AuthPolicy,
        clock: Callable[[], datetime] = _utc_now,
        heartbeat_interval_s: int = 300,
        check_password: Callable[[str, str], bool] | None = None,
        handshake_timeout_s: float = 10.0,
        max_frame_bytes: int = _MAX_FRAME_BYTES,
        liveness_sample_s: float = DEFAULT_SAMPLE_S,
        book: Book | None = None,
    ) -> None:
        self.stats = GatewayStats()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="ocpp-frames")
        self._ctx = GatewayContext(
            sink=sink,
            pseudonymize=pseudonymize,
            transactions=transactions,
            auth=auth,
            clock=clock,
            heartbeat_interval_s=heartbeat_interval_s,
            stats=self.stats,
            book=book if book is not None else LocalBook(),
            max_frame_bytes=max_frame_bytes,
            worker=self._worker,
            liveness=Liveness(sample_s=liveness_sample_s),
        )
        self._admission = Admission(
            check_password, self.stats.refused, timeout_s=handshake_timeout_s
        )
        self._sessions: dict[str, _Session] = {}

    @property
    def connected_stations(self) -> int:
        """Stations with an open connection."""
        return len(self._sessions)

    @property
    def messages(self) -> dict[str, int]:
        """Calls received, by action (``unknown`` for actions without a handler)."""
        return dict(self.stats.messages)

    @property
    def rejected(self) -> dict[str, int]:
        """CallErrors sent, by reason (see ``Problem``)."""
        return dict(self.stats.rejected)

    @property
    def refused(self) -> dict[str, int]:
        """Connections refused, by reason (see ``Refusal``)."""
        return dict(self.stats.refused)

    @property
    def replaced(self) -> int:
        """Connections closed because their station connected again."""
        return self.stats.replaced

    @property
    def disconnects(self) -> dict[str, int]:
        """Station connections ended, by reason (see ``DisconnectReason``)."""
        return dict(self.stats.disconnects)

    def close(self) -> None:
        self._admission.close()
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._ctx.book.shutdown()

    async def admit(
        self,
        station_id: str,
        address: str,
        offered: Sequence[str],
        credentials: tuple[str, str] | None,
    ) -> Admit:
        """Whether a station may connect, before its WebSocket is accepted (``admission``).

        ``address`` is the client's, ``offered`` its subprotocols, ``credentials`` the user and
        password of its HTTP Basic ``Authorization`` header (None without a usable one).
        """
        return await self._admission.admit(station_id, address, offered, credentials)

    async def handle(self, station_id: str, subprotocol: str, connection: OcppConnection) -> None:
        """Serve one station until its connection closes; never raises for the station's doing.

        ``subprotocol`` is the negotiated one (``ocpp1.6`` or ``ocpp2.0.1``). An unknown
        subprotocol or an unusable station id closes the connection at once, with the reason.
        """
        version = Version.from_subprotocol(subprotocol)
        problem = station_id_problem(station_id)
        if version is None or problem is not None:
            refusal = Refusal.NO_SUBPROTOCOL if problem is None else Refusal.BAD_STATION_ID
            message = problem or "no supported OCPP subprotocol"
            self._admission.refuse(station_id, "?", refusal, message)
            code = _CLOSE_POLICY_VIOLATION if problem else _CLOSE_PROTOCOL_ERROR
            await connection.close(code, message)
            return
        session = _Session(connection)
        previous = self._sessions.get(station_id)
        self._sessions[station_id] = session
        station = _STATIONS[version](station_id, connection, self._ctx)
        # None: cancelled, which only a stopping server does to a connection
        ended: tuple[int, DisconnectReason] | None = None
        try:
            if previous is not None:
                await self._replace(station_id, previous, station.now_ns())
            # Another instance may have served the station since it was last here.
            self._ctx.book.station_connected(station_id)
            logger.info("station %s connected (OCPP %s)", station_id, version.value)
            # After the replaced connection's disconnect: a station is seen last as connected.
            await station.store_liveness(station.station_event(StationEventKind.CONNECT))
            await station.run()
        except (ConnectionClosedError, WebSocketsConnectionClosed, WebSocketDisconnect) as exc:
            ended = station.now_ns(), _closed_reason(exc, session)
        except Exception:  # the transport failed in a way it should not: end this station only
            logger.exception("station %s: connection failed", station_id)
            ended = station.now_ns(), DisconnectReason.TRANSPORT_ERROR
        finally:
            await self._record_disconnect(station, session, ended)
            session.done.set()
            if self._sessions.get(station_id) is session:
                del self._sessions[station_id]
                self._ctx.liveness.forget(station_id)
                self._ctx.book.station_gone(station_id)
            logger.info("station %s disconnected", station_id)

    async def _record_disconnect(
        self, station: StationBase, session: _Session, ended: tuple[int, DisconnectReason] | None
    ) -> None:
        """The ``disconnect`` event, stored with any liveness event still waiting; counted
        when the sink refuses it (no later message will carry it)."""
        ts_ns, reason = ended or (station.now_ns(), DisconnectReason.SERVER_SHUTDOWN)
        if reason is DisconnectReason.REPLACED and session.replaced_ns is not None:
            ts_ns = session.replaced_ns  # before the newer connection's connect
        self.stats.disconnects[reason.value] += 1
        event = station.station_event(StationEventKind.DISCONNECT, ts_ns=ts_ns, reason=reason)
        if not await station.store_liveness(event):
            lost = station.drop_unstored()
            self.stats.station_events_lost += lost
            logger.warning(
                "station %s: %d liveness events lost: the sink refused them",
                station.station_id,
                lost,
            )

    async def _replace(self, station_id: str, previous: _Session, now_ns: int) -> None:
        self.stats.replaced += 1
        previous.replaced_ns = now_ns
        logger.warning("station %s connected again: its previous connection is closed", station_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REPLACE_WAIT_S):
                await previous.connection.close(
                    CLOSE_REPLACED, "replaced by a newer connection of this station"
                )
                await previous.done.wait()


def _closed_reason(exc: Exception, session: _Session) -> DisconnectReason:
    """Why a connection that ended with ``exc`` (a transport's close) did."""
    if session.replaced_ns is not None:
        return DisconnectReason.REPLACED
    if isinstance(exc, WebSocketsConnectionClosed):
        exc = closed_error(exc)
    if isinstance(exc, ConnectionClosedError):
        return disconnect_reason(exc.code, by_station=exc.by_station)
    code = exc.code if isinstance(exc, WebSocketDisconnect) else None
    return disconnect_reason(code, by_station=None)
