"""The portal's ASGI app: `uvicorn services.portal.app:app` (PORTAL_* settings; see settings.py)."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from services.portal import access, api, web
from services.portal.actions import Actions, ServiceUnavailable, UnknownContract
from services.portal.domain import ActionRefused
from services.portal.reads import Sources
from services.portal.access import openid_connect
from services.portal.settings import PortalSettings
from services.portal.sources import Source
from shared import health, metrics
from shared.access import guard
from shared.access.domain import Refused
from shared.access.guard import Guard
from shared.http import SecurityHeaders
from shared.health import Readiness, database_reachable
from shared.logs import configure_logging
from shared.settings import AccessSettings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    settings = PortalSettings()
    sources = Sources.of(settings)
    guard = await Guard.open(access_settings)
    async with httpx.AsyncClient(base_url=settings.rating_api_url, timeout=15) as rating_api, \
            httpx.AsyncClient(base_url=settings.settlement_api_url, timeout=15) as settlement_api, \
            httpx.AsyncClient(base_url=settings.payments_api_url, timeout=15) as payments_api:
        app.state.sources = sources
        app.state.guard = guard
        app.state.access_source = Source(access_settings.database_url)
        app.state.oauth = openid_connect(access_settings)
        app.state.readiness = Readiness({
            **{f"{service} database": database_reachable(source.engine) for service, source in sources.items()},
            "access database": database_reachable(guard.database.engine),
        })
        app.state.actions = Actions(sources, rating_api, settlement_api, payments_api)
        try:
            yield
        finally:
            await sources.dispose()
            await app.state.access_source.dispose()
            await guard.close()


access_settings = AccessSettings()
app = FastAPI(
    title="Customer billing portal",
    summary="A customer's billing data from the services' own stores, and the quick actions billing users take. "
            "Every route needs a signed-in operator's session or an API token (Authorization: Bearer).",
    lifespan=lifespan,
)
if access_settings.oidc_issuer:
    # Only the OpenID Connect sign-in's state and nonce live in this signed cookie, for its redirect.
    app.add_middleware(SessionMiddleware, secret_key=access_settings.state_secret.get_secret_value()
                       or secrets.token_urlsafe(32), session_cookie="billing_oidc_state", max_age=600,
                       same_site="lax", https_only=access_settings.secure_cookies)
app.add_middleware(SecurityHeaders)
app.include_router(access.router)
app.include_router(api.router)
app.include_router(web.router)
app.include_router(health.router)
app.include_router(metrics.router)
app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")


@app.exception_handler(Refused)
async def access_refused(request: Request, error: Refused) -> Response:
    """The API answers a refusal as JSON; a page without a session sends the person to sign in, and
    one their role may not use says why."""
    if request.url.path.startswith("/api"):
        return await guard.refused(request, error)
    if error.status == 401:
        return access.sign_in_redirect(request)
    return web.templates.TemplateResponse(request, "refused.html", {"detail": error.detail}, status_code=error.status)


@app.exception_handler(UnknownContract)
async def unknown_contract(request: Request, error: UnknownContract) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


@app.exception_handler(ActionRefused)
async def refused(request: Request, error: ActionRefused) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=422)


@app.exception_handler(ServiceUnavailable)
async def service_unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=502)
