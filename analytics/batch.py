"""Sessions as NaN-padded arrays: the one shape every detector and profile works on.

A ``SessionBatch`` holds ``n`` sessions of up to ``m`` samples each. Per-session values are
arrays of shape ``(n,)``; per-sample values are arrays of shape ``(n, m)``, sorted by timestamp
within each row and padded after ``n_samples[i]`` (NaN for floats, 0 for integers, ``valid``
False). Detectors read these arrays and never loop in Python per sample or per session.

A row is either a session (``session_id`` set), or an *orphan segment*: the readings a
connector reported while no session was open on it (``session_id`` None), so energy delivered to
no one can be scored like anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

NO_TIME = np.iinfo(np.int64).min  # a missing timestamp in an int64 column (e.g. no stop yet)


class StatusCode(IntEnum):
    """The connector status in force at a sample (OCPP 1.6 ChargePointStatus), as a small int."""

    UNKNOWN = 0
    AVAILABLE = 1
    PREPARING = 2
    CHARGING = 3
    SUSPENDED_EVSE = 4
    SUSPENDED_EV = 5
    FINISHING = 6
    RESERVED = 7
    UNAVAILABLE = 8
    FAULTED = 9


@dataclass(frozen=True, slots=True, eq=False)
class SessionBatch:
    """``n`` sessions (or orphan segments) x ``m`` samples. See the module docstring."""

    # per session, shape (n,)
    session_id: ObjectArray  # str, or None for an orphan segment
    station_id: ObjectArray  # str
    connector_id: IntArray
    start_ns: IntArray  # session_start ts (orphan: first reading), UTC ns
    stop_ns: IntArray  # session_stop ts, NO_TIME while the session is open
    id_pseudonym: ObjectArray  # str or None
    auth_result: ObjectArray  # the authorize result for this pseudonym at this station before the
    #                           start ("Accepted", "Blocked", ...) or None when none was seen
    meter_start_wh: FloatArray  # NaN when not sent
    meter_stop_wh: FloatArray
    stop_reason: ObjectArray  # str or None
    n_samples: IntArray
    # per sample, shape (n, m); sorted by t_ns within each row
    t_ns: IntArray  # padding: 0
    valid: BoolArray  # True for real samples
    arrival: IntArray  # order in which samples arrived (file line, or t order when unknown)
    energy_wh: FloatArray  # cumulative import register; NaN when not measured or padding
    power_w: FloatArray
    power_offered_w: FloatArray
    current_a: FloatArray
    voltage_v: FloatArray
    soc_pct: FloatArray
    temperature_c: FloatArray
    status: npt.NDArray[np.int8]  # StatusCode in force at each sample (forward-filled)
    status_since_ns: IntArray  # when that status was reported (its StatusNotification); 0: none
    status_until_ns: IntArray  # the connector's next status change after the sample; 0: none yet
    extra: dict[str, object] = field(default_factory=dict)  # room for derived, cached values

    @property
    def n_sessions(self) -> int:
        return int(self.session_id.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.t_ns.shape[1]) if self.t_ns.ndim == 2 else 0

    def connector_keys(self) -> npt.NDArray[np.str_]:
        """Per row, its station and connector as one text (the connector's number after the
        last ``#``): a key to group rows by connector."""
        return np.char.add(
            self.station_id.astype(str), np.char.mod("#%d", self.connector_id.astype(np.int64))
        )

    def sessions_only(self, stop_ns: IntArray | None = None) -> SessionBatch:
        """The same rows without their samples (zero columns, nothing of the sample arrays
        kept alive); ``stop_ns`` replaces the stops when given."""
        batch = self._with_width(0)
        batch.n_samples[:] = 0
        if stop_ns is not None:
            batch.stop_ns[:] = stop_ns
        return batch

    @classmethod
    def concatenate(cls, batches: list[SessionBatch]) -> SessionBatch:
        """The rows of several batches with the same number of columns, one after another."""
        joined: dict[str, Any] = {
            name: np.concatenate([getattr(b, name) for b in batches])
            for name in cls.__dataclass_fields__
            if name != "extra"
        }
        return cls(**joined)

    def rows(self, start: int, stop: int) -> SessionBatch:
        """Rows ``start:stop`` as views of the same arrays (nothing copied)."""
        picked = {
            name: getattr(self, name)[start:stop]
            for name in self.__dataclass_fields__
            if name != "extra"
        }
        return SessionBatch(**picked)

    def padded(self, width: int) -> SessionBatch:
        """The same rows with at least ``width`` sample columns, the new ones padding (NaN,
        0, ``valid`` False); copies, so the new columns can be written."""
        return self._with_width(max(self.n_steps, width))

    def _with_width(self, width: int) -> SessionBatch:
        """Copies of every array, the sample arrays ``width`` columns wide: cut, or padded
        with NaN (floats) and 0 (the rest: ``valid`` False)."""
        fields: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "extra":
                continue
            value = getattr(self, name)
            if value.ndim == 2:
                kept = min(value.shape[1], width)
                pad = np.nan if value.dtype.kind == "f" else 0
                wide = np.full((value.shape[0], width), pad, dtype=value.dtype)
                wide[:, :kept] = value[:, :kept]
                fields[name] = wide
            else:
                fields[name] = value.copy()
        return SessionBatch(**fields)

    def take(self, rows: IntArray | BoolArray) -> SessionBatch:
        """A batch of the chosen rows (by index or mask), same columns."""
        picked = {
            name: getattr(self, name)[rows] for name in self.__dataclass_fields__ if name != "extra"
        }
        return SessionBatch(**picked)
