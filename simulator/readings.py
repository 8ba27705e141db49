"""When a charger samples, and what its meter and sensors report at those instants."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    from scipy.signal import lfilter
except ImportError as exc:  # scipy is an extra: the service itself does not need it
    raise ImportError("the simulator needs scipy: pip install 'chargewatch[simulator]'") from exc

from .fleet import StationSpec
from .physics import pack_voltage_v
from .planning import HOUR_MS, UTC_OFFSET_H
from .vehicles import FloatArray, Vehicle

# The battery's temperature, which the car passes on over the charging link: it rises with the
# square of the C-rate (resistive heat), about 2 degC per C^2 where it would settle under the
# car's cooling, over a pack's thermal time constant of tens of minutes. It starts warm at a
# fast charger (driven there, or preconditioned: 10-20 degC above the air) and near the air at
# a wallbox (parked: 0-5 degC above it).
_PACK_TAU_S = 1_200.0
_PACK_HEAT_C_PER_C2 = 2.0
_PACK_WARM_DC_C = (10.0, 20.0)
_PACK_WARM_AC_C = (0.0, 5.0)


def sample_times(
    stop_s: float,
    interval_s: int,
    triggers: list[float],
    closed: bool,
    rng: np.random.Generator,
) -> tuple[FloatArray, np.ndarray]:
    """Seconds since the session start of every reading, and which are periodic samples.

    A reading at the start (Transaction.Begin) and, for a closed session, at the stop
    (Transaction.End); periodic samples every interval with a little timing jitter; one reading
    right after each state change.
    """
    count = max(0, math.floor(stop_s / interval_s))
    periodic = np.arange(1, count + 1) * float(interval_s) + rng.uniform(0.0, 0.4, size=count)
    extra = np.asarray(triggers, dtype=np.float64)
    periodic, extra = periodic[periodic < stop_s - 1.0], extra[extra < stop_s - 1.0]
    end = [stop_s] if closed else []
    t_s = np.concatenate(([0.0], periodic, extra, end))
    is_periodic = np.zeros(t_s.size, dtype=bool)
    is_periodic[1 : 1 + periodic.size] = True
    order = np.argsort(t_s, kind="stable")
    t_s, is_periodic = t_s[order], is_periodic[order]
    # a state change that falls on a periodic sample is sent once
    distinct = np.concatenate(([True], np.diff(t_s) > 0.5))
    return t_s[distinct], is_periodic[distinct]


def ambient_c(sent_ms: np.ndarray) -> FloatArray:
    """A late-autumn day: about 0 degC before dawn, 8 degC in the afternoon."""
    hour = (sent_ms / HOUR_MS + UTC_OFFSET_H) % 24.0
    return np.asarray(4.0 + 4.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0))


# How cars pass their SoC on over the charging link (ISO 15118, CHAdeMO): most in whole percent
# at every reading; some in coarse steps of 5 or 10 %; some stop part-way (the car's message
# stops, the charger sends nothing from then on); some chargers send it only in
# Transaction.Begin and End. Shares per session, chosen so that every fleet holds each habit.
_SOC_COARSE_P = 0.08
_SOC_STOPS_P = 0.04
_SOC_AT_ENDS_P = 0.04


def reported_soc(soc_pct: FloatArray, rng: np.random.Generator) -> list[int | None]:
    """What one session's car reports of its SoC at each reading (None: nothing)."""
    n = soc_pct.size
    roll = float(rng.random())
    if roll < _SOC_COARSE_P:
        step = 5.0 if rng.random() < 0.5 else 10.0
        return [int(v) for v in (np.round(soc_pct / step) * step).tolist()]
    whole: list[int | None] = np.round(soc_pct).astype(np.int64).tolist()
    if n < 3:
        return whole
    if roll < _SOC_COARSE_P + _SOC_STOPS_P:
        last = int(rng.integers(1, n - 1))
        return whole[:last] + [None] * (n - last)
    if roll < _SOC_COARSE_P + _SOC_STOPS_P + _SOC_AT_ENDS_P:
        return [whole[0]] + [None] * (n - 2) + [whole[-1]]
    return whole


class StationSensors:
    """Reported values of one station's meter and sensors, with their noise and resolution."""

    def __init__(self, station: StationSpec, rng: np.random.Generator) -> None:
        self.station = station
        self.rng = rng

    def register(self, register_wh: FloatArray) -> list[int]:
        """What the register shows: counted down to the meter's resolution."""
        resolution = self.station.meter_resolution_wh
        shown = np.floor(np.maximum(register_wh, 0.0) / resolution) * resolution
        return [int(v) for v in shown.tolist()]

    def idle(self, register_wh: float, count: int) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = {"energy_wh": self.register(np.full(count, register_wh))}
        columns["power_w" if self.station.reports_power else "current_a"] = [0.0] * count
        if not self.station.is_dc:
            columns["voltage_v"] = self._grid_voltage(count).tolist()
        return columns

    def session(
        self,
        register_wh: FloatArray,
        power_w: FloatArray,
        offered_w: FloatArray,
        soc_pct: FloatArray,
        sent_ms: np.ndarray,
        vehicle: Vehicle,
        *,
        temperature_c: FloatArray | None = None,
        soc_as_is: bool = False,
        at_ends: np.ndarray | None = None,
    ) -> dict[str, list[Any]]:
        """The columns of a session's readings. ``temperature_c``: the battery temperature where
        an injector set it (NaN: as the sensor has it); ``soc_as_is``: the SoC in whole percent
        at every reading, without the car's reporting habits (an injector set it)."""
        st, rng = self.station, self.rng
        n = power_w.size
        flowing = power_w > 0.0
        # sensor noise: relative, plus a few watts; a meter at rest shows exactly zero
        noisy_w = power_w * (1.0 + st.power_noise * rng.standard_normal(n)) + rng.normal(0, 3, n)
        reported_w = np.where(flowing, np.maximum(noisy_w, 0.0), 0.0)
        if st.is_dc:
            volts = pack_voltage_v(vehicle, soc_pct) + rng.normal(0.0, 0.5, n)
            current_a = reported_w / volts
        else:
            phases = min(st.phases, vehicle.ac_phases)
            volts = self._grid_voltage(n)
            current_a = reported_w / (volts * phases)
        shown: list[int | None] = list(self.register(register_wh))
        if st.register_in == "transaction":  # in meterStart and meterStop only
            shown = [None] * n
        elif st.register_in == "ends" and at_ends is not None:  # Transaction.Begin and End
            shown = [v if end else None for v, end in zip(shown, at_ends.tolist(), strict=True)]
        columns: dict[str, list[Any]] = {
            "energy_wh": shown,
            "power_w": np.round(reported_w, 1).tolist(),
            "power_offered_w": np.round(offered_w).astype(np.int64).tolist(),
            "current_a": np.round(current_a, 2).tolist(),
            "voltage_v": np.round(volts, 1).tolist(),
        }
        if not st.reports_power:  # current and voltage only (a station's configuration)
            del columns["power_w"]
        if st.reports_soc:
            whole: list[int | None] = np.round(soc_pct).astype(np.int64).tolist()
            columns["soc_pct"] = whole if soc_as_is else reported_soc(soc_pct, rng)
        if st.reports_temperature and n:
            # the pack warms and cools over tens of minutes, not from one sample to the next
            c_rate = power_w / (vehicle.battery_kwh * 1000.0)
            keep = math.exp(-st.interval_s / _PACK_TAU_S)
            heat = lfilter([1.0 - keep], [1.0, -keep], _PACK_HEAT_C_PER_C2 * c_rate**2)
            warm = rng.uniform(*(_PACK_WARM_DC_C if st.is_dc else _PACK_WARM_AC_C))
            temperature = ambient_c(sent_ms[:1])[0] + warm + heat + rng.normal(0.0, 0.3, n)
            if temperature_c is not None:  # where an injector set it
                temperature = np.where(np.isnan(temperature_c), temperature, temperature_c)
            columns["temperature_c"] = np.round(temperature, 1).tolist()
        return columns

    def _grid_voltage(self, count: int) -> FloatArray:
        return np.asarray(self.station.phase_voltage_v + self.rng.normal(0.0, 0.8, count))
