"""Flags against labels: exact precision, recall and false-alarm counts on hand-made cases."""

from __future__ import annotations

import inspect

import pytest

from chargewatch.flags import Flag
from models.evaluate import Label, evaluate
from tests.analytics._support import MIN, at


def flag(
    session: str | None, kind: str, begin: float = 0, end: float = 10, connector: int = 1
) -> Flag:
    return Flag(session, "ST-1", connector, kind, 0.9, at(begin), at(end), "why")


def label(
    session: str | None, kind: str, begin: float = 0, end: float = 10, connector: int = 1
) -> Label:
    return Label(session, "ST-1", connector, kind, at(begin), at(end))


LABELS = [
    label("A", "stall"),
    label("B", "stall"),
    label("C", "meter_jump"),
    label(None, "unauthorized_energy", 100, 140, connector=2),
]


def test_precision_recall_per_kind_and_overall() -> None:
    flags = [
        flag("A", "stall"),  # TP
        flag("C", "stall"),  # wrong kind on a labelled session: FP, but not on a normal one
        flag("N1", "stall"),  # FP on a normal session
        flag("C", "meter_jump"),  # TP
        flag(None, "unauthorized_energy", 143, 150, connector=2),  # TP: overlaps within slack
        flag(None, "unauthorized_energy", 300, 310, connector=2),  # FP, no label near
        flag("N2", "data_gap"),  # FP on a normal session
    ]
    result = evaluate(flags, LABELS, sessions=100)
    by_kind = {k.kind: k for k in result.kinds}
    stall = by_kind["stall"]
    assert (stall.flags, stall.labels, stall.true_positives, stall.labels_found) == (3, 2, 1, 1)
    assert stall.precision == pytest.approx(1 / 3)
    assert stall.recall == pytest.approx(1 / 2)
    assert stall.f1 == pytest.approx(0.4)
    assert stall.false_alarms_on_normal == 1
    unauthorized = by_kind["unauthorized_energy"]
    assert (unauthorized.precision, unauthorized.recall) == (0.5, 1.0)
    assert unauthorized.false_alarms_on_normal == 1
    gap = by_kind["data_gap"]
    assert (gap.precision, gap.recall, gap.f1) == (0.0, None, None)
    assert by_kind["meter_jump"].f1 == 1.0
    overall = result.overall
    assert (overall.flags, overall.labels, overall.true_positives, overall.labels_found) == (
        7,
        4,
        3,
        3,
    )
    assert overall.precision == pytest.approx(3 / 7)
    assert overall.recall == pytest.approx(3 / 4)
    # 100 sessions, 3 labelled (A, B, C): 97 normal, N1 and N2 flagged
    assert (result.normal_sessions, result.normal_sessions_flagged) == (97, 2)
    assert result.normal_flagged_fraction == pytest.approx(2 / 97)


def test_orphan_matching_needs_the_same_connector_and_overlap() -> None:
    orphan = LABELS[3]
    cases = [
        (flag(None, "unauthorized_energy", 90, 100, connector=2), 1),  # touching
        (flag(None, "unauthorized_energy", 80, 96, connector=2), 1),  # 4 min before: slack
        (flag(None, "unauthorized_energy", 80, 90, connector=2), 0),  # 10 min before
        (flag(None, "unauthorized_energy", 100, 140, connector=1), 0),  # other connector
        (flag(None, "stall", 100, 140, connector=2), 0),  # other kind
    ]
    for candidate, found in cases:
        result = evaluate([candidate], [orphan])
        assert result.overall.labels_found == found, candidate
    assert inspect.signature(evaluate).parameters["slack_ns"].default == 5 * MIN


def test_nothing_flagged_nothing_labelled() -> None:
    result = evaluate([], [], sessions=10)
    assert result.kinds == []
    assert (result.overall.precision, result.overall.recall) == (None, None)
    assert result.normal_flagged_fraction == 0.0
