"""The lifecycle's decisions on virtual time: tables of cycles, each with its ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from alerts.lifecycle import AlertRecord, Policy, Reason, plan_cycle, settle
from alerts.model import Alert, make_alert
from chargewatch.errors import ConfigError
from chargewatch.settings import Settings

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# One-minute cycles, endsAt 4 cycles ahead, findings of finished sessions held 3 minutes,
# starts taken from the data up to an hour back.
POLICY = Policy(interval=MINUTE, ends_after=4, resolve_hold=3 * MINUTE, max_backdate=60 * MINUTE)


def at(minute: float) -> datetime:
    return T0 + minute * MINUTE


def cond(
    name: str,
    *,
    since: float | None = None,
    finished: float | None = None,
    note: str = "evidence",
) -> Alert:
    return make_alert(
        {"alertname": name, "station_id": "CP-1", "connector_id": "1"},
        {"summary": note},
        since=None if since is None else at(since),
        finished_at=None if finished is None else at(finished),
    )


A, B = cond("A"), cond("B")
NEW, RETURNED, ACTIVE = Reason.NEW, Reason.RETURNED, Reason.ACTIVE
RESOLVED, PENDING = Reason.RESOLVED, Reason.RESOLUTION_PENDING


@dataclass(frozen=True)
class Step:
    """One cycle at minute ``t`` with ``active`` conditions; ``sends`` maps each alertname
    sent to (reason, startsAt minute, endsAt minute); ``delivered``: whether the send reached
    every Alertmanager."""

    t: float
    active: tuple[Alert, ...]
    sends: dict[str, tuple[Reason, float, float]]
    delivered: bool = True
    stale: int = 0


CASES: dict[str, list[Step]] = {
    "fires, is sent again every cycle with a later endsAt, resolves once": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (A,), {"A": (ACTIVE, 0, 5)}),
        Step(2, (A,), {"A": (ACTIVE, 0, 6)}),
        Step(3, (), {"A": (RESOLVED, 0, 3)}),
        Step(4, (), {}),
    ],
    "an active alert that was not delivered is simply sent again": [
        Step(0, (A,), {"A": (NEW, 0, 4)}, delivered=False),
        Step(1, (A,), {"A": (ACTIVE, 0, 5)}, delivered=False),
        Step(2, (A,), {"A": (ACTIVE, 0, 6)}),
    ],
    "a resolution that was not delivered is sent again until it is": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (), {"A": (RESOLVED, 0, 1)}, delivered=False),
        Step(2, (), {"A": (PENDING, 0, 1)}, delivered=False),
        Step(3, (), {"A": (PENDING, 0, 1)}),
        Step(4, (), {}),
    ],
    "...or until the last endsAt sent has passed (Alertmanager resolved it itself)": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (), {"A": (RESOLVED, 0, 1)}, delivered=False),
        Step(2, (), {"A": (PENDING, 0, 1)}, delivered=False),
        Step(4, (), {"A": (PENDING, 0, 1)}, delivered=False),
        Step(5, (), {}, delivered=False),
    ],
    "a condition back after resolving is a new alert": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (), {"A": (RESOLVED, 0, 1)}),
        Step(2, (A,), {"A": (RETURNED, 2, 6)}),
        Step(3, (A,), {"A": (ACTIVE, 2, 7)}),
    ],
    "back before its resolution was delivered: a new alert all the same": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (), {"A": (RESOLVED, 0, 1)}, delivered=False),
        Step(2, (A,), {"A": (RETURNED, 2, 6)}),
    ],
    "startsAt is when the data says the condition began": [
        Step(10, (cond("A", since=7),), {"A": (NEW, 7, 14)}),
        Step(11, (cond("A", since=7),), {"A": (ACTIVE, 7, 15)}),
    ],
    "...but never before the previous episode's resolution": [
        Step(10, (cond("A", since=7),), {"A": (NEW, 7, 14)}),
        Step(11, (), {"A": (RESOLVED, 7, 11)}),
        Step(12, (cond("A", since=7),), {"A": (RETURNED, 12, 16)}),
    ],
    "...nor more than max_backdate ago, nor in the future": [
        Step(100, (cond("A", since=10), cond("B", since=101)), {
            "A": (NEW, 100, 104), "B": (NEW, 100, 104)}),
    ],
    "a finding on a finished session resolves a hold after the session ended": [
        Step(0, (cond("A", finished=1),), {"A": (NEW, 0, 4)}),
        Step(3, (cond("A", finished=1),), {"A": (ACTIVE, 0, 7)}),
        Step(4, (cond("A", finished=1),), {"A": (RESOLVED, 0, 4)}),
        Step(5, (cond("A", finished=1),), {}),
    ],
    "a finding first seen after its hold is never sent": [
        Step(10, (cond("A", finished=1), B), {"B": (NEW, 10, 14)}, stale=1),
    ],
    "two sessions' findings on one connector are one alert while either counts": [
        Step(2, (cond("A", since=-5, finished=0), cond("A", since=2, note="later")), {
            "A": (NEW, 2, 6)}),
        Step(4, (cond("A", since=-5, finished=0), cond("A", since=2, note="later")), {
            "A": (ACTIVE, 2, 8)}),
        Step(5, (cond("A", since=-5, finished=0),), {"A": (RESOLVED, 2, 5)}),
    ],
    "alerts are independent of one another": [
        Step(0, (A,), {"A": (NEW, 0, 4)}),
        Step(1, (A, B), {"A": (ACTIVE, 0, 5), "B": (NEW, 1, 5)}),
        Step(2, (B,), {"A": (RESOLVED, 0, 2), "B": (ACTIVE, 1, 6)}),
        Step(3, (), {"B": (RESOLVED, 1, 3)}),
    ],
}  # fmt: skip


@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
def test_lifecycle(steps: list[Step]) -> None:
    state: dict[str, AlertRecord] = {}
    for step in steps:
        cycle = plan_cycle(step.active, state, now=at(step.t), policy=POLICY)
        sent = {
            s.labels["alertname"]: (
                s.reason,
                (s.starts_at - T0) / MINUTE,
                (s.ends_at - T0) / MINUTE,
            )
            for s in cycle.sends
        }
        assert sent == step.sends, f"minute {step.t}"
        assert len(cycle.sends) == len(sent)
        assert cycle.stale == step.stale, f"minute {step.t}"
        state = settle(cycle, delivered=step.delivered).state


def run(
    state: dict[str, AlertRecord], minute: float, *active: Alert, delivered: bool = True
) -> tuple[dict[str, AlertRecord], set[str]]:
    cycle = plan_cycle(active, state, now=at(minute), policy=POLICY)
    settled = settle(cycle, delivered=delivered)
    return settled.state, {r.labels["alertname"] for r in settled.changed}


def test_records_are_written_on_changes_and_evidence_at_most_every_ten_intervals() -> None:
    state, changed = run({}, 0, A)
    assert changed == {"A"}  # new
    state, changed = run(state, 1, A)
    assert changed == set()  # the same, sent again: nothing to write
    cycle = plan_cycle([cond("A", note="more")], state, now=at(2), policy=POLICY)
    assert cycle.sends[0].annotations == {"summary": "more"}  # Alertmanager gets it now...
    assert cycle.writes == set()  # ...the database within ten intervals of the last write
    state = settle(cycle, delivered=True).state
    state, changed = run(state, 9, cond("A", note="more"))
    assert changed == set()
    state, changed = run(state, 10, cond("A", note="more"))
    assert changed == {"A"}
    record = state[A.fingerprint]
    assert record.annotations == {"summary": "more"}
    assert (record.updated_at, record.last_sent_at, record.ends_at) == (at(10), at(10), at(14))
    state, changed = run(state, 11, cond("A", note="more"))
    assert changed == set()
    state, changed = run(state, 12, delivered=False)
    assert changed == {"A"}  # resolved
    assert state[A.fingerprint].resolved_at == at(12)
    assert not state[A.fingerprint].resolution_delivered
    state, changed = run(state, 13)
    assert changed == {"A"}  # its resolution delivered
    assert state[A.fingerprint].resolution_delivered
    state, changed = run(state, 14)
    assert changed == set()


def test_resolved_records_stay_in_the_state_for_max_backdate() -> None:
    state, _ = run({}, 0, A)
    state, _ = run(state, 1)
    assert state[A.fingerprint].resolved_at == at(1)
    state, _ = run(state, 60)
    assert A.fingerprint in state
    state, _ = run(state, 61)
    assert state == {}


def test_the_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        Policy(interval=timedelta(0))
    with pytest.raises(ValueError, match="ends_after"):
        Policy(interval=MINUTE, ends_after=1)
    assert Policy(interval=timedelta(minutes=2)).lease == timedelta(minutes=8)
    assert Policy(interval=timedelta(seconds=30)).lease == timedelta(minutes=4)  # the floor


def test_the_policy_comes_from_settings() -> None:
    policy = Policy.from_settings(Settings(detect_interval_s=15, alert_resolve_hold_s=600))
    assert (policy.interval, policy.resolve_hold, policy.lease) == (
        timedelta(seconds=15),
        timedelta(minutes=10),
        timedelta(minutes=4),  # 4 x the resend floor of 1 min
    )
    with pytest.raises(ConfigError, match="DETECT_INTERVAL_S"):
        Policy.from_settings(Settings(detect_interval_s=0))


def test_changes_are_sent_before_the_active_alerts_sent_again() -> None:
    many = [cond(f"X{i}") for i in range(50)]
    state, _ = run({}, 0, A, *many)
    cycle = plan_cycle([*many, B], state, now=at(1), policy=POLICY)
    reasons = [s.reason for s in cycle.sends]
    assert reasons[:2] == [Reason.NEW, Reason.RESOLVED]  # B new, A cleared
    assert set(reasons[2:]) == {Reason.ACTIVE} and len(reasons) == 52
