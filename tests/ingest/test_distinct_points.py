"""Every acknowledged event is a distinct InfluxDB point, or a deliberate duplicate of one, through
each way in: ``chargewatch ingest`` of a file (twice) and ``POST /api/v1/events`` (twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargewatch.events import EventDecoder
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.roles import Role
from chargewatch.settings import Settings
from ingest.encode import ChunkEncoder

from ..api.server import served

WINDOW = "time >= '2000-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"
TS = "2026-11-24T08:15:30.250Z"


def event(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "ts": TS, "station_id": "ST-1", **extra}


READING = event("reading", connector_id=1, session_id="s-1", energy_wh=1500, power_w=7000)
EVENTS = [
    # an OCPP 2.0.1 station re-sending its samples at the end of the transaction
    READING,
    event("reading", connector_id=1, session_id="s-1", energy_wh=1500, power_w=6400),
    READING,  # the same again: one point
    {**READING, "energy_wh": "1500", "power_w": "7000.0"},  # numeric strings: the same point
    # two cards at one station in one millisecond
    event("authorize", id_tag="04AB01", result="Accepted"),
    event("authorize", id_tag="04AB02", result="Accepted"),
    event("session_start", connector_id=1, session_id="s-1", id_tag="04AB02"),
    event("session_start", connector_id=2, session_id="s-2", id_tag="04AB01"),
    event("status", connector_id=1, status="Charging"),
    event("status", connector_id=1, status="SuspendedEV"),
    event("session_stop", connector_id=1, session_id="s-1", meter_stop_wh=1500),
]
POINTS = {"reading": 2, "authorize": 2, "session_start": 2, "status": 2, "session_stop": 1}
ACCEPTED = {"reading": 4, "authorize": 2, "session_start": 2, "status": 2, "session_stop": 1}


def stored(client: InfluxClient) -> dict[str, int]:
    """Points per measurement, counted over a field every point of it has."""
    counted = {
        "reading": "energy_wh",
        "authorize": "result",
        "session_start": "session_id",
        "status": "status",
        "session_stop": "session_id",
    }
    points = {}
    for measurement, field in counted.items():
        series = client.query(f'SELECT count("{field}") FROM "{measurement}" WHERE {WINDOW}')
        points[measurement] = int(series[0].columns["count"][0]) if series else 0
    return points


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[InfluxClient]:
    with InfluxClient(url=influxd.url, database=f"points_{uuid.uuid4().hex[:10]}") as client:
        yield client
        client.query(f'DROP DATABASE "{client.database}"')


def test_a_file_loaded_twice_is_every_distinct_event_once(
    influxd: LocalInfluxd, database: InfluxClient, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(map(orjson.dumps, EVENTS)) + b"\n")
    env = {
        **os.environ,
        "CHARGEWATCH_INFLUX_URL": influxd.url,
        "CHARGEWATCH_INFLUX_DATABASE": database.database,
        "CHARGEWATCH_DATA_DIR": str(tmp_path / "data"),
    }
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", "ingest", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert stored(database) == POINTS


def test_http_batches_sent_twice_are_every_distinct_event_once(
    influxd: LocalInfluxd, database: InfluxClient, tmp_path: Path
) -> None:
    from service.serve import Service, build_app

    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=database.database,
        data_dir=tmp_path,
    )
    service = Service(config)
    service.start()
    try:
        key = service.state.create_api_key(Role.OPERATOR)
        with served(build_app(service)) as url, httpx.Client(base_url=url) as client:
            for _ in range(2):  # a client retrying a batch it got no answer for
                answer = client.post(
                    "/api/v1/events",
                    content=orjson.dumps(EVENTS),
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["accepted_by_type"] == ACCEPTED
                deadline = time.monotonic() + 20
                while service.spool.depth().lines and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert stored(database) == POINTS
    finally:
        service.stop()


UNITS = ("_wh", "_w", "_pct", "_c")  # the keys of measured values
readings = st.fixed_dictionaries(
    {
        "type": st.just("reading"),
        "ts": st.sampled_from([TS, "2026-11-24T08:15:30Z", "2026-11-24T08:15:30.250123Z"]),
        "station_id": st.just("ST-1"),
        "connector_id": st.just(1),
    },
    optional={
        "session_id": st.sampled_from(["s-1", "s-2"]),
        "energy_wh": st.floats(0, 1e9) | st.integers(0, 10**9),
        "power_w": st.floats(-4e5, 4e5) | st.integers(-(10**5), 10**5),
        "soc_pct": st.floats(0, 100),
        "temperature_c": st.floats(-40, 80),
    },
).filter(lambda r: len(r) > 4)


def point(line: str) -> tuple[str, str]:
    """(measurement and tags, time): what InfluxDB identifies a point by."""
    head, rest = line.split(" ", 1)
    return head, rest.rsplit(" ", 1)[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(readings, min_size=1, max_size=25))
def test_readings_sent_as_numbers_or_numeric_strings_are_the_same_points(
    sent: list[dict[str, Any]],
) -> None:
    """The columnar path (numbers) and the per-event path (numeric strings, as OCPP 1.6 sends
    them) give each reading the same point, readings of one millisecond included."""
    as_strings = [{k: str(v) if k.endswith(UNITS) else v for k, v in r.items()} for r in sent]
    encode = ChunkEncoder(EventDecoder(str)).encode_lines
    fast = encode([(i, orjson.dumps(r)) for i, r in enumerate(sent)]).lines
    slow = encode([(i, orjson.dumps(r)) for i, r in enumerate(as_strings)]).lines
    assert len(fast) == len(slow) == len(sent)
    assert list(map(point, fast)) == list(map(point, slow))
