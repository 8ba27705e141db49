"""The FastAPI application: one router per resource, services injected at build time.

``/openapi.json`` is served without a key: it describes the API and reveals no data, and
generated clients and fuzzers need it before they hold a key. It declares the API-key schemes
and the event batch body. ``/docs`` and ``/redoc`` are not served: FastAPI's pages load their
scripts from a CDN, which an operations network may not reach (or should not trust); any OpenAPI
viewer can open ``/openapi.json`` instead.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import (
    alerts,
    events,
    flags,
    health,
    kpis,
    ocpp,
    scores,
    sessions,
    stations,
    usage,
    users,
    verdicts,
)
from api.deps import ApiServices
from api.event_schemas import event_batch_schemas
from chargewatch import __version__
from chargewatch.catalog import CursorError
from chargewatch.errors import InfluxError, InfluxRequestError
from chargewatch.state import StateError

logger = logging.getLogger(__name__)


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="chargewatch",
        summary="Monitoring for electric-vehicle charging networks",
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.batch_gate = events.BatchGate(services.max_concurrent_batches)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(ocpp.router)
    app.include_router(sessions.router)
    app.include_router(flags.router)
    app.include_router(scores.router)
    app.include_router(stations.router)
    app.include_router(usage.router)
    app.include_router(users.router)
    app.include_router(kpis.router)
    app.include_router(alerts.router)
    app.include_router(verdicts.router)
    _document_event_batches(app)
    _document_rate_limit(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(CursorError)
    async def bad_cursor(_request: Request, exc: CursorError) -> JSONResponse:
        return JSONResponse({"detail": f"cursor: {exc}"}, status_code=422)

    @app.exception_handler(InfluxError)
    @app.exception_handler(StateError)
    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        # The detail (addresses, database names) is for the log, not for API clients.
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        if isinstance(exc, InfluxRequestError):
            # InfluxDB refused the query itself (400): asking again gets the same answer, so
            # this is no outage to wait out but a request this service cannot serve
            return JSONResponse(
                {"detail": "InfluxDB refused the query this request makes; it is logged"},
                status_code=500,
            )
        what = "InfluxDB" if isinstance(exc, InfluxError) else "the state database"
        return JSONResponse(
            {"detail": f"{what} did not answer; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return app


def _document_event_batches(app: FastAPI) -> None:
    """Adds the event schemas that ``POST /api/v1/events``'s request body refers to (the route
    reads its body itself, so FastAPI cannot find them) to the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches it in app.openapi_schema
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                event_batch_schemas()
            )
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


_RATE_LIMITED: dict[str, Any] = {
    "description": "this API key sent more requests than its rate allows (a token bucket per "
    "key: CHARGEWATCH_API_RATE_PER_S, _BURST); retry after `Retry-After` seconds",
    "headers": {
        "Retry-After": {
            "description": "whole seconds until the key may send again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}


def _document_rate_limit(app: FastAPI) -> None:
    """Adds the 429 every route that needs a key may answer (``api.deps.require``) to the
    OpenAPI document, in one place rather than on every router."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        operation.setdefault("responses", {}).setdefault("429", _RATE_LIMITED)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
