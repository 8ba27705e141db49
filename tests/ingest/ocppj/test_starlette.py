"""The gateway mounted in a Starlette (FastAPI) app at /ocpp/{station_id}, served by uvicorn."""

from __future__ import annotations

import asyncio

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chargewatch.events import ChargePointStatus, StatusChange, parse_ts
from ingest.ocppj import CLOSE_REPLACED, SUBPROTOCOLS, OcppGateway, starlette_connection

from .harness import Collector, make_gateway

T = "2026-11-24T08:15:00Z"


def _server(gateway: OcppGateway) -> uvicorn.Server:
    async def ocpp(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        chosen = next((p for p in SUBPROTOCOLS if p in offered), None)
        if chosen is None:
            await websocket.close(code=1002)
            return
        await websocket.accept(subprotocol=chosen)
        station_id = websocket.path_params["station_id"]
        await gateway.handle(station_id, chosen, starlette_connection(websocket))

    app = Starlette(routes=[WebSocketRoute("/ocpp/{station_id}", ocpp)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws="websockets-sansio", log_level="warning", lifespan="off"
    )
    return uvicorn.Server(config)


def test_starlette_route_serves_a_station_until_it_leaves() -> None:
    sink = Collector()
    gateway = make_gateway(sink)
    seen: dict[str, object] = {}
    server = _server(gateway)

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ocpp/CP-S"
        status = {"connectorId": 2, "errorCode": "NoError", "status": "Charging", "timestamp": T}
        async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            seen["subprotocol"] = ws.subprotocol
            await ws.send(orjson.dumps([2, "1", "StatusNotification", status]).decode())
            seen["result"] = orjson.loads(await ws.recv())
            await ws.send("not json")
            seen["error"] = orjson.loads(await ws.recv())[:3]
            seen["connected"] = gateway.connected_stations
        for _ in range(100):
            if not gateway.connected_stations:
                break
            await asyncio.sleep(0.01)
        seen["after"] = gateway.connected_stations
        server.should_exit = True
        await serving

    asyncio.run(main())
    assert seen == {
        "subprotocol": "ocpp1.6",
        "result": [3, "1", {}],
        "error": [4, "-1", "FormationViolation"],
        "connected": 1,
        "after": 0,
    }
    assert sink.events == [StatusChange(parse_ts(T), "CP-S", 2, ChargePointStatus.CHARGING)]


def test_a_second_connection_closes_the_first_through_starlette() -> None:
    """The first connection waits in ``receive`` when the second arrives: it is closed (1000)."""
    gateway = make_gateway(Collector())
    server = _server(gateway)
    seen: dict[str, object] = {}

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ocpp/CP-TWICE"
        protocols = [Subprotocol("ocpp1.6")]
        async with connect(url, subprotocols=protocols) as first:
            await first.send('[2,"1","Heartbeat",{}]')
            await first.recv()
            async with connect(url, subprotocols=protocols) as second:
                try:
                    await asyncio.wait_for(first.recv(), 10)
                except ConnectionClosed as closed:
                    seen["first"] = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None
                await second.send('[2,"2","Heartbeat",{}]')
                seen["second"] = orjson.loads(await second.recv())[:2]
                seen["connected"] = gateway.connected_stations
        server.should_exit = True
        await serving

    asyncio.run(main())
    assert seen == {
        "first": (CLOSE_REPLACED, "replaced by a newer connection of this station"),
        "second": [3, "2"],
        "connected": 1,
    }
