"""The stations CSV: strict checks, each refused row named by line and field, the others kept."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from chargewatch.errors import ConfigError
from chargewatch.sites import StationInfo
from ingest.stations_import import StationsProblem, parse_stations, read_stations


def parse(text: str) -> tuple[list[StationInfo], list[str]]:
    read = parse_stations(io.StringIO(text, newline=""), "st.csv")
    return read.stations, [str(p) for p in read.problems]


def test_a_full_file() -> None:
    stations, problems = parse(
        "station_id,site_id,latitude,longitude,rated_power_w\n"
        "CW-1,depot,52.52,13.405,22000\n"
        "CW-2,depot,,,\n"
    )
    assert problems == []
    assert stations == [
        StationInfo("CW-1", "depot", 52.52, 13.405, 22000.0),
        StationInfo("CW-2", "depot", None, None, None),
    ]


def test_columns_in_any_order_and_only_the_required_ones() -> None:
    stations, problems = parse("site_id,station_id\nS,A\n\nS,B\n")
    assert problems == [] and [s.station_id for s in stations] == ["A", "B"]


# (row after the header station_id,site_id,latitude,longitude,rated_power_w; the problem)
BAD_ROWS = [
    (",depot,,,", "line 2: station_id: is required"),
    ("A,,,,", "line 2: site_id: is required"),
    ("A,s,north,13,", "line 2: latitude: 'north' is not a number"),
    ("A,s,91,13,", "line 2: latitude: 91 is outside -90..90"),
    ("A,s,52,181,", "line 2: longitude: 181 is outside -180..180"),
    ("A,s,52,,", "line 2: longitude: is empty while the other coordinate is given"),
    ("A,s,,,nan", "line 2: rated_power_w: 'nan' is not a finite number"),
    ("A,s,,,22", "line 2: rated_power_w: 22 is outside 1000..3.75e+06"),  # kW written as W
    ("A,s,,,-7400", "line 2: rated_power_w: -7400 is outside 1000..3.75e+06"),
    ("A,s,,", "line 2: has 4 fields, the header 5"),
    ("A" * 129 + ",s,,,", "line 2: station_id: is longer than 128 characters"),
]


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS)
def test_a_bad_row_is_refused_and_the_others_kept(row: str, problem: str) -> None:
    header = "station_id,site_id,latitude,longitude,rated_power_w\n"
    stations, problems = parse(header + row + "\nGOOD,s,,,11000\n")
    assert problems == [problem]
    assert [s.station_id for s in stations] == ["GOOD"]


def test_a_station_twice_keeps_the_first() -> None:
    stations, problems = parse("station_id,site_id\nA,s1\nB,s1\nA,s2\n")
    assert problems == ["line 4: station_id: 'A' is already on line 2"]
    assert [(s.station_id, s.site_id) for s in stations] == [("A", "s1"), ("B", "s1")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("station_id,site_id,rated_power_kw", "line 1: unknown column 'rated_power_kw'"),
        ("station_id,latitude,longitude", "line 1: the required column 'site_id' is missing"),
        ("station_id,site_id,site_id", "line 1: column 'site_id' appears twice"),
        ("station_id,site_id,latitude", "line 1: latitude and longitude come together"),
    ],
)
def test_a_bad_header_refuses_the_file(header: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(header + "\nA,s,1\n")


def test_files(tmp_path: Path) -> None:
    path = tmp_path / "st.csv"
    path.write_bytes(b"\xef\xbb\xbfstation_id,site_id\r\nA,s\r\n")  # BOM, CRLF: a spreadsheet's
    assert read_stations(path).stations == [StationInfo("A", "s")]
    with pytest.raises(ConfigError, match="empty file"):
        (tmp_path / "empty.csv").write_text("")
        read_stations(tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match="not UTF-8"):
        (tmp_path / "latin.csv").write_bytes(b"station_id,site_id\nA,M\xfcnchen\n")
        read_stations(tmp_path / "latin.csv")
    with pytest.raises(ConfigError, match="cannot read"):
        read_stations(tmp_path / "missing.csv")
    assert str(StationsProblem(3, None, "x")) == "line 3: x"
