"""Readings judged a chunk at a time, as columns: the columnar twin of ``EventDecoder``.

Readings are nearly all of the traffic, so file ingest and file detection read a chunk of them
with polars and check it with expressions instead of building one Python object per reading.
This path only takes what it can judge exactly: plain JSON numbers, ASCII identifiers that need
no escaping, timestamps of the common RFC 3339 shape. Every other row is marked not ``ok`` and
goes through ``EventDecoder`` one event at a time, which gives the same result or the precise
reason for a rejection. ``tests/ingest/test_encode.py`` holds the two paths to the same result.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl

from chargewatch.events import MAX_CONNECTOR_ID, READING_RANGES
from chargewatch.schema import READING_FIELDS

__all__ = ["judge_readings", "reading_frame_from_ndjson", "reading_frame_from_objects"]

_TS_SHAPE = r"^(19|20)\d\d-\d\d-\d\dT\d\d:[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$"
# Identifiers the columnar path takes as they are: printable ASCII with nothing line protocol
# would escape (tag values) or quote-escape (string fields). The rest go the per-event way.
_PLAIN_STATION = r"^[!#-+\--<>-\[\]-~]{1,128}$"  # printable ASCII without space , = " \
_PLAIN_SESSION = r"^[ !#-\[\]-~]{1,128}$"  # printable ASCII without " \
_BLANK = r"^ *$"
_INT64 = range(-(2**63), 2**63)
_NONE = type(None)
_NUMBERS: frozenset[type] = frozenset({float, int, _NONE})
_NOT_A_STRING = r'\\u|"(?:type|ts|station_id|session_id)"\s*:\s*[-0-9tf\[{]'
_COLUMNS: tuple[tuple[str, type[pl.DataType], frozenset[type]], ...] = (
    *((key, pl.Float64, _NUMBERS) for key in READING_FIELDS),
    ("ts", pl.String, frozenset({str})),
    ("station_id", pl.String, frozenset({str})),
    ("session_id", pl.String, frozenset({str, _NONE})),
    ("connector_id", pl.Int64, frozenset({int})),  # bool is not int here: type() is exact
)
_NDJSON_SCHEMA: dict[str, type[pl.DataType]] = {
    "type": pl.String,
    **{key: dtype for key, dtype, _kinds in _COLUMNS},
}


def reading_frame_from_objects(readings: list[dict[str, Any]]) -> pl.DataFrame:
    """The columns of decoded reading objects, with ``odd`` set where a value has a type the
    columnar path does not take (those rows go the per-event way)."""
    columns: dict[str, pl.Series] = {}
    odd_rows: list[pl.Series] = []
    for key, dtype, kinds in _COLUMNS:
        values = [obj.get(key) for obj in readings]
        if not set(map(type, values)) <= kinds:
            # Rare: a numeric string, a bool, a list...
            odd = [type(v) not in kinds for v in values]
            odd_rows.append(pl.Series(odd))
            values = [None if bad else v for v, bad in zip(values, odd, strict=True)]
        try:
            columns[key] = pl.Series(key, values, dtype=dtype)
        except (TypeError, OverflowError):  # an integer beyond Int64 (2**63 and up): odd too
            odd = [type(v) is int and v not in _INT64 for v in values]
            odd_rows.append(pl.Series(odd))
            values = [None if bad else v for v, bad in zip(values, odd, strict=True)]
            columns[key] = pl.Series(key, values, dtype=dtype)
    frame = pl.DataFrame(columns)
    if odd_rows:
        return frame.with_columns(odd=pl.any_horizontal(*odd_rows))
    return frame.with_columns(odd=pl.lit(False))


def reading_frame_from_ndjson(raws: list[bytes]) -> pl.DataFrame | None:
    """The columns of raw JSON lines (one row per line), with ``odd`` set for rows that are not
    readings or that the columnar path cannot judge; ``None`` when polars cannot read the chunk
    (a line of bad JSON, a numeric string, a value of an unexpected type: polars refuses it)."""
    try:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(raws)), schema=_NDJSON_SCHEMA)
    except pl.exceptions.PolarsError:
        return None
    if frame.height != len(raws):
        return None
    # polars turns a number into a string where a string column is expected, so rows where a
    # string key holds another kind of value (or where \u escapes could hide a key) are odd.
    odd = (
        pl.Series(raws, dtype=pl.Binary)
        .cast(pl.String, strict=False)
        .str.contains(_NOT_A_STRING)
        .fill_null(True)
    )
    return frame.with_columns(odd=odd | (pl.col("type") != "reading").fill_null(True))


def judge_readings(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (from ``reading_frame_from_*``) with ``ok``: the row is a valid reading the
    columnar path takes, exactly as ``EventDecoder`` would decode it; and ``ts_ns``: its time
    in integer nanoseconds (UTC, microsecond precision, as the per-event path keeps)."""
    ts, station, session, connector = (
        pl.col("ts"),
        pl.col("station_id"),
        pl.col("session_id"),
        pl.col("connector_id"),
    )
    ts_ns = (
        ts.str.replace("Z", "+00:00", literal=True)  # the shape check allows Z only at the end
        .str.strptime(
            pl.Datetime("ns", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, cache=False
        )
        .cast(pl.Int64)
        // 1000
        * 1000
    )
    checks = [
        ~pl.col("odd"),
        ts.str.contains(_TS_SHAPE),
        pl.col("ts_ns").is_not_null(),
        station.str.contains(_PLAIN_STATION),
        connector.is_between(0, MAX_CONNECTOR_ID),
        session.is_null() | (session.str.contains(_PLAIN_SESSION) & ~session.str.contains(_BLANK)),
        session.is_not_null()
        | pl.any_horizontal(*(pl.col(k).is_not_null() for k in READING_FIELDS)),
    ]
    for key in READING_FIELDS:
        low, high = READING_RANGES[key]
        value = pl.col(key)
        checks.append(value.is_null() | (value.is_finite() & value.is_between(low, high)))
    return frame.with_columns(ts_ns=ts_ns).with_columns(
        ok=pl.all_horizontal(*checks).fill_null(False)
    )
