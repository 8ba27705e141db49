"""The car's side: a state of charge that contradicts the energy delivered, or a battery
temperature out of range (``soc_inconsistent``).

What the car reports is changed, never the charge itself: the SoC dips (a fall while energy
flows), leaps (by far more than the energy since the last reading could add to the car's pack),
or freezes while tens of kWh flow and then catches up; or the battery temperature reads far out
of what a pack tolerates while charging. Each is placed where the car is charging steadily, so
the energy that contradicts it is there, and the readings around it are kept from random loss.
The session is chosen at a station that passes on what the fault needs (SoC, temperature).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chargewatch.kinds import AnomalyKind

from ..inject import Readings, Window
from ..vehicles import VEHICLES
from .base import MIN_S, BoolArray, FleetSessions, Injector, SessionCharge

# A reading counts as charging steadily at half the session's peak power, and at least 5 kW:
# well above what a car's climate control alone could draw.
_STEADY_SHARE = 0.5
_STEADY_MIN_W = 5_000.0
# A leap is at least this many times what the energy since the last reading could add to half
# the car's own pack (an aged, smaller pack of the same power), and at least 10 %.
_LEAP_MARGIN = 3.0
# A frozen SoC holds while this much flows (kWh): "tens of kWh", while the car holds at least
# this share of its peak power.
_FROZEN_KWH = (15.0, 35.0)
_HELD_SHARE = 0.85

Way = Callable[[SessionCharge, Readings, np.random.Generator], Window | None]


class SocInconsistent(Injector):
    """The SoC dips, leaps or freezes while energy flows, or the battery temperature reads out
    of range while charging."""

    kind = AnomalyKind.SOC_INCONSISTENT

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        stations = [p.station for p in fleet.plans]
        shows = np.array(
            [
                stations[s.station].reports_soc or stations[s.station].reports_temperature
                for s in fleet.sessions
            ],
            dtype=bool,
        )
        long_enough = (fleet.est_charge_s >= 15 * MIN_S) & (fleet.est_energy_wh >= 5_000.0)
        return np.asarray(shows & long_enough)

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        ways: list[Way] = []
        if charge.station.reports_soc:
            ways += [soc_dip, soc_leap, soc_frozen]
        if charge.station.reports_temperature:
            ways += [temperature_out_of_range]
        for k in rng.permutation(len(ways)).tolist():
            window: Window | None = ways[int(k)](charge, r, rng)
            if window is not None:
                return window
        return None


def _steady(r: Readings) -> BoolArray:
    """Periodic readings taken while the car charges steadily (not the first or the last)."""
    peak = float(r.power_w.max()) if r.power_w.size else 0.0
    steady = r.periodic & (r.power_w >= max(_STEADY_SHARE * peak, _STEADY_MIN_W))
    steady[:1] = False
    steady[-1:] = False
    return np.asarray(steady)


def _runs_of(mask: BoolArray, length: int) -> np.ndarray:
    """Indices where ``length`` readings in a row are all in ``mask``."""
    if mask.size < length:
        return np.zeros(0, dtype=np.int64)
    window = np.convolve(mask.astype(np.int64), np.ones(length, dtype=np.int64), "valid")
    return np.flatnonzero(window == length)


def _true_soc(charge: SessionCharge, r: Readings) -> np.ndarray:
    if r.soc_pct is None:
        r.soc_pct = charge.trace.soc_at(r.energy_wh)
    return r.soc_pct


def soc_dip(charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
    """For 1-4 readings the SoC reads 5-25 % low while the car charges, then is right again."""
    length = int(rng.integers(1, 5))
    soc = charge.trace.soc_at(r.energy_wh)
    starts = _runs_of(_steady(r), length + 2)  # a steady reading on each side
    starts = starts[soc[starts + 1] >= 15.0]
    if not starts.size:
        return None
    j = int(rng.choice(starts)) + 1
    depth = min(float(rng.uniform(5.0, 25.0)), float(soc[j]) - 5.0)
    reported = _true_soc(charge, r)
    reported[j : j + length] -= depth
    r.guard(j - 1, j + length)
    return int(r.sent_ms[j - 1]), int(r.sent_ms[j + length])


def soc_leap(charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
    """The SoC leaps by 10-40 % at one reading, far more than the energy since the reading
    before could add: it stays up (a recalibration gone wrong) or falls back after 1-3
    readings (a glitch)."""
    soc = charge.trace.soc_at(r.energy_wh)
    pack_wh = VEHICLES[charge.plan.vehicle].battery_kwh * 1000.0
    step_pct = np.diff(r.energy_wh, prepend=r.energy_wh[:1]) / (0.5 * pack_wh) * 100.0
    leap = float(rng.uniform(10.0, 40.0))
    # it stays up only where it stays below 95 % to the end (the car never seems full)
    stays = bool(rng.random() < 0.5) and float(soc[-1]) + leap <= 95.0
    length = int(rng.integers(1, 4))
    starts = _runs_of(_steady(r), length + 2)
    j = starts + 1
    fits = leap >= np.maximum(10.0, _LEAP_MARGIN * step_pct[j])
    if not stays:
        fits &= soc[j + length - 1] + leap <= 98.0
    j = j[fits]
    if not j.size:
        return None
    at = int(rng.choice(j))
    reported = _true_soc(charge, r)
    if stays:
        reported[at:] += leap
        r.guard(at - 1, at)
        return int(r.sent_ms[at - 1]), int(r.sent_ms[at])
    reported[at : at + length] += leap
    r.guard(at - 1, at + length)
    return int(r.sent_ms[at - 1]), int(r.sent_ms[at + length])


def soc_frozen(charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
    """The SoC holds one value while 15-35 kWh flow (the car's message stopped updating, the
    charger repeats the last one), then reads right again."""
    need_wh = float(rng.uniform(*_FROZEN_KWH)) * 1000.0
    soc = charge.trace.soc_at(r.energy_wh)
    steady = np.flatnonzero(_steady(r) & (soc >= 5.0) & (soc <= 85.0))
    if not steady.size:
        return None
    # the last reading of the frozen stretch: the first at which that much has flowed
    ends = np.searchsorted(r.energy_wh, r.energy_wh[steady] + need_wh)
    ok = ends <= r.t_s.size - 2
    starts, ends = steady[ok], ends[ok]
    # only where the car holds its power meanwhile: a car that tapers or steps down under a
    # frozen SoC would also look derated at that SoC (an early_taper by accident)
    peak_w = np.maximum.accumulate(r.power_w)
    for pick in rng.permutation(starts.size).tolist():
        i, k = int(starts[pick]), int(ends[pick])
        if float(r.power_w[i : k + 1].min()) >= _HELD_SHARE * float(peak_w[k]):
            break
    else:
        return None
    reported = _true_soc(charge, r)
    reported[i : k + 1] = np.round(reported[i])
    r.guard(i, k)
    return int(r.sent_ms[i]), int(r.sent_ms[k])


def temperature_out_of_range(
    charge: SessionCharge, r: Readings, rng: np.random.Generator
) -> Window | None:
    """For 3-8 readings while the car charges the battery reads 62-80 °C (overheating) or
    -22 to -35 °C (a pack far too cold to take charge)."""
    length = int(rng.integers(3, 9))
    starts = _runs_of(_steady(r), length)
    if not starts.size:
        return None
    i = int(rng.choice(starts))
    if rng.random() < 0.5:
        values = np.sort(rng.uniform(62.0, 80.0, size=length))
    else:
        values = rng.uniform(-35.0, -22.0, size=length)
    if r.temperature_c is None:
        r.temperature_c = np.full(r.t_s.size, np.nan)
    r.temperature_c[i : i + length] = values
    r.guard(i, i + length - 1)
    return int(r.sent_ms[i]), int(r.sent_ms[i + length - 1])
