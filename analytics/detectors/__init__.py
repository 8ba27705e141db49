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
from analytics.detectors.early_taper import EarlyTaper
from analytics.detectors.identity import ConcurrentIdTag, UnauthorizedEnergy
from analytics.detectors.meter import MeterBackwards, MeterJump, MeterMismatch, MeterStuck
from analytics.detectors.stall import Stall
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


# Rows are scored in blocks of about this many padded samples: each temporary (n, m) array of a
# block is a few MB, so it stays in cache and the allocator reuses it, where arrays of a whole
# batch (tens of MB each) are fresh memory, page-faulted in, every time.
BLOCK_CELLS = 1 << 19


def detect(
    batch: SessionBatch,
    *,
    now_ns: int,
    detectors: list[Detector] | None = None,
    block_cells: int = BLOCK_CELLS,
) -> list[KindResult]:
    """Score every row of ``batch`` for every kind. ``detectors`` must already be fitted; when
    None, ``default_detectors()`` are fitted on ``batch`` itself. Results are in the order of
    ``detectors``; per-row detectors run a block of rows at a time (the same results)."""
    if detectors is None:
        detectors = [d.fit(batch) for d in default_detectors()]
    per_row = [d for d in detectors if d.per_row]
    n = batch.n_sessions
    step = max(1, block_cells // max(batch.n_steps, 1))
    parts: dict[int, list[KindResult]] = {id(d): [] for d in per_row}
    for start in range(0, n, step) if n > step else ():
        block = batch.rows(start, min(start + step, n))
        for d in per_row:
            parts[id(d)].append(d.score(block, now_ns=now_ns))
    results = []
    for d in detectors:
        if d.per_row and parts[id(d)]:
            results.append(KindResult.concatenate(parts[id(d)]))
        else:
            results.append(d.score(batch, now_ns=now_ns))
    return results
