"""Rate limiting per API key: the token bucket on virtual time, and 429 with Retry-After from the
real service once a key's burst is spent (another key and /healthz unaffected)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.ratelimit import RateLimiter
from chargewatch.influx import LocalInfluxd
from chargewatch.roles import Role
from chargewatch.settings import Settings
from service.serve import Service, build_app

from .server import served


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate_per_s", "burst", "steps", "expected"),
    [
        # at t=0 a full bucket: the burst passes, then a wait of whole seconds
        (1.0, 3, [0, 0, 0, 0], [0, 0, 0, 1]),
        (0.5, 2, [0, 0, 0], [0, 0, 2]),
        # refills at the rate, never above the burst
        (1.0, 2, [0, 0, 1.0, 0, 100.0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 1, 1]),
        # a refused request takes nothing: the wait shrinks as time passes
        (0.25, 1, [0, 0, 1.0, 2.5, 0.5], [0, 4, 3, 1, 0]),
        (100.0, 1, [0, 0], [0, 1]),  # never less than a second
    ],
)
def test_token_bucket(
    rate_per_s: float, burst: int, steps: list[float], expected: list[int]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=rate_per_s, burst=burst, clock=clock)
    waits = []
    for step in steps:
        clock.now += step
        waits.append(limiter.take("k1"))
    assert waits == expected


def test_each_key_has_its_own_bucket() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=Clock())
    assert [limiter.take("a"), limiter.take("a"), limiter.take("b")] == [0, 1, 0]


@pytest.fixture
def service(influxd: LocalInfluxd, tmp_path: Path) -> Iterator[Service]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=f"rate_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        detect_interval_s=0,
        api_rate_burst=3,
        api_rate_per_s=0.5,
    )
    running = Service(settings)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_429_with_retry_after_once_the_burst_is_spent(service: Service) -> None:
    first, second = (service.state.create_api_key(Role.VIEWER) for _ in range(2))
    with served(build_app(service)) as url, httpx.Client(base_url=url) as client:

        def get(path: str, key: str | None = None) -> httpx.Response:
            headers = {"X-API-Key": key} if key else {}
            return client.get(path, headers=headers)

        assert [get("/metrics", first).status_code for _ in range(3)] == [200] * 3
        refused = get("/metrics", first)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "2"  # a token every 2 s
        assert "retry in 2 s" in refused.json()["detail"]
        assert get("/api/v1/kpis", first).status_code == 429  # every keyed route
        assert get("/metrics", second).status_code == 200  # another key: its own bucket
        assert all(get("/healthz").status_code == 200 for _ in range(10))  # no key, no limit
        # an unknown key is refused for what it is, and costs no bucket
        assert get("/metrics", "cw_nothing_here").status_code == 401
