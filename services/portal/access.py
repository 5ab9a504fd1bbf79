"""Signing in and out, API tokens and the audit trail: the portal's access pages and routes.

Operators sign in with the local user store's password (argon2id hashes in the access database)
or, when ACCESS_OIDC_ISSUER is set, through that OpenID Connect provider (Authlib). A session is a
random secret in an HttpOnly, SameSite=Lax cookie (Secure unless ACCESS_SECURE_COOKIES=false);
only its SHA-256 is stored, and signing out ends it on the server. Failed sign-ins are counted
per name and per address in the access database, so every portal replica refuses the same
brute force (429). Administrators create and revoke API tokens here and read the audit trail,
which the services write next to their changes and this module merges (JSON or CSV export).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.portal.web import templates
from shared.access import store
from shared.access.domain import Actor, Role, sign_in_blocked
from shared.access.guard import SESSION_COOKIE, Admin, Guard, Viewer, source_of
from shared.access.store import Change
from shared.access.tables import audit_records
from shared.settings import AccessSettings

router = APIRouter()
SIGN_IN_COOKIE = "billing_sign_in"  # the sign-in form's own anti-forgery value (no session yet)
# The services' audit trails the portal merges, beside the access database's own (every one is
# shaped like it: shared.access.tables.audit_table).
AUDITED_SERVICES = ("rating", "settlement", "payments")


def safe_next(target: str | None) -> str:
    """Only a path of this site: `next=//evil.example` or an absolute URL would be an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/customers"


def _guard(request: Request) -> Guard:
    return request.app.state.guard


def _sign_in_form(request: Request, next: str, error: str | None = None, status: int = 200) -> Response:
    """The sign-in page (with the reason and status of a refusal: a script sees it, a person reads it)."""
    form_secret = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(request, "sign_in.html", {
        "next": safe_next(next), "error": error, "form_secret": form_secret,
        "oidc": request.app.state.oauth is not None}, status_code=status)
    response.set_cookie(SIGN_IN_COOKIE, form_secret, max_age=1800, httponly=True, samesite="strict",
                        secure=_guard(request).settings.secure_cookies)
    return response


@router.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def sign_in_page(request: Request, next: str = "/customers") -> Response:
    return _sign_in_form(request, next)


@router.post("/sign-in", include_in_schema=False)
async def sign_in(request: Request, username: Annotated[str, Form(max_length=100)],
                  password: Annotated[str, Form(max_length=1000)], form_secret: Annotated[str, Form()] = "",
                  next: Annotated[str, Form()] = "/customers") -> Response:
    guard = _guard(request)
    settings = guard.settings
    if not secrets.compare_digest(form_secret, request.cookies.get(SIGN_IN_COOKIE, "")):
        return _sign_in_form(request, next, "the sign-in form expired: try again", 403)
    source = source_of(request) or "unknown"
    now = datetime.now(UTC)
    async with guard.database.transaction() as session:
        failures = await store.recent_failures(session, username, source, now - timedelta(seconds=settings.sign_in_window_s))
        if sign_in_blocked(failures, settings.sign_in_failure_limit):
            refused = _sign_in_form(request, next, "too many failed sign-ins for this name or from this address: "
                                              "try again later", 429)
            refused.headers["Retry-After"] = str(int(settings.sign_in_window_s))
            return refused
        operator = await store.check_password(session, username, password)
        if operator is None:
            await store.note_failure(session, username, source)
    if operator is None:
        return _sign_in_form(request, next, "wrong name or password", 401)
    return await _signed_in(request, operator.username, Role.named(operator.role), next, "password")


async def _signed_in(request: Request, username: str, role: Role, next: str, method: str) -> Response:
    guard = _guard(request)
    source = source_of(request)
    async with guard.database.transaction() as session:
        issued = await store.open_session(session, username, source, datetime.now(UTC),
                                          timedelta(hours=guard.settings.session_hours))
        await store.record(session, audit_records, Change(
            Actor("user", username, role, source, issued.credential_id), "sign-in", username, {"method": method}))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, issued.secret, max_age=int(guard.settings.session_hours * 3600),
                        httponly=True, samesite="lax", secure=guard.settings.secure_cookies, path="/")
    response.delete_cookie(SIGN_IN_COOKIE)
    return response


@router.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request, actor: Viewer) -> Response:
    guard = _guard(request)
    secret = request.cookies.get(SESSION_COOKIE) or ""
    async with guard.database.transaction() as session:
        await store.end_session(session, secret, datetime.now(UTC))
        await store.record(session, audit_records, Change(actor, "sign-out", actor.name, {}))
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def openid_connect(settings: AccessSettings) -> OAuth | None:
    """The provider's client, from its discovery document; None when no provider is configured."""
    if not settings.oidc_issuer:
        return None
    oauth = OAuth()
    oauth.register("provider", client_id=settings.oidc_client_id,
                   client_secret=settings.oidc_client_secret.get_secret_value(),
                   server_metadata_url=f"{settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration",
                   client_kwargs={"scope": "openid email profile"})
    return oauth


@router.get("/sign-in/oidc", include_in_schema=False)
async def sign_in_with_provider(request: Request, next: str = "/customers") -> Response:
    oauth: OAuth | None = request.app.state.oauth
    if oauth is None:
        return _sign_in_form(request, next, "no identity provider is configured", 404)
    request.session["next"] = safe_next(next)
    return await oauth.provider.authorize_redirect(request, str(request.url_for("provider_callback")))


@router.get("/sign-in/oidc/callback", name="provider_callback", include_in_schema=False)
async def provider_callback(request: Request) -> Response:
    oauth: OAuth = request.app.state.oauth
    next = request.session.pop("next", "/customers")
    try:
        token = await oauth.provider.authorize_access_token(request)  # checks state, nonce and the ID token
    except OAuthError as error:
        return _sign_in_form(request, next, f"the identity provider refused: {error.description or error.error}", 401)
    claims = token.get("userinfo") or {}
    guard = _guard(request)
    subject = f"{claims.get('iss', guard.settings.oidc_issuer)}|{claims['sub']}"
    role_claim = guard.settings.oidc_role_claim
    claimed = claims.get(role_claim) if role_claim else None
    claimed_role = Role.named(claimed) if claimed in Role.__members__ else None
    async with guard.database.transaction() as session:
        operator = await store.operator_by_oidc(session, subject, claims.get("email") if claims.get("email_verified") else None)
        if operator is None and claimed_role is not None:
            username = str(claims.get("preferred_username") or claims["sub"])[:100]
            await store.add_operator(session, username, str(claims.get("name") or username)[:200], claimed_role,
                                     None, None)
            await store.link_oidc(session, username, subject)
        elif operator is not None and claimed_role is not None and operator.role != claimed_role.name:
            # The provider's claim decides the role: the sessions' permissions come from the store.
            await store.set_role(session, operator.username, claimed_role)
        if claimed_role is not None:
            operator = await store.operator_by_oidc(session, subject, None)
    if operator is None or operator.disabled_at is not None:
        return _sign_in_form(request, next, "you are not an operator of this portal: ask an administrator", 403)
    return await _signed_in(request, operator.username, Role.named(operator.role), next, "openid-connect")


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="What the token is for (a system, a script).")
    role: Literal["viewer", "clerk", "admin"] = Field(description="Its scope: viewer (read only), clerk or admin.")
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class IssuedToken(BaseModel):
    token_id: str
    token: str = Field(description="Shown only now: only its hash is stored.")
    name: str
    role: str
    expires_at: datetime | None


class TokenInfo(BaseModel):
    token_id: str
    name: str
    role: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@router.post("/api/tokens", tags=["access"], status_code=201, response_model=IssuedToken)
async def create_token(body: TokenRequest, request: Request, actor: Admin) -> IssuedToken:
    """Create an API token for a machine client (administrators)."""
    expires_at = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    async with _guard(request).database.transaction() as session:
        issued = await store.create_token(session, body.name, Role.named(body.role), actor.label, expires_at)
        await store.record(session, audit_records, Change(actor, "token.create", issued.credential_id, {
            "name": body.name, "role": body.role, "expires_at": expires_at.isoformat() if expires_at else None}))
    return IssuedToken(token_id=issued.credential_id, token=issued.secret, name=body.name, role=body.role,
                       expires_at=expires_at)


@router.get("/api/tokens", tags=["access"], response_model=list[TokenInfo])
async def list_tokens(request: Request, _: Admin) -> list[TokenInfo]:
    async with _guard(request).database.transaction() as session:
        return [TokenInfo.model_validate(row, from_attributes=True) for row in await store.all_tokens(session)]


@router.post("/api/tokens/{token_id}/revoke", tags=["access"], status_code=204)
async def revoke_token(token_id: str, request: Request, actor: Admin) -> None:
    """Revoke a token: refused from its next request on (administrators)."""
    async with _guard(request).database.transaction() as session:
        if not await store.revoke_token(session, token_id, actor.label, datetime.now(UTC)):
            raise HTTPException(404, f"no active token {token_id}")
        await store.record(session, audit_records, Change(actor, "token.revoke", token_id, {}))


class AuditRecord(BaseModel):
    recorded_at: datetime
    service: str
    actor: str
    role: str
    source: str | None
    action: str
    target: str
    details: dict[str, Any]


async def audit_trail(request: Request, since: datetime | None, until: datetime | None, actor: str | None,
                      action: str | None, limit: int) -> list[AuditRecord]:
    """The newest `limit` records of every audit trail (the services' and access'), merged by time."""
    found: list[AuditRecord] = []
    sources = [(name, source) for name, source in request.app.state.sources.items() if name in AUDITED_SERVICES]
    sources.append(("access", request.app.state.access_source))
    audit = audit_records
    query = select(audit).order_by(audit.c.recorded_at.desc(), audit.c.id.desc()).limit(limit)
    for column, value in ((audit.c.actor, actor), (audit.c.action, action)):
        if value:
            query = query.where(column == value)
    if since:
        query = query.where(audit.c.recorded_at >= since)
    if until:
        query = query.where(audit.c.recorded_at < until)
    for service, source in sources:
        async with source.read() as connection:
            found.extend(AuditRecord.model_validate({**row._mapping, "service": service})
                         for row in await connection.execute(query))
    return sorted(found, key=lambda record: record.recorded_at, reverse=True)[:limit]


AUDIT_COLUMNS = tuple(AuditRecord.model_fields)


@router.get("/api/audit", tags=["access"], response_model=list[AuditRecord])
async def audit(request: Request, _: Admin, since: datetime | None = None, until: datetime | None = None,
                actor: Annotated[str | None, Query(max_length=200)] = None,
                action: Annotated[str | None, Query(max_length=100)] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
                format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Response:
    """Who changed what, when and from where, newest first (administrators); `format=csv` exports it."""
    records = await audit_trail(request, since, until, actor, action, limit)
    if format == "json":
        return JSONResponse([record.model_dump(mode="json") for record in records])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(AUDIT_COLUMNS)
    for record in records:
        row = record.model_dump(mode="json")
        writer.writerow([row[name] if name != "details" else _json(row[name]) for name in AUDIT_COLUMNS])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="audit-trail.csv"'})


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(request: Request, _: Admin, actor: str | None = None, action: str | None = None) -> Response:
    records = await audit_trail(request, None, None, actor or None, action or None, 500)
    export = "/api/audit?" + urlencode({name: value for name, value in
                                        (("actor", actor), ("action", action), ("format", "csv")) if value})
    return templates.TemplateResponse(request, "audit.html", {
        "records": records, "actor": actor or "", "action": action or "", "export": export})


def sign_in_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/sign-in?next={quote(request.url.path)}", status_code=303)
