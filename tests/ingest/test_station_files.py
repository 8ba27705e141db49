"""``station`` events in files: ``chargewatch ingest`` stores them (real InfluxDB), and
``chargewatch detect --input`` passes over them: they are part of no session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from chargewatch.events import StationEventKind, parse_ts
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.schema import read_station_liveness

S = 1_000_000_000
START = "2026-11-23T00:00:00Z"


def chargewatch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def station(ts: str, station_id: str, event: str, **extra: Any) -> bytes:
    obj = {"type": "station", "ts": ts, "station_id": station_id, "event": event, **extra}
    return orjson.dumps(obj)


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"station_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def test_ingest_stores_station_events_and_names_bad_ones(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    lines = [
        station("2026-11-23T06:00:00Z", "F-1", "boot", vendor="Ekoenergetyka", firmware="3.2"),
        station("2026-11-23T06:00:00Z", "F-1", "connect", ocpp_version="ocpp2.0.1"),
        station("2026-11-23T06:04:00Z", "F-1", "heartbeat", heartbeat_interval_s="240"),
        station("2026-11-23T06:05:00Z", "F-1", "dozing"),
        station("2026-11-23T06:06:00Z", "F-2", "heartbeat", heartbeat_interval_s=1e9),
        station("2026-11-23T06:07:00Z", "F-2", "disconnect", reason="PowerLoss"),
    ]
    path = tmp_path / "stations.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = chargewatch(
        "ingest",
        str(path),
        CHARGEWATCH_INFLUX_URL=influxd.url,
        CHARGEWATCH_INFLUX_DATABASE=database,
        CHARGEWATCH_DATA_DIR=str(tmp_path / "data"),
    )
    assert done.returncode == 1, done.stdout + done.stderr  # it held rejected lines
    assert "4 events written (4 station), 2 lines rejected" in done.stdout
    rejected = [line for line in done.stdout.splitlines() if line.startswith("rejected")]
    assert rejected == [
        "rejected line 4: event: 'dozing' is not one of boot, connect, disconnect, heartbeat",
        "rejected line 5: heartbeat_interval_s: must be <= 86400, got 1e+09",
    ]
    t0 = parse_ts("2026-11-23T06:00:00Z")
    with InfluxClient(url=influxd.url, database=database) as client:
        liveness = read_station_liveness(client, t0 - 3600 * S, t0 + 3600 * S)
    one, two = liveness["F-1"], liveness["F-2"]
    assert (one.last.event, one.last_seen_ns // S, one.heartbeat_interval_s) == (
        StationEventKind.HEARTBEAT,
        t0 // S + 240,
        240.0,
    )
    assert one.boot is not None and one.boot.vendor == "Ekoenergetyka"
    assert (two.connected, two.last.reason) == (False, "PowerLoss")


def test_detect_input_skips_station_events_without_rejecting_them(tmp_path: Path) -> None:
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    made = chargewatch(
        "simulate",
        "--stations",
        "8",
        "--hours",
        "12",
        "--anomaly-rate",
        "0.3",
        "--seed",
        "11",
        "--start",
        START,
        "--out",
        str(events),
        "--labels",
        str(labels),
    )
    assert made.returncode == 0, made.stderr
    plain = events.read_bytes().splitlines()
    stations = sorted({orjson.loads(line)["station_id"] for line in plain})
    # a boot and heartbeats among the session events, some at their very times
    mixed: list[bytes] = []
    for i, line in enumerate(plain):
        mixed.append(line)
        if i % 50 == 0:
            obj = orjson.loads(line)
            mixed.append(station(obj["ts"], obj["station_id"], "heartbeat"))
    mixed[:0] = [station(START, s, "boot", vendor="V", heartbeat_interval_s=300) for s in stations]
    with_stations = tmp_path / "with_stations.jsonl"
    with_stations.write_bytes(b"\n".join(mixed) + b"\n")

    outputs = []
    for name, path in [("plain", events), ("mixed", with_stations)]:
        out = tmp_path / f"flags-{name}.jsonl"
        done = chargewatch(
            "detect",
            "--input",
            str(path),
            "--output",
            str(out),
            CHARGEWATCH_DATA_DIR=str(tmp_path / "data"),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 lines rejected" in done.stdout
        outputs.append((done.stdout.split(" scored, ")[0], out.read_bytes()))
    assert outputs[0] == outputs[1]  # the same sessions scored, the same flags
    # something to compare: the seed's anomalies, each found
    assert outputs[0][1].count(b"\n") >= labels.read_bytes().count(b"\n") > 0
