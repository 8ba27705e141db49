"""Two evaluations of the same labeled data side by side: what changed per kind.

``chargewatch evaluate --compare V1 V2`` judges one data set with two models and measures both
against the same labels (``models.evaluate``); this is the difference, kind by kind and
overall: each model's precision, recall and F1 and the second's change from the first (in
fractions: +0.02 is two percentage points better). A kind only one of them flagged is still a
row (the other made no flag of it); a change is None where either side is undefined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.evaluate import Evaluation, KindScore

__all__ = ["Comparison", "KindChange", "compare"]


@dataclass(frozen=True, slots=True)
class KindChange:
    """One kind measured twice: ``precision`` is the first model's, ``precision_other`` the
    second's, ``precision_change`` the second less the first."""

    kind: str
    labels: int
    flags: int
    flags_other: int
    precision: float | None
    precision_other: float | None
    precision_change: float | None
    recall: float | None
    recall_other: float | None
    recall_change: float | None
    f1: float | None
    f1_other: float | None
    f1_change: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    kinds: list[KindChange]
    overall: KindChange
    normal_sessions_flagged: int
    normal_sessions_flagged_other: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _change(kind: str, a: KindScore | None, b: KindScore | None) -> KindChange:
    def get(score: KindScore | None, name: str) -> float | None:
        value: float | None = None if score is None else getattr(score, name)
        return value

    labels = max(a.labels if a is not None else 0, b.labels if b is not None else 0)
    return KindChange(
        kind=kind,
        labels=labels,
        flags=0 if a is None else a.flags,
        flags_other=0 if b is None else b.flags,
        precision=get(a, "precision"),
        precision_other=get(b, "precision"),
        precision_change=_minus(get(b, "precision"), get(a, "precision")),
        recall=get(a, "recall"),
        recall_other=get(b, "recall"),
        recall_change=_minus(get(b, "recall"), get(a, "recall")),
        f1=get(a, "f1"),
        f1_other=get(b, "f1"),
        f1_change=_minus(get(b, "f1"), get(a, "f1")),
    )


def compare(first: Evaluation, second: Evaluation) -> Comparison:
    """``second`` against ``first``, per kind (every kind either has) and overall."""
    a = {score.kind: score for score in first.kinds}
    b = {score.kind: score for score in second.kinds}
    return Comparison(
        kinds=[_change(kind, a.get(kind), b.get(kind)) for kind in sorted(set(a) | set(b))],
        overall=_change("overall", first.overall, second.overall),
        normal_sessions_flagged=first.normal_sessions_flagged,
        normal_sessions_flagged_other=second.normal_sessions_flagged,
    )
