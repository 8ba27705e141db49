"""From raw JSON events to line protocol, a chunk at a time.

Readings are nearly all of the traffic, so they take a columnar path: a chunk of readings is
checked and formatted with polars expressions instead of one Python object per reading, which
is several times cheaper (bench/ingest.py). The columnar checks live in ``chargewatch.columns``
(file detection uses them too) and only take what they can judge exactly; everything else
(numeric strings, unusual identifiers, every invalid value) goes through ``EventDecoder`` and
``LineFormatter`` one event at a time, which give the same result or the precise reason for a
rejection. The two paths are tested to agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from chargewatch.columns import (
    judge_readings,
    reading_frame_from_ndjson,
    reading_frame_from_objects,
)
from chargewatch.errors import EventError
from chargewatch.events import MAX_LINE_BYTES, EventDecoder, EventType
from chargewatch.schema import READING_FIELDS, LineFormatter, reading_point_times


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
        if taken:  # a batch without readings says so by not naming them
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
        fast = iter(
            _format_plain_readings(reading_frame_from_objects(readings)) if readings else ()
        )
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
        if fast_count:
            counts[EventType.READING] += fast_count
        chunk.rejections.sort(key=lambda rejection: rejection.position)
        return chunk


def _format_ndjson_readings(raws: list[bytes]) -> list[str | None] | None:
    """Line protocol for each raw line that is a reading the columnar path can judge, ``None``
    for the other lines; ``None`` for the whole chunk when polars cannot read it."""
    frame = reading_frame_from_ndjson(raws)
    return None if frame is None else _format_plain_readings(frame)


def _format_plain_readings(frame: pl.DataFrame) -> list[str | None]:
    """Line protocol for each row the columnar path can judge, ``None`` for the others."""
    station, session, connector = (
        pl.col("station_id"),
        pl.col("session_id"),
        pl.col("connector_id"),
    )
    judged = judge_readings(frame)
    # Each point's time carries the reading's identity, as LineFormatter gives it (schema.py).
    point_ns = reading_point_times(
        judged["ts_ns"].fill_null(0).to_numpy(),
        judged.select(READING_FIELDS).to_numpy(),
        judged["session_id"].cast(pl.Binary).to_list(),
    )
    formatted = judged.with_columns(point_ns=pl.Series(point_ns)).select(
        ok=pl.col("ok"),
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
            pl.col("point_ns").cast(pl.String),
        ),
    )
    # Rows that fail any check become None: the caller takes them the per-event way.
    return formatted.select(pl.when(pl.col("ok")).then(pl.col("line")))["line"].to_list()
