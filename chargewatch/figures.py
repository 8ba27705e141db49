"""What operations and billing read: the figures of stations, usage, per-user energy and the
network, as ``analytics`` computes them and ``api`` shows them (it turns each into its public
schema; these objects are never returned as they are).

Times are UTC nanoseconds. The sessions of a window ``[since, until)`` are those that *started*
in it (the session catalogue's order); a session is *finished* once it has stopped.

A session was **successful** when it finished, delivered at least ``SUCCESS_MIN_WH`` (by the
meter register, by integrated power when the register is unknown), neither its connector nor its
station (connector 0) reported a ``Faulted`` status between its start and its stop (both
included), and no detector flagged it ``stall`` or a meter kind (``METER_KINDS``). The **success
rate** is successful over finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargewatch.kinds import AnomalyKind

__all__ = [
    "HOURS_OF_WEEK",
    "METER_KINDS",
    "REVIEW_KINDS",
    "SUCCESS_MIN_WH",
    "BilledSession",
    "ConnectorNow",
    "Histogram",
    "NetworkKpis",
    "OpenAlert",
    "Outcomes",
    "StationFigures",
    "TimeToFlag",
    "UsageFigures",
    "UserEnergy",
]

HOURS_OF_WEEK = 7 * 24
# Below this a session delivered nothing a driver would notice (a car that refused to charge,
# a plug pulled at once): 0.1 kWh is under a minute at 7 kW.
SUCCESS_MIN_WH = 100.0
METER_KINDS: frozenset[str] = frozenset(
    {
        AnomalyKind.METER_STUCK,
        AnomalyKind.METER_BACKWARDS,
        AnomalyKind.METER_JUMP,
        AnomalyKind.METER_MISMATCH,
    }
)
# A session flagged with one of these is listed apart for billing: who took the energy, or how
# much, is in doubt.
REVIEW_KINDS: frozenset[str] = METER_KINDS | {
    AnomalyKind.UNAUTHORIZED_ENERGY,
    AnomalyKind.CONCURRENT_ID_TAG,
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ConnectorNow:
    """A connector's latest ``status`` event before the moment asked about (None: none seen in
    the look-back)."""

    connector_id: int
    status: str | None
    error_code: str | None
    since_ns: int | None


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What became of a window's sessions. A finished session that failed counts under each
    reason that applies, so the reasons may add up to more than ``finished - successful``."""

    sessions: int
    open: int
    finished: int
    successful: int
    no_energy: int
    faulted: int
    stalled: int
    meter_flagged: int
    energy_wh: float  # over every session of the window, open ones so far

    @property
    def success_rate(self) -> float | None:
        return self.successful / self.finished if self.finished else None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert of the station that has not resolved (``alerts``, table ``alert_state``)."""

    alertname: str
    severity: str
    connector_id: int | None
    kind: str | None
    starts_ns: int
    summary: str | None


@dataclass(frozen=True, slots=True)
class StationFigures:
    station_id: str
    last_seen_ns: int | None  # the latest event of any type from the station, in the look-back
    connectors: tuple[ConnectorNow, ...]
    outcomes: Outcomes
    faults_by_error_code: Mapping[str, int]  # Faulted statuses in the window
    warnings_by_error_code: Mapping[str, int]  # other statuses that carried an error code
    open_alerts: tuple[OpenAlert, ...]  # the station's alerts not resolved, latest first


@dataclass(frozen=True, slots=True, eq=False)
class Histogram:
    """Counts per bin ``[edges[i], edges[i+1])``; the last bin has no upper end."""

    unit: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class UsageFigures:
    """Usage of a set of stations (None: the network) over ``[since_ns, until_ns)``.

    The hour-of-week arrays have ``HOURS_OF_WEEK`` cells, Monday 00:00-01:00 first, in local
    time of ``tz``; a cell the window never covered has ``exposure_s`` 0 and NaN shares.
    """

    since_ns: int
    until_ns: int
    tz: str
    station_ids: tuple[str, ...] | None
    connectors: int
    exposure_s: FloatArray  # connector-seconds the window offered per cell
    occupied_s: FloatArray  # connector-seconds with a session open
    charging_s: FloatArray  # connector-seconds with power flowing
    idle_after_full_s: FloatArray  # connector-seconds blocked by a car that had finished
    energy_wh: FloatArray
    hour_starts_ns: IntArray  # each local hour of the window (partial ones included)
    hour_offsets_s: IntArray  # the zone's UTC offset at each of them
    hour_energy_wh: FloatArray
    sessions: int
    duration_histogram: Histogram
    energy_histogram: Histogram
    peak_concurrent: int
    peak_at_ns: int | None
    users: int
    returning_users: int

    @property
    def occupancy(self) -> FloatArray:
        return _share(self.occupied_s, self.exposure_s)

    @property
    def charging_share(self) -> FloatArray:
        return _share(self.charging_s, self.exposure_s)


def _share(part: FloatArray, whole: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1.0), np.nan)


@dataclass(frozen=True, slots=True)
class BilledSession:
    """A session as billing sees it; ``review`` says why it needs a look before it is billed
    (kinds of ``REVIEW_KINDS`` that flagged it, ``"open"`` while it has not stopped)."""

    session_id: str
    station_id: str
    connector_id: int
    start_ns: int
    stop_ns: int | None
    energy_register_wh: float | None
    energy_power_wh: float | None
    billing_confidence: float | None  # None: unverifiable (the notes say why)
    billing_notes: tuple[str, ...]
    flagged_kinds: tuple[str, ...]
    review: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserEnergy:
    pseudonym: str
    since_ns: int
    until_ns: int
    sessions: tuple[BilledSession, ...]  # nothing in doubt, oldest first
    needs_review: tuple[BilledSession, ...]


@dataclass(frozen=True, slots=True)
class TimeToFlag:
    """From an anomaly's start (its flag's start) to the moment the scheduled detection job
    first stored the flag, over the flags that start in the window and were found by it."""

    flags: int
    mean_s: float | None
    median_s: float | None
    mean_s_by_kind: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class NetworkKpis:
    since_ns: int
    until_ns: int
    stations: int  # stations with a session in the window
    outcomes: Outcomes
    flagged_sessions: int
    flagged_by_kind: Mapping[str, int]  # sessions flagged with each kind (every kind listed)
    time_to_flag: TimeToFlag
