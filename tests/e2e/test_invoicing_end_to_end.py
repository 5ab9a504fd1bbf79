"""Invoicing end to end: documents with VAT, credit notes, PDFs and gapless numbers under two workers and a crash.

Receivables and contract snapshots are published straight to the broker, as settlement and rating
would publish them, so each test controls the customer's country, VAT id and the items' tax
categories. Expected amounts are hand-computed: line nets summed per VAT rate, tax rounded once
per rate with ROUND_HALF_UP.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import facturx
import pytest
from lxml import etree
from sqlalchemy import func, select

from ops.observe import read_events, wait_until
from ops.workers import Workers
from services.invoicing.einvoice import RAM, RSM
from services.invoicing.tables import (
    contract_terms,
    document_einvoices,
    document_lines,
    document_pdfs,
    document_tax_lines,
    documents,
    messaging,
)
from shared import topics
from shared.events import (
    ContractChanged,
    ContractItemTerms,
    CreditItem,
    CreditReason,
    CustomerProfile,
    DocumentCreated,
    ReceivablesPosted,
    SettlementItem,
    TaxCategory,
    derive_id,
)
from shared.runtime import publish_event
from tests.e2e.conftest import DEADLINE_S, new_contract_id, pdf_text_via_admin

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
ITEMS = {"api-calls": TaxCategory.STANDARD, "compute-h": TaxCategory.STANDARD,
         "storage-gb": TaxCategory.STANDARD, "ebook": TaxCategory.REDUCED}


def customer(contract: str, country: str, vat_id: str | None = None) -> CustomerProfile:
    return CustomerProfile(customer_id=f"CUST-{contract}", name=f"Customer of {contract}", country=country,
                           vat_id=vat_id, address_lines=["Somewhere 1"])


def snapshot(contract: str, profile: CustomerProfile, items: dict[str, TaxCategory] = ITEMS,
             revision: int = 1) -> ContractChanged:
    return ContractChanged(
        event_id=derive_id(f"{contract}:{revision}", "tests.contracts.changed"), occurred_at=datetime.now(UTC),
        contract_id=contract, revision=revision, customer=profile, currency="EUR", starts_on=date(2026, 1, 1),
        ends_on=None, status="active",
        items=[ContractItemTerms(item_code=code, description=code.title(), tax_category=category)
               for code, category in items.items()],
    )


def item(code: str, quantity: str, unit_price: str, net: str) -> SettlementItem:
    return SettlementItem(line_id=uuid.uuid4(), item_count=1, item_code=code, description=code.title(),
                          quantity=Decimal(quantity), unit_price=Decimal(unit_price), net=Decimal(net),
                          period_start=NOVEMBER[0], period_end=NOVEMBER[1])


def credit(code: str, quantity: str, unit_price: str, net: str, corrects_run: uuid.UUID | None,
           reason: CreditReason = CreditReason.CREDIT) -> CreditItem:
    return CreditItem(credit_id=uuid.uuid4(), reason=reason, credited_settlement_run_id=corrects_run, item_code=code,
                      description=code.title(), quantity=Decimal(quantity), unit_price=Decimal(unit_price),
                      net=Decimal(net), period_start=NOVEMBER[0], period_end=NOVEMBER[1])


def posted(contract: str, items: list[SettlementItem], credits: list[CreditItem] = ()) -> ReceivablesPosted:
    total = sum((i.net for i in items), Decimal("0.00"))
    credit_total = sum((c.net for c in credits), Decimal("0.00"))
    now = datetime.now(UTC)
    return ReceivablesPosted(
        event_id=uuid.uuid4(), occurred_at=now, contract_id=contract, settlement_run_id=uuid.uuid4(),
        customer_id=f"CUST-{contract}", currency="EUR", cutoff=now, items=items, total=total, credits=list(credits),
        credit_total=credit_total, ledger_balance=total - credit_total,
    )


async def publish(broker, *events) -> None:
    for event in events:
        topic = topics.CONTRACTS_CHANGED if isinstance(event, ContractChanged) else topics.RECEIVABLES_POSTED
        await publish_event(broker, topic, event, event.key)


async def rows(databases, statement) -> list:
    async with databases["invoicing"].transaction() as session:
        return list((await session.execute(statement)).all())


async def wait_for_documents(databases, contract: str, expected: int) -> list:
    found: list = []

    async def arrived() -> bool:
        found[:] = await rows(databases, select(documents).where(documents.c.contract_id == contract)
                              .order_by(documents.c.document_type.desc(), documents.c.number))
        return len(found) >= expected

    await wait_until(arrived, timeout_s=DEADLINE_S, what=f"{expected} documents of {contract}")
    assert len(found) == expected, f"{contract}: {[doc.number for doc in found]}"
    return found


async def wait_for_terms(databases, contract: str, revision: int) -> None:
    await wait_until(lambda: databases.has_exactly("invoicing", contract_terms, 1, contract_terms.c.contract_id ==
                                                   contract, contract_terms.c.revision == revision),
                     timeout_s=DEADLINE_S, what=f"revision {revision} of {contract} in invoicing")


async def created_events(pipeline, contract: str) -> list[DocumentCreated]:
    events = await read_events(pipeline.kafka.bootstrap_servers, topics.DOCUMENTS_CREATED, DocumentCreated)
    return [event for event in events if event.contract_id == contract]


async def tax_breakdown(databases, document_id: uuid.UUID) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    return [(row.vat_category, row.vat_rate, row.base, row.tax) for row in await rows(
        databases, select(document_tax_lines).where(document_tax_lines.c.document_id == document_id)
        .order_by(document_tax_lines.c.vat_category, document_tax_lines.c.vat_rate.desc()))]


async def test_domestic_reverse_charge_and_export_invoices_charge_the_right_vat(pipeline, broker, databases,
                                                                                   tmp_path):
    domestic, french, american = new_contract_id("de"), new_contract_id("fr"), new_contract_id("us")
    await publish(broker,
                  snapshot(domestic, customer(domestic, "DE", "DE811907980")),
                  snapshot(french, customer(french, "FR", "FR40303265045")),
                  snapshot(american, customer(american, "US")))
    await publish(broker,
                  posted(domestic, [item("api-calls", "12000", "0.0125", "150.00"),
                                    item("api-calls", "333", "0.0125", "4.16"),
                                    item("ebook", "3", "9.99", "29.97")]),
                  posted(french, [item("api-calls", "40000", "0.01", "400.00"),
                                  item("compute-h", "17.25", "0.42", "7.25")]),
                  posted(american, [item("api-calls", "3333", "0.02", "66.66")]))

    [de] = await wait_for_documents(databases, domestic, 1)
    [fr] = await wait_for_documents(databases, french, 1)
    [us] = await wait_for_documents(databases, american, 1)

    # DE: 19 % on 150.00 + 4.16 = 154.16 -> 29.2904 -> 29.29; 7 % on 29.97 -> 2.0979 -> 2.10
    assert (de.net_total, de.tax_total, de.gross_total) == (Decimal("184.13"), Decimal("31.39"), Decimal("215.52"))
    assert await tax_breakdown(databases, de.document_id) == [
        ("S", Decimal(19), Decimal("154.16"), Decimal("29.29")), ("S", Decimal(7), Decimal("29.97"), Decimal("2.10"))]
    # FR business with VAT id: reverse charge, 0 %
    assert (fr.net_total, fr.tax_total, fr.gross_total) == (Decimal("407.25"), Decimal("0"), Decimal("407.25"))
    assert await tax_breakdown(databases, fr.document_id) == [("AE", Decimal(0), Decimal("407.25"), Decimal(0))]
    assert any("Reverse charge" in note and "FR40303265045" in note for note in fr.notes)
    # US: export of services, 0 %
    assert (us.net_total, us.tax_total, us.gross_total) == (Decimal("66.66"), Decimal("0"), Decimal("66.66"))
    assert await tax_breakdown(databases, us.document_id) == [("G", Decimal(0), Decimal("66.66"), Decimal(0))]
    assert any("Export of services outside the EU" in note for note in us.notes)
    lines = await rows(databases, select(document_lines).where(document_lines.c.document_id == de.document_id)
                       .order_by(document_lines.c.line_no))
    assert [(l.item_code, l.quantity, l.net, l.vat_category, l.vat_rate) for l in lines] == [
        ("api-calls", Decimal(12333), Decimal("154.16"), "S", Decimal(19)),
        ("ebook", Decimal(3), Decimal("29.97"), "S", Decimal(7))]
    assert all(re.fullmatch(r"R\d{4}-\d{4}", doc.number) for doc in (de, fr, us))

    # The documents.created event carries the totals, the tax lines and the stored PDF's reference.
    async def announced() -> bool:
        return bool(await created_events(pipeline, domestic))

    await wait_until(announced, timeout_s=DEADLINE_S, what=f"documents.created for {domestic}")
    [event] = await created_events(pipeline, domestic)
    assert (event.number, event.gross_total, event.due_date) == (de.number, Decimal("215.52"), de.due_date)
    assert [(line.category, line.rate, line.tax) for line in event.tax_lines] == [
        ("S", Decimal(19), Decimal("29.29")), ("S", Decimal(7), Decimal("2.10"))]
    text, content = pdf_text_via_admin(de.number, tmp_path)
    assert event.pdf_path == f"documents/{de.number}.pdf"
    assert event.pdf_sha256 == hashlib.sha256(content).hexdigest()
    assert f"Invoice {de.number}" in text and f"Customer of {domestic}" in text
    assert re.search(r"Api-Calls\napi-calls, 2026-11-01 to 2026-11-30\n12333\n0.0125\n0.00\n154.16\nS 19 %", text)
    assert re.search(r"Ebook\nebook, 2026-11-01 to 2026-11-30\n3\n9.99\n0.00\n29.97\nS 7 %", text)
    assert re.search(r"Net total\n184.13 EUR\nVAT total\n31.39 EUR\nTotal due\n215.52 EUR", text)
    fr_text, _ = pdf_text_via_admin(fr.number, tmp_path)
    assert "Reverse charge" in fr_text and re.search(r"Total due\n407.25 EUR", fr_text)


async def test_credits_become_a_credit_note_that_references_the_invoice_it_corrects(pipeline, broker, databases,
                                                                                      tmp_path):
    contract = new_contract_id("credit")
    await publish(broker, snapshot(contract, customer(contract, "DE")))
    first = posted(contract, [item("api-calls", "1000", "0.0125", "12.50")])
    await publish(broker, first)
    [invoice] = await wait_for_documents(databases, contract, 1)

    second = posted(contract, [item("storage-gb", "0.5", "0.10", "0.05")],
                    [credit("api-calls", "200", "0.0125", "2.50", first.settlement_run_id),
                     credit("storage-gb", "1", "0.10", "0.10", first.settlement_run_id, CreditReason.ORDER_CANCELLED)])
    await publish(broker, second)
    documents_now = await wait_for_documents(databases, contract, 3)
    [invoice_again, second_invoice] = [d for d in documents_now if d.document_type == "invoice"]
    [note] = [d for d in documents_now if d.document_type == "credit_note"]

    assert invoice_again.number == invoice.number
    # 12.50 x 19 % = 2.375 -> 2.38
    assert (invoice.net_total, invoice.tax_total, invoice.gross_total) == (
        Decimal("12.50"), Decimal("2.38"), Decimal("14.88"))
    # 0.05 x 19 % = 0.0095 -> 0.01
    assert second_invoice.gross_total == Decimal("0.06")
    # credit note: 2.50 + 0.10 = 2.60; x 19 % = 0.494 -> 0.49
    assert re.fullmatch(r"G\d{4}-\d{4}", note.number) and note.corrects_number == invoice.number
    assert (note.net_total, note.tax_total, note.gross_total) == (Decimal("2.60"), Decimal("0.49"), Decimal("3.09"))
    assert note.settlement_run_id == second_invoice.settlement_run_id == second.settlement_run_id
    assert note.due_date == note.issue_date
    note_lines = await rows(databases, select(document_lines).where(document_lines.c.document_id == note.document_id)
                            .order_by(document_lines.c.line_no))
    assert [(l.item_code, l.net, l.credit_reason, l.corrects_number) for l in note_lines] == [
        ("api-calls", Decimal("2.50"), "credit", invoice.number),
        ("storage-gb", Decimal("0.10"), "order_cancelled", invoice.number)]

    async def both_announced() -> bool:
        return len(await created_events(pipeline, contract)) >= 3

    await wait_until(both_announced, timeout_s=DEADLINE_S, what=f"three documents.created for {contract}")
    [announced_note] = [e for e in await created_events(pipeline, contract) if e.document_type == "credit_note"]
    assert (announced_note.number, announced_note.corrects_number, announced_note.gross_total) == (
        note.number, invoice.number, Decimal("3.09"))
    text, _ = pdf_text_via_admin(note.number, tmp_path)
    assert f"Credit note {note.number}" in text and f"Corrects invoice\n{invoice.number}" in text
    assert re.search(r"Net total\n2.60 EUR\nVAT total\n0.49 EUR\nTotal credited\n3.09 EUR", text)


async def test_a_run_waits_for_the_contract_revision_that_has_its_item_and_older_revisions_are_ignored(
    pipeline, broker, databases
):
    contract = new_contract_id("dep")
    german = customer(contract, "DE")
    await publish(broker, snapshot(contract, german, {"api-calls": TaxCategory.STANDARD}, revision=1))
    await wait_for_terms(databases, contract, 1)

    # The run bills an item that revision 1 does not have yet: invoicing retries until revision 2.
    await publish(broker, posted(contract, [item("ebook", "1", "10.00", "10.00")]))
    await publish(broker, snapshot(contract, german, {"api-calls": TaxCategory.STANDARD,
                                                     "ebook": TaxCategory.REDUCED}, revision=2))
    [invoice] = await wait_for_documents(databases, contract, 1)
    assert (invoice.tax_total, invoice.gross_total) == (Decimal("0.70"), Decimal("10.70"))  # 7 % of 10.00

    # A stale revision arriving late changes nothing.
    stale = snapshot(contract, customer(contract, "FR"), {"api-calls": TaxCategory.EXEMPT}, revision=1).model_copy(
        update={"event_id": uuid.uuid4()})
    await publish(broker, stale)
    inbox = messaging.inbox
    await wait_until(lambda: databases.has_exactly("invoicing", inbox, 1, inbox.c.event_id == stale.event_id),
                     timeout_s=DEADLINE_S, what="the stale snapshot to be consumed")
    [terms] = await rows(databases, select(contract_terms).where(contract_terms.c.contract_id == contract))
    assert (terms.revision, terms.customer["country"], terms.tax_categories["ebook"]) == (2, "DE", "reduced")


async def test_a_run_published_before_its_contract_snapshot_is_invoiced_once_the_snapshot_arrives(broker, databases):
    contract = new_contract_id("early")
    await publish(broker, posted(contract, [item("api-calls", "1", "10.00", "10.00")]))
    await publish(broker, snapshot(contract, customer(contract, "AT")))
    [invoice] = await wait_for_documents(databases, contract, 1)
    # an Austrian consumer: OSS at the Austrian 20 %
    assert (invoice.tax_total, invoice.gross_total) == (Decimal("2.00"), Decimal("12.00"))


# --- gapless numbers under two workers and a crash ------------------------------------------------


@pytest.fixture(scope="module")
def second_worker(pipeline) -> Iterator[Workers]:
    """A second invoicing worker in the same consumer groups, with the pipeline's environment."""
    env = {"BILLING_STACK_DIR": str(pipeline.root), "BILLING_KAFKA_SESSION_TIMEOUT_MS": "6000",
           "BILLING_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
    workers = Workers(pipeline.root / "logs2", env=env)
    workers.start("invoicing")
    try:
        yield workers
        assert not workers.crashed(), f"the second invoicing worker died; see {pipeline.root / 'logs2'}"
    finally:
        workers.stop_all()


@dataclass
class WorkerLog:
    """What an invoicing worker logged about receivables.posted since `since` (a byte offset)."""

    path: Path
    since: int = 0

    def mark(self) -> None:
        self.since = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.since)
            text = handle.read().decode(errors="replace")
        # FastStream pads the consumer column to its longest name (invoicing.payment-accounts.changed).
        return [line for line in text.splitlines() if re.search(r"\| invoicing\.receivables\.posted +\|", line)]

    async def holds_partitions(self) -> bool:
        return any("assigned to partitions: (TopicPartition" in line for line in self.lines())

    def processed(self) -> int:
        return sum(line.endswith(" - Processed") for line in self.lines())

    async def in_the_middle_of_a_message(self) -> bool:
        handled = [line for line in self.lines() if line.endswith((" - Received", " - Processed"))]
        return bool(handled) and handled[-1].endswith(" - Received")


async def start_burst(broker, databases, label: str, runs: int) -> dict[str, ReceivablesPosted]:
    """Contracts with snapshots in place, then one run each published at once; every third also has credits.

    Each run has 40 items at different prices, so 40 lines: a document takes long enough to be caught
    in the middle of it.
    """
    contracts = [new_contract_id(f"{label}{n}") for n in range(runs)]
    await publish(broker, *(snapshot(contract, customer(contract, "DE")) for contract in contracts))
    for contract in contracts:
        await wait_for_terms(databases, contract, 1)
    burst = {}
    for n, contract in enumerate(contracts):
        items = [item("api-calls", "10", f"0.{k:02d}", f"{k / 10:.2f}") for k in range(10, 50)]
        credits = [credit("api-calls", "10", "0.0125", "0.13", None)] if n % 3 == 0 else []
        burst[contract] = posted(contract, items, credits)
    await publish(broker, *burst.values())
    return burst


async def assert_gapless_with_one_document_per_run_and_type(databases, burst: dict[str, ReceivablesPosted]) -> None:
    all_documents = await rows(databases, select(documents.c.number, documents.c.document_type,
                                                 documents.c.settlement_run_id, documents.c.contract_id,
                                                 documents.c.net_total))
    by_series: dict[str, list[int]] = defaultdict(list)
    for document in all_documents:
        series, sequence = document.number.rsplit("-", 1)
        by_series[series].append(int(sequence))
    assert {series[0] for series in by_series} == {"R", "G"}
    for series, sequences in by_series.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), f"gap or duplicate in {series}"
    assert max(Counter((d.settlement_run_id, d.document_type) for d in all_documents).values()) == 1
    mine = Counter((d.contract_id, d.document_type, d.net_total) for d in all_documents if d.contract_id in burst)
    # 10 x (0.10 + 0.11 + ... + 0.49) = 10 x 11.80 = 118.00 per invoice; credit notes 0.13
    assert mine == Counter({**{(c, "invoice", Decimal("118.00")): 1 for c in burst},
                            **{(c, "credit_note", Decimal("0.13")): 1 for c, run in burst.items() if run.credits}})
    # Rendered before the series were locked, with the numbers expected then: wherever the other
    # worker took them first, the files were made again, so each names its own document's number.
    files = await rows(databases, select(documents.c.number, document_einvoices.c.content, document_pdfs.c.content)
                       .join(document_einvoices, document_einvoices.c.document_id == documents.c.document_id)
                       .join(document_pdfs, document_pdfs.c.document_id == documents.c.document_id)
                       .where(documents.c.contract_id.in_(list(burst))))
    assert len(files) == len(mine)
    for number, xml, pdf in files:
        assert etree.fromstring(xml).findtext(f"{{{RSM}}}ExchangedDocument/{{{RAM}}}ID") == number
        assert facturx.get_xml_from_pdf(pdf, check_xsd=False)[1] == xml


async def wait_for_burst(databases, burst: dict[str, ReceivablesPosted]) -> None:
    expected = sum(1 + bool(run.credits) for run in burst.values())
    count = select(func.count()).select_from(documents).where(documents.c.contract_id.in_(list(burst)))

    async def all_there() -> bool:
        return await databases.count("invoicing", count) >= expected

    await wait_until(all_there, timeout_s=DEADLINE_S, what=f"{expected} documents of the burst")


async def test_numbers_stay_gapless_with_two_invoicing_workers(pipeline, broker, databases, second_worker):
    second = WorkerLog(second_worker.log_dir / "invoicing.log")
    await wait_until(second.holds_partitions, timeout_s=DEADLINE_S,
                     what="the second invoicing worker to get receivables.posted partitions")
    first = WorkerLog(pipeline.root / "logs" / "invoicing.log")
    first.mark()
    second.mark()

    burst = await start_burst(broker, databases, "two", runs=24)
    await wait_for_burst(databases, burst)

    await assert_gapless_with_one_document_per_run_and_type(databases, burst)
    # Each log line is a batch (one transaction), so only that both took part is countable here;
    # that every run got its documents exactly once is what the assertion above checks.
    assert first.processed() > 0 and second.processed() > 0, "both workers must have invoiced part of the burst"


async def test_numbers_stay_gapless_when_a_worker_is_killed_mid_document_and_restarted(
    pipeline, broker, databases, second_worker
):
    second = WorkerLog(second_worker.log_dir / "invoicing.log")
    await wait_until(second.holds_partitions, timeout_s=DEADLINE_S,
                     what="the second invoicing worker to get receivables.posted partitions")
    second.mark()
    burst = await start_burst(broker, databases, "kill", runs=30)
    await wait_until(second.in_the_middle_of_a_message, timeout_s=DEADLINE_S, poll_s=0.005,
                     what="the second worker in the middle of a document")

    second_worker.stop("invoicing", kill=True)
    second.mark()
    second_worker.start("invoicing")
    await wait_for_burst(databases, burst)

    await assert_gapless_with_one_document_per_run_and_type(databases, burst)
    await wait_until(second.holds_partitions, timeout_s=DEADLINE_S, what="the restarted worker to rejoin")
