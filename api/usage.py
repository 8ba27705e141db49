"""Usage patterns of a station, a set of stations or the network over a window: occupancy and
charging share by hour of week (a heatmap's data), energy by hour, session duration and energy
distributions, idle-after-full minutes, peak concurrent sessions and returning users; and the two
heatmaps as a PNG.

The hourly figures come from the ``usage`` pieces the detection job writes (a session's quarter
hours, ``analytics.usage``), so they cover the sessions judged so far. The window is at most 92
days (``api.network_query``). Plain functions, run on worker threads; the PNG is drawn there,
off the event loop.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from api.deps import require
from api.network_query import Network, StationIds, UsageWindow, Zone
from api.network_schemas import UsageOut
from api.query import READ_RESPONSES
from api.sessions import drawn
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["usage"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)

_PNG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "description": "occupancy and charging share by hour of week, 1000 x 620 pixels",
    }
}


@router.get("/usage", response_model=UsageOut)
def usage(network: Network, window: UsageWindow, tz: Zone, station: StationIds) -> UsageOut:
    """Usage of the stations asked for (the network when none) over the window, hours of week
    in `tz`."""
    figures = network.usage(window.since_ns, window.until_ns, station_ids=station, tz=tz)
    return UsageOut.of(figures)


@router.get("/usage.png", response_class=Response, responses=_PNG)
async def usage_png(
    request: Request, network: Network, window: UsageWindow, tz: Zone, station: StationIds
) -> Response:
    """The same usage as two heatmaps (occupancy, charging share; 0-100 %, Monday on top).
    Drawn on the picture threads (``api.sessions.drawn``): a burst of heatmaps waits there, or
    gets 503, and never holds up the rest of the API."""
    png = await drawn(
        request,
        partial(network.usage_png, window.since_ns, window.until_ns, station_ids=station, tz=tz),
    )
    return Response(content=png, media_type="image/png")
