"""Adyen's standard notifications: HMAC-signed items and the event codes billing uses. Pure, no I/O.

A request carries `notificationItems`, each `{"NotificationRequestItem": {...}}`. Every item is
signed on its own: `additionalData.hmacSignature` is the base64 HMAC-SHA256, keyed with the
endpoint's HMAC key (hex, as the Customer Area shows it), of

    pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success

(absent fields as empty strings). One item that does not verify refuses the whole request, which
Adyen then retries. The answer to an accepted request is the body `[accepted]`; Adyen retries
anything else. There is no timestamp header: a replayed request is recognised by its items'
keys (below) and records nothing twice.

Event codes (amounts in `amount.value`, minor units; `success` is "true" or "false"):

    AUTHORISATION        success true: the payment (pspReference) is paid; false: it failed
                         (billing uses automatic capture, so an authorisation is the collection)
    REFUND               success true: a refund (pspReference) of the payment in originalReference
    CHARGEBACK           a chargeback: pspReference is the dispute's, originalReference the payment's
    CHARGEBACK_REVERSED  the dispute (pspReference) was won: its chargeback is reversed
    SECOND_CHARGEBACK    the issuer disputes again after a reversal: a chargeback once more
    anything else        acknowledged, not used (REFUND_FAILED, REPORT_AVAILABLE, ...)

An item's key is `<eventCode>:<pspReference>:<success>`: Adyen sends no event id, and those three
identify an event (a refused AUTHORISATION and a later successful one differ in `success`).

Whose it is: `additionalData` `metadata.contract_id`, `metadata.customer_id` and
`metadata.invoice_number` (the payment request's metadata, which Adyen returns), else
`merchantReference` as the invoice number (billing sends the invoice number as the reference);
modifications and disputes carry the payment's merchantReference too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from services.payments.providers import (
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

SIGNED_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference", "value",
                 "currency", "eventCode", "success")

ACCEPTED = "[accepted]"


class AdyenAmount(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: int
    currency: str


class NotificationRequestItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # Adyen adds fields (paymentMethod, reason, operations)

    pspReference: str
    originalReference: str | None = None
    merchantAccountCode: str
    merchantReference: str | None = None
    amount: AdyenAmount
    eventCode: str
    eventDate: AwareDatetime
    success: str
    additionalData: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.eventCode}:{self.pspReference}:{self.success}"


class Item(BaseModel):
    NotificationRequestItem: NotificationRequestItem


class AdyenNotification(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    live: str | None = None
    notificationItems: list[Item] = Field(min_length=1)


def signing_string(item: Mapping[str, Any]) -> str:
    amount = item.get("amount") or {}
    values = {**item, "value": amount.get("value", ""), "currency": amount.get("currency", "")}
    return ":".join(str(values.get(name) if values.get(name) is not None else "") for name in SIGNED_FIELDS)


def signing_key(hmac_key_hex: str) -> bytes:
    try:
        key = binascii.unhexlify(hmac_key_hex)
    except binascii.Error:
        key = b""
    if not key:
        raise ValueError("an Adyen HMAC key is hex, as the Customer Area shows it")
    return key


def signature(hmac_key_hex: str, item: Mapping[str, Any]) -> str:
    digest = hmac.new(signing_key(hmac_key_hex), signing_string(item).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(hmac_key_hex: str, item: Mapping[str, Any]) -> None:
    given = (item.get("additionalData") or {}).get("hmacSignature")
    if not isinstance(given, str) or not given:
        raise unsigned(f"additionalData.hmacSignature of item {item.get('pspReference')}")
    if not hmac.compare_digest(signature(hmac_key_hex, item).encode(), given.encode()):
        raise forged()


def _reference(item: NotificationRequestItem) -> Reference:
    data = item.additionalData
    return Reference.of(contract_id=data.get("metadata.contract_id") or None,
                        customer_id=data.get("metadata.customer_id") or data.get("shopperReference") or None,
                        invoice_number=data.get("metadata.invoice_number") or item.merchantReference or None)


def notification(item: NotificationRequestItem) -> Notification:
    succeeded = item.success == "true"
    code = item.eventCode
    common = dict(occurred_at=item.eventDate, currency=item.amount.currency, reference=_reference(item),
                  amount=from_minor_units(item.amount.value, item.amount.currency))
    if code == "AUTHORISATION":
        change = Transaction(payment_id=item.pspReference, kind=PaymentKind.PAYMENT,
                             status=PaymentStatus.SUCCEEDED if succeeded else PaymentStatus.FAILED, **common)
    elif code == "REFUND" and not succeeded:
        return Notification(provider_event_id=item.key, ignored_because="a refund that did not succeed moved no money")
    elif code in ("REFUND", "CHARGEBACK", "SECOND_CHARGEBACK"):
        if not item.originalReference:
            raise unusable(f"{code} {item.pspReference} names no originalReference")
        # A second chargeback (after the first was reversed) is a chargeback of its own under the dispute's
        # reference, so that it is not taken for a repeat of the first.
        payment_id = f"{item.pspReference}:2" if code == "SECOND_CHARGEBACK" else item.pspReference
        change = Transaction(payment_id=payment_id,
                             kind=PaymentKind.REFUND if code == "REFUND" else PaymentKind.CHARGEBACK,
                             status=PaymentStatus.SUCCEEDED, reverses_payment_id=item.originalReference, **common)
    elif code == "CHARGEBACK_REVERSED":
        change = Transaction(payment_id=item.pspReference, kind=PaymentKind.CHARGEBACK_REVERSAL,
                             status=PaymentStatus.SUCCEEDED, reverses_payment_id=item.pspReference, **common)
    else:
        return Notification(provider_event_id=item.key, ignored_because=f"{code} is not used")
    return Notification(provider_event_id=item.key, change=change)


class AdyenScheme:
    duplicate_status = 200

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]:
        try:
            parsed = AdyenNotification.model_validate_json(body)
        except ValidationError as error:
            raise invalid(error) from None
        raw_items = _raw_items(body)
        for raw in raw_items:
            verify(secret, raw)
        try:
            return [notification(item.NotificationRequestItem) for item in parsed.notificationItems]
        except ValidationError as error:
            raise invalid(error) from None


def _raw_items(body: bytes) -> list[Mapping[str, Any]]:
    """The items as sent, so the signature is computed over the values exactly as Adyen wrote them."""
    return [item["NotificationRequestItem"] for item in json.loads(body)["notificationItems"]]
