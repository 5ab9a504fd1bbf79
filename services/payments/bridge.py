"""The webhook bridge: `uvicorn services.payments.bridge:app`, or `python -m services.payments.bridge`.

Providers POST signed webhooks (shape and signature: services.payments.webhooks) to
`/webhooks/<provider>`. An accepted one is recorded in `webhook_receipts` and its normalized
payments.received event is written to payments' outbox in the same transaction; the payments
worker's outbox relay publishes it. So the bridge needs only the payments database, an accepted
webhook is published even if the bridge dies right after answering, and a refused one leaves
nothing behind.

Answers: 202 accepted; 400 body not JSON or timestamp not unix seconds; 401 unsigned, forged
or expired; 404 unknown provider; 409 this provider event was received before; 413 body too
large; 422 JSON that is not a valid webhook (missing or unknown fields, unsupported currency,
amount not above zero, more decimals than the currency has). Every refusal is a JSON object
{"error": <code>, "detail": <reason>}. OpenAPI: /docs and /openapi.json.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, AsyncIterator

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.payments import handlers, webhooks
from services.payments.settings import PaymentsSettings
from services.payments.webhooks import ProviderWebhook, WebhookRefused
from shared import health, metrics
from shared.db import Database, migrate
from shared.events import PaymentKind, PaymentStatus
from shared.health import Readiness, database_reachable, schema_at_head
from shared.logs import configure_logging

log = logging.getLogger("billing.payments.bridge")
settings = PaymentsSettings()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    await migrate("payments", settings.database_url)
    app.state.database = database = Database(settings.database_url)
    app.state.readiness = Readiness({"database": database_reachable(database.engine),
                                     "migrations": schema_at_head("payments", database.engine)})
    try:
        yield
    finally:
        await app.state.database.dispose()


app = FastAPI(
    title="Payments webhook bridge",
    summary="Signed payment-provider webhooks in, payments.received events out.",
    lifespan=lifespan,
)
app.include_router(health.router)
app.include_router(metrics.router)


class Accepted(BaseModel):
    event_id: uuid.UUID
    payment_id: str
    kind: PaymentKind
    status: PaymentStatus


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
    responses={status: {"model": Refusal} for status in (400, 401, 404, 409, 413, 422)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": ProviderWebhook.model_json_schema()}}}},
)
async def receive_webhook(
    provider: str,
    request: Request,
    webhook_timestamp: Annotated[str | None, Header(description="Unix seconds when the provider sent it")] = None,
    webhook_signature: Annotated[str | None, Header(description='"sha256=" + hex HMAC-SHA256 of '
                                                    '<timestamp> "." <raw body>')] = None,
) -> Accepted:
    """Verify a provider's webhook and turn it into a payments.received event, once per provider event id."""
    secret = settings.webhook_secrets.get(provider)
    if secret is None:
        raise WebhookRefused(404, "unknown_provider", f"no webhook secret is configured for provider {provider!r}")
    body = await _read_body(request)
    webhooks.verify(secret.get_secret_value(), webhook_timestamp, webhook_signature, body,
                    now=time.time(), tolerance_s=settings.webhook_tolerance_s)
    webhook = webhooks.parse(body)
    event = webhooks.normalize(provider, webhook)
    async with request.app.state.database.transaction() as session:
        accepted = await handlers.accept_webhook(session, provider, webhook.id, event,
                                                 hashlib.sha256(body).hexdigest())
    if not accepted:
        raise WebhookRefused(409, "already_received", f"{provider} event {webhook.id} was received before")
    log.info("accepted %s event %s (%s %s) as %s", provider, webhook.id, webhook.type, webhook.transaction_id,
             event.event_id)
    return Accepted(event_id=event.event_id, payment_id=event.payment_id, kind=event.kind, status=event.status)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=settings.bridge_host, port=settings.bridge_port)
