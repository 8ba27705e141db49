"""Faults of the energy meter: a stuck, falling, leaping or miscalibrated register.

They change what the register reports, never the energy that flowed (``inject.py`` holds the
array work); a fault that moves the register stays in it for the sessions that follow.

A station that reports the register only at the transaction's start and stop shows none of a
stuck stretch, a fall or a leap inside the session (only their sum over it, which the energy
flowing hides), so those three go to stations that report it with every sample; a
miscalibration shows on all.
"""

from __future__ import annotations

import numpy as np

from chargewatch.kinds import AnomalyKind

from ..inject import Readings, Window, meter_backwards, meter_jump, meter_mismatch, meter_stuck
from .base import MIN_S, BoolArray, FleetSessions, Injector, SessionCharge


def register_each_sample(fleet: FleetSessions) -> BoolArray:
    """Per session: its station reports the register with every sample (not only at the
    transaction's start and stop)."""
    each = np.array([p.station.register_in == "every" for p in fleet.plans], dtype=bool)
    return np.asarray(each[fleet.station_of]) if fleet.station_of.size else each[:0]


class MeterStuck(Injector):
    """The register repeats one value for a while though power flows, then counts on."""

    kind = AnomalyKind.METER_STUCK

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        # a stuck stretch of >= 5 samples must stay under 10 % of the session's energy
        stretch_s = 12 * np.maximum(5 * fleet.interval_s, 180.0)
        long_enough = fleet.est_charge_s >= np.maximum(30 * MIN_S, stretch_s)
        return np.asarray(long_enough & register_each_sample(fleet))

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return meter_stuck(r, charge.station.interval_s, rng)


class MeterBackwards(Injector):
    """The register falls: a reset to about zero or a step down, or one reading low."""

    kind = AnomalyKind.METER_BACKWARDS

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        return np.asarray(super().can_carry(fleet) & register_each_sample(fleet))

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return meter_backwards(r, charge.station.meter_resolution_wh, rng, charge.station.rating_w)


class MeterJump(Injector):
    """The register leaps by several times what the connector could deliver in the interval,
    and keeps the leap or falls back at the next reading."""

    kind = AnomalyKind.METER_JUMP

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        return np.asarray(super().can_carry(fleet) & register_each_sample(fleet))

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return meter_jump(r, charge.station.rating_w, rng)


class MeterMismatch(Injector):
    """A miscalibrated meter: the register counts 16-25 % short or long, or grossly off (half or
    a third: a current transformer missing or wired to one phase of three)."""

    kind = AnomalyKind.METER_MISMATCH

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        # register and power are compared over the whole session, so it must end inside the run;
        # and the station must report power: from current alone, a meter 16-25 % off on a car
        # drawing on one phase is within its power factor, on three like one on two phases
        # (``analytics.detectors.meter``, CURRENT_PHASES): the readings do not show it
        power = np.array([p.station.reports_power for p in fleet.plans], dtype=bool)
        power = power[fleet.station_of] if fleet.station_of.size else power[:0]
        inside = (fleet.est_energy_wh >= 3000.0) & (fleet.departure_ms <= fleet.end_ms)
        return np.asarray(inside & power)

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return meter_mismatch(r, charge.station.rating_w, charge.station.meter_resolution_wh, rng)
