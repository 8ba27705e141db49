"""Two `chargewatch serve` processes on one PostgreSQL state database and one InfluxDB, as
behind a load balancer (DESIGN.md, Growing past one machine).

A station boots and starts a transaction on instance A, then reconnects to instance B: there it
re-sends the StartTransaction whose answer it lost (same id back), sends MeterValues with and
without the transaction id, and stops. Another station runs a whole session on B. Each session
is stored whole and right: its start, every reading and its stop on the connector it ran on,
under one session id; the two stations' transaction ids differ.

Everything is real: two serve processes, the PostgreSQL of this machine (127.0.0.1:5432, a
database of its own, dropped afterwards; skipped without PostgreSQL unless CI is set), InfluxDB.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chargewatch.influx import InfluxClient, LocalInfluxd
from tests.conftest import postgres_database

from .test_alerts_live_e2e import LiveStation, live_station, stamp
from .test_ocpp_abuse import LoggedServe
from .test_serve import wait_for

WINDOW = "time >= '2000-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"
CONNECTOR = 2  # not 1, and not the 0 of a StopTransaction whose transaction is unknown
TAG = "04A1B2C3D4E5F6"


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"two_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def state_url() -> Iterator[str]:
    with postgres_database("cw_two") as url:
        yield url


def start(cp: LiveStation, moment: datetime) -> int:
    payload = {
        "connectorId": CONNECTOR,
        "idTag": TAG,
        "meterStart": 1000,
        "timestamp": stamp(moment),
    }
    return int(cp.call("StartTransaction", payload)["transactionId"])


def meter(cp: LiveStation, moment: datetime, wh: float, tx: int | None) -> None:
    sampled = [
        {"measurand": "Power.Active.Import", "value": "7000", "unit": "W"},
        {"measurand": "Energy.Active.Import.Register", "value": f"{wh:.0f}", "unit": "Wh"},
    ]
    payload: dict[str, Any] = {
        "connectorId": CONNECTOR,
        "meterValue": [{"timestamp": stamp(moment), "sampledValue": sampled}],
    }
    if tx is not None:
        payload["transactionId"] = tx
    cp.call("MeterValues", payload)


def stop(cp: LiveStation, tx: int, moment: datetime, wh: float) -> None:
    payload = {
        "transactionId": tx,
        "meterStop": int(wh),
        "timestamp": stamp(moment),
        "reason": "EVDisconnected",
    }
    cp.call("StopTransaction", payload)


def stored(url: str, database: str, measurement: str, station: str) -> list[dict[str, Any]]:
    """The points of one station, oldest first, as dicts (tags as strings)."""
    with InfluxClient(url=url, database=database) as client:
        series = client.query(
            f"SELECT * FROM {measurement} WHERE station_id = '{station}' AND {WINDOW}"
        )
    if not series:
        return []
    columns = series[0].columns
    return [{name: values[i] for name, values in columns.items()} for i in range(len(series[0]))]


def test_a_station_moving_between_instances_mid_session_is_stored_whole(
    influxd: LocalInfluxd, database: str, state_url: str, tmp_path: Path
) -> None:
    env = {
        "CHARGEWATCH_STATE_URL": state_url,
        # Instances share the pseudonym key: one card, one pseudonym, whichever took it.
        "CHARGEWATCH_PSEUDONYM_KEY": "two-instances-share-this-key-0123456789",
        "CHARGEWATCH_DETECT_INTERVAL_S": "0",  # ingest only: detection is not this test's
    }
    a = LoggedServe(tmp_path / "a", influxd.url, database, **env)
    b = LoggedServe(tmp_path / "b", influxd.url, database, **env)
    moving, staying = (f"CP-{name}-{uuid.uuid4().hex[:6]}" for name in ("move", "stay"))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    minute = timedelta(minutes=1)
    try:
        a.start()
        b.start()
        with live_station(f"ws://127.0.0.1:{a.port}/ocpp/{moving}") as cp:
            cp.boot()
            tx = start(cp, t0)
            meter(cp, t0 + minute, 1100, tx)
        with live_station(f"ws://127.0.0.1:{b.port}/ocpp/{moving}") as cp:
            cp.boot()
            assert start(cp, t0) == tx  # re-sent: its answer was lost on the way
            meter(cp, t0 + 2 * minute, 1220, None)  # no transaction id: by its connector
            meter(cp, t0 + 3 * minute, 1340, tx)
            stop(cp, tx, t0 + 4 * minute, 1400)
        with live_station(f"ws://127.0.0.1:{b.port}/ocpp/{staying}") as cp:
            cp.boot()
            other = start(cp, t0)
            meter(cp, t0 + minute, 1100, None)
            stop(cp, other, t0 + 2 * minute, 1150)
        for serve in (a, b):
            wait_for(lambda serve=serve: serve.health()["spool_lines"] == 0)
    finally:
        for serve in (a, b):
            if serve.process is not None:
                serve.stop()

    assert tx != other
    for station, tx_id, readings, meter_stop in [
        (moving, tx, 3, 1400.0),
        (staying, other, 1, 1150.0),
    ]:
        session = f"{station}-{tx_id}"
        starts = stored(influxd.url, database, "session_start", station)
        assert [(p["connector_id"], p["session_id"], p["meter_start_wh"]) for p in starts] == [
            (str(CONNECTOR), session, 1000.0)
        ]
        points = stored(influxd.url, database, "reading", station)
        assert [(p["connector_id"], p["session_id"]) for p in points] == [
            (str(CONNECTOR), session)
        ] * readings
        stops = stored(influxd.url, database, "session_stop", station)
        assert [(p["connector_id"], p["session_id"], p["meter_stop_wh"]) for p in stops] == [
            (str(CONNECTOR), session, meter_stop)
        ]
