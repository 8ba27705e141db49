"""The alert lifecycle, as Prometheus runs it: pure decisions of state and an explicit ``now``.

Every job interval the caller computes the set of active conditions (``Alert`` values) and calls
``plan_cycle`` with the state of the previous cycle. For each alert:

- first seen: sent with ``startsAt`` = when the condition began per the data (``Alert.since``,
  kept only if it lies within ``max_backdate`` before now; otherwise now) and stored, so the same
  ``startsAt`` goes out after a restart and Alertmanager, which identifies an alert by its labels
  and keeps its notification log on disk, does not notify it again;
- still active: sent again, every cycle, with ``endsAt`` = now + ``ends_after`` x the longer of
  the interval and ``resend_floor`` (1 min). Prometheus uses 4 x max(interval, resend delay of
  1 min): three missed cycles in a row (a slow run, an Alertmanager restart, a failed send, a
  chargewatch restarted after a crash) do not resolve the alert by timeout and re-notify it when
  it comes back, while alerts of a chargewatch that died still resolve on their own minutes later;
- cleared (no longer in the set, or a session finding whose session ended more than
  ``resolve_hold`` ago): sent once more with ``endsAt`` = now, and kept as resolved with that
  time (never deleted). The resolution is sent again each cycle until it reached every
  Alertmanager in one cycle or until the last ``endsAt`` sent has passed (then every
  Alertmanager has resolved it by itself);
- back after resolving: a new alert (a new ``startsAt``, after the old resolution).

Delivery is a second step: ``settle(cycle, delivered=...)`` records whether the sends reached
every Alertmanager, and lists the records to write to the state database. A record is written
when its alert starts, resolves, or has its resolution delivered, and when its annotations
changed, at most once every ``refresh_after`` intervals (a finding's evidence changes as it goes
on; a restart needs the labels and ``startsAt``, not the latest evidence). Active alerts need no
delivery bookkeeping: they are sent again every cycle, so an Alertmanager that was down gets
them at the first cycle after it is back. A record's ``ends_at`` and ``last_sent_at`` are as of
its last write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from chargewatch.errors import ConfigError
from chargewatch.settings import Settings

from .model import Alert

__all__ = [
    "AlertRecord",
    "Cycle",
    "Policy",
    "Reason",
    "Send",
    "Settled",
    "decide",
    "is_active",
    "is_kept",
    "plan_cycle",
    "settle",
]

_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How the lifecycle times alerts.

    Parameters
    ----------
    interval
        The job interval: how often ``plan_cycle`` runs.
    ends_after
        ``endsAt`` is this many intervals ahead of each send (see the module docstring).
    resolve_hold
        A session finding resolves this long after its session ended.
    max_backdate
        The furthest before now an alert's ``startsAt`` may be taken from its data (a charger
        whose clock says 1970 must not start an alert then); also how long resolved records stay
        in the cycle's state, so that a condition coming back is seen as coming back.
    resend_floor
        The lease counts intervals of at least this (Prometheus's resend delay): with a short
        interval, a restart of a few seconds must not outlast the ``endsAt`` sent before it.
    refresh_after
        An active alert whose annotations changed is written at most once per this many
        intervals.
    """

    interval: timedelta
    ends_after: int = 4
    resolve_hold: timedelta = timedelta(hours=1)
    max_backdate: timedelta = timedelta(days=1)
    refresh_after: int = 10
    resend_floor: timedelta = timedelta(minutes=1)
    lease: timedelta = field(init=False, repr=False)  # how far ahead of a send its endsAt lies
    refresh: timedelta = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")
        if self.ends_after < 2:
            raise ValueError("ends_after must be at least 2 intervals (one missed cycle)")
        object.__setattr__(self, "lease", max(self.interval, self.resend_floor) * self.ends_after)
        object.__setattr__(self, "refresh", self.interval * self.refresh_after)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The job interval and the resolve hold of the settings; ``ConfigError`` when the
        scheduled job is off (``CHARGEWATCH_DETECT_INTERVAL_S=0``: no cycle to run)."""
        if settings.detect_interval_s <= 0:
            raise ConfigError("alerts need the scheduled job: CHARGEWATCH_DETECT_INTERVAL_S > 0")
        return cls(
            interval=timedelta(seconds=settings.detect_interval_s),
            resolve_hold=timedelta(seconds=settings.alert_resolve_hold_s),
        )


class Reason(StrEnum):
    """Why an alert is sent this cycle."""

    NEW = "new"  # first seen
    RETURNED = "returned"  # seen again after it had resolved: a new alert
    ACTIVE = "active"  # still active: sent again with a later endsAt
    RESOLVED = "resolved"  # cleared this cycle: sent with endsAt = now
    RESOLUTION_PENDING = "resolution_pending"  # a resolution not yet delivered everywhere


# Records and sends are NamedTuples: immutable, and several times cheaper to build than frozen
# dataclasses, which counts at 100,000 alerts a cycle (bench/alerts.py).


class AlertRecord(NamedTuple):
    """What is kept of one alert between cycles and in the state database.

    ``ends_at`` is the ``endsAt`` sent at the last write (the resolution time once resolved);
    ``last_sent_at`` the last time it reached every Alertmanager, as of that write;
    ``updated_at`` the time of that write.
    """

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    last_sent_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime

    @property
    def resolution_delivered(self) -> bool:
        return (
            self.resolved_at is not None
            and self.last_sent_at is not None
            and self.last_sent_at >= self.resolved_at
        )


class Send(NamedTuple):
    """One alert to POST this cycle (``client.postable`` makes it Alertmanager's JSON)."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    reason: Reason


@dataclass(frozen=True, slots=True)
class Cycle:
    """The plan of one cycle: what to send, the state after it, and what to write."""

    now: datetime
    sends: list[Send]  # changes (new, returned, resolved) first, then the active ones again
    state: dict[str, AlertRecord]
    writes: set[str] = field(default_factory=set)  # fingerprints whose record must be written
    stale: int = 0  # conditions first seen after their hold had run out: never sent


@dataclass(frozen=True, slots=True)
class Settled:
    """After delivery: the state for the next cycle, and the records to write."""

    state: dict[str, AlertRecord]
    changed: list[AlertRecord]


def is_active(alert: Alert, *, now: datetime, policy: Policy) -> bool:
    """Whether a reported condition still counts: a session finding stops counting a hold
    after its session ended."""
    return alert.finished_at is None or now < alert.finished_at + policy.resolve_hold


def is_kept(record: AlertRecord, *, now: datetime, policy: Policy) -> bool:
    """Whether a record stays in the cycle's state: active, or resolved within
    ``max_backdate`` (the state database keeps every record for ever)."""
    return record.resolved_at is None or now - record.resolved_at < policy.max_backdate


def decide(
    condition: Alert | None, record: AlertRecord | None, *, now: datetime, policy: Policy
) -> tuple[Reason | None, AlertRecord | None]:
    """One alert's decision: why it is sent (``None``: it is not), and its record after.

    ``condition`` is the alert as reported this cycle, ``None`` when it is not (or no longer
    counts: see ``is_active``); ``record`` what was kept of it. The record comes back unchanged
    (the same object) when nothing of it needs writing. ``(None, None)``: a condition that was
    never sent and does not count (nothing to do, nothing to keep).
    """
    if condition is not None:
        if record is None:
            return Reason.NEW, _opened(condition, now, policy, after=None)
        if record.resolved_at is not None:
            return Reason.RETURNED, _opened(condition, now, policy, after=record.resolved_at)
        if condition.annotations != record.annotations and now - record.updated_at >= (
            policy.refresh
        ):
            return Reason.ACTIVE, record._replace(
                annotations=condition.annotations, ends_at=now + policy.lease, updated_at=now
            )
        return Reason.ACTIVE, record
    if record is None:
        return None, None
    if record.resolved_at is None:
        return Reason.RESOLVED, record._replace(ends_at=now, resolved_at=now, updated_at=now)
    if not record.resolution_delivered and now < record.resolved_at + policy.lease:
        return Reason.RESOLUTION_PENDING, record
    return None, record


def plan_cycle(
    conditions: Iterable[Alert],
    state: Mapping[str, AlertRecord],
    *,
    now: datetime,
    policy: Policy,
) -> Cycle:
    """Decide one cycle for every reported condition and every kept record.

    Conditions with one fingerprint (the same labels: two sessions' stalls on one connector)
    are one alert, active while any of them counts, described by the one that began last.
    The sends list changes first: at 100,000 active alerts Alertmanager takes tens of seconds to
    ingest a cycle, and a new page must not wait behind them (bench/alerts.py).
    """
    active, expired = _collect(conditions, now=now, policy=policy)
    ends_at = now + policy.lease
    sends: list[Send] = []  # changes
    again: list[Send] = []  # unchanged active alerts, sent again
    new_state = dict(state)
    writes: set[str] = set()
    active_reason = Reason.ACTIVE
    for fp, alert in active.items():
        old = state.get(fp)
        if old is not None and old.resolved_at is None and old.annotations is alert.annotations:
            # decide()'s answer when nothing changed (the common case), without the call
            again.append(
                Send(fp, old.labels, alert.annotations, old.starts_at, ends_at, active_reason)
            )
            continue
        reason, record = decide(alert, old, now=now, policy=policy)
        assert reason is not None and record is not None  # a counted condition is always sent
        send = Send(fp, record.labels, alert.annotations, record.starts_at, ends_at, reason)
        (again if reason is Reason.ACTIVE else sends).append(send)
        if record is not old:
            new_state[fp] = record
            writes.add(fp)
    for fp, old in state.items():
        if fp in active:
            continue
        reason, record = decide(None, old, now=now, policy=policy)
        if record is None or not is_kept(record, now=now, policy=policy):
            del new_state[fp]
            continue
        if reason is not None:
            sends.append(
                Send(
                    fp, record.labels, record.annotations, record.starts_at, record.ends_at, reason
                )
            )
        if record is not old:
            new_state[fp] = record
            writes.add(fp)
    stale = sum(1 for fp in expired if fp not in active and fp not in state)
    sends.extend(again)
    return Cycle(now, sends, new_state, writes, stale)


def settle(cycle: Cycle, *, delivered: bool) -> Settled:
    """The state after this cycle's sends, ``delivered`` to every Alertmanager or not, and the
    records to write (each with ``updated_at`` = now)."""
    now = cycle.now
    state = dict(cycle.state)
    writes = set(cycle.writes)
    if delivered:
        writes.update(
            send.fingerprint for send in cycle.sends if send.reason is Reason.RESOLUTION_PENDING
        )
    changed: list[AlertRecord] = []
    for fp in writes:
        record = state[fp]
        if delivered:
            record = record._replace(last_sent_at=now, updated_at=now)
        elif record.updated_at != now:
            record = record._replace(updated_at=now)
        state[fp] = record
        changed.append(record)
    return Settled(state, changed)


# -- internals ------------------------------------------------------------------------------------


def _collect(
    conditions: Iterable[Alert], *, now: datetime, policy: Policy
) -> tuple[dict[str, Alert], set[str]]:
    """The counted conditions by fingerprint (the latest ``since`` describing each), and the
    fingerprints of those that no longer count."""
    active: dict[str, Alert] = {}
    expired: set[str] = set()
    for alert in conditions:
        fp = alert.fingerprint
        if alert.finished_at is not None and not is_active(alert, now=now, policy=policy):
            expired.add(fp)
            continue
        other = active.get(fp)
        if other is None or (alert.since or _EARLIEST) >= (other.since or _EARLIEST):
            active[fp] = alert
    return active, expired


def _opened(
    condition: Alert, now: datetime, policy: Policy, *, after: datetime | None
) -> AlertRecord:
    """A new alert's record; ``after``: the previous episode's resolution, which the new
    ``startsAt`` must follow (else Alertmanager would merge the two)."""
    lowest = now - policy.max_backdate
    if after is not None and after > lowest:
        lowest = after
    since = condition.since
    starts_at = since if since is not None and lowest < since <= now else now
    return AlertRecord(
        condition.fingerprint,
        condition.labels,
        condition.annotations,
        starts_at,
        now + policy.lease,
        None,
        None,
        now,
    )
