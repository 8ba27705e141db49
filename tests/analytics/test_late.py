"""Readings that arrive after their session was scored are judged with it (``analytics.late``).

The file path scores a chunk of stopped sessions and lets go of them; a station that uploads
what it buffered long after the stop used to see those readings counted and dropped. Here a
session's faulty readings arrive after several hand-outs: the chunked run must find what a run
holding the whole file at once finds, and say that the verdict was revised.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson

from analytics.pipeline import DetectReport, detect_stream
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag
from ingest.pseudonym import Pseudonymizer

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LATE = "late-session"


def stamp(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def session(station: str, sid: str, begin: float, minutes: int) -> list[dict[str, object]]:
    """A plain 7 kW AC session: start, a reading a minute (register and power agree), stop."""
    lines: list[dict[str, object]] = [
        {"type": "session_start", "ts": stamp(begin), "station_id": station, "connector_id": 1,
         "session_id": sid, "id_tag": f"tag-{sid}", "meter_start_wh": 0},
        {"type": "status", "ts": stamp(begin), "station_id": station, "connector_id": 1,
         "status": "Charging"},
    ]  # fmt: skip
    for m in range(minutes + 1):
        lines.append(
            {"type": "reading", "ts": stamp(begin + m), "station_id": station, "connector_id": 1,
             "session_id": sid, "energy_wh": round(7000 * m / 60), "power_w": 7000}
        )  # fmt: skip
    energy = round(7000 * minutes / 60)
    lines += [
        {"type": "session_stop", "ts": stamp(begin + minutes), "station_id": station,
         "connector_id": 1, "session_id": sid, "meter_stop_wh": energy, "reason": "EVDisconnected"},
        {"type": "status", "ts": stamp(begin + minutes), "station_id": station, "connector_id": 1,
         "status": "Available"},
    ]  # fmt: skip
    return lines


def fleet() -> bytes:
    """The late session, then eight others (several hand-outs of two), then the late
    session's buffered readings: its register leaps by 900 kWh and falls back, in a minute."""
    lines = session("ST-LATE", LATE, 0, 60)
    for k in range(8):
        lines += session(f"ST-{k}", f"other-{k}", 70 + 10 * k, 40)
    for m, energy in ((30.5, 903_500), (31.5, 903_600)):
        lines.append(
            {"type": "reading", "ts": stamp(m), "station_id": "ST-LATE", "connector_id": 1,
             "session_id": LATE, "energy_wh": energy, "power_w": 7000}
        )  # fmt: skip
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


class _Pipe(io.BytesIO):
    """A stream that can be read once only, like standard input."""

    def seekable(self) -> bool:
        return False


def run(stream: io.BytesIO, max_sessions: int) -> tuple[list[Flag], DetectReport]:
    return detect_stream(
        stream, decoder=EventDecoder(Pseudonymizer(b"k" * 32)), max_sessions=max_sessions
    )


def pairs(flags: list[Flag]) -> set[tuple[str | None, str]]:
    return {(f.session_id, f.kind) for f in flags}


def test_late_readings_are_judged_with_their_session() -> None:
    whole, whole_report = run(io.BytesIO(fleet()), 10_000)
    late_kinds = {kind for sid, kind in pairs(whole) if sid == LATE}
    assert late_kinds, "held whole, the session's leap is a meter fault"
    assert whole_report.late_readings == 0

    chunked, report = run(io.BytesIO(fleet()), 2)
    assert report.late_readings == 2 and report.late_sessions_judged == 1
    assert pairs(chunked) == pairs(whole)
    revised = [f for f in chunked if f.session_id == LATE]
    assert revised and all("verdict revised: 2 readings arrived" in f.reason for f in revised)
    assert "2 late readings (1 sessions judged again" in report.summary()
    assert sum(report.flags_by_kind.values()) == len(chunked)


def test_a_stream_read_once_counts_late_readings_it_cannot_judge() -> None:
    flags, report = run(_Pipe(fleet()), 2)
    assert report.late_readings == 2 and report.late_sessions_judged == 0
    assert not {kind for sid, kind in pairs(flags) if sid == LATE}
    assert "2 late readings left out" in report.summary()
