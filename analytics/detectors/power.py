"""Charging that stops (stall) or slows down too early (early_taper) with nothing to explain it.

What must not be flagged is most of the work here: a car's own taper near full, a car that is
full (SuspendedEV, near-zero power, idle time plugged in), and power held down by a lower
``power_offered_w``.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors._arrays import (
    Prepared,
    Runs,
    StationRatings,
    Verdict,
    build_result,
    excess_score,
    fmt_kw,
    fmt_kwh,
    fmt_min,
    forward_fill,
    is_none,
    judge_candidates,
    nan_argmax,
    not_scored_reason,
    pick,
    prepared,
    rated_power_w,
    runs,
    trapezoid_wh,
)
from analytics.detectors.base import KindResult

# IEC 61851: below 6 A on one phase (about 1.4 kW) a car is not expected to charge at all, so an
# offer under that explains zero power.
MIN_CHARGE_OFFER_W = 1400.0
# An AC connector delivers at most 3 x 32 A x 250 V (24 kW); above that it is DC.
AC_MAX_W = 24_000.0


def _learned_rating(ratings: StationRatings | None, batch: SessionBatch) -> FloatArray:
    if ratings is None:
        return np.full(batch.n_sessions, np.nan)
    return ratings.lookup(batch.station_id)


def _near_zero_w(prep: Prepared, floor_w: float, fraction: float) -> FloatArray:
    return np.asarray(np.maximum(floor_w, fraction * np.nan_to_num(prep.peak_power_w)))


class Stall:
    """Power near zero and the register flat for 10 min or more mid-session, after charging had
    begun and before it resumes (so the car was not full), with neither a lower offered power
    nor the car's own pause (SuspendedEV) to explain it."""

    kind = "stall"

    def __init__(
        self,
        *,
        min_duration_s: float = 600.0,  # CONTRACTS.md section 3
        near_zero_w: float = 200.0,  # a connector at rest shows 0 W plus standby and noise
        near_zero_fraction: float = 0.02,  # ... or 2 % of the session's peak (sensor offset)
        resume_fraction: float = 0.3,  # charging resumes: back to 30 % of the earlier peak
        min_resume_wh: float = 300.0,  # and delivering a few minutes' worth of the slowest
        #                                charge: a charge that went on, not a blip
    ) -> None:
        self.min_duration_s = min_duration_s
        self.near_zero_w = near_zero_w
        self.near_zero_fraction = near_zero_fraction
        self.resume_fraction = resume_fraction
        self.min_resume_wh = min_resume_wh

    def fit(self, batch: SessionBatch) -> Self:
        return self  # nothing to learn: the rules are physical

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
        prep = prepared(batch, now_ns)
        idle, _ = self._idle(prep)
        return judge_candidates(
            self.kind, prep, idle, self._judge, not_scored_reason(prep, 3, "power")
        )

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


# Reference bands: SoC in 5 % bins (DC); otherwise "minutes at peak power still to go before
# charging ends" in 15-min bins (AC), where the car's own taper lives in the last stretch. Both
# kinds of bin share one table per rated-power class: columns 0-19 SoC, 20-32 minutes to go.
SOC_BIN_PCT = 5.0
N_SOC_BINS = 20
TO_GO_BIN_MIN = 15.0
N_TO_GO_BINS = 13  # the last one is 180 min and more
N_BINS = N_SOC_BINS + N_TO_GO_BINS
# Rated-power classes: 1-phase AC, 3-phase AC, DC up to 100 kW, high-power DC.
RATED_EDGES_W = np.array([0.0, 8_000.0, AC_MAX_W, 100_000.0, np.inf])
N_CLASSES = RATED_EDGES_W.size - 1


def default_band() -> FloatArray:
    """The built-in lower band of power / what the session can do, one row per class.

    Against SoC: published DC curves hold at least about 60 % of their peak up to 40 % SoC,
    then taper (to a tenth near 80 %). Against minutes-at-peak to go: AC cars draw their full
    power until the last stretch; in the last 45 minutes-at-peak their own taper may take them
    anywhere."""
    centre = (np.arange(N_SOC_BINS) + 0.5) * SOC_BIN_PCT
    soc = np.interp(centre, [0.0, 40.0, 60.0, 75.0, 80.0], [0.6, 0.6, 0.3, 0.1, 0.0])
    to_go = np.array([0.0, 0.0, 0.0, 0.3, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])
    return np.tile(np.concatenate((soc, to_go)), (N_CLASSES, 1))


class EarlyTaper:
    """Power well below what the car and charger should deliver at that point of the charge,
    sustained, with no lower offered power explaining it.

    Power is taken relative to what the session showed it can do (its peak, capped by the
    offered power at each sample), and compared with a learned lower band: per rated-power class,
    a low quantile of that ratio against SoC (DC) or against minutes-at-peak to go before
    charging ends (AC). ``fit`` learns the band from history; until a cell has
    ``min_samples`` readings the built-in physical default is used. AC also: a sudden fall
    (by a third within 5 min) that is then held flat for 10 min, which a car's own taper, a
    continuous decline into full, does not do.
    """

    kind = "early_taper"

    def __init__(
        self,
        *,
        quantile: float = 0.01,  # the band's edge: 1 reading in 100 of history lies below it
        band_margin: float = 0.85,  # and then 15 % further below, for sessions not yet seen
        band_cap: float = 0.8,  # never demand more than 80 % of the peak
        min_samples: int = 500,  # readings needed in a (class, bin) cell to trust it
        min_duration_s: float = 600.0,  # a dip shorter than 10 min is balancing or a limit
        #                                 message in flight, not a derating
        min_steps: int = 3,
        near_zero_w: float = 200.0,  # below this it is a stall's business, not a taper's
        min_drop: float = 0.35,  # a sudden fall by more than a third ...
        max_fall_s: float = 300.0,  # ... within 5 min (DC: and within 5 % SoC) is no car's own
        #                             taper: published curves lose at most ~7 % per 5 % SoC
        #                             below 80 % SoC
        max_fall_soc_pct: float = 5.0,
        dc_drop_max_soc_pct: float = 60.0,  # DC: most published curves step only above this
        hold_fraction: float = 0.8,  # held: the power then stays above 80 % of where it fell
        #                              to (a derating is a flat current limit on AC), where a
        #                              car's own taper keeps falling towards full
        ramp_fraction: float = 0.8,  # readings before power first reaches 80 % of the peak are
        #                              the ramp-up, not a taper
    ) -> None:
        self.quantile = quantile
        self.band_margin = band_margin
        self.band_cap = band_cap
        self.min_samples = min_samples
        self.min_duration_s = min_duration_s
        self.min_steps = min_steps
        self.near_zero_w = near_zero_w
        self.ramp_fraction = ramp_fraction
        self.min_drop = min_drop
        self.max_fall_s = max_fall_s
        self.max_fall_soc_pct = max_fall_soc_pct
        self.hold_fraction = hold_fraction
        self.dc_drop_max_soc_pct = dc_drop_max_soc_pct

    # -- shared features ------------------------------------------------------------------------

    def _features(
        self, prep: Prepared, rated: FloatArray, *, learning: bool = False
    ) -> tuple[FloatArray, IntArray, BoolArray, FloatArray]:
        """Per reading: power over what the session can do (its peak, capped by the offered
        power), the band cell (class x N_BINS + bin; -1 when not comparable); per row whether
        it is judged against SoC; and the offered cap."""
        p = prep.power_w
        n, m = p.shape
        peak = prep.peak_power_w
        is_dc = rated > AC_MAX_W
        offered_at_peak = pick(prep.offered_w, nan_argmax(p))
        # AC: a car on fewer phases than the charger draws a share of what is offered
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(
                is_dc | np.isnan(offered_at_peak) | (offered_at_peak <= 0),
                1.0,
                np.clip(peak / offered_at_peak, 0.0, 1.0),
            )
        limit = np.where(np.isnan(prep.offered_w), np.inf, prep.offered_w * share[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = p / np.minimum(peak[:, None], limit)
        has_soc = ~np.isnan(prep.soc_pct)
        uses_soc: BoolArray = np.asarray(has_soc.any(axis=1)) if m else np.zeros(n, dtype=bool)
        klass = np.clip(np.searchsorted(RATED_EDGES_W, rated, side="right") - 1, 0, N_CLASSES - 1)
        reached = p >= self.ramp_fraction * peak[:, None]
        comparable = (
            np.maximum.accumulate(reached, axis=1)  # past the ramp-up
            & (p > self.near_zero_w)
            # scoring: nothing above the cap can be below a band, so it needs no bin
            & ((ratio < self.band_cap) | learning)
            & (prep.status != StatusCode.SUSPENDED_EV)
            & np.where(uses_soc[:, None], has_soc, True)
        )
        cell = np.full((n, m), -1, dtype=np.int64)
        where = np.flatnonzero(comparable)  # only these readings need a bin
        if where.size:
            row = where // m
            soc_rows = uses_soc[row]
            soc_bin = np.clip(prep.soc_pct.reshape(-1)[where] // SOC_BIN_PCT, 0, N_SOC_BINS - 1)
            to_go = self._minutes_to_go(prep, ~uses_soc).reshape(-1)[where]
            to_go_bin = N_SOC_BINS + np.clip(to_go // TO_GO_BIN_MIN, 0, N_TO_GO_BINS - 1)
            bins = np.where(soc_rows, soc_bin, to_go_bin).astype(np.int64)
            cell.reshape(-1)[where] = klass[row] * N_BINS + bins
        return ratio, cell, uses_soc, limit

    def _minutes_to_go(self, prep: Prepared, rows: BoolArray) -> FloatArray:
        """Minutes at peak power still to go before charging ends (only for ``rows``)."""
        n, m = prep.power_w.shape
        out = np.full((n, m), np.nan)
        pick_rows = np.flatnonzero(rows)
        if pick_rows.size == 0 or m < 2:
            return out
        p = prep.power_w[pick_rows]
        step_wh = np.nan_to_num(np.maximum(trapezoid_wh(p, prep.dt_s[pick_rows]), 0.0))
        rest_wh = np.cumsum(step_wh[:, ::-1], axis=1)[:, ::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[pick_rows, :-1] = rest_wh / prep.peak_power_w[pick_rows, None] * 60.0
        out[pick_rows, -1] = 0.0
        return out

    # -- learning -------------------------------------------------------------------------------

    def fit(self, batch: SessionBatch) -> Self:
        self.ratings_ = StationRatings.learn(batch)
        band = default_band()
        counts = np.zeros(band.size, dtype=np.int64)
        if batch.n_sessions and batch.n_steps:
            prep = prepared(batch, np.iinfo(np.int64).max // 2)
            rated = rated_power_w(prep, self.ratings_.lookup(batch.station_id))
            ratio, cell, _, _ = self._features(prep, rated, learning=True)
            keep = cell >= 0
            learned, counts = _group_quantile(cell[keep], ratio[keep], band.size, self.quantile)
            trusted = counts >= self.min_samples
            flat = band.reshape(-1)
            # where the built-in band is 0 the car may be in its own taper near full (SoC of
            # 80 % and more, the last 45 minutes-at-peak): history never makes that flaggable
            trusted &= flat > 0
            flat[trusted] = np.minimum(learned[trusted] * self.band_margin, self.band_cap)
        self.band_ = band
        self.band_count_ = counts.reshape(band.shape)
        return self

    # -- scoring --------------------------------------------------------------------------------

    def _sudden_drop(
        self, prep: Prepared, rows: IntArray, limit_w: FloatArray, max_soc_pct: FloatArray
    ) -> tuple[FloatArray, Runs]:
        """Evidence per step (of ``rows`` only) of a sudden fall held for a while: power drops
        by ``min_drop`` of the session's level so far (capped by the offered power) within
        ``max_fall_s``, and then stays above ``hold_fraction`` of where it fell to."""
        p = prep.power_w[rows]
        t = prep.t_s[rows]
        peak_so_far = np.maximum.accumulate(np.nan_to_num(p, nan=0.0), axis=1)
        level = np.minimum(peak_so_far, limit_w)
        # at its full level, not held down by an offer: the fall is timed from there
        high = p >= 0.9 * peak_so_far
        t_high = np.maximum.accumulate(np.where(high, t, -np.inf), axis=1)
        soc = prep.soc_pct[rows]
        soc_high = np.maximum.accumulate(np.where(high & ~np.isnan(soc), soc, -np.inf), axis=1)
        low = (
            (p < (1.0 - self.min_drop) * level)
            & (p > self.near_zero_w)
            & (prep.status[rows] != StatusCode.SUSPENDED_EV)
        )
        fall_limit_s = self.max_fall_s + np.nan_to_num(prep.interval_s[rows])[:, None]
        abrupt = (t - t_high <= fall_limit_s) & ~(soc - soc_high > self.max_fall_soc_pct)
        abrupt &= ~(soc >= max_soc_pct[:, None])
        low_run = runs(low)
        first = np.maximum(low_run.first, 0)
        held = low & (p >= self.hold_fraction * np.take_along_axis(p, first, axis=1))
        starts_abrupt = np.take_along_axis(abrupt, first, axis=1)
        step = held[:, 1:] & held[:, :-1] & starts_abrupt[:, 1:]
        step &= low_run.first[:, 1:] == low_run.first[:, :-1]
        hold = runs(step, prep.dt_s[rows])
        from_start = hold.first == np.maximum(low_run.first[:, 1:], 0)
        x = np.where(step & from_start, hold.total / self.min_duration_s, 0.0)
        return np.asarray(x), hold

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        if not hasattr(self, "band_"):
            self.fit(batch.take(np.zeros(0, dtype=np.int64)))
        prep = prepared(batch, now_ns)
        rated = rated_power_w(prep, _learned_rating(self.ratings_, batch))
        ratio, cell, uses_soc, limit_w = self._features(prep, rated)
        below = (cell >= 0) & (ratio < np.take(self.band_.reshape(-1), np.maximum(cell, 0)))
        slow = below[:, 1:] & below[:, :-1]
        run = runs(slow, prep.dt_s)
        x_band = np.where(
            slow,
            np.minimum(run.total / self.min_duration_s, (run.length + 1) / (self.min_steps + 1)),
            0.0,
        )
        # AC cars draw a flat current until their taper near full; DC cars' own curves may
        # step down abruptly, mostly high up (most published curves hold near their peak below
        # ``dc_drop_max_soc_pct``; a few step earlier and can be flagged wrongly), so for DC the
        # sudden fall counts below that SoC only
        is_dc = rated > AC_MAX_W
        # only rows with a reading far enough below what the session can do need a look
        fallen = (cell >= 0) & (ratio < 1.0 - self.min_drop)
        fallen &= np.where(is_dc[:, None], prep.soc_pct < self.dc_drop_max_soc_pct, True)
        ac = np.flatnonzero((~is_dc | uses_soc) & np.any(fallen, axis=1))
        max_soc = np.where(is_dc[ac], self.dc_drop_max_soc_pct, np.inf)
        x_drop_ac, drop_ac = self._sudden_drop(prep, ac, limit_w[ac], max_soc)
        # the stronger of the two pieces of evidence, row by row
        at = nan_argmax(x_band)
        x = pick(x_band, at)
        begin = np.maximum(pick(run.first, at), 0).astype(np.int64)
        dur = pick(run.total, at)
        at_drop = nan_argmax(x_drop_ac)
        x_drop = pick(x_drop_ac, at_drop)
        use_drop = x_drop > x[ac]
        chosen = ac[use_drop]
        x[chosen] = x_drop[use_drop]
        at[chosen] = at_drop[use_drop]
        begin[chosen] = np.maximum(pick(drop_ac.first, at_drop), 0)[use_drop]
        dur[chosen] = pick(drop_ac.total, at_drop)[use_drop]
        flagged = x > 1.0
        start = pick(prep.t_ns, begin).astype(np.int64)
        end = pick(prep.t_ns, at + 1).astype(np.int64)
        peak = prep.peak_power_w
        soc_at = pick(prep.soc_pct, begin)
        not_scored = not_scored_reason(prep, 3, "power")
        no_power = np.isnan(peak) | ~(peak > self.near_zero_w)
        not_scored[no_power & is_none(not_scored)] = "no charging power reported"
        dc_without_soc = (rated > AC_MAX_W) & ~uses_soc
        not_scored[dc_without_soc & is_none(not_scored)] = (
            "no state of charge reported: a DC car's own taper cannot be told from a derating"
        )

        def describe(rows: IntArray) -> list[str]:
            out = []
            for i in rows:
                mean_p = float(np.nanmean(prep.power_w[i, begin[i] : at[i] + 2]))
                where = f"from {soc_at[i]:.0f} % SoC" if uses_soc[i] else "well before full"
                out.append(
                    f"power held at {fmt_kw(mean_p)} ({mean_p / peak[i] * 100:.0f} % of "
                    f"the session's {fmt_kw(peak[i])}) for {fmt_min(dur[i])} {where}, "
                    f"with no lower offered power"
                )
            return out

        return build_result(self.kind, excess_score(x), flagged, start, end, describe, not_scored)


def _group_quantile(
    cell: IntArray, values: FloatArray, n_cells: int, q: float
) -> tuple[FloatArray, IntArray]:
    """The ``q`` quantile of ``values`` within each cell (NaN for an empty cell) and counts."""
    counts = np.bincount(cell, minlength=n_cells).astype(np.int64)
    out = np.full(n_cells, np.nan)
    if cell.size == 0:
        return out, counts
    order = np.lexsort((values, cell))
    sorted_values = values[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    pos = starts + np.floor(q * (counts - 1)).astype(np.int64)
    out[has] = sorted_values[pos[has]]
    return out, counts
