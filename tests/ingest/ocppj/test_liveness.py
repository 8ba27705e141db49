"""Station liveness: connect, boot, sampled heartbeat and disconnect events from real sessions."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chargewatch.events import Reading, StationEvent, StationEventKind
from chargewatch.influx import InfluxClient
from chargewatch.schema import LineFormatter, read_station_liveness
from ingest.ocppj import SUBPROTOCOLS, OcppGateway, starlette_connection
from ingest.ocppj.liveness import DisconnectReason, Liveness, disconnect_reason

from .harness import NOW, Collector, make_gateway, serving

S = 1_000_000_000
NOW_NS = int(NOW.timestamp()) * S
BOOT, CONNECT, DISCONNECT, HEARTBEAT = (
    StationEventKind.BOOT,
    StationEventKind.CONNECT,
    StationEventKind.DISCONNECT,
    StationEventKind.HEARTBEAT,
)
T = "2026-11-24T07:59:00Z"


class Clock:
    """The gateway's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def meter_values_16(energy_wh: int) -> dict[str, Any]:
    sampled = {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return {"connectorId": 1, "meterValue": [{"timestamp": T, "sampledValue": [sampled]}]}


def meter_values_201(energy_wh: int) -> dict[str, Any]:
    sampled = {"value": energy_wh, "measurand": "Energy.Active.Import.Register"}
    return {"evseId": 1, "meterValue": [{"timestamp": T, "sampledValue": [sampled]}]}


VERSIONS: dict[str, dict[str, Any]] = {
    "ocpp1.6": {
        "boot": {
            "chargePointVendor": "Alpitronic",
            "chargePointModel": "HYC300",
            "firmwareVersion": "1.4.2",
        },
        "boot_reason": None,
        "meter_values": meter_values_16,
    },
    "ocpp2.0.1": {
        "boot": {
            "chargingStation": {
                "vendorName": "Kempower",
                "model": "S-Series",
                "firmwareVersion": "2.1",
            },
            "reason": "Watchdog",
        },
        "boot_reason": "Watchdog",
        "meter_values": meter_values_201,
    },
}


_IDS = itertools.count(1)


async def call(ws: ClientConnection, action: str, payload: dict[str, Any]) -> Any:
    """Send a Call, return the answer (a CallResult or CallError frame)."""
    await ws.send(orjson.dumps([2, str(next(_IDS)), action, payload]).decode())
    return orjson.loads(await ws.recv())


@asynccontextmanager
async def station(url: str, station_id: str, version: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol(version)]) as ws:
        yield ws


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def kinds(events: list[StationEvent]) -> list[tuple[StationEventKind, int]]:
    """(kind, seconds after NOW) of each event."""
    return [(e.event, (e.ts_ns - NOW_NS) // S) for e in events]


# -- a session, end to end --------------------------------------------------------------------


@pytest.mark.parametrize("version", list(VERSIONS))
def test_a_session_records_connect_boot_sampled_heartbeats_and_disconnect(version: str) -> None:
    spec = VERSIONS[version]
    sink, clock = Collector(), Clock()
    gateway = make_gateway(sink, clock=clock, liveness_sample_s=60)

    async def main() -> None:
        async with serving(gateway) as url:
            async with station(url, "CP-L", version) as ws:
                await until(lambda: sink.liveness)  # the connect, before any message
                answer = await call(ws, "BootNotification", spec["boot"])
                assert answer[2]["interval"] == 300
                for second, action, answer_type in [
                    (10, "Heartbeat", 3),  # 10 s after the boot: not due
                    (61, "MeterValues", 3),  # due: any message counts, with its reading
                    (70, "Heartbeat", 3),
                    (120, "MeterValues", 3),
                    (125, "Heartbeat", 3),  # due again: 64 s after the last one recorded
                    (400, "StatusNotification", 4),  # refused (no keys): still a sign of life
                ]:
                    clock.now = NOW + timedelta(seconds=second)
                    mv = spec["meter_values"](1000 + second) if action == "MeterValues" else {}
                    assert (await call(ws, action, mv))[0] == answer_type
                clock.now = NOW + timedelta(seconds=401)
            await until(lambda: len(sink.liveness) == 6)

    asyncio.run(main())
    assert kinds(sink.liveness) == [
        (CONNECT, 0),
        (BOOT, 0),
        (HEARTBEAT, 61),
        (HEARTBEAT, 125),
        (HEARTBEAT, 400),
        (DISCONNECT, 401),
    ]
    connect_, boot, beat = sink.liveness[:3]
    expected_boot = StationEvent(
        NOW_NS,
        "CP-L",
        BOOT,
        vendor="Alpitronic" if version == "ocpp1.6" else "Kempower",
        model="HYC300" if version == "ocpp1.6" else "S-Series",
        firmware="1.4.2" if version == "ocpp1.6" else "2.1",
        ocpp_version=version,
        heartbeat_interval_s=300.0,
        reason=spec["boot_reason"],
    )
    assert boot == expected_boot
    assert connect_ == StationEvent(
        NOW_NS, "CP-L", CONNECT, ocpp_version=version, heartbeat_interval_s=300.0
    )
    assert beat.ocpp_version == version and beat.heartbeat_interval_s == 300.0
    disconnect = sink.liveness[-1]
    assert disconnect.reason == DisconnectReason.CLOSED_BY_STATION
    assert disconnect.heartbeat_interval_s is None
    # the sampled heartbeat went with the message that made it due: one sink call, one fsync
    (with_reading,) = [c for c in sink.calls if any(isinstance(e, Reading) for e in c)][:1]
    assert [type(e).__name__ for e in with_reading] == ["Reading", "StationEvent"]
    assert gateway.disconnects == {"closed_by_station": 1}


def test_a_busy_station_gets_one_heartbeat_event_per_sample_interval() -> None:
    sink, clock = Collector(), Clock()
    gateway = make_gateway(sink, clock=clock, liveness_sample_s=60)

    async def main() -> None:
        async with serving(gateway) as url, station(url, "CP-BUSY", "ocpp1.6") as ws:
            await until(lambda: sink.liveness)
            for i in range(1, 121):  # MeterValues every 5 s for 10 minutes, no Heartbeat at all
                clock.advance(5)
                await call(ws, "MeterValues", meter_values_16(i))

    asyncio.run(main())
    beats = [e for e in sink.liveness if e.event is HEARTBEAT]
    assert len([e for e in sink.events if isinstance(e, Reading)]) == 120
    assert [(e.ts_ns - NOW_NS) // S for e in beats] == list(range(60, 601, 60))


# -- how connections end ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "by_station", "reason"),
    [
        (1000, True, DisconnectReason.CLOSED_BY_STATION),
        (1001, True, DisconnectReason.CLOSED_BY_STATION),  # a station going away (rebooting)
        (1001, None, DisconnectReason.CLOSED_BY_STATION),  # Starlette does not say who: theirs
        (1001, False, DisconnectReason.SERVER_SHUTDOWN),  # we went away (websockets' server)
        (1012, None, DisconnectReason.SERVER_SHUTDOWN),  # uvicorn shutting down
        (1002, False, DisconnectReason.PROTOCOL_ERROR),
        (1007, None, DisconnectReason.PROTOCOL_ERROR),  # not UTF-8
        (1009, None, DisconnectReason.PROTOCOL_ERROR),  # too large
        (1009, True, DisconnectReason.CLOSED_BY_STATION),  # the station refused ours
        (1011, False, DisconnectReason.CONNECTION_LOST),  # keepalive ping timeout
        (1006, None, DisconnectReason.CONNECTION_LOST),
        (1005, None, DisconnectReason.CONNECTION_LOST),  # uvicorn: TCP gone without a close frame
        (None, None, DisconnectReason.CONNECTION_LOST),
        (4000, True, DisconnectReason.CLOSED_BY_STATION),
    ],
)
def test_close_codes_map_to_reasons(
    code: int | None, by_station: bool | None, reason: DisconnectReason
) -> None:
    assert disconnect_reason(code, by_station=by_station) is reason


@pytest.mark.parametrize(
    ("recorded_s", "now_s", "due"),
    [(None, 0, True), (0, 59.999, False), (0, 60, True), (100, 50, False), (0, 3600, True)],
)
def test_a_heartbeat_is_due_once_per_sample_interval(
    recorded_s: float | None, now_s: float, due: bool
) -> None:
    liveness = Liveness(sample_s=60)
    if recorded_s is not None:
        liveness.recorded("S", int(recorded_s * S))
    assert liveness.due("S", int(now_s * S)) is due
    assert liveness.due("other", int(now_s * S))


def test_a_replaced_connection_ends_before_the_new_one_begins() -> None:
    """Same clock reading for both: the older connection's disconnect is still the earlier
    point, so the station is seen last as connected."""
    sink = Collector()
    gateway = make_gateway(sink)

    async def main() -> None:
        async with serving(gateway) as url, station(url, "CP-2", "ocpp1.6") as first:
            await call(first, "Heartbeat", {})
            async with station(url, "CP-2", "ocpp1.6") as second:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(first.recv(), 10)
                await call(second, "Heartbeat", {})
                await until(lambda: len(sink.liveness) == 3)
                seen["while connected"] = list(sink.liveness)

    seen: dict[str, list[StationEvent]] = {}
    asyncio.run(main())
    events = seen["while connected"]
    assert [e.event for e in events] == [CONNECT, DISCONNECT, CONNECT]
    assert events[1].reason == DisconnectReason.REPLACED
    formatter = LineFormatter()
    times = [int(formatter.format(e).rsplit(" ", 1)[1]) for e in events]
    assert times[1] < times[2]  # replaced, then connected again: the latest point is a connect
    assert times[0] == times[2]  # (the same content at the same instant: one point)
    assert gateway.disconnects["replaced"] == 1


def test_server_shutdown_is_recorded_as_such() -> None:
    sink = Collector()

    async def main() -> None:
        async with serving(make_gateway(sink)) as url:
            ws = await connect(f"{url}/CP-SD", subprotocols=[Subprotocol("ocpp2.0.1")])
            await call(ws, "Heartbeat", {})
        await ws.close()

    asyncio.run(main())
    assert [(e.event, e.reason) for e in sink.liveness] == [
        (CONNECT, None),
        (DISCONNECT, "server_shutdown"),
    ]


def _uvicorn(gateway: OcppGateway, **config: Any) -> uvicorn.Server:
    async def ocpp(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        chosen = next(p for p in SUBPROTOCOLS if p in offered)
        await websocket.accept(subprotocol=chosen)
        station_id = websocket.path_params["station_id"]
        await gateway.handle(station_id, chosen, starlette_connection(websocket))

    app = Starlette(routes=[WebSocketRoute("/ocpp/{station_id}", ocpp)])
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ws="websockets-sansio",  # what `serve` runs
            log_level="warning",
            lifespan="off",
            **config,
        )
    )


def test_through_uvicorn_a_too_large_frame_and_a_shutdown_have_their_reasons() -> None:
    sink = Collector()
    gateway = make_gateway(sink)
    server = _uvicorn(gateway, ws_max_size=4096)

    async def main() -> None:
        serving_ = asyncio.create_task(server.serve())
        await until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ocpp"
        async with station(url, "CP-BIG", "ocpp1.6") as big:
            await big.send(
                orjson.dumps([2, "1", "DataTransfer", {"vendorId": "x" * 8000}]).decode()
            )
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(big.recv(), 10)
        stays = await connect(f"{url}/CP-STAYS", subprotocols=[Subprotocol("ocpp1.6")])
        await call(stays, "Heartbeat", {})
        server.should_exit = True
        await serving_
        await stays.close()

    asyncio.run(main())
    ends = {e.station_id: e.reason for e in sink.liveness if e.event is DISCONNECT}
    assert ends == {"CP-BIG": "protocol_error", "CP-STAYS": "server_shutdown"}


# -- when the sink refuses ----------------------------------------------------------------------


def test_a_refused_connect_goes_with_the_next_message_and_a_lost_one_is_counted() -> None:
    sink, clock = Collector(), Clock()
    gateway = make_gateway(sink, clock=clock)

    async def main() -> None:
        async with serving(gateway) as url:
            sink.full = True
            async with station(url, "CP-FULL", "ocpp1.6") as ws:
                clock.advance(10)
                await call(ws, "Heartbeat", {})  # answered; its liveness waits
                sink.full = False
                clock.advance(10)
                await call(ws, "Heartbeat", {})
                seen["stored"] = list(sink.calls)
            await until(lambda: gateway.disconnects)
            sink.full = True
            async with station(url, "CP-LOST", "ocpp1.6") as ws:
                await call(ws, "Heartbeat", {})
            await until(lambda: gateway.disconnects.get("closed_by_station") == 2)

    seen: dict[str, list[list[Any]]] = {}
    asyncio.run(main())
    (together,) = seen["stored"]
    assert kinds(together) == [(CONNECT, 0), (HEARTBEAT, 20)]
    assert gateway.stats.station_events_lost == 2  # CP-LOST's connect and disconnect
    assert [e.station_id for e in sink.liveness] == ["CP-FULL"] * 3


# -- what alerting reads back -------------------------------------------------------------------


def test_gateway_events_read_back_as_last_seen_per_station(influx: InfluxClient) -> None:
    sink, clock = Collector(), Clock()
    gateway = make_gateway(sink, clock=clock, liveness_sample_s=60)

    async def main() -> None:
        async with serving(gateway) as url:
            async with station(url, "CP-GONE", "ocpp1.6") as ws:
                await call(ws, "BootNotification", VERSIONS["ocpp1.6"]["boot"])
                clock.advance(90)
                await call(ws, "Heartbeat", {})
                clock.advance(5)
            await until(lambda: gateway.disconnects)
            async with station(url, "CP-UP", "ocpp2.0.1") as ws:
                clock.advance(60)
                await call(ws, "Heartbeat", {})
                influx.write([LineFormatter().format(e) for e in sink.liveness])
                seen.update(read_station_liveness(influx, NOW_NS - 3600 * S, NOW_NS + 3600 * S))

    seen: dict[str, Any] = {}
    asyncio.run(main())
    gone, up = seen["CP-GONE"], seen["CP-UP"]
    assert (gone.connected, gone.last.reason, gone.last_seen_ns // S) == (
        False,
        "closed_by_station",
        NOW_NS // S + 95,
    )
    assert gone.boot is not None and (gone.boot.vendor, gone.boot.firmware) == (
        "Alpitronic",
        "1.4.2",
    )
    assert gone.heartbeat_interval_s == 300.0
    assert (up.connected, up.last.event, up.last_seen_ns // S) == (
        True,
        HEARTBEAT,
        NOW_NS // S + 155,
    )
    assert up.boot is None and up.heartbeat_interval_s == 300.0
