"""Charging profiles of hand-made sessions: segment times, energy figures, taper, billing."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.assemble import assemble
from analytics.profiles import Profiles, profiles, profiles_to_lines, resample
from chargewatch.events import ChargePointStatus as Status
from chargewatch.events import Event, SessionStop

from ._support import STATION, numbered, reading, start, status, stop


def session(
    powers_kw: list[float],
    *,
    statuses: dict[int, Status] | None = None,
    offered_kw: list[float] | None = None,
    register: list[float] | None = None,
    skip: set[int] | None = None,
    meter_start_wh: float | None = None,
    soc: list[float] | None = None,
) -> list[Event]:
    """One session sampled every minute from a register at 1000 Wh that counts the energy of
    power varying linearly between samples (what the trapezoid rule integrates exactly)."""
    registers = register
    if registers is None:
        steps_wh = (np.array(powers_kw[1:]) + np.array(powers_kw[:-1])) / 2 * 1000 / 60
        registers = list(1000 + np.concatenate(([0.0], np.cumsum(steps_wh))))
    events: list[Event] = [start(0, meter_wh=meter_start_wh)]
    for minute, power_kw in enumerate(powers_kw):
        if statuses and minute in statuses:
            events.append(status(minute, statuses[minute]))
        if skip and minute in skip:
            continue
        events.append(
            reading(
                minute,
                power_w=power_kw * 1000,
                energy_wh=registers[minute],
                power_offered_w=None if offered_kw is None else offered_kw[minute] * 1000,
                soc_pct=None if soc is None else soc[minute],
            )
        )
    events.append(stop(len(powers_kw) - 1))
    return events


def profile_of(events: list[Event]) -> Profiles:
    p = profiles(assemble(numbered(events)))
    assert len(p) == 1
    return p


def test_segments_charging_then_taper_then_idle_after_full() -> None:
    powers = [10.0] * 10 + [8.0, 6.0, 4.0, 2.0] + [0.0] * 6  # 20 samples, 19 minutes
    p = profile_of(
        session(
            powers, statuses={0: Status.CHARGING, 14: Status.SUSPENDED_EV}, soc=list(range(70, 90))
        )
    )
    assert p.duration_s[0] == 19 * 60
    assert p.charging_s[0] == 14 * 60
    assert p.idle_s[0] == 5 * 60  # after the last charging sample, to the stop
    assert p.suspended_ev_s[0] == 0 and p.suspended_evse_s[0] == 0
    assert p.peak_power_w[0] == 10_000
    assert p.plateau_power_w[0] == 10_000
    assert p.taper_onset_s[0] == 10 * 60  # the first sample below 90 % that never recovers
    assert p.taper_onset_soc_pct[0] == 80
    assert p.energy_register_wh[0] == pytest.approx((10 * 9 + 9 + 7 + 5 + 3 + 1) * 1000 / 60)
    assert p.energy_power_wh[0] == pytest.approx(p.energy_register_wh[0])
    assert p.billing_confidence[0] == 1.0 and p.billing_notes[0] == ""


def test_suspended_by_the_car_and_by_the_charger_are_told_apart() -> None:
    powers = [7.0] * 5 + [0.0] * 3 + [7.0] * 4 + [0.0] * 4 + [7.0] * 4
    offered = [11.0] * 12 + [0.0] * 4 + [11.0] * 4  # the charger pauses minutes 12-15
    p = profile_of(session(powers, offered_kw=offered, statuses={5: Status.SUSPENDED_EV}))
    assert p.suspended_ev_s[0] == 3 * 60
    assert p.suspended_evse_s[0] == 4 * 60
    assert p.idle_s[0] == 0
    assert p.charging_s[0] == 12 * 60
    assert np.isnan(p.taper_onset_s[0])  # back at full power at the end: no taper
    assert p.mean_offered_w[0] == pytest.approx(np.mean(offered) * 1000)


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"register": [1000.0, 1166.0, 1333.0, 200.0, 366.0, 533.0]}, "register falls by 1133"),
        ({"skip": set(range(2, 10)), "powers": [10.0] * 40}, "gap of 9 min"),
        ({"register": [1000.0, 1333.0, 1666.0, 2000.0, 2333.0, 2666.0]}, "(50% apart)"),
        ({"meter_start_wh": 900.0}, "meter_start"),
    ],
    ids=["backwards", "gap", "mismatch", "meter-start"],
)
def test_billing_confidence_drops_with_each_defect(change: dict[str, object], note: str) -> None:
    powers = change.pop("powers", [10.0] * 6)
    assert isinstance(powers, list)
    p = profile_of(session(powers, **change))  # type: ignore[arg-type]
    assert 0.0 <= p.billing_confidence[0] < 1.0
    assert note in p.billing_notes[0]


def test_a_clean_session_bills_with_full_confidence_and_meter_values_agree() -> None:
    p = profile_of(session([10.0] * 6, meter_start_wh=1000.0))
    assert p.billing_confidence[0] == 1.0
    assert np.isnan(p.energy_meter_wh[0])  # no meter_stop sent


def test_rows_without_data_do_not_raise() -> None:
    events: list[Event] = [
        start(0),
        stop(5),
        start(0, session="S2"),
        reading(1, session="S2"),
        stop(3, session="S2"),
    ]
    p = profiles(assemble(numbered(events)))
    assert p.billing_confidence.tolist() == [0.0, 0.0]
    assert "no register readings" in p.billing_notes[0]
    assert p.charging_s.tolist() == [0.0, 0.0]
    assert np.isnan(p.energy_register_wh).all()


def test_resample_interpolates_the_register_and_averages_power() -> None:
    events = session([6.0, 6.0, 12.0, 12.0])
    r = resample(assemble(numbered(events)), step_s=30.0)
    assert r.power_w.shape == (1, 7)
    assert r.power_w[0, :2].tolist() == [6000.0, pytest.approx(np.nan, nan_ok=True)]
    assert r.energy_wh[0, 1] == pytest.approx(1000.0 + 50.0)  # halfway through the first minute


def test_profile_lines_carry_session_and_figures() -> None:
    line = next(profiles_to_lines(profile_of(session([10.0] * 3))))
    head, fields, stamp = line.split(" ")
    assert head == "profile,connector_id=1,station_id=ST-1"
    assert 'session_id="S1"' in fields and "billing_confidence=1.0" in fields
    assert "taper_onset_s" not in fields  # NaN figures are left out
    assert stamp.isdigit()


def test_a_batch_without_any_sample_has_profiles_too() -> None:
    batch = assemble(numbered([start(0), stop(5)]))
    assert batch.n_steps == 0
    p = profiles(batch)
    assert p.duration_s.tolist() == [300.0] and p.billing_confidence.tolist() == [0.0]
    assert resample(batch).power_w.shape == (1, 1)
    assert len(profiles(assemble([]))) == 0


# --- what real session tables and logs hold (issue 11) ------------------------------------


def test_a_session_without_power_values_is_not_measured_and_unverifiable() -> None:
    # a register at every minute, no power at all: nothing says the car suspended anything,
    # and nothing checks the register (its steps show it charging: 9 kW for 19 min)
    events: list[Event] = [start(0)]
    events += [reading(minute, energy_wh=1000.0 + 150.0 * minute) for minute in range(20)]
    events.append(stop(19))
    p = profile_of(events)
    assert p.suspended_ev_s[0] == 0 and p.idle_s[0] == 0 and p.charging_s[0] == 19 * 60
    assert np.isnan(p.billing_confidence[0])
    assert p.billing_notes[0] == "unverifiable: no power values to check the register against"
    line = next(profiles_to_lines(p))
    assert "billing_confidence" not in line and "unverifiable" in line


def test_samples_too_sparse_for_15_percent_are_unverifiable() -> None:
    # power read every 10 min while it swings between 22 and 2 kW: the trapezoid is known to
    # no better than a third; the register agrees, but that checks nothing
    powers = [2.0, 22.0, 2.0, 22.0, 2.0, 22.0, 2.0]
    events: list[Event] = [start(0)]
    register = 1000.0
    for k, kw in enumerate(powers):
        if k:
            register += (kw + powers[k - 1]) / 2 * 1000 / 6
        events.append(reading(10 * k, power_w=kw * 1000, energy_wh=register))
    events.append(stop(60))
    p = profile_of(events)
    assert np.isnan(p.billing_confidence[0])
    assert p.billing_notes[0].startswith("unverifiable: the samples bound the integrated power")


def test_a_1_wh_fall_is_rounding_for_billing_as_for_meter_backwards() -> None:
    steps_wh = 10_000 / 60
    register = [1000.0 + round(steps_wh * k) for k in range(6)]
    register[3] = register[2] - 1.0  # read 1 Wh low once
    register[4:] = [max(v, register[3]) for v in register[4:]]
    p = profile_of(session([10.0] * 6, register=register))
    assert "falls" not in p.billing_notes[0]
    assert p.billing_confidence[0] > 0.2


def test_a_stop_stamped_in_1970_gives_no_negative_duration() -> None:
    events: list[Event] = session([7.0] * 30)
    events[-1] = SessionStop(42_000_000_000, STATION, 1, "S1", None, "EVDisconnected")
    p = profile_of(events)
    assert p.duration_s[0] == 29 * 60  # from the samples
    batch = assemble(numbered([start(0), SessionStop(0, STATION, 1, "S1", None, "Local")]))
    assert profiles(batch).duration_s.tolist() == [0.0]


@pytest.mark.parametrize(("factor", "confident"), [(1.0, True), (0.8, False)])
def test_meter_values_stand_in_for_a_register_reported_only_in_the_transaction(
    factor: float, confident: bool
) -> None:
    # power every minute, the register only in meterStart and meterStop
    events: list[Event] = [start(0, meter_wh=5000.0)]
    events += [reading(minute, power_w=11_000.0) for minute in range(31)]
    events.append(stop(30, meter_wh=5000.0 + factor * 11_000.0 / 2))
    p = profile_of(events)
    assert p.energy_register_wh[0] == factor * 11_000.0 / 2  # what is billed
    assert "no register readings" not in p.billing_notes[0]
    assert (p.billing_confidence[0] == 1.0) == confident, p.billing_notes[0]
    assert confident or "apart" in p.billing_notes[0]


def test_the_register_is_checked_over_its_own_span() -> None:
    # the register at the start only so far (an open session of a station that sends it at the
    # ends): nothing to compare yet; with the register every fifth minute and power every
    # minute after its last reading, only the span it covers is compared
    powers = [11.0] * 23
    steps_wh = 11_000.0 / 60
    events: list[Event] = [start(0)]
    for minute, kw in enumerate(powers):
        register = 1000.0 + steps_wh * minute if minute % 5 == 0 else None
        events.append(reading(minute, power_w=kw * 1000, energy_wh=register))
    p = profile_of([*events, stop(22)])
    assert p.billing_confidence[0] == 1.0, p.billing_notes[0]
    open_so_far: list[Event] = [start(0), reading(0, power_w=0.0, energy_wh=1000.0)]
    open_so_far += [reading(minute, power_w=11_000.0) for minute in range(1, 23)]
    p = profile_of(open_so_far)
    assert np.isnan(p.billing_confidence[0])
    assert p.billing_notes[0] == "unverifiable: one register reading, nothing to compare yet"
