"""From evidence to a detector's result: scores, verdicts over some rows, the words of the evidence.

A detector measures its evidence as ``x`` (1 at its threshold); ``excess_score`` maps it to
[0, 1] and a row is flagged above the threshold. Rows without enough data get a reason instead
of a score (``not_scored_reason``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch
from analytics.detectors.base import KindResult
from analytics.detectors.prepared import (
    NS_PER_S,
    POWER_READINGS,
    Prepared,
    stop_tolerance_s,
    take_rows,
)


def excess_score(x: FloatArray, *, steepness: float = 4.0) -> FloatArray:
    """Map evidence over threshold (``x``, 1 at the threshold) to [0, 1]: 0.5 at the threshold,
    rising smoothly (0.94 at twice it); NaN stays NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        xk = np.power(np.maximum(x, 0.0), steepness)
        out = xk / (1.0 + xk)
    return np.asarray(np.where(np.isinf(xk), 1.0, out))


def fmt_kwh(wh: float) -> str:
    return f"{wh / 1000.0:.3f} kWh"


def fmt_kw(w: float) -> str:
    return f"{w / 1000.0:.1f} kW"


def fmt_min(s: float) -> str:
    return f"{s / 60.0:.0f} min" if s >= 90 else f"{s:.0f} s"


# The fewest readings a kind can judge: one step between two of them (a register step, a gap).
MIN_READINGS = 2


# A change of power that lasts (a stall, a taper) needs one reading more: one before the change
# and two that show it held.
MIN_POWER_READINGS = POWER_READINGS


def not_scored_reason(prep: Prepared, needed: int = MIN_READINGS, column: str = "") -> np.ndarray:
    """Why a row cannot be judged for lack of readings (of ``column``: "energy" or "power"
    when given), or None when it has enough."""
    reason = np.full(prep.count.shape[0], None, dtype=object)
    if column == "energy":
        reason[prep.n_energy < needed] = f"fewer than {needed} register readings"
    elif column == "power":
        has_power = ~np.isnan(prep.power_w)
        reason[has_power.sum(axis=1) < needed] = f"fewer than {needed} power readings"
    reason[prep.count == 0] = "no readings with a trustworthy time"
    reason[(prep.count > 0) & (prep.count < needed)] = (
        f"fewer than {needed} readings with a trustworthy time"
    )
    return reason


CLOCK_UNTRUSTED = (
    "the charger's clock is wrong in this session (clock_fault): how long things lasted"
    " cannot be told from its times"
)


def clock_untrusted(batch: SessionBatch, prep: Prepared) -> BoolArray:
    """Rows whose clock is shown wrong: readings set aside for their time, or a stop stamped
    before the start (``clock_fault``'s evidence). CONTRACTS.md section 3: a clock fault makes
    the readings' times untrustworthy, so kinds that judge a duration, a rate or an integral
    over time (stall, early_taper, meter_jump, meter_mismatch, meter_stuck, data_gap) do not
    judge such a row: a clock stepped back hours makes the readings after it look like the
    session's end (a false stall, a register against a shorter integral: blind fleet seed 23,
    TX-0074-49567; the register's rise over the readings set aside as a jump; a gap before the
    stop). ``clock_fault`` speaks for the row."""
    has_both = (batch.start_ns != NO_TIME) & (batch.stop_ns != NO_TIME)
    back_s = (batch.start_ns - batch.stop_ns) / NS_PER_S
    stop_first = has_both & (back_s > stop_tolerance_s(batch, prep))
    return np.asarray((prep.clock.n_bad > 0) | stop_first)


def build_result(
    kind: str,
    score: FloatArray,
    flagged: BoolArray,
    start_ns: IntArray,
    end_ns: IntArray,
    describe: Callable[[IntArray], list[str]],
    not_scored: np.ndarray,
) -> KindResult:
    """Assemble a ``KindResult``: flagged rows get ``describe``'s evidence (formatted for the
    flagged rows only, a small share of the batch), unscored rows their ``not_scored`` reason."""
    score = np.clip(score, 0.0, 1.0)
    unscored = np.isnan(score) | ~is_none(not_scored)
    score = np.where(unscored, np.nan, score)
    flagged = flagged & ~unscored
    reason = np.full(score.shape[0], None, dtype=object)
    reason[unscored] = not_scored[unscored]
    rows = np.flatnonzero(flagged)
    if rows.size:
        texts = np.empty(rows.size, dtype=object)
        texts[:] = describe(rows)
        reason[rows] = texts
    reason[unscored & is_none(reason)] = "not enough data to judge"
    return KindResult(
        kind=kind,
        score=score,
        flagged=flagged,
        start_ns=np.where(flagged, start_ns, NO_TIME).astype(np.int64),
        end_ns=np.where(flagged, end_ns, NO_TIME).astype(np.int64),
        reason=reason,
    )


_NONE = np.array(None, dtype=object)


def is_none(values: np.ndarray) -> BoolArray:
    """Element-wise ``is None`` of an object array, without a Python loop."""
    return np.asarray(np.equal(values, _NONE), dtype=bool)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A detector's evidence for some rows: x (1 at the threshold), where, and the words."""

    x: FloatArray
    start_ns: IntArray
    end_ns: IntArray
    describe: Callable[[IntArray], list[str]]

    @classmethod
    def nothing(cls, n: int) -> Verdict:
        """No evidence on any of ``n`` rows."""
        return cls(np.zeros(n), np.full(n, NO_TIME), np.full(n, NO_TIME), lambda rows: [])


def scatter_verdict(n: int, rows: IntArray, part: Verdict) -> Verdict:
    """A verdict over all ``n`` rows from one over ``rows`` (the others: x 0, nowhere)."""
    x = np.zeros(n)
    start = np.full(n, NO_TIME, dtype=np.int64)
    end = np.full(n, NO_TIME, dtype=np.int64)
    x[rows], start[rows], end[rows] = part.x, part.start_ns, part.end_ns
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)

    def describe(which: IntArray) -> list[str]:
        return part.describe(position[which])

    return Verdict(x=x, start_ns=start, end_ns=end, describe=describe)


def judge_candidates(
    kind: str,
    prep: Prepared,
    candidates: BoolArray,
    judge: Callable[[Prepared], Verdict],
    not_scored: np.ndarray,
) -> KindResult:
    """Run the costly ``judge`` only on rows with a candidate sample (``candidates`` is per
    sample), score the rest 0, and build the result: the shape several detectors share."""
    n = prep.power_w.shape[0]
    rows = np.flatnonzero(candidates.any(axis=1)) if candidates.size else np.zeros(0, np.int64)
    return verdict_result(kind, scatter_verdict(n, rows, judge(take_rows(prep, rows))), not_scored)


def verdict_result(
    kind: str, verdict: Verdict, not_scored: np.ndarray, *, at_least: bool = False
) -> KindResult:
    """The result of a verdict over all rows: flagged over the threshold (x > 1), or at it
    (``at_least``: x >= 1, for a threshold the contract states as "or more")."""
    return build_result(
        kind,
        excess_score(verdict.x),
        verdict.x >= 1.0 if at_least else verdict.x > 1.0,
        verdict.start_ns,
        verdict.end_ns,
        verdict.describe,
        not_scored,
    )
