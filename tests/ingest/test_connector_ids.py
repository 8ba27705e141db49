"""One range rule for connector ids on every way in (issue 9, findings 9 and 10).

``connector_id`` is an InfluxDB tag: an id outside 0..MAX_CONNECTOR_ID is a rejected event with
its reason, never a crash of the batch (2**63 .. 2**64-1 once broke the columnar path) and never
a new series from an OCPP frame (which skipped the check).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from chargewatch.events import MAX_CONNECTOR_ID, EventDecoder
from ingest.encode import ChunkEncoder
from ingest.ocppj import OcppGateway

from .ocppj.harness import PSEUDONYMIZE, Collector, make_gateway, serving_in_thread

TS = "2026-11-24T08:15:00Z"
OUT_OF_RANGE: list[Any] = [-1, MAX_CONNECTOR_ID + 1, 2**63 - 1, 2**63, 2**64 - 1, "-1", "²"]


def reading(connector_id: Any) -> dict[str, Any]:
    return {
        "type": "reading",
        "ts": TS,
        "station_id": "ST-1",
        "connector_id": connector_id,
        "power_w": 7400,
    }


@pytest.mark.parametrize("connector_id", OUT_OF_RANGE)
def test_an_impossible_connector_id_is_one_rejected_event_on_both_paths(connector_id: Any) -> None:
    encoder = ChunkEncoder(EventDecoder(PSEUDONYMIZE))
    batch = [reading(1), reading(connector_id), reading(2)]
    status = {**reading(connector_id), "type": "status", "status": "Available"}
    from_objects = encoder.encode_objects([*enumerate(batch), (3, status)])
    from_lines = encoder.encode_lines([(i + 1, orjson.dumps(obj)) for i, obj in enumerate(batch)])
    for chunk, bad in ((from_objects, [1, 3]), (from_lines, [2])):
        assert [r.position for r in chunk.rejections] == bad
        assert {r.field for r in chunk.rejections} == {"connector_id"}
        assert len(chunk.lines) == 2  # the good readings still go in


@pytest.mark.parametrize("connector_id", [0, MAX_CONNECTOR_ID, "7", 3.0])
def test_possible_connector_ids_are_taken(connector_id: Any) -> None:
    encoder = ChunkEncoder(EventDecoder(PSEUDONYMIZE))
    chunk = encoder.encode_lines([(1, orjson.dumps(reading(connector_id)))])
    assert chunk.rejections == [] and len(chunk.lines) == 1


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[tuple[OcppGateway, Collector, str]]:
    sink = Collector()
    gateway = make_gateway(sink)
    with serving_in_thread(gateway) as url:
        yield gateway, sink, url


def call(url: str, version: str, action: str, payload: dict[str, Any]) -> list[Any]:
    ws: ClientConnection
    with connect(f"{url}/CP-RANGE", subprotocols=[Subprotocol(version)], open_timeout=5) as ws:
        ws.send(json.dumps([2, "c1", action, payload]))
        return list(orjson.loads(ws.recv(timeout=5)))


def meter_values_16(connector_id: int) -> dict[str, Any]:
    sampled = [{"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"}]
    return {"connectorId": connector_id, "meterValue": [{"timestamp": TS, "sampledValue": sampled}]}


@pytest.mark.parametrize("connector_id", [-1, MAX_CONNECTOR_ID + 1, 2**63, 2**64 - 1])
@pytest.mark.parametrize(
    ("version", "action", "payload", "field"),
    [
        (
            "ocpp1.6",
            "StatusNotification",
            lambda c: {"connectorId": c, "errorCode": "NoError", "status": "Available"},
            "connectorId",
        ),
        ("ocpp1.6", "MeterValues", meter_values_16, "connectorId"),
        (
            "ocpp1.6",
            "StartTransaction",
            lambda c: {"connectorId": c, "idTag": "A", "meterStart": 0, "timestamp": TS},
            "connectorId",
        ),
        (
            "ocpp2.0.1",
            "StatusNotification",
            lambda c: {
                "timestamp": TS,
                "connectorStatus": "Available",
                "evseId": c,
                "connectorId": 1,
            },
            "evseId",
        ),
    ],
)
def test_ocpp_frames_with_an_impossible_connector_get_a_call_error_naming_it(
    gateway_url: tuple[OcppGateway, Collector, str],
    connector_id: int,
    version: str,
    action: str,
    payload: Any,
    field: str,
) -> None:
    _gateway, sink, url = gateway_url
    stored = len(sink.events)
    answer = call(url, version, action, payload(connector_id))
    assert answer[0] == 4, answer  # a CallError, not an acknowledgement
    code, description = answer[2], answer[3]
    assert code in {"PropertyConstraintViolation", "OccurrenceConstraintViolation"}
    assert field in description and f"0..{MAX_CONNECTOR_ID}" in description
    assert len(sink.events) == stored  # nothing became a series
    assert call(url, version, action, payload(1))[0] == 3  # the same frame in range is taken
