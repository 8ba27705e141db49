"""The alerts as the API shows them: the stored records, each with its state at Alertmanager.

Alertmanager is asked once per request (the first URL that answers, with the request's label
filters as matchers); when none answers, every alert's Alertmanager state is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from chargewatch.errors import AlertmanagerError

from .client import AlertmanagerAlert, AlertmanagerClient
from .store import AlertQuery, AlertStore

__all__ = ["AlertReader", "AlertView"]


class AlertView(NamedTuple):
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    resolved_at: datetime | None
    alertmanager_state: str  # active, suppressed, unprocessed, missing, resolved, unknown
    silenced_by: Sequence[str]
    inhibited_by: Sequence[str]


class AlertReader:
    """``api.alerts.AlertSource`` over the state database and Alertmanager's API v2."""

    def __init__(self, store: AlertStore, alertmanagers: AlertmanagerClient) -> None:
        self.store = store
        self.alertmanagers = alertmanagers

    def alerts(
        self,
        *,
        active: bool | None,
        station_id: str | None,
        alertname: str | None,
        severity: str | None,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> list[AlertView]:
        query = AlertQuery(
            active=active,
            station_id=station_id,
            alertname=alertname,
            severity=severity,
            since=since,
            until=until,
            limit=limit,
        )
        records = self.store.records(query)
        matchers = [
            f'{name}="{_escaped(value)}"'
            for name, value in (
                ("station_id", station_id),
                ("alertname", alertname),
                ("severity", severity),
            )
            if value is not None
        ]
        held = self._held(matchers) if any(r.resolved_at is None for r in records) else {}
        views: list[AlertView] = []
        for record in records:
            state = "resolved"
            silenced: Sequence[str] = ()
            inhibited: Sequence[str] = ()
            if record.resolved_at is None:
                if held is None:
                    state = "unknown"
                else:
                    alert = held.get(record.fingerprint)
                    if alert is None:
                        state = "missing"
                    else:
                        state = alert.state
                        silenced, inhibited = alert.silenced_by, alert.inhibited_by
            views.append(
                AlertView(
                    record.labels,
                    record.annotations,
                    record.starts_at,
                    record.ends_at,
                    record.resolved_at,
                    state,
                    silenced,
                    inhibited,
                )
            )
        return views

    def _held(self, matchers: list[str]) -> dict[str, AlertmanagerAlert] | None:
        """The alerts the first Alertmanager that answers holds, by chargewatch fingerprint."""
        for url in self.alertmanagers.urls:
            try:
                found = self.alertmanagers.alerts(url, filters=matchers)
            except AlertmanagerError:
                continue
            return {alert.fingerprint: alert for alert in found}
        return None


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
