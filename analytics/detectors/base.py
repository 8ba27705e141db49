"""What every detector is and returns.

A detector scores every row of a ``SessionBatch`` for one anomaly kind (CONTRACTS.md section 3)
at once. Conventions (DESIGN.md, Detectors; scikit-learn's estimators), held by ``BaseDetector``:

- ``__init__`` takes keyword-only parameters and stores each under its own name, nothing else;
  ``get_params()`` reads them back from its signature (for a manifest, or to make a copy).
- ``fit(batch)`` learns from history and returns ``self``; learned attributes end in ``_``.
  Every detector must be fitted before it scores, even one that learns nothing (its ``fit``
  only records that it was): ``score`` on an unfitted detector raises ``NotFittedError``
  instead of quietly fitting on the batch it is asked to judge. A caller that wants a batch
  judged against itself says so (``fit_detectors(batch)``).
- ``score(batch, now_ns=...)`` never reads the clock: ``now_ns`` is the time the data is
  complete up to (a session still open at ``now_ns`` may only be partly judged).
- Scores are in [0, 1], higher is more abnormal; NaN means "not scored", with the reason why in
  ``reason`` (a session with one reading cannot show a stall).
- ``per_row``: a row's verdict depends on that row alone (and what ``fit`` learned), so a batch
  may be scored a block of rows at a time; False for a kind that compares rows with each other.

The pipeline needs only the ``Detector`` protocol (kind, per_row, fit, score), so a test may
hand it a stand-in that is no ``BaseDetector``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, ObjectArray, SessionBatch
from chargewatch.errors import NotFittedError
from chargewatch.kinds import AnomalyKind


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

    def with_rows(self, rows: IntArray, part: KindResult) -> KindResult:
        """This result with ``rows`` replaced by ``part``'s (one result per row of ``rows``)."""
        fields = {}
        for name in ("score", "flagged", "start_ns", "end_ns", "reason"):
            value = getattr(self, name).copy()
            value[rows] = getattr(part, name)
            fields[name] = value
        return KindResult(kind=self.kind, **fields)

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
    """What the pipeline needs of a detector: every ``BaseDetector`` is one."""

    @property
    def kind(self) -> str: ...

    @property
    def per_row(self) -> bool: ...

    def fit(self, batch: SessionBatch) -> Self: ...

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult: ...


class BaseDetector(ABC):
    """The base of every detector (after scikit-learn's ``BaseEstimator``).

    A subclass sets ``kind`` (and ``per_row`` when rows are judged together), takes keyword-only
    parameters in ``__init__`` stored under their own names, learns in ``fit`` if it learns
    anything (ending with ``return super().fit(batch)``), and begins ``score`` with
    ``self.check_is_fitted()``.
    """

    kind: ClassVar[AnomalyKind]
    per_row: ClassVar[bool] = True

    @classmethod
    def _parameters(cls) -> list[inspect.Parameter]:
        """The parameters of ``__init__`` (keyword-only, or it is a mistake)."""
        if cls.__init__ is object.__init__:
            return []
        found = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        positional = [p.name for p in found if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        if positional:
            raise TypeError(f"{cls.__name__}: parameters must be keyword-only: {positional}")
        return found

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name, as given to ``__init__`` (``cls(**d.get_params())`` makes
        an unfitted copy)."""
        return {p.name: getattr(self, p.name) for p in self._parameters()}

    def __repr__(self) -> str:
        changed = [
            f"{p.name}={getattr(self, p.name)!r}"
            for p in self._parameters()
            if getattr(self, p.name) is not p.default and getattr(self, p.name) != p.default
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def fit(self, batch: SessionBatch) -> Self:
        """Learn from ``batch`` (history) and return ``self``. Here only what every detector
        learns: that it was fitted, on how many rows (``n_fit_rows_``)."""
        self.n_fit_rows_ = batch.n_sessions
        return self

    def check_is_fitted(self) -> None:
        """Raise ``NotFittedError`` unless ``fit`` has run."""
        if not hasattr(self, "n_fit_rows_"):
            raise NotFittedError(
                f"{type(self).__name__} ({self.kind}) is not fitted: call fit(history) before"
                " score (or fit_detectors(batch) to judge a batch against itself)"
            )

    @abstractmethod
    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        """Every row of ``batch`` judged for ``kind``, with the data complete up to ``now_ns``."""
