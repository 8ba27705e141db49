"""The alerts that have not resolved, by station, from the state database's ``alert_state``
(written by ``alerts``; empty until the alert job runs in the service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

from chargewatch.figures import OpenAlert
from chargewatch.state import AlertState, StateError, StateStore

__all__ = ["open_alerts"]

_TABLE = cast(Table, AlertState.__table__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def open_alerts(store: StateStore, station_id: str | None = None) -> dict[str, list[OpenAlert]]:
    """Alerts with no resolution yet, latest start first, by station (all, or one)."""
    c = _TABLE.c
    query = select(c.station_id, c.alertname, c.severity, c.labels, c.annotations, c.starts_at)
    query = query.where(c.resolved_at.is_(None), c.station_id.is_not(None))
    if station_id is not None:
        query = query.where(c.station_id == station_id)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(query.order_by(c.starts_at.desc())).all()
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        raise StateError(f"cannot read the alerts: {str(original).splitlines()[0]}") from exc
    found: dict[str, list[OpenAlert]] = {}
    for station, alertname, severity, labels, notes, starts_at in rows:
        connector = str((labels or {}).get("connector_id") or "")
        found.setdefault(str(station), []).append(
            OpenAlert(
                alertname=str(alertname),
                severity=str(severity),
                connector_id=int(connector) if connector.isdigit() else None,
                kind=(labels or {}).get("kind"),
                starts_ns=_ns(starts_at),
                summary=(notes or {}).get("summary"),
            )
        )
    return found


def _ns(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return ((aware - _EPOCH) // _US) * 1000
