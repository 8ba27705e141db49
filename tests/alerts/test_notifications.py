"""Notifications end to end through a real Alertmanager running the generated config, to a real
webhook receiver: a firing then a resolved notification; a restarted Alertmanager (its storage
kept) does not notify again what it already had; with empty storage it does, once."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.client import AlertmanagerClient
from alerts.config import Timings, Webhook, config_text
from alerts.lifecycle import AlertRecord, Cycle, Policy, Reason, plan_cycle, settle
from alerts.model import Alert, Links, status_alert
from alerts.server import LocalAlertmanager
from alerts.taxonomy import BY_ERROR_CODE
from chargewatch.events import ChargePointErrorCode, ChargePointStatus, StatusChange
from chargewatch.influx.server import free_port

from .receiver import Receiver, firing, resolved

# Short timings so the test takes seconds; repeat_interval long, so any second firing
# notification within the test is a duplicate, not a reminder.
FAST = Timings(group_wait="1s", group_interval="1s", repeat_interval="1h")
POLICY = Policy(interval=timedelta(seconds=1))
QUIET_S = 4.0  # group_wait + group_interval, twice over: time for a duplicate to show


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def start_alertmanager(data_dir: Path, webhook_url: str) -> LocalAlertmanager:
    config = config_text(Webhook(url=webhook_url), page=FAST, ticket=FAST)
    server = LocalAlertmanager(data_dir=data_dir, port=free_port(), config=config)
    server.start()
    return server


def ground_failure(station_id: str) -> Alert:
    change = StatusChange(
        int(time.time() * 1e9),
        station_id,
        1,
        ChargePointStatus.FAULTED,
        ChargePointErrorCode.GROUND_FAILURE,
        "RCD-30mA",
        None,
    )
    alert = status_alert(change, links=Links())
    assert alert is not None
    return alert


def cycle(
    server: LocalAlertmanager, state: dict[str, AlertRecord], *alerts: Alert
) -> tuple[Cycle, dict[str, AlertRecord]]:
    planned = plan_cycle(alerts, state, now=datetime.now(UTC), policy=POLICY)
    with AlertmanagerClient([server.url]) as client:
        report = client.send(planned.sends)
    assert report.delivered
    return planned, settle(planned, delivered=True).state


def test_a_fault_pages_once_then_resolves(receiver: Receiver, tmp_path: Path) -> None:
    path = "/fires-then-resolves"
    server = start_alertmanager(tmp_path / "am", receiver.url(path))
    try:
        station = f"CP-{uuid.uuid4().hex[:6]}"
        alert = ground_failure(station)
        planned, state = cycle(server, {}, alert)
        assert [s.reason for s in planned.sends] == [Reason.NEW]
        got = receiver.wait(path, lambda n: len(firing(n)) == 1)
        page = got[0]
        assert page["version"] == "4" and page["receiver"] == "charger-page"
        assert page["groupLabels"] == {"alertname": "GroundFailure", "station_id": station}
        [fired] = page["alerts"]
        assert fired["status"] == "firing"
        assert fired["labels"] == {
            "alertname": "GroundFailure",
            "severity": "page",
            "owner": "charger",
            "station_id": station,
            "connector_id": "1",
        }
        assert (
            fired["annotations"]["runbook"]
            == BY_ERROR_CODE[ChargePointErrorCode.GROUND_FAILURE].runbook
        )
        assert "vendor error code RCD-30mA" in fired["annotations"]["description"]

        _, state = cycle(server, state, alert)  # still active: sent again, not notified again
        planned, state = cycle(server, state)  # cleared
        assert [s.reason for s in planned.sends] == [Reason.RESOLVED]
        got = receiver.wait(path, lambda n: len(resolved(n)) == 1)
        [gone] = resolved(got)[0]["alerts"]
        assert gone["status"] == "resolved" and gone["labels"] == fired["labels"]
        assert gone["startsAt"] == fired["startsAt"]
        time.sleep(QUIET_S)
        assert len(firing(receiver.notifications(path))) == 1
        assert len(resolved(receiver.notifications(path))) == 1
    finally:
        server.stop()


def test_a_restarted_alertmanager_does_not_page_again_unless_its_storage_is_lost(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = "/restart"
    server = start_alertmanager(tmp_path / "am", receiver.url(path))
    try:
        alert = ground_failure(f"CP-{uuid.uuid4().hex[:6]}")
        _, state = cycle(server, {}, alert)
        receiver.wait(path, lambda n: len(firing(n)) == 1)

        server.stop()  # on SIGTERM it writes its notification log to its storage
        server.start()
        planned, state = cycle(server, state, alert)  # the same labels and startsAt
        assert [s.reason for s in planned.sends] == [Reason.ACTIVE]
        with AlertmanagerClient([server.url]) as client:
            assert [a.fingerprint for a in client.alerts()] == [alert.fingerprint]
        time.sleep(QUIET_S)
        assert len(firing(receiver.notifications(path))) == 1  # no duplicate page

        server.stop()
        shutil.rmtree(server.storage_dir)  # a new Alertmanager knows nothing: it pages, once
        server.start()
        _, state = cycle(server, state, alert)
        receiver.wait(path, lambda n: len(firing(n)) == 2)
        time.sleep(QUIET_S)
        assert len(firing(receiver.notifications(path))) == 2
    finally:
        server.stop()
