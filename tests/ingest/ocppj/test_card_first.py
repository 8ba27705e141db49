"""OCPP 2.0.1 card-first transactions: the driver badges before plugging in.

A station with several EVSEs does not know, when the card is read, which EVSE the car will use:
its TransactionEvent Started (triggerReason Authorized, TxStartPoint Authorized) carries the id
token and no ``evse``; the first event after the cable is plugged in names the EVSE (OCPP 2.0.1
E03; its Transaction.Begin meter values come then, OCTT TC_J_08 / J02.FR.19).

Fault found: the session's start went out at Started on connector 0, its readings and stop on
the EVSE. The catalogue takes a session's connector from its start and the session API reads
readings by connector: the session showed no readings, no segments and an empty profile (its
energy, computed by session id, was right). The start now waits in the book, with its token's
pseudonym (never the clear token), for the EVSE: it goes out with the first event that names
the EVSE, stamped at Started's time; a transaction ended before any EVSE was named gets its
start then, on connector 0. Several instances share the wait through the state database
(column ``pending_id_tag``, added to a database made before it).

What it did not do, before or after: the readings carry their session id, so neither the file
path nor the detection job took them for energy of no session (no unauthorized_energy).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from analytics.assemble import assemble
from chargewatch.events import (
    Authorize,
    Event,
    Reading,
    SessionStart,
    SessionStop,
    format_ts,
    parse_ts,
)
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.roles import Role
from chargewatch.state import StateStore
from ingest.ocppj.shared_book import OpenTransactionRow, SharedBook
from tests.conftest import postgres_database
from tests.service.test_serve import ServeProcess, wait_for

from .harness import PSEUDONYMIZE, Collector, make_gateway, serving

TAG = "04C3D2E1F0A1B2"
T0 = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
CARD = {"idToken": TAG, "type": "ISO14443"}
POWER_W = 7400.0  # a 32 A single-phase charge


def stamp(at: datetime, minutes: float) -> str:
    return (at + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_of(station_id: str, tx_id: str, at: datetime) -> str:
    return f"{station_id}-{tx_id}@{at.strftime('%Y%m%dT%H%M%SZ')}"


def tx_event(kind: str, ts: str, seq_no: int, tx_id: str, **more: Any) -> dict[str, Any]:
    triggers = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}
    return {
        "eventType": kind,
        "timestamp": ts,
        "triggerReason": more.pop("trigger", triggers[kind]),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id, **more.pop("info", {})},
        **more,
    }


def meter(ts: str, energy_wh: float, power_w: float | None = None) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = [
        {"value": energy_wh, "measurand": "Energy.Active.Import.Register"}
    ]
    if power_w is not None:
        values.append({"value": power_w, "measurand": "Power.Active.Import"})
    return [{"timestamp": ts, "sampledValue": values}]


def card_first(
    at: datetime, tx_id: str = "CF-1", evse: int = 2, minutes: int = 30
) -> list[tuple[str, dict[str, Any]]]:
    """A card-first transaction as a station with several EVSEs sends it: Started by the card
    (no evse), the cable plugged in a minute later on ``evse`` (Transaction.Begin register),
    ``minutes`` of charging at ``POWER_W`` in periodic Updated events (no evse), Ended."""
    frames: list[tuple[str, dict[str, Any]]] = [
        ("TransactionEvent", tx_event("Started", stamp(at, 0), 0, tx_id, idToken=CARD)),
        (
            "StatusNotification",
            {"timestamp": stamp(at, 1), "connectorStatus": "Occupied", "evseId": evse}
            | {"connectorId": 1},
        ),
        (
            "TransactionEvent",
            tx_event(
                "Updated",
                stamp(at, 1),
                1,
                tx_id,
                trigger="CablePluggedIn",
                info={"chargingState": "EVConnected"},
                evse={"id": evse, "connectorId": 1},
                meterValue=meter(stamp(at, 1), 10_000.0),
            ),
        ),
    ]
    energy_wh = 10_000.0
    for minute in range(2, 2 + minutes):
        energy_wh += POWER_W / 60
        frames.append(
            (
                "TransactionEvent",
                tx_event(
                    "Updated",
                    stamp(at, minute),
                    minute,
                    tx_id,
                    info={"chargingState": "Charging"} if minute == 2 else {},
                    meterValue=meter(stamp(at, minute), round(energy_wh, 1), POWER_W),
                ),
            )
        )
    end = stamp(at, 2 + minutes)
    ended = tx_event(
        "Ended",
        end,
        2 + minutes,
        tx_id,
        info={"stoppedReason": "EVDisconnected"},
        meterValue=meter(end, round(energy_wh, 1), 0.0),
    )
    return [*frames, ("TransactionEvent", ended)]


async def call(ws: ClientConnection, message_id: str, action: str, payload: Any) -> Any:
    await ws.send(orjson.dumps([2, message_id, action, payload]).decode())
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    assert answer[0] == 3, answer
    return answer[2]


async def play(url: str, station_id: str, frames: list[tuple[str, dict[str, Any]]]) -> None:
    async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
        for i, (action, payload) in enumerate(frames):
            await call(ws, f"{station_id}-{i}", action, payload)


def run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(body())


def through_gateway(frames: list[tuple[str, dict[str, Any]]], station_id: str) -> Collector:
    sink = Collector()
    gateway = make_gateway(sink)

    async def body() -> None:
        async with serving(gateway) as url:
            await play(url, station_id, frames)

    run(body)
    gateway.close()
    return sink


def of_type(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# -- the gateway's events ------------------------------------------------------------------------


def test_a_card_first_session_starts_on_its_evse_at_the_time_of_the_card() -> None:
    sink = through_gateway(card_first(T0), "CS-CF")
    session, pseudonym = session_of("CS-CF", "CF-1", T0), PSEUDONYMIZE(TAG)
    t0 = parse_ts(stamp(T0, 0))
    assert of_type(sink.events, SessionStart) == [
        SessionStart(t0, "CS-CF", 2, session, pseudonym, 10_000.0)
    ]
    started = next(c for c in sink.calls if of_type(c, Authorize))  # the card, no EVSE yet
    assert not of_type(started, SessionStart)
    readings = of_type(sink.events, Reading)
    assert len(readings) == 32
    assert {(r.connector_id, r.session_id) for r in readings} == {(2, session)}
    assert [(s.connector_id, s.session_id) for s in of_type(sink.events, SessionStop)] == [
        (2, session)
    ]
    # the start goes before the session's first reading: the readers take a session's
    # connector from what they see of it first
    first = next(i for i, e in enumerate(sink.events) if getattr(e, "session_id", None))
    assert isinstance(sink.events[first], SessionStart)


def test_a_card_first_transaction_ended_before_any_evse_keeps_its_start_on_connector_0() -> None:
    """The driver badged and left (a timeout, EVConnectTimeout): no EVSE was ever named. Its
    start goes out with its end, the card's, at Started's time; the end's register is no
    start's."""
    end = stamp(T0, 2)
    frames = [
        ("TransactionEvent", tx_event("Started", stamp(T0, 0), 0, "CF-2", idToken=CARD)),
        (
            "TransactionEvent",
            tx_event(
                "Ended",
                end,
                1,
                "CF-2",
                trigger="EVConnectTimeout",
                info={"stoppedReason": "Timeout"},
                meterValue=meter(end, 5000.0),
            ),
        ),
    ]
    sink = through_gateway(frames, "CS-CF")
    session = session_of("CS-CF", "CF-2", T0)
    t0, t_end = parse_ts(stamp(T0, 0)), parse_ts(end)
    assert of_type(sink.events, SessionStart) == [
        SessionStart(t0, "CS-CF", 0, session, PSEUDONYMIZE(TAG), None)
    ]
    assert of_type(sink.events, SessionStop) == [
        SessionStop(t_end, "CS-CF", 0, session, 5000.0, "Timeout")
    ]


# -- the file path -------------------------------------------------------------------------------


def as_json(event: Event) -> dict[str, Any]:
    """An event in the event format (CONTRACTS.md, section 1)."""
    fields = event._asdict()
    out: dict[str, Any] = {"type": event.type.value, "ts": format_ts(fields.pop("ts_ns"))}
    if "id_pseudonym" in fields:
        out["id_tag"] = fields.pop("id_pseudonym")
    for key, value in fields.items():
        if value is not None:
            out[key] = getattr(value, "value", value)
    return out


def test_the_file_path_sees_the_session_on_its_evse_with_all_its_readings(tmp_path: Path) -> None:
    sink = through_gateway(card_first(T0), "CS-CF")
    session = session_of("CS-CF", "CF-1", T0)
    batch = assemble(enumerate(sink.events))
    row = list(batch.session_id).index(session)
    assert (int(batch.connector_id[row]), int(batch.n_samples[row])) == (2, 32)
    assert int(batch.start_ns[row]) == parse_ts(stamp(T0, 0))
    assert [s for s in batch.session_id if s is None] == []  # no orphan readings
    events, flags = tmp_path / "events.jsonl", tmp_path / "flags.jsonl"
    events.write_bytes(b"".join(orjson.dumps(as_json(e)) + b"\n" for e in sink.events))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargewatch",
            "detect",
            "--input",
            str(events),
            "--output",
            str(flags),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    kinds = [orjson.loads(line)["kind"] for line in flags.read_bytes().splitlines()]
    assert "unauthorized_energy" not in kinds and "data_gap" not in kinds, kinds


# -- several instances on one state database -----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("cw_cardfirst") as url:
        yield url


def test_an_instance_taking_over_mid_transaction_sends_the_held_start(state_url: str) -> None:
    """Started by the card on A; the station reconnects to B before plugging in: B finds the
    held start (and the card's pseudonym, never the card) in the state database and sends it
    on the EVSE; back on A, the end sends no second start."""
    stores = StateStore(state_url), StateStore(state_url)
    books = SharedBook(stores[0].engine), SharedBook(stores[1].engine)
    sinks = Collector(), Collector()
    gateways = make_gateway(sinks[0], book=books[0]), make_gateway(sinks[1], book=books[1])
    frames = card_first(T0, "CF-3", evse=3, minutes=2)
    held: list[Any] = []

    async def body() -> None:
        async with serving(gateways[0]) as url_a, serving(gateways[1]) as url_b:
            await play(url_a, "CS-CF", frames[:1])
            with Session(stores[0].engine) as db:
                held.extend(db.execute(select(OpenTransactionRow.pending_id_tag)).scalars())
            await play(url_b, "CS-CF", frames[1:4])
            await play(url_a, "CS-CF", frames[4:])

    try:
        run(body)
    finally:
        for gateway in gateways:
            gateway.close()
        for store in stores:
            store.close()
    session, pseudonym = session_of("CS-CF", "CF-3", T0), PSEUDONYMIZE(TAG)
    assert held == [pseudonym]
    assert not of_type(sinks[0].events, SessionStart)
    assert of_type(sinks[1].events, SessionStart) == [
        SessionStart(parse_ts(stamp(T0, 0)), "CS-CF", 3, session, pseudonym, 10_000.0)
    ]
    stops = of_type(sinks[0].events, SessionStop)
    assert [(s.connector_id, s.session_id) for s in stops] == [(3, session)]


# The book's open table as made before ``pending_id_tag``, with what was stored then of a
# card-first transaction (its start sent at Started, on connector 0) and of a plug-in-first one
# waiting for its token on EVSE 4.
_BEFORE = (
    "CREATE TABLE ocpp_open_transactions (station_id VARCHAR(128) NOT NULL, tx_id VARCHAR(64) "
    "NOT NULL, connector_id INTEGER NOT NULL, touched_ns BIGINT NOT NULL, pending_ts_ns BIGINT, "
    "pending_meter_wh FLOAT, start_id_tag VARCHAR(64), start_ts_ns BIGINT, start_meter_wh "
    "BIGINT, session_id VARCHAR(256), first_ns BIGINT, PRIMARY KEY (station_id, tx_id), "
    "CONSTRAINT uq_ocpp_open_transactions_start UNIQUE "
    "(station_id, connector_id, start_id_tag, start_ts_ns, start_meter_wh))",
    "INSERT INTO ocpp_open_transactions (station_id, tx_id, connector_id, touched_ns, "
    "session_id, first_ns) VALUES ('CS-CF', 'old-card', 0, 1, 'CS-CF-old-card@20261124T081500Z',"
    " 1795508100000000000)",
    "INSERT INTO ocpp_open_transactions (station_id, tx_id, connector_id, touched_ns, "
    "pending_ts_ns, pending_meter_wh, session_id, first_ns) VALUES ('CS-CF', 'old-plug', 4, 1, "
    "1795508100000000000, 2000.0, 'CS-CF-old-plug@20261124T081500Z', 1795508100000000000)",
)


def test_a_database_made_before_the_held_token_gets_its_column_and_keeps_its_rows(
    state_url: str,
) -> None:
    engine = create_engine(state_url)
    with engine.begin() as connection:
        for statement in _BEFORE:
            connection.execute(text(statement))
    store = StateStore(state_url)
    sink = Collector()
    gateway = make_gateway(sink, book=SharedBook(store.engine))
    second = SharedBook(store.engine)  # a second instance starting finds the column there
    t1 = stamp(T0, 5)
    frames = [
        (
            "TransactionEvent",
            tx_event("Updated", t1, 1, "old-card", evse={"id": 2}, meterValue=meter(t1, 50.0)),
        ),
        ("TransactionEvent", tx_event("Updated", t1, 1, "old-plug", idToken=CARD)),
    ]

    async def body() -> None:
        async with serving(gateway) as url:
            await play(url, "CS-CF", frames)

    try:
        run(body)
        columns = {c["name"] for c in inspect(engine).get_columns("ocpp_open_transactions")}
    finally:
        gateway.close()
        second.shutdown()
        store.close()
        engine.dispose()
    assert "pending_id_tag" in columns
    # the card-first one's start went out before the upgrade: none again
    assert of_type(sink.events, SessionStart) == [
        SessionStart(
            parse_ts(stamp(T0, 0)),
            "CS-CF",
            4,
            "CS-CF-old-plug@20261124T081500Z",
            PSEUDONYMIZE(TAG),
            2000.0,
        )
    ]
    readings = of_type(sink.events, Reading)
    assert [(r.connector_id, r.session_id) for r in readings] == [
        (2, "CS-CF-old-card@20261124T081500Z")
    ]


# -- through serve into InfluxDB and the session API ---------------------------------------------


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"card_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def test_through_serve_the_session_api_shows_the_card_first_sessions_readings(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    """Before: the session API answered connector 0, ``readings: 0``, no segments, and a
    profile of one empty point; its energy was right (the detection job reads by session)."""
    serve = ServeProcess(tmp_path, influxd.url, database, CHARGEWATCH_DETECT_INTERVAL_S="1")
    keys = StateStore(f"sqlite:///{tmp_path / 'state.db'}")  # serve's (CHARGEWATCH_DATA_DIR)
    viewer = keys.create_api_key(Role.VIEWER)
    keys.close()
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    station_id = f"CS-{uuid.uuid4().hex[:6]}"
    session = session_of(station_id, "CF-1", at)
    headers = {"Authorization": f"Bearer {viewer}"}
    url = f"http://127.0.0.1:{serve.port}/api/v1/sessions/{session}"
    serve.start()
    try:
        run(lambda: play(f"ws://127.0.0.1:{serve.port}/ocpp", station_id, card_first(at)))

        def judged_closed() -> bool:  # the job may judge it open first, as it arrives
            answer = httpx.get(url, headers=headers, timeout=5)
            return answer.status_code == 200 and answer.json()["open"] is False

        wait_for(judged_closed)
        detail = httpx.get(url, headers=headers, timeout=5).json()
        profile = httpx.get(f"{url}/profile", headers=headers, timeout=5).json()
    finally:
        serve.kill(signal.SIGTERM)
    assert (detail["connector_id"], detail["start"]) == (2, format_ts(parse_ts(stamp(at, 0))))
    # the readings that carry power (the plug-in one holds the register only): 30 + the end's
    assert detail["readings"] == 31
    assert [s["kind"] for s in detail["segments"]][:1] == ["charging"]
    assert detail["energy"]["register_wh"] == pytest.approx(POWER_W / 2, abs=1)
    assert detail["flagged_kinds"] == []
    powers = [p["power_w"] for p in profile["points"] if p["power_w"] is not None]
    assert len(powers) >= 30 and max(powers) == POWER_W
