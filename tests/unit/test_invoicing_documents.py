"""Documents: lines grouped per item, period and price; numbering; lifecycle; credit notes; the event schema."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.invoicing import domain
from shared.events import CreditReason, DocumentCreated, DocumentType, ReceivablesPosted, SettlementItem, TaxCategory
from shared.money import Money
SELLER = domain.Seller(domain.Party("Seller GmbH", "DE", ("Friedrichstrasse 1", "10117 Berlin"), "DE999999999"),
                       iban="DE89 3704 0044 0532 0130 00", bic="COBADEFFXXX")
GERMAN_BUSINESS = domain.Party("ACME Robotics GmbH", "DE", ("Hafenstrasse 12", "20457 Hamburg"), "DE811907980")
TERMS = domain.ContractTerms("C-1", 3, "CUST-1", GERMAN_BUSINESS,
                             {"api-calls": TaxCategory.STANDARD, "storage-gb": TaxCategory.STANDARD})
NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
DECEMBER = (date(2026, 12, 1), date(2026, 12, 31))


def line(item_code: str, quantity: str, unit_price: str, net: str, period=NOVEMBER, *, discount: str = "0",
         reason: CreditReason | None = None, corrects: str | None = None) -> domain.SourceLine:
    return domain.SourceLine(
        source_id=uuid.uuid4(), item_code=item_code, description=item_code.title(), quantity=Decimal(quantity),
        unit_price=Decimal(unit_price), discount=Money.of(discount, "EUR"), net=Money.of(net, "EUR"),
        period_start=period[0], period_end=period[1], credit_reason=reason, corrects_number=corrects,
    )


def draft(*sources: domain.SourceLine, document_type=DocumentType.INVOICE, issue_date=date(2026, 11, 23)):
    return domain.draft_document(
        document_id=uuid.uuid4(), document_type=document_type, settlement_run_id=uuid.uuid4(), terms=TERMS,
        seller=SELLER, currency="EUR", sources=sources, issue_date=issue_date, payment_terms_days=14,
    )


def test_items_of_one_item_period_and_price_become_one_line_with_exact_sums():
    first = line("api-calls", "12000", "0.0125", "150.00", discount="10.00")
    second = line("api-calls", "333", "0.0125", "4.16")
    dearer = line("api-calls", "10", "0.02", "0.20")
    later = line("api-calls", "100", "0.0125", "1.25", DECEMBER)
    storage = line("storage-gb", "0.5", "0.10", "0.05")
    document = draft(later, storage, first, dearer, second)

    assert [(l.line_no, l.item_code, l.period_start.month, str(l.quantity), str(l.unit_price), str(l.discount.amount),
             str(l.net.amount)) for l in document.lines] == [
        (1, "api-calls", 11, "12333", "0.0125", "10.00", "154.16"),  # 150.00 + 4.16, not 12333 x 0.0125 re-rounded
        (2, "api-calls", 11, "10", "0.02", "0.00", "0.20"),
        (3, "storage-gb", 11, "0.5", "0.10", "0.00", "0.05"),
        (4, "api-calls", 12, "100", "0.0125", "0.00", "1.25"),
    ]
    assert set(document.lines[0].source_ids) == {first.source_id, second.source_id}
    assert document.service_period == (date(2026, 11, 1), date(2026, 12, 31))
    assert document.net_total == Money.of("155.66", "EUR")


def test_a_draft_has_no_number_and_finalizing_numbers_it_once_in_its_series():
    document = draft(line("api-calls", "1", "1", "1.00"))
    assert (document.status, document.number, document.series) == (domain.DocumentStatus.DRAFT, None, "R2026")

    final = document.finalize(7)
    assert (final.status, final.number) == (domain.DocumentStatus.FINALIZED, "R2026-0007")
    with pytest.raises(ValueError, match="already finalized"):
        final.finalize(8)


def test_series_run_per_type_and_issue_year():
    assert draft(line("api-calls", "1", "1", "1.00"), issue_date=date(2027, 1, 2)).finalize(1).number == "R2027-0001"
    credit = draft(line("api-calls", "1", "1", "1.00", reason=CreditReason.CREDIT),
                   document_type=DocumentType.CREDIT_NOTE)
    assert credit.finalize(12).number == "G2026-0012"


def test_numbering_counts_on_from_the_last_numbers_of_each_series_without_gaps():
    numbering = domain.Numbering({"R2026": 41, "G2026": 0, "R2027": 0})
    credit = draft(line("api-calls", "1", "1", "1.00", reason=CreditReason.CREDIT),
                   document_type=DocumentType.CREDIT_NOTE)
    numbers = [numbering.finalize(document).number for document in (
        draft(line("api-calls", "1", "1", "1.00")), credit, draft(line("api-calls", "1", "1", "1.00")),
        draft(line("api-calls", "1", "1", "1.00"), issue_date=date(2027, 1, 2)))]

    assert numbers == ["R2026-0042", "G2026-0001", "R2026-0043", "R2027-0001"]
    assert numbering.last == {"R2026": 43, "G2026": 1, "R2027": 1}
    assert domain.series_of(DocumentType.CREDIT_NOTE, date(2026, 5, 1)) == "G2026"


def test_invoices_are_due_after_the_payment_terms_and_credit_notes_at_once():
    invoice = draft(line("api-calls", "1", "1", "1.00"))
    assert invoice.due_date == date(2026, 12, 7)
    assert "within 14 days, by 2026-12-07, to IBAN DE89 3704 0044 0532 0130 00" in invoice.payment_terms
    credit = draft(line("api-calls", "1", "1", "1.00", reason=CreditReason.CREDIT),
                   document_type=DocumentType.CREDIT_NOTE)
    assert credit.due_date == date(2026, 11, 23)


def test_a_credit_note_references_the_invoice_all_its_lines_correct():
    credit = draft(
        line("api-calls", "100", "0.0125", "1.25", reason=CreditReason.CREDIT, corrects="R2026-0003"),
        line("storage-gb", "1", "0.10", "0.10", reason=CreditReason.ORDER_CANCELLED, corrects="R2026-0003"),
        document_type=DocumentType.CREDIT_NOTE,
    )
    assert credit.corrects_number == "R2026-0003"
    assert [(l.credit_reason, l.corrects_number) for l in credit.lines] == [
        (CreditReason.CREDIT, "R2026-0003"), (CreditReason.ORDER_CANCELLED, "R2026-0003")]
    # 1.35 x 0.19 = 0.2565 -> 0.26: credit notes are taxed like invoices, with positive amounts
    assert (credit.net_total, credit.tax_total, credit.gross_total) == (
        Money.of("1.35", "EUR"), Money.of("0.26", "EUR"), Money.of("1.61", "EUR"))


def test_credit_lines_for_different_invoices_stay_apart_and_the_note_names_none_as_a_whole():
    credit = draft(
        line("api-calls", "100", "0.0125", "1.25", reason=CreditReason.CREDIT, corrects="R2026-0003"),
        line("api-calls", "100", "0.0125", "1.25", reason=CreditReason.CREDIT, corrects="R2026-0004"),
        line("api-calls", "100", "0.0125", "1.25", reason=CreditReason.TERMINATION),
        document_type=DocumentType.CREDIT_NOTE,
    )
    assert credit.corrects_number is None
    assert sorted((l.corrects_number or "", str(l.net.amount)) for l in credit.lines) == [
        ("", "1.25"), ("R2026-0003", "1.25"), ("R2026-0004", "1.25")]


def test_a_document_needs_lines():
    with pytest.raises(ValueError, match="at least one line"):
        draft()


def created(**changes) -> dict:
    event = {
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-23T10:00:00Z", "contract_id": "C-1",
        "document_id": str(uuid.uuid4()), "document_type": "invoice", "number": "R2026-0001",
        "settlement_run_id": str(uuid.uuid4()), "customer_id": "CUST-1", "currency": "EUR",
        "issue_date": "2026-11-23", "due_date": "2026-12-07", "net_total": "184.13", "tax_total": "31.39",
        "gross_total": "215.52",
        "tax_lines": [{"category": "S", "rate": "19", "base": "154.16", "tax": "29.29"},
                      {"category": "S", "rate": "7", "base": "29.97", "tax": "2.10"}],
        "pdf_path": "documents/R2026-0001.pdf", "pdf_sha256": "ab" * 32,
    }
    return {**event, **changes}


def test_documents_created_carries_tax_lines_that_add_up():
    event = DocumentCreated.model_validate(created())
    assert [line.tax for line in event.tax_lines] == [Decimal("29.29"), Decimal("2.10")]
    with pytest.raises(ValidationError, match="tax lines do not add up"):
        DocumentCreated.model_validate(created(tax_total="31.40", gross_total="215.53"))
    with pytest.raises(ValidationError, match="more decimals than EUR allows"):
        DocumentCreated.model_validate(created(tax_lines=[
            {"category": "S", "rate": "19", "base": "184.125", "tax": "31.385"},
            {"category": "S", "rate": "7", "base": "0.005", "tax": "0.005"}]))
    with pytest.raises(ValidationError, match="pdf_sha256"):
        DocumentCreated.model_validate(created(pdf_sha256="not-a-digest"))


def test_the_new_fields_are_optional_for_producers_that_predate_them():
    bare = {key: value for key, value in created().items() if key not in ("tax_lines", "pdf_path", "pdf_sha256")}
    event = DocumentCreated.model_validate(bare)
    assert (event.tax_lines, event.pdf_path, event.corrects_number) == ([], None, None)
    item = SettlementItem(billable_item_id=uuid.uuid4(), item_code="api-calls", description="API calls",
                          quantity=Decimal(1), unit_price=Decimal(1), net=Decimal("1.00"),
                          period_start=date(2026, 11, 1), period_end=date(2026, 11, 30))
    assert item.discount == 0


def test_receivables_posted_of_earlier_versions_stay_readable_and_name_their_billable_items():
    item_id = uuid.uuid4()
    run = {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-30T23:00:00+00:00", "contract_id": "C-1",
           "settlement_run_id": str(uuid.uuid4()), "customer_id": "CUST-1", "currency": "EUR",
           "cutoff": "2026-12-01T00:00:00+00:00", "total": "1.00", "ledger_balance": "1.00",
           "items": [{"billable_item_id": str(item_id), "item_code": "api-calls", "description": "API calls",
                      "quantity": "80", "unit_price": "0.0125", "net": "1.00", "period_start": "2026-11-01",
                      "period_end": "2026-11-30"}]}
    for version in (1, 2):
        [line] = ReceivablesPosted.model_validate({**run, "schema_version": version}).items
        assert (line.source_id, line.item_count) == (item_id, None)
    with pytest.raises(ValidationError, match="line_id with its item_count from schema_version 3 on"):
        ReceivablesPosted.model_validate(run)  # version 3, the default, sums its items into lines
    lines = {**run, "items": [{**run["items"][0], "billable_item_id": None, "line_id": str(item_id), "item_count": 80}]}
    assert ReceivablesPosted.model_validate(lines).items[0].source_id == item_id
