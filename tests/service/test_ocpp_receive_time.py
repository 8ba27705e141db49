"""A reading that arrives over OCPP stamped far from its receive time (a charger that booted
with a 1970 clock) is stored twice: at its stamp, and as a ``reading_rx`` point at its receive
time, where the detection window finds it (``chargewatch.schema``, receive times)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chargewatch.influx import InfluxClient, LocalInfluxd

from .test_alerts_live_e2e import live_station
from .test_serve import ServeProcess, wait_for

WINDOW = "time >= '1969-12-31T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"rx_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def count(url: str, database: str, measurement: str) -> int:
    with InfluxClient(url=url, database=database) as client:
        series = client.query(f"SELECT count(power_w) FROM {measurement} WHERE {WINDOW}")
    return int(series[0].columns["count"][0]) if series else 0


def test_a_1970_stamped_ocpp_reading_is_indexed_by_its_receive_time(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    serve = ServeProcess(tmp_path, influxd.url, database)
    serve.start()
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        with live_station(f"ws://127.0.0.1:{serve.port}/ocpp/CP-{uuid.uuid4().hex[:6]}") as cp:
            cp.boot()
            tx = cp.start_transaction(now - timedelta(minutes=2), "04E1A2B3C4D5")
            cp.meter_value(tx, now - timedelta(minutes=1), 7000.0, 100.0, 40.0)  # on time
            cp.meter_value(tx, datetime(1970, 1, 1, 0, 5, tzinfo=UTC), 7000.0, 220.0, 41.0)
        wait_for(lambda: serve.health()["spool_lines"] == 0)
        wait_for(lambda: count(influxd.url, database, "reading") == 2)
        assert count(influxd.url, database, "reading_rx") == 1  # only the 1970 one
    finally:
        code = serve.kill(signal.SIGTERM)
    assert code == 0  # a stop asked for is a clean exit
