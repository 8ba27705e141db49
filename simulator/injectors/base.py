"""What an anomaly injector is, and what it sees of the fleet and of one session.

An injector acts twice. Before any physics runs, ``assign`` picks a session of the whole fleet
that can carry its kind and prepares it (a stall or a derating is written into the session
plan; a cloned card pairs two sessions). Then, station by station, ``inject`` changes that
session's readings and returns the true times that bound where the anomaly shows: its label.
A kind whose label needs two sessions (a card in two places) labels them in ``fleet_labels``
once every station has run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from chargewatch.kinds import AnomalyKind

from ..fleet import StationSpec
from ..inject import Readings, Window
from ..physics import ChargeTrace
from ..planning import MINUTE_MS, SessionPlan, StationPlan

BoolArray = npt.NDArray[np.bool_]
Label = dict[str, Any]  # CONTRACTS.md section 2, with times as ms: start_ms, end_ms
MIN_S = 60.0
# an anomalous session is picked among this many eligible ones, until one takes it
_TRIES = 20


class FleetSessions:
    """Flat views over all planned sessions, for vectorized eligibility."""

    def __init__(self, plans: list[StationPlan], start_ms: int, end_ms: int) -> None:
        self.plans = plans
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.sessions = [s for p in plans for s in p.sessions]
        stations = [p.station for p in plans]
        self.station_of = np.array([s.station for s in self.sessions], dtype=np.int64)
        self.arrival_ms = np.array([s.arrival_ms for s in self.sessions], dtype=np.int64)
        self.departure_ms = np.array([s.departure_ms for s in self.sessions], dtype=np.int64)
        self.est_charge_s = np.array([s.est_charge_s for s in self.sessions])
        self.est_energy_wh = np.array([s.est_energy_wh for s in self.sessions])
        self.interval_s = np.array(
            [stations[s.station].interval_s for s in self.sessions], dtype=np.float64
        )
        lead_s = np.array([s.auth_to_start_s + s.charge_start_s for s in self.sessions])
        self.charge_end_ms = self.arrival_ms + ((lead_s + self.est_charge_s) * 1000).astype(
            np.int64
        )
        self.min_duration_ms = np.array([s.min_duration_ms for s in self.sessions], dtype=np.int64)
        self.taken = np.zeros(len(self.sessions), dtype=bool)

    def station(self, index: int) -> StationSpec:
        """The station of the session at ``index``."""
        return self.plans[self.sessions[index].station].station

    def free(self, ok: BoolArray) -> BoolArray:
        """Sessions where ``ok`` that carry no anomaly yet and end charging well inside the run."""
        inside = self.charge_end_ms + 10 * MINUTE_MS <= self.end_ms
        return np.asarray(inside & ok & ~self.taken)

    def take(self, index: int, kind: AnomalyKind) -> None:
        self.sessions[index].anomaly = kind
        self.taken[index] = True


@dataclass(frozen=True, slots=True)
class SessionCharge:
    """What an injector sees of one session as it runs: its plan, its physics, its times."""

    station: StationSpec
    plan: SessionPlan
    trace: ChargeTrace
    start_ms: int
    stop_ms: int

    def at_ms(self, seconds: float) -> int:
        """The time ``seconds`` after the session start."""
        return self.start_ms + round(seconds * 1000)


class SessionSpan(NamedTuple):
    """Where and when a simulated session ran (its stop capped at the end of the run)."""

    station_id: str
    connector_id: int
    start_ms: int
    stop_ms: int


class Injector(ABC):
    """One anomaly kind: which sessions can carry it, how it is set up, shown and labeled.

    The defaults suit a kind that needs nothing but the readings of one ordinary session of 10
    minutes or more: override ``can_carry`` to narrow the sessions, ``prepare`` to change a
    session's plan, ``assign`` to place the kind some other way.
    """

    kind: ClassVar[AnomalyKind]

    def can_carry(self, fleet: FleetSessions) -> BoolArray:
        """Per session of ``fleet``, whether this kind could show in it cleanly."""
        return np.asarray(fleet.est_charge_s >= 10 * MIN_S)

    def assign(self, fleet: FleetSessions, rng: np.random.Generator) -> None:
        """Give one more session of the fleet this kind (or none, if no session can take it)."""
        candidates = np.flatnonzero(fleet.free(self.can_carry(fleet)))
        for index in rng.permutation(candidates)[:_TRIES].tolist():
            if self.prepare(fleet.station(index), fleet.sessions[index], fleet.end_ms, rng):
                fleet.take(index, self.kind)
                return

    def prepare(
        self,
        station: StationSpec,
        session: SessionPlan,
        end_ms: int,
        rng: np.random.Generator,
    ) -> bool:
        """Change the plan of a session chosen for this kind; ``False`` if it cannot take it."""
        return True

    @abstractmethod
    def inject(self, charge: SessionCharge, r: Readings, rng: np.random.Generator) -> Window | None:
        """Alter the session's readings; the true times where it shows, ``None`` if nowhere."""

    def fleet_labels(
        self,
        plans: Sequence[StationPlan],
        spans: Mapping[str, SessionSpan],
    ) -> list[Label]:
        """Labels that need more than one session, made once every station has run."""
        return []
