"""Energy that no one pays for: delivered without an accepted card, or on a cloned card.

``unauthorized_energy`` is either a session whose card was refused yet charged, or energy on an
idle connector with no session at all (a ghost charge, simulated by the station like a session).
``concurrent_id_tag`` is one card in sessions that overlap in time at different stations, in the
three ways it happens on real networks: a cloned card (two places at once, often far apart), a
fleet card (several of a company's vehicles on one card, at sites across the country) and a
driver moving the car to the next charger at the same site (the new session starts minutes
before the old one's stop). Every session that overlaps another of its card at another station
is labeled, from where the sessions actually ran, once every station has run.
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
    """One card in sessions that overlap in time at different stations: a cloned card, a fleet
    card, or a driver moving to the next charger at the same site (see the module docstring)."""

    kind = AnomalyKind.CONCURRENT_ID_TAG

    def assign(self, fleet: FleetSessions, rng: np.random.Generator) -> None:
        roll = rng.random()
        if roll < _MOVE_P and _same_site_move(fleet, self.kind, rng):
            return
        if roll < _MOVE_P + _FLEET_P and _fleet_card(fleet, self.kind, rng):
            return
        _cloned_card(fleet, self.kind, rng)

    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        return None  # the readings are ordinary; the sessions are labeled in fleet_labels

    def fleet_labels(
        self,
        plans: Sequence[StationPlan],
        spans: Mapping[str, SessionSpan],
    ) -> list[Label]:
        """Every session whose card is in another session at another station at an overlapping
        time, bounded by its overlaps: the contract's definition, applied to where and when the
        sessions actually ran (whichever way the card came to be shared)."""
        by_card: dict[str, list[SessionSpan]] = {}
        ids: dict[SessionSpan, str] = {}
        for plan in plans:
            for s in plan.sessions:
                span = spans.get(s.session_id)
                if span is not None and s.id_tag:
                    by_card.setdefault(s.id_tag, []).append(span)
                    ids[span] = s.session_id
        labels = []
        for group in by_card.values():
            if len(group) < 2:
                continue
            for span in group:
                overlaps = [
                    (max(span.start_ms, o.start_ms), min(span.stop_ms, o.stop_ms))
                    for o in group
                    if o.station_id != span.station_id
                ]
                overlaps = [(a, b) for a, b in overlaps if a < b]
                if overlaps:
                    labels.append(
                        {
                            "session_id": ids[span],
                            "station_id": span.station_id,
                            "connector_id": span.connector_id,
                            "kind": self.kind,
                            "start_ms": min(a for a, _ in overlaps),
                            "end_ms": max(b for _, b in overlaps),
                        }
                    )
        return labels


# How a shared card comes about: a driver moving to the next charger at one site, a fleet card,
# else a cloned card.
_MOVE_P = 0.35
_FLEET_P = 0.3
# Overlaps are made at least this long, well above the detector's clock allowance (60 s) and a
# station's whole-minute stamps.
_MIN_OVERLAP_MS = 3 * MINUTE_MS


def _cloned_card(fleet: FleetSessions, kind: AnomalyKind, rng: np.random.Generator) -> None:
    """Two sessions at different stations, the second starting 3-15 min into the first."""
    ok = fleet.free(fleet.est_charge_s >= 0) & (fleet.min_duration_ms >= 20 * MINUTE_MS)
    order = np.argsort(fleet.arrival_ms, kind="stable")
    sorted_arrival = fleet.arrival_ms[order]
    for a in rng.permutation(np.flatnonzero(ok))[:30].tolist():
        lo = fleet.arrival_ms[a] + _MIN_OVERLAP_MS
        overlap_ms = min(15 * MINUTE_MS, int(fleet.min_duration_ms[a]) - 5 * MINUTE_MS)
        hi = fleet.arrival_ms[a] + overlap_ms
        window = order[np.searchsorted(sorted_arrival, lo) : np.searchsorted(sorted_arrival, hi)]
        partners = [
            b
            for b in window.tolist()
            if not fleet.taken[b]
            and fleet.station_of[b] != fleet.station_of[a]
            and fleet.arrival_ms[b] + 10 * MINUTE_MS < fleet.end_ms
        ]
        if not partners:
            continue
        _share(fleet, kind, a, [partners[int(rng.integers(len(partners)))]])
        return


def _fleet_card(fleet: FleetSessions, kind: AnomalyKind, rng: np.random.Generator) -> bool:
    """A long session and one or two others at other sites that start and end within it: one
    company card in several vehicles at once."""
    ok = fleet.free(fleet.est_charge_s >= 0) & (fleet.min_duration_ms >= 2 * 60 * MINUTE_MS)
    site = _site_ids(fleet)
    for a in rng.permutation(np.flatnonzero(ok))[:30].tolist():
        lo = fleet.arrival_ms[a] + 5 * MINUTE_MS
        hi = fleet.arrival_ms[a] + int(fleet.min_duration_ms[a]) - 40 * MINUTE_MS
        inside = (
            ~fleet.taken
            & (fleet.arrival_ms >= lo)
            & (fleet.arrival_ms < hi)
            & (fleet.departure_ms <= fleet.departure_ms[a])
            & (fleet.min_duration_ms >= 20 * MINUTE_MS)
            & (site != site[a])
        )
        partners: list[int] = []
        for b in rng.permutation(np.flatnonzero(inside)).tolist():
            if all(site[b] != site[c] for c in partners):
                partners.append(int(b))
            if len(partners) == 2:
                break
        if partners:
            _share(fleet, kind, a, partners)
            return True
    return False


def _same_site_move(fleet: FleetSessions, kind: AnomalyKind, rng: np.random.Generator) -> bool:
    """A driver moves the car to another station of the same site: the new session starts
    3-10 min before the old one stops (an AC session that lasts until its driver leaves, so
    its stop is when the plan says)."""
    site = _site_ids(fleet)
    lingers = np.array([s.linger_s is not None for s in fleet.sessions], dtype=bool)
    ac = ~np.array([fleet.station(i).is_dc for i in range(len(fleet.sessions))], dtype=bool)
    first_ok = fleet.free(ac & ~lingers) & (site != "")
    for b in rng.permutation(np.flatnonzero(~fleet.taken & (site != ""))).tolist():
        b_start = fleet.sessions[b].start_ms
        if b_start + 30 * MINUTE_MS >= fleet.end_ms:
            continue
        stop_ms = b_start + int(rng.integers(_MIN_OVERLAP_MS, 10 * MINUTE_MS + 1))
        near = np.flatnonzero(
            first_ok
            & (site == site[b])
            & (fleet.station_of != fleet.station_of[b])
            & (fleet.arrival_ms + 30 * MINUTE_MS <= b_start)
            & (fleet.departure_ms >= b_start - 60 * MINUTE_MS)
        )
        # the first session's connector must be free a while after its new stop
        candidates = [
            a
            for a in near.tolist()
            if fleet.sessions[a].next_busy_ms > stop_ms + 6 * MINUTE_MS and not fleet.taken[a]
        ]
        if not candidates:
            continue
        a = candidates[int(rng.integers(len(candidates)))]
        first = fleet.sessions[a]
        first.departure_ms = stop_ms
        fleet.departure_ms[a] = stop_ms
        fleet.min_duration_ms[a] = min(int(fleet.min_duration_ms[a]), stop_ms - first.arrival_ms)
        update_next_busy(fleet.plans[first.station], fleet.end_ms)
        _share(fleet, kind, a, [b])
        return True
    return False


def _share(fleet: FleetSessions, kind: AnomalyKind, a: int, partners: list[int]) -> None:
    """Sessions ``partners`` use the card of session ``a`` (``assign_id_tags`` hands it on)."""
    first = fleet.sessions[a]
    first.partner = fleet.sessions[partners[0]].session_id
    fleet.take(a, kind)
    for b in partners:
        fleet.sessions[b].partner = first.session_id
        fleet.take(b, kind)


def _site_ids(fleet: FleetSessions) -> np.ndarray:
    """Each session's site id ("" when its station has none)."""
    by_station = np.array([p.site.site_id if p.site else "" for p in fleet.plans], dtype=object)
    return np.asarray(by_station[fleet.station_of])
