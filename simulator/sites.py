"""Where the simulated stations stand: sites of a few stations each, in a handful of cities.

Real networks put several stations at one site (a car park, a depot, a motorway stop), so a
driver may move the car to the next charger while the first session is still open, and one
card may be seen at sites a short drive or a whole country apart. Each station gets a site, the
site's coordinates (plus a few metres per station) and the rating it declares: what
``chargewatch stations import`` reads, written by ``write_stations`` beside the events.

Sites are drawn from a stream of their own, after the stations, so they take no draw from
anything else a seed writes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .planning import StationPlan

# Cities the fleet's sites cluster around (latitude, longitude): German cities 250-600 km apart,
# so that one card at two of them at once is impossible, and two sites of one city a drive.
_CITIES: tuple[tuple[str, float, float], ...] = (
    ("BER", 52.520, 13.405),
    ("HAM", 53.551, 9.994),
    ("MUC", 48.137, 11.576),
    ("CGN", 50.938, 6.960),
    ("FRA", 50.110, 8.682),
)
_CITY_SPREAD_KM = 8.0  # sites lie this far (standard deviation) from their city's centre
_STATION_SPREAD_M = 25.0  # stations of one site within a car park
_SITE_SIZES = (1, 2, 3, 4)  # stations per site
_SITE_SIZE_P = (0.3, 0.35, 0.2, 0.15)
_KM_PER_DEGREE = 111.195  # along a meridian
NOMINAL_VOLTAGE_V = 230.0  # ratings are declared at the nominal mains voltage (EN 50160)


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One station's place: its site and coordinates, and the rating it declares."""

    site_id: str
    latitude: float
    longitude: float
    rated_power_w: float


def place_sites(plans: Sequence[StationPlan], rng: np.random.Generator) -> None:
    """Give every station of ``plans`` (in order) a site: consecutive stations share one."""
    index = 0
    site = 0
    while index < len(plans):
        size = int(rng.choice(_SITE_SIZES, p=_SITE_SIZE_P))
        city, lat0, lon0 = _CITIES[int(rng.integers(len(_CITIES)))]
        north_km, east_km = rng.normal(0.0, _CITY_SPREAD_KM, size=2)
        lat = lat0 + north_km / _KM_PER_DEGREE
        lon = lon0 + east_km / (_KM_PER_DEGREE * math.cos(math.radians(lat0)))
        site += 1
        for plan in plans[index : index + size]:
            dn, de = rng.normal(0.0, _STATION_SPREAD_M / 1000.0, size=2)
            plan.site = SiteSpec(
                site_id=f"{city}-{site:04d}",
                latitude=round(lat + dn / _KM_PER_DEGREE, 6),
                longitude=round(lon + de / (_KM_PER_DEGREE * math.cos(math.radians(lat))), 6),
                rated_power_w=declared_rating_w(plan),
            )
        index += size


def declared_rating_w(plan: StationPlan) -> float:
    """What the station declares: its DC rating, or phases x breaker current at 230 V (a 22 kW
    wallbox is 22 kW however few phases the cars it charges use)."""
    station = plan.station
    if station.is_dc:
        return float(station.rating_w)
    return float(round(station.phases * station.phase_current_a * NOMINAL_VOLTAGE_V))


def write_stations(path: Path, plans: Sequence[StationPlan]) -> int:
    """The station metadata CSV (``chargewatch stations import``), one row per station."""
    rows = sorted((p.station.station_id, p.site) for p in plans if p.site is not None)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["station_id", "site_id", "latitude", "longitude", "rated_power_w"])
        for station_id, site in rows:
            assert site is not None
            writer.writerow(
                [
                    station_id,
                    site.site_id,
                    f"{site.latitude:.6f}",
                    f"{site.longitude:.6f}",
                    f"{site.rated_power_w:.0f}",
                ]
            )
    return len(rows)
