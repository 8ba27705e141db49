"""Vectorized detectors, one per anomaly kind of CONTRACTS.md section 3, each a ``BaseDetector``.

- ``stall``: ``Stall``; ``early_taper``: ``EarlyTaper`` (with its learned reference band, and
  the floor of published curves in ``dc_curve_floor.json``, made by ``curve_floor``)
- ``meter``: ``MeterStuck``, ``MeterBackwards``, ``MeterJump``, ``MeterMismatch``
- ``timing``: ``DataGap``, ``ClockFault``
- ``identity``: ``UnauthorizedEnergy``, ``ConcurrentIdTag``
- ``battery``: ``SocInconsistent`` (with the plausible battery sizes of published vehicles in
  ``battery_capacity.json``, made by ``battery_capacity``)
- shared: ``prepared`` (the cleaned view), ``reductions``, ``ratings``, ``verdicts``, ``energy``
  (the energy between readings that register and power both allow); ``base``
  (``BaseDetector``, ``KindResult``)

``DETECTORS`` maps each ``AnomalyKind`` to its detector class; nothing else dispatches on the
kind. ``default_detectors()`` gives one of each, unfitted; ``fit_detectors(history)`` fits
them; ``detect`` scores a batch with fitted detectors.

Adding a kind touches four places: its member in ``chargewatch/kinds.py`` (in the order of
CONTRACTS.md section 3, with the contract's row), a detector class deriving from
``BaseDetector`` with ``kind`` set to it (in a module of its own or beside its family here), its
line in ``DETECTORS``, and the simulator's injector for it (``simulator/``), so that the kind can
be measured. ``tests/analytics/detectors/test_registry.py`` fails until the registry covers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analytics.batch import IntArray, SessionBatch
from analytics.detectors.base import BaseDetector, Detector, KindResult
from analytics.detectors.battery import SocInconsistent
from analytics.detectors.early_taper import EarlyTaper
from analytics.detectors.identity import ConcurrentIdTag, UnauthorizedEnergy
from analytics.detectors.meter import MeterBackwards, MeterJump, MeterMismatch, MeterStuck
from analytics.detectors.prepared import BLOCK_CELLS, COMPACT_BELOW_FILL, row_blocks
from analytics.detectors.stall import Stall
from analytics.detectors.timing import ClockFault, DataGap
from chargewatch.kinds import AnomalyKind

__all__ = [
    "BLOCK_CELLS",
    "COMPACT_BELOW_FILL",
    "DETECTORS",
    "BaseDetector",
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
    "SocInconsistent",
    "Stall",
    "UnauthorizedEnergy",
    "default_detectors",
    "detect",
    "fit_detectors",
]

# One detector class per kind, in the order of CONTRACTS.md section 3 (results and flags of a
# batch come in this order).
DETECTORS: dict[AnomalyKind, type[BaseDetector]] = {
    AnomalyKind.STALL: Stall,
    AnomalyKind.EARLY_TAPER: EarlyTaper,
    AnomalyKind.METER_STUCK: MeterStuck,
    AnomalyKind.METER_BACKWARDS: MeterBackwards,
    AnomalyKind.METER_JUMP: MeterJump,
    AnomalyKind.METER_MISMATCH: MeterMismatch,
    AnomalyKind.DATA_GAP: DataGap,
    AnomalyKind.CLOCK_FAULT: ClockFault,
    AnomalyKind.UNAUTHORIZED_ENERGY: UnauthorizedEnergy,
    AnomalyKind.SOC_INCONSISTENT: SocInconsistent,
    AnomalyKind.CONCURRENT_ID_TAG: ConcurrentIdTag,
}


def default_detectors() -> list[BaseDetector]:
    """One unfitted detector per anomaly kind, default parameters, in ``DETECTORS`` order."""
    return [cls() for cls in DETECTORS.values()]


def fit_detectors(
    history: SessionBatch, detectors: Sequence[Detector] | None = None
) -> list[Detector]:
    """``detectors`` (``default_detectors()`` when None) fitted on ``history``, in order.

    To judge a batch against itself, pass it as ``history``: the one way the detectors learn
    from what they score, and it is said where it happens.
    """
    chosen: Sequence[Detector] = detectors if detectors is not None else default_detectors()
    return [d.fit(history) for d in chosen]


def detect(
    batch: SessionBatch,
    *,
    now_ns: int,
    detectors: Sequence[Detector],
    block_cells: int = BLOCK_CELLS,
) -> list[KindResult]:
    """Score every row of ``batch`` for every kind of ``detectors``, which must be fitted
    (``NotFittedError`` otherwise; ``fit_detectors``). Results are in the order of
    ``detectors``; per-row detectors run a block of rows at a time (the same results: a row's
    verdict depends on that row alone, not on its neighbours nor on the padding after it)."""
    per_row = [d for d in detectors if d.per_row]
    n = batch.n_sessions
    parts: dict[int, list[KindResult]] = {id(d): [] for d in per_row}
    order: IntArray | None = None
    if per_row and n:
        blocks, order = row_blocks(batch, block_cells)
        for block in blocks:
            for d in per_row:
                parts[id(d)].append(d.score(block, now_ns=now_ns))
    results = []
    for d in detectors:
        if d.per_row and parts[id(d)]:
            joined = KindResult.concatenate(parts[id(d)])
            results.append(joined if order is None else _in_row_order(joined, order))
        else:
            results.append(d.score(batch, now_ns=now_ns))
    return results


def _in_row_order(result: KindResult, order: IntArray) -> KindResult:
    """``result`` of rows taken in ``order``, put back in the batch's row order."""
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    return KindResult(
        kind=result.kind,
        score=result.score[back],
        flagged=result.flagged[back],
        start_ns=result.start_ns[back],
        end_ns=result.end_ns[back],
        reason=result.reason[back],
    )
