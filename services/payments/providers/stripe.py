"""Stripe's webhooks: its signature scheme and the events billing uses. Pure, no I/O.

Signature: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]` over `<t>.<raw body>`,
keyed with the endpoint's signing secret (`whsec_...`, used as it is, not decoded). Several v1
signatures come while a secret is rolled; one matching is enough. Other schemes (v0) are
ignored. A request whose t is more than the tolerance (300 s, Stripe's own default) from now is
refused as a replay.

Events (`event.id` is the key a redelivery is recognised by; amounts are integers in the
currency's minor units, currencies lower case):

    payment_intent.succeeded       the PaymentIntent's amount_received is paid   payment, succeeded
    payment_intent.payment_failed  its amount was not collected                  payment, failed
    refund.created / refund.updated a Refund with status succeeded               refund of its payment_intent
    charge.refunded                each succeeded Refund listed in charge.refunds (older API versions
                                   list them; the refund's own id keeps it from counting twice with
                                   refund.created)
    charge.dispute.created         a Dispute that took the funds (not an inquiry: status warning_*):
                                   a chargeback of its payment_intent, with Stripe's dispute fee
                                   (its balance transactions' fee) passed on
    charge.dispute.closed          status won: a chargeback reversal of the dispute; lost: nothing
                                   more (the chargeback stands)

The payment is the PaymentIntent (pi_...), refunds and disputes name it in `payment_intent`.
Whose it is: the PaymentIntent's (and so the charge's) `metadata`: `contract_id`, `customer_id`,
`invoice_number`, as billing sets them when it asks Stripe to collect. A refund or dispute usually
carries no metadata of ours; the bridge then takes the contract of the payment it takes back.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from services.payments.providers import (
    Notification,
    Reference,
    Transaction,
    WebhookRefused,
    check_fresh,
    forged,
    from_minor_units,
    invalid,
    unsigned,
    unusable,
)
from shared.events import PaymentKind, PaymentStatus

SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, header: str | None, body: bytes, *, now: float, tolerance_s: float) -> None:
    if not header:
        raise unsigned("Stripe-Signature")
    timestamps, signatures = [], []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamps.append(value)
        elif name == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise WebhookRefused(400, "bad_timestamp", "Stripe-Signature must carry one t=<unix seconds>")
    if not signatures:
        raise unsigned(f"Stripe-Signature's {SCHEME} signature")
    expected = signature(secret, int(timestamps[0]), body)
    if not any(hmac.compare_digest(expected.encode(), given.encode()) for given in signatures):
        raise forged()
    check_fresh(int(timestamps[0]), now=now, tolerance_s=tolerance_s)


class StripeEvent(BaseModel):
    """The envelope of every Stripe event; the object is read per type below."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # Stripe adds fields without notice

    id: str
    type: str
    created: int
    data: dict[str, Any]


def _reference(metadata: Mapping[str, Any] | None) -> Reference:
    metadata = metadata or {}
    return Reference.of(**{name: metadata.get(name) or None for name in ("contract_id", "customer_id", "invoice_number")})


def _at(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def _money(obj: Mapping[str, Any], field: str = "amount") -> tuple[Any, str]:
    currency = str(obj.get("currency", "")).upper()
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise unusable(f"{obj.get('object', 'object')} {obj.get('id')}: {field} is not an integer of minor units")
    return from_minor_units(value, currency), currency


def _payment_intent(event: StripeEvent, obj: dict, status: PaymentStatus) -> Transaction:
    amount, currency = _money(obj, "amount_received" if status is PaymentStatus.SUCCEEDED else "amount")
    return Transaction(payment_id=obj["id"], kind=PaymentKind.PAYMENT, status=status, occurred_at=_at(event.created),
                       amount=amount, currency=currency, reference=_reference(obj.get("metadata")))


def _refund(event: StripeEvent, refund: dict) -> Transaction | None:
    if refund.get("status") != "succeeded":
        return None  # pending, failed or canceled: no money went back (yet); refund.updated says when it does
    amount, currency = _money(refund)
    return Transaction(payment_id=refund["id"], kind=PaymentKind.REFUND, status=PaymentStatus.SUCCEEDED,
                       occurred_at=_at(refund.get("created") or event.created), amount=amount, currency=currency,
                       reference=_reference(refund.get("metadata")), reverses_payment_id=refund.get("payment_intent"))


def _dispute_fee(dispute: dict, currency: str):
    fees = sum(transaction.get("fee", 0) for transaction in dispute.get("balance_transactions") or []
               if transaction.get("currency", "").upper() == currency)
    return from_minor_units(fees, currency) if fees > 0 else None


def _dispute(event: StripeEvent, dispute: dict) -> Transaction | None:
    status = dispute.get("status", "")
    amount, currency = _money(dispute)
    common = dict(status=PaymentStatus.SUCCEEDED, occurred_at=_at(event.created), amount=amount, currency=currency,
                  reference=_reference(dispute.get("metadata")))
    if event.type == "charge.dispute.created":
        if status.startswith("warning_"):
            return None  # an inquiry: no funds were withdrawn
        return Transaction(payment_id=dispute["id"], kind=PaymentKind.CHARGEBACK,
                           reverses_payment_id=dispute.get("payment_intent"),
                           fee=_dispute_fee(dispute, currency), **common)
    if status == "won":
        return Transaction(payment_id=dispute["id"], kind=PaymentKind.CHARGEBACK_REVERSAL,
                           reverses_payment_id=dispute["id"], **common)
    return None  # lost (the chargeback stands) or an inquiry closed


def notifications(event: StripeEvent) -> list[Notification]:
    obj = event.data.get("object")
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise unusable(f"event {event.id} has no data.object")
    if event.type == "payment_intent.succeeded":
        changes = [_payment_intent(event, obj, PaymentStatus.SUCCEEDED)]
    elif event.type == "payment_intent.payment_failed":
        changes = [_payment_intent(event, obj, PaymentStatus.FAILED)]
    elif event.type in ("refund.created", "refund.updated"):
        changes = [_refund(event, obj)]
    elif event.type == "charge.refunded":
        listed = (obj.get("refunds") or {}).get("data") or []
        # The charge's metadata is the PaymentIntent's: whose the refunds are, when they carry none.
        refunds = [_refund(event, {"payment_intent": obj.get("payment_intent"), **refund,
                                   "metadata": refund.get("metadata") or obj.get("metadata")}) for refund in listed]
        changes = [refund for refund in refunds if refund is not None]
        if not changes:
            return [Notification(provider_event_id=event.id, ignored_because="the charge lists no succeeded refund; "
                                 "refund.created carries each refund")]
        # One event id per refund: each is recorded (and recognised again) on its own.
        return [Notification(provider_event_id=event.id if len(changes) == 1 else f"{event.id}:{change.payment_id}",
                             change=change) for change in changes]
    elif event.type in ("charge.dispute.created", "charge.dispute.closed"):
        changes = [_dispute(event, obj)]
    else:
        return [Notification(provider_event_id=event.id, ignored_because=f"{event.type} is not used")]
    [change] = changes
    if change is None:
        return [Notification(provider_event_id=event.id,
                             ignored_because=f"{event.type} with status {obj.get('status')} moves no money")]
    return [Notification(provider_event_id=event.id, change=change)]


class StripeScheme:
    duplicate_status = 200

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]:
        verify(secret, headers.get("stripe-signature"), body, now=now, tolerance_s=tolerance_s)
        try:
            event = StripeEvent.model_validate_json(body)
            return notifications(event)
        except ValidationError as error:
            raise invalid(error) from None
        except KeyError as missing:
            raise unusable(f"the event's object has no {missing}") from None
