"""Charging that slows down too early (``early_taper``) with nothing to explain it.

What must not be flagged is most of the work here: a car's own taper near full, a car that is
full, and power held down by a lower ``power_offered_w``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any, Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.battery import (
    EFFICIENCY_MIN,
    largest_capacity_wh,
    soc_resolution_pct,
)
from analytics.detectors.energy import cumulative_wh, energy_bounds
from analytics.detectors.meter import meter_values_resolution_wh
from analytics.detectors.prepared import (
    HISTORY_COMPLETE_NS,
    NS_PER_S,
    Prepared,
    power_from_current,
    prepared,
    row_blocks,
    take_rows,
)
from analytics.detectors.ratings import AC_MAX_W, StationRatings, rated_power_w
from analytics.detectors.reductions import (
    Runs,
    forward_fill,
    nan_argmax,
    pick,
    row_max,
    row_median,
    runs,
    trapezoid_wh,
)
from analytics.detectors.verdicts import (
    CLOCK_UNTRUSTED,
    MIN_POWER_READINGS,
    Verdict,
    clock_untrusted,
    fmt_kw,
    fmt_min,
    is_none,
    not_scored_reason,
    scatter_verdict,
    verdict_result,
)
from chargewatch.kinds import AnomalyKind

# The band's SoC bins: 5 % wide, those of the published-curve floor (curve_floor.py), narrow
# enough that a stepped curve's steps fall in bins of their own.
SOC_BIN_PCT = 5.0


N_SOC_BINS = 20


# Without SoC (AC), the band's bins are minutes at peak power still to go, by quarter hours:
# the scale of an AC car's own taper (AC_TO_GO_FLOOR).
TO_GO_BIN_MIN = 15.0


N_TO_GO_BINS = 13  # the last one is 180 min and more


N_BINS = N_SOC_BINS + N_TO_GO_BINS


# Cars report SoC in whole percent or finer, or in coarse steps (2, 5, 10 %): the step tiers'
# limits leave a margin for the whole percent; a coarser step adds its excess over it.
WHOLE_PERCENT_PCT = 1.0

# A SoC that falls by more than this many of its reporting steps (whole percent at the least)
# while the car charges is a report in doubt from then on (``_charged_soc``): one step is the
# rounding of a figure on its way up (64.6 % shown as 65 %, then 64 %), two are not.
SOC_FALL_STEPS = 2.0

# Rated-power classes: 1-phase AC, 3-phase AC, DC up to 100 kW, high-power DC.
RATED_EDGES_W = np.array([0.0, 8_000.0, AC_MAX_W, 100_000.0, np.inf])


N_CLASSES = RATED_EDGES_W.size - 1


def _dc_curve_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(
        files("analytics.detectors").joinpath("dc_curve_floor.json").read_text("utf-8")
    )
    return table


def _dc_curve_floor() -> FloatArray:
    floor = np.array([b["floor"] for b in _dc_curve_table()["bins"]], dtype=np.float64)
    assert floor.shape == (N_SOC_BINS,), floor.shape
    return floor


# What published DC charging curves allow: in each 5 % SoC bin, the lowest power any of the 113
# model-specific curves of open-ev-data (Chargeprice, MIT licence) draws, relative to the
# highest power it reached so far, to the nearest hundredth. Below 40 % no car falls under 72 %
# of its peak; stepped curves reach 54 % from 45 % (the Corsa-e) and 47 % from 55 % (the
# Polestar 2); past 70 % curves fall anywhere, so nothing there can be told from the car. The
# numbers, with each bin's lowest curve and their source, are in dc_curve_floor.json, made by
# curve_floor.py (which says how; a test remakes it from ../shared/data/ev-curves).
DC_CURVE_FLOOR = _dc_curve_floor()


def _ac_kw_floor() -> FloatArray:
    floor = np.array([b["ac_kw"] for b in _dc_curve_table()["bins"]], dtype=np.float64)
    assert floor.shape == (N_SOC_BINS,), floor.shape
    return floor


# What an AC car with SoC must draw: its onboard charger, not its battery, sets the power, so it
# holds its AC level L (what the session reached, capped by the offer) until its battery accepts
# less, and no published battery accepts less than AC_KW_FLOOR kW in a 5 % SoC bin (the least
# any of the same 113 curves draws over the bin's whole percents and the next one, which a
# whole-percent report hides). Its floor is min(1, AC_KW_FLOOR / L) of L: 1 up to 80 % SoC for
# any L up to 11 kW, 0.48 of 11 kW at 90-95 % (the Bolt's 5.3 kW), nothing from 95 % (the
# Bolt reaches 0 at 100 %). The DC floor above (a share of the peak so far, 0 from 70 %)
# would let an 11 kW car halve its power at 80 % unseen. Numbers and source:
# dc_curve_floor.json ("ac_kw", "ac_derivation"), made by curve_floor.py.
AC_KW_FLOOR = _ac_kw_floor()


# Where a step's fall must be complete on DC, by the SoC it spans: within 5 % of SoC, below
# 65.8 %; within 10 %, below 63.4 %. No published curve falls under 62 % (the step's 38 % drop)
# of the highest power it drew within 6 % of SoC before (5 % as compared, 1 % more hidden by
# whole-percent SoC) until 68.8 % SoC (the Mokka-e and e-208 family's step), nor within 11 %
# until 66.4 % (the E-Traveller); 3 % less for the fallen reading's own rounding and for a
# reported SoC against the SoC the curve was published at. Beyond them curves fall that far. The
# numbers and their source are in dc_curve_floor.json ("step"), made by curve_floor.py. The
# wider span is for fast cars: at 1.5-2 C a derate that settles over 3-4 min spans 8-10 % of
# SoC. A derate that begins near the end of a car's plateau (55-62 % SoC) is seen here when its
# fall is complete by then; one that the car's own taper then pulls further down is a stretch
# cut short (``_cut_short``).
DC_STEP_TIERS = tuple(
    (float(t["soc_span_pct"]), float(t["complete_below_soc_pct"]))
    for t in _dc_curve_table()["step"]["tiers"]
)
assert [span for span, _ in DC_STEP_TIERS] == [5.0, 10.0], DC_STEP_TIERS


def _tier_by_capacity(tier: int) -> tuple[FloatArray, FloatArray]:
    rows = _dc_curve_table()["step"]["tiers"][tier]["by_capacity"]
    kwh = np.array([r["from_kwh"] for r in rows], dtype=np.float64)
    below = np.array([r["complete_below_soc_pct"] for r in rows], dtype=np.float64)
    return kwh, below


# The tiers again, over the curves of cars with at least each usable capacity: a car whose
# session shows a larger battery than the stepping cars' (the e-208 family and the Corsa-e
# hold 45-47.5 kWh) is not one of them, and its fall must be complete below 70 % SoC only
# (the next published steps, the Kona's and the Teslas', begin at 75-76 %; past 70 % curves
# fall anywhere, so nothing is asked there whatever the battery). Row k applies from
# STEP_FROM_KWH[k] kWh. Numbers and source: dc_curve_floor.json ("by_capacity"), made by
# curve_floor.py. Missed without it: a 90 kWh car falling from 145 to 44 kW at 63-66 % SoC
# (an independently written fleet, seed 81), judged against a 47.5 kWh car's step at 68.8 %.
STEP_FROM_KWH = tuple(_tier_by_capacity(tier) for tier in range(len(DC_STEP_TIERS)))

# A deep step (a fall to under DEEP_KEEP, 0.45, of the highest power just before) counts when
# complete below DEEP_BELOW_SOC_PCT (70 %) whatever the car: no published curve falls under half
# of its recent highest before 75 % SoC (the e-208 family's step is to 52 %), and the first to
# fall under 0.45 do so at 75.6 % (the Ioniq) and 79.9 % (the Polestar 2); past 70 % curves fall
# anywhere. Numbers and source: dc_curve_floor.json ("step", "deep"), made by curve_floor.py.
# Missed without it: a 46 kWh car on a 50 kW charger falling to 16 kW (33 %) at 68-69 % SoC (an
# independently written fleet, seed 82), judged against the e-208's step to 52 % there.
DEEP_KEEP = float(_dc_curve_table()["step"]["deep"]["keep"])
DEEP_BELOW_SOC_PCT = min(
    float(t["complete_below_soc_pct"])
    for t in _dc_curve_table()["step"]["deep"]["tiers"]
    if float(t["soc_span_pct"]) <= DC_STEP_TIERS[-1][0]
)

# Falls that span more SoC between their two readings than the step's tiers (10 %): on a
# station sampling every 5-15 min a fast car gains 12-60 % of SoC from one reading to the next,
# and a derate shows as one fall that wide. Each wide tier is (span, step, deep): a fall over at
# most ``span`` % of SoC counts when complete below ``step`` (a fall by more than 38 %), or below
# ``deep`` when to under DEEP_KEEP of the power before. Over 20 %: no published curve falls by
# 38 % before 56 % (the Polestar 2), none under DEEP_KEEP before 73.6 % (the E-Traveller); over
# 60 %: 46.7 % (the e-208 family) and 67.8 % (the Corsa-e); 3 % margin, capped at 70 % as the
# others. A fall is judged by the narrowest tier that holds it. Missed without them: 75 to 29 kW
# between 37 and 53 % SoC, 141 to 57 kW between 33 and 50 % (an independently written fleet,
# seeds 122 and 121 with --sparse-sampling); 145 to 68 kW between 33 and 51 % read 10 min apart
# (seed 133); 76 to 27 kW between 37 and 58 % read 15 min apart (seed 325).
WIDE_TIERS = tuple(
    (float(step["soc_span_pct"]), float(step["complete_below_soc_pct"]), float(deep_below))
    for step in _dc_curve_table()["step"]["wide_tiers"]
    for deep_span, deep_below in (
        (float(t["soc_span_pct"]), t["complete_below_soc_pct"])
        for t in _dc_curve_table()["step"]["deep"]["tiers"]
    )
    if deep_span == float(step["soc_span_pct"])
)
assert [span for span, _, _ in WIDE_TIERS] == [20.0, 60.0], WIDE_TIERS
DEEP_WIDE_SPAN_PCT = WIDE_TIERS[-1][0]  # the widest span a fall is looked for over

# A reported SoC gain may fall short of the battery's true gain by its reporting step (at each
# end) and by the lag of a car's figure behind the energy just taken: a reading or so, 1-2 %
# at DC rates on a small battery (the step tiers' own margin, curve_floor.STEP_MARGIN_PCT).
SOC_LAG_PCT = 2.0

# Energy is counted towards the battery's size only over steps of at most this many sampling
# intervals: across a longer gap power may have stopped, and a lower bound must not guess.
CAPACITY_GAP_INTERVALS = 2.0


# How far a car climbs back out of a dip along its own curve: at a higher SoC no published curve
# draws more than REBOUND_LIMIT (1.27) times the least it drew since a lower SoC; the largest is
# the Mazda MX-30's gentle rise from 30 kW at 0 % to 38 kW at 55 %, and no curve climbs back
# from a fall by more than 3 % (the Ioniq's). A battery's acceptance does not climb back: power
# that falls and later returns well above where it fell was held down by something else. The
# number and its source are in dc_curve_floor.json ("rebound"), made by curve_floor.py.
REBOUND_LIMIT = float(_dc_curve_table()["rebound"]["largest"])


# AC cars draw a constant current until their own taper in the last few % of SoC. Measured in
# minutes at peak power still to go, a taper over the last 10 % of a 100 kWh battery at 3.7 kW
# still has ~60 min to go where it passes half power: so nothing is demanded in the last 45 min,
# then 30 %, half from an hour, and 60 % from 90 min before the end.
AC_TO_GO_FLOOR = np.array([0.0, 0.0, 0.0, 0.3, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])

# A battery's own tail (the constant-voltage end of a charge) keeps falling until the car stops
# drawing: its current decays roughly exponentially, by about e in 10-30 min (AC at a low
# C-rate towards the short end). A derating holds a lower level (a current limit), or follows
# the car's curve down over SoC, far slower. Without SoC nothing else tells the tail from a
# fall well before full, so on such rows a stretch that keeps falling faster than a decay of
# TAIL_DECAY_S, twice in a row after it settled, is the tail and no longer held. The readings'
# noise (READING_NOISE, 5 %) is allowed on top: at 60 s sampling a step must fall by more than
# 8 %, at 5 min by more than 20 %. A normal AC session of an independently written fleet
# (seed 202, sampled every 5 min) tapered 3.7, 2.1, 1.6, 1.1, 0.8 kW to its end and was read
# as a fall held 12 min: its second and third readings "held" only by settling there.
TAIL_DECAY_S = 1800.0
READING_NOISE = 0.05


def default_band() -> FloatArray:
    """The built-in floor of power over level, one row per rated-power class (before margin)."""
    return np.tile(np.concatenate((DC_CURVE_FLOOR, AC_TO_GO_FLOOR)), (N_CLASSES, 1))


class EarlyTaper(BaseDetector):
    """Power well below what the car and charger should deliver at that point of the charge,
    sustained, with no lower offered power explaining it (see the comment above).

    The band: ``fit`` learns a low quantile of power over level per (class, bin) from history;
    where a cell has ``min_samples`` readings and its quantile is lower than the built-in floor
    (a network whose cars go lower than published curves: cold batteries, old packs), the
    learned value replaces it. History widens the band, never narrows it below what published
    curves allow: a flag pages someone. Scoring uses ``band_margin`` x that floor. Learned:
    ``ratings_`` (each station's rated power), ``band_``, ``band_count_``, ``band_learned_``.

    Parameters
    ----------
    quantile : float, default 0.01
        The learned floor: 1 reading in 100 of history lies below it ...
    band_margin : float, default 0.85
        ... and then 15 % further below (meter noise, cars not seen yet).
    min_samples : int, default 500
        Readings needed in a (class, bin) cell of history to trust its quantile.
    min_duration_s : float, default 600.0
        A dip shorter than 10 min is balancing or a limit message in flight, not a derating.
    min_steps : int, default 3
        Steps in a row under the band, needed as well as ``min_duration_s``: a dip shown by
        a few readings, not by two readings far apart; no more than ``min_duration_s`` takes at
        the row's sampling interval, two at least (``_steps_needed``).
    near_zero_w : float, default 200.0
        Below this power it is a stall's business, not a taper's.
    ramp_fraction : float, default 0.8
        Readings before power first reaches 80 % of the peak are the ramp-up, not a taper.
    min_drop : float, default 0.38
        The step: a fall by more than 38 % ...
    max_fall_s : float, default 300.0
        ... within 5 min (plus one sampling interval) ...
    max_fall_soc_pct : float, default 5.0
        ... and within 5 % SoC, complete (its lower reading) below ``dc_step_max_soc_pct``
        (65.8 %) ...
    dc_step_max_soc_pct : float, default 65.8
        ... or within ``wide_fall_soc_pct`` (10 %) of SoC, complete below
        ``dc_wide_step_max_soc_pct`` (63.4 %): beyond these published curves fall that far too
        (see the comment at ``DC_STEP_TIERS``).
    wide_fall_soc_pct : float, default 10.0
    dc_wide_step_max_soc_pct : float, default 63.4
        Both limits are those of a car of unknown size; they rise for a car whose session
        shows a larger battery than the stepping cars' (``STEP_FROM_KWH``,
        ``battery_at_least_wh``), and a fall to under ``DEEP_KEEP`` (0.45) of the power before
        counts up to ``DEEP_BELOW_SOC_PCT`` (70 %) for any car.
    hold_fraction : float, default 0.7
        Held: after settling (``max_fall_s`` into the fall) power stays above 70 % of where it
        settled; a car's own taper keeps falling towards full.
    min_cut_short_s : float, default 300.0
        A held stretch that power never comes back from before charging ends (the driver
        stops the session, the car stops drawing) needs only this long: ``min_duration_s``
        guards against transients, and a transient comes back; what is left to rule out is a
        few stray readings, so ``min_steps`` steps over 5 min (5 readings at the slowest
        common sampling of 60 s).
    rebound_limit : float, default REBOUND_LIMIT (1.2667)
        The rebound: on DC, a dip that the session later climbs out of to more than this many
        times the dip's power, over ``band_margin`` (1.49 times in all), is no car's own curve
        (see ``_rebound``).
    rebound_within_s : float, default 30.0
        ... when the session is back above that within 30 s, or two sampling intervals if
        longer, of the dip's last reading: a DC charger follows the car's current request at
        tens of amperes a second (a few seconds from a derated to a full current), and a
        reading may average over the interval the climb fell in, so the next reading but one
        shows it whole. A climb over minutes is the car's own acceptance changing.
    min_low_start_s : float, default 120.0
        A DC start held low (the rebound's, below) needs only this long, over two steps at
        least: a DC charger follows the car's current request within seconds and a normal
        start reaches the car's curve within a minute (at 60 s sampling, by the first reading
        after power flows), so what is still held under 1 / 1.49 of what the session draws
        later after 2 min is the pack (cold) or the charger (modules out). The evidence is
        the climb itself, which no warm pack makes; the time only rules out the ramp-up (field
        fleet seeds 1-2: 10 of 36 cold starts, under the share for 2-4.5 min, missed at 5 min).
    min_minutes_at_peak_after_fall : float, default 10.0
        Without SoC: a fall with less than this much charging still to come, counted in minutes
        at the session's peak power, is the car's own last few % (a balancing current at 1-2 kW
        for half an hour is about 5 min at 11 kW).

    The rebound (``_rebound``), a third piece of evidence, DC only: a battery's acceptance does
    not climb back, so a dip well below what the same session draws later, at a higher SoC, was
    not the car's curve. What else makes power dip and recover on a real station, and what was
    decided from CONTRACTS.md section 3:

    - a lower offer (load management, a charging profile): explained when ``power_offered_w``
      says so; the climb is measured only up to what was offered over the dip, reading by
      reading. A lower offer the station does not report cannot be told from a derating, and
      the contract's exception is "a lower ``power_offered_w``": it is flagged (the station
      delivered less than it should, and said nothing);
    - power shared between the connectors of one cabinet: the same; a station can report the
      share it gives a connector as that connector's offer (``Power.Offered``), and one that
      does not is flagged as any unexplained dip (the flag's reason says "no lower offered
      power", which points the operator at it);
    - a pack's acceptance that changes with its temperature climbs over minutes, while the
      rebound out of a dip asks for a climb within ``rebound_within_s`` (or two sampling
      intervals): what returns that fast was switched back on (a module, a lifted limit), the
      thermal derate the contract names ended, not the car's chemistry. A slow climb out of a
      dip is left to the band and the step (a normal session of an independently written
      fleet dropped to 2 kW at 72 % SoC and climbed back to 19 kW over 25 min; with a 5 min
      window it was flagged);
    - a cold battery (the contract names it): a session held low from its start, never yet
      within the rebound factor of what it draws later, is a dip whatever the pace of its
      climb (a pack warming gives its power back over minutes); held ``min_low_start_s``
      (a start is no transient that comes back at once, and that long is past any ramp-up);
    - the car's own taper near full and a full car: only readings that are ``Charging``, under
      100 % SoC and above ``near_zero_w`` count, as dip or as climb; a car that stops
      (``SuspendedEV``) and resumes is a stall's business or none;
    - a single high or low reading: the climb is the lower of two readings in a row, and the
      dip must hold ``min_steps`` steps and ``min_duration_s`` (as for the band).

    Where the band or the step flags a session themselves, their flag (start at the fall's
    origin, their reason) stands; the rebound speaks for what they do not flag.
    """

    kind = AnomalyKind.EARLY_TAPER

    def __init__(
        self,
        *,
        quantile: float = 0.01,
        band_margin: float = 0.85,
        min_samples: int = 500,
        min_duration_s: float = 600.0,
        min_steps: int = 3,
        near_zero_w: float = 200.0,
        ramp_fraction: float = 0.8,
        min_drop: float = 0.38,
        max_fall_s: float = 300.0,
        max_fall_soc_pct: float = DC_STEP_TIERS[0][0],
        dc_step_max_soc_pct: float = DC_STEP_TIERS[0][1],
        wide_fall_soc_pct: float = DC_STEP_TIERS[1][0],
        dc_wide_step_max_soc_pct: float = DC_STEP_TIERS[1][1],
        hold_fraction: float = 0.7,
        min_minutes_at_peak_after_fall: float = 10.0,
        min_cut_short_s: float = 300.0,
        rebound_limit: float = REBOUND_LIMIT,
        rebound_within_s: float = 30.0,
        min_low_start_s: float = 120.0,
    ) -> None:
        self.quantile = quantile
        self.band_margin = band_margin
        self.min_samples = min_samples
        self.min_duration_s = min_duration_s
        self.min_steps = min_steps
        self.near_zero_w = near_zero_w
        self.ramp_fraction = ramp_fraction
        self.min_drop = min_drop
        self.max_fall_s = max_fall_s
        self.max_fall_soc_pct = max_fall_soc_pct
        self.dc_step_max_soc_pct = dc_step_max_soc_pct
        self.wide_fall_soc_pct = wide_fall_soc_pct
        self.dc_wide_step_max_soc_pct = dc_wide_step_max_soc_pct
        self.hold_fraction = hold_fraction
        self.min_minutes_at_peak_after_fall = min_minutes_at_peak_after_fall
        self.min_cut_short_s = min_cut_short_s
        self.rebound_limit = rebound_limit
        self.rebound_within_s = rebound_within_s
        self.min_low_start_s = min_low_start_s

    # -- learning -------------------------------------------------------------------------------

    def fit(self, batch: SessionBatch) -> Self:
        self.ratings_ = StationRatings.learn(batch)
        floor = default_band()
        counts = np.zeros(floor.size, dtype=np.int64)
        learned = np.zeros(floor.size, dtype=bool)
        if batch.n_sessions and batch.n_steps:
            # a row's features are its own: learned a block of rows at a time (rows of like
            # length when the history is mostly padding), the same values in another order,
            # which the quantiles do not depend on
            cells: list[IntArray] = []
            ratios: list[FloatArray] = []
            for block in row_blocks(batch)[0]:
                prep = _charged_soc(prepared(block, HISTORY_COMPLETE_NS))
                rated = rated_power_w(prep, self.ratings_.lookup(block.station_id))
                features = self._features(prep, rated, learning=True)
                keep = features.cell >= 0
                cells.append(features.cell[keep])
                ratios.append(features.ratio[keep])
            quantile, counts = _group_quantile(
                np.concatenate(cells), np.concatenate(ratios), floor.size, self.quantile
            )
            flat = floor.reshape(-1)
            learned = (counts >= self.min_samples) & (quantile < flat)
            flat[learned] = quantile[learned]
        self.band_ = floor * self.band_margin
        self.band_count_ = counts.reshape(floor.shape)
        self.band_learned_ = learned.reshape(floor.shape)
        return super().fit(batch)

    # -- features -------------------------------------------------------------------------------

    def _features(self, prep: Prepared, rated: FloatArray, *, learning: bool = False) -> _Taper:
        """Per reading: power over level and its band cell (-1 when not comparable)."""
        p = prep.power_w
        n, m = p.shape
        peak = prep.peak_power_w
        is_dc = rated > AC_MAX_W
        limit, level = _limit_and_level(p, prep.offered_w, peak, is_dc)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = p / level
        has_soc = ~np.isnan(prep.soc_pct)
        uses_soc: BoolArray = np.asarray(has_soc.any(axis=1)) if m else np.zeros(n, dtype=bool)
        klass = _rated_class(rated)
        reached = p >= self.ramp_fraction * peak[:, None]
        comparable = (
            np.maximum.accumulate(reached, axis=1)  # past the ramp-up
            & (p > self.near_zero_w)
            & (prep.status != StatusCode.SUSPENDED_EV)
            & np.where(uses_soc[:, None], has_soc, True)
        )
        if not learning:  # nothing at or above the highest floor can be below a band
            comparable &= ratio < self.band_.max()
        cell = np.full((n, m), -1, dtype=np.int64)
        floor = np.full((n, m), np.nan)
        where = np.flatnonzero(comparable)  # only these readings need a bin
        if where.size:
            row = where // m
            soc_rows = uses_soc[row]
            soc_bin = np.clip(prep.soc_pct.reshape(-1)[where] // SOC_BIN_PCT, 0, N_SOC_BINS - 1)
            to_go = self._minutes_to_go(prep, ~uses_soc).reshape(-1)[where]
            to_go_bin = N_SOC_BINS + np.clip(to_go // TO_GO_BIN_MIN, 0, N_TO_GO_BINS - 1)
            bins = np.where(soc_rows, soc_bin, to_go_bin)
            # a reading whose bin is undefined (no time to go: a row of one reading) is in no
            # cell: NaN must never reach the integer cast
            defined = ~np.isnan(bins)
            where, row, bins = where[defined], row[defined], bins[defined]
            cells = klass[row] * N_BINS + bins.astype(np.int64)
            cell.reshape(-1)[where] = cells
            if not learning:
                at = self.band_.reshape(-1)[cells]
                # AC with SoC: the onboard charger's level until the battery accepts less
                # (AC_KW_FLOOR); a cell that history lowered keeps what it learned if lower
                ac = soc_rows & ~is_dc[row]
                if ac.any():
                    soc_at = bins[ac].astype(np.int64)
                    level_at = level.reshape(-1)[where[ac]]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        share = np.minimum(1.0, AC_KW_FLOOR[soc_at] * 1000.0 / level_at)
                    physics = self.band_margin * np.nan_to_num(share, nan=0.0)
                    learned = self.band_learned_.reshape(-1)[cells[ac]]
                    at[ac] = np.where(learned, np.minimum(physics, at[ac]), physics)
                floor.reshape(-1)[where] = at
        return _Taper(
            ratio=ratio,
            cell=cell,
            floor=floor,
            uses_soc=uses_soc,
            level=level,
            limit=limit,
            is_dc=is_dc,
        )

    def _minutes_to_go(self, prep: Prepared, rows: BoolArray) -> FloatArray:
        """Minutes at peak power still to go before charging ends (only for ``rows``): the
        energy from each reading to the car's next SuspendedEV (it stopped drawing of its own
        accord: full, or its timer), or to the row's end, over its peak power. What the car draws
        after it was full (battery conditioning, a top-up hours later) is no charge still to
        come: an AC car tapering from 7.2 kW to 0.3 kW over 30 min into SuspendedEV, then
        waking to condition its battery overnight, read as "15 min at peak power to go" at
        the start of its taper (an independently written fleet, field seed 1, 00556afa)."""
        n, m = prep.power_w.shape
        out = np.full((n, m), np.nan)
        pick_rows = np.flatnonzero(rows)
        if pick_rows.size == 0 or m < 2:
            return out
        p = prep.power_w[pick_rows]
        step_wh = np.nan_to_num(np.maximum(trapezoid_wh(p, prep.dt_s[pick_rows]), 0.0))
        done = np.concatenate((np.zeros((pick_rows.size, 1)), np.cumsum(step_wh, axis=1)), 1)
        # the first SuspendedEV at or after each reading (the row's last reading when none)
        paused = (prep.status[pick_rows] == StatusCode.SUSPENDED_EV) & prep.valid[pick_rows]
        idx = np.where(paused, np.arange(m), m - 1)
        until = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
        rest_wh = np.take_along_axis(done, until, axis=1) - done
        with np.errstate(divide="ignore", invalid="ignore"):
            out[pick_rows] = rest_wh / prep.peak_power_w[pick_rows, None] * 60.0
        return out

    # -- scoring --------------------------------------------------------------------------------

    def _step_limits(self, battery_wh: FloatArray) -> FloatArray:
        """Per row and step tier, ``(n, 2)``: the SoC below which a fall over the tier's span
        must be complete, for a car with at least ``battery_wh`` (``STEP_FROM_KWH``)."""
        out = np.empty((battery_wh.size, len(STEP_FROM_KWH)))
        bases = (self.dc_step_max_soc_pct, self.dc_wide_step_max_soc_pct)
        for tier, ((kwh, below), base) in enumerate(zip(STEP_FROM_KWH, bases, strict=True)):
            at = np.searchsorted(kwh, np.nan_to_num(battery_wh) / 1000.0, side="right") - 1
            out[:, tier] = np.maximum(base, np.where(at >= 0, below[np.maximum(at, 0)], base))
        return out

    def _candidates(self, prep: Prepared, rated: FloatArray, step_below: FloatArray) -> BoolArray:
        """Rows with readings that either piece of evidence could hold against them, in
        stretches of ``min_duration_s`` in all: below its SoC bin's band (without SoC: its
        class's highest band, if enough energy is still to come for that band to apply), or
        under the step's threshold with a fall where that begins.

        A few passes over the batch, then narrower checks on the rows still in question, so
        that the full judgement runs on a small share of the batch. The first pass compares
        power with the session's peak (not the judgement's peak so far capped by the offer):
        that ratio is never above the judgement's, so no row it would flag is left out.
        """
        p = prep.power_w
        n, m = p.shape
        if m == 0:
            return np.zeros(n, dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = p * (1.0 / prep.peak_power_w)[:, None]
        np.copyto(r, np.nan, where=p <= self.near_zero_w)  # not charging: nothing to judge
        soc = prep.soc_pct
        any_soc = not np.isnan(soc).all()
        klass = _rated_class(rated)
        dt = prep.dt_s

        def lasting(
            mask: BoolArray, rows: IntArray | slice = slice(None), least_s: float | None = None
        ) -> BoolArray:
            """Rows where steps between two such readings add up to ``least_s`` (default
            ``min_duration_s``): no single stretch can last longer (a ramp down at the end
            passes by in seconds)."""
            both = mask[:, 1:] & mask[:, :-1]
            total = np.sum(np.where(both, dt[rows], 0.0), axis=1)
            return np.asarray(total >= (self.min_duration_s if least_s is None else least_s))

        # the band: by SoC bin (columns 0-19, 20 for SoC 100 %), or without SoC (column 21)
        # the highest time band of the class
        time_band = self.band_[:, N_SOC_BINS:]
        soc_band = self.band_[:, :N_SOC_BINS]
        if any_soc:
            table = np.concatenate((soc_band, soc_band[:, -1:], time_band.max(1)[:, None]), 1)
            column = soc * (1.0 / SOC_BIN_PCT)
            np.fmin(column, N_SOC_BINS + 1, out=column)  # NaN (no SoC) becomes the last column
            index = column.astype(np.intp)
            index += (klass * table.shape[1])[:, None]
            below = r < np.take(table, index, mode="clip")
            ac_rows = np.flatnonzero(~(rated > AC_MAX_W) & np.any(~np.isnan(soc), axis=1))
            if ac_rows.size:
                # AC with SoC: the judgement's floor is min(1, AC_KW_FLOOR / level) of the
                # level, at most the peak: under it only where power is under
                # min(level, AC_KW_FLOOR), so under min(1, AC_KW_FLOOR / peak) of the peak
                soc_ac = soc[ac_rows]
                kw = AC_KW_FLOOR[
                    np.clip(np.nan_to_num(soc_ac) // SOC_BIN_PCT, 0, N_SOC_BINS - 1).astype(np.intp)
                ]
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.minimum(1.0, kw * 1000.0 / prep.peak_power_w[ac_rows, None])
                below[ac_rows] |= ~np.isnan(soc_ac) & (r[ac_rows] < self.band_margin * share)
        else:
            below = r < time_band.max(axis=1)[klass][:, None]
        band_rows = np.flatnonzero(lasting(below))
        demanding = np.flatnonzero(np.any(time_band > 0, axis=0))
        if demanding.size and band_rows.size:
            # without SoC the time band applies only while enough is still to come: the
            # register tells, cheaply (20 % slack for the meter)
            to_go_h = demanding[0] * TO_GO_BIN_MIN / 60.0 * 0.8
            energy = prep.energy_ff_wh[band_rows]
            rest_wh = row_max(energy)[:, None] - energy
            early = rest_wh >= to_go_h * prep.peak_power_w[band_rows, None]
            early |= ~np.isnan(soc[band_rows])
            band_rows = band_rows[lasting(below[band_rows] & early, band_rows)]
        out = np.zeros(n, dtype=bool)
        out[band_rows] = True

        # the step: far below the peak for long enough from where a fall may begin (below
        # ``dc_step_max_soc_pct``), and a fall there
        low = r < 1.0 - self.min_drop
        step_max = np.maximum(step_below.max(axis=1), DEEP_BELOW_SOC_PCT)[:, None]
        may_begin = low & ~(soc >= step_max) if any_soc else low
        begin = np.argmax(may_begin, axis=1)
        after = np.arange(m) >= np.where(may_begin[np.arange(n), begin], begin, m)[:, None]
        shortest_s = min(self.min_duration_s, self.min_cut_short_s)
        rows = np.flatnonzero(lasting(low & after, least_s=shortest_s) & ~out)
        if rows.size:  # the judgement's own test of a fall, on these rows only
            p_, soc_ = p[rows], soc[rows]
            limit, level = _limit_and_level(
                p_, prep.offered_w[rows], prep.peak_power_w[rows], rated[rows] > AC_MAX_W
            )
            fell, _, _ = _falls(
                p_,
                prep.t_s[rows],
                soc_,
                prep.interval_s[rows],
                max_fall_s=self.max_fall_s,
                max_fall_soc_pct=max(
                    self.max_fall_soc_pct, self.wide_fall_soc_pct, DEEP_WIDE_SPAN_PCT
                ),  # the widest span ``_add_wide_falls`` looks at too
                drop=self.min_drop,
                strict=True,
                level=level,
                limit=limit,
                track=False,
            )
            fell &= low[rows] & ~(soc_ >= step_max[rows])
            out[rows] = np.any(fell, axis=1)

        # the rebound (DC): under the rebound share of a later reading and fallen from an
        # earlier one, for ``min_duration_s``; the judgement's climb (the lower of two readings
        # in a row, capped by the offer) is never above the later power used here
        rows = np.flatnonzero((rated > AC_MAX_W) & ~out)
        if rows.size:
            p_ = p[rows]
            later = _later_max(np.where(p_ > self.near_zero_w, p_, np.nan))
            factor = self._rebound_factor()
            dip = (p_ > self.near_zero_w) & (p_ * factor < later)
            # ... or held low from the start, for ``min_low_start_s`` (``_rebound``)
            held_low = dip & (
                _peak_so_far(np.where(p_ > self.near_zero_w, p_, np.nan)) * factor < later
            )
            dip &= p_ < self.band_margin * _peak_so_far(p_)
            out[rows] = lasting(dip, rows) | lasting(held_low, rows, self.min_low_start_s)
        return out

    def _steps_needed(self, prep: Prepared) -> FloatArray:
        """Per row ``(n, 1)``: the steps in a row a stretch needs, ``min_steps`` at most: no
        more than ``min_duration_s`` takes at the row's sampling interval, and two at least. On
        a station sampling every 10-15 min three readings in a row under the band span 20-30
        min, and a fourth would ask for 30-45 (an independently written fleet, seed 274 half
        sparse: 75 kW at 19 % SoC, then 41, 27, 27 kW at 37-58 % read 10 min apart, missed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            need = np.ceil(self.min_duration_s / prep.interval_s)
        need = np.where(np.isnan(need), self.min_steps, np.clip(need, 2, self.min_steps))
        return np.asarray(need, dtype=np.float64)[:, None]

    def _held_for(self, run: Runs, need: FloatArray) -> FloatArray:
        """Evidence of a stretch so far: the lesser of its time over ``min_duration_s`` and its
        steps over the steps it ``need``s (``_steps_needed``), one more each."""
        return np.asarray(
            np.minimum(run.total / self.min_duration_s, (run.length + 1) / (need + 1))
        )

    def _rebound_factor(self) -> float:
        """How many times the dip's power the climb must reach: ``rebound_limit`` with the
        band's margin for meter noise and cars not seen yet (``band_margin``)."""
        return self.rebound_limit / self.band_margin

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        result = self._score(batch, now_ns)
        # the rows whose stop shows a low stretch held to it, judged again with it as a reading
        rows, extended = _with_stop_reading(
            batch, self.hold_fraction, self.near_zero_w, self.band_margin
        )
        if rows.size:
            result = result.with_rows(rows, self._score(extended, now_ns))
        return result

    def _score(self, batch: SessionBatch, now_ns: int) -> KindResult:
        reported = prepared(batch, now_ns)
        prep = _charged_soc(reported)
        n = batch.n_sessions
        rated = rated_power_w(prep, self.ratings_.lookup(batch.station_id))
        # a station that sends current, not power: current x voltage (``power_from_current``).
        # On AC the current may be one phase's, a third of the power; but within a row power
        # goes as current, and the judgement compares a row's power with its own level (a
        # derate from 16 A to 7.3 A under an unchanged 16 A offer, held 4 h, was "no charging
        # power reported": town fleet seeds 1-6, 16 labels). On DC the product is the power
        # itself, so every such row, rating or offer known or not (town fleet seeds 4 and 7)
        prep = power_from_current(prep)[0]
        resolution = soc_resolution_pct(reported.soc_pct, ~np.isnan(reported.soc_pct))
        battery_wh = battery_at_least_wh(prep, resolution)
        prep = _soc_after_reports_end(prep, battery_wh)
        step_below = self._step_limits(battery_wh)
        rows = np.flatnonzero(self._candidates(prep, rated, step_below))
        judged = self._judge(take_rows(prep, rows), rated[rows], step_below[rows], battery_wh[rows])
        verdict = scatter_verdict(n, rows, judged)

        not_scored = not_scored_reason(prep, MIN_POWER_READINGS, "power")
        # a taper is a session's car's (CONTRACTS.md section 3): energy on a connector with no
        # session open is unauthorized_energy's, whatever shape its power takes (a charge
        # after a station's reboot lost its transaction read as "held at 5.4 kW for 55 min",
        # field fleet seed 1)
        not_scored[is_none(batch.session_id)] = "readings outside any session"
        peak = prep.peak_power_w
        no_power = np.isnan(peak) | ~(peak > self.near_zero_w)
        not_scored[no_power & is_none(not_scored)] = "no charging power reported"
        has_soc = np.any(~np.isnan(prep.soc_pct), axis=1)
        # ... unless the rebound flags it (``_judge``): a dip the session climbs out of at once
        # (76 kW, then 36 kW falling to 26 kW over 20 min, then 51 kW again, no SoC and no
        # offer: missed, an outside fleet's cable derating, seed 2, 108831)
        dc_without_soc = (rated > AC_MAX_W) & ~has_soc & ~(verdict.x > 1.0)
        not_scored[dc_without_soc & is_none(not_scored)] = (
            "no state of charge reported: a DC car's own taper cannot be told from a derating"
            " without a climb back"
        )
        not_scored[clock_untrusted(batch, prep) & is_none(not_scored)] = CLOCK_UNTRUSTED
        return verdict_result(self.kind, verdict, not_scored, at_least=True)

    def _judge(
        self, prep: Prepared, rated: FloatArray, step_below: FloatArray, battery_wh: FloatArray
    ) -> Verdict:
        """Both kinds of evidence for the candidate rows; the stronger one speaks (``step_below``:
        ``_step_limits`` of the rows, for a car of at least ``battery_wh``)."""
        f = self._features(prep, rated)
        below = (f.cell >= 0) & (f.ratio < f.floor)
        slow = below[:, 1:] & below[:, :-1]
        band_run = runs(slow, prep.dt_s)
        need = self._steps_needed(prep)
        x_band = np.where(slow, self._held_for(band_run, need), 0.0)
        x_step, step_run, fall_from = self._step(prep, f, step_below)
        x_rebound, rebound_run, soon = self._rebound(prep, f, need)
        # a DC car without SoC: its own taper cannot be told from a derating by the band or the
        # step, but the rebound needs no SoC (no battery's acceptance climbs back that fast)
        blind = (f.is_dc & ~f.uses_soc)[:, None]
        x_band = np.where(blind, 0.0, x_band)
        x_step = np.where(blind, 0.0, x_step)

        at_band = nan_argmax(x_band)
        at_step = nan_argmax(x_step)
        at_rebound = nan_argmax(x_rebound)
        by_step = pick(x_step, at_step) > pick(x_band, at_band)
        x = np.where(by_step, pick(x_step, at_step), pick(x_band, at_band))
        # the rebound speaks only for what the band and the step do not flag themselves: a
        # flag they raise keeps their start (the fall's origin) and their reason
        by_rebound = (pick(x_rebound, at_rebound) > x) & ~(x > 1.0)
        by_step &= ~by_rebound
        at = np.where(by_rebound, at_rebound, np.where(by_step, at_step, at_band))
        x = np.where(by_rebound, pick(x_rebound, at_rebound), x)
        first = np.where(by_step, pick(step_run.first, at), pick(band_run.first, at))
        first = np.where(by_rebound, pick(rebound_run.first, at), first)
        begin = np.maximum(first, 0).astype(np.int64)
        dur = np.where(by_step, pick(step_run.total, at), pick(band_run.total, at))
        dur = np.where(by_rebound, pick(rebound_run.total, at), dur)
        origin = np.where(by_step, np.maximum(pick(fall_from, begin), 0), begin).astype(np.int64)
        start = pick(prep.t_ns, origin).astype(np.int64)
        end = pick(prep.t_ns, at + 1).astype(np.int64)
        level = pick(f.level, begin)
        soc = pick(prep.soc_pct, begin)
        cell = pick(f.cell, begin)
        band_at = pick(f.floor, begin)
        fall_s = pick(prep.t_s, begin) - pick(prep.t_s, origin)

        def describe(rows: IntArray) -> list[str]:
            out = []
            for i in rows:
                held = prep.power_w[i, begin[i] : at[i] + 2]
                mean_p = float(np.nanmean(held))
                share = mean_p / level[i] * 100
                where = f" at {soc[i]:.0f} % SoC" if f.uses_soc[i] else ""
                if by_rebound[i]:
                    out.append(self._describe_rebound(prep, f, soon, i, begin[i], at[i], dur[i]))
                    continue
                if by_step[i]:
                    from_w = float(prep.power_w[i, origin[i]])
                    # the fall: from the last reading near that power to the stretch's start
                    near = np.flatnonzero(prep.power_w[i, : begin[i]] >= 0.95 * from_w)
                    fall_s[i] = prep.t_s[i, begin[i]] - prep.t_s[i, near[-1] if near.size else 0]
                    sized = ""
                    # a fall the step's own tiers count needs no other reason (NaN: no tier)
                    gained = soc[i] - prep.soc_pct[i, origin[i]]
                    by_tiers = (
                        gained <= self.max_fall_soc_pct and soc[i] < self.dc_step_max_soc_pct
                    ) or (
                        gained <= self.wide_fall_soc_pct and soc[i] < self.dc_wide_step_max_soc_pct
                    )
                    late = not by_tiers and soc[i] >= min(
                        self.dc_step_max_soc_pct, self.dc_wide_step_max_soc_pct
                    )
                    if late and mean_p < DEEP_KEEP * from_w:
                        sized = (
                            f" (none falls under {DEEP_KEEP * 100:.0f} % of its power before"
                            f" {DEEP_BELOW_SOC_PCT:.0f} % SoC)"
                        )
                    elif late:
                        sized = (
                            f" (the battery holds at least {battery_wh[i] / 1000.0:.0f} kWh by"
                            " the energy it took over the SoC it gained, larger than any car"
                            " whose curve steps down there)"
                        )
                    out.append(
                        f"power fell from {fmt_kw(from_w)} to {fmt_kw(mean_p)}"
                        f" ({mean_p / from_w * 100:.0f} %) within {fmt_min(fall_s[i])}{where}"
                        f" and was held there for {fmt_min(dur[i])}, with no lower offered"
                        f" power: no car's own charging curve steps down that far{sized}"
                    )
                    continue
                floor = band_at[i] * 100
                learned = self.band_learned_.reshape(-1)[max(int(cell[i]), 0)]
                if learned and floor >= self.band_.reshape(-1)[max(int(cell[i]), 0)] * 100:
                    source = "learned from this charger class's history"
                elif f.uses_soc[i] and not f.is_dc[i]:
                    kw = AC_KW_FLOOR[min(max(int(soc[i] // SOC_BIN_PCT), 0), N_SOC_BINS - 1)]
                    source = (
                        "an AC car holds its onboard charger's level until its battery takes"
                        f" less, and no published battery takes under {kw:.1f} kW there"
                    )
                elif f.uses_soc[i]:
                    source = "what published car curves draw there"
                else:
                    source = "AC cars draw full power until their last stretch"
                out.append(
                    f"power held at {fmt_kw(mean_p)} ({share:.0f} % of the {fmt_kw(level[i])}"
                    f" reached before) for {fmt_min(dur[i])}{where or ' well before full'},"
                    f" under the floor of {floor:.0f} % ({source}), with no lower offered power"
                )
            return out

        return Verdict(x=np.nan_to_num(x), start_ns=start, end_ns=end, describe=describe)

    def _step(
        self, prep: Prepared, f: _Taper, step_below: FloatArray
    ) -> tuple[FloatArray, Runs, IntArray]:
        """Evidence per step of a sudden fall held for a while (see ``_falls``): power drops
        under (1 - ``min_drop``) of a reading a few minutes and a few % of SoC before, then
        stays under that while above ``hold_fraction`` of where it settled. Also, per
        reading, the index of the reading each fall is measured from (-1 where none)."""
        p, t, soc = prep.power_w, prep.t_s, prep.soc_pct
        fell, before, origin = _falls(
            p,
            t,
            soc,
            prep.interval_s,
            max_fall_s=self.max_fall_s,
            max_fall_soc_pct=max(self.max_fall_soc_pct, self.wide_fall_soc_pct),
            drop=self.min_drop,
            strict=True,
            level=f.level,
            limit=f.limit,
        )
        charging = (p > self.near_zero_w) & (prep.status != StatusCode.SUSPENDED_EV)
        self._add_wide_falls(prep, f, fell, before, origin, charging)
        # a fall must be complete where published DC curves (of cars with a battery as large
        # as the session shows, ``_step_limits``) do not fall that far over as much SoC
        # themselves; once fallen, the stretch it holds may go on beyond. Without SoC (NaN)
        # no tier applies: the comparisons are False, the fall stands.
        gained = soc - np.take_along_axis(soc, np.maximum(origin, 0), axis=1)
        narrow = (gained <= self.max_fall_soc_pct) & ~(soc >= step_below[:, :1])
        deep = (p < DEEP_KEEP * before) & ~(soc >= DEEP_BELOW_SOC_PCT)
        counted = fell & charging & (narrow | ~(soc >= step_below[:, 1:]) | deep)
        # The origin above is the highest earlier power over the wider span; a fall that
        # spans too much SoC from there may still be a step within the narrow span from a
        # nearer reading, and counts from that one (an independently written fleet, seed 323:
        # 34 kW at 60 % SoC, 17.8 kW at 65 %, read every 15 s, judged only against 37.6 kW
        # at 56 %, 9 % of SoC before, and missed).
        retry = fell & charging & ~counted & ~(soc >= step_below[:, :1])
        rows = np.flatnonzero(retry.any(axis=1))
        if rows.size:  # on those rows only
            near, near_before, near_origin = _falls(
                p[rows],
                t[rows],
                soc[rows],
                prep.interval_s[rows],
                max_fall_s=self.max_fall_s,
                max_fall_soc_pct=self.max_fall_soc_pct,
                drop=self.min_drop,
                strict=True,
                level=f.level[rows],
                limit=f.limit[rows],
            )
            near &= retry[rows]
            before[rows] = np.where(near, near_before, before[rows])
            origin[rows] = np.where(near, near_origin, origin[rows])
            counted[rows] |= near
        fell = counted
        # the power it fell from, carried forward: the stretch stays under its share of that.
        # Readings late in a fall compare with earlier ones that are part of the fall too, so
        # over one fall (falling readings less than ``max_fall_s`` apart) the highest is kept:
        # a running max of (fall number x 1e9 + power) that each new fall outgrows (no
        # charger delivers a GW)
        t_fell = np.where(fell, t, np.nan)
        previous = np.concatenate((np.full((p.shape[0], 1), np.nan), t_fell[:, :-1]), axis=1)
        previous = np.fmax.accumulate(previous, axis=1)  # the last falling reading before
        new_fall = fell & ~(t - previous <= self.max_fall_s)
        fall_no = np.cumsum(new_fall, axis=1) * 1e9
        highest = np.maximum.accumulate(np.where(fell, fall_no + before, -np.inf), axis=1)
        pre = forward_fill(np.where(fell, highest - fall_no, np.nan))
        low = charging & (p < (1.0 - self.min_drop) * np.minimum(pre, f.limit))
        low_run = runs(low)
        first = np.maximum(low_run.first, 0)
        abrupt = np.take_along_axis(fell, first, axis=1)  # the stretch begins with a fall
        # where it settled: the lowest power over the pre-fall power in the first
        # ``max_fall_s`` of the stretch, by a running max of (run number + 1 - that share)
        # that each new run outgrows
        t_first = np.take_along_axis(t, first, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            fallen = np.clip(p / np.take_along_axis(pre, first, axis=1), 0.0, 1.0)
        settling = low & (t - t_first <= self.max_fall_s)
        run_no = np.cumsum(low_run.length == 1, axis=1)
        key = run_no + np.where(settling, 1.0 - fallen, 0.0)
        settled = 1.0 - (np.maximum.accumulate(key, axis=1) - run_no)
        held = low & abrupt & (fallen >= self.hold_fraction * settled)
        held &= ~_keeps_falling(prep, low, (t - t_first > self.max_fall_s) & ~f.uses_soc[:, None])
        step = held[:, 1:] & held[:, :-1] & (low_run.first[:, 1:] == low_run.first[:, :-1])
        hold = runs(step, prep.dt_s)
        hold = replace(hold, total=np.where(step, hold.total + _fallen_before_s(prep, hold), 0.0))
        from_start = hold.first == low_run.first[:, 1:]
        x = np.where(step & from_start, hold.total / self.min_duration_s, 0.0)
        # A stretch that charging never comes back from before it ends (the session stops, the
        # car stops drawing) was cut short, not a transient: ``min_cut_short_s`` is enough ...
        # unless, without SoC, it was still falling at a battery tail's pace to its end: a
        # stretch settled within ``max_fall_s`` is never judged for that above, and a tail cut
        # by the end of the readings is no hold (an independently written fleet, seed 132 with
        # --sparse-sampling 0.3, b3576451: an AC car's taper 3.7 to 1.1 kW over 10 min, then 65
        # min without readings, read as "fell to 1.6 kW, held 5 min")
        tail = _keeps_falling(prep, low, low & ~f.uses_soc[:, None])[:, 1:]
        x = np.maximum(
            x, self._cut_short(prep, charging & ~low, charging, step & ~tail, hold, from_start)
        )
        # Without SoC, only the energy still to come tells a fall well before full from a car
        # that drops to a low balancing current for its last few % (some do, for half an
        # hour): the charge must still take ``min_minutes_at_peak_after_fall`` at its peak
        # power from where the fall began
        without_soc = ~f.uses_soc
        if without_soc.any():
            to_go = np.take_along_axis(self._minutes_to_go(prep, without_soc), first, axis=1)
            near_full = without_soc[:, None] & ~(to_go >= self.min_minutes_at_peak_after_fall)
            x = np.where(near_full[:, 1:], 0.0, x)
        return np.asarray(x), hold, np.take_along_axis(origin, first, axis=1)

    def _add_wide_falls(
        self,
        prep: Prepared,
        f: _Taper,
        fell: BoolArray,
        before: FloatArray,
        origin: IntArray,
        charging: BoolArray,
    ) -> None:
        """Add (in place) to ``_falls``' result the falls that span more SoC than the step's
        tiers, up to ``DEEP_WIDE_SPAN_PCT``, each by the narrowest of ``WIDE_TIERS`` that
        holds it (deep ones complete below its deep limit, the others below its step's): looked
        for only in rows where SoC moves by more than the widest tier between two readings (no
        other row can hold one); the falls already found keep their origin."""
        soc = prep.soc_pct
        if soc.shape[1] < 2:
            return
        widest = self.wide_fall_soc_pct
        with np.errstate(invalid="ignore"):
            moved = np.nanmax(np.abs(np.diff(forward_fill(soc), axis=1)), axis=1, initial=0.0)
        rows = np.flatnonzero(moved > widest)
        if rows.size == 0:
            return
        p, t, soc_ = prep.power_w[rows], prep.t_s[rows], soc[rows]
        fell_, before_, origin_ = fell[rows], before[rows], origin[rows]
        for span, step_below, deep_below in WIDE_TIERS:  # narrowest first
            wide, before_w, origin_w = _falls(
                p,
                t,
                soc_,
                prep.interval_s[rows],
                max_fall_s=self.max_fall_s,
                max_fall_soc_pct=span,
                drop=self.min_drop,
                strict=True,
                level=f.level[rows],
                limit=f.limit[rows],
            )
            add = wide & ~fell_ & charging[rows]
            deep = (p < DEEP_KEEP * before_w) & ~(soc_ >= deep_below)
            add &= deep | ~(soc_ >= step_below)  # a step (``_falls``' drop)
            fell_ |= add
            np.copyto(before_, before_w, where=add)
            np.copyto(origin_, origin_w, where=add)
        fell[rows], before[rows], origin[rows] = fell_, before_, origin_

    def _rebound(
        self, prep: Prepared, f: _Taper, need: FloatArray
    ) -> tuple[FloatArray, Runs, FloatArray]:
        """Evidence per step of a DC dip that the session climbs out of at once.

        The dip: readings ``Charging`` (under 100 % SoC, above ``near_zero_w``), fallen under
        ``band_margin`` of the highest power so far, and under 1 / ``_rebound_factor`` of the
        climb after them: the most that two later such readings in a row both draw, up to what
        is offered at the dip's reading (a lower offer explains the dip). A battery's
        acceptance does not climb back (``REBOUND_LIMIT``). Held like the band: the steps it
        ``need``s (``_steps_needed``) and ``min_duration_s``, so that it is a derating, not a
        limit message in flight or a car's pause of a minute or two.

        The climb out of it must be abrupt: within ``rebound_within_s`` or two sampling
        intervals (whichever is longer) of the dip's last reading, power is back above
        ``_rebound_factor`` times the higher of the dip's last two readings. A derating that
        clears (a module back, a limit lifted) gives its power back as fast as the charger
        ramps its current; power that climbs back over minutes follows the car's own
        acceptance, which changes as its pack warms or cools, and published curves are of warm
        packs: such a climb is no evidence against the car (the band still judges the dip
        itself).

        Evidence is at the dip's last step only (elsewhere 0). Also, per reading, the power
        climbed back to that soon after it (NaN where none)."""
        p = prep.power_w
        n, m = p.shape
        if m < 3:
            empty = np.zeros((n, max(m - 1, 0)), dtype=bool)
            return np.zeros(empty.shape), runs(empty), np.full((n, m), np.nan)
        charging = (
            f.is_dc[:, None]
            & (prep.status == StatusCode.CHARGING)
            & (p > self.near_zero_w)
            & ~(prep.soc_pct >= 100.0)
        )
        both = charging[:, 1:] & charging[:, :-1]
        pair = np.where(both, np.fmin(p[:, 1:], p[:, :-1]), np.nan)  # readings j and j + 1
        # an offer holds until the next one: over the dip, what was last offered caps the climb
        offered = forward_fill(prep.offered_w)
        cap = np.where(np.isnan(offered), np.inf, offered)
        climb = np.full((n, m), np.nan)
        climb[:, :-2] = _later_max(pair)[:, 1:]  # for reading i: pairs from i + 1 on
        climb = np.minimum(climb, cap)  # NaN (nothing later) stays NaN
        factor = self._rebound_factor()
        dip = charging & (p * factor < climb)
        # ... fallen from the highest power so far, or held low from the start: a session that
        # never yet drew within ``factor`` of what it draws later (a cold pack that takes 24-45
        # % of its curve until it warms, or a charger whose modules gave out before the car
        # came; CONTRACTS.md section 3 names both). No published curve climbs that far from
        # its lowest point even from 0 % SoC (REBOUND_LIMIT: 1.27, the MX-30's)
        peak_so_far = _peak_so_far(np.where(charging, p, np.nan))
        held_low = peak_so_far * factor < climb
        dip &= (p < self.band_margin * _peak_so_far(p)) | held_low
        steps = dip[:, 1:] & dip[:, :-1]
        run = runs(steps, prep.dt_s)
        last = steps & ~np.concatenate((steps[:, 1:], np.zeros((n, 1), dtype=bool)), axis=1)
        soon = np.full((n, m), np.nan)
        rows = np.flatnonzero(last.any(axis=1))
        if rows.size:
            # for reading b: the highest pair starting soon after it; times increase along a
            # row, so once no row has a pair that close at some lag, none has at a longer one
            t = prep.t_s[rows]
            pair_ = pair[rows]
            interval = np.nan_to_num(prep.interval_s[rows])[:, None]
            window = np.maximum(self.rebound_within_s, 2.0 * interval)
            near = np.full((rows.size, m), np.nan)
            for lag in range(1, m - 1):
                within = t[:, lag : m - 1] - t[:, : m - 1 - lag] <= window
                if not within.any():
                    break
                near[:, : m - 1 - lag] = np.fmax(
                    near[:, : m - 1 - lag], np.where(within, pair_[:, lag:], np.nan)
                )
            soon[rows] = np.minimum(near, cap[rows])
        # at the dip's last step (readings k, k + 1): back above ``factor`` times the higher of
        # the two, soon after reading k + 1
        end_level = np.fmax(p[:, 1:], p[:, :-1])
        abrupt = last & (soon[:, 1:] > factor * end_level)
        # a start held low needs no abrupt climb: a cold pack gives its power back as it warms,
        # over minutes (field fleet seeds 1-4: 74 cold starts at 24-45 % of the curve, warming
        # over 14-40 min, missed); what it draws later, at a higher SoC, shows what it could
        low_start = last & held_low[:, 1:]
        low_start &= np.take_along_axis(held_low, np.maximum(run.first, 0), axis=1)
        # ... from a dip that held: one whose own end had already climbed by ``factor`` from
        # its lowest reading is a slow climb going on (a normal session of an independently
        # written fleet, seed 133 half sparse, 530832f6: 1.9, 2.9, 4.4, 6.7, 10.0, 15.4 kW
        # read every 5 min at 73-79 % SoC, each step "1.5 times within two intervals")
        # A climb within the dip that a raised offer allowed is not the car's: that is judged
        # from the offer's last rise on (field fleet seed 4, FLD0025A-22113: derated to 43 %,
        # 10.7 kW under a 25 kW offer, then 20.3 kW under 50 kW, then 47.6 kW at once)
        for r, c in zip(*np.nonzero(abrupt & ~low_start), strict=True):
            first = int(run.first[r, c])
            rose = np.flatnonzero(cap[r, first + 1 : c + 2] > cap[r, first : c + 1])
            if rose.size:
                first += int(rose[-1]) + 1
            lowest = np.nanmin(p[r, first : c + 2])
            if end_level[r, c] > factor * lowest:
                abrupt[r, c] = False
        # a start held low is no transient either (what ``min_duration_s`` guards against comes
        # back, and at once): ``min_low_start_s`` of it over two steps, past any ramp-up (a DC
        # charger follows the car's current request at tens of amperes a second; a normal
        # start reaches its curve within a minute), is enough (field fleet seed 1,
        # FLD0066A-58592: 59 kW at 24 % SoC climbing as the pack warmed to 147 kW at 57 %,
        # under 1/1.49 of it for 7.5 min, missed; FLD0046A-32257: 36 kW at 18 % SoC read every
        # minute, climbing to 62 kW, under the share for 2 min, missed at 5 min)
        held_low_for = np.minimum(run.total / self.min_low_start_s, run.length / 2.0)
        x = np.where(abrupt, self._held_for(run, need), 0.0)
        x = np.where(low_start, np.fmax(x, held_low_for), x)
        # what a start held low climbed to later, for its reason (``_describe_rebound``)
        r_low, c_low = np.nonzero(low_start)
        soon[r_low, c_low + 1] = np.fmax(soon[r_low, c_low + 1], climb[r_low, c_low + 1])
        return np.asarray(x), run, soon

    def _describe_rebound(
        self,
        prep: Prepared,
        f: _Taper,
        soon: FloatArray,
        i: int,
        begin: int,
        at: int,
        dur_s: float,
    ) -> str:
        """The reason of a rebound flag: the dip and what the session climbed back to."""
        p, soc, t = prep.power_w[i], prep.soc_pct[i], prep.t_s[i]
        end = at + 1  # the dip's last reading
        mean_p = float(np.nanmean(p[begin : end + 1]))
        before = float(np.nanmax(p[: begin + 1]))
        back = float(soon[i, end])
        later = np.flatnonzero(p[end + 1 :] >= back) + end + 1
        j = int(later[0]) if later.size else end
        s0, s1 = float(soc[end]), float(soc[j])
        at_soc = f" at {float(soc[begin]):.0f}-{s0:.0f} % SoC" if not np.isnan(s0) else ""
        then_soc = f" at {s1:.0f} % SoC" if not np.isnan(s1) else ""
        # held low from the start (``_rebound``): under what came later, as far as the offer
        # at the dip's start allowed it
        offered = forward_fill(prep.offered_w[i : i + 1])[0, begin]
        if before * self._rebound_factor() < min(back, np.inf if np.isnan(offered) else offered):
            return (
                f"power held at {fmt_kw(mean_p)} from the start{at_soc} for {fmt_min(dur_s)},"
                f" then climbed to {fmt_kw(back)}{then_soc} ({back / mean_p:.1f} times what"
                " it held), with no lower offered power: no car's own"
                f" charging curve climbs to more than {self.rebound_limit:.2f} times its"
                " lowest (a cold battery warming, or power modules out)"
            )
        return (
            f"power fell from {fmt_kw(before)} to {fmt_kw(mean_p)}{at_soc} and was held there"
            f" for {fmt_min(dur_s)}, then climbed back to {fmt_kw(back)}{then_soc} within"
            f" {fmt_min(float(t[j] - t[end]))} ({back / float(p[end]):.1f} times its last"
            f" {fmt_kw(float(p[end]))}), with no lower offered power: no car's own charging"
            f" curve climbs back to more than {self.rebound_limit:.2f} times its lowest"
        )

    def _cut_short(
        self,
        prep: Prepared,
        recovered: BoolArray,
        charging: BoolArray,
        step: BoolArray,
        hold: Runs,
        from_start: BoolArray,
    ) -> FloatArray:
        """Evidence at the last step of each held stretch after which power does not come back
        (``recovered``: back to the share of the pre-fall power) before charging ends or the
        readings do: its length over ``min_cut_short_s``, with ``min_steps`` steps at least."""
        n, m = prep.power_w.shape
        if m < 2:
            return np.zeros((n, max(m - 1, 0)))
        idx = np.arange(m)
        stopped = prep.valid & ~np.isnan(prep.power_w) & ~charging
        next_back = np.minimum.accumulate(np.where(recovered, idx, m + 1)[:, ::-1], axis=1)
        next_stop = np.minimum.accumulate(np.where(stopped, idx, m)[:, ::-1], axis=1)
        # for the step between readings j and j + 1: what comes first from reading j + 2 on
        never_back = (next_stop < next_back)[:, ::-1][:, 2:]
        never_back = np.concatenate((never_back, np.ones((n, 1), dtype=bool)), axis=1)
        last = step & ~np.concatenate((step[:, 1:], np.zeros((n, 1), dtype=bool)), axis=1)
        cut = last & from_start & never_back & (hold.length >= self.min_steps)
        return np.asarray(np.where(cut, hold.total / self.min_cut_short_s, 0.0))


# The stop's reading is added only where the register's mean power from the last reading to
# the stop was read over this long at least, within this share of its own value (the step's
# resolution at both ends).
STOP_READING_MIN_S = 60.0
STOP_READING_RESOLUTION = 0.1


def _with_stop_reading(
    batch: SessionBatch, hold_fraction: float, near_zero_w: float, band_margin: float
) -> tuple[IntArray, SessionBatch]:
    """The rows of ``batch`` whose power held from the last reading to the stop, by the
    register, while low, and those rows with one reading more at the stop. Held: the
    transaction's meterStop less the last reading's register, over the time between them, is
    within ``hold_fraction`` of the last reading's power either way (a charge that went on as
    it was, not one that ended or tapered away in between). Low: the last reading under
    ``band_margin`` of the session's peak, where a stretch under the band or a step can be
    going on at all. The reading carries the mean power and meterStop, and a SoC of 100 %
    where the session reports SoC: the most it can be, so that no fall counts there (a fall
    must be complete below a SoC where published curves do not fall as far) while a stretch
    already held goes on to it. A derate on a station sampling every 10-15 min often shows in
    one or two readings before the driver stops: the stop is then the reading that shows it
    held (an independently written fleet, seed 252: 129 kW at 45 % SoC, 40 kW at 54 %, then
    40 kW by the register for 4 min to the stop; "fewer than 3 readings")."""
    n, m = batch.t_ns.shape
    none = np.zeros(0, dtype=np.int64)
    if n == 0 or m == 0:
        return none, batch
    count = batch.n_samples
    last = np.maximum(count - 1, 0)
    t_last = pick(batch.t_ns, last)
    e_last = pick(batch.energy_wh, last)
    p_last = pick(batch.power_w, last)
    tail_s = (batch.stop_ns - t_last) / NS_PER_S
    tail_wh = batch.meter_stop_wh - e_last
    step_wh = meter_values_resolution_wh(e_last, batch.meter_stop_wh)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail_w = tail_wh / tail_s * 3600.0
        ok = (
            (count > 0)
            & (batch.stop_ns != NO_TIME)
            & ~is_none(batch.session_id)
            & (tail_s >= STOP_READING_MIN_S)
            & (2.0 * step_wh <= STOP_READING_RESOLUTION * tail_wh)
            & (p_last > near_zero_w)
            & (p_last < band_margin * row_max(np.where(batch.valid, batch.power_w, np.nan)))
            & (tail_w >= hold_fraction * p_last)
            & (tail_w <= p_last / hold_fraction)
        )
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return none, batch
    sub = batch.take(rows)
    wide = sub.padded(int(sub.n_samples.max()) + 1)
    count, last = count[rows], last[rows]
    every = np.arange(rows.size)
    # the chosen rows, one column wider: the stop's reading at column ``count``
    wide.t_ns[every, count] = sub.stop_ns
    wide.valid[every, count] = True
    wide.arrival[every, count] = sub.arrival.max(axis=1) + 1
    wide.energy_wh[every, count] = sub.meter_stop_wh
    wide.power_w[every, count] = tail_w[rows]
    wide.power_offered_w[every, count] = sub.power_offered_w[every, last]
    has_soc = np.any(~np.isnan(sub.soc_pct), axis=1)
    wide.soc_pct[every, count] = np.where(has_soc, 100.0, np.nan)
    for name in ("status", "status_since_ns", "status_until_ns"):
        getattr(wide, name)[every, count] = getattr(sub, name)[every, last]
    wide.n_samples[:] += 1
    return rows, wide


def _keeps_falling(prep: Prepared, low: BoolArray, judged: BoolArray) -> BoolArray:
    """Per reading ``(n, m)``: a ``judged`` reading of a low stretch that fell, as did the one
    before it, faster than a battery's tail decays (``TAIL_DECAY_S``, less ``READING_NOISE``)."""
    n, m = low.shape
    out = np.zeros((n, m), dtype=bool)
    if m < 3 or not judged.any():
        return out
    p = prep.power_w
    keep = np.exp(-prep.dt_s / TAIL_DECAY_S) - READING_NOISE
    with np.errstate(invalid="ignore", divide="ignore"):
        falling = low[:, 1:] & low[:, :-1] & (p[:, 1:] < keep * p[:, :-1])
    out[:, 2:] = falling[:, 1:] & falling[:, :-1]
    return out & judged


def _fallen_before_s(prep: Prepared, hold: Runs) -> FloatArray:
    """Per step of a held stretch ``(n, m - 1)``: how long before its first held reading power
    had already fallen, by the register over the step before it. A fall from P1 to P2 at one
    moment of that step leaves the step's mean power (its register step over its time) at P1
    until the fall and P2 after, so the share spent fallen is (P1 - mean) / (P1 - P2); half of
    that is counted, as the fall may have been spread over the step rather than at one moment.
    0 where the register or a power is missing. On a station sampling every 5-15 min the fall
    lies anywhere in a long step before the first reading that shows it: a derate held for
    12.7 min before the stop read as exactly 10 (an independently written fleet, seed 122 with
    --sparse-sampling 0.5, 804746); at 10-60 s sampling it adds seconds."""
    n, k = prep.dt_s.shape
    out = np.zeros((n, k))
    first = hold.first.astype(np.int64)
    rows, cols = np.nonzero((first >= 1) & (hold.length > 0))
    if rows.size == 0:
        return out
    held_at = first[rows, cols]  # the first held reading (a step's first reading)
    fall = held_at - 1  # the step before it
    p_hi, p_lo = prep.power_w[rows, fall], prep.power_w[rows, held_at]
    dt = prep.dt_s[rows, fall]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = prep.de_wh[rows, fall] / dt * 3600.0
        share = np.clip((p_hi - mean) / (p_hi - p_lo), 0.0, 1.0)
    out[rows, cols] = np.nan_to_num(0.5 * share * dt)
    return out


@dataclass(frozen=True, slots=True)
class _Taper:
    """``EarlyTaper``'s per-reading features of some rows."""

    ratio: FloatArray  # power over level
    cell: IntArray  # class x N_BINS + bin, -1 where not comparable
    floor: FloatArray  # the band there (power over level), NaN where not comparable or learning
    uses_soc: BoolArray  # per row: judged against SoC
    level: FloatArray  # highest power so far, capped by the offer
    limit: FloatArray  # what the offer allows the car at each reading (inf when not sent)
    is_dc: BoolArray  # per row


# Readings at this share of a session's peak power or more are at its level (sensor noise
# and the small swings of a steady charge stay within 10 %).
AT_LEVEL = 0.9


def _limit_and_level(
    p: FloatArray, offered: FloatArray, peak: FloatArray, is_dc: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """Per reading: what the offer allows the car (inf when no offer is sent), and the level:
    the highest power so far, capped by that. On AC a car on fewer phases than the charger
    draws a share of what is offered: the share it drew at its level, the median of power over
    offer across its readings at 90 % of its peak or more. Not at the peak alone: the reading
    where a station lowered its offer (load management) may still show the power drawn before,
    and a single-phase car at 3.6 kW of 11 kW offered, then 1.6 kW of 4.8 kW, read as drawing
    76 % of its offer, so the offer no longer explained its fall (the simulator's fleet, seed
    9911: a false early_taper)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        drawn = np.where((p >= AT_LEVEL * peak[:, None]) & (offered > 0), p / offered, np.nan)
    at_level = row_median(drawn)
    share = np.where(is_dc | np.isnan(at_level), 1.0, np.clip(at_level, 0.0, 1.0))
    limit = np.where(np.isnan(offered), np.inf, offered * share[:, None])
    return limit, np.minimum(_peak_so_far(p), limit)


def _falls(
    p: FloatArray,
    t: FloatArray,
    soc: FloatArray,
    interval_s: FloatArray,
    *,
    max_fall_s: float,
    max_fall_soc_pct: float,
    drop: float,
    strict: bool = False,
    level: FloatArray | None = None,
    limit: FloatArray | None = None,
    track: bool = True,
) -> tuple[BoolArray, FloatArray, IntArray]:
    """Per reading: is power more than ``drop`` below a reading a little earlier? Earlier by
    about ``max_fall_s`` (in the row's sampling interval), at most ``max_fall_s`` plus one
    interval before; in rows with SoC also half and a quarter of that, and at most
    ``max_fall_soc_pct`` of SoC below: within 5 % SoC no published DC curve falls under 67 %
    of an earlier point. Also (with ``track``) the highest such earlier power (NaN where none)
    and its index (-1).

    ``strict``: in rows with SoC, only readings whose SoC is known at both ends count. With
    ``level`` rows without SoC count only falls from a reading at its level (AC cars draw a
    flat current until their own taper, which starts lower down); with ``limit`` (what the
    offer allows at each reading) the earlier power counts only up to what is offered now, so
    power following a lower offer down is no fall. Without these the result is a superset of
    theirs: the cheap first pass uses it so. Rows alike are worked on together, so every
    comparison is between two slices of the same rows.
    """
    n, m = p.shape
    fell = np.zeros((n, m), dtype=bool)
    before = np.full((n, m), np.nan)
    origin = np.full((n, m), -1, dtype=np.int64)
    usable = interval_s > 0
    if m < 2 or not usable.any():
        return fell, before, origin
    has_soc = np.any(~np.isnan(soc), axis=1)
    per_interval = np.zeros(n, dtype=np.int64)
    per_interval[usable] = np.floor(max_fall_s / interval_s[usable])
    # rows alike in readings per ``max_fall_s`` and in having SoC are worked on together
    group = per_interval * 2 + has_soc
    for key in np.unique(group[usable]).tolist():
        rows = np.flatnonzero(usable & (group == key))
        readings, with_soc = key // 2, bool(key % 2)
        # the rows' columns once; every lag below compares two slices (views) of them
        p_, t_ = p[rows], t[rows]
        soc_ = soc[rows] if with_soc else None
        limit_ = limit[rows] if limit is not None else None
        fell_ = fell[rows]
        if track:
            before_, origin_ = before[rows], origin[rows]
        strict_soc = with_soc and strict
        at_level = level is not None and not with_soc
        # without SoC a fall within ``max_fall_s`` shows against the reading that far back;
        # with it the 5 % SoC may be reached sooner, so shorter lags are tried too
        for divisor in (1, 2, 4) if with_soc else (1,):
            lag = min(max(readings // divisor, 1), m - 1)
            now_p, then_p = p_[:, lag:], p_[:, :-lag]
            if limit_ is not None:
                then_p = np.minimum(then_p, limit_[:, lag:])
            ok = now_p < (1.0 - drop) * then_p
            ok &= t_[:, lag:] - t_[:, :-lag] <= max_fall_s / divisor + interval_s[rows, None]
            if soc_ is not None:
                gained = soc_[:, lag:] - soc_[:, :-lag]
                ok &= gained <= max_fall_soc_pct if strict_soc else ~(gained > max_fall_soc_pct)
            if at_level:
                assert level is not None
                ok &= then_p >= 0.9 * level[rows, :-lag]
            fell_[:, lag:] |= ok
            if track:
                higher = ok & ~(before_[:, lag:] >= then_p)
                np.copyto(before_[:, lag:], then_p, where=higher)
                np.copyto(origin_[:, lag:], np.arange(m - lag), where=higher)
        fell[rows] = fell_
        if track:
            before[rows], origin[rows] = before_, origin_
    return fell, before, origin


def _later_max(values: FloatArray) -> FloatArray:
    """The highest value at or after each position along the rows (NaN ignored; NaN where
    none)."""
    if values.shape[1] == 0:
        return values.copy()
    return np.asarray(np.fmax.accumulate(values[:, ::-1], axis=1)[:, ::-1])


def _peak_so_far(power_w: FloatArray) -> FloatArray:
    """The highest power reached up to each reading (NaN ignored)."""
    if power_w.shape[1] == 0:
        return power_w.copy()
    return np.asarray(np.fmax.accumulate(power_w, axis=1))


def _rated_class(rated: FloatArray) -> IntArray:
    klass = np.searchsorted(RATED_EDGES_W, np.nan_to_num(rated), side="right") - 1
    return np.asarray(np.clip(klass, 0, N_CLASSES - 1), dtype=np.int64)


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


def battery_at_least_wh(prep: Prepared, resolution_pct: FloatArray) -> FloatArray:
    """Per row: the least usable capacity (Wh) the car can have, by the energy it took over the
    SoC it gained; 0 where that cannot be told.

    Over the readings from its first SoC to where its highest SoC was first reported (a figure
    held after that adds energy, not SoC): the energy is a lower bound (the least both the
    register and power allow, ``energy_bounds``, none counted across a gap of more than
    ``CAPACITY_GAP_INTERVALS`` intervals), of which at least ``EFFICIENCY_MIN`` reached the
    battery; the gain is an upper bound (the reported gain, one reporting step,
    ``SOC_LAG_PCT``). ``prep`` is after ``_charged_soc`` (SoC in doubt is NaN),
    ``resolution_pct`` the reporting step of the reported SoC."""
    n, m = prep.soc_pct.shape
    out = np.zeros(n)
    has = ~np.isnan(prep.soc_pct)
    rows = np.flatnonzero(has.any(axis=1)) if m > 1 else np.zeros(0, dtype=np.int64)
    if rows.size == 0:
        return out
    sub = take_rows(prep, rows)
    soc, has = sub.soc_pct, has[rows]
    first = np.argmax(has, axis=1)
    top = np.nanmax(soc, axis=1)
    last = np.argmax(has & (soc >= top[:, None]), axis=1)
    gained = top - pick(soc, first)
    least_wh, _ = energy_bounds(sub)
    short = sub.dt_s <= CAPACITY_GAP_INTERVALS * sub.interval_s[:, None]
    cum = cumulative_wh(np.where(short, least_wh, 0.0))
    energy = pick(cum, last) - pick(cum, first)
    span = gained + np.maximum(resolution_pct[rows], WHOLE_PERCENT_PCT) + SOC_LAG_PCT
    out[rows] = energy * EFFICIENCY_MIN / span * 100.0
    return out


def _soc_after_reports_end(prep: Prepared, battery_wh: FloatArray) -> Prepared:
    """``prep`` with the readings after a car's last SoC report given the most SoC it can have
    reached by then: the last report, plus all the energy since (the most register and power
    allow, ``energy_bounds``) over the least battery the car can have (``battery_wh``:
    ``battery_at_least_wh``), at most 100 %. A car that stops reporting SoC is normal, and an
    upper bound judges it by the most permissive floor its SoC allows; without it the readings
    after the last report judged nothing: 49 kW to 35 % SoC, then 15.5 kW held for an hour
    with no SoC reported from the fall on (outside fleet seed 4, 433114: a failed module,
    missed). Rows whose battery is not known (0) are left as they are; the bound stays under
    ``BOUND_SOC_MAX_PCT``."""
    soc = prep.soc_pct
    m = soc.shape[1]
    if m < 2:
        return prep
    has = ~np.isnan(soc)
    last = m - 1 - np.argmax(has[:, ::-1], axis=1)
    rows = np.flatnonzero(has.any(axis=1) & (last < prep.count - 1) & (battery_wh > 0))
    if rows.size == 0:
        return prep
    sub = take_rows(prep, rows)
    _, most_wh = energy_bounds(sub)
    cum = cumulative_wh(np.nan_to_num(most_wh))
    unknown = cumulative_wh(np.isnan(most_wh).astype(np.float64))  # a step that may hold all
    at = last[rows]
    since_wh = cum - pick(cum, at)[:, None]
    upper = pick(sub.soc_pct, at)[:, None] + since_wh / battery_wh[rows, None] * 100.0
    upper = np.where(unknown > pick(unknown, at)[:, None], 100.0, upper)
    after = (np.arange(m) > at[:, None]) & sub.valid
    filled = soc.copy()
    # under 100 %: a bound, never a report of a full car (the rebound leaves out readings
    # reported at 100 %, a full car's balancing; the band and the step judge nothing there)
    filled[rows] = np.where(after, np.minimum(upper, BOUND_SOC_MAX_PCT), sub.soc_pct)
    return replace(prep, soc_pct=filled)


BOUND_SOC_MAX_PCT = 99.0


def _charged_soc(prep: Prepared) -> Prepared:
    """``prep`` with each reported SoC raised to the most the battery can hold by then.

    - A battery taking energy does not lose charge, so where a car's SoC falls while it
      charges the report is wrong, not the battery (``soc_inconsistent`` says so), and the car
      is at least as full as it said earlier: each SoC is raised to the highest reported before
      it. Judged at the lower, wrong figure a car's own taper at 81 % looked like a derate at
      63 % (a false early_taper on a session whose SoC dipped 18 % for a minute).
    - A car that reports SoC in coarse steps (``soc_resolution_pct``: 2, 5 or 10 %) may be up
      to one step fuller than it says: "65 %" in 5 % steps is 65-70 %. The limits of the step
      tiers (65.8 %, 63.4 %) leave a margin for whole-percent reports; the rest of a coarser
      step is added. Judged at "65 %", a car's own step at 69 % (its report turned 70 % a
      minute later) was a false early_taper in a simulated fleet (seed 6161).

    - A fall of more than two of its reporting steps (``SOC_FALL_STEPS``) leaves every later
      report in doubt: the car's own figure may be off by the fall from then on (reported 21 %
      after 44 %, then climbing from there, its own taper at a reported 53 % was taken for a
      derate: an independently written fleet, seed 22), or the fall was a correction and the
      earlier figures were off. ``soc_inconsistent`` flags the fall; here the readings after
      it have no SoC, so they are in no band's cell and judge nothing.

    Readings without SoC stay without; a session with neither is returned as it is (no copy).
    """
    soc = prep.soc_pct
    if soc.shape[1] < 2:
        return prep
    has = ~np.isnan(soc)
    running = np.fmax.accumulate(soc, axis=1)  # NaN (no SoC) is skipped, not carried
    fall = running[:, :-1] - soc[:, 1:]  # NaN where either is missing: compares False
    dips = bool(np.any(fall > 0))
    resolution = soc_resolution_pct(soc, has)
    coarse = resolution - WHOLE_PERCENT_PCT
    stale = _stale_soc(prep, soc, has, resolution)
    if not dips and not stale.any() and not np.any((coarse > 0) & has.any(axis=1)):
        return prep
    raised = np.where(has, running + np.maximum(coarse, 0.0)[:, None], np.nan)
    big = fall > SOC_FALL_STEPS * np.maximum(resolution, WHOLE_PERCENT_PCT)[:, None]
    if big.any():
        after = np.zeros_like(has)
        after[:, 1:] = np.maximum.accumulate(big, axis=1)
        raised[after] = np.nan
    if stale.any():
        raised[np.maximum.accumulate(stale, axis=1)] = np.nan
    return replace(prep, soc_pct=np.minimum(raised, 100.0))


# A SoC held is stale only over "tens of kWh" (CONTRACTS.md section 3, soc_inconsistent's flat
# test, ``min_flat_wh``): a car that updates its figure every half minute at 350 kW holds one
# value over 3 kWh.
STALE_SOC_MIN_WH = 10_000.0


def _stale_soc(prep: Prepared, soc: FloatArray, has: BoolArray, res: FloatArray) -> BoolArray:
    """Readings whose SoC (below full) has held one value while more energy flowed than one
    reporting step of the largest published battery takes (``largest_capacity_wh``, at the
    lowest charging efficiency), and ``STALE_SOC_MIN_WH`` at least: the figure is stale or
    stuck, not the car's. Judged at such a figure (23 % held while 16 kWh flowed), a car's
    own taper was taken for a derate (an independently written fleet, seed 41);
    ``soc_inconsistent`` flags the flat SoC, and from here on the readings have no SoC for
    the band."""
    n, m = soc.shape
    p = prep.power_w
    step_wh = np.nan_to_num(np.maximum(trapezoid_wh(p, prep.dt_s), 0.0))
    cum = np.concatenate((np.zeros((n, 1)), np.cumsum(step_wh, axis=1)), axis=1)
    previous = np.concatenate((np.full((n, 1), np.nan), forward_fill(soc)[:, :-1]), axis=1)
    begins = has & ~(soc == previous)
    cols = np.broadcast_to(np.arange(m), (n, m))
    first = np.maximum.accumulate(np.where(begins, cols, 0), axis=1)
    held_wh = cum - np.take_along_axis(cum, first, axis=1)
    step = np.maximum(res, WHOLE_PERCENT_PCT)
    need_wh = np.maximum(STALE_SOC_MIN_WH, step / 100.0 * largest_capacity_wh() / EFFICIENCY_MIN)
    return np.asarray(has & (soc < 100.0 - step[:, None]) & (held_wh > need_wh[:, None]))
