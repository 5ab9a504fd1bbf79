"""The generic webhook format, for providers without a format of their own (and, signed the Standard
Webhooks way, services.payments.providers.standard). Pure, no I/O.

A provider POSTs each event to `/webhooks/<provider>` with two headers:

    Webhook-Timestamp: 1795000000                 (unix seconds when it was sent)
    Webhook-Signature: sha256=<hex digest>        (HMAC-SHA256 with the provider's secret over
                                                   the bytes  <timestamp> "." <raw body>)

and a JSON body (amounts are decimal strings; fields not listed are refused):

    {
      "id": "evt_0001",                     the provider's event id: accepted once, ever
      "type": "payment.succeeded",          payment.pending | payment.succeeded | payment.failed
                                            | charge.refunded | charge.disputed | charge.dispute_won
      "created_at": "2026-11-20T10:00:00Z", when it happened at the provider (with a zone)
      "transaction_id": "tx_42",            the payment's, refund's or dispute's own id
      "amount": "100.00",                   > 0, at most the currency's minor unit
      "currency": "EUR",
      "contract_id": "C-1",                 whom it is for, as sent to the provider with the
      "customer_id": "CUST-1",              payment request
      "invoice_number": "R2026-0001",       optional: the invoice the payer named
      "reverses_transaction_id": "tx_41",   refunds (optional) and disputes (required): the payment
                                            taken back; a dispute won (required): the dispute
      "fee": "15.00"                        optional, disputes only: the chargeback fee
    }

The signature binds the timestamp to the body, so an old request cannot be re-sent with a fresh
timestamp; within the tolerance, the provider event id catches a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Literal, Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from services.payments.providers import (
    Notification,
    Reference,
    Transaction,
    WebhookRefused,
    check_fresh,
    forged,
    invalid,
)
from shared.events import Amount, Currency, Identifier, PaymentKind, PaymentReceived, PaymentStatus

SIGNATURE_PREFIX = "sha256="
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")

WebhookType = Literal["payment.pending", "payment.succeeded", "payment.failed", "charge.refunded", "charge.disputed",
                      "charge.dispute_won"]

# Exact decimals travel as strings: JSON numbers are floats to most parsers, and floats are refused.
PositiveAmount = Annotated[
    Amount, Field(gt=0), WithJsonSchema({"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["100.00"]})
]

KIND_AND_STATUS: dict[str, tuple[PaymentKind, PaymentStatus]] = {
    "payment.pending": (PaymentKind.PAYMENT, PaymentStatus.PENDING),
    "payment.succeeded": (PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED),
    "payment.failed": (PaymentKind.PAYMENT, PaymentStatus.FAILED),
    "charge.refunded": (PaymentKind.REFUND, PaymentStatus.SUCCEEDED),
    "charge.disputed": (PaymentKind.CHARGEBACK, PaymentStatus.SUCCEEDED),
    "charge.dispute_won": (PaymentKind.CHARGEBACK_REVERSAL, PaymentStatus.SUCCEEDED),
}
# The types that name the transaction they take back (or, for a dispute won, the dispute), required or not.
_REVERSING = {"charge.refunded": False, "charge.disputed": True, "charge.dispute_won": True}


class ProviderWebhook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier = Field(description="The provider's event id; each is accepted once.")
    type: WebhookType
    created_at: AwareDatetime
    transaction_id: Identifier
    amount: PositiveAmount
    currency: Currency
    contract_id: Identifier
    customer_id: Identifier
    invoice_number: Identifier | None = None
    reverses_transaction_id: Identifier | None = None
    fee: PositiveAmount | None = None

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> ProviderWebhook:
        if _REVERSING.get(self.type) and self.reverses_transaction_id is None:
            what = "disputed payment" if self.type == "charge.disputed" else "dispute it reverses"
            raise ValueError(f"a {self.type} names the {what} in reverses_transaction_id")
        if self.reverses_transaction_id is not None and self.type not in _REVERSING:
            raise ValueError(f"a {self.type} does not reverse a transaction")
        if self.fee is not None and self.type != "charge.disputed":
            raise ValueError("only a charge.disputed carries a fee")
        return self


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The Webhook-Signature header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
           tolerance_s: float) -> None:
    """Refuse a request that is unsigned, signed with another secret or body, or sent too long ago."""
    if not timestamp or not signature:
        raise WebhookRefused(401, "unsigned", "the Webhook-Timestamp and Webhook-Signature headers are required")
    if not _UNIX_SECONDS.match(timestamp):
        raise WebhookRefused(400, "bad_timestamp", "Webhook-Timestamp must be unix seconds")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.strip().encode()):
        raise forged()
    check_fresh(int(timestamp), now=now, tolerance_s=tolerance_s)


def parse(body: bytes) -> ProviderWebhook:
    try:
        return ProviderWebhook.model_validate_json(body)
    except ValidationError as error:
        raise invalid(error) from None


def notification(webhook: ProviderWebhook) -> Notification:
    """The webhook as a notification: the payer named the contract, so there is nothing to look up."""
    kind, status = KIND_AND_STATUS[webhook.type]
    try:
        transaction = Transaction(
            payment_id=webhook.transaction_id, kind=kind, status=status, occurred_at=webhook.created_at,
            amount=webhook.amount, currency=webhook.currency,
            reference=Reference(contract_id=webhook.contract_id, customer_id=webhook.customer_id,
                                invoice_number=webhook.invoice_number),
            reverses_payment_id=webhook.reverses_transaction_id, fee=webhook.fee)
    except ValidationError as error:
        raise invalid(error) from None
    return Notification(provider_event_id=webhook.id, change=transaction)


def normalize(provider: str, webhook: ProviderWebhook) -> PaymentReceived:
    """The payments.received event of a webhook; the same provider event always gives the same event id."""
    transaction = notification(webhook).change
    assert isinstance(transaction, Transaction)
    return transaction.event(provider, webhook.id, webhook.contract_id, webhook.customer_id)


class GenericScheme:
    """Webhook-Timestamp and Webhook-Signature headers over the generic body."""

    duplicate_status = 409

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]:
        verify(secret, headers.get("webhook-timestamp"), headers.get("webhook-signature"), body, now=now,
               tolerance_s=tolerance_s)
        return [notification(parse(body))]
