"""Alerts built from conditions: labels are the identity (CONTRACTS.md section 7), annotations
carry the evidence, the runbook and the links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.model import (
    FlagAlerts,
    Links,
    fingerprint,
    flag_alert,
    service_alert,
    station_offline_alert,
    status_alert,
)
from alerts.taxonomy import BY_ERROR_CODE, BY_KIND, ServiceCondition, Severity
from chargewatch.events import ChargePointErrorCode, ChargePointStatus, StatusChange
from chargewatch.flags import Flag
from chargewatch.settings import Settings

T0 = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
T0_NS = int(T0.timestamp() * 1e9)
MIN_NS = 60 * 10**9
CONTRACT_LABELS = {"alertname", "severity", "owner", "station_id", "connector_id", "kind"}


def a_flag(kind: str = "stall", session_id: str | None = "CP-1-42", **changes: object) -> Flag:
    values: dict[str, object] = {
        "session_id": session_id,
        "station_id": "CP-1",
        "connector_id": 2,
        "kind": kind,
        "score": 0.91234,
        "start_ns": T0_NS,
        "end_ns": T0_NS + 14 * MIN_NS,
        "reason": "0.0 kW for 14 min while 22.0 kW offered, SoC 41 %",
    }
    values.update(changes)
    return Flag(**values)  # type: ignore[arg-type]


def test_the_fingerprint_is_a_hash_of_the_sorted_labels() -> None:
    one = fingerprint({"alertname": "ChargingStall", "station_id": "CP-1"})
    assert one == fingerprint({"station_id": "CP-1", "alertname": "ChargingStall"})
    assert one != fingerprint({"alertname": "ChargingStall", "station_id": "CP-2"})
    assert one != fingerprint({"alertname": "ChargingStall", "station_id": "CP-1", "kind": "x"})
    assert len(one) == 16 and int(one, 16) >= 0


def test_a_flag_alert_has_the_contract_labels_and_the_evidence() -> None:
    links = Links(api_base="https://cw.example", grafana_base="https://grafana.example")
    alert = flag_alert(a_flag(), links=links)
    assert alert.labels == {
        "alertname": "ChargingStall",
        "severity": "page",
        "owner": "charger",
        "station_id": "CP-1",
        "connector_id": "2",
        "kind": "stall",
    }
    notes = alert.annotations
    assert notes["summary"] == "Charging stalled at CP-1 connector 2"
    assert "0.0 kW for 14 min while 22.0 kW offered" in notes["description"]
    assert "2026-11-24 08:15:00 to 2026-11-24 08:29:00 UTC" in notes["description"]
    assert "score 0.91" in notes["description"] and notes["score"] == "0.912"
    assert notes["runbook"] == BY_KIND["stall"].runbook
    assert notes["session_id"] == "CP-1-42"
    assert notes["api_url"] == "https://cw.example/api/v1/sessions/CP-1-42"
    assert notes["grafana_url"].startswith(
        "https://grafana.example/d/chargewatch-session?var-session_id=CP-1-42&from="
    )
    assert alert.since == T0 and alert.finished_at is None


@pytest.mark.parametrize(
    ("links", "session_id", "api_url", "has_grafana"),
    [
        (Links(), "CP-1-42", "/api/v1/sessions/CP-1-42", False),
        (Links(), "a/b c", "/api/v1/sessions/a%2Fb%20c", False),
        (Links(api_base="https://cw.example"), None, "https://cw.example/api/v1/stations/CP-1",
         False),
        (Links(grafana_base="http://g"), None, "/api/v1/stations/CP-1", True),
    ],
)  # fmt: skip
def test_links_are_relative_without_a_public_url_and_grafana_only_when_set(
    links: Links, session_id: str | None, api_url: str, has_grafana: bool
) -> None:
    alert = flag_alert(a_flag(session_id=session_id), links=links)
    assert alert.annotations["api_url"] == api_url
    assert ("grafana_url" in alert.annotations) is has_grafana
    assert ("session_id" in alert.annotations) is (session_id is not None)


def test_links_come_from_settings() -> None:
    settings = Settings(public_url="https://cw.example/", grafana_url="https://g.example")
    assert Links.from_settings(settings) == Links(
        api_base="https://cw.example", grafana_base="https://g.example"
    )


def test_a_session_finding_on_a_finished_session_carries_its_end() -> None:
    ended = T0 + timedelta(minutes=30)
    alert = flag_alert(a_flag("meter_jump"), links=Links(), session_finished_at=ended)
    assert alert.finished_at == ended
    assert alert.labels["severity"] == "ticket" and alert.labels["owner"] == "meter"
    override = flag_alert(a_flag(), links=Links(), severity=Severity.TICKET)
    assert override.labels["severity"] == "ticket"
    assert override.fingerprint != flag_alert(a_flag(), links=Links()).fingerprint


def test_no_id_tag_nor_pseudonym_among_the_labels() -> None:
    alert = flag_alert(a_flag("concurrent_id_tag"), links=Links())
    assert set(alert.labels) <= CONTRACT_LABELS


def change(
    status: ChargePointStatus, code: ChargePointErrorCode, connector_id: int = 1
) -> StatusChange:
    return StatusChange(T0_NS, "CP-7", connector_id, status, code, "E-4711", "RCD tripped")


S, C = ChargePointStatus, ChargePointErrorCode


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (S.FAULTED, C.GROUND_FAILURE, ("GroundFailure", "page", "charger")),
        (S.FAULTED, C.NO_ERROR, ("ConnectorFaulted", "page", "charger")),
        (S.FAULTED, C.OVER_VOLTAGE, ("GridVoltageOutOfRange", "page", "grid")),
        (S.CHARGING, C.HIGH_TEMPERATURE, ("ChargerOverheating", "ticket", "charger")),
        (S.AVAILABLE, C.WEAK_SIGNAL, ("WeakSignal", "ticket", "charger")),
        (S.AVAILABLE, C.NO_ERROR, None),
        (S.CHARGING, C.NO_ERROR, None),
        (S.UNAVAILABLE, C.NO_ERROR, None),
    ],
)
def test_a_connector_status_with_a_fault_is_an_alert(
    status: ChargePointStatus, code: ChargePointErrorCode, expected: tuple[str, ...] | None
) -> None:
    alert = status_alert(change(status, code), links=Links())
    if expected is None:
        assert alert is None
        return
    assert alert is not None
    labels = alert.labels
    assert (labels["alertname"], labels["severity"], labels["owner"]) == expected
    assert labels["station_id"] == "CP-7" and labels["connector_id"] == "1"
    assert "kind" not in labels
    assert alert.annotations["runbook"] == BY_ERROR_CODE[code].runbook
    assert f"error code {code.value}" in alert.annotations["description"]
    assert "vendor error code E-4711" in alert.annotations["description"]
    assert alert.since == T0


def test_a_fault_of_connector_0_is_the_stations() -> None:
    alert = status_alert(change(S.FAULTED, C.INTERNAL_ERROR, connector_id=0), links=Links())
    assert alert is not None
    assert alert.labels["connector_id"] == "0"
    assert alert.annotations["summary"] == "Charger internal error at CP-7"


def test_a_station_offline_starts_when_its_timeout_ran_out() -> None:
    alert = station_offline_alert(
        "CP-9", last_seen=T0, timeout=timedelta(seconds=900), links=Links()
    )
    assert alert.labels == {
        "alertname": "StationOffline",
        "severity": "page",
        "owner": "charger",
        "station_id": "CP-9",
    }
    assert alert.since == T0 + timedelta(seconds=900)
    assert "since 2026-11-24 08:15:00 UTC" in alert.annotations["description"]


def test_a_service_alert_has_no_station() -> None:
    alert = service_alert(
        ServiceCondition.INFLUX_UNREACHABLE, description="connection refused for 3 min"
    )
    assert alert.labels == {
        "alertname": "InfluxDBUnreachable",
        "severity": "page",
        "owner": "service",
    }
    assert alert.annotations["description"] == "connection refused for 3 min"


def test_flag_alerts_remember_the_previous_cycle_only() -> None:
    build = FlagAlerts(Links())
    first = build(a_flag())
    assert build(a_flag()) is first  # an equal flag, another object: no rebuild
    build.next_cycle()
    assert build(a_flag()) is first  # asked for last cycle: kept
    ended = build(a_flag(), session_finished_at=T0)
    assert ended is not first and ended.finished_at == T0
    assert build(a_flag(score=0.5)).annotations["score"] == "0.500"
    build.next_cycle()
    build.next_cycle()
    again = build(a_flag())
    assert again is not first and again == first  # forgotten after a cycle unused, rebuilt
