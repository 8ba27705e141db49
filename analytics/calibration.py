"""Per-kind score thresholds, calibrated to a target false-alarm rate on history judged normal.

Every detector flags by its own rule (evidence over a physical threshold: a stall of so many
minutes, a register step above what the rated power allows) and scores each row in [0, 1]
(0.5 at that threshold, ``analytics.detectors.verdicts.excess_score``). Calibration puts a
score threshold on top of the rule, per kind: a row stays flagged only when its score is above
it. It can only make a kind stricter, never looser: the rule's threshold is the floor
(``RULE_FLOOR``), because the rules' thresholds come from physics and the published curves, and
nothing in history proves a session normal that the rule calls anomalous, except an operator.

Which rows are normal for a kind (``normal_rows``): those the rule does not flag and that carry
no label of the kind, plus those operators judged normal for it (``false_alarm`` verdicts, and
the flag's kind under ``wrong_kind``: ``chargewatch verdicts export --negatives``). A label
(``confirmed``, simulator ground truth) makes a row a positive, never normal, whatever else is
said of it. A flagged row that nobody judged is neither: it is left out of the count.

So the false alarms that calibration sees are the rule's flags that operators rejected. The
threshold is the lowest score, at or above the floor, that leaves at most ``target`` x (normal
rows) of them flagged (``calibrate``); the default target, 0.5 % of normal sessions per kind,
is half the detectors' quality target of 1 % for all kinds together (``models.evaluate``). It
stops at ``MAX_THRESHOLD``: a rule whose rejected flags score higher than that needs its rule
looked at, not a threshold that would silence it (the manifest then says ``target_met`` false).
Without verdicts every threshold is its floor and the version scores as the rules do.

The threshold is applied by ``apply_threshold`` (``analytics.learned.ModelDetector``): what it
suppresses keeps its score, loses its flag, times and words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from analytics.batch import NO_TIME, BoolArray, SessionBatch
from analytics.detectors.base import KindResult
from chargewatch.kinds import AnomalyKind
from models.evaluate import DEFAULT_SLACK_NS, Label

__all__ = [
    "DEFAULT_TARGET_RATE",
    "MAX_THRESHOLD",
    "RULE_FLOOR",
    "KindCalibration",
    "apply_threshold",
    "calibrate",
    "false_alarm_rate",
    "label_rows",
    "normal_rows",
]

# Half the detectors' quality target (1 % of normal sessions flagged by anything, CONTRACTS.md
# section 3, ``models.evaluate``), per kind: the kinds add up.
DEFAULT_TARGET_RATE = 0.005
# The score at each rule's own threshold: ``excess_score`` gives 0.5 at x = 1 and every rule
# flags above it (clock_fault lifts a flagged row to at least 0.5). concurrent_id_tag flags an
# unexplained overlap whatever its score (a same-site move scores 0.4 of it, a fleet card half),
# so it has no score floor: a threshold there can only drop flags all the same.
RULE_FLOOR: dict[str, float] = {kind.value: 0.5 for kind in AnomalyKind}
RULE_FLOOR[AnomalyKind.CONCURRENT_ID_TAG.value] = 0.0
# excess_score at about twice the rule's evidence (0.94 at x = 2): beyond this a threshold
# would silence the rule rather than sharpen it.
MAX_THRESHOLD = 0.95


@dataclass(frozen=True, slots=True)
class KindCalibration:
    """One kind's calibrated threshold and what it was calibrated on (training rows)."""

    kind: str
    threshold: float  # a row stays flagged when its score is above this (and the rule flags)
    floor: float  # the rule's own (RULE_FLOOR): threshold == floor leaves the rule as it is
    normal: int  # rows judged normal for the kind (module docstring)
    rejected: int  # of them, flagged by the rule (operators' negatives)
    allowed: int  # false alarms the target allows: floor(target x normal)
    false_alarms: int  # normal rows still flagged at the threshold
    positives_flagged: int  # labelled rows the rule flags
    positives_suppressed: int  # ... that the threshold unflags (the recall it costs)
    target_met: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def label_rows(
    batch: SessionBatch, labels: Sequence[Label], kinds: Sequence[str]
) -> dict[str, BoolArray]:
    """Per kind, the rows a label (or negative) of that kind names: by session id, or for a
    label outside any session, the orphan rows of its station and connector whose span overlaps
    the label's (give or take ``DEFAULT_SLACK_NS``, as ``models.evaluate`` matches)."""
    n = batch.n_sessions
    out = {kind: np.zeros(n, dtype=bool) for kind in kinds}
    if not labels or n == 0:
        return out
    sid = batch.session_id
    index: dict[str, list[int]] = {}
    for row, value in enumerate(sid.tolist()):
        if value is not None:
            index.setdefault(str(value), []).append(row)
    orphan = np.array([s is None for s in sid.tolist()], dtype=bool)
    last_t = _last_sample_ns(batch)
    for label in labels:
        if label.kind not in out:
            continue
        if label.session_id is not None:
            out[label.kind][index.get(label.session_id, [])] = True
            continue
        near = (
            orphan
            & (batch.station_id == label.station_id)
            & (batch.connector_id == label.connector_id)
            & (batch.start_ns <= label.end_ns + DEFAULT_SLACK_NS)
            & (last_t >= label.start_ns - DEFAULT_SLACK_NS)
        )
        out[label.kind] |= near
    return out


def _last_sample_ns(batch: SessionBatch) -> np.ndarray:
    if batch.n_steps == 0:
        return batch.start_ns.copy()
    last = np.maximum(batch.n_samples - 1, 0)
    t = batch.t_ns[np.arange(batch.n_sessions), last]
    return np.where(batch.n_samples > 0, t, batch.start_ns)


def normal_rows(result: KindResult, positive: BoolArray, negative: BoolArray) -> BoolArray:
    """Rows judged normal for the result's kind (module docstring): scored, not labelled, and
    not flagged by the rule or rejected by an operator."""
    scored = np.isfinite(result.score)
    return scored & ~positive & (~result.flagged | negative)


def calibrate(
    batch: SessionBatch,
    results: Sequence[KindResult],
    labels: Sequence[Label],
    negatives: Sequence[Label],
    *,
    target: float = DEFAULT_TARGET_RATE,
) -> dict[str, KindCalibration]:
    """Each kind's threshold on ``batch`` as the rules scored it (``results``: the candidate's
    detectors without thresholds), ``labels`` the positives, ``negatives`` the known normals."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target false-alarm rate {target} must lie in [0, 1)")
    kinds = [_name(r.kind) for r in results]
    positives = label_rows(batch, labels, kinds)
    rejected = label_rows(batch, negatives, kinds)
    out: dict[str, KindCalibration] = {}
    for result in results:
        kind = _name(result.kind)
        floor = RULE_FLOOR.get(kind, 0.5)
        normal = normal_rows(result, positives[kind], rejected[kind])
        alarms = np.sort(result.score[normal & result.flagged])[::-1]  # highest first
        allowed = int(np.floor(target * int(normal.sum())))
        threshold = floor
        if alarms.size > allowed:
            # the (allowed + 1)-th highest: every score above it is one of the allowed
            # (strictly above the floor, or the threshold would leave the rule as it is)
            lowest = float(np.nextafter(floor, 1.0))
            threshold = min(max(lowest, float(alarms[allowed])), MAX_THRESHOLD)
        kept = _kept(result.score, result.flagged, threshold, floor)
        positive_flagged = positives[kind] & result.flagged
        false_alarms = int(np.count_nonzero(normal & kept))
        out[kind] = KindCalibration(
            kind=kind,
            threshold=threshold,
            floor=floor,
            normal=int(normal.sum()),
            rejected=int(alarms.size),
            allowed=allowed,
            false_alarms=false_alarms,
            positives_flagged=int(positive_flagged.sum()),
            positives_suppressed=int(np.count_nonzero(positive_flagged & ~kept)),
            target_met=false_alarms <= allowed,
        )
    return out


def false_alarm_rate(
    batch: SessionBatch,
    results: Sequence[KindResult],
    labels: Sequence[Label],
    negatives: Sequence[Label],
    thresholds: dict[str, float],
) -> dict[str, dict[str, Any]]:
    """Per kind, on ``batch`` (the held-out part): normal rows, false alarms and their rate
    with the rule alone and with ``thresholds``; the rate is None without normal rows."""
    kinds = [_name(r.kind) for r in results]
    positives = label_rows(batch, labels, kinds)
    rejected = label_rows(batch, negatives, kinds)
    out: dict[str, dict[str, Any]] = {}
    for result in results:
        kind = _name(result.kind)
        normal = normal_rows(result, positives[kind], rejected[kind])
        floor = RULE_FLOOR.get(kind, 0.5)
        kept = _kept(result.score, result.flagged, thresholds.get(kind, floor), floor)
        count = int(normal.sum())
        at_floor = int(np.count_nonzero(normal & result.flagged))
        calibrated = int(np.count_nonzero(normal & kept))
        out[kind] = {
            "normal": count,
            "false_alarms_rule": at_floor,
            "false_alarms": calibrated,
            "rate_rule": at_floor / count if count else None,
            "rate": calibrated / count if count else None,
        }
    return out


def _name(kind: str) -> str:
    """A kind as plain text (a detector may give its ``AnomalyKind`` member)."""
    return str(getattr(kind, "value", kind))


def _kept(score: np.ndarray, flagged: BoolArray, threshold: float, floor: float) -> BoolArray:
    if threshold <= floor:
        return flagged
    with np.errstate(invalid="ignore"):
        return flagged & (score > threshold)


def apply_threshold(result: KindResult, threshold: float, floor: float) -> KindResult:
    """``result`` with the rows at or under ``threshold`` unflagged (a threshold at the floor
    changes nothing); an unflagged row keeps its score and has no times or words."""
    kept = _kept(result.score, result.flagged, threshold, floor)
    dropped = result.flagged & ~kept
    if not dropped.any():
        return result
    reason = result.reason.copy()
    reason[dropped] = None
    return KindResult(
        kind=result.kind,
        score=result.score,
        flagged=kept,
        start_ns=np.where(dropped, NO_TIME, result.start_ns).astype(np.int64),
        end_ns=np.where(dropped, NO_TIME, result.end_ns).astype(np.int64),
        reason=reason,
    )
