"""What a connector can deliver: its rated power, learned per station from history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics.batch import FloatArray, SessionBatch
from analytics.detectors.prepared import Prepared
from analytics.detectors.reductions import row_max

# An AC connector delivers at most 3 x 32 A x 250 V (24 kW); above that it is DC.
AC_MAX_W = 24_000.0


@dataclass(frozen=True, slots=True)
class StationRatings:
    """Rated power per station learned from history: the highest ``power_offered_w`` seen on it,
    else the highest reported power (a charger offers its rating whenever nothing limits it)."""

    station_ids: np.ndarray  # sorted, object (str)
    rated_w: FloatArray
    # ``station_ids`` as a fixed-width str array for ``searchsorted``: converted once here,
    # not on every lookup (a few thousand stations take longer to convert than to search)
    _keys: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", self.station_ids.astype(str))

    @classmethod
    def learn(cls, batch: SessionBatch) -> StationRatings:
        if batch.n_sessions == 0 or batch.n_steps == 0:
            return cls(np.zeros(0, dtype=object), np.zeros(0))
        valid = batch.valid
        offered = row_max(np.where(valid, batch.power_offered_w, np.nan))
        power = row_max(np.where(valid, batch.power_w, np.nan))
        keys, inverse = np.unique(batch.station_id.astype(str), return_inverse=True)
        best_offered = np.full(keys.size, np.nan)
        best_power = np.full(keys.size, np.nan)
        np.fmax.at(best_offered, inverse, offered)
        np.fmax.at(best_power, inverse, power)
        rated = np.where(np.isnan(best_offered), best_power, best_offered)
        return cls(keys.astype(object), rated)

    def lookup(self, station_id: np.ndarray) -> FloatArray:
        """The learned rating of each row's station, NaN for a station never seen."""
        n = station_id.shape[0]
        if self.station_ids.size == 0 or n == 0:
            return np.full(n, np.nan)
        ids = station_id.astype(str)
        keys = self._keys
        pos = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
        return np.asarray(np.where(keys[pos] == ids, self.rated_w[pos], np.nan))


def rated_power_w(prep: Prepared, learned: FloatArray) -> FloatArray:
    """Each row's rated power: the learned station rating, or what the row itself shows (its
    highest offered power, else its highest power), whichever is higher; NaN when unknown."""
    own = np.where(np.isnan(prep.max_offered_w), prep.peak_power_w, prep.max_offered_w)
    rated = np.fmax(learned, own)
    return np.asarray(np.where(rated > 0, rated, np.nan))
