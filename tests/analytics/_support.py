"""Small builders of events and two toy detectors, so the pipeline is tested on its own.

The toy detectors stand in for ``analytics.detectors`` (developed alongside): simple,
vectorized, and obvious enough that what they flag on hand-made data is known exactly.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors.base import KindResult
from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointStatus,
    Event,
    Reading,
    SessionStart,
    SessionStop,
    StatusChange,
    parse_ts,
)

# The keys of a flag line, written from CONTRACTS.md section 4 (not from the code under test).
CONTRACT_KEYS = [
    "session_id",
    "station_id",
    "connector_id",
    "kind",
    "score",
    "start",
    "end",
    "reason",
]

T0 = parse_ts("2026-11-24T08:00:00Z")
MIN = 60 * 1_000_000_000
STATION = "ST-1"


def at(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def reading(
    minutes: float, session: str | None = "S1", connector: int = 1, **values: float | None
) -> Reading:
    return Reading(at(minutes), STATION, connector, session, **values)


def start(
    minutes: float,
    session: str = "S1",
    connector: int = 1,
    who: str = "P1",
    meter_wh: float | None = None,
) -> SessionStart:
    return SessionStart(at(minutes), STATION, connector, session, who, meter_wh)


def stop(
    minutes: float, session: str = "S1", connector: int = 1, meter_wh: float | None = None
) -> SessionStop:
    return SessionStop(at(minutes), STATION, connector, session, meter_wh, "EVDisconnected")


def status(minutes: float, value: ChargePointStatus, connector: int = 1) -> StatusChange:
    return StatusChange(at(minutes), STATION, connector, value)


def authorize(
    minutes: float, result: AuthorizationStatus, who: str = "P1", station: str = STATION
) -> Authorize:
    return Authorize(at(minutes), station, who, result)


def numbered(events: list[Event]) -> list[tuple[int, Event]]:
    return list(enumerate(events, start=1))


class RegisterFalls:
    """meter_backwards: any fall of the register between consecutive samples."""

    kind = "meter_backwards"
    per_row = True

    def fit(self, batch: SessionBatch) -> Self:
        return self

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        result = KindResult.empty(self.kind, batch.n_sessions)
        if batch.n_steps < 2:
            return result
        step = np.diff(batch.energy_wh, axis=1)
        falls = np.nan_to_num(step, nan=0.0) < 0
        flagged = falls.any(axis=1)
        at_ = np.argmax(falls, axis=1)
        rows = np.arange(batch.n_sessions)
        result.flagged[:] = flagged
        result.score[:] = flagged.astype(float)
        result.start_ns[:] = np.where(flagged, batch.t_ns[rows, at_], NO_TIME)
        result.end_ns[:] = np.where(flagged, batch.t_ns[rows, at_ + 1], NO_TIME)
        result.reason[flagged] = "register falls"
        return result


class OrphanEnergy:
    """unauthorized_energy: more than 100 Wh into an orphan segment or a session whose id tag was
    not seen Accepted."""

    kind = "unauthorized_energy"
    per_row = True

    def fit(self, batch: SessionBatch) -> Self:
        return self

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        result = KindResult.empty(self.kind, batch.n_sessions)
        orphan = np.array([sid is None for sid in batch.session_id], dtype=bool)
        orphan |= np.array([result != "Accepted" for result in batch.auth_result], dtype=bool)
        with np.errstate(all="ignore"):
            rise = np.nanmax(
                np.where(np.isnan(batch.energy_wh), -np.inf, batch.energy_wh),
                axis=1,
                initial=-np.inf,
            ) - np.nanmin(
                np.where(np.isnan(batch.energy_wh), np.inf, batch.energy_wh), axis=1, initial=np.inf
            )
        flagged = orphan & np.isfinite(rise) & (rise > 100.0)
        result.flagged[:] = flagged
        result.score[:] = flagged.astype(float)
        result.reason[flagged] = "energy with no session"
        return result
