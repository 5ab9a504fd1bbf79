"""Signing in to the portal through an OpenID Connect provider: the authorization code flow with
discovery, state, nonce and a signed ID token, against a stand-in provider served by this test
(the portal is a real uvicorn process configured with ACCESS_OIDC_*)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
import uuid
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from ops.stack import free_port
from ops.workers import Workers
from shared.access.guard import SESSION_COOKIE
from tests.e2e.conftest import as_role

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

CLIENT_ID, CLIENT_SECRET = "billing-portal", "provider-client-secret"


class StandInProvider:
    """Issues an ID token for whoever the test says is signing in, as a real provider would."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
        self.person: dict = {}
        self.codes: dict[str, dict] = {}
        self.app = FastAPI()
        self.app.get("/.well-known/openid-configuration")(self.discovery)
        self.app.get("/authorize")(self.authorize)
        self.app.post("/token")(self.token)
        self.app.get("/jwks")(self.jwks)

    async def discovery(self) -> dict:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    async def authorize(self, request: Request) -> RedirectResponse:
        query = request.query_params
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        code = uuid.uuid4().hex
        self.codes[code] = {"nonce": query["nonce"], "redirect_uri": query["redirect_uri"]}
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}")

    async def token(self, request: Request, code: str = Form(), redirect_uri: str = Form()) -> JSONResponse:
        # The portal authenticates as the client (client_secret_basic) and redeems the code once.
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected or code not in self.codes:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        grant = self.codes.pop(code)
        assert grant["redirect_uri"] == redirect_uri
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **self.person}
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)
        return JSONResponse({"access_token": uuid.uuid4().hex, "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token})

    async def jwks(self) -> dict:
        return {"keys": [self.key.as_dict(private=False)]}


@contextlib.contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def provider_and_portal(pipeline) -> Iterator[tuple[StandInProvider, str]]:
    port = free_port()
    provider = StandInProvider(f"http://127.0.0.1:{port}")
    with serving(provider.app, port):
        portal = Workers(pipeline.root / "logs-oidc", env={
            "ACCESS_OIDC_ISSUER": provider.issuer, "ACCESS_OIDC_CLIENT_ID": CLIENT_ID,
            "ACCESS_OIDC_CLIENT_SECRET": CLIENT_SECRET, "ACCESS_OIDC_ROLE_CLAIM": "billing_role",
            "ACCESS_STATE_SECRET": "a state key for the test portal",
            # httpx, unlike a browser, keeps no Secure cookie for http://127.0.0.1
            "ACCESS_SECURE_COOKIES": "false"})
        url = portal.start_http("portal", free_port())
        try:
            portal.wait_healthy("portal", url)
            yield provider, url
        finally:
            portal.stop_all()


async def test_a_person_the_provider_vouches_for_signs_in_with_the_role_it_names(provider_and_portal):
    provider, portal_url = provider_and_portal
    subject = uuid.uuid4().hex
    provider.person = {"sub": subject, "email": f"{subject}@example.com", "email_verified": True,
                       "preferred_username": f"oidc-{subject[:8]}", "name": "Olivia Idc", "billing_role": "clerk"}
    async with httpx.AsyncClient(timeout=20) as client:
        start = await client.get(f"{portal_url}/sign-in/oidc", params={"next": "/customers"})
        assert start.status_code == 302
        authorize = urlparse(start.headers["location"])
        assert (authorize.netloc, authorize.path) == (urlparse(provider.issuer).netloc, "/authorize")
        params = parse_qs(authorize.query)
        assert params["scope"] == ["openid email profile"] and params["state"] and params["nonce"]
        back = await client.get(start.headers["location"])
        assert urlparse(back.headers["location"]).path == "/sign-in/oidc/callback"
        signed_in = await client.get(back.headers["location"])
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/customers", signed_in.text
        session = signed_in.cookies[SESSION_COOKIE]
        page = await client.get(f"{portal_url}/customers", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
        assert page.status_code == 200 and f"oidc-{subject[:8]} (clerk)" in page.text

        # A callback replayed with a made-up state is refused (the provider's answer must be to this sign-in).
        code = parse_qs(urlparse(back.headers["location"]).query)["code"][0]
        forged = await client.get(f"{portal_url}/sign-in/oidc/callback", params={"code": code, "state": "forged"})
        assert forged.status_code == 401 and SESSION_COOKIE not in forged.cookies

        # The provider's claim decides the role: promoted there, the next session is an administrator's.
        provider.person["billing_role"] = "admin"
        start = await client.get(f"{portal_url}/sign-in/oidc")
        again = await client.get((await client.get(start.headers["location"])).headers["location"])
        promoted = again.cookies[SESSION_COOKIE]
        page = await client.get(f"{portal_url}/customers", headers={"Cookie": f"{SESSION_COOKIE}={promoted}"})
        assert f"oidc-{subject[:8]} (admin)" in page.text

        trail = (await client.get(f"{portal_url}/api/audit", params={"action": "sign-in"}, headers=as_role())).json()
        assert any(r["actor"] == f"user:oidc-{subject[:8]}" and r["details"] == {"method": "openid-connect"}
                   for r in trail)


async def test_someone_who_is_no_operator_is_refused(provider_and_portal):
    provider, portal_url = provider_and_portal
    provider.person = {"sub": uuid.uuid4().hex, "email": "stranger@example.com", "email_verified": True}
    async with httpx.AsyncClient(timeout=20) as client:
        start = await client.get(f"{portal_url}/sign-in/oidc")
        back = await client.get(start.headers["location"])
        refused = await client.get(back.headers["location"])
        assert refused.status_code == 403 and "not an operator" in refused.text
        assert SESSION_COOKIE not in refused.cookies
