"""What a window leaves out because it cannot change a verdict or a stored point: statuses no
reading can look up (``partition._in_force``), usage pieces written word for word by the window
before (``window._Lines.changed_pieces``)."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.assemble import ReadingColumns
from analytics.read.partition import _in_force, _statuses
from analytics.usage import Pieces, usage_lines
from analytics.window import _Lines
from chargewatch.events import StatusChange
from chargewatch.influx import Series
from chargewatch.schema import READING_FIELDS

KEYS = [("ST-1", 1), ("ST-1", 2)]


def _readings(key: list[int], ts_ns: list[int]) -> ReadingColumns:
    n = len(key)
    return ReadingColumns(
        arrival=np.arange(n, dtype=np.int64),
        ts_ns=np.array(ts_ns, dtype=np.int64),
        key=np.array(key, dtype=np.int64),
        keys=KEYS,
        session=np.full(n, -1, dtype=np.int64),
        session_ids=[],
        values=tuple(np.full(n, np.nan) for _ in READING_FIELDS),
    )


def _statuses_of(connector: int, times: list[int], names: list[str]) -> Series:
    return Series(
        name="status",
        tags={"connector_id": str(connector), "station_id": "ST-1"},
        columns={
            "time": np.array(times, dtype=np.int64),
            "status": np.array(names, dtype=object),
            "error_code": np.array(["NoError"] * len(times), dtype=object),
        },
    )


def _kept(series: list[Series], readings: ReadingColumns) -> list[tuple[int, int, str]]:
    return [
        (e.connector_id, e.ts_ns, e.status.value)
        for e in _statuses(_in_force(series, KEYS, readings))
        if isinstance(e, StatusChange)
    ]


@pytest.mark.parametrize(
    ("first_reading", "kept"),
    [
        # the latest change at or before the first reading is in force there: it and later stay
        (40, [(1, 30, "Preparing"), (1, 30, "Charging"), (1, 50, "Finishing")]),
        (30, [(1, 30, "Preparing"), (1, 30, "Charging"), (1, 50, "Finishing")]),
        # a reading before every change (a wrong clock's): every change stays
        (
            5,
            [
                (1, 10, "Available"),
                *[(1, 30, "Preparing"), (1, 30, "Charging")],
                (1, 50, "Finishing"),
            ],
        ),
    ],
)
def test_statuses_kept_are_those_a_reading_can_look_up(
    first_reading: int, kept: list[tuple[int, int, str]]
) -> None:
    series = [
        _statuses_of(1, [10, 30, 30, 50], ["Available", "Preparing", "Charging", "Finishing"]),
        _statuses_of(2, [10, 20], ["Available", "Unavailable"]),  # no reading: its latest only
    ]
    readings = _readings([0, 0], [first_reading, 60])
    assert _kept(series, readings) == [*kept, (2, 20, "Unavailable")]


def _pieces(energy_wh: list[float]) -> Pieces:
    n = len(energy_wh)
    return Pieces(
        session_id=np.array(["s1"] * n, dtype=object),
        station_id=np.array(["ST-1"] * n, dtype=object),
        connector_id=np.ones(n, dtype=np.int64),
        start_ns=np.arange(n, dtype=np.int64) * 900_000_000_000,
        occupied_s=np.full(n, 900.0),
        charging_s=np.full(n, 600.0),
        idle_after_full_s=np.zeros(n),
        energy_wh=np.array(energy_wh),
    )


def test_only_usage_pieces_that_changed_are_written_again() -> None:
    first = _Lines(set())
    written = list(usage_lines(first.changed_pieces(_pieces([1.0, 2.0]))))
    assert len(written) == 2
    second = _Lines(first.now)
    fresh = second.changed_pieces(_pieces([1.0, 2.5, 3.0]))  # the last quarter grew, one more
    assert fresh.energy_wh.tolist() == [2.5, 3.0]
    assert list(usage_lines(fresh)) == list(usage_lines(_pieces([1.0, 2.5, 3.0])))[1:]
    # what the next window compares with is every piece of this one, written or not
    assert len(_Lines(second.now).changed_pieces(_pieces([1.0, 2.5, 3.0]))) == 0
