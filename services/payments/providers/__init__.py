"""What a provider's webhook tells, in the providers' own formats, mapped to one vocabulary. Pure, no I/O.

Each provider module (`generic`, `standard`, `stripe`, `adyen`, `gocardless`) verifies its provider's
signature scheme over the raw request and maps the provider's event payloads to `Notification`s:
one per provider event, each with the provider's event id (the key a redelivery is recognised
by) and what it changes: a `Transaction` (money in or out), a `MandateChange`, or nothing (an
event type billing does not use, acknowledged so the provider stops sending it).

A transaction names whom it is for only as far as the provider's payload does (`Reference`);
the bridge finds the contract from it (services.payments.handlers.accept_notifications).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Mapping, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from services.payments.domain import MandateStatus
from shared.events import Amount, Currency, Identifier, PaymentKind, PaymentReceived, PaymentStatus, derive_id
from shared.money import MoneyError, exponent


class WebhookRefused(Exception):
    """A request the bridge turns away, with the HTTP status and a reason the provider can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unsigned(what: str) -> WebhookRefused:
    return WebhookRefused(401, "unsigned", f"the {what} header is required")


def forged() -> WebhookRefused:
    return WebhookRefused(401, "bad_signature", "the signature does not match this body and timestamp")


def check_fresh(sent_at: int, *, now: float, tolerance_s: float) -> None:
    """Refuse a request signed too long ago (a replay of a captured one) or too far ahead."""
    skew = now - sent_at
    if abs(skew) > tolerance_s:
        when = f"{skew:.0f}s old" if skew > 0 else f"{-skew:.0f}s in the future"
        raise WebhookRefused(401, "expired", f"the request's timestamp is {when}; at most {tolerance_s:.0f}s "
                                             "either way are accepted")


def invalid(error: ValidationError) -> WebhookRefused:
    """A body that is not what the provider documents: 400 if it is not JSON at all, else 422."""
    problems = error.errors(include_url=False)
    if any(problem["type"] == "json_invalid" for problem in problems):
        return WebhookRefused(400, "not_json", "the body is not a JSON object")
    return WebhookRefused(422, "invalid", "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in problems[:10]))


def unusable(message: str) -> WebhookRefused:
    return WebhookRefused(422, "invalid", message)


def from_minor_units(value: int, currency: str) -> Decimal:
    """An amount a provider gives in the currency's minor units (cents, yen, fils), exactly.

    Stripe, Adyen and GoCardless use the ISO 4217 exponent for every currency billed here (Stripe's
    one exception, ISK as two decimals, is not among them), so 1000 EUR cents are 10.00 and 1000
    JPY are 1000.
    """
    try:
        return Decimal(value).scaleb(-exponent(currency)).quantize(Decimal(1).scaleb(-exponent(currency)))
    except MoneyError as error:
        raise unusable(str(error)) from None


class Reference(BaseModel):
    """Whom a transaction is for, as far as the provider's payload says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract_id: Identifier | None = None
    customer_id: Identifier | None = None
    invoice_number: Identifier | None = None
    # A direct-debit mandate: the customer whose payment account it is.
    mandate_id: Identifier | None = None

    @classmethod
    def of(cls, **given: Any) -> Reference:
        """From what a provider carries (metadata anyone may have typed): a value that is no identifier
        billing could know is left out, so the money is matched otherwise, or held, never refused."""
        kept = {}
        for name, value in given.items():
            try:
                cls.model_validate({name: value})
            except ValidationError:
                continue
            kept[name] = value
        return cls(**kept)


class Transaction(BaseModel):
    """Money a provider moved (or failed to), before the bridge knows whose contract it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: Identifier
    kind: PaymentKind
    status: PaymentStatus
    occurred_at: AwareDatetime
    amount: Annotated[Amount, Field(gt=0)]
    currency: Currency
    reference: Reference = Reference()
    # The payment a refund or chargeback takes back; the chargeback a reversal undoes.
    reverses_payment_id: Identifier | None = None
    fee: Annotated[Amount, Field(gt=0)] | None = None

    def event(self, provider: str, provider_event_id: str, contract_id: str, customer_id: str) -> PaymentReceived:
        """The payments.received of this transaction; the same provider event always gives the same event id."""
        try:
            return PaymentReceived(
                event_id=received_event_id(provider, provider_event_id), occurred_at=self.occurred_at,
                contract_id=contract_id, payment_id=self.payment_id, kind=self.kind, status=self.status,
                provider=provider, customer_id=customer_id, currency=self.currency, amount=self.amount,
                invoice_number=self.reference.invoice_number, reverses_payment_id=self.reverses_payment_id,
                fee=self.fee)
        except ValidationError as error:
            raise invalid(error) from None


def received_event_id(provider: str, provider_event_id: str) -> uuid.UUID:
    return derive_id(f"{provider}:{provider_event_id}", "payments.received")


class MandateChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mandate_id: Identifier
    status: MandateStatus
    occurred_at: datetime


class Notification(BaseModel):
    """One provider event of a request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider_event_id: Annotated[str, Field(min_length=1, max_length=64)]
    change: Transaction | MandateChange | None = None
    # Why an event changes nothing (a type billing does not use), for the answer and the log.
    ignored_because: str | None = None


class Scheme(Protocol):
    """A provider's webhook format: verify the request as the provider signs it, then read its events."""

    # How a redelivery of an event that was already recorded is answered. Providers retry anything
    # but a 2xx (Stripe for 3 days, Adyen and GoCardless for days too), so for them it is a 2xx; the
    # generic format keeps its documented 409.
    duplicate_status: int

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]: ...
