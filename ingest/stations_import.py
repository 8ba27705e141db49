"""Station metadata from CSV (CONTRACTS.md section 5): ``chargewatch stations import STATIONS.csv``
and ``chargewatch detect --input EVENTS --stations STATIONS.csv``.

Columns, by header name in any order: ``station_id`` and ``site_id`` (required), ``latitude``,
``longitude`` (WGS 84 degrees, both or neither) and ``rated_power_w`` (what the station is
declared to deliver per connector, in W), each optional and may be left empty in a row. A
header that is not one of these is refused (a misspelt ``rated_power_kw`` must not be read as
"no rating"). Every row is checked on its own: a bad row is reported with its line number, the
field and the reason, and the other rows still go in (``read_stations``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chargewatch.errors import ConfigError
from chargewatch.sites import StationInfo

__all__ = ["COLUMNS", "REQUIRED", "StationsFile", "StationsProblem", "read_stations"]

REQUIRED = ("station_id", "site_id")
COLUMNS = (*REQUIRED, "latitude", "longitude", "rated_power_w")
_MAX_ID_CHARS = 128  # as every id of the event format (chargewatch.events)
# The largest connectors built: the Megawatt Charging System for trucks, 3.75 MW (3000 A x
# 1250 V). A declared rating above it is a unit mistake (kW written as W, or mW).
MAX_RATED_POWER_W = 3_750_000.0
# Below a single-phase 6 A charge (IEC 61851's lowest current, 1.4 kW at 230 V) no connector
# charges a car: a value under it is a unit mistake (kW written as W).
MIN_RATED_POWER_W = 1_000.0


@dataclass(frozen=True, slots=True)
class StationsProblem:
    """One refused row (or the header, line 1): where, which field, and why."""

    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class StationsFile:
    """The rows of a stations file that passed, and the problems of those that did not."""

    stations: list[StationInfo]
    problems: list[StationsProblem]


def read_stations(path: Path) -> StationsFile:
    """Read and check a stations CSV. ``ConfigError`` when the file cannot be read or its header
    is wrong (no row could be read right); otherwise every good row, and each bad row's problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet programs is fine
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_stations(io.StringIO(text, newline=""), str(path))


def parse_stations(stream: Iterable[str], name: str = "stations file") -> StationsFile:
    """``read_stations`` for text already open."""
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ConfigError(f"{name}: line 1: {exc}") from exc
    if header is None:
        raise ConfigError(
            f"{name}: empty file (line 1 must name the columns: {', '.join(COLUMNS)})"
        )
    columns = [h.strip() for h in header]
    _check_header(columns, name)
    stations: list[StationInfo] = []
    problems: list[StationsProblem] = []
    first_line: dict[str, int] = {}
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:
            problems.append(StationsProblem(reader.line_num, None, str(exc)))
            continue
        if row is None:
            break
        line = reader.line_num  # a quoted field may span lines: the row's last line
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(columns):
            problems.append(
                StationsProblem(line, None, f"has {len(row)} fields, the header {len(columns)}")
            )
            continue
        try:
            info = _station(dict(zip(columns, row, strict=True)))
        except _RowError as exc:
            problems.append(StationsProblem(line, exc.field, exc.reason))
            continue
        if info.station_id in first_line:
            problems.append(
                StationsProblem(
                    line,
                    "station_id",
                    f"{info.station_id!r} is already on line {first_line[info.station_id]}",
                )
            )
            continue
        first_line[info.station_id] = line
        stations.append(info)
    return StationsFile(stations, problems)


def _check_header(columns: list[str], name: str) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ConfigError(
            f"{name}: line 1: unknown column {unknown[0]!r} (the columns are {', '.join(COLUMNS)})"
        )
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ConfigError(f"{name}: line 1: column {twice[0]!r} appears twice")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ConfigError(f"{name}: line 1: the required column {missing[0]!r} is missing")
    if ("latitude" in columns) != ("longitude" in columns):
        raise ConfigError(f"{name}: line 1: latitude and longitude come together, or neither")


class _RowError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _station(row: dict[str, str]) -> StationInfo:
    station_id = _identifier(row["station_id"], "station_id")
    site_id = _identifier(row["site_id"], "site_id")
    latitude = _number(row.get("latitude", ""), "latitude", -90.0, 90.0)
    longitude = _number(row.get("longitude", ""), "longitude", -180.0, 180.0)
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        raise _RowError(missing, "is empty while the other coordinate is given")
    rated = _number(
        row.get("rated_power_w", ""), "rated_power_w", MIN_RATED_POWER_W, MAX_RATED_POWER_W
    )
    return StationInfo(station_id, site_id, latitude, longitude, rated)


def _identifier(value: str, field: str) -> str:
    text = value.strip()
    if not text:
        raise _RowError(field, "is required")
    if len(text) > _MAX_ID_CHARS:
        raise _RowError(field, f"is longer than {_MAX_ID_CHARS} characters")
    if not text.isprintable():
        raise _RowError(field, "contains control characters")
    return text


def _number(value: str, field: str, low: float, high: float) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise _RowError(field, f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise _RowError(field, f"{text!r} is not a finite number")
    if not low <= number <= high:
        raise _RowError(field, f"{number:g} is outside {low:g}..{high:g}")
    return number
