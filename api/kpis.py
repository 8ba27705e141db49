"""Network KPIs over a window: sessions, energy, success rate, flagged share by kind, and the
mean time from an anomaly's start to its flag (``chargewatch.figures.TimeToFlag``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import require
from api.network_query import Network
from api.network_schemas import KpisOut
from api.query import READ_RESPONSES, WindowParams
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["network"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)


@router.get("/kpis", response_model=KpisOut)
def network_kpis(network: Network, window: WindowParams) -> KpisOut:
    """The whole network's figures for the sessions that started in the window."""
    return KpisOut.of(network.kpis(window.since_ns, window.until_ns))
