"""A wrong clock makes a session's times untrustworthy (CONTRACTS.md section 3): the kinds that
judge a duration or an integral over time across the session leave it to ``clock_fault``; and
a reading delivered late with a right stamp is no clock fault."""

from __future__ import annotations

import numpy as np

from analytics.batch import StatusCode
from analytics.detectors import detect, fit_detectors
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


def clock_stepped_back() -> Spec:
    # blind fleet seed 23, TX-0074-49567: 3.6 kW AC; after 100 min the clock steps back 100 min
    # (local time written as UTC) for the rest of the session; the car is full at 117 min and
    # the session stops at 236 min. The readings stamped past the last good one (true times
    # after 200 min) are all 0 W: read by their stamps, power stopped after 100 min of
    # charging, for 35 min, until the stop
    true_t = np.arange(0.0, 236 * MIN + 1e-9, MIN)
    p = np.where(true_t < 117 * MIN, 3_600.0, 0.0)
    p[0] = 0.0
    spec = from_power(true_t, p, offered_w=3_700.0)
    stamps = np.where(true_t > 100 * MIN, true_t - 100 * MIN, true_t)
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.CHARGING))
    return with_(
        spec,
        t_s=list(stamps),
        arrival=list(range(true_t.size)),
        status=[int(v) for v in status],
        stop_s=float(stamps[-1]) + 1.0,
    )


def reading_delivered_late() -> Spec:
    # 60 kW DC every 20 s; one reading arrives three lines late with its right stamp and a
    # register that agrees with it
    t = np.arange(0.0, 30 * MIN + 1e-9, 20.0)
    p = np.full(t.size, 60_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=150_000.0)
    arrival = np.arange(t.size)
    arrival[40], arrival[41:44] = 43, arrival[41:44] - 1
    return with_(spec, arrival=list(arrival), soc_pct=list(np.floor(20 + t / 60.0)))


def reading_delivered_late_without_register() -> Spec:
    # the same on a station that sends power only (the register at start and stop)
    spec = reading_delivered_late()
    return with_(spec, energy_wh=None, soc_pct=None, session_id="S2")


def reading_delivered_late_every_ten_minutes() -> Spec:
    # 7.4 kW AC sampled every 10 min, power only; one MeterValues retried lands after the next
    # one, 10 min behind it (blind fleet seed 72 with --sparse-sampling 0.5, evse-0020, 849062)
    return _retried_every_ten_minutes(7_400.0, 35.0, 70.0, 4, session_id="S4")


def _retried_every_ten_minutes(
    power_w: float, first_s: float, minutes: float, late: int, **changes: object
) -> Spec:
    """Steady ``power_w`` read every 10 min from ``first_s`` for ``minutes``, power only; the
    reading at ``late`` lands after the next one."""
    t = np.arange(0.0, minutes * MIN + 1e-9, 10 * MIN) + first_s
    spec = from_power(t, np.full(t.size, power_w), offered_w=power_w)
    arrival = np.arange(t.size)
    arrival[late], arrival[late + 1] = late + 1, late
    return with_(spec, arrival=list(arrival), energy_wh=None, **changes)


def one_reading_early_two_after_it_late() -> Spec:
    # 3.7 kW AC read every minute, stamped in whole minutes, power only: the reading of 14:18
    # arrives before those of 14:16 and 14:17, which so look late together (outside fleet
    # seed 3, 710353: "2 readings with a wrong clock" on a normal session)
    t = np.arange(0.0, 40 * MIN + 1e-9, MIN)
    spec = from_power(t, np.full(t.size, 3_700.0), offered_w=11_000.0)
    arrival = np.arange(t.size)
    arrival[18], arrival[16], arrival[17] = 16, 17, 18
    return with_(spec, arrival=list(arrival), energy_wh=None, session_id="S6")


def reading_with_soc_delivered_late_after_one_without() -> Spec:
    # 50 kW DC sampled every 10 min, power and SoC; the car stops reporting SoC after its
    # second reading, and that reading (SoC 22 %) is retried and lands after the third (no
    # SoC), 10 min behind it. Its SoC is above the first's, which it follows by its stamp too:
    # no evidence of a stepped clock (blind fleet seed 334 with --sparse-sampling 0.9, 456112)
    soc = [12.0, 22.0] + [np.nan] * 4
    return _retried_every_ten_minutes(50_000.0, 280.0, 50.0, 1, soc_pct=soc, session_id="S6")


def idle_reading_delivered_late_a_watt_hour_above() -> Spec:
    # 7.4 kW AC for 20 min, then the car is full (SuspendedEV) and the register (whole Wh)
    # wavers by 1 Wh at rest; read every 30 s and stamped in whole minutes. One reading
    # arrives after the next minute's, 1 Wh above it: that is the register's rounding, no
    # sign that it was measured later (blind fleet seed 314, 505839, read as a clock fault)
    true_t = np.arange(0.0, 40 * MIN + 1e-9, 30.0)
    p = np.where(true_t <= 20 * MIN, 7_400.0, 0.0)
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    spec = from_power(true_t, p, offered_w=7_400.0, status=status)
    register = np.asarray(spec.energy_wh)
    register[true_t > 20 * MIN] = register[true_t > 20 * MIN][0] + (
        (np.arange(int((true_t > 20 * MIN).sum())) + 1) % 2
    )
    # a reading at hh:30 s (stamped hh:00) 1 Wh above the next one (stamped a minute later)
    late = next(
        i
        for i in range(true_t.size - 1)
        if true_t[i] > 30 * MIN and true_t[i] % MIN and register[i] == register[i + 1] + 1
    )
    arrival = np.arange(true_t.size)
    arrival[late], arrival[late + 1] = late + 1, late
    order = np.argsort(arrival)
    return with_(
        spec,
        t_s=list(np.floor(true_t[order] / MIN) * MIN),
        energy_wh=list(register[order]),
        power_w=list(p[order]),
        status=[int(v) for v in status[order]],
        arrival=list(range(true_t.size)),
        session_id="S7",
    )


def clock_stepped_back_one_reading_every_ten_minutes() -> Spec:
    # the same station, but one reading stamped 2 h back (local time written as UTC) and the
    # rest right: that reading is no late delivery
    spec = reading_delivered_late_every_ten_minutes()
    stamps = list(np.asarray(spec.t_s))
    stamps[5] -= 2 * 3600.0
    return with_(spec, t_s=stamps, arrival=list(range(len(stamps))), session_id="S5")


def _results(specs: list[Spec]) -> dict[str, object]:
    # unrelated cases: each at a station of its own (its sampling is its own), each card too
    batch = make_batch(
        [with_(s, station_id=f"ST{i}", id_pseudonym=f"U{i}") for i, s in enumerate(specs)]
    )
    return {r.kind: r for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))}


def _flagged_kinds(results: dict[str, object]) -> set[str]:
    """The kinds ``_results`` flagged on its first row."""
    return {kind for kind, r in results.items() if r.flagged[0]}  # type: ignore[attr-defined]


def test_a_clock_stepped_back_is_a_clock_fault_and_nothing_timed() -> None:
    results = _results([clock_stepped_back()])
    flagged = _flagged_kinds(results)
    assert flagged == {"clock_fault"}, flagged
    for kind in ("stall", "meter_mismatch", "early_taper"):
        reason = results[kind].reason[0]  # type: ignore[attr-defined]
        assert "clock" in reason, (kind, reason)


def clock_stepped_back_four_minutes_on_dc() -> Spec:
    # outside fleet seed 26, 2ec997f1: 45 kW read every 10 s, the register in 10 Wh; 16 min
    # in, the clock steps back 4 min for the rest of the session, and one reading after the
    # step comes 20 s late. Some readings after the step stayed among the trusted ones, in
    # time order interleaved with those before it, and the register "fell" between such a
    # pair: meter_backwards flagged 3.1 kWh backwards beside the clock fault
    true_t = np.arange(0.0, 24 * MIN + 1e-9, 10.0)
    spec = from_power(true_t, np.full(true_t.size, 45_000.0), offered_w=150_000.0)
    stamps = np.where(true_t > 16 * MIN, true_t - 4 * MIN + 2.0, true_t)
    e = np.floor(np.asarray(spec.energy_wh, dtype=float) / 10.0) * 10.0
    arrival = np.arange(true_t.size)
    k = int(np.searchsorted(true_t, 18 * MIN))  # one reading after the step delivered 20 s late
    arrival[k], arrival[k + 1], arrival[k + 2] = k + 2, k, k + 1
    return with_(
        spec,
        t_s=list(stamps),
        energy_wh=list(e),
        arrival=list(arrival),
        stop_s=float(stamps[-1]) + 1.0,
    )


def test_a_clock_stepped_back_is_no_register_fall() -> None:
    flagged = _flagged_kinds(_results([clock_stepped_back_four_minutes_on_dc()]))
    assert flagged == {"clock_fault"}, flagged


def readings_sent_twice() -> Spec:
    # town fleet seed 13, TF-0250-2-008: a station that re-sends readings 10-30 s after it first
    # sent them (a MeterValues retried after a lost answer), same stamps, same values, the car
    # done (0-4 W, the register flat); the copy of the one before the latest, then a copy of
    # the latest, read as a clock stepped back
    base = np.arange(0.0, 20 * MIN + 1e-9, 10.0)
    t = base + np.random.default_rng(13).uniform(0.0, 0.999, base.size).round(3)  # stamps in ms
    power = np.where(np.arange(t.size) % 5 == 2, 4.0, 0.0)
    order = list(range(t.size))
    for k in (90, 60, 30):  # readings k - 1 and k sent again after reading k
        order[k + 1 : k + 1] = [k - 1, k]
    n = len(order)
    return Spec(
        t_s=[float(t[i]) for i in order],
        energy_wh=[8_971_610.0] * n,
        power_w=[float(power[i]) for i in order],
        offered_w=[11_000.0] * n,
        status=[int(StatusCode.SUSPENDED_EV)] * n,
        arrival=list(range(n)),
        stop_s=float(t[-1]) + 1.0,
        session_id="S11",
    )


def test_readings_sent_twice_are_no_clock_fault() -> None:
    results = _results([readings_sent_twice()])
    assert not results["clock_fault"].flagged.any(), results["clock_fault"].reason  # type: ignore[attr-defined]


def clock_ahead_then_back_to_its_grid_as_the_car_finishes() -> Spec:
    # field fleet seed 14, FLD0083B-14281: 3.3 kW read every 15 min on the quarter hours; the
    # clock runs 36 min ahead for six readings, then steps back to two readings on the
    # quarter-hour grid, 21 and 6 min behind the last one ahead, the car done and the register
    # flat at the end. The two passed for late deliveries: the last reading ahead showed the
    # same register, and only readings above the highest one stamped after them counted
    stamps = [0.0, 15, 30, 45, 60, 75, 90, 105, 156.18, 171.18, 186.18, 201.18, 216.18]
    stamps += [231.18, 210.0, 225.0]
    power = [3297.0, 3341, 3332, 3314, 0, 0, 0, 0, 3343, 3314, 3333, 3294, 658, 0, 0, 0]
    register = [3916713.0, 3917546, 3918378, 3919210, 3920042, 3920042, 3920042, 3920042]
    register += [3920042.0, 3920875, 3921707, 3922539, 3923037, 3923126, 3923126, 3923126]
    n = len(stamps)
    return Spec(
        t_s=[60.0 * (v + 14.0) for v in stamps],
        energy_wh=register,
        power_w=power,
        arrival=list(range(n)),
        stop_s=60.0 * (14.0 + 251.45),
        session_id="S12",
    )


def test_a_clock_back_to_its_grid_after_running_ahead_is_a_clock_fault() -> None:
    flagged = _flagged_kinds(_results([clock_ahead_then_back_to_its_grid_as_the_car_finishes()]))
    assert flagged == {"clock_fault"}, flagged


def clock_hours_ahead_for_the_last_readings() -> Spec:
    # town fleet seed 15, TF-0188-1-001: a kerb station sending the register alone every 15
    # min; its clock jumps 6 h ahead for the last four readings, the stop stamped right. No
    # stamp was out of arrival order nor beyond a day's file: a 375 min stall took the clock
    # fault's place
    stamps = [12.0 + 15 * k for k in range(7)] + [462.0 + 15 * k for k in range(4)]
    register = [243_322.0 + 920.0 * k for k in range(11)]
    n = len(stamps)
    return Spec(
        t_s=[60.0 * v for v in stamps],
        energy_wh=register,
        status=[int(StatusCode.CHARGING)] * n,
        arrival=list(range(n)),
        stop_s=60.0 * 150.1,
        session_id="S13",
    )


def test_readings_stamped_hours_after_the_stop_are_a_clock_fault() -> None:
    results = _results([clock_hours_ahead_for_the_last_readings()])
    flagged = _flagged_kinds(results)
    assert flagged == {"clock_fault"}, flagged
    reason = str(results["clock_fault"].reason[0])  # type: ignore[attr-defined]
    assert "after the session's stop" in reason, reason


def test_a_reading_delivered_late_is_no_clock_fault() -> None:
    results = _results(
        [
            reading_delivered_late(),
            reading_delivered_late_without_register(),
            reading_delivered_late_every_ten_minutes(),
            reading_with_soc_delivered_late_after_one_without(),
            idle_reading_delivered_late_a_watt_hour_above(),
            one_reading_early_two_after_it_late(),
        ]
    )
    for kind, r in results.items():
        assert not r.flagged.any(), (kind, r.reason)  # type: ignore[attr-defined]


def test_one_reading_hours_back_every_ten_minutes_is_a_clock_fault() -> None:
    results = _results([clock_stepped_back_one_reading_every_ten_minutes()])
    assert results["clock_fault"].flagged[0]  # type: ignore[attr-defined]


def clock_reset_before_the_stop() -> Spec:
    # blind fleet seed 64, TX-0122-687137: 48 kW DC every 60 s for 17 min; the station's clock
    # then falls back to 1970 and its last 7 readings carry 1970 stamps; the stop (stamped by
    # the back office's clock) comes 8 min after the last trusted reading
    t = np.arange(0.0, 25 * MIN + 1e-9, MIN)
    p = np.full(t.size, 48_000.0)
    p[0] = 0.0
    spec = from_power(t, p, offered_w=150_000.0)
    stamps = np.where(t > 17 * MIN, t + 3600.0 - T0_NS / 1e9, t)  # 1970-01-01T01:xx
    return with_(spec, t_s=list(stamps), stop_s=float(t[-1]) + 30.0, session_id="S3")


def test_readings_set_aside_before_the_stop_are_no_gap() -> None:
    flagged = _flagged_kinds(_results([clock_reset_before_the_stop()]))
    assert flagged == {"clock_fault"}, flagged


def test_a_register_in_whole_kwh_under_a_clock_stepped_back_is_not_judged_stuck() -> None:
    # 3.7 kW AC read every 10 s, the register in whole kWh; the clock steps back 4.8 h after
    # 5 min: read by their stamps, the readings interleave, and the register seems to count in
    # small steps and stay flat at 3.7 kW (an independently written fleet, seed 282,
    # e094aec4: "register flat for 3 min while power was 3.7 kW: 0.185 kWh not counted")
    true_t = np.arange(0.0, 60 * MIN + 1e-9, 10.0)
    spec = from_power(true_t, np.full(true_t.size, 3_700.0), offered_w=3_700.0)
    e = np.floor(np.asarray(spec.energy_wh, dtype=np.float64) / 1000.0) * 1000.0 + 3_968_000.0
    stamps = np.where(true_t > 5 * MIN, true_t - 4.8 * 3600.0, true_t)
    spec = with_(
        spec,
        t_s=list(stamps),
        energy_wh=list(e),
        arrival=list(range(true_t.size)),
        stop_s=float(true_t[-1]) - 4.8 * 3600.0 + 1.0,
    )
    results = _results([spec])
    stuck = results["meter_stuck"]
    assert not stuck.flagged[0] and "clock" in str(stuck.reason[0]), stuck.reason[0]  # type: ignore[attr-defined]
    assert results["clock_fault"].flagged[0]  # type: ignore[attr-defined]


def clock_stepped_back_across_the_start_onto_the_first_reading() -> Spec:
    # outside fleet seed 21, 07a2a74f: 6.6 kW AC read every 5 min, the register in some
    # readings; right after the first reading (start + 0.5 s) the clock steps back 80 min, a
    # multiple of the interval: the readings climb back past the start, and the one stamped
    # 0.5 s before the first reading is 8.8 kWh above it ("register fell 8.8 kWh")
    true_t = np.array([0.5, *(162.0 + 300.0 * np.arange(1, 32))])
    p = np.where(true_t > 1.0, 6_600.0, 0.0)
    spec = from_power(true_t, p, offered_w=11_000.0)
    stamps = np.where(true_t > 1.0, true_t - 162.0 - 4_800.0 + 300.0 * 15, true_t)
    stamps[1:] = stamps[1:] - stamps[16] + 0.0  # reading 16 lands on 0.0 s, 0.5 s before
    return with_(
        spec, t_s=list(stamps), arrival=list(range(true_t.size)), stop_s=float(stamps[-1]) + 1
    )


def clock_stepped_back_half_an_hour_with_soc() -> Spec:
    # outside fleet seed 22, 810567: 125 kW DC every 30 s with SoC (1 % per 30 s); after 3 min
    # the clock steps back 30 min: its readings climb back past the start, then past the last
    # right one, 7 s after it, with a SoC 60 points higher ("SoC rose 55 % in 7 s")
    true_t = np.arange(0.0, 40 * MIN + 1e-9, 30.0)
    p = np.where(true_t > 0, 125_000.0, 0.0)
    spec = from_power(true_t, p, offered_w=350_000.0)
    soc = list(18.0 + np.floor(true_t / 30.0))
    stamps = np.where(true_t > 3 * MIN, true_t - 30 * MIN + 7.0 - 30.0, true_t)
    # the register in every other reading, not in the last right one
    register = np.where(np.arange(true_t.size) % 2 == 0, np.asarray(spec.energy_wh), np.nan)
    return with_(
        spec,
        t_s=list(stamps),
        energy_wh=list(register),
        soc_pct=soc,
        arrival=list(range(true_t.size)),
        stop_s=float(stamps[-1]) + 1.0,
    )


def test_a_clock_stepped_back_across_the_start_is_a_clock_fault_only() -> None:
    for build in (
        clock_stepped_back_across_the_start_onto_the_first_reading,
        clock_stepped_back_half_an_hour_with_soc,
    ):
        results = _results([build()])
        flagged = {k for k, r in results.items() if r.flagged[0]}  # type: ignore[attr-defined]
        assert flagged == {"clock_fault"}, (build.__name__, flagged)


def clock_ahead_for_a_while_then_stepped_back() -> Spec:
    # field fleet seed 1, FLD0017A-45014: 140 kW DC read every 15 s for 60 min; from 28 min the
    # clock runs 37 min ahead for 11 readings, then NTP steps it back. Judged by the running
    # stamp, the 11 looked right and the 66 after them wrong: "no reading for 37 min"
    true_t = np.arange(0.0, 60 * MIN + 1e-9, 15.0)
    p = np.where(true_t > 0, 140_000.0, 0.0)
    spec = from_power(true_t, p, offered_w=300_000.0)
    ahead = (true_t >= 28 * MIN) & (true_t < 28 * MIN + 11 * 15.0)
    stamps = np.where(ahead, true_t + 37 * MIN, true_t)
    return with_(
        spec, t_s=list(stamps), arrival=list(range(true_t.size)), stop_s=float(true_t[-1]) + 1
    )


def test_a_clock_ahead_for_a_while_sets_aside_its_run_not_the_readings_after() -> None:
    spec = clock_ahead_for_a_while_then_stepped_back()
    results = _results([spec])
    flagged = {k for k, r in results.items() if r.flagged[0]}  # type: ignore[attr-defined]
    assert flagged == {"clock_fault"}, flagged
    assert "11 readings" in results["clock_fault"].reason[0]  # type: ignore[attr-defined]


def test_readings_sent_before_a_late_batch_are_not_taken_for_a_clock_ahead() -> None:
    # a station back online sends two live readings first, then the 20 it held: the two carry
    # the higher registers (measured later), so it is the held ones that came late, not the
    # two that ran ahead; the two stay trusted
    true_t = np.arange(0.0, 40 * MIN + 1e-9, MIN)
    p = np.where(true_t > 0, 11_000.0, 0.0)
    spec = from_power(true_t, p, offered_w=11_000.0)
    arrival = np.arange(true_t.size)
    held = (true_t >= 10 * MIN) & (true_t < 30 * MIN)
    live = (true_t >= 30 * MIN) & (true_t < 32 * MIN)
    arrival[live] = 10 + np.arange(2)
    arrival[held] = 12 + np.arange(20)
    batch = make_batch([with_(spec, arrival=list(arrival), stop_s=float(true_t[-1]) + 1)])
    prep = prepared(batch, NOW_NS)
    kept = set(np.round(prep.t_s[0, : prep.count[0]] / MIN).astype(int).tolist())
    assert {30, 31} <= kept


def test_a_clock_ahead_while_nothing_flows_sets_aside_the_smaller_part() -> None:
    # field fleet seed 5, FLD0073B-24909: a car plugged in and left, 0 W and the register
    # still, read every 30 s; 3 readings 20 min ahead, then 12 on the right clock: the values
    # tell nothing, and the smaller part is the wrong clock (no "21 min" data_gap)
    true_t = np.arange(0.0, 9 * MIN + 1e-9, 30.0)
    spec = from_power(true_t, np.zeros(true_t.size), offered_w=22_000.0)
    ahead = (true_t >= 2 * MIN) & (true_t < 3.5 * MIN)
    stamps = np.where(ahead, true_t + 20 * MIN, true_t)
    spec = with_(
        spec,
        t_s=list(stamps),
        soc_pct=[55.0] * true_t.size,
        arrival=list(range(true_t.size)),
        stop_s=float(true_t[-1]) + 1,
    )
    results = _results([spec])
    flagged = {k for k, r in results.items() if r.flagged[0]}  # type: ignore[attr-defined]
    assert flagged == {"clock_fault"}, flagged


def test_a_clock_ahead_just_before_the_stop_is_set_aside() -> None:
    # field fleet seed 9, 5d1da108: 90 kW DC read every 20 s; 3 readings stamped 24 min ahead,
    # then 2 on the right clock and the stop: fewer readings follow the run than it holds, but
    # the run lies wholly after the stop, which came on the right clock
    true_t = np.arange(0.0, 30 * MIN + 1e-9, 20.0)
    p = np.where(true_t > 0, 90_000.0, 0.0)
    spec = from_power(true_t, p, offered_w=150_000.0)
    ahead = np.zeros(true_t.size, dtype=bool)
    ahead[-5:-2] = True
    stamps = np.where(ahead, true_t + 24 * MIN, true_t)
    spec = with_(
        spec, t_s=list(stamps), arrival=list(range(true_t.size)), stop_s=float(true_t[-1]) + 10
    )
    results = _results([spec])
    flagged = {k for k, r in results.items() if r.flagged[0]}  # type: ignore[attr-defined]
    assert flagged == {"clock_fault"}, flagged


def clock_stepped_back_ten_minutes_every_five(step_back_min: float) -> Spec:
    # town fleet seed 7, TF-0042-1-001: 7.4 kW AC read every 5 min in whole seconds, the car
    # full at 65 min (0 W, the register flat, SuspendedEV); at 130 min the clock steps back
    # ``step_back_min`` and the readings go on every 5 min from there
    true_t = np.arange(24.0, 240 * MIN, 5 * MIN)
    p = np.where(true_t < 65 * MIN, 7_400.0, 0.0)
    spec = from_power(true_t, p, offered_w=7_400.0)
    stamps = np.where(true_t > 130 * MIN, true_t - step_back_min * MIN, true_t)
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(
        spec,
        t_s=list(stamps),
        arrival=list(range(true_t.size)),
        status=[int(v) for v in status],
        stop_s=float(true_t[-1]) + 60.0,
    )


def test_a_clock_stepped_back_that_the_stream_goes_on_from_is_a_clock_fault() -> None:
    # one reading lands behind the last one, 4.7 min: as far back as a reading delivered late
    # could be; but the next reading comes 5 min after it, 16 s after the last one before it,
    # and so on: the stream goes on from the wrong clock (9.7 min back; 24 min for a second
    # session, two readings behind)
    results = _results(
        [
            clock_stepped_back_ten_minutes_every_five(9.7),
            clock_stepped_back_ten_minutes_every_five(24.0),
        ]
    )
    assert results["clock_fault"].flagged.all(), results["clock_fault"].reason  # type: ignore[attr-defined]


def reading_delivered_late_every_five_minutes_stream_on_time() -> Spec:
    # the same station, one reading retried and landing after the next: the stream goes on
    # 5 min after the latest reading, as it was
    true_t = np.arange(24.0, 240 * MIN, 5 * MIN)
    p = np.where(true_t < 65 * MIN, 7_400.0, 0.0)
    spec = from_power(true_t, p, offered_w=7_400.0)
    arrival = np.arange(true_t.size)
    arrival[26], arrival[27] = 27, 26
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(spec, arrival=list(arrival), status=[int(v) for v in status])


def test_a_reading_delivered_late_with_the_stream_on_time_is_no_clock_fault() -> None:
    results = _results([reading_delivered_late_every_five_minutes_stream_on_time()])
    assert not results["clock_fault"].flagged.any(), results["clock_fault"].reason  # type: ignore[attr-defined]


def three_readings_one_delivered_an_interval_late() -> Spec:
    # a short session on a station read every 15 min, stamped in whole minutes, no register:
    # 12:25, then 12:10 (delivered late), then 12:40 (an independently written fleet, seed
    # 133 half sparse, TX-0109-664996). In arrival order one step is in order, 30 min long,
    # and the stream "kept" it from the reading behind: read as a stepped clock
    t = np.array([0.0, 15 * MIN, 30 * MIN])
    spec = from_power(t, np.array([39_900.0, 68_900.0, 36_700.0]), offered_w=150_000.0)
    return with_(spec, arrival=[1, 0, 2], energy_wh=[np.nan] * 3, session_id="S10")


def test_a_late_reading_among_three_is_no_clock_fault() -> None:
    results = _results([three_readings_one_delivered_an_interval_late()])
    assert not results["clock_fault"].flagged.any(), results["clock_fault"].reason  # type: ignore[attr-defined]


def one_reading_early_two_late_at_a_flat_soc() -> Spec:
    # 45 kW DC read every 10 s, SoC in whole percent (67 % throughout these readings), the
    # register in every fourth reading only: the reading of 13:19:56 arrives before those of
    # 13:19:36 and 13:19:46 (outside fleet seed 20, 3473d648: read as a clock 20 s ahead, the
    # SoC that did not move taken for evidence)
    t = np.arange(0.0, 10 * MIN + 1e-9, 10.0)
    spec = from_power(t, np.full(t.size, 45_000.0), offered_w=150_000.0)
    e = np.asarray(spec.energy_wh, dtype=float)
    e[np.arange(t.size) % 4 != 0] = np.nan
    soc = np.floor(60.0 + t / 60.0)
    soc[20:24] = 63.0  # the four readings around the swap, within one percent
    arrival = np.arange(t.size)
    arrival[23], arrival[21], arrival[22] = 21, 22, 23
    return with_(spec, arrival=list(arrival), energy_wh=list(e), soc_pct=list(soc), session_id="S9")


def test_one_reading_early_two_late_at_a_flat_soc_is_no_clock_fault() -> None:
    results = _results([one_reading_early_two_late_at_a_flat_soc()])
    assert not results["clock_fault"].flagged.any(), results["clock_fault"].reason  # type: ignore[attr-defined]


def clock_stepped_back_on_a_quarter_hour_grid_a_reading_lost() -> Spec:
    # town fleet seed 8, TF-0015-1-001: an AC station read on the quarter hour, power
    # and register; the car stops at 60 min; at 90 min the clock steps back 26.7 min, and
    # the reading after the first wrong one is lost, so the next comes two intervals on, on
    # the moved grid (14:30:00, then 14:18:19, 14:48:19, 15:03:19, ...)
    true_t = np.arange(0.0, 240 * MIN, 15 * MIN)
    p = np.where(true_t < 60 * MIN, 2_300.0, 0.0)
    spec = from_power(true_t, p, offered_w=3_700.0)
    stamps = np.where(true_t > 90 * MIN, true_t - 26.7 * MIN, true_t)
    keep = np.arange(true_t.size) != 8  # the reading after the first wrong one is lost
    status = np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV))
    return with_(
        spec,
        t_s=list(stamps[keep]),
        energy_wh=list(np.asarray(spec.energy_wh)[keep]),
        power_w=list(p[keep]),
        offered_w=list(np.asarray(spec.offered_w)[keep]),
        status=[int(v) for v in status[keep]],
        arrival=list(range(int(keep.sum()))),
        stop_s=float(true_t[-1]) + 60.0,
    )


def test_a_clock_that_moved_the_sampling_grid_is_a_clock_fault() -> None:
    results = _results([clock_stepped_back_on_a_quarter_hour_grid_a_reading_lost()])
    assert results["clock_fault"].flagged[0], results["clock_fault"].reason  # type: ignore[attr-defined]
