"""``GET /api/v1/alerts``: the alerts chargewatch keeps (the state database), latest start first,
each with its state at Alertmanager (active, or suppressed by a silence or an inhibition) when
Alertmanager answers, ``unknown`` when it does not. Silences stay Alertmanager's (``amtool``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.deps import Services, require
from api.query import READ_RESPONSES, Identifier, WindowParams, checked_id
from chargewatch.roles import Role

__all__ = ["AlertEntry", "AlertSource", "router"]


class AlertEntry(Protocol):
    """One alert as the source reports it (``alerts.view.AlertView``)."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def alertmanager_state(self) -> str: ...
    @property
    def silenced_by(self) -> Sequence[str]: ...
    @property
    def inhibited_by(self) -> Sequence[str]: ...


class AlertSource(Protocol):
    """The stored alerts matching every filter given (``None``: no filter), active ones
    (``active=True``), resolved ones (False) or both; ``since``/``until`` bound their activity.
    Blocking: call from a worker thread. Raises ``StateError`` when the state database fails."""

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
    ) -> Sequence[AlertEntry]: ...


router = APIRouter(
    prefix="/api/v1",
    tags=["alerts"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)


def _source(svc: Services) -> AlertSource:
    if svc.alerts is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "alerts are not configured (CHARGEWATCH_ALERTMANAGER_URLS)",
        )
    return svc.alerts


Source = Annotated[AlertSource, Depends(_source)]


class AlertOut(BaseModel):
    labels: dict[str, str] = Field(description="the identity: alertname, severity, owner, ...")
    annotations: dict[str, str] = Field(description="summary, description, runbook, links")
    starts_at: datetime
    ends_at: datetime = Field(description="the last endsAt sent (the resolution once resolved)")
    state: Literal["active", "resolved"]
    alertmanager_state: str = Field(
        description="active, suppressed, unprocessed, missing (not held: it is sent again at "
        "the next cycle), resolved, or unknown (Alertmanager did not answer)"
    )
    silenced_by: list[str] = Field(description="Alertmanager silence ids muting it")
    inhibited_by: list[str] = Field(description="Alertmanager fingerprints inhibiting it")

    @classmethod
    def of(cls, entry: AlertEntry) -> AlertOut:
        return cls(
            labels=dict(entry.labels),
            annotations=dict(entry.annotations),
            starts_at=entry.starts_at,
            ends_at=entry.ends_at,
            state="active" if entry.resolved_at is None else "resolved",
            alertmanager_state=entry.alertmanager_state,
            silenced_by=list(entry.silenced_by),
            inhibited_by=list(entry.inhibited_by),
        )


class AlertsOut(BaseModel):
    items: list[AlertOut]


@router.get("/alerts", response_model=AlertsOut)
def list_alerts(
    source: Source,
    window: WindowParams,
    state: Annotated[
        Literal["active", "resolved"] | None, Query(description="Only active or resolved ones.")
    ] = None,
    station_id: Identifier = None,
    alertname: Identifier = None,
    severity: Annotated[Literal["page", "ticket"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertsOut:
    """Alerts active at some time in the window, latest start first."""
    found = source.alerts(
        active=None if state is None else state == "active",
        station_id=checked_id(station_id, "station_id"),
        alertname=checked_id(alertname, "alertname"),
        severity=severity,
        since=datetime.fromtimestamp(window.since_ns / 1e9, UTC),
        until=datetime.fromtimestamp(window.until_ns / 1e9, UTC),
        limit=limit,
    )
    return AlertsOut(items=[AlertOut.of(entry) for entry in found])
