"""Standard Webhooks (standardwebhooks.com), for providers and internal tools that speak it. Pure, no I/O.

Headers: `webhook-id` (the message id, the same on every retry: the key a redelivery is recognised
by), `webhook-timestamp` (unix seconds) and `webhook-signature`, a space-separated list of
`v1,<base64 HMAC-SHA256>` signatures (several while a secret is rotated; other versions are
skipped) over `<webhook-id>.<webhook-timestamp>.<raw body>`, keyed with the secret's bytes: the
setting is the secret as the spec serializes it, `whsec_<base64>`.

The body is the spec's envelope around the generic format's fields (services.payments.webhooks):

    {"type": "payment.succeeded", "timestamp": "2026-11-20T10:00:00Z",
     "data": {"transaction_id": "tx_42", "amount": "100.00", "currency": "EUR", "contract_id": "C-1",
              "customer_id": "CUST-1", "invoice_number": "R2026-0001"}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from services.payments import webhooks
from services.payments.providers import Notification, WebhookRefused, check_fresh, forged, invalid, unsigned

SECRET_PREFIX = "whsec_"
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: webhooks.WebhookType
    timestamp: AwareDatetime
    data: dict[str, Any]


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding is optional in the secrets senders hand out, as the reference libraries accept.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if not key:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64")
    return key


def signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """One `v1,<base64>` signature, as a sender puts it in `webhook-signature`."""
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance_s: float) -> str:
    """The message id of a request signed with `secret` recently enough; refused otherwise."""
    message_id, timestamp, signatures = (headers.get(name) for name in
                                         ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not message_id or not timestamp or not signatures:
        raise unsigned("webhook-id, webhook-timestamp and webhook-signature")
    if not _UNIX_SECONDS.match(timestamp):
        raise WebhookRefused(400, "bad_timestamp", "webhook-timestamp must be unix seconds")
    expected = signature(secret, message_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split(" ")
               if given.startswith("v1,")):
        raise forged()
    check_fresh(int(timestamp), now=now, tolerance_s=tolerance_s)
    return message_id


class StandardScheme:
    duplicate_status = 200

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]:
        message_id = verify(secret, headers, body, now=now, tolerance_s=tolerance_s)
        try:
            envelope = Envelope.model_validate_json(body)
            webhook = webhooks.ProviderWebhook.model_validate(
                {**envelope.data, "id": message_id, "type": envelope.type, "created_at": envelope.timestamp})
        except ValidationError as error:
            raise invalid(error) from None
        return [webhooks.notification(webhook)]
