"""The alert job: every cycle, the active conditions become alerts sent to every Alertmanager.

Conditions, each read fresh every cycle (``Conditions``):

- detector flags of the recent window (``chargewatch.flags``): a finding on a finished session
  counts until a hold after the session's stop. A stall follows the condition, judged in the
  charger's time against what detection last saw of the session (its catalogue row): it counts
  while it reaches the session's latest judged reading (the car still gets nothing), and clears
  at once when readings go on past its end (power flows again); a stall that lasted to the
  session's stop (the driver gave up) counts until the hold after the stop. An orphan segment's
  finding counts while detection keeps extending it (no session to ask);
- connector statuses with a fault: the latest ``status`` point of each connector, Faulted or with
  an error code other than NoError;
- stations offline: silent for ``offline_after`` of their heartbeat intervals (the ``station``
  points of the OCPP gateway);
- the service's own health (``HealthWatch``), from a small ``HealthSignals`` value the service
  hands in (alerts imports neither ingest nor analytics).

Then ``lifecycle.plan_cycle`` and ``settle`` on the ``now`` passed in, ``client`` to every URL,
the state database, and an ``alert`` point in InfluxDB for every start and resolution (Grafana
annotations). A source that cannot be read keeps its conditions of the last cycle: an InfluxDB
outage must not resolve every alert, it raises its own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

from chargewatch.catalog import CatalogEntry
from chargewatch.errors import ChargewatchError
from chargewatch.events import ChargePointErrorCode, ChargePointStatus, EventType, StatusChange
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import InfluxClient, Series, format_point, quote_ident
from chargewatch.kinds import AnomalyKind
from chargewatch.schema import read_station_liveness
from chargewatch.state import StateStore

from .client import AlertmanagerClient, SendReport
from .collector import collector_paused
from .lifecycle import AlertRecord, Policy, Reason, Send, plan_cycle, settle
from .model import Alert, FlagAlerts, Links, service_alert, station_offline_alert, status_alert
from .store import AlertStore
from .taxonomy import ServiceCondition

__all__ = [
    "ALERT_MEASUREMENT",
    "AlertJob",
    "AlertJobStatus",
    "Conditions",
    "HealthSignals",
    "HealthWatch",
]

logger = logging.getLogger(__name__)

ALERT_MEASUREMENT = "alert"
_NS = 1_000_000_000
# Findings that go on while their session is open: live while they reach its latest reading.
_ONGOING_KINDS = frozenset({AnomalyKind.STALL.value})
# A stall "reaches" the session's latest judged reading when its end lies within this of it: the
# catalogue keeps the session's span as float seconds (microseconds at today's epoch), and a
# reading is at least a second after the one before it (OCPP sampling intervals are seconds).
_REACHES_NS = _NS // 2
_CATALOG = cast(Table, CatalogEntry.__table__)
_IDS_PER_QUERY = 500  # ids per IN (...) list: well under every database's bound-parameter limit


class _Judged(NamedTuple):
    """What detection last saw of a session (its catalogue row): its stop, if any, and the
    time of its latest reading (the charger's clock, like the flags')."""

    stop_ns: int | None
    last_reading_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSignals:
    """What the service says of itself at a cycle (``HealthWatch`` turns it into conditions)."""

    spool_lines: int
    influx_error: str | None
    detection_runs: int
    detection_failures: int
    detection_error: str | None


class HealthWatch:
    """The service-health conditions from successive ``HealthSignals``.

    Parameters
    ----------
    interval
        The job interval (detection runs as often).
    growing_cycles
        The spool backlog is growing when its depth rose at each of this many cycles in a row.
    late_intervals
        Detection is late when no run began in this many intervals.
    """

    def __init__(
        self, *, interval: timedelta, growing_cycles: int = 3, late_intervals: int = 3
    ) -> None:
        self.interval = interval
        self.growing_cycles = growing_cycles
        self.late_intervals = late_intervals
        self._depths: list[int] = []
        self._runs: int | None = None
        self._runs_changed_at: datetime | None = None

    def conditions(self, signals: HealthSignals, *, now: datetime) -> dict[ServiceCondition, str]:
        found: dict[ServiceCondition, str] = {}
        self._depths = [*self._depths, signals.spool_lines][-(self.growing_cycles + 1) :]
        depths = self._depths
        if len(depths) > self.growing_cycles and all(a < b for a, b in pairwise(depths)):
            found[ServiceCondition.SPOOL_BACKLOG_GROWING] = (
                f"spool backlog grew at each of the last {self.growing_cycles} cycles: "
                f"{depths[0]} to {depths[-1]} lines waiting for InfluxDB"
            )
        if signals.influx_error is not None:
            found[ServiceCondition.INFLUX_UNREACHABLE] = f"InfluxDB: {signals.influx_error}"
        if signals.detection_error is not None:
            found[ServiceCondition.DETECTION_FAILING] = (
                f"scheduled detection failed ({signals.detection_failures} failures so far): "
                f"{signals.detection_error}"
            )
        if self._runs != signals.detection_runs or self._runs_changed_at is None:
            self._runs, self._runs_changed_at = signals.detection_runs, now
        elif now - self._runs_changed_at >= self.interval * self.late_intervals:
            found[ServiceCondition.DETECTION_LATE] = (
                f"no detection run began since {self._runs_changed_at.isoformat()} "
                f"({self.late_intervals} intervals of {self.interval.total_seconds():g} s)"
            )
        return found


class Conditions:
    """Reads the active conditions of a cycle from InfluxDB (flags, statuses, liveness).

    Parameters
    ----------
    client
        The job's own InfluxDB client.
    links
        Where annotation links point.
    policy
        The lifecycle's policy: its interval and hold bound the windows read.
    offline_after
        A station is offline after this many heartbeat intervals of silence.
    default_heartbeat_s
        The interval assumed for a station that never told its own.
    lookback
        How far back statuses and station events are read (a connector Faulted, or a station
        silent, for longer than this is forgotten).
    catalog
        The state database, whose session catalogue says how far detection has seen each
        session (a stall is live while it reaches the latest judged reading). ``None``: stalls
        are judged by the wall clock instead (live while detection keeps extending them).
    """

    def __init__(
        self,
        client: InfluxClient,
        *,
        links: Links,
        policy: Policy,
        offline_after: float = 3.0,
        default_heartbeat_s: float = 300.0,
        lookback: timedelta = timedelta(days=7),
        catalog: StateStore | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.links = links
        self.policy = policy
        self.offline_after = offline_after
        self.default_heartbeat_s = default_heartbeat_s
        self.lookback = lookback
        self.flag_alerts = FlagAlerts(links)
        # An ongoing finding has stopped once detection leaves its end this far behind now.
        self.ongoing_ns = int((3 * policy.interval + timedelta(seconds=60)).total_seconds() * _NS)

    def flags(self, now: datetime) -> list[Alert]:
        now_ns = _ns(now)
        since_ns = now_ns - int(self.policy.max_backdate.total_seconds() * _NS)
        flags = query_flags(self.client, since_ns, now_ns + 3600 * _NS)
        stops = self._session_stops(since_ns, now_ns + 3600 * _NS) if flags else {}
        judged = self._judged(
            {f.session_id for f in flags if f.session_id is not None and f.kind in _ONGOING_KINDS}
        )
        self.flag_alerts.next_cycle()
        alerts: list[Alert] = []
        for flag in flags:
            counts, finished_at = self._finished_at(flag, stops, judged, now_ns)
            if counts:
                alerts.append(self.flag_alerts(flag, session_finished_at=finished_at))
        return alerts

    def statuses(self, now: datetime) -> list[Alert]:
        since_ns = _ns(now - self.lookback)
        query = (
            f"SELECT * FROM {quote_ident(EventType.STATUS)} WHERE time >= {since_ns} "
            f'GROUP BY "station_id", "connector_id" ORDER BY time DESC LIMIT 1'
        )
        alerts: list[Alert] = []
        for tags, row in _rows(self.client.query(query)):
            try:
                change = StatusChange(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    ChargePointStatus(str(row.get("status"))),
                    ChargePointErrorCode(str(row.get("error_code") or "NoError")),
                    _text(row.get("vendor_error_code")),
                    _text(row.get("info")),
                )
            except (ValueError, KeyError):
                continue  # written by something else: not ours to guess
            alert = status_alert(change, links=self.links)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def offline(self, now: datetime) -> list[Alert]:
        now_ns = _ns(now)
        stations = read_station_liveness(self.client, _ns(now - self.lookback), now_ns + 1)
        alerts: list[Alert] = []
        for station in stations.values():
            interval_s = station.heartbeat_interval_s or self.default_heartbeat_s
            timeout = timedelta(seconds=interval_s * self.offline_after)
            if now_ns - station.last_seen_ns > timeout.total_seconds() * _NS:
                last_seen = datetime.fromtimestamp(station.last_seen_ns / _NS, UTC)
                alerts.append(
                    station_offline_alert(
                        station.station_id, last_seen=last_seen, timeout=timeout, links=self.links
                    )
                )
        return alerts

    def _session_stops(self, since_ns: int, until_ns: int) -> dict[str, int]:
        query = (
            f'SELECT "session_id" FROM {quote_ident(EventType.SESSION_STOP)} '
            f"WHERE time >= {since_ns} AND time < {until_ns}"
        )
        return {
            str(row["session_id"]): int(row["time"])
            for _tags, row in _rows(self.client.query(query))
            if isinstance(row.get("session_id"), str)
        }

    def _judged(self, session_ids: set[str]) -> dict[str, _Judged]:
        """The catalogue's view of these sessions (none known without a catalogue, or when it
        cannot be read: the stalls are then judged by the wall clock, see ``_finished_at``)."""
        if self.catalog is None or not session_ids:
            return {}
        c = _CATALOG.c
        ids = sorted(session_ids)
        found: dict[str, _Judged] = {}
        try:
            with self.catalog.engine.connect() as connection:
                for start in range(0, len(ids), _IDS_PER_QUERY):
                    chunk = ids[start : start + _IDS_PER_QUERY]
                    query = select(c.session_id, c.start_ns, c.stop_ns, c.duration_s).where(
                        c.session_id.in_(chunk)
                    )
                    for sid, start_ns, stop_ns, duration_s in connection.execute(query):
                        last_ns = int(start_ns) + round(float(duration_s) * _NS)
                        found[str(sid)] = _Judged(
                            None if stop_ns is None else int(stop_ns), last_ns
                        )
        except SQLAlchemyError as exc:  # no catalogue yet (detection never ran), or unreadable
            logger.debug("session catalogue not read for stalls: %s", exc)
            return {}
        return found

    def _finished_at(
        self, flag: Flag, stops: dict[str, int], judged: dict[str, _Judged], now_ns: int
    ) -> tuple[bool, datetime | None]:
        """Whether ``flag`` is a condition this cycle, and when its session ended (``None``:
        it is live). A finished session's finding counts until the lifecycle's hold after it."""
        stop_ns = stops.get(flag.session_id) if flag.session_id is not None else None
        seen = judged.get(flag.session_id) if flag.session_id is not None else None
        if seen is not None:  # a stall, judged in the charger's time against the same data
            if stop_ns is None:
                stop_ns = seen.stop_ns
            if flag.end_ns < seen.last_reading_ns - _REACHES_NS:
                return False, None  # readings went on past it: power flows again, it cleared
            return True, None if stop_ns is None else _from_ns(stop_ns)
        ongoing = flag.session_id is None or flag.kind in _ONGOING_KINDS
        if stop_ns is None and ongoing and now_ns - flag.end_ns > self.ongoing_ns:
            stop_ns = flag.end_ns  # detection no longer extends it: it has stopped
        return True, None if stop_ns is None else _from_ns(stop_ns)


@dataclass(slots=True)
class AlertJobStatus:
    """What the job has done, for /healthz and /metrics; failures are kept, not only logged."""

    runs: int = 0
    failures: int = 0
    last_run_at: datetime | None = None
    last_error: str | None = None
    active_by_severity: dict[str, int] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)  # alerts accepted, by URL
    send_failures: Counter[str] = field(default_factory=Counter)  # failed sends, by URL
    source_errors: dict[str, str] = field(default_factory=dict)  # unreadable sources, now
    lock: threading.Lock = field(default_factory=threading.Lock)


class AlertJob:
    """One alert cycle; ``run(now)`` after ``run`` of detection, at the same interval."""

    def __init__(
        self,
        *,
        conditions: Conditions,
        store: AlertStore,
        alertmanagers: AlertmanagerClient,
        influx: InfluxClient,
        policy: Policy,
        health: Callable[[], HealthSignals] | None = None,
    ) -> None:
        self.conditions = conditions
        self.store = store
        self.alertmanagers = alertmanagers
        self.influx = influx
        self.policy = policy
        self.health = health
        self.health_watch = HealthWatch(interval=policy.interval)
        self.status = AlertJobStatus()
        self._state: dict[str, AlertRecord] | None = None
        self._last: dict[str, list[Alert]] = {}  # each source's conditions at its last read

    def run(self, now: datetime) -> SendReport:
        """Compute, send, store and record one cycle at ``now``; returns the delivery report.
        Raises ``ChargewatchError`` when the state database fails (nothing is lost: the next
        cycle plans from the state last stored)."""
        with collector_paused():  # the cycle's bursts of allocation (alerts.collector)
            if self._state is None:
                self._state = self.store.load(now=now, policy=self.policy)
            alerts = list(self._collect(now))
            cycle = plan_cycle(alerts, self._state, now=now, policy=self.policy)
        report = self.alertmanagers.send(cycle.sends) if cycle.sends else SendReport(())
        delivered = report.delivered or not cycle.sends
        with collector_paused():
            settled = settle(cycle, delivered=delivered)
        self.store.save(settled.changed)
        self._state = settled.state
        self._annotate(cycle.sends, now)
        self._count(report, settled.state)
        return report

    def run_guarded(self, clock: Callable[[], datetime]) -> None:
        """The scheduler's entry: the clock is read here, at the edge; errors are recorded."""
        now = clock()
        try:
            report = self.run(now)
        except ChargewatchError as exc:
            with self.status.lock:
                self.status.runs += 1
                self.status.failures += 1
                self.status.last_run_at = now
                self.status.last_error = str(exc)
            logger.warning("alert cycle failed: %s", exc)
            return
        errors = [str(d.error) for d in report.failures]
        with self.status.lock:
            self.status.runs += 1
            self.status.last_run_at = now
            self.status.last_error = "; ".join(errors) if errors else None

    # -- internals ------------------------------------------------------------------------------

    def _collect(self, now: datetime) -> Iterator[Alert]:
        sources: dict[str, Callable[[datetime], list[Alert]]] = {
            "flags": self.conditions.flags,
            "status": self.conditions.statuses,
            "liveness": self.conditions.offline,
        }
        errors: dict[str, str] = {}
        for name, read in sources.items():
            try:
                self._last[name] = read(now)
            except ChargewatchError as exc:
                errors[name] = str(exc)
                logger.warning("alert conditions (%s) not read, kept as they were: %s", name, exc)
            yield from self._last.get(name, ())
        with self.status.lock:
            self.status.source_errors = errors
        found: dict[ServiceCondition, str] = {}
        if self.health is not None:
            found = self.health_watch.conditions(self.health(), now=now)
        if errors and ServiceCondition.INFLUX_UNREACHABLE not in found:
            found[ServiceCondition.INFLUX_UNREACHABLE] = "alert conditions not read: " + "; ".join(
                f"{name}: {error}" for name, error in sorted(errors.items())
            )
        for condition, description in found.items():
            yield service_alert(condition, description=description)

    def _annotate(self, sends: Iterable[Send], now: datetime) -> None:
        """An ``alert`` point per start and resolution (Grafana annotations); a failed write is
        recorded, never fatal: Alertmanager got the alerts."""
        lines = [_alert_line(send, now) for send in sends if send.reason in _CHANGES]
        if not lines:
            return
        try:
            self.influx.write(lines)
        except ChargewatchError as exc:
            with self.status.lock:
                self.status.source_errors["annotations"] = str(exc)
            logger.warning("alert annotations not written to InfluxDB: %s", exc)

    def _count(self, report: SendReport, state: dict[str, AlertRecord]) -> None:
        active: Counter[str] = Counter(
            record.labels.get("severity", "") for record in state.values() if not record.resolved_at
        )
        with self.status.lock:
            self.status.active_by_severity = dict(active)
            for delivery in report.deliveries:
                self.status.sent[delivery.url] += delivery.sent
                if not delivery.ok:
                    self.status.send_failures[delivery.url] += 1


_CHANGES = frozenset({Reason.NEW, Reason.RETURNED, Reason.RESOLVED})


def _alert_line(send: Send, now: datetime) -> str:
    firing = send.reason is not Reason.RESOLVED
    labels = send.labels
    tags = {
        name: labels[name]
        for name in ("alertname", "severity", "owner", "station_id", "connector_id")
        if name in labels
    }
    tags["state"] = "firing" if firing else "resolved"
    fields: dict[str, str | float | int | None] = {
        "fingerprint": send.fingerprint,
        "summary": send.annotations.get("summary"),
        "kind": labels.get("kind"),
        "session_id": send.annotations.get("session_id"),
    }
    return format_point(ALERT_MEASUREMENT, tags, fields, _ns(send.starts_at if firing else now))


def _rows(series: Iterable[Series]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    for s in series:
        names = list(s.columns)
        for values in zip(*(s.columns[name].tolist() for name in names), strict=True):
            yield s.tags, dict(zip(names, values, strict=True))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * _NS)


def _from_ns(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / _NS, UTC)
