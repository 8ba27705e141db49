"""Energy that no one pays for: delivered without an accepted card, or on a cloned card.

``unauthorized_energy`` is either a session whose card was refused yet charged, or energy on an
idle connector with no session at all (a ghost charge, simulated by the station like a session).
``concurrent_id_tag`` pairs two sessions at different stations that overlap in time and gives
the second the first one's card; both are labeled once both have run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from chargewatch.kinds import AnomalyKind

from ..fleet import StationSpec
from ..inject import Readings, Window
from ..planning import MINUTE_MS, GhostPlan, SessionPlan, StationPlan, free_gaps, update_next_busy
from ..vehicles import AC_VEHICLE_P, DC_VEHICLE_P, VEHICLES
from .base import BoolArray, FleetSessions, Injector, Label, SessionCharge, SessionSpan

_REFUSED = ["Blocked", "Invalid", "Expired"]


class UnauthorizedEnergy(Injector):
    """Energy flows though the card was refused, or on a connector with no session open."""

    kind = AnomalyKind.UNAUTHORIZED_ENERGY

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        return np.asarray(fleet.est_energy_wh >= 1000.0)

    def assign(self, fleet: FleetSessions, rng: np.random.Generator) -> None:
        # half of them are ghost charges, when an idle connector has room for one
        if rng.random() < 0.5 and _place_ghost(fleet, self.kind, rng):
            return
        super().assign(fleet, rng)

    def prepare(
        self,
        station: StationSpec,
        session: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        session.auth_result = str(rng.choice(_REFUSED))
        return True

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return charge.start_ms, min(charge.stop_ms, int(r.sent_ms[-1]))


def _place_ghost(fleet: FleetSessions, kind: AnomalyKind, rng: np.random.Generator) -> bool:
    """Energy flows on an idle connector with no session (a bypassed or free-vend charger)."""
    start_ms, end_ms = fleet.start_ms, fleet.end_ms
    duration_ms = int(rng.uniform(10.0, 45.0) * MINUTE_MS)
    for station_index in rng.permutation(len(fleet.plans))[:20].tolist():
        plan = fleet.plans[station_index]
        connector = int(rng.integers(1, plan.station.connectors + 1))
        gaps = [
            (a, b)
            for a, b in free_gaps(
                plan.busy(connector), start_ms + 10 * MINUTE_MS, end_ms - 10 * MINUTE_MS
            )
            if b - a >= duration_ms + 4 * MINUTE_MS
        ]
        if not gaps:
            continue
        a, b = gaps[int(rng.integers(len(gaps)))]
        at_ms = int(rng.integers(a + 2 * MINUTE_MS, b - duration_ms - 2 * MINUTE_MS + 1))
        p = DC_VEHICLE_P if plan.station.is_dc else AC_VEHICLE_P
        plan.ghosts.append(
            GhostPlan(
                connector=connector,
                start_ms=at_ms,
                end_ms=at_ms + duration_ms,
                vehicle=int(rng.choice(len(VEHICLES), p=p)),
                soc0_pct=float(rng.uniform(15.0, 60.0)),
                with_status=bool(rng.random() < 0.5),
                anomaly=kind,
            )
        )
        update_next_busy(plan, end_ms)  # a later stay may not be extended into it
        return True
    return False


class ConcurrentIdTag(Injector):
    """One card in two sessions that overlap in time at different stations (a cloned card)."""

    kind = AnomalyKind.CONCURRENT_ID_TAG

    def assign(self, fleet: FleetSessions, rng: np.random.Generator) -> None:
        ok = fleet.free(self.can_carry(fleet)) & (fleet.min_duration_ms >= 20 * MINUTE_MS)
        order = np.argsort(fleet.arrival_ms, kind="stable")
        sorted_arrival = fleet.arrival_ms[order]
        for a in rng.permutation(np.flatnonzero(ok))[:30].tolist():
            lo = fleet.arrival_ms[a] + 2 * MINUTE_MS
            overlap_ms = min(15 * MINUTE_MS, int(fleet.min_duration_ms[a]) - 5 * MINUTE_MS)
            hi = fleet.arrival_ms[a] + overlap_ms
            window = order[
                np.searchsorted(sorted_arrival, lo) : np.searchsorted(sorted_arrival, hi)
            ]
            partners = [
                b
                for b in window.tolist()
                if not fleet.taken[b]
                and fleet.station_of[b] != fleet.station_of[a]
                and fleet.arrival_ms[b] + 10 * MINUTE_MS < fleet.end_ms
            ]
            if not partners:
                continue
            b = partners[int(rng.integers(len(partners)))]
            first, second = fleet.sessions[a], fleet.sessions[b]
            second.partner = first.session_id
            first.partner = second.session_id
            fleet.take(a, self.kind)
            fleet.take(b, self.kind)
            return

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return None  # the readings are ordinary; both sessions are labeled in fleet_labels

    def fleet_labels(
        self,
        plans: Sequence[StationPlan],
        spans: Mapping[str, SessionSpan],
    ) -> list[Label]:
        """Both sessions of a shared card carry the label, bounded by their overlap."""
        labels = []
        for plan in plans:
            for s in plan.sessions:
                if s.anomaly != self.kind or s.partner is None or s.partner not in spans:
                    continue
                station_id, connector, start_ms, stop_ms = spans[s.session_id]
                _, _, other_start_ms, other_stop_ms = spans[s.partner]
                begin_ms, end_ms = max(start_ms, other_start_ms), min(stop_ms, other_stop_ms)
                if begin_ms < end_ms:
                    labels.append(
                        {
                            "session_id": s.session_id,
                            "station_id": station_id,
                            "connector_id": connector,
                            "kind": self.kind,
                            "start_ms": begin_ms,
                            "end_ms": end_ms,
                        }
                    )
        return labels
