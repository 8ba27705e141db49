"""Canonical events (CONTRACTS.md section 1) and their JSON Lines decoder.

Every source (OCPP frames, HTTP batches, files) ends up as one of the six immutable event types
below, so nothing further in does not know where a reading came from. Raw values are parsed into
typed ones here: numbers that arrive as numeric strings become floats, statuses become enums,
timestamps become integer nanoseconds since the Unix epoch (UTC), and id tags are replaced by
their pseudonym before an event object even exists.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import compress
from types import MappingProxyType
from typing import IO, Any, NamedTuple, TypeVar

import orjson

from chargewatch.errors import EventError

__all__ = [
    "MAX_CONNECTOR_ID",
    "MAX_HEARTBEAT_INTERVAL_S",
    "MAX_LINE_BYTES",
    "READING_RANGES",
    "AuthorizationStatus",
    "Authorize",
    "ChargePointErrorCode",
    "ChargePointStatus",
    "Event",
    "EventDecoder",
    "EventType",
    "Reading",
    "SessionStart",
    "SessionStop",
    "StationEvent",
    "StationEventKind",
    "StatusChange",
    "check_connector_id",
    "iter_jsonl",
    "iter_jsonl_blocks",
    "iter_jsonl_chunks",
]

MAX_LINE_BYTES = 64 * 1024
# Connectors (OCPP 1.6) or EVSEs (2.0.1) of one station, 0 being the station itself: real
# stations have 1-4, the largest hubs a few dozen. connector_id is an InfluxDB tag, so this
# bound is also the most series one station can open per measurement.
MAX_CONNECTOR_ID = 1000
_MAX_ID_CHARS = 128
# A station's heartbeat interval: OCPP gives whole seconds; central systems ask for 30 s to a
# few hours. Above a day it is a unit error (ms sent as s), and liveness would mean nothing.
MAX_HEARTBEAT_INTERVAL_S = 86_400.0
_MAX_TEXT_CHARS = 1024
# InfluxDB stores nanoseconds in a signed 64-bit integer: 1677-09-21 .. 2262-04-11.
_MIN_TS_NS = -(2**63) + 1
_MAX_TS_NS = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_E = TypeVar("_E", bound=StrEnum)


class EventType(StrEnum):
    READING = "reading"
    SESSION_START = "session_start"
    SESSION_STOP = "session_stop"
    STATUS = "status"
    AUTHORIZE = "authorize"
    STATION = "station"


class StationEventKind(StrEnum):
    """What a ``station`` event says about a station's link to its central system."""

    BOOT = "boot"  # BootNotification: it (re)started; vendor, model, firmware come with it
    CONNECT = "connect"  # its connection (an OCPP WebSocket) was accepted
    DISCONNECT = "disconnect"  # its connection went; ``reason`` says how
    HEARTBEAT = "heartbeat"  # it was heard from (sampled: not every message is recorded)


class ChargePointStatus(StrEnum):
    """OCPP 1.6 ChargePointStatus."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EVSE = "SuspendedEVSE"
    SUSPENDED_EV = "SuspendedEV"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ChargePointErrorCode(StrEnum):
    """OCPP 1.6 ChargePointErrorCode."""

    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


class AuthorizationStatus(StrEnum):
    """OCPP 1.6 AuthorizationStatus."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


# Events are NamedTuples: immutable like frozen dataclasses, and five times cheaper to build,
# which matters at a million readings per file.


class Reading(NamedTuple):
    """One meter sample of a connector; ``None`` means not measured."""

    ts_ns: int
    station_id: str
    connector_id: int
    session_id: str | None = None
    energy_wh: float | None = None
    power_w: float | None = None
    power_offered_w: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None
    soc_pct: float | None = None
    temperature_c: float | None = None

    @property
    def type(self) -> EventType:
        return EventType.READING


class SessionStart(NamedTuple):
    ts_ns: int
    station_id: str
    connector_id: int
    session_id: str
    id_pseudonym: str
    meter_start_wh: float | None = None

    @property
    def type(self) -> EventType:
        return EventType.SESSION_START


class SessionStop(NamedTuple):
    ts_ns: int
    station_id: str
    connector_id: int
    session_id: str
    meter_stop_wh: float | None = None
    reason: str | None = None

    @property
    def type(self) -> EventType:
        return EventType.SESSION_STOP


class StatusChange(NamedTuple):
    ts_ns: int
    station_id: str
    connector_id: int
    status: ChargePointStatus
    error_code: ChargePointErrorCode = ChargePointErrorCode.NO_ERROR
    vendor_error_code: str | None = None
    info: str | None = None

    @property
    def type(self) -> EventType:
        return EventType.STATUS


class Authorize(NamedTuple):
    ts_ns: int
    station_id: str
    id_pseudonym: str
    result: AuthorizationStatus

    @property
    def type(self) -> EventType:
        return EventType.AUTHORIZE


class StationEvent(NamedTuple):
    """What is known of a station itself, for liveness: not part of any session.

    ``heartbeat_interval_s`` is the interval the central system asked of the station (the
    answer to its BootNotification), so "silent for N intervals" can be judged per station.
    """

    ts_ns: int
    station_id: str
    event: StationEventKind
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None
    ocpp_version: str | None = None
    heartbeat_interval_s: float | None = None
    reason: str | None = None

    @property
    def type(self) -> EventType:
        return EventType.STATION


Event = Reading | SessionStart | SessionStop | StatusChange | Authorize | StationEvent

_FLOAT_MAX = sys.float_info.max
# Optional measured values of a reading, and the physically possible range of each. Power and
# current may be negative: bidirectional chargers export.
_READING_VALUES: tuple[tuple[str, float, float], ...] = (
    ("energy_wh", 0.0, _FLOAT_MAX),
    ("power_w", -_FLOAT_MAX, _FLOAT_MAX),
    ("power_offered_w", 0.0, _FLOAT_MAX),
    ("current_a", -_FLOAT_MAX, _FLOAT_MAX),
    ("voltage_v", 0.0, _FLOAT_MAX),
    ("soc_pct", 0.0, 100.0),
    ("temperature_c", -273.15, _FLOAT_MAX),
)
_READING_KEYS = tuple(key for key, _low, _high in _READING_VALUES)
# The same ranges by field, for every other way in (the columnar path, OCPP meter values).
READING_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {key: (low, high) for key, low, high in _READING_VALUES}
)
_JSON_NUMBERS = frozenset({float, int})


def parse_ts(value: Any, field: str = "ts") -> int:
    """An RFC 3339 timestamp with a zone, as integer nanoseconds since the epoch (UTC)."""
    if not isinstance(value, str):
        raise EventError(field, f"must be an RFC 3339 timestamp string, got {_kind(value)}")
    if value[-1:] == "z":  # RFC 3339 (section 5.6) allows a lower-case "z"; Python does not
        value = value[:-1] + "Z"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(field, f"{_clip(value)!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise EventError(field, f"{_clip(value)!r} has no zone (add Z or an offset like +01:00)")
    try:
        ts_ns = ((moment - _EPOCH) // _ONE_US) * 1000
    except OverflowError:
        raise EventError(field, f"{_clip(value)!r} is out of range") from None
    if not _MIN_TS_NS <= ts_ns <= _MAX_TS_NS:
        raise EventError(field, f"{_clip(value)!r} is outside 1677..2262, which InfluxDB can store")
    return ts_ns


def format_ts(ts_ns: int) -> str:
    """RFC 3339 UTC with milliseconds, the form the project writes."""
    moment = _EPOCH + timedelta(microseconds=ts_ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class EventDecoder:
    """Turns decoded JSON objects into events; every failure is an ``EventError`` naming the field.

    ``pseudonymize`` maps a clear id tag to its pseudonym; the clear value is dropped right here.
    """

    def __init__(self, pseudonymize: Callable[[str], str]) -> None:
        self._pseudonymize = pseudonymize
        self._decoders: dict[str, Callable[[dict[str, Any]], Event]] = {
            EventType.READING: self._reading,
            EventType.SESSION_START: self._session_start,
            EventType.SESSION_STOP: self._session_stop,
            EventType.STATUS: self._status,
            EventType.AUTHORIZE: self._authorize,
            EventType.STATION: self._station,
        }
        self._stations: dict[tuple[tuple[Any, ...], tuple[type, ...]], tuple[Any, ...]] = {}

    def decode_line(self, line: bytes | str) -> Event:
        """One JSON Lines line (without needing its newline stripped)."""
        if len(line) > MAX_LINE_BYTES:
            raise EventError(None, f"line is longer than {MAX_LINE_BYTES} bytes")
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise EventError(None, f"not valid JSON ({exc.msg})") from None
        return self.decode(obj)

    def decode(self, obj: Any) -> Event:
        """One event given as a decoded JSON object."""
        if not isinstance(obj, dict):
            raise EventError(None, f"an event must be a JSON object, got {_kind(obj)}")
        kind = obj.get("type")
        decoder = self._decoders.get(kind) if isinstance(kind, str) else None
        if decoder is None:
            if kind is None:
                raise EventError("type", "is required")
            raise EventError("type", f"{_clip(str(kind))!r} is not one of {', '.join(EventType)}")
        return decoder(obj)

    def _reading(self, obj: dict[str, Any]) -> Reading:
        # The hot path of the per-event way: in-range JSON numbers take the inline branch,
        # anything else goes through _number for its full check and precise reason.
        get = obj.get
        ts_ns = parse_ts(get("ts"))
        station_id = _id(get("station_id"), "station_id")
        connector_id = _connector(get("connector_id"))
        raw: list[Any] = [get(key) for key in _READING_KEYS]
        values = [
            float(value)
            if type(value) in _JSON_NUMBERS and low <= value <= high
            else _number(value, key, low, high)
            for value, (key, low, high) in zip(raw, _READING_VALUES, strict=True)
        ]
        session_id = _optional_id(get("session_id"), "session_id")
        if session_id is None and values.count(None) == len(values):
            raise EventError(None, "reading has no session_id and no measured value")
        return Reading(ts_ns, station_id, connector_id, session_id, *values)

    def _session_start(self, obj: dict[str, Any]) -> SessionStart:
        return SessionStart(
            parse_ts(obj.get("ts")),
            _id(obj.get("station_id"), "station_id"),
            _connector(obj.get("connector_id")),
            _id(obj.get("session_id"), "session_id"),
            self._pseudonymize(_id(obj.get("id_tag"), "id_tag")),
            _number(obj.get("meter_start_wh"), "meter_start_wh", 0.0, _FLOAT_MAX),
        )

    def _session_stop(self, obj: dict[str, Any]) -> SessionStop:
        return SessionStop(
            parse_ts(obj.get("ts")),
            _id(obj.get("station_id"), "station_id"),
            _connector(obj.get("connector_id")),
            _id(obj.get("session_id"), "session_id"),
            _number(obj.get("meter_stop_wh"), "meter_stop_wh", 0.0, _FLOAT_MAX),
            _optional_id(obj.get("reason"), "reason"),
        )

    def _status(self, obj: dict[str, Any]) -> StatusChange:
        error_code = obj.get("error_code")
        return StatusChange(
            parse_ts(obj.get("ts")),
            _id(obj.get("station_id"), "station_id"),
            _connector(obj.get("connector_id")),
            _enum(ChargePointStatus, obj.get("status"), "status"),
            ChargePointErrorCode.NO_ERROR
            if error_code is None
            else _enum(ChargePointErrorCode, error_code, "error_code"),
            _optional_id(obj.get("vendor_error_code"), "vendor_error_code"),
            _text(obj.get("info"), "info"),
        )

    def _authorize(self, obj: dict[str, Any]) -> Authorize:
        return Authorize(
            parse_ts(obj.get("ts")),
            _id(obj.get("station_id"), "station_id"),
            self._pseudonymize(_id(obj.get("id_tag"), "id_tag")),
            _enum(AuthorizationStatus, obj.get("result"), "result"),
        )

    def _station(self, obj: dict[str, Any]) -> StationEvent:
        # A station repeats one heartbeat all day: what it says but the stamp is checked once
        # for each set of values (with their types: True == 1 == 1.0 as keys, not as values).
        get = obj.get
        ts_ns = parse_ts(get("ts"))
        values = tuple(map(get, _STATION_KEYS))
        key = (values, tuple(map(type, values)))
        try:
            content, keep = self._stations.get(key), True
        except TypeError:  # a list or an object among the values: checked below, not kept
            content, keep = None, False
        if content is None:
            content = _station_content(*values)
            if keep:
                if len(self._stations) >= _STATIONS_KEPT:
                    self._stations.clear()
                self._stations[key] = content
        return StationEvent(ts_ns, *content)


# What a station event says besides its stamp, in StationEvent's order.
_STATION_KEYS = (
    "station_id",
    "event",
    "vendor",
    "model",
    "firmware",
    "ocpp_version",
    "heartbeat_interval_s",
    "reason",
)
# Station contents kept checked (EventDecoder._station): more than a fleet's stations say,
# bounded against one that says something new every time.
_STATIONS_KEPT = 20_000


def _station_content(
    station_id: Any,
    event: Any,
    vendor: Any,
    model: Any,
    firmware: Any,
    ocpp_version: Any,
    heartbeat_interval_s: Any,
    reason: Any,
) -> tuple[Any, ...]:
    """A station event's fields after its stamp, checked."""
    return (
        _id(station_id, "station_id"),
        _enum(StationEventKind, event, "event"),
        _optional_id(vendor, "vendor"),
        _optional_id(model, "model"),
        _optional_id(firmware, "firmware"),
        _optional_id(ocpp_version, "ocpp_version"),
        _number(heartbeat_interval_s, "heartbeat_interval_s", 1.0, MAX_HEARTBEAT_INTERVAL_S),
        _text(reason, "reason"),
    )


def iter_jsonl(
    stream: IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes]]:
    """``(line_number, line)`` for each non-blank line, 1-based, in bounded memory.

    A line longer than ``max_line_bytes`` is yielded cut short (so its decoding fails with a
    clear reason) and the rest of it is skipped without being held in memory.
    """
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while True:  # drain the rest of the over-long line
                rest = stream.readline(max_line_bytes)
                if not rest or rest.endswith(b"\n"):
                    break
        if line.strip():
            yield number, line


JSONL_BLOCK_BYTES = 1 << 22  # read 4 MB at a time


def iter_jsonl_chunks(
    stream: IO[bytes],
    max_lines: int,
    *,
    block_bytes: int = JSONL_BLOCK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[list[tuple[int, bytes]]]:
    """``iter_jsonl``'s lines, at most ``max_lines`` at a time and without their newline: the
    same numbers, blank lines skipped, an over-long line cut short to ``max_line_bytes + 1``
    bytes (so its decoding fails with a clear reason) and the rest of it never held. The
    ``(number, line)`` pairs of ``iter_jsonl_blocks``."""
    for numbers, lines in iter_jsonl_blocks(
        stream, max_lines, block_bytes=block_bytes, max_line_bytes=max_line_bytes
    ):
        yield list(zip(numbers, lines, strict=True))


def iter_jsonl_blocks(
    stream: IO[bytes],
    max_lines: int,
    *,
    block_bytes: int = JSONL_BLOCK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[list[int], list[bytes]]]:
    """``iter_jsonl_chunks`` as two lists, the line numbers and the lines: what the columnar
    readers take, with no pair built per line only to be taken apart again.

    The stream is read in blocks and split, numbered and filtered by C code (``bytes.split``,
    ``list.extend`` of a ``range``, ``itertools.compress`` where a block has blank lines), with
    no Python step per line: that is what makes a file of a million lines quick to read.
    """
    number = 0  # lines numbered so far (finished, or cut short)
    carry = b""  # the unfinished line at the end of the blocks read
    cut = False  # that unfinished line was over-long: already given out, cut short
    numbers: list[int] = []
    lines: list[bytes] = []
    while block := stream.read(block_bytes):
        parts = block.split(b"\n")
        tail = parts.pop()  # after the last newline: unfinished
        if parts:
            if cut:  # the block finishes the over-long line given out already
                del parts[0]
                cut = False
            else:
                parts[0] = carry + parts[0]
            carry = b""
            if parts and max(map(len, parts)) > max_line_bytes:
                parts = [part[: max_line_bytes + 1] for part in parts]
            numbered = range(number + 1, number + 1 + len(parts))
            kept = list(map(bytes.strip, parts))
            if all(kept):
                numbers.extend(numbered)
                lines.extend(parts)
            else:  # blank lines: numbered, not given out
                numbers.extend(compress(numbered, kept))
                lines.extend(compress(parts, kept))
            number += len(parts)
        if not cut:
            carry += tail
            if len(carry) > max_line_bytes:
                number += 1
                head = carry[: max_line_bytes + 1]
                if head.strip():  # blank as far as it is read: skipped, as iter_jsonl does
                    numbers.append(number)
                    lines.append(head)
                carry, cut = b"", True
        while len(lines) >= max_lines:
            yield numbers[:max_lines], lines[:max_lines]
            del numbers[:max_lines], lines[:max_lines]
    if carry.strip():
        numbers.append(number + 1)
        lines.append(carry)
    if lines:
        yield numbers, lines


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _id(value: Any, field: str) -> str:
    if value is None:
        raise EventError(field, "is required")
    text = _optional_id(value, field)
    if text is None:
        raise EventError(field, "is required")
    return text


def _optional_id(value: Any, field: str) -> str | None:
    """An identifier: a non-empty string of printable characters, at most 128 of them."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(field, f"must be a string, got {_kind(value)}")
    if not value or value.isspace():
        raise EventError(field, "must not be empty")
    if len(value) > _MAX_ID_CHARS:
        raise EventError(field, f"is longer than {_MAX_ID_CHARS} characters")
    if not value.isprintable():
        raise EventError(field, "contains control characters")
    return value


def _text(value: Any, field: str) -> str | None:
    """Free text: control characters (line breaks included) become spaces."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(field, f"must be a string, got {_kind(value)}")
    if len(value) > _MAX_TEXT_CHARS:
        raise EventError(field, f"is longer than {_MAX_TEXT_CHARS} characters")
    if not value.isprintable():
        value = "".join(c if c.isprintable() else " " for c in value)
    return value or None


def _connector(value: Any) -> int:
    field = "connector_id"
    if value is None:
        raise EventError(field, "is required")
    if isinstance(value, bool):
        raise EventError(field, "must be an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (digits := value.strip()).isascii() and digits.isdigit():
        number = int(digits)  # ASCII only: int() refuses some digits isdigit() takes ("²")
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise EventError(field, f"must be an integer >= 0, got {_clip(repr(value))}")
    return check_connector_id(number)


def check_connector_id(number: int, field: str = "connector_id") -> int:
    """``number`` when it can be a connector (or EVSE) id, 0..``MAX_CONNECTOR_ID``; an
    ``EventError`` naming ``field`` otherwise. The one rule for every way in: JSON events,
    files, OCPP frames (which name the field as the protocol does)."""
    if not 0 <= number <= MAX_CONNECTOR_ID:
        raise EventError(field, f"must be within 0..{MAX_CONNECTOR_ID}, got {_clip(str(number))}")
    return number


def _number(value: Any, field: str, low: float, high: float) -> float | None:
    """A JSON number or numeric string (OCPP 1.6 sends strings) within the physical range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventError(field, f"must be a number, got {_kind(value)}")
    try:
        number = float(value)
    except ValueError:
        raise EventError(field, f"{_clip(str(value))!r} is not a number") from None
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise EventError(field, f"must be a finite number, got {_clip(str(value))}")
    if number < low:
        raise EventError(field, f"must be >= {low:g}, got {number:g}")
    if number > high:
        raise EventError(field, f"must be <= {high:g}, got {number:g}")
    return number


def _enum(enum: type[_E], value: Any, field: str) -> _E:
    if value is None:
        raise EventError(field, "is required")
    if not isinstance(value, str):
        raise EventError(field, f"must be a string, got {_kind(value)}")
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise EventError(field, f"{_clip(value)!r} is not one of {allowed}") from None
