"""Settlement end to end: billing runs, the ledger, credits and the reconciliation, on the real pipeline.

Usage goes through rating where the reconciliation needs rated amounts; some items are published
on items.rated directly. A period's run is what rating's periods.closed announcement bills: these
tests announce the current period closed themselves (rating's own close is driven in the
pipeline's tests), or apply the announcement in-process as the worker's consumer does; pending
runs are driven by `run_due` with an instant of the test's choosing. Amounts are hand-computed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import insert, select

from ops.observe import Databases, read_events, wait_until
from ops.reconcile import reconcile
from services.payments.tables import payments
from services.rating.contracts import ContractSpec, save_contracts
from services.rating.tables import billable_items as rated_items
from services.settlement import domain, handlers, store
from services.settlement.admin import granted_credit_id, operate
from services.settlement.scheduler import scheduler
from services.settlement.tables import (
    billable_items,
    contract_accounts,
    contracts,
    credits,
    ledger_entries,
    messaging,
    settlement_runs,
)
from shared import topics
from shared.errors import Rejected
from shared.events import (
    BillingRunRequested,
    PeriodClosed,
    ChargeKind,
    CreditReason,
    PaymentKind,
    PaymentReceived,
    RatedItem,
    ReceivablesPosted,
    TaxCategory,
    UsageRecorded,
    derive_id,
)
from shared.periods import business_day, end_of_day
from shared.runtime import publish_event
from tests.e2e import conftest
from tests.e2e.conftest import DEADLINE_S, new_contract_id, wait_for_invoice, wait_for_settlement_to_hold

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
ZONE = "Europe/Berlin"


async def given_contract(databases: Databases, contract_id: str, prices: dict[str, str], **terms):
    """A customer outside the EU: its documents carry no VAT, so the ledger holds exactly what the runs
    post. (The VAT entries are asserted with the pipeline's and payments' tests.)"""
    return await conftest.given_contract(databases, contract_id, prices, country="US", **terms)


def current_period() -> tuple[date, date]:
    """The calendar month rating puts usage of now in, by the seller's business day (Berlin)."""
    today = business_day(datetime.now(UTC), ZONE)
    return today.replace(day=1), (today.replace(day=1) + relativedelta(months=1)) - timedelta(days=1)


def period_closed(contract_id: str, item_count: int, net_total: str) -> PeriodClosed:
    start, end = current_period()
    return PeriodClosed(event_id=derive_id(f"{contract_id}:{start}:{end}", "periods.closed"),
                        occurred_at=datetime.now(UTC), contract_id=contract_id, customer_id=f"CUST-{contract_id}",
                        currency="EUR", period_start=start, period_end=end, ends_at=end_of_day(end, ZONE),
                        time_zone=ZONE, item_count=item_count, net_total=Decimal(net_total))


def used_now(contract_id: str, item_code: str, quantity: str) -> UsageRecorded:
    return UsageRecorded(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract_id,
                         item_code=item_code, quantity=Decimal(quantity))


def rated(contract_id: str, item_code: str, net: str, period: tuple[date, date],
          kind: ChargeKind = ChargeKind.RECURRING_FEE) -> RatedItem:
    return RatedItem(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract_id,
        billable_item_id=uuid.uuid4(), customer_id=f"CUST-{contract_id}", item_code=item_code,
        description=item_code.title(), currency="EUR", quantity=Decimal(1), free_quantity=Decimal(0),
        billable_quantity=Decimal(1), unit_price=Decimal(net), net=Decimal(net), period_start=period[0],
        period_end=period[1], source_event_ids=[uuid.uuid4()], charge_kind=kind, tax_category=TaxCategory.STANDARD,
    )


def run_request(contract_id: str, *, cutoff: datetime | None = None) -> BillingRunRequested:
    now = datetime.now(UTC)
    return BillingRunRequested(event_id=uuid.uuid4(), occurred_at=now, contract_id=contract_id,
                               cutoff=cutoff or now, requested_by="tests")


async def publish(broker, topic: str, *events) -> None:
    for event in events:
        await publish_event(broker, topic, event, event.key)


async def rows(databases: Databases, statement) -> list:
    async with databases["settlement"].transaction() as session:
        return list((await session.execute(statement)).all())


async def wait_for(databases: Databases, table, expected: int, what: str, *where) -> None:
    await wait_until(lambda: databases.has_exactly("settlement", table, expected, *where),
                     timeout_s=DEADLINE_S, what=what)


async def items_rated_from(databases: Databases, contract_id: str, events: int) -> dict[str, int]:
    """Once `events` usage events of the contract are rated and settlement holds their items: how
    many items each item code has (a poll's events of a period are one item, however many)."""
    await wait_for_settlement_to_hold(databases, contract_id, events)
    async with databases["rating"].transaction() as session:
        codes = (await session.execute(select(rated_items.c.item_code)
                                       .where(rated_items.c.contract_id == contract_id))).scalars().all()
    return {code: codes.count(code) for code in sorted(set(codes))}


async def wait_items(databases: Databases, contract_id: str, expected: int, *, settled: bool = False) -> None:
    where = [billable_items.c.contract_id == contract_id]
    if settled:
        where.append(billable_items.c.settlement_run_id.is_not(None))
    await wait_for(databases, billable_items, expected, f"{expected} {'settled ' if settled else ''}items of "
                   f"{contract_id}", *where)


async def entries(databases: Databases, contract_id: str) -> list:
    return await rows(databases, select(ledger_entries).where(ledger_entries.c.contract_id == contract_id)
                      .order_by(ledger_entries.c.sequence))


async def runs(databases: Databases, contract_id: str) -> list:
    return await rows(databases, select(settlement_runs).where(settlement_runs.c.contract_id == contract_id))


async def posted(pipeline, contract_id: str) -> list[ReceivablesPosted]:
    """The contract's receivables.posted events, in order (other tests put hostile messages on the topic)."""
    events = await read_events(pipeline.kafka.bootstrap_servers, topics.RECEIVABLES_POSTED, ReceivablesPosted)
    return [event for event in events if event.contract_id == contract_id]


async def wait_posted(pipeline, contract_id: str, expected: int) -> list[ReceivablesPosted]:
    found: list[ReceivablesPosted] = []

    async def arrived() -> bool:
        found[:] = await posted(pipeline, contract_id)
        return len(found) >= expected

    await wait_until(arrived, timeout_s=DEADLINE_S, what=f"{expected} receivables.posted for {contract_id}")
    return found


# --- billing runs ----------------------------------------------------------------------------------


async def test_overlapping_and_repeated_runs_settle_each_item_once(pipeline, broker, databases):
    contract = new_contract_id("overlap")
    await given_contract(databases, contract, {"api-calls": "0.0125", "storage-gb": "0.10"})
    await publish(broker, topics.USAGE_RECORDED,
                  used_now(contract, "api-calls", "12000"),  # 150.00
                  used_now(contract, "api-calls", "333"),  # 4.1625 -> 4.16
                  used_now(contract, "storage-gb", "0.5"))  # 0.05
    items = await items_rated_from(databases, contract, 3)

    # The same request twice, another request, and the period's close announced twice and applied
    # in-process as well, all at once.
    closed = period_closed(contract, sum(items.values()), "154.21")
    repeated, another = run_request(contract), run_request(contract)
    await asyncio.gather(
        publish(broker, topics.BILLING_RUNS_REQUESTED, repeated, repeated, another),
        publish(broker, topics.PERIODS_CLOSED, closed, closed),
        operate(databases["settlement"], handlers.bill_closed_period, closed),
    )
    await wait_items(databases, contract, sum(items.values()), settled=True)
    invoice = await wait_for_invoice(databases, contract)

    # Whichever came first settled all three; every other run found nothing and left no trace.
    [run] = await runs(databases, contract)
    assert (run.status, run.total) == ("complete", Decimal("154.21"))
    assert run.settlement_run_id in {derive_id(repeated.event_id, "settlement-run"),
                                     derive_id(another.event_id, "settlement-run"),
                                     domain.scheduled_run_id(contract, closed.period_end)}
    [receivable] = await entries(databases, contract)
    assert (receivable.entry_type, receivable.amount, receivable.settlement_run_id) == (
        "Receivable", Decimal("154.21"), run.settlement_run_id)
    [event] = await wait_posted(pipeline, contract, 1)
    assert [(item.item_code, item.item_count, item.net) for item in event.items] == [
        ("api-calls", items["api-calls"], Decimal("154.16")), ("storage-gb", 1, Decimal("0.05"))] \
        and event.total == Decimal("154.21")
    assert (invoice.net_total, invoice.settlement_run_id) == (Decimal("154.21"), run.settlement_run_id)

    # Announced or asked again later: nothing is left to settle.
    assert await operate(databases["settlement"], handlers.bill_closed_period, closed) == []
    await publish(broker, topics.BILLING_RUNS_REQUESTED, repeated)
    late = run_request(contract)
    await publish(broker, topics.BILLING_RUNS_REQUESTED, late)
    await wait_until(lambda: _applied(databases, late.event_id), timeout_s=DEADLINE_S, what="the late request")
    assert len(await runs(databases, contract)) == 1 and len(await entries(databases, contract)) == 1


async def _applied(databases: Databases, event_id: uuid.UUID) -> bool:
    return await databases.has_exactly("settlement", messaging.inbox, 1, messaging.inbox.c.event_id == event_id)


async def test_a_closed_periods_run_that_crashes_leaves_nothing_and_its_retry_has_the_same_result(
        broker, databases, monkeypatch):
    contract = new_contract_id("crash")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    await publish(broker, topics.USAGE_RECORDED, used_now(contract, "api-calls", "800"),  # 10.00
                  used_now(contract, "api-calls", "1"))  # 0.0125 -> 0.01
    [items] = (await items_rated_from(databases, contract, 2)).values()
    closed = period_closed(contract, items, "10.01")
    expected_run = domain.scheduled_run_id(contract, closed.period_end)

    async def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while posting")

    with monkeypatch.context() as patched:
        patched.setattr(store, "save_postings", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            await operate(databases["settlement"], handlers.bill_closed_period, closed)
    assert await runs(databases, contract) == [] and await entries(databases, contract) == []
    assert await databases.has_exactly("settlement", billable_items, items, billable_items.c.contract_id == contract,
                                       billable_items.c.settlement_run_id.is_(None))

    # The consumer applies the announcement again: the same run, from scratch.
    assert len(await operate(databases["settlement"], handlers.bill_closed_period, closed)) == 1
    [run] = await runs(databases, contract)
    assert (run.settlement_run_id, run.status, run.total, run.period_start, run.period_end, run.requested_by,
            run.cutoff) == (expected_run, "complete", Decimal("10.01"), *current_period(), "schedule", closed.ends_at)
    [receivable] = await entries(databases, contract)
    assert (receivable.entry_id, receivable.amount, receivable.balance) == (
        derive_id(expected_run, "receivable"), Decimal("10.01"), Decimal("10.01"))
    await wait_items(databases, contract, items, settled=True)


async def test_a_closed_period_waits_parked_until_all_its_items_have_arrived(pipeline, broker, databases):
    contract = new_contract_id("waits")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    # Rating billed three items into the period; the announcement overtakes the last one.
    first, second, third = (rated(contract, "licence", net, current_period(), ChargeKind.ONE_TIME)
                            for net in ("10.00", "20.00", "30.00"))
    await publish(broker, topics.ITEMS_RATED, first, second)
    await wait_items(databases, contract, 2)
    await publish(broker, topics.PERIODS_CLOSED, period_closed(contract, 3, "60.00"))
    await wait_until(lambda: databases.has_exactly("settlement", messaging.parked, 1,
                                                   messaging.parked.c.key == contract),
                     timeout_s=DEADLINE_S, what="the announcement to be parked")
    assert await runs(databases, contract) == []

    await publish(broker, topics.ITEMS_RATED, third)
    await wait_items(databases, contract, 3, settled=True)
    [run] = await runs(databases, contract)
    assert (run.total, run.requested_by) == (Decimal("60.00"), "schedule")
    assert await databases.has_exactly("settlement", messaging.parked, 0, messaging.parked.c.key == contract)


async def test_a_request_for_a_later_cutoff_is_pending_until_the_scheduler_clock_passes_it(pipeline, broker,
                                                                                           databases):
    contract = new_contract_id("pending")
    await given_contract(databases, contract, {"api-calls": "0.0125"})
    await publish(broker, topics.USAGE_RECORDED, used_now(contract, "api-calls", "2000"))  # 25.00
    await wait_items(databases, contract, 1)
    cutoff = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    request = run_request(contract, cutoff=cutoff)
    await publish(broker, topics.BILLING_RUNS_REQUESTED, request)
    await wait_for(databases, settlement_runs, 1, "the pending run", settlement_runs.c.contract_id == contract)
    [run] = await runs(databases, contract)
    assert (run.settlement_run_id, run.status, run.cutoff) == (
        derive_id(request.event_id, "settlement-run"), "pending", cutoff)

    # The worker's scheduler loop, on a clock the test moves: nothing is due before the cutoff. It
    # looks only at this test's contract: other tests' contracts are not this test's to bill.
    clock = [cutoff - timedelta(minutes=5)]
    ticking = scheduler(databases["settlement"], interval_s=0.1, clock=lambda: clock[0], contract_ids=[contract])
    ticking.start()
    try:
        await asyncio.sleep(0.5)
        [run] = await runs(databases, contract)
        assert run.status == "pending"
        clock[0] = cutoff
        await wait_for(databases, settlement_runs, 1, "the run to complete",
                       settlement_runs.c.contract_id == contract, settlement_runs.c.status == "complete")
    finally:
        await ticking.stop()
    [run] = await runs(databases, contract)
    assert (run.settlement_run_id, run.total) == (derive_id(request.event_id, "settlement-run"), Decimal("25.00"))
    [event] = await wait_posted(pipeline, contract, 1)
    assert (event.cutoff, event.total) == (cutoff, Decimal("25.00"))
    shown = subprocess.run([sys.executable, "-m", "services.settlement.admin", "runs", contract],
                           capture_output=True, text=True, env=os.environ, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[:2] == [str(run.settlement_run_id), "complete"]


# --- the ledger, credits and the reconciliation ---------------------------------------------------


async def test_ledger_balances_follow_receivables_payments_a_chargeback_a_refund_and_a_credit(pipeline, broker,
                                                                                            databases):
    contract = new_contract_id("ledger")
    other = new_contract_id("ledger-usd")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125", "storage-gb": "0.10"})
    await given_contract(databases, other, {"sms": "0.075"}, currency="USD", customer_id=customer)
    # The first use is rated alone (an item of 150.00, credited below); the second adds to its period.
    await publish(broker, topics.USAGE_RECORDED, used_now(contract, "api-calls", "12000"))  # 150.00
    await wait_for_settlement_to_hold(databases, contract, 1)
    await publish(broker, topics.USAGE_RECORDED,
                  used_now(contract, "api-calls", "333"),  # 12,333 x 0.0125 = 154.16: 4.16 more
                  used_now(contract, "storage-gb", "0.5"),  # 0.05
                  used_now(other, "sms", "7"))  # 0.525 -> 0.53 USD
    await wait_for_settlement_to_hold(databases, contract, 3)
    await wait_for_settlement_to_hold(databases, other, 1)
    await publish(broker, topics.BILLING_RUNS_REQUESTED, run_request(contract), run_request(other))
    invoice = await wait_for_invoice(databases, contract)

    async def money_moved(kind: PaymentKind, payment_id: str, amount: str) -> None:
        event = PaymentReceived(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract, payment_id=payment_id,
            kind=kind, provider="test-bank", customer_id=customer, currency="EUR", amount=Decimal(amount),
            invoice_number=invoice.number,
        )
        await publish(broker, topics.PAYMENTS_RECEIVED, event)
        await wait_for(databases, ledger_entries, 1, f"{kind} {payment_id}", ledger_entries.c.payment_id == payment_id,
                       ledger_entries.c.entry_type == handlers.ENTRY_TYPE_OF_PAYMENT[kind].value)

    await money_moved(PaymentKind.PAYMENT, f"{contract}-P1", "100.00")
    await money_moved(PaymentKind.CHARGEBACK, f"{contract}-P1", "100.00")
    await money_moved(PaymentKind.REFUND, f"{contract}-R1", "20.00")

    [item] = await rows(databases, select(billable_items).where(billable_items.c.contract_id == contract,
                                                                billable_items.c.net == Decimal("150.00")))
    credit_id = granted_credit_id(item.billable_item_id, Decimal("4.21"), "outage")
    granted = await operate(databases["settlement"], handlers.grant_credit, item.billable_item_id, Decimal("4.21"),
                            "outage", credit_id, datetime.now(UTC))
    again = await operate(databases["settlement"], handlers.grant_credit, item.billable_item_id, Decimal("4.21"),
                          "outage", credit_id, datetime.now(UTC))
    assert len(granted) == 1 and again == []
    with pytest.raises(Rejected, match=r"145.79 EUR more at most"):
        await operate(databases["settlement"], handlers.grant_credit, item.billable_item_id, Decimal("150.00"),
                      "too much", uuid.uuid4(), datetime.now(UTC))

    ledger = await entries(databases, contract)
    assert [(e.sequence, e.entry_type, e.amount, e.balance) for e in ledger] == [
        (1, "Receivable", Decimal("154.21"), Decimal("154.21")),
        (2, "Payment", Decimal("-100.00"), Decimal("54.21")),  # paid in part
        (3, "Chargeback", Decimal("100.00"), Decimal("154.21")),  # the payment came back
        (4, "Refund", Decimal("20.00"), Decimal("174.21")),  # money paid out to the customer
        (5, "CreditMemo", Decimal("-4.21"), Decimal("170.00")),
    ]
    receivable, payment, _, _, memo = ledger
    assert (receivable.settlement_run_id, receivable.customer_id) == (invoice.settlement_run_id, customer)
    assert (payment.payment_id, payment.document_number, payment.description) == (
        f"{contract}-P1", invoice.number, f"Transaction: {contract}-P1")
    [credit_event] = [event for event in await wait_posted(pipeline, contract, 2) if event.credits]
    [line] = credit_event.credits
    assert (memo.settlement_run_id, line.credit_id, line.reason, line.net, line.credited_settlement_run_id) == (
        credit_event.settlement_run_id, credit_id, CreditReason.CREDIT, Decimal("4.21"), invoice.settlement_run_id)
    assert (credit_event.items, credit_event.ledger_balance) == ([], Decimal("170.00"))
    [account] = await rows(databases, select(contract_accounts).where(contract_accounts.c.contract_id == contract))
    assert account.balance == Decimal("170.00")

    await wait_items(databases, other, 1, settled=True)
    async with databases["settlement"].transaction() as session:
        ledgers = await store.customer_summary(session, customer)
    summary = domain.totals_per_currency(ledgers)
    eur = summary["EUR"]
    assert [str(figure) for figure in (eur.receivables, eur.credit_memos, eur.payments, eur.chargebacks, eur.refunds,
                                       eur.balance)] == [
        "154.21 EUR", "4.21 EUR", "100.00 EUR", "100.00 EUR", "20.00 EUR", "170.00 EUR"]
    assert str(summary["USD"].balance) == "0.53 USD"
    shown = subprocess.run([sys.executable, "-m", "services.settlement.admin", "customer-summary", customer],
                           capture_output=True, text=True, env=os.environ, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:2] == ["total", "EUR"] and line.split()[-2:] == ["170.00", "EUR"]
               for line in shown.stdout.splitlines()), shown.stdout

    # Everything rated was settled and invoiced, and every balance is what its entries and payments say,
    # once payments has the credit note.
    await wait_until(lambda: databases.has_exactly("payments", payments, 1, payments.c.contract_id == contract,
                                                   payments.c.kind == "credit_note"),
                     timeout_s=DEADLINE_S, what="the credit note in payments")
    reconciled = subprocess.run([sys.executable, "-m", "ops.cli", "reconcile", "--contract", contract,
                                 "--contract", other], capture_output=True, text=True, env=os.environ, timeout=60)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "2 contract(s), 0 difference(s)" in reconciled.stdout
    [eur_total] = [line for line in reconciled.stdout.splitlines() if line.startswith("TOTAL EUR")]
    # rated, settled, unsettled, difference, receivables, credit memos, net VAT, payments, chargebacks, fees,
    # refunds, chargebacks reversed, =, account, diff, invoiced, credit notes, open - credit, diff
    assert eur_total.split()[3:] == ["154.21", "154.21", "0.00", "0.00", "154.21", "4.21", "0.00", "100.00",
                                     "100.00", "0.00", "20.00", "0.00", "170.00", "170.00", "0.00", "154.21", "4.21",
                                     "170.00", "0.00"]


async def test_the_reconciliation_reports_what_rating_never_rated(broker, databases):
    contract = new_contract_id("unrated")
    await given_contract(databases, contract, {"licence": "30.00"})
    await publish(broker, topics.ITEMS_RATED, rated(contract, "licence", "30.00", NOVEMBER))
    await wait_items(databases, contract, 1)
    table, problems = await reconcile([contract])
    assert problems == 1
    assert f"DIFFERENCE {contract}: rated 0.00 != settled 0.00 + unsettled 30.00" in table


async def test_the_reconciliation_reports_a_receivable_that_never_became_an_invoice(databases):
    """A run settled and posted, as if its receivables.posted never reached invoicing: written into
    settlement's database directly, for a contract no other service knows."""
    contract, run_id, now = new_contract_id("stranded"), uuid.uuid4(), datetime.now(UTC)
    customer = f"CUST-{contract}"
    async with databases["settlement"].transaction() as session:
        await session.execute(insert(contract_accounts).values(
            contract_id=contract, customer_id=customer, currency="EUR", balance=Decimal("30.00"), last_sequence=1))
        await session.execute(insert(settlement_runs).values(
            settlement_run_id=run_id, contract_id=contract, customer_id=customer, currency="EUR", cutoff=now,
            status=domain.RunStatus.COMPLETE.value, total=Decimal("30.00"), settled_at=now))
        await session.execute(insert(billable_items).values(
            billable_item_id=uuid.uuid4(), contract_id=contract, customer_id=customer, item_code="licence",
            description="Licence", currency="EUR", quantity=Decimal(1), unit_price=Decimal("30.00"),
            net=Decimal("30.00"), period_start=NOVEMBER[0], period_end=NOVEMBER[1], occurred_at=now,
            settlement_run_id=run_id, charge_kind=ChargeKind.RECURRING_FEE.value))
        await session.execute(insert(ledger_entries).values(
            entry_id=uuid.uuid4(), contract_id=contract, customer_id=customer, sequence=1,
            entry_type=domain.EntryType.RECEIVABLE.value, amount=Decimal("30.00"), currency="EUR",
            balance=Decimal("30.00"), description=f"Settlement run {run_id}", settlement_run_id=run_id,
            booked_at=now))

    reconciled = subprocess.run([sys.executable, "-m", "ops.cli", "reconcile", "--contract", contract],
                                capture_output=True, text=True, env=os.environ, timeout=60)
    assert reconciled.returncode == 1, reconciled.stdout + reconciled.stderr
    assert reconciled.stdout.splitlines()[-6:] == [
        "1 contract(s), 5 difference(s)",
        f"  DIFFERENCE {contract}: rated 0.00 != settled 30.00 + unsettled 0.00",
        f"  DIFFERENCE {contract}: Receivable entries 30.00 EUR != invoices' net 0.00 EUR",
        f"  DIFFERENCE {contract}: ledger balance 30.00 EUR != documents' gross - payments + chargebacks + fees "
        "+ refunds - chargeback reversals 0.00 EUR",
        f"  DIFFERENCE {contract}: ledger balance 30.00 EUR != payments' open items 0.00 - unassigned credit 0.00 "
        "= 0.00",
        f"  DIFFERENCE {contract}: settlement run {run_id} settled 30.00 EUR, but invoicing has no invoice for it",
    ]


async def test_cancelling_a_contract_credits_its_prepaid_fees_beyond_the_last_day_once(pipeline, broker, databases):
    contract = new_contract_id("cancel")
    spec = await given_contract(databases, contract, {"licence": "100.00", "api-calls": "0.0125"})
    licence = rated(contract, "licence", "100.00", NOVEMBER)
    usage_item = rated(contract, "api-calls", "12.34", NOVEMBER, kind=ChargeKind.USAGE)
    await publish(broker, topics.ITEMS_RATED, licence, usage_item)
    await wait_items(databases, contract, 2)
    await publish(broker, topics.BILLING_RUNS_REQUESTED, run_request(contract))
    await wait_items(databases, contract, 2, settled=True)
    [billed] = await wait_posted(pipeline, contract, 1)

    # The operator cancels the contract as of 10 November, through rating.
    cancelled = ContractSpec.model_validate({**spec.model_dump(), "status": "cancelled", "ends_on": "2026-11-10"})
    await save_contracts(databases["rating"], [cancelled])
    await wait_for(databases, credits, 1, "the termination credit", credits.c.contract_id == contract)

    # 100.00 x 20 days after 10 November / 30 days = 66.666... -> 66.67; usage is not prepaid.
    [credit] = await rows(databases, select(credits).where(credits.c.contract_id == contract))
    assert (credit.billable_item_id, credit.reason, credit.net, credit.period_start, credit.period_end,
            credit.credited_settlement_run_id) == (licence.billable_item_id, "termination", Decimal("66.67"),
                                                   date(2026, 11, 11), date(2026, 11, 30), billed.settlement_run_id)
    _, termination = await wait_posted(pipeline, contract, 2)
    assert (termination.items, termination.credit_total, termination.ledger_balance) == (
        [], Decimal("66.67"), Decimal("45.67"))
    assert [(line.reason, line.billable_item_id) for line in termination.credits] == [
        (CreditReason.TERMINATION, licence.billable_item_id)]

    # December's fee, already rated in advance, arrives after the cancellation: billed and credited in full.
    december = rated(contract, "licence", "100.00", (date(2026, 12, 1), date(2026, 12, 31)))
    await publish(broker, topics.ITEMS_RATED, december)
    await wait_items(databases, contract, 3)
    await publish(broker, topics.BILLING_RUNS_REQUESTED, run_request(contract))
    await wait_for(databases, credits, 2, "December's termination credit", credits.c.contract_id == contract)
    _, _, both = await wait_posted(pipeline, contract, 3)
    assert (both.total, both.credit_total, both.ledger_balance) == (Decimal("100.00"), Decimal("100.00"),
                                                                    Decimal("45.67"))
    assert both.credits[0].credited_settlement_run_id == both.settlement_run_id

    # Saving the cancelled contract again (a newer revision) credits nothing twice.
    again = await save_contracts(databases["rating"], [cancelled])
    await wait_until(lambda: _contract_revision(databases, contract, again[0]), timeout_s=DEADLINE_S,
                     what="the newer revision in settlement's replica")
    assert len(await rows(databases, select(credits).where(credits.c.contract_id == contract))) == 2
    assert [(e.entry_type, e.amount, e.balance) for e in await entries(databases, contract)] == [
        ("Receivable", Decimal("112.34"), Decimal("112.34")),
        ("CreditMemo", Decimal("-66.67"), Decimal("45.67")),
        ("Receivable", Decimal("100.00"), Decimal("145.67")),
        ("CreditMemo", Decimal("-100.00"), Decimal("45.67")),
    ]


async def _contract_revision(databases: Databases, contract_id: str, revision: int) -> bool:
    return await databases.has_exactly("settlement", contracts, 1, contracts.c.contract_id == contract_id,
                                       contracts.c.revision == revision)


async def test_a_cancelled_order_is_credited_in_full_once(pipeline, broker, databases):
    contract = new_contract_id("order")
    await given_contract(databases, contract, {"setup": "49.90", "api-calls": "0.0125"})
    setup = rated(contract, "setup", "49.90", NOVEMBER, kind=ChargeKind.ONE_TIME)
    calls = rated(contract, "api-calls", "7.50", NOVEMBER, kind=ChargeKind.USAGE)
    await publish(broker, topics.ITEMS_RATED, setup, calls)
    await wait_items(databases, contract, 2)
    with pytest.raises(Rejected, match="has not been billed yet"):
        await operate(databases["settlement"], handlers.cancel_order, [setup.billable_item_id], datetime.now(UTC))
    await publish(broker, topics.BILLING_RUNS_REQUESTED, run_request(contract))
    await wait_items(databases, contract, 2, settled=True)

    now = datetime.now(UTC)
    first = await operate(databases["settlement"], handlers.cancel_order, [setup.billable_item_id], now)
    repeated = await operate(databases["settlement"], handlers.cancel_order, [setup.billable_item_id], now)
    assert len(first) == 1 and repeated == []
    [event] = [message.event for message in first]
    assert isinstance(event, ReceivablesPosted)
    assert [(line.reason, line.net, line.item_code) for line in event.credits] == [
        (CreditReason.ORDER_CANCELLED, Decimal("49.90"), "setup")]
    assert [(e.entry_type, e.balance) for e in await entries(databases, contract)] == [
        ("Receivable", Decimal("57.40")), ("CreditMemo", Decimal("7.50"))]
    await wait_posted(pipeline, contract, 2)


async def test_a_payment_booked_in_error_is_reversed_by_a_new_entry_once(broker, databases):
    contract = new_contract_id("reverse")
    payment = PaymentReceived(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract, payment_id=f"{contract}-P1",
        kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=f"CUST-{contract}", currency="EUR",
        amount=Decimal("30.00"),
    )
    await publish(broker, topics.PAYMENTS_RECEIVED, payment)
    await wait_for(databases, ledger_entries, 1, "the payment", ledger_entries.c.contract_id == contract)
    [original] = await entries(databases, contract)

    async def reverse(entry_id: uuid.UUID):
        async with databases["settlement"].transaction() as session:
            return await handlers.reverse_entry(session, entry_id, "wrong contract", datetime.now(UTC))

    reversal = await reverse(original.entry_id)
    assert await reverse(original.entry_id) is None
    with pytest.raises(Rejected, match="itself a reversal"):
        await reverse(reversal.entry_id)
    assert [(e.entry_type, e.amount, e.balance, e.reverses_entry_id) for e in await entries(databases, contract)] == [
        ("Payment", Decimal("-30.00"), Decimal("-30.00"), None),
        ("Payment", Decimal("30.00"), Decimal("0.00"), original.entry_id),
    ]
    # Settlement's ledger is corrected, but payments still holds the 30.00 as the customer's credit: the
    # reconciliation shows it until payments is corrected too.
    await wait_until(lambda: databases.has_exactly("payments", payments, 1,
                                                   payments.c.payment_id == payment.payment_id),
                     timeout_s=DEADLINE_S, what="the payment in payments")
    table, problems = await reconcile([contract])
    assert table.splitlines()[-3:] == [
        f"  DIFFERENCE {contract}: Payment entries 0.00 EUR != payments' payments 30.00 EUR",
        f"  DIFFERENCE {contract}: ledger balance 0.00 EUR != documents' gross - payments + chargebacks + fees "
        "+ refunds - chargeback reversals -30.00 EUR",
        f"  DIFFERENCE {contract}: ledger balance 0.00 EUR != payments' open items 0.00 - unassigned credit 30.00 "
        "= -30.00"]
    assert problems == 3
