"""Issue 9 on ``POST /api/v1/events`` and the API's access, against the real service wiring:
bounded work, memory and answers (finding 7), connector ids (9), limits and gzip (13), keys
and the OpenAPI document (14)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from fastapi import HTTPException

from api.events import MAX_LISTED_REJECTIONS, BatchGate
from chargewatch.events import MAX_CONNECTOR_ID
from chargewatch.influx import LocalInfluxd
from chargewatch.roles import Role
from service.serve import build_app

from .server import served
from .test_events_api import Running, make_service, reading, stored_power, wait_drained


@pytest.fixture
def defaults(influxd: LocalInfluxd, tmp_path: Path) -> Iterator[Running]:
    """The service with its default limits (a 16 MiB body, 100,000 events, 2 workers)."""
    yield from _running(influxd, tmp_path)


def _running(influxd: LocalInfluxd, tmp_path: Path, **overrides: Any) -> Iterator[Running]:
    service = make_service(influxd, tmp_path, **overrides)
    service.start()
    keys = {role: service.state.create_api_key(role) for role in Role}
    try:
        with (
            served(build_app(service)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            yield Running(service, client, keys)
    finally:
        service.stop()


class Watch:
    """Asks /healthz every 20 ms from another thread and keeps the slowest round trip."""

    def __init__(self, url: str) -> None:
        self.worst_s = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.worst_s = max(self.worst_s, time.perf_counter() - began)
                self.answers += 1
                time.sleep(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        while not self.answers:  # watching before the attack begins
            time.sleep(0.005)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_16_mib_array_of_zeros_is_refused_at_once_and_nobody_waits(defaults: Running) -> None:
    body = b"[" + b"0," * ((16 << 20) // 2 - 1) + b"]"  # 16 MiB: the limit
    assert len(body) <= defaults.service.settings.max_body_bytes
    with Watch(str(defaults.client.base_url)) as watch:
        began = time.perf_counter()
        answer = defaults.post(body)
        took_s = time.perf_counter() - began
    assert answer.status_code == 413, answer.text[:200]
    assert "more than 100000 events" in answer.json()["detail"]
    assert took_s < 5 and len(answer.content) < 1000
    assert watch.worst_s < 1.0


def test_a_body_of_bad_events_is_worked_off_the_loop_with_a_bounded_answer(
    defaults: Running,
) -> None:
    bad = orjson.dumps({"type": "reading", "ts": "2026-11-24T08:00:00Z", "station_id": "S"})
    body = b"[" + b",".join([bad] * 99_000) + b"]"  # 6 MB, each one "connector_id is required"
    with Watch(str(defaults.client.base_url)) as watch:
        answer = defaults.post(body)
    assert answer.status_code == 200
    found = answer.json()
    assert found["accepted"] == 0 and found["rejected"] == 99_000
    assert len(found["rejections"]) == MAX_LISTED_REJECTIONS
    assert [r["index"] for r in found["rejections"]] == list(range(MAX_LISTED_REJECTIONS))
    assert len(answer.content) < 20_000  # was every one of them: 728 MB for 16 MiB of zeros
    assert watch.worst_s < 1.0


def test_more_events_than_the_limit_are_refused_whole(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    for running in _running(influxd, tmp_path, max_events_per_request=1000):
        lines = [orjson.dumps(reading(i % 3600)) for i in range(1001)]
        for body in (b"\n".join(lines), orjson.dumps([reading(i % 3600) for i in range(1001)])):
            answer = running.post(body)
            assert answer.status_code == 413 and "more than 1000 events" in answer.text
        assert running.service.spool.depth().lines == 0  # all or nothing
        assert running.post(b"\n".join(lines[:1000])).json()["accepted"] == 1000


@pytest.mark.parametrize("as_lines", [False, True])
def test_impossible_connector_ids_are_rejected_events_not_a_500(
    defaults: Running, as_lines: bool
) -> None:
    bad_ids = [-1, 2**63, 2**64 - 1, MAX_CONNECTOR_ID + 1]
    events = [reading(0), *(reading(i + 1, connector_id=c) for i, c in enumerate(bad_ids))]
    events.append(reading(9))
    body = b"\n".join(orjson.dumps(e) for e in events) if as_lines else orjson.dumps(events)
    answer = defaults.post(body)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["accepted"] == 2 and found["rejected"] == len(bad_ids)
    assert {(r["index"], r["field"]) for r in found["rejections"]} == {
        (i + 1, "connector_id") for i in range(len(bad_ids))
    }
    wait_drained(defaults.service)
    assert stored_power(defaults.service) == [1000.0, 1009.0]


def test_a_batch_larger_than_the_whole_spool_gets_413_not_503(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    overrides = {"spool_max_bytes": 1 << 20, "max_body_bytes": 8 << 20}
    for running in _running(influxd, tmp_path, **overrides):
        running.service.drainer.stop()  # keep what is spooled, to see that nothing was
        big = [reading(i % 3600, station_id=f"ST-{i // 3600}") for i in range(20_000)]
        answer = running.post(orjson.dumps(big))  # about 1.7 MB of line protocol
        assert answer.status_code == 413, answer.text
        assert "send smaller batches" in answer.json()["detail"]
        assert running.service.spool.depth().lines == 0
        assert running.post(orjson.dumps(big[:3000])).status_code == 200


def test_gzip_bodies_are_decoded_and_bombs_refused(influxd: LocalInfluxd, tmp_path: Path) -> None:
    for running in _running(influxd, tmp_path, max_body_bytes=64 * 1024):
        events = orjson.dumps([reading(i) for i in range(100)])
        answer = running.post(gzip.compress(events), headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 100
        bomb = gzip.compress(b"[" + b" " * (64 << 20) + b"]")  # 64 KB that inflate to 64 MiB
        assert len(bomb) < 64 * 1024
        answer = running.post(bomb, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 413 and "once decompressed" in answer.text
        answer = running.post(events, headers={"Content-Encoding": "br"})
        assert answer.status_code == 415 and answer.headers["Accept-Encoding"] == "gzip"
        answer = running.post(b"\x1f\x8bnot really", headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 400


def test_too_many_batches_at_once_get_503_before_their_body_is_read() -> None:
    gate = BatchGate(workers=1)  # one at work, two waiting
    with gate.admit("key a"), gate.admit("key b"), gate.admit("key c"):
        with pytest.raises(HTTPException) as caught, gate.admit("key d"):
            pass
        assert caught.value.status_code == 503 and caught.value.headers == {"Retry-After": "5"}
    with gate.admit("key a"):  # places are given back
        pass


def test_openapi_declares_the_key_schemes_and_the_event_body(defaults: Running) -> None:
    client = defaults.client
    assert client.get("/docs").status_code == 404  # would load scripts from a CDN
    assert client.get("/redoc").status_code == 404
    document = client.get("/openapi.json")  # open: it describes, it reveals nothing
    assert document.status_code == 200
    spec = document.json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKeyBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKeyBearer"]["description"],
    }
    assert schemes["apiKeyHeader"]["in"] == "header"
    post = spec["paths"]["/api/v1/events"]["post"]
    assert {"apiKeyBearer": []} in post["security"] and {"apiKeyHeader": []} in post["security"]
    assert "security" in spec["paths"]["/metrics"]["get"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-ndjson"}
    assert {"413", "415", "503"} <= set(post["responses"])

    batch = {"$ref": content["application/json"]["schema"]["$ref"], **spec}
    validator = jsonschema.Draft202012Validator(batch)
    good = [
        reading(0, soc_pct="57.5", extra_key=True),
        {**reading(1), "type": "status", "status": "Charging"},
        {
            "type": "authorize",
            "ts": "2026-11-24T08:00:00+01:00",
            "station_id": "S",
            "id_tag": "A",
            "result": "Accepted",
        },
    ]
    assert list(validator.iter_errors(good)) == []
    for bad in (reading(0, connector_id=2**63), reading(0, soc_pct=101), {"type": "nope"}):
        assert list(validator.iter_errors([bad])), bad


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    env["CHARGEWATCH_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_revoked_key_is_refused_at_its_next_request(defaults: Running, tmp_path: Path) -> None:
    created = cli(tmp_path, "keys", "create", "--role", "operator")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = key.removeprefix("cw_").partition("_")[0]
    headers = {"Authorization": f"Bearer {key}"}
    body = orjson.dumps([reading(0)])
    assert defaults.client.post("/api/v1/events", content=body, headers=headers).status_code == 200

    listed = cli(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["id", "role", "created", "revoked"]
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert row[1:2] == ["operator"] and row[3] == "-"
    assert len(listed.stdout.splitlines()) == 1 + len(Role) + 1  # the fixture's keys and this one
    secret = key.rpartition(f"{key_id}_")[2]
    assert secret not in listed.stdout

    revoked = cli(tmp_path, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"key {key_id} (operator) revoked at" in revoked.stdout
    refused = defaults.client.post("/api/v1/events", content=body, headers=headers)
    assert refused.status_code == 401  # the running app, at once
    assert defaults.post(body).status_code == 200  # the other keys still work

    again = cli(tmp_path, "keys", "list")
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith(key_id))
    assert row[3] != "-"  # kept, with the time of its revocation
    unknown = cli(tmp_path, "keys", "revoke", "0123456789ab")
    assert unknown.returncode == 2 and "no API key has the id" in unknown.stderr
