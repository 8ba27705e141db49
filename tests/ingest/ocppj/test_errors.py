"""Bad input gets the CallError that names the problem; the station and the gateway carry on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import InternalError, PropertyConstraintViolationError
from ocpp.v16 import ChargePoint as Client16
from ocpp.v16 import call as call16
from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from ingest.ocppj import OcppGateway, Problem
from ingest.ocppj.rpc import CallRejectedError, parse_frame

from .harness import Collector, make_gateway, serving, serving_in_thread

T = "2026-11-24T08:15:00Z"
HEARTBEAT = '[2,"hb","Heartbeat",{}]'
DOCUMENTED_CODES = {
    "FormationViolation",
    "FormatViolation",
    "RpcFrameworkError",
    "MessageTypeNotSupported",
    "NotImplemented",
    "NotSupported",
    "ProtocolError",
    "OccurrenceConstraintViolation",
    "TypeConstraintViolation",
    "PropertyConstraintViolation",
    "InternalError",
}


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[tuple[OcppGateway, Collector, str]]:
    sink = Collector()
    gateway = make_gateway(sink)
    with serving_in_thread(gateway) as url:
        yield gateway, sink, url


def station(url: str, name: str, version: str) -> ClientConnection:
    return connect(f"{url}/{name}", subprotocols=[Subprotocol(version)], open_timeout=5)


def exchange(ws: ClientConnection, frame: str) -> list[Any]:
    ws.send(frame)
    return list(orjson.loads(ws.recv(timeout=5)))


def mv(value: str, measurand: str, unit: str) -> str:
    sv = {"value": value, "measurand": measurand, "unit": unit}
    payload = {"connectorId": 1, "meterValue": [{"timestamp": T, "sampledValue": [sv]}]}
    return json.dumps([2, "m1", "MeterValues", payload])


CASES_16 = [
    ("not json", "{oops", "-1", "FormationViolation", "not valid JSON"),
    ("not an array", '{"a": 1}', "-1", "FormationViolation", "array"),
    ("short call", '[2,"x1","Heartbeat"]', "x1", "FormationViolation", "4 elements"),
    ("message type", '[7,"x2","Heartbeat",{}]', "x2", "FormationViolation", "MessageTypeId 7"),
    ("unknown action", '[2,"x3","MakeCoffee",{}]', "x3", "NotImplemented", "MakeCoffee"),
    (
        "not taken here",
        '[2,"x4","RemoteStartTransaction",{"idTag":"A"}]',
        "x4",
        "NotSupported",
        "RemoteStartTransaction",
    ),
    ("missing field", '[2,"x5","Authorize",{}]', "x5", "ProtocolError", "idTag is required"),
    (
        "wrong type",
        '[2,"x6","StartTransaction",{"connectorId":"1","idTag":"A","meterStart":0,'
        f'"timestamp":"{T}"}}]',
        "x6",
        "TypeConstraintViolation",
        "connectorId",
    ),
    ("unknown key", '[2,"x7","Heartbeat",{"extra":1}]', "x7", "FormationViolation", "extra"),
    (
        "bad enum",
        '[2,"x8","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Dancing"}]',
        "x8",
        "PropertyConstraintViolation",
        "status must be one of",
    ),
    (
        "bad timestamp",
        '[2,"x9","StartTransaction",{"connectorId":1,"idTag":"A","meterStart":0,'
        '"timestamp":"yesterday"}]',
        "x9",
        "FormationViolation",
        "timestamp",
    ),
    (
        "negative voltage",
        mv("-230", "Voltage", "V"),
        "m1",
        "PropertyConstraintViolation",
        "Voltage -230 is impossible",
    ),
    (
        "soc above 100",
        mv("101", "SoC", "Percent"),
        "m1",
        "PropertyConstraintViolation",
        "SoC 101 is impossible",
    ),
    (
        "not a number",
        mv("abc", "Power.Active.Import", "W"),
        "m1",
        "PropertyConstraintViolation",
        "is not a number",
    ),
    (
        "unit of another measurand",
        mv("5", "Power.Active.Import", "Wh"),
        "m1",
        "PropertyConstraintViolation",
        "must be given in W, kW",
    ),
    (
        "infinite",
        mv("1e999", "Energy.Active.Import.Register", "Wh"),
        "m1",
        "PropertyConstraintViolation",
        "finite",
    ),
]
CASES_201 = [
    ("not json", "[2,", "-1", "RpcFrameworkError", "not valid JSON"),
    ("message type", '[5,"y1","Heartbeat",{}]', "y1", "MessageTypeNotSupported", "5"),
    ("unknown action", '[2,"y2","StartTransaction",{}]', "y2", "NotImplemented", "2.0.1"),
    (
        "missing field",
        '[2,"y3","Authorize",{}]',
        "y3",
        "OccurrenceConstraintViolation",
        "idToken is required",
    ),
    ("unknown key", '[2,"y4","Heartbeat",{"x":1}]', "y4", "FormatViolation", "x"),
    (
        "negative soc",
        json.dumps(
            [
                2,
                "y5",
                "MeterValues",
                {
                    "evseId": 1,
                    "meterValue": [
                        {
                            "timestamp": T,
                            "sampledValue": [
                                {
                                    "value": -1,
                                    "measurand": "SoC",
                                    "unitOfMeasure": {"unit": "Percent"},
                                }
                            ],
                        }
                    ],
                },
            ]
        ),
        "y5",
        "PropertyConstraintViolation",
        "SoC -1 is impossible",
    ),
]


@pytest.mark.parametrize(
    ("version", "frame", "unique_id", "code", "names"),
    [("ocpp1.6", *case[1:]) for case in CASES_16]
    + [("ocpp2.0.1", *case[1:]) for case in CASES_201],
    ids=[f"1.6 {case[0]}" for case in CASES_16] + [f"2.0.1 {case[0]}" for case in CASES_201],
)
def test_bad_frames_get_a_call_error_naming_the_problem(
    gateway_url: tuple[OcppGateway, Collector, str],
    version: str,
    frame: str,
    unique_id: str,
    code: str,
    names: str,
) -> None:
    _gateway, sink, url = gateway_url
    stored = len(sink.events)
    with station(url, "CP-BAD", version) as ws:
        answer = exchange(ws, frame)
        assert answer[:3] == [4, unique_id, code]
        assert names in answer[3]
        assert len(sink.events) == stored  # nothing of a refused message is stored
        heartbeat = exchange(ws, HEARTBEAT)  # the same connection carries on
        assert heartbeat[0] == 3 and heartbeat[1] == "hb" and "currentTime" in heartbeat[2]


def test_spool_full_is_a_call_error_and_the_station_retries() -> None:
    sink = Collector()
    outcome: list[Any] = []

    async def main() -> None:
        url_cm = serving(make_gateway(sink))
        async with (
            url_cm as url,
            async_connect(f"{url}/CP-FULL", subprotocols=[Subprotocol("ocpp1.6")]) as ws,
        ):
            cp = Client16("CP-FULL", ws, response_timeout=10)
            task = asyncio.create_task(cp.start())
            status = call16.StatusNotification(
                connector_id=1, error_code="NoError", status="Available", timestamp=T
            )
            sink.full = True
            try:
                await cp.call(status, suppress=False)
            except InternalError as exc:
                outcome.append(exc.description)
            sink.full = False
            outcome.append(await cp.call(status, suppress=False))
            try:  # and a library client sees impossible values as their OCPP error
                await cp.call(
                    call16.MeterValues(
                        connector_id=1,
                        meter_value=[
                            {
                                "timestamp": T,
                                "sampled_value": [{"value": "120", "measurand": "SoC"}],
                            }
                        ],
                    ),
                    suppress=False,
                )
            except PropertyConstraintViolationError as exc:
                outcome.append(exc.description)
            await ws.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert outcome[0] == "spool full, retry later"
    assert len(sink.events) == 1  # stored once, after the retry
    assert "SoC 120 is impossible" in outcome[2]


def test_gateway_counts_messages_and_refusals(
    gateway_url: tuple[OcppGateway, Collector, str],
) -> None:
    gateway, _sink, url = gateway_url
    before = gateway.rejected.get(Problem.UNKNOWN_ACTION, 0)
    with station(url, "CP-COUNT", "ocpp1.6") as ws:
        exchange(ws, '[2,"c1","Fly",{}]')
        exchange(ws, HEARTBEAT)
        assert gateway.connected_stations >= 1
    assert gateway.rejected[Problem.UNKNOWN_ACTION] == before + 1
    assert gateway.messages["Heartbeat"] >= 1


# Random frames: JSON values, arrays shaped like OCPP messages, and Calls of real actions with
# random payloads. Each must get a CallResult or a documented CallError (or, for a CallResult or
# CallError from the station, nothing), and the gateway must still answer afterwards.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_actions = st.sampled_from(
    [
        "Heartbeat",
        "BootNotification",
        "Authorize",
        "StartTransaction",
        "StopTransaction",
        "MeterValues",
        "StatusNotification",
        "TransactionEvent",
        "NotifyEvent",
        "DataTransfer",
        "SecurityEventNotification",
        "Reset",
        "Nope",
    ]
)
_keys = st.sampled_from(
    [
        "connectorId",
        "idTag",
        "meterStart",
        "timestamp",
        "meterValue",
        "sampledValue",
        "value",
        "transactionId",
        "status",
        "errorCode",
        "idToken",
        "evseId",
        "eventType",
        "seqNo",
    ]
)
_payload = st.dictionaries(_keys | st.text(max_size=8), _json, max_size=5)
_frames = st.one_of(
    st.text(max_size=60),
    _json.map(lambda v: json.dumps(v)),
    st.tuples(st.sampled_from([2, 3, 4, 9]), st.text(max_size=40), _actions, _payload).map(
        lambda t: json.dumps(list(t))
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=_frames, version=st.sampled_from(["ocpp1.6", "ocpp2.0.1"]))
def test_random_frames_get_documented_answers_only(
    gateway_url: tuple[OcppGateway, Collector, str], frame: str, version: str
) -> None:
    _gateway, _sink, url = gateway_url
    with station(url, "CP-FUZZ", version) as ws:
        ws.send(frame)
        ws.send(HEARTBEAT)
        while True:  # the frame's answer (if any), then the heartbeat's
            answer = orjson.loads(ws.recv(timeout=5))
            assert isinstance(answer, list) and answer[0] in (3, 4)
            if answer[0] == 4:
                assert answer[2] in DOCUMENTED_CODES and isinstance(answer[3], str)
                assert answer[2] != "InternalError"  # no bug was hit
            if answer[1] == "hb" and answer[0] == 3:
                break


@given(_frames)
def test_parse_frame_returns_a_call_or_raises_a_documented_rejection(frame: str) -> None:
    try:
        parsed = parse_frame(frame)
    except CallRejectedError as rejected:
        assert rejected.problem in Problem
        assert rejected.description
    else:
        if parsed is not None:
            assert orjson.loads(frame)[2] == parsed.action


_MEASURANDS = [
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Power.Offered",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "SoC",
    "Temperature",
    "Frequency",
    "RPM",
]
_UNITS = ["Wh", "kWh", "W", "kW", "A", "V", "K", "Celcius", "Celsius", "Fahrenheit", "Percent"]
_sampled_value = st.fixed_dictionaries(
    {
        "value": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.integers(-(10**12), 10**12).map(str),
            st.text(max_size=8),
        ),
        "measurand": st.sampled_from(_MEASURANDS),
    },
    optional={
        "unit": st.sampled_from(_UNITS),
        "phase": st.sampled_from(["L1", "L2", "L3", "N", "L1-N", "L1-L2"]),
        "location": st.sampled_from(["Outlet", "Inlet", "EV", "Body", "Cable"]),
        "context": st.sampled_from(["Sample.Periodic", "Sample.Clock", "Transaction.Begin"]),
    },
)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(_sampled_value, min_size=1, max_size=6))
def test_random_sampled_values_are_stored_or_refused_as_impossible(
    gateway_url: tuple[OcppGateway, Collector, str], values: list[dict[str, str]]
) -> None:
    _gateway, sink, url = gateway_url
    payload = {"connectorId": 1, "meterValue": [{"timestamp": T, "sampledValue": values}]}
    before = len(sink.events)
    with station(url, "CP-MV", "ocpp1.6") as ws:
        answer = exchange(ws, json.dumps([2, "v", "MeterValues", payload]))
    if answer[0] == 3:
        assert len(sink.events) - before <= 1  # one reading per meterValue, or none
    else:
        assert answer[2] == "PropertyConstraintViolation", answer
        assert len(sink.events) == before
