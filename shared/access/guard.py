"""FastAPI's side of access: who is calling, and whether their role may do what they ask.

A surface creates one `Guard` at start (`app.state.guard`) and declares on every route the role
it needs, `Depends(requires(Role.clerk))`; the dependency hands the route its `Actor` for the
audit trail. Credentials are an `Authorization: Bearer` API token or session, or the portal's
session cookie. A request authenticated by the cookie that changes something must also carry the
session's anti-forgery token (form field or X-CSRF-Token header): a cookie is sent by the browser
whoever made the page, the token only by the portal's own pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from shared.access import store
from shared.access.domain import Actor, Refused, Role, csrf_matches, csrf_token_of, require
from shared.db import Database, migrate
from shared.settings import AccessSettings

SESSION_COOKIE = "billing_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guard:
    def __init__(self, database: Database, settings: AccessSettings) -> None:
        self.database = database
        self.settings = settings

    @classmethod
    async def open(cls, settings: AccessSettings | None = None) -> Guard:
        settings = settings or AccessSettings()
        await migrate("access", settings.database_url)
        return cls(Database(settings.database_url, pool_size=2), settings)

    async def close(self) -> None:
        await self.database.dispose()

    async def actor(self, request: Request) -> Actor | None:
        """Who the request's credential belongs to, looked up once per request (a page checks its
        viewer and its form's role; both ask here) and kept as `request.state.actor` for the page."""
        if not hasattr(request.state, "actor"):
            request.state.actor = await self._look_up(request)
        return request.state.actor

    async def _look_up(self, request: Request) -> Actor | None:
        secret, from_cookie = credential_of(request)
        if secret is None:
            return None
        async with self.database.transaction() as session:
            actor = await store.actor_of(session, secret, source_of(request), datetime.now(UTC))
        if actor is not None and from_cookie and request.method not in SAFE_METHODS:
            await _check_csrf(request, secret)
        return actor


def credential_of(request: Request) -> tuple[str | None, bool]:
    """The secret the request presents, and whether it came in the session cookie."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def source_of(request: Request) -> str | None:
    """The peer's address; a forwarded client address is kept beside it, never instead of it."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    return f"{forwarded.split(',')[0].strip()} via {peer}"[:100] if forwarded else peer


def csrf_token(request: Request) -> str:
    """The anti-forgery token a page's forms carry: the session's, when the cookie signed it in."""
    secret, from_cookie = credential_of(request)
    return csrf_token_of(secret) if secret and from_cookie else ""


async def _check_csrf(request: Request, session_secret: str) -> None:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        presented = (await request.form()).get(CSRF_FIELD)  # Starlette keeps the parsed form for the route
    if not csrf_matches(session_secret, presented if isinstance(presented, str) else None):
        raise Refused(403, "the form's anti-forgery token is missing or wrong: reload the page and try again")


def requires(role: Role) -> Callable[[Request], Awaitable[Actor]]:
    """A route dependency: the caller's Actor if their role is at least `role`; 401/403 otherwise."""

    async def caller(request: Request) -> Actor:
        guard: Guard = request.app.state.guard
        what = f"{request.method} {request.url.path}"
        return require(await guard.actor(request), role, what)

    caller.required_role = role  # type: ignore[attr-defined]  # read by the route scan in the tests
    return caller


async def refused(request: Request, error: Refused) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse({"detail": error.detail}, status_code=error.status, headers=headers)


def guarded(app: FastAPI) -> FastAPI:
    """Answer refusals as JSON with their reason (401 with WWW-Authenticate, 403)."""
    app.add_exception_handler(Refused, refused)  # type: ignore[arg-type]
    return app


# What a route declares: `actor: Clerk` (the caller, at least a billing clerk).
Viewer = Annotated[Actor, Depends(requires(Role.viewer))]
Clerk = Annotated[Actor, Depends(requires(Role.clerk))]
Admin = Annotated[Actor, Depends(requires(Role.admin))]
