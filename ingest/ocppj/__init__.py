"""The OCPP-J endpoint: OCPP 1.6 and 2.0.1 stations in, canonical events out.

Mount it with a transport adapter::

    gateway = OcppGateway(sink=..., pseudonymize=..., transactions=..., auth=AuthPolicy("monitor"))

    @app.websocket("/ocpp/{station_id}")
    async def ocpp(websocket: WebSocket, station_id: str) -> None:
        offered = websocket.scope.get("subprotocols", [])
        chosen = next((p for p in SUBPROTOCOLS if p in offered), None)
        if chosen is None:
            await websocket.close(code=1002)
            return
        await websocket.accept(subprotocol=chosen)
        await gateway.handle(station_id, chosen, starlette_connection(websocket))

A route in front of it asks ``gateway.admit(...)`` first (station id, subprotocol, credentials),
as ``api.ocpp`` does.

Modules: ``rpc`` (frames, schemas, CallErrors), ``meter`` (sampled values to readings),
``station`` (routing shared by both versions), ``book`` (open transactions), ``shared_book``
(the same in the state database, for several instances), ``v16`` and
``v201`` (the handlers), ``admission`` (who may connect), ``liveness`` (each station's link as
``station`` events), ``gateway``, ``transport`` (websockets and Starlette adapters).
"""

from .admission import Admit, Refusal
from .gateway import CLOSE_REPLACED, OcppGateway, valid_station_id
from .interface import (
    AuthMode,
    AuthPolicy,
    ConnectionClosedError,
    EventSink,
    GatewayStats,
    InMemoryTransactionIds,
    OcppConnection,
    TransactionIds,
)
from .liveness import DisconnectReason
from .rpc import SUBPROTOCOLS, Problem, Version
from .transport import starlette_connection, websockets_connection

__all__ = [
    "CLOSE_REPLACED",
    "SUBPROTOCOLS",
    "Admit",
    "AuthMode",
    "AuthPolicy",
    "ConnectionClosedError",
    "DisconnectReason",
    "EventSink",
    "GatewayStats",
    "InMemoryTransactionIds",
    "OcppConnection",
    "OcppGateway",
    "Problem",
    "Refusal",
    "TransactionIds",
    "Version",
    "starlette_connection",
    "valid_station_id",
    "websockets_connection",
]
