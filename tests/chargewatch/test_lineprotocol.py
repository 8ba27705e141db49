"""Line protocol against the real InfluxDB.

Whatever ``format_point`` accepts is written and read back identical; whatever it refuses, InfluxDB
would have rejected or mangled, which the table of refusals proves by sending the naive escaping.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chargewatch.errors import InfluxRequestError
from chargewatch.influx import (
    InfluxClient,
    LocalInfluxd,
    format_point,
    quote_ident,
    quote_literal,
)
from chargewatch.influx.lineprotocol import FieldValue

TS_NS = 1_700_000_000_123_456_789

# Characters with a meaning somewhere in line protocol or InfluxQL, drawn often on purpose.
SPECIALS = [" ", ",", "=", '"', "'", "\\", "#", "\t"]
_name_chars = st.one_of(
    st.sampled_from(SPECIALS),
    st.characters(codec="utf-8", exclude_characters="\n\r\0"),
)
names = st.text(_name_chars, min_size=1, max_size=8)
string_values = st.text(
    st.one_of(st.sampled_from([*SPECIALS, "\n", "\r", "\0"]), st.characters(codec="utf-8")),
    max_size=16,
)
field_values: st.SearchStrategy[FieldValue] = st.one_of(
    string_values,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
)

Point = tuple[str, dict[str, str], dict[str, FieldValue]]


@st.composite
def points(draw: st.DrawFn) -> Point:
    measurement = draw(names)
    tag_keys = draw(st.lists(names, max_size=3, unique=True))
    # A tag and a field of the same name are legal but come back renamed ("k_1") by SELECT *.
    field_keys = draw(
        st.lists(names.filter(lambda k: k not in tag_keys), min_size=1, max_size=3, unique=True)
    )
    tags = {key: draw(names) for key in tag_keys}
    fields = {key: draw(field_values) for key in field_keys}
    return measurement, tags, fields


@pytest.fixture(scope="module")
def lp_client(influxd: LocalInfluxd) -> Iterator[InfluxClient]:
    """One client for the module; each example gets the database dropped and created afresh."""
    with InfluxClient(url=influxd.url, database="test_lineprotocol") as client:
        yield client
        client.query(f"DROP DATABASE {quote_ident(client.database)}")


def _fresh(client: InfluxClient) -> None:
    name = quote_ident(client.database)
    client.query(f"DROP DATABASE {name}; CREATE DATABASE {name}")


def _same(got: Any, want: FieldValue) -> bool:
    if isinstance(want, bool):
        return bool(got) is want
    if isinstance(want, int | float):
        # Numbers come back as float64 (InfluxDB's JSON does not tell integers from floats).
        return float(got) == float(want)
    return bool(got == want)


def _assert_round_trip(
    client: InfluxClient,
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
) -> None:
    _fresh(client)
    client.write([format_point(measurement, tags, fields, TS_NS)])

    (series,) = client.query(f"SELECT * FROM {quote_ident(measurement)}")
    assert series.name == measurement
    assert len(series) == 1
    assert set(series.columns) == {"time", *tags, *fields}
    assert series.columns["time"][0] == TS_NS
    for key, tag_value in tags.items():
        assert series.columns[key][0] == tag_value, key
    for key, field_value in fields.items():
        got = series.columns[key][0]
        assert _same(got, field_value), (key, got, field_value)

    # Tag values also work as InfluxQL string literals, keys as quoted identifiers.
    for key, tag_value in list(tags.items())[:1]:
        where = f"{quote_ident(key)} = {quote_literal(tag_value)}"
        (hit,) = client.query(f"SELECT * FROM {quote_ident(measurement)} WHERE {where}")
        assert len(hit) == 1
    (measurements,) = client.query("SHOW MEASUREMENTS")
    assert list(measurements.columns["name"]) == [measurement]


def _documented_hazard(point: Point) -> bool:
    """Whether a point holds one of the things the module docstring says cannot be carried."""
    measurement, tags, fields = point
    texts = [measurement, *tags, *tags.values(), *fields]
    return (
        any("\\" in text for text in texts)
        or measurement.startswith(("#", "\t"))
        or any(key.startswith("\t") for key in fields)
        or "time" in tags
        or "time" in fields
    )


@settings(max_examples=150, deadline=None)
@given(point=points())
@example(point=("m", {"t": "a\\,b"}, {"f": "line1\nline2"}))
@example(point=(" lead", {" k ": " v "}, {"a\\b": "ends with \\", " f": 'say "hi"'}))
@example(point=("é☃", {"k=": "=v,"}, {"x,y": "\r\n", "n": 2**63 - 1, "b": False}))
def test_what_format_point_accepts_reads_back_identical(
    lp_client: InfluxClient, point: Point
) -> None:
    measurement, tags, fields = point
    try:
        format_point(measurement, tags, fields, TS_NS)
    except ValueError:
        assert _documented_hazard(point), "refused without a documented reason"
        return
    _assert_round_trip(lp_client, measurement, tags, fields)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields"),
    [
        pytest.param("m", {"t": "a\\,b"}, {"f": 1.0}, id="tag-value-backslash-before-comma"),
        pytest.param(
            "m", {"t": "a\\=b", "u": "a\\ b"}, {"f": 1.0}, id="tag-value-backslash-escapes"
        ),
        pytest.param("m", {"k\\,x": "\\lead"}, {"f": 1.0}, id="tag-key-backslash-before-comma"),
        pytest.param("a\\b", {}, {"f\\x": 1.0}, id="backslash-before-plain-char"),
        pytest.param("m", {"t": "\tx\t"}, {"f": "\t"}, id="tabs-inside-tags-and-strings"),
        pytest.param("m", {}, {"s": "a\nb\r\nc\\"}, id="string-line-breaks-and-trailing-backslash"),
        pytest.param("m", {}, {"s": "nul\0inside"}, id="string-with-nul"),
        pytest.param("m", {}, {"f": 5e-324, "g": -0.0, "h": 1e300}, id="extreme-floats"),
        pytest.param("m", {}, {"i": -(2**63), "j": 2**63 - 1}, id="int64-bounds"),
        pytest.param("m#", {"#": "#"}, {"#f": "#"}, id="hash-not-first"),
    ],
)
def test_tricky_but_representable_values_read_back_identical(
    lp_client: InfluxClient,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, FieldValue],
) -> None:
    _assert_round_trip(lp_client, measurement, tags, fields)


def _naive(text: str, specials: str) -> str:
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


# (part, text, what InfluxDB 1.6.7 does with the naive escaping)
REFUSALS = [
    ("measurement", "m\\", "400 invalid field format"),
    ("measurement", "a\\,b", "accepted, never read back"),
    ("measurement", "a\\ b", "accepted, never read back"),
    ("measurement", "a\\=b", "accepted, never read back"),
    ("measurement", 'a\\"b', "accepted, never read back"),
    ("measurement", "#m", "taken for a comment: 204, nothing stored"),
    ("measurement", "\tm", "tab stripped"),
    ("measurement", "a\0b", "stored, but InfluxQL cannot name it"),
    ("tag key", "k\\", "400 missing tag value"),
    ("tag key", "time", "400 invalid tag key"),
    ("tag value", "v\\", "400 invalid tag format"),
    ("field key", "f\\", "400 invalid field format"),
    ("field key", "a\\,b", "400 invalid field format"),
    ("field key", "a\\=b", "400 invalid boolean"),
    ("field key", "a\\ b", "400 invalid field format"),
    ("field key", 'a\\"b', "backslash dropped"),
    ("field key", "\tf", "tab stripped"),
    ("field key", "time", "400 invalid field name"),
]


@pytest.mark.parametrize(("part", "text", "server_does"), REFUSALS)
def test_refused_text_is_named_and_would_be_mangled_by_influxdb(
    lp_client: InfluxClient, part: str, text: str, server_does: str
) -> None:
    measurement, tag_key, tag_value, field_key = "m", "t", "v", "f"
    if part == "measurement":
        measurement = text
    elif part == "tag key":
        tag_key = text
    elif part == "tag value":
        tag_value = text
    else:
        field_key = text

    with pytest.raises(ValueError, match=part if text == "time" else re.escape(repr(text))):
        format_point(measurement, {tag_key: tag_value}, {field_key: 1.0}, TS_NS)

    # The proof: the naive escaping is rejected, or what comes back is not what was sent.
    naive = (
        f"{_naive(measurement, ', ')},{_naive(tag_key, ',= ')}={_naive(tag_value, ',= ')} "
        f"{_naive(field_key, ',= ')}=1 {TS_NS}"
    )
    _fresh(lp_client)
    try:
        lp_client.write([naive])
        got = lp_client.query(f"SELECT * FROM {quote_ident(measurement)}")
    except InfluxRequestError:
        return  # rejected at write or at query
    intact = (
        len(got) == 1
        and got[0].name == measurement
        and set(got[0].columns) == {"time", tag_key, field_key}
        and got[0].columns[tag_key][0] == tag_value
    )
    assert not intact, f"InfluxDB carried {text!r} ({server_does}): the refusal is no longer needed"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: format_point("m", {}, {"f": None}, 0), "no field with a value"),
        (lambda: format_point("m", {}, {"f": math.nan}, 0), "not a finite number"),
        (lambda: format_point("m", {}, {"f": math.inf}, 0), "not a finite number"),
        (lambda: format_point("m", {}, {"i": 2**63}, 0), "int64"),
        (lambda: format_point("m", {}, {"i": -(2**63) - 1}, 0), "int64"),
        (lambda: format_point("m", {}, {"f": 1.0}, 2**63 - 1), "outside the range"),
        (lambda: format_point("", {}, {"f": 1.0}, 0), "must not be empty"),
        (lambda: format_point("m", {"": "v"}, {"f": 1.0}, 0), "must not be empty"),
        (lambda: format_point("m\n", {}, {"f": 1.0}, 0), "line break"),
        (lambda: format_point("m", {"t": "a\rb"}, {"f": 1.0}, 0), "line break"),
        (lambda: format_point("m", {}, {"f\n": 1.0}, 0), "line break"),
    ],
)
def test_other_unrepresentable_points_are_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_format_point_output() -> None:
    line = format_point(
        "meter reading",
        {"station_id": "ST,1", "connector_id": "1", "empty": ""},
        {"power w": 7200.5, "n": 3, "ok": True, "note": 'say "hi" \\ bye', "skipped": None},
        1_700_000_000_000_000_000,
    )
    assert line == (
        "meter\\ reading,connector_id=1,station_id=ST\\,1 power\\ w=7200.5,n=3i,ok=true,"
        'note="say \\"hi\\" \\\\ bye" 1700000000000000000'
    )


def test_numpy_floats_and_int_enums_are_written_as_numbers() -> None:
    class Phase(enum.IntEnum):
        L2 = 2

    line = format_point("m", {}, {"f": np.float64(1.5), "p": Phase.L2}, 0)
    assert line == "m f=1.5,p=2i 0"
