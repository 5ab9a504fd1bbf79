"""The portal's read API against the real pipeline: a customer's data as each service stored it,
with hand-checked amounts, filters, sorting, pages, validation and the quick actions' paths."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ops.observe import wait_until
from services.portal.actions import Actions, ServiceUnavailable, UnknownContract
from services.portal.domain import ActionRefused
from services.portal.models import CancellationRequest, PurchaseRequest
from services.portal.reads import Sources
from services.portal.settings import PortalSettings
from services.portal.sources import Source
from shared import topics
from shared.events import PaymentKind, PaymentReceived, derive_id
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (DEADLINE_S, given_contract, new_contract_id, publish_usage, request_billing_run, usage,
                                wait_for_rows)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def billed_customer(broker, databases, portal_url):
    """One customer, two contracts: API billed (12000 + 8500 api-calls) and paid in part, SMS unbilled."""
    api, sms = new_contract_id("portal-api"), new_contract_id("portal-sms")
    customer = f"CUST-{api}"
    await given_contract(databases, api, {"api-calls": "0.0125"}, customer_id=customer)
    await given_contract(databases, sms, {"sms": "0.075"}, customer_id=customer)
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        base = f"/api/customers/{customer}"
        # The first use is rated alone, so that the second is an item of its own (not one of 20,500).
        await publish_usage(broker, usage(api, "api-calls", "12000", day=3))  # 150.00
        await wait_for_rows(client, f"{base}/billable-items", 1)
        await publish_usage(broker, usage(api, "api-calls", "8500", day=17),  # 20,500 x 0.0125 = 256.25: 106.25 more
                            usage(sms, "sms", "1234", day=11))  # 92.55
        await wait_for_rows(client, f"{base}/billable-items", 3)
        await request_billing_run(broker, api)
        invoice = (await wait_for_rows(client, f"{base}/open-items", 1))["items"][0]
        # Settlement books the invoice's tax from its own read of documents.created, which may come
        # after payments opened the item: the ledger's running balances below are in booking order.
        await wait_for_rows(client, f"{base}/ledger", 1, type="Tax")
        payment = PaymentReceived(
            event_id=derive_id("portal-tests", api), occurred_at=datetime.now(UTC), contract_id=api,
            payment_id=f"{api}-P1", kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=customer,
            currency="EUR", amount=Decimal("100.00"), invoice_number=invoice["reference"])
        await publish_event(broker, topics.PAYMENTS_RECEIVED, payment, payment.key)
        await wait_for_rows(client, f"{base}/ledger", 1, type="Payment")
        await wait_for_rows(client, f"{base}/open-items", 1, status="open", sort="open_amount")

        async def paid() -> bool:
            items = (await client.get(f"{base}/open-items")).json()["items"]
            return items[0]["open_amount"] == "204.94"

        await wait_until(paid, timeout_s=DEADLINE_S, what="the payment assigned to the invoice")
        yield client, base, api, sms, invoice["reference"]


async def test_billable_items_filter_sort_and_page(billed_customer):
    client, base, api, sms, number = billed_customer
    listed = (await client.get(f"{base}/billable-items", params={"sort": "net"})).json()
    assert [(i["contract_id"], i["net"], i["status"]) for i in listed["items"]] == [
        (sms, "92.55", "unbilled"), (api, "106.25", "billed"), (api, "150.00", "billed")]
    assert [i["document_numbers"] for i in listed["items"]] == [[], [number], [number]]
    assert listed["items"][1]["quantity"] == "8500" and listed["items"][1]["unit_price"] == "0.0125"

    unbilled = (await client.get(f"{base}/billable-items", params={"status": "unbilled"})).json()
    assert [i["contract_id"] for i in unbilled["items"]] == [sms]
    by_contract = (await client.get(f"{base}/billable-items", params={"contract_id": api, "sort": "-occurred_at"})).json()
    assert [i["occurred_at"][:10] for i in by_contract["items"]] == ["2026-11-17", "2026-11-03"]
    assert (await client.get(f"{base}/billable-items", params={"period": "2026-10"})).json()["total"] == 0
    assert (await client.get(f"{base}/billable-items", params={"period": "2026-11", "type": "usage"})).json()["total"] == 3

    second_page = (await client.get(f"{base}/billable-items", params={"sort": "-net", "limit": 2, "offset": 2})).json()
    assert (second_page["total"], second_page["limit"], second_page["offset"]) == (3, 2, 2)
    assert [i["net"] for i in second_page["items"]] == ["92.55"]


async def test_documents_runs_and_the_stored_pdf(billed_customer):
    client, base, api, sms, number = billed_customer
    documents = (await client.get(f"{base}/documents")).json()["items"]
    # 256.25 net; 19 % VAT = 48.6875 -> 48.69; gross 304.94
    assert [(d["number"], d["type"], d["contract_id"], d["net_total"], d["tax_total"], d["gross_total"])
            for d in documents] == [(number, "invoice", api, "256.25", "48.69", "304.94")]
    assert (await client.get(f"{base}/documents", params={"type": "credit_note"})).json()["total"] == 0

    pdf = await client.get(documents[0]["pdf_url"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text_of_pdf = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert number in text_of_pdf and "304.94" in text_of_pdf
    assert (await client.get(f"{base}/documents/R1999-0001/pdf")).status_code == 404

    runs = (await client.get(f"{base}/settlement-runs")).json()["items"]
    assert [(r["contract_id"], r["status"], r["total"], r["document_numbers"], r["month"]) for r in runs] == [
        (api, "complete", "256.25", [number], datetime.now(UTC).strftime("%Y-%m"))]
    assert (await client.get(f"{base}/settlement-runs", params={"status": "pending"})).json()["total"] == 0


async def test_contracts_open_items_and_the_ledger_with_running_balances(billed_customer):
    client, base, api, sms, number = billed_customer
    contracts = (await client.get(f"{base}/contracts")).json()["items"]
    assert sorted((c["contract_id"], c["status"], c["starts_on"], c["expires_on"]) for c in contracts) == sorted([
        (api, "active", "2026-01-01", None), (sms, "active", "2026-01-01", None)])

    item = (await client.get(f"{base}/open-items")).json()["items"][0]
    assert (item["reference"], item["amount"], item["open_amount"], item["status"]) == (number, "304.94", "204.94",
                                                                                        "open")
    assert [(a["payment_id"], a["amount"]) for a in item["assignments"]] == [(f"{api}-P1", "100.00")]

    entries = (await client.get(f"{base}/ledger", params={"contract_id": api, "sort": "sequence"})).json()["items"]
    assert [(e["type"], e["amount"], e["balance"]) for e in entries] == [
        ("Receivable", "256.25", "256.25"), ("Tax", "48.69", "304.94"), ("Payment", "-100.00", "204.94")]

    summary = (await client.get(f"{base}/ledger/summary")).json()
    assert [(c["contract_id"], c["balance"], c["entries"], c["by_type"]) for c in summary["contracts"]] == [
        (api, "204.94", 3, {"Payment": "-100.00", "Receivable": "256.25", "Tax": "48.69"}),
        (sms, "0.00", 0, {})]  # its account exists since its usage arrived; nothing billed yet
    assert [(t["currency"], t["balance"]) for t in summary["totals"]] == [("EUR", "204.94")]
    assert (await client.get(f"{base}/payment-accounts")).json() == {
        "items": [], "total": 0, "limit": 25, "offset": 0, "sort": "created_at"}


@pytest.mark.parametrize("params", [
    {"period": "2026-13"}, {"period": "11/2026"}, {"sort": "price"}, {"sort": "--net"}, {"limit": 0},
    {"limit": 501}, {"offset": -1}, {"status": "paid"}, {"type": "fee"}, {"colour": "red"},
])
async def test_bad_parameters_are_422(billed_customer, params):
    client, base, *_ = billed_customer
    assert (await client.get(f"{base}/billable-items", params=params)).status_code == 422


async def test_unknown_customers_are_404(portal_url):
    async with httpx.AsyncClient(base_url=portal_url, headers=as_role()) as client:
        assert (await client.get("/api/customers/NOBODY/documents")).status_code == 404
        assert (await client.get("/customers/NOBODY")).status_code == 404


async def test_usage_goes_through_rating_once_per_request_and_is_refused_for_what_cannot_be(billed_customer):
    client, base, api, sms, number = billed_customer
    request = {"request_id": str(uuid.uuid4()), "item_code": "sms", "quantity": "100", "day": "2026-11-20"}
    for _ in range(2):  # a resubmitted form
        answer = await client.post(f"{base}/contracts/{sms}/usage", json=request)
        assert answer.status_code == 202, answer.text
    listed = await wait_for_rows(client, f"{base}/billable-items", 2, contract_id=sms, sort="occurred_at")
    assert [i["net"] for i in listed["items"]] == ["92.55", "7.50"]  # 100 x 0.075

    refused = await client.post(f"{base}/contracts/{sms}/usage", json={**request, "item_code": "fax"})
    assert refused.status_code == 422 and "no item 'fax'" in refused.json()["detail"]
    foreign = await client.post(f"/api/customers/NOBODY/contracts/{sms}/usage", json=request)
    assert foreign.status_code == 404
    future = await client.post(f"{base}/contracts/{sms}/usage", json={**request, "day": "2999-01-01"})
    assert future.status_code == 422


async def test_the_portal_reads_in_read_only_transactions(pipeline):
    source = Source(PortalSettings().rating_database_url)
    try:
        with pytest.raises(DBAPIError, match="read-only"):
            async with source.read() as connection:
                await connection.execute(text("DELETE FROM customers"))
    finally:
        await source.dispose()


async def test_purchases_and_cancellations_are_asked_of_ratings_api(billed_customer):
    """The requests the portal sends rating's API (with the caller's own credential), and how answers map."""
    client, base, api, sms, number = billed_customer
    customer = base.rsplit("/", 1)[1]
    sent: list[tuple[str, dict]] = []

    def rating(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer bis_caller_secret"  # the caller's, not the portal's
        sent.append((request.url.path, json.loads(request.content)))
        if request.url.path.endswith("/cancel") and json.loads(request.content)["ends_on"] < "2026-01-01":
            return httpx.Response(422, json={"detail": "ends before the contract starts"})
        return httpx.Response(201 if request.url.path.endswith("/purchases") else 200, json={})

    sources = Sources.of(PortalSettings())
    try:
        async with httpx.AsyncClient(base_url="http://rating.test", transport=httpx.MockTransport(rating)) as api_client:
            actions = Actions(sources, api_client, api_client, api_client).on_behalf_of("bis_caller_secret")
            purchase_id = uuid.uuid4()
            await actions.add_purchase(customer, api, PurchaseRequest(
                purchase_id=purchase_id, item_code="setup", description="Setup fee", quantity=Decimal("1"), unit_price=Decimal("49.90"),
                purchased_on=date(2026, 11, 20)))
            await actions.cancel_contracts(customer, CancellationRequest(contract_ids=[api, sms],
                                                                         ends_on=date(2026, 12, 31)))
            assert sent == [
                (f"/contracts/{api}/purchases", {"purchase_id": str(purchase_id), "item_code": "setup",
                                                 "description": "Setup fee", "quantity": "1",
                                                 "unit_price": "49.90", "purchased_on": "2026-11-20"}),
                (f"/contracts/{api}/cancel", {"ends_on": "2026-12-31"}),
                (f"/contracts/{sms}/cancel", {"ends_on": "2026-12-31"})]
            with pytest.raises(ActionRefused, match="ends before the contract starts"):
                await actions.cancel_contracts(customer, CancellationRequest(contract_ids=[api],
                                                                             ends_on=date(2025, 1, 1)))
            with pytest.raises(UnknownContract):
                await actions.cancel_contracts("NOBODY", CancellationRequest(contract_ids=[api],
                                                                             ends_on=date(2026, 12, 31)))
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as unreachable:
            with pytest.raises(ServiceUnavailable):
                await Actions(sources, unreachable, unreachable, unreachable).cancel_contracts(
                    customer, CancellationRequest(contract_ids=[api], ends_on=date(2026, 12, 31)))
    finally:
        await sources.dispose()


async def test_every_answer_carries_the_security_headers_and_pages_a_content_security_policy(portal_url):
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        page = await client.get("/customers")
        api = await client.get("/openapi.json")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert api.headers["x-frame-options"] == "DENY"
