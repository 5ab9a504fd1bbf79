"""The document PDF, parsed back with pypdf: it must show what the document says."""

from __future__ import annotations

import io
import re
import uuid
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

from services.invoicing import domain, pdf
from shared.events import CreditReason, DocumentType, TaxCategory
from shared.money import Money

SELLER = domain.Seller(
    domain.Party("Usage Billing Demo GmbH", "DE", ("Friedrichstrasse 123", "10117 Berlin"), "DE999999999",
                 "billing@example.com"),
    iban="DE89 3704 0044 0532 0130 00", bic="COBADEFFXXX",
)
GLOBEX = domain.Party("Globex SARL & Fils <Paris>", "FR", ("12 rue de la Paix", "75002 Paris"), "FR40303265045")
ACME = domain.Party("ACME Robotics GmbH", "DE", ("Hafenstraße 12", "20457 Hamburg"), "DE811907980")
CATEGORIES = {"api-calls": TaxCategory.STANDARD, "compute-h": TaxCategory.STANDARD, "ebook": TaxCategory.REDUCED}


def source(item_code: str, description: str, quantity: str, unit_price: str, net: str, **credit) -> domain.SourceLine:
    return domain.SourceLine(
        source_id=uuid.uuid4(), item_code=item_code, description=description, quantity=Decimal(quantity),
        unit_price=Decimal(unit_price), discount=Money.zero("EUR"), net=Money.of(net, "EUR"),
        period_start=date(2026, 11, 1), period_end=date(2026, 11, 30), **credit,
    )


def document(customer: domain.Party, *sources: domain.SourceLine, document_type=DocumentType.INVOICE, sequence=1):
    return domain.draft_document(
        document_id=uuid.uuid4(), document_type=document_type, settlement_run_id=uuid.uuid4(),
        terms=domain.ContractTerms("C-GLOBEX-1", 1, "CUST-GLOBEX", customer, CATEGORIES), seller=SELLER,
        currency="EUR", sources=sources, issue_date=date(2026, 11, 23), payment_terms_days=14,
    ).finalize(sequence)


def text_of(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_an_invoice_pdf_shows_parties_number_dates_lines_tax_and_totals():
    invoice = document(ACME,
                       source("api-calls", "API calls", "12000", "0.0125", "150.00"),
                       source("api-calls", "API calls", "333", "0.0125", "4.16"),
                       source("ebook", "E-book licences", "3", "9.99", "29.97"), sequence=42)
    text = text_of(pdf.render(invoice))

    assert "Invoice R2026-0042" in text
    for expected in ("Usage Billing Demo GmbH", "VAT ID DE999999999", "ACME Robotics GmbH", "Hafenstraße 12",
                     "VAT ID DE811907980", "Issue date\n2026-11-23", "Due date\n2026-12-07",
                     "2026-11-01 to 2026-11-30", "CUST-GLOBEX"):
        assert expected in text, expected
    # one line per item and price: 12000 + 333 API calls at 0.0125 = 150.00 + 4.16
    assert re.search(r"API calls\napi-calls, 2026-11-01 to 2026-11-30\n12333\n0.0125\n0.00\n154.16\nS 19 %", text)
    assert re.search(r"E-book licences\nebook, 2026-11-01 to 2026-11-30\n3\n9.99\n0.00\n29.97\nS 7 %", text)
    # tax per rate: 154.16 x 19 % = 29.29, 29.97 x 7 % = 2.10
    assert re.search(r"S\nstandard rate\n19 %\n154.16\n29.29\nS\nstandard rate\n7 %\n29.97\n2.10", text)
    assert re.search(r"Net total\n184.13 EUR\nVAT total\n31.39 EUR\nTotal due\n215.52 EUR", text)
    # (a paragraph wraps where the font makes it: compare its words)
    assert "within 14 days, by 2026-12-07, to IBAN DE89 3704 0044 0532 0130 00" in " ".join(text.split())


def test_a_reverse_charge_credit_note_pdf_names_the_invoice_it_corrects_and_the_legal_note():
    credit = document(
        GLOBEX,
        source("compute-h", "Compute hours", "17.25", "0.42", "7.25", credit_reason=CreditReason.ORDER_CANCELLED,
               corrects_number="R2026-0003"),
        document_type=DocumentType.CREDIT_NOTE, sequence=2,
    )
    text = text_of(pdf.render(credit))

    assert "Credit note G2026-0002" in text and "Corrects invoice\nR2026-0003" in text
    assert "Globex SARL & Fils <Paris>" in text and "Credit to" in text
    assert re.search(r"Compute hours\ncompute-h, 2026-11-01 to 2026-11-30; order\scancelled\n17.25\n0.42\n0.00\n7.25\n"
                     r"AE 0 %", text)
    assert re.search(r"Net total\n7.25 EUR\nVAT total\n0.00 EUR\nTotal credited\n7.25 EUR", text)
    assert "Reverse charge: the recipient is liable for the VAT (Article 196" in text
    assert "FR40303265045" in text


def test_a_long_invoice_runs_over_pages_with_every_line():
    lines = [source("api-calls", f"Batch {n}", "1", f"{n}.00", f"{n}.00") for n in range(1, 121)]
    content = pdf.render(document(ACME, *lines))
    reader = PdfReader(io.BytesIO(content))
    text = text_of(content)

    assert len(reader.pages) > 1
    assert all(f"Batch {n}\n" in text for n in range(1, 121))
    # 1 + ... + 120 = 7260.00; x 19 % = 1379.40
    assert re.search(r"Net total\n7,260.00 EUR\nVAT total\n1,379.40 EUR\nTotal due\n8,639.40 EUR", text)


def test_the_same_document_gives_the_same_bytes():
    invoice = document(ACME, source("api-calls", "API calls", "1", "1", "1.00"))
    assert pdf.render(invoice) == pdf.render(invoice)


def test_only_finalized_documents_have_a_pdf():
    draft = domain.draft_document(
        document_id=uuid.uuid4(), document_type=DocumentType.INVOICE, settlement_run_id=uuid.uuid4(),
        terms=domain.ContractTerms("C-1", 1, "CUST-1", ACME, CATEGORIES), seller=SELLER, currency="EUR",
        sources=[source("api-calls", "API calls", "1", "1", "1.00")], issue_date=date(2026, 11, 23),
        payment_terms_days=14,
    )
    with pytest.raises(ValueError, match="only a finalized document"):
        pdf.render(draft)
