"""What the gateway needs from the rest of the service, and what it reports back."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from chargewatch.events import AuthorizationStatus, Event

__all__ = [
    "AuthMode",
    "AuthPolicy",
    "ConnectionClosedError",
    "EventSink",
    "GatewayStats",
    "InMemoryTransactionIds",
    "OcppConnection",
    "TransactionIds",
]


class EventSink(Protocol):
    """Durably stores events (spool, fsync); raises ``SpoolFullError`` when full."""

    async def __call__(self, events: list[Event]) -> None: ...


class TransactionIds(Protocol):
    """Hands out OCPP 1.6 transaction ids, unique across restarts."""

    def next_id(self) -> int: ...


class InMemoryTransactionIds:
    """Ids counting up from ``start``: unique for one process only (tests, benchmarks)."""

    def __init__(self, start: int = 1) -> None:
        self._ids = itertools.count(start)

    def next_id(self) -> int:
        return next(self._ids)


class OcppConnection(Protocol):
    """One station's WebSocket as the ocpp library's ChargePoint uses it (text frames).

    ``recv`` raises ``ConnectionClosedError`` (or the transport's own close error) once the
    connection is gone. ``close`` ends it from our side with a WebSocket close code and reason
    (a newer connection of the same station replaces it, say); it never raises.
    """

    async def recv(self) -> str: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class ConnectionClosedError(Exception):
    """The station's connection is closed; the adapters raise it from ``recv`` and ``send``.

    ``code`` is the WebSocket close code when known, ``by_station`` whether the station closed
    first (None when the transport does not say).
    """

    def __init__(
        self, message: str, *, code: int | None = None, by_station: bool | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.by_station = by_station


class AuthMode(StrEnum):
    MONITOR = "monitor"  # observe only: every id tag is Accepted (and recorded)
    ALLOW_LIST = "allow_list"  # Accepted only for the listed pseudonyms, Invalid otherwise


@dataclass(frozen=True)
class AuthPolicy:
    """How Authorize, StartTransaction and 2.0.1 id tokens are answered.

    ``allowed_pseudonyms`` holds pseudonyms (never clear id tags) of the cards allowed to charge.
    """

    mode: AuthMode | Literal["monitor", "allow_list"]
    allowed_pseudonyms: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", AuthMode(self.mode))

    def decide(self, pseudonym: str) -> AuthorizationStatus:
        if AuthMode(self.mode) is AuthMode.MONITOR or pseudonym in self.allowed_pseudonyms:
            return AuthorizationStatus.ACCEPTED
        return AuthorizationStatus.INVALID


@dataclass
class GatewayStats:
    """Counters for the metrics endpoint; keys are bounded (actions, problems, event types)."""

    messages: Counter[str] = field(default_factory=Counter)  # Calls by action ("unknown" else)
    rejected: Counter[str] = field(default_factory=Counter)  # CallErrors by ``Problem``
    events: Counter[str] = field(default_factory=Counter)  # canonical events stored, by type
    security_events: Counter[str] = field(default_factory=Counter)  # by security event type
    unmapped_values: int = 0  # sampled values of measurands the event format does not hold
    stop_items_left_out: int = 0  # a stop's sampled data beyond the item bound (rpc.check_items)
    responses_ignored: int = 0  # CallResults/CallErrors from stations (we send no Calls)
    refused: Counter[str] = field(default_factory=Counter)  # connections refused, by ``Refusal``
    replaced: int = 0  # connections closed because the same station connected again
    disconnects: Counter[str] = field(default_factory=Counter)  # by ``DisconnectReason``
    station_events_lost: int = 0  # liveness events the sink refused when no later one could go
