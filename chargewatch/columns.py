"""Readings judged a chunk at a time, as columns: the columnar twin of ``EventDecoder``.

Readings are nearly all of the traffic, so file ingest and file detection read a chunk of them
with polars and check it with expressions instead of building one Python object per reading.
Every way a station may write a valid reading (CONTRACTS.md section 1) is taken here: numbers
as JSON numbers or numeric strings (OCPP 1.6 sends strings), connector ids as either, RFC 3339
stamps with any zone offset and whole seconds up to nanoseconds, identifiers of any printable
ASCII style (UUIDs, integer-like transaction ids), ``null`` for not measured, extra keys in any
order. Numbers are read as text (a JSON number becomes its decimal text) and parsed by one cast
per column, after a shape check that admits only what Python's ``float`` reads the same way.

What this path cannot judge exactly (text that is not ASCII or needs escaping, numbers with
spaces or underscores, stamps of rare shapes) and every invalid value is marked not ``ok`` and
goes through ``EventDecoder`` one event at a time, which gives the same result or the precise
reason for a rejection. ``tests/ingest/test_encode.py`` and
``tests/analytics/test_decode_chunks.py`` hold the two paths to the same result.

A key written twice in one object: JSON leaves its meaning open (RFC 8259 section 4), polars
keeps the first value and orjson, like Python's ``json`` and JavaScript, the last. A line that
repeats a key of the schema is not taken here (unless the key is ``null`` each time, which
both read alike): it goes the per-event way, so both paths give the last value, as every
other reader of the event file (``json``, ``jq``) would. Rejecting
such lines instead would need the per-event decoder to see the repetition, which orjson hides.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
import polars as pl

from chargewatch.events import MAX_CONNECTOR_ID, READING_RANGES
from chargewatch.schema import READING_FIELDS

__all__ = [
    "judge_readings",
    "reading_frame_from_block",
    "reading_frame_from_ndjson",
    "reading_frame_from_objects",
]

# RFC 3339 as the columnar path parses it: T, seconds, an optional fraction of 1 to 9 digits
# (Python keeps 6, and so does the cast below), Z or a +hh:mm offset within a day. [0-9], not
# \d: polars' regexes are Unicode-aware and \d matches digits of every script.
_TS_SHAPE = (
    r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# A number as JSON writes it (polars gives a JSON number as its decimal text) or as a station
# sends it in a string; Python's float() and polars' cast read all of these to the same double.
# Other texts float() takes (" 12", "1_000", "nan", "+5") go the per-event way.
_NUMBER_TEXT = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_CONNECTOR_TEXT = r"^[0-9]{1,18}$"  # fits Int64; the range check follows
# Identifiers the columnar path takes as they are: printable ASCII with nothing line protocol
# would escape (tag values) or quote-escape (string fields). The rest go the per-event way.
_PLAIN_STATION = r"^[!#-+\--<>-\[\]-~]{1,128}$"  # printable ASCII without space , = " \
_PLAIN_SESSION = r"^[ !#-\[\]-~]{1,128}$"  # printable ASCII without " \
_BLANK = r"^ *$"
_INT64 = range(-(2**63), 2**63)
_NONE = type(None)
_NUMBERS: frozenset[type] = frozenset({float, int, _NONE})
_TEXT_OR_NUMBERS: frozenset[type] = frozenset({float, int, str, _NONE})
# A key that must hold a string holding something else, or a key written with a \u escape
# (which could hide one of those keys from this scan). \u escapes in values are harmless:
# polars and orjson decode them alike, and non-ASCII identifiers go the per-event way anyway.
_NOT_A_STRING = r'"(?:station_id|session_id)"\s*:\s*[-0-9tf\[{]'
# What polars makes of a number, a boolean, an array or an object read into a string column
# (``12.5``, ``true``, ``[1, 2]``...): only an identifier that looks like this can have been
# one, so only those lines are scanned for the key above. ``type`` and ``ts`` need no scan: no
# such text is "reading" or has a stamp's shape.
_STRINGIFIED = r"^(?:[-0-9\[{]|true$|false$)"
_ESCAPED_KEY = r'"(?:[^"\\]|\\.)*\\u(?:[^"\\]|\\.)*"\s*:'
_COLUMNS: tuple[tuple[str, type[pl.DataType], frozenset[type]], ...] = (
    *((key, pl.Float64, _NUMBERS) for key in READING_FIELDS),
    ("ts", pl.String, frozenset({str})),
    ("station_id", pl.String, frozenset({str})),
    ("session_id", pl.String, frozenset({str, _NONE})),
    ("connector_id", pl.Int64, frozenset({int})),  # bool is not int here: type() is exact
)
# Raw lines: numbers and connector ids read as text, whatever JSON type they arrive as.
_NDJSON_SCHEMA: dict[str, type[pl.DataType]] = {
    "type": pl.String,
    **{key: pl.String for key, _dtype, _kinds in _COLUMNS},
}
_EMPTY_OBJECT = b"{}"
# Lines cut as the one field of a CSV file: a control character JSON text never holds raw (it
# is escaped within strings, RFC 8259 section 7) separates fields (``_line_texts``).
_CONTROL = "\x1f"
_LINE_SCHEMA = {"line": pl.String}
_ID_KEYS = ("station_id", "session_id")
# A key of the schema written as a key (a colon follows; a value never has one after it).
_SCHEMA_KEY = '"(?:' + "|".join(_NDJSON_SCHEMA) + r')"[ \t\r\n]*:'  # plain words: no escaping


_TEXT = "__line_text"  # the line texts beside the frame's columns, for one query over both
_KEY_BIT = {key: i for i, key in enumerate(_NDJSON_SCHEMA)}
_NULL_BIT = {f'"{key}":null': i for key, i in _KEY_BIT.items()}
# A key of the schema given ``null``: the same keys written as _SCHEMA_KEY finds them.
_NULL_KEY = '"(?:' + "|".join(_NDJSON_SCHEMA) + r')"[ \t\r\n]*:[ \t\r\n]*null'
# Each row's checks, built once: what ``reading_frame_from_block`` and ``_repeats_a_key`` need.
_ROW_FLAGS = (
    pl.col(_TEXT).str.count_matches(_SCHEMA_KEY).fill_null(1 << 30).alias("written"),
    pl.sum_horizontal(
        pl.col(key).is_null().cast(pl.Int64) * (1 << i) for i, key in enumerate(_NDJSON_SCHEMA)
    ).alias("missing"),
    pl.sum_horizontal(pl.col(key).is_not_null().cast(pl.Int64) for key in _NDJSON_SCHEMA).alias(
        "present"
    ),
    # an identifier that may have been another kind of value, and its line writes one
    (
        pl.any_horizontal(pl.col(key).str.contains(_STRINGIFIED) for key in _ID_KEYS).fill_null(
            False
        )
        & pl.col(_TEXT).str.contains(_NOT_A_STRING).fill_null(True)
    ).alias("stringified"),
    pl.col(_TEXT).str.contains("\\u", literal=True).fill_null(False).alias("escaped"),
    (pl.col("type") != "reading").fill_null(True).alias("not_reading"),
)


def reading_frame_from_objects(readings: list[dict[str, Any]]) -> pl.DataFrame:
    """The columns of decoded reading objects, with ``odd`` set where a value has a type the
    columnar path does not take (those rows go the per-event way). A number column that holds
    numeric strings is kept as text, as ``reading_frame_from_ndjson`` reads it."""
    columns: dict[str, pl.Series] = {}
    odd_rows: list[pl.Series] = []
    for key, dtype, kinds in _COLUMNS:
        values = [obj.get(key) for obj in readings]
        types = set(map(type, values))
        if dtype is not pl.String and str in types and types <= _TEXT_OR_NUMBERS:
            columns[key] = pl.Series(key, list(map(_as_text, values)), dtype=pl.String)
            continue
        if not types <= kinds:
            # Rare: a bool, a list, an object...
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


def _as_text(value: Any) -> str | None:
    """A number or numeric string as the text the shape check and the cast read."""
    if value is None or type(value) is str:
        return value
    return repr(value)  # float: the shortest text that reads back exactly; int: its digits


def reading_frame_from_ndjson(raws: list[bytes]) -> pl.DataFrame | None:
    """The columns of raw JSON lines (one row per line), with ``odd`` set for rows that are not
    readings or that the columnar path cannot judge. A line that is not a JSON object (bad
    JSON, an array...) makes polars refuse the chunk: such lines are found and read as empty
    objects, marked odd; ``None`` only if polars still cannot read the chunk."""
    return _reading_frame(b"\n".join(raws), len(raws), raws)


def reading_frame_from_block(block: bytes, count: int) -> pl.DataFrame | None:
    """``reading_frame_from_ndjson`` for ``count`` lines already joined by newlines, none of
    them blank (a file read a block at a time: no line is split off and joined again)."""
    return _reading_frame(block, count, None)


def _reading_frame(block: bytes, count: int, raws: list[bytes] | None) -> pl.DataFrame | None:
    """``reading_frame_from_block``; ``raws``: the lines of ``block``, when the caller has them
    apart (their texts are then taken from them, not cut from the block again)."""
    frame = _read_ndjson(block, count)
    unreadable: list[int] = []
    if frame is None:
        readable = block.split(b"\n")
        unreadable = [i for i, raw in enumerate(readable) if not _is_object(raw)]
        if not unreadable:
            return None
        for i in unreadable:
            readable[i] = _EMPTY_OBJECT
        frame = _read_ndjson(b"\n".join(readable), count)
        if frame is None:
            return None
    # polars turns a number into a string where a string column is expected, so rows where a
    # string key holds another kind of value (or where \u escapes could hide a key) are odd;
    # so are rows that repeat a key of the schema (polars keeps the first, orjson the last).
    # Every check of a row is one query over the frame and the line texts: polars' cost on a
    # body of a thousand events is mostly fixed per query, not per row.
    text = _line_texts(block, count) if raws is None else _texts_of(raws)
    flags = frame.hstack([text.alias(_TEXT)]).select(_ROW_FLAGS)
    odd = _repeats_a_key(flags, text) | flags["stringified"].to_numpy()
    escaped = np.flatnonzero(flags["escaped"].to_numpy())
    if escaped.size:  # rare: the costlier scan for escaped keys only where it can matter
        odd[escaped] |= text.gather(escaped).str.contains(_ESCAPED_KEY).to_numpy()
    if unreadable:
        odd[unreadable] = True
    return frame.hstack([pl.Series("odd", odd | flags["not_reading"].to_numpy())])


def _line_texts(block: bytes, count: int | None = None) -> pl.Series:
    """The lines of ``block`` (``count`` of them, when known) as text; a line that is not valid
    UTF-8 (which polars refuses to cast, even non-strictly) becomes null, and so odd: the
    per-event path rejects it with its reason.

    Cut by polars' CSV reader (one field per line: no quoting, and a separator that valid
    JSON never holds raw) when it gives back every byte of the block, lines and newlines
    (nothing taken for a line end or a field separator); else, as for a line that is not
    UTF-8, line by line."""
    if count is not None:
        try:
            text = pl.read_csv(
                io.BytesIO(block),
                has_header=False,
                separator=_CONTROL,
                quote_char=None,
                schema=_LINE_SCHEMA,
            ).to_series()
        except pl.exceptions.PolarsError:
            pass
        else:
            if text.len() == count and text.str.len_bytes().sum() + count - 1 == len(block):
                return text
    return _texts_of(block.split(b"\n"))


def _texts_of(raws: list[bytes]) -> pl.Series:
    """Lines as text, null where one is not UTF-8 (``_line_texts``). From lines already apart,
    the cheapest way (0.04 ms for a body of a thousand, the CSV reader 0.5 ms); cutting a
    large block into lines first costs more than the CSV reader (2.9 ms, 1.1 ms: 10,000)."""
    try:
        return pl.Series(raws, dtype=pl.Binary).cast(pl.String, strict=False)
    except pl.exceptions.ComputeError:  # rare: find the bad lines one by one
        return pl.Series([_utf8_or_none(raw) for raw in raws], dtype=pl.String)


def _repeats_a_key(flags: pl.DataFrame, text: pl.Series) -> np.ndarray:
    """Rows where a key of the schema may be written twice with values that differ (or once
    more in a nested object: taken the per-event way, where it is harmless).

    Each key polars found a value for is written at least once, so a row that writes the
    schema's keys no more often than that repeats none. The others (a fifth of a mixed fleet's
    lines: explicit nulls, or a repetition) are certified by their explicit nulls: a row that
    writes the schema's keys exactly once per key polars found a value for plus once per
    ``null`` given to a key polars found none for repeats no key with a value, at most a key
    with ``null`` every time, which both paths read alike. A ``null`` given to a key polars
    found a value for is not counted (``"power_w":1,"power_w":null``: polars keeps the 1,
    orjson the null), so such a row stays suspect. One scan of those rows finds every key
    written ``null``; each counts where polars found no value for that key.

    ``flags``: ``written`` (keys of the schema written, a huge count for a line that is not
    UTF-8: suspect), ``missing`` (a bit per key of the schema polars found no value for, in
    ``_NDJSON_SCHEMA``'s order) and ``present`` (how many it found a value for)."""
    written = flags["written"].to_numpy()
    present = flags["present"].to_numpy()
    repeats = written > present
    unsure = np.flatnonzero(repeats)
    if unsure.size:
        # every ``null`` each row gives a key of the schema, and which key (its bit)
        nulls = text.gather(unsure).str.extract_all(_NULL_KEY).to_list()
        per_row = [len(matches) if matches else 0 for matches in nulls]
        found = [match for matches in nulls if matches for match in matches]
        bit = list(map(_NULL_BIT.get, found))  # as JSON writes it compactly
        if None in bit:  # white space around the colon: the key between the first quotes
            bit = [
                _KEY_BIT[m[1 : m.index('"', 1)]] if b is None else b
                for b, m in zip(bit, found, strict=True)
            ]
        row = np.repeat(np.arange(unsure.size), per_row)
        missing = flags["missing"].to_numpy()[unsure]
        counted = (missing[row] >> np.asarray(bit, dtype=np.int64)) & 1
        given = np.bincount(row, weights=counted, minlength=unsure.size).astype(np.int64)
        repeats[unsure] = written[unsure] > present[unsure] + given
    return repeats


def _utf8_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _read_ndjson(block: bytes, count: int) -> pl.DataFrame | None:
    try:
        frame = pl.read_ndjson(io.BytesIO(block), schema=_NDJSON_SCHEMA)
    except pl.exceptions.PolarsError:
        return None
    return frame if frame.height == count else None


def _is_object(raw: bytes) -> bool:
    try:
        return type(orjson.loads(raw)) is dict
    except orjson.JSONDecodeError:
        return False


def judge_readings(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (from ``reading_frame_from_*``) with ``ok``: the row is a valid reading the
    columnar path takes, exactly as ``EventDecoder`` would decode it; ``ts_ns``: its time in
    integer nanoseconds (UTC, microsecond precision, as the per-event path keeps); and its
    numbers and connector id as numbers (Float64, Int64) whatever they arrived as.

    One query, its expressions built once for each set of columns that arrive as text (a
    body of a thousand rows costs polars mostly per expression and per query, not per row)."""
    texts = tuple(key for key in _PARSED if frame.schema[key] == pl.String)
    judging = _JUDGING.get(texts)
    if judging is None:
        judging = _JUDGING[texts] = _judging(texts)
    parsed, checks = judging
    return (
        frame.lazy()
        .with_columns(*parsed)
        .with_columns(ok=checks)
        .drop("shape_ok")
        .collect(optimizations=_ONE_FRAME)
    )


def _judging(texts: tuple[str, ...]) -> tuple[list[pl.Expr], pl.Expr]:
    """``judge_readings``' expressions for a frame whose columns ``texts`` hold text: the
    parsed columns (with ``ts_ns`` and ``shape_ok``), then ``ok`` from them."""
    ts, station, session = pl.col("ts"), pl.col("station_id"), pl.col("session_id")
    parsed, shapes = _parsed_numbers(texts)
    connector = pl.col("connector_id")
    checks = [
        ~pl.col("odd"),
        ts.str.contains(_TS_SHAPE),
        pl.col("ts_ns").is_not_null(),
        station.str.contains(_PLAIN_STATION),
        connector.is_between(0, MAX_CONNECTOR_ID),
        session.is_null() | (session.str.contains(_PLAIN_SESSION) & ~session.str.contains(_BLANK)),
        session.is_not_null()
        | pl.any_horizontal(*(pl.col(k).is_not_null() for k in READING_FIELDS)),
        *shapes,
    ]
    for key in READING_FIELDS:
        low, high = READING_RANGES[key]
        value = pl.col(key)
        checks.append(value.is_null() | (value.is_finite() & value.is_between(low, high)))
    return [*parsed, _stamp_ns(ts).alias("ts_ns")], pl.all_horizontal(*checks).fill_null(False)


_PARSED = (*READING_FIELDS, "connector_id")  # the columns read as numbers
_JUDGING: dict[tuple[str, ...], tuple[list[pl.Expr], pl.Expr]] = {}
# A small frame's query gains nothing from the optimizer's passes (they cost more than they
# save on a thousand rows); the results are the same either way.
_ONE_FRAME = pl.QueryOptFlags.none()


def _stamp_ns(ts: pl.Expr) -> pl.Expr:
    """Integer nanoseconds (UTC, to the microsecond, as the per-event path keeps) of stamps of
    ``_TS_SHAPE`` (others give any value: they are not ``ok``): the date and time to the
    second by polars' fixed-width parser, then the fraction's first six digits and the zone
    from their places (the zone is ``Z`` or six characters at the end). A third of the cost
    of parsing ``%.f%:z`` in one pattern, which takes a slower, general parser."""
    zulu = ts.str.ends_with("Z")
    zone = pl.when(zulu).then(1).otherwise(6)
    seconds = (
        ts.str.slice(0, 19)
        .str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False, cache=False)
        .cast(pl.Int64)
    )
    # the fraction's digits: between the dot (after the seconds) and the zone; "" without one
    digits = ts.str.slice(20, pl.max_horizontal(ts.str.len_bytes().cast(pl.Int64) - 20 - zone, 0))
    micros = digits.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False)
    hours = ts.str.slice(-5, 2).cast(pl.Int64, strict=False)
    minutes = ts.str.slice(-2, 2).cast(pl.Int64, strict=False)
    sign = pl.when(ts.str.slice(-6, 1) == "-").then(-1).otherwise(1)
    offset_min = pl.when(zulu).then(0).otherwise(sign * (hours * 60 + minutes))
    return (seconds + micros - offset_min * 60_000_000) * 1000


def _parsed_numbers(texts: tuple[str, ...]) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Expressions that turn the text columns of numbers (and of the connector id) ``texts``
    into numbers, and the checks that each text has a shape both paths read alike."""
    parsed: list[pl.Expr] = []
    shapes: list[pl.Expr] = []
    for key in texts:
        text = pl.col(key)
        is_connector = key == "connector_id"
        shape = _CONNECTOR_TEXT if is_connector else _NUMBER_TEXT
        shapes.append(text.is_null() | text.str.contains(shape))
        parsed.append(text.cast(pl.Int64 if is_connector else pl.Float64, strict=False))
    # the checks run after the cast, so they are kept in a column of their own
    if shapes:
        parsed.append(pl.all_horizontal(*shapes).alias("shape_ok"))
    else:
        parsed.append(pl.lit(True).alias("shape_ok"))
    return parsed, [pl.col("shape_ok")]
