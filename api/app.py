"""The FastAPI application: one router per resource, services injected at build time.

``/openapi.json`` is served without a key: it describes the API and reveals no data, and
generated clients and fuzzers need it before they hold a key. It declares the API-key schemes
and the event batch body. ``/docs`` and ``/redoc`` are not served: FastAPI's pages load their
scripts from a CDN, which an operations network may not reach (or should not trust); any OpenAPI
viewer can open ``/openapi.json`` instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import events, health, ocpp
from api.deps import ApiServices
from api.event_schemas import event_batch_schemas
from chargewatch import __version__


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
    _document_event_batches(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=422)

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
