"""Who may see and change billing data, through the front doors: every mutating route of every HTTP
surface refused without credentials and with too weak a role, allowed with the right one; the
portal's anti-forgery token, token revocation, the sign-in limit, operator commands; and the audit
trail recording each change with its actor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from ops.operators import ensure_operator
from services.rating.tables import messaging as rating_messaging
from shared.access.domain import Role
from shared.access.guard import SESSION_COOKIE
from tests.e2e.conftest import as_role, given_contract, new_contract_id, publish_usage, usage, wait_for_dead_letter

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Routes anyone may call: providers' webhooks carry their own signatures; signing in is how one
# gets credentials; health, metrics and the API's description are for probes, scrapers and readers.
OPEN_ROUTES = {"/webhooks/{provider}", "/sign-in", "/sign-in/oidc", "/sign-in/oidc/callback",
               "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
               "/redoc"}


def _roles_required(dependant) -> set[Role]:
    found = {getattr(dependant.call, "required_role", None)}
    for sub in dependant.dependencies:
        found |= _roles_required(sub)
    return found - {None}


def _apps():
    from services.payments.bridge import app as bridge
    from services.portal.app import app as portal
    from services.rating.api import create_app
    from services.settlement.api import app as settlement
    return {"portal": portal, "rating": create_app(), "settlement": settlement, "payments": bridge}


async def test_no_route_of_any_surface_is_left_without_a_role():
    """Every route, in the schema or not (the portal's pages and forms), declares the role it needs;
    a route that changes data needs more than a viewer."""
    unguarded, mutating_for_viewers = [], []
    for name, app in _apps().items():
        for route in app.routes:
            if not isinstance(route, APIRoute) or route.path in OPEN_ROUTES:
                continue
            roles = _roles_required(route.dependant)
            if not roles:
                unguarded.append(f"{name} {sorted(route.methods)} {route.path}")
            elif route.methods - SAFE_METHODS and max(roles) == Role.viewer and route.path != "/sign-out":
                mutating_for_viewers.append(f"{name} {sorted(route.methods)} {route.path}")
    assert unguarded == []
    assert mutating_for_viewers == []


async def test_every_mutating_route_in_the_openapi_documents_refuses_no_credentials_and_a_viewer(
        portal_url, rating_api_url, settlement_api_url, payments_api_url):
    """Over HTTP, as any client would call them: 401 without credentials or with a token nobody
    issued, 403 for a viewer's token, each with its reason."""
    checked = []
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (portal_url, rating_api_url, settlement_api_url, payments_api_url):
            document = (await client.get(f"{url}/openapi.json")).raise_for_status().json()
            for path, operations in document["paths"].items():
                for method in operations:
                    if method.upper() in SAFE_METHODS or path in OPEN_ROUTES:
                        continue
                    concrete = url + re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
                    anonymous = await client.request(method, concrete, json={})
                    forged = await client.request(method, concrete, json={},
                                                  headers={"Authorization": "Bearer bil_0123456789ab_forged"})
                    viewer = await client.request(method, concrete, json={}, headers=as_role(Role.viewer))
                    assert (anonymous.status_code, forged.status_code, viewer.status_code) == (401, 401, 403), \
                        f"{method.upper()} {path}: {anonymous.text} {viewer.text}"
                    assert anonymous.headers["www-authenticate"] == "Bearer"
                    assert "needs the" in viewer.json()["detail"] and "token:tests-viewer has viewer" in \
                        viewer.json()["detail"]
                    checked.append(f"{method.upper()} {path}")
        # Reading needs credentials too (a viewer's are enough).
        assert (await client.get(f"{portal_url}/api/customers")).status_code == 401
        assert (await client.get(f"{portal_url}/api/customers", headers=as_role(Role.viewer))).status_code == 200
        assert (await client.get(f"{portal_url}/customers")).status_code == 303  # a page sends one to sign in
    assert len(checked) >= 20 and "PUT /contracts/{contract_id}" in checked and "POST /billing-runs" in checked


async def test_each_role_may_what_it_should_and_the_audit_trail_names_who_did_it(portal_url, rating_api_url, databases):
    contract = new_contract_id("access")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"sms": "0.10"}, customer_id=customer)
    base = f"/api/customers/{customer}"
    spec = {"customer": {"customer_id": customer, "name": "Access GmbH", "country": "DE"}, "currency": "EUR",
            "starts_on": "2026-01-01", "items": [{"item_code": "sms", "description": "SMS", "unit_price": "0.12"}]}
    usage = {"request_id": str(uuid.uuid4()), "item_code": "sms", "quantity": "250", "day": "2026-11-20"}
    purchase = {"item_code": "setup", "description": "Setup", "quantity": "1", "unit_price": "49.90",
                "purchased_on": "2026-11-20"}
    vouchers = {"request_id": str(uuid.uuid4()), "contract_ids": [contract]}
    async with httpx.AsyncClient(base_url=portal_url, timeout=10) as portal, \
            httpx.AsyncClient(base_url=rating_api_url, timeout=10) as rating:
        # A contract change is an administrator's; a billing clerk's is refused and changes nothing.
        refused = await rating.put(f"/contracts/{contract}", json=spec, headers=as_role(Role.clerk))
        assert refused.status_code == 403
        assert refused.json()["detail"] == (f"PUT /contracts/{contract} needs the admin role; "
                                            "token:tests-clerk has clerk")
        assert (await rating.get(f"/contracts/{contract}", headers=as_role(Role.viewer))).json()["items"][0][
            "unit_price"] == "0.10"
        changed = await rating.put(f"/contracts/{contract}", json=spec, headers=as_role(Role.admin))
        assert changed.status_code == 200 and changed.json()["items"][0]["unit_price"] == "0.12"

        # Usage, purchases and vouchers are a clerk's; a viewer may only look.
        assert (await portal.post(f"{base}/contracts/{contract}/usage", json=usage,
                                  headers=as_role(Role.viewer))).status_code == 403
        for path, body, status in ((f"{base}/contracts/{contract}/usage", usage, 202),
                                   (f"{base}/contracts/{contract}/purchases", purchase, 201),
                                   (f"{base}/billing-runs", vouchers, 202)):
            answer = await portal.post(path, json=body, headers=as_role(Role.clerk))
            assert answer.status_code == status, answer.text
        again = await portal.post(f"{base}/billing-runs", json=vouchers, headers=as_role(Role.clerk))
        assert again.json()["message"] == "those vouchers were requested before; nothing more requested"
        # Cancelling a contract is an administrator's.
        cancel = {"contract_ids": [contract], "ends_on": "2026-12-31"}
        assert (await portal.post(f"{base}/cancellations", json=cancel, headers=as_role(Role.clerk))).status_code == 403
        assert (await portal.post(f"{base}/cancellations", json=cancel, headers=as_role(Role.admin))).status_code == 200

        # The audit trail is for administrators, and says who did what, where, to what.
        assert (await portal.get("/api/audit", headers=as_role(Role.clerk))).status_code == 403
        trail = (await portal.get("/api/audit", headers=as_role(Role.admin))).json()
        mine = [(r["service"], r["action"], r["actor"], r["role"]) for r in trail if contract in r["target"]]
        assert mine == [  # newest first
            ("rating", "contract.cancel", "token:tests-admin", "admin"),
            ("settlement", "billing-run.request", "token:tests-clerk", "clerk"),
            ("rating", "purchase.add", "token:tests-clerk", "clerk"),
            ("rating", "usage.record", "token:tests-clerk", "clerk"),
            ("rating", "contract.change", "token:tests-admin", "admin")]
        usage_record = next(r for r in trail if r["action"] == "usage.record" and r["target"] == contract)
        assert usage_record["details"]["quantity"] == "250" and usage_record["source"].startswith("127.0.0.1")
        exported = (await portal.get("/api/audit", params={"format": "csv", "actor": "token:tests-clerk"},
                                     headers=as_role(Role.admin))).text.splitlines()
        assert exported[0] == "recorded_at,service,actor,role,source,action,target,details"
        assert any(f",settlement,token:tests-clerk,clerk,127.0.0.1,billing-run.request,{contract}," in line
                   for line in exported)

    # The events those changes caused carry the actor (the outbox row's, published as a header).
    async with databases["rating"].transaction() as session:
        actors = (await session.execute(select(rating_messaging.outbox.c.topic, rating_messaging.outbox.c.actor)
                                        .where(rating_messaging.outbox.c.key == contract,
                                               rating_messaging.outbox.c.actor.is_not(None))
                                        .order_by(rating_messaging.outbox.c.id))).all()
    assert [tuple(row) for row in actors] == [
        ("contracts.changed", "token:tests-admin"), ("usage.recorded", "token:tests-clerk"),
        ("items.rated", "token:tests-clerk"), ("contracts.changed", "token:tests-admin")]


def _sign_in_form(page: httpx.Response) -> dict[str, str]:
    return {"form_secret": re.search(r'name="form_secret" value="([^"]+)"', page.text).group(1),
            "cookie": page.cookies["billing_sign_in"]}


async def _signed_in(client: httpx.AsyncClient, username: str, password: str,
                     forwarded_for: str | None = None) -> httpx.Response:
    form = _sign_in_form(await client.get("/sign-in"))
    headers = {"Cookie": f"billing_sign_in={form['cookie']}"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for  # as the proxy in front of the portal sets it
    return await client.post("/sign-in", data={"username": username, "password": password,
                                               "form_secret": form["form_secret"], "next": "/customers"},
                             headers=headers)


async def test_a_form_without_the_sessions_anti_forgery_token_is_refused(portal_url, databases):
    contract = new_contract_id("csrf")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"sms": "0.10"}, customer_id=customer)
    await ensure_operator("clara", "Clara Clerk", Role.clerk, "a clerk's long password")
    async with httpx.AsyncClient(base_url=portal_url, timeout=10) as client:
        signed_in = await _signed_in(client, "clara", "a clerk's long password")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/customers"
        cookie = signed_in.headers["set-cookie"]
        assert re.search(r"; HttpOnly", cookie, re.I) and re.search(r"; SameSite=lax", cookie, re.I) \
            and re.search(r"; Secure", cookie, re.I)
        session = {"Cookie": f"{SESSION_COOKIE}={signed_in.cookies[SESSION_COOKIE]}"}
        page = await client.get(f"/customers/{customer}", headers=session)
        assert page.status_code == 200 and "clara (clerk)" in page.text
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text).group(1)

        form = {"contract_item": f"{contract}/sms", "quantity": "7", "day": "2026-11-20"}
        forged = await client.post(f"/customers/{customer}/actions/usage", headers=session,
                                   data={**form, "request_id": str(uuid.uuid4())})
        assert forged.status_code == 403 and "anti-forgery token" in forged.text
        wrong = await client.post(f"/customers/{customer}/actions/usage", headers=session,
                                  data={**form, "request_id": str(uuid.uuid4()), "csrf_token": "0" * 64})
        assert wrong.status_code == 403
        genuine = await client.post(f"/customers/{customer}/actions/usage", headers=session,
                                    data={**form, "request_id": str(uuid.uuid4()), "csrf_token": csrf})
        assert genuine.status_code == 303 and "notice=usage+of+7+sms+recorded" in genuine.headers["location"]

        # Only the genuine form's usage went to rating.
        async with databases["rating"].transaction() as db:
            written = (await db.execute(select(rating_messaging.outbox.c.actor).where(
                rating_messaging.outbox.c.key == contract, rating_messaging.outbox.c.topic == "usage.recorded"))).all()
        assert [row.actor for row in written] == ["user:clara"]

        # Signing out ends the session on the server: the same cookie no longer opens a page.
        assert (await client.post("/sign-out", headers=session, data={"csrf_token": csrf})).status_code == 303
        assert (await client.get(f"/customers/{customer}", headers=session)).status_code == 303


async def test_sign_in_is_refused_after_five_failures_even_with_the_right_password(portal_url):
    """Counted per name and per client address (from a documentation range, so that the other tests'
    sign-ins from this machine are not the ones refused)."""
    await ensure_operator("brute", "Target", Role.viewer, "the right long password")
    await ensure_operator("bystander", "Bystander", Role.viewer, "the bystander's password")
    attacker = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    async with httpx.AsyncClient(base_url=portal_url, timeout=10) as client:
        for _ in range(5):
            assert (await _signed_in(client, "brute", "a wrong guess!!", attacker)).status_code == 401
        blocked = await _signed_in(client, "brute", "the right long password", attacker)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert SESSION_COOKIE not in blocked.cookies
        # The name is blocked from anywhere, and the address for any name.
        assert (await _signed_in(client, "brute", "the right long password", "198.51.100.9")).status_code == 429
        assert (await _signed_in(client, "bystander", "the bystander's password", attacker)).status_code == 429
        assert (await _signed_in(client, "bystander", "the bystander's password", "198.51.100.9")).status_code == 303


async def test_a_revoked_token_is_refused_from_its_next_request_on(portal_url):
    async with httpx.AsyncClient(base_url=portal_url, timeout=10) as client:
        assert (await client.post("/api/tokens", json={"name": "erp", "role": "clerk"},
                                  headers=as_role(Role.clerk))).status_code == 403
        created = await client.post("/api/tokens", json={"name": "erp-export", "role": "viewer"},
                                    headers=as_role(Role.admin))
        assert created.status_code == 201, created.text
        token = created.json()
        assert token["token"].startswith(f"bil_{token['token_id']}_")
        theirs = {"Authorization": f"Bearer {token['token']}"}
        assert (await client.get("/api/customers", headers=theirs)).status_code == 200
        listed = (await client.get("/api/tokens", headers=as_role(Role.admin))).json()
        assert {"token_id": token["token_id"], "name": "erp-export", "role": "viewer"}.items() <= next(
            t for t in listed if t["token_id"] == token["token_id"]).items()
        assert all("token" not in t and "secret_digest" not in t for t in listed)  # never shown again

        assert (await client.post(f"/api/tokens/{token['token_id']}/revoke",
                                  headers=as_role(Role.admin))).status_code == 204
        assert (await client.get("/api/customers", headers=theirs)).status_code == 401
        trail = (await client.get("/api/audit", params={"actor": "token:tests-admin"}, headers=as_role())).json()
        assert [(r["service"], r["action"]) for r in trail if r["target"] == token["token_id"]] == [
            ("access", "token.revoke"), ("access", "token.create")]


def _command(*args: str, token: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCESS_TOKEN": token or ""}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


async def test_operator_commands_that_change_data_need_a_token_of_their_role(pipeline):
    item = str(uuid.uuid4())
    grant = ("services.settlement.admin", "grant-credit", "--item", item, "--amount", "5.00", "--reason", "goodwill")
    anonymous = _command(*grant, token=None)
    assert anonymous.returncode == 2 and "grant-credit needs an API token of the clerk role" in anonymous.stderr
    viewer = _command(*grant, token=os.environ["TESTS_VIEWER_TOKEN"])
    assert viewer.returncode == 2 and "needs the clerk role; token:tests-viewer has viewer" in viewer.stderr
    clerk = _command(*grant, token=os.environ["TESTS_CLERK_TOKEN"])
    assert "refused:" not in clerk.stderr and clerk.returncode != 0  # past the check, then: no such item
    reverse = _command("services.settlement.admin", "reverse-entry", item, "--reason", "typo",
                       token=os.environ["TESTS_CLERK_TOKEN"])
    assert reverse.returncode == 2 and "needs the admin role" in reverse.stderr
    replay = _command("ops.cli", "dead-letters", "replay", item, token=os.environ["TESTS_CLERK_TOKEN"])
    assert replay.returncode == 2 and "needs the admin role" in replay.stderr
    tokens = _command("services.access.admin", "create-token", "sneaky", "--role", "admin",
                      token=os.environ["TESTS_CLERK_TOKEN"])
    assert tokens.returncode == 2 and "needs the admin role" in tokens.stderr


async def test_a_dead_letter_replayed_by_an_administrator_is_in_the_audit_trail(pipeline, broker, databases,
                                                                                portal_url):
    contract = new_contract_id("access-replay")
    await given_contract(databases, contract, {"sms": "0.10"})
    await publish_usage(broker, usage(contract, "fax", "3"))  # the contract has no fax: dead-lettered
    letter = await wait_for_dead_letter(pipeline, contract, "has no item 'fax'")
    replayed = _command("ops.cli", "dead-letters", "replay", str(letter.event_id), token=os.environ["TESTS_ADMIN_TOKEN"])
    assert replayed.returncode == 0 and f"replayed {letter.event_id} -> usage.recorded" in replayed.stdout, \
        replayed.stderr
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        trail = (await client.get("/api/audit", params={"action": "dead-letters.replay"})).json()
    [record] = [r for r in trail if str(letter.event_id) in r["details"]["event_ids"]]
    assert (record["service"], record["actor"], record["details"]["topics"]) == (
        "access", "token:tests-admin", ["usage.recorded"])
