"""Promotion and rollback through a running ``serve``: the detection job picks up the promoted
version at its next run, without a restart, and /healthz and /metrics say which version scores;
a version whose artifact changed by one byte is refused and the model in service stays."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analytics.learned import BUILT_IN, TAPER_FILE
from analytics.training import history_from_file
from analytics.training import train as fit
from chargewatch.events import EventDecoder
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.state import StateStore
from ingest.pseudonym import Pseudonymizer
from models.registry import ModelPromotion, Registry
from models.train import register_candidate
from simulator import SimulationConfig, simulate
from tests.service.test_serve import ServeProcess

# Detection every half second: a run after a promotion comes soon. The job reads an empty
# database, so a run is quick.
INTERVAL_S = 0.5
WAIT_S = 60.0  # a bound on waiting for runs on a busy machine, never a figure measured


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"promote_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def serve(tmp_path: Path, influxd: LocalInfluxd, database: str) -> Iterator[ServeProcess]:
    process = ServeProcess(
        tmp_path / "var", influxd.url, database, CHARGEWATCH_DETECT_INTERVAL_S=f"{INTERVAL_S:g}"
    )
    process.start()
    yield process
    process.kill()


def after_next_run(serve: ServeProcess) -> dict[str, Any]:
    """/healthz once a detection run that began after this call has finished (the job runs
    one at a time: when run n + 2 has begun, run n + 1, which began after the call, is done)."""
    began = serve.health()["detection_runs"]
    return wait_for(serve, lambda h: h["detection_runs"] >= began + 2)


def wait_for(serve: ServeProcess, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        health = serve.health()
        if done(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.1)


def model_info(serve: ServeProcess, key: str) -> list[str]:
    text = httpx.get(f"{serve.url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    return [line for line in text.splitlines() if line.startswith("chargewatch_model_info{")]


def train(serve: ServeProcess, events: Path, labels: Path, day: int) -> str:
    """A version registered in the service's data directory (in this process: the command
    ``train`` is tested in tests/models/test_registry.py)."""
    decoder = EventDecoder(Pseudonymizer(b"promotion-test-key" * 2))
    found = history_from_file(events, decoder, labels_path=labels)
    state = StateStore(f"sqlite:///{serve.data_dir / 'state.db'}")
    try:
        registry = Registry(serve.data_dir / "models", state.engine)
        created = datetime(2026, 12, day, tzinfo=UTC)
        return register_candidate(registry, fit(found), created_at=created).version
    finally:
        state.close()


def test_promote_and_rollback_through_a_running_serve(serve: ServeProcess, tmp_path: Path) -> None:
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    start = datetime(2026, 11, 23, tzinfo=UTC)
    simulate(SimulationConfig(stations=10, hours=6, seed=11, start=start), events, labels)
    first, second = train(serve, events, labels, 1), train(serve, events, labels, 2)
    viewer = serve.cli("keys", "create", "--role", "viewer")
    assert after_next_run(serve)["model_version"] == BUILT_IN
    assert model_info(serve, viewer) == [f'chargewatch_model_info{{version="{BUILT_IN}"}} 1.0']

    serve.cli("models", "promote", first)
    health = after_next_run(serve)
    assert health["model_version"] == first
    assert model_info(serve, viewer) == [f'chargewatch_model_info{{version="{first}"}} 1.0']

    # the second version's band changes by one byte; promoted behind the CLI's back (the CLI
    # itself refuses it), the service refuses it too and keeps the first
    band = serve.data_dir / "models" / second / TAPER_FILE
    data = bytearray(band.read_bytes())
    data[len(data) // 2] ^= 0x01
    band.write_bytes(bytes(data))
    refused = _run_cli(serve, "models", "promote", second)
    assert refused.returncode == 2 and f"{second}/{TAPER_FILE}" in refused.stderr
    _promote_unchecked(serve, second)
    health = wait_for(serve, lambda h: h["model_load_failures"] > 0)
    assert health["model_version"] == first
    assert f"{second}/{TAPER_FILE}: SHA-256 differs" in health["model_last_error"]
    assert after_next_run(serve)["model_version"] == first

    serve.cli("models", "rollback")  # withdraws the refused one: the first stays
    assert after_next_run(serve)["model_version"] == first
    assert "built-in is in service" in serve.cli("models", "rollback")
    health = after_next_run(serve)
    assert health["model_version"] == BUILT_IN
    assert model_info(serve, viewer) == [f'chargewatch_model_info{{version="{BUILT_IN}"}} 1.0']


def _run_cli(serve: ServeProcess, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env=serve.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _promote_unchecked(serve: ServeProcess, version: str) -> None:
    """A promotion row written straight into the state database, as a tampering hand would."""
    state = StateStore(f"sqlite:///{serve.data_dir / 'state.db'}")
    try:
        with Session(state.engine) as session, session.begin():
            last = session.execute(
                select(ModelPromotion.seq).order_by(ModelPromotion.seq.desc()).limit(1)
            ).scalar_one()
            session.add(
                ModelPromotion(
                    seq=last + 1, version=version, promoted_at=datetime.now(UTC), withdrawn=False
                )
            )
    finally:
        state.close()
