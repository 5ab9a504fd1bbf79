"""One billing clock, end to end: contracts through rating's HTTP API, usage on usage.recorded, and
rating's period close ticked with a clock of the test's choosing, exactly as the worker's loop
ticks it with the system clock (the workers' own loops are off in the suite). A closed period is
announced on periods.closed, settlement bills it, invoicing documents it, payments opens it.

Every contract bills a German customer from the German seller (19 % VAT) in the seller's business
time zone, Europe/Berlin, unless it says otherwise. Amounts are hand-computed; every contract here
must reconcile at the end of the suite.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from ops.observe import read_events, wait_until
from services.invoicing.tables import document_lines, documents
from services.payments.tables import open_items
from services.rating.scheduler import close_due
from services.rating.tables import billable_items as rated_items
from services.settlement.tables import billable_items as settled_items
from services.settlement.tables import ledger_entries
from shared import topics
from shared.events import BillingRunRequested, ReceivablesPosted, UsageRecorded
from shared.periods import business_day
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import DEADLINE_S, new_contract_id, pdf_text_via_admin, wait_for_settlement_to_hold

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

D = Decimal
GRACE_DAYS = 3
BERLIN_SUMMER = timezone(timedelta(hours=2))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def tick(day: str) -> datetime:
    """The period close's clock: noon UTC of `day`."""
    return datetime.fromisoformat(f"{day}T12:00:00+00:00")


async def put_contract(rating_api_url: str, contract: str, **terms) -> None:
    body = {"customer": {"customer_id": f"CUST-{contract}", "name": f"Customer of {contract}", "country": "DE",
                         "vat_id": "DE811907980"}, "currency": "EUR", **terms}
    async with httpx.AsyncClient(timeout=10, headers=as_role()) as client:
        answer = await client.put(f"{rating_api_url}/contracts/{contract}", json=body)
    assert answer.status_code == 200, answer.text


def api_calls(**pricing) -> list[dict]:
    return [{"item_code": "api", "description": "API calls", "pricing": pricing}]


async def send_usage(broker, contract: str, *used: tuple[str, str | datetime], item_code: str = "api") -> None:
    for quantity, occurred_at in used:
        event = UsageRecorded(event_id=uuid.uuid4(), occurred_at=occurred_at if isinstance(occurred_at, datetime)
                              else at(occurred_at), contract_id=contract, item_code=item_code, quantity=D(quantity))
        await publish_event(broker, topics.USAGE_RECORDED, event, event.key)


async def rows(databases, service: str, statement) -> list:
    async with databases[service].transaction() as session:
        return list((await session.execute(statement)).all())


async def wait_rated(databases, contract: str, count: int) -> list:
    await wait_until(lambda: databases.has_exactly("settlement", settled_items, count,
                                                   settled_items.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what=f"{count} item(s) of {contract} in settlement")
    return await rows(databases, "rating", select(rated_items).where(rated_items.c.contract_id == contract))


async def close(databases, contract: str, day: str) -> list:
    return await close_due(databases["rating"], tick(day), grace_days=GRACE_DAYS, contract_ids=[contract])


async def wait_documents(databases, contract: str, count: int) -> list:
    found: list = []

    async def issued() -> bool:
        found[:] = await rows(databases, "invoicing", select(documents).where(documents.c.contract_id == contract)
                              .order_by(documents.c.document_type.desc(), documents.c.number))
        return len(found) >= count

    await wait_until(issued, timeout_s=DEADLINE_S, what=f"{count} document(s) for {contract}")
    assert len(found) == count, [row.number for row in found]
    return found


async def lines_of(databases, document_id: uuid.UUID) -> list:
    return await rows(databases, "invoicing", select(document_lines).where(document_lines.c.document_id == document_id)
                      .order_by(document_lines.c.line_no))


def issued_today() -> date:
    return business_day(datetime.now(UTC), "Europe/Berlin")


async def test_a_quarterly_and_an_anniversary_contract_get_one_invoice_per_closed_period_on_berlin_days(
        broker, databases, rating_api_url, reconciled_at_the_end):
    quarterly, anniversary = new_contract_id("quarterly"), new_contract_id("anniversary")
    reconciled_at_the_end.update({quarterly, anniversary})
    await put_contract(rating_api_url, quarterly, starts_on="2026-04-01", billing_cycle="calendar", period_months=3,
                       items=api_calls(unit_price="0.10"))
    await put_contract(rating_api_url, anniversary, starts_on="2026-09-15", billing_cycle="anniversary",
                       items=api_calls(unit_price="0.10"))
    await send_usage(broker, quarterly,
                     ("100", "2026-05-15T10:00:00+00:00"),  # Q2: 10.00
                     ("50", "2026-09-30T21:30:00+00:00"),  # 23:30 in Berlin, still Q3: 5.00
                     ("30", "2026-10-01T00:30:00+02:00"))  # 00:30 in Berlin on 1 October: Q4
    await send_usage(broker, anniversary,
                     ("20", "2026-10-14T21:59:00+00:00"),  # 23:59 in Berlin on the 14th: 15 Sep..14 Oct, 2.00
                     ("40", "2026-10-14T22:01:00+00:00"),  # 00:01 in Berlin on the 15th: 15 Oct..14 Nov, 4.00
                     ("10", "2026-11-20T08:00:00+00:00"))  # 15 Nov..14 Dec: open
    by_quantity = {row.quantity: row for row in await wait_rated(databases, quarterly, 3)}
    assert [(by_quantity[D(q)].period_start, by_quantity[D(q)].period_end) for q in ("100", "50", "30")] == [
        (date(2026, 4, 1), date(2026, 6, 30)), (date(2026, 7, 1), date(2026, 9, 30)),
        (date(2026, 10, 1), date(2026, 12, 31))]
    await wait_rated(databases, anniversary, 3)

    # On 2 December, 3 grace days on: Q2 and Q3, and the anniversary periods up to 14 November, are due.
    emitted = [*await close(databases, quarterly, "2026-12-02"), *await close(databases, anniversary, "2026-12-02")]
    assert sorted((message.event.contract_id == quarterly, message.event.period_start, message.event.item_count,
                   message.event.net_total) for message in emitted if message.topic == topics.PERIODS_CLOSED) == [
        (False, date(2026, 9, 15), 1, D("2.00")), (False, date(2026, 10, 15), 1, D("4.00")),
        (True, date(2026, 4, 1), 1, D("10.00")), (True, date(2026, 7, 1), 1, D("5.00"))]

    expected = {
        quarterly: [((date(2026, 4, 1), date(2026, 6, 30)), D("10.00"), D("1.90")),
                    ((date(2026, 7, 1), date(2026, 9, 30)), D("5.00"), D("0.95"))],
        anniversary: [((date(2026, 9, 15), date(2026, 10, 14)), D("2.00"), D("0.38")),
                      ((date(2026, 10, 15), date(2026, 11, 14)), D("4.00"), D("0.76"))],
    }
    for contract, invoices in expected.items():
        found = await wait_documents(databases, contract, 2)
        periods = [[(line.period_start, line.period_end) for line in await lines_of(databases, row.document_id)]
                   for row in found]
        assert sorted(((period[0], row.net_total, row.tax_total) for row, period in zip(found, periods, strict=True))) == invoices
        assert {row.issue_date for row in found} == {issued_today()}
        assert all(row.number.startswith(f"R{issued_today().year}-") for row in found)
        await wait_until(lambda c=contract: databases.has_exactly("payments", open_items, 2,
                                                                   open_items.c.contract_id == c),
                         timeout_s=DEADLINE_S, what=f"the open items of {contract}")
    # What is still open stays unsettled, in the period every service agrees on.
    [open_q4] = await rows(databases, "settlement", select(settled_items).where(
        settled_items.c.contract_id == quarterly, settled_items.c.settlement_run_id.is_(None)))
    assert (open_q4.net, open_q4.period_start, open_q4.period_end) == (D("3.00"), date(2026, 10, 1),
                                                                     date(2026, 12, 31))

    # Ticking again closes nothing and bills nothing twice.
    assert await close(databases, quarterly, "2026-12-02") == []


async def test_a_minimum_top_up_and_usage_late_within_the_grace_days_are_on_the_periods_own_invoice(
        broker, databases, rating_api_url, reconciled_at_the_end):
    contract = new_contract_id("grace")
    reconciled_at_the_end.add(contract)
    await put_contract(rating_api_url, contract, starts_on="2026-10-01",
                       items=api_calls(unit_price="1.00", minimum="50"))
    await send_usage(broker, contract, ("12", "2026-10-10T09:00:00+00:00"))  # 12.00
    await wait_rated(databases, contract, 1)
    assert await close(databases, contract, "2026-11-02") == []  # October ended, but its grace days have not

    # Reported on 2 November for 31 October (23:00 in Berlin): inside the grace days, so October's.
    await send_usage(broker, contract, ("5", "2026-10-31T22:00:00+00:00"))  # 5.00
    await wait_rated(databases, contract, 2)
    emitted = await close(databases, contract, "2026-11-04")
    [top_up] = [message.event for message in emitted if message.topic == topics.ITEMS_RATED]
    assert (top_up.net, top_up.period_start) == (D("33.00"), date(2026, 10, 1))  # 50.00 - 17.00

    # Usage for October reported after the close: billed in November, naming October.
    await send_usage(broker, contract, ("3", "2026-10-20T09:00:00+00:00"))
    late = [row for row in await wait_rated(databases, contract, 4) if row.late_for_period_start is not None]
    assert [(row.net, row.period_start, row.late_for_period_start) for row in late] == [
        (D("0.00"), date(2026, 11, 1), date(2026, 10, 1))]  # the minimum already paid for it

    [invoice] = await wait_documents(databases, contract, 1)
    assert (invoice.net_total, invoice.tax_total, invoice.gross_total) == (D("50.00"), D("9.50"), D("59.50"))
    assert sorted((line.net, line.period_start, line.period_end) for line in await lines_of(
        databases, invoice.document_id)) == [(D("17.00"), date(2026, 10, 1), date(2026, 10, 31)),
                                             (D("33.00"), date(2026, 10, 1), date(2026, 10, 31))]


async def test_a_volume_priced_period_whose_total_falls_after_it_was_billed_ends_in_a_credit_note(
        broker, databases, rating_api_url, reconciled_at_the_end):
    contract = new_contract_id("volume")
    reconciled_at_the_end.add(contract)
    await put_contract(rating_api_url, contract, starts_on="2026-10-01", items=api_calls(
        model="volume", tiers=[{"from_quantity": "0", "to_quantity": "1000", "unit_price": "0.10"},
                               {"from_quantity": "1000", "unit_price": "0.08"}]))
    await send_usage(broker, contract, ("1000", "2026-10-10T09:00:00+00:00"))  # 1,000 x 0.10 = 100.00
    await wait_rated(databases, contract, 1)
    # "Create vouchers" on 20 October: the 100.00 is invoiced.
    request = BillingRunRequested(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), contract_id=contract,
                                  cutoff=at("2026-10-20T00:00:00+02:00"), requested_by="tests")
    await publish_event(broker, topics.BILLING_RUNS_REQUESTED, request, request.key)
    [invoice] = await wait_documents(databases, contract, 1)
    assert (invoice.document_type, invoice.net_total, invoice.gross_total) == ("invoice", D("100.00"), D("119.00"))
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 2,
                                                   ledger_entries.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the invoice's VAT on the ledger")

    # One more call reaches the 0.08 band for all 1,001: 80.08, so the period's total falls by 19.92.
    await send_usage(broker, contract, ("1", "2026-10-25T09:00:00+00:00"))
    [drop] = [row for row in await wait_rated(databases, contract, 2) if row.net < 0]
    assert drop.net == D("-19.92")
    await close(databases, contract, "2026-11-04")

    invoice, credit_note = await wait_documents(databases, contract, 2)
    assert (credit_note.document_type, credit_note.net_total, credit_note.tax_total, credit_note.gross_total,
            credit_note.corrects_number) == ("credit_note", D("19.92"), D("3.78"), D("23.70"), invoice.number)
    [line] = await lines_of(databases, credit_note.document_id)
    assert (line.quantity, line.unit_price, line.net, line.period_start) == (
        D(1), D("19.92"), D("19.92"), date(2026, 10, 1))
    # The ledger: 100.00 + 19.00 VAT invoiced, 19.92 + 3.78 VAT credited: 95.30 owed, 1,001 x 0.08 + VAT.
    await wait_until(lambda: databases.has_exactly("settlement", ledger_entries, 4,
                                                   ledger_entries.c.contract_id == contract),
                     timeout_s=DEADLINE_S, what="the credit note's VAT on the ledger")
    entries = await rows(databases, "settlement", select(ledger_entries.c.entry_type, ledger_entries.c.amount,
                                                         ledger_entries.c.balance)
                         .where(ledger_entries.c.contract_id == contract).order_by(ledger_entries.c.sequence))
    assert [tuple(entry) for entry in entries] == [
        ("Receivable", D("100.00"), D("100.00")), ("Tax", D("19.00"), D("119.00")),
        ("CreditMemo", D("-19.92"), D("99.08")), ("TaxCredit", D("-3.78"), D("95.30"))]


async def test_five_thousand_events_of_one_period_become_one_invoice_line_whose_arithmetic_holds_on_the_pdf(
        pipeline, broker, databases, rating_api_url, reconciled_at_the_end, tmp_path: Path):
    contract = new_contract_id("volume-5000")
    reconciled_at_the_end.add(contract)
    await put_contract(rating_api_url, contract, starts_on="2026-10-01",
                       items=api_calls(unit_price="0.0125", discount_percent="10"))
    start = at("2026-10-01T00:00:00+02:00")
    # 5,000 calls of 2 units every 8 minutes through October: 10,000 x 0.0125 = 125.00, less 10 %: 112.50.
    await send_usage(broker, contract, *(("2", start + timedelta(minutes=8 * n)) for n in range(5_000)))
    await wait_for_settlement_to_hold(databases, contract, 5_000, D("112.50"))
    items = await rows(databases, "rating", select(rated_items).where(rated_items.c.contract_id == contract))
    await close(databases, contract, "2026-11-04")

    [invoice] = await wait_documents(databases, contract, 1)
    [line] = await lines_of(databases, invoice.document_id)
    assert (line.quantity, line.unit_price, line.discount, line.net) == (D(10_000), D("0.0125"), D("12.50"),
                                                                           D("112.50"))
    assert (invoice.net_total, invoice.tax_total, invoice.gross_total) == (D("112.50"), D("21.38"), D("133.88"))
    [posted] = [event for event in await read_events(pipeline.kafka.bootstrap_servers, topics.RECEIVABLES_POSTED,
                                                     ReceivablesPosted) if event.contract_id == contract]
    # A poll's events are one item: as many as rating made of the month, however the stream was polled.
    assert [(item.item_count, item.net) for item in posted.items] == [(len(items), D("112.50"))]
    assert len(posted.model_dump_json()) < 4_000

    # The events behind the line, page by page from rating's API, each naming the item it is billed in.
    seen, after = [], None
    async with httpx.AsyncClient(timeout=30, headers=as_role()) as client:
        while True:
            page = (await client.get(f"{rating_api_url}/contracts/{contract}/lines/api/2026-10-01/usage",
                                     params={"limit": 1000, **({"after": after} if after else {})})).json()
            seen += page["events"]
            after = page["next"]
            if after is None:
                break
        listed = (await client.get(f"{rating_api_url}/contracts/{contract}/lines/api/2026-10-01/items",
                                   params={"limit": 1000})).json()["items"]
    assert len(seen) == len({event["event_id"] for event in seen}) == 5_000
    assert sum(D(event["quantity"]) for event in seen) == D(10_000)
    assert [event["occurred_at"] for event in seen] == sorted(event["occurred_at"] for event in seen)
    assert {event["billable_item_id"] for event in seen} == {item["billable_item_id"] for item in listed} == {
        str(item.billable_item_id) for item in items}
    assert sum(D(item["net"]) for item in listed) == D("112.50")

    text, _ = pdf_text_via_admin(invoice.number, tmp_path)
    # quantity x list price - discount = net, as printed.
    for printed in ("10000", "0.0125", "12.50", "112.50", "133.88"):
        assert printed in text, (printed, text)
