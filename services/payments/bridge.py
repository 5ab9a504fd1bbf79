"""The webhook bridge: `uvicorn services.payments.bridge:app`, or `python -m services.payments.bridge`.

Providers POST their webhooks to `/webhooks/<provider>`: Stripe, GoCardless and Adyen in their own
formats and signature schemes (services.payments.providers.<name>), others in the generic format
(services.payments.webhooks) or the Standard Webhooks scheme (services.payments.providers.standard),
as configured (services.payments.settings). Each provider event of an accepted request is recorded
in `webhook_receipts` and its normalized payments.received written to payments' outbox in the same
transaction; the payments worker's outbox relay publishes it. So the bridge needs only the payments
database (and, for GoCardless, GoCardless' API), an accepted webhook is published even if the bridge
dies right after answering, and a refused one leaves nothing behind.

Answers: 2xx once every event of the request is recorded: 202 with the event for the generic
format, `[accepted]` for Adyen, 200 with each event's outcome for the others (published, held
until what it refers to arrives, mandate updated, duplicate, ignored). A redelivered event is a
duplicate and answered 2xx (the generic format: 409), since providers retry anything else for days.
Refused, publishing nothing: 400 body not JSON or timestamp not unix seconds; 401 unsigned, forged
or expired; 404 unknown provider; 413 body too large; 422 JSON that is not the provider's documented
event (missing fields, unsupported currency, amount not above zero, more decimals than the currency
has); 503 GoCardless' API unreachable. Every refusal is {"error": <code>, "detail": <reason>}.
OpenAPI: /docs and /openapi.json.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, SecretStr

from services.payments import handlers, operations
from services.payments.handlers import Outcome, Receipt
from services.payments.providers import Notification, Scheme, WebhookRefused
from services.payments.providers.adyen import ACCEPTED, AdyenScheme
from services.payments.providers.gocardless_api import GoCardlessApi, GoCardlessScheme
from services.payments.providers.standard import StandardScheme
from services.payments.providers.stripe import StripeScheme
from services.payments.settings import PaymentsSettings
from services.payments.webhooks import GenericScheme, ProviderWebhook
from shared import health, metrics
from shared.access.guard import Guard, guarded
from shared.http import SecurityHeaders
from shared.db import Database, migrate
from shared.events import PaymentKind, PaymentStatus
from shared.health import Readiness, database_reachable, schema_at_head
from shared.logs import configure_logging

log = logging.getLogger("billing.payments.bridge")
settings = PaymentsSettings()


def configured_schemes(settings: PaymentsSettings, gocardless_api: GoCardlessApi | None
                       ) -> dict[str, tuple[Scheme, SecretStr]]:
    """Each provider the settings name, with its scheme and secret; the others are unknown (404)."""
    schemes: dict[str, tuple[Scheme, SecretStr]] = {}
    schemes |= {name: (GenericScheme(), secret) for name, secret in settings.webhook_secrets.items()}
    schemes |= {name: (StandardScheme(), secret) for name, secret in settings.standard_webhook_secrets.items()}
    if settings.stripe_webhook_secret is not None:
        schemes["stripe"] = (StripeScheme(), settings.stripe_webhook_secret)
    if settings.adyen_hmac_key is not None:
        schemes["adyen"] = (AdyenScheme(), settings.adyen_hmac_key)
    if settings.gocardless_webhook_secret is not None and gocardless_api is not None:
        schemes["gocardless"] = (GoCardlessScheme(gocardless_api), settings.gocardless_webhook_secret)
    return schemes


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    await migrate("payments", settings.database_url)
    app.state.database = database = Database(settings.database_url)
    # The operator routes (/operations) are for signed-in staff and tokens; webhooks have signatures.
    app.state.guard = guard = await Guard.open()
    app.state.readiness = Readiness({"database": database_reachable(database.engine),
                                     "migrations": schema_at_head("payments", database.engine),
                                     "access database": database_reachable(guard.database.engine)})
    gocardless_api = (GoCardlessApi(settings.gocardless_api_url, settings.gocardless_access_token.get_secret_value())
                      if settings.gocardless_access_token is not None else None)
    app.state.schemes = configured_schemes(settings, gocardless_api)
    log.info("webhooks accepted for: %s", ", ".join(sorted(app.state.schemes)) or "no provider")
    try:
        yield
    finally:
        if gocardless_api is not None:
            await gocardless_api.aclose()
        await app.state.database.dispose()
        await guard.close()


app = FastAPI(
    title="Payments webhook bridge",
    summary="Signed payment-provider webhooks in, payments.received events out.",
    lifespan=lifespan,
)
guarded(app)
app.add_middleware(SecurityHeaders)
app.include_router(health.router)
app.include_router(metrics.router)
app.include_router(operations.router)


class Accepted(BaseModel):
    event_id: uuid.UUID
    payment_id: str
    kind: PaymentKind
    status: PaymentStatus


class EventOutcome(BaseModel):
    provider_event_id: str
    outcome: Outcome
    event_id: uuid.UUID | None = None
    detail: str | None = None


class Received(BaseModel):
    events: list[EventOutcome]


class Refusal(BaseModel):
    error: str
    detail: str


@app.exception_handler(WebhookRefused)
async def _refused(request: Request, refusal: WebhookRefused) -> JSONResponse:
    log.warning("refused %s %s: %s %s", request.method, request.url.path, refusal.status, refusal.message)
    return JSONResponse({"error": refusal.code, "detail": refusal.message}, status_code=refusal.status)


async def _read_body(request: Request) -> bytes:
    """The raw body, exactly as signed; refused unread beyond the limit."""
    limit = settings.webhook_max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, "too_large", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRefused(413, "too_large", f"the body exceeds {limit} bytes")
    return bytes(body)


@app.post(
    "/webhooks/{provider}",
    status_code=202,
    response_model=Accepted | Received,
    responses={200: {"model": Received, "description": "Stripe, GoCardless, Standard Webhooks: each event's "
                                                          "outcome (Adyen: the text [accepted])"},
               **{status: {"model": Refusal} for status in (400, 401, 404, 409, 413, 422, 503)}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": ProviderWebhook.model_json_schema()}}}},
)
async def receive_webhook(provider: str, request: Request) -> Response:
    """Verify a provider's webhook and turn its events into payments.received events, once per provider event id.

    The request body documented here is the generic format; Stripe, GoCardless, Adyen and Standard
    Webhooks providers send theirs (see the README).
    """
    configured = request.app.state.schemes.get(provider)
    if configured is None:
        raise WebhookRefused(404, "unknown_provider", f"no webhook secret is configured for provider {provider!r}")
    scheme, secret = configured
    body = await _read_body(request)
    notifications = await scheme.read(secret.get_secret_value(), request.headers, body, now=time.time(),
                                      tolerance_s=settings.webhook_tolerance_s)
    async with request.app.state.database.transaction() as session:
        receipts = await handlers.accept_notifications(session, provider, notifications,
                                                       hashlib.sha256(body).hexdigest())
    for receipt in receipts:
        log.info("%s event %s: %s %s", provider, receipt.provider_event_id, receipt.outcome, receipt.detail or "")
    return _answer(scheme, receipts, notifications)


def _answer(scheme: Scheme, receipts: list[Receipt], notifications: list[Notification]) -> Response:
    """What each format answers: the generic format its documented 202 (409 for a repeat), Adyen the
    `[accepted]` it waits for, the others each event's outcome."""
    if isinstance(scheme, GenericScheme):
        [receipt], [notification] = receipts, notifications
        if receipt.outcome is Outcome.DUPLICATE:
            raise WebhookRefused(409, "already_received", f"event {receipt.provider_event_id} was received before")
        transaction = notification.change
        return JSONResponse(Accepted(event_id=receipt.event_id, payment_id=transaction.payment_id,
                                     kind=transaction.kind, status=transaction.status).model_dump(mode="json"),
                            status_code=202)
    if isinstance(scheme, AdyenScheme):
        return PlainTextResponse(ACCEPTED)
    return JSONResponse(Received(events=[EventOutcome(provider_event_id=receipt.provider_event_id,
                                                      outcome=receipt.outcome, event_id=receipt.event_id,
                                                      detail=receipt.detail) for receipt in receipts]
                                 ).model_dump(mode="json"))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=settings.bridge_host, port=settings.bridge_port)
