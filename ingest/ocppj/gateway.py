"""The OCPP-J gateway: one object serving every station connection of a service instance."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed as WebSocketsConnectionClosed

from .interface import (
    AuthPolicy,
    ConnectionClosed,
    EventSink,
    GatewayStats,
    OcppConnection,
    TransactionIds,
)
from .rpc import Version
from .station import GatewayContext, StationBase, TransactionBook
from .v16 import Station16
from .v201 import Station201

__all__ = ["OcppGateway", "valid_station_id"]

logger = logging.getLogger(__name__)

_MAX_STATION_ID_CHARS = 64
_STATIONS: dict[Version, type[StationBase]] = {Version.V16: Station16, Version.V201: Station201}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def valid_station_id(station_id: str) -> bool:
    """A station id the gateway takes: 1..64 printable characters, no spaces or slashes."""
    return (
        0 < len(station_id) <= _MAX_STATION_ID_CHARS
        and station_id.isprintable()
        and not any(c.isspace() or c == "/" for c in station_id)
    )


class OcppGateway:
    """Serves OCPP 1.6 and 2.0.1 stations, turning their messages into canonical events.

    Each message's events go to ``sink`` and the station gets its answer only once the sink has
    returned, so nothing acknowledged is lost. Clear id tags go through ``pseudonymize`` at once.
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
    ) -> None:
        self.stats = GatewayStats()
        self._ctx = GatewayContext(
            sink=sink,
            pseudonymize=pseudonymize,
            transactions=transactions,
            auth=auth,
            clock=clock,
            heartbeat_interval_s=heartbeat_interval_s,
            stats=self.stats,
            book=TransactionBook(),
        )
        self._connections: dict[str, int] = {}

    @property
    def connected_stations(self) -> int:
        """Stations with at least one open connection."""
        return len(self._connections)

    @property
    def messages(self) -> dict[str, int]:
        """Calls received, by action (``unknown`` for actions without a handler)."""
        return dict(self.stats.messages)

    @property
    def rejected(self) -> dict[str, int]:
        """CallErrors sent, by reason (see ``Problem``)."""
        return dict(self.stats.rejected)

    async def handle(self, station_id: str, subprotocol: str, connection: OcppConnection) -> None:
        """Serve one station until its connection closes; never raises for the station's doing.

        ``subprotocol`` is the negotiated one (``ocpp1.6`` or ``ocpp2.0.1``). An unknown
        subprotocol or an unusable station id returns at once (the transport then closes).
        """
        version = Version.from_subprotocol(subprotocol)
        if version is None or not valid_station_id(station_id):
            logger.warning(
                "refused a connection: subprotocol %r or station id unusable", subprotocol
            )
            return
        station = _STATIONS[version](station_id, connection, self._ctx)
        self._connections[station_id] = self._connections.get(station_id, 0) + 1
        logger.info("station %s connected (OCPP %s)", station_id, version.value)
        try:
            await station.run()
        except (ConnectionClosed, WebSocketsConnectionClosed, WebSocketDisconnect):
            pass
        except Exception:  # the transport failed in a way it should not: end this station only
            logger.exception("station %s: connection failed", station_id)
        finally:
            left = self._connections[station_id] - 1
            if left:
                self._connections[station_id] = left
            else:
                del self._connections[station_id]
            logger.info("station %s disconnected", station_id)
