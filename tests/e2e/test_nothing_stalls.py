"""Nothing stalls, nothing strands: what used to stop a stage is applied, parked or refused at the edge.

- A one-time purchase of an item the contract does not have, added through rating's HTTP API, is
  invoiced with its own tax category (the run carries it; invoicing needs no replica for it).
- A chargeback delivered before the payment it takes back is parked, not retried in place: an
  unrelated payment behind it is applied meanwhile, and the chargeback is re-driven the moment its
  payment arrives. Ledger and open items agree at the end.
Amounts are hand-computed; every contract here must reconcile at the end of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from ops.observe import wait_until
from services.invoicing.tables import document_lines, document_tax_lines
from services.payments.tables import messaging as payments_messaging
from services.payments.tables import open_items, payments
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts
from shared import topics
from shared.events import PaymentKind, PaymentReceived
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (
    DEADLINE_S,
    given_contract,
    new_contract_id,
    publish_usage,
    request_billing_run,
    usage,
    wait_for_invoice,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def rows(databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def run_once_settlement_holds_the_items(broker, databases, contract: str, items: int) -> None:
    """Request a billing run once settlement has all `items` of the contract."""
    await wait_until(lambda: databases.has_exactly("settlement", settled_items, items,
                                                   settled_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what=f"settlement to hold the {items} item(s) of {contract}")
    await request_billing_run(broker, contract)


async def test_a_purchase_of_an_item_the_contract_does_not_have_is_invoiced_with_its_own_vat(
        broker, databases, rating_api_url, reconciled_at_the_end):
    # A Polish consumer: the destination's VAT (OSS), 23 % standard and 5 % reduced.
    contract = new_contract_id("purchase-pl")
    await given_contract(databases, contract, {"api-calls": "0.0125"}, country="PL")
    reconciled_at_the_end.add(contract)
    await publish_usage(broker, usage(contract, "api-calls", "8000"))  # 100.00, standard
    async with httpx.AsyncClient(timeout=10, headers=as_role()) as client:
        answer = await client.post(f"{rating_api_url}/contracts/{contract}/purchases", json={
            "item_code": "setup", "description": "Setup", "quantity": "1", "unit_price": "49.90",
            "purchased_on": "2026-11-15", "purchase_id": "P-1", "tax_category": "reduced"})
    assert answer.status_code == 201, answer.text
    [purchased] = answer.json()
    assert (purchased["item_code"], purchased["net"], purchased["tax_category"]) == ("setup", "49.90", "reduced")

    await run_once_settlement_holds_the_items(broker, databases, contract, items=2)
    invoice = await wait_for_invoice(databases, contract)

    lines = await rows(databases, "invoicing", select(document_lines.c.item_code, document_lines.c.net,
                                                      document_lines.c.vat_category, document_lines.c.vat_rate)
                       .where(document_lines.c.document_id == invoice.document_id)
                       .order_by(document_lines.c.line_no))
    assert [tuple(line) for line in lines] == [("api-calls", Decimal("100.00"), "S", Decimal("23")),
                                               ("setup", Decimal("49.90"), "S", Decimal("5"))]
    tax = document_tax_lines.c
    taxes = await rows(databases, "invoicing", select(tax.vat_rate, tax.base, tax.tax)
                       .where(tax.document_id == invoice.document_id).order_by(tax.vat_rate.desc()))
    # 23 % of 100.00 = 23.00; 5 % of 49.90 = 2.495 -> 2.50 (half up, once per rate).
    assert [tuple(tax) for tax in taxes] == [(Decimal("23"), Decimal("100.00"), Decimal("23.00")),
                                             (Decimal("5"), Decimal("49.90"), Decimal("2.50"))]
    assert (invoice.net_total, invoice.tax_total, invoice.gross_total) == (
        Decimal("149.90"), Decimal("25.50"), Decimal("175.40"))
    await wait_until(lambda: databases.has_exactly("payments", open_items, 1, open_items.c.contract_id == contract,
                                                   open_items.c.open_amount == Decimal("175.40")),
                     timeout_s=DEADLINE_S, what="the invoice's open item")


def payment(contract: str, kind: PaymentKind, payment_id: str, amount: str, **extra) -> PaymentReceived:
    return PaymentReceived(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract,
                           payment_id=payment_id, kind=kind, provider="test-bank", customer_id=f"CUST-{contract}",
                           currency="EUR", amount=Decimal(amount), **extra)


async def test_a_chargeback_before_its_payment_is_parked_without_holding_up_others_and_re_driven_by_it(
        broker, databases, reconciled_at_the_end):
    contract, other = new_contract_id("early-chargeback"), new_contract_id("unrelated")
    for each in (contract, other):
        await given_contract(databases, each, {"api-calls": "0.0125"})  # German customers: 19 %
        reconciled_at_the_end.add(each)
        await publish_usage(broker, usage(each, "api-calls", "8000"))  # 100.00 net, 119.00 gross
    for each in (contract, other):
        await run_once_settlement_holds_the_items(broker, databases, each, items=1)
    invoice = await wait_for_invoice(databases, contract)
    other_invoice = await wait_for_invoice(databases, other)
    assert invoice.gross_total == other_invoice.gross_total == Decimal("119.00")

    # The provider delivers the dispute first; it names the payment it takes back.
    await publish_event(broker, topics.PAYMENTS_RECEIVED, payment(
        contract, PaymentKind.CHARGEBACK, f"{contract}-CB1", "119.00", reverses_payment_id=f"{contract}-P1",
        fee="15.00"), contract)
    parked = payments_messaging.parked
    await wait_until(lambda: databases.has_exactly("payments", parked, 1, parked.c.key == contract),
                     timeout_s=DEADLINE_S, what="the early chargeback to be parked")

    # Operators see it, with what it waits for.
    shown = subprocess.run([sys.executable, "-m", "ops.cli", "parked", "--contract", contract],
                           capture_output=True, text=True, env=os.environ, timeout=60)
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.splitlines()
    assert line.startswith("payments: payments.received[") and f"key {contract} (payments.payments.received)" in line
    assert line.endswith(f"chargeback {contract}-CB1 takes back payment {contract}-P1, which has not arrived")

    # An unrelated payment behind it is applied while the chargeback waits.
    sent = time.monotonic()
    await publish_event(broker, topics.PAYMENTS_RECEIVED,
                        payment(other, PaymentKind.PAYMENT, f"{other}-P1", "119.00",
                                invoice_number=other_invoice.number), other)
    await wait_until(lambda: databases.has_exactly("payments", open_items, 1, open_items.c.contract_id == other,
                                                   open_items.c.open_amount == 0),
                     timeout_s=DEADLINE_S, what="the unrelated payment to pay its invoice")
    print(f"unrelated payment applied {time.monotonic() - sent:.3f}s after it was sent, "
          "while a chargeback was parked")
    assert await databases.has_exactly("payments", parked, 1, parked.c.key == contract)

    # The payment arrives: the chargeback is re-driven by it and takes it back, with its fee.
    await publish_event(broker, topics.PAYMENTS_RECEIVED, payment(
        contract, PaymentKind.PAYMENT, f"{contract}-P1", "119.00", invoice_number=invoice.number), contract)
    await wait_until(lambda: databases.has_exactly("payments", payments, 1, payments.c.payment_id == f"{contract}-CB1"),
                     timeout_s=DEADLINE_S, what="the chargeback to be re-driven and recorded")
    assert await databases.has_exactly("payments", parked, 0, parked.c.key == contract)
    items = await rows(databases, "payments", select(open_items.c.item_type, open_items.c.amount,
                                                     open_items.c.open_amount)
                       .where(open_items.c.contract_id == contract).order_by(open_items.c.amount.desc()))
    # The invoice paid and reopened in full, and the fee is an open item of its own: 134.00 owed.
    assert [(amount, open_amount) for _, amount, open_amount in items] == [
        (Decimal("119.00"), Decimal("119.00")), (Decimal("15.00"), Decimal("15.00"))]
    await wait_until(lambda: databases.has_exactly("settlement", contract_accounts, 1,
                                                   contract_accounts.c.contract_id == contract,
                                                   contract_accounts.c.balance == Decimal("134.00")),
                     timeout_s=DEADLINE_S, what="the ledger to owe 119.00 + 15.00 again")
