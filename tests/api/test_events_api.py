"""POST /api/v1/events, /healthz and /metrics on the real service wiring and a real InfluxDB."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.roles import Role
from chargewatch.settings import Settings
from service.serve import Service, build_app

from .server import served

TS = "2026-11-24T08:15:30.250Z"
WINDOW = "time >= '2000-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"


def reading(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "reading",
        "ts": f"2026-11-24T08:{i // 60:02d}:{i % 60:02d}Z",
        "station_id": "ST-1",
        "connector_id": 1,
        "power_w": 1000 + i,
        **extra,
    }


class Running:
    def __init__(self, service: Service, client: httpx.Client, keys: dict[Role, str]) -> None:
        self.service, self.client, self.keys = service, client, keys

    def post(
        self, body: bytes, role: Role = Role.OPERATOR, *, headers: dict[str, str] | None = None
    ) -> Any:
        return self.client.post(
            "/api/v1/events",
            content=body,
            headers={"Authorization": f"Bearer {self.keys[role]}", **(headers or {})},
        )


def make_service(influxd: LocalInfluxd, data_dir: Path, **overrides: Any) -> Service:
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=f"api_{uuid.uuid4().hex[:10]}",
        data_dir=data_dir,
        **overrides,
    )
    return Service(config)


@pytest.fixture
def running(influxd: LocalInfluxd, tmp_path: Path) -> Iterator[Running]:
    service = make_service(influxd, tmp_path, max_body_bytes=64 * 1024)
    service.start()
    keys = {role: service.state.create_api_key(role) for role in Role}
    try:
        with served(build_app(service)) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield Running(service, client, keys)
    finally:
        service.stop()


def wait_drained(service: Service, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while service.spool.depth().lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.spool.depth().lines == 0


def stored_power(service: Service) -> list[float]:
    with InfluxClient(
        url=service.settings.influx_url, database=service.settings.influx_database
    ) as c:
        series = c.query(f"SELECT power_w FROM reading WHERE {WINDOW}")
    return sorted(series[0].columns["power_w"].tolist()) if series else []


def test_a_json_array_is_stored_and_each_bad_event_named_by_index(running: Running) -> None:
    events = [reading(0), reading(1, soc_pct=140), {"type": "nope"}, reading(2), "text"]
    answer = running.post(orjson.dumps(events))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2 and body["accepted_by_type"] == {"reading": 2}
    assert [(r["index"], r["field"]) for r in body["rejections"]] == [
        (1, "soc_pct"),
        (2, "type"),
        (4, None),
    ]
    assert "must be <= 100" in body["rejections"][0]["reason"]
    wait_drained(running.service)
    assert stored_power(running.service) == [1000.0, 1002.0]


def test_json_lines_bodies_work_and_a_bad_line_is_one_rejection(running: Running) -> None:
    body = b"\n".join([orjson.dumps(reading(0)), b"{broken", orjson.dumps(reading(1)), b""])
    answer = running.post(body, headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 2
    assert [r["index"] for r in answer.json()["rejections"]] == [1]


def test_id_tags_are_pseudonymized_before_the_spool(running: Running) -> None:
    start = {
        "type": "session_start",
        "ts": TS,
        "station_id": "ST-1",
        "connector_id": 1,
        "session_id": "s1",
        "id_tag": "04A1B2C3D4E5F6",
    }
    assert running.post(orjson.dumps([start])).json()["accepted"] == 1
    spooled = b"".join(p.read_bytes() for p in running.service.settings.spool_dir.glob("*.seg"))
    assert b"04A1B2C3D4E5F6" not in spooled
    assert running.service.pseudonymize("04A1B2C3D4E5F6").encode() in spooled


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"[1, 2", 400, "not valid JSON"),
        (b"x" * (65 * 1024), 413, "larger than"),
    ],
)
def test_bad_bodies_get_a_4xx_that_says_why(
    running: Running, body: bytes, status: int, words: str
) -> None:
    answer = running.post(body)
    assert answer.status_code == status
    assert words in answer.json()["detail"]


def test_keys_and_roles(running: Running) -> None:
    body = orjson.dumps([reading(0)])
    assert running.client.post("/api/v1/events", content=body).status_code == 401
    bad = running.client.post("/api/v1/events", content=body, headers={"X-API-Key": "cw_x_y"})
    assert bad.status_code == 401
    assert running.post(body, role=Role.VIEWER).status_code == 403
    assert running.post(body, role=Role.ADMIN).status_code == 200
    assert running.client.get("/healthz").status_code == 200
    assert running.client.get("/metrics").status_code == 401
    metrics = running.client.get(
        "/metrics", headers={"Authorization": f"Bearer {running.keys[Role.VIEWER]}"}
    )
    assert 'chargewatch_events_accepted_total{source="http",type="reading"} 1.0' in metrics.text
    assert "chargewatch_spool_depth_events" in metrics.text


def test_a_full_spool_answers_503_with_retry_after_and_drops_nothing(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    service = make_service(influxd, tmp_path, spool_max_bytes=1 << 20)  # drainer not started
    keys = {Role.OPERATOR: service.state.create_api_key(Role.OPERATOR)}
    try:
        with served(build_app(service)) as url, httpx.Client(base_url=url, timeout=60) as client:
            running = Running(service, client, keys)
            accepted = 0
            while True:
                answer = running.post(orjson.dumps([reading(i % 3600) for i in range(500)]))
                if answer.status_code != 200:
                    break
                accepted += answer.json()["accepted"]
            assert answer.status_code == 503
            assert answer.headers["Retry-After"].isdigit()
            # every accepted reading is in the spool, once (plus the ``reading_rx`` line of one
            # stamped far from its estimated receive time, chargewatch.schema)
            held: list[str] = []
            while service.spool.drain_once(held.extend):
                pass
            assert sum(line.startswith("reading,") for line in held) == accepted > 0
    finally:
        service.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(st.lists(json_values, max_size=5).map(orjson.dumps), st.binary(max_size=200)))
def test_random_bodies_never_get_a_500(running: Running, body: bytes) -> None:
    answer = running.post(body)
    assert answer.status_code in {200, 400}, answer.text
    assert running.client.get("/healthz").status_code == 200


def mixed_body(k: int) -> bytes:
    """A body of every kind of event, good and bad, different for each ``k``."""
    events: list[Any] = [reading(k * 10 + i) for i in range(k % 4 + 1)]
    events += [
        reading(k, soc_pct=140),
        {"type": "nope"},
        {
            "type": "status",
            "ts": TS,
            "station_id": f"ST-{k}",
            "connector_id": 1,
            "status": "Available",
        },
        {"type": "station", "ts": TS, "station_id": f"ST-{k}", "event": "boot"},
        "text",
        reading(k, power_w="1e3"),  # a numeric string: the per-event path
        {"type": "authorize", "ts": TS, "station_id": "ST-1", "id_tag": "", "result": "Accepted"},
    ]
    return orjson.dumps(events[k % 3 :])


def test_bodies_encoded_as_one_group_get_the_answers_they_get_alone(tmp_path: Path) -> None:
    from api.bodies import BodyError
    from ingest.pseudonym import Pseudonymizer
    from service.batches import BatchEncoders

    encoders = BatchEncoders(
        Pseudonymizer(b"0123456789abcdef-test-key"),
        workers=1,
        max_body_bytes=1 << 20,
        max_events=5,
    )
    try:
        bodies = [mixed_body(k) for k in range(6)] + [b"[", b"\n\n", orjson.dumps([reading(0)])]
        alone: list[Any] = []
        for body in bodies:
            try:
                alone.append(encoders.encode([body], gzipped=False, max_listed=3))
            except BodyError as exc:
                alone.append(exc)
        lines, together = encoders.encode_group([([body], False) for body in bodies], max_listed=3)
    finally:
        encoders.close()
    assert len(together) == len(bodies)
    for one, grouped in zip(alone, together, strict=True):
        if isinstance(one, BodyError):  # too many events, an array never closed, empty
            assert isinstance(grouped, BodyError) and grouped.status == one.status
            continue
        assert not isinstance(grouped, BodyError)
        assert grouped.accepted_by_type == one.accepted_by_type
        assert grouped.rejected_by_field == one.rejected_by_field
        assert grouped.listed == one.listed
    total = sum(len(one.lines.split("\n")) for one in alone if not isinstance(one, BodyError))
    assert len(lines.split("\n")) == total


def test_concurrent_batches_each_get_their_own_answer_and_all_are_stored(
    running: Running,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(k: int) -> tuple[int, Any]:
        events = [reading(i, station_id=f"ST-{k}", power_w=k * 1000 + i) for i in range(50)]
        events[k % 50] = reading(k, soc_pct=200)  # one bad event, at its own index
        answer = running.post(orjson.dumps(events))
        while answer.status_code == 503:  # the gate full for a moment: as a client, again
            time.sleep(0.05)
            answer = running.post(orjson.dumps(events))
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(6) as pool:  # as many as the gate holds with 2 workers
        answers = list(pool.map(post, range(24)))
    for k, (status, body) in enumerate(answers):
        assert status == 200, body
        assert body["accepted_by_type"] == {"reading": 49}
        assert [(r["index"], r["field"]) for r in body["rejections"]] == [(k % 50, "soc_pct")]
    wait_drained(running.service)
    expected = sorted(float(k * 1000 + i) for k in range(24) for i in range(50) if i != k % 50)
    assert stored_power(running.service) == expected
