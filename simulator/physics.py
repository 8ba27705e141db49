"""The physical truth of one charge: power over time, the energy it delivers, the SoC it reaches.

The car's acceptance depends on its state of charge, which depends on the energy already taken,
so power cannot be computed sample by sample without a loop. Instead each stretch with constant
external conditions (an offered limit, a derating factor) is solved in SoC space: the time to
climb each 0.1 % of SoC is known from the power at that SoC, its cumulative sum maps SoC to time,
and inverting that map gives SoC, then power, on a regular time grid. The grid power is shaped
by the charger's ramps (slow up, fast down), and the energy of the truth is the exact integral
of that piecewise-linear power.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .fleet import StationSpec
from .vehicles import SOC_GRID_PCT, FloatArray, Vehicle

# Below this a car's acceptance is treated as this, so the SoC-to-time map stays finite.
_MIN_ACCEPT_W = 300.0


@dataclass(frozen=True, slots=True)
class LimitWindow:
    """A stretch during which the charger offers less (load management, a pause at 0 W)."""

    start_s: float  # relative to the session start
    end_s: float
    car_limit_w: float  # what the car can draw under the limit (AC: only its own phases)
    offered_w: float  # what the charger reports as power_offered_w


@dataclass(frozen=True, slots=True)
class DerateWindow:
    """A stretch during which the car or charger delivers only a fraction of what it should."""

    start_s: float
    end_s: float
    factor: float  # 0 is a stall


@dataclass(frozen=True, slots=True)
class ChargeSpec:
    capability_w: FloatArray  # on SOC_GRID_PCT: min(car, charger) before external limits
    soc0_pct: float
    target_pct: float
    battery_wh: float
    efficiency: float  # share of metered energy that reaches the battery
    charge_start_s: float  # energy starts to flow (after handshake, cable check)
    ramp_s: float  # power rises over this long; it falls within ramp_down_s
    ramp_down_s: float
    dt_s: float
    until_s: float  # the session ends here at the latest
    linger_s: float | None  # stop this long after the car is full; None: stay until until_s
    limits: tuple[LimitWindow, ...] = ()
    derates: tuple[DerateWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class ChargeTrace:
    """True power and energy on a regular grid from the session start."""

    dt_s: float
    power_w: FloatArray
    energy_wh: FloatArray
    full_s: float | None  # the car reached its target (SuspendedEV from here)
    stop_s: float
    soc0_pct: float
    wh_per_pct: float  # metered Wh per % SoC

    def at(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """True power and energy at arbitrary times (linear between grid points)."""
        grid = np.arange(self.power_w.size) * self.dt_s
        return np.interp(t_s, grid, self.power_w), np.interp(t_s, grid, self.energy_wh)

    def soc_at(self, energy_wh: FloatArray) -> FloatArray:
        return np.minimum(self.soc0_pct + energy_wh / self.wh_per_pct, 100.0)


def ac_capability_w(
    station: StationSpec,
    vehicle: Vehicle,
    target_pct: float,
    taper_width_pct: float,
    taper_floor: float,
) -> FloatArray:
    """AC: the phases both sides share times the lower current, with the car's own soft taper."""
    phases = min(station.phases, vehicle.ac_phases)
    car_current_a = vehicle.ac_max_kw * 1000.0 / (vehicle.ac_phases * 230.0)
    power_w = phases * min(station.phase_current_a, car_current_a) * station.phase_voltage_v
    taper_start = target_pct - taper_width_pct
    x = np.clip((SOC_GRID_PCT - taper_start) / taper_width_pct, 0.0, 1.0)
    return power_w * (1.0 - (1.0 - taper_floor) * x**1.5)


def ac_car_limit_w(station: StationSpec, vehicle: Vehicle, current_a: float) -> float:
    """What the car draws when the charger offers ``current_a`` per phase."""
    return min(station.phases, vehicle.ac_phases) * current_a * station.phase_voltage_v


def pack_voltage_v(vehicle: Vehicle, soc_pct: FloatArray) -> FloatArray:
    """DC voltage at the connector: rises with SoC around the pack's nominal voltage."""
    return vehicle.pack_voltage_v * (0.9 + 0.14 * soc_pct / 100.0)


def dc_capability_w(station: StationSpec, vehicle: Vehicle, car_factor: float) -> FloatArray:
    """DC: the car's curve (scaled for battery temperature), the rating, the current limit."""
    curve_w = vehicle.dc_curve_w(SOC_GRID_PCT) * car_factor
    current_limit_w = station.max_current_a * pack_voltage_v(vehicle, SOC_GRID_PCT)
    return np.maximum(
        np.minimum(np.minimum(curve_w, station.rating_w), current_limit_w), _MIN_ACCEPT_W
    )


def time_to_target_s(
    capability_w: FloatArray,
    soc0_pct: float,
    target_pct: float,
    battery_wh: float,
    efficiency: float,
) -> float:
    """Seconds to go from soc0 to target with no external limit (planning estimate)."""
    s_sub, p_sub = _soc_path(capability_w, soc0_pct, target_pct, math.inf, 1.0)
    return float(_cumulative_time_s(s_sub, p_sub * efficiency, battery_wh / 100.0)[-1])


def _soc_path(
    capability_w: FloatArray,
    soc_pct: float,
    target_pct: float,
    limit_w: float,
    factor: float,
) -> tuple[FloatArray, FloatArray]:
    inside = (soc_pct < SOC_GRID_PCT) & (target_pct > SOC_GRID_PCT)
    s_sub = np.concatenate(([soc_pct], SOC_GRID_PCT[inside], [target_pct]))
    p_sub = np.minimum(np.interp(s_sub, SOC_GRID_PCT, capability_w), limit_w) * factor
    return s_sub, np.maximum(p_sub, _MIN_ACCEPT_W * factor)


def _cumulative_time_s(s_sub: FloatArray, p_sub: FloatArray, wh_per_pct: float) -> FloatArray:
    p_mid_w = 0.5 * (p_sub[:-1] + p_sub[1:])
    step_s = np.diff(s_sub) * wh_per_pct * 3600.0 / p_mid_w
    return np.concatenate(([0.0], np.cumsum(step_s)))


def _breakpoints(spec: ChargeSpec) -> list[float]:
    edges = {0.0, spec.charge_start_s, spec.until_s}
    edges.update(t for w in spec.limits for t in (w.start_s, w.end_s))
    edges.update(t for d in spec.derates for t in (d.start_s, d.end_s))
    return sorted(e for e in edges if 0.0 <= e <= spec.until_s)


def _conditions(spec: ChargeSpec, t_s: float) -> tuple[float, float]:
    limit_w = min(
        (w.car_limit_w for w in spec.limits if w.start_s <= t_s < w.end_s), default=math.inf
    )
    factor = math.prod(d.factor for d in spec.derates if d.start_s <= t_s < d.end_s)
    return limit_w, factor


def _moving_average(values: FloatArray, steps: float) -> FloatArray:
    window = max(1, round(steps))
    return np.convolve(values, np.full(window, 1.0 / window))[: values.size]


def simulate_charge(spec: ChargeSpec) -> ChargeTrace:
    """Solve one charge. Energy is metered (grid side); SoC counts what reaches the battery."""
    n = math.ceil(spec.until_s / spec.dt_s) + 1
    t_s = np.arange(n) * spec.dt_s
    target_w = np.zeros(n)
    battery_wh_per_pct = spec.battery_wh / 100.0
    soc = spec.soc0_pct
    full_s: float | None = None
    edges = _breakpoints(spec)
    for a, b in itertools.pairwise(edges):
        limit_w, factor = _conditions(spec, a)
        if a < spec.charge_start_s or soc >= spec.target_pct or factor <= 0 or limit_w <= 0:
            continue
        lo, hi = np.searchsorted(t_s, [a, b])
        s_sub, p_sub = _soc_path(spec.capability_w, soc, spec.target_pct, limit_w, factor)
        # metered power times efficiency charges the battery
        tau_s = _cumulative_time_s(s_sub, p_sub * spec.efficiency, battery_wh_per_pct)
        rel_s = t_s[lo:hi] - a
        soc_t = np.interp(rel_s, tau_s, s_sub)
        target_w[lo:hi] = np.where(rel_s < tau_s[-1], np.interp(soc_t, s_sub, p_sub), 0.0)
        if tau_s[-1] <= b - a:
            full_s = a + float(tau_s[-1])
            soc = spec.target_pct
        else:
            soc = float(np.interp(b - a, tau_s, s_sub))
    stop_s = spec.until_s
    if full_s is not None and spec.linger_s is not None:
        stop_s = min(stop_s, full_s + spec.linger_s)
    n_stop = min(n, math.ceil(stop_s / spec.dt_s) + 1)
    # A change at time b takes effect at the first grid point after it, so that linear
    # interpolation between grid points never shows it before b (the truth stays causal).
    target_w = np.concatenate(([0.0], target_w[:-1]))
    # Chargers raise current gradually but cut it quickly: the lower of a slow and a fast
    # moving average rises like the slow one and falls like the fast one.
    power_w = np.minimum(
        _moving_average(target_w[:n_stop], spec.ramp_s / spec.dt_s),
        _moving_average(target_w[:n_stop], spec.ramp_down_s / spec.dt_s),
    )
    power_w[power_w < 1.0] = 0.0  # smoothing leaves crumbs; a meter shows 0
    step_wh = 0.5 * (power_w[1:] + power_w[:-1]) * spec.dt_s / 3600.0
    energy_wh = np.concatenate(([0.0], np.cumsum(step_wh)))
    return ChargeTrace(
        dt_s=spec.dt_s,
        power_w=power_w,
        energy_wh=energy_wh,
        full_s=full_s if full_s is not None and full_s < stop_s else None,
        stop_s=stop_s,
        soc0_pct=spec.soc0_pct,
        wh_per_pct=battery_wh_per_pct / spec.efficiency,
    )
