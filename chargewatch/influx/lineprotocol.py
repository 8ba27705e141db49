"""InfluxDB line protocol: escaping and formatting of points.

Rules (InfluxDB 1.x): in measurements, commas and spaces are escaped with a backslash; in tag keys,
tag values and field keys, commas, equals signs and spaces are; string field values are enclosed in
double quotes with double quotes and backslashes escaped. A backslash is otherwise literal: there
is no escape for the backslash itself outside string field values.

What cannot be represented is refused with a ``ValueError`` naming it. Found against InfluxDB
1.6.7 and kept proven by ``tests/chargewatch/test_lineprotocol.py``:

- line breaks in measurements, keys and tag values (they end the line);
- NUL in measurements, keys and tag values (InfluxQL reads NUL as the end of the query, so such
  a name can be written but never selected or filtered on);
- a trailing backslash in a measurement, key or tag value (it escapes the separator after it:
  400 "invalid tag format");
- a backslash right before a comma, equals sign, space or double quote in a measurement or field
  key (the parser and the unescaper disagree: the write is refused, or is accepted and the point
  can never be read back); tag keys and values have no such trouble;
- a measurement starting with ``#`` (the line is taken for a comment: 204 and nothing stored);
- a tab at the start of a measurement or field key (the parser strips it as whitespace);
- ``time`` as a tag or field key (400 "invalid tag key"/"invalid field name");
- integers outside int64 and timestamps outside +-(2**63 - 2) ns (400 "out of range").

String field values carry anything, line breaks included: 1.6.7 stores and returns ``\\n`` and
``\\r`` inside a quoted string as they are.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
TIMESTAMP_LIMIT_NS = 2**63 - 2  # InfluxDB keeps the two extreme int64 values for itself

FieldValue = float | int | bool | str

# Measurements, keys and tag values repeat from point to point (tags are bounded by design), so
# their escaping is cached: it halves the cost of format_point. Refusals raise, so never cache.
_escape_cache = functools.lru_cache(maxsize=4096)


@_escape_cache
def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    _refuse_unrepresentable(name, "measurement")
    if name[0] == "#":
        raise ValueError(f"measurement {name!r} starts with '#', which makes the line a comment")
    if name[0] == "\t":
        raise ValueError(f"measurement {name!r} starts with a tab, which InfluxDB strips")
    if "\\" in name:
        _refuse_backslash_before(name, ',= "', "measurement")
    return name.translate(_MEASUREMENT_ESCAPES)


@_escape_cache
def escape_key(text: str) -> str:
    """Escape a tag key or tag value."""
    _refuse_unrepresentable(text, "tag key or value")
    if text[-1] == "\\":
        raise ValueError(
            f"tag key or value {text!r} ends with a backslash, which line protocol cannot carry"
        )
    return text.translate(_KEY_ESCAPES)


@_escape_cache
def escape_field_key(key: str) -> str:
    """Escape a field key."""
    _refuse_unrepresentable(key, "field key")
    if key[0] == "\t":
        raise ValueError(f"field key {key!r} starts with a tab, which InfluxDB strips")
    if "\\" in key:
        _refuse_backslash_before(key, ',= "', "field key")
    return key.translate(_KEY_ESCAPES)


def quote_string(value: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def format_field_value(value: FieldValue) -> str:
    """One field value: floats as shortest round-trip reprs, ints with ``i``, bools, strings."""
    # float.__repr__ and int.__repr__ rather than repr(): NumPy 2 writes repr(np.float64(1.5))
    # as "np.float64(1.5)", and an IntEnum's str() is its name.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} cannot be stored: not a finite number")
        return float.__repr__(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"field value {value} cannot be stored: outside the int64 range")
        return int.__repr__(value) + "i"
    return quote_string(value)


def format_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    timestamp_ns: int,
) -> str:
    """One line of line protocol; tags sorted by key, ``None`` fields left out.

    Raises ``ValueError`` when no field has a value (InfluxDB needs at least one) or when any
    part cannot be represented (see the module docstring).
    """
    check_timestamp(timestamp_ns)
    return f"{format_series_fields(measurement, tags, fields)} {timestamp_ns}"


def check_timestamp(timestamp_ns: int) -> None:
    """Raise ``ValueError`` for a point time InfluxDB cannot store."""
    if not -TIMESTAMP_LIMIT_NS <= timestamp_ns <= TIMESTAMP_LIMIT_NS:
        raise ValueError(f"timestamp {timestamp_ns} ns is outside the range InfluxDB stores")


def format_series_fields(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
) -> str:
    """A line of ``format_point`` without its time: the measurement, the tags and the fields
    (for points that repeat all three at other times)."""
    head = escape_measurement(measurement)
    for key in sorted(tags):
        value = tags[key]
        if value == "":
            continue  # InfluxDB drops empty tag values anyway; writing one is an error
        if key == "time":
            raise ValueError("'time' cannot be a tag key: InfluxDB rejects it")
        head += f",{escape_key(key)}={escape_key(value)}"
    parts = []
    for key, field_value in fields.items():
        if field_value is None:
            continue
        if key == "time":
            raise ValueError("'time' cannot be a field key: InfluxDB rejects it")
        parts.append(f"{escape_field_key(key)}={format_field_value(field_value)}")
    if not parts:
        raise ValueError(f"point of {measurement!r} has no field with a value")
    return f"{head} {','.join(parts)}"


def _refuse_unrepresentable(text: str, what: str) -> None:
    if not text:
        raise ValueError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a line break, which line protocol cannot carry")
    if "\0" in text:
        raise ValueError(f"{what} {text!r} contains NUL, which InfluxQL cannot select")


def _refuse_backslash_before(text: str, specials: str, what: str) -> None:
    """Refuse a backslash at the end or right before a character that gets escaped."""
    last = len(text) - 1
    index = text.find("\\")
    while index != -1:
        if index == last or text[index + 1] in specials:
            before = "its end" if index == last else repr(text[index + 1])
            raise ValueError(
                f"{what} {text!r} has a backslash before {before}, which InfluxDB cannot read back"
            )
        index = text.find("\\", index + 1)
