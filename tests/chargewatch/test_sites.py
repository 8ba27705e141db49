"""``StationMetadata`` lookups and the haversine distance."""

from __future__ import annotations

import numpy as np
import pytest

from chargewatch.sites import StationInfo, StationMetadata, haversine_km

META = StationMetadata(
    {
        "B": StationInfo("B", "berlin", 52.5200, 13.4050, 22_000.0),
        "M": StationInfo("M", "munich", 48.1372, 11.5756),
        "X": StationInfo("X", "depot"),
    },
    frozenset({"f" * 32}),
)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ((52.5200, 13.4050), (48.1372, 11.5756), 504.3),  # Berlin - Munich
        ((51.5074, -0.1278), (48.8566, 2.3522), 343.6),  # London - Paris
        ((0.0, 179.9), (0.0, -179.9), 22.2),  # across the date line
        ((52.0, 13.0), (52.0, 13.0), 0.0),
    ],
)
def test_haversine(a: tuple[float, float], b: tuple[float, float], km: float) -> None:
    got = haversine_km(np.array([a[0]]), np.array([a[1]]), np.array([b[0]]), np.array([b[1]]))
    assert got[0] == pytest.approx(km, abs=0.1)


def test_lookups_by_row() -> None:
    ids = np.array(["M", "unknown", "B", "X"], dtype=object)
    assert list(META.sites(ids)) == ["munich", None, "berlin", "depot"]
    lat, lon = META.coordinates(ids)
    np.testing.assert_allclose(lat, [48.1372, np.nan, 52.52, np.nan])
    np.testing.assert_allclose(lon, [11.5756, np.nan, 13.405, np.nan])
    stations, rated = META.declared_ratings()
    assert list(stations) == ["B"] and list(rated) == [22_000.0]
    fleet = META.is_fleet(np.array(["f" * 32, "0" * 32, None], dtype=object))
    assert list(fleet) == [True, False, False]


def test_empty_metadata_knows_nothing() -> None:
    empty = StationMetadata()
    assert not empty
    ids = np.array(["B"], dtype=object)
    assert list(empty.sites(ids)) == [None]
    assert np.isnan(empty.coordinates(ids)[0]).all()
    assert not empty.is_fleet(np.array(["f" * 32], dtype=object)).any()
