"""What both protocol versions share: routing a station's frames, storing, answering.

``StationBase`` replaces the ocpp library's message loop and call handling (``route_message``)
while keeping its pieces: handlers registered with ``@on`` by action, the library's JSON schemas
for every Call and every answer, its camelCase/snake_case conversion and payload classes. It
differs from the library where the gateway needs it to: a malformed frame gets a CallError
instead of silence, error codes follow the version, schemas are checked inline (large frames on
the gateway's one worker thread, so that no station's frames stall the event loop), nothing logs
a payload (id tags are personal data), and the answer goes out only after the sink has stored
the message's events, with the station's liveness events due (``liveness``) in the same call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast

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
    StationEvent,
    StationEventKind,
    check_connector_id,
    parse_ts,
)
from ingest.spool import SpoolFullError

from .book import Book
from .interface import AuthPolicy, EventSink, GatewayStats, OcppConnection, TransactionIds
from .liveness import Liveness
from .meter import Sample, ValueRejectedError, reading_from_samples, sample
from .rpc import (
    CallRejectedError,
    Frame,
    Problem,
    Version,
    call_error,
    call_result,
    check_items,
    check_payload,
    check_response,
    check_size,
    parse_frame,
    rejection_for_action,
)

__all__ = ["GatewayContext", "StationBase", "handles"]

logger = logging.getLogger(__name__)
# The library logs whole frames (id tags included) at INFO. Its loop, router and sender are
# replaced below, so it never logs here; it still gets a logger of ours, not "ocpp".
_LIBRARY_LOGGER = logging.getLogger("ingest.ocppj.library")
_MAX_TEXT_CHARS = 255
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
# Frames from this many bytes, and readings from this many sampled values, are parsed, checked
# and converted on the gateway's worker thread rather than the event loop: below it the hand-off
# costs more than the work (a usual MeterValues is 0.3-3 kB).
_OFFLOAD_BYTES = 16 * 1024
_OFFLOAD_SAMPLES = 64

_F = TypeVar("_F", bound=Callable[..., Any])
_R = TypeVar("_R")


def handles(action: str) -> Callable[[_F], _F]:
    """The ocpp library's ``@on``, typed."""
    return cast(Callable[[_F], _F], on(action))


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
    book: Book  # open transactions (``book``): in memory, or shared by instances
    max_frame_bytes: int
    worker: Executor  # one thread: heavy frames wait for each other, never for the loop
    liveness: Liveness

    async def compute(self, heavy: bool, work: Callable[..., _R], *args: Any) -> _R:
        """``work(*args)``: on the worker thread when ``heavy``, else right here."""
        if not heavy:
            return work(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, functools.partial(work, *args))


class StationBase:
    """One station's session; the version subclasses add the ocpp ChargePoint and handlers.

    The library's ``ChargePoint.__init__`` is not run: it builds a route map of bound methods,
    a lock and a queue for Calls to the station in every session (about 30 objects the garbage
    collector keeps walking while the station stays connected), and the gateway sends no Calls.
    The handlers are looked up by action in ``_handlers``, built once per protocol version.
    """

    version: ClassVar[Version]
    # action -> its ``@handles`` function (unbound), from the class and its bases
    _handlers: ClassVar[dict[str, Callable[..., Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):  # a subclass's handler wins over its base's
            for value in vars(klass).values():
                action = getattr(value, "_on_action", None)
                if action is not None and callable(value):
                    handlers[str(getattr(action, "value", action))] = value
        cls._handlers = handlers

    def __init__(self, station_id: str, connection: OcppConnection, ctx: GatewayContext) -> None:
        self.id = station_id  # the library's names for the station and its logger
        self.logger = _LIBRARY_LOGGER
        self.station_id = station_id
        self._conn = connection
        self._ctx = ctx
        self._heard_ns: int | None = None  # when the latest message came
        self._unstored: list[StationEvent] = []  # station events the sink has not taken yet

    async def run(self) -> None:
        """Serve frames until the transport raises on close."""
        while True:
            await self.route_message(await self._conn.recv())

    async def route_message(self, raw_msg: str) -> None:
        ctx, stats = self._ctx, self._ctx.stats
        self._heard_ns = self.now_ns()  # any message is a sign of life, even a bad one
        unique_id = "-1"
        heavy = len(raw_msg) >= _OFFLOAD_BYTES
        try:
            frame = await ctx.compute(heavy, _parse, raw_msg, ctx.max_frame_bytes)
            if frame is None:
                stats.responses_ignored += 1
                await self.store_liveness()
                return
            unique_id = frame.unique_id
            handler = self._handlers.get(frame.action)
            stats.messages[frame.action if handler is not None else "unknown"] += 1
            if handler is None:
                raise rejection_for_action(self.version, frame)
            arguments, left_out = await ctx.compute(heavy, _arguments, self.version, frame)
            if left_out:
                stats.stop_items_left_out += left_out
                logger.warning(
                    "station %s: %s over the item bound, %d sampled items left out",
                    self.station_id,
                    frame.action,
                    left_out,
                )
            result = await handler(self, **arguments)
            answer = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
            check_response(self.version, frame.action, answer)
            reply = call_result(unique_id, answer)
        except CallRejectedError as rejected:
            reply = self._reject(rejected, unique_id)
        except ValueRejectedError as exc:
            reply = self._reject(CallRejectedError(Problem.BAD_VALUE, str(exc)), unique_id)
        except EventError as exc:
            problem = (
                Problem.BAD_FORMAT if exc.field and "timestamp" in exc.field else Problem.BAD_VALUE
            )
            reply = self._reject(CallRejectedError(problem, str(exc)), unique_id)
        except SpoolFullError:
            reply = self._reject(
                CallRejectedError(Problem.SPOOL_FULL, "spool full, retry later"), unique_id
            )
        except (ChargewatchError, OSError) as exc:
            logger.error("station %s: storing failed: %s", self.station_id, type(exc).__name__)
            failed = CallRejectedError(
                Problem.STORE_FAILED, "could not store the message, retry later"
            )
            reply = self._reject(failed, unique_id)
        except Exception:  # a bug here must cost one message, not the station's connection
            logger.exception("station %s: handling a message failed", self.station_id)
            internal = CallRejectedError(Problem.INTERNAL, "internal error, retry later")
            reply = self._reject(internal, unique_id)
        await self.store_liveness()
        await self._conn.send(reply)

    def _reject(self, rejected: CallRejectedError, unique_id: str) -> str:
        if rejected.unique_id == "-1" and unique_id != "-1":
            rejected = CallRejectedError(rejected.problem, rejected.description, unique_id)
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
        """Hand events to the sink, with the station's liveness events that are due; returns
        once they are durable (raises when they are not: the liveness ones are kept for the
        next call)."""
        # The kernel's rule for every way in: connector_id is a tag, its values are bounded.
        field = "connectorId" if self.version is Version.V16 else "evseId"
        for event in events:
            if not isinstance(event, Authorize | StationEvent):
                check_connector_id(event.connector_id, field)
        batch: list[Event] = [*self._unstored, *events]
        own = [event for event in batch if isinstance(event, StationEvent)]
        heard, liveness = self._heard_ns, self._ctx.liveness
        if (
            heard is not None
            and liveness.due(self.station_id, heard)
            and all(event.ts_ns < heard for event in own)  # a boot now says it already
        ):
            own.append(self.station_event(StationEventKind.HEARTBEAT, ts_ns=heard))
            batch.append(own[-1])
        if not batch:
            return
        await self._ctx.sink(batch)
        self._unstored.clear()
        for event in own:
            liveness.recorded(self.station_id, event.ts_ns)
        counts = self._ctx.stats.events
        for event in batch:
            counts[event.type.value] += 1

    async def store_liveness(self, *events: StationEvent) -> bool:
        """Store ``events`` and the liveness events due, if any; whether the sink took them.
        When it did not (a full spool), they wait for the next message's call."""
        self._unstored += events
        heard = self._heard_ns
        if not self._unstored and (
            heard is None or not self._ctx.liveness.due(self.station_id, heard)
        ):
            return True  # the common case: nothing due, nothing waiting
        try:
            await self.store([])
        except (ChargewatchError, OSError) as exc:
            logger.info(
                "station %s: liveness not stored yet: %s", self.station_id, type(exc).__name__
            )
            return False
        return True

    def drop_unstored(self) -> int:
        """Give up the liveness events the sink has not taken (the connection is over, no
        message will carry them); how many there were."""
        count = len(self._unstored)
        self._unstored.clear()
        return count

    def station_event(
        self,
        event: StationEventKind,
        *,
        ts_ns: int | None = None,
        vendor: str | None = None,
        model: str | None = None,
        firmware: str | None = None,
        reason: str | None = None,
    ) -> StationEvent:
        """A liveness event of this station, at ``ts_ns`` (default: now). Every event but a
        disconnect carries the heartbeat interval this gateway asks for (the offline rule's
        unit), so the latest one of any window has it, however long ago the station booted."""
        down = event is StationEventKind.DISCONNECT
        return StationEvent(
            self.now_ns() if ts_ns is None else ts_ns,
            self.station_id,
            event,
            vendor=clean_text(vendor),
            model=clean_text(model),
            firmware=clean_text(firmware),
            ocpp_version=self.version.subprotocol,
            heartbeat_interval_s=None if down else float(self._ctx.heartbeat_interval_s),
            reason=clean_text(reason),
        )

    def now_ns(self) -> int:
        moment = self._ctx.clock()
        return ((moment - _EPOCH) // _ONE_US) * 1000

    def now_text(self) -> str:
        return self._ctx.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def ts(self, value: Any, field: str) -> int:
        return parse_ts(value, field)  # RFC 3339, lower-case "t" and "z" too (OCPP's dateTime)

    def authorize(self, id_tag: str) -> tuple[str, AuthorizationStatus]:
        """The pseudonym of a clear id tag (dropped right here) and the policy's answer."""
        pseudonym = self._ctx.pseudonymize(id_tag)
        return pseudonym, self._ctx.auth.decide(pseudonym)

    async def readings(
        self,
        meter_values: list[dict[str, Any]] | None,
        connector_id: int,
        session_id: str | None,
        *,
        where: str,
        v201: bool = False,
    ) -> list[Reading]:
        """One reading per meterValue element (snake_case keys, as the handlers receive them)."""
        values = meter_values or []
        heavy = sum(len(mv.get("sampled_value") or ()) for mv in values) >= _OFFLOAD_SAMPLES
        result, unmapped = await self._ctx.compute(
            heavy, self._readings, values, connector_id, session_id, where, v201
        )
        self._ctx.stats.unmapped_values += unmapped
        return result

    def _readings(
        self,
        meter_values: list[dict[str, Any]],
        connector_id: int,
        session_id: str | None,
        where: str,
        v201: bool,
    ) -> tuple[list[Reading], int]:
        unmapped = 0
        # Elements of one timestamp are one sample, however the station splits them (some send
        # each measurand or phase as its own element): gathered together, so that phases are
        # summed, and one reading per timestamp (else each element is a reading of its own, and
        # one phase's power stands for the connector's at that instant).
        by_ts: dict[int, list[Sample]] = {}
        for i, meter_value in enumerate(meter_values):
            at = f"{where}.{i}"
            ts_ns = self.ts(meter_value.get("timestamp"), f"{at}.timestamp")
            samples = by_ts.setdefault(ts_ns, [])
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
        result: list[Reading] = []
        for ts_ns, samples in by_ts.items():
            unmapped += sum(1 for s in samples if s.field is None)
            reading = reading_from_samples(
                ts_ns, self.station_id, connector_id, session_id, samples
            )
            if reading is not None:
                result.append(reading)
        return result, unmapped


def _parse(raw: str, max_frame_bytes: int) -> Frame | None:
    check_size(raw, max_frame_bytes)
    return parse_frame(raw)


def _arguments(version: Version, frame: Frame) -> tuple[dict[str, Any], int]:
    """The handler's keyword arguments of a checked Call (items counted first: it is cheap),
    and how many items of a stop's sampled data were left out (``rpc.check_items``)."""
    frame, left_out = check_items(frame)
    check_payload(version, frame)
    arguments: dict[str, Any] = _snake_case(frame.payload)
    return arguments, left_out


def _snake_case(data: Any) -> Any:
    """The library's ``camel_to_snake_case`` of a payload, each key converted once: its two
    regular expressions per key were a tenth of a MeterValues' cost on the event loop."""
    if isinstance(data, dict):
        return {_snake_key(key): _snake_case(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_snake_case(value) for value in data]
    return data


# Keys are the schemas' own but for 2.0.1 customData, which takes any: the cache is bounded.
@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    converted: dict[str, Any] = camel_to_snake_case({key: None})
    return next(iter(converted))


def clean_text(value: Any) -> str | None:
    """Free text from a station: printable, bounded, None when empty."""
    if not isinstance(value, str):
        return None
    text = "".join(c if c.isprintable() else " " for c in value[:_MAX_TEXT_CHARS]).strip()
    return text or None
