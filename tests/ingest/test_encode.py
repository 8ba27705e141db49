"""The columnar path for readings agrees with the per-event path, event for event."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargewatch.errors import EventError
from chargewatch.events import EventDecoder
from chargewatch.schema import RX_FIELD, RX_MEASUREMENT, LineFormatter
from ingest.encode import ChunkEncoder, Rejection, refused_field

decoder = EventDecoder(lambda tag: f"p-{len(tag)}")
TS = "2026-11-24T08:15:30.250Z"


def reference(numbered: list[tuple[int, bytes]]) -> tuple[list[str], list[Rejection]]:
    """What the per-event path makes of each line: its line protocol or its rejection."""
    formatter = LineFormatter()
    lines, rejections = [], []
    for position, raw in numbered:
        try:
            lines.append(formatter.format(decoder.decode_line(raw)))
        except EventError as exc:
            rejections.append(Rejection(position, exc.field, exc.reason))
        except ValueError as exc:
            field = refused_field(orjson.loads(raw), str(exc))
            rejections.append(Rejection(position, field, str(exc)))
    return lines, rejections


def parse_point(line: str) -> tuple[str, dict[str, object], int]:
    """(measurement and tags, fields with floats as numbers, timestamp) of one line."""
    # Quotes delimit strings only among fields; in tags a quote is an ordinary character.
    head, rest = split_unescaped(line, " ", 1, quotes=False)
    fields_text, ts = rest.rsplit(" ", 1)
    fields: dict[str, object] = {}
    for item in split_unescaped(fields_text, ",", -1):
        key, value = item.split("=", 1)
        if key == RX_FIELD:
            continue  # the receive time: the wall clock's per event, the stream's per chunk
        fields[key] = value if value.startswith('"') else float(value)
    return head, fields, int(ts)


def stored(lines: list[str]) -> list[str]:
    """The lines of the events themselves, without their receive-time index points."""
    return [line for line in lines if not line.startswith(RX_MEASUREMENT)]


def split_unescaped(text: str, separator: str, limit: int, *, quotes: bool = True) -> list[str]:
    parts: list[str] = []
    current, quoted, escaped = "", False, False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            current, escaped = current + char, True
        elif char == '"' and quotes:
            current, quoted = current + char, not quoted
        elif char == separator and not quoted and (limit < 0 or len(parts) < limit):
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def assert_agree(numbered: list[tuple[int, bytes]]) -> None:
    expected_lines, expected_rejections = reference(numbered)
    chunk = ChunkEncoder(decoder).encode_lines(numbered)
    assert sorted(map(repr, map(parse_point, stored(chunk.lines)))) == sorted(
        map(repr, map(parse_point, expected_lines))
    )
    assert chunk.rejections == expected_rejections
    assert sum(chunk.accepted_by_type.values()) == len(expected_lines)
    objects = [(position, orjson.loads(raw)) for position, raw in numbered if is_json(raw)]
    from_objects = ChunkEncoder(decoder).encode_objects(objects)
    assert sorted(map(repr, map(parse_point, stored(from_objects.lines)))) == sorted(
        map(repr, map(parse_point, stored(chunk.lines)))
    )


def is_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e7),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 100, 100.0, 101, -0.0, 1e300, "7000", "12.5", "abc", True, [1]]),
)
identifiers = st.one_of(
    st.sampled_from(["CW-AC-0001", "ST 1", "a,b", "a=b", 'q"t', "back\\", "tab\tx", "", " "]),
    st.text(min_size=1, max_size=12),
    st.integers(0, 9),
)
timestamps = st.sampled_from(
    [
        TS,
        "2026-11-24T09:15:30+01:00",
        "2026-11-24T08:15:30.123456789Z",
        "2026-11-24 08:15:30Z",
        "2026-11-24T08:15:30",
        "1970-01-01T00:00:05Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T08:15:60Z",
        "0999-01-01T00:00:00Z",
        "yesterday",
        1_700_000_000,
    ]
)
readings = st.fixed_dictionaries(
    {"type": st.just("reading")},
    optional={
        "ts": timestamps,
        "station_id": identifiers,
        "connector_id": st.one_of(st.integers(-2, 3), st.sampled_from([1.0, 1.5, "2", True])),
        "session_id": st.one_of(st.none(), identifiers),
        "energy_wh": numbers,
        "power_w": numbers,
        "power_offered_w": numbers,
        "current_a": numbers,
        "voltage_v": numbers,
        "soc_pct": numbers,
        "temperature_c": numbers,
    },
)
others = st.sampled_from(
    [
        {"type": "status", "ts": TS, "station_id": "S", "connector_id": 1, "status": "Faulted"},
        {"type": "authorize", "ts": TS, "station_id": "S", "id_tag": "04AB", "result": "Accepted"},
        {"type": "session_start", "ts": TS, "station_id": "S", "connector_id": 1},
        {"type": "mystery"},
        [1, 2],
    ]
)
plain_reading = st.fixed_dictionaries(
    {
        "type": st.just("reading"),
        "ts": st.just(TS),
        "station_id": st.sampled_from(["CW-AC-0001", "CW-DC-0002"]),
        "connector_id": st.integers(1, 2),
        "power_w": st.floats(0, 350_000),
        "energy_wh": st.integers(0, 10**9),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(readings, others, plain_reading), min_size=1, max_size=30))
def test_columnar_and_per_event_paths_agree(events: list[Any]) -> None:
    numbered = [(i + 1, orjson.dumps(event)) for i, event in enumerate(events)]
    assert_agree(numbered)


def test_a_bad_json_line_in_a_chunk_costs_only_that_line() -> None:
    good = {"type": "reading", "ts": TS, "station_id": "S1", "connector_id": 1, "power_w": 5}
    numbered = [
        (1, orjson.dumps(good)),
        (2, b'{"type": "reading", "power_w": '),
        (3, orjson.dumps({**good, "ts": "2026-11-24T08:15:31Z"})),
        (
            4,
            b'{"type":"reading","ts":"' + TS.encode() + b'","station_id":"S1","connector_id":1,'
            b'"power_w":"7000"}',
        ),
    ]
    chunk = ChunkEncoder(decoder).encode_lines(numbered)
    assert [r.position for r in chunk.rejections] == [2]
    assert chunk.rejections[0].reason.startswith("not valid JSON")
    assert len(chunk.lines) == 3
    assert_agree(numbered)


def test_a_number_where_a_string_belongs_is_rejected_not_coerced() -> None:
    numbered = [
        (
            7,
            b'{"type":"reading","ts":"' + TS.encode() + b'","station_id":5,"connector_id":1,'
            b'"power_w":1}',
        ),
        (
            8,
            b'{"type":"reading","ts":"' + TS.encode() + b'","station_id":"S","connector_id":1,'
            b'"session_id":12,"power_w":1}',
        ),
    ]
    chunk = ChunkEncoder(decoder).encode_lines(numbered)
    assert chunk.lines == []
    assert [(r.position, r.field) for r in chunk.rejections] == [
        (7, "station_id"),
        (8, "session_id"),
    ]


def test_a_value_line_protocol_cannot_carry_is_rejected_by_its_field() -> None:
    # a tag value ending in a backslash would escape the separator after it
    numbered = [
        (
            3,
            orjson.dumps(
                {"type": "reading", "ts": TS, "station_id": "CP\\", "connector_id": 1, "power_w": 5}
            ),
        ),
        (
            4,
            orjson.dumps(
                {
                    "type": "status",
                    "ts": TS,
                    "station_id": "CP\\",
                    "connector_id": 1,
                    "status": "Available",
                }
            ),
        ),
    ]
    chunk = ChunkEncoder(decoder).encode_lines(numbered)
    assert chunk.lines == []
    assert [(r.position, r.field) for r in chunk.rejections] == [
        (3, "station_id"),
        (4, "station_id"),
    ]
    assert all("ends with a backslash" in r.reason for r in chunk.rejections)
    assert_agree(numbered)
