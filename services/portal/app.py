"""The portal's ASGI app: `uvicorn services.portal.app:app` (PORTAL_* settings; see settings.py)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from services.portal import api, web
from services.portal.actions import Actions, ServiceUnavailable, UnknownContract
from services.portal.domain import ActionRefused
from services.portal.reads import Sources
from services.portal.settings import PortalSettings
from shared import health, metrics
from shared.http import SecurityHeaders
from shared.health import Readiness, broker_reachable, database_reachable
from shared.logs import configure_logging
from shared.runtime import create_broker
from shared.settings import KafkaSettings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    settings = PortalSettings()
    sources = Sources.of(settings)
    async with create_broker(KafkaSettings(), client_id="portal") as broker, \
            httpx.AsyncClient(base_url=settings.rating_api_url, timeout=15) as rating_api, \
            httpx.AsyncClient(base_url=settings.settlement_api_url, timeout=15) as settlement_api, \
            httpx.AsyncClient(base_url=settings.payments_api_url, timeout=15) as payments_api:
        metrics.instrument(broker, "portal")  # what its quick actions publish
        await broker.start()
        app.state.sources = sources
        app.state.readiness = Readiness({
            **{f"{service} database": database_reachable(source.engine) for service, source in sources.items()},
            "broker": broker_reachable(broker),
        })
        app.state.actions = Actions(sources, broker, rating_api, settlement_api, payments_api)
        try:
            yield
        finally:
            await sources.dispose()


app = FastAPI(
    title="Customer billing portal",
    summary="A customer's billing data from the services' own stores, and the quick actions billing users take.",
    lifespan=lifespan,
)
app.add_middleware(SecurityHeaders)
app.include_router(api.router)
app.include_router(web.router)
app.include_router(health.router)
app.include_router(metrics.router)
app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")


@app.exception_handler(UnknownContract)
async def unknown_contract(request: Request, error: UnknownContract) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


@app.exception_handler(ActionRefused)
async def refused(request: Request, error: ActionRefused) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=422)


@app.exception_handler(ServiceUnavailable)
async def service_unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=502)
