"""What both protocol versions share: routing a station's frames, storing, answering.

``StationBase`` replaces the ocpp library's message loop and call handling (``route_message``)
while keeping its pieces: handlers registered with ``@on`` by action, the library's JSON schemas
for every Call and every answer, its camelCase/snake_case conversion and payload classes. It
differs from the library where the gateway needs it to: a malformed frame gets a CallError
instead of silence, error codes follow the version, schemas are checked inline (not in a thread
per message), nothing logs a payload (id tags are personal data), and the answer goes out only
after the sink has stored the message's events.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple, TypeVar, cast

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import on

from chargewatch.errors import ChargewatchError, EventError
from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    Event,
    Reading,
    check_connector_id,
    parse_ts,
)
from ingest.spool import SpoolFullError

from .interface import AuthPolicy, EventSink, GatewayStats, OcppConnection, TransactionIds
from .meter import ValueRejected, reading_from_samples, sample
from .rpc import (
    CallRejected,
    Problem,
    Version,
    call_error,
    call_result,
    check_payload,
    check_response,
    parse_frame,
    rejection_for_action,
)

__all__ = ["GatewayContext", "OpenTransaction", "StationBase", "TransactionBook", "handles"]

logger = logging.getLogger(__name__)
# The library logs whole frames (id tags included) at INFO. Its loop, router and sender are
# replaced below, so it never logs here; it still gets a logger of ours, not "ocpp".
_LIBRARY_LOGGER = logging.getLogger("ingest.ocppj.library")
_MAX_TEXT_CHARS = 255
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

_F = TypeVar("_F", bound=Callable[..., Any])


def handles(action: str) -> Callable[[_F], _F]:
    """The ocpp library's ``@on``, typed."""
    return cast(Callable[[_F], _F], on(action))


class OpenTransaction(NamedTuple):
    connector_id: int
    pending_start: tuple[int, float | None] | None  # 2.0.1 Started without an id token yet


class TransactionBook:
    """Open transactions of every station: which connector each runs on, what is open where.

    Shared by all connections of a gateway, so a station that reconnects mid-session keeps its
    transactions. Bounded: the oldest entries go first (a station that never stops its
    transactions must not grow memory forever).
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._limit = limit
        self._tx: OrderedDict[tuple[str, str], OpenTransaction] = OrderedDict()
        self._open_on: dict[tuple[str, int], str] = {}
        self._charging_state: dict[tuple[str, int], str] = {}

    def get(self, station_id: str, tx_id: str) -> OpenTransaction | None:
        return self._tx.get((station_id, tx_id))

    def open(self, station_id: str, tx_id: str, tx: OpenTransaction) -> None:
        self._tx[(station_id, tx_id)] = tx
        self._tx.move_to_end((station_id, tx_id))
        self._open_on[(station_id, tx.connector_id)] = tx_id
        while len(self._tx) > self._limit:
            (old_station, old_tx), old = self._tx.popitem(last=False)
            if self._open_on.get((old_station, old.connector_id)) == old_tx:
                del self._open_on[(old_station, old.connector_id)]

    def close(self, station_id: str, tx_id: str) -> None:
        tx = self._tx.pop((station_id, tx_id), None)
        if tx is not None and self._open_on.get((station_id, tx.connector_id)) == tx_id:
            del self._open_on[(station_id, tx.connector_id)]

    def open_on(self, station_id: str, connector_id: int) -> str | None:
        return self._open_on.get((station_id, connector_id))

    def charging_status(self, station_id: str, connector_id: int) -> str | None:
        """The status last derived from a 2.0.1 chargingState on that connector."""
        return self._charging_state.get((station_id, connector_id))

    def set_charging_status(self, station_id: str, connector_id: int, status: str) -> None:
        self._charging_state[(station_id, connector_id)] = status


@dataclass
class GatewayContext:
    """What every station session of one gateway shares."""

    sink: EventSink
    pseudonymize: Callable[[str], str]
    transactions: TransactionIds
    auth: AuthPolicy
    clock: Callable[[], datetime]
    heartbeat_interval_s: int
    stats: GatewayStats
    book: TransactionBook


class StationBase:
    """One station's session; the version subclasses add the ocpp ChargePoint and handlers."""

    version: ClassVar[Version]
    route_map: dict[str, dict[str, Any]]

    def __init__(self, station_id: str, connection: OcppConnection, ctx: GatewayContext) -> None:
        super().__init__(station_id, connection, logger=_LIBRARY_LOGGER)  # type: ignore[call-arg]
        self.station_id = station_id
        self._conn = connection
        self._ctx = ctx

    async def run(self) -> None:
        """Serve frames until the transport raises on close."""
        while True:
            await self.route_message(await self._conn.recv())

    async def route_message(self, raw_msg: str) -> None:
        stats = self._ctx.stats
        unique_id = "-1"
        try:
            frame = parse_frame(raw_msg)
            if frame is None:
                stats.responses_ignored += 1
                return
            unique_id = frame.unique_id
            handler = self.route_map.get(frame.action, {}).get("_on_action")
            stats.messages[frame.action if handler is not None else "unknown"] += 1
            if handler is None:
                raise rejection_for_action(self.version, frame)
            check_payload(self.version, frame)
            result = await handler(**camel_to_snake_case(frame.payload))
            answer = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
            check_response(self.version, frame.action, answer)
            reply = call_result(unique_id, answer)
        except CallRejected as rejected:
            reply = self._reject(rejected, unique_id)
        except ValueRejected as exc:
            reply = self._reject(CallRejected(Problem.BAD_VALUE, str(exc)), unique_id)
        except EventError as exc:
            problem = (
                Problem.BAD_FORMAT if exc.field and "timestamp" in exc.field else Problem.BAD_VALUE
            )
            reply = self._reject(CallRejected(problem, str(exc)), unique_id)
        except SpoolFullError:
            reply = self._reject(
                CallRejected(Problem.SPOOL_FULL, "spool full, retry later"), unique_id
            )
        except (ChargewatchError, OSError) as exc:
            logger.error("station %s: storing failed: %s", self.station_id, type(exc).__name__)
            failed = CallRejected(Problem.STORE_FAILED, "could not store the message, retry later")
            reply = self._reject(failed, unique_id)
        except Exception:  # a bug here must cost one message, not the station's connection
            logger.exception("station %s: handling a message failed", self.station_id)
            internal = CallRejected(Problem.INTERNAL, "internal error, retry later")
            reply = self._reject(internal, unique_id)
        await self._conn.send(reply)

    def _reject(self, rejected: CallRejected, unique_id: str) -> str:
        if rejected.unique_id == "-1" and unique_id != "-1":
            rejected = CallRejected(rejected.problem, rejected.description, unique_id)
        self._ctx.stats.rejected[rejected.problem.value] += 1
        logger.info(
            "station %s: refused a frame (%s): %s",
            self.station_id,
            rejected.problem.value,
            rejected.description,
        )
        return call_error(self.version, rejected)

    async def _send(self, message: str) -> None:  # the library's sender, without its payload log
        await self._conn.send(message)

    # helpers for the handlers

    async def store(self, events: list[Event]) -> None:
        """Hand events to the sink; returns once they are durable (raises when they are not)."""
        if not events:
            return
        # The kernel's rule for every way in: connector_id is a tag, its values are bounded.
        field = "connectorId" if self.version is Version.V16 else "evseId"
        for event in events:
            if not isinstance(event, Authorize):
                check_connector_id(event.connector_id, field)
        await self._ctx.sink(events)
        counts = self._ctx.stats.events
        for event in events:
            counts[event.type.value] += 1

    def now_ns(self) -> int:
        moment = self._ctx.clock()
        return ((moment - _EPOCH) // _ONE_US) * 1000

    def now_text(self) -> str:
        return self._ctx.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def ts(self, value: Any, field: str) -> int:
        return parse_ts(value, field)

    def authorize(self, id_tag: str) -> tuple[str, AuthorizationStatus]:
        """The pseudonym of a clear id tag (dropped right here) and the policy's answer."""
        pseudonym = self._ctx.pseudonymize(id_tag)
        return pseudonym, self._ctx.auth.decide(pseudonym)

    def readings(
        self,
        meter_values: list[dict[str, Any]] | None,
        connector_id: int,
        session_id: str | None,
        *,
        where: str,
        v201: bool = False,
    ) -> list[Reading]:
        """One reading per meterValue element (snake_case keys, as the handlers receive them)."""
        result: list[Reading] = []
        for i, meter_value in enumerate(meter_values or ()):
            at = f"{where}.{i}"
            ts_ns = self.ts(meter_value.get("timestamp"), f"{at}.timestamp")
            samples = []
            for j, sv in enumerate(meter_value.get("sampled_value") or ()):
                if not v201 and sv.get("format") == "SignedData":
                    continue
                unit_of_measure = sv.get("unit_of_measure") or {}
                samples.append(
                    sample(
                        sv.get("value"),
                        measurand=sv.get("measurand"),
                        unit=unit_of_measure.get("unit") if v201 else sv.get("unit"),
                        phase=sv.get("phase"),
                        location=sv.get("location"),
                        multiplier=unit_of_measure.get("multiplier", 0) if v201 else 0,
                        where=f"{at}.sampledValue.{j}",
                    )
                )
            self._ctx.stats.unmapped_values += sum(1 for s in samples if s.field is None)
            reading = reading_from_samples(
                ts_ns, self.station_id, connector_id, session_id, samples
            )
            if reading is not None:
                result.append(reading)
        return result


def clean_text(value: Any) -> str | None:
    """Free text from a station: printable, bounded, None when empty."""
    if not isinstance(value, str):
        return None
    text = "".join(c if c.isprintable() else " " for c in value[:_MAX_TEXT_CHARS]).strip()
    return text or None
