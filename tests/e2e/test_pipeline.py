"""The pipeline end to end through the real broker, real PostgreSQL and real worker processes.

Amounts are hand-computed: per-unit price x quantity, rounded once per item to the currency's
minor unit with ROUND_HALF_UP. The test customers are in Germany, so invoices add 19 % VAT on the
summed nets, rounded once (ROUND_HALF_UP); the ledger books the net receivable of each run and,
once the invoice exists, its VAT, so its balance is what payments shows as open.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ops.observe import read_events, wait_until
from services.invoicing.tables import document_lines, documents
from services.payments.tables import open_items, payments
from services.rating.tables import billable_items as rated_items
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import contract_accounts, ledger_entries
from shared import topics
from shared.events import ContractChanged, PaymentKind, PaymentReceived, derive_id
from shared.runtime import publish_event
from tests.e2e.conftest import (
    DEADLINE_S,
    given_contract,
    new_contract_id,
    publish_usage,
    request_billing_run,
    usage,
    wait_for_dead_letter,
    wait_for_invoice,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def wait_settlement_has(databases, contract_id: str, items: int) -> None:
    await wait_until(
        lambda: databases.has_exactly("settlement", settled_items, items, settled_items.c.contract_id == contract_id),
        timeout_s=DEADLINE_S, what=f"{items} rated items of {contract_id} in settlement",
    )


async def wait_settlement_holds(databases, contract_id: str, net: str) -> None:
    """Until settlement holds the contract's rated net: how many items rating made of it depends on how
    the events fell into its polls (one item per contract item and period of each)."""
    async def holds() -> bool:
        held = await databases.count("settlement", select(func.coalesce(func.sum(settled_items.c.net), 0))
                                     .where(settled_items.c.contract_id == contract_id))
        return held == Decimal(net)
    await wait_until(holds, timeout_s=DEADLINE_S, what=f"{net} rated for {contract_id} in settlement")


async def rows(databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def test_usage_for_two_contracts_ends_in_documents_with_exactly_the_expected_totals(broker, databases,
                                                                                         reconciled_at_the_end):
    eur = new_contract_id("eur")
    usd = new_contract_id("usd")
    reconciled_at_the_end.update({eur, usd})
    await given_contract(databases, eur, {"api-calls": "0.0125", "storage-gb": "0.10"})
    await given_contract(databases, usd, {"sms": "0.075", "compute-h": "0.42"}, currency="USD")

    await publish_usage(
        broker,
        usage(eur, "api-calls", "12000"),  # 150.00
        usage(eur, "api-calls", "333"),  # 4.1625 -> 4.16
        usage(eur, "storage-gb", "0.5"),  # 0.05
        usage(usd, "sms", "7"),  # 0.525 -> 0.53
        usage(usd, "compute-h", "17.25"),  # 7.245 -> 7.25
    )
    await wait_settlement_holds(databases, eur, "154.21")
    await wait_settlement_holds(databases, usd, "7.78")
    await request_billing_run(broker, eur)
    await request_billing_run(broker, usd)

    eur_invoice = await wait_for_invoice(databases, eur)
    usd_invoice = await wait_for_invoice(databases, usd)

    # 154.21 x 19 % = 29.2999 -> 29.30
    assert (eur_invoice.currency, eur_invoice.net_total, eur_invoice.tax_total, eur_invoice.gross_total) == (
        "EUR", Decimal("154.21"), Decimal("29.30"), Decimal("183.51"))
    # 7.78 x 19 % = 1.4782 -> 1.48
    assert (usd_invoice.currency, usd_invoice.gross_total) == ("USD", Decimal("9.26"))
    assert re.fullmatch(r"R\d{4}-\d{4}", eur_invoice.number) and eur_invoice.number != usd_invoice.number
    assert (eur_invoice.due_date - eur_invoice.issue_date).days == 14

    lines = await rows(databases, "invoicing", select(document_lines.c.item_code, document_lines.c.net)
                       .where(document_lines.c.document_id == eur_invoice.document_id))
    # one line per item and period: 150.00 + 4.16
    assert sorted((line.item_code, line.net) for line in lines) == [
        ("api-calls", Decimal("154.16")), ("storage-gb", Decimal("0.05"))]

    [account] = await rows(databases, "settlement", select(contract_accounts)
                           .where(contract_accounts.c.contract_id == eur))
    assert account.balance == Decimal("183.51")  # the net receivable and the invoice's VAT
    await wait_until(
        lambda: databases.has_exactly("payments", open_items, 1, open_items.c.invoice_number == usd_invoice.number),
        timeout_s=DEADLINE_S, what="the open item of the USD invoice",
    )
    [usd_open_item] = await rows(databases, "payments", select(open_items)
                                 .where(open_items.c.invoice_number == usd_invoice.number))
    assert usd_open_item.open_amount == Decimal("9.26")


async def test_a_usage_event_published_twice_is_billed_once(broker, databases, reconciled_at_the_end):
    contract = new_contract_id("dup")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    event = usage(contract, "api-calls", "1000")  # 12.50

    await publish_usage(broker, event, event)  # a redelivery right behind the original
    await wait_settlement_has(databases, contract, 1)
    # ... and a replay long after it was applied, followed by a new event on the same partition:
    # once the new one is rated, the replay behind it has certainly been consumed.
    later = usage(contract, "api-calls", "200")  # 2.50
    await publish_usage(broker, event, later)
    await wait_settlement_has(databases, contract, 2)
    await request_billing_run(broker, contract)

    invoice = await wait_for_invoice(databases, contract)
    assert invoice.gross_total == Decimal("17.85")  # 15.00 + 2.85 VAT
    rated = await rows(databases, "rating", select(rated_items.c.source_event_id)
                       .where(rated_items.c.contract_id == contract))
    assert sorted(str(row.source_event_id) for row in rated) == sorted([str(event.event_id), str(later.event_id)])


async def test_a_resend_with_changed_content_is_dead_lettered_and_not_billed(pipeline, broker, databases):
    contract = new_contract_id("changed")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    original = usage(contract, "api-calls", "100")  # 1.25
    await publish_usage(broker, original)
    await wait_settlement_has(databases, contract, 1)

    await publish_usage(broker, original.model_copy(update={"quantity": Decimal("999")}))
    letter = await wait_for_dead_letter(pipeline, contract, "already applied with different content")

    assert letter.source_topic == topics.USAGE_RECORDED and '"999"' in letter.payload
    await request_billing_run(broker, contract)
    assert (await wait_for_invoice(databases, contract)).gross_total == Decimal("1.49")  # 1.25 + 0.2375 -> 0.24


async def test_bad_messages_are_dead_lettered_with_reasons_and_the_messages_behind_them_still_processed(
    pipeline, broker, databases
):
    contract = new_contract_id("bad")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    key = contract.encode()
    # Same key, so the same partition: the good message queues behind the bad ones.
    await broker.publish(b"{not json", topics.USAGE_RECORDED, key=key)
    await broker.publish(
        b'{"event_id": "7d4a3c52-8a0e-4d7f-9c55-0a9f0d7b1e01", "occurred_at": "2026-11-10T09:30:00Z", '
        b'"contract_id": "' + key + b'", "item_code": "api-calls", "quantity": "-5"}',
        topics.USAGE_RECORDED, key=key,
    )
    await publish_usage(broker, usage(contract, "no-such-item", "1"))
    good = usage(contract, "api-calls", "400")  # 5.00
    await publish_usage(broker, good)

    await wait_settlement_has(databases, contract, 1)
    not_json = await wait_for_dead_letter(pipeline, contract, "Invalid JSON")
    negative = await wait_for_dead_letter(pipeline, contract, "quantity")
    unknown_item = await wait_for_dead_letter(pipeline, contract, "has no item 'no-such-item'")

    assert (not_json.source_topic, not_json.consumer, not_json.payload) == (
        topics.USAGE_RECORDED, "rating.usage.recorded", "{not json")
    assert not_json.offset < negative.offset < unknown_item.offset
    assert not_json.partition == negative.partition == unknown_item.partition
    assert "greater than or equal to 0" in negative.reason
    await request_billing_run(broker, contract)
    assert (await wait_for_invoice(databases, contract)).gross_total == Decimal("5.95")  # 5.00 + 0.95


async def test_payments_move_the_ledger_and_the_open_items_alike(broker, databases, reconciled_at_the_end):
    contract = new_contract_id("pay")
    reconciled_at_the_end.add(contract)
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    await publish_usage(broker, usage(contract, "api-calls", "10000", day=5))  # 125.00 + 23.75 VAT = 148.75
    await wait_settlement_has(databases, contract, 1)
    await request_billing_run(broker, contract)
    invoice = await wait_for_invoice(databases, contract)
    await wait_until(lambda: databases.has_exactly("payments", open_items, 1, open_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the open item")
    # Settlement books the invoice's tax from its own read of documents.created, which may come after
    # payments opened the item: the balances below are in booking order.
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 1,
                                                   (ledger_entries.c.contract_id == contract)
                                                   & (ledger_entries.c.entry_type == "Tax")),
                     timeout_s=DEADLINE_S, what="the invoice's tax on the ledger")

    async def pay(payment_id: str, amount: str) -> None:
        payment = PaymentReceived(
            event_id=derive_id("tests", payment_id), occurred_at=datetime.now(UTC), contract_id=contract,
            payment_id=payment_id, kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=customer,
            currency="EUR", amount=Decimal(amount), invoice_number=invoice.number,
        )
        await publish_event(broker, topics.PAYMENTS_RECEIVED, payment, payment.key)
        await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 1,
                                                       ledger_entries.c.payment_id == payment_id),
                         timeout_s=DEADLINE_S, what=f"{payment_id} on the ledger")
        await wait_until(lambda: databases.has_exactly("payments", payments, 1, payments.c.payment_id == payment_id),
                         timeout_s=DEADLINE_S, what=f"{payment_id} in payments")

    await pay(f"{contract}-P1", "100.00")  # partial: 48.75 stays open
    await pay(f"{contract}-P2", "63.75")  # overpays by 15.00, kept as credit

    entries = await rows(databases, "settlement", select(ledger_entries.c.entry_type, ledger_entries.c.amount,
                                                         ledger_entries.c.balance)
                         .where(ledger_entries.c.contract_id == contract).order_by(ledger_entries.c.sequence))
    assert [(e.entry_type, e.amount, e.balance) for e in entries] == [
        ("Receivable", Decimal("125.00"), Decimal("125.00")),
        ("Tax", Decimal("23.75"), Decimal("148.75")),
        ("Payment", Decimal("-100.00"), Decimal("48.75")),
        ("Payment", Decimal("-63.75"), Decimal("-15.00")),
    ]
    [item] = await rows(databases, "payments", select(open_items).where(open_items.c.contract_id == contract))
    assert item.open_amount == Decimal("0.00")

    # The next invoice is paid from the credit as soon as it exists.
    await publish_usage(broker, usage(contract, "api-calls", "800", day=20))  # 10.00 + 1.90 VAT = 11.90
    await wait_settlement_has(databases, contract, 2)
    await request_billing_run(broker, contract)
    await wait_until(lambda: databases.has_exactly("payments", open_items, 2, open_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the second open item")
    items = await rows(databases, "payments", select(open_items.c.amount, open_items.c.open_amount)
                       .where(open_items.c.contract_id == contract).order_by(open_items.c.invoice_number))
    assert [(i.amount, i.open_amount) for i in items] == [
        (Decimal("148.75"), Decimal("0.00")), (Decimal("11.90"), Decimal("0.00"))]
    credit = await rows(databases, "payments", select(payments.c.unassigned_amount)
                        .where(payments.c.contract_id == contract))
    assert sum(row.unassigned_amount for row in credit) == Decimal("3.10")  # 15.00 - 11.90
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 6,
                                                   ledger_entries.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the second receivable and its VAT on the ledger")
    [account] = await rows(databases, "settlement", select(contract_accounts.c.balance)
                           .where(contract_accounts.c.contract_id == contract))
    # -15.00 + 10.00 + 1.90: the customer's credit, exactly what payments holds.
    assert account.balance == Decimal("-3.10")


async def test_invoice_numbers_are_gapless_while_runs_arrive_together(broker, databases, reconciled_at_the_end):
    contracts = [new_contract_id(f"gap{n}") for n in range(4)]
    reconciled_at_the_end.update(contracts)
    for contract in contracts:
        await given_contract(databases, contract, {"api-calls": "1"})
        await publish_usage(broker, usage(contract, "api-calls", "3"))
    for contract in contracts:
        await wait_settlement_has(databases, contract, 1)
    for contract in contracts:
        await request_billing_run(broker, contract)
    for contract in contracts:
        assert (await wait_for_invoice(databases, contract)).gross_total == Decimal("3.57")  # 3.00 + 0.57

    numbers = [row.number for row in await rows(databases, "invoicing", select(documents.c.number))]
    by_series: dict[str, list[int]] = {}
    for number in numbers:
        series, sequence = number.split("-")
        by_series.setdefault(series, []).append(int(sequence))
    assert by_series, "no documents at all"
    for series, sequences in by_series.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), f"gap or duplicate in {series}"


async def test_saving_a_contract_publishes_its_whole_state_with_a_growing_revision(pipeline, databases):
    contract = new_contract_id("snap")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    await given_contract(databases, contract, {"api-calls": "0.0110", "sms": "0.07"})

    snapshots: list[ContractChanged] = []

    async def both_published() -> bool:
        snapshots[:] = [
            snapshot
            for snapshot in await read_events(pipeline.kafka.bootstrap_servers, topics.CONTRACTS_CHANGED, ContractChanged)
            if snapshot.contract_id == contract
        ]
        return len(snapshots) >= 2

    await wait_until(both_published, timeout_s=DEADLINE_S, what=f"two snapshots of {contract}")
    assert [(s.revision, sorted(i.item_code for i in s.items)) for s in snapshots] == [
        (1, ["api-calls"]), (2, ["api-calls", "sms"])]
    assert snapshots[1].customer.customer_id == f"CUST-{contract}" and snapshots[1].customer.country == "DE"


async def test_a_new_price_rates_the_usage_that_comes_after_it_in_the_running_worker(broker, databases,
                                                                                     reconciled_at_the_end):
    """The worker keeps the contracts it rated at hand (by revision): a contract changed after
    some of its usage was rated must price what comes next, and the period's items add up to the
    period's price of all of its usage at the price in force."""
    contract = new_contract_id("reprice")
    reconciled_at_the_end.add(contract)
    await given_contract(databases, contract, {"api-calls": "0.10"})
    await publish_usage(broker, usage(contract, "api-calls", "10"))  # 10 x 0.10 = 1.00
    await wait_settlement_holds(databases, contract, "1.00")

    await given_contract(databases, contract, {"api-calls": "0.25"})
    await publish_usage(broker, usage(contract, "api-calls", "10", day=11))
    await wait_settlement_holds(databases, contract, "5.00")  # 20 x 0.25 for November: 1.00 + 4.00

    items = await rows(databases, "rating", select(rated_items.c.unit_price, rated_items.c.net)
                       .where(rated_items.c.contract_id == contract).order_by(rated_items.c.rated_at))
    assert [(row.unit_price, row.net) for row in items] == [(Decimal("0.10"), Decimal("1.00")),
                                                           (Decimal("0.25"), Decimal("4.00"))]
