"""The transaction book in the state database, for several service instances on one database.

Behind a load balancer a station may begin a transaction on one instance and reconnect to
another before it stops (DESIGN.md, Growing past one machine). The other instance must still
know which connector the transaction runs on (1.6 StopTransaction names none, 2.0.1 events after
Started may name no EVSE) and which session its readings belong to, so the book's truth is the
table ``ocpp_open_transactions`` of the state database: one row per open transaction, keyed by
station and transaction id, bounded per station as ``book.TransactionBook`` is.

In front of it, a cache in this process's memory (``book.TransactionBook``) holds the book of
each station connected here: it is loaded from the table at the station's first message that
needs it (the books asked for while a load runs are read together by the next query), written
through on every change, and dropped when the station connects (another instance may have
served it meanwhile) and when it leaves. A station has one connection at a
time, so while it is connected here this instance is the only one writing its rows and the
cache is exact. Every database call runs on the book's own worker threads, never on the event
loop, and never on the threads that fsync the spool: a slow database delays the messages that
need the book, not every station's.

A 1.6 StartTransaction's fields are a unique key of the table: a StartTransaction re-sent after
a lost answer, on this instance or any other, finds the row of the first and gets its id.
Likewise a stop re-sent after a lost answer (1.6 StopTransaction and 2.0.1 TransactionEvent Ended
name no connector, and the transaction is no longer open): a closed transaction's connector is
kept in ``ocpp_closed_transactions`` (the station's ``MAX_CLOSED_PER_STATION`` latest), loaded
with the station's book, so the instance the station reconnects to stores the stop on its
connector again. For 2.0.1 both tables also keep the transaction's session and the time of its
first event (and the closed one the time of its Ended): the station chooses transactionId and
some reuse them, so an instance must know which session an event of a reused id belongs to.

Those columns came later: a database made before them gets them added (``_add_columns``) when
the book is opened; its rows keep NULLs there, read as the sessions named then (``{station}-
{transactionId}``). So did ``pending_id_tag``, the pseudonym of a 2.0.1 card-first Started's
token while its start waits for the EVSE (``v201``): a row written before it holds no start
waiting for an EVSE (its start went out at Started then), NULL.

What stays in memory only: 2.0.1 chargingState per connector (used to send a status change once
per change): an instance that has not seen the station before records the current state once
more, the same value, never a wrong one.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    Integer,
    String,
    UniqueConstraint,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from chargewatch.state import Base, StateError, dialect_insert

from .book import (
    MAX_OPEN_PER_STATION,
    ClosedTransaction,
    OpenTransaction,
    RecentlyClosed,
    StartKey,
    TransactionBook,
)

__all__ = ["MAX_CLOSED_PER_STATION", "ClosedTransactionRow", "OpenTransactionRow", "SharedBook"]

_TABLE = "ocpp_open_transactions"
_CLOSED_TABLE = "ocpp_closed_transactions"
# A station's closed transactions whose connector is kept: a stop is re-sent within the station's
# retry interval (seconds to minutes, a few attempts), while its connectors end a session every
# twenty minutes or so each: the latest 32 reach back hours on a station of several connectors.
MAX_CLOSED_PER_STATION = 32
# Database calls at once: within SQLAlchemy's default pool of 5 connections, one left for the
# other users of the engine (API keys, jobs). A station's calls come one after another, so
# this bounds how many stations wait on the database together, not one station's order.
_THREADS = 4
# Stations whose books one query reads: SQLite before 3.32 takes at most 999 bound parameters
# in a statement, and PostgreSQL's plans for long IN lists grow with them.
_LOAD_BATCH = 500
# A session id: the station id (at most 128 characters here), a transactionId (2.0.1: at most
# 36) and the time of its first event (``v201.session_of``, at most 31), with separators.
_SESSION_CHARS = 256
_R = TypeVar("_R")


class OpenTransactionRow(Base):
    """One open OCPP transaction of a station (1.6: the id we gave; 2.0.1: the station's)."""

    __tablename__ = _TABLE
    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # 1.6 ids are our counter's integers; 2.0.1 transactionId is at most 36 characters.
    tx_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer)
    # When an instance last wrote the row (wall clock, ns): a station's oldest go first.
    touched_ns: Mapped[int] = mapped_column(BigInteger)
    # 2.0.1 Started without an id token yet: its time and energy register (see v201).
    pending_ts_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pending_meter_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The 1.6 StartTransaction that opened it (``book.StartKey``, its connector the row's).
    start_id_tag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_ts_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    start_meter_wh: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # 2.0.1: the session its events go to, and the time of its first event (``v201``).
    session_id: Mapped[str | None] = mapped_column(String(_SESSION_CHARS), nullable=True)
    first_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # 2.0.1 Started by a card before its EVSE is known: the pseudonym of its token (never the
    # clear one), for the start sent once the EVSE is (``book.OpenTransaction.pending_id``).
    pending_id_tag: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        # Rows without a start (2.0.1, or 1.6 ones first seen in MeterValues) hold NULLs,
        # which never collide in a unique constraint (SQLite and PostgreSQL alike).
        UniqueConstraint(
            "station_id",
            "connector_id",
            "start_id_tag",
            "start_ts_ns",
            "start_meter_wh",
            name="uq_ocpp_open_transactions_start",
        ),
    )


class ClosedTransactionRow(Base):
    """A transaction of a station closed lately, and the connector it ran on."""

    __tablename__ = _CLOSED_TABLE
    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tx_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer)
    closed_ns: Mapped[int] = mapped_column(BigInteger)  # wall clock of the closing instance
    # 2.0.1: its session, the station's times of its first event and of its Ended.
    session_id: Mapped[str | None] = mapped_column(String(_SESSION_CHARS), nullable=True)
    first_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class _Loaded(NamedTuple):
    """A station's book as stored: its open transactions (oldest first), and the connectors of
    those closed lately (oldest first)."""

    open: list[tuple[str, OpenTransaction]]
    closed: list[tuple[str, ClosedTransaction]]


_NOTHING = _Loaded([], [])


class SharedBook:
    """``book.Book`` over the state database at ``engine`` (SQLite or PostgreSQL), with a
    write-through cache of the stations connected to this process."""

    def __init__(self, engine: Engine, per_station: int = MAX_OPEN_PER_STATION) -> None:
        dialect = engine.dialect.name
        dialect_insert(dialect, OpenTransactionRow, _WHAT)  # refuses any other database now
        self._engine = engine
        self._insert = functools.partial(dialect_insert, dialect, what=_WHAT)
        self._per_station = per_station
        self._cache = TransactionBook(per_station)
        # Not a part of the cache: kept when the station reconnects (a lost answer's stop is
        # re-sent on the next connection), this process's memory only.
        self._recently_closed = RecentlyClosed()
        self._loaded: set[str] = set()  # stations whose cache is their whole book
        # Books asked for while a load runs, read together by the next one: a reconnecting
        # fleet costs a few queries, not one per station (each query's fixed cost in
        # SQLAlchemy is the larger part, and it holds the GIL against the event loop).
        self._to_load: dict[str, asyncio.Future[_Loaded]] = {}
        self._loading: asyncio.Task[None] | None = None
        self._threads = ThreadPoolExecutor(_THREADS, thread_name_prefix="ocpp-book")
        _create_table(engine)

    def shutdown(self) -> None:
        """Stop the worker threads (the calls still running finish)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- book.Book ------------------------------------------------------------------------------

    async def get(self, station_id: str, tx_id: str) -> OpenTransaction | None:
        await self._ensure(station_id)
        return self._cache.get(station_id, tx_id)

    async def open_on(self, station_id: str, connector_id: int) -> str | None:
        await self._ensure(station_id)
        return self._cache.open_on(station_id, connector_id)

    async def open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None:
        await self._ensure(station_id)
        known = self._cache.get(station_id, tx_id)
        if (
            known is None
            or known.connector_id != tx.connector_id
            or known.pending_start != tx.pending_start
            or known.pending_id != tx.pending_id
            or known.session_id != tx.session_id
            or known.first_ns != tx.first_ns
        ):  # else nothing changes (a 2.0.1 Updated, say): no write
            await self._call(self._write, station_id, tx_id, tx, self._full(station_id))
        self._cache_open(station_id, tx_id, tx)

    async def close(
        self, station_id: str, tx_id: str, closed: ClosedTransaction | None = None
    ) -> None:
        known = self._cache.get(station_id, tx_id) if station_id in self._loaded else None
        if closed is None and known is not None:
            closed = ClosedTransaction(known.connector_id)
        kept = await self._call(self._delete, station_id, tx_id, closed)
        if kept is not None:
            self._recently_closed.closed(station_id, tx_id, kept)
        if station_id in self._loaded:
            self._cache.close(station_id, tx_id)

    def closed_on(self, station_id: str, tx_id: str) -> int | None:
        return self._recently_closed.connector_of(station_id, tx_id)

    def closed(self, station_id: str, tx_id: str) -> ClosedTransaction | None:
        return self._recently_closed.get(station_id, tx_id)

    async def start(self, station_id: str, key: StartKey, new_id: Callable[[], int]) -> int:
        await self._ensure(station_id)
        known = self._cache.started(station_id, key)
        if known is not None:
            return int(known)
        # Not in the book as loaded: a new id, unless another instance took the same
        # StartTransaction since (then the unique key gives its id, and the new one is unused).
        full = self._full(station_id)
        tx_id = await self._call(self._start, station_id, key, new_id, full)
        self._cache_open(station_id, str(tx_id), OpenTransaction(key.connector_id, None, key))
        return tx_id

    def charging_status(self, station_id: str, connector_id: int) -> str | None:
        return self._cache.charging_status(station_id, connector_id)

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None:
        if station_id in self._loaded:  # else dropped at the next load anyway
            self._cache.set_charging_status(station_id, connector_id, status)

    def station_connected(self, station_id: str) -> None:
        self._drop(station_id)

    def station_gone(self, station_id: str) -> None:
        self._drop(station_id)

    # -- the cache ------------------------------------------------------------------------------

    def cached_stations(self) -> int:
        """Stations whose book this process holds in memory (those connected here)."""
        return len(self._loaded)

    def _full(self, station_id: str) -> bool:
        """Whether one more transaction may exceed the station's bound: only then do writes
        look for rows to evict (the cache holds the station's whole book, so below the bound
        there are none)."""
        return self._cache.open_count(station_id) >= self._per_station

    def _drop(self, station_id: str) -> None:
        self._loaded.discard(station_id)
        self._cache.forget_station(station_id)

    def _cache_open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None:
        if station_id in self._loaded:  # else the cache would hold a part of the book only
            self._cache.open(station_id, tx_id, tx)

    async def _ensure(self, station_id: str) -> None:
        """Load the station's book into the cache unless it is there."""
        if station_id in self._loaded:
            return
        stored = await self._load_together(station_id)
        if station_id in self._loaded:  # loaded meanwhile, and maybe written since: keep that
            return
        self._cache.forget_station(station_id)
        for tx_id, tx in stored.open:
            self._cache.open(station_id, tx_id, tx)
        for tx_id, closed in stored.closed:  # closed here or on another instance
            self._recently_closed.closed(station_id, tx_id, closed)
        self._loaded.add(station_id)

    async def _load_together(self, station_id: str) -> _Loaded:
        """The station's rows, read in one query with those of the other stations asked for
        while the previous query ran."""
        loop = asyncio.get_running_loop()
        waiting = self._to_load.get(station_id)
        if waiting is None:
            waiting = self._to_load[station_id] = loop.create_future()
        if self._loading is None:
            self._loading = loop.create_task(self._load_waiting())
        # one caller cancelled leaves the others their answer
        return await asyncio.shield(waiting)

    async def _load_waiting(self) -> None:
        batch: dict[str, asyncio.Future[_Loaded]] = {}
        try:
            while self._to_load:
                batch = dict(itertools.islice(self._to_load.items(), _LOAD_BATCH))
                for station_id in batch:
                    del self._to_load[station_id]
                try:
                    books = await self._call(self._load, list(batch))
                except Exception as exc:  # each station asking gets it (a StateError)
                    for waiting in batch.values():
                        if not waiting.done():
                            waiting.set_exception(exc)
                    continue
                for station_id, waiting in batch.items():
                    if not waiting.done():
                        waiting.set_result(books.get(station_id, _NOTHING))
        except asyncio.CancelledError:  # the loop is stopping: so are those waiting
            for waiting in [*batch.values(), *self._to_load.values()]:
                waiting.cancel()
            self._to_load.clear()
            raise
        finally:
            self._loading = None

    # -- the table (blocking: worker threads only) ----------------------------------------------

    async def _call(self, work: Callable[..., _R], *args: Any) -> _R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(work, *args))

    def _load(self, station_ids: list[str]) -> dict[str, _Loaded]:
        """Each station's book as stored (stations without any row: absent)."""
        query = (
            select(OpenTransactionRow)
            .where(OpenTransactionRow.station_id.in_(station_ids))
            .order_by(OpenTransactionRow.touched_ns, OpenTransactionRow.tx_id)
        )
        closed = (
            select(ClosedTransactionRow)
            .where(ClosedTransactionRow.station_id.in_(station_ids))
            .order_by(ClosedTransactionRow.closed_ns, ClosedTransactionRow.tx_id)
        )
        books: dict[str, _Loaded] = {}
        with self._session("read the transaction book") as session:
            for row in session.scalars(query):
                book = books.setdefault(row.station_id, _Loaded([], []))
                book.open.append((row.tx_id, _open_transaction(row)))
            for done in session.scalars(closed):
                book = books.setdefault(done.station_id, _Loaded([], []))
                book.closed.append(
                    (
                        done.tx_id,
                        ClosedTransaction(
                            done.connector_id, done.session_id, done.first_ns, done.ended_ns
                        ),
                    )
                )
        return books

    def _write(self, station_id: str, tx_id: str, tx: OpenTransaction, full: bool) -> None:
        pending_ts, pending_wh = tx.pending_start or (None, None)
        changed = {
            "connector_id": tx.connector_id,
            "touched_ns": time.time_ns(),
            "pending_ts_ns": pending_ts,
            "pending_meter_wh": pending_wh,
            "session_id": tx.session_id,
            "first_ns": tx.first_ns,
            "pending_id_tag": tx.pending_id,
        }
        statement = self._insert(OpenTransactionRow).values(
            station_id=station_id, tx_id=tx_id, **changed
        )
        statement = statement.on_conflict_do_update(
            index_elements=["station_id", "tx_id"], set_=changed
        )
        with self._session("open a transaction") as session, session.begin():
            session.execute(statement)
            if full:
                self._evict(session, station_id)

    def _delete(
        self, station_id: str, tx_id: str, closed: ClosedTransaction | None
    ) -> ClosedTransaction | None:
        """Close the transaction: its row goes, what is known of it (``closed``, else the
        row's connector) is kept among the station's closed ones; that, None when unknown."""
        with self._session("close a transaction") as session, session.begin():
            row = session.get(OpenTransactionRow, (station_id, tx_id))
            if row is not None:
                if closed is None:
                    closed = ClosedTransaction(row.connector_id, row.session_id, row.first_ns)
                session.delete(row)
            if closed is None:
                return None
            kept = {
                "connector_id": closed.connector_id,
                "closed_ns": time.time_ns(),
                "session_id": closed.session_id,
                "first_ns": closed.first_ns,
                "ended_ns": closed.ended_ns,
            }
            statement = self._insert(ClosedTransactionRow).values(
                station_id=station_id, tx_id=tx_id, **kept
            )
            session.execute(
                statement.on_conflict_do_update(index_elements=["station_id", "tx_id"], set_=kept)
            )
            older = session.scalars(
                select(ClosedTransactionRow.tx_id)
                .where(ClosedTransactionRow.station_id == station_id)
                .order_by(ClosedTransactionRow.closed_ns.desc(), ClosedTransactionRow.tx_id.desc())
                .offset(MAX_CLOSED_PER_STATION)
            ).all()
            if older:
                session.execute(
                    delete(ClosedTransactionRow).where(
                        ClosedTransactionRow.station_id == station_id,
                        ClosedTransactionRow.tx_id.in_(older),
                    )
                )
        return closed

    def _start(self, station_id: str, key: StartKey, new_id: Callable[[], int], full: bool) -> int:
        """The id of ``key``'s transaction: a new one, or the one already stored. Two
        instances racing with the same StartTransaction both insert; the unique key keeps the
        first, and the second reads its id."""
        fresh = new_id()
        statement = (
            self._insert(OpenTransactionRow)
            .values(
                station_id=station_id,
                tx_id=str(fresh),
                connector_id=key.connector_id,
                touched_ns=time.time_ns(),
                start_id_tag=key.id_tag,
                start_ts_ns=key.ts_ns,
                start_meter_wh=key.meter_start_wh,
            )
            .on_conflict_do_nothing()
        )
        with self._session("open a StartTransaction") as session, session.begin():
            session.execute(statement)
            stored = session.scalar(_started(station_id, key))
            if stored is None:  # the new id itself collided: the counter was reset
                raise StateError(
                    f"state database: transaction id {fresh} of station {station_id} is "
                    "already open under another start; the id counter went back"
                )
            if full:
                self._evict(session, station_id)
        return int(stored)

    def _evict(self, session: Session, station_id: str) -> None:
        """Keep the station's newest ``per_station`` rows, as the memory book does."""
        extra = session.scalars(
            select(OpenTransactionRow.tx_id)
            .where(OpenTransactionRow.station_id == station_id)
            .order_by(OpenTransactionRow.touched_ns.desc(), OpenTransactionRow.tx_id.desc())
            .offset(self._per_station)
        ).all()
        if extra:
            session.execute(
                delete(OpenTransactionRow).where(
                    OpenTransactionRow.station_id == station_id,
                    OpenTransactionRow.tx_id.in_(extra),
                )
            )

    def _session(self, doing: str) -> AbstractContextManager[Session]:
        return _session(self._engine, doing)


@contextmanager
def _session(engine: Engine, doing: str) -> Iterator[Session]:
    """A session whose database errors become ``StateError`` naming what was being done (the
    station gets a CallError asking it to retry; nothing is stored half-known)."""
    try:
        with Session(engine) as session:
            yield session
    except SQLAlchemyError as exc:
        raise StateError(f"state database: cannot {doing}: {_first_line(exc)}") from exc


def _started(station_id: str, key: StartKey) -> Any:
    return select(OpenTransactionRow.tx_id).where(
        OpenTransactionRow.station_id == station_id,
        OpenTransactionRow.connector_id == key.connector_id,
        OpenTransactionRow.start_id_tag == key.id_tag,
        OpenTransactionRow.start_ts_ns == key.ts_ns,
        OpenTransactionRow.start_meter_wh == key.meter_start_wh,
    )


def _open_transaction(row: OpenTransactionRow) -> OpenTransaction:
    pending = None if row.pending_ts_ns is None else (row.pending_ts_ns, row.pending_meter_wh)
    start = None
    if (
        row.start_id_tag is not None
        and row.start_ts_ns is not None
        and row.start_meter_wh is not None
    ):
        start = StartKey(row.connector_id, row.start_id_tag, row.start_ts_ns, row.start_meter_wh)
    pending_id = row.pending_id_tag if pending is not None else None
    return OpenTransaction(
        row.connector_id, pending, start, row.session_id, row.first_ns, pending_id
    )


_WHAT = "state database: the transaction book"


def _create_table(engine: Engine) -> None:
    """The table, unless ``StateStore`` made it already (it does when this module was imported
    first). Two instances starting at once may race on PostgreSQL's catalog: the loser retries
    and finds the table."""
    for name in (_TABLE, _CLOSED_TABLE):
        table = Base.metadata.tables[name]
        for attempt in range(2):
            try:
                table.create(engine, checkfirst=True)
                break
            except SQLAlchemyError as exc:
                if attempt:
                    raise StateError(
                        f"state database: cannot create table {name}: {_first_line(exc)}"
                    ) from exc
        _add_columns(engine, table)


def _add_columns(engine: Engine, table: Any) -> None:
    """Add the nullable columns a table made by an earlier version lacks (the 2.0.1 session
    ones): ``create`` leaves an existing table as it is. Another instance may add them at the
    same moment: a failure is checked against the table as it then is."""
    for attempt in range(2):
        present = {column["name"] for column in inspect(engine).get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            return
        try:
            with engine.begin() as connection:
                for column in missing:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.execute(
                        text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                    )
        except SQLAlchemyError as exc:
            if attempt:
                raise StateError(
                    f"state database: cannot add columns to {table.name}: {_first_line(exc)}"
                ) from exc


def _first_line(exc: SQLAlchemyError) -> str:
    """The error's first line, without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
