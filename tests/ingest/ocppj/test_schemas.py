"""The compiled schema checks (``ingest.ocppj.schemas``) are exactly as strict as the ocpp
library's jsonschema validators, and malformed payloads still get a CallError naming the field.

The comparison is differential: valid payloads of the actions the gateway takes are mutated
field by field (each key removed, each value replaced by values of every JSON type, out-of-range
numbers and overlong strings, an unknown key added to each object), and for every mutant the
compiled check and the library's validator must agree on whether it is valid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from ocpp.charge_point import camel_to_snake_case
from ocpp.messages import MessageType, get_validator
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from ingest.ocppj import OcppGateway
from ingest.ocppj.schemas import first_error
from ingest.ocppj.station import _snake_case

from .harness import Collector, make_gateway, serving_in_thread

T = "2026-11-24T08:15:00Z"
SAMPLES_16 = [
    {"value": "1234", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"},
    {"value": "57", "measurand": "SoC", "unit": "Percent", "location": "EV"},
]
SAMPLES_201 = [
    {"value": 1234.0, "measurand": "Energy.Active.Import.Register"},
    {"value": 7.4, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
]
# (message type, action, version, a valid payload)
VALID: list[tuple[int, str, str, dict[str, Any]]] = [
    (
        MessageType.Call,
        "BootNotification",
        "1.6",
        {"chargePointVendor": "cw", "chargePointModel": "m", "firmwareVersion": "1.0"},
    ),
    (
        MessageType.Call,
        "StatusNotification",
        "1.6",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": T},
    ),
    (
        MessageType.Call,
        "StartTransaction",
        "1.6",
        {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": T},
    ),
    (
        MessageType.Call,
        "MeterValues",
        "1.6",
        {
            "connectorId": 1,
            "transactionId": 7,
            "meterValue": [{"timestamp": T, "sampledValue": SAMPLES_16}],
        },
    ),
    (
        MessageType.Call,
        "StopTransaction",
        "1.6",
        {
            "meterStop": 10,
            "timestamp": T,
            "transactionId": 7,
            "reason": "EVDisconnected",
            "transactionData": [{"timestamp": T, "sampledValue": SAMPLES_16[:1]}],
        },
    ),
    (
        MessageType.Call,
        "TransactionEvent",
        "2.0.1",
        {
            "eventType": "Updated",
            "timestamp": T,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 3,
            "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "TAG1", "type": "ISO14443"},
            "meterValue": [{"timestamp": T, "sampledValue": SAMPLES_201}],
        },
    ),
    (
        MessageType.Call,
        "NotifyEvent",
        "2.0.1",
        {
            "generatedAt": T,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": T,
                    "trigger": "Delta",
                    "actualValue": "Occupied",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"},
                }
            ],
        },
    ),
    (
        MessageType.CallResult,
        "BootNotification",
        "1.6",
        {"currentTime": T, "interval": 300, "status": "Accepted"},
    ),
    (
        MessageType.CallResult,
        "StartTransaction",
        "1.6",
        {"transactionId": 7, "idTagInfo": {"status": "Accepted"}},
    ),
]
# What each value is replaced by: every JSON type, draft-04's edge cases (1.0 is no integer,
# true is no number), out-of-range numbers and a string longer than any schema allows.
REPLACEMENTS: list[Any] = [None, True, 0, -1, 1.0, 1.5, 10**12, "", "x", "x" * 2000, [], {}, [{}]]


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _mutants(payload: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for path in _paths(payload):
        if not path:
            continue
        parent_path, last = path[:-1], path[-1]
        for replacement in REPLACEMENTS:
            mutant = copy.deepcopy(payload)
            _at(mutant, parent_path)[last] = replacement
            yield f"{path} = {str(replacement)[:12]}", mutant
        mutant = copy.deepcopy(payload)
        del _at(mutant, parent_path)[last]
        yield f"{path} removed", mutant
    for path in _paths(payload):
        if isinstance(_at(payload, path), dict):
            mutant = copy.deepcopy(payload)
            _at(mutant, path)["zzUnknown"] = 1
            yield f"{path} + unknown key", mutant


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@pytest.mark.parametrize(
    ("message_type", "action", "version", "payload"),
    VALID,
    ids=[f"{version} {action} {kind}" for kind, action, version, _ in VALID],
)
def test_compiled_checks_agree_with_the_library_on_every_mutant(
    message_type: int, action: str, version: str, payload: dict[str, Any]
) -> None:
    library = get_validator(message_type, action, version)
    assert first_error(message_type, action, version, payload) is None
    refused = 0
    for name, mutant in _mutants(payload):
        expected = best_match(library.iter_errors(mutant))
        found = first_error(message_type, action, version, mutant)
        assert (found is None) == (expected is None), name
        if expected is not None:
            assert found is not None
            assert (found.message, list(found.absolute_path)) == (
                expected.message,
                list(expected.absolute_path),
            ), name
            refused += 1
    assert refused > 10  # the mutants do reach the schema's rules


def test_the_payload_is_never_given_the_schemas_defaults() -> None:
    # 2.0.1 schemas carry "default" values; the handler must see what the station sent
    payload = {"reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "cw"}}
    sent = copy.deepcopy(payload)
    assert first_error(MessageType.Call, "BootNotification", "2.0.1", payload) is None
    assert payload == sent


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[tuple[OcppGateway, Collector, str]]:
    sink = Collector()
    gateway = make_gateway(sink)
    with serving_in_thread(gateway) as url:
        yield gateway, sink, url


def _meter_values(sampled: list[dict[str, Any]], connector_id: Any = 1) -> str:
    payload = {
        "connectorId": connector_id,
        "meterValue": [{"timestamp": T, "sampledValue": sampled}],
    }
    return json.dumps([2, "mv", "MeterValues", payload])


REFUSED_16 = [
    (
        "float connector",
        _meter_values(SAMPLES_16, connector_id=1.0),
        "TypeConstraintViolation",
        "connectorId must be of type integer",
    ),
    (
        "nested enum",
        _meter_values([{**SAMPLES_16[0], "measurand": "Energy.Stolen"}]),
        "PropertyConstraintViolation",
        "meterValue.0.sampledValue.0.measurand must be one of",
    ),
    (
        "nested missing value",
        _meter_values([SAMPLES_16[0], {"measurand": "Voltage", "unit": "V"}]),
        "ProtocolError",
        "meterValue.0.sampledValue.1.value is required",
    ),
    (
        "nested unknown key",
        _meter_values([{**SAMPLES_16[0], "colour": "red"}]),
        "FormationViolation",
        "meterValue.0.sampledValue.0: Additional properties",
    ),
    (
        "number for text",
        _meter_values([{**SAMPLES_16[0], "value": 1234}]),
        "TypeConstraintViolation",
        "meterValue.0.sampledValue.0.value must be of type string",
    ),
    (
        "boolean for integer",
        json.dumps(
            [
                2,
                "st",
                "StartTransaction",
                {"connectorId": 1, "idTag": "A", "meterStart": True, "timestamp": T},
            ]
        ),
        "TypeConstraintViolation",
        "meterStart must be of type integer",
    ),
    (
        "overlong id tag",
        json.dumps([2, "au", "Authorize", {"idTag": "A" * 21}]),
        "TypeConstraintViolation",
        "idTag is longer than 20 characters",
    ),
]


@pytest.mark.parametrize(
    ("frame", "code", "names"),
    [case[1:] for case in REFUSED_16],
    ids=[case[0] for case in REFUSED_16],
)
def test_malformed_payloads_get_a_call_error_naming_the_field(
    gateway_url: tuple[OcppGateway, Collector, str], frame: str, code: str, names: str
) -> None:
    _gateway, sink, url = gateway_url
    stored = len(sink.events)
    with connect(f"{url}/CP-SCHEMA", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        ws.send(frame)
        answer = orjson.loads(ws.recv(timeout=5))
    assert answer[0] == MessageType.CallError
    assert answer[1] == json.loads(frame)[1]
    assert answer[2] == code
    assert answer[3].startswith(names), answer[3]
    assert len(sink.events) == stored  # nothing of a refused message is stored


@pytest.mark.parametrize("payload", [payload for *_, payload in VALID])
def test_handler_arguments_are_the_librarys_snake_case(payload: dict[str, Any]) -> None:
    assert _snake_case(payload) == camel_to_snake_case(payload)
    assert _snake_case(payload) == camel_to_snake_case(payload)  # from the key cache too
