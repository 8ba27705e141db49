"""The generated alertmanager.yml: ``amtool check-config`` accepts it, and a real Alertmanager
running it routes, inhibits and silences as the module docstring of ``alerts.config`` says."""

from __future__ import annotations

import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from alerts.client import AlertmanagerAlert, AlertmanagerClient
from alerts.config import Webhook, config_dict, config_text, receiver_name, write_config
from alerts.lifecycle import Policy, plan_cycle
from alerts.model import (
    Alert,
    Links,
    flag_alert,
    service_alert,
    station_offline_alert,
    status_alert,
)
from alerts.server import LocalAlertmanager, check_config
from alerts.taxonomy import Owner, ServiceCondition, Severity
from chargewatch.errors import ConfigError
from chargewatch.events import ChargePointErrorCode, ChargePointStatus, StatusChange
from chargewatch.flags import Flag
from chargewatch.influx.server import free_port
from chargewatch.settings import Settings

NOW = datetime.now(UTC)
NOW_NS = int(NOW.timestamp() * 1e9)
LINKS = Links()
S, C = ChargePointStatus, ChargePointErrorCode


@pytest.mark.parametrize(
    "webhook",
    [
        Webhook(url=None),
        Webhook(url="http://127.0.0.1:9/hook"),
        Webhook(url="https://hooks.example/cw", username="am", password="p@ss: 'quoted'"),
    ],
    ids=["no receiver", "webhook", "webhook with basic auth"],
)
def test_the_generated_config_passes_amtool_check_config(tmp_path: Path, webhook: Webhook) -> None:
    path = tmp_path / "alertmanager.yml"
    write_config(path, config_text(webhook))
    report = check_config(path)
    assert "SUCCESS" in report and "5 inhibit rules" in report and "15 receivers" in report
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold the password


def test_the_webhook_and_its_credentials_come_from_settings() -> None:
    settings = Settings(
        alert_webhook_url="https://hooks.example/cw",
        alert_webhook_username="am",
        alert_webhook_password=SecretStr("s3cret"),
    )
    config = yaml.safe_load(config_text(Webhook.from_settings(settings)))
    receivers = {r["name"]: r for r in config["receivers"]}
    hook = receivers[receiver_name(Owner.CHARGER, Severity.PAGE)]["webhook_configs"][0]
    assert hook["url"] == "https://hooks.example/cw" and hook["send_resolved"] is True
    assert hook["http_config"] == {"basic_auth": {"username": "am", "password": "s3cret"}}
    assert config["route"]["group_by"] == ["station_id", "alertname"]


def test_a_password_without_a_username_is_refused() -> None:
    with pytest.raises(ConfigError, match="username"):
        config_dict(Webhook(url="http://h", password="x"))


def test_a_config_alertmanager_refuses_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text("route:\n  receiver: nobody\nreceivers: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nobody"):
        check_config(path)


# -- a real Alertmanager running the generated config ---------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAlertmanager]:
    server = LocalAlertmanager(
        data_dir=tmp_path_factory.mktemp("am-generated"),
        port=free_port(),
        config=config_text(Webhook(url=None)),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def flag(station_id: str, connector: int, kind: str) -> Alert:
    return flag_alert(
        Flag(f"{station_id}-9", station_id, connector, kind, 0.9, NOW_NS, NOW_NS, "evidence"),
        links=LINKS,
    )


def status(
    station_id: str, connector: int, state: ChargePointStatus, code: ChargePointErrorCode
) -> Alert:
    alert = status_alert(StatusChange(NOW_NS, station_id, connector, state, code), links=LINKS)
    assert alert is not None
    return alert


def post(server: LocalAlertmanager, *alerts: Alert) -> None:
    cycle = plan_cycle(alerts, {}, now=NOW, policy=Policy(interval=timedelta(seconds=30)))
    with AlertmanagerClient([server.url]) as client:
        assert client.send(cycle.sends).delivered


def states(
    server: LocalAlertmanager, expected: dict[str, str], key: Callable[[AlertmanagerAlert], str]
) -> dict[str, str]:
    """The Alertmanager state of each alert by ``key``, polled until it is ``expected`` (the
    inhibitor and silencer catch up asynchronously) or 10 s have passed."""
    deadline = time.monotonic() + 10.0
    with AlertmanagerClient([server.url]) as client:
        while True:
            got = {key(a): a.state for a in client.alerts() if key(a) in expected}
            if got == expected or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def test_inhibition_mutes_the_consequences_and_only_them(generated: LocalAlertmanager) -> None:
    run = uuid.uuid4().hex[:6]
    s = {n: f"{run}-S{n}" for n in range(1, 7)}
    alerts = {
        # A station offline mutes everything else at the station.
        "offline": station_offline_alert(
            s[1], last_seen=NOW - timedelta(minutes=20), timeout=timedelta(minutes=15), links=LINKS
        ),
        "offline/stall": flag(s[1], 1, "stall"),
        # A Faulted connector mutes its own connector's findings, not its neighbour's.
        "fault": status(s[2], 1, S.FAULTED, C.GROUND_FAILURE),
        "fault/stall same connector": flag(s[2], 1, "stall"),
        "fault/stall other connector": flag(s[2], 2, "stall"),
        # A fault of connector 0, the whole station, mutes every connector.
        "station fault": status(s[3], 0, S.FAULTED, C.INTERNAL_ERROR),
        "station fault/stall": flag(s[3], 2, "stall"),
        # A meter alert mutes early_taper on its connector.
        "meter": flag(s[4], 1, "meter_stuck"),
        "meter/taper same connector": flag(s[4], 1, "early_taper"),
        "meter/taper other connector": flag(s[4], 2, "early_taper"),
        # A warning (an error code while the connector works) mutes nothing.
        "warning": status(s[5], 1, S.CHARGING, C.HIGH_TEMPERATURE),
        "warning/stall": flag(s[5], 1, "stall"),
        "control": flag(s[6], 1, "stall"),
    }
    muted = {
        "offline/stall",
        "fault/stall same connector",
        "station fault/stall",
        "meter/taper same connector",
    }
    post(generated, *alerts.values())
    names = {alert.fingerprint: name for name, alert in alerts.items()}
    expected = {name: "suppressed" if name in muted else "active" for name in alerts}
    assert states(generated, expected, lambda a: names.get(a.fingerprint, "")) == expected


def test_influxdb_unreachable_mutes_the_service_alerts_it_causes(
    generated: LocalAlertmanager,
) -> None:
    influx = service_alert(ServiceCondition.INFLUX_UNREACHABLE, description="refused")
    failing = service_alert(ServiceCondition.DETECTION_FAILING, description="no data")
    post(generated, influx, failing)
    expected = {"InfluxDBUnreachable": "active", "DetectionJobFailing": "suppressed"}
    assert states(generated, expected, lambda a: a.labels["alertname"]) == expected


def test_an_amtool_silence_mutes_exactly_its_matchers(generated: LocalAlertmanager) -> None:
    run = uuid.uuid4().hex[:6]
    alerts = {
        "silenced": flag(f"{run}-A", 1, "stall"),
        "same station, other alertname": flag(f"{run}-A", 2, "data_gap"),
        "same alertname, other station": flag(f"{run}-B", 1, "stall"),
    }
    post(generated, *alerts.values())
    silence_id = generated.amtool(
        "silence",
        "add",
        f"station_id={run}-A",
        "alertname=ChargingStall",
        "--comment=connector 1 under repair",
        "--author=on-call",
        "--duration=1h",
    ).strip()
    names = {alert.fingerprint: name for name, alert in alerts.items()}
    expected = {name: "suppressed" if name == "silenced" else "active" for name in alerts}
    assert states(generated, expected, lambda a: names.get(a.fingerprint, "")) == expected
    with AlertmanagerClient([generated.url]) as client:
        [silenced] = client.alerts(filters=[f'station_id="{run}-A"', 'alertname="ChargingStall"'])
    assert silenced.silenced_by == (silence_id,)
    queried = generated.amtool("alert", "query", f"station_id=~{run}-.*")  # active ones only
    assert "ChargingStall" in queried and "ReadingsMissing" in queried
    assert queried.count("ChargingStall") == 1
