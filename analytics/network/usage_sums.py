"""The ``usage`` pieces (``analytics.usage``) of a window summed by quarter hour, in InfluxDB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.batch import FloatArray, IntArray
from analytics.network.stations import station_filter
from analytics.usage import PIECE_NS, USAGE_MEASUREMENT
from chargewatch.influx import InfluxClient, quote_ident

__all__ = ["QuarterSums", "quarter_sums"]

_FIELDS = ("occupied_s", "charging_s", "idle_after_full_s", "energy_wh")


@dataclass(frozen=True, slots=True, eq=False)
class QuarterSums:
    """Sums over every connector in scope, per quarter hour of the window (arrays of shape
    ``(q,)``, quarter ``i`` starting at ``since + i * 15 min``)."""

    occupied_s: FloatArray
    charging_s: FloatArray
    idle_after_full_s: FloatArray
    energy_wh: FloatArray


def quarter_sums(
    client: InfluxClient, since_ns: int, until_ns: int, station_ids: Sequence[str] | None
) -> QuarterSums:
    """``since_ns`` and ``until_ns`` on quarter hours; one ``GROUP BY time(15m)`` query, bounded
    on both ends, ``fill(none)``: a row per quarter hour that has pieces, summed server side."""
    sums = ", ".join(f"sum({quote_ident(f)}) AS {quote_ident(f)}" for f in _FIELDS)
    query = (
        f"SELECT {sums} FROM {quote_ident(USAGE_MEASUREMENT)} "
        f"WHERE time >= {since_ns} AND time < {until_ns}{station_filter(station_ids)} "
        "GROUP BY time(15m) fill(none)"
    )
    size = max(0, (until_ns - since_ns) // PIECE_NS)
    out = {name: np.zeros(size) for name in _FIELDS}
    for series in client.query(query):
        at: IntArray = (series.columns["time"].astype(np.int64) - since_ns) // PIECE_NS
        inside = (at >= 0) & (at < size)
        for name in _FIELDS:
            values = np.nan_to_num(series.columns[name].astype(np.float64))
            np.add.at(out[name], at[inside], values[inside])
    return QuarterSums(**out)
