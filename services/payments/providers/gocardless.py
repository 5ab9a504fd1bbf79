"""GoCardless (SEPA direct debit) webhooks: the signature, the batch, the events billing uses. Pure, no I/O.

Signature: `Webhook-Signature: <hex HMAC-SHA256 of the raw body>` keyed with the webhook endpoint's
secret. There is no timestamp: a replayed request is recognised by its events' ids and records
nothing twice. A request carries a batch, `{"events": [...]}`, each event with its `id`,
`created_at`, `resource_type`, `action` and `links`.

GoCardless' events carry no amounts: they say what happened to a resource, which is read from
GoCardless' API (`GET /payments/{id}`, `GET /refunds/{id}`: amount in minor units, currency,
metadata, links) by the bridge before it maps the event (services.payments.providers.gocardless_api).

    payments  confirmed             the payment (PM...) is collected            payment, succeeded
              failed                it was not                                  payment, failed
              charged_back          the payer's bank took it back               chargeback of the payment
              late_failure          the bank returned it after confirmation     chargeback of the payment
              chargeback_cancelled  the bank cancelled that chargeback          chargeback reversal
    refunds   paid                  a refund (RF...) of links.payment went out  refund
    mandates  active / cancelled / failed / expired: the status of the customer's payment account
              whose provider mandate id is links.mandate
    anything else is acknowledged and not used (payments paid_out, created, submitted, ...)

Whose it is: the payment's (or refund's) `metadata` `contract_id`, `invoice_number`, `customer_id`
(GoCardless allows three keys), else its mandate: the customer of the payment account with that
mandate id. A refund names its payment, whose contract it takes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from services.payments.domain import MandateStatus
from services.payments.providers import (
    MandateChange,
    Notification,
    Reference,
    Transaction,
    forged,
    from_minor_units,
    invalid,
    unsigned,
    unusable,
)
from shared.events import PaymentKind, PaymentStatus

PAYMENT_ACTIONS: dict[str, tuple[PaymentKind, PaymentStatus]] = {
    "confirmed": (PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED),
    "failed": (PaymentKind.PAYMENT, PaymentStatus.FAILED),
    "charged_back": (PaymentKind.CHARGEBACK, PaymentStatus.SUCCEEDED),
    # The bank returned a payment after it was confirmed: the money goes back like a chargeback.
    "late_failure": (PaymentKind.CHARGEBACK, PaymentStatus.SUCCEEDED),
    "chargeback_cancelled": (PaymentKind.CHARGEBACK_REVERSAL, PaymentStatus.SUCCEEDED),
}
MANDATE_ACTIONS = {status.value: status for status in MandateStatus}


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, header: str | None, body: bytes) -> None:
    if not header:
        raise unsigned("Webhook-Signature")
    if not hmac.compare_digest(signature(secret, body).encode(), header.strip().encode()):
        raise forged()


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # details, metadata, resource_metadata, source...

    id: str = Field(min_length=1, max_length=64)
    created_at: AwareDatetime
    resource_type: str
    action: str
    links: dict[str, str] = Field(default_factory=dict)


class Batch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    events: list[Event] = Field(min_length=1)


def parse(body: bytes) -> list[Event]:
    try:
        return list(Batch.model_validate_json(body).events)
    except ValidationError as error:
        raise invalid(error) from None


def resource_needed(event: Event) -> tuple[str, str] | None:
    """The API resource (`payments` or `refunds`, id) an event must be read with, if it moves money."""
    if event.resource_type == "payments" and event.action in PAYMENT_ACTIONS:
        return "payments", _link(event, "payment")
    if event.resource_type == "refunds" and event.action == "paid":
        return "refunds", _link(event, "refund")
    return None


def _link(event: Event, name: str) -> str:
    if not event.links.get(name):
        raise unusable(f"event {event.id} ({event.resource_type} {event.action}) has no links.{name}")
    return event.links[name]


def _reference(resource: Mapping[str, Any], payment: Mapping[str, Any] | None = None) -> Reference:
    metadata = resource.get("metadata") or {}
    links = (payment or resource).get("links") or {}
    return Reference.of(contract_id=metadata.get("contract_id") or None,
                        customer_id=metadata.get("customer_id") or None,
                        invoice_number=metadata.get("invoice_number") or None, mandate_id=links.get("mandate") or None)


def notification(event: Event, resource: Mapping[str, Any] | None) -> Notification:
    """The event, with the resource `resource_needed` named as the API returned it (None if it named none)."""
    try:
        if event.resource_type == "mandates":
            status = MANDATE_ACTIONS.get(event.action)
            if status is None:
                return Notification(provider_event_id=event.id, ignored_because=f"mandates {event.action} is not used")
            return Notification(provider_event_id=event.id, change=MandateChange(
                mandate_id=_link(event, "mandate"), status=status, occurred_at=event.created_at))
        if resource_needed(event) is None:
            return Notification(provider_event_id=event.id,
                                ignored_because=f"{event.resource_type} {event.action} is not used")
        assert resource is not None
        amount = resource.get("amount")
        currency = str(resource.get("currency", ""))
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise unusable(f"{event.resource_type} {resource.get('id')}: amount is not an integer of minor units")
        common = dict(occurred_at=event.created_at, currency=currency, amount=from_minor_units(amount, currency),
                      reference=_reference(resource))
        if event.resource_type == "refunds":
            change = Transaction(payment_id=resource["id"], kind=PaymentKind.REFUND, status=PaymentStatus.SUCCEEDED,
                                 reverses_payment_id=(resource.get("links") or {}).get("payment"), **common)
        else:
            kind, status = PAYMENT_ACTIONS[event.action]
            # A chargeback and its reversal are of the payment itself: the payment id, with its own kind.
            change = Transaction(payment_id=resource["id"], kind=kind, status=status,
                                 reverses_payment_id=None if kind is PaymentKind.PAYMENT else resource["id"], **common)
    except ValidationError as error:
        raise invalid(error) from None
    except KeyError as missing:
        raise unusable(f"the {event.resource_type} resource has no {missing}") from None
    return Notification(provider_event_id=event.id, change=change)
