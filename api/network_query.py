"""What the station, usage, per-user energy and KPI routes share: the injected figures, the usage
window and its zone, and the answer every figure route may give when its figures are not wired.

The usage window is longer than the read API's month (``api.query``): usage is compared over a
quarter. It is at most ``MAX_USAGE_DAYS`` (92, the longest calendar quarter) and defaults to the
week before ``until`` (now when left out), widened to whole quarter hours of UTC, the grain the
usage figures are kept in.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import Depends, HTTPException, Query, status

from api.deps import Services, unprocessable
from api.network import NetworkSource
from api.query import Window, window_time

__all__ = ["MAX_STATIONS", "MAX_USAGE_DAYS", "Network", "StationIds", "UsageWindow", "Zone"]

MAX_USAGE_DAYS = 92
MAX_STATIONS = 1000  # station ids in one usage request (each one more condition in a query)
_DAY_NS = 24 * 3600 * 1_000_000_000


async def network(svc: Services) -> NetworkSource:
    if svc.network is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "network figures are not configured"
        )
    return svc.network


Network = Annotated[NetworkSource, Depends(network)]


async def usage_window(
    since: Annotated[
        str | None,
        Query(
            description="Window start (inclusive), RFC 3339 with a zone; a week before `until` "
            "when left out. Widened to a quarter hour.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description=f"Window end (exclusive), RFC 3339 with a zone; now when left out. At "
            f"most {MAX_USAGE_DAYS} days after `since`. Widened to a quarter hour.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
) -> Window:
    since_ns, until_ns = window_time(since, "since"), window_time(until, "until")
    if until_ns is None:
        until_ns = time.time_ns()
    if since_ns is None:
        since_ns = until_ns - 7 * _DAY_NS
    if until_ns <= since_ns:
        raise unprocessable("until", "must be later than since")
    if until_ns - since_ns > MAX_USAGE_DAYS * _DAY_NS:
        days = (until_ns - since_ns) / _DAY_NS
        raise unprocessable(
            "until", f"the window is {days:.1f} days long; at most {MAX_USAGE_DAYS} days"
        )
    return Window(since_ns, until_ns)


UsageWindow = Annotated[Window, Depends(usage_window)]


def zone(
    tz: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="The IANA time zone hours of week and hourly figures are told in "
            "(`Europe/Berlin`); UTC when left out.",
        ),
    ] = "UTC",
) -> str:
    # Checked against the zone database's list, so that no other name is ever opened as a file.
    if tz not in _zones():
        raise unprocessable("tz", "not an IANA time zone (e.g. Europe/Berlin, UTC)")
    return tz


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


Zone = Annotated[str, Depends(zone)]


async def station_ids(
    station: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_STATIONS,
            description="Only these stations (repeat the parameter for several); the whole "
            "network when left out.",
        ),
    ] = None,
) -> list[str] | None:
    if station is None:
        return None
    for value in station:
        if not value or len(value) > 128 or not value.isprintable():
            raise unprocessable("station", "each must be 1-128 printable characters")
    return sorted(set(station))


StationIds = Annotated[list[str] | None, Depends(station_ids)]
