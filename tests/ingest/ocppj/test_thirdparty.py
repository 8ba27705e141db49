"""Third-party stations: what public simulators and real firmware send, valid per OCPP 1.6 and
2.0.1, played against the real gateway, and what is stored of it.

The clients are the ``ocpp`` library's charge-point side (its schema check on every Call going
out and every answer coming back), talking over a real WebSocket, as the public simulators do
(SteVe's and other 1.6 simulators, web simulators, EVerest, MicroOcpp, the library's examples,
OCPP 2.0.1 simulators). Each test checks the events handed to the sink, which the spool writes
to InfluxDB: readings (units, phases, locations, contexts), sessions and their energies,
statuses, and an answer of the spec's for every Call (a CALLERROR only where this service
deliberately takes no part, each one pinned here with the reason).

``tests/ingest/ocppj/test_conformance.py`` holds the cases found before; these are the rest of
the audit, with the faults it found kept as regressions (named in each test's docstring).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointStatus,
    Reading,
    SessionStart,
    SessionStop,
    StatusChange,
    parse_ts,
)

from .harness import (
    NOW_NS,
    PSEUDONYMIZE,
    mv16,
    mv201,
    of_type,
    run,
    shared_book,
    station,
    sv16,
    sv201,
    tx_event,
)

TAG = "04C3D2E1F0A1B2"
T0 = "2026-11-24T08:15:00Z"
T1 = "2026-11-24T08:30:00Z"
T2 = "2026-11-24T08:45:00Z"
T3 = "2026-11-24T09:00:00Z"
TS0, TS1, TS2, TS3 = (parse_ts(t) for t in (T0, T1, T2, T3))
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
ACCEPTED, PREPARING = AuthorizationStatus.ACCEPTED, ChargePointStatus.PREPARING


async def ask(cp: Any, payload: Any, answers: list[Any]) -> None:
    """Call and keep the answer, or ``"<Action>:<CallError code>"`` when refused."""
    try:
        answers.append(await cp.call(payload, suppress=False))
    except OCPPError as exc:
        answers.append(f"{type(payload).__name__}:{exc.code}")


@pytest.fixture(name="shared_book")
def shared_book_options(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The state database's transaction book, as ``chargewatch serve`` has it (``run`` options)."""
    with shared_book(tmp_path) as options:
        yield options


# --------------------------------------------------------------------------------------------
# OCPP 1.6 MeterValues: what each sampledValue becomes


METER_16: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = [
    # OCPP 1.6 SampledValue: measurand defaults to Energy.Active.Import.Register, unit to Wh
    ("no-measurand-no-unit-decimals", [sv16("15234.75")], {"energy_wh": 15234.75}),
    ("exponent-power-w", [sv16("7.36E3", POWER, "W")], {"power_w": 7360.0}),
    ("exponent-negative", [sv16("736e-2", POWER, "kW")], {"power_w": 7360.0}),
    (
        "kwh-register-kw-power",
        [sv16("1.5", unit="kWh"), sv16("11", POWER, "kW")],
        {"energy_wh": 1500.0, "power_w": 11000.0},
    ),
    (  # every context is a sample like any other
        "contexts",
        [
            sv16("100", ENERGY, "Wh", context="Transaction.Begin"),
            sv16("0", POWER, "W", context="Sample.Clock"),
            sv16("16", CURRENT, "A", context="Trigger"),
            sv16("230", "Voltage", "V", context="Transaction.End"),
        ],
        {"energy_wh": 100.0, "power_w": 0.0, "current_a": 16.0, "voltage_v": 230.0},
    ),
    (  # L1 and L1-N are the same phase: a station sending both is not summed twice
        "phases-named-both-ways-and-a-total",
        [
            *(sv16("3680", POWER, "W", phase=p) for p in ("L1", "L2", "L3")),
            *(sv16("3680", POWER, "W", phase=p) for p in ("L1-N", "L2-N", "L3-N")),
            sv16("11040", POWER, "W"),
        ],
        {"power_w": 11040.0},
    ),
    (
        "phases-named-both-ways-no-total",
        [
            *(sv16("3.68", POWER, "kW", phase=p) for p in ("L1", "L2", "L3")),
            *(sv16("3.68", POWER, "kW", phase=p) for p in ("L1-N", "L2-N", "L3-N")),
        ],
        {"power_w": pytest.approx(11040.0)},
    ),
    (  # a single-phase charger names its one phase
        "single-phase-register",
        [sv16("4.2", ENERGY, "kWh", phase="L1"), sv16("32", CURRENT, "A", phase="L1")],
        {"energy_wh": 4200.0, "current_a": 32.0},
    ),
    (  # without an Outlet value the Inlet's (or the EV's) is the one there is
        "inlet-only",
        [sv16("7.2", POWER, "kW", location="Inlet"), sv16("8.5", ENERGY, "kWh", location="Inlet")],
        {"power_w": 7200.0, "energy_wh": 8500.0},
    ),
    (
        "soc-at-ev-and-temperatures",
        [
            sv16("72", "SoC", "Percent", location="EV"),
            sv16("28.5", "Temperature", "Celsius", location="EV"),
            # the charger's own: its cable and body, accepted and not stored (module meter)
            sv16("61", "Temperature", "Celsius", location="Cable"),
            sv16("45", "Temperature", "Celcius", location="Body"),
        ],
        {"soc_pct": 72.0, "temperature_c": 28.5},
    ),
    (
        "current-and-voltage-only",
        [
            *(sv16("15.9", CURRENT, "A", phase=p, location="Outlet") for p in ("L1", "L2", "L3")),
            *(sv16("231", "Voltage", "V", phase=p) for p in ("L1-N", "L2-N", "L3-N")),
        ],
        {"current_a": pytest.approx(15.9), "voltage_v": 231.0},
    ),
    (  # an Eichrecht meter's OCMF record: a signature, not a number; the Raw twin is the value
        "signed-data-beside-raw",
        [
            sv16("OCMF|{...}|{...}", ENERGY, "Wh", format="SignedData", context="Sample.Clock"),
            sv16("20417", ENERGY, "Wh", format="Raw", context="Sample.Clock"),
        ],
        {"energy_wh": 20417.0},
    ),
    # Deliberately not stored: a SignedData value alone. It is an encoded, signed record (OCMF,
    # EDL) whose register the service does not decode; the station's Raw values and
    # meterStart/meterStop carry the energy. The message is still answered.
    ("signed-data-alone", [sv16("T0NNRnx7fQ==", ENERGY, "Wh", format="SignedData")], None),
]


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in METER_16], ids=[c[0] for c in METER_16]
)
def test_v16_sampled_values_become_one_reading(
    values: list[dict[str, Any]], expected: dict[str, Any] | None
) -> None:
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-MV", "ocpp1.6") as cp:
            await ask(
                cp, call16.MeterValues(connector_id=1, meter_value=[mv16(T1, *values)]), answers
            )

    sink, gateway = run(body)
    assert len(answers) == 1 and not isinstance(answers[0], str) and not gateway.rejected
    expected_readings = [] if expected is None else [Reading(TS1, "CP-MV", 1, None, **expected)]
    assert of_type(sink, Reading) == expected_readings


# --------------------------------------------------------------------------------------------
# OCPP 1.6: a whole station's day as a simulator plays it


def test_v16_a_simulated_station_from_heartbeat_to_stop() -> None:
    """What SteVe's simulator, web simulators and MicroOcpp send, in their order: a Heartbeat
    (and readings) before the BootNotification, a StatusNotification without timestamp, the
    firmware and diagnostics notifications, Authorize, a StartTransaction with a reservationId
    and a meterStart past 2^31 (a 32-bit column overflows there), MeterValues of the session
    with several elements, the main meter's (connector 0) beside them, and a StopTransaction
    without idTag (optional when the stop is not by a card) with its transactionData."""
    answers: list[Any] = []
    meter_start = 2_147_483_648 + 1_500  # Wh: a fleet meter with a 2.1 GWh register
    main_meter = [mv16(T1, sv16("98765.4", ENERGY, "kWh", context="Sample.Clock"))]

    async def body(url: str) -> None:
        async with station(url, "CP-SIM", "ocpp1.6") as cp:
            # A station that reconnects after a network drop (not a reboot) sends no
            # BootNotification: what it says before one is answered and stored (see
            # test_v16_messages_before_a_boot_notification_are_answered).
            await ask(cp, call16.Heartbeat(), answers)
            await ask(
                cp,
                call16.BootNotification(
                    charge_point_vendor="SteVe", charge_point_model="Simulator"
                ),
                answers,
            )
            await ask(
                cp,
                call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"),
                answers,
            )
            await ask(cp, call16.FirmwareStatusNotification(status="Installed"), answers)
            await ask(cp, call16.DiagnosticsStatusNotification(status="Idle"), answers)
            await ask(cp, call16.Authorize(id_tag=TAG), answers)
            start = await cp.call(
                call16.StartTransaction(
                    connector_id=1,
                    id_tag=TAG,
                    meter_start=meter_start,
                    timestamp=T0,
                    reservation_id=42,
                )
            )
            tx = start.transaction_id
            await ask(
                cp,
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        mv16(
                            T1,
                            sv16(f"{meter_start + 2500}", ENERGY, "Wh"),
                            sv16("10.0", POWER, "kW"),
                        ),
                        mv16(
                            T2,
                            sv16(f"{meter_start + 5000}", ENERGY, "Wh"),
                            sv16("10.0", POWER, "kW"),
                        ),
                    ],
                ),
                answers,
            )
            await ask(cp, call16.MeterValues(connector_id=0, meter_value=main_meter), answers)
            await ask(
                cp,
                call16.StopTransaction(
                    meter_stop=meter_start + 7500,
                    timestamp=T3,
                    transaction_id=tx,
                    reason="EVDisconnected",
                    transaction_data=[
                        mv16(
                            T3,
                            sv16(f"{meter_start + 7500}", ENERGY, "Wh", context="Transaction.End"),
                        )
                    ],
                ),
                answers,
            )

    sink, gateway = run(body)
    assert not gateway.rejected and not any(isinstance(a, str) for a in answers)
    assert answers[1].status == "Accepted" and answers[-1].id_tag_info is None
    session, who = "CP-SIM-1000", PSEUDONYMIZE(TAG)
    assert sink.events == [
        StatusChange(NOW_NS, "CP-SIM", 1, PREPARING),  # no timestamp: when it came
        Authorize(NOW_NS, "CP-SIM", who, ACCEPTED),
        Authorize(TS0, "CP-SIM", who, ACCEPTED),
        SessionStart(TS0, "CP-SIM", 1, session, who, float(meter_start)),
        Reading(TS1, "CP-SIM", 1, session, energy_wh=meter_start + 2500.0, power_w=10000.0),
        Reading(TS2, "CP-SIM", 1, session, energy_wh=meter_start + 5000.0, power_w=10000.0),
        Reading(TS1, "CP-SIM", 0, None, energy_wh=98_765_400.0),
        Reading(TS3, "CP-SIM", 1, session, energy_wh=meter_start + 7500.0),
        SessionStop(TS3, "CP-SIM", 1, session, meter_start + 7500.0, "EVDisconnected"),
    ]


def test_v16_messages_before_a_boot_notification_are_answered() -> None:
    """OCPP 1.6 section 4.2 forbids a charge point other requests between its power-on and an
    accepted BootNotification; it says nothing of a reconnection, after which a station goes
    on without booting (its BootNotification went to this service long ago, or to the instance
    before a failover). This service accepts every station (it answers every BootNotification
    Accepted), so a station not booted here is taken as accepted: its Heartbeat is answered
    and its readings stored, rather than refused and lost. Deliberate, pinned here."""
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-NOBOOT", "ocpp1.6") as cp:
            await ask(cp, call16.Heartbeat(), answers)
            await ask(
                cp,
                call16.MeterValues(connector_id=1, meter_value=[mv16(T1, sv16("1.5", unit="kWh"))]),
                answers,
            )
        async with station(url, "CS-NOBOOT", "ocpp2.0.1") as cs:
            await ask(cs, call201.Heartbeat(), answers)
            await ask(
                cs,
                call201.MeterValues(evse_id=1, meter_value=[mv201(T1, sv201(1.5, ENERGY, "kWh"))]),
                answers,
            )

    sink, gateway = run(body)
    assert [type(a).__name__ for a in answers] == ["Heartbeat", "MeterValues"] * 2
    assert parse_ts(answers[0].current_time) == NOW_NS and not gateway.rejected
    assert of_type(sink, Reading) == [
        Reading(TS1, "CP-NOBOOT", 1, None, energy_wh=1500.0),
        Reading(TS1, "CS-NOBOOT", 1, None, energy_wh=1500.0),
    ]


def test_v16_main_meter_values_that_name_a_transaction_stay_out_of_its_session() -> None:
    """Fault found: MeterValues of connectorId 0 (the station's main meter, OCPP 1.6) that a
    station sends with the transactionId of its session were stored in that session. The main
    meter's register (the whole station's energy since it was installed, 98,765 kWh here)
    then stood beside the connector's own (12 kWh) in one series: a jump up and a fall back at
    every sample, and the session's energy from them wrong. They are the main meter's readings,
    of no session, whatever transactionId comes with them."""

    async def body(url: str) -> None:
        async with station(url, "CP-MAIN", "ocpp1.6") as cp:
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=12000, timestamp=T0)
            )
            tx = start.transaction_id
            for connector_id, value in ((1, "12.5"), (0, "98765.4"), (1, "13.0")):
                await cp.call(
                    call16.MeterValues(
                        connector_id=connector_id,
                        transaction_id=tx,
                        meter_value=[mv16(T1, sv16(value, ENERGY, "kWh", context="Sample.Clock"))],
                    )
                )
            await cp.call(  # a transactionId the station made up, on the main meter
                call16.MeterValues(
                    connector_id=0, transaction_id=777, meter_value=[mv16(T2, sv16("98766"))]
                )
            )
            await cp.call(call16.StopTransaction(meter_stop=13000, timestamp=T3, transaction_id=tx))

    sink, gateway = run(body)
    assert not gateway.rejected
    readings = [(r.connector_id, r.session_id, r.energy_wh) for r in of_type(sink, Reading)]
    assert readings == [
        (1, "CP-MAIN-1000", 12500.0),
        (0, None, 98_765_400.0),
        (1, "CP-MAIN-1000", 13000.0),
        (0, None, 98766.0),
    ]
    assert of_type(sink, SessionStop) == [
        SessionStop(TS3, "CP-MAIN", 1, "CP-MAIN-1000", 13000.0, "Local")
    ]


def test_v16_readings_of_an_unknown_transaction_leave_the_connector_to_its_open_one(
    shared_book: dict[str, Any],
) -> None:
    """Fault found: MeterValues naming a transaction the book does not know (an old session's
    readings uploaded late, after the book forgot its stop) made that transaction the
    connector's open one. The running session's next MeterValues without a transactionId (it
    is optional) then went to the old session, and so did the connector's readings after the
    running session stopped: energy of no session hidden in an old one. The late readings go to
    the session they name; the connector stays with the transaction open on it."""

    async def body(url: str) -> None:
        async with station(url, "CP-OLD", "ocpp1.6") as cp:
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=50000, timestamp=T0)
            )
            tx = start.transaction_id
            await cp.call(  # transaction 4711 ended long ago; its readings come now
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=4711,
                    meter_value=[mv16("2026-11-20T18:00:00Z", sv16("31.5", unit="kWh"))],
                )
            )
            await cp.call(
                call16.MeterValues(connector_id=1, meter_value=[mv16(T1, sv16("52.5", unit="kWh"))])
            )
            await cp.call(call16.StopTransaction(meter_stop=55000, timestamp=T2, transaction_id=tx))
            await cp.call(  # after the stop: energy of no session
                call16.MeterValues(connector_id=1, meter_value=[mv16(T3, sv16("55.4", unit="kWh"))])
            )

    sink, gateway = run(body, **shared_book)
    assert not gateway.rejected
    readings = [(r.ts_ns, r.session_id, r.energy_wh) for r in of_type(sink, Reading)]
    assert readings == [
        (parse_ts("2026-11-20T18:00:00Z"), "CP-OLD-4711", 31500.0),
        (TS1, "CP-OLD-1000", 52500.0),
        (TS3, None, 55400.0),
    ]


def test_v16_readings_of_an_unknown_transaction_on_a_free_connector_open_it() -> None:
    """What stays as it was: a transaction the book never saw begin (it began under the central
    system before this one, say) on a connector with none open is the one running there: the
    connector's later readings and its stop go to it."""

    async def body(url: str) -> None:
        async with station(url, "CP-MIG", "ocpp1.6") as cp:
            await cp.call(
                call16.MeterValues(
                    connector_id=2,
                    transaction_id=90210,
                    meter_value=[mv16(T1, sv16("7.5", unit="kWh"))],
                )
            )
            await cp.call(
                call16.MeterValues(connector_id=2, meter_value=[mv16(T2, sv16("8.0", unit="kWh"))])
            )
            await cp.call(
                call16.StopTransaction(meter_stop=8200, timestamp=T3, transaction_id=90210)
            )

    sink, _ = run(body)
    assert sink.events == [
        Reading(TS1, "CP-MIG", 2, "CP-MIG-90210", energy_wh=7500.0),
        Reading(TS2, "CP-MIG", 2, "CP-MIG-90210", energy_wh=8000.0),
        SessionStop(TS3, "CP-MIG", 2, "CP-MIG-90210", 8200.0, "Local"),
    ]


def test_v16_a_meter_start_beyond_any_register_is_refused_as_impossible(
    shared_book: dict[str, Any],
) -> None:
    """Fault found: a StartTransaction whose meterStart does not fit 64 bits (valid per the
    schema, which bounds no integer) failed in the state database's book and was answered
    InternalError, "retry later": the station retried it for ever. No register comes near
    9.2e18 Wh (300 times the world's yearly electricity), so it is refused as impossible,
    naming the field; 2^53 and 2^63 - 1, as absurd but storable, are taken."""
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-BIG", "ocpp1.6") as cp:
            for connector_id, meter_start in enumerate((2**53 + 1, 2**63 - 1, 2**63), start=1):
                await ask(
                    cp,
                    call16.StartTransaction(
                        connector_id=connector_id, id_tag=TAG, meter_start=meter_start, timestamp=T0
                    ),
                    answers,
                )

    sink, gateway = run(body, **shared_book)
    assert [a.transaction_id for a in answers[:2]] == [1000, 1001]
    assert answers[2] == "StartTransaction:PropertyConstraintViolation"
    assert gateway.rejected == {"bad_value": 1}
    assert [s.meter_start_wh for s in of_type(sink, SessionStart)] == [2.0**53, 2.0**63 - 1]


STOP_REASONS = [
    "DeAuthorized",
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
]


def test_v16_every_stop_reason_is_stored_and_a_missing_one_is_local() -> None:
    """StopTransaction.req: reason is optional and "MAY only be omitted when the Reason is
    Local"; idTag is optional (a stop that no card made). Every reason is kept as sent."""
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CP-RSN", "ocpp1.6") as cp:
            for i, reason in enumerate([*STOP_REASONS, None]):
                start = await cp.call(
                    call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=i, timestamp=T0)
                )
                stop = call16.StopTransaction(
                    meter_stop=i + 1000,
                    timestamp=T1,
                    transaction_id=start.transaction_id,
                    reason=reason,
                    id_tag=TAG if reason == "Local" else None,
                )
                await ask(cp, stop, answers)

    sink, gateway = run(body)
    assert not gateway.rejected
    assert [a.id_tag_info for a in answers] == [
        {"status": "Accepted"} if r == "Local" else None for r in [*STOP_REASONS, None]
    ]
    stops = of_type(sink, SessionStop)
    assert [(s.connector_id, s.reason) for s in stops] == [(1, r) for r in [*STOP_REASONS, "Local"]]
    assert [s.meter_stop_wh for s in stops] == [float(i + 1000) for i in range(len(stops))]


# --------------------------------------------------------------------------------------------
# OCPP 2.0.1: a session as EVerest, MicroOcpp and the OCA's simulators send it


METER_201: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    # UnitOfMeasureType: value x 10^multiplier, in unit (default Wh)
    (
        "multiplier-kwh-per-phase",
        [sv201(4, ENERGY, "kWh", multiplier=0, phase=p) for p in ("L1", "L2", "L3")],
        {"energy_wh": 12000.0},
    ),
    (
        "register-per-phase-and-total-with-multipliers",
        [
            *(sv201(40, ENERGY, "Wh", multiplier=2, phase=p) for p in ("L1-N", "L2-N", "L3-N")),
            sv201(12, ENERGY, "kWh"),
        ],
        {"energy_wh": 12000.0},
    ),
    ("power-multiplier-minus-one", [sv201(73600, POWER, "W", multiplier=-1)], {"power_w": 7360.0}),
    (
        "current-multiplier",
        [sv201(159, CURRENT, "A", multiplier=-1, phase="L1")],
        {"current_a": pytest.approx(15.9)},
    ),
    (
        "signed-register-and-soc",
        [
            sv201(
                20.417,
                ENERGY,
                "kWh",
                context="Sample.Clock",
                signed_meter_value={
                    "signed_meter_data": "T0NNRnx7fQ==",
                    "signing_method": "ECDSA-secp256r1-SHA256",
                    "encoding_method": "OCMF",
                    "public_key": "",
                },
            ),
            sv201(64, "SoC", "Percent", location="EV"),
        ],
        {"energy_wh": 20417.0, "soc_pct": 64.0},
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in METER_201], ids=[c[0] for c in METER_201]
)
def test_v201_sampled_values_become_one_reading(
    values: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CS-MV", "ocpp2.0.1") as cs:
            await ask(cs, call201.MeterValues(evse_id=1, meter_value=[mv201(T1, *values)]), answers)

    sink, gateway = run(body)
    assert len(answers) == 1 and not isinstance(answers[0], str) and not gateway.rejected
    assert of_type(sink, Reading) == [Reading(TS1, "CS-MV", 1, None, **expected)]


def test_v201_a_remote_started_session_with_every_charging_state() -> None:
    """E02/F01: a remote start (idToken of type Central, remoteStartId), numberOfPhasesUsed,
    the chargingState through EVConnected, Charging, SuspendedEVSE (a limit), Charging,
    SuspendedEV (the car full) and Ended; Updated events without the optional evse; the main
    meter's MeterValues (evseId 0) during the session, which are no session's; the other
    messages a station sends meanwhile answered."""
    answers: list[Any] = []
    tx = {"transaction_id": "c0ffee00-0001"}
    central = {"id_token": "app-7f3a9c", "type": "Central"}

    def kwh(ts: str, value: float, kw: float) -> list[dict[str, Any]]:
        return [mv201(ts, sv201(value, ENERGY, "kWh"), sv201(kw, POWER, "kW"))]

    async def body(url: str) -> None:
        async with station(url, "CS-EV", "ocpp2.0.1") as cs:
            await ask(
                cs,
                call201.BootNotification(
                    charging_station={"model": "EVerest-SIL", "vendor_name": "Pionix"},
                    reason="PowerUp",
                ),
                answers,
            )
            await ask(
                cs,
                call201.StatusNotification(
                    timestamp=T0, connector_status="Occupied", evse_id=1, connector_id=1
                ),
                answers,
            )
            await ask(
                cs,
                tx_event(
                    "Started",
                    T0,
                    "RemoteStart",
                    0,
                    tx | {"charging_state": "EVConnected", "remote_start_id": 1234},
                    evse={"id": 1, "connector_id": 1},
                    id_token=central,
                    number_of_phases_used=3,
                    meter_value=[
                        mv201(T0, sv201(40.0, ENERGY, "kWh", context="Transaction.Begin"))
                    ],
                ),
                answers,
            )
            stamps = ["2026-11-24T08:16:00Z", "2026-11-24T08:20:00Z", "2026-11-24T08:25:00Z"]
            for seq_no, (ts, state) in enumerate(
                zip(stamps, ["Charging", "SuspendedEVSE", "Charging"], strict=True), start=1
            ):
                await ask(
                    cs,
                    tx_event(
                        "Updated",
                        ts,
                        "ChargingStateChanged",
                        seq_no,
                        tx | {"charging_state": state},
                    ),
                    answers,
                )
            await ask(
                cs,
                call201.MeterValues(
                    evse_id=0, meter_value=[mv201(T1, sv201(81234.5, ENERGY, "kWh"))]
                ),
                answers,
            )
            await ask(
                cs,
                tx_event(
                    "Updated", T1, "MeterValuePeriodic", 4, tx, meter_value=kwh(T1, 42.5, 11.0)
                ),
                answers,
            )
            await ask(
                cs,
                tx_event(
                    "Updated",
                    T2,
                    "ChargingStateChanged",
                    5,
                    tx | {"charging_state": "SuspendedEV"},
                    meter_value=kwh(T2, 45.0, 0.0),
                ),
                answers,
            )
            await ask(
                cs,
                call201.SecurityEventNotification(type="SettingSystemTime", timestamp=T2),
                answers,
            )
            await ask(cs, call201.LogStatusNotification(status="Uploaded", request_id=3), answers)
            await ask(
                cs,
                tx_event(
                    "Ended",
                    T3,
                    "RemoteStop",
                    6,
                    tx | {"charging_state": "EVConnected", "stopped_reason": "Remote"},
                    meter_value=[mv201(T3, sv201(45.0, ENERGY, "kWh", context="Transaction.End"))],
                ),
                answers,
            )

    sink, gateway = run(body)
    assert not gateway.rejected and not any(isinstance(a, str) for a in answers)
    session = "CS-EV-c0ffee00-0001@20261124T081500Z"
    assert of_type(sink, SessionStart) == [
        SessionStart(TS0, "CS-EV", 1, session, PSEUDONYMIZE("app-7f3a9c"), 40000.0)
    ]
    assert of_type(sink, SessionStop) == [SessionStop(TS3, "CS-EV", 1, session, 45000.0, "Remote")]
    assert [
        (r.ts_ns, r.connector_id, r.session_id, r.energy_wh, r.power_w)
        for r in of_type(sink, Reading)
    ] == [
        (TS0, 1, session, 40000.0, None),
        (TS1, 0, None, 81_234_500.0, None),
        (TS1, 1, session, 42500.0, 11000.0),
        (TS2, 1, session, 45000.0, 0.0),
        (TS3, 1, session, 45000.0, None),
    ]
    assert [(e.ts_ns, e.connector_id, e.status.value) for e in of_type(sink, StatusChange)] == [
        (TS0, 1, "Preparing"),
        (parse_ts("2026-11-24T08:16:00Z"), 1, "Charging"),
        (parse_ts("2026-11-24T08:20:00Z"), 1, "SuspendedEVSE"),
        (parse_ts("2026-11-24T08:25:00Z"), 1, "Charging"),
        (TS2, 1, "SuspendedEV"),
        (TS3, 1, "Finishing"),
    ]
    assert gateway.stats.security_events == {"SettingSystemTime": 1}


def test_v201_the_main_meter_is_no_session_while_a_card_first_session_waits_for_its_evse() -> None:
    """Fault found: a transaction started by a card before the cable (TxStartPoint Authorized:
    Started names no evse, the EVSE is not known yet) waits in the book on "EVSE 0", and the
    main meter's MeterValues (evseId 0, its clock-aligned register of the whole station) went
    into that session, 81 MWh beside the session's 10 kWh. evseId 0 is the main meter's, no
    session's; the session's own values, before and after its EVSE is known, stay its own."""
    tx = {"transaction_id": "IDT-1"}

    def kwh(ts: str, value: float) -> list[dict[str, Any]]:
        return [mv201(ts, sv201(value, ENERGY, "kWh", context="Sample.Clock"))]

    async def body(url: str) -> None:
        async with station(url, "CS-IDT", "ocpp2.0.1") as cs:
            for message in (
                tx_event(
                    "Started",
                    T0,
                    "Authorized",
                    0,
                    tx | {"charging_state": "Idle"},
                    id_token={"id_token": TAG, "type": "ISO14443"},
                ),
                call201.MeterValues(evse_id=0, meter_value=kwh(T0, 81234.5)),
                tx_event(
                    "Updated",
                    T1,
                    "CablePluggedIn",
                    1,
                    tx | {"charging_state": "Charging"},
                    evse={"id": 2, "connector_id": 1},
                    meter_value=kwh(T1, 10.0),
                ),
                call201.MeterValues(evse_id=0, meter_value=kwh(T2, 81240.0)),
                call201.MeterValues(evse_id=2, meter_value=kwh(T2, 15.5)),
                tx_event(
                    "Ended",
                    T3,
                    "EVDeparted",
                    2,
                    tx | {"stopped_reason": "EVDisconnected"},
                    meter_value=kwh(T3, 20.0),
                ),
            ):
                await cs.call(message, suppress=False)

    sink, gateway = run(body)
    assert not gateway.rejected
    session = "CS-IDT-IDT-1@20261124T081500Z"
    readings = [
        (r.ts_ns, r.connector_id, r.session_id, r.energy_wh) for r in of_type(sink, Reading)
    ]
    assert readings == [
        (TS0, 0, None, 81_234_500.0),
        (TS1, 2, session, 10000.0),
        (TS2, 0, None, 81_240_000.0),
        (TS2, 2, session, 15500.0),
        (TS3, 2, session, 20000.0),
    ]
    assert of_type(sink, SessionStop) == [
        SessionStop(TS3, "CS-IDT", 2, session, 20000.0, "EVDisconnected")
    ]


@pytest.mark.parametrize("end_state", ["SuspendedEVSE", "EVConnected", "Idle"])
def test_v201_a_fault_stays_the_evses_status_until_the_station_clears_it(end_state: str) -> None:
    """Fault found: the connector Faulted (StatusNotification) while charging, the transaction
    then reports what a fault does (SuspendedEVSE: no energy offered) and ends with
    stoppedReason GroundFault: the chargingState was stored after the fault (SuspendedEVSE,
    Finishing) and became the EVSE's status, the fault hidden, while the station (which reports
    a connector only when it changes) still had it Faulted. The fault stands until the station
    reports the connector again (Available here); Charging would end it too (energy flows)."""
    tx = {"transaction_id": "GF-1"}

    async def body(url: str) -> None:
        async with station(url, "CS-GF", "ocpp2.0.1") as cs:
            for message in (
                call201.StatusNotification(
                    timestamp=T0, connector_status="Occupied", evse_id=1, connector_id=1
                ),
                tx_event(
                    "Started",
                    T0,
                    "Authorized",
                    0,
                    tx | {"charging_state": "Charging"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": TAG, "type": "ISO14443"},
                ),
                call201.StatusNotification(
                    timestamp=T1, connector_status="Faulted", evse_id=1, connector_id=1
                ),
                tx_event(
                    "Updated",
                    T1,
                    "ChargingStateChanged",
                    1,
                    tx | {"charging_state": "SuspendedEVSE"},
                ),
                tx_event(
                    "Ended",
                    T2,
                    "AbnormalCondition",
                    2,
                    tx | {"charging_state": end_state, "stopped_reason": "GroundFault"},
                ),
                call201.StatusNotification(
                    timestamp=T3, connector_status="Available", evse_id=1, connector_id=1
                ),
            ):
                await cs.call(message, suppress=False)

    sink, gateway = run(body)
    assert not gateway.rejected
    assert [(e.ts_ns, e.status.value) for e in of_type(sink, StatusChange)] == [
        (TS0, "Preparing"),
        (TS0, "Charging"),
        (TS1, "Faulted"),
        (TS3, "Available"),
    ]
    assert of_type(sink, SessionStop) == [
        SessionStop(TS2, "CS-GF", 1, "CS-GF-GF-1@20261124T081500Z", None, "GroundFault")
    ]


def test_v201_available_before_ended_is_not_followed_by_finishing() -> None:
    """Fault found: a station that reports the connector Available (the car unplugged) before
    its TransactionEvent Ended (chargingState Idle: no EV connected) had the EVSE stored
    Finishing after that, its status until the next car (Finishing says the connector is not
    free yet). Ended with the car still plugged in (EVConnected) is still Finishing."""

    async def body(url: str) -> None:
        async with station(url, "CS-UNP", "ocpp2.0.1") as cs:
            for evse_id, state in ((1, "Idle"), (2, "EVConnected")):
                tx = {"transaction_id": f"U-{evse_id}"}
                for message in (
                    tx_event(
                        "Started",
                        T0,
                        "Authorized",
                        0,
                        tx | {"charging_state": "Charging"},
                        evse={"id": evse_id, "connector_id": 1},
                        id_token={"id_token": TAG, "type": "ISO14443"},
                    ),
                    call201.StatusNotification(
                        timestamp=T1, connector_status="Available", evse_id=evse_id, connector_id=1
                    )
                    if state == "Idle"
                    else None,
                    tx_event(
                        "Ended",
                        T1,
                        "EVDeparted" if state == "Idle" else "StopAuthorized",
                        1,
                        tx | {"charging_state": state, "stopped_reason": "Local"},
                    ),
                ):
                    if message is not None:
                        await cs.call(message, suppress=False)

    sink, _ = run(body)
    assert [(e.ts_ns, e.connector_id, e.status.value) for e in of_type(sink, StatusChange)] == [
        (TS0, 1, "Charging"),
        (TS1, 1, "Available"),
        (TS0, 2, "Charging"),
        (TS1, 2, "Finishing"),
    ]


def test_v201_device_model_reports_are_not_taken() -> None:
    """Deliberate: NotifyReport (and NotifyMonitoringReport) only answer a GetBaseReport or
    GetReport (B07, B08) of the CSMS, which this service, sending no Calls, never makes; a
    station that sends one anyway gets the CALLERROR NotSupported that OCPP-J has for an action
    the receiver does not take, nothing is stored, and the connection carries on."""
    answers: list[Any] = []

    async def body(url: str) -> None:
        async with station(url, "CS-REP", "ocpp2.0.1") as cs:
            await ask(
                cs,
                call201.NotifyReport(
                    request_id=1,
                    generated_at=T0,
                    seq_no=0,
                    tbc=False,
                    report_data=[
                        {
                            "component": {"name": "ChargingStation"},
                            "variable": {"name": "Model"},
                            "variable_attribute": [{"value": "Sim"}],
                        }
                    ],
                ),
                answers,
            )
            await ask(cs, call201.Heartbeat(), answers)

    sink, gateway = run(body)
    assert answers[0] == "NotifyReport:NotSupported" and type(answers[1]).__name__ == "Heartbeat"
    assert gateway.rejected == {"unsupported_action": 1} and sink.events == []


# --------------------------------------------------------------------------------------------
# Timestamps: zone offsets, precision, and RFC 3339's lower-case letters


STAMPS = [
    ("2026-11-24T08:15:00Z", TS0),
    ("2026-11-24T10:15:00+02:00", TS0),
    ("2026-11-24T02:45:00-05:30", TS0),
    ("2026-11-24T08:15:00.123456Z", TS0 + 123_456_000),
    ("2026-11-24T10:15:00.123456789+02:00", TS0 + 123_456_000),  # below the us: cut off
    ("2026-11-24T08:15:00.1Z", TS0 + 100_000_000),
    # Fault found: RFC 3339 (5.6, its NOTE) allows "t" and "z" in lower case; a "z" was
    # refused as no timestamp, and the message with it.
    ("2026-11-24t08:15:00z", TS0),
    ("2026-11-24T08:15:00.250z", TS0 + 250_000_000),
    ("2026-11-24t10:15:00.250+02:00", TS0 + 250_000_000),
]


@pytest.mark.parametrize(("stamp", "expected_ns"), STAMPS, ids=[s for s, _ in STAMPS])
def test_timestamps_of_either_version_are_the_instant_they_name(
    stamp: str, expected_ns: int
) -> None:
    async def body(url: str) -> None:
        async with station(url, "CP-TZ", "ocpp1.6") as cp:
            await cp.call(call16.MeterValues(connector_id=1, meter_value=[mv16(stamp, sv16("1"))]))
            await cp.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available", timestamp=stamp
                )
            )
        async with station(url, "CS-TZ", "ocpp2.0.1") as cs:
            await cs.call(
                tx_event(
                    "Started",
                    stamp,
                    "Authorized",
                    0,
                    {"transaction_id": "tz"},
                    evse={"id": 1},
                    id_token={"id_token": TAG, "type": "ISO14443"},
                    meter_value=[mv201(stamp, sv201(1.0))],
                )
            )

    sink, gateway = run(body)
    assert not gateway.rejected
    stamped = [e.ts_ns for e in sink.events]
    assert stamped == [expected_ns] * 5  # reading, status; authorize, start, reading


def test_v201_a_started_resent_with_the_same_instant_written_otherwise_is_the_same_session() -> (
    None
):
    """A Started re-sent after a lost answer (from a queue that stores the time, not the
    string) names the same instant in another form (a zone offset, more digits): one session,
    since the session is named by the instant."""

    async def body(url: str) -> None:
        for stamp in ("2026-11-24T08:15:00.500Z", "2026-11-24T09:15:00.500000+01:00"):
            async with station(url, "CS-RS", "ocpp2.0.1") as cs:
                await cs.call(
                    tx_event(
                        "Started",
                        stamp,
                        "Authorized",
                        0,
                        {"transaction_id": "1"},
                        evse={"id": 1},
                        id_token={"id_token": TAG, "type": "ISO14443"},
                    )
                )

    sink, _ = run(body)
    starts = of_type(sink, SessionStart)
    assert [s.session_id for s in starts] == ["CS-RS-1@20261124T081500.5Z"]  # not a second one


def test_a_malformed_timestamp_is_still_refused_by_name() -> None:
    """The lower-case letters aside, a stamp that is no RFC 3339 (no zone) is refused with
    FormationViolation naming the field, as before."""
    frames: list[Any] = []

    async def body(url: str) -> None:
        async with connect(f"{url}/CP-BADTS", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            payload = {"connectorId": 1, "meterValue": [mv16("2026-11-24t08:15:00", sv16("1"))]}
            await ws.send(orjson.dumps([2, "m1", "MeterValues", payload]).decode())
            frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))

    sink, _ = run(body)
    assert frames[0][:3] == [4, "m1", "FormationViolation"] and "timestamp" in frames[0][3]
    assert sink.events == []
