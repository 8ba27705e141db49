"""Flags from detector results: one ``Flag`` (``chargewatch.flags``) per flagged (row, kind)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors.base import KindResult
from chargewatch.flags import Flag

__all__ = ["flags_from_results"]


def flags_from_results(batch: SessionBatch, results: Iterable[KindResult]) -> list[Flag]:
    """One flag per flagged (row, kind), ordered by start, station, connector, kind.

    A flag without a time of its own (the detector gave ``NO_TIME``) spans its row; a score that
    is NaN or outside [0, 1] is clipped so the record stays within the contract.
    """
    flags: list[Flag] = []
    row_start, row_end = _row_span(batch)
    for result in results:
        rows = np.flatnonzero(result.flagged)
        for i in rows.tolist():
            start = int(result.start_ns[i])
            end = int(result.end_ns[i])
            start = int(row_start[i]) if start == NO_TIME else start
            end = int(row_end[i]) if end == NO_TIME else end
            score = float(result.score[i])
            reason = result.reason[i]
            flags.append(
                Flag(
                    session_id=batch.session_id[i],
                    station_id=str(batch.station_id[i]),
                    connector_id=int(batch.connector_id[i]),
                    kind=result.kind,
                    score=min(max(score, 0.0), 1.0) if math.isfinite(score) else 1.0,
                    start_ns=start,
                    end_ns=max(end, start),
                    reason=str(reason) if reason is not None else result.kind,
                )
            )
    flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    return flags


def _row_span(batch: SessionBatch) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first and last moment: its start, and its stop or last sample."""
    n = batch.n_sessions
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    last = np.maximum(batch.n_samples - 1, 0)
    last_t = batch.t_ns[np.arange(n), last] if batch.n_steps else np.zeros(n, np.int64)
    end = np.where(batch.stop_ns != NO_TIME, batch.stop_ns, np.maximum(last_t, batch.start_ns))
    return batch.start_ns, end
