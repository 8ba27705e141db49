"""Sessions of an event file judged again for readings that arrived after they were scored.

The file path scores sessions a chunk at a time (``analytics.pipeline.detect_chunks``): once
enough sessions have stopped, those that stopped before the previous hand-out are scored and
let go of, so memory follows the chunk, not the file. A reading that arrives later still (a
station uploading hours of buffered readings after it reconnects, or one whose clock is so far
off that its data sorts into another day) finds its session gone. Dropping it would hide
exactly the faults that show late: a clock fault's readings, a meter that jumped while the
station was offline.

So the assembler notes which sessions got late readings and on which stations
(``Assembler.late_sessions``), and, when the input can be read again (a file, not a pipe), a
second pass over it gathers every event of just those sessions (their starts, stops and
readings, whenever they arrived) and the statuses, authorizations and station events of their
stations, assembles them as the first pass would have had it held them, and scores them with
the detectors fitted in the first pass. Their new verdicts replace the old ones for the kinds
judged one session at a time, and every revised flag says how many readings came late, as the
scheduled job's flags do (``analytics.window``). The kinds that compare sessions with each other
judge spans (starts and stops) only, which late readings do not change.

The second pass costs one more decoding of the file, and only when late readings beyond one
hand-out occurred; its memory is that of the late sessions alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import IO

import numpy as np

from analytics.assemble import Assembler, ReadingColumns
from analytics.detectors import detect
from analytics.detectors.base import Detector
from analytics.flags import flags_from_results
from chargewatch.events import Authorize, Event, EventDecoder, StationEvent, StatusChange
from chargewatch.flags import Flag

__all__ = ["judge_late_again", "noted", "revise"]


def noted(flags: list[Flag], late: Mapping[str, int]) -> list[Flag]:
    """``flags`` whose sessions were judged again for late readings (``late``: session id ->
    how many came late) saying so in their reasons; the file path and the scheduled job
    (``analytics.window``) word it alike."""
    if not late:
        return flags
    out = []
    for flag in flags:
        count = late.get(flag.session_id or "", 0)
        if count:
            note = f" (verdict revised: {count} readings arrived after the session was judged)"
            flag = dataclasses.replace(flag, reason=flag.reason + note)
        out.append(flag)
    return out


def judge_late_again(
    stream: IO[bytes],
    decoder: EventDecoder,
    late: Mapping[str, int],
    stations: set[str],
    detectors: Sequence[Detector],
    *,
    now_ns: int,
) -> list[Flag]:
    """The flags of the ``late`` sessions (id -> readings that came late) of ``stations``,
    scored again over every event of theirs in ``stream`` (read again from its start) by the
    fitted per-session ``detectors``; each flag's reason says it was revised."""
    # imported here: analytics.pipeline imports this module
    from analytics.pipeline import DetectReport, decode_chunks

    assembler = Assembler()
    stream.seek(0)
    for chunk in decode_chunks(stream, decoder, DetectReport()):
        readings = _readings_of(chunk.readings, late)
        events = [(n, e) for n, e in chunk.events if _concerns(e, late, stations)]
        assembler.register_first_seen(readings, events)
        for number, event in events:
            assembler.add(number, event)
        assembler.add_readings(readings)
    per_session = [d for d in detectors if d.per_row]
    flags: list[Flag] = []
    for batch in assembler.finish():
        rows = np.array([sid is not None and sid in late for sid in batch.session_id], dtype=bool)
        kept = batch.take(rows)
        if kept.n_sessions:
            results = detect(kept, now_ns=now_ns, detectors=per_session)
            flags += flags_from_results(kept, results)
    return noted(flags, late)


def revise(
    flags: list[Flag], revised: list[Flag], late: Mapping[str, int], detectors: Sequence[Detector]
) -> list[Flag]:
    """``flags`` of the first pass with those of the late sessions for the per-session kinds
    of ``detectors`` (every such kind may change, and may no longer be flagged) replaced by
    ``revised`` (from ``judge_late_again`` with the same detectors). Flags of kinds judged
    across sessions are kept: late readings leave their spans as they were."""
    again = {str(d.kind) for d in detectors if d.per_row}
    kept = [f for f in flags if f.session_id not in late or f.kind not in again]
    return kept + revised


def _readings_of(readings: ReadingColumns, late: Mapping[str, int]) -> ReadingColumns:
    """The readings of the ``late`` sessions (same codes)."""
    wanted = np.array([sid in late for sid in readings.session_ids], dtype=bool)
    has = readings.session >= 0
    keep = np.zeros(len(readings), dtype=bool)
    if wanted.size:
        keep[has] = wanted[readings.session[has]]
    return ReadingColumns(
        readings.arrival[keep],
        readings.ts_ns[keep],
        readings.key[keep],
        readings.keys,
        readings.session[keep],
        readings.session_ids,
        tuple(column[keep] for column in readings.values),
    )


def _concerns(event: Event, late: Mapping[str, int], stations: set[str]) -> bool:
    """An event the late sessions' verdicts depend on: theirs, or their stations' statuses,
    authorizations and station events (a declared rating, a reboot)."""
    if isinstance(event, StatusChange | Authorize | StationEvent):
        return event.station_id in stations
    session_id = getattr(event, "session_id", None)
    return session_id is not None and session_id in late
