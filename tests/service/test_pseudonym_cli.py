"""``chargewatch pseudonym``: the same pseudonym as ingest stores, from the service's key; never
a key of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from chargewatch.influx import InfluxClient, LocalInfluxd

WINDOW = "time >= '2026-01-01T00:00:00Z' AND time < '2027-01-01T00:00:00Z'"


def run(
    data_dir: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        input=stdin,
        env={**os.environ, "CHARGEWATCH_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_pseudonym_of_a_card_is_the_one_ingest_stored(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    database = f"pseud_{uuid.uuid4().hex[:10]}"
    influx = {"CHARGEWATCH_INFLUX_URL": influxd.url, "CHARGEWATCH_INFLUX_DATABASE": database}
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        orjson.dumps(
            {
                "type": "session_start",
                "ts": "2026-11-24T08:00:00Z",
                "station_id": "ST-1",
                "connector_id": 1,
                "session_id": "S1",
                "id_tag": "04a1b2c3d4",
            }
        )
        + b"\n"
    )
    ingested = run(tmp_path / "data", "ingest", str(events), **influx)
    assert ingested.returncode == 0, ingested.stderr  # and the key file now exists
    with InfluxClient(url=influxd.url, database=database) as client:
        (series,) = client.query(f'SELECT "id_pseudonym" FROM "session_start" WHERE {WINDOW}')
        stored = str(series.columns["id_pseudonym"][0])

    # the same card as a billing system has it (OCPP tags are case-insensitive), and another
    done = run(tmp_path / "data", "pseudonym", stdin="04A1B2C3D4\n04a1b2c3d4\nOTHER-CARD\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [stored, stored]
    assert len(lines) == 3 and lines[2] != stored and len(lines[2]) == 32
    assert "04A1B2C3D4" not in done.stdout + done.stderr


def test_without_the_services_key_it_refuses_and_creates_none(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run(data, "pseudonym", stdin="04A1B2C3D4\n")
    assert done.returncode == 2
    assert "no pseudonym key" in done.stderr and "would be wrong" in done.stderr
    assert done.stdout == ""
    assert not data.exists()


def test_a_key_from_the_environment_and_bad_input(tmp_path: Path) -> None:
    key = {"CHARGEWATCH_PSEUDONYM_KEY": "a-key-from-the-environment-0123"}
    one = run(tmp_path, "pseudonym", stdin="CARD-9\n", **key)
    assert one.returncode == 0 and len(one.stdout.strip()) == 32
    assert run(tmp_path, "pseudonym", stdin="", **key).returncode == 2
    blank = run(tmp_path, "pseudonym", stdin="CARD-9\n\nSECRET-CARD\n", **key)
    assert blank.returncode == 2 and "line 2" in blank.stderr
    assert "SECRET-CARD" not in blank.stdout + blank.stderr
