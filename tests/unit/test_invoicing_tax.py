"""VAT on documents, with hand-computed examples.

Every expected figure below is worked out by hand: per VAT category and rate, the line nets are
summed and base x rate is rounded once, ROUND_HALF_UP, to the cent (EN 16931).
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from services.invoicing import domain
from services.invoicing.settings import InvoicingSettings
from shared.errors import Rejected
from shared.events import DocumentType, TaxCategory
from shared.money import Money
from shared.settings import SellerSettings
from shared.vat import EU_MEMBER_STATES, VAT_RATES, TaxContext, Treatment, Vat, VatCategory, tax_lines

SELLER = domain.Seller(domain.Party("Seller GmbH", "DE", ("Friedrichstrasse 1", "10117 Berlin"), "DE999999999"),
                       iban="DE89 3704 0044 0532 0130 00", bic="COBADEFFXXX")
CATEGORIES = {
    "api-calls": TaxCategory.STANDARD,
    "compute-h": TaxCategory.STANDARD,
    "ebook": TaxCategory.REDUCED,
    "export-docs": TaxCategory.ZERO,
    "insurance": TaxCategory.EXEMPT,
}


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def source(item_code: str, net: str, *, quantity: str = "1", unit_price: str | None = None) -> domain.SourceLine:
    return domain.SourceLine(
        source_id=uuid.uuid4(), item_code=item_code, description=item_code.title(), quantity=Decimal(quantity),
        unit_price=Decimal(unit_price or net), discount=eur("0"), net=eur(net),
        period_start=date(2026, 11, 1), period_end=date(2026, 11, 30),
    )


def invoice(customer: domain.Party, *sources: domain.SourceLine) -> domain.Document:
    terms = domain.ContractTerms("C-1", 1, "CUST-1", customer, CATEGORIES)
    return domain.draft_document(
        document_id=uuid.uuid4(), document_type=DocumentType.INVOICE, settlement_run_id=uuid.uuid4(), terms=terms,
        seller=SELLER, currency="EUR", sources=sources, issue_date=date(2026, 11, 23), payment_terms_days=14,
    )


def breakdown(document: domain.Document) -> list[tuple[str, str, str, str]]:
    return [(line.vat.category.value, str(line.vat.rate), str(line.base.amount), str(line.tax.amount))
            for line in document.tax_lines]


def totals(document: domain.Document) -> tuple[str, str, str]:
    return str(document.net_total.amount), str(document.tax_total.amount), str(document.gross_total.amount)


GERMAN_BUSINESS = domain.Party("ACME Robotics GmbH", "DE", ("Hafenstrasse 12", "20457 Hamburg"), "DE811907980")
FRENCH_BUSINESS = domain.Party("Globex SARL", "FR", ("12 rue de la Paix", "75002 Paris"), "FR40303265045")
FRENCH_CONSUMER = domain.Party("Marie Curie", "FR", ("1 rue Pierre et Marie Curie", "75005 Paris"))
BELGIAN_CONSUMER = domain.Party("Jan Peeters", "BE", ("Grote Markt 1", "1000 Brussel"))
POLISH_CONSUMER = domain.Party("Anna Nowak", "PL", ("ul. Marszalkowska 1", "00-624 Warszawa"))
US_BUSINESS = domain.Party("Initech Inc.", "US", ("4120 Freidrich Lane", "Austin, TX 78744"))


def test_domestic_invoice_with_standard_and_reduced_lines():
    document = invoice(
        GERMAN_BUSINESS,
        source("api-calls", "150.00", quantity="12000", unit_price="0.0125"),
        source("api-calls", "4.16", quantity="333", unit_price="0.0125"),
        source("ebook", "29.97", quantity="3", unit_price="9.99"),
    )
    # 19 %: 150.00 + 4.16 = 154.16; 154.16 x 0.19 = 29.2904 -> 29.29
    # 7 %: 29.97 x 0.07 = 2.0979 -> 2.10
    assert breakdown(document) == [("S", "19", "154.16", "29.29"), ("S", "7", "29.97", "2.10")]
    assert totals(document) == ("184.13", "31.39", "215.52")
    assert [(line.item_code, str(line.net.amount), line.vat) for line in document.lines] == [
        ("api-calls", "154.16", Vat(VatCategory.STANDARD, Decimal(19))),
        ("ebook", "29.97", Vat(VatCategory.STANDARD, Decimal(7))),
    ]
    assert document.notes == ()


def test_eu_business_with_a_vat_id_is_reverse_charged_with_the_legal_note():
    document = invoice(
        FRENCH_BUSINESS,
        source("api-calls", "400.00", quantity="40000", unit_price="0.01"),
        source("compute-h", "7.25", quantity="17.25", unit_price="0.42"),
        source("ebook", "10.00"),
    )
    # every taxable line moves to the recipient: category AE at 0 %, base 400.00 + 7.25 + 10.00
    assert breakdown(document) == [("AE", "0", "417.25", "0.00")]
    assert totals(document) == ("417.25", "0.00", "417.25")
    [note] = document.notes
    assert "Reverse charge" in note and "Article 196" in note and "FR40303265045" in note


def test_customer_outside_the_eu_is_an_untaxed_export_of_services():
    document = invoice(US_BUSINESS, source("api-calls", "66.66", quantity="3333", unit_price="0.02"))
    assert breakdown(document) == [("G", "0", "66.66", "0.00")]
    assert totals(document) == ("66.66", "0.00", "66.66")
    [note] = document.notes
    assert "Export of services outside the EU" in note and "US" in note and "no DE VAT" in note


def test_tax_is_rounded_once_per_rate_not_per_line():
    # Four lines of 0.50 at 19 %: per line 0.095 -> 0.10 each, 0.40 in all; but per rate
    # (2.00 x 0.19 = 0.38) the document charges 0.38.
    document = invoice(
        GERMAN_BUSINESS,
        source("api-calls", "0.50", quantity="1", unit_price="0.50"),
        source("api-calls", "0.50", quantity="2", unit_price="0.25"),
        source("api-calls", "0.50", quantity="4", unit_price="0.125"),
        source("compute-h", "0.50", quantity="1", unit_price="0.50"),
    )
    per_line = sum(Money.round(line.net.amount * Decimal("0.19"), "EUR").amount for line in document.lines)
    assert len(document.lines) == 4 and per_line == Decimal("0.40")
    assert breakdown(document) == [("S", "19", "2.00", "0.38")]
    assert totals(document) == ("2.00", "0.38", "2.38")


def test_half_a_cent_of_tax_rounds_up():
    # 1.50 x 0.07 = 0.105 -> 0.11 (ROUND_HALF_UP; half-even would give 0.10)
    document = invoice(GERMAN_BUSINESS, source("ebook", "1.50"))
    assert breakdown(document) == [("S", "7", "1.50", "0.11")]


def test_eu_consumer_pays_the_destination_rate_through_oss():
    document = invoice(FRENCH_CONSUMER, source("api-calls", "100.00"), source("ebook", "10.00"))
    # France: 20 % and 5.5 %; 10.00 x 0.055 = 0.55
    assert breakdown(document) == [("S", "20", "100.00", "20.00"), ("S", "5.5", "10.00", "0.55")]
    assert totals(document) == ("110.00", "20.55", "130.55")
    assert document.notes == ("VAT of FR, declared through the One-Stop Shop (OSS).",)


def test_zero_rated_and_exempt_items_at_home():
    document = invoice(GERMAN_BUSINESS, source("api-calls", "10.00"), source("export-docs", "5.00"),
                       source("insurance", "20.00"))
    assert breakdown(document) == [("E", "0", "20.00", "0.00"), ("S", "19", "10.00", "1.90"),
                                   ("Z", "0", "5.00", "0.00")]
    assert totals(document) == ("35.00", "1.90", "36.90")
    assert document.notes == ("Lines in VAT category E are exempt from VAT.",)


def test_exempt_stays_exempt_under_reverse_charge_and_zero_rated_follows_it():
    context = TaxContext("DE", "FR", "FR40303265045")
    assert context.vat_for(TaxCategory.EXEMPT) == Vat(VatCategory.EXEMPT, Decimal(0))
    assert context.vat_for(TaxCategory.ZERO) == Vat(VatCategory.REVERSE_CHARGE, Decimal(0))
    assert TaxContext("DE", "CH", "CHE123456789").vat_for(TaxCategory.ZERO) == Vat(VatCategory.EXPORT, Decimal(0))


@pytest.mark.parametrize("customer_country, vat_id, treatment", [
    ("DE", None, Treatment.DOMESTIC),
    ("DE", "DE811907980", Treatment.DOMESTIC),
    ("FR", "FR40303265045", Treatment.REVERSE_CHARGE),
    ("AT", None, Treatment.OSS),
    ("US", None, Treatment.EXPORT),
    ("CH", "CHE123456789", Treatment.EXPORT),
    ("GB", None, Treatment.EXPORT),
])
def test_treatment_by_customer_country_and_vat_id(customer_country, vat_id, treatment):
    assert TaxContext("DE", customer_country, vat_id).treatment is treatment


def test_a_belgian_consumer_pays_belgian_vat_through_oss():
    document = invoice(BELGIAN_CONSUMER, source("api-calls", "123.45"), source("ebook", "19.99"))
    # Belgium: 21 % and 6 %; 123.45 x 0.21 = 25.9245 -> 25.92; 19.99 x 0.06 = 1.1994 -> 1.20
    assert breakdown(document) == [("S", "21", "123.45", "25.92"), ("S", "6", "19.99", "1.20")]
    assert totals(document) == ("143.44", "27.12", "170.56")
    assert document.notes == ("VAT of BE, declared through the One-Stop Shop (OSS).",)


def test_a_polish_consumer_pays_polish_vat_through_oss():
    document = invoice(POLISH_CONSUMER, source("api-calls", "80.10"), source("compute-h", "0.50"),
                       source("ebook", "9.90"))
    # Poland: 23 % and 5 %; (80.10 + 0.50) x 0.23 = 18.538 -> 18.54; 9.90 x 0.05 = 0.495 -> 0.50
    assert breakdown(document) == [("S", "23", "80.60", "18.54"), ("S", "5", "9.90", "0.50")]
    assert totals(document) == ("90.50", "19.04", "109.54")
    assert document.notes == ("VAT of PL, declared through the One-Stop Shop (OSS).",)


@pytest.mark.parametrize("country, standard, reduced", [
    ("AT", "20", "10"), ("BE", "21", "6"), ("BG", "20", "9"), ("CY", "19", "5"), ("CZ", "21", "12"),
    ("DE", "19", "7"), ("EE", "24", "9"), ("ES", "21", "10"), ("FI", "25.5", "13.5"), ("FR", "20", "5.5"),
    ("GR", "24", "13"), ("HR", "25", "5"), ("HU", "27", "5"), ("IE", "23", "9"), ("IT", "22", "10"),
    ("LT", "21", "5"), ("LU", "17", "8"), ("LV", "21", "5"), ("MT", "18", "5"), ("NL", "21", "9"),
    ("PL", "23", "5"), ("PT", "23", "6"), ("RO", "21", "11"), ("SE", "25", "6"), ("SI", "22", "9.5"),
    ("SK", "23", "5"),
])
def test_pinned_rates(country, standard, reduced):
    context = TaxContext(country, country, None)
    assert context.vat_for(TaxCategory.STANDARD) == Vat(VatCategory.STANDARD, Decimal(standard))
    assert context.vat_for(TaxCategory.REDUCED) == Vat(VatCategory.STANDARD, Decimal(reduced))


def test_every_member_state_has_pinned_rates():
    assert VAT_RATES.keys() == EU_MEMBER_STATES


def test_denmark_has_only_a_standard_rate():
    assert TaxContext("DE", "DK", None).vat_for(TaxCategory.STANDARD) == Vat(VatCategory.STANDARD, Decimal(25))


def test_a_reduced_item_for_a_danish_consumer_is_refused_not_guessed():
    with pytest.raises(Rejected, match="DK has no reduced VAT rate: an item in tax category 'reduced' cannot be"):
        TaxContext("DE", "DK", None).vat_for(TaxCategory.REDUCED)


def test_a_reduced_item_for_a_danish_business_is_reverse_charged_as_usual():
    assert TaxContext("DE", "DK", "DK13585628").vat_for(TaxCategory.REDUCED) == Vat(VatCategory.REVERSE_CHARGE,
                                                                                    Decimal(0))


def test_tax_lines_sum_nets_exactly_per_category_and_rate():
    standard = Vat(VatCategory.STANDARD, Decimal(19))
    lines = tax_lines([(standard, eur("0.01")), (standard, eur("0.02")), (standard, eur("0.03"))], "EUR")
    # 0.06 x 0.19 = 0.0114 -> 0.01, although every line on its own would round to 0.00
    assert [(str(line.base.amount), str(line.tax.amount)) for line in lines] == [("0.06", "0.01")]


def test_tax_in_a_currency_without_minor_units():
    lines = tax_lines([(Vat(VatCategory.STANDARD, Decimal(19)), Money.of("1234", "JPY"))], "JPY")
    assert [(line.base.amount, line.tax.amount) for line in lines] == [(Decimal(1234), Decimal(234))]  # 234.46


def test_the_seller_country_must_have_pinned_rates(monkeypatch):
    monkeypatch.setenv("BILLING_SELLER_COUNTRY", "US")
    with pytest.raises(ValueError, match="no pinned VAT rates for the seller country 'US'"):
        SellerSettings()


def test_documents_name_the_seller_country_of_the_shared_setting(monkeypatch):
    monkeypatch.setenv("BILLING_SELLER_COUNTRY", "AT")
    assert InvoicingSettings().seller().party.country == "AT"


def test_the_former_invoicing_seller_country_is_refused_not_silently_ignored(monkeypatch):
    monkeypatch.setenv("INVOICING_SELLER_COUNTRY", "AT")
    with pytest.raises(ValueError, match="INVOICING_SELLER_COUNTRY is now BILLING_SELLER_COUNTRY"):
        InvoicingSettings()
