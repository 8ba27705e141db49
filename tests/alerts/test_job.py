"""The alert job on a real InfluxDB and a real Alertmanager: conditions read from the data become
alerts at Alertmanager, state in the state database, an ``alert`` point per change; a cleared
condition resolves; a restarted job resends with the stored ``startsAt``. The service-health
rules as a table on virtual time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.client import AlertmanagerClient
from alerts.job import ALERT_MEASUREMENT, AlertJob, Conditions, HealthSignals, HealthWatch
from alerts.lifecycle import Policy
from alerts.model import Links
from alerts.server import LocalAlertmanager
from alerts.store import AlertStore
from alerts.taxonomy import BY_ERROR_CODE, ServiceCondition
from alerts.view import AlertReader, AlertView
from chargewatch.catalog import SessionRow, upsert_sessions
from chargewatch.events import (
    ChargePointErrorCode,
    ChargePointStatus,
    StationEvent,
    StationEventKind,
    StatusChange,
)
from chargewatch.flags import Flag, flags_to_lines
from chargewatch.influx import InfluxClient, quote_ident
from chargewatch.schema import LineFormatter
from chargewatch.state import StateStore

POLICY = Policy(interval=timedelta(seconds=60))  # a lease of 4 min, past the virtual times
_NS = 1_000_000_000


def job(influx: InfluxClient, am: LocalAlertmanager, state: StateStore) -> AlertJob:
    return AlertJob(
        conditions=Conditions(influx, links=Links(), policy=POLICY),
        store=AlertStore(state.engine),
        alertmanagers=AlertmanagerClient([am.url]),
        influx=influx,
        policy=POLICY,
    )


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * _NS)


def test_a_faulted_connector_fires_then_resolves_and_a_restart_keeps_its_start(
    influx: InfluxClient, alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    sid = f"CP-{uuid.uuid4().hex[:8]}"
    # Virtual times behind the real clock: Alertmanager judges "resolved" by its own clock.
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    fault = StatusChange(
        ns(now - timedelta(minutes=2)),
        sid,
        2,
        ChargePointStatus.FAULTED,
        ChargePointErrorCode.GROUND_FAILURE,
        "RCD-30mA",
    )
    influx.write([LineFormatter().format(fault)])
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    first = job(influx, alertmanager, state)
    report = first.run(now)
    assert report.delivered
    held = first.alertmanagers.alerts(filters=[f'station_id="{sid}"'])
    assert [a.labels for a in held] == [
        {
            "alertname": "GroundFailure",
            "severity": "page",
            "owner": "charger",
            "station_id": sid,
            "connector_id": "2",
        }
    ]
    began = now - timedelta(minutes=2)  # its point's time is within a millisecond of it
    assert began <= held[0].starts_at < began + timedelta(milliseconds=1)
    assert (
        held[0].annotations["runbook"] == BY_ERROR_CODE[ChargePointErrorCode.GROUND_FAILURE].runbook
    )
    assert first.status.active_by_severity == {"page": 1}
    assert first.status.sent[alertmanager.url] >= 1

    # A restarted job (a new process) starts from the stored state: the same startsAt.
    second = job(influx, alertmanager, state)
    second.run(now + timedelta(seconds=10))
    assert second._state is not None
    (record,) = [r for r in second._state.values() if r.labels["station_id"] == sid]
    assert began <= record.starts_at < began + timedelta(milliseconds=1)
    assert record.resolved_at is None

    # The connector is back: the alert resolves at Alertmanager, with a point for each change.
    back = StatusChange(ns(now + timedelta(seconds=15)), sid, 2, ChargePointStatus.AVAILABLE)
    influx.write([LineFormatter().format(back)])
    later = now + timedelta(seconds=20)
    second.run(later)
    (record,) = [r for r in second._state.values() if r.labels["station_id"] == sid]
    assert record.resolved_at == later
    assert second.alertmanagers.alerts(filters=[f'station_id="{sid}"']) == []  # resolved
    series = influx.query(
        f'SELECT "fingerprint" FROM {quote_ident(ALERT_MEASUREMENT)} '
        f'WHERE "station_id" = \'{sid}\' GROUP BY "state"'
    )
    assert sorted(s.tags["state"] for s in series) == ["firing", "resolved"]
    first.alertmanagers.close()
    second.alertmanagers.close()
    state.close()


def test_a_silent_station_is_offline_after_its_heartbeats(
    influx: InfluxClient, alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    sid = f"CP-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    seen = StationEvent(
        ns(now - timedelta(seconds=100)),
        sid,
        StationEventKind.HEARTBEAT,
        heartbeat_interval_s=30.0,
    )
    influx.write([LineFormatter().format(seen)])
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    the_job = job(influx, alertmanager, state)
    the_job.run(now - timedelta(seconds=20))  # 80 s of silence: less than 3 x 30 s
    assert the_job.alertmanagers.alerts(filters=[f'station_id="{sid}"']) == []
    the_job.run(now)  # 100 s: offline
    (held,) = the_job.alertmanagers.alerts(filters=[f'station_id="{sid}"'])
    assert held.labels["alertname"] == "StationOffline" and held.labels["severity"] == "page"
    the_job.alertmanagers.close()
    state.close()


def test_an_unreachable_influxdb_keeps_the_alerts_and_raises_its_own(
    alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    dead = InfluxClient(url="http://127.0.0.1:9", database="nothing", max_retries=0, timeout_s=1.0)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    the_job = job(dead, alertmanager, state)
    the_job.run(datetime.now(UTC))
    assert set(the_job.status.source_errors) >= {"flags", "status", "liveness"}
    assert the_job._state is not None
    names = {r.labels["alertname"] for r in the_job._state.values() if r.resolved_at is None}
    assert names == {"InfluxDBUnreachable"}
    the_job.alertmanagers.close()
    dead.close()
    state.close()


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def signals(
    spool: int = 0, influx: str | None = None, runs: int = 1, error: str | None = None
) -> HealthSignals:
    return HealthSignals(
        spool_lines=spool,
        influx_error=influx,
        detection_runs=runs,
        detection_failures=1 if error else 0,
        detection_error=error,
    )


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ([signals(), signals(), signals(runs=2), signals(runs=3)], set()),
        (
            [signals(spool=n, runs=n) for n in (1, 2, 3, 4)],
            {ServiceCondition.SPOOL_BACKLOG_GROWING},
        ),
        ([signals(spool=s, runs=n) for n, s in enumerate((1, 2, 2, 4))], set()),
        (
            [signals(runs=n) for n in (1, 2, 3)] + [signals(influx="refused")],
            {ServiceCondition.INFLUX_UNREACHABLE},
        ),
        (
            [signals(runs=n, error="boom") for n in (1, 2, 3, 4)],
            {ServiceCondition.DETECTION_FAILING},
        ),
        ([signals(runs=1)] * 4, {ServiceCondition.DETECTION_LATE}),
        ([signals(runs=1)] * 3, set()),
    ],
)
def test_service_health_conditions(
    sequence: list[HealthSignals], expected: set[ServiceCondition]
) -> None:
    watch = HealthWatch(interval=timedelta(seconds=10))
    found: dict[ServiceCondition, str] = {}
    for step, value in enumerate(sequence):
        found = watch.conditions(value, now=T0 + step * timedelta(seconds=10))
    assert set(found) == expected


def test_the_api_view_joins_each_alert_with_its_alertmanager_state(
    influx: InfluxClient, alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    sid = f"CP-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    fault = StatusChange(
        ns(now), sid, 1, ChargePointStatus.FAULTED, ChargePointErrorCode.GROUND_FAILURE
    )
    influx.write([LineFormatter().format(fault)])
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    the_job = job(influx, alertmanager, state)
    the_job.run(now)

    def views(client: AlertmanagerClient, active: bool | None) -> list[AlertView]:
        return AlertReader(the_job.store, client).alerts(
            active=active,
            station_id=sid,
            alertname=None,
            severity="page",
            since=now - timedelta(hours=1),
            until=now + timedelta(hours=1),
            limit=10,
        )

    with AlertmanagerClient([alertmanager.url]) as reachable:
        (view,) = views(reachable, True)
        assert view.alertmanager_state == "active"
        assert view.labels["alertname"] == "GroundFailure"
        assert views(reachable, False) == []
    with AlertmanagerClient(["http://127.0.0.1:9"], timeout_s=1.0) as dead:
        (view,) = views(dead, None)
    assert view.alertmanager_state == "unknown"
    the_job.alertmanagers.close()
    state.close()


def catalogued(
    state: StateStore, sid: str, session_id: str, start: datetime, last: datetime, stop: bool
) -> None:
    """The session's catalogue row as detection writes it: its span to the latest reading."""
    upsert_sessions(
        state,
        [
            SessionRow(
                session_id=session_id,
                station_id=sid,
                connector_id=1,
                start_ns=ns(start),
                stop_ns=ns(last) if stop else None,
                id_pseudonym=None,
                energy_register_wh=None,
                energy_power_wh=None,
                billing_confidence=1.0,
                billing_notes=(),
                duration_s=(last - start).total_seconds(),
                flagged_kinds=("stall",),
                updated_at_ns=ns(last),
            )
        ],
    )


def test_a_stall_follows_the_condition_in_the_chargers_time(
    influx: InfluxClient, alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    """Live while it reaches the session's latest judged reading, whatever the wall clock says
    of the charger's times (readings sent late); resolved once readings go on past its end; a
    stall already over when first seen never pages; one lasting to the stop holds."""
    sid = f"CP-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start, stalled, last = (now - timedelta(minutes=m) for m in (40, 30, 17))

    def stall(session_id: str, connector: int, end: datetime) -> str:
        flag = Flag(session_id, sid, connector, "stall", 0.9, ns(stalled), ns(end), "no power")
        return next(flags_to_lines([flag]))

    influx.write([stall("live", 1, last), stall("over", 2, last), stall("gave-up", 3, last)])
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    catalogued(state, sid, "live", start, last, stop=False)  # the stall reaches its last reading
    catalogued(state, sid, "over", start, last + timedelta(minutes=5), stop=False)  # resumed
    catalogued(state, sid, "gave-up", start, last, stop=True)  # stopped during the stall
    the_job = AlertJob(
        conditions=Conditions(influx, links=Links(), policy=POLICY, catalog=state),
        store=AlertStore(state.engine),
        alertmanagers=AlertmanagerClient([alertmanager.url]),
        influx=influx,
        policy=POLICY,
    )

    def held() -> dict[str, str]:
        found = the_job.alertmanagers.alerts(filters=[f'station_id="{sid}"'])
        return {a.annotations["session_id"]: a.labels["alertname"] for a in found}

    the_job.run(now)
    assert held() == {"live": "ChargingStall", "gave-up": "ChargingStall"}
    # power flows again in the live session: detection's next judgement reads further on
    catalogued(state, sid, "live", start, last + timedelta(minutes=2), stop=False)
    the_job.run(now + timedelta(seconds=30))
    assert held() == {"gave-up": "ChargingStall"}
    assert the_job._state is not None
    resolved = [r for r in the_job._state.values() if r.resolved_at is not None]
    assert [r.annotations["session_id"] for r in resolved] == ["live"]
    the_job.alertmanagers.close()
    state.close()
