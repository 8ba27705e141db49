"""What a connector can deliver: its rated power, from what the station declares first.

A station's rating, in this order (``StationRatings.learn``):

1. the rating declared in the station metadata (``rated_power_w`` of ``chargewatch stations
   import``, or of ``detect --input --stations``);
2. else the highest ``power_offered_w`` seen on it (a charger offers its rating whenever
   nothing limits it);
3. else the highest power measured on it.

Whatever the source, power measured above it raises it (a rating cannot be below what the
connector has been seen to deliver), and the rating carries a note saying so when it exceeds the
declared or offered one by more than the mains' tolerance: the metadata is then likely wrong.
So a 22 kW wallbox that has only ever drawn 7.4 kW from single-phase cars stays a 22 kW one,
and one declared at 11 kW that has delivered 22 kW for months is judged as a 22 kW one.

The station metadata reaches the detectors with the history they are fitted on
(``with_stations``): what they take from it is fitted state like the rest, and no detector's
signature changes with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray, SessionBatch
from analytics.detectors.prepared import Prepared, is_compact, row_blocks
from analytics.detectors.reductions import row_max
from chargewatch.sites import StationMetadata

# An AC connector delivers at most 3 x 32 A x 250 V (24 kW); above that it is DC.
AC_MAX_W = 24_000.0

# IEC 61851: below 6 A on one phase (about 1.4 kW) a car is not expected to charge at all, so an
# offer under that explains zero power, and power under it is no car's charge.
MIN_CHARGE_OFFER_W = 1400.0
# Measured power may exceed a declared (or offered) rating by the mains' voltage tolerance
# without the rating being wrong: ratings are nominal at 230 V, EN 50160 allows +10 %.
RATING_TOLERANCE = 0.10

_STATIONS_KEY = "station_metadata"
_RATINGS_KEY = "_station_ratings"
_NO_METADATA = StationMetadata()


@dataclass(frozen=True, slots=True)
class StationPeaks:
    """Each station's highest measured and offered power over every reading of the input (NaN
    where none): what its rating is learned from, whichever rows the detectors are fitted on
    (``with_peaks``; made by ``analytics.assemble.PeakWatch``)."""

    station_ids: np.ndarray  # object (str)
    power_w: FloatArray
    offered_w: FloatArray
    # the highest connector number each station was seen with (0: only connector 0); None:
    # not watched
    connectors: IntArray | None = None


_PEAKS_KEY = "station_peaks"


def with_peaks(batch: SessionBatch, peaks: StationPeaks | None) -> SessionBatch:
    """``batch`` (history to fit on) carrying ``peaks``: the same arrays, nothing copied. The
    detectors are fitted on a sample of the rows when the input spans several batches; a
    station missing from the sample would be rated by each row's own power, which on a station
    sampling every 10 min misses the car's peak (the job window by window and ``detect
    --since/--until`` flagged meter_jump on 5 normal sessions of such a DC station that the
    file path did not: an independently written fleet, seed 133 with --sparse-sampling 0.5)."""
    if peaks is None:
        return batch
    return replace(batch, extra={**batch.extra, _PEAKS_KEY: peaks})


def station_connectors(batch: SessionBatch) -> dict[str, int]:
    """Per station, how many connectors it is known to have: the highest connector number of
    its rows in ``batch`` (history to fit on) or among the peaks it carries (``with_peaks``:
    every reading of the input). OCPP numbers a station's connectors from 1 up, so the highest
    number seen is how many it has at least."""
    out: dict[str, int] = {}
    pairs: Iterable[tuple[object, int]] = zip(
        batch.station_id.tolist(), batch.connector_id.tolist(), strict=True
    )
    peaks = batch.extra.get(_PEAKS_KEY)
    if isinstance(peaks, StationPeaks) and peaks.connectors is not None:
        pairs = chain(
            pairs, zip(peaks.station_ids.tolist(), peaks.connectors.tolist(), strict=True)
        )
    for station, connector in pairs:
        if connector > out.get(str(station), 0):
            out[str(station)] = int(connector)
    return out


def with_stations(batch: SessionBatch, stations: StationMetadata | None) -> SessionBatch:
    """``batch`` (history to fit on) carrying ``stations``: the same arrays, nothing copied."""
    if stations is None:
        return batch
    return replace(batch, extra={**batch.extra, _STATIONS_KEY: stations})


def stations_of(batch: SessionBatch) -> StationMetadata:
    """The station metadata ``batch`` carries (``with_stations``); empty when none."""
    found = batch.extra.get(_STATIONS_KEY)
    return found if isinstance(found, StationMetadata) else _NO_METADATA


@dataclass(frozen=True, slots=True)
class StationRatings:
    """Rated power per station (see the module docstring for the order), and per station a note
    when measured power raised it above what was declared or offered (None otherwise)."""

    station_ids: np.ndarray  # sorted, object (str)
    rated_w: FloatArray
    notes: np.ndarray | None = None  # object: str or None, aligned with station_ids
    # bool, aligned with station_ids: True where nothing was declared nor offered, so that the
    # rating is only the highest power measured (a lower bound of what the connector delivers);
    # None: not known (a model saved before it was kept), read as False
    measured_only: np.ndarray | None = None
    # ``station_ids`` as a fixed-width str array for ``searchsorted``: converted once here,
    # not on every lookup (a few thousand stations take longer to convert than to search)
    _keys: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", self.station_ids.astype(str))

    @classmethod
    def learn(cls, batch: SessionBatch) -> StationRatings:
        """The ratings ``batch`` shows, with the metadata it carries; learned once per batch
        and metadata (several detectors fit on the same history) and cached in its ``extra``."""
        stations = stations_of(batch)
        peaks = batch.extra.get(_PEAKS_KEY)
        # what it is learned from, by identity: a batch made with ``replace`` shares ``extra``
        read = (
            stations,
            peaks,
            batch.station_id,
            batch.valid,
            batch.power_offered_w,
            batch.power_w,
        )
        cached = batch.extra.get(_RATINGS_KEY)
        if isinstance(cached, tuple) and all(a is b for a, b in zip(cached[0], read, strict=True)):
            ratings = cached[1]
            assert isinstance(ratings, StationRatings)
            return ratings
        ratings = cls._learn(batch, stations, peaks if isinstance(peaks, StationPeaks) else None)
        batch.extra[_RATINGS_KEY] = (read, ratings)
        return ratings

    @classmethod
    def _learn(
        cls, batch: SessionBatch, stations: StationMetadata, peaks: StationPeaks | None = None
    ) -> StationRatings:
        declared_ids, declared_w = stations.declared_ratings()
        if batch.n_sessions and batch.n_steps:
            # each row's own highest values; from the blocks of a compact history
            blocks, order = row_blocks(batch) if is_compact(batch) else ([batch], None)
            offered = np.concatenate([_row_max_valid(b, b.power_offered_w) for b in blocks])
            power = np.concatenate([_row_max_valid(b, b.power_w) for b in blocks])
            if order is not None:
                offered[order], power[order] = offered.copy(), power.copy()
            # connector 0 is the station's own meter: what it reads is every connector's power
            # together, no connector's rating (a four-connector 11 kW workplace station read
            # 25 kW there, was rated as DC, and a car held to 8 A by an 8 A offer was a "cold
            # battery": town fleet seed 9, TF-0107-2-002)
            main = batch.connector_id == 0
            offered[main], power[main] = np.nan, np.nan
            seen = batch.station_id.astype(str)
        else:
            offered = power = np.zeros(0)
            seen = np.zeros(0, dtype=str)
        if peaks is not None and peaks.station_ids.size:  # every reading's, as more rows
            seen = np.concatenate((seen, peaks.station_ids.astype(str)))
            offered = np.concatenate((offered, peaks.offered_w))
            power = np.concatenate((power, peaks.power_w))
        keys, inverse = np.unique(np.concatenate((seen, declared_ids)), return_inverse=True)
        if keys.size == 0:
            return cls(np.zeros(0, dtype=object), np.zeros(0))
        best_offered = np.full(keys.size, np.nan)
        best_power = np.full(keys.size, np.nan)
        np.fmax.at(best_offered, inverse[: seen.size], offered)
        np.fmax.at(best_power, inverse[: seen.size], power)
        declared = np.full(keys.size, np.nan)
        declared[inverse[seen.size :]] = declared_w
        base = np.where(np.isnan(declared), best_offered, declared)
        rated = np.fmax(base, best_power)
        raised = best_power > base * (1.0 + RATING_TOLERANCE)
        notes = np.full(keys.size, None, dtype=object)
        for i in np.flatnonzero(raised).tolist():  # stations whose metadata is wrong: few
            what = "declared" if not np.isnan(declared[i]) else "offered"
            notes[i] = (
                f"rated {rated[i] / 1000:.1f} kW as measured, above the {what} "
                f"{base[i] / 1000:.1f} kW"
            )
        measured_only = np.isnan(base) & ~np.isnan(best_power)
        return cls(keys.astype(object), rated, notes, measured_only)

    def _find(self, station_id: np.ndarray) -> tuple[IntArray, BoolArray]:
        """Per row: its station's position among ``station_ids`` (0 where absent), and whether
        it is there."""
        n = station_id.shape[0]
        if self.station_ids.size == 0 or n == 0:
            return np.zeros(n, dtype=np.intp), np.zeros(n, dtype=bool)
        ids = station_id.astype(str)
        keys = self._keys
        pos = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
        return pos, np.asarray(keys[pos] == ids)

    def lookup(self, station_id: np.ndarray) -> FloatArray:
        """The rating of each row's station, NaN for a station never seen nor declared."""
        pos, found = self._find(station_id)
        if not found.any():
            return np.full(found.size, np.nan)
        return np.asarray(np.where(found, self.rated_w[pos], np.nan))

    def lookup_measured_only(self, station_id: np.ndarray) -> BoolArray:
        """Per row: is its station's rating only the highest power measured on it (nothing
        declared nor offered)? False for a station never seen, or when not known."""
        pos, found = self._find(station_id)
        if self.measured_only is None or not found.any():
            return np.zeros(found.size, dtype=bool)
        return np.asarray(found & self.measured_only[pos])

    def note(self, station_id: str) -> str | None:
        """Why a station's rating is above its declared or offered one, if it is."""
        if self.notes is None or self.station_ids.size == 0:
            return None
        pos = int(np.searchsorted(self._keys, station_id))
        if pos < self._keys.size and self._keys[pos] == station_id:
            note = self.notes[pos]
            return str(note) if note is not None else None
        return None


def _row_max_valid(batch: SessionBatch, values: FloatArray) -> FloatArray:
    return row_max(np.where(batch.valid, values, np.nan))


def rated_power_w(prep: Prepared, learned: FloatArray) -> FloatArray:
    """Each row's rated power: the station's rating, or what the row itself shows (its highest
    offered power, else its highest power), whichever is higher; NaN when unknown."""
    own = np.where(np.isnan(prep.max_offered_w), prep.peak_power_w, prep.max_offered_w)
    rated = np.fmax(learned, own)
    return np.asarray(np.where(rated > 0, rated, np.nan))
