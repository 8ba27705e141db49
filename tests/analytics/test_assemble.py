"""Assembly of hand-made event lists: what each row holds, in which order, with which status."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.assemble import assemble, empty_batch, iter_batches
from analytics.batch import NO_TIME, StatusCode
from chargewatch.events import AuthorizationStatus as Auth
from chargewatch.events import ChargePointStatus as Status
from chargewatch.events import Event

from ._support import at, authorize, numbered, reading, start, status, stop


def rows_by_id(events: list[Event]) -> dict[str | None, list[int]]:
    batch = assemble(numbered(events))
    out: dict[str | None, list[int]] = {}
    for i, sid in enumerate(batch.session_id):
        out.setdefault(sid, []).append(i)
    return out


def test_orphan_readings_split_by_long_gap_and_by_a_session_start() -> None:
    events: list[Event] = [
        reading(0, None, energy_wh=100),
        reading(10, None, energy_wh=100),
        reading(20, None, energy_wh=100),
        reading(60, None, energy_wh=200),  # 40 min of silence: a new segment
        reading(70, None, energy_wh=300),
        reading(20, None, connector=2, energy_wh=5),  # another connector: its own segment
        start(75),
        reading(76, energy_wh=300),
        reading(80, None, energy_wh=300),  # after the start: a new segment
    ]
    batch = assemble(numbered(events))
    orphans = np.flatnonzero([sid is None for sid in batch.session_id])
    got = sorted(
        (int(batch.connector_id[i]), int(batch.n_samples[i]), int(batch.start_ns[i]))
        for i in orphans
    )
    assert got == [(1, 1, at(80)), (1, 2, at(60)), (1, 3, at(0)), (2, 1, at(20))]
    # an orphan segment ends at its last reading
    first = next(i for i in orphans if batch.start_ns[i] == at(0))
    assert batch.stop_ns[first] == at(20)


def test_out_of_order_readings_are_sorted_by_time_keeping_arrival() -> None:
    events: list[Event] = [
        start(0),
        reading(3, energy_wh=30),
        reading(1, energy_wh=10),
        reading(2, energy_wh=20),
        reading(-5, energy_wh=0),  # before the start (a charger with a wrong clock): kept
    ]
    batch = assemble(numbered(events))
    assert batch.n_sessions == 1
    assert batch.t_ns[0].tolist() == [at(-5), at(1), at(2), at(3)]
    assert batch.energy_wh[0].tolist() == [0, 10, 20, 30]
    assert batch.arrival[0].tolist() == [5, 3, 4, 2]
    assert batch.start_ns[0] == at(0)
    assert batch.stop_ns[0] == NO_TIME  # still open


@pytest.mark.parametrize(
    ("events", "n_samples", "start_at", "stop_at"),
    [
        ([start(0), stop(5)], 0, at(0), at(5)),
        ([start(0), reading(1, power_w=7.0), stop(5)], 1, at(0), at(5)),
        ([reading(1), reading(2)], 2, at(1), NO_TIME),  # no start seen: the first reading
        ([stop(9)], 0, at(9), at(9)),  # only a stop: no exception, a defined row
    ],
    ids=["no-reading", "one-reading", "no-start", "stop-only"],
)
def test_sparse_sessions_give_defined_rows(
    events: list[Event], n_samples: int, start_at: int, stop_at: int
) -> None:
    batch = assemble(numbered(events))
    assert batch.n_sessions == 1
    assert batch.n_samples.tolist() == [n_samples]
    assert int(batch.valid.sum()) == n_samples
    assert (batch.start_ns[0], batch.stop_ns[0]) == (start_at, stop_at)


def test_padding_and_unmeasured_values() -> None:
    events: list[Event] = [
        start(0, meter_wh=1000.0),
        reading(1),  # a reading that measured nothing
        reading(2, energy_wh=1010.0, power_w=600.0),
        start(0, session="S2"),
        reading(1, session="S2", energy_wh=5.0),
        stop(3, meter_wh=1010.0),
    ]
    batch = assemble(numbered(events))
    assert batch.session_id.tolist() == ["S1", "S2"]
    assert batch.n_steps == 2
    assert np.isnan(batch.energy_wh[0, 0]) and batch.energy_wh[0, 1] == 1010.0
    assert batch.valid.tolist() == [[True, True], [True, False]]
    assert np.isnan(batch.energy_wh[1, 1]) and batch.t_ns[1, 1] == 0
    assert batch.meter_start_wh.tolist() == [1000.0, pytest.approx(np.nan, nan_ok=True)]
    assert batch.meter_stop_wh[0] == 1010.0 and batch.stop_reason[0] == "EVDisconnected"
    assert batch.id_pseudonym.tolist() == ["P1", "P1"]


def test_status_is_forward_filled_per_connector() -> None:
    events: list[Event] = [
        start(0),
        reading(0.5),  # no status seen yet
        status(1, Status.CHARGING),
        status(1, Status.FAULTED, connector=2),  # another connector: no effect
        reading(2),
        status(5, Status.SUSPENDED_EV),
        reading(5),  # a status at the same instant is in force
        reading(9),
    ]
    batch = assemble(numbered(events))
    assert batch.status[0].tolist() == [
        StatusCode.UNKNOWN,
        StatusCode.CHARGING,
        StatusCode.SUSPENDED_EV,
        StatusCode.SUSPENDED_EV,
    ]


def test_each_sample_carries_when_its_status_began_and_the_next_change() -> None:
    events: list[Event] = [
        start(0),
        reading(0.5),  # no status seen yet: neither is known
        status(1, Status.CHARGING),
        status(3, Status.FAULTED, connector=2),  # another connector's change is not the next
        reading(2),
        status(5, Status.SUSPENDED_EVSE),
        reading(6),
        reading(9),
        status(14, Status.CHARGING),
        reading(15),  # no change after it yet
    ]
    batch = assemble(numbered(events))
    assert batch.status_since_ns[0].tolist() == [0, at(1), at(5), at(5), at(14)]
    assert batch.status_until_ns[0].tolist() == [at(1), at(5), at(14), at(14), 0]


@pytest.mark.parametrize(
    ("authorizations", "expected"),
    [
        ([authorize(-5, Auth.ACCEPTED)], "Accepted"),
        ([authorize(-11, Auth.ACCEPTED)], None),  # too long before the start
        ([authorize(-8, Auth.INVALID), authorize(-2, Auth.ACCEPTED)], "Accepted"),
        ([authorize(-2, Auth.ACCEPTED), authorize(-1, Auth.BLOCKED)], "Blocked"),
        ([authorize(-1, Auth.ACCEPTED, who="P2")], None),  # someone else
        ([authorize(-1, Auth.ACCEPTED, station="ST-2")], None),  # another station
        ([authorize(1, Auth.ACCEPTED)], None),  # after the start
        ([], None),
    ],
    ids=[
        "accepted",
        "too-old",
        "latest-wins",
        "latest-blocked",
        "other-tag",
        "other-station",
        "after-start",
        "none",
    ],
)
def test_authorize_result_is_the_latest_before_the_start(
    authorizations: list[Event], expected: str | None
) -> None:
    batch = assemble(numbered([*authorizations, start(0), reading(1), stop(2)]))
    assert batch.auth_result.tolist() == [expected]


def test_nothing_in_nothing_out() -> None:
    for batch in (assemble([]), empty_batch()):
        assert batch.n_sessions == 0
        assert batch.t_ns.shape == (0, 0)


def test_streamed_batches_hold_the_same_sessions_and_samples() -> None:
    events: list[Event] = []
    for k in range(30):
        sid = f"S{k}"
        events += [start(10 * k, session=sid)]
        events += [reading(10 * k + j, session=sid, energy_wh=float(j)) for j in range(k % 7)]
        events += [stop(10 * k + 8, session=sid), reading(10 * k + 9, None, energy_wh=1.0)]
    whole = assemble(numbered(events))
    parts = list(iter_batches(numbered(events), max_sessions=4, max_cells=12))
    assert len(parts) > 3
    assert all(p.n_sessions * p.n_steps <= 12 or p.n_sessions == 1 for p in parts)
    got = sorted(
        (str(sid), int(n))
        for p in parts
        for sid, n in zip(p.session_id, p.n_samples, strict=True)
        if sid is not None
    )
    want = sorted(
        (str(sid), int(n))
        for sid, n in zip(whole.session_id, whole.n_samples, strict=True)
        if sid is not None
    )
    assert got == want
    assert sum(int(p.n_samples.sum()) for p in parts) == int(whole.n_samples.sum())


def test_a_reading_after_its_session_was_handed_out_is_left_out() -> None:
    events: list[Event] = [
        start(0),
        reading(1),
        stop(2),
        start(3, session="S2"),
        stop(4, session="S2"),
    ]
    events += [reading(1.5)]  # S1 again, late
    parts = list(iter_batches(numbered(events), max_sessions=1))
    s1 = [
        int(n)
        for p in parts
        for sid, n in zip(p.session_id, p.n_samples, strict=True)
        if sid == "S1"
    ]
    assert s1 == [1]


def test_several_batches_come_with_a_sample_spread_over_them() -> None:
    from analytics.assemble import Assembler

    assembler = Assembler()
    events: list[Event] = []
    for k in range(40):
        sid = f"S{k:02d}"
        events += [start(10 * k, session=sid), stop(10 * k + 9, session=sid)]
        events += [reading(10 * k + j, session=sid) for j in range(1 + k % 5)]
    for arrival, event in numbered(events):
        assembler.add(arrival, event)
    handout = assembler.finish(max_cells=30)
    batches = list(handout)
    assert len(batches) > 1 and handout.sample is not None
    picked = [str(sid) for sid in handout.sample.session_id]
    assert picked == sorted(picked) and picked[0] == "S00" and picked[-1] == "S39"
    assert handout.sample.n_sessions * handout.sample.n_steps <= 30
    assert sum(b.n_sessions for b in batches) == 40
