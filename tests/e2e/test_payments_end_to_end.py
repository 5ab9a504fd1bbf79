"""Payments end to end: real HTTP requests to the webhook bridge running as a uvicorn process, and
the events they become followed through the real broker into open items, assignments and the ledger.

Invoice amounts are read back from invoicing (it adds VAT), never assumed; everything payments
does with them is hand-computed below.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from ops.observe import read_events, wait_until
from services.invoicing.tables import documents
from services.payments.tables import messaging as payments_messaging
from services.payments.tables import open_items, payment_accounts, payments, webhook_receipts
from services.payments.webhooks import sign
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts, ledger_entries
from services.settlement.tables import messaging as settlement_messaging
from shared import topics
from shared.events import DocumentCreated, DocumentType, PaymentReceived, derive_id
from shared.runtime import publish_event
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

PROVIDER = "test-psp"
SECRET = "test-psp-webhook-secret"


@dataclass
class Bridge:
    url: str
    client: httpx.AsyncClient

    async def post(self, payload: dict | bytes, *, provider: str = PROVIDER, secret: str = SECRET,
                   sent_at: int | None = None, signed: bool = True) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        timestamp = str(sent_at if sent_at is not None else int(time.time()))
        headers = {"content-type": "application/json"}
        if signed:
            headers |= {"webhook-timestamp": timestamp, "webhook-signature": sign(secret, timestamp, body)}
        return await self.client.post(f"{self.url}/webhooks/{provider}", content=body, headers=headers)


@pytest.fixture(scope="module")
def bridge_process(pipeline) -> Iterator[str]:
    """`uvicorn services.payments.bridge:app` on a free port, with the pipeline's environment."""
    with serving_bridge(pipeline.root / "logs", {"PAYMENTS_WEBHOOK_SECRETS": json.dumps({PROVIDER: SECRET})}) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def bridge(bridge_process: str) -> AsyncIterator[Bridge]:
    async with httpx.AsyncClient(timeout=10, headers=as_role()) as client:
        yield Bridge(bridge_process, client)


def webhook(contract: str, kind: str, transaction_id: str, amount: str | Decimal, **extra) -> dict:
    return {"id": f"evt-{uuid.uuid4().hex}", "type": kind, "created_at": datetime.now(UTC).isoformat(),
            "transaction_id": transaction_id, "amount": str(amount), "currency": "EUR", "contract_id": contract,
            "customer_id": f"CUST-{contract}", **extra}


async def rows(databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def wait_for_payment(databases, payment_id: str, kind: str, status: str = "succeeded"):
    found = []

    async def recorded() -> bool:
        found[:] = await rows(databases, "payments", select(payments).where(
            payments.c.payment_id == payment_id, payments.c.kind == kind, payments.c.status == status))
        return bool(found)

    await wait_until(recorded, timeout_s=DEADLINE_S, what=f"{kind} {payment_id} {status} in payments")
    return found[0]


async def items_of(databases, contract: str) -> list[tuple[str, Decimal, Decimal]]:
    """(invoice number or item type, amount, open amount), oldest due first."""
    found = await rows(databases, "payments", select(open_items).where(open_items.c.contract_id == contract)
                       .order_by(open_items.c.due_date, open_items.c.invoice_number))
    return [(row.invoice_number or row.item_type, row.amount, row.open_amount) for row in found]


async def position(databases, contract: str) -> Decimal:
    """What the customer owes by payments' books: open items minus credit."""
    open_sum = await rows(databases, "payments", select(func.coalesce(func.sum(open_items.c.open_amount), 0))
                          .where(open_items.c.contract_id == contract))
    credit = await rows(databases, "payments", select(func.coalesce(func.sum(payments.c.unassigned_amount), 0))
                        .where(payments.c.contract_id == contract))
    return open_sum[0][0] - credit[0][0]


def admin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.payments.admin", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


# --- the bridge --------------------------------------------------------------------------------------


async def test_the_bridge_publishes_a_signed_webhook_once_and_refuses_forged_expired_replayed_and_malformed_ones(
        pipeline, bridge, databases):
    contract = new_contract_id("bridge")
    payment_id = f"{contract}-P1"
    valid = webhook(contract, "payment.succeeded", payment_id, "25.00")

    accepted = await bridge.post(valid)
    assert accepted.status_code == 202, accepted.text
    event_id = derive_id(f"{PROVIDER}:{valid['id']}", "payments.received")
    assert accepted.json() == {"event_id": str(event_id), "payment_id": payment_id, "kind": "payment",
                               "status": "succeeded"}

    replayed = await bridge.post(valid)  # the very same webhook, freshly signed
    assert (replayed.status_code, replayed.json()["error"]) == (409, "already_received")
    assert valid["id"] in replayed.json()["detail"]

    refused: list[tuple[str, httpx.Response]] = []

    async def refuse(label: str, response_of) -> None:
        refused.append((label, await response_of))

    other = webhook(contract, "payment.succeeded", f"{contract}-P2", "99.00")
    await refuse("forged", bridge.post(other, secret="not-the-secret"))
    await refuse("unsigned", bridge.post(other, signed=False))
    await refuse("expired", bridge.post(other, sent_at=int(time.time()) - 301))
    await refuse("from the future", bridge.post(other, sent_at=int(time.time()) + 400))
    await refuse("unknown provider", bridge.post(other, provider="nobody-pay"))
    await refuse("not json", bridge.post(b'{"id": "evt-x", "type": '))
    await refuse("negative amount", bridge.post(webhook(contract, "payment.succeeded", f"{contract}-P3", "-5.00")))
    await refuse("unsupported currency", bridge.post({**webhook(contract, "payment.succeeded", f"{contract}-P4",
                                                                "5.00"), "currency": "XYZ"}))
    await refuse("too fine", bridge.post(webhook(contract, "payment.succeeded", f"{contract}-P5", "5.001")))
    await refuse("float amount", bridge.post({**webhook(contract, "payment.succeeded", f"{contract}-P6", "0"),
                                              "amount": 5.5}))
    await refuse("too large", bridge.post({**other, "id": "evt-large", "padding": "x" * 300_000}))
    now = str(int(time.time()))
    tampered = await bridge.client.post(
        f"{bridge.url}/webhooks/{PROVIDER}", content=json.dumps({**other, "amount": "9999.00"}).encode(),
        headers={"webhook-timestamp": now, "webhook-signature": sign(SECRET, now, json.dumps(other).encode())})
    refused.append(("tampered", tampered))

    outcomes = {label: (response.status_code, response.json()["error"]) for label, response in refused}
    assert outcomes == {
        "forged": (401, "bad_signature"),
        "unsigned": (401, "unsigned"),
        "expired": (401, "expired"),
        "from the future": (401, "expired"),
        "unknown provider": (404, "unknown_provider"),
        "not json": (400, "not_json"),
        "negative amount": (422, "invalid"),
        "unsupported currency": (422, "invalid"),
        "too fine": (422, "invalid"),
        "float amount": (422, "invalid"),
        "too large": (413, "too_large"),
        "tampered": (401, "bad_signature"),
    }
    details = {label: response.json()["detail"] for label, response in refused}
    assert re.fullmatch(r"the request's timestamp is 30\ds old; at most 300s either way are accepted",
                        details["expired"])
    assert "amount: Input should be greater than 0" in details["negative amount"]
    assert "unsupported currency 'XYZ'" in details["unsupported currency"]
    assert "more decimals than EUR allows" in details["too fine"]

    # The one accepted webhook went through the outbox and the broker into payments and the ledger...
    payment = await wait_for_payment(databases, payment_id, "payment")
    assert (payment.payment_event_id, payment.amount, payment.unassigned_amount, payment.provider) == (
        event_id, Decimal("25.00"), Decimal("25.00"), PROVIDER)  # nothing is open: all of it is credit
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 1,
                                                   ledger_entries.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the payment on the ledger")
    [entry] = await rows(databases, "settlement", select(ledger_entries).where(ledger_entries.c.contract_id == contract))
    assert (entry.entry_type, entry.amount, entry.balance, entry.payment_id) == (
        "Payment", Decimal("-25.00"), Decimal("-25.00"), payment_id)
    assert await position(databases, contract) == Decimal("-25.00")

    # ...and nothing else was recorded or published for the contract.
    assert await databases.has_exactly("payments", webhook_receipts, 1,
                                       webhook_receipts.c.provider_event_id.in_([valid["id"], other["id"]]))
    assert await databases.has_exactly("payments", payments_messaging.outbox, 1,
                                       payments_messaging.outbox.c.key == contract)
    published = await read_events(pipeline.kafka.bootstrap_servers, topics.PAYMENTS_RECEIVED, PaymentReceived)
    assert [event.event_id for event in published if event.contract_id == contract] == [event_id]
    assert await databases.has_exactly("payments", payments, 1, payments.c.contract_id == contract)


async def test_the_bridge_reports_its_health_and_documents_its_webhook(bridge):
    live = await bridge.client.get(f"{bridge.url}/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await bridge.client.get(f"{bridge.url}/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checked": ["access database", "database", "migrations"]})
    assert "process_cpu_seconds_total" in (await bridge.client.get(f"{bridge.url}/metrics")).text
    spec = (await bridge.client.get(f"{bridge.url}/openapi.json")).json()
    operation = spec["paths"]["/webhooks/{provider}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"id", "type", "created_at", "transaction_id", "amount", "currency",
                                       "contract_id", "customer_id"}
    assert schema["properties"]["amount"]["type"] == "string"
    assert {"202", "400", "401", "404", "409", "413", "422"} <= set(operation["responses"])


# --- open items, assignment and the ledger -----------------------------------------------------------


async def test_open_items_follow_partial_and_over_payments_a_refund_and_a_chargeback_with_a_fee_like_the_ledger(
        bridge, broker, databases, reconciled_at_the_end):
    contract = new_contract_id("opos")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.01", "storage-gb": "2.50"})

    async def invoice_after(*usages) -> object:
        settled = await rows(databases, "settlement", select(func.count()).select_from(settled_items)
                             .where(settled_items.c.contract_id == contract))
        await publish_usage(broker, *usages)
        await wait_until(lambda: databases.has_exactly("settlement", settled_items, settled[0][0] + len(usages),
                                                       settled_items.c.contract_id == contract),
                         timeout_s=DEADLINE_S, what="the usage in settlement")
        before = len(await rows(databases, "invoicing", select(documents.c.number)
                                .where(documents.c.contract_id == contract)))
        await request_billing_run(broker, contract)
        await wait_until(lambda: databases.has_exactly("invoicing", documents, before + 1,
                                                       documents.c.contract_id == contract),
                         timeout_s=DEADLINE_S, what="the next invoice")
        [document] = await rows(databases, "invoicing", select(documents).where(documents.c.contract_id == contract)
                                .order_by(documents.c.number.desc()).limit(1))
        return document

    a = await invoice_after(usage(contract, "storage-gb", "10", day=3))  # 25.00 net
    b = await invoice_after(usage(contract, "api-calls", "10000", day=4))  # 100.00 net
    assert (a.net_total, b.net_total) == (Decimal("25.00"), Decimal("100.00"))
    assert a.due_date == b.due_date and a.number < b.number
    await wait_until(lambda: databases.has_exactly("payments", open_items, 2, open_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="both open items")
    assert await items_of(databases, contract) == [(a.number, a.gross_total, a.gross_total),
                                                   (b.number, b.gross_total, b.gross_total)]

    async def send(payload: dict) -> None:
        response = await bridge.post(payload)
        assert response.status_code == 202, response.text

    # A partial payment of the newer invoice, which it names.
    await send(webhook(contract, "payment.succeeded", f"{contract}-P1", "50.00", invoice_number=b.number))
    await wait_for_payment(databases, f"{contract}-P1", "payment")
    assert await items_of(databases, contract) == [(a.number, a.gross_total, a.gross_total),
                                                   (b.number, b.gross_total, b.gross_total - 50)]

    # An overpayment by 30.00, first reported pending (nothing assigned), then succeeded.
    overpayment = (a.gross_total + b.gross_total - 50 + 30).quantize(Decimal("0.01"))
    await send(webhook(contract, "payment.pending", f"{contract}-P2", overpayment))
    await wait_for_payment(databases, f"{contract}-P2", "payment", "pending")
    assert await items_of(databases, contract) == [(a.number, a.gross_total, a.gross_total),
                                                   (b.number, b.gross_total, b.gross_total - 50)]
    await send(webhook(contract, "payment.succeeded", f"{contract}-P2", overpayment))
    p2 = await wait_for_payment(databases, f"{contract}-P2", "payment")
    assert p2.unassigned_amount == Decimal("30.00")
    assert await items_of(databases, contract) == [(a.number, a.gross_total, 0), (b.number, b.gross_total, 0)]

    # A refund of 10.00 is paid out of the credit: nothing reopens.
    await send(webhook(contract, "charge.refunded", f"{contract}-R1", "10.00",
                       reverses_transaction_id=f"{contract}-P2"))
    await wait_for_payment(databases, f"{contract}-R1", "refund")
    [p2] = await rows(databases, "payments", select(payments).where(payments.c.payment_id == f"{contract}-P2"))
    assert p2.unassigned_amount == Decimal("20.00")
    assert await position(databases, contract) == Decimal("-20.00")

    # The partial payment is charged back with a 15.00 fee: its 50.00 on B reopen, the fee is an item
    # due today, and the remaining 20.00 credit pays the oldest due first: the fee, then 5.00 of B.
    await send(webhook(contract, "charge.disputed", f"{contract}-CB1", "50.00",
                       reverses_transaction_id=f"{contract}-P1", fee="15.00"))
    await wait_for_payment(databases, f"{contract}-CB1", "chargeback")
    assert await items_of(databases, contract) == [("chargeback_fee", Decimal("15.00"), 0),
                                                   (a.number, a.gross_total, 0),
                                                   (b.number, b.gross_total, Decimal("45.00"))]
    assert await position(databases, contract) == Decimal("45.00")

    # The payments assigned to B, with the reversal, as the operator sees them.
    shown = admin("assignments", b.number)
    assert shown.returncode == 0, shown.stderr
    assert [(line.split()[2], line.split()[3], Decimal(line.split()[4])) for line in shown.stdout.splitlines()] == [
        ("payment", f"{contract}-P1", Decimal("50.00")),
        ("payment", f"{contract}-P2", b.gross_total - 50),
        ("payment", f"{contract}-P1", Decimal("-50.00")),
        ("payment", f"{contract}-P2", Decimal("5.00")),
    ]
    assert shown.stderr.strip() == f"{b.number}: {b.gross_total:.2f} EUR, open 45.00"

    # The ledger saw the same money move: net receivables plus each invoice's VAT, and the fee.
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 9,
                                                   ledger_entries.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="nine ledger entries")
    entries = await rows(databases, "settlement", select(ledger_entries.c.entry_type, ledger_entries.c.amount,
                                                         ledger_entries.c.document_number)
                         .where(ledger_entries.c.contract_id == contract).order_by(ledger_entries.c.sequence))
    assert sorted((e.entry_type, e.amount) for e in entries if e.entry_type == "Tax") == sorted(
        [("Tax", a.tax_total), ("Tax", b.tax_total)])
    assert [(e.entry_type, e.amount) for e in entries if e.entry_type != "Tax"] == [
        ("Receivable", Decimal("25.00")), ("Receivable", Decimal("100.00")),
        ("Payment", Decimal("-50.00")), ("Payment", -overpayment),
        ("Refund", Decimal("10.00")), ("Chargeback", Decimal("50.00")), ("ChargebackFee", Decimal("15.00")),
    ]
    [account] = await rows(databases, "settlement", select(contract_accounts.c.balance)
                           .where(contract_accounts.c.contract_id == contract))
    # gross A + gross B - 50.00 - (gross A + gross B - 20.00) + 10.00 + 50.00 + 15.00 = 45.00
    assert account.balance == Decimal("45.00")
    # Payments' position (open items minus credit) is the ledger balance.
    assert await position(databases, contract) == account.balance


async def test_pending_and_failed_payments_are_recorded_but_never_assigned(bridge, broker, databases):
    contract = new_contract_id("failed")
    invoice = await publish_document(broker, contract, "invoice", "119.00", due=date(2026, 12, 1))
    await wait_until(lambda: databases.has_exactly("payments", open_items, 1, open_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the open item")
    payment_id = f"{contract}-P1"
    reports = [webhook(contract, kind, payment_id, "119.00") for kind in ("payment.pending", "payment.failed")]
    for report in reports:
        assert (await bridge.post(report)).status_code == 202
    failed = await wait_for_payment(databases, payment_id, "payment", "failed")
    assert failed.unassigned_amount == 0
    assert await items_of(databases, contract) == [(invoice.number, Decimal("119.00"), Decimal("119.00"))]

    # The provider retries the same transaction, and it succeeds; late news of it pending changes nothing.
    reports += [webhook(contract, kind, payment_id, "119.00") for kind in ("payment.succeeded", "payment.pending")]
    for report in reports[2:]:
        assert (await bridge.post(report)).status_code == 202
    inbox = payments_messaging.inbox
    ids = [derive_id(f"{PROVIDER}:{report['id']}", "payments.received") for report in reports]
    await wait_until(lambda: databases.has_exactly("payments", inbox, 4, inbox.c.consumer == "payments.payments.received",
                                                   inbox.c.event_id.in_(ids)),
                     timeout_s=DEADLINE_S, what="payments applied all four reports")
    [payment] = await rows(databases, "payments", select(payments).where(payments.c.contract_id == contract))
    assert (payment.payment_id, payment.status, payment.unassigned_amount) == (payment_id, "succeeded", 0)
    assert await items_of(databases, contract) == [(invoice.number, Decimal("119.00"), Decimal("0.00"))]


async def test_a_failed_payment_leaves_the_ledger_alone(bridge, databases):
    contract = new_contract_id("failed-ledger")
    reports = [webhook(contract, kind, f"{contract}-P1", "40.00") for kind in ("payment.pending", "payment.failed")]
    for report in reports:
        assert (await bridge.post(report)).status_code == 202
    ids = [derive_id(f"{PROVIDER}:{report['id']}", "payments.received") for report in reports]
    inbox = settlement_messaging.inbox
    await wait_until(lambda: databases.has_exactly("settlement", inbox, 2, inbox.c.consumer == "settlement.payments.received",
                                                   inbox.c.event_id.in_(ids)),
                     timeout_s=DEADLINE_S, what="settlement applied both reports")
    assert await rows(databases, "settlement", select(ledger_entries).where(ledger_entries.c.contract_id == contract)) == []


# --- credit notes ------------------------------------------------------------------------------------


async def publish_document(broker, contract: str, kind: str, gross: str, *, due: date,
                           corrects: str | None = None) -> DocumentCreated:
    """A document as invoicing publishes it (payments is its only consumer), without VAT for clarity."""
    document_id = uuid.uuid4()
    prefix = "R" if kind == "invoice" else "G"
    document = DocumentCreated(
        event_id=derive_id(document_id, "documents.created"), occurred_at=datetime.now(UTC), contract_id=contract,
        document_id=document_id, document_type=DocumentType(kind), number=f"{prefix}-{document_id.hex[:12]}",
        settlement_run_id=uuid.uuid4(), customer_id=f"CUST-{contract}", currency="EUR",
        issue_date=due - timedelta(days=14), due_date=due, net_total=Decimal(gross), tax_total=Decimal(0),
        gross_total=Decimal(gross), corrects_number=corrects,
    )
    await publish_event(broker, topics.DOCUMENTS_CREATED, document, document.key)
    return document


async def test_credit_notes_pay_the_invoice_they_correct_or_become_credit_for_the_next(bridge, broker, databases):
    contract = new_contract_id("credit-note")
    first = await publish_document(broker, contract, "invoice", "100.00", due=date(2026, 11, 10))
    second = await publish_document(broker, contract, "invoice", "50.00", due=date(2026, 11, 20))
    await publish_document(broker, contract, "credit_note", "30.00", due=date(2026, 11, 20), corrects=second.number)

    async def settled_to(expected: list) -> None:
        async def reached() -> bool:
            return await items_of(databases, contract) == expected
        await wait_until(reached, timeout_s=DEADLINE_S, what=f"open items {expected}")

    await settled_to([(first.number, Decimal("100.00"), Decimal("100.00")),
                      (second.number, Decimal("50.00"), Decimal("20.00"))])

    assert (await bridge.post(webhook(contract, "payment.succeeded", f"{contract}-P1", "120.00"))).status_code == 202
    await settled_to([(first.number, Decimal("100.00"), Decimal("0.00")),
                      (second.number, Decimal("50.00"), Decimal("0.00"))])

    # Correcting a paid invoice, or naming none, gives the customer credit...
    await publish_document(broker, contract, "credit_note", "40.00", due=date(2026, 11, 25), corrects=first.number)
    await publish_document(broker, contract, "credit_note", "10.00", due=date(2026, 11, 25))
    await wait_until(lambda: databases.has_exactly("payments", payments, 3, payments.c.contract_id == contract,
                                                   payments.c.kind == "credit_note"),
                     timeout_s=DEADLINE_S, what="three credit notes")
    assert await position(databases, contract) == Decimal("-50.00")

    # ...which pays the next invoice: the older credit note first.
    third = await publish_document(broker, contract, "invoice", "45.00", due=date(2026, 12, 10))
    await settled_to([(first.number, Decimal("100.00"), Decimal("0.00")),
                      (second.number, Decimal("50.00"), Decimal("0.00")),
                      (third.number, Decimal("45.00"), Decimal("0.00"))])
    credit = await rows(databases, "payments", select(payments.c.amount, payments.c.unassigned_amount)
                        .where(payments.c.contract_id == contract, payments.c.kind == "credit_note")
                        .order_by(payments.c.received_at))
    assert [(row.amount, row.unassigned_amount) for row in credit] == [
        (Decimal("30.00"), Decimal("0.00")), (Decimal("40.00"), Decimal("0.00")), (Decimal("10.00"), Decimal("5.00"))]
    assert await position(databases, contract) == Decimal("-5.00")


# --- payment accounts --------------------------------------------------------------------------------


async def test_payment_accounts_have_exactly_one_default(databases):
    customer = f"CUST-{new_contract_id('accounts')}"
    sepa = admin("add-account", customer, "--method", "sepa_direct_debit", "--holder", "Erika Mustermann",
                 "--iban", "DE89 3704 0044 0532 0130 00", "--mandate-reference", f"M-{customer}",
                 "--mandate-signed-on", "2026-01-02")
    assert sepa.returncode == 0, sepa.stderr
    sepa_account = json.loads(sepa.stdout)
    assert sepa_account["default"] is True  # the first account
    card = admin("add-account", customer, "--method", "card", "--provider", PROVIDER, "--token",
                 f"tok_{uuid.uuid4().hex}", "--default")
    assert card.returncode == 0, card.stderr
    card_account = json.loads(card.stdout)

    listed = admin("accounts", customer)
    assert listed.returncode == 0, listed.stderr
    assert [(line.split()[0], line.split()[1], line.split()[2]) for line in listed.stdout.splitlines()] == [
        (card_account["account_id"], "card", "default"), (sepa_account["account_id"], "sepa_direct_debit", "-")]
    assert "SEPA direct debit DE89 …3000" in listed.stdout and "DE89370400440532013000" not in listed.stdout

    assert admin("set-default", customer, sepa_account["account_id"]).returncode == 0
    defaults = await rows(databases, "payments", select(payment_accounts.c.account_id).where(
        payment_accounts.c.customer_id == customer, payment_accounts.c.is_default))
    assert [str(row.account_id) for row in defaults] == [sepa_account["account_id"]]

    bad_iban = admin("add-account", customer, "--method", "sepa_direct_debit", "--iban", "DE00 0000 0000",
                     "--mandate-reference", "M-2", "--mandate-signed-on", "2026-01-02")
    assert bad_iban.returncode == 2 and "invalid bank details" in bad_iban.stderr
    assert admin("set-default", customer, str(uuid.uuid4())).returncode == 2

    # The database holds the rule too: a second default is refused whoever writes it.
    with pytest.raises(IntegrityError, match="payment_accounts_one_default"):
        async with databases["payments"].transaction() as session:
            await session.execute(insert(payment_accounts).values(
                account_id=uuid.uuid4(), customer_id=customer, method="bank_transfer", is_default=True))
