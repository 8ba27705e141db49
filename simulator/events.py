"""Events as JSON Lines (CONTRACTS.md section 1), buffered with the key that orders the file.

Each line is stored with the true time it was sent. The file is ordered by that time, then by
station, then by the order the station produced its events, so a charger with a faulty clock
still appears where its message arrived, carrying its faulty ``ts``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

IntArray = npt.NDArray[np.int64]


def format_ts_ms_array(ms: IntArray) -> list[str]:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-24T08:15:30.250Z``."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC")
    return list(text.tolist())


def format_ts_ms(ms: int) -> str:
    """One time in milliseconds since the epoch, as ``format_ts_ms_array`` writes it."""
    return format_ts_ms_array(np.array([ms], dtype=np.int64))[0]


class EventBuffer:
    """Lines of one batch of stations with their sort keys, in the order they were produced.

    Lines are kept packed in one byte array, newline-terminated (orjson's per-object buffers
    are several times larger than the line), with the sent time, station rank and position of
    each.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._sent_ms: list[IntArray] = []
        self._rank: list[IntArray] = []
        self._offset: list[IntArray] = []
        self._count = 0
        self.counts: Counter[str] = Counter()  # lines by event type

    def __len__(self) -> int:
        return self._count

    def add(self, sent_ms: int, rank: int, event: dict[str, Any]) -> None:
        self.add_lines(
            np.array([sent_ms], dtype=np.int64), rank, [orjson.dumps(event)], event["type"]
        )

    def add_lines(self, sent_ms: IntArray, rank: int, lines: list[bytes], event_type: str) -> None:
        if not lines:
            return
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
        self._offset.append(len(self._data) + np.cumsum(lengths) - lengths)
        self._data += b"\n".join(lines)
        self._data += b"\n"
        self._sent_ms.append(sent_ms.astype(np.int64, copy=False))
        self._rank.append(np.full(len(lines), rank, dtype=np.int64))
        self._count += len(lines)
        self.counts[event_type] += len(lines)

    def write_sorted(self, out: BinaryIO) -> None:
        """Write the lines ordered by (sent time, station rank, production order), each
        prefixed by a fixed-width key so that sorted runs merge by plain byte comparison."""
        if not self._count:
            return
        sent = np.concatenate(self._sent_ms)
        rank = np.concatenate(self._rank)
        starts = np.concatenate(self._offset)
        ends = np.append(starts[1:], len(self._data))
        order = np.lexsort((np.arange(sent.size), rank, sent))
        data = memoryview(self._data)
        sent_ms, ranks, begin, end = sent.tolist(), rank.tolist(), starts.tolist(), ends.tolist()
        write = out.write
        for i in order.tolist():
            write(b"%015d%07d%010d" % (sent_ms[i], ranks[i], i))
            write(data[begin[i] : end[i]])  # the line with its newline


KEY_WIDTH = 32


def encode_readings(
    ts: Sequence[str],
    station_id: str,
    connector_id: int,
    session_id: str | None,
    columns: dict[str, list[Any]],
) -> list[bytes]:
    """One ``reading`` line per row; columns that were not measured are left out entirely, and
    a value of None (not measured at that reading) is left out of its line."""
    head: tuple[str, ...] = ("type", "ts", "station_id", "connector_id")
    fixed: list[Any] = [repeat("reading"), ts, repeat(station_id), repeat(connector_id)]
    if session_id is not None:
        head += ("session_id",)
        fixed.append(repeat(session_id))
    keys = head + tuple(columns)
    dumps = orjson.dumps
    rows = zip(*fixed, *columns.values(), strict=False)
    if any(None in values for values in columns.values()):
        return [
            dumps({k: v for k, v in zip(keys, row, strict=False) if v is not None}) for row in rows
        ]
    return [dumps(dict(zip(keys, row, strict=False))) for row in rows]
