"""What InfluxDB says about stations: each connector's latest status, when each station was last
heard from, and the statuses that reported a fault or an error code.

Every query bounds time on both ends, selects by the bounded tags (``station_id``,
``connector_id``) and filters on field values server side, so only the few rows asked for come
back: one point per series for "latest" (``ORDER BY time DESC LIMIT 1``), the faults themselves
for faults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.batch import IntArray, ObjectArray
from chargewatch.events import ChargePointStatus, EventType
from chargewatch.figures import ConnectorNow
from chargewatch.influx import InfluxClient, quote_ident, quote_literal

__all__ = [
    "STATUS_LOOKBACK_NS",
    "StatusEvents",
    "last_seen",
    "latest_statuses",
    "station_filter",
    "status_events",
]

# How far back "now" looks for a connector's latest status and a station's latest event: a
# connector reports a status at every session and every boot, so a month without one means the
# station is gone or silent, and its status is shown as unknown rather than a month-old one.
STATUS_LOOKBACK_NS = 30 * 24 * 3600 * 1_000_000_000
_FAULTED = ChargePointStatus.FAULTED.value
_NO_ERROR = "NoError"


def station_filter(station_ids: Sequence[str] | None) -> str:
    """`` AND ("station_id" = 'a' OR ...)``, or nothing for every station."""
    if station_ids is None:
        return ""
    if not station_ids:
        return " AND false"
    either = " OR ".join(f'"station_id" = {quote_literal(s)}' for s in station_ids)
    return f" AND ({either})"


def latest_statuses(
    client: InfluxClient, until_ns: int, station_ids: Sequence[str] | None = None
) -> dict[str, list[ConnectorNow]]:
    """Each connector's latest status before ``until_ns`` (within ``STATUS_LOOKBACK_NS``), by
    station, connectors in order. Connector 0 (the station itself) is left out."""
    query = (
        f'SELECT "status", "error_code" FROM {quote_ident(EventType.STATUS)} '
        f"WHERE time >= {until_ns - STATUS_LOOKBACK_NS} AND time < {until_ns}"
        f"{station_filter(station_ids)} "
        'GROUP BY "station_id", "connector_id" ORDER BY time DESC LIMIT 1'
    )
    found: dict[str, list[ConnectorNow]] = {}
    for series in client.query(query):
        connector = int(series.tags["connector_id"])
        if connector == 0 or not len(series):
            continue
        found.setdefault(series.tags["station_id"], []).append(
            ConnectorNow(
                connector_id=connector,
                status=_text(series.columns["status"][0]),
                error_code=_text(series.columns["error_code"][0]),
                since_ns=int(series.columns["time"][0]),
            )
        )
    for connectors in found.values():
        connectors.sort(key=lambda c: c.connector_id)
    return found


# Where a station's events land, each with a field every point of it has (readings: one of
# two). ``last(field)`` is InfluxDB's selector for the latest point: four times faster than
# ``ORDER BY time DESC LIMIT 1`` over a month of readings, and exact as long as it is the only
# selector of its statement (with two, the time is the window's start).
_HEARD_IN = (
    (EventType.READING, "power_w"),
    (EventType.READING, "energy_wh"),
    (EventType.STATUS, "status"),
    (EventType.SESSION_START, "session_id"),
    (EventType.SESSION_STOP, "session_id"),
    (EventType.AUTHORIZE, "result"),
    ("station", "up"),  # liveness: boot, connect, disconnect, heartbeat
)


def last_seen(
    client: InfluxClient, until_ns: int, station_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """When each station was last heard from before ``until_ns`` (within
    ``STATUS_LOOKBACK_NS``): its latest event of any type. One request, a statement per
    measurement and field."""
    where = (
        f"WHERE time >= {until_ns - STATUS_LOOKBACK_NS} AND time < {until_ns}"
        f"{station_filter(station_ids)}"
    )
    query = ";".join(
        f'SELECT last({quote_ident(field)}) FROM {quote_ident(m)} {where} GROUP BY "station_id"'
        for m, field in _HEARD_IN
    )
    seen: dict[str, int] = {}
    for series in client.query(query):
        station = series.tags.get("station_id")
        if station and len(series):
            seen[station] = max(seen.get(station, 0), int(series.columns["time"][0]))
    return seen


@dataclass(frozen=True, slots=True, eq=False)
class StatusEvents:
    """Status events as columns of shape ``(n,)``, in time order within each connector."""

    station_id: ObjectArray
    connector_id: IntArray
    time_ns: IntArray
    faulted: np.ndarray  # bool: status Faulted
    error_code: ObjectArray  # str ("NoError" when none was sent)

    def __len__(self) -> int:
        return int(self.time_ns.shape[0])


def status_events(
    client: InfluxClient,
    since_ns: int,
    until_ns: int,
    station_ids: Sequence[str] | None = None,
    *,
    faulted_only: bool = False,
) -> StatusEvents:
    """The statuses in ``[since_ns, until_ns)`` that were ``Faulted`` or, unless
    ``faulted_only``, carried an error code other than ``NoError``."""
    wanted = f'"status" = {quote_literal(_FAULTED)}'
    if not faulted_only:
        wanted += f' OR "error_code" != {quote_literal(_NO_ERROR)}'
    query = (
        f'SELECT "status", "error_code" FROM {quote_ident(EventType.STATUS)} '
        f"WHERE time >= {since_ns} AND time < {until_ns} AND ({wanted})"
        f"{station_filter(station_ids)} "
        'GROUP BY "station_id", "connector_id"'
    )
    series = [s for s in client.query(query) if len(s)]
    sizes = [len(s) for s in series]
    n = sum(sizes)
    stations = np.empty(n, dtype=object)
    stations[:] = [
        s.tags["station_id"] for s, k in zip(series, sizes, strict=True) for _ in range(k)
    ]
    codes = np.empty(n, dtype=object)
    codes[:] = [_text(v) or _NO_ERROR for s in series for v in s.columns["error_code"]]
    return StatusEvents(
        station_id=stations,
        connector_id=np.repeat([int(s.tags["connector_id"]) for s in series], sizes).astype(
            np.int64
        ),
        time_ns=np.concatenate([s.columns["time"] for s in series]).astype(np.int64)
        if series
        else np.zeros(0, np.int64),
        faulted=np.array([v == _FAULTED for s in series for v in s.columns["status"]], dtype=bool),
        error_code=codes,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
