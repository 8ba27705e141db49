"""From raw JSON events to line protocol, a chunk at a time.

Readings are nearly all of the traffic, so they take a columnar path: a chunk of readings is
checked and formatted with polars expressions instead of one Python object per reading, which
is several times cheaper (bench/ingest.py). The columnar path only takes what it can judge
exactly: plain JSON numbers, ASCII identifiers that need no escaping, timestamps of the common
RFC 3339 shape. Everything else (numeric strings, unusual identifiers, every invalid value)
goes through ``EventDecoder`` and ``LineFormatter`` one event at a time, which give the same
result or the precise reason for a rejection. The two paths are tested to agree.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from chargewatch.errors import EventError
from chargewatch.events import MAX_LINE_BYTES, EventDecoder, EventType
from chargewatch.schema import READING_FIELDS, LineFormatter

_MAX_CONNECTOR_ID = 10_000
_TS_SHAPE = r"^(19|20)\d\d-\d\d-\d\dT\d\d:[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$"
# Identifiers the columnar path takes as they are: printable ASCII with nothing line protocol
# would escape (tag values) or quote-escape (string fields). The rest go the per-event way.
_PLAIN_STATION = r"^[!#-+\--<>-\[\]-~]{1,128}$"  # printable ASCII without space , = " \
_PLAIN_SESSION = r"^[ !#-\[\]-~]{1,128}$"  # printable ASCII without " \
_BLANK = r"^ *$"
# Physical ranges, as in chargewatch.events; None: unbounded.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "energy_wh": (0.0, None),
    "power_w": (None, None),
    "power_offered_w": (0.0, None),
    "current_a": (None, None),
    "voltage_v": (0.0, None),
    "soc_pct": (0.0, 100.0),
    "temperature_c": (-273.15, None),
}
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


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event that was not taken, and why. ``position`` is a line number or array index."""

    position: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.position}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass(slots=True)
class EncodedChunk:
    """Line protocol for the accepted events of a chunk, in input order, and the rejections."""

    lines: list[str] = field(default_factory=list)
    accepted_by_type: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)


class ChunkEncoder:
    """Validates, pseudonymizes and formats chunks of events as line protocol."""

    def __init__(self, decoder: EventDecoder) -> None:
        self._decoder = decoder
        self._formatter = LineFormatter()

    def encode_lines(self, numbered: Sequence[tuple[int, bytes]]) -> EncodedChunk:
        """Encode ``(position, raw JSON)`` pairs; bad JSON is rejected with its position."""
        chunk = EncodedChunk()
        kept: list[tuple[int, bytes]] = []
        for position, raw in numbered:
            if len(raw) > MAX_LINE_BYTES:
                chunk.rejections.append(
                    Rejection(position, None, f"line is longer than {MAX_LINE_BYTES} bytes")
                )
            else:
                kept.append((position, raw))
        fast = _format_ndjson_readings([raw for _, raw in kept]) if kept else []
        if fast is None:  # polars could not read the chunk: take it object by object
            return self.encode_objects(self._loads(kept, chunk), chunk)
        taken = [line for line in fast if line is not None]
        chunk.lines.extend(taken)
        chunk.accepted_by_type[EventType.READING] += len(taken)
        slow = [pair for pair, line in zip(kept, fast, strict=True) if line is None]
        return self.encode_objects(self._loads(slow, chunk), chunk)

    @staticmethod
    def _loads(numbered: Sequence[tuple[int, bytes]], chunk: EncodedChunk) -> list[tuple[int, Any]]:
        objects: list[tuple[int, Any]] = []
        for position, raw in numbered:
            try:
                objects.append((position, orjson.loads(raw)))
            except orjson.JSONDecodeError as exc:
                chunk.rejections.append(Rejection(position, None, f"not valid JSON ({exc.msg})"))
        return objects

    def encode_objects(
        self, numbered: Sequence[tuple[int, Any]], chunk: EncodedChunk | None = None
    ) -> EncodedChunk:
        """Encode ``(position, decoded JSON object)`` pairs.

        Lines of the chunk's accepted events keep input order within each path; InfluxDB does
        not depend on the order of points in a batch (only duplicates of one point would, and
        the later one wins in both paths' output order).
        """
        chunk = chunk if chunk is not None else EncodedChunk()
        is_reading = [type(obj) is dict and obj.get("type") == "reading" for _, obj in numbered]
        readings = [obj for (_, obj), reading in zip(numbered, is_reading, strict=True) if reading]
        fast = iter(_format_plain_readings(_frame_from_objects(readings)) if readings else ())
        lines, counts = chunk.lines, chunk.accepted_by_type
        fast_count = 0
        for (position, obj), reading in zip(numbered, is_reading, strict=True):
            if reading and (line := next(fast)) is not None:
                lines.append(line)
                fast_count += 1
                continue
            try:
                event = self._decoder.decode(obj)
                lines.append(self._formatter.format(event))
            except EventError as exc:
                chunk.rejections.append(Rejection(position, exc.field, exc.reason))
                continue
            except ValueError as exc:  # a value line protocol cannot carry
                chunk.rejections.append(Rejection(position, None, str(exc)))
                continue
            counts[event.type] += 1
        counts[EventType.READING] += fast_count
        chunk.rejections.sort(key=lambda rejection: rejection.position)
        return chunk


def _frame_from_objects(readings: list[dict[str, Any]]) -> pl.DataFrame:
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
        columns[key] = pl.Series(key, values, dtype=dtype)
    frame = pl.DataFrame(columns)
    if odd_rows:
        return frame.with_columns(odd=pl.any_horizontal(*odd_rows))
    return frame.with_columns(odd=pl.lit(False))


def _format_ndjson_readings(raws: list[bytes]) -> list[str | None] | None:
    """Line protocol for each raw line that is a reading the columnar path can judge, ``None``
    for the other lines; ``None`` for the whole chunk when polars cannot read it (a line of
    bad JSON, a numeric string, a value of an unexpected type: polars refuses the chunk)."""
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
    frame = frame.with_columns(odd=odd | (pl.col("type") != "reading").fill_null(True))
    return _format_plain_readings(frame)


def _format_plain_readings(frame: pl.DataFrame) -> list[str | None]:
    """Line protocol for each row the columnar path can judge, ``None`` for the others."""
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
        // 1000  # microseconds, as the per-event path keeps
        * 1000
    )
    checks = [
        ~pl.col("odd"),
        ts.str.contains(_TS_SHAPE),
        ts_ns.is_not_null(),
        station.str.contains(_PLAIN_STATION),
        connector.is_between(0, _MAX_CONNECTOR_ID),
        session.is_null() | (session.str.contains(_PLAIN_SESSION) & ~session.str.contains(_BLANK)),
        session.is_not_null()
        | pl.any_horizontal(*(pl.col(k).is_not_null() for k in READING_FIELDS)),
    ]
    for key in READING_FIELDS:
        low, high = _RANGES[key]
        value = pl.col(key)
        check = value.is_finite()
        if low is not None:
            check &= value >= low
        if high is not None:
            check &= value <= high
        checks.append(value.is_null() | check)
    formatted = frame.select(
        ok=pl.all_horizontal(*checks).fill_null(False),
        line=pl.concat_str(
            pl.lit("reading,connector_id="),
            connector.cast(pl.String),
            pl.lit(",station_id="),
            station,
            pl.lit(" "),
            pl.concat_str(
                *(pl.lit(f"{key}=") + pl.col(key).cast(pl.String) for key in READING_FIELDS),
                pl.lit('session_id="') + session + pl.lit('"'),
                separator=",",
                ignore_nulls=True,
            ),
            pl.lit(" "),
            ts_ns.cast(pl.String),
        ),
    )
    # Rows that fail any check become None: the caller takes them the per-event way.
    return formatted.select(pl.when(pl.col("ok")).then(pl.col("line")))["line"].to_list()
