"""What keeps one station from crowding out the others: message limits, one connection per
station, transactions bounded per station, station ids the store can hold."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chargewatch.events import Reading, SessionStop
from ingest.ocppj import CLOSE_REPLACED, OcppGateway, valid_station_id
from ingest.ocppj.book import MAX_OPEN_PER_STATION, OpenTransaction, TransactionBook
from ingest.ocppj.rpc import MAX_ITEMS_PER_MESSAGE

from .harness import Collector, make_gateway, serving

T = "2026-11-24T08:15:00Z"


def _sampled(n: int, v201: bool) -> list[dict[str, Any]]:
    if v201:
        return [{"value": i, "measurand": "Power.Active.Import"} for i in range(n)]
    return [{"value": str(i), "measurand": "Power.Active.Import", "unit": "W"} for i in range(n)]


def _meter_values(n_samples: int, v201: bool = False) -> list[dict[str, Any]]:
    return [{"timestamp": T, "sampledValue": _sampled(n_samples, v201)}]


async def _exchange(ws: ClientConnection, message_id: str, action: str, payload: Any) -> list[Any]:
    await ws.send(orjson.dumps([2, message_id, action, payload]).decode())
    return list(orjson.loads(await asyncio.wait_for(ws.recv(), 30)))


def _connect(url: str, station_id: str, version: str) -> Any:
    return connect(f"{url}/{station_id}", subprotocols=[Subprotocol(version)], max_size=None)


# -- items and bytes per message ---------------------------------------------------------------

_TX_EVENT = {"eventType": "Updated", "timestamp": T, "triggerReason": "MeterValuePeriodic"}
ITEM_CASES = [
    # version, action, payload, error code (None: accepted)
    ("ocpp1.6", "MeterValues", {"connectorId": 1, "meterValue": _meter_values(499)}, None),
    (
        "ocpp1.6",
        "MeterValues",
        {"connectorId": 1, "meterValue": _meter_values(500)},
        "OccurenceConstraintViolation",
    ),
    (  # a stop is never refused for its size: its data beyond the bound is left out
        "ocpp1.6",
        "StopTransaction",
        {"transactionId": 7, "meterStop": 1, "timestamp": T, "transactionData": _meter_values(600)},
        None,
    ),
    (
        "ocpp2.0.1",
        "TransactionEvent",
        {
            **_TX_EVENT,
            "seqNo": 1,
            "transactionInfo": {"transactionId": "tx-1"},
            "meterValue": [{"timestamp": T, "sampledValue": _sampled(2, True)}] * 300,
        },
        "OccurrenceConstraintViolation",
    ),
    (
        "ocpp2.0.1",
        "MeterValues",
        {"evseId": 1, "meterValue": _meter_values(499, v201=True)},
        None,
    ),
]


@pytest.mark.parametrize(("version", "action", "payload", "code"), ITEM_CASES)
def test_messages_with_too_many_items_get_a_call_error_naming_the_limit(
    version: str, action: str, payload: dict[str, Any], code: str | None
) -> None:
    sink = Collector()

    async def main() -> list[Any]:
        async with serving(make_gateway(sink)) as url, _connect(url, "CP-L", version) as ws:
            return await _exchange(ws, "m1", action, payload)

    answer = asyncio.run(main())
    if code is None:
        assert answer == [3, "m1", {}]
        assert len(sink.events) == 1  # one timestamp: one reading, taken on the worker thread
    else:
        assert answer[:3] == [4, "m1", code]
        assert f"at most {MAX_ITEMS_PER_MESSAGE} per message" in answer[3]
        assert sink.events == []


def test_a_frame_over_the_byte_limit_gets_a_call_error_with_its_message_id() -> None:
    gateway = make_gateway(Collector(), max_frame_bytes=64 * 1024)
    payload = {"vendorId": "ACME", "data": "x" * 70_000}

    async def main() -> list[list[Any]]:
        async with serving(gateway) as url, _connect(url, "CP-B", "ocpp1.6") as ws:
            big = await _exchange(ws, "big", "DataTransfer", payload)
            after = await _exchange(ws, "hb", "Heartbeat", {})
            return [big, after[:2]]

    big, after = asyncio.run(main())
    assert big == [
        4,
        "big",
        "OccurenceConstraintViolation",
        "a message may hold at most 65536 bytes",
        {},
    ]
    assert after == [3, "hb"]
    assert gateway.rejected == {"too_large": 1}


def test_a_large_frame_is_handled_off_the_event_loop_with_the_same_result() -> None:
    """100 timestamps of 4 phase values: over both offload thresholds; power summed per phase."""
    sink = Collector()
    element = {
        "timestamp": T,
        "sampledValue": [
            {"value": "1000", "measurand": "Power.Active.Import", "unit": "W", "phase": phase}
            for phase in ("L1", "L2", "L3")
        ]
        + [{"value": "230", "measurand": "Voltage", "unit": "V", "phase": "L1-N"}],
    }
    stamps = (f"2026-11-24T08:{i // 60:02d}:{i % 60:02d}Z" for i in range(100))
    payload = {"connectorId": 2, "meterValue": [element | {"timestamp": t} for t in stamps]}
    assert len(orjson.dumps(payload)) > 16 * 1024

    async def main() -> list[Any]:
        async with serving(make_gateway(sink)) as url, _connect(url, "CP-W", "ocpp1.6") as ws:
            return await _exchange(ws, "w", "MeterValues", payload)

    assert asyncio.run(main()) == [3, "w", {}]
    assert len(sink.events) == 100
    first = sink.events[0]
    assert isinstance(first, Reading)
    assert (first.connector_id, first.power_w, first.voltage_v) == (2, 3000.0, 230.0)


# -- one connection per station ----------------------------------------------------------------


def test_a_new_connection_of_a_station_replaces_the_old_one() -> None:
    gateway = make_gateway(Collector())

    async def main() -> tuple[list[tuple[int | None, str]], list[Any], int]:
        async with serving(gateway) as url:
            old = [await _connect(url, "CP-R", "ocpp1.6") for _ in range(20)]
            async with _connect(url, "CP-R", "ocpp1.6") as newest:
                answer = await _exchange(newest, "hb", "Heartbeat", {})
                closes: list[tuple[int | None, str]] = []
                for ws in old:
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                    except ConnectionClosed as closed:
                        rcvd = closed.rcvd
                        closes.append((rcvd.code, rcvd.reason) if rcvd else (None, ""))
                connected = gateway.connected_stations
            return closes, answer[:2], connected

    closes, answer, connected = asyncio.run(main())
    assert answer == [3, "hb"] and connected == 1
    assert closes == [(CLOSE_REPLACED, "replaced by a newer connection of this station")] * 20
    assert gateway.replaced == 20


# -- station ids -------------------------------------------------------------------------------


class _Recorded:
    """A connection that only records how it was closed."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str:
        raise AssertionError("a refused station is never read from")

    async def send(self, message: str) -> None:
        raise AssertionError("a refused station is never written to")

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


STATION_IDS = {
    "CP-1": True,
    "C" * 48: True,
    "a:b*c|d@e.f=g+h_i-0": True,
    "": False,
    "C" * 49: False,
    "CP-1\\": False,  # line protocol cannot carry a trailing backslash
    "CP\\1": False,
    "CP 1": False,
    "CP,1": False,
    'CP"1': False,
    "CP\n1": False,
    "CP\x001": False,
    "Ladesäule": False,
    "CP/1": False,
}


@pytest.mark.parametrize(("station_id", "valid"), STATION_IDS.items())
def test_station_ids_the_store_cannot_hold_are_closed_at_connect(
    station_id: str, valid: bool
) -> None:
    assert valid_station_id(station_id) is valid
    if valid:
        return
    gateway = make_gateway(Collector())
    connection = _Recorded()
    asyncio.run(gateway.handle(station_id, "ocpp1.6", connection))
    assert connection.closed is not None
    code, reason = connection.closed
    assert code == 1008 and reason.startswith("the station id")
    assert gateway.refused == {"bad_station_id": 1} and gateway.connected_stations == 0


# -- open transactions, bounded per station ----------------------------------------------------


def test_one_station_cannot_evict_another_stations_transactions() -> None:
    book = TransactionBook(10)
    book.open("A", "a-1", OpenTransaction(1, None))
    for i in range(25):
        book.open("B", f"b-{i}", OpenTransaction(i % 3, None))
        book.set_charging_status("B", i, "Charging")
    assert book.get("A", "a-1") == OpenTransaction(1, None) and book.open_on("A", 1) == "a-1"
    assert book.open_count("B") == 10 and book.get("B", "b-14") is None
    assert book.get("B", "b-24") is not None and book.open_on("B", 0) == "b-24"
    assert book.charging_status("B", 14) is None and book.charging_status("B", 24) == "Charging"
    book.close("A", "a-1")
    assert book.open_count("A") == 0 and book.open_on("A", 1) is None


def test_a_flood_of_started_transactions_leaves_other_stations_sessions_whole() -> None:
    """Station B opens more transactions than it may keep; A's reading and stop stay its own."""
    sink = Collector()
    gateway = make_gateway(sink)
    start = {"connectorId": 2, "idTag": "TAG-1", "meterStart": 100, "timestamp": T}
    reading = {"connectorId": 2, "meterValue": _meter_values(1)}

    async def main() -> None:
        async with (
            serving(gateway) as url,
            _connect(url, "CP-A", "ocpp1.6") as a,
            _connect(url, "CP-B", "ocpp2.0.1") as b,
        ):
            started = await _exchange(a, "s", "StartTransaction", start)
            tx_id = started[2]["transactionId"]
            for i in range(MAX_OPEN_PER_STATION + 50):
                event = {
                    **_TX_EVENT,
                    "eventType": "Started",
                    "triggerReason": "CablePluggedIn",
                    "seqNo": i,
                    "transactionInfo": {"transactionId": f"flood-{i}"},
                    "evse": {"id": 1},
                }
                assert (await _exchange(b, f"f{i}", "TransactionEvent", event))[0] == 3
            assert (await _exchange(a, "m", "MeterValues", reading))[0] == 3
            stop = {"transactionId": tx_id, "meterStop": 900, "timestamp": T}
            assert (await _exchange(a, "e", "StopTransaction", stop))[0] == 3

    asyncio.run(main())
    mine = [e for e in sink.events if e.station_id == "CP-A"]
    readings = [e for e in mine if isinstance(e, Reading)]
    stops = [e for e in mine if isinstance(e, SessionStop)]
    assert [(r.connector_id, r.session_id) for r in readings] == [(2, "CP-A-1000")]
    assert [(s.connector_id, s.session_id) for s in stops] == [(2, "CP-A-1000")]


def test_gateway_close_stops_its_worker_threads() -> None:
    gateway: OcppGateway = make_gateway(Collector())
    gateway.close()
    gateway.close()  # twice is harmless
