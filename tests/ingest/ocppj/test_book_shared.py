"""The transaction book in the state database: two ``SharedBook`` objects on one database are
two service instances. On SQLite and on the PostgreSQL of this machine (127.0.0.1:5432), a
database of its own per test.

- A transaction opened on one instance is found on the other (its connector, its session),
  and closed there for both; a 2.0.1 Started still waiting for its id token likewise.
- A StartTransaction re-sent after a lost answer gets the same id on either instance, also
  when both instances take it at the same moment; the id counter is not advanced again.
- A station comes back to an instance whose cache is stale: the database is what counts.
- The per-station bound holds in the database; one station never evicts another's.
- The gateways themselves: a 1.6 station starts on one, reconnects to the other, and its
  readings and stop land on the right connector and session; a 2.0.1 transaction started
  without a token on one gets its start and stop on its EVSE from events on the other that
  name none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.orm import Session
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from chargewatch.events import Reading, SessionStart, SessionStop
from chargewatch.state import StateError, StateStore
from ingest.ocppj import OcppGateway
from ingest.ocppj.book import MAX_OPEN_PER_STATION, OpenTransaction, StartKey
from ingest.ocppj.shared_book import (
    MAX_CLOSED_PER_STATION,
    ClosedTransactionRow,
    OpenTransactionRow,
    SharedBook,
)
from tests.conftest import postgres_database

from .harness import PSEUDONYMIZE, Collector, make_gateway, serving

T = "2026-11-24T08:15:00Z"
T_NS = 1_795_508_100_000_000_000  # T in ns


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("cw_book") as url:
        yield url


@pytest.fixture
def two_stores(state_url: str) -> Iterator[tuple[StateStore, StateStore]]:
    """Two instances' connections to one state database."""
    first, second = StateStore(state_url), StateStore(state_url)
    yield first, second
    first.close()
    second.close()


_BOOKS: list[SharedBook] = []


def shared(store: StateStore, per_station: int = MAX_OPEN_PER_STATION) -> SharedBook:
    """An instance's book on ``store``; its threads stop after the test."""
    _BOOKS.append(SharedBook(store.engine, per_station))
    return _BOOKS[-1]


@pytest.fixture(autouse=True)
def _stop_books() -> Iterator[None]:
    yield
    while _BOOKS:
        _BOOKS.pop().shutdown()


class CountingIds:
    """The real counter of the state database, counting how often it was asked."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.store.next_value()


def key(connector: int = 2, ts_ns: int = T_NS, meter: int = 1200) -> StartKey:
    return StartKey(connector, PSEUDONYMIZE("TAG-1"), ts_ns, meter)


def run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(body())


# -- the book itself -----------------------------------------------------------------------------


def test_a_transaction_started_on_one_instance_is_known_on_the_other(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    a, b = shared(two_stores[0]), shared(two_stores[1])

    async def body() -> None:
        tx_id = await a.start("CP-1", key(), two_stores[0].next_value)
        assert await b.get("CP-1", str(tx_id)) == OpenTransaction(2, None, key())
        assert await b.open_on("CP-1", 2) == str(tx_id)
        assert await b.open_on("CP-1", 1) is None and await b.get("CP-2", str(tx_id)) is None
        await b.close("CP-1", str(tx_id))
        a.station_connected("CP-1")  # the station comes back to A
        assert await a.get("CP-1", str(tx_id)) is None and await a.open_on("CP-1", 2) is None

    run(body)


def test_a_started_event_waiting_for_its_token_moves_with_the_station(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """2.0.1: Started without an id token keeps its time and register for the event that has
    one; that event may come to the other instance."""
    a, b = shared(two_stores[0]), shared(two_stores[1])
    waiting = OpenTransaction(3, (T_NS, 5000.5))

    async def body() -> None:
        await a.open("CS-1", "tx-abc", waiting)
        assert await b.get("CS-1", "tx-abc") == waiting
        await b.open("CS-1", "tx-abc", OpenTransaction(3, None))  # the token came
        a.station_connected("CS-1")
        assert await a.get("CS-1", "tx-abc") == OpenTransaction(3, None)

    run(body)


def test_a_resent_start_transaction_gets_the_same_id_on_either_instance(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    a, b = shared(two_stores[0]), shared(two_stores[1])
    ids_a, ids_b = CountingIds(two_stores[0]), CountingIds(two_stores[1])

    async def body() -> None:
        first = await a.start("CP-1", key(), ids_a)
        assert await a.start("CP-1", key(), ids_a) == first  # same instance, from its cache
        assert await b.start("CP-1", key(), ids_b) == first  # the other, from the database
        assert (ids_a.calls, ids_b.calls) == (1, 0)
        # Any field different: another transaction.
        others = [
            await b.start("CP-1", key(connector=1), ids_b),
            await b.start("CP-1", key(ts_ns=T_NS + 1_000_000_000), ids_b),
            await b.start("CP-1", key(meter=1201), ids_b),
            await b.start("CP-1", key()._replace(id_tag=PSEUDONYMIZE("TAG-2")), ids_b),
            await b.start("CP-2", key(), ids_b),
        ]
        assert len({first, *others}) == 6
        # Once stopped, the same fields again are a new transaction.
        await a.close("CP-1", str(first))
        b.station_connected("CP-1")
        assert await b.start("CP-1", key(), ids_b) not in {first, *others}

    run(body)


def test_the_same_start_transaction_on_both_instances_at_once_gets_one_id(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """Each instance takes it on its own worker threads; the unique key keeps the first row and
    every other insert reads its id."""
    a, b = shared(two_stores[0]), shared(two_stores[1])

    async def body() -> list[int]:
        starts = [
            book.start("CP-1", key(), store.next_value)
            for book, store in [(a, two_stores[0]), (b, two_stores[1])] * 4
        ]
        return list(await asyncio.gather(*starts))

    ids = run(body)
    assert len(set(ids)) == 1
    with two_stores[0].engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(OpenTransactionRow)).scalar()
    assert rows == 1


def test_a_station_back_on_an_instance_with_a_stale_cache_gets_the_databases_book(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    a, b = shared(two_stores[0]), shared(two_stores[1])

    async def body() -> None:
        old = await a.start("CP-1", key(), two_stores[0].next_value)
        assert await a.open_on("CP-1", 2) == str(old)  # A holds the station's book
        b.station_connected("CP-1")  # the station moves to B: stops, starts anew there
        await b.close("CP-1", str(old))
        new = await b.start("CP-1", key(ts_ns=T_NS + 3600 * 10**9), two_stores[1].next_value)
        a.station_connected("CP-1")  # and comes back to A
        assert await a.open_on("CP-1", 2) == str(new)
        assert await a.get("CP-1", str(old)) is None

    run(body)


def test_the_bound_per_station_holds_in_the_database(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    a = shared(two_stores[0], per_station=10)
    b = shared(two_stores[1], per_station=10)

    async def body() -> None:
        await a.open("A", "a-1", OpenTransaction(1, None))
        for i in range(25):
            await b.open("B", f"b-{i}", OpenTransaction(i % 3, None))
        for book in (a, b):  # B's memory and A's fresh look at the database agree
            assert await book.get("A", "a-1") == OpenTransaction(1, None)
            assert await book.get("B", "b-14") is None and await book.get("B", "b-15") is not None
            assert await book.open_on("B", 0) == "b-24"

    run(body)
    with two_stores[0].engine.connect() as connection:
        count = select(func.count()).select_from(OpenTransactionRow)
        assert connection.execute(count.where(OpenTransactionRow.station_id == "B")).scalar() == 10


def test_the_cache_holds_only_connected_stations(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    book = shared(two_stores[0])

    async def body() -> None:
        for i in range(5):
            await book.open(f"CP-{i}", "1", OpenTransaction(1, None))
        assert book.cached_stations() == 5
        for i in range(5):
            book.station_gone(f"CP-{i}")
        assert book.cached_stations() == 0
        assert await book.open_on("CP-3", 1) == "1"  # still in the database

    run(body)


def test_a_reconnecting_fleet_reads_its_books_in_a_few_queries_each_its_own(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    writer, reader = shared(two_stores[0]), shared(two_stores[1])
    stations = [f"CP-{i}" for i in range(300)]
    selects: list[str] = []

    def count_selects(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    async def body() -> list[str | None]:
        for i, station in enumerate(stations[::2]):  # every other station has a transaction
            await writer.open(station, f"tx-{i}", OpenTransaction(1 + i % 4, None))
        event.listen(two_stores[1].engine, "before_cursor_execute", count_selects)
        try:  # the whole fleet's first messages at once, as after a restart
            return list(
                await asyncio.gather(
                    *(reader.open_on(station, 1 + i // 2 % 4) for i, station in enumerate(stations))
                )
            )
        finally:
            event.remove(two_stores[1].engine, "before_cursor_execute", count_selects)

    found = run(body)
    assert found == [f"tx-{i // 2}" if i % 2 == 0 else None for i in range(len(stations))]
    assert len(selects) <= 3  # the first station's, then the others that waited, together
    assert reader.cached_stations() == len(stations)


def test_a_database_failure_is_a_state_error_naming_what_failed(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    book = shared(two_stores[0])
    with two_stores[1].engine.begin() as connection:
        connection.execute(text("DROP TABLE ocpp_open_transactions"))

    async def body() -> None:
        with pytest.raises(StateError, match="cannot read the transaction book"):
            await book.get("CP-1", "1")

    run(body)


# -- two gateways, one database ------------------------------------------------------------------


async def call(ws: ClientConnection, message_id: str, action: str, payload: Any) -> Any:
    await ws.send(orjson.dumps([2, message_id, action, payload]).decode())
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    assert answer[0] == 3, answer
    return answer[2]


def test_a_station_reconnecting_to_another_gateway_keeps_its_session(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    sink_a, sink_b = Collector(), Collector()
    gateway_a = make_gateway(sink_a, book=shared(two_stores[0]))
    gateway_b = make_gateway(sink_b, book=shared(two_stores[1]))
    start = {"connectorId": 2, "idTag": "TAG-1", "meterStart": 1200, "timestamp": T}
    reading = [
        {
            "timestamp": T,
            "sampledValue": [{"value": "7400", "unit": "W", "measurand": "Power.Active.Import"}],
        }
    ]

    async def body() -> int:
        async with serving(gateway_a) as url_a, serving(gateway_b) as url_b:
            async with _station(url_a) as ws:
                tx_id = int((await call(ws, "1", "StartTransaction", start))["transactionId"])
            async with _station(url_b) as ws:  # the answer was lost: the station sends it again
                again = await call(ws, "2", "StartTransaction", start)
                assert again["transactionId"] == tx_id
                await call(ws, "3", "MeterValues", {"connectorId": 2, "meterValue": reading})
                stop = {"transactionId": tx_id, "meterStop": 9000, "timestamp": T}
                await call(ws, "4", "StopTransaction", stop)
        return tx_id

    tx_id = run(body)
    _close(gateway_a, gateway_b)
    session = f"CP-1-{tx_id}"
    starts = [e for e in sink_a.events + sink_b.events if isinstance(e, SessionStart)]
    assert {(s.connector_id, s.session_id) for s in starts} == {(2, session)}
    readings = [e for e in sink_b.events if isinstance(e, Reading)]
    assert [(r.connector_id, r.session_id) for r in readings] == [(2, session)]
    stops = [e for e in sink_b.events if isinstance(e, SessionStop)]
    assert [(s.connector_id, s.session_id, s.meter_stop_wh) for s in stops] == [
        (2, session, 9000.0)
    ]


def test_a_201_transaction_started_without_a_token_ends_right_on_the_other_gateway(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """Started (EVSE 3, no id token yet) on A; on B the token comes and the transaction ends,
    neither event naming the EVSE: the session starts at Started's time and register, on EVSE
    3, and stops there."""
    sink_a, sink_b = Collector(), Collector()
    gateway_a = make_gateway(sink_a, book=shared(two_stores[0]))
    gateway_b = make_gateway(sink_b, book=shared(two_stores[1]))
    register = [
        {
            "timestamp": T,
            "sampledValue": [{"value": 5000, "measurand": "Energy.Active.Import.Register"}],
        }
    ]
    info = {"transactionId": "tx-201"}
    started = {
        "eventType": "Started",
        "timestamp": T,
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": info,
        "evse": {"id": 3},
        "meterValue": register,
    }
    later = "2026-11-24T08:45:00Z"
    token = {"idToken": "TAG-1", "type": "ISO14443"}
    updated = {
        "eventType": "Updated",
        "timestamp": later,
        "triggerReason": "Authorized",
        "seqNo": 1,
        "transactionInfo": info,
        "idToken": token,
    }
    ended = updated | {"eventType": "Ended", "triggerReason": "EVDeparted", "seqNo": 2}

    async def body() -> None:
        async with serving(gateway_a) as url_a, serving(gateway_b) as url_b:
            async with _station(url_a, "CS-1", "ocpp2.0.1") as ws:
                await call(ws, "1", "TransactionEvent", started)
            async with _station(url_b, "CS-1", "ocpp2.0.1") as ws:
                await call(ws, "2", "TransactionEvent", updated)
                await call(ws, "3", "TransactionEvent", ended)

    run(body)
    _close(gateway_a, gateway_b)
    starts = [e for e in sink_b.events if isinstance(e, SessionStart)]
    assert [(s.connector_id, s.session_id, s.ts_ns, s.meter_start_wh) for s in starts] == [
        (3, "CS-1-tx-201@20261124T081500Z", T_NS, 5000.0)
    ]
    assert starts[0].id_pseudonym == PSEUDONYMIZE("TAG-1")
    stops = [e for e in sink_b.events if isinstance(e, SessionStop)]
    assert [(s.connector_id, s.session_id) for s in stops] == [(3, "CS-1-tx-201@20261124T081500Z")]
    assert not [e for e in sink_a.events if isinstance(e, SessionStart | SessionStop)]


def _tx_event(kind: str, ts: str, seq_no: int, tx_id: str, **more: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": ts,
        "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id},
        **more,
    }


def _energy(ts: str, wh: float) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": ts,
            "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}],
        }
    ]


def test_a_reused_201_transaction_id_is_a_new_session_on_either_gateway(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """2.0.1 transaction "1" starts and ends on A; the station reconnects to B, re-sends the
    Ended (its answer was lost: the first session's), and its next transaction is "1" again (a
    new session); back on A, its events that name no EVSE go to the second session, on EVSE
    3, whatever A's cache held: both instances read what the other wrote."""
    sink_a, sink_b = Collector(), Collector()
    gateway_a = make_gateway(sink_a, book=shared(two_stores[0]))
    gateway_b = make_gateway(sink_b, book=shared(two_stores[1]))
    stamps = [f"2026-11-24T08:{m:02d}:00Z" for m in (15, 25, 45, 55, 59)]
    token = {"idToken": "TAG-1", "type": "ISO14443"}
    first = _tx_event("Started", stamps[0], 0, "1", evse={"id": 3}, idToken=token)
    first_ended = _tx_event("Ended", stamps[1], 1, "1", meterValue=_energy(stamps[1], 9000))
    second = _tx_event("Started", stamps[2], 0, "1", evse={"id": 3}, idToken=token)

    async def body() -> None:
        async with serving(gateway_a) as url_a, serving(gateway_b) as url_b:
            async with _station(url_a, "CS-1", "ocpp2.0.1") as ws:
                await call(ws, "1", "TransactionEvent", first)
                await call(ws, "2", "TransactionEvent", first_ended)
            async with _station(url_b, "CS-1", "ocpp2.0.1") as ws:
                await call(ws, "3", "TransactionEvent", first_ended)
                await call(ws, "4", "TransactionEvent", second)
            async with _station(url_a, "CS-1", "ocpp2.0.1") as ws:
                updated = _tx_event(
                    "Updated", stamps[3], 1, "1", meterValue=_energy(stamps[3], 12000)
                )
                await call(ws, "5", "TransactionEvent", updated)
                await call(ws, "6", "TransactionEvent", _tx_event("Ended", stamps[4], 2, "1"))

    run(body)
    _close(gateway_a, gateway_b)
    one, two = "CS-1-1@20261124T081500Z", "CS-1-1@20261124T084500Z"
    events = sink_a.events + sink_b.events
    starts = [(e.connector_id, e.session_id) for e in events if isinstance(e, SessionStart)]
    assert sorted(starts) == [(3, one), (3, two)]
    stops = [(e.connector_id, e.session_id) for e in events if isinstance(e, SessionStop)]
    assert stops == [(3, one), (3, two), (3, one)]  # A's, then B's re-sent one
    readings = [
        (e.connector_id, e.session_id, e.energy_wh) for e in events if isinstance(e, Reading)
    ]
    assert readings == [(3, one, 9000.0), (3, two, 12000.0), (3, one, 9000.0)]


_OLD_TABLES = (  # the book's tables as made before the 2.0.1 session columns
    "CREATE TABLE ocpp_open_transactions (station_id VARCHAR(128) NOT NULL, tx_id VARCHAR(64) "
    "NOT NULL, connector_id INTEGER NOT NULL, touched_ns BIGINT NOT NULL, pending_ts_ns BIGINT, "
    "pending_meter_wh FLOAT, start_id_tag VARCHAR(64), start_ts_ns BIGINT, start_meter_wh "
    "BIGINT, PRIMARY KEY (station_id, tx_id), CONSTRAINT uq_ocpp_open_transactions_start UNIQUE "
    "(station_id, connector_id, start_id_tag, start_ts_ns, start_meter_wh))",
    "CREATE TABLE ocpp_closed_transactions (station_id VARCHAR(128) NOT NULL, tx_id VARCHAR(64) "
    "NOT NULL, connector_id INTEGER NOT NULL, closed_ns BIGINT NOT NULL, "
    "PRIMARY KEY (station_id, tx_id))",
    "INSERT INTO ocpp_open_transactions (station_id, tx_id, connector_id, touched_ns) "
    "VALUES ('CS-1', 'old-1', 2, 1)",
    "INSERT INTO ocpp_closed_transactions (station_id, tx_id, connector_id, closed_ns) "
    "VALUES ('CS-1', 'old-2', 4, 1)",
)


def test_a_database_made_before_the_session_columns_gets_them_and_keeps_its_rows(
    state_url: str,
) -> None:
    """The book opened on a state database whose tables lack the 2.0.1 session columns adds
    them; the transactions stored then keep the sessions they were named by then
    (``{station}-{transactionId}``): one still open, and one closed whose Ended is re-sent."""
    engine = create_engine(state_url)
    with engine.begin() as connection:
        for statement in _OLD_TABLES:
            connection.execute(text(statement))
    engine.dispose()
    store = StateStore(state_url)
    sink = Collector()
    gateway = make_gateway(sink, book=shared(store))
    shared(store)  # a second instance starting finds the columns there

    async def body() -> None:
        async with serving(gateway) as url, _station(url, "CS-1", "ocpp2.0.1") as ws:
            await call(ws, "1", "TransactionEvent", _tx_event("Updated", T, 3, "old-1"))
            await call(ws, "2", "TransactionEvent", _tx_event("Ended", T, 4, "old-1"))
            await call(ws, "3", "TransactionEvent", _tx_event("Ended", T, 9, "old-2"))

    try:
        run(body)
        stops = [(e.connector_id, e.session_id) for e in sink.events if isinstance(e, SessionStop)]
        assert stops == [(2, "CS-1-old-1"), (4, "CS-1-old-2")]
    finally:
        gateway.close()
        store.close()


def test_a_resent_start_transaction_gets_the_same_id_from_the_memory_book() -> None:
    """The default book of one gateway does the same for a station that stays with it."""
    sink = Collector()
    gateway = make_gateway(sink)
    start = {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": T}

    async def body() -> list[int]:
        async with serving(gateway) as url, _station(url) as ws:
            answers = [await call(ws, str(i), "StartTransaction", start) for i in range(2)]
            other = await call(ws, "x", "StartTransaction", start | {"meterStart": 1})
            return [a["transactionId"] for a in [*answers, other]]

    ids = run(body)
    gateway.close()
    assert ids[0] == ids[1] != ids[2]


def test_a_closed_transactions_connector_is_known_on_the_other_instance(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """A stop re-sent after a lost answer names no connector and finds no open transaction:
    the instance the station reconnects to learns the connector from the database."""
    a, b = shared(two_stores[0]), shared(two_stores[1])

    async def body() -> None:
        tx_id = str(await a.start("CP-1", key(connector=3), two_stores[0].next_value))
        await a.close("CP-1", tx_id)
        assert a.closed_on("CP-1", tx_id) == 3
        assert await b.get("CP-1", tx_id) is None  # loads the station's book on B
        assert b.closed_on("CP-1", tx_id) == 3
        assert b.closed_on("CP-1", "no-such-transaction") is None

    run(body)


def test_the_closed_transactions_kept_per_station_are_bounded(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    a = shared(two_stores[0])
    store = two_stores[0]

    async def body() -> None:
        for i in range(MAX_CLOSED_PER_STATION + 8):
            await a.open("CP-1", f"tx-{i}", OpenTransaction(1 + i % 2, None))
            await a.close("CP-1", f"tx-{i}")
        await a.open("CP-2", "tx-0", OpenTransaction(1, None))
        await a.close("CP-2", "tx-0")  # another station's are its own

    run(body)
    with Session(store.engine) as session:
        kept = session.scalars(
            select(ClosedTransactionRow.tx_id).where(ClosedTransactionRow.station_id == "CP-1")
        ).all()
        assert len(kept) == MAX_CLOSED_PER_STATION
        assert "tx-0" not in kept and f"tx-{MAX_CLOSED_PER_STATION + 7}" in kept
        assert session.get(ClosedTransactionRow, ("CP-2", "tx-0")) is not None


def test_a_stop_resent_to_the_other_gateway_lands_on_its_connector(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    """1.6: StopTransaction answered by A, the answer lost with the connection; the station
    reconnects to B and sends it again. B stores the very same stop, on connector 2."""
    sink_a, sink_b = Collector(), Collector()
    gateway_a = make_gateway(sink_a, book=shared(two_stores[0]))
    gateway_b = make_gateway(sink_b, book=shared(two_stores[1]))
    start = {"connectorId": 2, "idTag": "TAG-1", "meterStart": 1200, "timestamp": T}

    async def body() -> int:
        async with serving(gateway_a) as url_a, serving(gateway_b) as url_b:
            async with _station(url_a) as ws:
                tx_id = int((await call(ws, "1", "StartTransaction", start))["transactionId"])
                stop = {"transactionId": tx_id, "meterStop": 9000, "timestamp": T}
                await call(ws, "2", "StopTransaction", stop)
            async with _station(url_b) as ws:
                await call(ws, "3", "StopTransaction", stop)
        return tx_id

    tx_id = run(body)
    _close(gateway_a, gateway_b)
    stops = [e for e in sink_a.events + sink_b.events if isinstance(e, SessionStop)]
    assert [(s.connector_id, s.session_id, s.meter_stop_wh) for s in stops] == [
        (2, f"CP-1-{tx_id}", 9000.0),
        (2, f"CP-1-{tx_id}", 9000.0),
    ]


def _station(url: str, station_id: str = "CP-1", version: str = "ocpp1.6") -> Any:
    return connect(f"{url}/{station_id}", subprotocols=[Subprotocol(version)])


def _close(*gateways: OcppGateway) -> None:
    for gateway in gateways:
        gateway.close()
