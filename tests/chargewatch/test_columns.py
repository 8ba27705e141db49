"""The columnar path takes every way a station may write a valid reading, and reads it exactly
as the per-event decoder does: numbers as JSON numbers or numeric strings, connector ids as
either, RFC 3339 stamps with any zone offset and any fraction length, ids of any style, extra
keys, nulls, any key order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from chargewatch.columns import (
    judge_readings,
    reading_frame_from_block,
    reading_frame_from_ndjson,
    reading_frame_from_objects,
)
from chargewatch.errors import EventError
from chargewatch.events import EventDecoder, Reading
from chargewatch.schema import READING_FIELDS

decoder = EventDecoder(lambda tag: f"p-{len(tag)}")
_START = datetime(1995, 1, 1, tzinfo=UTC)


@st.composite
def stamps(draw: st.DrawFn) -> str:
    """An RFC 3339 stamp as stations write them: any offset, 0 to 9 fraction digits, Z."""
    moment = _START + timedelta(microseconds=draw(st.integers(0, 40 * 365 * 86_400 * 10**6)))
    offset_min = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 9))
    if digits:
        fraction = f"{local.microsecond:06d}" + draw(st.text("0123456789", min_size=3, max_size=3))
        text += "." + fraction[:digits]
    if offset_min == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if offset_min < 0 or (offset_min == 0 and draw(st.booleans())) else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e12)
# A value as JSON or as OCPP's text; some texts only the per-event way reads ("1_0", " 5").
values = st.one_of(
    st.none(),
    finite,
    st.integers(-(2**63), 2**64 - 1),  # orjson writes no more
    st.integers(-(2**70), 2**70).map(str),
    finite.map(repr),
    st.integers(-(10**6), 10**12).map(str),
    st.sampled_from(["1e5", "1E+05", ".5", "-.25", "5.", "0", "-0", "1_0", " 5", "nan", "inf"]),
    st.sampled_from(["abc", "", "1e400", True, [1], {"v": 1}]),
)
identifiers = st.one_of(
    st.uuids().map(str),
    st.integers(0, 2**63).map(str),
    st.from_regex(r"[A-Z]{2}-[A-Z]{2}-[0-9]{4}-[12]-[0-9]{5}", fullmatch=True),
    st.sampled_from(["ST 1", "a,b", 'q"t', "é", "", " "]),
)
connectors = st.one_of(st.integers(0, 1001), st.integers(0, 12).map(str), st.just(1.0))
extras = st.dictionaries(
    st.sampled_from(["seq", "context", "sampled", "note", "unit"]),
    st.one_of(st.integers(0, 2**32), st.text(max_size=8), st.lists(st.booleans(), max_size=2)),
    max_size=3,
)


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "reading",
        "ts": draw(stamps()),
        "station_id": draw(st.one_of(identifiers, st.just("CW-AC-0001"))),
        "connector_id": draw(connectors),
    }
    if draw(st.booleans()):
        event["session_id"] = draw(st.one_of(st.none(), identifiers))
    for key in READING_FIELDS:
        if draw(st.booleans()):
            event[key] = draw(values)
    event.update(draw(extras))
    keys = draw(st.permutations(list(event)))
    return {key: event[key] for key in keys}


def per_event(event: dict[str, Any]) -> Reading | None:
    try:
        decoded = decoder.decode(event)
    except EventError:
        return None
    assert isinstance(decoded, Reading)
    return decoded


def columnar(frame: pl.DataFrame) -> list[Reading | None]:
    """Each row as the reading the columnar path takes, ``None`` where it leaves the row to
    the per-event way."""
    judged = judge_readings(frame)
    out: list[Reading | None] = []
    for row in judged.iter_rows(named=True):
        if not row["ok"]:
            out.append(None)
            continue
        numbers = [row[key] for key in READING_FIELDS]
        out.append(
            Reading(
                row["ts_ns"], row["station_id"], row["connector_id"], row["session_id"], *numbers
            )
        )
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(readings(), min_size=1, max_size=20))
def test_the_columnar_path_reads_every_row_it_takes_as_the_per_event_path(
    events: list[dict[str, Any]],
) -> None:
    raws = [orjson.dumps(event) for event in events]
    frame = reading_frame_from_ndjson(raws)
    assert frame is not None
    expected = [per_event(event) for event in events]
    for fast in (columnar(frame), columnar(reading_frame_from_objects(events))):
        for got, want, event in zip(fast, expected, events, strict=True):
            if got is not None:  # taken: exactly what the per-event path makes of it
                assert want is not None, event
                assert got == want, event


@st.composite
def common_readings(draw: st.DrawFn) -> dict[str, Any]:
    """Valid readings in the formats real stations use: all must take the columnar path."""
    as_text = draw(st.booleans())
    event: dict[str, Any] = {
        "type": "reading",
        "ts": draw(stamps()),
        "station_id": draw(st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)),
        "connector_id": draw(st.integers(0, 1000).map(str if draw(st.booleans()) else int)),
        "session_id": draw(st.one_of(st.none(), st.uuids().map(str), st.integers(0).map(str))),
        "energy_wh": draw(st.integers(0, 10**9)),
        "power_w": draw(st.floats(0, 350_000).map(lambda x: round(x, 1))),
        "soc_pct": draw(st.one_of(st.none(), st.integers(0, 100))),
        "temperature_c": draw(st.floats(-40, 80)),
    }
    if as_text:
        for key in READING_FIELDS:
            if event.get(key) is not None:
                event[key] = str(event[key])
    event.update(draw(extras))
    keys = draw(st.permutations(list(event)))
    return {key: event[key] for key in keys}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(common_readings(), min_size=1, max_size=20))
def test_every_common_format_takes_the_columnar_path(events: list[dict[str, Any]]) -> None:
    raws = [orjson.dumps(event) for event in events]
    frame = reading_frame_from_ndjson(raws)
    assert frame is not None
    for fast in (columnar(frame), columnar(reading_frame_from_objects(events))):
        for got, event in zip(fast, events, strict=True):
            assert got is not None, orjson.dumps(event)
            assert got == per_event(event), event


def test_a_line_that_is_not_an_object_costs_only_that_line() -> None:
    good = (
        b'{"type":"reading","ts":"2026-11-24T08:15:30+05:30","station_id":"S",'
        b'"connector_id":"1","power_w":"7.5"}'
    )
    raws = [good, b"not json", b"[1, 2]", b'"text"', good]
    frame = reading_frame_from_ndjson(raws)
    assert frame is not None
    assert [row is not None for row in columnar(frame)] == [True, False, False, False, True]


def test_a_line_that_is_not_utf8_costs_only_that_line() -> None:
    good = (
        b'{"type":"reading","ts":"2026-11-24T08:15:30Z","station_id":"S",'
        b'"connector_id":1,"power_w":7.5}'
    )
    raws = [good, b"\x80", b'{"type":"reading","station_id":"\xff"}', good]
    frame = reading_frame_from_ndjson(raws)
    assert frame is not None
    assert [row is not None for row in columnar(frame)] == [True, False, False, True]


def test_an_escaped_key_goes_the_per_event_way_and_an_escaped_value_does_not() -> None:
    head = b'{"type":"reading","station_id":"S","connector_id":1,"power_w":5,'
    hidden = head + b'"ts":"2026-11-24T08:15:30Z","\\u0074s":7}'  # a second "ts", escaped
    noted = head + b'"ts":"2026-11-24T08:15:30Z","note":"Lades\\u00e4ule \\"S\\u00fcd\\""}'
    frame = reading_frame_from_ndjson([hidden, noted])
    assert frame is not None
    assert [row is not None for row in columnar(frame)] == [False, True]


def test_lines_apart_and_lines_in_a_block_are_judged_alike() -> None:
    """``reading_frame_from_ndjson`` takes the lines' texts from the lines themselves,
    ``reading_frame_from_block`` cuts them from the block: the same frame either way, for
    lines that are odd in each way the texts are checked for."""
    head = b'{"type":"reading","ts":"2026-11-24T08:15:30Z","connector_id":1,'
    raws = [
        head + b'"station_id":"S","power_w":7.5,"soc_pct":null}',
        head + b'"station_id":"S","power_w":null,"soc_pct" :\tnull,"soc_pct":null}',
        head + b'"station_id":"S","power_w":1,"power_w":null}',
        head + b'"station_id":12,"power_w":1}',
        head + b'"station_id":"12","session_id":"7","power_w":1}',
        head + b'"station_id":"S","\\u0074s":7}',
        b"\x80",
        b"not json",
        head + b'"station_id":"S","power_w":"7.5","x":{"power_w":null}}',
    ]
    apart = reading_frame_from_ndjson(raws)
    block = reading_frame_from_block(b"\n".join(raws), len(raws))
    assert apart is not None and block is not None
    assert_frame_equal(judge_readings(apart), judge_readings(block))
    # repeated keys (a nested one too: harmless, but counted), a number for an id, an escaped
    # key, not UTF-8, not JSON
    assert apart["odd"].to_list() == [False, False, True, True, False, True, True, True, True]


def test_an_identifier_that_looks_like_a_number_is_odd_only_where_it_was_one() -> None:
    """A session id like OCPP 1.6's transaction ids ("35219456999643762") is read as text by
    polars whether it was a string or a number; only the number goes the per-event way (where
    it is rejected), however the line spaces its keys."""
    head = b'{"type":"reading","ts":"2026-11-24T08:15:30Z","station_id":"S","connector_id":1,'
    cases = {
        b'"session_id":"35219456999643762","power_w":1}': False,
        b'"session_id" : "35219456999643762","power_w":1}': False,
        b'"session_id":\t"7","power_w":1}': False,
        b'"session_id":35219456999643762,"power_w":1}': True,
        b'"session_id" :7,"power_w":1}': True,
        b'"session_id":true,"power_w":1}': True,
        b'"session_id":[7],"power_w":1}': True,
        b'"session_id":"7","x":{"session_id":7},"power_w":1}': True,  # a nested key: counted
        b'"session_id":"-7","note":"\\"session_id\\":7","power_w":1}': False,  # in a value
    }
    raws = [head + tail for tail in cases]
    frame = reading_frame_from_ndjson(raws)
    assert frame is not None
    assert frame["odd"].to_list() == list(cases.values())
    assert [row is None for row in columnar(frame)] == list(cases.values())
