"""Stations: status now per connector, when each was last heard from, faults by error code,
sessions and their success rate over a window, open alerts.

"Now" is ``until`` (the present when left out): a connector's status is its latest status event
before it, a station's last contact its latest event of any kind, each looked for in the 30 days
before. The list holds every station heard from in those 30 days or with a session in the
window. Plain functions, run on worker threads (the reads block).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status

from api.deps import require
from api.network_query import Network
from api.network_schemas import StationOut, StationsOut
from api.query import READ_RESPONSES, Problem, WindowParams, checked_id, utc
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["stations"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": Problem,
        "description": "the station sent nothing in the 30 days before `until` and had no "
        "session in the window",
    }
}
StationId = Annotated[str, Path(min_length=1, max_length=128, description="The station's id.")]


@router.get("/stations", response_model=StationsOut)
def list_stations(network: Network, window: WindowParams) -> StationsOut:
    """Every station, by id, with its connectors' status as of `until` and its sessions,
    success rate and faults over the window."""
    found = network.stations(window.since_ns, window.until_ns)
    return StationsOut(
        since=utc(window.since_ns),
        until=utc(window.until_ns),
        stations=[StationOut.of(s) for s in found],
    )


@router.get("/stations/{station_id}", response_model=StationOut, responses=_NOT_FOUND)
def get_station(network: Network, window: WindowParams, station_id: StationId) -> StationOut:
    """One station: its connectors' status as of `until`, its sessions, success rate, faults
    by error code over the window, and its open alerts."""
    checked_id(station_id, "station_id")
    found = network.station(station_id, window.since_ns, window.until_ns)
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"station_id: nothing known of station {station_id!r}"
        )
    return StationOut.of(found)
