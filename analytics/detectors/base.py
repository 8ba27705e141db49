"""What every detector is and returns.

A detector scores every row of a ``SessionBatch`` for one anomaly kind (CONTRACTS.md section 3)
at once. Conventions (DESIGN.md, Detectors; scikit-learn's estimators):

- ``__init__`` stores parameters only; ``fit(batch)`` learns from history and returns ``self``;
  learned attributes end in ``_``; a detector that needs no history learns nothing in ``fit``.
- ``score(batch, now_ns=...)`` never reads the clock: ``now_ns`` is the time the data is
  complete up to (a session still open at ``now_ns`` may only be partly judged).
- Scores are in [0, 1], higher is more abnormal; NaN means "not scored", with the reason why in
  ``reason`` (a session with one reading cannot show a stall).
- ``per_row``: a row's verdict depends on that row alone (and what ``fit`` learned), so a batch
  may be scored a block of rows at a time; False for a kind that compares rows with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, ObjectArray, SessionBatch


@dataclass(frozen=True, slots=True, eq=False)
class KindResult:
    """One detector's verdict on every row of a batch, all arrays of shape ``(n,)``."""

    kind: str
    score: FloatArray  # [0, 1], NaN when not scored
    flagged: BoolArray
    start_ns: IntArray  # where the anomaly shows; NO_TIME when not flagged
    end_ns: IntArray
    reason: (
        ObjectArray  # evidence in words (with the numbers) when flagged; why not scored; or None
    )

    @classmethod
    def concatenate(cls, parts: list[KindResult]) -> KindResult:
        """One result from the results of consecutive blocks of rows (all of one kind)."""
        return cls(
            kind=parts[0].kind,
            score=np.concatenate([p.score for p in parts]),
            flagged=np.concatenate([p.flagged for p in parts]),
            start_ns=np.concatenate([p.start_ns for p in parts]),
            end_ns=np.concatenate([p.end_ns for p in parts]),
            reason=np.concatenate([p.reason for p in parts]),
        )

    @classmethod
    def empty(cls, kind: str, n: int) -> KindResult:
        """Nothing flagged, score 0 for all ``n`` rows."""
        return cls(
            kind=kind,
            score=np.zeros(n),
            flagged=np.zeros(n, dtype=bool),
            start_ns=np.full(n, NO_TIME, dtype=np.int64),
            end_ns=np.full(n, NO_TIME, dtype=np.int64),
            reason=np.full(n, None, dtype=object),
        )


class Detector(Protocol):
    """One anomaly kind's detector."""

    kind: str
    per_row: bool

    def fit(self, batch: SessionBatch) -> Self: ...

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult: ...
