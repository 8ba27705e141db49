"""Public schemas of the station, usage, per-user energy and KPI answers, each made ``of`` the
figures it shows (``chargewatch.figures``). Shapes stay flat where a dashboard reads them (the
Grafana Infinity data source takes a list of objects as rows): ``hour_of_week`` is 168 rows,
``energy_by_hour`` a row per hour, a distribution a row per bin.

Times are RFC 3339 in UTC with milliseconds (``2026-11-24T08:15:30.250Z``), except the starts of
``energy_by_hour``, told in the requested zone with its offset (``2026-10-25T02:00:00+01:00``):
across a change of offset, the same local hour may come twice.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel, Field

from api.query import Utc, utc
from chargewatch.figures import (
    HOURS_OF_WEEK,
    BilledSession,
    ConnectorNow,
    Histogram,
    NetworkKpis,
    OpenAlert,
    Outcomes,
    StationFigures,
    UsageFigures,
    UserEnergy,
)

__all__ = [
    "KpisOut",
    "StationOut",
    "StationsOut",
    "UsageOut",
    "UserEnergyOut",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _utc_or_none(ts_ns: int | None) -> str | None:
    return None if ts_ns is None else utc(ts_ns)


# -- stations -------------------------------------------------------------------------------


class ConnectorOut(BaseModel):
    connector_id: int
    status: str | None = Field(
        description="OCPP 1.6 ChargePointStatus of the latest status event; null when none "
        "came in the 30 days before `until`"
    )
    error_code: str | None
    since: Utc | None = Field(description="when that status was reported")

    @classmethod
    def of(cls, c: ConnectorNow) -> ConnectorOut:
        return cls(
            connector_id=c.connector_id,
            status=c.status,
            error_code=c.error_code,
            since=_utc_or_none(c.since_ns),
        )


class OutcomesOut(BaseModel):
    """The sessions that started in the window. Successful: finished, delivered at least 0.1 kWh,
    no Faulted status on its connector or its station (connector 0) from its start to its stop,
    not flagged `stall` or a meter kind. A failed session counts under each reason that
    applies."""

    sessions: int
    open: int = Field(description="not stopped yet (left out of the success rate)")
    finished: int
    successful: int
    success_rate: float | None = Field(description="successful / finished; null when none")
    failed_no_energy: int = Field(description="delivered under 0.1 kWh")
    failed_faulted: int = Field(
        description="its connector, or its whole station, reported Faulted during it"
    )
    failed_stall: int = Field(description="flagged `stall`")
    failed_meter: int = Field(description="flagged with a meter kind")
    energy_wh: float = Field(description="by the register (integrated power where unknown)")

    @classmethod
    def of(cls, o: Outcomes) -> OutcomesOut:
        return cls(
            sessions=o.sessions,
            open=o.open,
            finished=o.finished,
            successful=o.successful,
            success_rate=o.success_rate,
            failed_no_energy=o.no_energy,
            failed_faulted=o.faulted,
            failed_stall=o.stalled,
            failed_meter=o.meter_flagged,
            energy_wh=o.energy_wh,
        )


class OpenAlertOut(BaseModel):
    alertname: str
    severity: str
    connector_id: int | None
    kind: str | None
    starts_at: Utc
    summary: str | None

    @classmethod
    def of(cls, a: OpenAlert) -> OpenAlertOut:
        return cls(
            alertname=a.alertname,
            severity=a.severity,
            connector_id=a.connector_id,
            kind=a.kind,
            starts_at=utc(a.starts_ns),
            summary=a.summary,
        )


class StationOut(BaseModel):
    station_id: str
    last_seen: Utc | None = Field(
        description="its latest event of any kind (heartbeats included) in the 30 days before "
        "`until`; null when none"
    )
    connectors: list[ConnectorOut] = Field(description="status now (as of `until`), per connector")
    sessions: OutcomesOut
    faults: int = Field(description="Faulted status events in the window")
    faults_by_error_code: dict[str, int]
    warnings_by_error_code: dict[str, int] = Field(
        description="other status events in the window that carried an error code"
    )
    open_alerts: list[OpenAlertOut] = Field(
        description="the station's alerts that have not resolved, latest first (empty while "
        "the service sends no alerts)"
    )

    @classmethod
    def of(cls, s: StationFigures) -> StationOut:
        return cls(
            station_id=s.station_id,
            last_seen=_utc_or_none(s.last_seen_ns),
            connectors=[ConnectorOut.of(c) for c in s.connectors],
            sessions=OutcomesOut.of(s.outcomes),
            faults=sum(s.faults_by_error_code.values()),
            faults_by_error_code=dict(s.faults_by_error_code),
            warnings_by_error_code=dict(s.warnings_by_error_code),
            open_alerts=[OpenAlertOut.of(a) for a in s.open_alerts],
        )


class StationsOut(BaseModel):
    since: Utc
    until: Utc
    stations: list[StationOut]


# -- usage ----------------------------------------------------------------------------------


class HourOfWeekOut(BaseModel):
    weekday: int = Field(ge=0, le=6, description="0 is Monday")
    day: str = Field(description="Mon ... Sun")
    hour: int = Field(ge=0, le=23, description="local hour of the day, in `tz`")
    exposure_h: float = Field(description="connector-hours the window offered in this cell")
    occupancy: float | None = Field(
        description="share of connector-time with a session open; null when never covered"
    )
    charging_share: float | None = Field(description="share of connector-time with power flowing")
    idle_after_full_min: float = Field(
        description="connector-minutes blocked by a car that had finished charging"
    )
    energy_wh: float


class HourEnergyOut(BaseModel):
    start: str = Field(
        description="the local hour's start in `tz`, RFC 3339 with its offset",
        json_schema_extra={"format": "date-time"},
    )
    energy_wh: float


class BinOut(BaseModel):
    lower: float = Field(description="inclusive")
    upper: float | None = Field(description="exclusive; null for the last, open bin")
    sessions: int


class DistributionOut(BaseModel):
    unit: str
    bins: list[BinOut]

    @classmethod
    def of(cls, h: Histogram) -> DistributionOut:
        uppers: list[float | None] = [*h.edges[1:], None]
        return cls(
            unit=h.unit,
            bins=[
                BinOut(lower=lo, upper=hi, sessions=n)
                for lo, hi, n in zip(h.edges, uppers, h.counts, strict=True)
            ],
        )


class UsageOut(BaseModel):
    """Usage over the window (widened to quarter hours). Connector-time counts every connector
    of the scope that reported a status in the 30 days before `until` or had a session."""

    since: Utc
    until: Utc
    tz: str
    stations: list[str] | None = Field(description="the scope; null for the whole network")
    connectors: int
    sessions: int = Field(description="sessions that started in the window")
    energy_wh: float = Field(description="delivered in the window (the register's rises)")
    occupancy: float | None = Field(description="over the whole window")
    charging_share: float | None
    idle_after_full_min: float = Field(description="connector-minutes blocked by full cars")
    peak_concurrent_sessions: int = Field(description="most sessions open at once in scope")
    peak_at: Utc | None
    users: int = Field(description="user pseudonyms with a session that started in the window")
    returning_users: int = Field(
        description="of them, those with another session earlier in the window or in the "
        "period of the same length before it"
    )
    returning_share: float | None
    hour_of_week: list[HourOfWeekOut] = Field(description="168 rows, Monday 00:00 first")
    energy_by_hour: list[HourEnergyOut] = Field(description="every local hour of the window")
    duration_distribution: DistributionOut = Field(
        description="finished sessions of the window by duration (minutes)"
    )
    energy_distribution: DistributionOut = Field(
        description="finished sessions of the window by energy (kWh)"
    )

    @classmethod
    def of(cls, u: UsageFigures) -> UsageOut:
        occupancy, charging = u.occupancy, u.charging_share
        exposure = float(u.exposure_s.sum())
        cells = [
            HourOfWeekOut(
                weekday=i // 24,
                day=_DAYS[i // 24],
                hour=i % 24,
                exposure_h=float(u.exposure_s[i]) / 3600.0,
                occupancy=_number(float(occupancy[i])),
                charging_share=_number(float(charging[i])),
                idle_after_full_min=float(u.idle_after_full_s[i]) / 60.0,
                energy_wh=float(u.energy_wh[i]),
            )
            for i in range(HOURS_OF_WEEK)
        ]
        return cls(
            since=utc(u.since_ns),
            until=utc(u.until_ns),
            tz=u.tz,
            stations=None if u.station_ids is None else list(u.station_ids),
            connectors=u.connectors,
            sessions=u.sessions,
            energy_wh=float(u.energy_wh.sum()),
            occupancy=float(u.occupied_s.sum()) / exposure if exposure else None,
            charging_share=float(u.charging_s.sum()) / exposure if exposure else None,
            idle_after_full_min=float(u.idle_after_full_s.sum()) / 60.0,
            peak_concurrent_sessions=u.peak_concurrent,
            peak_at=_utc_or_none(u.peak_at_ns),
            users=u.users,
            returning_users=u.returning_users,
            returning_share=u.returning_users / u.users if u.users else None,
            hour_of_week=cells,
            energy_by_hour=[
                HourEnergyOut(start=_local(int(t), int(o)), energy_wh=float(e))
                for t, o, e in zip(
                    u.hour_starts_ns, u.hour_offsets_s, u.hour_energy_wh, strict=True
                )
            ],
            duration_distribution=DistributionOut.of(u.duration_histogram),
            energy_distribution=DistributionOut.of(u.energy_histogram),
        )


def _local(ts_ns: int, offset_s: int) -> str:
    zone = timezone(timedelta(seconds=offset_s))
    moment = (_EPOCH + timedelta(microseconds=ts_ns // 1000)).astimezone(zone)
    text = moment.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if offset_s == 0 else text


# -- per-user energy ------------------------------------------------------------------------


class BilledSessionOut(BaseModel):
    session_id: str
    station_id: str
    connector_id: int
    start: Utc
    stop: Utc | None = Field(description="null while the session is open")
    energy_wh: float | None = Field(
        description="what the meter register counted (the figure to bill); null when the "
        "register was never read"
    )
    energy_power_wh: float | None = Field(description="integrated power, as a cross-check")
    billing_confidence: float | None = Field(
        ge=0, le=1, description="null: unverifiable, nothing could check the register"
    )
    billing_notes: list[str] = Field(description="why the confidence is below 1")
    flagged_kinds: list[str]
    review: list[str] = Field(
        description="why it needs a look before billing: `unauthorized_energy`, "
        "`concurrent_id_tag`, a meter kind, or `open`; empty when it needs none"
    )

    @classmethod
    def of(cls, s: BilledSession) -> BilledSessionOut:
        return cls(
            session_id=s.session_id,
            station_id=s.station_id,
            connector_id=s.connector_id,
            start=utc(s.start_ns),
            stop=_utc_or_none(s.stop_ns),
            energy_wh=_number(s.energy_register_wh),
            energy_power_wh=_number(s.energy_power_wh),
            billing_confidence=s.billing_confidence,
            billing_notes=list(s.billing_notes),
            flagged_kinds=list(s.flagged_kinds),
            review=list(s.review),
        )


class UserEnergyOut(BaseModel):
    pseudonym: str
    since: Utc
    until: Utc
    energy_wh: float = Field(description="the sum over `sessions` (those needing no review)")
    sessions: list[BilledSessionOut] = Field(
        description="sessions that started in the window and need no review, oldest first"
    )
    needs_review: list[BilledSessionOut] = Field(description="listed apart, oldest first")

    @classmethod
    def of(cls, u: UserEnergy) -> UserEnergyOut:
        sessions = [BilledSessionOut.of(s) for s in u.sessions]
        return cls(
            pseudonym=u.pseudonym,
            since=utc(u.since_ns),
            until=utc(u.until_ns),
            energy_wh=sum(s.energy_wh or 0.0 for s in sessions),
            sessions=sessions,
            needs_review=[BilledSessionOut.of(s) for s in u.needs_review],
        )


# -- network KPIs ---------------------------------------------------------------------------


class KindShareOut(BaseModel):
    kind: str
    sessions: int
    share: float | None = Field(description="of the window's sessions; null when none")


class KindDelayOut(BaseModel):
    kind: str
    mean_s: float


class TimeToFlagOut(BaseModel):
    """From an anomaly's start (its flag's start) to the moment the scheduled detection job first
    stored the flag, for the flags that start in the window. Backfills (`chargewatch detect`)
    are left out."""

    flags: int
    mean_s: float | None
    median_s: float | None
    by_kind: list[KindDelayOut]


class KpisOut(BaseModel):
    since: Utc
    until: Utc
    stations: int = Field(description="stations with a session that started in the window")
    sessions: OutcomesOut
    flagged_sessions: int
    flagged_share: float | None
    flagged_by_kind: list[KindShareOut] = Field(description="every anomaly kind, in its order")
    time_to_flag: TimeToFlagOut

    @classmethod
    def of(cls, k: NetworkKpis) -> KpisOut:
        total = k.outcomes.sessions
        ttf = k.time_to_flag
        return cls(
            since=utc(k.since_ns),
            until=utc(k.until_ns),
            stations=k.stations,
            sessions=OutcomesOut.of(k.outcomes),
            flagged_sessions=k.flagged_sessions,
            flagged_share=k.flagged_sessions / total if total else None,
            flagged_by_kind=[
                KindShareOut(kind=kind, sessions=n, share=n / total if total else None)
                for kind, n in k.flagged_by_kind.items()
            ],
            time_to_flag=TimeToFlagOut(
                flags=ttf.flags,
                mean_s=ttf.mean_s,
                median_s=ttf.median_s,
                by_kind=[KindDelayOut(kind=kd, mean_s=s) for kd, s in ttf.mean_s_by_kind.items()],
            ),
        )
