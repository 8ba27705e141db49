"""The FastAPI application: one router per resource, services injected at build time."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import events, health, ocpp
from api.deps import ApiServices
from chargewatch import __version__


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="chargewatch",
        summary="Monitoring for electric-vehicle charging networks",
        version=__version__,
    )
    app.state.services = services
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(ocpp.router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=422)

    return app
