"""The scheduled detection job against a real InfluxDB: data arriving while it runs, restarts,
catching up after downtime."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import orjson
import pytest

from analytics.jobs import DetectionJob
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import BatchWriter, InfluxClient
from chargewatch.leases import LeaseBook
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate

HOUR_NS = 3600 * 1_000_000_000
START = "2026-11-23T00:00:00+00:00"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[dict[str, object]]]:
    from datetime import datetime

    folder = tmp_path_factory.mktemp("jobs-fleet")
    config = SimulationConfig(
        stations=16, hours=12, seed=21, start=datetime.fromisoformat(START), anomaly_rate=0.4
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    labels = [orjson.loads(line) for line in (folder / "labels.jsonl").read_bytes().splitlines()]
    return lines, labels


def load(client: InfluxClient, lines: list[bytes]) -> None:
    decoder = EventDecoder(Pseudonymizer(b"job-test-key-0123456789"))
    with BatchWriter(client) as writer:
        ingest_stream(io.BytesIO(b"\n".join(lines)), decoder=decoder, sink=writer, on_reject=print)


def test_a_stall_ingested_while_the_job_runs_is_flagged_once(
    influx: InfluxClient, tmp_path: Path, fleet: tuple[list[bytes], list[dict[str, object]]]
) -> None:
    lines, labels = fleet
    stalls = [label for label in labels if label["kind"] == "stall"]
    assert stalls, "the fleet should hold a stall"
    stall = min(stalls, key=lambda label: parse_ts(label["start"]))
    cut_ns = parse_ts(stall["start"]) - 60 * 1_000_000_000
    before = [line for line in lines if parse_ts(orjson.loads(line)["ts"]) < cut_ns]
    after = [line for line in lines if parse_ts(orjson.loads(line)["ts"]) >= cut_ns]
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    job = DetectionJob(influx, state, settle_s=0, max_window_s=2 * 3600)

    load(influx, before)
    job.run(cut_ns)
    assert set(job.cursors().values()) == {cut_ns}  # one instance: every partition
    flagged = {(f.session_id, f.kind) for f in query_flags(influx, 0, cut_ns + 24 * HOUR_NS)}
    assert (stall["session_id"], "stall") not in flagged

    load(influx, after)  # the rest of the day arrives while the job keeps running
    end_ns = parse_ts(START) + 13 * HOUR_NS
    reports = job.run(end_ns)
    windows = -(-(end_ns - cut_ns) // (2 * HOUR_NS))
    assert len(reports) == windows > 1  # caught up window by window (2 h each)
    flags = query_flags(influx, 0, end_ns + 24 * HOUR_NS)
    assert (stall["session_id"], "stall") in {(f.session_id, f.kind) for f in flags}

    job.release()  # a clean stop gives the partitions back: the next process takes them at once
    restarted = DetectionJob(influx, StateStore(f"sqlite:///{tmp_path / 'state.db'}"), settle_s=0)
    assert restarted.run(end_ns + 30 * 1_000_000_000)  # judged again from the cursors
    assert restarted.status.partitions == tuple(range(16))
    again = query_flags(influx, 0, end_ns + 24 * HOUR_NS)
    assert Counter(map(_key, again)) == Counter(map(_key, flags))
    assert all(count == 1 for count in Counter(map(_key, again)).values())
    state.close()
    restarted.state.close()


def test_the_newest_seconds_are_judged_now_and_read_again_next_run(
    influx: InfluxClient, tmp_path: Path, fleet: tuple[list[bytes], list[dict[str, object]]]
) -> None:
    """The settle time delays the cursor, not the verdict: a stall that reached its 10 minutes
    a minute and a half ago is flagged at once (with the window ending ``settle`` before now, it
    would not be), and the cursor rests ``settle`` behind, so those seconds are read again at the
    next run (where late readings of theirs would be found)."""
    lines, labels = fleet
    stall = min((lb for lb in labels if lb["kind"] == "stall"), key=lambda lb: parse_ts(lb["end"]))
    now_ns = parse_ts(stall["start"]) + 690 * 1_000_000_000
    load(influx, [line for line in lines if parse_ts(orjson.loads(line)["ts"]) < now_ns])
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    job = DetectionJob(influx, state, settle_s=120, max_window_s=2 * 3600)
    job.run(now_ns)
    assert set(job.cursors().values()) == {now_ns - 120 * 1_000_000_000}
    flagged = {(f.session_id, f.kind) for f in query_flags(influx, 0, now_ns + 24 * HOUR_NS)}
    assert (stall["session_id"], "stall") in flagged
    state.close()


def _key(flag: Flag) -> tuple[object, ...]:
    """What makes a flag one: its session and kind; outside any session (several segments of
    one connector may carry a kind) its connector and start too."""
    if flag.session_id is not None:
        return (flag.session_id, flag.kind)
    return (None, flag.station_id, flag.connector_id, flag.kind, flag.start_ns)


def test_a_failing_run_is_recorded_not_lost(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    client = InfluxClient(url="http://127.0.0.1:9", database="nowhere", max_retries=0)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    job = DetectionJob(client, state)
    job.run_guarded(lambda: datetime(2026, 11, 24, tzinfo=UTC))
    assert job.status.runs == 1 and job.status.failures == 1
    assert job.status.last_error is not None and "cannot reach" in job.status.last_error
    assert set(job.cursors().values()) == {None}  # nothing judged, nothing skipped
    client.close()
    state.close()


def test_partitions_resume_from_the_single_cursor_of_before(
    influx: InfluxClient, tmp_path: Path
) -> None:
    """An upgrade: the job's one cursor of before partitions is where every partition starts
    (not the first look-back of a day), and each partition then keeps its own."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    legacy = parse_ts(START)
    state.set_cursor("detect", legacy)
    job = DetectionJob(influx, state, settle_s=0, max_window_s=2 * 3600, partitions=4)
    reports = job.run(legacy + 3 * HOUR_NS)
    assert len(reports) == 2  # [legacy, +2 h), [+2 h, +3 h): not 24 h back in 2 h windows
    assert job.cursors() == dict.fromkeys(range(4), legacy + 3 * HOUR_NS)
    assert job.status.partitions == (0, 1, 2, 3)
    state.close()


def test_a_run_catching_up_renews_its_leases_at_the_keeper_s_pace(
    influx: InfluxClient, tmp_path: Path
) -> None:
    """Twelve windows caught up in one run, two seconds of wall clock each: the leases (60 s)
    are renewed once a quarter lease has passed (at the eighth window, 16 s on), not after
    every window, and the cursors still move window by window."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    now = parse_ts(START) + HOUR_NS
    job = DetectionJob(influx, state, settle_s=0, first_lookback_s=3600, max_window_s=300)
    ticks = iter(range(1, 100))
    reports = job.run(now, clock_ns=lambda: now + 2 * next(ticks) * 1_000_000_000)
    assert len(reports) == 12
    assert set(job.cursors().values()) == {now}
    expires = {lease.expires_ns for lease in LeaseBook(state, "x", ttl_ns=1).live("detect:", now)}
    assert expires == {now + (16 + 60) * 1_000_000_000}  # renewed once, at the eighth window
    state.close()


def test_a_run_that_stalls_past_its_leases_drops_what_another_instance_took(
    influx: InfluxClient, tmp_path: Path
) -> None:
    """The run stalls 200 s after its fifth window, longer than its 60 s leases: another
    instance takes every partition meanwhile. The renewal due at the sixth window finds them
    lost, and the run judges nothing more; the other instance resumes from the cursors left."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    now = parse_ts(START) + HOUR_NS
    first = DetectionJob(
        influx, state, settle_s=0, first_lookback_s=3600, max_window_s=300, instance_id="a"
    )
    second = DetectionJob(influx, state, settle_s=0, instance_id="b")
    windows = 0

    def clock() -> int:
        nonlocal windows
        windows += 1
        if windows < 5:
            return now + windows * 1_000_000_000
        if windows == 5:
            assert second.share.balance(now + 200 * 1_000_000_000) == tuple(range(16))
        return now + 200 * 1_000_000_000

    reports = first.run(now, clock_ns=clock)
    assert len(reports) == 5
    assert first.status.partitions == ()
    # the fifth window's cursor was not written: the partitions were no longer held
    assert set(first.cursors().values()) == {now - HOUR_NS + 4 * 300 * 1_000_000_000}
    state.close()
