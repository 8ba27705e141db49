"""Faults in how the charger reports: readings lost for a while, timestamps from a wrong clock.

Both need a session long enough for the fault to fit between ordinary readings on each side.
"""

from __future__ import annotations

import numpy as np

from chargewatch.kinds import AnomalyKind

from ..inject import Readings, Window, clock_fault, data_gap
from .base import BoolArray, FleetSessions, Injector, SessionCharge


class DataGap(Injector):
    """No readings for 6 or more intervals (and at least 5 min); the register keeps counting."""

    kind = AnomalyKind.DATA_GAP

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        # a gap of up to 2.2 times this must fit, with ordinary readings on each side
        shortest_gap_s = np.maximum(6 * fleet.interval_s, 300.0)
        return np.asarray(fleet.min_duration_ms >= 3 * 1000 * shortest_gap_s)

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return data_gap(r, charge.station.interval_s, rng)


class ClockFault(Injector):
    """A stretch of readings stamped by a wrong clock: 1970, years ahead, or set back; or a
    clock stepped back a little for the rest of the session."""

    kind = AnomalyKind.CLOCK_FAULT

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        return np.asarray(fleet.min_duration_ms >= 1000 * np.maximum(16 * fleet.interval_s, 600.0))

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        st = charge.station
        return clock_fault(r, charge.start_ms, rng, st.interval_s, st.stamp_unit_ms)
