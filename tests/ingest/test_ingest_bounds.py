"""``chargewatch ingest`` of hostile files (issue 9, findings 9 and 13), against a real InfluxDB:
an impossible connector id is a rejected line like any other, and a file of bad lines prints
the first of them and a count, not every one."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from chargewatch.influx import InfluxClient, LocalInfluxd

WINDOW = "time >= '2000-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"


def reading(i: int, connector_id: int = 1) -> bytes:
    return orjson.dumps(
        {
            "type": "reading",
            "ts": f"2026-11-24T08:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "station_id": f"ST-{i // 3600}",
            "connector_id": connector_id,
            "power_w": 1000 + i,
        }
    )


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"bounds_{uuid.uuid4().hex[:12]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def ingest(
    influxd: LocalInfluxd, database: str, path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    env |= {
        "CHARGEWATCH_INFLUX_URL": influxd.url,
        "CHARGEWATCH_INFLUX_DATABASE": database,
        "CHARGEWATCH_DATA_DIR": str(path.parent / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", "ingest", str(path), *args],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def stored(influxd: LocalInfluxd, database: str) -> int:
    with InfluxClient(url=influxd.url, database=database) as client:
        series = client.query(f"SELECT count(power_w) FROM reading WHERE {WINDOW}")
    return int(series[0].columns["count"].sum()) if series else 0


def test_connector_ids_past_int64_are_rejected_lines(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    # Half the file first (once loaded before a traceback), then the bad lines, then the rest.
    lines = [reading(i) for i in range(20_000)]
    bad = {20_001: 2**63, 20_002: 2**64 - 1, 20_003: -1}
    lines += [reading(i, connector_id=c) for i, c in bad.items()]
    lines += [reading(i) for i in range(20_004, 40_000)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = ingest(influxd, database, path)
    assert done.returncode == 1, done.stderr  # some lines rejected: exit 1, no traceback
    assert "Traceback" not in done.stderr
    rejected = [line for line in done.stdout.splitlines() if line.startswith("rejected")]
    assert rejected == [
        f"rejected line {n + 1}: connector_id: must be within 0..1000, got {c}"
        for n, c in zip(range(20_000, 20_003), bad.values(), strict=True)
    ]
    assert "3 lines rejected" in done.stdout
    assert stored(influxd, database) == len(lines) - 3


def test_a_file_of_bad_lines_prints_the_first_ones_and_a_count(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    lines = [reading(i, connector_id=-1) for i in range(20_000)] + [reading(20_000)]
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    done = ingest(influxd, database, path)
    assert done.returncode == 1, done.stderr
    out = done.stdout.splitlines()
    assert sum(line.startswith("rejected line") for line in out) == 100
    assert "... and 19900 more rejected lines, not shown" in out
    assert "20000 lines rejected" in out[-1]
    quiet = ingest(influxd, database, path, "--show-rejected", "0")
    assert not any(line.startswith("rejected line") for line in quiet.stdout.splitlines())
    assert stored(influxd, database) == 1


def test_a_cut_short_gzip_file_is_a_sentence_not_a_traceback(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(reading(i) for i in range(10_000)))[:-100])
    done = ingest(influxd, database, path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: cannot read {path}")
