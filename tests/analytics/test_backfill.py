"""The Dask backfill against a real InfluxDB: on a local cluster of two worker processes it
stores the same (session, kind) flags as ``detect --since/--until`` in one process, a rerun
changes nothing, and a task that cannot reach InfluxDB is named by partition and day.

The range starts and ends inside days, so it has sessions that started before it, sessions that
cross both midnights, and sessions still open at its end."""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from distributed import Client

from analytics.backfill import BackfillError, Source, backfill, local_cluster, split_days
from analytics.window import detect_window
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import BatchWriter, InfluxClient, quote_ident
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate

START = datetime(2026, 11, 23, tzinfo=UTC)
HOURS = 54
SINCE = START + timedelta(hours=6)  # 2026-11-23T06:00Z: three days, the first and last partial
UNTIL = START + timedelta(hours=51)  # 2026-11-25T03:00Z
NS = 1_000_000_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """8 stations x 54 h, a third of the sessions with an anomaly."""
    folder = tmp_path_factory.mktemp("backfill-fleet")
    config = SimulationConfig(stations=8, hours=HOURS, seed=17, start=START, anomaly_rate=0.3)
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    return (folder / "events.jsonl").read_bytes()


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    """Two worker processes, closed (workers and all) at the end of the module: no process
    the cluster started outlives it."""
    before = descendants()
    with local_cluster(2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        yield client
    deadline = time.monotonic() + 10  # a worker killed at close may take a moment to go
    while (left := descendants() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


def descendants() -> set[int]:
    """This process's live children, theirs, and so on (from /proc: Linux, as the tests run;
    a zombie, exited but not yet reaped, runs nothing and is not counted)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    # multiprocessing's resource tracker, started with the first spawned worker, stays until
    # this process ends (by design: it cleans up after it); it is Python's, not the cluster's
    tracker = {
        pid
        for pid in parent
        if b"multiprocessing.resource_tracker" in _read(Path(f"/proc/{pid}/cmdline"))
    }
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found - tracker


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""  # gone meanwhile


def ns(t: datetime) -> int:
    return int(t.timestamp()) * NS


def pairs(flags: list[Flag]) -> set[tuple[str, str]]:
    return {
        (f.session_id or f"{f.station_id}/{f.connector_id}@{f.start_ns}", f.kind) for f in flags
    }


def stored(influx: InfluxClient) -> list[Flag]:
    return query_flags(influx, 0, ns(UNTIL) + 30 * 86_400 * NS)


def test_split_days_cuts_at_utc_midnights() -> None:
    days = split_days(ns(SINCE), ns(UNTIL))
    assert [d.label for d in days] == ["2026-11-23", "2026-11-24", "2026-11-25"]
    assert [(d.first, d.last) for d in days] == [(True, False), (False, False), (False, True)]
    assert days[0].since_ns == ns(SINCE) and days[-1].until_ns == ns(UNTIL)
    assert all(a.until_ns == b.since_ns for a, b in itertools.pairwise(days))


def test_a_backfill_on_two_workers_stores_what_one_process_stores(
    influx: InfluxClient, tmp_path: Path, fleet: bytes, dask_client: Client
) -> None:
    decoder = EventDecoder(Pseudonymizer(b"backfill-test-key-0123456789"))
    rejected: list[object] = []
    with BatchWriter(influx) as writer:
        ingest_stream(io.BytesIO(fleet), decoder=decoder, sink=writer, on_reject=rejected.append)
    assert not rejected

    state = StateStore(f"sqlite:///{tmp_path / 'one.db'}")
    one, _report = detect_window(influx, ns(SINCE), ns(UNTIL), catalog=state)
    state.close()
    expected = pairs(one)
    assert pairs(stored(influx)) == expected
    assert len(expected) >= 10, "the fleet should carry flags to compare"
    assert "concurrent_id_tag" in {kind for _, kind in expected}  # the cross-station phase
    influx.query(f"DROP MEASUREMENT {quote_ident('flag')}")  # the backfill starts from none

    source = Source(
        influx_url=influx.url,
        influx_database=influx.database,
        state_db_url=f"sqlite:///{tmp_path / 'dask.db'}",
    )
    seen: list[int] = []
    report = backfill(
        dask_client,
        source,
        ns(SINCE),
        ns(UNTIL),
        on_progress=lambda progress: seen.append(progress.done),
    )
    assert (report.days, report.partitions) == (3, 1)
    assert seen == [1, 2, 3]
    assert pairs(report.flags) == expected
    first = stored(influx)
    assert pairs(first) == expected
    assert len(first) == len(expected), "one stored flag per (session, kind)"

    again = backfill(dask_client, source, ns(SINCE), ns(UNTIL))
    assert stored(influx) == first  # idempotent: the same points, nothing added or withdrawn
    assert again.flags == report.flags
    assert again.progress.sessions == report.progress.sessions > 0


def test_a_task_that_cannot_reach_influxdb_is_named(dask_client: Client) -> None:
    source = Source(
        influx_url="http://127.0.0.1:9", influx_database="nowhere", influx_max_retries=0
    )
    with pytest.raises(BackfillError) as caught:
        backfill(dask_client, source, ns(SINCE), ns(SINCE) + 3600 * NS, station_ids=["CP-1"])
    message = str(caught.value)
    assert message.startswith("1 of 1 backfill tasks failed")
    assert "partition 1/1 (CP-1, 1 stations), day 2026-11-23" in message
    assert "cannot reach" in message
