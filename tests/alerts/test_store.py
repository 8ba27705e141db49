"""Alert state in the state database, on SQLite and on PostgreSQL (127.0.0.1:5432) when it is
reachable: a restart neither re-fires nor forgets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.lifecycle import AlertRecord, Policy, Reason, plan_cycle, settle
from alerts.model import Alert, make_alert
from alerts.store import AlertQuery, AlertStore
from chargewatch.state import StateStore
from tests.conftest import postgres_database

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
POLICY = Policy(interval=MINUTE, max_backdate=60 * MINUTE)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("cw_alerts") as url:
        yield url


def open_store(url: str) -> tuple[StateStore, AlertStore]:
    state = StateStore(url)
    return state, AlertStore(state.engine)


def alert(station: str, name: str = "ChargingStall", note: str = "evidence") -> Alert:
    labels = {"alertname": name, "severity": "page", "owner": "charger", "station_id": station}
    return make_alert(labels, {"summary": note, "runbook": "1. look"}, since=T0 - 5 * MINUTE)


def cycle_and_save(
    store: AlertStore, state: dict[str, AlertRecord], minute: int, *active: Alert
) -> tuple[dict[str, AlertRecord], list[Reason]]:
    now = T0 + minute * MINUTE
    cycle = plan_cycle(active, state, now=now, policy=POLICY)
    settled = settle(cycle, delivered=True)
    store.save(settled.changed)
    return settled.state, [s.reason for s in cycle.sends]


def test_a_restart_keeps_starts_and_resolves_what_cleared_meanwhile(state_url: str) -> None:
    db, store = open_store(state_url)
    state, reasons = cycle_and_save(store, {}, 0, alert("CP-1"), alert("CP-2"))
    assert reasons == [Reason.NEW, Reason.NEW]
    state, _ = cycle_and_save(store, state, 1, alert("CP-1"), alert("CP-2"))
    db.close()

    db, store = open_store(state_url)  # a restart: the state comes back from the database
    loaded = store.load(now=T0 + 2 * MINUTE, policy=POLICY)
    assert set(loaded) == set(state)
    for fp, record in loaded.items():
        assert record.starts_at == state[fp].starts_at == T0 - 5 * MINUTE
        assert record.labels == state[fp].labels
        assert record.annotations == state[fp].annotations
        assert record.starts_at.tzinfo is not None
    # CP-1 still active: sent again with its old startsAt, not as new; CP-2 cleared while we
    # were down: resolved.
    cycle = plan_cycle([alert("CP-1")], loaded, now=T0 + 2 * MINUTE, policy=POLICY)
    sends = {s.labels["station_id"]: s for s in cycle.sends}
    assert sends["CP-1"].reason is Reason.ACTIVE
    assert sends["CP-1"].starts_at == T0 - 5 * MINUTE
    assert sends["CP-2"].reason is Reason.RESOLVED
    store.save(settle(cycle, delivered=True).changed)
    db.close()


def test_resolved_rows_are_kept_but_not_loaded_once_old(state_url: str) -> None:
    db, store = open_store(state_url)
    state, _ = cycle_and_save(store, {}, 0, alert("CP-1"))
    state, reasons = cycle_and_save(store, state, 1)
    assert reasons == [Reason.RESOLVED]
    assert store.load(now=T0 + 30 * MINUTE, policy=POLICY)  # recently resolved: loaded
    assert store.load(now=T0 + 120 * MINUTE, policy=POLICY) == {}
    kept = store.records(AlertQuery(active=False))
    assert len(kept) == 1 and kept[0].resolved_at == T0 + MINUTE  # never deleted
    assert kept[0].resolution_delivered
    db.close()


def test_records_are_upserted_and_filtered_for_the_api(state_url: str) -> None:
    db, store = open_store(state_url)
    state, _ = cycle_and_save(
        store, {}, 0, alert("CP-1"), alert("CP-2"), alert("CP-2", "StationOffline")
    )
    # ten intervals later: the changed evidence is written
    state, _ = cycle_and_save(store, state, 10, alert("CP-1", note="new evidence"), alert("CP-2"))
    by_station = store.records(AlertQuery(station_id="CP-1"))
    assert [r.annotations["summary"] for r in by_station] == ["new evidence"]
    assert len(store.records(AlertQuery(active=True))) == 2
    assert [r.labels["alertname"] for r in store.records(AlertQuery(active=False))] == [
        "StationOffline"
    ]
    assert len(store.records(AlertQuery(alertname="ChargingStall"))) == 2
    assert store.records(AlertQuery(severity="ticket")) == []
    assert store.records(AlertQuery(until=T0 - 6 * MINUTE)) == []
    assert len(store.records(AlertQuery(since=T0 + 11 * MINUTE))) == 2  # resolved before: out
    assert len(store.records(AlertQuery(limit=1))) == 1
    db.close()


def test_many_records_are_saved_in_chunks(state_url: str) -> None:
    db, store = open_store(state_url)
    alerts = [alert(f"CP-{i}") for i in range(12_000)]
    cycle_and_save(store, {}, 0, *alerts)
    assert len(store.load(now=T0, policy=POLICY)) == 12_000
    db.close()
