"""OCPP-J framing: parsing frames, checking payloads against the schemas, and CallErrors.

Every way a frame can be wrong is a ``Problem``; each protocol version names it with its own
CallError code (1.6 says FormationViolation where 2.0.1 says FormatViolation, and only 2.0.1
has RpcFrameworkError and MessageTypeNotSupported). A frame whose message id cannot be read is
answered with the id "-1", as OCPP 2.0.1 prescribes. Descriptions name the field and the rule,
never the offending value, so an id tag never travels back or into a log.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from ocpp.messages import MessageType
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

from .schemas import first_error

__all__ = [
    "MAX_ITEMS_PER_MESSAGE",
    "SUBPROTOCOLS",
    "CallRejectedError",
    "Frame",
    "Problem",
    "Version",
    "call_error",
    "call_result",
    "check_items",
    "check_payload",
    "check_size",
    "parse_frame",
    "rejection_for_action",
]

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")
_MAX_ID_CHARS = 36  # OCPP-J: message ids are at most 36 characters
# Sampled values (and NotifyEvent event data) one message may carry. A charger samples 1-30
# values at a time; the most a real one sends at once is its transaction data at the end of a
# session (1.6 StopTransaction, 2.0.1 TransactionEvent Ended): a day-long session sampled at the
# usual 15-minute clock-aligned interval with three measurands is under 300. Checking the
# schema and converting one value costs ~70 us, so this keeps any message under ~40 ms of CPU.
MAX_ITEMS_PER_MESSAGE = 500
_ITEM_LISTS = ("meterValue", "transactionData")  # lists of {timestamp, sampledValue: [...]}
_FLAT_ITEM_LISTS = ("eventData",)
# The start of a Call, to name its message id in the refusal of a frame too large to parse.
_CALL_START = re.compile(r'\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')
_MAX_DESCRIPTION_CHARS = 255
_UNREADABLE_ID = "-1"


class Version(StrEnum):
    """The protocol versions the gateway speaks, as the ocpp library names them."""

    V16 = "1.6"
    V201 = "2.0.1"

    @classmethod
    def from_subprotocol(cls, subprotocol: str) -> Version | None:
        return {"ocpp1.6": cls.V16, "ocpp2.0.1": cls.V201}.get(subprotocol)

    @property
    def subprotocol(self) -> str:
        """The WebSocket subprotocol that names this version (``ocpp1.6``, ``ocpp2.0.1``)."""
        return f"ocpp{self.value}"


class Problem(StrEnum):
    """Why a frame was refused; these are the keys of the gateway's ``rejected`` counter."""

    MALFORMED_FRAME = "malformed_frame"  # not JSON, not an array, bad message id
    UNSUPPORTED_MESSAGE_TYPE = "unsupported_message_type"
    UNKNOWN_ACTION = "unknown_action"  # not an action of this protocol version
    UNSUPPORTED_ACTION = "unsupported_action"  # an action of the version, not taken here
    BAD_FORMAT = "bad_format"  # payload structure, unknown keys, unparseable timestamps
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"  # wrong JSON type or too long
    BAD_VALUE = "bad_value"  # not an allowed value, or physically impossible
    TOO_LARGE = "too_large"  # more bytes or items than a message may hold
    SPOOL_FULL = "spool_full"
    STORE_FAILED = "store_failed"
    INTERNAL = "internal"


_CODES: dict[Version, dict[Problem, str]] = {
    Version.V16: {
        Problem.MALFORMED_FRAME: "FormationViolation",
        Problem.UNSUPPORTED_MESSAGE_TYPE: "FormationViolation",
        Problem.UNKNOWN_ACTION: "NotImplemented",
        Problem.UNSUPPORTED_ACTION: "NotSupported",
        Problem.BAD_FORMAT: "FormationViolation",
        Problem.MISSING_FIELD: "ProtocolError",
        Problem.BAD_TYPE: "TypeConstraintViolation",
        Problem.BAD_VALUE: "PropertyConstraintViolation",
        Problem.TOO_LARGE: "OccurenceConstraintViolation",  # so spelled in OCPP-J 1.6
        Problem.SPOOL_FULL: "InternalError",
        Problem.STORE_FAILED: "InternalError",
        Problem.INTERNAL: "InternalError",
    },
    Version.V201: {
        Problem.MALFORMED_FRAME: "RpcFrameworkError",
        Problem.UNSUPPORTED_MESSAGE_TYPE: "MessageTypeNotSupported",
        Problem.UNKNOWN_ACTION: "NotImplemented",
        Problem.UNSUPPORTED_ACTION: "NotSupported",
        Problem.BAD_FORMAT: "FormatViolation",
        Problem.MISSING_FIELD: "OccurrenceConstraintViolation",
        Problem.BAD_TYPE: "TypeConstraintViolation",
        Problem.BAD_VALUE: "PropertyConstraintViolation",
        Problem.TOO_LARGE: "OccurrenceConstraintViolation",
        Problem.SPOOL_FULL: "InternalError",
        Problem.STORE_FAILED: "InternalError",
        Problem.INTERNAL: "InternalError",
    },
}
_ACTIONS: dict[Version, frozenset[str]] = {
    Version.V16: frozenset(a.value for a in Action16),
    Version.V201: frozenset(a.value for a in Action201),
}


class CallRejectedError(Exception):
    """A Call answered with a CallError: the ``problem`` and a description for the station."""

    def __init__(self, problem: Problem, description: str, unique_id: str = _UNREADABLE_ID) -> None:
        self.problem = problem
        self.description = description[:_MAX_DESCRIPTION_CHARS]
        self.unique_id = unique_id
        super().__init__(f"{problem.value}: {self.description}")


class Frame(NamedTuple):
    """A parsed Call."""

    unique_id: str
    action: str
    payload: dict[str, Any]


def parse_frame(raw: str | bytes) -> Frame | None:
    """The Call in ``raw``; None for a CallResult or CallError (the gateway sends no Calls)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CallRejectedError(Problem.MALFORMED_FRAME, "frame is not valid JSON") from None
    if not isinstance(message, list) or not message:
        raise CallRejectedError(Problem.MALFORMED_FRAME, "frame must be a non-empty JSON array")
    kind = message[0]
    unique_id = message[1] if len(message) > 1 else None
    readable_id = (
        unique_id
        if isinstance(unique_id, str) and 0 < len(unique_id) <= _MAX_ID_CHARS
        else _UNREADABLE_ID
    )
    if type(kind) is not int:
        raise CallRejectedError(
            Problem.MALFORMED_FRAME, "MessageTypeId must be an integer", readable_id
        )
    if kind in (MessageType.CallResult, MessageType.CallError):
        return None
    if kind != MessageType.Call:
        raise CallRejectedError(
            Problem.UNSUPPORTED_MESSAGE_TYPE, f"MessageTypeId {kind} is not supported", readable_id
        )
    if readable_id is _UNREADABLE_ID:
        raise CallRejectedError(
            Problem.MALFORMED_FRAME, f"MessageId must be a string of 1..{_MAX_ID_CHARS} characters"
        )
    if len(message) != 4:
        raise CallRejectedError(
            Problem.MALFORMED_FRAME,
            "a Call has 4 elements: 2, MessageId, Action, Payload",
            readable_id,
        )
    action, payload = message[2], message[3]
    if not isinstance(action, str) or not action:
        raise CallRejectedError(
            Problem.MALFORMED_FRAME, "Action must be a non-empty string", readable_id
        )
    if not isinstance(payload, dict):
        raise CallRejectedError(Problem.BAD_FORMAT, "Payload must be a JSON object", readable_id)
    return Frame(readable_id, action, payload)


def check_size(raw: str, max_bytes: int) -> None:
    """Refuse a frame longer than ``max_bytes`` before parsing it (its id read from its start).

    The transport bounds messages too (closing with 1009); this names the limit in a CallError
    when a transport lets a larger one through.
    """
    # A character is 1 to 4 bytes: encode only when the length alone does not decide.
    if len(raw) > max_bytes or (
        len(raw) * 4 > max_bytes and len(raw.encode("utf-8", "replace")) > max_bytes
    ):
        start = _CALL_START.match(raw[:64])
        raise CallRejectedError(
            Problem.TOO_LARGE,
            f"a message may hold at most {max_bytes} bytes",
            start.group(1) if start else _UNREADABLE_ID,
        )


def check_items(frame: Frame) -> tuple[Frame, int]:
    """Refuse a Call carrying more than ``MAX_ITEMS_PER_MESSAGE`` sampled values or events;
    the frame to handle and how many items were left out of it.

    A stop is never refused for its size (1.6 StopTransaction's transactionData, 2.0.1
    TransactionEvent Ended's meterValue): refused, it would be lost with its session's end
    once the station gives up retrying, while its sampled data mostly repeats the MeterValues
    sent during the session. Its latest meterValue elements are kept, as many as the bound
    takes (the Transaction.End values among them), the earlier ones left out and counted.

    Runs before the schema check, whose cost grows with the items: it only counts, and anything
    malformed is left for the schema check to name.
    """
    counts = {key: _items(frame.payload.get(key)) for key in _ITEM_LISTS}
    count = sum(sum(c) for c in counts.values())
    for key in _FLAT_ITEM_LISTS:
        elements = frame.payload.get(key)
        if isinstance(elements, list):
            count += len(elements)
    stop_key = _stop_data_key(frame)
    if count > MAX_ITEMS_PER_MESSAGE and stop_key is not None:
        kept, budget = 0, MAX_ITEMS_PER_MESSAGE - (count - sum(counts[stop_key]))
        for items in reversed(counts[stop_key]):
            if items > budget:
                break
            budget -= items
            kept += 1
        elements = frame.payload[stop_key]
        payload = {**frame.payload, stop_key: elements[len(elements) - kept :]}
        return frame._replace(payload=payload), sum(counts[stop_key][: len(elements) - kept])
    if count > MAX_ITEMS_PER_MESSAGE:
        raise CallRejectedError(
            Problem.TOO_LARGE,
            f"{frame.action} carries {count} items (sampled values and their timestamps); "
            f"at most {MAX_ITEMS_PER_MESSAGE} per message, send the rest in further messages",
            frame.unique_id,
        )
    return frame, 0


def _items(elements: Any) -> list[int]:
    """The items of each element of a list of {timestamp, sampledValue: [...]}: the element
    and its sampled values."""
    if not isinstance(elements, list):
        return []
    counts = []
    for element in elements:
        samples = element.get("sampledValue") if isinstance(element, dict) else None
        counts.append(1 + (len(samples) if isinstance(samples, list) else 0))
    return counts


def _stop_data_key(frame: Frame) -> str | None:
    """The key of a stop's list of sampled data, None when the frame is no stop."""
    if frame.action == "StopTransaction":
        return "transactionData"
    if frame.action == "TransactionEvent" and frame.payload.get("eventType") == "Ended":
        return "meterValue"
    return None


def rejection_for_action(version: Version, frame: Frame) -> CallRejectedError:
    """The refusal of an action the gateway has no handler for."""
    if frame.action in _ACTIONS[version]:
        return CallRejectedError(
            Problem.UNSUPPORTED_ACTION,
            f"{_clip(frame.action)} is not taken by this central system",
            frame.unique_id,
        )
    return CallRejectedError(
        Problem.UNKNOWN_ACTION,
        f"{_clip(frame.action)} is not an OCPP {version.value} action",
        frame.unique_id,
    )


def check_payload(version: Version, frame: Frame) -> None:
    """Validate the payload with the ocpp library's JSON schema of the action (compiled:
    ``schemas``)."""
    error = first_error(MessageType.Call, frame.action, version.value, frame.payload)
    if error is not None:
        problem, description = _describe(error)
        raise CallRejectedError(problem, description, frame.unique_id)


def check_response(version: Version, action: str, payload: dict[str, Any]) -> None:
    """Our own answers are checked too: a failure is a bug here, reported as InternalError."""
    if first_error(MessageType.CallResult, action, version.value, payload) is not None:
        raise CallRejectedError(Problem.INTERNAL, f"the answer to {action} failed its schema")


def call_result(unique_id: str, payload: dict[str, Any]) -> str:
    return orjson.dumps([MessageType.CallResult, unique_id, payload]).decode()


def call_error(version: Version, rejected: CallRejectedError) -> str:
    code = _CODES[version][rejected.problem]
    frame = [MessageType.CallError, rejected.unique_id, code, rejected.description, {}]
    return orjson.dumps(frame).decode()


def _describe(error: ValidationError) -> tuple[Problem, str]:
    """The problem and a description naming the field and the rule, never the value."""
    path = ".".join(str(part) for part in error.absolute_path) or "payload"
    rule, limit = error.validator, error.validator_value
    if rule == "required":
        missing = (
            [key for key in limit if key not in error.instance] if isinstance(limit, list) else []
        )
        name = f"{path}.{missing[0]}" if missing and path != "payload" else (missing or [path])[0]
        return Problem.MISSING_FIELD, f"{name} is required"
    if rule == "type":
        return Problem.BAD_TYPE, f"{path} must be of type {limit}"
    if rule == "maxLength":
        return Problem.BAD_TYPE, f"{path} is longer than {limit} characters"
    if rule == "additionalProperties":
        return Problem.BAD_FORMAT, f"{path}: {_clip(error.message, 120)}"
    if rule == "enum":
        allowed = ", ".join(str(v) for v in limit) if isinstance(limit, list) else str(limit)
        return Problem.BAD_VALUE, f"{path} must be one of {_clip(allowed, 160)}"
    if rule in ("minimum", "maximum", "minItems", "maxItems", "minLength"):
        return Problem.BAD_VALUE, f"{path} violates {rule} {limit}"
    return Problem.BAD_FORMAT, f"{path} violates {rule}"


def _clip(text: str, limit: int = 40) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."
