"""Charging that stops mid-session (``stall``) with nothing to explain it.

What must not be flagged is most of the work here: a car that is full (SuspendedEV, near-zero
power, idle time plugged in), and power held down by a lower ``power_offered_w``.
"""

from __future__ import annotations

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.prepared import Prepared, prepared
from analytics.detectors.reductions import forward_fill, nan_argmax, pick, runs, trapezoid_wh
from analytics.detectors.verdicts import (
    MIN_POWER_READINGS,
    Verdict,
    fmt_kw,
    fmt_kwh,
    fmt_min,
    judge_candidates,
    not_scored_reason,
)
from chargewatch.kinds import AnomalyKind

# IEC 61851: below 6 A on one phase (about 1.4 kW) a car is not expected to charge at all, so an
# offer under that explains zero power.
MIN_CHARGE_OFFER_W = 1400.0


def _near_zero_w(prep: Prepared, floor_w: float, fraction: float) -> FloatArray:
    return np.asarray(np.maximum(floor_w, fraction * np.nan_to_num(prep.peak_power_w)))


class Stall(BaseDetector):
    """Power near zero and the register flat for 10 min or more mid-session, after charging had
    begun and before it resumes (so the car was not full), with neither a lower offered power
    nor the car's own pause (SuspendedEV) to explain it. Learns nothing: the rules are physical.

    Parameters
    ----------
    min_duration_s : float, default 600.0
        How long power must stay near zero: 10 min, CONTRACTS.md section 3.
    near_zero_w : float, default 200.0
        Power at or below this is "near zero": a connector at rest shows 0 W plus standby and
        noise.
    near_zero_fraction : float, default 0.02
        ... or at or below 2 % of the session's peak, whichever is higher (a sensor offset).
    resume_fraction : float, default 0.3
        Charging resumes when power is back to 30 % of the peak before the stall ...
    min_resume_wh : float, default 300.0
        ... and delivers this much after it: a few minutes' worth of the slowest charge, a
        charge that went on, not a blip.
    """

    kind = AnomalyKind.STALL

    def __init__(
        self,
        *,
        min_duration_s: float = 600.0,
        near_zero_w: float = 200.0,
        near_zero_fraction: float = 0.02,
        resume_fraction: float = 0.3,
        min_resume_wh: float = 300.0,
    ) -> None:
        self.min_duration_s = min_duration_s
        self.near_zero_w = near_zero_w
        self.near_zero_fraction = near_zero_fraction
        self.resume_fraction = resume_fraction
        self.min_resume_wh = min_resume_wh

    def _idle(self, prep: Prepared) -> tuple[BoolArray, BoolArray]:
        """Steps at near-zero power with a flat register and nothing explaining it."""
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)[:, None]
        low = p <= zero_w
        # an offer below what the car needs to charge at all (not the station's rating: a car
        # drawing 3.7 kW from a 150 kW unit is not held down by a 7 kW offer)
        need_w = np.maximum(MIN_CHARGE_OFFER_W, 0.05 * np.nan_to_num(prep.peak_power_w))
        offered_low = prep.offered_w < need_w[:, None]
        status = prep.status
        explained = (
            offered_low
            | (np.isnan(prep.offered_w) & (status == StatusCode.SUSPENDED_EVSE))
            | (status == StatusCode.SUSPENDED_EV)
            | (status == StatusCode.FAULTED)
        )
        # a single missing power reading does not break a stretch at rest (the register says)
        still = (low | np.isnan(p)) & ~explained & prep.valid
        flat = ~(prep.de_wh > prep.resolution_wh[:, None] + zero_w * prep.dt_s / 3600.0)
        return np.asarray(still[:, 1:] & still[:, :-1] & flat), np.asarray(low)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        prep = prepared(batch, now_ns)
        idle, _ = self._idle(prep)
        # only a rest after charging had begun and before it resumed can be a stall (the
        # judgement's conditions, loosened): not the readings before power first flows or
        # after it last does, nor any in a row that never charged (an idle connector's)
        rows = np.flatnonzero(idle.any(axis=1)) if idle.size else np.zeros(0, np.int64)
        if rows.size:
            p = prep.power_w[rows]
            began = np.argmax(p > MIN_CHARGE_OFFER_W, axis=1)
            flowing = p >= self.resume_fraction * MIN_CHARGE_OFFER_W
            resumes = p.shape[1] - 1 - np.argmax(flowing[:, ::-1], axis=1)
            step = np.arange(p.shape[1] - 1)
            idle[rows] &= (
                (step >= began[:, None])
                & (step + 1 <= resumes[:, None])
                & (prep.peak_power_w[rows] > MIN_CHARGE_OFFER_W)[:, None]
            )
        not_scored = not_scored_reason(prep, MIN_POWER_READINGS, "power")
        return judge_candidates(self.kind, prep, idle, self._judge, not_scored)

    def _judge(self, prep: Prepared) -> Verdict:
        n, m = prep.power_w.shape
        p = prep.power_w
        zero_w = _near_zero_w(prep, self.near_zero_w, self.near_zero_fraction)[:, None]
        idle, low = self._idle(prep)
        run = runs(idle, prep.dt_s)

        step_wh = np.where(low[:, 1:] & low[:, :-1], 0.0, trapezoid_wh(p, prep.dt_s))
        step_wh = np.nan_to_num(np.maximum(step_wh, 0.0))
        cum_wh = np.cumsum(step_wh, axis=1)
        total_wh = cum_wh[:, -1:] if m > 1 else np.zeros((n, 1))
        after_wh = total_wh - cum_wh  # energy after each step
        first = np.maximum(run.first, 0)
        p_filled = np.nan_to_num(p, nan=0.0)
        peak_so_far = np.maximum.accumulate(p_filled, axis=1)
        peak_before = np.take_along_axis(peak_so_far[:, :-1], first, axis=1)
        peak_after = np.maximum.accumulate(p_filled[:, ::-1], axis=1)[:, ::-1]
        peak_after = np.concatenate((peak_after[:, 2:], np.zeros((n, min(2, m)))), axis=1)
        peak_after = peak_after[:, : max(m - 1, 0)]
        charged_before = peak_before > np.maximum(MIN_CHARGE_OFFER_W, 2.0 * zero_w)
        resumed = (peak_after >= self.resume_fraction * peak_before) & (
            after_wh >= self.min_resume_wh
        )
        candidate = idle & charged_before & resumed
        # the run's span between zero readings is about one interval shorter than the stall;
        # half of that is added back (a conservative estimate of the true length)
        duration = run.total + 0.5 * np.nan_to_num(prep.interval_s)[:, None]
        x_all = np.where(candidate, duration / self.min_duration_s, 0.0)
        at = nan_argmax(x_all)
        x = pick(x_all, at)
        begin = pick(first, at).astype(np.int64)
        start = pick(prep.t_ns, begin).astype(np.int64)
        end = pick(prep.t_ns, at + 1).astype(np.int64)
        dur = pick(duration, at)
        register = pick(prep.energy_ff_wh, begin)
        prior = pick(peak_before, at)
        after = pick(peak_after, at)
        soc = pick(forward_fill(prep.soc_pct), begin)

        def describe(rows: IntArray) -> list[str]:
            out = []
            for i in rows:
                soc_text = f" at {soc[i]:.0f} % SoC" if not np.isnan(soc[i]) else ""
                reg = (
                    f", register flat at {fmt_kwh(register[i])}"
                    if register[i] == register[i]
                    else ""
                )
                out.append(
                    f"no power for {fmt_min(dur[i])}{soc_text}{reg}, after charging at up to "
                    f"{fmt_kw(prior[i])} and before resuming at {fmt_kw(after[i])}; "
                    f"no lower offered power"
                )
            return out

        return Verdict(x=np.nan_to_num(x), start_ns=start, end_ns=end, describe=describe)
