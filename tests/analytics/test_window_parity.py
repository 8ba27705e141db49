"""The scheduled job, run window by window against a real InfluxDB as ``serve`` runs it, finds
what the file path finds on the same events: the same (session, kind) pairs. The fleet has clock
faults, energy outside sessions and late data (readings held back by a station and delivered
minutes later, some after their session was judged), and is ingested in the order it arrives,
a job interval at a time, with ``now`` passed in. A flag written while a session was open that
its final verdict does not hold is withdrawn.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.jobs import DetectionJob
from analytics.pipeline import detect_stream
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import Flag, flags_to_lines, query_flags
from chargewatch.influx import InfluxClient
from chargewatch.schema import RX_BAND_NS, ReceiveClock
from chargewatch.state import StateStore
from ingest.encode import ChunkEncoder, Rejection
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate

START = datetime(2026, 11, 23, 8, tzinfo=UTC)
HOURS = 3
MIN_NS = 60 * 1_000_000_000
INTERVAL_NS = 5 * MIN_NS  # the job's interval, as serve runs it
KEY = b"window-parity-key-0123456789"

Pair = tuple[str, str]  # (session id, or station/connector for energy outside sessions; kind)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """20 stations x 3 h, half the sessions with an anomaly, in order of arrival, with two
    stretches of readings delivered late (``hold_back``)."""
    folder = tmp_path_factory.mktemp("parity-fleet")
    config = SimulationConfig(stations=20, hours=HOURS, seed=7, start=START, anomaly_rate=0.5)
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    labels = [orjson.loads(line) for line in (folder / "labels.jsonl").read_bytes().splitlines()]
    return hold_back(
        lines, {label["session_id"] for label in labels if label["kind"] == "data_gap"}
    )


def hold_back(lines: list[bytes], gaps: set[str]) -> list[bytes]:
    """Late data, three ways: a session's stop message arrives 20 minutes late (while
    it looks open, the job sees its readings end); 8
    minutes of another session's readings arrive 15 minutes late (while it is open); a third
    session's last readings arrive 10 minutes after it stopped (after it was judged)."""
    events = [orjson.loads(line) for line in lines]
    ts = np.array([parse_ts(e["ts"]) for e in events], dtype=np.int64)
    sessions: dict[str, list[int]] = {}
    stops: dict[str, int] = {}
    for i, e in enumerate(events):
        sid = e.get("session_id")
        if e["type"] == "reading" and sid is not None:
            sessions.setdefault(sid, []).append(i)
        elif e["type"] == "session_stop":
            stops[sid] = i
    long = sorted(
        (sid for sid, rows in sessions.items() if sid in stops and len(rows) >= 30),
        key=lambda sid: ts[sessions[sid][0]],
    )
    calm = next(sid for sid in long if sid not in gaps)  # no gap of its own
    others = [sid for sid in long if sid != calm]
    assert len(others) >= 2, "the fleet should hold three long sessions"
    gappy, tailed = others[0], others[-1]
    block_rows = sessions[gappy]
    t0 = ts[block_rows[5]]
    block = [i for i in block_rows if t0 <= ts[i] < t0 + 8 * MIN_NS]
    moves = [
        ([stops[calm]], ts[stops[calm]] + 20 * MIN_NS),
        (block, ts[block[-1]] + 15 * MIN_NS),
        (sessions[tailed][-3:], ts[stops[tailed]] + 10 * MIN_NS),
    ]
    order = list(range(len(lines)))
    for rows, at in moves:
        moved = set(rows)
        order = [i for i in order if i not in moved]
        cut = next((k for k, i in enumerate(order) if ts[i] >= at), len(order))
        order[cut:cut] = rows
    return [lines[i] for i in order]


def pairs(flags: Iterable[Flag]) -> set[Pair]:
    return {(f.session_id or f"{f.station_id}/{f.connector_id}", f.kind) for f in flags}


def arrival_ns(lines: list[bytes]) -> np.ndarray:
    """When each line arrives: the receive clock's estimate from the stamps around it."""
    ts = np.array([parse_ts(orjson.loads(line)["ts"]) for line in lines], dtype=np.int64)
    return ReceiveClock(wall_ns=lambda: 2**62).stream_us(ts) * 1000


def test_the_job_window_by_window_finds_what_the_file_path_finds(
    influx: InfluxClient, tmp_path: Path, fleet: list[bytes]
) -> None:
    decoder = EventDecoder(Pseudonymizer(KEY))
    file_flags, _report = detect_stream(io.BytesIO(b"\n".join(fleet)), decoder=decoder)
    expected = pairs(file_flags)
    assert {"clock_fault", "unauthorized_energy"} <= {kind for _, kind in expected}

    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    job = DetectionJob(influx, state, first_lookback_s=3600)
    arrives = arrival_ns(fleet)
    begin = int(START.timestamp()) * 1_000_000_000
    end = begin + HOURS * 60 * MIN_NS
    # a verdict of the first long session written while it was open that no later judgement
    # holds (whatever the detectors make of this fleet, its final verdict is the file's)
    first = min((f for f in file_flags if f.session_id is not None), key=lambda f: f.start_ns)
    kinds = {kind for sid, kind in expected if sid == first.session_id}
    stale_kind = next(k for k in ("stall", "early_taper", "meter_stuck") if k not in kinds)
    stale = Flag(
        first.session_id,
        first.station_id,
        first.connector_id,
        stale_kind,
        0.9,
        first.start_ns + 1,
        first.start_ns + 2,
        "written while the session was open",
    )
    injected = False
    rejected: list[Rejection] = []
    encoder = ChunkEncoder(decoder)
    sent = 0
    # the last run judges up to the fleet's end, where the file path's data ends too
    last = end + RX_BAND_NS
    for now in [*range(begin + INTERVAL_NS, last, INTERVAL_NS), last]:
        upto = len(fleet) if now == last else int(np.searchsorted(arrives, now, side="right"))
        if upto > sent:  # one receiver (its receive clock) for the whole run, as in serve
            chunk = encoder.encode_lines(list(enumerate(fleet[sent:upto], start=sent + 1)))
            rejected += chunk.rejections
            influx.write(chunk.lines)
            sent = upto
        if not injected and now - RX_BAND_NS > stale.start_ns:
            influx.write(list(flags_to_lines([stale])))  # as if judged so a window ago
            assert (stale.session_id, stale_kind) in pairs(query_flags(influx, 0, end))
            injected = True
        job.run(now)
    stored = query_flags(influx, 0, end + 24 * 60 * MIN_NS)
    state.close()

    assert not rejected
    assert pairs(stored) == expected
    assert injected and (first.session_id, stale_kind) not in pairs(stored)  # withdrawn
    assert len(stored) == len(pairs(stored)), "one stored flag per (session, kind)"


@pytest.mark.parametrize(
    ("name", "offset_s"),
    [("at the epoch", -1_795_000_000), ("years ahead", 3 * 365 * 86_400), ("set back", -1800)],
)
def test_the_receive_clock_of_a_file_ignores_one_bad_clock(name: str, offset_s: int) -> None:
    """Readings of 20 stations every 10 s, in order of arrival; one station's clock is wrong
    for 10 readings. The receive times follow the true times, strictly increasing, and only
    the wrong stamps fall outside the band (so only they are indexed by receive time)."""
    true_ns = np.int64(parse_ts("2026-11-23T08:00:00Z")) + np.arange(2000) * 500_000_000
    stamps = true_ns.copy()
    bad = np.arange(1000, 1200, 20)  # one station's readings
    stamps[bad] += np.int64(offset_s) * 1_000_000_000
    rx_ns = ReceiveClock(wall_ns=lambda: 2**62).stream_us(stamps) * 1000
    assert np.all(np.diff(rx_ns) > 0), name
    assert np.max(np.abs(rx_ns - true_ns)) < 60 * 1_000_000_000, name
    outside = np.abs(stamps - rx_ns) > RX_BAND_NS
    assert np.array_equal(np.flatnonzero(outside), bad), name
