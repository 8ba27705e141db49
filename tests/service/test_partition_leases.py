"""Two `chargewatch serve` processes on one PostgreSQL state database and one InfluxDB share the
detection job by station partitions; one is killed (SIGKILL) and the other takes its partitions
over and judges them from where the dead one left them. Everything is real: the processes,
PostgreSQL (127.0.0.1:5432), InfluxDB."""

from __future__ import annotations

import io
import logging
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from analytics.read.partition import partition_of
from chargewatch.catalog import get_session
from chargewatch.events import EventDecoder, format_ts, parse_ts
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import BatchWriter, InfluxClient, LocalInfluxd
from chargewatch.leases import LeaseBook
from chargewatch.schema import RX_BAND_NS
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate
from tests.conftest import postgres_database

from .test_serve import ServeProcess, wait_for

logger = logging.getLogger(__name__)

S = 1_000_000_000
INTERVAL_S = 3  # the job's interval: short, so the test waits seconds, not minutes
PARTS = 6
SETTLE_NS = RX_BAND_NS  # the job's cursor rests this far behind its run (analytics.jobs)


@pytest.fixture
def state_url() -> Iterator[str]:
    with postgres_database("cw_serve") as url:
        yield url


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"leases_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def live_fleet(folder: Path) -> list[dict[str, Any]]:
    """16 stations over three hours of a working day, half the sessions with an anomaly,
    moved in time so that they end half an hour from now: sessions are open while the test
    runs, whatever the time of day it runs at."""
    simulated = datetime(2026, 11, 23, 9, tzinfo=UTC)
    config = SimulationConfig(
        stations=16, hours=3, seed=5, start=simulated, anomaly_rate=0.5, message_variety=False
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2.5)
    shift_ns = (start - simulated) // timedelta(microseconds=1) * 1000
    events = [orjson.loads(line) for line in lines]
    for event in events:
        event["ts"] = format_ts(parse_ts(event["ts"]) + shift_ns)
    return events


def load(url: str, database: str, events: list[dict[str, Any]]) -> None:
    decoder = EventDecoder(Pseudonymizer(b"partition-leases-key-0123456789"))
    body = b"\n".join(orjson.dumps(event) for event in events)
    with InfluxClient(url=url, database=database) as client:
        client.create_database()
        with BatchWriter(client) as writer:
            ingest_stream(io.BytesIO(body), decoder=decoder, sink=writer, on_reject=print)


def held(serve: ServeProcess) -> set[int]:
    return set(serve.health()["detection_partitions"])


def key(flag: Flag) -> tuple[object, ...]:
    if flag.session_id is not None:
        return (flag.session_id, flag.kind)
    return (None, flag.station_id, flag.connector_id, flag.kind, flag.start_ns)


def test_the_survivor_takes_over_a_killed_instance_s_partitions(
    influxd: LocalInfluxd, database: str, state_url: str, tmp_path: Path
) -> None:
    events = live_fleet(tmp_path)
    load(influxd.url, database, events)
    env = {
        "CHARGEWATCH_STATE_URL": state_url,
        "CHARGEWATCH_DETECT_INTERVAL_S": str(INTERVAL_S),
        "CHARGEWATCH_DETECT_PARTITIONS": str(PARTS),
    }
    serves = {
        name: ServeProcess(
            tmp_path / name, influxd.url, database, CHARGEWATCH_INSTANCE_ID=name, **env
        )
        for name in ("a", "b")
    }
    state = StateStore(state_url)
    try:
        for serve in serves.values():
            serve.start()
        assert serves["a"].health()["instance_id"] == "a"
        a, b = serves["a"], serves["b"]

        def split() -> bool:
            mine, theirs = held(a), held(b)
            assert not mine & theirs, (mine, theirs)  # never one partition on both
            return bool(mine) and bool(theirs) and mine | theirs == set(range(PARTS))

        wait_for(split, timeout_s=120)
        split_ns = time.time_ns()
        wait_for(lambda: judged_since(state, split_ns), timeout_s=60)  # each ran after the split
        # the victim: an instance judging sessions open now (to be judged on by the other)
        busy = {partition_of(s, PARTS) for s in open_at(events, time.time_ns()).values()}
        a, b = (a, b) if held(a) & busy else (b, a)
        lost = held(a)

        a.kill(signal.SIGKILL)
        killed_ns = time.time_ns()
        wait_for(lambda: held(b) == set(range(PARTS)), timeout_s=60)
        viewer = b.cli("keys", "create", "--role", "viewer")
        assert metric(b, viewer, "chargewatch_detect_partitions_held") == PARTS
        took_s = (time.time_ns() - killed_ns) / S
        logger.info(
            f"partitions {sorted(lost)} taken over {took_s:.1f} s after SIGKILL "
            f"({took_s / INTERVAL_S:.2f} intervals of {INTERVAL_S} s)"
        )
        wait_for(lambda: judged_since(state, killed_ns), timeout_s=60)  # all judged by b since
        survivor = str(b.health()["instance_id"])
        b.kill(signal.SIGTERM)
        assert LeaseBook(state, survivor, ttl_ns=S).mine("detect:") == []  # a clean stop gives back

        with InfluxClient(url=influxd.url, database=database) as client:
            flags = query_flags(client, 0, 2**62)
        counts = Counter(map(key, flags))
        assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
        # every station with a session begun before the kill has its sessions catalogued
        begun = {station for _, station, at, _ in sessions(events) if at < killed_ns - SETTLE_NS}
        assert catalogued_stations(state) >= begun
        # the sessions of a's stations open when it died were judged again, by b
        open_then = [
            sid
            for sid, station in open_at(events, killed_ns).items()
            if partition_of(station, PARTS) in lost
        ]
        assert open_then, "the fleet should have sessions open at the kill"
        for sid in open_then:
            row = get_session(state, sid)
            assert row is not None and row.updated_at_ns > killed_ns, sid
    finally:
        for serve in serves.values():
            if serve.process is not None:
                serve.kill(signal.SIGTERM)
        state.close()


def metric(serve: ServeProcess, key: str, name: str) -> float:
    text = httpx.get(f"{serve.url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


def catalogued_stations(state: StateStore) -> set[str]:
    with state.engine.connect() as connection:
        rows = connection.execute(text("SELECT DISTINCT station_id FROM session_catalog"))
        return {str(row[0]) for row in rows}


def judged_since(state: StateStore, at_ns: int) -> bool:
    """Every partition's cursor has passed ``at_ns`` (less the settle time it keeps behind)."""
    names = [f"detect:p{p:02d}/{PARTS}" for p in range(PARTS)]
    cursors = [state.cursor(name) for name in names]
    return all(c is not None and c >= at_ns - SETTLE_NS for c in cursors)


def open_at(events: list[dict[str, Any]], at_ns: int) -> dict[str, str]:
    """The sessions open ``at_ns`` less the settle time (their stations by id): judged at
    every run of the job from then on."""
    moment = at_ns - SETTLE_NS
    return {
        sid: station for sid, station, begun, ended in sessions(events) if begun < moment < ended
    }


def sessions(events: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    """(session id, station, start, stop) of the fleet's sessions."""
    starts: dict[str, tuple[str, int]] = {}
    stops: dict[str, int] = {}
    for event in events:
        if event["type"] == "session_start":
            starts[event["session_id"]] = (event["station_id"], parse_ts(event["ts"]))
        elif event["type"] == "session_stop":
            stops[event["session_id"]] = parse_ts(event["ts"])
    return [
        (sid, station, begun, stops.get(sid, 2**62)) for sid, (station, begun) in starts.items()
    ]
