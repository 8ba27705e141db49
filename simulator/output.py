"""Writing the events file in global time order without holding the whole fleet in memory.

Stations are simulated in batches; each batch is sorted and spooled to a temporary run file
whose lines start with a fixed-width sort key. The runs are then merged (a k-way merge by plain
byte comparison of those keys) into the events file, with the keys stripped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from .events import KEY_WIDTH, EventBuffer, format_ts_ms

_BUFFER_BYTES = 1 << 20


class SortedRuns:
    """Sorted runs of keyed lines in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: list[Path] = []

    def write_run(self, buffer: EventBuffer) -> None:
        if not len(buffer):
            return
        path = self.directory / f"run-{len(self.paths):05d}.jsonl"
        with path.open("wb", buffering=_BUFFER_BYTES) as out:
            buffer.write_sorted(out)
        self.paths.append(path)

    def merge_into(self, target: Path) -> int:
        """Merge all runs into ``target``; returns the number of lines written."""
        count = 0
        with ExitStack() as stack, target.open("wb", buffering=_BUFFER_BYTES) as out:
            runs = [stack.enter_context(p.open("rb", buffering=_BUFFER_BYTES)) for p in self.paths]
            for line in heapq.merge(*runs):
                out.write(line[KEY_WIDTH:])
                count += 1
        return count


def write_labels(path: Path, labels: Iterable[dict[str, Any]]) -> int:
    """Labels as JSON Lines (CONTRACTS.md section 2), ordered by start, station, connector."""
    rows = sorted(
        labels,
        key=lambda x: (
            x["start_ms"],
            x["station_id"],
            x["connector_id"],
            x["kind"],
            x["session_id"] or "",
        ),
    )
    with path.open("wb") as out:
        for row in rows:
            out.write(
                orjson.dumps(
                    {
                        "session_id": row["session_id"],
                        "station_id": row["station_id"],
                        "connector_id": row["connector_id"],
                        "kind": row["kind"],
                        "start": format_ts_ms(row["start_ms"]),
                        "end": format_ts_ms(row["end_ms"]),
                    }
                )
            )
            out.write(b"\n")
    return len(rows)
