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
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl

from chargewatch.events import MAX_CONNECTOR_ID, READING_RANGES
from chargewatch.schema import READING_FIELDS
from chargewatch.stamps import parse_stamps

__all__ = [
    "JudgedReadings",
    "judge",
    "judge_ndjson",
    "judge_readings",
    "reading_frame_from_block",
    "reading_frame_from_ndjson",
    "reading_frame_from_objects",
]

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
_NULL = "__null"  # the prefix of the flags' columns that say where a key of the schema is null
# Each row's checks, built once: what ``reading_frame_from_block`` and ``_repeats_a_key`` need.
# Each expression costs polars some 20-40 us on a body of a thousand rows whatever it does, so
# what numbers make of them (the bits of the keys found null, how many were found) is done in
# NumPy, and the costlier scans of the line texts run on the rows that need them only.
_ROW_FLAGS = (
    pl.col(_TEXT).str.count_matches(_SCHEMA_KEY).fill_null(1 << 30).alias("written"),
    *(pl.col(key).is_null().alias(f"{_NULL}{i}") for i, key in enumerate(_NDJSON_SCHEMA)),
    # an identifier that may have been another kind of value, and whether its line writes
    # it as a string the way JSON writes it compactly (``_stringified``)
    *(
        pl.col(key).str.contains(_STRINGIFIED).fill_null(False).alias(f"maybe:{key}")
        for key in _ID_KEYS
    ),
    *(
        pl.col(_TEXT).str.contains(f'"{key}":"', literal=True).fill_null(False).alias(f"text:{key}")
        for key in _ID_KEYS
    ),
    pl.col(_TEXT).str.contains("\\u", literal=True).fill_null(False).alias("escaped"),
    (pl.col("type") != "reading").fill_null(True).alias("not_reading"),
)
_NULL_COLUMNS = [f"{_NULL}{i}" for i in range(len(_NDJSON_SCHEMA))]
_KEY_WEIGHTS = np.left_shift(1, np.arange(len(_NDJSON_SCHEMA), dtype=np.int64))


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
    read = _reading_frame(b"\n".join(raws), len(raws), raws, [])
    return None if read is None else read[0]


def reading_frame_from_block(block: bytes, count: int) -> pl.DataFrame | None:
    """``reading_frame_from_ndjson`` for ``count`` lines already joined by newlines, none of
    them blank (a file read a block at a time: no line is split off and joined again)."""
    read = _reading_frame(block, count, None, [])
    return None if read is None else read[0]


def judge_ndjson(raws: list[bytes]) -> JudgedReadings | None:
    """``judge(reading_frame_from_ndjson(raws))``, the row checks and the judging in one
    query (polars runs its expressions side by side: a fifth cheaper than two queries)."""
    read = _reading_frame(b"\n".join(raws), len(raws), raws, _judging(_PARSED))
    return None if read is None else _judge(*read)


def _reading_frame(
    block: bytes, count: int, raws: list[bytes] | None, more: list[pl.Expr]
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """``reading_frame_from_block``; ``raws``: the lines of ``block``, when the caller has them
    apart (their texts are then taken from them, not cut from the block again). And what
    the expressions ``more`` give, computed over the frame in the same query."""
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
    flags = frame.hstack([text.alias(_TEXT)]).select(*_ROW_FLAGS, *more)
    nulls = np.column_stack([flags[name].to_numpy() for name in _NULL_COLUMNS])
    missing = nulls @ _KEY_WEIGHTS  # a bit per key of the schema polars found no value for
    present = len(_NDJSON_SCHEMA) - nulls.sum(axis=1, dtype=np.int64)
    odd = _repeats_a_key(flags["written"].to_numpy(), present, missing, text)
    odd |= _stringified(flags, odd, text)
    escaped = np.flatnonzero(flags["escaped"].to_numpy())
    if escaped.size:  # rare: the costlier scan for escaped keys only where it can matter
        odd[escaped] |= text.gather(escaped).str.contains(_ESCAPED_KEY).to_numpy()
    if unreadable:
        odd[unreadable] = True
    return frame.hstack([pl.Series("odd", odd | flags["not_reading"].to_numpy())]), flags


def _stringified(flags: pl.DataFrame, repeats: np.ndarray, text: pl.Series) -> np.ndarray:
    """Rows where an identifier holds what was another kind of value in the line: one that
    may have been (``maybe:``) and whose key the line writes with such a value.

    A row that repeats no key (``repeats`` unset) writes each key of the schema polars found
    a value for once, anywhere in the line (``_repeats_a_key``), so the key written as a
    string the compact way (``text:``, which valid JSON holds nowhere but where a key is) is
    the identifier's own, and the line needs no scan. The others are scanned; a row that
    repeats a key is the per-event way's anyway."""
    stringified = np.zeros(repeats.size, dtype=bool)
    for key in _ID_KEYS:
        stringified |= flags[f"maybe:{key}"].to_numpy() & ~flags[f"text:{key}"].to_numpy()
    rows = np.flatnonzero(stringified & ~repeats)
    if rows.size:  # a number, a boolean... for an id (or white space around its colon)
        found = text.gather(rows).str.contains(_NOT_A_STRING).fill_null(True)
        stringified[rows] = found.to_numpy()
    return stringified


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


def _repeats_a_key(
    written: np.ndarray, present: np.ndarray, missing: np.ndarray, text: pl.Series
) -> np.ndarray:
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

    ``written``: keys of the schema written (a huge count for a line that is not UTF-8:
    suspect); ``missing``: a bit per key of the schema polars found no value for, in
    ``_NDJSON_SCHEMA``'s order; ``present``: how many it found a value for."""
    repeats = written > present
    unsure = np.flatnonzero(repeats)
    if unsure.size:
        # every ``null`` each row gives a key of the schema, and which key (its bit), as
        # columns: no Python object per match (half the lines of a fleet give one)
        nulls = text.gather(unsure).str.extract_all(_NULL_KEY)
        per_row = nulls.list.len().fill_null(0).to_numpy()
        found = nulls.explode().drop_nulls()  # the matches, row after row, in order
        bit = found.replace_strict(_NULL_BIT, default=None, return_dtype=pl.Int64)
        if bit.null_count():  # white space around the colon: the key between the first quotes
            spaced = np.flatnonzero(bit.is_null().to_numpy())
            keys = [_KEY_BIT[m[1 : m.index('"', 1)]] for m in found.gather(spaced).to_list()]
            bit = bit.scatter(spaced, keys)
        row = np.repeat(np.arange(unsure.size), per_row)
        counted = (missing[unsure][row] >> bit.to_numpy()) & 1
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


@dataclass(frozen=True, slots=True)
class JudgedReadings:
    """What ``judge`` makes of a frame: ``frame`` as ``judge_readings`` gives it, and the same
    as NumPy arrays for what reads on in NumPy: ``ok``, ``ts_ns`` (0 where ``has_ts`` is not
    set) and ``values`` (the numbers of ``READING_FIELDS`` by row, NaN where not measured)."""

    frame: pl.DataFrame
    ok: np.ndarray
    ts_ns: np.ndarray
    has_ts: np.ndarray
    values: np.ndarray


def judge_readings(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (from ``reading_frame_from_*``) with ``ok``: the row is a valid reading the
    columnar path takes, exactly as ``EventDecoder`` would decode it; ``ts_ns``: its time in
    integer nanoseconds (UTC, microsecond precision, as the per-event path keeps); and its
    numbers and connector id as numbers (Float64, Int64) whatever they arrived as."""
    return judge(frame).frame


def judge(frame: pl.DataFrame) -> JudgedReadings:
    """``judge_readings``, with its NumPy arrays.

    Polars does what needs text (casts and the shapes of numbers, identifiers' characters) in
    one query, its expressions built once for each set of columns that arrive as text; NumPy
    does the rest (ranges, stamps: ``chargewatch.stamps``). A body of a thousand rows costs
    polars mostly per expression (some 20-40 us each), not per row."""
    texts = tuple(key for key in _PARSED if frame.schema[key] == pl.String)
    return _judge(frame, frame.select(_judging(texts)))


def _judge(frame: pl.DataFrame, checked: pl.DataFrame) -> JudgedReadings:
    """``judge``, from what ``_judging``'s query gave (``checked``)."""
    texts = tuple(key for key in _PARSED if frame.schema[key] == pl.String)
    parsed = [checked[key] for key in texts]
    numbers = {key: checked[key] if key in texts else frame[key] for key in _PARSED}
    # Float64 both ways (cast from text, or so read from objects); NaN where null
    values = np.column_stack([numbers[key].to_numpy() for key in READING_FIELDS])
    nulls = np.isnan(values)
    if nulls.sum() != sum(numbers[key].null_count() for key in READING_FIELDS):
        # rare: a number is NaN (a text no shape admits), not missing; mark nulls exactly
        nulls = np.column_stack([numbers[key].is_null().to_numpy() for key in READING_FIELDS])
    connector = numbers["connector_id"].to_numpy()
    shaped, ts_ns, has_ts = parse_stamps(frame["ts"])
    with np.errstate(invalid="ignore"):
        in_range = nulls | ((values >= _LOW) & (values <= _HIGH))
        ok = (
            ~frame["odd"].to_numpy()
            & shaped
            & has_ts
            & checked["station_ok"].to_numpy()
            & (connector >= 0)
            & (connector <= MAX_CONNECTOR_ID)
            & checked["session_ok"].to_numpy()
            # a reading says something: its session, or a value
            & (~checked["session_null"].to_numpy() | ~nulls.all(axis=1))
            & checked["shape_ok"].to_numpy()
            & in_range.all(axis=1)
        )
    stamps = pl.Series("ts_ns", ts_ns, dtype=pl.Int64)
    if not has_ts.all():
        stamps = stamps.scatter(np.flatnonzero(~has_ts), None)
    judged = frame.clone()  # the columns in place, no query (a fixed cost, as any other)
    for series in parsed:
        judged.replace_column(judged.get_column_index(series.name), series)
    judged.hstack([stamps, pl.Series("ok", ok, dtype=pl.Boolean)], in_place=True)
    return JudgedReadings(judged, ok, ts_ns, has_ts, values)


def _judging(texts: tuple[str, ...]) -> list[pl.Expr]:
    """``judge``'s query for a frame whose columns ``texts`` hold text: those columns parsed,
    and the checks that need text (``shape_ok``: each text has a shape both paths read
    alike). Built once for each set of columns that arrive as text."""
    judging = _JUDGING.get(texts)
    if judging is None:
        judging = _JUDGING[texts] = _judging_expressions(texts)
    return judging


def _judging_expressions(texts: tuple[str, ...]) -> list[pl.Expr]:
    station, session = pl.col("station_id"), pl.col("session_id")
    parsed: list[pl.Expr] = []
    failed: list[pl.Expr] = []
    for key in texts:
        text = pl.col(key)
        is_connector = key == "connector_id"
        shape = _CONNECTOR_TEXT if is_connector else _NUMBER_TEXT
        failed.append(~text.str.contains(shape))  # null where there is no text: no failure
        parsed.append(text.cast(pl.Int64 if is_connector else pl.Float64, strict=False))
    shape_ok = ~pl.any_horizontal(*failed) if failed else pl.lit(True)
    return [
        *parsed,
        shape_ok.fill_null(True).alias("shape_ok"),
        station.str.contains(_PLAIN_STATION).fill_null(False).alias("station_ok"),
        (session.str.contains(_PLAIN_SESSION) & ~session.str.contains(_BLANK))
        .fill_null(True)
        .alias("session_ok"),
        session.is_null().alias("session_null"),
    ]


_PARSED = (*READING_FIELDS, "connector_id")  # the columns read as numbers
_JUDGING: dict[tuple[str, ...], list[pl.Expr]] = {}
_LOW = np.array([READING_RANGES[key][0] for key in READING_FIELDS])
_HIGH = np.array([READING_RANGES[key][1] for key in READING_FIELDS])
