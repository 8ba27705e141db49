"""An alert as Alertmanager sees it: labels (its identity) and annotations (the detail).

Labels are CONTRACTS.md section 7's: ``alertname``, ``severity``, ``owner``, ``station_id`` and,
where they apply, ``connector_id`` and ``kind``; never an id tag nor a pseudonym. Annotations carry
the ``summary``, the ``description`` (the evidence with its numbers), the ``runbook``, the
``score`` and ``session_id`` of a session finding, and links to the session (or station) in the
API (``api_url``) and in Grafana (``grafana_url``).

The builders turn each kind of condition into an ``Alert``: a detector flag, a connector status
with a fault, a station gone silent, a service-health condition.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote

import orjson

from chargewatch.events import ChargePointErrorCode, ChargePointStatus, StatusChange
from chargewatch.flags import Flag
from chargewatch.settings import Settings

from .taxonomy import (
    BY_ERROR_CODE,
    BY_KIND,
    BY_SERVICE_CONDITION,
    STATION_OFFLINE,
    AlertType,
    ServiceCondition,
    Severity,
    severity_of_status,
)

__all__ = [
    "SESSION_DASHBOARD_UID",
    "STATION_DASHBOARD_UID",
    "Alert",
    "FlagAlerts",
    "Links",
    "fingerprint",
    "flag_alert",
    "make_alert",
    "service_alert",
    "station_offline_alert",
    "status_alert",
]

# The Grafana dashboards the links open (grafana/ must generate them with these uids).
SESSION_DASHBOARD_UID = "chargewatch-session"
STATION_DASHBOARD_UID = "chargewatch-station"
_GRAFANA_PAD_MS = 15 * 60 * 1000  # some context either side of a finding's window
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


class Alert(NamedTuple):
    """One active condition as an alert. Build it with ``make_alert`` (or a builder).

    ``since`` is when the condition began according to the data (a flag's start, a Faulted
    status's timestamp), which the lifecycle uses as ``startsAt`` when it first sees the alert;
    ``finished_at`` is when a session finding's session ended (``None`` while it is open, and for
    conditions that are not session findings): such an alert resolves a hold after it.
    """

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    fingerprint: str
    since: datetime | None = None
    finished_at: datetime | None = None

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """A hash of the sorted labels: 16 hex digits, the same for the same labels in any order.

    Not Alertmanager's own FNV-1a (which costs microseconds per alert in Python); join the two
    by computing this over the labels Alertmanager returns.
    """
    encoded = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()


def make_alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    *,
    since: datetime | None = None,
    finished_at: datetime | None = None,
) -> Alert:
    """An ``Alert`` with its fingerprint; labels with an empty value are dropped (Alertmanager
    treats an empty label as absent, so they must not change the identity either)."""
    kept = {name: value for name, value in labels.items() if value}
    return Alert(kept, dict(annotations), fingerprint(kept), since, finished_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Where the annotation links point: the API as people reach it ("" for relative links) and
    Grafana (``None``: no Grafana link)."""

    api_base: str = ""
    grafana_base: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Links:
        return cls(api_base=settings.public_url or "", grafana_base=settings.grafana_url)

    def session(self, session_id: str) -> str:
        return f"{self.api_base}/api/v1/sessions/{_quoted(session_id)}"

    def station(self, station_id: str) -> str:
        return f"{self.api_base}/api/v1/stations/{_quoted(station_id)}"

    def grafana(self, uid: str, variable: str, value: str, start_ns: int, end_ns: int) -> str:
        if self.grafana_base is None:
            return ""
        start_ms = start_ns // 1_000_000 - _GRAFANA_PAD_MS
        end_ms = end_ns // 1_000_000 + _GRAFANA_PAD_MS
        return (
            f"{self.grafana_base}/d/{uid}?var-{variable}={_quoted(value)}"
            f"&from={start_ms}&to={end_ms}"
        )


def flag_alert(
    flag: Flag,
    *,
    links: Links,
    session_finished_at: datetime | None = None,
    severity: Severity | None = None,
) -> Alert:
    """A detector flag as an alert; ``KeyError`` for a kind the taxonomy does not know.

    ``session_finished_at``: when the flag's session ended (``None`` while it is open); the
    alert then resolves a hold later. ``severity`` overrides the taxonomy's (a caller may page
    a stall only while its session is live, for example).
    """
    entry = BY_KIND[flag.kind]
    where = f"{flag.station_id} connector {flag.connector_id}"
    window = f"{_clock(flag.start_ns)} to {_clock(flag.end_ns)} UTC"
    annotations = {
        "summary": f"{entry.title} at {where}",
        "description": f"{flag.reason} ({window}; score {flag.score:.2f})",
        "runbook": entry.runbook,
        "score": f"{flag.score:.3f}",
    }
    if flag.session_id is not None:
        annotations["session_id"] = flag.session_id
        annotations["api_url"] = links.session(flag.session_id)
        grafana = links.grafana(
            SESSION_DASHBOARD_UID, "session_id", flag.session_id, flag.start_ns, flag.end_ns
        )
    else:
        annotations["api_url"] = links.station(flag.station_id)
        grafana = links.grafana(
            STATION_DASHBOARD_UID, "station_id", flag.station_id, flag.start_ns, flag.end_ns
        )
    if grafana:
        annotations["grafana_url"] = grafana
    labels = _labels(entry, severity or entry.severity, flag.station_id)
    labels["connector_id"] = str(flag.connector_id)
    labels["kind"] = flag.kind
    return make_alert(
        labels, annotations, since=_from_ns(flag.start_ns), finished_at=session_finished_at
    )


class FlagAlerts:
    """``flag_alert`` with a memory of the previous cycle: a flag reported again unchanged (the
    same values, the same session end) costs a dict lookup instead of a rebuild. Call
    ``next_cycle()`` once per cycle; what the last cycle did not ask for is then forgotten.

    Detection reports the same findings cycle after cycle, so at 100,000 active alerts this is
    most of a cycle's CPU saved (bench/alerts.py).
    """

    def __init__(self, links: Links) -> None:
        self.links = links
        self._previous: dict[Flag | tuple[Flag, datetime | None, Severity | None], Alert] = {}
        self._current: dict[Flag | tuple[Flag, datetime | None, Severity | None], Alert] = {}

    def __call__(
        self,
        flag: Flag,
        *,
        session_finished_at: datetime | None = None,
        severity: Severity | None = None,
    ) -> Alert:
        key: Flag | tuple[Flag, datetime | None, Severity | None] = (
            flag
            if session_finished_at is None and severity is None
            else (flag, session_finished_at, severity)
        )  # the flag alone when it can: one hash of a tuple fewer, in the common case
        alert = self._current.get(key)
        if alert is None:
            alert = self._previous.get(key)
            if alert is None:
                alert = flag_alert(
                    flag,
                    links=self.links,
                    session_finished_at=session_finished_at,
                    severity=severity,
                )
            self._current[key] = alert
        return alert

    def next_cycle(self) -> None:
        self._previous, self._current = self._current, {}


def status_alert(change: StatusChange, *, links: Links) -> Alert | None:
    """A connector's status as an alert: ``None`` when it reports no fault (neither Faulted nor
    an error code). A code while the connector still works is a ticket (a warning)."""
    if (
        change.status is not ChargePointStatus.FAULTED
        and change.error_code is ChargePointErrorCode.NO_ERROR
    ):
        return None
    entry = BY_ERROR_CODE[change.error_code]
    where = (
        change.station_id
        if change.connector_id == 0
        else f"{change.station_id} connector {change.connector_id}"
    )
    detail = [f"status {change.status.value}", f"error code {change.error_code.value}"]
    if change.vendor_error_code:
        detail.append(f"vendor error code {change.vendor_error_code}")
    if change.info:
        detail.append(f"info: {change.info}")
    annotations = {
        "summary": f"{entry.title} at {where}",
        "description": f"{'; '.join(detail)} (reported {_clock(change.ts_ns)} UTC)",
        "runbook": entry.runbook,
        "api_url": links.station(change.station_id),
    }
    grafana = links.grafana(
        STATION_DASHBOARD_UID, "station_id", change.station_id, change.ts_ns, change.ts_ns
    )
    if grafana:
        annotations["grafana_url"] = grafana
    labels = _labels(entry, severity_of_status(entry, change.status), change.station_id)
    labels["connector_id"] = str(change.connector_id)
    return make_alert(labels, annotations, since=_from_ns(change.ts_ns))


def station_offline_alert(
    station_id: str, *, last_seen: datetime, timeout: timedelta, links: Links
) -> Alert:
    """A station silent since ``last_seen``, past its ``timeout`` (a multiple of its heartbeat
    interval). Its ``since`` is when the timeout ran out."""
    entry = STATION_OFFLINE
    annotations = {
        "summary": f"{entry.title}: {station_id}",
        "description": (
            f"nothing received from {station_id} since {_clock_dt(last_seen)} UTC; "
            f"it is offline after {timeout.total_seconds():g} s of silence"
        ),
        "runbook": entry.runbook,
        "api_url": links.station(station_id),
    }
    seen_ns = int(last_seen.timestamp() * 1e9)
    grafana = links.grafana(STATION_DASHBOARD_UID, "station_id", station_id, seen_ns, seen_ns)
    if grafana:
        annotations["grafana_url"] = grafana
    labels = _labels(entry, entry.severity, station_id)
    return make_alert(labels, annotations, since=last_seen + timeout)


def service_alert(
    condition: ServiceCondition, *, description: str, since: datetime | None = None
) -> Alert:
    """chargewatch's own health as an alert (no station: ``station_id`` is absent)."""
    entry = BY_SERVICE_CONDITION[condition]
    annotations = {"summary": entry.title, "description": description, "runbook": entry.runbook}
    return make_alert(_labels(entry, entry.severity, ""), annotations, since=since)


def _labels(entry: AlertType, severity: Severity, station_id: str) -> dict[str, str]:
    return {
        "alertname": entry.alertname,
        "severity": severity.value,
        "owner": entry.owner.value,
        "station_id": station_id,
    }


def _from_ns(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


def _clock(ts_ns: int) -> str:
    return _clock_dt(_from_ns(ts_ns))


def _clock_dt(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(" ", "seconds")[:19]  # 2026-11-24 08:15:00


def _quoted(value: str) -> str:
    """``value`` as one URL path segment or query value (ids rarely need escaping: skip the
    slow path when they do not)."""
    return value if _URL_SAFE.fullmatch(value) else quote(value, safe="")
