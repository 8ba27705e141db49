"""Liveness (``/healthz``, no key needed) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import Services, require, strict_query
from chargewatch.roles import Role

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Depends(strict_query)])
async def healthz(svc: Services) -> dict[str, object]:
    """The process is alive (always 200, so a liveness probe never restarts it for what a
    restart cannot mend): ``status`` is ``ok``, or ``degraded`` when the service reports so
    (damaged spool records set aside); with the spool's depth and quarantine and the InfluxDB
    writer's last error. On the event loop (a few file sizes and counters), never behind
    the worker threads that slow routes may all hold."""
    return {"status": "ok", **svc.health()}


@router.get("/metrics", response_class=Response)
def metrics(svc: Services, _role: Annotated[Role, Depends(require(Role.VIEWER))]) -> Response:
    """Prometheus text format."""
    payload, content_type = svc.metrics()
    return Response(content=payload, media_type=content_type)
