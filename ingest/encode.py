"""From raw JSON events to line protocol, a chunk at a time.

Readings are nearly all of the traffic, so they take a columnar path: a chunk of readings is
checked and formatted with polars expressions instead of one Python object per reading, which
is several times cheaper (bench/ingest.py). The columnar checks live in ``chargewatch.columns``
(file detection uses them too) and only take what they can judge exactly; everything else
(numeric strings, unusual identifiers, every invalid value) goes through ``EventDecoder`` and
``LineFormatter`` one event at a time, which give the same result or the precise reason for a
rejection. The two paths are tested to agree.

Every reading gets its receive time (``chargewatch.schema.ReceiveClock``): a file or batch is
in order of arrival, and its receive times are estimated from its own stamps (each body of a group
from its own), strictly increasing from line to line of each station, so they also keep the order
of arrival that InfluxDB's time order loses. A reading stamped far from it (its station's clock is
off, or it came late) is also indexed by it (a ``reading_rx`` point: ``schema.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson
import polars as pl

from chargewatch.columns import (
    JudgedReadings,
    judge,
    judge_ndjson,
    reading_frame_from_objects,
)
from chargewatch.errors import EventError
from chargewatch.events import MAX_LINE_BYTES, EventDecoder, EventType
from chargewatch.schema import (
    READING_FIELDS,
    RX_BAND_NS,
    RX_FIELD,
    LineFormatter,
    ReceiveClock,
    reading_point_times,
    rx_line,
)


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
    """Line protocol for the accepted events of a chunk, in input order, and the rejections.
    ``accepted_apart``: the type of each event accepted one at a time, by position; every
    other event neither rejected nor there is a reading the columnar path took (so bodies
    encoded together count their own events by type without reading them again)."""

    lines: list[str] = field(default_factory=list)
    accepted_by_type: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    accepted_apart: dict[int, str] = field(default_factory=dict)


def refused_field(obj: object, message: str) -> str | None:
    """The key of event ``obj`` whose text a line-protocol refusal quotes (it names the text by
    its ``repr``: "tag key or value 'CP\\\\' ends with a backslash ..."), so the rejection names
    the field as every other does; None when no value of the event is the one quoted."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, str) and repr(value) in message:
                return str(key)
    return None


class ChunkEncoder:
    """Validates, pseudonymizes and formats chunks of events as line protocol."""

    def __init__(self, decoder: EventDecoder) -> None:
        self._decoder = decoder
        self._clock = ReceiveClock()
        self._formatter = LineFormatter(self._clock)

    def encode_lines(
        self, numbered: Sequence[tuple[int, bytes]], *, streams: Sequence[int] = ()
    ) -> EncodedChunk:
        """Encode ``(position, raw JSON)`` pairs; bad JSON is rejected with its position.
        ``streams``: the positions (increasing, as the pairs' are) where a body posted apart
        from the events before it begins: its receive times are estimated from its own
        stamps (``ReceiveClock.stream_us``)."""
        return self.encode_raw(
            [pos for pos, _ in numbered], [raw for _, raw in numbered], streams=streams
        )

    def encode_raw(
        self, positions: Sequence[int], raws: Sequence[bytes], *, streams: Sequence[int] = ()
    ) -> EncodedChunk:
        """``encode_lines`` for the positions and the raw JSON given apart (as
        ``iter_jsonl_blocks`` reads a file)."""
        chunk = EncodedChunk()
        kept_at = list(positions)
        kept = list(raws)
        if kept and max(map(len, kept)) > MAX_LINE_BYTES:  # rare: lines iter_jsonl cut short
            long = {i for i, raw in enumerate(kept) if len(raw) > MAX_LINE_BYTES}
            chunk.rejections.extend(
                Rejection(kept_at[i], None, f"line is longer than {MAX_LINE_BYTES} bytes")
                for i in sorted(long)
            )
            kept_at = [pos for i, pos in enumerate(kept_at) if i not in long]
            kept = [raw for i, raw in enumerate(kept) if i not in long]
        judged = judge_ndjson(kept) if kept else None
        if judged is None:  # polars could not read the chunk: take it object by object
            objects = self._loads(list(zip(kept_at, kept, strict=True)), chunk)
            return self.encode_objects(objects, chunk, streams=streams)
        rx = self._clock.stream_us(  # one per kept line
            _stamps(judged.ts_ns, judged.has_ts, self._clock),
            stations=_station_codes(judged.frame["station_id"].to_list()),
            streams=np.searchsorted(kept_at, streams) if streams else None,
        )
        fast, side = _format_plain_readings(judged, rx)
        taken = [line for line in fast if line is not None]
        chunk.lines.extend(taken)
        chunk.lines.extend(side)
        if taken:  # a batch without readings says so by not naming them
            chunk.accepted_by_type[EventType.READING] += len(taken)
        if len(taken) == len(fast):
            return chunk
        slow = [i for i, line in enumerate(fast) if line is None]
        slow_rx = {kept_at[i]: int(rx[i]) for i in slow}
        objects = self._loads([(kept_at[i], kept[i]) for i in slow], chunk)
        return self.encode_objects(objects, chunk, rx_us=[slow_rx[pos] for pos, _ in objects])

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
        self,
        numbered: Sequence[tuple[int, Any]],
        chunk: EncodedChunk | None = None,
        *,
        rx_us: Sequence[int] | None = None,
        streams: Sequence[int] = (),
    ) -> EncodedChunk:
        """Encode ``(position, decoded JSON object)`` pairs; ``rx_us``: their receive times
        (estimated from the readings' stamps when not given, each body of ``streams`` apart:
        ``encode_lines``).

        Lines of the chunk's accepted events keep input order within each path; InfluxDB does
        not depend on the order of points in a batch (only duplicates of one point would, and
        the later one wins in both paths' output order).
        """
        chunk = chunk if chunk is not None else EncodedChunk()
        is_reading = [type(obj) is dict and obj.get("type") == "reading" for _, obj in numbered]
        readings = [obj for (_, obj), reading in zip(numbered, is_reading, strict=True) if reading]
        judged = judge(reading_frame_from_objects(readings)) if readings else None
        if rx_us is None:
            begins = np.searchsorted([position for position, _ in numbered], streams)
            rx_us = self._stream_rx(judged, numbered, is_reading, begins)
        reading_rx = np.asarray(
            [rx for rx, reading in zip(rx_us, is_reading, strict=True) if reading], dtype=np.int64
        )
        formatted, side = ([], []) if judged is None else _format_plain_readings(judged, reading_rx)
        fast = iter(formatted)
        lines, counts, apart = chunk.lines, chunk.accepted_by_type, chunk.accepted_apart
        lines.extend(side)
        fast_count = 0
        for (position, obj), reading, rx in zip(numbered, is_reading, rx_us, strict=True):
            if reading and (line := next(fast)) is not None:
                lines.append(line)
                fast_count += 1
                continue
            try:
                event = self._decoder.decode(obj)
                lines.extend(self._formatter.format_lines(event, rx_us=rx))
            except EventError as exc:
                chunk.rejections.append(Rejection(position, exc.field, exc.reason))
                continue
            except ValueError as exc:  # a value line protocol cannot carry
                chunk.rejections.append(Rejection(position, refused_field(obj, str(exc)), str(exc)))
                continue
            counts[event.type] += 1
            apart[position] = event.type
        if fast_count:
            counts[EventType.READING] += fast_count
        chunk.rejections.sort(key=lambda rejection: rejection.position)
        return chunk

    def _stream_rx(
        self,
        judged: JudgedReadings | None,
        numbered: Sequence[tuple[int, Any]],
        is_reading: list[bool],
        streams: np.ndarray,
    ) -> list[int]:
        """Receive times of a batch of objects, from the stamps of its readings (the others
        take their neighbours'), by station (``ReceiveClock.stream_us``)."""
        stamps = np.zeros(len(is_reading), dtype=np.int64)
        has_ts = np.zeros(len(is_reading), dtype=bool)
        if judged is not None:
            where = np.flatnonzero(is_reading)
            stamps[where] = judged.ts_ns
            has_ts[where] = judged.has_ts
        station_ids = [
            station if type(obj) is dict and type(station := obj.get("station_id")) is str else None
            for _, obj in numbered
        ]
        rx = self._clock.stream_us(
            _stamps(stamps, has_ts, self._clock),
            stations=_station_codes(station_ids),
            streams=streams if streams.size else None,
        )
        return [int(value) for value in rx.tolist()]


def _stamps(ts_ns: np.ndarray, has_ts: np.ndarray, clock: ReceiveClock) -> np.ndarray:
    """Each row's stamp for the receive clock: its own where the columnar checks read one
    (``has_ts``), else the last before it, else the first after it; where no row has one, the
    clock's latest receive time."""
    if has_ts.all():
        return ts_ns
    if not has_ts.any():
        return np.full(ts_ns.size, clock.current_us() * 1000, dtype=np.int64)
    rows = np.flatnonzero(has_ts)
    # each row's latest row with a stamp, up to it; the first such row for those before it
    source = np.maximum.accumulate(np.where(has_ts, np.arange(ts_ns.size), rows[0]))
    return ts_ns[source]


def _station_codes(station_ids: Sequence[str | None]) -> tuple[np.ndarray, list[str | None]]:
    """Each row's station as a code into the names beside it (``None``, code 0: a row
    without one), as ``ReceiveClock.stream_us`` takes them."""
    # in order of first appearance, None first; dict.fromkeys finds them without a Python loop
    names = list(dict.fromkeys([None, *station_ids]))
    index = dict(zip(names, range(len(names)), strict=True))
    codes = np.fromiter(map(index.__getitem__, station_ids), dtype=np.int64, count=len(station_ids))
    return codes, names


def _reading_line() -> pl.Expr:
    """A reading's line of line protocol from its checked columns, its point's time
    (``point_ns``) and receive time (``rx_us``); null where the row is not ``ok``."""
    fields = pl.concat_str(
        *(pl.lit(f"{key}=") + pl.col(key).cast(pl.String) for key in READING_FIELDS),
        pl.lit('session_id="') + pl.col("session_id") + pl.lit('"'),
        pl.lit(f"{RX_FIELD}=") + pl.col("rx_us").cast(pl.String) + pl.lit("i"),
        separator=",",
        ignore_nulls=True,
    )
    line = pl.concat_str(
        pl.lit(f"{EventType.READING},connector_id="),
        pl.col("connector_id").cast(pl.String),
        pl.lit(",station_id="),
        pl.col("station_id"),
        pl.lit(" "),
        fields,
        pl.lit(" "),
        pl.col("point_ns").cast(pl.String),
    )
    return pl.when(pl.col("ok")).then(line)


_READING_LINE = _reading_line()  # built once, not again for every HTTP batch of a thousand rows


def _format_plain_readings(
    judged: JudgedReadings, rx_us: np.ndarray
) -> tuple[list[str | None], list[str]]:
    """Line protocol for each row the columnar path can judge, ``None`` for the others; and the
    ``reading_rx`` points of those stamped outside ``RX_BAND_NS`` of their receive time.

    One polars query formats every line (its cost is mostly fixed per query, and an HTTP batch
    is a thousand events); the few ``reading_rx`` points are made from those lines."""
    # Each point's time carries the reading's identity, as LineFormatter gives it (schema.py).
    frame = judged.frame
    point_ns = reading_point_times(
        judged.ts_ns, judged.values, frame["session_id"].cast(pl.Binary).to_list()
    )
    # beside the judged columns (the query reads only those it names): no copy of them first
    columns = frame.hstack(
        [pl.Series("point_ns", point_ns), pl.Series("rx_us", rx_us, dtype=pl.Int64)]
    )
    # Rows that fail any check become None: the caller takes them the per-event way.
    lines: list[str | None] = columns.lazy().select(_READING_LINE).collect().to_series().to_list()
    ok = judged.ok
    far = np.flatnonzero(ok & (np.abs(point_ns - rx_us * 1000) > RX_BAND_NS))
    side = []
    for i in far.tolist():
        head, rest = cast("str", lines[i]).split(" ", 1)
        fields_text = rest.rsplit(" ", 1)[0]
        tags = head[len(EventType.READING) :]
        side.append(rx_line(tags, fields_text, int(point_ns[i]), int(rx_us[i])))
    return lines, side
