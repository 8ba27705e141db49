"""Conformance: what real stations send, valid per OCPP 1.6 and 2.0.1, and what is stored of it.

Every message here goes through the ``ocpp`` library's charge-point side (its schema check on
the way out and on the answer coming back) to the real gateway over a real WebSocket, the way
third-party station simulators talk to the service. Each case asserts the events the gateway
hands its sink (what the spool then writes to InfluxDB): units converted, phases not counted
twice, readings in the right session, nothing lost, and a schema-valid answer for the station.
The last test runs a 1.6 and a 2.0.1 session through ``chargewatch serve`` into a real InfluxDB
and the detectors (``chargewatch detect``) over what was stored there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from chargewatch.events import Reading, SessionStart, SessionStop, StatusChange, parse_ts
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

from .harness import (
    NOW_NS,
    PSEUDONYMIZE,
    Collector,
    mv201,
    of_type,
    run,
    shared_book,
    station,
    sv16,
    sv201,
    tx_event,
)

TAG = "04E1A2B3C4D5E6"
T0 = "2026-11-24T08:15:00Z"
T1 = "2026-11-24T08:30:00Z"
T2 = "2026-11-24T08:45:00Z"
T3 = "2026-11-24T09:00:00Z"
TS0, TS1, TS2, TS3 = (parse_ts(t) for t in (T0, T1, T2, T3))
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
STAMPS = [f"2026-11-24T08:{m:02d}:00Z" for m in range(0, 60, 5)]  # every 5 min
STAMPS_NS = [parse_ts(t) for t in STAMPS]


def statuses(sink: Collector) -> list[StatusChange]:
    return [e for e in sink.events if isinstance(e, StatusChange)]


@pytest.fixture(params=["local", "shared"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The gateway's transaction book: in memory (the default), or the state database's
    (``chargewatch serve``'s), as ``run`` options."""
    if request.param == "local":
        yield {}
        return
    with shared_book(tmp_path) as options:
        yield options


# --------------------------------------------------------------------------------------------
# OCPP 1.6 MeterValues: units, phases, locations, contexts, formats


METER_16: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    ("register-no-measurand-no-unit", [sv16("1234.5")], {"energy_wh": 1234.5}),
    ("register-no-measurand-kwh", [sv16("12.5", unit="kWh")], {"energy_wh": 12500.0}),
    ("register-exponent-kwh", [sv16("1.2E3", ENERGY, "kWh")], {"energy_wh": 1_200_000.0}),
    ("register-exponent-wh", [sv16("4.5e+3", ENERGY, "Wh")], {"energy_wh": 4500.0}),
    ("register-integer-string", [sv16("000123", ENERGY, "Wh")], {"energy_wh": 123.0}),
    (
        "power-kw-and-register",
        [sv16("7.4", POWER, "kW"), sv16("2.25", ENERGY, "kWh")],
        {"power_w": 7400.0, "energy_wh": 2250.0},
    ),
    (
        "power-per-phase-no-total",
        [sv16(w, POWER, "W", phase=p) for w, p in (("3680", "L1"), ("3700", "L2"), ("3620", "L3"))],
        {"power_w": 11000.0},
    ),
    (
        "power-per-phase-and-total",
        [
            sv16("11.0", POWER, "kW"),
            *(sv16("3.7", POWER, "kW", phase=p) for p in ("L1", "L2", "L3")),
        ],
        {"power_w": 11000.0},
    ),
    (
        "power-total-after-phases",
        [
            *(sv16("3.7", POWER, "kW", phase=p) for p in ("L1-N", "L2-N", "L3-N")),
            sv16("11.1", POWER, "kW"),
        ],
        {"power_w": 11100.0},
    ),
    (
        "register-per-phase-line-to-neutral",
        [sv16(k, ENERGY, "kWh", phase=p) for k, p in (("1.5", "L1-N"), ("1.25", "L2-N"))],
        {"energy_wh": 2750.0},
    ),
    (
        "register-total-and-phases",
        [
            sv16("3.0", ENERGY, "kWh", phase="L1"),
            sv16("9.0", ENERGY, "kWh"),
            sv16("3.0", ENERGY, "kWh", phase="L2"),
            sv16("3.0", ENERGY, "kWh", phase="L3"),
        ],
        {"energy_wh": 9000.0},
    ),
    (
        "current-per-phase-and-neutral",
        [
            *(sv16("16.0", "Current.Import", "A", phase=p) for p in ("L1", "L2", "L3")),
            sv16("0.4", "Current.Import", "A", phase="N"),
        ],
        {"current_a": 16.0},
    ),
    (
        "voltage-line-to-neutral",
        [sv16(v, "Voltage", "V", phase=p) for v, p in (("229", "L1-N"), ("231", "L2-N"))],
        {"voltage_v": 230.0},
    ),
    (
        "voltage-line-to-line",
        [sv16("400", "Voltage", "V", phase=p) for p in ("L1-L2", "L2-L3", "L3-L1")],
        {"voltage_v": pytest.approx(400 / 3**0.5)},
    ),
    (
        "outlet-beats-ev-and-inlet",
        [
            sv16("6.9", POWER, "kW", location="EV"),
            sv16("7.0", POWER, "kW", location="Outlet"),
            sv16("7.2", POWER, "kW", location="Inlet"),
        ],
        {"power_w": 7000.0},
    ),
    (
        "outlet-phases-beat-an-ev-total",
        [
            *(
                sv16("16.0", "Current.Import", "A", phase=p, location="Outlet")
                for p in ("L1", "L2")
            ),
            sv16("15.5", "Current.Import", "A", location="EV"),
            *(sv16("3.68", POWER, "kW", phase=p) for p in ("L1", "L2")),
            sv16("7.0", POWER, "kW", location="EV"),
        ],
        {"current_a": 16.0, "power_w": 7360.0},
    ),
    (  # an AC charger under load management reports its limit in A per phase
        "current-offered-with-phase-currents-and-voltages",
        [
            sv16("6", "Current.Offered", "A"),
            *(sv16("6.1", "Current.Import", "A", phase=p) for p in ("L1", "L2", "L3")),
            *(sv16("230", "Voltage", "V", phase=p) for p in ("L1-N", "L2-N", "L3-N")),
            sv16("4.1", POWER, "kW"),
        ],
        {
            "current_a": pytest.approx(6.1),
            "voltage_v": 230.0,
            "power_w": 4100.0,
            "power_offered_w": 4140.0,
        },
    ),
    (
        "current-offered-of-one-phase-line-to-line",
        [
            sv16("16", "Current.Offered", "A"),
            sv16("15.9", "Current.Import", "A", phase="L1"),
            sv16("400", "Voltage", "V", phase="L1-L2"),
        ],
        {
            "current_a": 15.9,
            "voltage_v": pytest.approx(400 / 3**0.5),
            "power_offered_w": pytest.approx(16 * 400 / 3**0.5),
        },
    ),
    (  # totals alone do not say how many phases carry the current: no offered power
        "current-offered-without-phases",
        [
            sv16("16", "Current.Offered", "A"),
            sv16("16", "Current.Import", "A"),
            sv16("230", "Voltage", "V"),
        ],
        {"current_a": 16.0, "voltage_v": 230.0},
    ),
    (  # Power.Offered, when sent, is the offered power
        "power-offered-beats-current-offered",
        [
            sv16("11", "Power.Offered", "kW"),
            sv16("6", "Current.Offered", "A"),
            sv16("6", "Current.Import", "A", phase="L1"),
            sv16("230", "Voltage", "V", phase="L1-N"),
        ],
        {"power_offered_w": 11000.0, "current_a": 6.0, "voltage_v": 230.0},
    ),
    (
        "soc-and-battery-temperature",
        [
            sv16("63", "SoC", "Percent", location="EV"),
            sv16("31.5", "Temperature", "Celsius", location="EV"),
            sv16("48", "Temperature", "Celsius", location="Body"),
        ],
        {"soc_pct": 63.0, "temperature_c": 31.5},
    ),
    (
        "soc-without-unit-or-location",
        [sv16("80", "SoC")],
        {"soc_pct": 80.0},
    ),
    (
        "temperature-kelvin-at-ev",
        [sv16("300.15", "Temperature", "K", location="EV")],
        {"temperature_c": pytest.approx(27.0)},
    ),
    (
        "every-context",
        [
            sv16("1.0", ENERGY, "kWh", context=c)
            for c in ("Sample.Clock", "Sample.Periodic", "Trigger", "Other")
        ],
        {"energy_wh": 1000.0},
    ),
    (
        "signed-and-raw-register",
        [
            sv16('OCMF|{"FV":"1.0"}|{"SA":"ECDSA"}', ENERGY, "Wh", format="SignedData"),
            sv16("5432", ENERGY, "Wh", format="Raw"),
        ],
        {"energy_wh": 5432.0},
    ),
    (
        "unmapped-measurands-alongside",
        [
            sv16("5432", ENERGY, "Wh"),
            sv16("12", "Energy.Active.Export.Register", "Wh"),
            sv16("3", "Energy.Reactive.Import.Register", "kvarh"),
            sv16("0.98", "Power.Factor"),
            sv16("50.02", "Frequency"),
            sv16("32", "Current.Offered", "A"),  # no phases: no offered power from it
            sv16("120", "Energy.Active.Import.Interval", "Wh"),
            sv16("-0.3", "Power.Reactive.Import", "kvar"),
        ],
        {"energy_wh": 5432.0},
    ),
    (
        "idle-meter-noise-below-zero",
        [sv16("-0.002", POWER, "kW"), sv16("-0.01", "Current.Import", "A")],
        {"power_w": -2.0, "current_a": -0.01},
    ),
    (
        "power-offered",
        [sv16("22", "Power.Offered", "kW"), sv16("11000", POWER, "W")],
        {"power_offered_w": 22000.0, "power_w": 11000.0},
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in METER_16], ids=[c[0] for c in METER_16]
)
def test_v16_meter_values_become_one_reading_in_canonical_units(
    values: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-M", "ocpp1.6") as cp:
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=T0)
            )
            answers.append(
                await cp.call(
                    call16.MeterValues(
                        connector_id=1,
                        transaction_id=start.transaction_id,
                        meter_value=[{"timestamp": T1, "sampledValue": values}],
                    ),
                    suppress=False,
                )
            )

    sink, gateway = run(body)
    assert answers and answers[0] is not None and not gateway.rejected
    assert of_type(sink, Reading) == [Reading(TS1, "CP-M", 1, "CP-M-1000", **expected)]


def test_v16_two_connectors_with_and_without_transaction_ids() -> None:
    """MeterValues name their transaction or not (it is optional), connector 0 is the station's
    own meter, several meterValue elements share a message, and StopTransaction brings its
    transactionData: every reading lands on its connector and in its session, none twice."""
    stops: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-2", "ocpp1.6") as cp:
            await cp.call(
                call16.BootNotification(
                    charge_point_vendor="Alfen BV",
                    charge_point_model="NG920-61023",
                    charge_point_serial_number="ACE0123456",
                    charge_box_serial_number="ACE0123456",
                    firmware_version="6.5.0-4225",
                    iccid="8931081519100161467",
                    imsi="204080152180142",
                    meter_type="Eastron SDM630",
                    meter_serial_number="21020033",
                )
            )
            a = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1000, timestamp=T0)
            )
            b = await cp.call(
                call16.StartTransaction(
                    connector_id=2, id_tag="B2", meter_start=50000, timestamp=T0, reservation_id=7
                )
            )
            await cp.call(
                call16.MeterValues(  # no transactionId: the open one on connector 2
                    connector_id=2,
                    meter_value=[
                        {"timestamp": T1, "sampledValue": [sv16("51.0", ENERGY, "kWh")]},
                        {"timestamp": T2, "sampledValue": [sv16("52.0", ENERGY, "kWh")]},
                    ],
                )
            )
            await cp.call(
                call16.MeterValues(  # the station's own meter, outside any session
                    connector_id=0,
                    meter_value=[{"timestamp": T1, "sampledValue": [sv16("99000", ENERGY, "Wh")]}],
                )
            )
            await cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=a.transaction_id,
                    meter_value=[{"timestamp": T1, "sampledValue": [sv16("1500")]}],
                )
            )
            stops.append(
                await cp.call(
                    call16.StopTransaction(
                        meter_stop=53000,
                        timestamp=T3,
                        transaction_id=b.transaction_id,
                        id_tag="B2",
                        reason="Remote",
                        transaction_data=[
                            {
                                "timestamp": T0,
                                "sampledValue": [
                                    sv16("50.0", ENERGY, "kWh", context="Transaction.Begin")
                                ],
                            },
                            {
                                "timestamp": T2,
                                "sampledValue": [
                                    sv16("52.0", ENERGY, "kWh", context="Sample.Periodic"),
                                    sv16("7.3", POWER, "kW", context="Sample.Periodic"),
                                ],
                            },
                            {
                                "timestamp": T3,
                                "sampledValue": [
                                    sv16("53.0", ENERGY, "kWh", context="Transaction.End")
                                ],
                            },
                        ],
                    )
                )
            )
            await cp.call(  # after the stop: connector 2 is outside any session again
                call16.MeterValues(
                    connector_id=2,
                    meter_value=[{"timestamp": T3, "sampledValue": [sv16("53000")]}],
                )
            )

    sink, gateway = run(body)
    assert stops[0].id_tag_info["status"] == "Accepted" and not gateway.rejected
    s1, s2 = "CP-2-1000", "CP-2-1001"
    assert of_type(sink, Reading) == [
        Reading(TS1, "CP-2", 2, s2, energy_wh=51000.0),
        Reading(TS2, "CP-2", 2, s2, energy_wh=52000.0),
        Reading(TS1, "CP-2", 0, None, energy_wh=99000.0),
        Reading(TS1, "CP-2", 1, s1, energy_wh=1500.0),
        Reading(TS0, "CP-2", 2, s2, energy_wh=50000.0),
        Reading(TS2, "CP-2", 2, s2, energy_wh=52000.0, power_w=7300.0),
        Reading(TS3, "CP-2", 2, s2, energy_wh=53000.0),
        Reading(TS3, "CP-2", 2, None, energy_wh=53000.0),
    ]
    assert of_type(sink, SessionStop) == [SessionStop(TS3, "CP-2", 2, s2, 53000.0, "Remote")]
    (boot,) = (e for e in sink.liveness if e.event == "boot")
    assert (boot.vendor, boot.model, boot.firmware) == ("Alfen BV", "NG920-61023", "6.5.0-4225")


def test_v16_meter_values_for_a_transaction_begun_before_a_restart() -> None:
    """A service restart forgets the (in-memory) book: MeterValues naming the transaction put it
    back, so its StopTransaction still finds the connector."""

    async def body(url: str) -> None:
        async with station(url, "CP-R", "ocpp1.6") as cp:
            await cp.call(
                call16.MeterValues(
                    connector_id=3,
                    transaction_id=4711,
                    meter_value=[{"timestamp": T1, "sampledValue": [sv16("7.5", unit="kWh")]}],
                )
            )
            await cp.call(
                call16.StopTransaction(meter_stop=8000, timestamp=T2, transaction_id=4711)
            )

    sink, _ = run(body)
    assert sink.events == [
        Reading(TS1, "CP-R", 3, "CP-R-4711", energy_wh=7500.0),
        SessionStop(TS2, "CP-R", 3, "CP-R-4711", 8000.0, "Local"),
    ]


# --------------------------------------------------------------------------------------------
# OCPP 2.0.1 TransactionEvent


METER_201: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    ("register-default-unit", [sv201(1234.5)], {"energy_wh": 1234.5}),
    ("register-kwh", [sv201(12.5, ENERGY, "kWh")], {"energy_wh": 12500.0}),
    ("register-wh-multiplier-3", [sv201(12.5, ENERGY, "Wh", multiplier=3)], {"energy_wh": 12500.0}),
    (
        "register-kwh-multiplier-minus-3",
        [sv201(12500, ENERGY, "kWh", multiplier=-3)],
        {"energy_wh": 12500.0},
    ),
    ("register-exponent", [sv201(1.2e3, ENERGY, "kWh")], {"energy_wh": 1_200_000.0}),
    ("power-kw-multiplier", [sv201(110, POWER, "W", multiplier=2)], {"power_w": 11000.0}),
    (
        "power-per-phase-and-total",
        [sv201(3.7, POWER, "kW", phase=p) for p in ("L1", "L2", "L3")] + [sv201(11.1, POWER, "kW")],
        {"power_w": 11100.0},
    ),
    (
        "register-per-phase-only",
        [sv201(2.0, ENERGY, "kWh", phase=p) for p in ("L1-N", "L2-N", "L3-N")],
        {"energy_wh": 6000.0},
    ),
    (  # 2.0.1 has no Temperature measurand (its MeasurandEnumType dropped it)
        "soc-at-the-ev",
        [sv201(55, "SoC", "Percent", location="EV"), sv201(55.5, "SoC", multiplier=0)],
        {"soc_pct": 55.5},
    ),
    (
        "signed-register",
        [
            sv201(
                5432,
                ENERGY,
                "Wh",
                context="Sample.Clock",
                signed_meter_value={
                    "signed_meter_data": "T0NNRnx7fQ==",
                    "signing_method": "ECDSA-secp256r1-SHA256",
                    "encoding_method": "OCMF",
                    "public_key": "",
                },
            )
        ],
        {"energy_wh": 5432.0},
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in METER_201], ids=[c[0] for c in METER_201]
)
def test_v201_meter_values_become_one_reading_in_canonical_units(
    values: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CS-M", "ocpp2.0.1") as cs:
            await cs.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=T0,
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": "m1"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": TAG, "type": "ISO14443"},
                )
            )
            answers.append(
                await cs.call(
                    call201.TransactionEvent(
                        event_type="Updated",
                        timestamp=T1,
                        trigger_reason="MeterValuePeriodic",
                        seq_no=1,
                        transaction_info={"transaction_id": "m1"},
                        meter_value=[mv201(T1, *values)],
                    ),
                    suppress=False,
                )
            )
            answers.append(
                await cs.call(
                    call201.MeterValues(evse_id=1, meter_value=[mv201(T2, *values)]),
                    suppress=False,
                )
            )

    sink, gateway = run(body)
    assert len(answers) == 2 and not gateway.rejected
    assert of_type(sink, Reading) == [
        Reading(TS1, "CS-M", 1, "CS-M-m1@20261124T081500Z", **expected),
        Reading(TS2, "CS-M", 1, "CS-M-m1@20261124T081500Z", **expected),
    ]


def test_v201_plug_in_first_session_with_charging_state_transitions() -> None:
    """E02 (cable plugin first): Started without a token, the driver badges, the car charges,
    pauses full, the driver stops; the events carry seqNo, numberOfPhasesUsed, per-phase power
    with a total, and Ended its stoppedReason and Transaction.End register."""
    answers: list[Any] = []
    tx = "9f2c1e7a-5b3d-4c1e-8a7f-0e6d2b1c3a4f"  # stations use UUIDs
    emaid = {"id_token": "DE8ACC1234567890", "type": "eMAID"}

    def meter(i: int, kwh: float, kw: float, context: str = "Sample.Periodic") -> dict[str, Any]:
        return mv201(
            STAMPS[i],
            sv201(kwh, ENERGY, "kWh", context=context, location="Outlet"),
            sv201(kw, POWER, "kW", context=context),
            *(sv201(kw / 3, POWER, "kW", context=context, phase=p) for p in ("L1", "L2", "L3")),
            sv201(16.0, "Current.Import", "A", context=context, phase="L1"),
            sv201(230.0, "Voltage", "V", context=context, phase="L1-N"),
        )

    async def body(url: str) -> None:
        async with station(url, "CS-E02", "ocpp2.0.1") as cs:
            answers.append(
                await cs.call(
                    call201.BootNotification(
                        charging_station={
                            "model": "Terra AC W22-T-RD-M",
                            "vendor_name": "ABB",
                            "serial_number": "TACW2242321G0123",
                            "firmware_version": "1.6.12",
                            "modem": {"iccid": "8931081519100161467", "imsi": "204080152180142"},
                        },
                        reason="PowerUp",
                    )
                )
            )
            answers.append(
                await cs.call(
                    call201.StatusNotification(
                        timestamp=STAMPS[0], connector_status="Occupied", evse_id=1, connector_id=1
                    )
                )
            )
            start_mv = mv201(STAMPS[0], sv201(100.0, ENERGY, "kWh", context="Transaction.Begin"))
            await cs.call(
                tx_event(
                    "Started",
                    STAMPS[0],
                    "CablePluggedIn",
                    0,
                    {"transaction_id": tx, "charging_state": "EVConnected"},
                    evse={"id": 1, "connector_id": 1},
                    meter_value=[start_mv],
                )
            )
            answers.append(await cs.call(call201.Authorize(id_token=emaid)))
            await cs.call(
                tx_event(
                    "Updated", STAMPS[1], "Authorized", 1, {"transaction_id": tx}, id_token=emaid
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[1],
                    "ChargingStateChanged",
                    2,
                    {"transaction_id": tx, "charging_state": "Charging"},
                    number_of_phases_used=3,
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[2],
                    "MeterValuePeriodic",
                    3,
                    {"transaction_id": tx, "charging_state": "Charging"},
                    meter_value=[meter(2, 101.8, 11.0)],
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[3],
                    "ChargingStateChanged",
                    4,
                    {"transaction_id": tx, "charging_state": "SuspendedEV"},
                    meter_value=[meter(3, 102.5, 0.0, "Trigger")],
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[4],
                    "StopAuthorized",
                    5,
                    {"transaction_id": tx, "charging_state": "EVConnected"},
                    id_token=emaid,
                )
            )
            answers.append(
                await cs.call(
                    tx_event(
                        "Ended",
                        STAMPS[5],
                        "EVCommunicationLost",
                        6,
                        {
                            "transaction_id": tx,
                            "charging_state": "Idle",
                            "stopped_reason": "EVDisconnected",
                            "time_spent_charging": 600,
                        },
                        meter_value=[
                            mv201(STAMPS[5], sv201(102.5, ENERGY, "kWh", context="Transaction.End"))
                        ],
                    ),
                    suppress=False,
                )
            )
            await cs.call(
                call201.StatusNotification(
                    timestamp=STAMPS[5], connector_status="Available", evse_id=1, connector_id=1
                )
            )

    sink, gateway = run(body)
    assert answers[0].status == "Accepted" and answers[2].id_token_info["status"] == "Accepted"
    assert not gateway.rejected
    ts = STAMPS_NS
    session, who = f"CS-E02-{tx}@20261124T080000Z", PSEUDONYMIZE(emaid["id_token"])
    assert of_type(sink, SessionStart) == [SessionStart(ts[0], "CS-E02", 1, session, who, 100000.0)]
    assert of_type(sink, SessionStop) == [
        SessionStop(ts[5], "CS-E02", 1, session, 102500.0, "EVDisconnected")
    ]
    assert of_type(sink, Reading) == [
        Reading(ts[0], "CS-E02", 1, session, energy_wh=100000.0),
        Reading(
            ts[2],
            "CS-E02",
            1,
            session,
            energy_wh=101800.0,
            power_w=11000.0,
            current_a=16.0,
            voltage_v=230.0,
        ),
        Reading(
            ts[3],
            "CS-E02",
            1,
            session,
            energy_wh=102500.0,
            power_w=0.0,
            current_a=16.0,
            voltage_v=230.0,
        ),
        Reading(ts[5], "CS-E02", 1, session, energy_wh=102500.0),
    ]
    statuses = [(e.ts_ns, e.connector_id, e.status.value) for e in of_type(sink, StatusChange)]
    assert statuses == [
        (ts[0], 1, "Preparing"),  # Occupied (EVConnected says the same: not again)
        (ts[1], 1, "Charging"),
        (ts[3], 1, "SuspendedEV"),
        (ts[4], 1, "Preparing"),
        (ts[5], 1, "Finishing"),
        (ts[5], 1, "Available"),
    ]
    (boot,) = (e for e in sink.liveness if e.event == "boot")
    assert (boot.vendor, boot.model, boot.firmware, boot.reason) == (
        "ABB",
        "Terra AC W22-T-RD-M",
        "1.6.12",
        "PowerUp",
    )


def test_v201_offline_queue_and_resent_events_after_a_lost_answer(book: dict[str, Any]) -> None:
    """The station loses its connection mid-session, queues its events (offline=true) and sends
    them on reconnecting, the last one twice (the answer to the first was lost). Nothing is
    lost, nothing is stored twice differently: a resent event gives the very same events."""
    tx = "OFF-1"
    token = {"id_token": "A1B2C3D4", "type": "ISO15693"}

    def energy(ts: str, kwh: float) -> list[dict[str, Any]]:
        return [mv201(ts, sv201(kwh, ENERGY, "kWh"))]

    ended = tx_event(
        "Ended",
        T3,
        "EVDeparted",
        4,
        {"transaction_id": tx, "stopped_reason": "EVDisconnected", "charging_state": "Idle"},
        offline=True,
        meter_value=energy(T3, 30.0),
    )

    async def body(url: str) -> None:
        async with station(url, "CS-OFF", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started",
                    T0,
                    "Authorized",
                    0,
                    {"transaction_id": tx, "charging_state": "Charging"},
                    evse={"id": 2, "connector_id": 1},
                    id_token=token,
                    meter_value=energy(T0, 10.0),
                )
            )
        async with station(url, "CS-OFF", "ocpp2.0.1") as cs:  # back online, queue replayed
            for seq_no, (ts, kwh) in enumerate(((T1, 15.0), (T2, 20.0)), start=1):
                await cs.call(
                    tx_event(
                        "Updated",
                        ts,
                        "MeterValuePeriodic",
                        seq_no,
                        {"transaction_id": tx},
                        offline=True,
                        meter_value=energy(ts, kwh),
                    )
                )
            await cs.call(ended)
        async with station(url, "CS-OFF", "ocpp2.0.1") as cs:  # the answer was lost: again
            await cs.call(ended)

    sink, gateway = run(body, **book)
    session = "CS-OFF-OFF-1@20261124T081500Z"
    assert not gateway.rejected
    assert of_type(sink, Reading) == [
        Reading(ts, "CS-OFF", 2, session, energy_wh=wh)
        for ts, wh in (
            (TS0, 10000.0),
            (TS1, 15000.0),
            (TS2, 20000.0),
            (TS3, 30000.0),
            (TS3, 30000.0),
        )
    ]
    stop = SessionStop(TS3, "CS-OFF", 2, session, 30000.0, "EVDisconnected")
    assert of_type(sink, SessionStop) == [stop, stop]
    assert of_type(sink, SessionStart) == [
        SessionStart(TS0, "CS-OFF", 2, session, PSEUDONYMIZE("A1B2C3D4"), 10000.0)
    ]


def test_v201_a_reused_transaction_id_opens_a_new_session(book: dict[str, Any]) -> None:
    """A simulator numbers its transactions 1, 2, 3... and starts again after a reboot: the
    second transaction "7" is a session of its own, with its own start, stop and readings (the
    energy billed to each driver is that session's). What must stay one session still does: the
    first one's Ended re-sent after a lost answer, the second one's Started re-sent (offline),
    an Updated of the first queued offline and delivered after the second began; and the
    second one's events that name no EVSE, and its MeterValues, go to the second."""
    tx = {"transaction_id": "7"}
    late = "2026-11-24T08:07:00Z"  # between the first transaction's Updated and its Ended

    def kwh(ts: str, value: float) -> list[dict[str, Any]]:
        return [mv201(ts, sv201(value, ENERGY, "kWh"))]

    first_ended = tx_event(
        "Ended",
        STAMPS[2],
        "StopAuthorized",
        2,
        tx | {"stopped_reason": "Local"},
        meter_value=kwh(STAMPS[2], 15.0),
    )
    second_started = tx_event(
        "Started",
        STAMPS[4],
        "Authorized",
        0,
        tx | {"charging_state": "Charging"},
        evse={"id": 1, "connector_id": 1},
        id_token={"id_token": "TOKEN-B", "type": "ISO14443"},
        meter_value=kwh(STAMPS[4], 15.0),
        offline=True,
    )

    async def body(url: str) -> None:
        async with station(url, "CS-RE", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started",
                    STAMPS[0],
                    "Authorized",
                    0,
                    tx | {"charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "TOKEN-A", "type": "ISO14443"},
                    meter_value=kwh(STAMPS[0], 10.0),
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[1],
                    "MeterValuePeriodic",
                    1,
                    tx,
                    meter_value=kwh(STAMPS[1], 12.0),
                )
            )
            await cs.call(first_ended)
        async with station(url, "CS-RE", "ocpp2.0.1") as cs:  # the answer was lost: again
            await cs.call(first_ended)
            await cs.call(
                call201.BootNotification(
                    charging_station={"model": "Sim", "vendor_name": "Sim"}, reason="PowerUp"
                )
            )
            await cs.call(second_started)  # the reboot restarted the numbering
        async with station(url, "CS-RE", "ocpp2.0.1") as cs:  # that answer was lost too
            await cs.call(second_started)
            await cs.call(
                tx_event(
                    "Updated",
                    late,
                    "MeterValuePeriodic",
                    1,
                    tx,
                    offline=True,
                    meter_value=kwh(late, 13.0),
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    STAMPS[5],
                    "MeterValuePeriodic",
                    1,
                    tx,
                    meter_value=kwh(STAMPS[5], 18.0),
                )
            )
            await cs.call(call201.MeterValues(evse_id=1, meter_value=kwh(STAMPS[6], 19.0)))
            await cs.call(
                tx_event(
                    "Ended",
                    STAMPS[7],
                    "EVDeparted",
                    2,
                    tx | {"stopped_reason": "EVDisconnected"},
                    meter_value=kwh(STAMPS[7], 20.0),
                )
            )

    sink, gateway = run(body, **book)
    assert not gateway.rejected
    ts = STAMPS_NS
    one, two = "CS-RE-7@20261124T080000Z", "CS-RE-7@20261124T082000Z"
    assert of_type(sink, SessionStart) == [
        SessionStart(ts[0], "CS-RE", 1, one, PSEUDONYMIZE("TOKEN-A"), 10000.0),
        SessionStart(ts[4], "CS-RE", 1, two, PSEUDONYMIZE("TOKEN-B"), 15000.0),
    ]
    first_stop = SessionStop(ts[2], "CS-RE", 1, one, 15000.0, "Local")
    assert of_type(sink, SessionStop) == [
        first_stop,
        first_stop,
        SessionStop(ts[7], "CS-RE", 1, two, 20000.0, "EVDisconnected"),
    ]
    readings = [
        (r.ts_ns, r.connector_id, r.session_id, r.energy_wh) for r in of_type(sink, Reading)
    ]
    assert readings == [
        (ts[0], 1, one, 10000.0),
        (ts[1], 1, one, 12000.0),
        (ts[2], 1, one, 15000.0),
        (ts[2], 1, one, 15000.0),
        (ts[4], 1, two, 15000.0),
        (ts[4], 1, two, 15000.0),
        (parse_ts(late), 1, one, 13000.0),
        (ts[5], 1, two, 18000.0),
        (ts[6], 1, two, 19000.0),
        (ts[7], 1, two, 20000.0),
    ]


def test_v201_a_late_event_of_an_ended_transaction_leaves_the_next_ones_status() -> None:
    """Transaction "1" ends on EVSE 1 and the next one, "1" again, charges there; an Updated of
    the first (SuspendedEV, queued offline) comes late: stored at its time, in the first
    session, but the EVSE's Occupied now is the second transaction's Charging."""
    tx = {"transaction_id": "1"}
    late = "2026-11-24T08:20:00Z"

    async def body(url: str) -> None:
        async with station(url, "CS-H", "ocpp2.0.1") as cs:
            for message in (
                tx_event(
                    "Started",
                    T0,
                    "Authorized",
                    0,
                    tx | {"charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "K1", "type": "KeyCode"},
                ),
                tx_event("Ended", T1, "EVDeparted", 1, tx | {"charging_state": "Idle"}),
                tx_event(
                    "Started",
                    T2,
                    "Authorized",
                    0,
                    tx | {"charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "K2", "type": "KeyCode"},
                ),
                tx_event(
                    "Updated",
                    late,
                    "ChargingStateChanged",
                    1,
                    tx | {"charging_state": "SuspendedEV"},
                    offline=True,
                ),
                call201.StatusNotification(
                    timestamp=T3, connector_status="Occupied", evse_id=1, connector_id=1
                ),
            ):
                await cs.call(message)

    sink, _ = run(body)
    assert [(e.ts_ns, e.status.value) for e in statuses(sink)] == [
        (TS0, "Charging"),
        (TS1, "Finishing"),
        (TS2, "Charging"),
        (parse_ts(late), "SuspendedEV"),
        (TS3, "Charging"),
    ]


def test_v201_a_started_of_an_open_id_at_another_time_is_a_new_session() -> None:
    """A station reset mid-transaction (no Ended sent) numbers its next transaction as the one it
    lost: the Started of the same id at another time is a new session, not the old one going
    on; the lost one keeps its readings. seqNo restarts at 0 in both (2.0.1 Edition 2
    recommends that), so it cannot be what tells them apart."""
    tx = {"transaction_id": "1"}

    def started(ts: str, kwh: float) -> Any:
        return tx_event(
            "Started",
            ts,
            "Authorized",
            0,
            tx,
            evse={"id": 2, "connector_id": 1},
            id_token={"id_token": "K1", "type": "KeyCode"},
            meter_value=[mv201(ts, sv201(kwh, ENERGY, "kWh"))],
        )

    async def body(url: str) -> None:
        async with station(url, "CS-RST", "ocpp2.0.1") as cs:
            await cs.call(started(T0, 1.0))
            await cs.call(started(T2, 3.0))
            await cs.call(
                call201.MeterValues(evse_id=2, meter_value=[mv201(T3, sv201(4.0, ENERGY, "kWh"))])
            )

    sink, _ = run(body)
    assert [(r.ts_ns, r.session_id) for r in of_type(sink, Reading)] == [
        (TS0, "CS-RST-1@20261124T081500Z"),
        (TS2, "CS-RST-1@20261124T084500Z"),
        (TS3, "CS-RST-1@20261124T084500Z"),
    ]
    assert [s.session_id for s in of_type(sink, SessionStart)] == [
        "CS-RST-1@20261124T081500Z",
        "CS-RST-1@20261124T084500Z",
    ]


def test_v16_stop_transaction_resent_after_a_lost_answer(book: dict[str, Any]) -> None:
    """A StopTransaction whose answer was lost is sent again: the same stop, same connector."""

    async def body(url: str) -> None:
        async with station(url, "CP-S", "ocpp1.6") as cp:
            start = await cp.call(
                call16.StartTransaction(connector_id=2, id_tag=TAG, meter_start=10, timestamp=T0)
            )
            stop = call16.StopTransaction(
                meter_stop=2010,
                timestamp=T1,
                transaction_id=start.transaction_id,
                reason="EVDisconnected",
                transaction_data=[{"timestamp": T1, "sampledValue": [sv16("2010")]}],
            )
            await cp.call(stop)
        async with station(url, "CP-S", "ocpp1.6") as cp:
            await cp.call(stop)

    sink, _ = run(body, **book)
    stop = SessionStop(TS1, "CP-S", 2, "CP-S-1000", 2010.0, "EVDisconnected")
    reading = Reading(TS1, "CP-S", 2, "CP-S-1000", energy_wh=2010.0)
    assert of_type(sink, SessionStop) == [stop, stop]
    assert of_type(sink, Reading) == [reading, reading]


def test_v201_charging_state_after_a_fault_and_occupied() -> None:
    """Charging, a fault (StatusNotification Faulted), cleared (Occupied), charging again: the
    stored status ends as Charging, not as the Preparing that Occupied alone maps to."""
    tx = {"transaction_id": "F-1", "charging_state": "Charging"}

    async def body(url: str) -> None:
        async with station(url, "CS-F", "ocpp2.0.1") as cs:
            await cs.call(
                call201.StatusNotification(
                    timestamp=STAMPS[0], connector_status="Occupied", evse_id=1, connector_id=1
                )
            )
            await cs.call(
                tx_event(
                    "Started",
                    STAMPS[0],
                    "Authorized",
                    0,
                    tx,
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "K1", "type": "KeyCode"},
                )
            )
            for i, status in ((1, "Faulted"), (2, "Occupied")):
                await cs.call(
                    call201.StatusNotification(
                        timestamp=STAMPS[i], connector_status=status, evse_id=1, connector_id=1
                    )
                )
            await cs.call(tx_event("Updated", STAMPS[3], "ChargingStateChanged", 1, tx))

    sink, _ = run(body)
    statuses = [(e.ts_ns, e.status.value) for e in of_type(sink, StatusChange)]
    ts = STAMPS_NS
    assert statuses == [
        (ts[0], "Preparing"),
        (ts[0], "Charging"),
        (ts[1], "Faulted"),
        (ts[2], "Charging"),  # Occupied: the fault cleared, the transaction charges again
    ]


def test_v201_occupied_during_a_charging_transaction_is_charging() -> None:
    """Started says Charging (Plug and Charge), then StatusNotification Occupied for the same
    instant: stored as Charging, not also as a Preparing of the same instant (which of the two
    a reader takes for the latest is then a matter of chance) that lasts the whole session."""

    async def body(url: str) -> None:
        async with station(url, "CS-PNC", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started",
                    T0,
                    "EVDetected",
                    0,
                    {"transaction_id": "P-1", "charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "DEABCC12345678901", "type": "eMAID"},
                )
            )
            await cs.call(
                call201.StatusNotification(
                    timestamp=T0, connector_status="Occupied", evse_id=1, connector_id=1
                )
            )
            await cs.call(
                tx_event(
                    "Updated",
                    T1,
                    "MeterValuePeriodic",
                    1,
                    {"transaction_id": "P-1", "charging_state": "Charging"},
                )
            )

    sink, _ = run(body)
    statuses = [(e.ts_ns, e.status.value) for e in of_type(sink, StatusChange)]
    assert statuses == [(TS0, "Charging"), (TS0, "Charging")]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_meter_value_elements_sharing_a_timestamp_make_one_reading(version: str) -> None:
    """Some stations send each measurand (or phase) as its own meterValue element, all with the
    same timestamp: they are one sample, and the phases are summed (as readings of their own,
    each phase's power would stand for the connector's at that instant)."""

    def element(value: float, measurand: str, unit: str, phase: str | None) -> dict[str, Any]:
        if version == "ocpp1.6":
            more = {"phase": phase} if phase else {}
            return {"timestamp": T1, "sampledValue": [sv16(f"{value}", measurand, unit, **more)]}
        more = {"phase": phase} if phase else {}
        return mv201(T1, sv201(value, measurand, unit, **more))

    elements = [
        element(12.0, ENERGY, "kWh", None),
        *(element(3.6, POWER, "kW", p) for p in ("L1", "L2", "L3")),
        element(230.0, "Voltage", "V", "L1-N"),
    ]

    async def body(url: str) -> None:
        async with station(url, "CS-SPLIT", version) as cs:
            if version == "ocpp1.6":
                await cs.call(call16.MeterValues(connector_id=1, meter_value=elements))
            else:
                await cs.call(call201.MeterValues(evse_id=1, meter_value=elements))

    sink, _ = run(body)
    assert sink.events == [
        Reading(TS1, "CS-SPLIT", 1, None, energy_wh=12000.0, power_w=10800.0, voltage_v=230.0)
    ]


# --------------------------------------------------------------------------------------------
# Everything else a station says: boot, heartbeat, vendor extensions, security, unknown actions


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_data_transfer_of_a_vendor_without_implementation_is_unknown_vendor(version: str) -> None:
    """OCPP 1.6 section 4.3 / 2.0.1 P02: a recipient without an implementation for the vendorId
    SHALL answer UnknownVendorId, with no data; the gateway implements no vendor's extension."""
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-DT", version) as cp:
            calls = call16 if version == "ocpp1.6" else call201
            for message_id, data in ((None, None), ("MeterSerial", '{"serial": "21020033"}')):
                answers.append(
                    await cp.call(
                        calls.DataTransfer(vendor_id="com.alfen", message_id=message_id, data=data),
                        suppress=False,
                    )
                )

    sink, gateway = run(body)
    assert [(a.status, a.data) for a in answers] == [("UnknownVendorId", None)] * 2
    assert gateway.messages["DataTransfer"] == 2 and not gateway.rejected and sink.events == []


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_unknown_actions_get_not_implemented_and_the_station_carries_on(version: str) -> None:
    """OCPP-J: an action the receiver does not know is answered with a CALLERROR NotImplemented
    (an action of the version it does not take: NotSupported); the connection stays usable."""
    frames: list[Any] = []

    async def body(url: str) -> None:
        async with connect(f"{url}/CP-U", subprotocols=[Subprotocol(version)]) as ws:
            for frame in (
                [2, "u1", "VendorSpecificPing", {"x": 1}],
                [2, "u2", "GetConfiguration" if version == "ocpp1.6" else "GetVariables", {}],
                [2, "u3", "Heartbeat", {}],
            ):
                await ws.send(orjson.dumps(frame).decode())
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))

    _, gateway = run(body)
    assert [f[:3] for f in frames[:2]] == [[4, "u1", "NotImplemented"], [4, "u2", "NotSupported"]]
    assert all(isinstance(f[3], str) and f[4] == {} for f in frames[:2])
    assert frames[2][:2] == [3, "u3"] and parse_ts(frames[2][2]["currentTime"]) == NOW_NS
    assert gateway.rejected == {"unknown_action": 1, "unsupported_action": 1}


def test_security_extension_messages_get_valid_answers_or_not_supported() -> None:
    """SecurityEventNotification is answered and counted; the messages of features the service
    does not offer (certificate signing, 15118 certificates, charging limits and needs, logs)
    get a CALLERROR NotSupported the library accepts, and nothing is stored of them."""
    answers: list[Any] = []
    errors: list[str] = []
    csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"

    async def ask(cp: Any, payload: Any) -> None:
        try:
            answers.append(await cp.call(payload, suppress=False))
        except OCPPError as exc:
            errors.append(f"{type(payload).__name__}:{exc.code}")

    async def body(url: str) -> None:
        async with station(url, "CP-SEC16", "ocpp1.6") as cp:
            await ask(
                cp,
                call16.SecurityEventNotification(
                    type="TamperDetectionActivated", timestamp=T0, tech_info=None
                ),
            )
            await ask(cp, call16.SignCertificate(csr=csr))
            await ask(cp, call16.LogStatusNotification(status="Idle", request_id=None))
            await ask(cp, call16.SignedFirmwareStatusNotification(status="Idle", request_id=None))
        async with station(url, "CS-SEC201", "ocpp2.0.1") as cs:
            await ask(
                cs,
                call201.SecurityEventNotification(
                    type="StartupOfTheDevice", timestamp=T0, tech_info="boot"
                ),
            )
            await ask(
                cs, call201.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")
            )
            await ask(cs, call201.LogStatusNotification(status="Idle", request_id=None))
            await ask(cs, call201.FirmwareStatusNotification(status="Idle", request_id=None))
            await ask(
                cs,
                call201.NotifyEVChargingNeeds(
                    evse_id=1,
                    charging_needs={
                        "requested_energy_transfer": "AC_three_phase",
                        "ac_charging_parameters": {
                            "energy_amount": 30000,
                            "ev_min_current": 6,
                            "ev_max_current": 32,
                            "ev_max_voltage": 400,
                        },
                    },
                ),
            )
            await ask(
                cs,
                call201.NotifyChargingLimit(
                    evse_id=1,
                    charging_limit={"charging_limit_source": "EMS", "is_grid_critical": False},
                ),
            )
            await ask(cs, call201.ClearedChargingLimit(charging_limit_source="EMS", evse_id=1))
            await ask(cs, call201.Heartbeat())

    sink, gateway = run(body)
    assert errors == [
        "SignCertificate:NotSupported",
        "SignCertificate:NotSupported",
        "NotifyEVChargingNeeds:NotSupported",
        "NotifyChargingLimit:NotSupported",
        "ClearedChargingLimit:NotSupported",
    ]
    assert len(answers) == 7  # the status notifications, the security events, the heartbeat
    assert gateway.stats.security_events == {"TamperDetectionActivated": 1, "StartupOfTheDevice": 1}
    assert sink.events == []


ID_TOKENS = [
    ("ISO14443", "04E1A2B3C4D5E6"),
    ("ISO15693", "E0040150A1B2C3D4"),
    ("eMAID", "NL-TNM-C12345678-X"),
    ("Central", "remote-start-7f3a"),
    ("KeyCode", "1234"),
    ("Local", "LOCAL-CARD-9"),
    ("MacAddress", "00:1A:2B:3C:4D:5E"),
    ("NoAuthorization", ""),  # free charging: an empty idToken
]


@pytest.mark.parametrize(("kind", "token"), ID_TOKENS, ids=[k for k, _ in ID_TOKENS])
def test_v201_every_id_token_type_opens_a_session_of_its_pseudonym(kind: str, token: str) -> None:
    answers: list[Any] = []
    id_token = {"id_token": token, "type": kind}

    async def body(url: str) -> None:
        async with station(url, "CS-TOK", "ocpp2.0.1") as cs:
            if kind != "NoAuthorization":
                answers.append(await cs.call(call201.Authorize(id_token=id_token), suppress=False))
            answers.append(
                await cs.call(
                    tx_event(
                        "Started",
                        T0,
                        "RemoteStart" if kind == "Central" else "Authorized",
                        0,
                        {"transaction_id": f"tok-{kind}", "remote_start_id": 7}
                        if kind == "Central"
                        else {"transaction_id": f"tok-{kind}"},
                        evse={"id": 1},
                        id_token=id_token,
                    ),
                    suppress=False,
                )
            )

    sink, gateway = run(body)
    assert all(a.id_token_info["status"] == "Accepted" for a in answers) and not gateway.rejected
    session = f"CS-TOK-tok-{kind}@20261124T081500Z"
    who = PSEUDONYMIZE(token) if token else PSEUDONYMIZE(f"NoAuthorization:{session}")
    assert of_type(sink, SessionStart) == [SessionStart(TS0, "CS-TOK", 1, session, who, None)]
    assert not token or all(token not in repr(e) for e in sink.events)


def test_v201_sessions_of_no_one_are_not_one_card_in_two_places() -> None:
    """Free charging (idToken type NoAuthorization, empty) at two stations at once, and a
    plug-in-first session that ends before any token: each session has a pseudonym of its own,
    never the empty token's, which would make them one card at two stations at once."""
    free = {"id_token": "", "type": "NoAuthorization"}

    async def body(url: str) -> None:
        for station_id in ("CS-FREE-1", "CS-FREE-2"):
            async with station(url, station_id, "ocpp2.0.1") as cs:
                await cs.call(
                    tx_event(
                        "Started",
                        T0,
                        "CablePluggedIn",
                        0,
                        {"transaction_id": "1"},
                        evse={"id": 1},
                        id_token=free,
                    )
                )
        async with station(url, "CS-FREE-3", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started", T0, "CablePluggedIn", 0, {"transaction_id": "1"}, evse={"id": 1}
                )
            )
            await cs.call(
                tx_event(
                    "Ended",
                    T1,
                    "EVDeparted",
                    1,
                    {"transaction_id": "1", "stopped_reason": "EVDisconnected"},
                )
            )

    sink, _ = run(body)
    starts = of_type(sink, SessionStart)
    assert [s.session_id for s in starts] == [f"CS-FREE-{n}-1@20261124T081500Z" for n in (1, 2, 3)]
    pseudonyms = {s.id_pseudonym for s in starts}
    assert len(pseudonyms) == 3 and PSEUDONYMIZE("") not in pseudonyms


@pytest.mark.parametrize(
    ("stamp", "expected_ns"),
    [
        ("2026-11-24T08:15:00Z", TS0),
        ("2026-11-24T08:15:00.250Z", TS0 + 250_000_000),
        ("2026-11-24T08:15:00.123456Z", TS0 + 123_456_000),
        ("2026-11-24T09:15:00+01:00", TS0),
        ("2026-11-24T03:15:00.5-05:00", TS0 + 500_000_000),
        ("2026-11-24T08:15:00.000+00:00", TS0),
    ],
)
def test_v16_timestamps_with_offsets_and_fractions_are_the_same_instant(
    stamp: str, expected_ns: int
) -> None:
    async def body(url: str) -> None:
        async with station(url, "CP-TS", "ocpp1.6") as cp:
            await cp.call(
                call16.MeterValues(
                    connector_id=1, meter_value=[{"timestamp": stamp, "sampledValue": [sv16("1")]}]
                ),
                suppress=False,
            )
            await cp.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available", timestamp=stamp
                ),
                suppress=False,
            )

    sink, _ = run(body)
    assert [e.ts_ns for e in sink.events] == [expected_ns, expected_ns]


STATUSES_16 = [
    (status, error)
    for status in (
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
    )
    for error in ("NoError",)
] + [
    ("Faulted", error)
    for error in (
        "ConnectorLockFailure",
        "EVCommunicationError",
        "GroundFailure",
        "HighTemperature",
        "InternalError",
        "LocalListConflict",
        "OtherError",
        "OverCurrentFailure",
        "OverVoltage",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ReaderFailure",
        "ResetFailure",
        "UnderVoltage",
        "WeakSignal",
    )
]


def test_v16_every_status_and_error_code_is_stored_as_sent() -> None:
    async def body(url: str) -> None:
        async with station(url, "CP-ST", "ocpp1.6") as cp:
            for status, error in STATUSES_16:
                await cp.call(
                    call16.StatusNotification(
                        connector_id=2, error_code=error, status=status, timestamp=T0
                    ),
                    suppress=False,
                )

    sink, gateway = run(body)
    assert not gateway.rejected
    stored = [(e.connector_id, e.status.value, e.error_code.value) for e in statuses(sink)]
    assert stored == [(2, status, error) for status, error in STATUSES_16]


def test_v201_status_notifications_map_onto_the_canonical_statuses() -> None:
    sent = ["Available", "Occupied", "Reserved", "Unavailable", "Faulted", "Available"]

    async def body(url: str) -> None:
        async with station(url, "CS-ST", "ocpp2.0.1") as cs:
            for status in sent:
                await cs.call(
                    call201.StatusNotification(
                        timestamp=T0, connector_status=status, evse_id=2, connector_id=1
                    ),
                    suppress=False,
                )

    sink, _ = run(body)
    stored = [(e.connector_id, e.status.value, e.error_code.value) for e in statuses(sink)]
    assert stored == [
        (2, "Available", "NoError"),
        (2, "Preparing", "NoError"),
        (2, "Reserved", "NoError"),
        (2, "Unavailable", "NoError"),
        (2, "Faulted", "OtherError"),
        (2, "Available", "NoError"),
    ]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_a_stop_with_more_sampled_data_than_a_message_may_hold_is_still_stored(
    version: str,
) -> None:
    """A ten-hour session's stop carrying its sampled data every quarter hour, per phase
    (40 timestamps of 15 values: 640 items, over the gateway's 500 per message). Refused, the
    stop would be lost once the station gives up retrying; the stop is stored with the latest
    of its data (the Transaction.End values among them), the rest left out and counted."""
    n = 40

    def element(i: int) -> dict[str, Any]:
        ts = f"2026-11-24T{8 + i // 4:02d}:{15 * (i % 4):02d}:00Z"
        values: list[tuple[str, str, str | None, str | None]] = [
            (f"{i * 2.75:.2f}", ENERGY, "kWh", None)
        ]
        values += [("3.67", POWER, "kW", p) for p in ("L1", "L2", "L3")]
        values += [("16", "Current.Import", "A", p) for p in ("L1", "L2", "L3")]
        values += [("230", "Voltage", "V", p) for p in ("L1-N", "L2-N", "L3-N")]
        values += [("0.99", "Power.Factor", None, None)] * 5
        if version == "ocpp1.6":
            return {
                "timestamp": ts,
                "sampledValue": [
                    sv16(v, m, u, **({"phase": p} if p else {})) for v, m, u, p in values
                ],
            }
        return mv201(
            ts, *(sv201(float(v), m, u, **({"phase": p} if p else {})) for v, m, u, p in values)
        )

    end = f"2026-11-24T{8 + (n - 1) // 4:02d}:{15 * ((n - 1) % 4):02d}:00Z"
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CS-BIG", version) as cs:
            if version == "ocpp1.6":
                start = await cs.call(
                    call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=T0)
                )
                stop = call16.StopTransaction(
                    meter_stop=107250,
                    timestamp=end,
                    transaction_id=start.transaction_id,
                    transaction_data=[element(i) for i in range(n)],
                )
            else:
                await cs.call(
                    tx_event(
                        "Started",
                        T0,
                        "Authorized",
                        0,
                        {"transaction_id": "BIG"},
                        evse={"id": 1},
                        id_token={"id_token": TAG, "type": "ISO14443"},
                    )
                )
                stop = tx_event(
                    "Ended",
                    end,
                    "EVDeparted",
                    1,
                    {"transaction_id": "BIG", "stopped_reason": "EVDisconnected"},
                    meter_value=[element(i) for i in range(n)],
                )
            answers.append(await cs.call(stop, suppress=False))

    sink, gateway = run(body)
    assert answers and not gateway.rejected
    (stop,) = of_type(sink, SessionStop)
    assert (stop.ts_ns, stop.connector_id, stop.meter_stop_wh) == (parse_ts(end), 1, 107250.0)
    readings = of_type(sink, Reading)
    kept = 500 // 16  # whole elements of 1 + 15 items that the bound takes, the latest ones
    assert len(readings) == kept and readings[-1].ts_ns == parse_ts(end)
    assert readings[-1].power_w == pytest.approx(11010.0) and readings[-1].current_a == 16.0
    assert gateway.stats.stop_items_left_out == (n - kept) * 16


async def start_a_and_b(
    cs: Any, meter: Callable[[int], list[dict[str, Any]]] | None = None
) -> None:
    """Transactions "A" on EVSE 1 and "B" on EVSE 2, both charging from T0 (with
    ``meter(evse)`` as the Started event's meter values, if given)."""
    for evse, tx in ((1, "A"), (2, "B")):
        extra = {} if meter is None else {"meter_value": meter(evse)}
        await cs.call(
            tx_event(
                "Started",
                T0,
                "Authorized",
                0,
                {"transaction_id": tx, "charging_state": "Charging"},
                evse={"id": evse, "connector_id": 1},
                id_token={"id_token": f"TOKEN-{tx}", "type": "ISO14443"},
                **extra,
            )
        )


def test_v201_two_evses_at_once_keep_their_readings_apart() -> None:
    """Two transactions at once on EVSEs 1 and 2: Updated events name no EVSE (only Started
    must), MeterValues of EVSE 2 during its transaction and of EVSE 0 (the station's main
    meter) come in between; each reading lands on its EVSE and in its session or none."""

    def kwh(ts: str, value: float) -> list[dict[str, Any]]:
        return [mv201(ts, sv201(value, ENERGY, "kWh"))]

    async def body(url: str) -> None:
        async with station(url, "CS-2E", "ocpp2.0.1") as cs:
            await start_a_and_b(cs, lambda evse: kwh(T0, 10.0 * evse))
            await cs.call(
                tx_event(
                    "Updated",
                    T1,
                    "MeterValuePeriodic",
                    1,
                    {"transaction_id": "B"},
                    meter_value=kwh(T1, 21.0),
                )
            )
            await cs.call(call201.MeterValues(evse_id=2, meter_value=kwh(T1, 21.0)))
            await cs.call(call201.MeterValues(evse_id=0, meter_value=kwh(T1, 900.0)))
            await cs.call(
                tx_event(
                    "Updated",
                    T1,
                    "MeterValuePeriodic",
                    1,
                    {"transaction_id": "A"},
                    meter_value=kwh(T1, 11.0),
                )
            )
            await cs.call(
                tx_event(
                    "Ended",
                    T2,
                    "EVDeparted",
                    2,
                    {"transaction_id": "A", "stopped_reason": "EVDisconnected"},
                    meter_value=kwh(T2, 12.0),
                )
            )
            await cs.call(call201.MeterValues(evse_id=1, meter_value=kwh(T3, 12.0)))
            await cs.call(
                tx_event(
                    "Ended",
                    T3,
                    "StopAuthorized",
                    2,
                    {"transaction_id": "B", "stopped_reason": "Local"},
                    meter_value=kwh(T3, 23.0),
                )
            )

    sink, gateway = run(body)
    assert not gateway.rejected
    readings = [
        (r.ts_ns, r.connector_id, r.session_id, r.energy_wh) for r in of_type(sink, Reading)
    ]
    assert readings == [
        (TS0, 1, "CS-2E-A@20261124T081500Z", 10000.0),
        (TS0, 2, "CS-2E-B@20261124T081500Z", 20000.0),
        (TS1, 2, "CS-2E-B@20261124T081500Z", 21000.0),
        (TS1, 2, "CS-2E-B@20261124T081500Z", 21000.0),
        (TS1, 0, None, 900000.0),
        (TS1, 1, "CS-2E-A@20261124T081500Z", 11000.0),
        (TS2, 1, "CS-2E-A@20261124T081500Z", 12000.0),
        (TS3, 1, None, 12000.0),
        (TS3, 2, "CS-2E-B@20261124T081500Z", 23000.0),
    ]
    assert of_type(sink, SessionStop) == [
        SessionStop(TS2, "CS-2E", 1, "CS-2E-A@20261124T081500Z", 12000.0, "EVDisconnected"),
        SessionStop(TS3, "CS-2E", 2, "CS-2E-B@20261124T081500Z", 23000.0, "Local"),
    ]


def test_v201_an_evse_with_two_connectors_has_the_status_of_the_one_in_use() -> None:
    """A DC EVSE with CCS (connector 1) and CHAdeMO (connector 2): while the car charges on
    CCS the station reports CHAdeMO Unavailable, then Available again before CCS; neither is
    the EVSE's status (connector_id of the events is the EVSE). A fault of either is."""

    def status(ts: str, connector: int, value: str) -> Any:
        return call201.StatusNotification(
            timestamp=ts, connector_status=value, evse_id=1, connector_id=connector
        )

    async def body(url: str) -> None:
        async with station(url, "CS-DC", "ocpp2.0.1") as cs:
            for message in (
                status(STAMPS[0], 1, "Available"),
                status(STAMPS[0], 2, "Available"),
                status(STAMPS[1], 1, "Occupied"),
                status(STAMPS[1], 2, "Unavailable"),
                tx_event(
                    "Started",
                    STAMPS[1],
                    "Authorized",
                    0,
                    {"transaction_id": "DC-1", "charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "DC1", "type": "ISO14443"},
                ),
                status(STAMPS[2], 2, "Faulted"),
                status(STAMPS[3], 2, "Unavailable"),
                tx_event(
                    "Ended",
                    STAMPS[4],
                    "EVDeparted",
                    1,
                    {"transaction_id": "DC-1", "charging_state": "Idle"},
                ),
                status(STAMPS[4], 2, "Available"),
                status(STAMPS[5], 1, "Available"),
            ):
                await cs.call(message, suppress=False)

    sink, _ = run(body)
    ts = STAMPS_NS
    assert [(e.ts_ns, e.connector_id, e.status.value) for e in statuses(sink)] == [
        (ts[0], 1, "Available"),
        (ts[0], 1, "Available"),
        (ts[1], 1, "Preparing"),  # CCS Occupied; CHAdeMO's Unavailable is not the EVSE's
        (ts[1], 1, "Charging"),
        (ts[2], 1, "Faulted"),  # CHAdeMO's fault is the EVSE's...
        (ts[3], 1, "Charging"),  # ...until it clears: CCS is still in use, charging
        (ts[4], 1, "Finishing"),  # CHAdeMO's Available while CCS is still Occupied: not stored
        (ts[5], 1, "Available"),
    ]


def test_v201_connector_availability_events_follow_the_connector_in_use() -> None:
    """The same two-connector EVSE reporting through NotifyEvent (AvailabilityState of each
    Connector component) rather than StatusNotification: the idle connector's Unavailable
    does not hide the one in use."""

    def availability(connector: int, value: str, event_id: int) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "timestamp": T1,
            "trigger": "Delta",
            "actual_value": value,
            "event_notification_type": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": 1, "connector_id": connector}},
            "variable": {"name": "AvailabilityState"},
        }

    async def body(url: str) -> None:
        async with station(url, "CS-NE", "ocpp2.0.1") as cs:
            await cs.call(
                call201.NotifyEvent(
                    generated_at=T1,
                    seq_no=0,
                    event_data=[availability(1, "Occupied", 1), availability(2, "Unavailable", 2)],
                ),
                suppress=False,
            )

    sink, _ = run(body)
    assert [(e.connector_id, e.status.value) for e in statuses(sink)] == [(1, "Preparing")]


def test_v201_notify_event_statuses_of_one_evse_leave_the_other_and_its_charging_state() -> None:
    """Two EVSEs charging at once; the station reports through NotifyEvent: EVSE 2's connector
    Occupied (AvailabilityState) while it charges is Charging, as a StatusNotification of it
    is, not the Preparing that would last the rest of its session; EVSE 1's lock fault is
    EVSE 1's alone, and when its transaction says Charging again that is stored (the status
    stored last for EVSE 1 is the fault, not the Charging before it)."""

    def notify(item: dict[str, Any]) -> Any:
        return call201.NotifyEvent(generated_at=T1, seq_no=0, event_data=[item])

    occupied = {
        "event_id": 1,
        "timestamp": T1,
        "trigger": "Delta",
        "actual_value": "Occupied",
        "event_notification_type": "HardWiredNotification",
        "component": {"name": "Connector", "evse": {"id": 2, "connector_id": 1}},
        "variable": {"name": "AvailabilityState"},
    }
    fault = occupied | {
        "event_id": 2,
        "actual_value": "true",
        "tech_code": "ConnectorLockFailure",
        "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1}},
        "variable": {"name": "Problem"},
    }

    async def body(url: str) -> None:
        async with station(url, "CS-NE2", "ocpp2.0.1") as cs:
            await start_a_and_b(cs)
            await cs.call(notify(occupied))
            await cs.call(notify(fault))
            for tx in ("A", "B"):
                await cs.call(
                    tx_event(
                        "Updated",
                        T2,
                        "ChargingStateChanged",
                        1,
                        {"transaction_id": tx, "charging_state": "Charging"},
                    )
                )

    sink, gateway = run(body)
    assert not gateway.rejected
    assert [(e.ts_ns, e.connector_id, e.status.value) for e in statuses(sink)] == [
        (TS0, 1, "Charging"),
        (TS0, 2, "Charging"),
        (TS1, 2, "Charging"),
        (TS1, 1, "Faulted"),
        (TS2, 1, "Charging"),
    ]


def test_v201_ended_meter_stop_is_the_latest_register_whatever_the_order() -> None:
    """Ended may carry the transaction's sampled data (TxEnded measurands) besides its
    Transaction.End value, in no order the spec fixes: the stop's register is the latest."""

    async def body(url: str) -> None:
        async with station(url, "CS-END", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started",
                    T0,
                    "Authorized",
                    0,
                    {"transaction_id": "E-1"},
                    evse={"id": 1},
                    id_token={"id_token": "X1", "type": "Local"},
                    meter_value=[
                        mv201(T1, sv201(11.0, ENERGY, "kWh", context="Sample.Periodic")),
                        mv201(T0, sv201(10.0, ENERGY, "kWh", context="Transaction.Begin")),
                    ],
                )
            )
            await cs.call(
                tx_event(
                    "Ended",
                    T3,
                    "StopAuthorized",
                    1,
                    {"transaction_id": "E-1", "stopped_reason": "Local"},
                    meter_value=[
                        mv201(T3, sv201(30.0, ENERGY, "kWh", context="Transaction.End")),
                        mv201(T2, sv201(20.0, ENERGY, "kWh", context="Sample.Periodic")),
                    ],
                )
            )

    sink, _ = run(body)
    who = PSEUDONYMIZE("X1")
    assert of_type(sink, SessionStart) == [
        SessionStart(TS0, "CS-END", 1, "CS-END-E-1@20261124T081500Z", who, 10000.0)
    ]
    assert of_type(sink, SessionStop) == [
        SessionStop(TS3, "CS-END", 1, "CS-END-E-1@20261124T081500Z", 30000.0, "Local")
    ]


def test_v16_meter_values_after_the_stop_do_not_reopen_the_transaction() -> None:
    """A station that sends its Transaction.End values after StopTransaction: they belong to
    the session they name, and the connector's later readings to no session."""

    async def body(url: str) -> None:
        async with station(url, "CP-LATE", "ocpp1.6") as cp:
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=T0)
            )
            tx = start.transaction_id
            await cp.call(call16.StopTransaction(meter_stop=5000, timestamp=T1, transaction_id=tx))
            end = sv16("5000", ENERGY, "Wh", context="Transaction.End")
            await cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[{"timestamp": T1, "sampledValue": [end]}],
                )
            )
            await cp.call(
                call16.MeterValues(
                    connector_id=1, meter_value=[{"timestamp": T2, "sampledValue": [sv16("5000")]}]
                )
            )

    sink, _ = run(body)
    assert of_type(sink, Reading) == [
        Reading(TS1, "CP-LATE", 1, "CP-LATE-1000", energy_wh=5000.0),
        Reading(TS2, "CP-LATE", 1, None, energy_wh=5000.0),
    ]


# --------------------------------------------------------------------------------------------
# Through `chargewatch serve` into InfluxDB, and the detectors over what was stored

WINDOW = "time >= '2026-11-24T00:00:00Z' AND time <= '2026-11-25T00:00:00Z'"


class Serve:
    """`chargewatch serve` as a process on a free port, its own data directory."""

    def __init__(self, data_dir: Path, influx_url: str, database: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "CHARGEWATCH_INFLUX_URL": influx_url,
            "CHARGEWATCH_INFLUX_DATABASE": database,
            "CHARGEWATCH_DATA_DIR": str(data_dir),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chargewatch", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._healthy() is not None)

    def _healthy(self) -> dict[str, Any] | None:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
        except httpx.HTTPError:
            return None
        return dict(answer.json()) if answer.status_code == 200 else None

    def health(self) -> dict[str, Any]:
        return self._healthy() or {}

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 120) -> None:
    # a bound against hanging, not a speed check: the machine's two cores are shared
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"conformance_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def test_sessions_of_both_versions_land_in_influxdb_and_raise_no_flag(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    """A 1.6 station (per-phase kW, kWh register, clock-aligned values of its main meter on
    connector 0, StopTransaction with transactionData) and a 2.0.1 station (multipliers,
    TransactionEvent Started/Updated/Ended) charge for an hour at 11 kW: InfluxDB holds every
    reading in W and Wh on its connector and session, and the detectors run by `chargewatch
    detect` over that window find nothing wrong (the main meter's rise is no one's energy)."""
    minutes = range(0, 61, 5)
    stamp = [f"2026-11-24T08:{m:02d}:00Z" if m < 60 else "2026-11-24T09:00:00Z" for m in minutes]
    kwh = [11.0 * m / 60 for m in minutes]  # 11 kW for an hour
    serve = Serve(tmp_path, influxd.url, database)

    async def body(url: str) -> None:
        async with station(url, "CONF-16", "ocpp1.6") as cp:
            await cp.call(
                call16.BootNotification(
                    charge_point_vendor="EVBox", charge_point_model="BusinessLine"
                )
            )
            start = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag=TAG, meter_start=0, timestamp=stamp[0]
                )
            )
            tx = start.transaction_id
            for i, ts in enumerate(stamp[1:-1], start=1):
                values = [
                    sv16(f"{kwh[i]:.4f}", ENERGY, "kWh", context="Sample.Periodic"),
                    sv16("60", "SoC", "Percent", location="EV"),
                ]
                phases = [sv16("3.6667", POWER, "kW", phase=p) for p in ("L1", "L2", "L3")]
                await cp.call(
                    call16.MeterValues(  # each phase in an element of its own, one timestamp
                        connector_id=1,
                        transaction_id=tx,
                        meter_value=[
                            {"timestamp": ts, "sampledValue": values},
                            *({"timestamp": ts, "sampledValue": [v]} for v in phases),
                        ],
                    )
                )
                if i % 3 == 0:  # every quarter hour, the main meter (Sample.Clock)
                    main = sv16(f"{500 + kwh[i]:.4f}", ENERGY, "kWh", context="Sample.Clock")
                    await cp.call(
                        call16.MeterValues(
                            connector_id=0, meter_value=[{"timestamp": ts, "sampledValue": [main]}]
                        )
                    )
            await cp.call(
                call16.StopTransaction(
                    meter_stop=11000,
                    timestamp=stamp[-1],
                    transaction_id=tx,
                    reason="Local",
                    transaction_data=[
                        {
                            "timestamp": stamp[-1],
                            "sampledValue": [
                                sv16("11.0", ENERGY, "kWh", context="Transaction.End")
                            ],
                        }
                    ],
                )
            )
        async with station(url, "CONF-201", "ocpp2.0.1") as cs:
            token = {"id_token": "CONF201TAG", "type": "ISO14443"}
            txi = {"transaction_id": "c-201", "charging_state": "Charging"}
            for i, ts in enumerate(stamp):
                kind, trigger = (
                    ("Started", "Authorized")
                    if i == 0
                    else ("Ended", "StopAuthorized")
                    if i == len(stamp) - 1
                    else ("Updated", "MeterValuePeriodic")
                )
                values = [sv201(kwh[i] * 1000, ENERGY, "Wh", multiplier=0)]
                if kind == "Updated":
                    values += [
                        sv201(36.667, POWER, "W", phase=p, multiplier=2) for p in ("L1", "L2", "L3")
                    ]
                await cs.call(
                    tx_event(
                        kind,
                        ts,
                        trigger,
                        i,
                        txi | ({"stopped_reason": "Local"} if kind == "Ended" else {}),
                        meter_value=[mv201(ts, *values)],
                        **(
                            {"evse": {"id": 1, "connector_id": 1}, "id_token": token}
                            if kind == "Started"
                            else {}
                        ),
                    )
                )

    try:
        asyncio.run(body(f"ws://127.0.0.1:{serve.port}/ocpp"))
        wait_for(lambda: serve.health().get("spool_lines") == 0)
        with InfluxClient(url=influxd.url, database=database) as client:
            stored = client.query(f"SELECT * FROM reading WHERE {WINDOW} GROUP BY *")
        by_series = {(s.tags["station_id"], s.tags["connector_id"]): s.columns for s in stored}
        one = by_series[("CONF-16", "1")]
        assert one["energy_wh"].tolist() == pytest.approx(
            [kwh[i] * 1000 for i in range(1, 13)], abs=0.1
        )
        assert set(one["session_id"].tolist()) == {"CONF-16-1"}
        assert one["power_w"][:-1].tolist() == pytest.approx([11000.1] * 11)
        main = by_series[("CONF-16", "0")]
        assert main["energy_wh"].tolist() == pytest.approx([502750.0, 505500.0, 508250.0])
        assert not any(isinstance(v, str) for v in main["session_id"].tolist())  # no session
        two = by_series[("CONF-201", "1")]
        assert two["energy_wh"].tolist() == pytest.approx([kwh[i] * 1000 for i in range(13)])
        assert two["power_w"][1:-1].tolist() == pytest.approx([11000.1] * 11)
        assert set(two["session_id"].tolist()) == {"CONF-201-c-201@20261124T080000Z"}
        # the window reaches now: readings count by when they were received too
        until = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        serve.cli("detect", "--since", "2026-11-24T00:00:00Z", "--until", until)
        flags = serve.cli("flags", "--since", "2026-11-24T00:00:00Z", "--until", until)
        assert flags.strip() == ""
    finally:
        serve.stop()


def test_a_reused_201_transaction_id_lands_in_influxdb_as_two_sessions(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    """A 2.0.1 simulator that numbers its transactions from 1 again after a reboot, through
    `chargewatch serve` (its book in the state database) into InfluxDB: two sessions, each
    with its own start, stop and readings, so each driver's energy is that session's."""
    serve = Serve(tmp_path, influxd.url, database)
    one, two = "CONF-RE-1@20261124T080000Z", "CONF-RE-1@20261124T100000Z"

    async def transaction(cs: Any, hour: int, wh: list[float], tag: str) -> None:
        stamps = [f"2026-11-24T{hour:02d}:00:00Z", f"2026-11-24T{hour:02d}:30:00Z"]
        stamps.append(f"2026-11-24T{hour + 1:02d}:00:00Z")
        for i, (kind, ts) in enumerate(zip(("Started", "Updated", "Ended"), stamps, strict=True)):
            await cs.call(
                tx_event(
                    kind,
                    ts,
                    "Authorized" if kind == "Started" else "MeterValuePeriodic",
                    i,
                    {"transaction_id": "1", "charging_state": "Charging"}
                    | ({"stopped_reason": "Local"} if kind == "Ended" else {}),
                    meter_value=[mv201(ts, sv201(wh[i], ENERGY, "Wh"))],
                    **(
                        {
                            "evse": {"id": 1, "connector_id": 1},
                            "id_token": {"id_token": tag, "type": "ISO14443"},
                        }
                        if kind == "Started"
                        else {}
                    ),
                ),
            )

    async def body(url: str) -> None:
        async with station(url, "CONF-RE", "ocpp2.0.1") as cs:
            await transaction(cs, 8, [0.0, 5500.0, 11000.0], "TAG-A")
        async with station(url, "CONF-RE", "ocpp2.0.1") as cs:  # rebooted: "1" again
            await cs.call(
                call201.BootNotification(
                    charging_station={"model": "Sim", "vendor_name": "Sim"}, reason="PowerUp"
                )
            )
            await transaction(cs, 10, [11000.0, 14000.0, 17000.0], "TAG-B")

    try:
        asyncio.run(body(f"ws://127.0.0.1:{serve.port}/ocpp"))
        wait_for(lambda: serve.health().get("spool_lines") == 0)
        with InfluxClient(url=influxd.url, database=database) as client:
            (readings,) = client.query(f"SELECT * FROM reading WHERE {WINDOW}")
            (starts,) = client.query(f"SELECT * FROM session_start WHERE {WINDOW}")
            (stops,) = client.query(f"SELECT * FROM session_stop WHERE {WINDOW}")
        energy: dict[str, list[float]] = {}
        for session, wh in zip(
            readings.columns["session_id"].tolist(),
            readings.columns["energy_wh"].tolist(),
            strict=True,
        ):
            energy.setdefault(session, []).append(wh)
        assert energy == {one: [0.0, 5500.0, 11000.0], two: [11000.0, 14000.0, 17000.0]}
        assert starts.columns["session_id"].tolist() == [one, two]
        assert starts.columns["meter_start_wh"].tolist() == [0.0, 11000.0]
        assert stops.columns["session_id"].tolist() == [one, two]
        assert stops.columns["meter_stop_wh"].tolist() == [11000.0, 17000.0]
    finally:
        serve.stop()
