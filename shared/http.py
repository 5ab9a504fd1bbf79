"""A worker's own HTTP endpoint: /health/live, /health/ready and /metrics, served by uvicorn on
the worker's event loop, beside its consumers.

Why not FastStream's `AsgiFastStream`: under `faststream run` it always serves HTTP (uvicorn's
default port when none is given, so four workers on one machine collide) and `--workers N` shares
one socket, so each scrape would reach a different process's counters. Here every process binds
`<SERVICE>_HTTP_PORT + its worker index`, and 0 turns the endpoint off.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator

import uvicorn
from fastapi import FastAPI

from shared import health, metrics
from shared.health import Readiness


def operations_app(title: str, readiness: Readiness) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.state.readiness = readiness
    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # FastStream owns the process's signals; it stops this server in its shutdown hook.
        yield


class OperationsEndpoint:
    def __init__(self, title: str, readiness: Readiness, host: str) -> None:
        self.app = operations_app(title, readiness)
        self.host = host
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, port: int) -> None:
        """Listening when this returns; a port already taken ends the process (uvicorn exits on it)."""
        self._server = _Server(uvicorn.Config(self.app, host=self.host, port=port, lifespan="off",
                                              access_log=False, log_config=None))
        self._task = asyncio.create_task(self._server.serve(), name="operations-endpoint")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"the operations endpoint stopped before it listened on port {port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None


# What every HTTP surface answers with: no framing (clickjacking), no MIME sniffing, no referrer
# leaving the site, and for pages a content security policy that allows this origin's own scripts,
# styles and images only (the portal has no inline script or style). FastAPI's /docs page loads
# Swagger UI with an inline script, so it gets the headers but not the policy.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
CONTENT_SECURITY_POLICY = (b"content-security-policy",
                           b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
NO_POLICY_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS (and the policy) to every HTTP response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = SECURITY_HEADERS if scope["path"].startswith(NO_POLICY_PATHS) \
            else [*SECURITY_HEADERS, CONTENT_SECURITY_POLICY]

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, with_headers)
