"""The Alertmanager client against a real Alertmanager (Debian's 0.25): alerts posted to every
URL are visible through its API v2 and ``amtool``; failures are reported per URL, precisely."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.client import AlertmanagerClient, postable, redact_url
from alerts.lifecycle import Policy, Reason, Send, plan_cycle
from alerts.model import Alert, make_alert
from alerts.server import LocalAlertmanager
from chargewatch.errors import AlertmanagerError
from chargewatch.influx.server import free_port

POLICY = Policy(interval=timedelta(seconds=30))


def station() -> str:
    """A station id of this test's own, so tests sharing the session's Alertmanager do not see
    each other's alerts."""
    return f"CP-{uuid.uuid4().hex[:8]}"


def stall(station_id: str, connector: int = 1, **labels: str) -> Alert:
    return make_alert(
        {
            "alertname": "ChargingStall",
            "severity": "page",
            "owner": "charger",
            "station_id": station_id,
            "connector_id": str(connector),
            "kind": "stall",
            **labels,
        },
        {
            "summary": f"Charging stalled at {station_id} connector {connector}",
            "description": "0.0 kW for 14 min while 22.0 kW offered",
            "api_url": "/api/v1/sessions/S-1",
        },
    )


def sends(*alerts: Alert) -> list[Send]:
    return plan_cycle(alerts, {}, now=datetime.now(UTC), policy=POLICY).sends


def test_alerts_posted_are_visible_in_the_api_and_in_amtool(
    alertmanager: LocalAlertmanager,
) -> None:
    sid = station()
    batch = sends(stall(sid, 1), stall(sid, 2))
    with AlertmanagerClient([alertmanager.url]) as client:
        report = client.send(batch)
        assert report.delivered
        assert [(d.url, d.sent, d.ok) for d in report.deliveries] == [(alertmanager.url, 2, True)]
        held = client.alerts(filters=[f'station_id="{sid}"'])
    assert sorted(a.labels["connector_id"] for a in held) == ["1", "2"]
    by_fingerprint = {a.fingerprint: a for a in held}
    assert set(by_fingerprint) == {s.fingerprint for s in batch}  # our fingerprint joins
    for send in batch:
        got = by_fingerprint[send.fingerprint]
        assert got.state == "active" and got.silenced_by == () and got.inhibited_by == ()
        assert got.annotations == send.annotations
        assert abs(got.starts_at - send.starts_at) < timedelta(milliseconds=1)  # it keeps ms
        assert got.receivers == ("default",)
    queried = json.loads(alertmanager.amtool("alert", "query", "-o", "json", f"station_id={sid}"))
    assert sorted(a["labels"]["connector_id"] for a in queried) == ["1", "2"]
    assert all(a["generatorURL"] == "/api/v1/sessions/S-1" for a in queried)


def test_alerts_go_to_every_url_and_a_dead_one_is_reported_alone(
    alertmanager: LocalAlertmanager,
) -> None:
    sid = station()
    dead = f"http://127.0.0.1:{free_port()}"
    with AlertmanagerClient([dead, alertmanager.url], timeout_s=2.0) as client:
        report = client.send(sends(stall(sid)))
        assert not report.delivered
        assert [d.ok for d in report.deliveries] == [False, True]
        failed = report.failures[0]
        assert failed.url == dead and failed.sent == 0
        assert failed.error is not None and failed.error.url == dead
        assert failed.error.status is None and "unreachable" in str(failed.error)
        assert len(client.alerts(alertmanager.url, filters=[f'station_id="{sid}"'])) == 1


def test_large_sends_go_in_chunks(alertmanager: LocalAlertmanager) -> None:
    sid = station()
    with AlertmanagerClient([alertmanager.url], chunk=7) as client:
        report = client.send(sends(*(stall(sid, c) for c in range(1, 31))))
        assert report.delivered and report.deliveries[0].sent == 30
        assert len(client.alerts(filters=[f'station_id="{sid}"'])) == 30


def test_a_rejected_alert_is_an_error_naming_the_url_and_the_status(
    alertmanager: LocalAlertmanager,
) -> None:
    bad = sends(stall(station(), 1, **{"bad-label": "x"}))
    with AlertmanagerClient([alertmanager.url]) as client:
        report = client.send(bad)
    error = report.failures[0].error
    assert error is not None and (error.url, error.status) == (alertmanager.url, 400)
    assert "invalid label set" in str(error) and alertmanager.url in str(error)


def test_a_wrong_path_is_a_404(alertmanager: LocalAlertmanager) -> None:
    url = f"{alertmanager.url}/not-here"
    with AlertmanagerClient([url]) as client:
        report = client.send(sends(stall(station())))
        with pytest.raises(AlertmanagerError) as caught:
            client.alerts()
    assert report.failures[0].error is not None and report.failures[0].error.status == 404
    assert caught.value.status == 404 and caught.value.url == url


def test_credentials_in_a_url_never_show() -> None:
    url = f"http://chargewatch:s3cret@127.0.0.1:{free_port()}"
    assert redact_url(url) == url.replace("chargewatch:s3cret@", "")
    with AlertmanagerClient([url], timeout_s=2.0) as client:
        report = client.send(sends(stall(station())))
        with pytest.raises(AlertmanagerError) as caught:
            client.alerts()
    failed = report.failures[0]
    assert "s3cret" not in repr(failed) and "s3cret" not in str(failed.error)
    assert "s3cret" not in str(caught.value)


def test_postable_is_alertmanagers_json() -> None:
    [send] = sends(stall("CP-1"))
    alert = postable(send)
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert send.reason is Reason.NEW and alert["endsAt"] - alert["startsAt"] == POLICY.lease


def test_no_url_at_all_is_not_delivered() -> None:
    with AlertmanagerClient([]) as client:
        report = client.send(sends(stall("CP-1")))
        assert report.deliveries == () and not report.delivered
        with pytest.raises(ValueError, match="not one of"):
            client.alerts()


def test_an_alertmanager_that_never_answers_times_out() -> None:
    with socket.socket() as hung:  # listens, never accepts nor answers
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        with AlertmanagerClient([url], timeout_s=0.5) as client:
            started = time.monotonic()
            report = client.send(sends(stall(station())))
            elapsed = time.monotonic() - started
    error = report.failures[0].error
    assert error is not None and error.status is None and "timed out" in str(error)
    assert elapsed < 3.0


def test_every_member_of_a_cluster_gets_every_alert(
    alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    second = LocalAlertmanager(data_dir=tmp_path / "am2", port=free_port())
    second.start()
    try:
        sid = station()
        with AlertmanagerClient([alertmanager.url, second.url]) as client:
            report = client.send(sends(stall(sid, 1), stall(sid, 2)))
            assert report.delivered and [d.sent for d in report.deliveries] == [2, 2]
            for url in (alertmanager.url, second.url):
                assert len(client.alerts(url, filters=[f'station_id="{sid}"'])) == 2
    finally:
        second.stop()


def test_an_alert_sent_again_carries_its_new_annotations_and_endsat(
    alertmanager: LocalAlertmanager,
) -> None:
    """The client keeps each alert's encoding between sends: what changed still goes out."""
    sid = station()
    first = stall(sid)
    now = datetime.now(UTC).replace(microsecond=0)
    state = plan_cycle([first], {}, now=now, policy=POLICY).state
    changed = make_alert(first.labels, {**first.annotations, "description": "0.0 kW for 20 min"})
    with AlertmanagerClient([alertmanager.url]) as client:
        for step, alert in enumerate((first, first, changed), start=1):
            moment = now + step * timedelta(seconds=30)
            cycle = plan_cycle([alert], state, now=moment, policy=POLICY)
            assert client.send(cycle.sends).delivered
            (held,) = client.alerts(filters=[f'station_id="{sid}"'])
            assert held.annotations == alert.annotations
            assert held.ends_at == cycle.sends[0].ends_at
            assert held.starts_at == now
            state = cycle.state
