"""A table of small hand-made sessions: each anomaly is flagged where it must be, and the normal
behaviour of CONTRACTS.md section 3 is flagged by nothing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from analytics.batch import StatusCode
from analytics.detectors import detect, fit_detectors
from chargewatch.kinds import AnomalyKind
from tests.analytics.detectors.helpers import (
    NOW_NS,
    Spec,
    charge,
    from_power,
    make_batch,
    with_,
)

ALL_KINDS = {kind.value for kind in AnomalyKind}  # every contract kind has a detector
MIN = 60.0


def minutes(total: float, step_s: float = 60.0) -> np.ndarray:
    return np.arange(0.0, total * MIN + 1e-9, step_s)


def only_samples(spec: Spec, keep: np.ndarray) -> Spec:
    """``spec`` with only the samples at ``keep`` (the others were never sent)."""
    columns = ("t_s", "energy_wh", "power_w", "offered_w", "status")
    return with_(spec, **{name: list(np.asarray(getattr(spec, name))[keep]) for name in columns})


def stall() -> list[Spec]:
    t = minutes(180)
    p = np.where((t >= 60 * MIN) & (t < 90 * MIN), 0.0, 7_400.0)
    p[0] = 0.0
    return [from_power(t, p, offered_w=7_400.0)]


def early_taper_ac() -> list[Spec]:
    t = minutes(240)
    p = np.where((t >= 40 * MIN) & (t < 100 * MIN), 4_500.0, 11_000.0)
    p[0] = 0.0
    return [from_power(t, p, offered_w=11_000.0)]


def early_taper_dc() -> list[Spec]:
    t = minutes(40, 20.0)
    p = np.where(t >= 12 * MIN, 40_000.0, 100_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=150_000.0)
    soc = 10.0 + (np.asarray(spec.energy_wh) - spec.energy_wh[0]) / 75_000.0 * 100.0  # type: ignore[index]
    return [with_(spec, soc_pct=list(soc))]


def early_taper_ac_until_the_driver_leaves() -> list[Spec]:
    # 11 kW, then 4.5 kW for the last 30 min: no recovery before the stop
    t = minutes(150)
    p = np.where(t >= 120 * MIN, 4_500.0, 11_000.0)
    p[0] = 0.0
    return [from_power(t, p, offered_w=11_000.0)]


def dc_charge(
    curve_soc: list[float],
    curve_kw: list[float],
    *,
    soc0: float = 10.0,
    battery_kwh: float = 60.0,
    minutes_total: float = 40.0,
    step_s: float = 10.0,
    derate: tuple[float, float] | None = None,  # (from minute, factor) to the end
    offered_kw: np.ndarray | None = None,
) -> Spec:
    """A DC charge following a car's curve of power against SoC, the SoC integrated from the
    power one step at a time; optionally derated by a factor from some minute on."""
    t = minutes(minutes_total, step_s)
    soc = np.empty(t.size)
    p = np.empty(t.size)
    level = soc0
    for i, ts in enumerate(t):
        soc[i] = level
        kw = float(np.interp(level, curve_soc, curve_kw))
        if offered_kw is not None:
            kw = min(kw, float(offered_kw[i]))
        if derate is not None and ts >= derate[0] * MIN:
            kw *= derate[1]
        p[i] = 0.0 if i == 0 else kw * 1000.0
        level = min(level + p[i] * step_s / 3600.0 / (battery_kwh * 1000.0) * 100.0, 100.0)
    offered = 150_000.0 if offered_kw is None else offered_kw * 1000.0
    return with_(from_power(t, p, offered_w=offered), soc_pct=list(soc))


def early_taper_dc_derated_to_the_end() -> list[Spec]:
    # flat 100 kW to 55 % SoC; halved from minute 10 (about 35 % SoC) until the driver leaves
    return [dc_charge([0, 55, 80, 100], [100, 100, 40, 10], derate=(10.0, 0.5))]


def soc_dip_at_a_late_step() -> list[Spec]:
    # a car's own step at 80 % SoC (50 -> 16 kW), but it reports 18 % less for a minute just
    # as the step comes: the SoC is wrong (soc_inconsistent), the taper is not early (seen in a
    # simulated fleet, seed 4242: "power fell ... at 63 % SoC")
    spec = dc_charge([0, 80, 80.5, 100], [50, 50, 16, 16], soc0=52.0, minutes_total=60.0)
    soc = np.asarray(spec.soc_pct, dtype=float)
    step = int(np.argmax(soc >= 80.0))
    soc[step - 2 : step + 4] -= 18.0
    return [with_(spec, soc_pct=list(np.round(soc)))]


def soc_falls_and_stays_low_before_the_taper() -> list[Spec]:
    # a car tapering from its own 76 % on (42 -> 20 kW) whose SoC fell 22 % early on and stays
    # that far low, so the taper shows at a reported 54 %: the SoC is wrong (soc_inconsistent),
    # the taper is not early (an independently written fleet, seed 22, eb978084-...)
    spec = dc_charge([0, 76, 79, 100], [42, 42, 20, 18], soc0=40.0, minutes_total=45.0)
    soc = np.asarray(spec.soc_pct, dtype=float)
    fall = int(np.argmax(soc >= 44.0))
    soc[fall:] -= 22.0
    return [with_(spec, soc_pct=list(np.round(soc, 1)))]


def normal_dc_step_at_69_reported_in_5_percent_steps() -> list[Spec]:
    # a car's own step at 69 % SoC (49 -> 25 kW) from a car that reports SoC in 5 % steps: it
    # says "65 %" until 70 %, so the fall shows at "65 %" (simulated fleet, seed 6161)
    spec = dc_charge([0, 69, 69.5, 100], [49, 49, 25, 25], soc0=50.0, minutes_total=45.0)
    soc = np.floor(np.asarray(spec.soc_pct, dtype=float) / 5.0) * 5.0
    return [with_(spec, soc_pct=list(soc))]


def meter_stuck() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[30:45] = e[30]
    e[45:] -= e[45] - e[30]
    return [with_(spec, energy_wh=list(e))]


def meter_backwards() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60:] -= 5_000.0
    return [with_(spec, energy_wh=list(e))]


def meter_falls_less_than_a_step() -> list[Spec]:
    # 45 kW sampled every 15 s: every step rises ~188 Wh, yet the register counts single Wh,
    # so a fall of 136 Wh is no rounding (an independently written fleet, seed 21, session
    # 409261: 1648320 -> 1648184 -> 1648373 Wh was missed while the resolution was taken from
    # the smallest step alone)
    spec = charge(power_w=45_000.0, minutes=30, interval_s=15.0, offered_w=150_000.0)
    e = np.asarray(spec.energy_wh)
    e[40] = e[39] - 136.0
    return [with_(spec, energy_wh=list(e))]


def meter_reset() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60:] -= e[59] - 12.0
    return [with_(spec, energy_wh=list(e))]


def meter_jump() -> list[Spec]:
    spec = charge(power_w=11_000.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60:] += 8_192.0
    return [with_(spec, energy_wh=list(e))]


def meter_jump_under_a_seventh() -> list[Spec]:
    # +2.5 kWh in a minute at 11 kW (at most 0.2 kWh possible) in a 22 kWh session: a jump,
    # and the register's energy 11 % over the power's, inside the 15 % of meter_mismatch (the
    # first independently written fleet keeps its jumps under 9 % of the session for this)
    spec = charge(power_w=11_000.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60:] += 2_500.0
    return [with_(spec, energy_wh=list(e))]


def meter_spike() -> list[Spec]:
    # one reading 8,192 Wh high (a bit flipped in one answer), the next right again: the rise
    # and the fall are meter_jump's and meter_backwards'; read as a counter (every rise counts,
    # a fall is a reset), the register counted 8.2 kWh more than the 21.7 kWh that flowed, a
    # mismatch too (three independently written fleets label it so)
    spec = charge(power_w=11_000.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60] += 8_192.0
    return [with_(spec, energy_wh=list(e))]


def meter_spike_under_a_seventh() -> list[Spec]:
    # the same with 1,024 Wh: 5 % of the session, within meter_mismatch's 15 %
    spec = charge(power_w=11_000.0, minutes=120)
    e = np.asarray(spec.energy_wh)
    e[60] += 1_024.0
    return [with_(spec, energy_wh=list(e))]


def _current_only(*, phases: float, power_factor: float, scale: float) -> list[Spec]:
    # an AC station that sends Current.Import (per phase) and Voltage but no power, every
    # 60 s for 3 h: 16 A at 229-231 V on ``phases`` phases at ``power_factor``, the register
    # counting ``scale`` times what flowed (town fleet: a register 0.63-0.69 or 1.50-1.56
    # times what one phase's current delivers was "less than 100 Wh counted")
    t = np.arange(0.0, 180 * MIN + 1e-9, MIN)
    amps = np.full(t.size, 16.0)
    amps[0] = 0.0
    volts = 230.0 + np.sin(t / 600.0)
    real_w = phases * power_factor * amps * volts
    spec = from_power(t, real_w, offered_w=phases * 16.0 * 230.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    e = np.floor(e[0] + scale * (e - e[0]))
    return [
        with_(spec, energy_wh=list(e), power_w=None, current_a=list(amps), voltage_v=list(volts))
    ]


def stall_current_only_register_in_100_wh() -> list[Spec]:
    # a 7.4 kW wallbox sending current and voltage, no power, and its register in 100 Wh
    # steps: 0 A for 40 min under "Charging" mid-session (town fleet seed 2, TF-0049-1-002:
    # "fewer than 3 power readings")
    t = minutes(180)
    amps = np.where((t >= 60 * MIN) & (t < 100 * MIN), 0.0, 32.0)
    amps[0] = 0.0
    volts = np.full(t.size, 230.0)
    spec = from_power(t, amps * volts, offered_w=7_400.0)
    e = np.floor(np.asarray(spec.energy_wh, dtype=float) / 100.0) * 100.0
    return [
        with_(spec, energy_wh=list(e), power_w=None, current_a=list(amps), voltage_v=list(volts))
    ]


def meter_stuck_current_only() -> list[Spec]:
    # 16 A on one phase, current and voltage but no power: the register holds for 30 min
    # (1.8 kWh not counted), then counts on from where it stood (town fleet seed 2,
    # TF-0147-1-001: "not scored")
    (spec,) = _current_only(phases=1.0, power_factor=0.99, scale=1.0)
    t = np.asarray(spec.t_s)
    e = np.asarray(spec.energy_wh, dtype=float)
    held = (t >= 60 * MIN) & (t < 90 * MIN)
    frozen = e[np.argmax(held) - 1]
    lost = e[np.flatnonzero(held)[-1] + 1] - frozen
    e = np.where(held, frozen, np.where(t >= 90 * MIN, e - lost, e))
    return [with_(spec, energy_wh=list(e))]


def stall_to_the_stop_register_at_the_ends() -> list[Spec]:
    # 3.6 kW AC read every minute in whole minutes, the register only in the transaction's
    # Begin and End readings, a periodic sample stamped the same minute as the End: nothing
    # for the last 20 min under "Charging", then the driver stops. The End reading's register
    # step runs from the Begin and holds the whole charge, which broke the rest before the
    # sample after it (simulator seed 9901, CW-AC-0078-1-00003: a rest of "0 s")
    t = np.concatenate((minutes(90), [90 * MIN]))
    p = np.where(t < 70 * MIN, 3_600.0, 0.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=10_800.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    e[1:-2] = np.nan
    e[-1] = np.nan
    return [with_(spec, energy_wh=list(e))]


def _register_holds_after_the_car_stopped(catch_up_s: float) -> list[Spec]:
    # a DC car at 49 kW read every 20 s is full at 40 min (0 W and SuspendedEV after it); the
    # register holds from 40 s before and catches up ``catch_up_s`` after it
    t = np.arange(0.0, 60 * MIN + 1e-9, 20.0)
    p = np.where(t < 40 * MIN, 49_000.0, 0.0)
    p[0] = 0.0
    status = np.where(t < 40 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    spec = from_power(t, p, offered_w=150_000.0, status=status)
    e = np.asarray(spec.energy_wh, dtype=float)
    held = (t >= 40 * MIN - 40.0) & (t < 40 * MIN + catch_up_s)
    e = np.where(held, e[np.argmax(held) - 1], e)
    return [with_(spec, energy_wh=list(e))]


def meter_stuck_holding_on_after_the_car_stopped() -> list[Spec]:
    # 5 min after the stop: 0.54 kWh owed since before it (field fleet seed 5, a31924ec:
    # "two readings", missed)
    return _register_holds_after_the_car_stopped(5 * MIN)


def normal_register_polled_every_minute_catching_up_after_the_stop() -> list[Spec]:
    # the next poll, 40 s after the stop: a meter polled once a minute
    return _register_holds_after_the_car_stopped(40.0)


def meter_mismatch_power_in_kw_register_in_kwh() -> list[Spec]:
    # a DC station sending power in kW in the W field (39 for 39 kW) and its register in whole
    # kWh, a car of 30 kWh climbing 2 % a minute: the register counts what the SoC shows, the
    # power is the witness that is wrong. Its steps read "SoC rose 2 % in 60 s on at most
    # 0.000 kWh" (town fleet seed 6, TF-0159-1-006, 3 such sessions)
    t = minutes(40)
    p = np.full(t.size, 39_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=50_000.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    soc = np.floor(11.0 + (e - e[0]) / 30_000.0 * 100.0 * 0.93)
    return [
        with_(
            spec,
            energy_wh=list(np.floor(e / 1000.0) * 1000.0),
            power_w=list(p / 1000.0),
            soc_pct=list(soc),
        )
    ]


def early_taper_current_only_no_rating_no_offer() -> list[Spec]:
    # a home wallbox sending current and voltage only, no offer, no rating declared: 16 A,
    # then 7.6 A from 60 min for the rest of 4 h (a wallbox's thermal derating; town fleet seed
    # 7, TF-0067-1-001: "fewer than 3 power readings", the station taken for not AC)
    t = minutes(240)
    amps = np.where(t < 60 * MIN, 16.0, 7.6)
    amps[0] = 0.0
    volts = np.full(t.size, 230.0)
    spec = from_power(t, amps * volts, offered_w=0.0)
    return [
        with_(
            spec,
            power_w=None,
            offered_w=None,
            current_a=list(amps),
            voltage_v=list(volts),
        )
    ]


def meter_spike_on_a_kwh_register_as_the_car_winds_down() -> list[Spec]:
    # a register in whole kWh, 11 kW read every minute for 2 h, one reading 65,536 Wh high
    # (a bit flipped); then the car draws 5.5 kW and 2.8 kW for 3 min each and stops, the
    # register in its kWh holding over those 0.4 kWh. The spike read every value as counted
    # in single Wh, and the wind-down as stuck (town fleet seed 8, TF-0156-3-001)
    t = minutes(180)
    p = np.select([t < 120 * MIN, t < 123 * MIN, t < 126 * MIN], [11_000.0, 5_500.0, 2_750.0], 0.0)
    p[0] = 0.0
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    spec = from_power(t, p, offered_w=11_000.0, status=status)
    e = np.floor(np.asarray(spec.energy_wh, dtype=float) / 1000.0) * 1000.0
    e[60] += 65_536.0
    return [with_(spec, energy_wh=list(e))]


def normal_current_only_three_phases() -> list[Spec]:
    return _current_only(phases=3.0, power_factor=0.99, scale=1.0)


def normal_current_only_one_phase_at_power_factor_093() -> list[Spec]:
    return _current_only(phases=1.0, power_factor=0.93, scale=1.0)


def meter_mismatch_current_only_07_of_one_phase() -> list[Spec]:
    return _current_only(phases=1.0, power_factor=0.99, scale=0.7)


def meter_mismatch_current_only_15_of_one_phase() -> list[Spec]:
    return _current_only(phases=1.0, power_factor=0.99, scale=1.5)


def meter_jump_while_idle() -> list[Spec]:
    # a 7.4 kW wallbox, the car full and idle (0-19 W, the register ticking single Wh), then
    # +563 Wh in 20 s after a 4 min hold: a stale register has nothing to catch up on when
    # nothing flowed (an independently written fleet, seed 32, TX-0091-70490: read as 563 Wh
    # in 4 min, within 7.4 kW)
    t = np.arange(0.0, 60 * MIN + 1e-9, 20.0)
    p = np.where(t < 30 * MIN, 7_400.0, 0.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=7_400.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    jump = int(np.argmax(t >= 50 * MIN))
    e[jump:] += 563.0
    status = np.where(t < 30 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return [with_(spec, energy_wh=list(e), status=list(status))]


def _coarse_register_held_after_a_taper(jump_wh: float) -> Spec:
    # an 11 kW wallbox read every 30 s, its register counting in 100 Wh: 60 min at 11 kW, a
    # taper at 0.9 kW for 3 min, then the car full and idle at 10 W (SuspendedEV); the register
    # last ticked during the taper and held for 3.5 h; ``jump_wh`` more from 4.5 h on
    t = np.arange(0.0, 5 * 3600.0 + 1e-9, 30.0)
    p = np.where(t < 60 * MIN, 11_000.0, np.where(t < 63 * MIN, 900.0, 10.0))
    p[0] = 0.0
    spec = from_power(t, p, offered_w=11_000.0)
    e = np.floor(np.asarray(spec.energy_wh, dtype=float) / 100.0) * 100.0
    e[t >= 4.5 * 3600.0] += jump_wh
    status = np.where(t < 63 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(spec, energy_wh=list(e), status=list(status))


def meter_jump_after_a_hold_that_began_in_a_taper() -> list[Spec]:
    # +700 Wh in 30 s at rest: the hold's power readings show 0.1 kWh could flow in it, not
    # the 11 kW rating over 3.5 h (an independently written fleet, seed 313, 701751: allowed
    # 58 kWh)
    return [_coarse_register_held_after_a_taper(700.0)]


def normal_coarse_register_held_after_a_taper() -> list[Spec]:
    return [_coarse_register_held_after_a_taper(0.0)]


def _polled_register(step_s: float, poll_s: float) -> list[Spec]:
    """11 kW read every ``step_s``, the register polled every ``poll_s`` (the value read at the
    last poll repeated in between)."""
    t = np.arange(0.0, 40 * MIN + 1e-9, step_s)
    p = np.full(t.size, 11_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=11_000.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    polled = np.floor(t / poll_s) * poll_s
    e = np.interp(polled, t, e)
    return [with_(spec, energy_wh=list(e))]


def stale_register_catches_up_on_what_flowed() -> list[Spec]:
    # a register sent every 30 s but polled every 4 min: it holds while 11 kW flows (a stuck
    # register by the contract), then catches up 0.7 kWh in one step of 30 s, more than the
    # connector delivers in it: a jump by the contract's words (the outside fleet labels every
    # stuck register's catch-up so)
    return _polled_register(30.0, 240.0)


def register_frozen_until_the_car_stops_then_catches_up() -> list[Spec]:
    # field fleet seed 1, 2116c9b2: 90 kW DC read every minute; the register freezes for 25
    # min while power flows, the car stops (SuspendedEV, 0 W) and the register catches up 38
    # kWh a minute later, one flat step at 0 W between the frozen run and its catch-up
    t = np.arange(0.0, 40 * MIN + 1e-9, MIN)
    p = np.where(t < 38 * MIN, 90_000.0, 0.0)
    p[0] = 0.0
    status = np.where(t < 38 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    spec = from_power(t, p, offered_w=150_000.0, status=status)
    e = np.asarray(spec.energy_wh, dtype=float)
    frozen = (t >= 12 * MIN) & (t < 40 * MIN)
    e[frozen] = e[np.flatnonzero(frozen)[0]]
    e[-1] = np.asarray(spec.energy_wh)[-1]
    return [with_(spec, energy_wh=list(e))]


def register_moving_every_reading_then_frozen_for_100_s() -> list[Spec]:
    # field fleet seed 1, FLD0003C-48219: 52 kW DC read every 20 s, the register moving at
    # every reading, then flat for 5 readings (100 s, 1.4 kWh) before the car stops; a hold
    # of four of its own intervals is a stopped register, though under 2 min
    t = np.arange(0.0, 30 * MIN + 1e-9, 20.0)
    p = np.where(t < 28 * MIN, 52_000.0, 0.0)
    p[0] = 0.0
    status = np.where(t < 28 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    spec = from_power(t, p, offered_w=150_000.0, status=status)
    e = np.asarray(spec.energy_wh, dtype=float)
    frozen = t >= 28 * MIN - 120.0  # 5 steps at power, 100 s
    e[frozen] = e[np.flatnonzero(frozen)[0]]
    return [with_(spec, energy_wh=list(e))]


def register_polled_every_minute() -> list[Spec]:
    # read every 10 s, the register polled every minute: holds shorter than meter_stuck's 2
    # min whose catch-up the hold's power readings account for are neither stuck nor a jump
    return _polled_register(10.0, 60.0)


def meter_mismatch_register_only_at_the_ends() -> list[Spec]:
    # 7 kW AC read every 60 s for 6.8 h, the register only in the first and the last reading
    # (a common MeterValues configuration), and 19 % fast: one register step over the whole
    # session, beyond its power readings but not by half again: a meter out of calibration,
    # not a jump (the simulator's seed 1, CW-AC-0002-1-00001, read as a jump when the hold's
    # bound took the readings with the rating's 10 % margin only)
    t = np.arange(0.0, 411 * MIN + 1e-9, MIN)
    p = np.full(t.size, 7_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=22_000.0)
    exact = np.asarray(spec.energy_wh, dtype=float)
    e = np.full(t.size, np.nan)
    e[0] = exact[0]
    e[-1] = exact[0] + 1.19 * (exact[-1] - exact[0])
    return [with_(spec, energy_wh=list(e))]


def meter_mismatch() -> list[Spec]:
    spec = charge(power_w=11_000.0, minutes=180)
    e = np.asarray(spec.energy_wh)
    e = e[0] + 0.7 * (e - e[0])
    return [with_(spec, energy_wh=list(e))]


def _sampled_every_ten_minutes(scale: float) -> Spec:
    # 3.6 kW AC for 51 min, the car's taper to standby over 3 min, plugged for 2.5 h more at
    # 0-35 W (under the sensor offset); the true power every 5 s, the station's readings every
    # 10 min (clock-aligned), the register counting ``scale`` times the true energy (blind fleet
    # seed 72 with --sparse-sampling 0.5, evse-0032: 22 % short, left "unverifiable")
    fine = np.arange(0.0, 210 * MIN + 1e-9, 5.0)
    true_w = np.interp(fine, [0, 51 * MIN, 54 * MIN, 210 * MIN], [3_600, 3_600, 20, 20])
    true_w += np.where(fine > 54 * MIN, 15.0 * np.sin(fine / 700.0), 0.0)
    true_wh = np.concatenate(([0.0], np.cumsum(true_w[1:] * 5.0 / 3600.0)))
    at = np.arange(200.0, 210 * MIN, 600.0)
    pick = np.searchsorted(fine, at)
    spec = from_power(at, true_w[pick], offered_w=3_700.0)
    register = np.floor(1_000_000.0 + scale * true_wh[pick])
    status = np.where(at < 54 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(spec, energy_wh=list(register), status=list(status))


def meter_mismatch_sampled_every_ten_minutes() -> list[Spec]:
    return [_sampled_every_ten_minutes(0.78)]


def normal_sampled_every_ten_minutes() -> list[Spec]:
    return [_sampled_every_ten_minutes(1.0)]


def _ac_paused_unseen_every_fifteen_minutes(scale: float) -> Spec:
    # 11 kW AC read every 15 min; between two readings at 11 kW the car paused for 5.5 min
    # (unseen), then it tapered to full and stood plugged in; the register counts ``scale``
    # times the true energy (blind fleet seed 301, evse-0089, 48823: the register right to 1 Wh
    # over the step before, "-18 %" meter_mismatch on a normal session)
    fine = np.arange(0.0, 110 * MIN + 1e-9, 5.0)
    true_w = np.interp(
        fine, [0, 30, 50 * MIN, 53 * MIN, 55 * MIN, 60 * MIN], [0, 11_000, 11_000, 11_000, 900, 0]
    )
    true_w[(fine > 30 * MIN) & (fine < 35.5 * MIN)] = 0.0
    true_wh = np.concatenate(([0.0], np.cumsum(true_w[1:] * 5.0 / 3600.0)))
    at = np.arange(10 * MIN, 110 * MIN, 15 * MIN) - 5.0  # stamps with seconds, not whole minutes
    pick = np.searchsorted(fine, at)
    spec = from_power(at, true_w[pick], offered_w=11_000.0)
    register = np.floor(1_000_000.0 + scale * true_wh[pick])
    status = np.where(at < 56 * MIN, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(spec, energy_wh=list(register), status=list(status), start_s=0.0)


def normal_ac_paused_unseen_every_fifteen_minutes() -> list[Spec]:
    return [_ac_paused_unseen_every_fifteen_minutes(1.0)]


def meter_mismatch_ac_paused_unseen_every_fifteen_minutes() -> list[Spec]:
    return [_ac_paused_unseen_every_fifteen_minutes(0.8)]


def normal_dc_first_reading_in_the_ramp_every_fifteen_minutes() -> list[Spec]:
    # a DC station sampling every 15 min (clock-aligned) takes its first reading 15 s after the
    # start, while the power still ramps up (28 kW); the car then draws 50 kW and its taper
    # brings it back to 27 kW by the next reading (blind fleet seed 122 with --sparse-sampling
    # 0.5, 805717 and TX-0121-805787: "+55 %", "+58 %" meter_mismatch on normal sessions)
    fine = np.arange(0.0, 46 * MIN + 1e-9, 1.0)
    true_w = np.interp(
        fine,
        [0, 27, 45, 8 * MIN, 15.25 * MIN, 46 * MIN],
        [0, 28_000, 50_000, 50_000, 27_000, 18_000],
    )
    true_wh = np.concatenate(([0.0], np.cumsum(true_w[1:] / 3600.0)))
    at = np.array([15.0, 15.25 * MIN, 30.25 * MIN, 45.25 * MIN])
    pick = np.searchsorted(fine, at)
    spec = from_power(at, true_w[pick], offered_w=50_000.0)
    register = np.floor(1_000_000.0 + true_wh[pick])
    return [with_(spec, energy_wh=list(register), start_s=0.0)]


def normal_dc_resumed_between_two_readings_every_fifteen_minutes() -> list[Spec]:
    # a DC station sampling every 15 min: the offer is 0 for the first 17 min (load
    # management), then 150 kW; the car climbs to 80 kW in a minute and tapers to 57 kW by the
    # next reading, 13 min later, and the driver leaves (blind fleet seed 133 with
    # --sparse-sampling 0.5, 54301: "+155 %" meter_mismatch on a normal session)
    fine = np.arange(0.0, 32 * MIN + 1e-9, 1.0)
    true_w = np.interp(fine, [0, 17 * MIN, 18 * MIN, 31 * MIN, 32 * MIN], [0, 0, 80e3, 57e3, 57e3])
    true_wh = np.concatenate(([0.0], np.cumsum(true_w[1:] / 3600.0)))
    at = np.array([1.0, 16.0, 31.0]) * MIN + np.array([0.137, 0.291, 0.433])
    pick = np.searchsorted(fine, at)
    offered = np.where(at < 17 * MIN, 0.0, 150_000.0)
    spec = from_power(at, true_w[pick], offered_w=offered)
    status = np.where(at < 17 * MIN, int(StatusCode.SUSPENDED_EVSE), int(StatusCode.CHARGING))
    register = np.floor(1_000_000.0 + true_wh[pick])
    return [with_(spec, energy_wh=list(register), status=list(status), start_s=0.0)]


def normal_dc_paused_by_the_charger_between_two_readings_every_fifteen_minutes() -> list[Spec]:
    # a 50 kW DC station sampling every 15 min (the register in steps of 100 Wh): the charger
    # says SuspendedEVSE 4 min after a reading and Charging again 3 s after the next, which
    # still shows 50 kW; the register took 3.2 kWh over that step, the trapezoid 12.6 (blind
    # fleet seed 132 with sparse and coarse stations, TX-0033-249523: "-38 %" meter_mismatch
    # on a normal session)
    at = np.array([5.33, 20.33, 35.33, 43.17]) * MIN
    power = [50_710.0, 50_520.0, 50_000.0, 50_000.0]
    spec = from_power(at, np.asarray(power), offered_w=50_000.0)
    evse, charging = int(StatusCode.SUSPENDED_EVSE), int(StatusCode.CHARGING)
    return [
        with_(
            spec,
            energy_wh=[2_433_200.0, 2_445_700.0, 2_448_900.0, 2_455_400.0],
            status=[charging, charging, evse, charging],
            start_s=0.0,
        )
    ]


def normal_dc_offer_lowered_and_lifted_between_readings_every_fifteen_minutes() -> list[Spec]:
    # a 50 kW DC station sampling every 15 min: the charger lowers its offer to 23.8 kW some time
    # before a reading (which shows 23.7 kW) and lifts it some time after; the register took 46
    # and 32 kW on average over the two steps, the trapezoid 37 and 24 (blind fleet seed 332
    # with --sparse-sampling 0.7, TX-0149-570816: "+28 %" meter_mismatch on a normal session)
    at = np.array([570.0, 1_470.0, 2_370.0])
    offered = [50_000.0, 23_846.0, 50_000.0]
    spec = from_power(at, np.array([50_206.0, 23_730.0, 25_111.0]), offered_w=offered)
    return [with_(spec, energy_wh=[4_000_407.0, 4_012_036.0, 4_020_035.0], start_s=0.0)]


def _offer_moved_in_one_step_of_eight(scale: float) -> Spec:
    # 50 kW held for 15 min steps, the offer lowered to 25 kW inside the fourth (the readings
    # around it show 50 and 25 kW, the register 40 kW on average): that step is left out, and
    # the others still tell the meter's scale
    at = np.arange(8) * 900.0 + 301.37
    power = np.array([50_000.0] * 4 + [25_000.0] * 4)
    spec = from_power(at, power, offered_w=power.copy())
    step_wh = np.diff(np.asarray(spec.energy_wh))
    step_wh[3] = 10_000.0  # 40 kW on average: the offer moved 12 min into the step
    register = 2_000_000.0 + np.concatenate(([0.0], np.cumsum(step_wh * scale)))
    return with_(spec, energy_wh=list(register), start_s=0.0)


def normal_offer_moved_in_one_step_of_eight() -> list[Spec]:
    return [_offer_moved_in_one_step_of_eight(1.0)]


def meter_mismatch_offer_moved_in_one_step_of_eight() -> list[Spec]:
    return [_offer_moved_in_one_step_of_eight(0.8)]


def stall_after_a_first_reading_in_the_ramp_two_minutes_before() -> list[Spec]:
    # the first reading 10 s after the start, in the ramp at 33 kW; the next one exactly 2 min
    # later at rest, the register 4.3 kWh up (130 kW in between); then 28 min at rest at 29 %
    # SoC until the driver leaves: a stall, and no meter_mismatch (blind fleet seed 213,
    # 3d427c86: "+683 %" once the 2 min step was kept for the trapezoid)
    at = np.array([10.0, *np.arange(130.0, 31 * MIN, 120.0)])
    power = np.array([32_756.5, *np.full(at.size - 1, 15.0)])
    spec = from_power(at, power, offered_w=150_000.0)
    register = 2_759_240.0 + np.concatenate(([0.0], 4_270.0 + np.arange(at.size - 1) // 2))
    soc = [24.2, *np.full(at.size - 1, 28.8)]
    return [with_(spec, energy_wh=list(register), soc_pct=soc, start_s=0.0)]


def stall_a_minute_after_a_first_reading_in_the_ramp() -> list[Spec]:
    # the first reading 25 s after the start, in the ramp at 76 kW; the next one a minute later
    # at rest, the register (in 100 Wh) 2.1 kWh up: 126 kW on average in between; then 20 min
    # at rest at 38 % SoC until the driver stops. A stall, and no meter_mismatch: the power
    # climbed past the ramp's reading and stopped inside that step (an independently written
    # fleet, seed 244, 622716: "+230 %")
    at = np.array([25.0, *np.arange(85.0, 21 * MIN, 60.0)])
    power = np.array([76_300.0, *np.zeros(at.size - 1)])
    spec = from_power(at, power, offered_w=300_000.0)
    register = [991_500.0, *np.full(at.size - 1, 993_600.0)]
    soc = [35.8, *np.full(at.size - 1, 38.5)]
    return [with_(spec, energy_wh=register, soc_pct=soc, start_s=0.0)]


def data_gap_among_few_readings_stamped_in_whole_minutes() -> list[Spec]:
    # a DC station sampling every 30 s that stamps whole minutes: two readings at 1 min, then
    # nothing for 24 min, then five; the positive steps between such stamps are whole minutes
    # and the gap itself, so their median said the interval was 750 s and hid the gap (blind
    # fleet seed 154, 6654e9a1: the gap missed, and "+48 %" meter_mismatch across it)
    at = np.array([1, 1, 25, 25, 26, 26, 26]) * MIN
    power = np.array([29_195.0, 89_540.0, 56_357.0, 54_586.0, 54_151.0, 53_454.0, 51_978.0])
    spec = from_power(at, power, offered_w=150_000.0)
    soc = [18.9, 19.3, 73.1, 73.5, 73.9, 74.3, 74.7]
    register = [2_336_100.0, 2_336_400.0, 2_376_900.0, 2_377_350.0, 2_377_800.0, 2_378_250.0]
    register.append(2_378_680.0)
    return [with_(spec, soc_pct=soc, energy_wh=register, start_s=0.0, stop_s=26.5 * MIN)]


def data_gap() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    keep = np.r_[0:40, 52:121]
    return [only_samples(spec, keep)]


def _shift_times(spec: Spec, rows: slice, by_s: float) -> Spec:
    t = np.asarray(spec.t_s, dtype=np.float64)
    stop_s = float(t.max()) + 1.0
    t[rows] += by_s
    return with_(spec, t_s=list(t), arrival=list(range(t.size)), stop_s=stop_s)


def clock_1970() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    return [_shift_times(spec, slice(50, 55), -1_795_000_000.0)]


def clock_future() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    return [_shift_times(spec, slice(50, 55), 3 * 365 * 86_400.0)]


def clock_set_back() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    return [_shift_times(spec, slice(50, 55), -40 * MIN)]


def clock_stop_before_start() -> list[Spec]:
    # the stop stamped 39 min before the start, readings in order between (an independently
    # written fleet, seed 22: 0 of 57 such sessions were flagged while only readings counted)
    spec = charge(power_w=7_400.0, minutes=60)
    return [with_(spec, stop_s=-39 * MIN)]


def unauthorized_orphan() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=30)
    return [with_(spec, session_id=None, id_pseudonym=None, auth_result=None, start_s=None)]


def unauthorized_blocked() -> list[Spec]:
    return [charge(power_w=7_400.0, minutes=60, auth_result="Blocked")]


def concurrent_pair() -> list[Spec]:
    a = charge(power_w=7_400.0, minutes=90, session_id="A", station_id="ST1")
    b = charge(power_w=7_400.0, minutes=90, session_id="B", station_id="ST2", offset_s=30 * MIN)
    return [a, b]


# --- normal behaviour ---------------------------------------------------------------------


def normal_ac_full_then_idle() -> list[Spec]:
    return [charge(power_w=11_000.0, minutes=600, full_after_min=200, taper_min=25)]


def normal_dc_taper() -> list[Spec]:
    t = minutes(40, 15.0)
    soc = 20.0 + t / (40 * MIN) * 70.0
    curve = np.interp(soc, [0, 50, 80, 90], [150_000, 150_000, 50_000, 30_000])
    curve[0] = 0.0
    spec = from_power(t, curve, offered_w=150_000.0)
    return [with_(spec, soc_pct=list(soc))]


def normal_dc_stepped_curves() -> list[Spec]:
    # the shapes of published curves that step down: a third off at 47 % SoC from 80 % of the
    # peak (the e-208 family), a quarter off at 50-55 % (Kona, e-Niro), 74 % near 55 % (Model 3)
    return [
        dc_charge([0, 15, 16, 46, 48, 75, 85, 100], [100, 100, 80, 80, 54, 54, 20, 8]),
        dc_charge([0, 50, 55, 75, 80, 100], [77, 77, 57, 57, 30, 8], battery_kwh=64.0),
        dc_charge([0, 52, 58, 80, 100], [170, 170, 126, 60, 10], battery_kwh=55.0, soc0=30.0),
    ]


def normal_dc_offer_lifted_later() -> list[Spec]:
    # held to 32 kW for a while; when the offer lifts the car's own curve is lower than the
    # 44 kW it drew before, so power does not come back up (and it never fell)
    offered = np.where((minutes(60, 10.0) >= 10 * MIN) & (minutes(60, 10.0) < 35 * MIN), 32, 150)
    curve = dc_charge(
        [0, 40, 60, 80, 100],
        [44, 44, 30, 15, 5],
        soc0=20.0,
        battery_kwh=40.0,
        minutes_total=60.0,
        offered_kw=offered.astype(np.float64),
    )
    return [curve]


def normal_ac_long_slow_taper() -> list[Spec]:
    # a 3.7 kW car with a big battery tapering for hours before it is full
    return [charge(power_w=3_700.0, minutes=720, full_after_min=600, taper_min=240)]


def normal_ac_balancing_near_full() -> list[Spec]:
    # some cars drop abruptly to a low balancing current for their last few % and hold it
    t = minutes(240)
    p = np.where(t < 150 * MIN, 11_000.0, np.where(t < 185 * MIN, 1_500.0, 0.0))
    p[0] = 0.0
    full = np.where(t >= 185 * MIN, int(StatusCode.SUSPENDED_EV), int(StatusCode.CHARGING))
    return [from_power(t, p, offered_w=11_000.0, status=full)]


def normal_load_managed() -> list[Spec]:
    t = minutes(240)
    offered = np.where((t >= 60 * MIN) & (t < 120 * MIN), 4_140.0, 11_000.0)
    p = np.minimum(offered, 11_000.0)
    p[0] = 0.0
    return [from_power(t, p, offered_w=offered)]


def normal_pause_by_charger() -> list[Spec]:
    t = minutes(240)
    offered = np.where((t >= 60 * MIN) & (t < 90 * MIN), 0.0, 11_000.0)
    p = offered.copy()
    p[0] = 0.0
    status = np.where(offered == 0, int(StatusCode.SUSPENDED_EVSE), int(StatusCode.CHARGING))
    return [from_power(t, p, offered_w=offered, status=status)]


def normal_single_missing_samples() -> list[Spec]:
    spec = charge(power_w=7_400.0, minutes=120)
    keep = np.setdiff1d(np.arange(121), [20, 50, 80])
    return [only_samples(spec, keep)]


def normal_noisy() -> list[Spec]:
    return [charge(power_w=22_000.0, minutes=180, noise=0.01, seed=3, interval_s=10.0)]


def normal_flat_constant() -> list[Spec]:
    t = minutes(120)
    return [from_power(t, np.zeros(t.size), offered_w=11_000.0)]


def normal_sequential_same_card() -> list[Spec]:
    a = charge(power_w=7_400.0, minutes=60, session_id="A", station_id="ST1")
    b = charge(power_w=7_400.0, minutes=60, session_id="B", station_id="ST2", offset_s=90 * MIN)
    return [a, b]


def normal_same_card_same_station() -> list[Spec]:
    a = charge(power_w=7_400.0, minutes=60, session_id="A", station_id="ST1")
    b = charge(
        power_w=7_400.0,
        minutes=60,
        session_id="B",
        station_id="ST1",
        connector_id=2,
        offset_s=10 * MIN,
    )
    return [a, b]


def normal_idle_orphan() -> list[Spec]:
    t = np.arange(0.0, 6 * 3600.0, 900.0)
    spec = from_power(t, np.zeros(t.size), offered_w=11_000.0)
    return [with_(spec, session_id=None, id_pseudonym=None, auth_result=None, start_s=None)]


CASES: list[tuple[str, Callable[[], list[Spec]], set[str]]] = [
    ("stall", stall, {"stall"}),
    ("early_taper AC", early_taper_ac, {"early_taper"}),
    ("early_taper DC", early_taper_dc, {"early_taper"}),
    ("early_taper DC, derated until the end", early_taper_dc_derated_to_the_end, {"early_taper"}),
    (
        "early_taper AC, until the driver leaves",
        early_taper_ac_until_the_driver_leaves,
        {"early_taper"},
    ),
    ("SoC dips as the car's own step comes", soc_dip_at_a_late_step, {"soc_inconsistent"}),
    (
        "SoC falls and stays low before the car's taper",
        soc_falls_and_stays_low_before_the_taper,
        {"soc_inconsistent"},
    ),
    ("meter_stuck", meter_stuck, {"meter_stuck"}),
    ("meter_backwards", meter_backwards, {"meter_backwards"}),
    ("meter reset to zero", meter_reset, {"meter_backwards"}),
    ("register falls by less than a step", meter_falls_less_than_a_step, {"meter_backwards"}),
    # a jump the register keeps is billed: over 15 % of the session, a mismatch too
    ("meter_jump", meter_jump, {"meter_jump", "meter_mismatch"}),
    ("meter jumps by under 15 % of the session", meter_jump_under_a_seventh, {"meter_jump"}),
    (
        "meter spikes and comes back",
        meter_spike,
        {"meter_jump", "meter_backwards", "meter_mismatch"},
    ),
    (
        "meter spikes by under 15 % and comes back",
        meter_spike_under_a_seventh,
        {"meter_jump", "meter_backwards"},
    ),
    ("current, no power: three phases", normal_current_only_three_phases, set()),
    ("current, no power: register frozen 30 min", meter_stuck_current_only, {"meter_stuck"}),
    (
        "a kWh register with one reading 65,536 Wh high, the car winding down",
        meter_spike_on_a_kwh_register_as_the_car_winds_down,
        {"meter_jump", "meter_backwards", "meter_mismatch"},
    ),
    (
        "current, no power, no offer, no rating: derated to under half",
        early_taper_current_only_no_rating_no_offer,
        {"early_taper"},
    ),
    (
        "power in kW, register in whole kWh, SoC climbing with the register",
        meter_mismatch_power_in_kw_register_in_kwh,
        {"meter_mismatch"},
    ),
    (
        "register holds on 5 min after the car stopped",
        meter_stuck_holding_on_after_the_car_stopped,
        {"meter_stuck"},
    ),
    (
        "register polled once a minute catches up 40 s after the car stopped",
        normal_register_polled_every_minute_catching_up_after_the_stop,
        set(),
    ),
    (
        "stall to the stop, register at Begin and End only",
        stall_to_the_stop_register_at_the_ends,
        {"stall"},
    ),
    (
        "current, no power, register in 100 Wh: stall",
        stall_current_only_register_in_100_wh,
        {"stall"},
    ),
    (
        "current, no power: one phase at power factor 0.93",
        normal_current_only_one_phase_at_power_factor_093,
        set(),
    ),
    (
        "current, no power: register 0.7 of one phase",
        meter_mismatch_current_only_07_of_one_phase,
        {"meter_mismatch"},
    ),
    (
        "current, no power: register 1.5 of one phase",
        meter_mismatch_current_only_15_of_one_phase,
        {"meter_mismatch"},
    ),
    (
        "meter jumps while the connector is idle",
        meter_jump_while_idle,
        {"meter_jump", "meter_mismatch"},
    ),
    ("meter_mismatch", meter_mismatch, {"meter_mismatch"}),
    (
        "meter_mismatch, sampled every 10 min",
        meter_mismatch_sampled_every_ten_minutes,
        {"meter_mismatch"},
    ),
    ("data_gap", data_gap, {"data_gap"}),
    ("clock at 1970", clock_1970, {"clock_fault"}),
    ("clock years ahead", clock_future, {"clock_fault"}),
    ("clock set back", clock_set_back, {"clock_fault"}),
    ("session stop stamped before its start", clock_stop_before_start, {"clock_fault"}),
    ("energy on an orphan segment", unauthorized_orphan, {"unauthorized_energy"}),
    ("energy for a blocked card", unauthorized_blocked, {"unauthorized_energy"}),
    ("one card at two stations", concurrent_pair, {"concurrent_id_tag"}),
    ("AC taper near full, SuspendedEV, idle", normal_ac_full_then_idle, set()),
    ("DC taper with SoC", normal_dc_taper, set()),
    (
        "DC step at 69 % SoC reported in 5 % steps",
        normal_dc_step_at_69_reported_in_5_percent_steps,
        set(),
    ),
    ("DC curves that step down (published shapes)", normal_dc_stepped_curves, set()),
    ("DC offer lifted when the car's curve is lower", normal_dc_offer_lifted_later, set()),
    ("AC car tapering for hours", normal_ac_long_slow_taper, set()),
    ("AC car balancing at 1.5 kW near full", normal_ac_balancing_near_full, set()),
    ("held down by a lower offer", normal_load_managed, set()),
    ("paused by the charger (offer 0)", normal_pause_by_charger, set()),
    ("single missing samples", normal_single_missing_samples, set()),
    ("sensor noise", normal_noisy, set()),
    (
        "DC every 15 min, charging resumed between two readings",
        normal_dc_resumed_between_two_readings_every_fifteen_minutes,
        set(),
    ),
    (
        "DC every 15 min, paused by the charger between two readings",
        normal_dc_paused_by_the_charger_between_two_readings_every_fifteen_minutes,
        set(),
    ),
    (
        "DC every 15 min, the offer lowered and lifted between readings",
        normal_dc_offer_lowered_and_lifted_between_readings_every_fifteen_minutes,
        set(),
    ),
    ("the offer moved in one step of eight", normal_offer_moved_in_one_step_of_eight, set()),
    (
        "the offer moved in one step of eight, the meter 20 % short",
        meter_mismatch_offer_moved_in_one_step_of_eight,
        {"meter_mismatch"},
    ),
    (
        "a meter 19 % fast sending its register only at the ends",
        meter_mismatch_register_only_at_the_ends,
        {"meter_mismatch"},
    ),
    (
        "a jump after a hold that began in a taper (register in 100 Wh)",
        meter_jump_after_a_hold_that_began_in_a_taper,
        {"meter_jump"},
    ),
    ("a hold that began in a taper", normal_coarse_register_held_after_a_taper, set()),
    (
        "a stale register catches up on what flowed",
        stale_register_catches_up_on_what_flowed,
        {"meter_stuck", "meter_jump"},
    ),
    (
        "a register polled every minute catches up on what flowed",
        register_polled_every_minute,
        set(),
    ),
    (
        "a register moving every reading, then frozen for 100 s at 52 kW",
        register_moving_every_reading_then_frozen_for_100_s,
        {"meter_stuck"},
    ),
    (
        "a register frozen until the car stops catches up a step later",
        register_frozen_until_the_car_stops_then_catches_up,
        {"meter_stuck", "meter_jump"},
    ),
    (
        "a data gap among few readings stamped in whole minutes",
        data_gap_among_few_readings_stamped_in_whole_minutes,
        {"data_gap"},
    ),
    (
        "a stall after a first reading in the ramp 2 min before",
        stall_after_a_first_reading_in_the_ramp_two_minutes_before,
        {"stall"},
    ),
    (
        "a stall a minute after a first reading in the ramp",
        stall_a_minute_after_a_first_reading_in_the_ramp,
        {"stall"},
    ),
    (
        "DC every 15 min, first reading in the ramp",
        normal_dc_first_reading_in_the_ramp_every_fifteen_minutes,
        set(),
    ),
    (
        "AC every 15 min, a pause unseen between two readings at 11 kW",
        normal_ac_paused_unseen_every_fifteen_minutes,
        set(),
    ),
    (
        "meter_mismatch, AC every 15 min with a pause unseen",
        meter_mismatch_ac_paused_unseen_every_fifteen_minutes,
        {"meter_mismatch"},
    ),
    ("sampled every 10 min, taper between samples", normal_sampled_every_ten_minutes, set()),
    ("flat constant session", normal_flat_constant, set()),
    ("same card, one after the other", normal_sequential_same_card, set()),
    ("same card, two connectors of one station", normal_same_card_same_station, set()),
    ("idle connector readings", normal_idle_orphan, set()),
]


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_flags_exactly_the_expected_kinds(
    name: str, build: Callable[[], list[Spec]], expected: set[str]
) -> None:
    batch = make_batch(build())
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    assert {r.kind for r in results} == ALL_KINDS
    for row in range(batch.n_sessions):
        flagged = {r.kind for r in results if r.flagged[row]}
        assert flagged == expected, {r.kind: r.reason[row] for r in results if r.flagged[row]}
    for r in results:
        scored = r.score[~np.isnan(r.score)]
        assert np.all((scored >= 0) & (scored <= 1))
        for i in np.flatnonzero(r.flagged):
            assert isinstance(r.reason[i], str) and r.reason[i]
            assert r.start_ns[i] <= r.end_ns[i]
            assert r.score[i] >= 0.5


def test_reasons_carry_the_numbers() -> None:
    batch = make_batch(meter_stuck() + stall())
    results = {r.kind: r for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))}
    stuck = results["meter_stuck"].reason[0]
    assert "register flat at 1003.638 kWh for 15 min" in stuck and "7.4 kW" in stuck
    assert "no power for 30 min" in results["stall"].reason[1]


@pytest.mark.parametrize(
    ("step_min", "flat_steps", "flagged"),
    [(15, 3, True), (15, 2, True), (15, 1, False), (5, 2, True), (1, 3, True), (1, 2, False)],
)
def test_flat_steps_at_power_are_a_stuck_register(
    step_min: int, flat_steps: int, flagged: bool
) -> None:
    # 11 kW AC read every ``step_min`` minutes; the register holds for ``flat_steps`` steps
    # and counts on from where it was. Three flat steps are meter_stuck's threshold where the
    # readings come often (one or two are a register polled less often than the readings are
    # sent); they scored exactly 1.0 and were missed (outside fleet, a register frozen 45-63
    # min read every 15 min, 11 labels over 12 seeds). Where readings are 4 min apart or more,
    # each step is longer than any meter's poll, and two are enough (field fleet seed 1,
    # FLD0044C-9480: 1.9 kW read every 5 min, the register unchanged for 10 min, missed)
    t = np.arange(0.0, 8 * step_min * MIN + 1e-9, step_min * MIN)
    spec = from_power(t, np.where(t > 0, 11_000.0, 0.0), offered_w=22_000.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    held = e.copy()
    held[2 : 2 + flat_steps] = e[1]
    held[2 + flat_steps :] -= e[1 + flat_steps] - e[1]
    batch = make_batch([with_(spec, energy_wh=list(held))])
    results = {r.kind: r for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))}
    assert bool(results["meter_stuck"].flagged[0]) is flagged, results["meter_stuck"].reason[0]
