"""``chargewatch simulate`` and ``chargewatch ingest`` end to end, against a real InfluxDB."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from chargewatch.events import parse_ts
from chargewatch.influx import InfluxClient, LocalInfluxd

from ..conftest import ADMIN, ADMIN_PASSWORD

WINDOW = "time >= '1677-09-22T00:00:00Z' AND time <= '2262-04-10T00:00:00Z'"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Env:
    influxd: LocalInfluxd
    database: str
    data_dir: Path

    def run(self, *args: str, **extra_env: str) -> Run:
        env = {
            **os.environ,
            "CHARGEWATCH_INFLUX_URL": self.influxd.url,
            "CHARGEWATCH_INFLUX_DATABASE": self.database,
            "CHARGEWATCH_DATA_DIR": str(self.data_dir),
            "CHARGEWATCH_INFLUX_MAX_RETRIES": "1",
            **extra_env,
        }
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def client(self) -> InfluxClient:
        return InfluxClient(url=self.influxd.url, database=self.database)


@pytest.fixture
def env(influxd: LocalInfluxd, tmp_path: Path) -> Iterator[Env]:
    database = f"cli_{uuid.uuid4().hex[:12]}"
    yield Env(influxd, database, tmp_path / "data")
    with InfluxClient(url=influxd.url, database=database) as client:
        client.query(f'DROP DATABASE "{database}"')


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fleet")
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargewatch",
            "simulate",
            "--stations",
            "12",
            "--hours",
            "8",
            "--seed",
            "3",
            "--anomaly-rate",
            "0.2",
            "--out",
            str(events),
            "--labels",
            str(labels),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return events, labels


def file_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_every_reading_is_stored_per_station_and_sessions_read_back_in_order(
    env: Env, fleet: tuple[Path, Path]
) -> None:
    events_path, _ = fleet
    result = env.run("ingest", str(events_path))
    assert result.code == 0, result.stdout + result.stderr
    assert "0 lines rejected" in result.stdout

    events = file_events(events_path)
    readings = [e for e in events if e["type"] == "reading"]
    expected = Counter(str(e["station_id"]) for e in readings)
    with env.client() as client:
        stored = client.query(f"SELECT * FROM reading WHERE {WINDOW} GROUP BY station_id")
        got = {s.tags["station_id"]: len(s) for s in stored}
        assert got == dict(expected)

        # One session's readings come back in time order with the values written.
        session_id = next(str(e["session_id"]) for e in readings if e.get("session_id"))
        mine = sorted(
            (e for e in readings if e.get("session_id") == session_id),
            key=lambda e: parse_ts(e["ts"]),
        )
        station, connector = mine[0]["station_id"], mine[0]["connector_id"]
        series = client.query(
            f"SELECT energy_wh, power_w, session_id FROM reading WHERE station_id = '{station}' "
            f"AND connector_id = '{connector}' AND session_id = '{session_id}' AND {WINDOW}"
        )
    assert len(series) == 1
    columns = series[0].columns
    assert np.all(np.diff(columns["time"]) > 0)
    # the charger's millisecond; the digits below it carry the point's identity (schema.py)
    assert list(columns["time"] // 1_000_000 * 1_000_000) == [parse_ts(e["ts"]) for e in mine]
    np.testing.assert_array_equal(columns["energy_wh"], [float(e["energy_wh"]) for e in mine])


def test_clear_id_tags_are_nowhere_in_influxdb_nor_in_the_output(
    env: Env, fleet: tuple[Path, Path]
) -> None:
    events_path, _ = fleet
    result = env.run("ingest", str(events_path))
    assert result.code == 0
    tags = {str(e["id_tag"]) for e in file_events(events_path) if "id_tag" in e}
    assert tags
    with env.client() as client:
        everything = client.query(f"SELECT * FROM /.*/ WHERE {WINDOW}")
        tag_values = client.query("SHOW TAG VALUES WITH KEY =~ /.*/")
    stored_text: set[str] = set()
    for series in everything + tag_values:
        stored_text.update(series.tags.values())
        for column in series.columns.values():
            if column.dtype == object:
                stored_text.update(str(v).upper() for v in column if v is not None)
    assert any(series.name == "session_start" for series in everything)
    assert not {tag.upper() for tag in tags} & stored_text
    output = result.stdout + result.stderr + env.influxd.log_path.read_text()
    assert not any(tag in output for tag in tags)


def test_invalid_lines_are_rejected_by_number_and_the_rest_goes_in(
    env: Env, tmp_path: Path
) -> None:
    ts = "2026-11-24T08:00:00Z"
    good = {"type": "reading", "ts": ts, "station_id": "S1", "connector_id": 1, "power_w": 5}
    lines = [
        orjson.dumps(good),
        b"{not json",
        orjson.dumps({**good, "ts": "2026-11-24T08:00:10Z", "soc_pct": 101}),
        orjson.dumps({**good, "ts": "2026-11-24T08:00:20Z"}),
        b"",
        orjson.dumps({**good, "connector_id": "one"}),
        orjson.dumps({**good, "ts": "2026-11-24T08:00:30Z", "voltage_v": -1}),
        orjson.dumps(
            {
                "type": "status",
                "ts": ts,
                "station_id": "S1",
                "connector_id": 1,
                "status": "Charging",
            }
        ),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = env.run("ingest", str(path))
    assert result.code == 1
    rejected = [line for line in result.stdout.splitlines() if line.startswith("rejected")]
    assert len(rejected) == 4
    assert rejected[0].startswith("rejected line 2: not valid JSON")
    assert rejected[1:] == [
        "rejected line 3: soc_pct: must be <= 100, got 101",
        "rejected line 6: connector_id: must be an integer >= 0, got 'one'",
        "rejected line 7: voltage_v: must be >= 0, got -1",
    ]
    assert "3 events written (2 reading, 1 status), 4 lines rejected" in result.stdout
    with env.client() as client:
        stored = client.query(f"SELECT power_w FROM reading WHERE {WINDOW}")
    assert len(stored[0]) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "args", "extra_env", "words"),
    [
        ("missing file", ["ingest", "/nonexistent/events.jsonl"], {}, "no such file"),
        ("unreachable", ["ingest", "EVENTS"], {"CHARGEWATCH_INFLUX_URL": "PORT"}, "cannot reach"),
        (
            "bad setting",
            ["ingest", "EVENTS"],
            {"CHARGEWATCH_INFLUX_URL": "ftp://x"},
            "CHARGEWATCH_INFLUX_URL",
        ),
    ],
)
def test_usage_and_connection_errors_are_one_sentence_and_exit_2(
    env: Env,
    fleet: tuple[Path, Path],
    case: str,
    args: list[str],
    extra_env: dict[str, str],
    words: str,
) -> None:
    args = [str(fleet[0]) if a == "EVENTS" else a for a in args]
    extra_env = {
        k: f"http://127.0.0.1:{free_port()}" if v == "PORT" else v for k, v in extra_env.items()
    }
    result = env.run(*args, **extra_env)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert words in result.stderr.lower() or words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("username", "password"), [(ADMIN, "wrong-pass"), (None, None)], ids=["wrong", "none"]
)
def test_wrong_credentials_are_one_sentence_and_exit_2(
    env: Env,
    influxd_auth: LocalInfluxd,
    fleet: tuple[Path, Path],
    username: str | None,
    password: str | None,
) -> None:
    credentials = (
        {"CHARGEWATCH_INFLUX_USERNAME": username, "CHARGEWATCH_INFLUX_PASSWORD": password}
        if username and password
        else {}
    )
    result = env.run(
        "ingest", str(fleet[0]), CHARGEWATCH_INFLUX_URL=influxd_auth.url, **credentials
    )
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "credentials" in result.stderr or "auth" in result.stderr.lower()
    assert "wrong-pass" not in result.stdout + result.stderr


def test_right_credentials_ingest(
    env: Env, influxd_auth: LocalInfluxd, fleet: tuple[Path, Path]
) -> None:
    result = env.run(
        "ingest",
        str(fleet[0]),
        CHARGEWATCH_INFLUX_URL=influxd_auth.url,
        CHARGEWATCH_INFLUX_USERNAME=ADMIN,
        CHARGEWATCH_INFLUX_PASSWORD=ADMIN_PASSWORD,
    )
    assert result.code == 0, result.stderr
