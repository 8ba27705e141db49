"""Vectorized detectors, one module per family of anomaly kinds (CONTRACTS.md section 3).

- ``meter``: ``MeterStuck``, ``MeterBackwards``, ``MeterJump``, ``MeterMismatch``
- ``timing``: ``DataGap``, ``ClockFault``
- ``power``: ``Stall``, ``EarlyTaper`` (with its learned reference band)
- ``identity``: ``UnauthorizedEnergy``, ``ConcurrentIdTag``

``default_detectors()`` gives one of each with default parameters; ``detect`` scores a batch.
"""

from __future__ import annotations

from analytics.batch import SessionBatch
from analytics.detectors.base import Detector, KindResult
from analytics.detectors.identity import ConcurrentIdTag, UnauthorizedEnergy
from analytics.detectors.meter import MeterBackwards, MeterJump, MeterMismatch, MeterStuck
from analytics.detectors.power import EarlyTaper, Stall
from analytics.detectors.timing import ClockFault, DataGap

__all__ = [
    "ClockFault",
    "ConcurrentIdTag",
    "DataGap",
    "Detector",
    "EarlyTaper",
    "KindResult",
    "MeterBackwards",
    "MeterJump",
    "MeterMismatch",
    "MeterStuck",
    "Stall",
    "UnauthorizedEnergy",
    "default_detectors",
    "detect",
]


def default_detectors() -> list[Detector]:
    """One unfitted detector per anomaly kind, in the order of CONTRACTS.md section 3."""
    return [
        Stall(),
        EarlyTaper(),
        MeterStuck(),
        MeterBackwards(),
        MeterJump(),
        MeterMismatch(),
        DataGap(),
        ClockFault(),
        UnauthorizedEnergy(),
        ConcurrentIdTag(),
    ]


def detect(
    batch: SessionBatch, *, now_ns: int, detectors: list[Detector] | None = None
) -> list[KindResult]:
    """Score every row of ``batch`` for every kind. ``detectors`` must already be fitted; when
    None, ``default_detectors()`` are fitted on ``batch`` itself."""
    if detectors is None:
        detectors = [d.fit(batch) for d in default_detectors()]
    return [d.score(batch, now_ns=now_ns) for d in detectors]
