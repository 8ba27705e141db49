"""Two evaluations of the same labels side by side: each kind's change has the right sign and
size, a kind only one model flagged is still a row, and undefined figures stay undefined."""

from __future__ import annotations

import pytest

from chargewatch.flags import Flag
from models.compare import compare
from models.evaluate import Label, evaluate
from tests.analytics._support import at


def flag(session: str, kind: str) -> Flag:
    return Flag(session, "ST-1", 1, kind, 0.9, at(0), at(10), "why")


def label(session: str, kind: str) -> Label:
    return Label(session, "ST-1", 1, kind, at(0), at(10))


LABELS = [label("A", "stall"), label("B", "stall"), label("C", "meter_jump")]


def test_changes_per_kind_and_overall() -> None:
    before = evaluate([flag("A", "stall"), flag("N", "stall")], LABELS, sessions=10)
    after = evaluate(
        [flag("A", "stall"), flag("B", "stall"), flag("C", "meter_jump"), flag("N", "data_gap")],
        LABELS,
        sessions=10,
    )
    result = compare(before, after)
    by_kind = {change.kind: change for change in result.kinds}
    assert list(by_kind) == ["data_gap", "meter_jump", "stall"]
    stall = by_kind["stall"]
    assert (stall.precision, stall.precision_other) == (0.5, 1.0)
    assert stall.precision_change == pytest.approx(0.5)
    assert stall.recall_change == pytest.approx(0.5)  # 1 of 2 found, then both
    jump = by_kind["meter_jump"]  # only the second model flagged it
    assert (jump.flags, jump.flags_other, jump.labels) == (0, 1, 1)
    assert (jump.recall, jump.recall_other, jump.recall_change) == (0.0, 1.0, 1.0)
    assert (jump.precision, jump.precision_change) == (None, None)  # no flags: undefined
    gap = by_kind["data_gap"]  # no labels: recall undefined on both sides
    assert (gap.labels, gap.recall_change, gap.precision_other) == (0, None, 0.0)
    assert result.overall.recall_change == pytest.approx(1.0 - 1 / 3)
    assert (result.normal_sessions_flagged, result.normal_sessions_flagged_other) == (1, 1)
    assert result.to_json()["overall"]["kind"] == "overall"
