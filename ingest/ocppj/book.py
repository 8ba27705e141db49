"""The transaction book: each station's open transactions, which connector each runs on.

OCPP 1.6 StopTransaction names no connector and 2.0.1 events after Started may name no EVSE, so
the gateway remembers them here. The book is shared by all connections of a gateway (a station
that reconnects mid-session keeps its transactions) and bounded per station: a station that
never stops its transactions, or opens thousands, loses its own oldest entries and never
another station's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

__all__ = ["MAX_OPEN_PER_STATION", "OpenTransaction", "TransactionBook"]

# A station runs one transaction per connector; the largest sites behind one identity have a few
# dozen. A transaction whose stop never arrived (lost, or sent while offline and dropped) stays
# open until evicted, so there is room for those beside the live ones.
MAX_OPEN_PER_STATION = 128


class OpenTransaction(NamedTuple):
    connector_id: int
    pending_start: tuple[int, float | None] | None  # 2.0.1 Started without an id token yet


class _StationBook:
    __slots__ = ("charging_state", "open_on", "transactions")

    def __init__(self) -> None:
        self.transactions: OrderedDict[str, OpenTransaction] = OrderedDict()
        self.open_on: dict[int, str] = {}  # connector -> its open transaction
        self.charging_state: dict[int, str] = {}  # connector -> status from chargingState

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

    def charging_status(self, station_id: str, connector_id: int) -> str | None:
        """The status last derived from a 2.0.1 chargingState on that connector."""
        book = self._stations.get(station_id)
        return book.charging_state.get(connector_id) if book is not None else None

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None:
        states = self._stations.setdefault(station_id, _StationBook()).charging_state
        states.pop(connector_id, None)
        states[connector_id] = status
        while len(states) > self._per_station:
            del states[next(iter(states))]
