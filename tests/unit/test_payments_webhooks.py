"""The webhook bridge's pure rules: signature, timestamp tolerance, the payload shape and its event."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.payments.webhooks import WebhookRefused, normalize, parse, sign, verify
from shared.events import InvalidMessage, PaymentKind, PaymentReceived, PaymentStatus, derive_id, parse_event

SECRET = "whsec-test"
NOW = 1_795_000_000.0


def body(**overrides) -> bytes:
    payload = {
        "id": "evt_1", "type": "payment.succeeded", "created_at": "2026-11-20T10:00:00Z",
        "transaction_id": "tx_1", "amount": "100.00", "currency": "EUR", "contract_id": "C-1",
        "customer_id": "CUST-1", "invoice_number": "R2026-0001", **overrides,
    }
    return json.dumps({key: value for key, value in payload.items() if value is not None}).encode()


def refusal(call) -> tuple[int, str, str]:
    with pytest.raises(WebhookRefused) as refused:
        call()
    return refused.value.status, refused.value.code, refused.value.message


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    raw = body()
    expected = hmac.new(SECRET.encode(), b"1795000000." + raw, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1795000000", raw) == f"sha256={expected}"


def test_a_signed_fresh_request_passes():
    raw = body()
    verify(SECRET, "1795000000", sign(SECRET, "1795000000", raw), raw, now=NOW + 299, tolerance_s=300)
    verify(SECRET, "1795000000", sign(SECRET, "1795000000", raw), raw, now=NOW - 299, tolerance_s=300)


def test_forged_requests_are_refused_with_401():
    raw = body()
    signature = sign(SECRET, "1795000000", raw)
    forged_body = body(amount="1000.00")
    assert refusal(lambda: verify(SECRET, "1795000000", signature, forged_body, now=NOW, tolerance_s=300))[:2] == (
        401, "bad_signature")
    # Re-stamping a captured request breaks its signature: the timestamp is signed too.
    assert refusal(lambda: verify(SECRET, "1795000100", signature, raw, now=NOW, tolerance_s=300))[:2] == (
        401, "bad_signature")
    assert refusal(lambda: verify("other-secret", "1795000000", signature, raw, now=NOW, tolerance_s=300))[:2] == (
        401, "bad_signature")
    assert refusal(lambda: verify(SECRET, "1795000000", "sha256=ü", raw, now=NOW, tolerance_s=300))[:2] == (
        401, "bad_signature")


def test_unsigned_requests_are_refused_with_401():
    raw = body()
    assert refusal(lambda: verify(SECRET, None, sign(SECRET, "1", raw), raw, now=NOW, tolerance_s=300))[:2] == (
        401, "unsigned")
    assert refusal(lambda: verify(SECRET, "1795000000", "", raw, now=NOW, tolerance_s=300))[:2] == (401, "unsigned")


def test_an_expired_request_is_refused_even_when_signed_correctly():
    raw = body()
    status, code, message = refusal(
        lambda: verify(SECRET, "1795000000", sign(SECRET, "1795000000", raw), raw, now=NOW + 301, tolerance_s=300))
    assert (status, code) == (401, "expired")
    assert message == "the request's timestamp is 301s old; at most 300s either way are accepted"
    status, code, message = refusal(
        lambda: verify(SECRET, "1795000000", sign(SECRET, "1795000000", raw), raw, now=NOW - 400, tolerance_s=300))
    assert (status, code, message[:40]) == (401, "expired", "the request's timestamp is 400s in the f")


@pytest.mark.parametrize("timestamp", ["soon", "1.5", "-1", "１２３", "1" * 13])
def test_a_timestamp_that_is_not_unix_seconds_is_a_bad_request(timestamp):
    raw = body()
    assert refusal(lambda: verify(SECRET, timestamp, sign(SECRET, timestamp, raw), raw, now=NOW,
                                  tolerance_s=300))[:2] == (400, "bad_timestamp")


def test_a_payment_becomes_its_event_with_an_id_derived_from_the_provider_event():
    event = normalize("acme-pay", parse(body()))
    assert event.event_id == derive_id("acme-pay:evt_1", "payments.received")
    assert (event.kind, event.status, event.payment_id, event.amount, event.invoice_number, event.provider) == (
        PaymentKind.PAYMENT, PaymentStatus.SUCCEEDED, "tx_1", Decimal("100.00"), "R2026-0001", "acme-pay")
    assert event.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert (event.contract_id, event.customer_id, event.key) == ("C-1", "CUST-1", "C-1")


@pytest.mark.parametrize(("kind", "expected"), [
    ("payment.pending", (PaymentKind.PAYMENT, PaymentStatus.PENDING)),
    ("payment.failed", (PaymentKind.PAYMENT, PaymentStatus.FAILED)),
    ("charge.refunded", (PaymentKind.REFUND, PaymentStatus.SUCCEEDED)),
])
def test_types_map_to_kind_and_status(kind, expected):
    event = normalize("acme-pay", parse(body(type=kind)))
    assert (event.kind, event.status) == expected


def test_a_dispute_is_a_chargeback_of_the_payment_it_names_with_its_fee():
    event = normalize("acme-pay", parse(body(type="charge.disputed", transaction_id="dp_1",
                                             reverses_transaction_id="tx_1", fee="15.00", invoice_number=None)))
    assert (event.kind, event.payment_id, event.reverses_payment_id, event.fee) == (
        PaymentKind.CHARGEBACK, "dp_1", "tx_1", Decimal("15.00"))


def test_a_body_that_is_not_json_is_a_bad_request():
    assert refusal(lambda: parse(b"amount=100"))[:2] == (400, "not_json")
    assert refusal(lambda: parse(b"\xff\xfe"))[:2] == (400, "not_json")
    assert refusal(lambda: parse(b""))[:2] == (400, "not_json")


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"amount": "-5.00"}, "amount: Input should be greater than 0"),
    ({"amount": "0"}, "amount: Input should be greater than 0"),
    ({"amount": 100.5}, "amounts must be given as str, int or Decimal, not float"),
    ({"amount": "NaN"}, "not a finite number"),
    ({"currency": "XYZ"}, "unsupported currency 'XYZ'"),
    ({"created_at": "2026-11-20T10:00:00"}, "created_at: Input should have timezone info"),
    ({"type": "payment.refunded"}, "type: Input should be"),
    ({"contract_id": None}, "contract_id: Field required"),
    ({"surprise": "field"}, "surprise: Extra inputs are not permitted"),
    ({"contract_id": "C 1; DROP TABLE"}, "contract_id: String should match pattern"),
    ({"type": "charge.disputed"}, "names the disputed payment"),
    ({"reverses_transaction_id": "tx_0"}, "a payment.succeeded does not reverse a transaction"),
    ({"type": "charge.refunded", "fee": "1.00"}, "only a charge.disputed carries a fee"),
])
def test_json_that_is_not_a_valid_webhook_is_unprocessable(overrides, reason):
    status, code, message = refusal(lambda: parse(body(**overrides)))
    assert (status, code) == (422, "invalid")
    assert reason in message


def test_amounts_finer_than_the_currency_are_unprocessable():
    status, code, message = refusal(lambda: normalize("acme-pay", parse(body(amount="10.001"))))
    assert (status, code) == (422, "invalid")
    assert "amount 10.001 has more decimals than EUR allows (2)" in message
    status, _, message = refusal(lambda: normalize("acme-pay", parse(body(
        type="charge.disputed", reverses_transaction_id="tx_0", fee="0.005"))))
    assert status == 422 and "fee 0.005 has more decimals than EUR allows" in message
    assert normalize("acme-pay", parse(body(amount="1000", currency="JPY"))).amount == Decimal("1000")


def test_payments_received_v2_adds_the_chargeback_reversal_and_v1_messages_stay_readable():
    v1 = json.dumps({"schema_version": 1, "event_id": "00000000-0000-0000-0000-000000000001",
                     "occurred_at": "2026-11-20T10:00:00Z", "contract_id": "C-1", "payment_id": "tx_1",
                     "kind": "chargeback", "provider": "psp", "customer_id": "CUST-1", "currency": "EUR",
                     "amount": "10.00"}).encode()
    assert parse_event(PaymentReceived, v1).kind is PaymentKind.CHARGEBACK
    reversal = json.loads(v1) | {"kind": "chargeback_reversal", "reverses_payment_id": "dp_1"}
    with pytest.raises(InvalidMessage, match="part of schema_version 2 on"):
        parse_event(PaymentReceived, json.dumps(reversal).encode())
    assert parse_event(PaymentReceived, json.dumps(reversal | {"schema_version": 2}).encode()).kind is (
        PaymentKind.CHARGEBACK_REVERSAL)
    with pytest.raises(InvalidMessage, match="names the chargeback it undoes"):
        parse_event(PaymentReceived, json.dumps(reversal | {"schema_version": 2, "reverses_payment_id": None}).encode())
