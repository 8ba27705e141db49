"""The event decoder: what CONTRACTS.md section 1 accepts, and a precise reason for the rest."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chargewatch.errors import EventError
from chargewatch.events import (
    MAX_LINE_BYTES,
    AuthorizationStatus,
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    EventDecoder,
    Reading,
    SessionStart,
    SessionStop,
    StationEvent,
    StationEventKind,
    StatusChange,
    format_ts,
    iter_jsonl,
    iter_jsonl_blocks,
    iter_jsonl_chunks,
    parse_ts,
)

decoder = EventDecoder(lambda tag: f"pseudo({tag})")
TS = "2026-11-24T08:15:30.250Z"
TS_NS = 1_795_508_130_250_000_000


def reading(**extra: Any) -> dict[str, Any]:
    return {"type": "reading", "ts": TS, "station_id": "ST-1", "connector_id": 1, **extra}


def test_reading_with_numeric_strings_as_ocpp_1_6_sends_them() -> None:
    event = decoder.decode(reading(energy_wh="1500.5", power_w="7200", soc_pct="42"))
    assert event == Reading(TS_NS, "ST-1", 1, None, 1500.5, 7200.0, None, None, None, 42.0, None)


def test_null_means_not_measured_and_unknown_keys_are_ignored() -> None:
    event = decoder.decode(reading(session_id="s1", power_w=None, firmware="1.2"))
    assert event == Reading(TS_NS, "ST-1", 1, "s1")


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        ("2026-11-24T08:15:30.250Z", TS_NS),
        ("2026-11-24T09:15:30.250+01:00", TS_NS),
        ("2026-11-24T08:15:30.250123456Z", TS_NS + 123_000),  # kept to the microsecond
        ("2026-11-24 08:15:30.250Z", TS_NS),  # RFC 3339 allows a space for the T
        ("2026-11-24t08:15:30.250z", TS_NS),  # ... and a lower-case t and z (section 5.6)
        ("2026-11-24T08:15:30.250z", TS_NS),
        ("1970-01-01T00:00:05Z", 5_000_000_000),  # a charger booted with a 1970 clock is data
    ],
)
def test_timestamps_are_utc_nanoseconds(ts: str, expected_ns: int) -> None:
    assert parse_ts(ts) == expected_ns


def test_format_ts_round_trips_milliseconds() -> None:
    assert format_ts(TS_NS) == TS
    assert parse_ts(format_ts(TS_NS)) == TS_NS


def test_every_type_decodes_and_id_tags_are_pseudonymized_at_once() -> None:
    base = {"ts": TS, "station_id": "ST-1", "connector_id": 2}
    start = decoder.decode(
        {
            **base,
            "type": "session_start",
            "session_id": "s1",
            "id_tag": "04AB",
            "meter_start_wh": 10,
        }
    )
    stop = decoder.decode({**base, "type": "session_stop", "session_id": "s1", "reason": "Local"})
    status = decoder.decode(
        {**base, "type": "status", "status": "Faulted", "error_code": "GroundFailure"}
    )
    auth = decoder.decode(
        {"type": "authorize", "ts": TS, "station_id": "ST-1", "id_tag": "04AB", "result": "Blocked"}
    )
    assert start == SessionStart(TS_NS, "ST-1", 2, "s1", "pseudo(04AB)", 10.0)
    assert stop == SessionStop(TS_NS, "ST-1", 2, "s1", None, "Local")
    assert status == StatusChange(
        TS_NS, "ST-1", 2, ChargePointStatus.FAULTED, ChargePointErrorCode.GROUND_FAILURE
    )
    assert auth == Authorize(TS_NS, "ST-1", "pseudo(04AB)", AuthorizationStatus.BLOCKED)


def test_status_error_code_defaults_to_no_error_and_info_loses_control_characters() -> None:
    event = decoder.decode(
        {
            "type": "status",
            "ts": TS,
            "station_id": "S",
            "connector_id": 0,
            "status": "Available",
            "info": "line one\nline two",
        }
    )
    assert isinstance(event, StatusChange)
    assert event.error_code is ChargePointErrorCode.NO_ERROR
    assert event.info == "line one line two"


def station(**extra: Any) -> dict[str, Any]:
    return {"type": "station", "ts": TS, "station_id": "ST-1", "event": "heartbeat", **extra}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (station(), StationEvent(TS_NS, "ST-1", StationEventKind.HEARTBEAT)),
        (
            station(
                event="boot",
                vendor="ABB",
                model="Terra 184",
                firmware="1.8.21",
                ocpp_version="ocpp1.6",
                heartbeat_interval_s="300",  # numeric strings, as everywhere
                connector_id=1,  # unknown here: ignored
            ),
            StationEvent(
                TS_NS,
                "ST-1",
                StationEventKind.BOOT,
                vendor="ABB",
                model="Terra 184",
                firmware="1.8.21",
                ocpp_version="ocpp1.6",
                heartbeat_interval_s=300.0,
            ),
        ),
        (
            station(event="disconnect", reason="closed_by_station\n(1000)"),
            StationEvent(
                TS_NS, "ST-1", StationEventKind.DISCONNECT, reason="closed_by_station (1000)"
            ),
        ),
        (
            station(event="connect", heartbeat_interval_s=86_400, vendor=None),
            StationEvent(TS_NS, "ST-1", StationEventKind.CONNECT, heartbeat_interval_s=86_400.0),
        ),
    ],
    ids=["bare heartbeat", "boot", "disconnect, reason cleaned", "connect, a day's interval"],
)
def test_station_events_decode(obj: dict[str, Any], expected: StationEvent) -> None:
    event = decoder.decode(obj)
    assert event == expected
    assert event.type == "station"


def test_a_station_event_checked_once_is_checked_again_when_any_value_or_type_differs() -> None:
    # EventDecoder keeps what a station said (checked) by its values and their types: the same
    # values again decode alike at a new stamp; True and 1 compare equal but only 1 is a number
    one = EventDecoder(str)
    first = one.decode(station(heartbeat_interval_s=1))
    later = one.decode(station(heartbeat_interval_s=1, ts="2026-11-24T08:20:30Z"))
    assert first == StationEvent(TS_NS, "ST-1", StationEventKind.HEARTBEAT, heartbeat_interval_s=1)
    assert later == first._replace(ts_ns=parse_ts("2026-11-24T08:20:30Z"))
    with pytest.raises(EventError) as caught:
        one.decode(station(heartbeat_interval_s=True))
    assert (caught.value.field, caught.value.reason) == (
        "heartbeat_interval_s",
        "must be a number, got a boolean",
    )
    assert one.decode(station(heartbeat_interval_s="1")) == first  # a numeric string, as 1
    with pytest.raises(EventError, match="RFC 3339"):  # the stamp is checked every time
        one.decode(station(heartbeat_interval_s=1, ts="yesterday"))
    with pytest.raises(EventError) as caught:  # unhashable values are checked, not kept
        one.decode(station(vendor=["ABB"]))
    assert caught.value.field == "vendor"


INVALID: list[tuple[str, object, str | None, str]] = [
    # (case, the JSON value or raw line, field named, words in the reason)
    ("not json", b'{"type": "reading",', None, "not valid JSON"),
    ("not an object", b"[1, 2]", None, "must be a JSON object"),
    ("no type", {"ts": TS}, "type", "is required"),
    ("unknown type", {"type": "meter"}, "type", "is not one of"),
    ("no ts", {**reading(power_w=1), "ts": None}, "ts", "RFC 3339"),
    ("ts not parseable", reading(power_w=1, ts="yesterday"), "ts", "not an RFC 3339"),
    ("ts without zone", reading(power_w=1, ts="2026-11-24T08:15:30"), "ts", "no zone"),
    ("ts a number", reading(power_w=1, ts=1700000000), "ts", "got a number"),
    ("ts beyond 2262", reading(power_w=1, ts="2300-01-01T00:00:00Z"), "ts", "1677..2262"),
    ("no station", {**reading(power_w=1), "station_id": None}, "station_id", "is required"),
    ("station not a string", reading(power_w=1, station_id=5), "station_id", "must be a string"),
    ("empty station", reading(power_w=1, station_id=" "), "station_id", "must not be empty"),
    ("station with newline", reading(power_w=1, station_id="a\nb"), "station_id", "control"),
    ("no connector", {**reading(power_w=1), "connector_id": None}, "connector_id", "is required"),
    ("negative connector", reading(power_w=1, connector_id=-1), "connector_id", "within 0.."),
    ("fractional connector", reading(power_w=1, connector_id=1.5), "connector_id", "integer"),
    ("boolean connector", reading(power_w=1, connector_id=True), "connector_id", "boolean"),
    ("negative voltage", reading(voltage_v=-230), "voltage_v", ">= 0"),
    ("soc above 100", reading(soc_pct=140), "soc_pct", "<= 100"),
    ("soc below 0", reading(soc_pct="-1"), "soc_pct", ">= 0"),
    ("negative register", reading(energy_wh=-5), "energy_wh", ">= 0"),
    ("negative offered power", reading(power_offered_w=-1), "power_offered_w", ">= 0"),
    ("below absolute zero", reading(temperature_c=-300), "temperature_c", ">= -273.15"),
    ("power not a number", reading(power_w="fast"), "power_w", "is not a number"),
    ("power NaN string", reading(power_w="NaN"), "power_w", "finite"),
    ("power a list", reading(power_w=[1]), "power_w", "got an array"),
    ("empty reading", reading(), None, "no measured value"),
    (
        "start without id_tag",
        {
            "type": "session_start",
            "ts": TS,
            "station_id": "S",
            "connector_id": 1,
            "session_id": "s",
        },
        "id_tag",
        "is required",
    ),
    (
        "stop without session",
        {"type": "session_stop", "ts": TS, "station_id": "S", "connector_id": 1},
        "session_id",
        "is required",
    ),
    (
        "unknown status",
        {"type": "status", "ts": TS, "station_id": "S", "connector_id": 1, "status": "Broken"},
        "status",
        "is not one of",
    ),
    (
        "unknown error code",
        {
            "type": "status",
            "ts": TS,
            "station_id": "S",
            "connector_id": 1,
            "status": "Faulted",
            "error_code": "Smoke",
        },
        "error_code",
        "is not one of",
    ),
    (
        "unknown auth result",
        {"type": "authorize", "ts": TS, "station_id": "S", "id_tag": "x", "result": "Maybe"},
        "result",
        "is not one of",
    ),
    ("station without event", {**station(), "event": None}, "event", "is required"),
    ("unknown station event", station(event="reboot"), "event", "is not one of"),
    ("station event not a string", station(event=1), "event", "must be a string"),
    ("station without id", {**station(), "station_id": None}, "station_id", "is required"),
    ("station without ts", {**station(), "ts": None}, "ts", "RFC 3339"),
    ("negative interval", station(heartbeat_interval_s=-30), "heartbeat_interval_s", ">= 1"),
    ("zero interval", station(heartbeat_interval_s=0), "heartbeat_interval_s", ">= 1"),
    ("absurd interval", station(heartbeat_interval_s=3e6), "heartbeat_interval_s", "<= 86400"),
    ("interval not a number", station(heartbeat_interval_s="5m"), "heartbeat_interval_s", "not a"),
    ("interval a boolean", station(heartbeat_interval_s=True), "heartbeat_interval_s", "number"),
    ("over-long vendor", station(vendor="V" * 129), "vendor", "longer than 128"),
    ("over-long model", station(model="M" * 129), "model", "longer than 128"),
    ("over-long firmware", station(firmware="1" * 129), "firmware", "longer than 128"),
    ("over-long version", station(ocpp_version="o" * 129), "ocpp_version", "longer than 128"),
    ("vendor not a string", station(vendor=7), "vendor", "must be a string"),
    ("empty firmware", station(firmware=" "), "firmware", "must not be empty"),
    ("model with newline", station(model="a\nb"), "model", "control"),
    ("over-long reason", station(reason="r" * 1025), "reason", "longer than 1024"),
    ("reason not a string", station(reason=["x"]), "reason", "must be a string"),
]


@pytest.mark.parametrize(("case", "value", "field", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_events_are_rejected_naming_the_field_and_reason(
    case: str, value: object, field: str | None, words: str
) -> None:
    line = value if isinstance(value, bytes) else orjson.dumps(value)
    with pytest.raises(EventError) as caught:
        decoder.decode_line(line)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_iter_jsonl_numbers_lines_skips_blank_ones_and_cuts_over_long_ones() -> None:
    long_line = b'{"x": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n'
    stream = io.BytesIO(b'{"a": 1}\n\n   \n' + long_line + b'{"b": 2}')
    lines = list(iter_jsonl(stream))
    assert [number for number, _ in lines] == [1, 4, 5]
    assert len(lines[1][1]) == MAX_LINE_BYTES + 1
    assert lines[2][1] == b'{"b": 2}'
    with pytest.raises(EventError, match="longer than"):
        decoder.decode_line(lines[1][1])


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from([b"\n", b"  \n", b"\r\n", b"{}", b'{"a": 1}', b"x" * 9, b" ", b"\t"]),
        max_size=40,
    ),
    block_bytes=st.integers(1, 17),
    max_lines=st.integers(1, 5),
)
# an over-long line that is blank as far as it is read is skipped, as iter_jsonl skips it
@example(pieces=[b" "] * 7 + [b"  \n"], block_bytes=1, max_lines=1)
def test_iter_jsonl_chunks_gives_the_lines_of_iter_jsonl(
    pieces: list[bytes], block_bytes: int, max_lines: int
) -> None:
    """Same numbers, same lines (without the newline), same cut of over-long lines (here
    over 8 bytes), whatever the block size."""
    data = b"".join(pieces)
    expected = [
        (number, line[:-1] if line.endswith(b"\n") else line)
        for number, line in iter_jsonl(io.BytesIO(data), max_line_bytes=8)
    ]
    chunks = list(
        iter_jsonl_chunks(io.BytesIO(data), max_lines, block_bytes=block_bytes, max_line_bytes=8)
    )
    assert [pair for chunk in chunks for pair in chunk] == expected
    assert all(0 < len(chunk) <= max_lines for chunk in chunks)


def test_iter_jsonl_blocks_numbers_each_line_beside_it() -> None:
    """The two lists of a block: blank lines numbered but not given out, an over-long line cut
    short, whichever block the lines fall in."""
    data = b'{"a": 1}\n\n  \n{"b": 2}\r\n' + b"x" * 20 + b'\n{"c": 3}'
    blocks = list(iter_jsonl_blocks(io.BytesIO(data), 2, block_bytes=5, max_line_bytes=8))
    assert blocks == [
        ([1, 4], [b'{"a": 1}', b'{"b": 2}\r']),
        ([5, 6], [b"x" * 9, b'{"c": 3}']),
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = [
    "type",
    "ts",
    "station_id",
    "connector_id",
    "session_id",
    "energy_wh",
    "power_w",
    "soc_pct",
    "voltage_v",
    "id_tag",
    "status",
    "error_code",
    "result",
    "info",
    "reason",
    "event",
    "vendor",
    "firmware",
    "heartbeat_interval_s",
]
events_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["reading", "session_start", "session_stop", "status", "authorize", "station", "x"]
        )
    },
    optional={key: json_values | st.just(TS) | st.just("7") for key in KEYS[1:]},
)


@settings(max_examples=400, deadline=None)
@given(events_like)
def test_any_object_either_decodes_or_raises_event_error(obj: dict[str, Any]) -> None:
    try:
        decoder.decode(obj)
    except EventError as exc:
        assert exc.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_event_error(raw: bytes) -> None:
    try:
        decoder.decode_line(raw)
    except EventError as exc:
        assert exc.reason
