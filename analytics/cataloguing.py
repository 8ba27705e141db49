"""Catalogue rows (``chargewatch.catalog``) from a judged batch: its profiles and every kind's
verdict, one ``SessionRow`` per session (orphan segments have no id and are not catalogued)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors.base import KindResult
from analytics.flags import flags_from_results
from analytics.profiles import Profiles
from chargewatch.catalog import KindVerdict, SessionRow

__all__ = ["catalog_rows"]


def catalog_rows(
    batch: SessionBatch,
    judged: Profiles,
    results: Sequence[KindResult],
    *,
    judged_at_ns: int,
) -> list[SessionRow]:
    """One row per session of ``batch`` (``judged`` are its profiles, ``results`` the verdicts
    on its rows), stamped ``judged_at_ns``. A flag's range is the one its flag record has
    (``analytics.flags``: a detector's missing time becomes the row's span)."""
    spans = {
        (flag.session_id, flag.kind): flag
        for flag in flags_from_results(batch, results)
        if flag.session_id is not None
    }
    rows: list[SessionRow] = []
    for i in np.flatnonzero([sid is not None for sid in batch.session_id]).tolist():
        session_id = str(batch.session_id[i])
        verdicts = []
        for result in results:
            flag = spans.get((session_id, result.kind))
            score = float(result.score[i])
            reason = result.reason[i]
            verdicts.append(
                KindVerdict(
                    kind=result.kind,
                    score=min(max(score, 0.0), 1.0) if math.isfinite(score) else None,
                    flagged=flag is not None,
                    start_ns=None if flag is None else flag.start_ns,
                    end_ns=None if flag is None else flag.end_ns,
                    reason=flag.reason if flag is not None else _text(reason),
                )
            )
        stop = int(batch.stop_ns[i])
        notes = str(judged.billing_notes[i])
        rows.append(
            SessionRow(
                session_id=session_id,
                station_id=str(batch.station_id[i]),
                connector_id=int(batch.connector_id[i]),
                start_ns=int(batch.start_ns[i]),
                stop_ns=None if stop == NO_TIME else stop,
                id_pseudonym=_text(batch.id_pseudonym[i]),
                energy_register_wh=_number(judged.energy_register_wh[i]),
                energy_power_wh=_number(judged.energy_power_wh[i]),
                billing_confidence=_number(judged.billing_confidence[i]),  # None: unverifiable
                billing_notes=tuple(notes.split("; ")) if notes else (),
                duration_s=float(judged.duration_s[i]),
                flagged_kinds=tuple(v.kind for v in verdicts if v.flagged),
                updated_at_ns=judged_at_ns,
                verdicts=tuple(verdicts),
            )
        )
    return rows


def _number(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
