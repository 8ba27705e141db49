"""InfluxDB line protocol: escaping and formatting of points.

Rules (InfluxDB 1.x): in measurements, commas and spaces are escaped with a backslash; in tag keys,
tag values and field keys, commas, equals signs and spaces are; string field values are enclosed in
double quotes with double quotes and backslashes escaped. Newlines cannot be represented in tags or
keys at all, so they are refused here and validated away at the boundary before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})

FieldValue = float | int | bool | str


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    _refuse_unrepresentable(name, "measurement")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    _refuse_unrepresentable(text, "tag or field key/value")
    return text.translate(_KEY_ESCAPES)


def quote_string(value: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def format_field_value(value: FieldValue) -> str:
    """One field value: floats as shortest round-trip reprs, ints with ``i``, bools, strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} cannot be stored: not a finite number")
        return repr(value)
    return quote_string(value)


def format_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    timestamp_ns: int,
) -> str:
    """One line of line protocol; tags sorted by key, ``None`` fields left out.

    Raises ``ValueError`` when no field has a value (InfluxDB needs at least one).
    """
    head = escape_measurement(measurement)
    for key in sorted(tags):
        value = tags[key]
        if value == "":
            continue  # InfluxDB drops empty tag values anyway; writing one is an error
        head += f",{escape_key(key)}={escape_key(value)}"
    parts = [
        f"{escape_key(key)}={format_field_value(value)}"
        for key, value in fields.items()
        if value is not None
    ]
    if not parts:
        raise ValueError(f"point of {measurement!r} has no field with a value")
    return f"{head} {','.join(parts)} {timestamp_ns}"


def _refuse_unrepresentable(text: str, what: str) -> None:
    if not text:
        raise ValueError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a line break, which line protocol cannot carry")
