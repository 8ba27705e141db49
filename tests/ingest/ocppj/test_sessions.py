"""Full charging sessions from real ocpp library clients over real WebSockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Reading,
    SessionStart,
    SessionStop,
    StatusChange,
    parse_ts,
)
from ingest.ocppj import AuthMode, AuthPolicy

from .harness import NOW_NS, PSEUDONYMIZE, Collector, make_gateway, serving, station

TAG = "04A1B2C3D4E5F6"  # a clear id tag: must never leave the gateway's edge
T0 = "2026-11-24T08:15:00.000Z"
T1 = "2026-11-24T08:15:10.000Z"
T2 = "2026-11-24T08:15:20.000Z"
T3 = "2026-11-24T09:00:00.000Z"


def run(sink: Collector, body: Callable[[str], Awaitable[None]], **gateway: Any) -> None:
    async def main() -> None:
        async with serving(make_gateway(sink, **gateway)) as url:
            await body(url)

    asyncio.run(main())


def sampled(value: str, measurand: str, unit: str, phase: str | None = None) -> dict[str, Any]:
    sv = {"value": value, "measurand": measurand, "unit": unit, "context": "Sample.Periodic"}
    return sv | ({"phase": phase} if phase else {})


def test_v16_session_becomes_canonical_events() -> None:
    sink = Collector()
    answers: dict[str, Any] = {}

    async def body(url: str) -> None:
        async with station(url, "CP-16", "ocpp1.6") as cp:
            answers["boot"] = await cp.call(
                call16.BootNotification(charge_point_model="M1", charge_point_vendor="V")
            )
            answers["auth"] = await cp.call(call16.Authorize(id_tag=TAG))
            await cp.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Preparing", timestamp=T0
                )
            )
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1500, timestamp=T0)
            )
            answers["start"] = start
            tx = start.transaction_id
            await cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        {
                            "timestamp": T1,
                            "sampledValue": [
                                sampled("1510.5", "Energy.Active.Import.Register", "Wh"),
                                sampled("11.0", "Power.Active.Import", "kW"),
                                sampled("22000", "Power.Offered", "W"),
                                *(
                                    sampled(a, "Current.Import", "A", p)
                                    for a, p in (("16.0", "L1"), ("15.0", "L2"), ("17.0", "L3"))
                                ),
                                *(sampled("230", "Voltage", "V", p) for p in ("L1-N", "L2-N")),
                                {
                                    "value": "41",
                                    "measurand": "SoC",
                                    "unit": "Percent",
                                    "location": "EV",
                                },
                                {
                                    "value": "77",
                                    "measurand": "Temperature",
                                    "unit": "Fahrenheit",
                                    "location": "EV",
                                },
                                sampled("50.0", "Frequency", "Hertz"),  # no field: counted
                            ],
                        },
                        {
                            "timestamp": T2,
                            "sampledValue": [  # per-phase energy in kWh, no total: summed
                                sampled("0.6", "Energy.Active.Import.Register", "kWh", "L1"),
                                sampled("0.5", "Energy.Active.Import.Register", "kWh", "L2"),
                                sampled("0.5", "Energy.Active.Import.Register", "kWh", "L3"),
                                sampled("3600", "Power.Active.Import", "W", "L1"),
                                sampled("3700", "Power.Active.Import", "W", "L2"),
                                {"value": "0", "format": "SignedData"},  # skipped
                            ],
                        },
                    ],
                )
            )
            await cp.call(
                call16.StatusNotification(
                    connector_id=0,
                    error_code="GroundFailure",
                    status="Faulted",
                    vendor_error_code="E42",
                    info="RCD tripped",
                )
            )
            answers["stop"] = await cp.call(
                call16.StopTransaction(
                    meter_stop=9000,
                    timestamp=T3,
                    transaction_id=tx,
                    reason="EVDisconnected",
                    transaction_data=[
                        {
                            "timestamp": T3,
                            "sampledValue": [
                                {
                                    "value": "9.0",
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "kWh",
                                    "context": "Transaction.End",
                                }
                            ],
                        }
                    ],
                )
            )

    run(sink, body)
    assert answers["boot"].status == "Accepted" and answers["boot"].interval == 300
    assert answers["auth"].id_tag_info["status"] == "Accepted"
    tx = answers["start"].transaction_id
    assert tx == 1000
    assert answers["stop"].id_tag_info is None
    session = f"CP-16-{tx}"
    pseudonym = PSEUDONYMIZE(TAG)
    ts0, ts1, ts2, ts3 = (parse_ts(t) for t in (T0, T1, T2, T3))
    assert sink.events == [
        Authorize(NOW_NS, "CP-16", pseudonym, AuthorizationStatus.ACCEPTED),
        StatusChange(ts0, "CP-16", 1, ChargePointStatus.PREPARING),
        Authorize(ts0, "CP-16", pseudonym, AuthorizationStatus.ACCEPTED),
        SessionStart(ts0, "CP-16", 1, session, pseudonym, 1500.0),
        Reading(
            ts1,
            "CP-16",
            1,
            session,
            energy_wh=1510.5,
            power_w=11000.0,
            power_offered_w=22000.0,
            current_a=16.0,
            voltage_v=230.0,
            soc_pct=41.0,
            temperature_c=25.0,
        ),
        Reading(ts2, "CP-16", 1, session, energy_wh=1600.0, power_w=7300.0),
        StatusChange(
            NOW_NS,
            "CP-16",
            0,
            ChargePointStatus.FAULTED,
            ChargePointErrorCode.GROUND_FAILURE,
            "E42",
            "RCD tripped",
        ),
        Reading(ts3, "CP-16", 1, session, energy_wh=9000.0),
        SessionStop(ts3, "CP-16", 1, session, 9000.0, "EVDisconnected"),
    ]


def test_v201_session_becomes_canonical_events() -> None:
    sink = Collector()
    answers: dict[str, Any] = {}
    token = {"id_token": TAG, "type": "ISO14443"}

    def meter(ts: str, *values: tuple[float, str, str, int]) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": ts,
                "sampled_value": [
                    {"value": v, "measurand": m, "unit_of_measure": {"unit": u, "multiplier": k}}
                    for v, m, u, k in values
                ],
            }
        ]

    async def body(url: str) -> None:
        async with station(url, "CS-201", "ocpp2.0.1") as cs:
            answers["boot"] = await cs.call(
                call201.BootNotification(
                    charging_station={"model": "M2", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            await cs.call(
                call201.StatusNotification(
                    timestamp=T0, connector_status="Occupied", evse_id=1, connector_id=1
                )
            )
            answers["auth"] = await cs.call(call201.Authorize(id_token=token))
            answers["started"] = await cs.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=T0,
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": "tx-9", "charging_state": "EVConnected"},
                    evse={"id": 1, "connector_id": 1},
                    id_token=token,
                    meter_value=meter(T0, (1.5, "Energy.Active.Import.Register", "kWh", 0)),
                )
            )
            await cs.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=T1,
                    trigger_reason="ChargingStateChanged",
                    seq_no=1,
                    transaction_info={"transaction_id": "tx-9", "charging_state": "Charging"},
                    meter_value=meter(
                        T1,
                        (1510.5, "Energy.Active.Import.Register", "Wh", 0),
                        (11, "Power.Active.Import", "W", 3),  # 11 * 10^3 W
                        (4.1, "SoC", "Percent", 1),
                    ),
                )
            )
            await cs.call(
                call201.MeterValues(
                    evse_id=1, meter_value=meter(T2, (2, "Energy.Active.Import.Register", "kWh", 0))
                )
            )
            await cs.call(
                call201.NotifyEvent(
                    generated_at=T2,
                    seq_no=0,
                    event_data=[
                        {
                            "event_id": 1,
                            "timestamp": T2,
                            "trigger": "Delta",
                            "actual_value": "true",
                            "event_notification_type": "HardWiredNotification",
                            "tech_code": "OverVoltage",
                            "component": {"name": "ChargingStation"},
                            "variable": {"name": "Problem"},
                        }
                    ],
                )
            )
            await cs.call(
                call201.TransactionEvent(
                    event_type="Ended",
                    timestamp=T3,
                    trigger_reason="EVDeparted",
                    seq_no=2,
                    transaction_info={
                        "transaction_id": "tx-9",
                        "charging_state": "Idle",
                        "stopped_reason": "EVDisconnected",
                    },
                    meter_value=meter(T3, (9, "Energy.Active.Import.Register", "kWh", 0)),
                )
            )

    run(sink, body)
    assert answers["boot"].status == "Accepted"
    assert answers["auth"].id_token_info["status"] == "Accepted"
    assert answers["started"].id_token_info["status"] == "Accepted"
    session, pseudonym = "CS-201-tx-9@20261124T081500Z", PSEUDONYMIZE(TAG)
    ts0, ts1, ts2, ts3 = (parse_ts(t) for t in (T0, T1, T2, T3))
    assert sink.events == [
        StatusChange(ts0, "CS-201", 1, ChargePointStatus.PREPARING),
        Authorize(NOW_NS, "CS-201", pseudonym, AuthorizationStatus.ACCEPTED),
        Authorize(ts0, "CS-201", pseudonym, AuthorizationStatus.ACCEPTED),
        SessionStart(ts0, "CS-201", 1, session, pseudonym, 1500.0),
        Reading(ts0, "CS-201", 1, session, energy_wh=1500.0),
        Reading(ts1, "CS-201", 1, session, energy_wh=1510.5, power_w=11000.0, soc_pct=41.0),
        StatusChange(ts1, "CS-201", 1, ChargePointStatus.CHARGING),
        Reading(ts2, "CS-201", 1, session, energy_wh=2000.0),
        StatusChange(
            ts2,
            "CS-201",
            0,
            ChargePointStatus.FAULTED,
            ChargePointErrorCode.OVER_VOLTAGE,
            "OverVoltage",
            "ChargingStation.Problem:",
        ),
        Reading(ts3, "CS-201", 1, session, energy_wh=9000.0),
        StatusChange(ts3, "CS-201", 1, ChargePointStatus.FINISHING),
        SessionStop(ts3, "CS-201", 1, session, 9000.0, "EVDisconnected"),
    ]


@pytest.mark.parametrize(
    ("version", "policy", "expected"),
    [
        ("ocpp1.6", AuthPolicy(AuthMode.MONITOR), "Accepted"),
        ("ocpp1.6", AuthPolicy(AuthMode.ALLOW_LIST, frozenset({PSEUDONYMIZE(TAG)})), "Accepted"),
        ("ocpp1.6", AuthPolicy(AuthMode.ALLOW_LIST, frozenset({"someone-else"})), "Invalid"),
        ("ocpp2.0.1", AuthPolicy(AuthMode.MONITOR), "Accepted"),
        ("ocpp2.0.1", AuthPolicy(AuthMode.ALLOW_LIST), "Invalid"),
    ],
)
def test_authorize_follows_the_policy(version: str, policy: AuthPolicy, expected: str) -> None:
    sink = Collector()
    statuses: list[str] = []

    async def body(url: str) -> None:
        async with station(url, "CP-A", version) as cp:
            if version == "ocpp1.6":
                answer = await cp.call(call16.Authorize(id_tag=TAG.lower()))  # case-insensitive
                statuses.append(answer.id_tag_info["status"])
            else:
                token = {"id_token": TAG, "type": "ISO14443"}
                answer = await cp.call(call201.Authorize(id_token=token))
                statuses.append(answer.id_token_info["status"])

    run(sink, body, auth=policy)
    assert statuses == [expected]
    assert sink.events == [
        Authorize(NOW_NS, "CP-A", PSEUDONYMIZE(TAG), AuthorizationStatus(expected))
    ]


def test_clear_id_tag_never_reaches_events_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = Collector()

    async def body(url: str) -> None:
        async with station(url, "CP-L", "ocpp1.6") as cp:
            await cp.call(call16.Authorize(id_tag=TAG))
            await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=T0)
            )
            # refused messages carrying the tag are not echoed either
            await cp.call(call16.Authorize(id_tag=TAG + "X" * 20), skip_schema_validation=True)
            await cp.call(
                call16.StopTransaction(meter_stop=-5, timestamp=T1, transaction_id=1000, id_tag=TAG)
            )

    run(sink, body)
    assert sink.events and all(
        TAG not in repr(e) and TAG.lower() not in repr(e) for e in sink.events
    )
    # Everything the gateway (and the ocpp library inside it) logs, at any level, and every
    # other record at INFO or above. (websockets' own DEBUG frame trace shows frame contents:
    # production keeps transport loggers at INFO or above.)
    gateway_records = [
        r
        for r in caplog.records
        if r.name.startswith(("ingest", "chargewatch", "ocpp"))
        or (r.levelno >= logging.INFO and not r.name.startswith("tests."))
    ]
    assert gateway_records  # the gateway did log (connections, refusals)
    assert all(TAG not in r.getMessage() for r in gateway_records)


def test_v201_start_without_token_waits_for_the_token() -> None:
    """Plug-in first: Started has no idToken; SessionStart keeps Started's time and register."""
    sink = Collector()
    energy = {"value": 2.5, "unit_of_measure": {"unit": "kWh"}, "context": "Transaction.Begin"}

    async def body(url: str) -> None:
        async with station(url, "CS-P", "ocpp2.0.1") as cs:
            await cs.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=T0,
                    trigger_reason="CablePluggedIn",
                    seq_no=0,
                    transaction_info={"transaction_id": "p-1"},
                    evse={"id": 2},
                    meter_value=[{"timestamp": T0, "sampled_value": [energy]}],
                )
            )
        # the station reconnects before the driver badges: the transaction carries over
        async with station(url, "CS-P", "ocpp2.0.1") as cs:
            await cs.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=T1,
                    trigger_reason="Authorized",
                    seq_no=1,
                    transaction_info={"transaction_id": "p-1"},
                    id_token={"id_token": TAG, "type": "ISO14443"},
                )
            )
            await cs.call(
                call201.TransactionEvent(
                    event_type="Ended",
                    timestamp=T2,
                    trigger_reason="StopAuthorized",
                    seq_no=2,
                    transaction_info={"transaction_id": "p-1", "stopped_reason": "ImmediateReset"},
                )
            )

    run(sink, body)
    ts0, ts1, ts2 = (parse_ts(t) for t in (T0, T1, T2))
    pseudonym = PSEUDONYMIZE(TAG)
    assert sink.events == [
        Reading(ts0, "CS-P", 2, "CS-P-p-1@20261124T081500Z", energy_wh=2500.0),
        Authorize(ts1, "CS-P", pseudonym, AuthorizationStatus.ACCEPTED),
        SessionStart(ts0, "CS-P", 2, "CS-P-p-1@20261124T081500Z", pseudonym, 2500.0),
        SessionStop(ts2, "CS-P", 2, "CS-P-p-1@20261124T081500Z", None, "HardReset"),
    ]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_data_transfer_and_security_events_are_accepted_and_counted(version: str) -> None:
    sink = Collector()
    gateway = make_gateway(sink)
    answers: list[Any] = []

    async def main() -> None:
        async with serving(gateway) as url, station(url, "CP-SEC", version) as cp:
            calls = call16 if version == "ocpp1.6" else call201
            answers.append(await cp.call(calls.DataTransfer(vendor_id="com.acme", data="x")))
            answers.append(
                await cp.call(
                    calls.SecurityEventNotification(
                        type="FirmwareUpdated", timestamp=T0, tech_info="v2"
                    )
                )
            )

    asyncio.run(main())
    assert answers[0].status == "UnknownVendorId"  # no vendor extension is implemented
    assert answers[1] is not None
    assert gateway.stats.security_events == {"FirmwareUpdated": 1}
    assert gateway.messages["DataTransfer"] == 1 and not gateway.rejected
    assert sink.events == []
