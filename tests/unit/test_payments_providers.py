"""The providers' webhook schemes and event mappings, signed with the providers' own libraries.

Payloads are shaped like each provider's documented events (trimmed to the fields that matter and
a few that do not, which must be ignored).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from datetime import UTC, datetime
from decimal import Decimal

import gocardless_pro.webhooks
import pytest
import standardwebhooks
import stripe
from Adyen import util as adyen_util

from services.payments.domain import MandateStatus
from services.payments.providers import (
    MandateChange,
    Transaction,
    WebhookRefused,
    adyen,
    from_minor_units,
    gocardless,
    standard,
)
from services.payments.providers import stripe as stripe_scheme
from services.payments.providers.adyen import AdyenScheme
from services.payments.providers.gocardless_api import GoCardlessScheme
from services.payments.providers.standard import StandardScheme
from services.payments.providers.stripe import StripeScheme
from shared.events import PaymentKind, PaymentStatus

NOW = 1_795_000_000


def read(scheme, secret: str, headers: dict, body: bytes, now: float = NOW):
    return asyncio.run(scheme.read(secret, {k.lower(): v for k, v in headers.items()}, body, now=now,
                                   tolerance_s=300))


def refusal(call) -> tuple[int, str]:
    with pytest.raises(WebhookRefused) as refused:
        call()
    return refused.value.status, refused.value.code


def only_transaction(notifications) -> Transaction:
    [notification] = notifications
    assert isinstance(notification.change, Transaction), notification
    return notification.change


# --- amounts in minor units ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "currency", "amount"), [
    (11900, "EUR", Decimal("119.00")), (1, "EUR", Decimal("0.01")), (1000, "JPY", Decimal("1000")),
    (5120, "KWD", Decimal("5.120")), (99, "HUF", Decimal("0.99")), (0, "USD", Decimal("0.00")),
])
def test_minor_units_convert_exactly_by_the_currencys_exponent(value, currency, amount):
    converted = from_minor_units(value, currency)
    assert converted == amount and str(converted) == str(amount)


def test_an_unsupported_currency_is_unprocessable():
    assert refusal(lambda: from_minor_units(100, "XYZ")) == (422, "invalid")


# --- Stripe --------------------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_test_5f3b1c"


def stripe_event(event_type: str, obj: dict, event_id: str = "evt_1") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "api_version": "2024-06-20", "created": NOW - 5,
                       "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                       "type": event_type, "data": {"object": obj}}).encode()


def payment_intent(**overrides) -> dict:
    return {"id": "pi_3Q", "object": "payment_intent", "amount": 11900, "amount_received": 11900,
            "currency": "eur", "customer": "cus_R1", "latest_charge": "ch_3Q", "status": "succeeded",
            "metadata": {"contract_id": "C-1", "customer_id": "CUST-1", "invoice_number": "R2026-0001"},
            **overrides}


def stripe_headers(body: bytes, timestamp: int = NOW, secret: str = STRIPE_SECRET) -> dict:
    return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                                                  timestamp=timestamp)}


def test_stripe_signatures_made_by_stripes_library_verify_and_stripes_library_accepts_ours():
    body = stripe_event("payment_intent.succeeded", payment_intent())
    header = stripe_headers(body)["Stripe-Signature"]
    stripe_scheme.verify(STRIPE_SECRET, header, body, now=NOW, tolerance_s=300)
    ours = f"t={NOW},v1={stripe_scheme.signature(STRIPE_SECRET, NOW, body)}"
    assert stripe.WebhookSignature.verify_header(body, ours, STRIPE_SECRET) is True


def test_stripe_accepts_any_of_several_v1_signatures_while_a_secret_is_rolled():
    body = stripe_event("payment_intent.succeeded", payment_intent())
    old = stripe_scheme.signature("whsec_old", NOW, body)
    new = stripe_scheme.signature(STRIPE_SECRET, NOW, body)
    stripe_scheme.verify(STRIPE_SECRET, f"t={NOW},v1={old},v1={new},v0=ignored", body, now=NOW, tolerance_s=300)


@pytest.mark.parametrize(("header", "expected"), [
    (None, (401, "unsigned")),
    ("", (401, "unsigned")),
    (f"t={NOW}", (401, "unsigned")),  # no v1
    (f"t={NOW},v0=abc", (401, "unsigned")),
    ("v1=abc", (400, "bad_timestamp")),
    ("t=soon,v1=abc", (400, "bad_timestamp")),
    (f"t={NOW},t={NOW},v1=abc", (400, "bad_timestamp")),
    (f"t={NOW},v1=00ff", (401, "bad_signature")),
])
def test_stripe_refuses_unsigned_malformed_and_forged_headers(header, expected):
    body = stripe_event("payment_intent.succeeded", payment_intent())
    assert refusal(lambda: stripe_scheme.verify(STRIPE_SECRET, header, body, now=NOW, tolerance_s=300)) == expected


def test_stripe_refuses_another_secret_a_tampered_body_and_a_stale_or_future_timestamp():
    body = stripe_event("payment_intent.succeeded", payment_intent())
    tampered = stripe_event("payment_intent.succeeded", payment_intent(amount_received=1))
    assert refusal(lambda: read(StripeScheme(), STRIPE_SECRET, stripe_headers(body, secret="whsec_other"), body)) == (
        401, "bad_signature")
    assert refusal(lambda: read(StripeScheme(), STRIPE_SECRET, stripe_headers(body), tampered)) == (
        401, "bad_signature")
    assert refusal(lambda: read(StripeScheme(), STRIPE_SECRET, stripe_headers(body, NOW - 301), body)) == (
        401, "expired")
    assert refusal(lambda: read(StripeScheme(), STRIPE_SECRET, stripe_headers(body, NOW + 301), body)) == (
        401, "expired")
    read(StripeScheme(), STRIPE_SECRET, stripe_headers(body, NOW - 299), body)


def stripe_read(event_type: str, obj: dict, event_id: str = "evt_1"):
    body = stripe_event(event_type, obj, event_id)
    return read(StripeScheme(), STRIPE_SECRET, stripe_headers(body), body)


def test_a_succeeded_payment_intent_is_a_payment_of_its_amount_received_for_its_metadata():
    [notification] = stripe_read("payment_intent.succeeded", payment_intent(amount=20000, amount_received=11900))
    assert notification.provider_event_id == "evt_1"
    transaction = notification.change
    assert (transaction.payment_id, transaction.kind, transaction.status, transaction.amount, transaction.currency) == (
        "pi_3Q", PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED, Decimal("119.00"), "EUR")
    assert (transaction.reference.contract_id, transaction.reference.customer_id,
            transaction.reference.invoice_number) == ("C-1", "CUST-1", "R2026-0001")
    assert transaction.occurred_at == datetime.fromtimestamp(NOW - 5, UTC)
    event = transaction.event("stripe", "evt_1", "C-1", "CUST-1")
    assert (event.schema_version, event.amount, event.invoice_number, event.provider) == (
        2, Decimal("119.00"), "R2026-0001", "stripe")


def test_a_zero_decimal_currency_is_taken_as_whole_units():
    transaction = only_transaction(stripe_read("payment_intent.succeeded",
                                               payment_intent(currency="jpy", amount_received=5000)))
    assert (transaction.amount, transaction.currency) == (Decimal("5000"), "JPY")


def test_a_failed_payment_intent_is_a_failed_payment_of_its_amount():
    transaction = only_transaction(stripe_read("payment_intent.payment_failed",
                                               payment_intent(amount_received=0, status="requires_payment_method")))
    assert (transaction.kind, transaction.status, transaction.amount) == (
        PaymentKind.PAYMENT, PaymentStatus.FAILED, Decimal("119.00"))


def test_metadata_that_is_no_identifier_billing_could_know_is_left_out_not_refused():
    transaction = only_transaction(stripe_read("payment_intent.succeeded", payment_intent(
        metadata={"contract_id": "C 1; DROP TABLE", "customer_id": "CUST-1", "invoice_number": "x" * 65})))
    assert transaction.reference.model_dump() == {"contract_id": None, "customer_id": "CUST-1",
                                                  "invoice_number": None, "mandate_id": None}


def test_a_payment_without_metadata_names_nobody_and_the_bridge_looks_for_whose_it_is():
    transaction = only_transaction(stripe_read("payment_intent.succeeded", payment_intent(metadata={})))
    assert transaction.reference.contract_id is None and transaction.reference.invoice_number is None


def refund(**overrides) -> dict:
    return {"id": "re_1", "object": "refund", "amount": 2500, "currency": "eur", "charge": "ch_3Q",
            "payment_intent": "pi_3Q", "status": "succeeded", "created": NOW - 10, "metadata": {}, **overrides}


def test_a_succeeded_refund_takes_back_its_payment_intent():
    transaction = only_transaction(stripe_read("refund.created", refund()))
    assert (transaction.payment_id, transaction.kind, transaction.amount, transaction.reverses_payment_id) == (
        "re_1", PaymentKind.REFUND, Decimal("25.00"), "pi_3Q")
    assert transaction.reference.contract_id is None  # the bridge takes the payment's contract


def test_a_pending_refund_moves_no_money_until_it_succeeds():
    [pending] = stripe_read("refund.created", refund(status="pending"))
    assert pending.change is None and "moves no money" in pending.ignored_because
    assert only_transaction(stripe_read("refund.updated", refund(), "evt_2")).payment_id == "re_1"


def test_charge_refunded_carries_each_listed_refund_with_the_charges_metadata():
    charge = {"id": "ch_3Q", "object": "charge", "amount": 11900, "amount_refunded": 4000, "currency": "eur",
              "payment_intent": "pi_3Q", "metadata": {"contract_id": "C-1", "customer_id": "CUST-1"},
              "refunds": {"object": "list", "data": [refund(), refund(id="re_2", amount=1500),
                                                     refund(id="re_3", status="failed")]}}
    notifications = stripe_read("charge.refunded", charge, "evt_9")
    assert [(n.provider_event_id, n.change.payment_id, n.change.amount, n.change.reference.contract_id)
            for n in notifications] == [("evt_9:re_1", "re_1", Decimal("25.00"), "C-1"),
                                        ("evt_9:re_2", "re_2", Decimal("15.00"), "C-1")]
    [ignored] = stripe_read("charge.refunded", {**charge, "refunds": None})
    assert ignored.change is None and "refund.created" in ignored.ignored_because


def dispute(**overrides) -> dict:
    return {"id": "dp_1", "object": "dispute", "amount": 11900, "currency": "eur", "charge": "ch_3Q",
            "payment_intent": "pi_3Q", "reason": "fraudulent", "status": "needs_response", "metadata": {},
            "balance_transactions": [{"id": "txn_1", "amount": -13400, "currency": "eur", "fee": 1500}],
            **overrides}


def test_a_dispute_is_a_chargeback_of_its_payment_intent_with_stripes_fee():
    transaction = only_transaction(stripe_read("charge.dispute.created", dispute()))
    assert (transaction.payment_id, transaction.kind, transaction.amount, transaction.fee,
            transaction.reverses_payment_id) == ("dp_1", PaymentKind.CHARGEBACK, Decimal("119.00"),
                                                 Decimal("15.00"), "pi_3Q")
    assert only_transaction(stripe_read("charge.dispute.created", dispute(balance_transactions=[]))).fee is None


def test_an_inquiry_moves_no_money():
    [inquiry] = stripe_read("charge.dispute.created", dispute(status="warning_needs_response"))
    assert inquiry.change is None


def test_a_dispute_won_reverses_its_chargeback_and_a_lost_one_changes_nothing():
    won = only_transaction(stripe_read("charge.dispute.closed", dispute(status="won")))
    assert (won.payment_id, won.kind, won.reverses_payment_id, won.amount, won.fee) == (
        "dp_1", PaymentKind.CHARGEBACK_REVERSAL, "dp_1", Decimal("119.00"), None)
    [lost] = stripe_read("charge.dispute.closed", dispute(status="lost"))
    assert lost.change is None


def test_event_types_billing_does_not_use_are_acknowledged_not_refused():
    [ignored] = stripe_read("customer.created", {"id": "cus_1", "object": "customer"})
    assert ignored.change is None and ignored.ignored_because == "customer.created is not used"


@pytest.mark.parametrize(("body", "expected"), [
    (b"not json", (400, "not_json")),
    (json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode(), (422, "invalid")),
    (stripe_event("payment_intent.succeeded", payment_intent(amount_received="119.00")), (422, "invalid")),
    (stripe_event("payment_intent.succeeded", payment_intent(currency="xyz")), (422, "invalid")),
    (stripe_event("payment_intent.succeeded", {"object": "payment_intent"}), (422, "invalid")),
])
def test_stripe_bodies_that_are_not_stripe_events_are_refused(body, expected):
    assert refusal(lambda: read(StripeScheme(), STRIPE_SECRET, stripe_headers(body), body)) == expected


# --- Standard Webhooks ---------------------------------------------------------------------------------

STANDARD_SECRET = "whsec_" + base64.b64encode(b"a-standard-webhooks-secret-of-32b").decode()


def standard_body(**data) -> bytes:
    return json.dumps({"type": "payment.succeeded", "timestamp": "2026-11-20T10:00:00Z", "data": {
        "transaction_id": "tx_1", "amount": "100.00", "currency": "EUR", "contract_id": "C-1",
        "customer_id": "CUST-1", **data}}).encode()


def standard_headers(body: bytes, message_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at: int = NOW,
                     secret: str = STANDARD_SECRET) -> dict:
    signature = standardwebhooks.Webhook(secret).sign(message_id, datetime.fromtimestamp(at, UTC), body.decode())
    return {"webhook-id": message_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_standard_webhooks_signed_by_the_reference_library_are_read_and_ours_verify_there():
    body = standard_body()
    [notification] = read(StandardScheme(), STANDARD_SECRET, standard_headers(body), body)
    transaction = notification.change
    assert notification.provider_event_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert (transaction.payment_id, transaction.amount, transaction.reference.contract_id) == (
        "tx_1", Decimal("100.00"), "C-1")
    now = int(datetime.now(UTC).timestamp())
    ours = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
            "webhook-signature": standard.signature(STANDARD_SECRET, "msg_1", str(now), body)}
    assert standardwebhooks.Webhook(STANDARD_SECRET).verify(body, ours)["data"]["transaction_id"] == "tx_1"


def test_standard_webhooks_take_any_v1_signature_of_the_list():
    body = standard_body()
    headers = standard_headers(body)
    other = standard_headers(body, secret="whsec_" + base64.b64encode(b"old-secret").decode())
    headers["webhook-signature"] = f"v1a,ignored {other['webhook-signature']} {headers['webhook-signature']}"
    read(StandardScheme(), STANDARD_SECRET, headers, body)


def test_standard_webhooks_refuse_forged_stale_unsigned_and_re_identified_requests():
    body = standard_body()
    headers = standard_headers(body)
    forged = standard_headers(body, secret="whsec_" + base64.b64encode(b"not-the-secret").decode())
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, forged, body)) == (401, "bad_signature")
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, standard_headers(body, at=NOW - 301), body)) == (
        401, "expired")
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, {**headers, "webhook-id": "msg_other"}, body)) == (
        401, "bad_signature")  # the id is signed: a replay cannot pass as a new message
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, standard_body_headers_without_signature(body),
                                body)) == (401, "unsigned")
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, headers, standard_body(amount="1.00"))) == (
        401, "bad_signature")


def standard_body_headers_without_signature(body: bytes) -> dict:
    headers = standard_headers(body)
    del headers["webhook-signature"]
    return headers


def test_standard_webhooks_bodies_follow_the_generic_fields():
    body = standard_body(amount="-1.00")
    assert refusal(lambda: read(StandardScheme(), STANDARD_SECRET, standard_headers(body), body)) == (
        422, "invalid")
    body = json.dumps({"type": "charge.dispute_won", "timestamp": "2026-11-20T10:00:00Z", "data": {
        "transaction_id": "dp_1", "amount": "100.00", "currency": "EUR", "contract_id": "C-1",
        "customer_id": "CUST-1", "reverses_transaction_id": "dp_1"}}).encode()
    transaction = only_transaction(read(StandardScheme(), STANDARD_SECRET, standard_headers(body), body))
    assert (transaction.kind, transaction.reverses_payment_id) == (PaymentKind.CHARGEBACK_REVERSAL, "dp_1")


# --- Adyen ---------------------------------------------------------------------------------------------

ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def adyen_item(event_code: str = "AUTHORISATION", success: str = "true", **overrides) -> dict:
    item = {"additionalData": {"metadata.contract_id": "C-1", "metadata.customer_id": "CUST-1",
                               "paymentMethodVariant": "visa"},
            "amount": {"currency": "EUR", "value": 11900}, "eventCode": event_code,
            "eventDate": "2026-11-20T10:00:00+01:00", "merchantAccountCode": "BillingGmbH",
            "merchantReference": "R2026-0001", "paymentMethod": "visa", "pspReference": "QFQTPCQ8HXSKGK82",
            "reason": "", "success": success, "operations": ["CANCEL", "CAPTURE", "REFUND"], **overrides}
    return item


def adyen_body(*items: dict, key: str = ADYEN_KEY) -> bytes:
    signed = []
    for item in items:
        item = copy.deepcopy(item)
        item["additionalData"]["hmacSignature"] = adyen_util.generate_notification_sig(item, key).decode()
        signed.append({"NotificationRequestItem": item})
    return json.dumps({"live": "false", "notificationItems": signed}).encode()


def adyen_read(*items: dict):
    return read(AdyenScheme(), ADYEN_KEY, {}, adyen_body(*items))


def test_adyen_items_signed_by_adyens_library_are_read_and_ours_match_adyens():
    body = adyen_body(adyen_item())
    [item] = json.loads(body)["notificationItems"]
    assert adyen_util.is_valid_hmac_notification(item["NotificationRequestItem"], ADYEN_KEY)
    assert adyen.signature(ADYEN_KEY, item["NotificationRequestItem"]) == (
        item["NotificationRequestItem"]["additionalData"]["hmacSignature"])
    [notification] = read(AdyenScheme(), ADYEN_KEY, {}, body)
    transaction = notification.change
    assert notification.provider_event_id == "AUTHORISATION:QFQTPCQ8HXSKGK82:true"
    assert (transaction.payment_id, transaction.kind, transaction.status, transaction.amount) == (
        "QFQTPCQ8HXSKGK82", PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED, Decimal("119.00"))
    assert (transaction.reference.contract_id, transaction.reference.invoice_number) == ("C-1", "R2026-0001")
    assert transaction.occurred_at == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_adyen_refuses_a_request_with_any_forged_or_unsigned_item():
    good, other = adyen_item(), adyen_item(pspReference="ABC")
    body = json.loads(adyen_body(good, other))
    body["notificationItems"][1]["NotificationRequestItem"]["amount"]["value"] = 1
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, json.dumps(body).encode())) == (401, "bad_signature")
    del body["notificationItems"][1]["NotificationRequestItem"]["additionalData"]["hmacSignature"]
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, json.dumps(body).encode())) == (401, "unsigned")
    forged = adyen_body(good, key="00" * 32)
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, forged)) == (401, "bad_signature")


def test_a_refused_authorisation_is_a_failed_payment_with_its_own_key():
    [notification] = adyen_read(adyen_item(success="false", reason="Refused"))
    assert notification.provider_event_id == "AUTHORISATION:QFQTPCQ8HXSKGK82:false"
    assert notification.change.status is PaymentStatus.FAILED


def test_adyen_refunds_chargebacks_and_their_reversals_name_what_they_take_back():
    refund, chargeback, reversed_ = adyen_read(
        adyen_item("REFUND", pspReference="RF1", originalReference="QFQTPCQ8HXSKGK82",
                   amount={"currency": "EUR", "value": 2500}),
        adyen_item("CHARGEBACK", pspReference="DP1", originalReference="QFQTPCQ8HXSKGK82"),
        adyen_item("CHARGEBACK_REVERSED", pspReference="DP1", originalReference="QFQTPCQ8HXSKGK82"))
    assert [(n.change.kind, n.change.payment_id, n.change.reverses_payment_id, n.change.amount)
            for n in (refund, chargeback, reversed_)] == [
        (PaymentKind.REFUND, "RF1", "QFQTPCQ8HXSKGK82", Decimal("25.00")),
        (PaymentKind.CHARGEBACK, "DP1", "QFQTPCQ8HXSKGK82", Decimal("119.00")),
        (PaymentKind.CHARGEBACK_REVERSAL, "DP1", "DP1", Decimal("119.00"))]


def test_a_second_chargeback_after_a_reversal_is_a_chargeback_again_not_a_repeat():
    [second] = adyen_read(adyen_item("SECOND_CHARGEBACK", pspReference="DP1", originalReference="QFQTPCQ8HXSKGK82"))
    assert (second.provider_event_id, second.change.kind, second.change.payment_id,
            second.change.reverses_payment_id) == ("SECOND_CHARGEBACK:DP1:true", PaymentKind.CHARGEBACK, "DP1:2",
                                                   "QFQTPCQ8HXSKGK82")


def test_adyen_events_that_move_no_money_are_acknowledged():
    failed_refund, report = adyen_read(adyen_item("REFUND", success="false", pspReference="RF2",
                                                  originalReference="X"),
                                       adyen_item("REPORT_AVAILABLE", pspReference="R1"))
    assert failed_refund.change is None and report.change is None


def test_adyen_merchant_reference_is_the_invoice_when_no_metadata_says_more():
    transaction = only_transaction(adyen_read(adyen_item(additionalData={})))
    assert (transaction.reference.contract_id, transaction.reference.invoice_number) == (None, "R2026-0001")


def test_adyen_bodies_that_are_not_notifications_are_refused():
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, b'["accepted"]')) == (422, "invalid")
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, b"{")) == (400, "not_json")
    assert refusal(lambda: read(AdyenScheme(), ADYEN_KEY, {}, json.dumps({"notificationItems": []}).encode())) == (
        422, "invalid")


# --- GoCardless ----------------------------------------------------------------------------------------

GOCARDLESS_SECRET = "gc-webhook-endpoint-secret"


def gc_event(event_id: str, resource_type: str, action: str, **links) -> dict:
    return {"id": event_id, "created_at": "2026-11-20T10:00:00.000Z", "resource_type": resource_type,
            "action": action, "links": links, "metadata": {},
            "details": {"origin": "bank", "cause": "payment_confirmed", "scheme": "sepa_core"}}


def gc_batch(*events: dict) -> bytes:
    return json.dumps({"events": list(events), "meta": {"webhook_id": "WB123"}}).encode()


class FakeApi:
    def __init__(self, resources: dict) -> None:
        self.resources = resources
        self.read: list[tuple[str, str]] = []

    async def resource(self, resource_type: str, resource_id: str):
        self.read.append((resource_type, resource_id))
        return self.resources[resource_id]


PAYMENT = {"id": "PM01", "amount": 11900, "currency": "EUR", "status": "confirmed", "charge_date": "2026-11-20",
           "metadata": {"invoice_number": "R2026-0001"}, "links": {"mandate": "MD01", "creditor": "CR1"}}


def test_gocardless_signatures_verify_as_gocardless_library_does():
    body = gc_batch(gc_event("EV1", "mandates", "cancelled", mandate="MD01"))
    signature = gocardless.signature(GOCARDLESS_SECRET, body)
    [event] = gocardless_pro.webhooks.parse(body, GOCARDLESS_SECRET, signature)  # the library agrees
    assert event.id == "EV1"
    gocardless.verify(GOCARDLESS_SECRET, signature, body)
    assert refusal(lambda: gocardless.verify(GOCARDLESS_SECRET, signature, body + b" ")) == (401, "bad_signature")
    assert refusal(lambda: gocardless.verify("other", signature, body)) == (401, "bad_signature")
    assert refusal(lambda: gocardless.verify(GOCARDLESS_SECRET, None, body)) == (401, "unsigned")
    with pytest.raises(gocardless_pro.errors.InvalidSignatureError):
        gocardless_pro.webhooks.parse(body, "other", signature)


def gc_read(api: FakeApi, *events: dict):
    body = gc_batch(*events)
    return read(GoCardlessScheme(api), GOCARDLESS_SECRET, {"Webhook-Signature": gocardless.signature(
        GOCARDLESS_SECRET, body)}, body)


def test_a_gocardless_batch_maps_each_event_with_the_resource_read_from_the_api():
    api = FakeApi({"PM01": PAYMENT, "RF01": {"id": "RF01", "amount": 2500, "currency": "EUR", "metadata": {},
                                             "links": {"payment": "PM01"}}})
    confirmed, refund, paid_out, cancelled = gc_read(
        api, gc_event("EV1", "payments", "confirmed", payment="PM01"), gc_event("EV2", "refunds", "paid", refund="RF01"),
        gc_event("EV3", "payments", "paid_out", payment="PM01", payout="PO1"),
        gc_event("EV4", "mandates", "cancelled", mandate="MD01"))
    assert api.read == [("payments", "PM01"), ("refunds", "RF01")]  # paid_out and mandates need no reading
    assert (confirmed.provider_event_id, confirmed.change.kind, confirmed.change.status, confirmed.change.amount,
            confirmed.change.reference.invoice_number, confirmed.change.reference.mandate_id) == (
        "EV1", PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED, Decimal("119.00"), "R2026-0001", "MD01")
    assert (refund.change.kind, refund.change.payment_id, refund.change.reverses_payment_id, refund.change.amount) == (
        PaymentKind.REFUND, "RF01", "PM01", Decimal("25.00"))
    assert paid_out.change is None and paid_out.ignored_because == "payments paid_out is not used"
    assert cancelled.change == MandateChange(mandate_id="MD01", status=MandateStatus.CANCELLED,
                                             occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC))


@pytest.mark.parametrize(("action", "kind", "status", "reverses"), [
    ("failed", PaymentKind.PAYMENT, PaymentStatus.FAILED, None),
    ("charged_back", PaymentKind.CHARGEBACK, PaymentStatus.SUCCEEDED, "PM01"),
    ("late_failure", PaymentKind.CHARGEBACK, PaymentStatus.SUCCEEDED, "PM01"),
    ("chargeback_cancelled", PaymentKind.CHARGEBACK_REVERSAL, PaymentStatus.SUCCEEDED, "PM01"),
])
def test_gocardless_payment_actions(action, kind, status, reverses):
    [notification] = gc_read(FakeApi({"PM01": PAYMENT}), gc_event("EV1", "payments", action, payment="PM01"))
    assert (notification.change.kind, notification.change.status, notification.change.payment_id,
            notification.change.reverses_payment_id) == (kind, status, "PM01", reverses)


@pytest.mark.parametrize(("action", "status"), [("active", MandateStatus.ACTIVE), ("failed", MandateStatus.FAILED),
                                                 ("expired", MandateStatus.EXPIRED)])
def test_gocardless_mandate_actions(action, status):
    [notification] = gc_read(FakeApi({}), gc_event("EV1", "mandates", action, mandate="MD01"))
    assert notification.change.status is status


def test_gocardless_events_that_are_not_what_gocardless_documents_are_refused():
    assert refusal(lambda: gc_read(FakeApi({}), gc_event("EV1", "payments", "confirmed"))) == (422, "invalid")
    assert refusal(lambda: gc_read(FakeApi({"PM01": {**PAYMENT, "amount": "119.00"}}),
                                   gc_event("EV1", "payments", "confirmed", payment="PM01"))) == (422, "invalid")
    body = json.dumps({"events": []}).encode()
    assert refusal(lambda: read(GoCardlessScheme(FakeApi({})), GOCARDLESS_SECRET,
                                {"Webhook-Signature": gocardless.signature(GOCARDLESS_SECRET, body)}, body)) == (
        422, "invalid")



# --- settings ------------------------------------------------------------------------------------------


def test_provider_settings_refuse_malformed_or_empty_secrets_without_printing_them(monkeypatch):
    from pydantic import ValidationError

    from services.payments.bridge import configured_schemes
    from services.payments.settings import PaymentsSettings

    for name in ("STRIPE_WEBHOOK_SECRET", "ADYEN_HMAC_KEY", "GOCARDLESS_WEBHOOK_SECRET", "GOCARDLESS_ACCESS_TOKEN"):
        monkeypatch.setenv(f"PAYMENTS_{name}", "")
    assert set(configured_schemes(PaymentsSettings(), None)) == {"demo-psp"}  # empty: not configured, so 404
    monkeypatch.setenv("PAYMENTS_STRIPE_WEBHOOK_SECRET", "whsec_kept_secret")
    monkeypatch.setenv("PAYMENTS_ADYEN_HMAC_KEY", "not-hex")
    with pytest.raises(ValidationError) as refused:
        PaymentsSettings()
    assert "Adyen HMAC key is hex" in str(refused.value) and "kept_secret" not in str(refused.value)
    monkeypatch.setenv("PAYMENTS_ADYEN_HMAC_KEY", ADYEN_KEY)
    monkeypatch.setenv("PAYMENTS_STANDARD_WEBHOOK_SECRETS", json.dumps({"stripe": STANDARD_SECRET}))
    with pytest.raises(ValidationError, match="configured with two webhook schemes"):
        PaymentsSettings()
    monkeypatch.setenv("PAYMENTS_STANDARD_WEBHOOK_SECRETS", json.dumps({"tool": "whsec_!!"}))
    with pytest.raises(ValidationError, match="whsec_ followed by base64"):
        PaymentsSettings()
    monkeypatch.setenv("PAYMENTS_STANDARD_WEBHOOK_SECRETS", json.dumps({"tool": STANDARD_SECRET}))
    monkeypatch.setenv("PAYMENTS_GOCARDLESS_WEBHOOK_SECRET", "gc-secret")
    with pytest.raises(ValidationError, match="GoCardless needs both"):
        PaymentsSettings()
    monkeypatch.delenv("PAYMENTS_GOCARDLESS_WEBHOOK_SECRET")
    settings = PaymentsSettings()
    assert set(configured_schemes(settings, None)) == {"demo-psp", "tool", "stripe", "adyen"}
    assert "kept_secret" not in repr(settings)


def test_secrets_can_be_read_from_files_named_after_the_variables(tmp_path):
    from services.payments.settings import PaymentsSettings

    (tmp_path / "PAYMENTS_STRIPE_WEBHOOK_SECRET").write_text("whsec_from_a_file")
    settings = PaymentsSettings(_secrets_dir=tmp_path)
    assert settings.stripe_webhook_secret.get_secret_value() == "whsec_from_a_file"


def test_standard_webhooks_secrets_may_leave_out_the_base64_padding():
    padded = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
    assert standard.signing_key(padded.rstrip("=")) == standard.signing_key(padded) == b"sixteen byte key"
