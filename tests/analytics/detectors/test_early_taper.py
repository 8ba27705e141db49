"""``early_taper``: derates that begin near the end of a car's plateau, derates cut short by the
end of the session, and what must not be flagged around them; and undefined values (NaN SoC, a
row of one reading) never reach an integer cast (pytest runs with filterwarnings=error)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from analytics.batch import StatusCode
from analytics.detectors import EarlyTaper, fit_detectors
from analytics.detectors.early_taper import (
    DEEP_BELOW_SOC_PCT,
    DEEP_KEEP,
    DEEP_WIDE_SPAN_PCT,
    STEP_FROM_KWH,
    WIDE_TIERS,
    battery_at_least_wh,
)
from analytics.detectors.prepared import prepared
from tests.analytics.detectors.helpers import (
    NOW_NS,
    T0_NS,
    Spec,
    from_power,
    make_batch,
    with_,
)

MIN = 60.0

# Opel Mokka-e / Peugeot e-208 as published (open-ev-data): plateaus, then steps of a third or
# a half, the last one at 68-69 % SoC
E208 = ([0, 16, 17, 46, 47, 68, 69, 83, 84, 100], [97, 97, 78, 78, 52, 52, 27, 27, 11, 11])
# Peugeot E-Traveller as published: 75 to 45 kW between 57 and 67 % SoC
E_TRAVELLER = (
    [0, 20, 22, 57, 59, 65, 67, 73, 74, 84, 85, 100],
    [98, 87, 75, 75, 50, 50, 45, 45, 25, 25, 12, 12],
)
# a car that holds 100 kW to 60 % SoC, then tapers
PLATEAU_TO_60 = ([0, 60, 80, 100], [100, 100, 45, 10])
# a large fast car: 145 kW to 75 % SoC, then tapers (on the scale of a 90 kWh pack)
PLATEAU_TO_75 = ([0, 75, 90, 100], [145, 145, 60, 15])


def dc_charge(
    curve: tuple[Sequence[float], Sequence[float]],
    *,
    soc0: float,
    battery_kwh: float = 60.0,
    minutes_total: float = 40.0,
    step_s: float = 10.0,
    derate_at_soc: float | None = None,
    factor: float = 0.5,
    ramp_s: float = 120.0,
    offered_kw: float = 150.0,
    round_soc: bool = True,
) -> Spec:
    """A DC charge following ``curve`` (power over SoC), SoC integrated step by step (and
    reported in whole percents); optionally derated to ``factor`` from the moment the SoC
    reaches ``derate_at_soc``, reached linearly over ``ramp_s``, until the end."""
    t = np.arange(0.0, minutes_total * MIN + 1e-9, step_s)
    soc = np.empty(t.size)
    p = np.empty(t.size)
    level, since = soc0, None
    for i, ts in enumerate(t):  # a few hundred steps of a hand-made case
        soc[i] = level
        kw = float(np.interp(level, curve[0], curve[1]))
        if derate_at_soc is not None and level >= derate_at_soc:
            since = ts if since is None else since
            kw *= 1.0 - (1.0 - factor) * min((ts - since) / ramp_s, 1.0)
        p[i] = 0.0 if i == 0 else kw * 1000.0
        level = min(level + p[i] * step_s / 3600.0 / (battery_kwh * 1000.0) * 100.0, 100.0)
    spec = from_power(t, p, offered_w=offered_kw * 1000.0)
    return with_(spec, soc_pct=list(np.round(soc) if round_soc else soc))


def cut(spec: Spec, after_s: float, *, last_power_w: float | None = None) -> Spec:
    """``spec`` stopped at ``after_s`` (the driver leaves); the stop's reading optionally shows
    ``last_power_w`` (a charger that reports after it cut the current)."""
    keep = np.asarray(spec.t_s) <= after_s
    columns = ("t_s", "energy_wh", "power_w", "offered_w", "status", "soc_pct")
    out = with_(spec, **{c: list(np.asarray(getattr(spec, c))[keep]) for c in columns})
    if last_power_w is not None:
        power = list(out.power_w or [])
        power[-1] = last_power_w
        out = with_(out, power_w=power)
    return out


def ac_charge(
    battery_curve: tuple[Sequence[float], Sequence[float]],
    *,
    level_kw: float,
    soc0: float,
    battery_kwh: float = 60.0,
    minutes_total: float = 150.0,
    step_s: float = 60.0,
    derate_at_soc: float | None = None,
    derate_min: float = 45.0,
    factor: float = 0.52,
    noise: float = 0.0,
) -> Spec:
    """An AC charge: the onboard charger draws ``level_kw`` until the battery (``battery_curve``,
    kW it accepts over SoC) takes less; SoC in whole percents; optionally derated to ``factor``
    for ``derate_min`` from the moment the SoC reaches ``derate_at_soc``; 0 W once full."""
    t = np.arange(0.0, minutes_total * MIN + 1e-9, step_s)
    soc = np.empty(t.size)
    p = np.empty(t.size)
    rng = np.random.default_rng(7)
    level, since = soc0, None
    for i, ts in enumerate(t):  # a hundred or so steps of a hand-made case
        soc[i] = level
        kw = min(level_kw, float(np.interp(level, battery_curve[0], battery_curve[1])))
        if derate_at_soc is not None and level >= derate_at_soc:
            since = ts if since is None else since
            if ts - since < derate_min * MIN:
                kw *= factor
        kw = 0.0 if level >= 100.0 else kw * (1.0 + noise * rng.standard_normal())
        p[i] = 0.0 if i == 0 else kw * 1000.0
        level = min(level + p[i] * step_s / 3600.0 / (battery_kwh * 1000.0) * 100.0, 100.0)
    spec = from_power(t, p, offered_w=level_kw * 1000.0)
    return with_(spec, soc_pct=list(np.floor(soc)))


# an AC car's battery: takes any AC level to 93 % SoC, then tapers to a quarter of 11 kW (the
# simulator's AC cars)
AC_TOP_TAPER = ([0, 93, 100], [11.0, 11.0, 2.5])
# Chevrolet Bolt as published (open-ev-data): the lowest curve at 90-100 % SoC
BOLT = ([0, 56, 68, 85, 100], [55.0, 38.0, 24.0, 16.0, 0.0])


# --- derates that must be flagged ----------------------------------------------------------


def ac_derate_at_79_percent() -> Spec:
    # an 11 kW AC car halved at 79 % SoC for 45 min, then back at 11 kW (simulator seed 9104,
    # CW-AC-0084-2-00002): no battery takes under 11 kW there, the DC floor (0 from 70 %)
    # let it pass
    return ac_charge(AC_TOP_TAPER, level_kw=11.0, soc0=70.0, derate_at_soc=79.0, noise=0.01)


def ac_derate_at_55_percent_on_one_phase() -> Spec:
    # a 3.7 kW single-phase car at 70 % of its level from 55 % SoC: under the 85 % margin of a
    # level every published battery takes there; the DC floor (47 % there) and the step (a fall
    # by 38 %) let it pass
    return ac_charge(
        BOLT, level_kw=3.7, soc0=50.0, battery_kwh=40.0, derate_at_soc=55.0, factor=0.7
    )


def late_derate_at_the_end_of_the_plateau() -> Spec:
    # halved from 61 % SoC, near the end of a 100 kW plateau: the fall completes at 63-64 %
    return dc_charge(PLATEAU_TO_60, soc0=30.0, derate_at_soc=58.0, minutes_total=45.0)


def late_derate_then_the_cars_own_taper() -> Spec:
    # halved from 50 % SoC, just before the car's plateau ends at 54 %: its own taper (to 40 %
    # of the plateau by 70 %) then pulls the derated power further down, so it is held only a
    # few minutes before falling on
    return dc_charge(
        ([0, 54, 70, 100], [100, 100, 40, 10]),
        soc0=30.0,
        battery_kwh=64.0,
        derate_at_soc=50.0,
        minutes_total=45.0,
    )


def fast_car_derate_over_nine_percent_of_soc() -> Spec:
    # 170 kW on 64 kWh (2.7 C): a derate to 55 % that settles over 3 min spans 9 % of SoC
    return dc_charge(
        ([0, 40, 75, 100], [170, 165, 99, 18]),
        soc0=12.0,
        battery_kwh=64.0,
        derate_at_soc=27.0,
        factor=0.55,
        ramp_s=180.0,
        minutes_total=25.0,
    )


def big_battery_derate_complete_at_67_percent() -> Spec:
    # 145 kW on 90 kWh, cut to 55 % from 64 % SoC: complete at 66-67 %, beyond where the
    # e-208 family's own step lets a fall count (65.8 %); the session's energy over its SoC
    # shows a battery far larger than theirs (45-47.5 kWh), so their curves are not its own
    # (an independently written fleet, seed 81: 145 to 44 kW at 63-66 %, missed)
    return dc_charge(
        PLATEAU_TO_75,
        soc0=22.0,
        battery_kwh=90.0,
        derate_at_soc=64.0,
        factor=0.55,
        ramp_s=60.0,
        minutes_total=40.0,
        step_s=60.0,
    )


def small_car_deep_fall_at_69_percent() -> Spec:
    # 46 kWh held at a 50 kW charger's limit, cut to a third at 68-69 % SoC: where the
    # e-208's own step is, but deeper than any published curve falls before 75 % (to 52 % for
    # the e-208) (an independently written fleet, seed 82: 50 to 16 kW at 68-69 %, missed)
    return dc_charge(
        ([0, 80, 100], [50, 50, 10]),
        soc0=20.0,
        battery_kwh=46.0,
        derate_at_soc=67.0,
        factor=0.33,
        offered_kw=50.0,
        ramp_s=45.0,
        minutes_total=45.0,
        step_s=45.0,
    )


def derate_held_to_the_stop_sampled_every_five_minutes() -> Spec:
    # 45 kW, halved at 36-39 % SoC on a station sampling every 5 min; the driver leaves 10 min
    # after the first reading that shows it: three readings, the fall somewhere in the step
    # before them (an independently written fleet, seed 122 with --sparse-sampling 0.5, 804746:
    # read as exactly 10 min, missed)
    spec = dc_charge(
        ([0, 60, 80, 100], [45, 45, 20, 5]),
        soc0=20.0,
        step_s=300.0,
        derate_at_soc=36.0,
        factor=0.53,
        ramp_s=30.0,
        minutes_total=40.0,
    )
    t, p = np.asarray(spec.t_s), np.asarray(spec.power_w)
    return cut(spec, float(t[np.argmax((p < 40_000.0) & (t > 0))]) + 10 * MIN)


def deep_fall_over_sixteen_percent_of_soc_sampled_every_ten_minutes() -> Spec:
    # 75 kW on a 75 kWh pack read every 10 min (17 % of SoC apart), cut to 38 % between the
    # readings at 37 and 53 %: wider than the step's tiers (10 %), but no published curve falls
    # under 45 % within 20 % of SoC before 73.6 % (an independently written fleet, seed 122
    # with --sparse-sampling 0.5: 75 to 29 kW between 37 and 53 %, missed)
    return dc_charge(
        ([0, 80, 100], [75, 75, 20]),
        soc0=20.0,
        battery_kwh=75.0,
        step_s=600.0,
        derate_at_soc=25.0,
        factor=0.38,
        ramp_s=30.0,
        minutes_total=50.0,
    )


def deep_fall_over_twenty_one_percent_of_soc_sampled_every_fifteen_minutes() -> Spec:
    # 76 kW on a 60 kWh pack read every 15 min (21 % of SoC apart), cut to 35 % between the
    # readings at 37 and 58 %: wider than 20 %, but no published curve falls under 45 % of its
    # highest within 60 % of SoC before 67.8 % (the Corsa-e) (an independently written fleet,
    # seed 325 with --sparse-sampling 0.6, 554524: 76 to 27 kW between 37 and 58 %, missed)
    t = np.arange(880.0, 4_481.0, 900.0)
    return with_(
        from_power(
            t, np.array([75_819.0, 26_889.0, 27_560.0, 17_018.0, 25_148.0]), offered_w=300_000.0
        ),
        energy_wh=[637_494.0, 651_414.0, 658_242.0, 663_433.0, 668_760.0],
        soc_pct=[37.0, 58.0, 68.0, 76.0, 84.0],
    )


def step_within_five_percent_after_a_higher_reading_further_back() -> Spec:
    # 38 kW on a 40 kWh pack sloping to 33 kW at 64 % SoC, read every 15 s, then cut to 54 %
    # at 64.5 %: 48 % under the reading 5 % of SoC before, complete at 65 %, below where the
    # e-208 family's own step lets a fall count (65.8 %). The highest reading 5 min before is
    # 9 % of SoC back, wider than the narrow tier, and the fall was judged against it alone
    # (an independently written fleet, seed 323, 278685e2: 34 to 17.8 kW at 60-65 %, missed)
    return dc_charge(
        ([0, 54, 64, 80, 100], [38, 38, 33, 25, 8]),
        soc0=50.0,
        battery_kwh=40.0,
        step_s=15.0,
        derate_at_soc=64.5,
        factor=0.54,
        ramp_s=15.0,
        minutes_total=25.0,
    )


def halved_over_sixteen_percent_of_soc_sampled_every_ten_minutes() -> Spec:
    # 90 kW on a 90 kWh pack read every 10 min, halved between the readings at 32 and 48 %
    # SoC: not deep, wider than the step's tiers, but no published curve falls by 38 % within
    # 20 % of SoC before 56 % (the Polestar 2) (an independently written fleet, seed 133 with
    # --sparse-sampling 0.5: 145 to 68 kW between 33 and 51 %, missed)
    return dc_charge(
        ([0, 80, 100], [90, 90, 20]),
        soc0=15.0,
        battery_kwh=90.0,
        step_s=600.0,
        derate_at_soc=25.0,
        factor=0.5,
        ramp_s=30.0,
        minutes_total=60.0,
    )


def derate_cut_short_by_the_stop() -> Spec:
    # halved at 35 % SoC; the driver leaves 7 min later
    spec = dc_charge(PLATEAU_TO_60, soc0=20.0, derate_at_soc=35.0, minutes_total=40.0)
    start = float(np.asarray(spec.t_s)[np.argmax(np.asarray(spec.soc_pct) >= 35.0)])
    return cut(spec, start + 9 * MIN)


def derate_cut_short_stop_reading_at_zero() -> Spec:
    spec = dc_charge(
        PLATEAU_TO_60, soc0=15.0, derate_at_soc=30.0, factor=0.4, step_s=30.0, minutes_total=40
    )
    start = float(np.asarray(spec.t_s)[np.argmax(np.asarray(spec.soc_pct) >= 30.0)])
    return cut(spec, start + 10 * MIN, last_power_w=0.0)


# --- what must not be flagged --------------------------------------------------------------


def e208_own_steps() -> Spec:
    # its own step at 68-69 % SoC (to 52 % of the power before), through to 80 %
    return dc_charge(E208, soc0=55.0, battery_kwh=46.0, minutes_total=30.0)


def e208_own_steps_sampled_every_fifteen_minutes() -> Spec:
    # its own steps from 10 % SoC, read every 15 min (25-40 % of SoC apart): 97 to 52 kW over
    # 30 % of SoC falls by 46 %, but over 60 % of SoC the e-208 family's own curve falls that
    # far from 46.7 % on (the wide tiers), and to 27 kW (under 45 %) from 68.8 %
    spec = dc_charge(E208, soc0=10.0, battery_kwh=46.0, minutes_total=75.0, step_s=15.0)
    keep = np.arange(1, len(spec.t_s), 60)
    columns = ("t_s", "energy_wh", "power_w", "offered_w", "status", "soc_pct")
    return with_(spec, **{name: list(np.asarray(getattr(spec, name))[keep]) for name in columns})


# Hyundai Ioniq (2019, 38.3 kWh) as published: steps to 0.62 at 69 %, then at 76 % to 15 kW, the
# first published fall under 0.45 of the highest power over the 11 % of SoC before (75.6 %)
IONIQ_2019 = ([0, 51, 53, 67, 69, 74, 76, 90, 100], [40, 46, 36, 37, 23, 23, 15, 15, 8])


def ioniq_own_deep_fall_at_76_percent() -> Spec:
    return dc_charge(IONIQ_2019, soc0=45.0, battery_kwh=38.3, minutes_total=40.0, step_s=30.0)


# Opel Corsa-e as open-ev-data publishes it: 41 kW to 72 % SoC, then 2 kW at 73 %, 27 kW at 83 %.
# The 2 kW point is no battery's (curve_floor leaves it out of the AC floor), but a fleet made
# from the published curves charges a Corsa-e that way (an independently written fleet, seeds
# 111-113: 50 to 7.5 kW at 72 % on a 50 kW charger); the deep fall's limit of 70 % keeps it.
CORSA_E = (
    [0, 16, 20, 21, 47, 48, 67, 68, 72, 73, 83, 84, 100],
    [99, 99, 95, 75, 75, 53, 53, 41, 41, 2, 27, 11, 11],
)


def corsa_e_published_fall_at_73_percent() -> Spec:
    return dc_charge(CORSA_E, soc0=40.0, battery_kwh=45.0, minutes_total=45.0, offered_kw=50.0)


def e208_own_step_then_the_driver_leaves() -> Spec:
    spec = dc_charge(E208, soc0=60.0, battery_kwh=46.0, minutes_total=30.0)
    at = float(np.asarray(spec.t_s)[np.argmax(np.asarray(spec.soc_pct) >= 70.0)])
    return cut(spec, at + 6 * MIN)


def e208_own_step_with_a_long_register_and_a_late_soc() -> Spec:
    # the e-208's own step at 68.8 % SoC, judged with what could make its battery look larger:
    # a register counting 25 % long (meter_mismatch's business), a SoC that starts at 40 %
    # and is held at its last figure for the last readings
    spec = dc_charge(E208, soc0=40.0, battery_kwh=46.0, minutes_total=30.0, step_s=30.0)
    register = np.asarray(spec.energy_wh)
    soc = np.asarray(spec.soc_pct, dtype=np.float64)
    soc[-8:] = soc[-9]
    return with_(
        spec,
        energy_wh=list(np.floor(register[0] + 1.25 * (register - register[0]))),
        soc_pct=list(soc),
    )


def e_traveller_own_steps() -> Spec:
    # its steps from 75 kW at 57 % to 45 kW at 67 % (60 % of the power within 10 % of SoC)
    return dc_charge(E_TRAVELLER, soc0=45.0, battery_kwh=45.0, minutes_total=30.0)


def early_unplug_while_charging() -> Spec:
    return cut(dc_charge(PLATEAU_TO_60, soc0=20.0, minutes_total=40.0), 12 * MIN)


def dip_that_recovers_after_six_minutes() -> Spec:
    # a transient: 11 kW, 5 kW for 6 min, 11 kW again
    t = np.arange(0.0, 120 * MIN + 1e-9, 60.0)
    p = np.where((t >= 40 * MIN) & (t < 46 * MIN), 5_000.0, 11_000.0)
    p[0] = 0.0
    return from_power(t, p, offered_w=11_000.0)


def ac_balancing_then_the_driver_leaves() -> Spec:
    # the car drops to a balancing current for its last few %; the driver unplugs 8 min later
    t = np.arange(0.0, 158 * MIN + 1e-9, 60.0)
    p = np.where(t < 150 * MIN, 11_000.0, 1_500.0)
    p[0] = 0.0
    return from_power(t, p, offered_w=11_000.0)


def single_phase_car_follows_an_offer_lowered_at_its_peak_reading() -> Spec:
    # 3.6 kW on one phase of an 11 kW offer; the station lowers the offer to 4.8 kW at a
    # reading that still shows the power drawn before (its highest), and the car follows to
    # 1.6 kW (7 A on its phase) for 28 min: explained (the simulator's fleet, seed 9911)
    t = np.arange(0.0, 100 * MIN + 1e-9, 20.0)
    at = int(np.searchsorted(t, 71 * MIN))
    p = np.where(t < 71 * MIN, 3_580.0, 1_590.0)
    p[at] = 3_645.0
    p[0] = 0.0
    offered = np.where(t < 71 * MIN, 10_969.0, 4_799.0)
    return from_power(t, p, offered_w=offered)


def ac_own_taper_at_the_top() -> Spec:
    # an 11 kW AC car tapers from 93 % to a quarter of its level at 100 %, then stops drawing
    return ac_charge(AC_TOP_TAPER, level_kw=11.0, soc0=75.0, noise=0.01)


def ac_bolt_on_seven_kilowatts() -> Spec:
    # the Bolt's battery takes less than 7.2 kW from 92 % SoC and nothing at 100 %: its own
    # taper from there is no derate
    return ac_charge(BOLT, level_kw=7.2, soc0=70.0, battery_kwh=60.0, minutes_total=200.0)


def own_taper_under_a_stuck_soc() -> Spec:
    # the car's own taper from 60 % SoC, its reported SoC stuck at 23 % from 23 % on while
    # 25 kWh flow (blind fleet seed 41, 517921): at "23 %" the taper looked like a derate
    spec = dc_charge(PLATEAU_TO_60, soc0=15.0, minutes_total=40.0)
    return with_(spec, soc_pct=list(np.minimum(np.asarray(spec.soc_pct), 23.0)))


def ac_tail_without_soc_sampled_every_five_minutes() -> Spec:
    # a 3.7 kW car's own tail, no SoC, read every 5 min (one reading lost): 3.7, 2.1, 1.6, 1.1,
    # 0.8 kW ... then 4 h of a few tens of watts until the driver comes back; its second and
    # third readings "held" by settling there (an independently written fleet, seed 202 with
    # --sparse-sampling 0.5, 7c5ad9e5: a fall held 12 min)
    tail = [2129.5, 1583.3, 1131.2, 842.0, 613.4, 442.0, 343.7, 291.0, 286.8, 303.6, 34.1]
    trickle = [0.0, 0.0, 2.8, 7.0, 0.0, 1.0, 19.4] + [25.0, 15.0, 30.0, 5.0] * 12
    level = np.full(45, 3_700.0)
    p = np.concatenate(([0.0], level, tail, trickle))
    t = 5 * MIN * np.arange(p.size)
    t[len(level) + 1 :] += 5 * MIN  # the reading lost just before the tail
    return from_power(t, p, offered_w=22_000.0)


def ac_derate_without_soc_sampled_every_five_minutes() -> Spec:
    # 7.4 kW, cut to 4 kW for 30 min, back at 7.4 kW; no SoC, read every 5 min
    t = np.arange(0.0, 150 * MIN + 1e-9, 5 * MIN)
    p = np.where((t >= 60 * MIN) & (t < 90 * MIN), 4_000.0, 7_400.0)
    p[0] = 0.0
    return from_power(t, p, offered_w=7_400.0)


def offer_lowered_before_the_stop() -> Spec:
    spec = dc_charge(PLATEAU_TO_60, soc0=20.0, minutes_total=25.0)
    t = np.asarray(spec.t_s)
    offered = np.where(t >= 15 * MIN, 40_000.0, 150_000.0)
    power = np.minimum(np.asarray(spec.power_w), offered)
    return with_(spec, power_w=list(power), offered_w=list(offered))


def dc_segments(
    segments: Sequence[tuple[float, float, float]],
    *,
    soc0: float,
    battery_kwh: float,
    step_s: float = 60.0,
    offered_kw: float | Sequence[float] = 150.0,
    status: Sequence[int] | None = None,
) -> Spec:
    """A DC session drawn segment by segment: (minutes, kW at its start, kW at its end), power
    linear in between (geometric from under a fifth of the other end), SoC integrated and
    reported in whole percents; one ramp reading at 0 W first."""
    kw: list[float] = [0.0]
    for minutes, start, end in segments:
        k = max(round(minutes * MIN / step_s), 1)
        if start > 0 and end > 0 and start != end and min(start, end) < 0.2 * max(start, end):
            kw.extend(np.geomspace(start, end, k).tolist())  # a climb from near nothing
        else:
            kw.extend(np.linspace(start, end, k).tolist())
    t = np.arange(len(kw)) * step_s
    p = np.asarray(kw) * 1000.0
    soc = (
        soc0
        + np.concatenate(([0.0], np.cumsum(p[1:] * step_s / 3600.0)))
        / (battery_kwh * 1000.0)
        * 100.0
    )
    offered = np.broadcast_to(np.asarray(offered_kw, dtype=np.float64) * 1000.0, t.shape)
    spec = from_power(t, p, offered_w=offered, status=status)
    return with_(spec, soc_pct=list(np.floor(np.minimum(soc, 100.0))))


def dip_held_then_back_on_a_150_kw_charger() -> Spec:
    # blind fleet seed 63, wallbox:0138: 35 kW at 35-45 % SoC, 23 kW from 46 % for 20 min (66 %
    # of 35 kW: above the band's floor there and no step's 38 % drop), then 50 kW at once
    return dc_segments([(10, 35, 35), (20, 23, 23), (4, 50, 50)], soc0=35.0, battery_kwh=45.0)


def late_dip_climbed_out_of_near_full() -> Spec:
    # blind fleet seed 63, evse-0012 (50 kW): 45 kW to 80 %, 14 kW at 82 % declining to 8 kW
    # at 92 % (no floor from 70 % SoC), then 22 kW at once, tapering to 11 kW at 99 %
    return dc_segments(
        [(27, 45, 45), (30, 14, 8), (20, 22, 11)],
        soc0=43.0,  # 20 kWh in the first 27 min: 80 % when the dip begins, as in the fleet
        battery_kwh=55.0,
        step_s=15.0,
        offered_kw=50.0,
    )


def dip_under_a_lower_offer_then_back() -> Spec:
    # the same dip, with the charger offering 24 kW over it (load management): explained
    spec = dip_held_then_back_on_a_150_kw_charger()
    t = np.asarray(spec.t_s)
    offered = np.where((t > 10 * MIN) & (t <= 30 * MIN), 24_000.0, 150_000.0)
    return with_(spec, offered_w=list(offered))


def dip_under_a_lower_offer_sent_once() -> Spec:
    # the offer is sent only when it changes: 24 kW holds until 150 kW is sent again
    spec = dip_under_a_lower_offer_then_back()
    offered = np.asarray(spec.offered_w, dtype=np.float64)
    changed = np.concatenate(([True], offered[1:] != offered[:-1]))
    return with_(spec, offered_w=list(np.where(changed, offered, np.nan)))


def slow_climb_back_after_a_drop() -> Spec:
    # independently written fleet, seed 61 (a normal session): 52 kW to 72 % SoC, 2 kW, then
    # a climb back to 19 kW over 25 min: the car's own acceptance changing, not a derate that
    # cleared (no reading jumps)
    return dc_segments(
        [(15, 52, 52), (2, 40, 40), (26, 2, 19)],
        soc0=40.0,
        battery_kwh=40.0,
        step_s=15.0,
        offered_kw=300.0,
    )


def derate_under_an_offer_raised_within_it() -> Spec:
    # field fleet seed 4, FLD0025A-22113: a 25 kW offer, derated to 10.7 kW; the offer rises to
    # 50 kW and the derated power with it to 20.3 kW; 12 min on, 47.6 kW at once. The climb
    # within the dip was the offer's, not a slow climb of the car's
    segments = [(2, 25, 25), (3, 10.7, 10.7), (9, 20.3, 20.3), (5, 47.6, 47.0)]
    offered = [25.0] + [
        25.0 if i < 2 else 50.0
        for i, (minutes, _, _) in enumerate(segments)
        for _ in range(round(minutes * MIN / 10.0))
    ]
    return dc_segments(segments, soc0=37.0, battery_kwh=30.0, step_s=10.0, offered_kw=offered)


def slow_climb_back_after_a_drop_sampled_every_five_minutes() -> Spec:
    # the same car's curve read every 5 min (an independently written fleet, seed 133 half
    # sparse, 530832f6, normal): 50 kW to 68 % SoC, 1.9 kW at 73 %, then 2.9, 4.4, 6.7, 10.0,
    # 15.4, 23.2 kW: each step 1.5 times the last "within two sampling intervals", read as a
    # dip that climbed back at once
    kw = [50.5, 50.5, 49.7, 50.2, 49.8, 38.8, 1.9, 2.9, 4.4, 6.7, 10.0, 15.4, 23.2, 10.6, 10.4]
    soc = [24.3, 33.1, 41.9, 50.7, 59.5, 68.2, 73.0, 73.4, 74.0, 75.0, 76.5, 78.7, 82.0, 84.8, 86.7]
    t = 5 * MIN * np.arange(len(kw))
    spec = from_power(t, 1000.0 * np.asarray(kw), offered_w=50_000.0)
    return with_(spec, soc_pct=soc)


def dip_of_four_minutes_then_back() -> Spec:
    return dc_segments([(10, 35, 35), (4, 15, 15), (10, 50, 50)], soc0=35.0, battery_kwh=45.0)


def car_suspends_then_resumes() -> Spec:
    # the car pauses (SuspendedEV, a trickle for its own systems) for 15 min, then draws again
    spec = dc_segments([(10, 35, 35), (15, 1, 1), (10, 50, 50)], soc0=35.0, battery_kwh=45.0)
    t = np.asarray(spec.t_s)
    paused = (t > 10 * MIN) & (t <= 25 * MIN)
    status = np.where(paused, int(StatusCode.SUSPENDED_EV), int(StatusCode.CHARGING))
    return with_(spec, status=[int(v) for v in status])


def cold_pack_warms_up() -> Spec:
    # a cold battery takes 20 kW, then 60 kW once warm. Once taken for a slow start and left
    # alone; CONTRACTS.md section 3 names a cold battery among early_taper's causes, and no
    # published curve climbs to 3 times what it drew at a lower SoC (field fleet seeds 1-4:
    # 74 cold starts missed)
    return dc_segments([(15, 20, 20), (20, 60, 60)], soc0=20.0, battery_kwh=60.0)


def cold_pack_warms_up_gradually() -> Spec:
    # field fleet seed 1, 46cf620b: 11-20 kW from the start at 24-36 % SoC for 13 min, then 30
    # kW as the pack warms, read every minute
    return dc_segments([(13, 12, 20), (20, 30, 30)], soc0=24.0, battery_kwh=45.0)


def cold_pack_warms_within_eight_minutes() -> Spec:
    # field fleet seed 1, FLD0066A-58592: 59 kW at 24 % SoC climbing as the pack warmed to
    # 147 kW at 57 %, read every 30 s; under 1/1.49 of what came later for 7.5 min, which the
    # 10 min asked of a dip mid-session left alone (a start held low is no transient)
    return dc_segments(
        [(7.5, 59, 97), (8, 100, 147), (3, 147, 130)], soc0=24.0, battery_kwh=75.0, step_s=30.0
    )


def cold_pack_under_the_share_for_two_minutes_read_every_minute() -> Spec:
    # field fleet seed 1, FLD0046A-32257 (a CUPRA Born at 1 C): 36 kW at 18 % SoC climbing
    # to 62 kW over 16 min, read every minute: under 1/1.49 of it for three readings, 2 min,
    # which the 5 min once asked of a start held low left alone
    return dc_segments([(16, 36, 62), (8, 62, 62)], soc0=18.0, battery_kwh=58.0, step_s=60.0)


def ramp_up_read_every_minute() -> Spec:
    # a normal start read every minute: one reading in the ramp (30 kW), then the car's curve
    return dc_segments([(1, 30, 30), (20, 100, 95), (10, 95, 70)], soc0=20.0, battery_kwh=75.0)


def ramp_up_over_ninety_seconds_then_a_gentle_climb() -> Spec:
    # a slow car's ramp (10 s readings, 90 s to 60 kW), then its own climb as MX-30's (1.27x):
    # under 1/1.49 of the later 100 kW for 90 s, which is the ramp, not a pack held low
    return dc_segments(
        [(1.5, 5, 60), (15, 79, 100), (10, 100, 80)], soc0=5.0, battery_kwh=75.0, step_s=10.0
    )


def ac_tail_then_readings_stop_for_an_hour() -> Spec:
    # an independently written fleet, seed 132 with --sparse-sampling 0.3, b3576451: an AC car
    # at 3.7 kW for 3 h, its own taper to 1.1 kW over 10 min (about 11 % a minute), then no
    # reading for 65 min, then 0 W to the stop: read as "fell to 1.6 kW, held 5 min" (cut short)
    kw = [3.7] * 170 + [3.45, 3.12, 2.69, 2.41, 2.13, 1.90, 1.64, 1.46, 1.29, 1.13]
    t = list(MIN * np.arange(len(kw)))
    t += [t[-1] + 65 * MIN, t[-1] + 66 * MIN, t[-1] + 67 * MIN]
    kw += [0.0, 0.024, 0.012]
    return from_power(np.asarray(t), 1000.0 * np.asarray(kw), offered_w=3_700.0)


def ramp_up_over_two_minutes() -> Spec:
    # a normal start: the charger follows the car's request up to its curve within two minutes
    # (readings every 10 s at 5, 13, 21 ... kW), then the car's own curve
    return dc_segments(
        [(2, 5, 100), (15, 100, 110), (10, 110, 80)], soc0=20.0, battery_kwh=75.0, step_s=10.0
    )


# Mazda MX-30 as published: the largest climb of any curve (30 to 38 kW over 55 % of SoC)
MX30 = ([0, 55, 70, 90, 100], [30, 38, 30, 18, 12])


def mx30_own_climb() -> Spec:
    return dc_charge(MX30, soc0=2.0, battery_kwh=30.0, minutes_total=40.0)


DERATES: list[Callable[[], Spec]] = [
    late_derate_at_the_end_of_the_plateau,
    late_derate_then_the_cars_own_taper,
    fast_car_derate_over_nine_percent_of_soc,
    derate_cut_short_by_the_stop,
    derate_cut_short_stop_reading_at_zero,
    derate_held_to_the_stop_sampled_every_five_minutes,
    deep_fall_over_sixteen_percent_of_soc_sampled_every_ten_minutes,
    halved_over_sixteen_percent_of_soc_sampled_every_ten_minutes,
    deep_fall_over_twenty_one_percent_of_soc_sampled_every_fifteen_minutes,
    step_within_five_percent_after_a_higher_reading_further_back,
    big_battery_derate_complete_at_67_percent,
    small_car_deep_fall_at_69_percent,
    ac_derate_at_79_percent,
    ac_derate_at_55_percent_on_one_phase,
    ac_derate_without_soc_sampled_every_five_minutes,
    dip_held_then_back_on_a_150_kw_charger,
    late_dip_climbed_out_of_near_full,
    derate_under_an_offer_raised_within_it,
]

NORMAL: list[Callable[[], Spec]] = [
    e208_own_steps,
    e208_own_steps_sampled_every_fifteen_minutes,
    e208_own_step_then_the_driver_leaves,
    e208_own_step_with_a_long_register_and_a_late_soc,
    e_traveller_own_steps,
    ioniq_own_deep_fall_at_76_percent,
    corsa_e_published_fall_at_73_percent,
    early_unplug_while_charging,
    dip_that_recovers_after_six_minutes,
    ac_balancing_then_the_driver_leaves,
    ac_own_taper_at_the_top,
    ac_bolt_on_seven_kilowatts,
    own_taper_under_a_stuck_soc,
    offer_lowered_before_the_stop,
    ac_tail_without_soc_sampled_every_five_minutes,
    dip_under_a_lower_offer_then_back,
    dip_under_a_lower_offer_sent_once,
    single_phase_car_follows_an_offer_lowered_at_its_peak_reading,
    slow_climb_back_after_a_drop,
    slow_climb_back_after_a_drop_sampled_every_five_minutes,
    dip_of_four_minutes_then_back,
    car_suspends_then_resumes,
    mx30_own_climb,
    ramp_up_over_two_minutes,
    ramp_up_read_every_minute,
    ramp_up_over_ninety_seconds_then_a_gentle_climb,
    ac_tail_then_readings_stop_for_an_hour,
]

REBOUNDS = [dip_held_then_back_on_a_150_kw_charger, late_dip_climbed_out_of_near_full]


def _early_taper(specs: list[Spec]) -> tuple[np.ndarray, list[object]]:
    batch = make_batch(specs)
    detector = next(d for d in fit_detectors(batch) if isinstance(d, EarlyTaper))
    result = detector.score(batch, now_ns=NOW_NS)
    return result.flagged, list(result.reason)


@pytest.mark.parametrize("build", DERATES, ids=[f.__name__ for f in DERATES])
def test_flags_a_derate(build: Callable[[], Spec]) -> None:
    flagged, reason = _early_taper([build()])
    assert flagged[0], reason[0]
    assert isinstance(reason[0], str) and "no lower offered power" in reason[0]


@pytest.mark.parametrize("build", NORMAL, ids=[f.__name__ for f in NORMAL])
def test_does_not_flag_normal_charging(build: Callable[[], Spec]) -> None:
    flagged, reason = _early_taper([build()])
    assert not flagged[0], reason[0]


COLD_STARTS = [
    cold_pack_warms_up,
    cold_pack_warms_up_gradually,
    cold_pack_warms_within_eight_minutes,
    cold_pack_under_the_share_for_two_minutes_read_every_minute,
]


@pytest.mark.parametrize("build", COLD_STARTS, ids=[f.__name__ for f in COLD_STARTS])
def test_a_start_held_low_then_climbing_far_is_an_early_taper(build: Callable[[], Spec]) -> None:
    flagged, reason = _early_taper([build()])
    assert flagged[0], reason[0]
    assert isinstance(reason[0], str) and "from the start" in reason[0], reason[0]


@pytest.mark.parametrize("build", REBOUNDS, ids=[f.__name__ for f in REBOUNDS])
def test_a_dip_climbed_out_of_says_so_and_spans_the_dip(build: Callable[[], Spec]) -> None:
    spec = build()
    batch = make_batch([spec])
    detector = next(d for d in fit_detectors(batch) if isinstance(d, EarlyTaper))
    result = detector.score(batch, now_ns=NOW_NS)
    reason = str(result.reason[0])
    assert result.flagged[0] and "climbed back" in reason and "1.27 times" in reason, reason
    # the flag is the dip: from its first low reading to its last, before the climb
    p = np.asarray(spec.power_w)
    t = np.asarray(spec.t_s)
    low = np.flatnonzero((p > 0) & (p < 0.85 * np.maximum.accumulate(p)))
    jump = np.flatnonzero((p[:-1] > 0) & (p[1:] > 1.4 * p[:-1]))[-1]  # the dip's last reading
    start_s = (int(result.start_ns[0]) - T0_NS) / 1e9
    end_s = (int(result.end_ns[0]) - T0_NS) / 1e9
    assert t[low[0]] <= start_s < t[jump] - 10 * MIN, (start_s, t[low[0]])
    assert end_s == t[jump], (end_s, t[jump])


def test_the_rebound_limit_comes_from_the_published_curves() -> None:
    # the Mazda MX-30's 30 to 38 kW from 0 to 55 % SoC; with the band's 15 % margin
    assert EarlyTaper().rebound_limit == 1.2667
    assert EarlyTaper()._rebound_factor() == pytest.approx(1.2667 / 0.85)


def test_the_step_limits_come_from_the_published_curves() -> None:
    detector = EarlyTaper()
    # within 5 % of SoC a fall complete below 65.8 % counts (the e-208's own step ends at 69 %),
    # within 10 % one complete below 63.4 % (the E-Traveller's steps reach 60 % at 66.4 %)
    assert (detector.max_fall_soc_pct, detector.dc_step_max_soc_pct) == (5.0, 65.8)
    assert (detector.wide_fall_soc_pct, detector.dc_wide_step_max_soc_pct) == (10.0, 63.4)


@pytest.mark.filterwarnings("error")
def test_undefined_soc_and_lone_readings_never_reach_an_integer_cast() -> None:
    # a row of one reading (no time to go), SoC missing in part of a row, SoC all NaN, and a
    # lone reading with NaN SoC beside rows that have some: fit and score stay silent
    lone = Spec(t_s=[0.0], power_w=[7_000.0], energy_wh=[1_000.0], offered_w=[11_000.0])
    lone_soc = with_(lone, soc_pct=[float("nan")], session_id="S2")
    partly = dc_charge(PLATEAU_TO_60, soc0=20.0, derate_at_soc=35.0, round_soc=False)
    soc = np.asarray(partly.soc_pct, dtype=np.float64)
    soc[::3] = np.nan
    partly = with_(partly, soc_pct=list(soc), session_id="S3")
    none = with_(partly, soc_pct=[float("nan")] * len(partly.t_s), session_id="S4")
    for specs in ([lone], [lone, lone_soc], [lone_soc, partly, none]):
        batch = make_batch(specs)
        detector = EarlyTaper().fit(batch)
        result = detector.score(batch, now_ns=NOW_NS)
        assert result.score.shape == (len(specs),)
    flagged, _ = _early_taper([lone_soc, partly])
    assert flagged[1]  # the derate still shows with a third of its SoC missing


def test_a_larger_battery_than_the_stepping_cars_lets_a_later_fall_count() -> None:
    (narrow_kwh, narrow), (wide_kwh, wide) = STEP_FROM_KWH
    detector = EarlyTaper()
    at = detector._step_limits(np.array([0.0, 30_000.0, 47_500.0, 60_000.0, 150_000.0]))
    # unknown or small: the e-208 family's and the E-Traveller's limits; from 48.8 kWh (the
    # next battery after the Mokka-e's 47.5 in the data) 70 %, the cap: the Kona's and the
    # Teslas' steps begin at 75-76 %, and past 70 % curves fall anywhere
    assert at[:, 0].tolist() == [65.8, 65.8, 65.8, 70.0, 70.0]
    assert at[:, 1].tolist() == [63.4, 63.4, 65.8, 70.0, 70.0]
    assert narrow.max() == wide.max() == 70.0 and narrow_kwh[-1] == wide_kwh[-1] == 48.8


def test_the_battery_bound_stays_under_the_true_size() -> None:
    specs = [
        dc_charge(PLATEAU_TO_75, soc0=22.0, battery_kwh=90.0, minutes_total=30.0, step_s=60.0),
        dc_charge(E208, soc0=20.0, battery_kwh=46.0, minutes_total=30.0),
        e208_own_step_with_a_long_register_and_a_late_soc(),
        with_(dc_charge(E208, soc0=20.0, battery_kwh=46.0), soc_pct=None),
    ]
    prep = prepared(make_batch(specs), NOW_NS)
    bound = battery_at_least_wh(prep, np.ones(len(specs))) / 1000.0
    # at least 80 % reaches the pack, the gain is padded by a step and a lag: under the true
    # size, and for the large car above every car whose curve steps down before 70 %
    assert 48.8 < bound[0] < 90.0, bound
    assert 0.0 < bound[1] < 46.0 and 0.0 < bound[2] < 46.0, bound
    assert bound[3] == 0.0


def test_a_fall_counted_for_the_battery_size_says_so() -> None:
    flagged, reason = _early_taper([big_battery_derate_complete_at_67_percent()])
    assert flagged[0] and "the battery holds at least" in str(reason[0]), reason[0]


def test_a_deep_fall_counts_to_70_percent_whatever_the_battery() -> None:
    # the first published curves to fall under 45 % of their recent highest: the Ioniq at
    # 75.6 % over 11 % of SoC, the Polestar 2 at 79.9 % over 6 %; 3 % margin, capped at 70 %
    assert (DEEP_KEEP, DEEP_BELOW_SOC_PCT) == (0.45, 70.0)
    # over 20 % of SoC between two readings, the step (38 %) and the deep fall: the Polestar 2
    # at 56 %, the E-Traveller at 73.6 % (3 % margin, capped); over 60 %: the e-208 family at
    # 46.7 %, the Corsa-e at 67.8 %
    assert WIDE_TIERS == ((20.0, 53.0, 70.0), (60.0, 43.7, 64.8))
    assert DEEP_WIDE_SPAN_PCT == 60.0


def test_a_fall_the_narrow_tier_counts_gives_no_other_reason() -> None:
    # complete at 65 % SoC within 5 % of SoC: the narrow tier counts it (below 65.8 %); the
    # stretch's mean under 45 % of the power before is no reason it was counted
    flagged, reason = _early_taper([step_within_five_percent_after_a_higher_reading_further_back()])
    assert flagged[0], reason[0]
    assert "(" not in str(reason[0]).split("steps down that far")[1], reason[0]


def test_a_deep_fall_late_on_the_plateau_says_so() -> None:
    flagged, reason = _early_taper([small_car_deep_fall_at_69_percent()])
    assert flagged[0] and "none falls under 45 % of its power before 70 %" in str(reason[0])


def test_a_fall_held_exactly_ten_minutes_between_readings_counts() -> None:
    # read every 10 min, no register: 39 kW to 44 % SoC, 12 kW at 64 %, 11 kW at 69 %, then
    # 29 kW. The two low readings are 10 min apart and the fall lasted longer (it began
    # before the first and ended after the last): "10 min or more" is met, not missed by an
    # x > 1 (an independently written fleet, seed 243, 6ea3e152: score 0.500, not flagged)
    t = np.arange(445.0, 2_846.0, 600.0)
    spec = with_(
        from_power(
            t, np.array([38_719.0, 39_244.0, 12_122.0, 10_762.0, 28_978.0]), offered_w=150_000.0
        ),
        energy_wh=None,
        soc_pct=[24.6, 44.4, 63.5, 69.2, 74.8],
    )
    flagged, reason = _early_taper([spec])
    assert flagged[0], reason[0]


def _with_meter_stop(
    t: Sequence[float], p: Sequence[float], soc: Sequence[float], e: Sequence[float], stop: float
) -> tuple[bool, object]:
    """A DC session read at ``t`` (power, SoC, register), stopped at ``stop`` s with meterStop
    ``e[-1]`` (the last value of ``e`` is the stop's, the others the readings')."""
    spec = with_(
        from_power(np.asarray(t), np.asarray(p), offered_w=150_000.0),
        soc_pct=list(soc),
        energy_wh=list(e[:-1]),
        start_s=0.0,
        stop_s=stop,
    )
    batch = make_batch([spec])
    batch = replace(
        batch, meter_start_wh=np.array([e[0] - 9_000.0]), meter_stop_wh=np.array([e[-1]])
    )
    detector = next(d for d in fit_detectors(batch) if isinstance(d, EarlyTaper))
    result = detector.score(batch, now_ns=NOW_NS)
    return bool(result.flagged[0]), result.reason[0]


def _derate_read_every_ten_minutes(stop_wh: float) -> tuple[bool, object]:
    """43.8 kW at 40 % SoC, 18.5 kW at 47 % read 10 min apart (the register with them), then
    meterStop ``stop_wh`` 6.8 min later (an independently written fleet, seed 254, 753915)."""
    return _with_meter_stop(
        [460.0, 1_060.0],
        [43_765.0, 18_469.0],
        [40.0, 47.0],
        [3_694_025, 3_698_014, stop_wh],
        1_465.0,
    )


def test_the_stop_shows_a_fall_held_when_the_register_says_so() -> None:
    # the register counts 18.6 kW on average to the stop: the fall held 11 min ("fewer than 3
    # readings" before)
    flagged, reason = _derate_read_every_ten_minutes(3_700_122)
    assert flagged, reason
    assert "held there for 11 min" in str(reason)


def test_the_stop_does_not_hold_a_fall_the_register_does_not_show() -> None:
    # the register counting a third of that power to the stop (the car stopped drawing in
    # between): nothing says the fall held
    flagged, reason = _derate_read_every_ten_minutes(3_698_714)
    assert not flagged, reason


def test_no_fall_counts_at_the_stop_itself() -> None:
    # 50 kW at every reading, then the register's mean to the stop 36 kW (28 % less, within
    # the hold): the last reading is at the session's peak, so no stretch under the band or a
    # step is going on for the stop to extend, and a stop's reading carries SoC 100 %, where
    # no fall counts
    flagged, reason = _with_meter_stop(
        [0.0, 300.0, 600.0],
        [50_000.0, 50_000.0, 50_000.0],
        [40.0, 44.0, 48.0],
        [1_000_000, 1_004_167, 1_008_333, 1_014_333],
        1_200.0,
    )
    assert not flagged, reason


def _read_every_ten_minutes(p_kw: Sequence[float], soc: Sequence[float]) -> tuple[bool, object]:
    t = 220.0 + 600.0 * np.arange(len(p_kw))
    spec = with_(
        from_power(t, np.asarray(p_kw) * 1000.0, offered_w=150_000.0),
        energy_wh=None,
        soc_pct=list(soc),
    )
    flagged, reason = _early_taper([spec])
    return bool(flagged[0]), reason[0]


def test_three_readings_under_the_band_ten_minutes_apart_are_enough() -> None:
    # 75 kW at 19 % SoC, then 41, 27, 27 kW at 37-58 %: three readings in a row under what
    # published curves draw there, over 20 min (an independently written fleet, seed 274:
    # missed while four were asked for whatever the sampling)
    flagged, reason = _read_every_ten_minutes([75.1, 40.7, 27.2, 27.2, 26.8], [19, 37, 49, 58, 67])
    assert flagged, reason


def test_two_readings_under_the_band_ten_minutes_apart_are_not() -> None:
    flagged, reason = _read_every_ten_minutes([75.1, 74.0, 73.5, 40.7, 27.2], [10, 19, 28, 37, 49])
    assert not flagged, reason


@pytest.mark.parametrize("back_kw", [50.5, None])
def test_a_dc_dip_without_soc_that_climbs_back_at_once_is_a_derating(
    back_kw: float | None,
) -> None:
    # DC read every 2 min, no SoC and no offer: 88 kW, then 36 kW easing to 26 kW over 20 min,
    # then ``back_kw`` within one reading (an outside fleet's cable derating, seed 2, 108831:
    # not scored for want of SoC). No battery's acceptance climbs back that fast; without the
    # climb the fall may be the car's own taper, and nothing tells.
    t = np.arange(0.0, 50 * MIN + 1e-9, 2 * MIN)
    p = np.where(t < 10 * MIN, 88_000.0, 36_000.0 - (t - 10 * MIN) / (20 * MIN) * 10_000.0)
    after = t > 30 * MIN
    p = np.where(after, back_kw * 1000.0 if back_kw else 26_000.0, p)
    p[0] = 0.0
    spec = with_(from_power(t, p, offered_w=np.full(t.size, np.nan)), soc_pct=None)
    flagged, reason = _early_taper([spec])
    if back_kw:
        assert flagged[0], reason[0]
        assert "climbed back" in str(reason[0])
    else:
        assert not flagged[0]
        assert "no state of charge reported" in str(reason[0])


@pytest.mark.parametrize(("after_kw", "flagged"), [(15.5, True), (45.0, False)])
def test_a_derate_after_the_car_stops_reporting_soc_is_judged_by_its_most_soc(
    after_kw: float, flagged: bool
) -> None:
    # DC every 2 min: 49 kW from 11 % to 35 % SoC on a ~40 kWh car, then ``after_kw`` for an
    # hour with no SoC reported from then on (a car that stops reporting SoC is normal). Its
    # SoC can be at most the last report plus the energy since over the least battery the
    # session shows: at 15.5 kW the fall came at about 37 %, where no car's curve falls to a
    # third (outside fleet seed 4, 433114: missed); 45 kW is a car's own easing
    t = np.arange(0.0, 75 * MIN + 1e-9, 2 * MIN)
    p = np.where(t <= 14 * MIN, 49_000.0, after_kw * 1000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=np.full(t.size, np.nan))
    delivered = np.asarray(spec.energy_wh) - spec.energy_wh[0]  # type: ignore[index]
    soc = np.where(t <= 14 * MIN, np.floor(11.0 + delivered / 400.0), np.nan)
    flagged_now, reason = _early_taper([with_(spec, soc_pct=list(soc))])
    assert bool(flagged_now[0]) is flagged, reason[0]


def test_an_ac_dip_under_a_three_phase_offer_that_climbs_back_is_no_derating() -> None:
    # a one-phase car at 3.4 kW; the site's load management cuts the three-phase offer to
    # 5.66 kW (8.2 A a phase: 1.9 kW for this car) for 21 min, then lifts it, and the car
    # climbs back at once. The offer in watts is over three phases and does not cap a one-phase
    # car's power by its own figure, so the rebound, which reads it so, is DC only (the
    # simulator's demo fleet, seed 1, CW-AC-0024: flagged while the rebound judged AC)
    t = np.arange(0.0, 90 * MIN + 1e-9, 30.0)
    cut = (t >= 30 * MIN) & (t < 51 * MIN)
    p = np.where(cut, 1_897.5, 3_393.0)
    p[0] = 0.0
    offered = np.where(cut, 5_657.0, 22_630.0)
    spec = with_(from_power(t, p, offered_w=offered), soc_pct=None)
    flagged, reason = _early_taper([spec])
    assert not flagged[0], reason[0]


def _current_only(spec: Spec) -> Any:
    """``spec`` as an AC station that sends current but no power sends it (one phase at 230 V:
    the current is the power over 230 V)."""
    batch = make_batch([with_(spec, power_w=None)])
    power = np.full(batch.current_a.shape, np.nan)
    power[0, : len(spec.t_s)] = np.asarray(spec.power_w, dtype=np.float64)
    return replace(batch, current_a=power / 230.0)


def test_an_ac_derate_shown_by_current_alone_is_an_early_taper() -> None:
    # town fleet seed 1, TF-0118-2-002: 16 A, then 7.3 A for hours under an unchanged 16 A
    # offer, no power and no SoC sent: "no charging power reported" before
    t = np.arange(0.0, 240 * MIN + 1e-9, 6 * MIN)
    p = np.where(t >= 60 * MIN, 7.3 * 230.0, 16.0 * 230.0)
    p[0] = 0.0
    batch = _current_only(from_power(t, p, offered_w=3_680.0))
    detector = next(d for d in fit_detectors(batch) if isinstance(d, EarlyTaper))
    result = detector.score(batch, now_ns=NOW_NS)
    assert result.flagged[0], result.reason[0]


def test_an_ac_cars_own_tail_shown_by_current_alone_is_normal() -> None:
    batch = _current_only(ac_tail_without_soc_sampled_every_five_minutes())
    detector = next(d for d in fit_detectors(batch) if isinstance(d, EarlyTaper))
    result = detector.score(batch, now_ns=NOW_NS)
    assert not result.flagged[0], result.reason[0]
