"""The file path decodes readings as columns: it must give what decoding line by line gives."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import orjson
import polars as pl
import pytest

from analytics.pipeline import (
    Detection,
    DetectReport,
    decode_chunks,
    decode_events,
    detect_chunks,
    detect_events,
)
from chargewatch.errors import EventError
from chargewatch.events import MAX_LINE_BYTES, EventDecoder, Reading, parse_ts
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate

# Lines the columnar checks do not take, or that are not valid at all, slipped into the fleet.
_ODD_LINES = [
    b"not json at all",
    b"",
    b'{"type":"reading","ts":"2026-11-23T01:00:00Z","station_id":"ODD-1","connector_id":1,'
    b'"energy_wh":"120.5"}',  # a numeric string: valid, the per-event way
    b'{"type":"reading","ts":"2026-11-23T01:00:01Z","station_id":"\xc3\xa9t\xc3\xa9",'
    b'"connector_id":1,"power_w":10}',  # not ASCII: valid, the per-event way
    b'{"type":"reading","ts":"2026-11-23T01:00:02Z","station_id":"ODD-1","connector_id":1,'
    b'"soc_pct":140}',  # out of range
    b'{"type":"reading","ts":"2026-11-23T01:00:03","station_id":"ODD-1","connector_id":1,'
    b'"power_w":1}',  # no zone
    b'{"type":"reading","ts":"2026-11-23T01:00:04Z","station_id":"ODD-1","connector_id":true,'
    b'"power_w":1}',
    b'{"type":"reading","ts":"2026-11-23T01:00:05Z","station_id":"ODD-1","connector_id":2}',
    b'{"type":"teleport","ts":"2026-11-23T01:00:06Z"}',
    b'{"type":"reading","ts":"2026-11-23T01:00:07Z","station_id":"ODD-2","connector_id":1,'
    b'"power_w":5,"pad":"' + b"x" * MAX_LINE_BYTES + b'"}',  # over-long
    b"[1, 2, 3]",
]
# Order of first sight decides row order: a reading brings a connector and a session before a
# status and the session's start (on another connector) do; orphan readings on both follow.
_FIRST_SIGHT = [
    b'{"type":"reading","ts":"2026-11-23T02:00:00Z","station_id":"NEW-1","connector_id":1,'
    b'"session_id":"early-1","energy_wh":10}',
    b'{"type":"status","ts":"2026-11-23T02:00:00Z","station_id":"NEW-2","connector_id":1,'
    b'"status":"Available"}',
    b'{"type":"session_start","ts":"2026-11-23T02:00:01Z","station_id":"NEW-2",'
    b'"connector_id":1,"session_id":"early-1","id_tag":"T1"}',
    b'{"type":"reading","ts":"2026-11-23T02:00:02Z","station_id":"NEW-2","connector_id":2,'
    b'"energy_wh":10}',
    b'{"type":"reading","ts":"2026-11-23T02:00:03Z","station_id":"NEW-1","connector_id":2,'
    b'"energy_wh":10}',
]


@pytest.fixture(scope="module")
def fleet_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("fleet")
    config = SimulationConfig(
        stations=12,
        hours=12.0,
        seed=3,
        start=datetime(2026, 11, 23, tzinfo=UTC),
        anomaly_rate=0.5,
    )
    summary = simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    assert summary.labels_by_kind["clock_fault"] > 0
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    # Odd lines spread through the file; a late reading of the first session after its stop.
    step = len(lines) // (len(_ODD_LINES) + 1)
    for k, odd in enumerate(_ODD_LINES, start=1):
        lines.insert(k * step, odd)
    lines[step // 2 : step // 2] = _FIRST_SIGHT
    first = next(orjson.loads(line) for line in lines if b'"session_start"' in line)
    late = {
        "type": "reading",
        "ts": "2026-11-23T11:59:00Z",
        "station_id": first["station_id"],
        "connector_id": first["connector_id"],
        "session_id": first["session_id"],
        "energy_wh": 1.0,
    }
    lines.append(orjson.dumps(late))
    return b"\n".join(lines) + b"\n"


def _run_per_event(
    data: bytes, max_sessions: int
) -> tuple[list[Detection], DetectReport, list[str]]:
    report, rejected = DetectReport(), []
    events = decode_events(
        io.BytesIO(data),
        EventDecoder(Pseudonymizer(b"k" * 32)),
        report,
        lambda n, e: rejected.append(f"{n}: {e}"),
    )
    detections = list(detect_events(events, report=report, max_sessions=max_sessions))
    return detections, report, rejected


def _run_chunked(
    data: bytes, max_sessions: int, chunk_lines: int
) -> tuple[list[Detection], DetectReport, list[str], int]:
    report, rejected = DetectReport(), []
    chunks = list(
        decode_chunks(
            io.BytesIO(data),
            EventDecoder(Pseudonymizer(b"k" * 32)),
            report,
            lambda n, e: rejected.append(f"{n}: {e}"),
            chunk_lines=chunk_lines,
        )
    )
    detections = list(detect_chunks(chunks, report=report, max_sessions=max_sessions))
    return detections, report, rejected, sum(len(chunk.readings) for chunk in chunks)


@pytest.mark.parametrize(
    ("max_sessions", "chunk_lines"), [(10_000, 50_000), (10_000, 37), (4, 1_000), (4, 5)]
)
def test_chunked_decoding_gives_the_same_batches_and_flags(
    fleet_bytes: bytes, max_sessions: int, chunk_lines: int
) -> None:
    expected, expected_report, expected_rejected = _run_per_event(fleet_bytes, max_sessions)
    got, report, rejected, as_columns = _run_chunked(fleet_bytes, max_sessions, chunk_lines)
    # Every format of the mixed fleet is read as columns, also in a chunk with bad lines: only
    # the lines that are not valid readings (and the odd ones) are decoded one by one.
    assert as_columns > 0.9 * sum(b'"reading"' in line for line in fleet_bytes.splitlines())

    assert rejected == expected_rejected
    assert len(rejected) == 8
    assert report.late_readings == expected_report.late_readings
    assert report.late_readings == (1 if max_sessions < 10_000 else 0)
    for name in ("lines", "rejected", "sessions", "orphan_segments", "now_ns", "flags_by_kind"):
        assert getattr(report, name) == getattr(expected_report, name), name
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        for name in theirs.batch.__dataclass_fields__:
            if name != "extra":
                np.testing.assert_array_equal(
                    getattr(mine.batch, name), getattr(theirs.batch, name), err_msg=name
                )
        assert mine.flags == theirs.flags
    assert sum(len(d.flags) for d in got) > 0


def test_rejections_name_the_line_and_the_reason() -> None:
    data = b'{"type":"reading","ts":"2026-11-23T01:00:00Z","station_id":"A","connector_id":1}\n'
    rejected: list[tuple[int, EventError]] = []
    report = DetectReport()
    chunks = list(
        decode_chunks(
            io.BytesIO(b"\n" + data),
            EventDecoder(Pseudonymizer(b"k" * 32)),
            report,
            lambda n, e: rejected.append((n, e)),
        )
    )
    assert [len(chunk.readings) for chunk in chunks] == [0]
    assert [(n, e.reason) for n, e in rejected] == [
        (2, "reading has no session_id and no measured value")
    ]
    assert (report.lines, report.rejected) == (2, 1)


def _session_lines(session: str, start_s: int, stop_s: int, late_from_s: int | None) -> list[bytes]:
    """One session on ST-L: start, a reading a minute, stop; the readings from ``late_from_s``
    on (Transaction.End's included) uploaded after the stop, as after a lost link."""

    def ts(s: int) -> str:
        return f"2026-11-23T08:{s // 60:02d}:{s % 60:02d}+01:00"

    head = {"station_id": "ST-L", "connector_id": "1", "session_id": session}
    start = {"type": "session_start", "ts": ts(start_s), **head, "id_tag": "T", "meter_start_wh": 0}
    stop = {"type": "session_stop", "ts": ts(stop_s), **head, "meter_stop_wh": 1100}
    readings = [
        {
            "type": "reading",
            "ts": ts(t),
            **head,
            "energy_wh": str((t - start_s) * 11 // 6),
            "power_w": "6600.0",
        }
        for t in range(start_s, stop_s + 1, 60)
    ]
    on_time = [r for r in readings if late_from_s is None or parse_ts(r["ts"]) < _at(late_from_s)]
    late = readings[len(on_time) :]
    return [orjson.dumps(e) for e in (start, *on_time, stop, *late)]


def _at(s: int) -> int:
    return parse_ts(f"2026-11-23T08:{s // 60:02d}:{s % 60:02d}+01:00")


def test_readings_uploaded_after_their_session_stopped_are_judged() -> None:
    # S1's last five minutes arrive after its stop; S2 then stops, and with max_sessions=1
    # S1 is handed out only now (one generation of grace): with every reading.
    in_time = _session_lines("S1", 0, 600, None) + _session_lines("S2", 700, 1300, None)
    uploaded_late = _session_lines("S1", 0, 600, 300) + _session_lines("S2", 700, 1300, None)
    assert uploaded_late != in_time
    results = []
    for lines in (in_time, uploaded_late):
        data = b"\n".join(lines) + b"\n"
        got, report, rejected, _ = _run_chunked(data, max_sessions=1, chunk_lines=1_000)
        expected, expected_report, _ = _run_per_event(data, max_sessions=1)
        assert rejected == [] and report.late_readings == expected_report.late_readings == 0
        samples = {
            str(sid): int(n)
            for d in got
            if d.batch.n_steps  # not the spans the cross-session kinds are judged on
            for sid, n in zip(d.batch.session_id, d.batch.n_samples, strict=True)
        }
        assert samples == {"S1": 11, "S2": 11}
        flags = [f for d in got for f in d.flags]
        assert flags == [f for d in expected for f in d.flags]
        results.append(sorted((f.session_id, f.kind) for f in flags))
    assert results[0] == results[1]


def test_late_readings_beyond_the_grace_are_counted_and_reported() -> None:
    lines = _session_lines("S1", 0, 600, 300)
    late = lines[-6:]  # S1's held readings, now after two more sessions stopped
    lines = lines[:-6] + _session_lines("S2", 700, 1300, None)
    lines += _session_lines("S3", 1400, 2000, None) + late
    _, report, _, _ = _run_chunked(b"\n".join(lines) + b"\n", max_sessions=1, chunk_lines=1_000)
    assert report.late_readings == 6
    assert "6 late readings" in report.summary()


def test_codes_number_each_text_once_in_any_order_and_skip_nulls() -> None:
    from analytics.pipeline import _codes

    texts = pl.Series(["b", None, "a", "b", "c", None, "a"])
    codes, rows = _codes(texts)
    assert codes.tolist()[1] == codes.tolist()[5] == -1
    named = [texts[int(r)] for r in rows]
    assert sorted(named) == ["a", "b", "c"]
    assert [named[c] if c >= 0 else None for c in codes.tolist()] == texts.to_list()
    assert sorted(rows.tolist()) == [0, 2, 4]  # each text's first row


_HEAD = b'"type":"reading","ts":"2026-11-23T01:00:00Z","connector_id":1,"session_id":"S"'


@pytest.mark.parametrize(
    ("line", "station", "power_w"),
    [
        (b'{"station_id":"A",' + _HEAD + b',"power_w":1,"power_w":2}', "A", 2.0),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":null,"power_w":2}', "A", 2.0),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":1,"power_w":null,"energy_wh":5}', "A", None),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":"1","power_w" : 2.5}', "A", 2.5),
        (b'{"station_id":"A",' + _HEAD + b',"station_id":"B","power_w":3}', "B", 3.0),
    ],
)
def test_a_key_written_twice_counts_by_its_last_value_on_both_paths(
    line: bytes, station: str, power_w: float | None
) -> None:
    # JSON leaves a repeated key's meaning open; polars would keep the first value, orjson
    # keeps the last: the columnar path must leave such a line to the per-event way
    plain = b'{"station_id":"A",' + _HEAD + b',"power_w":7}'
    data = b"\n".join([plain, line, plain]) + b"\n"
    decoder = EventDecoder(Pseudonymizer(b"k" * 32))
    expected = [event for _, event in decode_events(io.BytesIO(data), decoder, DetectReport())]
    (chunk,) = decode_chunks(io.BytesIO(data), decoder, DetectReport())
    assert [number for number, _ in chunk.events] == [2]
    assert len(chunk.readings) == 2  # the plain lines, as columns
    (_, event) = chunk.events[0]
    assert isinstance(event, Reading)
    assert event == expected[1]
    assert (event.station_id, event.power_w) == (station, power_w)


def test_a_key_named_as_a_value_or_written_once_with_spaces_stays_a_column() -> None:
    lines = [
        b'{"station_id":"A",' + _HEAD + b',"power_w":1,"note":"power_w"}',
        b'{"station_id":"A",' + _HEAD + b',"power_w" : 1,"soc_pct":null}',
    ]
    decoder = EventDecoder(Pseudonymizer(b"k" * 32))
    (chunk,) = decode_chunks(io.BytesIO(b"\n".join(lines) + b"\n"), decoder, DetectReport())
    assert (len(chunk.readings), chunk.events) == (2, [])
