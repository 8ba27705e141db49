"""`chargewatch serve` and a damaged spool, for real: one flipped byte costs one record, on
restart and while running, and shows in /healthz and /metrics; one serve per data directory."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

from .test_serve import ServeProcess, batch, powers, wait_for

BATCH = 200
BATCHES = 10
DAMAGED = 4  # the batch whose spool record gets a flipped byte


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"damage_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def post_batches(serve: ServeProcess, key: str) -> list[tuple[int, int]]:
    """Post BATCHES batches, each acknowledged (so fsynced as one spool record); returns where
    each record lies in the segment."""
    segment = serve.data_dir / "spool" / "000000000001.seg"
    spans = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for k in range(BATCHES):
            start = segment.stat().st_size if segment.exists() else 0
            answer = client.post(f"{serve.url}/api/v1/events", content=batch(k * BATCH, BATCH))
            assert answer.status_code == 200, answer.text
            spans.append((start, segment.stat().st_size))
    return spans


def flip_a_byte_in_the_middle(serve: ServeProcess, span: tuple[int, int]) -> None:
    segment = serve.data_dir / "spool" / "000000000001.seg"
    middle = (span[0] + span[1]) // 2
    with segment.open("r+b") as handle:
        handle.seek(middle)
        byte = handle.read(1)
        handle.seek(middle)
        handle.write(bytes([byte[0] ^ 0x01]))


def expected() -> list[float]:
    return [float(i) for i in range(BATCH * BATCHES) if i // BATCH != DAMAGED]


def metric(serve: ServeProcess, key: str, name: str) -> float:
    text = httpx.get(f"{serve.url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


def assert_quarantined_once(serve: ServeProcess, viewer: str) -> None:
    health = serve.health()
    assert health["status"] == "degraded"
    assert health["spool_quarantined_records"] == 1
    assert health["spool_quarantine_files"] == 1
    assert metric(serve, viewer, "chargewatch_spool_records_quarantined_total") == 1
    assert metric(serve, viewer, "chargewatch_spool_bytes_quarantined_total") > 0
    assert len(list((serve.data_dir / "spool" / "quarantine").glob("*.bad"))) == 1


def test_a_flipped_byte_found_on_restart_costs_one_batch(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # InfluxDB unreachable: everything stays spooled
    first = ServeProcess(tmp_path, nowhere, database)
    key = first.cli("keys", "create", "--role", "operator")
    viewer = first.cli("keys", "create", "--role", "viewer")
    first.start()
    try:
        spans = post_batches(first, key)
    finally:
        first.kill(signal.SIGKILL)
    flip_a_byte_in_the_middle(first, spans[DAMAGED])
    serve = ServeProcess(tmp_path, influxd.url, database)
    serve.start()
    try:
        wait_for(lambda: serve.health()["spool_lines"] == 0, timeout_s=60)
        assert powers(influxd.url, database) == expected()
        assert_quarantined_once(serve, viewer)
    finally:
        serve.kill(signal.SIGTERM)


def test_a_flipped_byte_met_while_running_costs_one_batch_and_draining_goes_on(
    database: str, tmp_path: Path
) -> None:
    influx = LocalInfluxd(data_dir=tmp_path / "influxd", port=free_port())
    influx.start()
    serve = ServeProcess(tmp_path / "cw", influx.url, database)
    key = serve.cli("keys", "create", "--role", "operator")
    viewer = serve.cli("keys", "create", "--role", "viewer")
    serve.start()
    try:
        influx.stop()  # the backlog stays in the spool, in the segment being written
        spans = post_batches(serve, key)
        flip_a_byte_in_the_middle(serve, spans[DAMAGED])
        assert serve.health()["status"] == "ok"
        influx.start()
        wait_for(lambda: serve.health()["spool_lines"] == 0, timeout_s=60)
        assert powers(influx.url, database) == expected()
        assert_quarantined_once(serve, viewer)
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
            later = client.post(f"{serve.url}/api/v1/events", content=batch(90_000, 10))
        assert later.status_code == 200
        wait_for(lambda: len(powers(influx.url, database)) == len(expected()) + 10)
    finally:
        serve.kill(signal.SIGTERM)
        influx.stop()


def test_a_second_serve_on_one_data_directory_refuses_to_start(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    serve = ServeProcess(tmp_path, influxd.url, database)
    serve.start()
    assert serve.process is not None
    holder = serve.process.pid
    try:
        second = subprocess.run(
            [sys.executable, "-m", "chargewatch", "serve", "--port", str(free_port())],
            env=serve.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert (
            f"error: the data directory {tmp_path} is in use by another chargewatch serve "
            f"(pid {holder})" in second.stderr
        )
        assert "Traceback" not in second.stderr
        assert serve.health()["status"] == "ok"  # the first one is untouched
    finally:
        serve.kill(signal.SIGKILL)
    serve.start()  # the lock died with its holder, even by SIGKILL
    serve.kill(signal.SIGTERM)
