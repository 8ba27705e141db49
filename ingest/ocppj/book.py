"""The transaction book: each station's open transactions, which connector each runs on.

OCPP 1.6 StopTransaction names no connector and 2.0.1 events after Started may name no EVSE, so
the gateway remembers them here. The book is shared by all connections of a gateway (a station
that reconnects mid-session keeps its transactions) and bounded per station: a station that
never stops its transactions, or opens thousands, loses its own oldest entries and never
another station's.

Two layers. ``TransactionBook`` is the bookkeeping in one process's memory (synchronous).
``Book`` is what the handlers use (asynchronous, since a shared book reads and writes a
database): ``LocalBook`` keeps it in memory only (one process, the tests), ``shared_book.
SharedBook`` keeps it in the state database, so that any instance of a service behind a load
balancer can serve a station that began its transaction on another one.

A 2.0.1 transaction's entry also names its session (``OpenTransaction.session_id``): the station
chooses transactionId and some reuse them, so a session is a transactionId and the time of its
first event (``v201``), and a closed transaction's session, first and last time are kept
(``ClosedTransaction``) for the events of it that come late. It also holds the session start
not sent yet (``pending_start``, ``pending_id``): a Started before its id token (plug-in first)
or before its EVSE (card first) is known.

A 1.6 StartTransaction is opened under its ``StartKey`` (station, connector, pseudonym of the id
tag, timestamp, meterStart): a StartTransaction re-sent after its answer was lost finds its
transaction open under the same key and gets the same transaction id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

__all__ = [
    "MAX_OPEN_PER_STATION",
    "MAX_RECENTLY_CLOSED",
    "Book",
    "ClosedTransaction",
    "LocalBook",
    "OpenTransaction",
    "RecentlyClosed",
    "StartKey",
    "TransactionBook",
]

# A station runs one transaction per connector; the largest sites behind one identity have a few
# dozen. A transaction whose stop never arrived (lost, or sent while offline and dropped) stays
# open until evicted, so there is room for those beside the live ones.
MAX_OPEN_PER_STATION = 128
# Transactions closed lately whose connector is remembered, for a stop re-sent after its answer
# was lost: the station sends it again within its retry interval (seconds to minutes, a few
# attempts). A fleet of 10,000 connectors ending a session every 20 minutes each closes this
# many in two hours, far longer than any retry; 64 bytes or so each, a few MB at most.
MAX_RECENTLY_CLOSED = 65_536


class StartKey(NamedTuple):
    """What a 1.6 StartTransaction says, the station aside: the same again is a re-send (a
    second transaction on the same connector, by the same card, stamped the same instant, from
    the same register reading, while the first is still open, cannot be a new one)."""

    connector_id: int
    id_tag: str  # the pseudonym, never the clear tag
    ts_ns: int
    meter_start_wh: int


class OpenTransaction(NamedTuple):
    connector_id: int
    # 2.0.1: a session start not sent yet, (Started's time, its energy register if sent): the
    # id token is not known yet (plug-in first), or the EVSE is not (card first: Started names
    # no evse, its token's pseudonym is then ``pending_id``).
    pending_start: tuple[int, float | None] | None
    start: StartKey | None = None  # the 1.6 StartTransaction that opened it
    # 2.0.1: the session its events go to (None: ``{station}-{transactionId}``, as entries
    # written before sessions were named here), and the time of its first event (Started's).
    session_id: str | None = None
    first_ns: int | None = None
    # 2.0.1: the pseudonym (never the clear id token) of the pending start's token, known
    # before its EVSE; None while no token is known (or nothing is pending).
    pending_id: str | None = None


class ClosedTransaction(NamedTuple):
    """What is kept of a transaction closed lately: its connector, and for 2.0.1 its session,
    the time of its first event and of its Ended (None where unknown)."""

    connector_id: int
    session_id: str | None = None
    first_ns: int | None = None
    ended_ns: int | None = None


class _StationBook:
    __slots__ = ("charging_state", "open_on", "transactions")

    def __init__(self) -> None:
        self.transactions: OrderedDict[str, OpenTransaction] = OrderedDict()
        self.open_on: dict[int, str] = {}  # connector -> its open transaction
        self.charging_state: dict[int, str] = {}  # connector -> 2.0.1 status stored last

    def forget(self, tx_id: str) -> None:
        tx = self.transactions.pop(tx_id, None)
        if tx is not None and self.open_on.get(tx.connector_id) == tx_id:
            del self.open_on[tx.connector_id]


class TransactionBook:
    """Open transactions by station; at most ``per_station`` each (its oldest go first)."""

    def __init__(self, per_station: int = MAX_OPEN_PER_STATION) -> None:
        self._per_station = per_station
        self._stations: dict[str, _StationBook] = {}

    def get(self, station_id: str, tx_id: str) -> OpenTransaction | None:
        book = self._stations.get(station_id)
        return book.transactions.get(tx_id) if book is not None else None

    def open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None:
        book = self._stations.setdefault(station_id, _StationBook())
        previous = book.transactions.get(tx_id)
        if previous is not None and previous.connector_id != tx.connector_id:
            book.forget(tx_id)
        elif previous is not None and tx.start is None:
            tx = tx._replace(start=previous.start)  # a later event keeps how it began
        book.transactions[tx_id] = tx
        book.transactions.move_to_end(tx_id)
        book.open_on[tx.connector_id] = tx_id
        while len(book.transactions) > self._per_station:
            book.forget(next(iter(book.transactions)))

    def close(self, station_id: str, tx_id: str) -> None:
        book = self._stations.get(station_id)
        if book is None:
            return
        book.forget(tx_id)
        if not book.transactions and not book.charging_state:
            del self._stations[station_id]

    def open_on(self, station_id: str, connector_id: int) -> str | None:
        book = self._stations.get(station_id)
        return book.open_on.get(connector_id) if book is not None else None

    def open_count(self, station_id: str) -> int:
        book = self._stations.get(station_id)
        return len(book.transactions) if book is not None else 0

    def started(self, station_id: str, key: StartKey) -> str | None:
        """The open transaction that ``key``'s StartTransaction opened, if any."""
        book = self._stations.get(station_id)
        if book is None:
            return None
        return next((tx_id for tx_id, tx in book.transactions.items() if tx.start == key), None)

    def forget_station(self, station_id: str) -> None:
        """Drop everything known of a station (a cache of the shared book does, when it can no
        longer be sure of it)."""
        self._stations.pop(station_id, None)

    def charging_status(self, station_id: str, connector_id: int) -> str | None:
        """The status last stored for that connector from a 2.0.1 chargingState or
        StatusNotification (a chargingState is stored when it differs)."""
        book = self._stations.get(station_id)
        return book.charging_state.get(connector_id) if book is not None else None

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None:
        states = self._stations.setdefault(station_id, _StationBook()).charging_state
        states.pop(connector_id, None)
        states[connector_id] = status
        while len(states) > self._per_station:
            del states[next(iter(states))]


class RecentlyClosed:
    """The transactions closed lately (at most ``size``, oldest forgotten first), in this
    process's memory: a StopTransaction (1.6) or TransactionEvent Ended (2.0.1) sent again after
    its answer was lost names no connector, and its transaction is no longer open. With it, the
    re-sent stop is stored on its connector again, the very same events, instead of as a stop of
    some transaction on connector 0; and a 2.0.1 event that comes after its transaction ended
    goes to that transaction's session, not to a new transaction reusing its id."""

    def __init__(self, size: int = MAX_RECENTLY_CLOSED) -> None:
        self._size = size
        self._closed: OrderedDict[tuple[str, str], ClosedTransaction] = OrderedDict()

    def closed(self, station_id: str, tx_id: str, tx: ClosedTransaction) -> None:
        key = (station_id, tx_id)
        self._closed[key] = tx
        self._closed.move_to_end(key)
        while len(self._closed) > self._size:
            self._closed.popitem(last=False)

    def get(self, station_id: str, tx_id: str) -> ClosedTransaction | None:
        return self._closed.get((station_id, tx_id))

    def connector_of(self, station_id: str, tx_id: str) -> int | None:
        tx = self._closed.get((station_id, tx_id))
        return tx.connector_id if tx is not None else None


class Book(Protocol):
    """The book as the handlers use it; one per gateway, shared by its connections.

    ``station_connected`` and ``station_gone`` bracket a station's connection to this gateway
    (after the connection it replaced has finished): a shared book uses them to know when its
    cache of the station may be stale (another instance may have served it meanwhile).
    """

    async def get(self, station_id: str, tx_id: str) -> OpenTransaction | None: ...

    async def open_on(self, station_id: str, connector_id: int) -> str | None: ...

    async def open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None: ...

    async def close(
        self, station_id: str, tx_id: str, closed: ClosedTransaction | None = None
    ) -> None:
        """Close the transaction; ``closed`` is what to keep of it (default: its connector)."""
        ...

    def closed_on(self, station_id: str, tx_id: str) -> int | None:
        """The connector of a transaction closed lately (``RecentlyClosed``), if remembered."""
        ...

    def closed(self, station_id: str, tx_id: str) -> ClosedTransaction | None:
        """What is kept of a transaction closed lately, if remembered."""
        ...

    async def start(self, station_id: str, key: StartKey, new_id: Callable[[], int]) -> int:
        """The 1.6 transaction id of ``key``'s StartTransaction, opened on its connector: a new
        one from ``new_id`` (which may block: a shared book calls it off the event loop), or
        the id already given to the same StartTransaction."""
        ...

    def charging_status(self, station_id: str, connector_id: int) -> str | None: ...

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None: ...

    def station_connected(self, station_id: str) -> None: ...

    def station_gone(self, station_id: str) -> None: ...

    def shutdown(self) -> None:
        """Release what the book holds (threads); the gateway's ``close`` calls it."""
        ...


class LocalBook:
    """The book in this process's memory only: a single gateway, tests and benchmarks. A
    station reconnecting to the same gateway keeps its transactions; a restart loses them."""

    def __init__(self, per_station: int = MAX_OPEN_PER_STATION) -> None:
        self.memory = TransactionBook(per_station)
        self.recently_closed = RecentlyClosed()

    async def get(self, station_id: str, tx_id: str) -> OpenTransaction | None:
        return self.memory.get(station_id, tx_id)

    async def open_on(self, station_id: str, connector_id: int) -> str | None:
        return self.memory.open_on(station_id, connector_id)

    async def open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None:
        self.memory.open(station_id, tx_id, tx)

    async def close(
        self, station_id: str, tx_id: str, closed: ClosedTransaction | None = None
    ) -> None:
        tx = self.memory.get(station_id, tx_id)
        if closed is None and tx is not None:
            closed = ClosedTransaction(tx.connector_id)
        if closed is not None:
            self.recently_closed.closed(station_id, tx_id, closed)
        self.memory.close(station_id, tx_id)

    def closed_on(self, station_id: str, tx_id: str) -> int | None:
        return self.recently_closed.connector_of(station_id, tx_id)

    def closed(self, station_id: str, tx_id: str) -> ClosedTransaction | None:
        return self.recently_closed.get(station_id, tx_id)

    async def start(self, station_id: str, key: StartKey, new_id: Callable[[], int]) -> int:
        known = self.memory.started(station_id, key)
        if known is not None:
            return int(known)
        tx_id = new_id()
        self.memory.open(station_id, str(tx_id), OpenTransaction(key.connector_id, None, key))
        return tx_id

    def charging_status(self, station_id: str, connector_id: int) -> str | None:
        return self.memory.charging_status(station_id, connector_id)

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None:
        self.memory.set_charging_status(station_id, connector_id, status)

    def station_connected(self, station_id: str) -> None:
        """Nothing: no other process writes this memory."""

    def station_gone(self, station_id: str) -> None:
        """Nothing: the station's transactions wait for its return."""

    def shutdown(self) -> None:
        """Nothing to release."""
