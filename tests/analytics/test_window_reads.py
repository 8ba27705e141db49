"""The window's reads not grouped by tags (``analytics.read.partition._by_connector``) give what
InfluxDB's grouped answer gives: one series per connector, its tags, its rows in time order, the
series in InfluxDB's own order (a connector numbered 10 after 1, before 2)."""

from __future__ import annotations

import numpy as np

from analytics.read.partition import _by_connector
from chargewatch.influx import InfluxClient, Series

T0 = 1_795_392_000 * 1_000_000_000


def as_rows(series: list[Series]) -> list[tuple[str, dict[str, str], dict[str, list[object]]]]:
    return [
        (s.name, s.tags, {name: np.asarray(v).tolist() for name, v in sorted(s.columns.items())})
        for s in series
    ]


def test_an_ungrouped_answer_regrouped_is_the_grouped_answer(influx: InfluxClient) -> None:
    lines = []
    for k in range(12):  # interleaved in time over four connectors of two stations
        station, connector = ("B-2", "A-1")[k % 2], (1, 10, 2)[k % 3]
        status = ("Available", "Charging")[k % 2]
        lines.append(
            f"status,station_id={station},connector_id={connector} "
            f'status="{status}",error_code="NoError" {T0 + k * 1_000_000_000}'
        )
    influx.write(lines)
    where = f"time >= {T0} AND time < {T0 + 60_000_000_000}"
    grouped = influx.query(
        f'SELECT "status", "error_code" FROM "status" WHERE {where} '
        'GROUP BY "station_id", "connector_id"'
    )
    flat = influx.query(
        f'SELECT "status", "error_code", "station_id", "connector_id" FROM "status" WHERE {where}'
    )
    assert len(flat) == 1 and len(grouped) == 6
    assert as_rows(_by_connector(flat)) == as_rows(grouped)
