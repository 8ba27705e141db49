"""soc_inconsistent's injector: each way changes only what the car reports, where its label
says, while the car charges; the charge itself and the meter are left alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from simulator.fleet import make_station
from simulator.inject import Readings, Window
from simulator.injectors import SessionCharge
from simulator.injectors.battery import (
    soc_dip,
    soc_frozen,
    soc_leap,
    temperature_out_of_range,
)
from simulator.physics import ChargeSpec, simulate_charge
from simulator.planning import SessionPlan
from simulator.vehicles import SOC_GRID_PCT, VEHICLES

START_MS = 1_795_420_800_000
VEHICLE = 0  # a 74 kWh car


def session(seed: int = 0) -> tuple[SessionCharge, Readings]:
    """A DC charge at 100 kW from 10 % for an hour, read every 30 s."""
    station = replace(
        make_station(0, np.random.default_rng(seed)),
        is_dc=True,
        reports_soc=True,
        reports_temperature=True,
        rating_w=150_000.0,
    )
    battery_wh = VEHICLES[VEHICLE].battery_kwh * 1000.0
    spec = ChargeSpec(
        capability_w=np.full(SOC_GRID_PCT.size, 100_000.0),
        soc0_pct=10.0,
        target_pct=95.0,
        battery_wh=battery_wh,
        efficiency=0.94,
        charge_start_s=20.0,
        ramp_s=30.0,
        ramp_down_s=6.0,
        dt_s=2.0,
        until_s=3_600.0,
        linger_s=None,
    )
    trace = simulate_charge(spec)
    plan = SessionPlan(
        session_id="S1",
        station=0,
        connector=1,
        arrival_ms=START_MS - 5_000,
        departure_ms=START_MS + 3_600_000,
        vehicle=VEHICLE,
        soc0_pct=10.0,
        target_pct=95.0,
        efficiency=0.94,
        car_factor=1.0,
        taper_width_pct=5.0,
        taper_floor=0.2,
        auth_to_start_s=5.0,
        charge_start_s=20.0,
        ramp_s=30.0,
        linger_s=None,
        est_charge_s=3_000.0,
        est_energy_wh=60_000.0,
        stop_reason="Local",
    )
    t_s = np.arange(0.0, trace.stop_s + 1e-9, 30.0)
    power_w, energy_wh = trace.at(t_s)
    sent_ms = START_MS + np.round(t_s * 1000).astype(np.int64)
    periodic = np.ones(t_s.size, dtype=bool)
    periodic[[0, -1]] = False
    r = Readings(
        t_s=t_s,
        sent_ms=sent_ms,
        ts_ms=sent_ms.copy(),
        power_w=power_w,
        energy_wh=energy_wh,
        register_wh=1e6 + energy_wh,
        periodic=periodic,
        keep=np.ones(t_s.size, dtype=bool),
        protect=np.zeros(t_s.size, dtype=bool),
    )
    return SessionCharge(station, plan, trace, START_MS, int(sent_ms[-1])), r


Way = Callable[[SessionCharge, Readings, np.random.Generator], Window | None]
WAYS: list[Way] = [soc_dip, soc_leap, soc_frozen, temperature_out_of_range]


def inside(r: Readings, window: Window) -> np.ndarray:
    return np.asarray((r.sent_ms >= window[0]) & (r.sent_ms <= window[1]))


@pytest.mark.parametrize("way", WAYS, ids=lambda w: w.__name__)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_only_what_the_car_reports_changes_and_the_label_bounds_it(way: Way, seed: int) -> None:
    charge, r = session()
    register, power = r.register_wh.copy(), r.power_w.copy()
    window = way(charge, r, np.random.default_rng(seed))
    assert window is not None
    a, b = window
    assert r.sent_ms[0] < a <= b < r.sent_ms[-1]
    assert np.array_equal(r.register_wh, register) and np.array_equal(r.power_w, power)
    shown = inside(r, window)
    assert r.protect[shown].all(), "the readings that show it are never lost"
    assert (r.power_w[shown] >= 5_000.0).all(), "while the car charges"
    truth = charge.trace.soc_at(r.energy_wh)
    if way is temperature_out_of_range:
        assert r.soc_pct is None and r.temperature_c is not None
        out = ~np.isnan(r.temperature_c)
        assert out.sum() >= 3 and not out[~shown].any()
        assert np.all((r.temperature_c[out] > 60.0) | (r.temperature_c[out] < -20.0))
        return
    assert r.soc_pct is not None and r.temperature_c is None
    changed = np.abs(r.soc_pct - truth) > 1e-9
    assert changed.any()
    if way is soc_dip:
        assert not changed[~shown].any() and (truth - r.soc_pct)[changed].min() >= 5.0 - 1e-9
    elif way is soc_leap:
        assert (r.soc_pct - truth)[changed].min() >= 10.0 - 1e-9
        assert r.soc_pct.max() <= 98.0
    else:
        frozen = r.soc_pct[shown]
        assert np.all(frozen == frozen[0]) and not changed[~shown].any()
        assert r.energy_wh[shown][-1] - r.energy_wh[shown][0] >= 15_000.0


@pytest.mark.parametrize("way", WAYS, ids=lambda w: w.__name__)
def test_a_seed_places_it_the_same_way(way: Way) -> None:
    first, second = session(), session()
    one = way(first[0], first[1], np.random.default_rng(7))
    two = way(second[0], second[1], np.random.default_rng(7))
    assert one == two
    assert np.array_equal(
        np.nan_to_num(first[1].soc_pct if first[1].soc_pct is not None else np.zeros(1)),
        np.nan_to_num(second[1].soc_pct if second[1].soc_pct is not None else np.zeros(1)),
    )
