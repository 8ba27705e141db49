"""A page end to end: an OCPP 1.6 station, the real `chargewatch serve`, a real Alertmanager
running the generated config, and a real webhook receiver (issue 14).

A station boots and reports its connector Faulted with GroundFailure: one firing notification
reaches the receiver, with the taxonomy's alertname, owner and runbook. `serve` SIGKILLed and
restarted on the same data directory re-fires nothing (alert state lives in the state
database). The station reports Available/NoError: one resolved notification arrives.

The figures (time to page, to resolve): pytest --log-cli-level=INFO.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_sync
from websockets.typing import Subprotocol

from alerts.config import Timings, Webhook, config_text
from alerts.server import LocalAlertmanager
from alerts.taxonomy import BY_ERROR_CODE
from chargewatch.events import ChargePointErrorCode
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

from ..alerts.receiver import Notification, Receiver, firing, resolved
from .test_ocpp_abuse import LoggedServe

logger = logging.getLogger(__name__)

# CHARGEWATCH_DETECT_INTERVAL_S: detection and the alert job. An active alert goes out with an
# endsAt 4 x max(interval, 1 min) ahead (Policy.lease): the restarted serve must be back before
# it, or Alertmanager resolves the alert itself and the restart pages it again.
INTERVAL_S = 2.0
LEASE_S = 4 * max(INTERVAL_S, 60.0)
GROUP_WAIT_S = 1.0
# repeat_interval long: any second firing notification within the test is a re-fire.
FAST = Timings(group_wait=f"{GROUP_WAIT_S:g}s", group_interval="1s", repeat_interval="1h")
# Bound on a page: the event's way into InfluxDB, two job intervals plus group_wait, and slack
# for a heavily loaded machine.
PAGE_WITHIN_S = 2 * INTERVAL_S + GROUP_WAIT_S + 10.0
QUIET_CYCLES = 3  # after the restart: cycles with the alert still active, and no new page


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"alerts_e2e_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def paged_alertmanager(receiver: Receiver, tmp_path: Path) -> Iterator[LocalAlertmanager]:
    """A private Alertmanager running the generated config, its webhook to ``receiver``."""
    config = config_text(Webhook(url=receiver.url("/page")), page=FAST, ticket=FAST)
    server = LocalAlertmanager(data_dir=tmp_path / "am", port=free_port(), config=config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Station16:
    """A minimal OCPP 1.6 station speaking raw OCPP-J frames over a synchronous websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        message_id = str(next(self._ids))
        self._ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        answer = orjson.loads(self._ws.recv(timeout=10))
        assert answer[0] == 3 and answer[1] == message_id, answer  # a CallResult to this call
        return dict(answer[2])

    def boot(self) -> None:
        answer = self.call(
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "AC22", "firmwareVersion": "1.2"},
        )
        assert answer["status"] == "Accepted"

    def status(self, status: str, error_code: str, **extra: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = {"connectorId": 1, "errorCode": error_code, "status": status, "timestamp": now}
        self.call("StatusNotification", payload | extra)


@contextlib.contextmanager
def station16(url: str) -> Iterator[Station16]:
    with connect_sync(url, subprotocols=[Subprotocol("ocpp1.6")], open_timeout=10) as ws:
        yield Station16(ws)


def of_alert(notifications: list[Notification], station: str) -> list[Notification]:
    """The notifications of the GroundFailure group of ``station`` (the service's own health
    alerts, if any, are other groups)."""
    group = {"alertname": "GroundFailure", "station_id": station}
    return [n for n in notifications if n["groupLabels"] == group]


def test_a_faulted_connector_pages_once_across_a_serve_sigkill_then_resolves(
    influxd: LocalInfluxd,
    database: str,
    tmp_path: Path,
    receiver: Receiver,
    paged_alertmanager: LocalAlertmanager,
) -> None:
    serve = LoggedServe(
        tmp_path / "serve",
        influxd.url,
        database,
        CHARGEWATCH_DETECT_INTERVAL_S=f"{INTERVAL_S:g}",
        CHARGEWATCH_ALERTMANAGER_URLS=paged_alertmanager.url,
    )
    station = f"CP-{uuid.uuid4().hex[:6]}"
    url = f"ws://127.0.0.1:{serve.port}/ocpp/{station}"

    def ours() -> list[Notification]:
        return of_alert(receiver.notifications("/page"), station)

    serve.start()
    try:
        with station16(url) as cp:
            cp.boot()
            faulted_at = time.monotonic()
            cp.status("Faulted", "GroundFailure", vendorErrorCode="RCD-30mA")
            got = receiver.wait(
                "/page", lambda n: len(firing(of_alert(n, station))) == 1, timeout_s=PAGE_WITHIN_S
            )
            paged_s = time.monotonic() - faulted_at
            logger.info("time to page: %.2f s (bound %.0f s)", paged_s, PAGE_WITHIN_S)
            [page] = firing(of_alert(got, station))
            assert page["receiver"] == "charger-page"
            [fired] = page["alerts"]
            assert fired["status"] == "firing"
            assert fired["labels"]["alertname"] == "GroundFailure"
            assert fired["labels"]["owner"] == "charger"
            assert fired["labels"]["severity"] == "page"
            assert fired["labels"]["station_id"] == station
            assert fired["labels"]["connector_id"] == "1"
            runbook = BY_ERROR_CODE[ChargePointErrorCode.GROUND_FAILURE].runbook
            assert fired["annotations"]["runbook"] == runbook

        assert serve.process is not None
        serve.process.send_signal(signal.SIGKILL)  # no shutdown: only what was committed stays
        serve.process.wait(15)
        serve.process = None
        killed_at = time.monotonic()
        serve.start()  # the same data directory, the same port
        restart_s = time.monotonic() - killed_at
        logger.info("serve back after SIGKILL in %.2f s (lease %.0f s)", restart_s, LEASE_S)
        # its first cycle comes 1.5 intervals after it starts: within the lease of the last send
        assert restart_s + 1.5 * INTERVAL_S < LEASE_S, "serve too slow back: Alertmanager resolves"
        time.sleep(QUIET_CYCLES * INTERVAL_S + 2 * GROUP_WAIT_S)
        assert len(firing(ours())) == 1, ours()  # no re-fire
        assert resolved(ours()) == []

        with station16(url) as cp:
            cp.boot()
            cleared_at = time.monotonic()
            cp.status("Available", "NoError")
            receiver.wait(
                "/page", lambda n: len(resolved(of_alert(n, station))) == 1, timeout_s=PAGE_WITHIN_S
            )
            logger.info("time to resolve: %.2f s", time.monotonic() - cleared_at)
        [gone] = resolved(ours())[0]["alerts"]
        assert gone["labels"] == fired["labels"] and gone["startsAt"] == fired["startsAt"]
        time.sleep(2 * INTERVAL_S)
        assert len(firing(ours())) == 1 and len(resolved(ours())) == 1
    finally:
        if serve.process is not None:
            serve.stop()
