"""E-invoices through the front door: a contract put to rating's API, usage on Kafka, a billing run,
and the invoice's EN 16931 XML read back from the portal's API, the admin command and the PDF,
valid against the CEN schematron; a run whose e-invoice would fail is parked with the report.

Amounts are hand-computed: 1,234 API calls at 0.10 EUR = 123.40 net; 19 % VAT = 23.446 -> 23.45;
146.85 gross.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import facturx
import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from ops.observe import wait_until
from services.invoicing.einvoice import NAMESPACES, Validator
from services.invoicing.tables import customer_payment_accounts, document_einvoices, document_pdfs, documents, messaging
from shared import topics
from shared.events import CustomerProfile, EInvoiceFormat, ReceivablesPosted, SettlementItem
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (
    DEADLINE_S,
    new_contract_id,
    publish_usage,
    request_billing_run,
    usage,
    wait_for_invoice,
    wait_for_settlement_to_hold,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LEITWEG_ID = "991-01234-56"
PUBLIC_BUYER = {
    "name": "Bundesamt für Beispiele", "country": "DE", "address_lines": ["Musterweg 1"], "postal_code": "53113",
    "city": "Bonn", "email": "rechnung@bund.example",
    "e_invoicing": {"format": "xrechnung", "buyer_reference": LEITWEG_ID,
                    "electronic_address": {"scheme": "0204", "address": LEITWEG_ID}},
}


def xpath(xml: bytes, path: str) -> list[str]:
    return [str(found) for found in etree.fromstring(xml).xpath(path, namespaces=NAMESPACES)]


async def put_contract(rating_api_url: str, contract: str, customer: dict) -> httpx.Response:
    body = {"customer": {"customer_id": f"CUST-{contract}", **customer}, "currency": "EUR",
            "starts_on": "2026-01-01",
            "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": "0.10"}]}
    async with httpx.AsyncClient(timeout=10, headers=as_role()) as client:
        return await client.put(f"{rating_api_url}/contracts/{contract}", json=body)


async def test_an_xrechnung_customer_gets_a_valid_xrechnung_and_its_factur_x_pdf_carries_it(
        broker, databases, rating_api_url, portal_url, tmp_path, reconciled_at_the_end):
    contract = new_contract_id("xrechnung")
    answer = await put_contract(rating_api_url, contract, PUBLIC_BUYER)
    assert answer.status_code == 200, answer.text
    reconciled_at_the_end.add(contract)
    await publish_usage(broker, usage(contract, "api-calls", "1234"))
    await wait_for_settlement_to_hold(databases, contract, events=1)
    await request_billing_run(broker, contract)
    invoice = await wait_for_invoice(databases, contract)
    assert (invoice.net_total, invoice.tax_total, invoice.gross_total) == (
        Decimal("123.40"), Decimal("23.45"), Decimal("146.85"))

    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        [listed] = (await client.get(f"/api/customers/CUST-{contract}/documents")).json()["items"]
        assert listed["xml_url"] == f"/api/customers/CUST-{contract}/documents/{invoice.number}/xml"
        answer = await client.get(listed["xml_url"])
        pdf = (await client.get(listed["pdf_url"])).content
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/xml"
    xml = answer.content

    # Valid: XSD, the EN 16931 schematron with zero failed assertions, the XRechnung rules.
    report = Validator().validate(xml, EInvoiceFormat.XRECHNUNG)
    assert report.passed and not report.findings, report.summary()
    assert xpath(xml, "//rsm:ExchangedDocument/ram:ID/text()") == [invoice.number]
    assert xpath(xml, "//ram:BuyerReference/text()") == [LEITWEG_ID]
    assert xpath(xml, "//ram:BuyerTradeParty/ram:URIUniversalCommunication/ram:URIID/text()") == [LEITWEG_ID]
    assert xpath(xml, "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:GrandTotalAmount/text()") == [
        "146.85"]
    assert xpath(xml, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CalculatedAmount/text()") \
        == ["23.45"]

    # Stored with their sha256 and the validation each passed: the XRechnung XML, and the Factur-X
    # one the PDF carries, byte for byte.
    async with databases["invoicing"].transaction() as session:
        stored = {row.format: row for row in (await session.execute(select(document_einvoices).where(
            document_einvoices.c.document_id == invoice.document_id))).all()}
        pdf_sha256 = await session.scalar(select(document_pdfs.c.sha256).where(
            document_pdfs.c.document_id == invoice.document_id))
    assert (stored["xrechnung"].content, stored["xrechnung"].sha256) == (xml, hashlib.sha256(xml).hexdigest())
    assert stored["xrechnung"].validation == \
        "valid (XSD Factur-X EN 16931 + EN 16931 schematron + XRechnung 3.0 rules)"
    assert stored["factur-x"].validation == "valid (XSD Factur-X EN 16931 + EN 16931 schematron)"
    embedded = facturx.get_xml_from_pdf(pdf, check_xsd=False)
    assert embedded == ("factur-x.xml", stored["factur-x"].content)
    assert xpath(embedded[1], "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()") == [
        "urn:cen.eu:en16931:2017"]
    assert xpath(embedded[1], "//ram:BuyerReference/text()") == [LEITWEG_ID]
    assert pdf_sha256 == hashlib.sha256(pdf).hexdigest()

    # The operator command writes it out, byte for byte.
    target = tmp_path / "invoice.xml"
    subprocess.run([sys.executable, "-m", "services.invoicing.admin", "xml", invoice.number, "-o", str(target)],
                   check=True, capture_output=True, env=os.environ.copy(), timeout=60)
    assert target.read_bytes() == xml


async def test_a_customer_paying_by_sepa_direct_debit_gets_invoices_naming_mandate_and_account(
        broker, databases, rating_api_url, portal_url, reconciled_at_the_end):
    contract = new_contract_id("mandate")
    customer = f"CUST-{contract}"
    answer = await put_contract(rating_api_url, contract, {"name": "ACME Robotics GmbH", "country": "DE",
                                                           "vat_id": "DE811907980", "address_lines": ["Hafenstraße 12"],
                                                           "postal_code": "20457", "city": "Hamburg"})
    assert answer.status_code == 200, answer.text
    reconciled_at_the_end.add(contract)
    added = subprocess.run(
        [sys.executable, "-m", "services.payments.admin", "add-account", customer, "--method", "sepa_direct_debit",
         "--holder", "ACME Robotics GmbH", "--iban", "DE02 1203 0000 0000 2020 51", "--mandate-reference",
         f"M-{contract}"[:35], "--mandate-signed-on", "2026-01-02"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert added.returncode == 0, added.stderr
    # payments announces the default account; invoicing keeps it for the customer's invoices.
    await wait_until(lambda: databases.has_exactly("invoicing", customer_payment_accounts, 1,
                                                   customer_payment_accounts.c.customer_id == customer),
                     timeout_s=DEADLINE_S, what="invoicing to hold the customer's mandate")
    await publish_usage(broker, usage(contract, "api-calls", "1234"))
    await wait_for_settlement_to_hold(databases, contract, events=1)
    await request_billing_run(broker, contract)
    invoice = await wait_for_invoice(databases, contract)
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        xml = (await client.get(f"/api/customers/{customer}/documents/{invoice.number}/xml")).content
        pdf = (await client.get(f"/api/customers/{customer}/documents/{invoice.number}/pdf")).content
    # A Factur-X customer's e-invoice is the XML its PDF carries.
    assert facturx.get_xml_from_pdf(pdf, check_xsd=False) == ("factur-x.xml", xml)
    report = Validator().validate(xml, EInvoiceFormat.FACTUR_X)
    assert report.passed and not report.findings, report.summary()
    assert xpath(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode/text()") == ["59"]
    assert xpath(xml, "//ram:DirectDebitMandateID/text()") == [f"M-{contract}"[:35]]
    assert xpath(xml, "//ram:PayerPartyDebtorFinancialAccount/ram:IBANID/text()") == ["DE02120300000000202051"]
    assert xpath(xml, "//ram:CreditorReferenceID/text()") == ["DE98ZZZ09999999999"]
    assert xpath(xml, "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:DuePayableAmount/text()") == [
        "146.85"]
    assert invoice.payment_terms.startswith(f"Collected by SEPA direct debit on {invoice.due_date.isoformat()}")


async def test_an_xrechnung_customer_without_a_buyer_reference_is_refused_where_it_enters(rating_api_url):
    contract = new_contract_id("xrechnung-incomplete")
    incomplete = {**PUBLIC_BUYER, "e_invoicing": {"format": "xrechnung"}}
    answer = await put_contract(rating_api_url, contract, incomplete)
    assert answer.status_code == 422
    assert "an XRechnung customer needs e_invoicing.buyer_reference (BT-10), e_invoicing.electronic_address (BT-49)" \
        in answer.text


async def test_a_run_whose_e_invoice_fails_validation_is_parked_with_the_report_and_takes_no_number(
        broker, databases):
    # Posted as a settlement of another release might have: a customer in "UK", which is not an
    # ISO 3166 country code (GB is), so no buyer could process the e-invoice (the schematron's code list).
    contract = new_contract_id("uk")
    customer = CustomerProfile(customer_id=f"CUST-{contract}", name="Brexit Ltd", country="UK",
                               address_lines=["1 Downing Street", "London SW1A 2AA"])
    now = datetime.now(UTC)
    line = SettlementItem(line_id=uuid.uuid4(), item_count=1, item_code="api-calls", description="API calls",
                          quantity=Decimal("1000"), unit_price=Decimal("0.10"), net=Decimal("100.00"),
                          period_start=date(2026, 11, 1), period_end=date(2026, 11, 30), tax_category="standard")
    run = ReceivablesPosted(event_id=uuid.uuid4(), occurred_at=now, contract_id=contract,
                            settlement_run_id=uuid.uuid4(), customer_id=customer.customer_id, customer=customer,
                            currency="EUR", cutoff=now, items=[line], total=Decimal("100.00"),
                            ledger_balance=Decimal("100.00"))
    await publish_event(broker, topics.RECEIVABLES_POSTED, run, run.key)
    parked = messaging.parked
    await wait_until(lambda: databases.has_exactly("invoicing", parked, 1, parked.c.key == contract),
                     timeout_s=DEADLINE_S, what="the run to be parked")
    async with databases["invoicing"].transaction() as session:
        waiting_for = await session.scalar(select(parked.c.waiting_for).where(parked.c.key == contract))
        issued = (await session.execute(select(documents.c.number).where(documents.c.contract_id == contract))).all()
    assert f"settlement run {run.settlement_run_id} is not issued, its e-invoice fails validation" in waiting_for
    assert "Value of 'ram:CountryID' is not allowed" in waiting_for
    assert issued == []
