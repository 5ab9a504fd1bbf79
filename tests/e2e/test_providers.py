"""Each payment provider end to end: its real webhook format, signed with its own library, sent over HTTP
to the bridge (a uvicorn process), followed through the broker into payments' open items and
settlement's ledger of a contract whose invoices the pipeline produced.

Every provider goes through the same story on one contract with two invoices, A (100.00 net, 119.00
gross) and B (50.00 net, 59.50 gross), German VAT 19 %:

    partial pay of A 50.00 · a failed payment · A paid in full (69.00) · B paid in full (59.50)
    · 19.00 of A's payment refunded · a dispute of the 50.00, lost · a dispute of B's payment, won
    · a refund sent before the payment it refunds (out of order), then the payment
    · a replay, a forged and a stale request, each publishing nothing

and after each step payments' open items, its credit and the settlement ledger are asserted to the
cent (the ledger balance is what the customer owes, so it equals open items minus credit). At the
end of the session `billing reconcile` must find nothing differing for these contracts.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import standardwebhooks
import stripe
import uvicorn
from Adyen import util as adyen_util
from fastapi import FastAPI, HTTPException
from sqlalchemy import func, select

from ops.observe import wait_until
from ops.stack import free_port
from services.invoicing.tables import documents
from services.payments.providers import gocardless
from services.payments.tables import messaging as payments_messaging
from services.payments.tables import open_items, payment_accounts, payments, webhook_receipts
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts, ledger_entries
from services.settlement.tables import messaging as settlement_messaging
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (
    DEADLINE_S,
    given_contract,
    new_contract_id,
    publish_usage,
    request_billing_run,
    serving_bridge,
    usage,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

STRIPE_SECRET = "whsec_e2e_stripe_signing_secret"
ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
GOCARDLESS_SECRET = "e2e-gocardless-endpoint-secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"e2e-standard-webhooks-secret-32b").decode()
STANDARD_PROVIDER = "ledger-tool"

A_GROSS, B_GROSS = Decimal("119.00"), Decimal("59.50")


# --- GoCardless' API, faked: the bridge reads payments and refunds from it ------------------------------


class FakeGoCardless:
    """GoCardless' GET /payments/{id} and /refunds/{id}, served from what the test put there."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, dict]] = {"payments": {}, "refunds": {}}
        self.app = FastAPI()

        @self.app.get("/{resource_type}/{resource_id}")
        def resource(resource_type: str, resource_id: str) -> dict:
            found = self.resources.get(resource_type, {}).get(resource_id)
            if found is None:
                raise HTTPException(404)
            return {resource_type: found}


@pytest.fixture(scope="module")
def gocardless_api() -> Iterator[tuple[FakeGoCardless, str]]:
    fake = FakeGoCardless()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the fake GoCardless API did not start"
        time.sleep(0.05)
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def bridge_url(pipeline, gocardless_api) -> Iterator[str]:
    """The bridge as a uvicorn process, configured for every provider as an operator would."""
    _, api_url = gocardless_api
    with serving_bridge(pipeline.root / "logs" / "providers", {
        "PAYMENTS_WEBHOOK_SECRETS": "{}",
        "PAYMENTS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PAYMENTS_ADYEN_HMAC_KEY": ADYEN_KEY,
        "PAYMENTS_GOCARDLESS_WEBHOOK_SECRET": GOCARDLESS_SECRET,
        "PAYMENTS_GOCARDLESS_ACCESS_TOKEN": "e2e-read-only-token",
        "PAYMENTS_GOCARDLESS_API_URL": api_url,
        "PAYMENTS_STANDARD_WEBHOOK_SECRETS": json.dumps({STANDARD_PROVIDER: STANDARD_SECRET}),
    }) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20, headers=as_role()) as opened:
        yield opened


# --- the requests each provider sends ------------------------------------------------------------------


@dataclass
class Request:
    provider: str
    body: bytes
    headers: dict[str, str]


def cents(amount: Decimal) -> int:
    return int(amount * 100)


class Stripe:
    provider = "stripe"
    dispute_fee = Decimal("15.00")  # Stripe's dispute fee, passed on to the customer

    def __init__(self, contract: str, customer: str) -> None:
        self.contract, self.customer = contract, customer

    def _event(self, event_type: str, obj: dict, *, sent_at: int | None = None, secret: str = STRIPE_SECRET
               ) -> Request:
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "api_version": "2024-06-20",
                           "created": int(time.time()), "livemode": False, "type": event_type,
                           "data": {"object": obj}}).encode()
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=sent_at)
        return Request(self.provider, body, {"Stripe-Signature": header, "Content-Type": "application/json"})

    def pay(self, payment_id: str, amount: Decimal, invoice: str, *, succeeded: bool = True, **signing) -> Request:
        intent = {"id": payment_id, "object": "payment_intent", "amount": cents(amount), "currency": "eur",
                  "amount_received": cents(amount) if succeeded else 0,
                  "status": "succeeded" if succeeded else "requires_payment_method",
                  "metadata": {"contract_id": self.contract, "customer_id": self.customer, "invoice_number": invoice}}
        return self._event("payment_intent.succeeded" if succeeded else "payment_intent.payment_failed", intent,
                           **signing)

    def refund(self, refund_id: str, payment_id: str, amount: Decimal) -> Request:
        return self._event("refund.created", {"id": refund_id, "object": "refund", "amount": cents(amount),
                                              "currency": "eur", "payment_intent": payment_id, "status": "succeeded",
                                              "metadata": {}})

    def _dispute(self, dispute_id: str, payment_id: str, amount: Decimal, status: str) -> dict:
        return {"id": dispute_id, "object": "dispute", "amount": cents(amount), "currency": "eur",
                "payment_intent": payment_id, "status": status, "reason": "fraudulent", "metadata": {},
                "balance_transactions": [{"currency": "eur", "amount": -cents(amount + self.dispute_fee),
                                          "fee": cents(self.dispute_fee)}]}

    def dispute(self, dispute_id: str, payment_id: str, amount: Decimal) -> list[Request]:
        return [self._event("charge.dispute.created", self._dispute(dispute_id, payment_id, amount, "needs_response"))]

    def dispute_closed(self, dispute_id: str, payment_id: str, amount: Decimal, won: bool) -> list[Request]:
        return [self._event("charge.dispute.closed",
                            self._dispute(dispute_id, payment_id, amount, "won" if won else "lost"))]

    def forged(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, secret="whsec_not_the_secret")

    def stale(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, sent_at=int(time.time()) - 301)


class Adyen:
    provider = "adyen"
    dispute_fee = None

    def __init__(self, contract: str, customer: str) -> None:
        self.contract, self.customer = contract, customer
        self.invoice_of: dict[str, str] = {}

    def _items(self, *items: dict, key: str = ADYEN_KEY) -> Request:
        signed = []
        for item in items:
            item = copy.deepcopy(item)
            item["additionalData"]["hmacSignature"] = adyen_util.generate_notification_sig(item, key).decode()
            signed.append({"NotificationRequestItem": item})
        return Request(self.provider, json.dumps({"live": "false", "notificationItems": signed}).encode(),
                       {"Content-Type": "application/json"})

    def _item(self, code: str, psp: str, amount: Decimal, invoice: str, *, success: bool = True,
              original: str | None = None) -> dict:
        item = {"additionalData": {"metadata.contract_id": self.contract, "metadata.customer_id": self.customer},
                "amount": {"currency": "EUR", "value": cents(amount)}, "eventCode": code,
                "eventDate": datetime.now(UTC).isoformat(timespec="seconds"), "merchantAccountCode": "BillingGmbH",
                "merchantReference": invoice, "pspReference": psp, "success": "true" if success else "false",
                "paymentMethod": "visa", "reason": ""}
        if original is not None:
            item["originalReference"] = original
        return item

    def pay(self, payment_id: str, amount: Decimal, invoice: str, *, succeeded: bool = True,
            key: str = ADYEN_KEY) -> Request:
        self.invoice_of[payment_id] = invoice
        return self._items(self._item("AUTHORISATION", payment_id, amount, invoice, success=succeeded), key=key)

    def refund(self, refund_id: str, payment_id: str, amount: Decimal) -> Request:
        # Sent before its payment in the out-of-order step: Adyen's refund carries the payment's
        # merchantReference and metadata, so payments (not the bridge) waits for the payment.
        invoice = self.invoice_of.get(payment_id, "R-unknown")
        return self._items(self._item("REFUND", refund_id, amount, invoice, original=payment_id))

    def dispute(self, dispute_id: str, payment_id: str, amount: Decimal) -> list[Request]:
        return [self._items(self._item("CHARGEBACK", dispute_id, amount, self.invoice_of[payment_id],
                                       original=payment_id))]

    def dispute_closed(self, dispute_id: str, payment_id: str, amount: Decimal, won: bool) -> list[Request]:
        if not won:
            return []  # Adyen sends nothing more when the chargeback stands
        return [self._items(self._item("CHARGEBACK_REVERSED", dispute_id, amount, self.invoice_of[payment_id],
                                       original=payment_id))]

    def forged(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, key="00" * 32)

    stale = None  # Adyen signs no timestamp: an old request is a replay, recognised by its items' keys


class GoCardless:
    provider = "gocardless"
    dispute_fee = None

    def __init__(self, contract: str, customer: str, api: FakeGoCardless, mandate: str) -> None:
        self.contract, self.customer, self.api, self.mandate = contract, customer, api, mandate

    def batch(self, *events: dict, secret: str = GOCARDLESS_SECRET) -> Request:
        body = json.dumps({"events": list(events), "meta": {"webhook_id": f"WB{uuid.uuid4().hex[:10]}"}}).encode()
        return Request(self.provider, body, {"Webhook-Signature": gocardless.signature(secret, body),
                                             "Content-Type": "application/json"})

    def event(self, resource_type: str, action: str, **links: str) -> dict:
        return {"id": f"EV{uuid.uuid4().hex[:12].upper()}", "created_at": datetime.now(UTC).isoformat(),
                "resource_type": resource_type, "action": action, "links": links, "metadata": {},
                "details": {"origin": "gocardless", "cause": action, "scheme": "sepa_core"}}

    def pay(self, payment_id: str, amount: Decimal, invoice: str, *, succeeded: bool = True, **signing) -> Request:
        # Billing's collection names the invoice; whose it is follows from the mandate's account.
        self.api.resources["payments"][payment_id] = {
            "id": payment_id, "amount": cents(amount), "currency": "EUR", "charge_date": "2026-11-25",
            "status": "confirmed" if succeeded else "failed", "metadata": {"invoice_number": invoice},
            "links": {"mandate": self.mandate, "creditor": "CR0001"}}
        return self.batch(self.event("payments", "confirmed" if succeeded else "failed", payment=payment_id),
                          **signing)

    def refund(self, refund_id: str, payment_id: str, amount: Decimal) -> Request:
        self.api.resources["refunds"][refund_id] = {"id": refund_id, "amount": cents(amount), "currency": "EUR",
                                                    "metadata": {}, "links": {"payment": payment_id}}
        return self.batch(self.event("refunds", "paid", refund=refund_id))

    def dispute(self, dispute_id: str, payment_id: str, amount: Decimal) -> list[Request]:
        return [self.batch(self.event("payments", "charged_back", payment=payment_id))]

    def dispute_closed(self, dispute_id: str, payment_id: str, amount: Decimal, won: bool) -> list[Request]:
        return [self.batch(self.event("payments", "chargeback_cancelled", payment=payment_id))] if won else []

    def forged(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, secret="not-the-secret")

    stale = None  # GoCardless signs no timestamp: an old request is a replay, recognised by its event ids


class StandardWebhooks:
    provider = STANDARD_PROVIDER
    dispute_fee = Decimal("5.00")

    def __init__(self, contract: str, customer: str) -> None:
        self.contract, self.customer = contract, customer

    def _send(self, event_type: str, *, sent_at: int | None = None, secret: str = STANDARD_SECRET, **data) -> Request:
        body = json.dumps({"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": {
            "contract_id": self.contract, "customer_id": self.customer, "currency": "EUR",
            **{k: str(v) if isinstance(v, Decimal) else v for k, v in data.items()}}}).encode()
        message_id = f"msg_{uuid.uuid4().hex}"
        at = datetime.fromtimestamp(sent_at if sent_at is not None else int(time.time()), UTC)
        return Request(self.provider, body, {
            "webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": standardwebhooks.Webhook(secret).sign(message_id, at, body.decode()),
            "Content-Type": "application/json"})

    def pay(self, payment_id: str, amount: Decimal, invoice: str, *, succeeded: bool = True, **signing) -> Request:
        return self._send("payment.succeeded" if succeeded else "payment.failed", transaction_id=payment_id,
                          amount=amount, invoice_number=invoice, **signing)

    def refund(self, refund_id: str, payment_id: str, amount: Decimal) -> Request:
        return self._send("charge.refunded", transaction_id=refund_id, amount=amount,
                          reverses_transaction_id=payment_id)

    def dispute(self, dispute_id: str, payment_id: str, amount: Decimal) -> list[Request]:
        return [self._send("charge.disputed", transaction_id=dispute_id, amount=amount,
                           reverses_transaction_id=payment_id, fee=self.dispute_fee)]

    def dispute_closed(self, dispute_id: str, payment_id: str, amount: Decimal, won: bool) -> list[Request]:
        return [self._send("charge.dispute_won", transaction_id=dispute_id, amount=amount,
                           reverses_transaction_id=dispute_id)] if won else []

    def forged(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, secret="whsec_" + base64.b64encode(b"forger").decode())

    def stale(self, payment_id: str, amount: Decimal, invoice: str) -> Request:
        return self.pay(payment_id, amount, invoice, sent_at=int(time.time()) - 301)


# --- what the services hold ----------------------------------------------------------------------------


async def rows(databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def open_amounts(databases, contract: str) -> dict[str, Decimal]:
    """Open amount per invoice number (or, for payments' own items, their type; summed)."""
    found: dict[str, Decimal] = {}
    for row in await rows(databases, "payments", select(open_items).where(open_items.c.contract_id == contract)):
        name = row.invoice_number or row.item_type
        found[name] = found.get(name, Decimal(0)) + row.open_amount
    return found


async def credit(databases, contract: str) -> Decimal:
    [row] = await rows(databases, "payments", select(func.coalesce(func.sum(payments.c.unassigned_amount), 0))
                       .where(payments.c.contract_id == contract))
    return row[0]


async def ledger_balance(databases, contract: str) -> Decimal:
    found = await rows(databases, "settlement", select(contract_accounts.c.balance)
                       .where(contract_accounts.c.contract_id == contract))
    return found[0].balance if found else Decimal(0)


async def applied(databases, event_ids: list[uuid.UUID]) -> None:
    """Both consumers of payments.received applied every one of these events (parked ones once re-driven)."""
    for service, messaging in (("payments", payments_messaging), ("settlement", settlement_messaging)):
        inbox = messaging.inbox
        await wait_until(lambda service=service, inbox=inbox: databases.has_exactly(
                             service, inbox, len(set(event_ids)), inbox.c.consumer == f"{service}.payments.received",
                             inbox.c.event_id.in_(event_ids)),
                         timeout_s=DEADLINE_S, what=f"{service} applying {len(event_ids)} payment event(s)")


async def invoiced(broker, databases, contract: str) -> tuple[str, str]:
    """Invoices A (100.00 net) and B (50.00 net) of the contract, issued through the real pipeline."""
    numbers = []
    for quantity in ("100", "50"):
        before = len(await rows(databases, "settlement", select(settled_items.c.billable_item_id)
                                .where(settled_items.c.contract_id == contract)))
        await publish_usage(broker, usage(contract, "api-calls", quantity, day=3 + len(numbers)))
        await wait_until(lambda expected=before + 1: databases.has_exactly("settlement", settled_items, expected,
                                                       settled_items.c.contract_id == contract),
                         timeout_s=DEADLINE_S, what=f"usage of {contract} in settlement")
        await request_billing_run(broker, contract)
        await wait_until(lambda: databases.has_exactly("invoicing", documents, len(numbers) + 1,
                                                       documents.c.contract_id == contract),
                         timeout_s=DEADLINE_S, what=f"invoice {len(numbers) + 1} of {contract}")
        [document] = await rows(databases, "invoicing", select(documents).where(documents.c.contract_id == contract)
                                .order_by(documents.c.number.desc()).limit(1))
        numbers.append(document.number)
    [a, b] = await rows(databases, "invoicing", select(documents).where(documents.c.contract_id == contract)
                        .order_by(documents.c.number))
    assert (a.gross_total, b.gross_total) == (A_GROSS, B_GROSS), "the invoices' VAT is not 19 %"
    await wait_until(lambda: databases.has_exactly("payments", open_items, 2, open_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="both open items in payments")
    await wait_until(lambda: _balance_is(databases, contract, A_GROSS + B_GROSS), timeout_s=DEADLINE_S,
                     what="both invoices' VAT on the ledger")
    return a.number, b.number


async def _balance_is(databases, contract: str, expected: Decimal) -> bool:
    return await ledger_balance(databases, contract) == expected


def admin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.payments.admin", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


# --- the story, once per provider --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["stripe", "adyen", "gocardless", "standard-webhooks"])
async def test_a_providers_webhooks_pay_refund_and_dispute_invoices_in_any_order_and_nothing_forged_counts(
        provider, bridge_url, gocardless_api, portal_url, client, broker, databases, reconciled_at_the_end):
    contract = new_contract_id(f"provider-{provider}")
    customer = f"CUST-{contract}"
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "1.00"}, customer_id=customer)
    mandate = f"MD{uuid.uuid4().hex[:10].upper()}"
    speaker = {"stripe": lambda: Stripe(contract, customer), "adyen": lambda: Adyen(contract, customer),
               "gocardless": lambda: GoCardless(contract, customer, gocardless_api[0], mandate),
               "standard-webhooks": lambda: StandardWebhooks(contract, customer)}[provider]()
    if provider == "gocardless":
        added = admin("add-account", customer, "--method", "sepa_direct_debit", "--iban", "DE89370400440532013000",
                      "--mandate-reference", f"M-{contract}"[:35], "--mandate-signed-on", "2026-01-02",
                      "--provider", "gocardless", "--token", mandate)
        assert added.returncode == 0, added.stderr
    a, b = await invoiced(broker, databases, contract)
    fee = speaker.dispute_fee or Decimal(0)
    published: list[uuid.UUID] = []

    async def send(request: Request, expect: int = 200) -> httpx.Response:
        response = await client.post(f"{bridge_url}/webhooks/{request.provider}", content=request.body,
                                     headers=request.headers)
        assert response.status_code == expect, response.text
        if expect == 200 and provider != "adyen":
            # A held event is published, under this id, once what it waits for arrives (the step after it).
            published.extend(uuid.UUID(event["event_id"]) for event in response.json()["events"]
                             if event["outcome"] in ("published", "held"))
        return response

    async def books(expected_open: dict[str, Decimal], expected_credit: Decimal = Decimal(0)) -> None:
        """Once both services applied what was published: the open items, credit and ledger, to the cent."""
        if provider == "adyen":  # its answer is [accepted]: take the ids from the receipts
            published[:] = [row.event_id for row in await rows(databases, "payments", select(
                webhook_receipts.c.event_id).where(webhook_receipts.c.provider == "adyen",
                                                   webhook_receipts.c.contract_id == contract))]
        await applied(databases, published)
        assert await open_amounts(databases, contract) == expected_open
        assert await credit(databases, contract) == expected_credit
        owed = sum(expected_open.values(), Decimal(0)) - expected_credit
        assert await ledger_balance(databases, contract) == owed  # the ledger agrees with the open items

    p = f"{provider[:2]}-{uuid.uuid4().hex[:8]}"

    # A partial payment of A, a failed payment, then the rest of A and all of B.
    await send(speaker.pay(f"{p}-P1", Decimal("50.00"), a))
    await books({a: Decimal("69.00"), b: B_GROSS})
    await send(speaker.pay(f"{p}-P2", Decimal("69.00"), a, succeeded=False))
    await books({a: Decimal("69.00"), b: B_GROSS})
    [failed] = await rows(databases, "payments", select(payments.c.status).where(payments.c.payment_id == f"{p}-P2"))
    assert failed.status == "failed"
    full = speaker.pay(f"{p}-P3", Decimal("69.00"), a)
    await send(full)
    await send(speaker.pay(f"{p}-P4", B_GROSS, b))
    await books({a: Decimal("0.00"), b: Decimal("0.00")})

    # The very same request again (a provider's retry, or a replay within the tolerance): recorded
    # before, so it is answered 2xx and publishes nothing.
    outbox = payments_messaging.outbox
    before = await databases.count("payments", select(func.count()).select_from(outbox)
                                   .where(outbox.c.key == contract))
    replayed = await send(full)
    if provider != "adyen":
        assert [event["outcome"] for event in replayed.json()["events"]] == ["duplicate"]
    else:
        assert replayed.text == "[accepted]"
    refused = [await send(speaker.forged(f"{p}-P9", Decimal("999.00"), a), expect=401)]
    if speaker.stale is not None:
        refused.append(await send(speaker.stale(f"{p}-P9", Decimal("999.00"), a), expect=401))
    assert [response.json()["error"] for response in refused] == ["bad_signature", "expired"][:len(refused)]
    assert await databases.count("payments", select(func.count()).select_from(outbox)
                                 .where(outbox.c.key == contract)) == before

    # 19.00 of A's payment refunded: A owes 19.00 again.
    await send(speaker.refund(f"{p}-R1", f"{p}-P3", Decimal("19.00")))
    await books({a: Decimal("19.00"), b: Decimal("0.00")})

    # The 50.00 disputed, and the dispute lost: A owes it again (and the provider's fee, if any).
    for request in speaker.dispute(f"{p}-D1", f"{p}-P1", Decimal("50.00")):
        await send(request)
    for request in speaker.dispute_closed(f"{p}-D1", f"{p}-P1", Decimal("50.00"), won=False):
        await send(request)
    with_fee = {"chargeback_fee": fee} if fee else {}
    await books({a: Decimal("69.00"), b: Decimal("0.00"), **with_fee})

    # B's payment disputed, and the dispute won: B is paid again; the fee of the dispute stays owed.
    for request in speaker.dispute(f"{p}-D2", f"{p}-P4", B_GROSS):
        await send(request)
    fees = {"chargeback_fee": 2 * fee} if fee else {}
    await books({a: Decimal("69.00"), b: B_GROSS, **fees})
    for request in speaker.dispute_closed(f"{p}-D2", f"{p}-P4", B_GROSS, won=True):
        await send(request)
    await books({a: Decimal("69.00"), b: Decimal("0.00"), **fees})

    # Out of order: a refund of a payment arrives before the payment. It waits (in the bridge, when
    # its payload names nobody; in payments, parked, when it does) and is applied once the payment is.
    early = await send(speaker.refund(f"{p}-R2", f"{p}-P5", Decimal("10.00")))
    if provider in ("stripe", "gocardless"):
        assert [event["outcome"] for event in early.json()["events"]] == ["held"]
    await send(speaker.pay(f"{p}-P5", Decimal("69.00"), a))
    await books({a: Decimal("10.00"), b: Decimal("0.00"), **fees})
    [refund] = await rows(databases, "payments", select(payments.c.amount).where(
        payments.c.payment_id == f"{p}-R2", payments.c.kind == "refund"))
    assert refund.amount == Decimal("10.00")

    assert await databases.has_exactly("payments", webhook_receipts, 0, webhook_receipts.c.event_id.in_(published),
                                       webhook_receipts.c.held_transaction.is_not(None))  # nothing left held

    # The ledger's entries, type by type, as the provider's events moved the money.
    entries = await rows(databases, "settlement", select(ledger_entries.c.entry_type, func.sum(ledger_entries.c.amount))
                         .where(ledger_entries.c.contract_id == contract).group_by(ledger_entries.c.entry_type))
    expected = {"Receivable": Decimal("150.00"), "Tax": Decimal("28.50"), "Payment": Decimal("-247.50"),
                "Refund": Decimal("29.00"), "Chargeback": Decimal("109.50"), "ChargebackReversal": -B_GROSS}
    if fee:
        expected["ChargebackFee"] = 2 * fee
    assert dict(entries) == expected

    if provider == "gocardless":
        # The customer cancels the mandate with their bank: their payment account shows it.
        await send(speaker.batch(speaker.event("mandates", "cancelled", mandate=mandate)))
        [account] = await rows(databases, "payments", select(payment_accounts.c.mandate_status)
                               .where(payment_accounts.c.customer_id == customer))
        assert account.mandate_status == "cancelled"
        listed = admin("accounts", customer)
        assert listed.returncode == 0 and "(cancelled)" in listed.stdout, listed.stdout + listed.stderr
        shown = (await client.get(f"{portal_url}/api/customers/{customer}/payment-accounts")).json()
        assert [(a["method"], a["provider"], a["mandate_status"]) for a in shown["items"]] == [
            ("sepa_direct_debit", "gocardless", "cancelled")]
        # A late "active" for it revives nothing.
        await send(speaker.batch(speaker.event("mandates", "active", mandate=mandate)))
        [account] = await rows(databases, "payments", select(payment_accounts.c.mandate_status)
                               .where(payment_accounts.c.customer_id == customer))
        assert account.mandate_status == "cancelled"


async def test_a_payment_that_names_an_invoice_billing_does_not_know_becomes_the_customers_credit(
        bridge_url, client, databases, reconciled_at_the_end):
    """Unmatched money is never an error: with the contract known it is the customer's credit."""
    contract = new_contract_id("provider-unmatched")
    reconciled_at_the_end.add(contract)
    speaker = Stripe(contract, f"CUST-{contract}")
    request = speaker.pay(f"pi_{uuid.uuid4().hex[:12]}", Decimal("42.00"), "R1999-9999")
    response = await client.post(f"{bridge_url}/webhooks/stripe", content=request.body, headers=request.headers)
    assert response.status_code == 200, response.text
    [event] = response.json()["events"]
    assert event["outcome"] == "published"
    await applied(databases, [uuid.UUID(event["event_id"])])
    assert await credit(databases, contract) == Decimal("42.00")
    assert await ledger_balance(databases, contract) == Decimal("-42.00")


async def test_a_refund_and_its_payment_arriving_at_the_same_time_never_miss_each_other(
        bridge_url, client, databases, reconciled_at_the_end):
    """The refund names no contract: whichever request commits first, the other finds it (never both held)."""
    contract = new_contract_id("provider-concurrent")
    reconciled_at_the_end.add(contract)
    speaker = Stripe(contract, f"CUST-{contract}")
    pairs = [(speaker.pay(f"pi_{contract}-{n}", Decimal("20.00"), "R1999-0000"),
              speaker.refund(f"re_{contract}-{n}", f"pi_{contract}-{n}", Decimal("5.00"))) for n in range(6)]

    async def post(request: Request) -> httpx.Response:
        return await client.post(f"{bridge_url}/webhooks/stripe", content=request.body, headers=request.headers)

    answers = await asyncio.gather(*(post(request) for pair in pairs for request in pair))
    assert [answer.status_code for answer in answers] == [200] * 12
    ids = [uuid.UUID(event["event_id"]) for answer in answers for event in answer.json()["events"]]
    await applied(databases, ids)
    assert await databases.has_exactly("payments", webhook_receipts, 0, webhook_receipts.c.held_transaction.is_not(
        None), webhook_receipts.c.provider_event_id.in_([event["provider_event_id"] for answer in answers
                                                        for event in answer.json()["events"]]))
    assert await credit(databases, contract) == Decimal("90.00")  # 6 x (20.00 - 5.00), all of it credit
    assert await ledger_balance(databases, contract) == Decimal("-90.00")


async def test_a_payment_that_names_nobody_billing_knows_is_held_not_refused_until_an_operator_places_it(
        bridge_url, client, databases, reconciled_at_the_end):
    speaker = Stripe("unused", "unused")
    payment_id = f"pi_{uuid.uuid4().hex[:12]}"
    request = speaker._event("payment_intent.succeeded", {
        "id": payment_id, "object": "payment_intent", "amount": 1000, "amount_received": 1000, "currency": "eur",
        "status": "succeeded", "metadata": {}})
    response = await client.post(f"{bridge_url}/webhooks/stripe", content=request.body, headers=request.headers)
    assert response.status_code == 200, response.text
    [event] = response.json()["events"]
    assert event["outcome"] == "held" and "held for an operator" in event["detail"]
    [held] = await rows(databases, "payments", select(webhook_receipts).where(
        webhook_receipts.c.provider == "stripe", webhook_receipts.c.held_transaction["payment_id"].astext == payment_id))
    assert held.waiting_for is None and held.contract_id is None
    # The operator's reconciliation lists it (over all contracts: it is on none) as money not yet booked.
    reconciled = subprocess.run([sys.executable, "-m", "ops.cli", "reconcile"], capture_output=True, text=True,
                                env=os.environ, timeout=120)
    [line] = [line for line in reconciled.stdout.splitlines() if payment_id in line]
    assert line.strip().startswith("HELD stripe event") and "payment" in line and "10.00 EUR names no contract" in line
    assert reconciled.returncode == 1

    contract = new_contract_id("provider-placed")
    reconciled_at_the_end.add(contract)
    placed = admin("place-held", "stripe", event["provider_event_id"], "--contract-id", contract,
                   "--customer-id", f"CUST-{contract}")
    assert placed.returncode == 0, placed.stderr
    await applied(databases, [uuid.UUID(event["event_id"])])
    assert (await credit(databases, contract), await ledger_balance(databases, contract)) == (
        Decimal("10.00"), Decimal("-10.00"))
    again = admin("place-held", "stripe", event["provider_event_id"], "--contract-id", contract,
                  "--customer-id", f"CUST-{contract}")
    assert again.returncode == 2 and "is not held" in again.stderr


async def test_an_unknown_provider_and_an_event_type_billing_does_not_use(bridge_url, client):
    unknown = await client.post(f"{bridge_url}/webhooks/nobody-pay", content=b"{}")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_provider")
    request = Stripe("unused", "unused")._event("customer.created", {"id": "cus_1", "object": "customer"})
    response = await client.post(f"{bridge_url}/webhooks/stripe", content=request.body, headers=request.headers)
    assert response.status_code == 200
    assert [event["outcome"] for event in response.json()["events"]] == ["ignored"]

