"""What is known of stations and cards besides their readings: sites, places, ratings, fleet cards.

Detectors judge readings, but two questions need facts the readings do not carry:

- where a station is (its site, and optionally its coordinates), so that one card in two
  sessions at once can be told apart: a driver moving to the next charger at the same site, or
  two places so far apart that one card cannot be at both (``concurrent_id_tag``);
- what power a station is rated for (``analytics.detectors.ratings``): what it declares, before
  what it has happened to deliver.

Operators give them with ``chargewatch stations import STATIONS.csv`` (``ingest.stations_import``
reads the file) and ``chargewatch users mark-fleet PSEUDONYM`` (a card shared by a company's
vehicles on purpose). They are kept in two tables of the state database (``station_sites``,
``fleet_cards``, on ``chargewatch.state``'s metadata, created on first use:
``chargewatch.site_store``) and reach the detectors as one
``StationMetadata``: read from the state database by the scheduled job, from the CSV given to
``detect --input --stations`` for a file. This module holds the types only (no database
library: ``detect --input`` loads it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["EARTH_RADIUS_KM", "StationInfo", "StationMetadata", "haversine_km"]

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]

# Mean Earth radius (IUGG): the haversine distance is within 0.5 % of the ellipsoid's.
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class StationInfo:
    """One station's metadata. Everything but the id and the site is optional."""

    station_id: str
    site_id: str
    latitude: float | None = None  # WGS 84 degrees
    longitude: float | None = None
    rated_power_w: float | None = None  # what the station is declared to deliver per connector


@dataclass(frozen=True, slots=True)
class StationMetadata:
    """Every station's ``StationInfo`` (by id) and the pseudonyms marked as fleet cards: what
    the detectors are told, as one object. Empty when nothing was imported."""

    stations: Mapping[str, StationInfo] = field(default_factory=dict)
    fleet_cards: frozenset[str] = frozenset()
    # sorted ids and the columns in their order, for vectorized lookups (built once)
    _keys: npt.NDArray[np.str_] = field(init=False, repr=False, compare=False)
    _site: ObjectArray = field(init=False, repr=False, compare=False)
    _lat: FloatArray = field(init=False, repr=False, compare=False)
    _lon: FloatArray = field(init=False, repr=False, compare=False)
    _rated: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = sorted(self.stations)
        infos = [self.stations[i] for i in ids]

        def floats(values: Iterable[float | None]) -> FloatArray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        object.__setattr__(self, "_keys", np.array(ids, dtype=str))
        object.__setattr__(self, "_site", np.array([s.site_id for s in infos] or [], dtype=object))
        object.__setattr__(self, "_lat", floats(s.latitude for s in infos))
        object.__setattr__(self, "_lon", floats(s.longitude for s in infos))
        object.__setattr__(self, "_rated", floats(s.rated_power_w for s in infos))

    def __bool__(self) -> bool:
        return bool(self.stations) or bool(self.fleet_cards)

    def _positions(
        self, station_id: ObjectArray
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """Each row's index into the sorted ids, and whether the station is known at all."""
        n = station_id.shape[0]
        if self._keys.size == 0 or n == 0:
            return np.zeros(n, dtype=np.intp), np.zeros(n, dtype=bool)
        ids = station_id.astype(str)
        pos = np.clip(np.searchsorted(self._keys, ids), 0, self._keys.size - 1)
        return pos, np.asarray(self._keys[pos] == ids)

    def sites(self, station_id: ObjectArray) -> ObjectArray:
        """Each row's site id, None for a station not imported."""
        pos, known = self._positions(station_id)
        out = np.full(station_id.shape[0], None, dtype=object)
        out[known] = self._site[pos[known]]
        return out

    def coordinates(self, station_id: ObjectArray) -> tuple[FloatArray, FloatArray]:
        """Each row's latitude and longitude in degrees, NaN when unknown."""
        pos, known = self._positions(station_id)
        lat = np.where(known, self._lat[pos] if self._lat.size else np.nan, np.nan)
        lon = np.where(known, self._lon[pos] if self._lon.size else np.nan, np.nan)
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    def declared_ratings(self) -> tuple[npt.NDArray[np.str_], FloatArray]:
        """The stations with a declared rated power (ids, watts)."""
        has = ~np.isnan(self._rated)
        return self._keys[has], self._rated[has]

    def is_fleet(self, pseudonym: ObjectArray) -> npt.NDArray[np.bool_]:
        """Whether each row's pseudonym is marked as a fleet card."""
        if not self.fleet_cards:
            return np.zeros(pseudonym.shape[0], dtype=bool)
        cards = np.array(sorted(self.fleet_cards), dtype=str)
        return np.isin(pseudonym.astype(str), cards)


def haversine_km(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> FloatArray:
    """Great-circle distance in km between points given in degrees (NaN where one is unknown)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dlat / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2.0) ** 2
    return np.asarray(2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))
