"""The portal's detail reads against the real pipeline: a contract with its price plans and billing
schedule, orders of one-time purchases, and a document with its lines, tax and open item, with
hand-checked amounts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio

from ops.observe import wait_until
from shared import topics
from shared.events import PaymentKind, PaymentReceived, derive_id
from shared.runtime import publish_event
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (DEADLINE_S, given_contract, given_priced_contract, new_contract_id, publish_usage, request_billing_run,
                                usage, wait_for_rows)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

def months_since_start(now: datetime) -> int:
    """The contract's periods before the current one (it started on 1 January 2026, monthly)."""
    return (now.year - 2026) * 12 + now.month - 1


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def invoiced_contract(broker, databases, portal_url):
    """November: 1234 storage (123.40) and 2600 API calls (2500 billable: 20.00 + 15.00 = 35.00), an order
    of two purchases on the 20th (2 x 49.90 + 3 x 5.00 = 114.80); all invoiced, 25.11 paid."""
    contract = new_contract_id("portal-details")
    customer = f"CUST-{contract}"
    await given_priced_contract(databases, contract, customer)
    await publish_usage(broker, usage(contract, "storage", "1234", day=10), usage(contract, "api-calls", "2600", day=12))
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        base = f"/api/customers/{customer}"
        for code, description, quantity, price in [("setup", "Setup fee", "2", "49.90"), ("cable", "Cable", "3", "5")]:
            answer = await client.post(f"{base}/contracts/{contract}/purchases", json={
                "item_code": code, "description": description, "quantity": quantity, "unit_price": price,
                "purchased_on": "2026-11-20"})
            assert answer.status_code == 201, answer.text
        await wait_for_rows(client, f"{base}/billable-items", 4)
        await request_billing_run(broker, contract)
        invoice = (await wait_for_rows(client, f"{base}/open-items", 1))["items"][0]
        payment = PaymentReceived(
            event_id=derive_id("portal-details", contract), occurred_at=datetime.now(UTC), contract_id=contract,
            payment_id=f"{contract}-P1", kind=PaymentKind.PAYMENT, provider="test-bank", customer_id=customer,
            currency="EUR", amount=Decimal("25.11"), invoice_number=invoice["reference"])
        await publish_event(broker, topics.PAYMENTS_RECEIVED, payment, payment.key)

        async def paid() -> bool:
            return (await client.get(f"{base}/open-items")).json()["items"][0]["open_amount"] == "300.00"

        await wait_until(paid, timeout_s=DEADLINE_S, what="the payment assigned to the invoice")
        yield client, base, contract, invoice["reference"]


async def test_the_contract_with_its_price_plans(invoiced_contract):
    client, base, contract, _ = invoiced_contract
    found = (await client.get(f"{base}/contracts/{contract}")).json()
    assert (found["contract_id"], found["customer_name"], found["starts_on"], found["expires_on"], found["status"],
            found["cycle"], found["currency"]) == (contract, f"Customer of {contract}", "2026-01-01", None, "active",
                                                   "monthly, calendar", "EUR")
    items = {item["item_code"]: item for item in found["items"]}
    assert [(b["from_quantity"], b["to_quantity"], b["unit_price"]) for b in items["storage"]["price_plan"]["bands"]] \
        == [("0", None, "0.1")]
    calls = items["api-calls"]["price_plan"]
    assert (calls["model"], calls["free_quantity"]) == ("graduated", "100")
    assert [(b["from_quantity"], b["to_quantity"], b["unit_price"]) for b in calls["bands"]] == [
        ("0", "1000", "0.02"), ("1000", None, "0.01")]
    assert (await client.get(f"{base}/contracts/T-nobody")).status_code == 404
    assert (await client.get(f"/api/customers/NOBODY/contracts/{contract}")).status_code == 404


async def test_the_billing_schedule_has_a_row_per_item_and_period(invoiced_contract):
    client, base, contract, number = invoiced_contract
    now = datetime.now(UTC)
    past = months_since_start(now)
    schedule = (await client.get(f"{base}/contracts/{contract}/schedule", params={"limit": 500})).json()
    # every past month, the current one and 12 ahead, for each of the two items
    assert schedule["total"] == 2 * (past + 1 + 12)
    november = (await client.get(f"{base}/contracts/{contract}/schedule", params={
        "timing": "past", "sort": "-period_start", "limit": 2})).json()
    assert november["total"] == 2 * past
    rows = {row["item_code"]: row for row in november["items"]}
    assert [(r["period_start"], r["period_end"]) for r in rows.values()] == [("2026-11-01", "2026-11-30")] * 2
    storage, calls = rows["storage"], rows["api-calls"]
    assert (storage["consumed"], storage["free"], storage["billable"], storage["unit_price"], storage["discount"],
            storage["net"]) == ("1234", "0", "1234", "0.1", "0.00", "123.40")  # 1234 x 0.10
    assert (calls["consumed"], calls["free"], calls["billable"], calls["unit_price"], calls["net"]) == (
        "2600", "100", "2500", "0.01", "35.00")  # 1000 x 0.02 + 1500 x 0.01
    for row in (storage, calls):
        assert (row["billed"], row["status"], row["timing"]) == (True, "billed", "past")
        assert [(i["number"], i["type"]) for i in row["invoices"]] == [(number, "invoice")]

    current = (await client.get(f"{base}/contracts/{contract}/schedule", params={"timing": "current"})).json()
    assert [(r["item_code"], r["net"], r["billed"], r["status"], r["invoices"]) for r in current["items"]] == [
        ("api-calls", "0.00", False, "nothing rated", []), ("storage", "0.00", False, "nothing rated", [])]
    paged = (await client.get(f"{base}/contracts/{contract}/schedule", params={
        "item_code": "storage", "limit": 1, "offset": 10})).json()
    assert (paged["total"], [r["period_start"] for r in paged["items"]]) == (past + 13, ["2026-11-01"])
    assert (await client.get(f"{base}/contracts/{contract}/schedule", params={"timing": "soon"})).status_code == 422


async def test_an_estimate_is_applied_to_the_unbilled_current_and_future_periods(invoiced_contract):
    client, base, contract, _ = invoiced_contract
    path = f"{base}/contracts/{contract}/schedule"
    storage = {"item_code": "storage", "estimate_item": "storage", "estimate_quantity": "1234"}
    current = (await client.get(path, params={**storage, "timing": "current"})).json()["items"]
    assert [(r["estimated"], r["estimated_quantity"], r["estimated_net"], r["net"], r["billed"]) for r in current] == [
        (True, "1234", "123.40", "0.00", False)]  # 1234 x 0.10, a forecast: its own net stays what was rated
    future = (await client.get(path, params={**storage, "timing": "future", "limit": 50})).json()
    assert future["total"] == 12 and {r["estimated_net"] for r in future["items"]} == {"123.40"}
    november = (await client.get(path, params={**storage, "timing": "past", "sort": "-period_start", "limit": 1})
                ).json()["items"][0]
    assert (november["estimated"], november["estimated_net"], november["net"]) == (False, None, "123.40")  # billed

    calls = (await client.get(path, params={"timing": "current", "estimate_item": "api-calls",
                                           "estimate_quantity": "2600"})).json()["items"]
    # 100 free, 1000 x 0.02 + 1500 x 0.01; the other item's row is no estimate
    assert [(r["item_code"], r["estimated"], r["estimated_net"]) for r in calls] == [
        ("api-calls", True, "35.00"), ("storage", False, None)]
    assert (await client.get(path, params={"estimate_item": "storage"})).status_code == 422
    unknown = await client.get(path, params={"estimate_item": "fax", "estimate_quantity": "1"})
    assert unknown.status_code == 422 and "fax" in unknown.json()["detail"]


async def test_editing_one_periods_estimate_clears_the_skipped_periods_before_it(invoiced_contract):
    client, base, contract, _ = invoiced_contract
    path = f"{base}/contracts/{contract}/schedule"
    unbilled = {"item_code": "storage", "limit": 50, "sort": "period_start"}
    rows = (await client.get(path, params={**unbilled, "timing": "future"})).json()["items"]
    third = rows[2]["period_start"]  # the current period and two future ones are skipped
    edited = {**unbilled, "estimate_item": "storage", "estimate_quantity": "1234", "estimate_period": third,
              "estimate_period_quantity": "500"}
    current = (await client.get(path, params={**edited, "timing": "current"})).json()["items"]
    future = (await client.get(path, params={**edited, "timing": "future"})).json()["items"]
    assert [(r["estimated"], r["estimated_net"]) for r in current + future[:2]] == [(False, None)] * 3
    # 500 x 0.10 = 50.00 in the edited period; the later ones keep 1234 x 0.10 = 123.40
    assert (future[2]["period_start"], future[2]["estimated_quantity"], future[2]["estimated_net"],
            future[2]["estimate_edited"], future[2]["net"]) == (third, "500", "50.00", True, "0.00")
    assert {(r["estimated_quantity"], r["estimated_net"], r["estimate_edited"]) for r in future[3:]} == {
        ("1234", "123.40", False)}
    assert len(future) == 12

    alone = (await client.get(path, params={**unbilled, "timing": "future", "estimate_item": "storage",
                                            "estimate_period": third, "estimate_period_quantity": "500"})).json()
    assert [r["estimated_net"] for r in alone["items"] if r["estimated"]] == ["50.00"]  # only that period

    billed = await client.get(path, params={**edited, "estimate_period": "2026-11-01"})
    assert billed.status_code == 422 and "no unbilled period of storage begins on 2026-11-01" in billed.json()["detail"]
    halfway = await client.get(path, params={"estimate_item": "storage", "estimate_period": third})
    assert halfway.status_code == 422


async def test_a_schedule_rows_billing_detail_has_its_price_bands_and_usage_events(invoiced_contract):
    client, base, contract, number = invoiced_contract
    calls = (await client.get(f"{base}/contracts/{contract}/schedule/api-calls/2026-11-01")).json()
    assert (calls["row"]["consumed"], calls["row"]["free"], calls["row"]["billable"], calls["row"]["net"],
            [i["number"] for i in calls["row"]["invoices"]]) == ("2600", "100", "2500", "35.00", [number])
    # 100 free, then the bands: 1000 x 0.02 = 20.00 and 1500 x 0.01 = 15.00
    assert [(b["from_quantity"], b["to_quantity"], b["unit_price"], b["quantity"], b["net"])
            for b in calls["price_detail"]] == [("0", "1000", "0.02", "1000", "20.00"),
                                                ("1000", None, "0.01", "1500", "15.00")]
    assert [(e["occurred_at"], e["quantity"], e["meter_reading"]) for e in calls["usage"]] == [
        ("2026-11-12T09:30:00Z", "2600", None)]
    assert calls["next"] is None
    storage = (await client.get(f"{base}/contracts/{contract}/schedule/storage/2026-11-01")).json()
    assert [(b["from_quantity"], b["to_quantity"], b["unit_price"], b["quantity"], b["net"])
            for b in storage["price_detail"]] == [(None, None, "0.1", "1234", "123.40")]  # per unit: 1234 x 0.10
    october = (await client.get(f"{base}/contracts/{contract}/schedule/storage/2026-10-01")).json()
    assert (october["row"]["status"], october["price_detail"], october["usage"]) == ("nothing rated", [], [])

    for unknown in ("storage/2026-11-15", "fax/2026-11-01", "storage/2025-12-01"):
        assert (await client.get(f"{base}/contracts/{contract}/schedule/{unknown}")).status_code == 404, unknown
    assert (await client.get(f"/api/customers/NOBODY/contracts/{contract}/schedule/storage/2026-11-01")
            ).status_code == 404
    unreadable = await client.get(f"{base}/contracts/{contract}/schedule/storage/2026-11-01", params={"after": "x"})
    assert unreadable.status_code == 422


async def test_a_schedule_rows_usage_events_are_paged_on_the_server(databases, broker, portal_url):
    contract = new_contract_id("portal-line-usage")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125"}, customer_id=customer)
    await publish_usage(broker, *(usage(contract, "api-calls", quantity, day=day)
                                  for quantity, day in [("100", 3), ("200", 5), ("301", 7)]))
    path = f"/api/customers/{customer}/contracts/{contract}/schedule/api-calls/2026-11-01"
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:

        async def all_rated() -> bool:
            return (await client.get(path)).json()["row"]["consumed"] == "601"

        await wait_until(all_rated, timeout_s=DEADLINE_S, what="the three usage events rated")
        first = (await client.get(path, params={"limit": 2})).json()
        assert [(e["occurred_at"][:10], e["quantity"]) for e in first["usage"]] == [("2026-11-03", "100"),
                                                                                   ("2026-11-05", "200")]
        # 601 x 0.0125 = 7.5125, rounded half up once: 7.51, in the row and its one band
        assert first["row"]["net"] == "7.51"
        assert [(b["unit_price"], b["quantity"], b["net"]) for b in first["price_detail"]] == [("0.0125", "601", "7.51")]
        second = (await client.get(path, params={"limit": 2, "after": first["next"]})).json()
        assert ([(e["occurred_at"][:10], e["quantity"]) for e in second["usage"]], second["next"]) == (
            [("2026-11-07", "301")], None)


async def test_the_customer_summary_says_when_it_was_created_and_last_changed(databases, portal_url, rating_api_url):
    contract = new_contract_id("portal-customer-dates")
    customer = f"CUST-{contract}"
    await given_priced_contract(databases, contract, customer)
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as portal, \
            httpx.AsyncClient(base_url=rating_api_url, timeout=10, headers=as_role()) as rating_api:
        created = (await portal.get(f"/api/customers/{customer}")).json()
        assert created["created_at"] == created["updated_at"]
        spec = (await rating_api.get(f"/contracts/{contract}")).json()
        assert (await rating_api.put(f"/contracts/{contract}", json=spec)).status_code == 200
        unchanged = (await portal.get(f"/api/customers/{customer}")).json()
        assert unchanged["updated_at"] == created["updated_at"]  # the same profile again is no change
        spec["customer"]["email"] = "billing@example.com"
        assert (await rating_api.put(f"/contracts/{contract}", json=spec)).status_code == 200
        changed = (await portal.get(f"/api/customers/{customer}")).json()
    assert changed["email"] == "billing@example.com" and changed["created_at"] == created["created_at"]
    assert datetime.fromisoformat(changed["updated_at"]) > datetime.fromisoformat(created["updated_at"])


async def test_purchases_of_one_day_are_one_order(invoiced_contract):
    client, base, contract, number = invoiced_contract
    orders = (await client.get(f"{base}/orders")).json()
    assert orders["total"] == 1
    [order] = orders["items"]
    assert (order["order_id"], order["ordered_on"], order["status"], order["net"]) == (
        f"{contract}@2026-11-20", "2026-11-20", "billed", "114.80")
    assert sorted((i["item_code"], i["quantity"], i["unit_price"], i["net"], i["billed"]) for i in order["items"]) == [
        ("cable", "3", "5", "15.00", True), ("setup", "2", "49.9", "99.80", True)]
    assert [(d["number"], d["type"]) for d in order["documents"]] == [(number, "invoice")]
    assert (await client.get(f"{base}/orders", params={"period": "2026-10"})).json()["total"] == 0


async def test_a_document_with_its_lines_tax_and_open_item(invoiced_contract):
    client, base, contract, number = invoiced_contract
    document = (await client.get(f"{base}/documents/{number}")).json()
    # 123.40 + 35.00 + 99.80 + 15.00 = 273.20 net; 19 % VAT 51.908 -> 51.91; gross 325.11
    assert (document["type"], document["net_total"], document["tax_total"], document["gross_total"]) == (
        "invoice", "273.20", "51.91", "325.11")
    assert (document["service_period_start"], document["service_period_end"]) == ("2026-11-01", "2026-11-30")
    assert document["payment_terms"]
    assert sorted((line["item_code"], line["quantity"], line["net"]) for line in document["lines"]) == [
        ("api-calls", "2500", "35.00"), ("cable", "3", "15.00"), ("setup", "2", "99.80"), ("storage", "1234", "123.40")]
    assert [(t["vat_rate"], t["base"], t["tax"]) for t in document["tax_lines"]] == [("19", "273.20", "51.91")]
    item = document["open_item"]
    assert (item["amount"], item["open_amount"], item["status"]) == ("325.11", "300.00", "open")
    assert [(a["payment_id"], a["amount"]) for a in item["assignments"]] == [(f"{contract}-P1", "25.11")]
    assert (document["corrects_number"], document["corrected_by"]) == (None, [])
    assert document["pdf_url"].endswith(f"/documents/{number}/pdf")
    assert document["xml_url"].endswith(f"/documents/{number}/xml")
    assert f"<ram:ID>{number}</ram:ID>".encode() in (await client.get(document["xml_url"])).content
    assert (await client.get(f"{base}/documents/R1999-0001")).status_code == 404


async def test_a_credit_note_for_an_order(invoiced_contract, databases):
    """Last in the module: it cancels the order the tests above read."""
    client, base, contract, number = invoiced_contract
    order_id = f"{contract}@2026-11-20"
    answer = await client.post(f"{base}/orders/cancellations", json={"order_ids": [order_id]})
    assert answer.status_code == 200, answer.text
    assert "114.80 EUR" in answer.json()["message"]

    documents = await wait_for_rows(client, f"{base}/documents", 1, type="credit_note")
    [credit_note] = documents["items"]
    # 99.80 + 15.00 = 114.80 credited; VAT 21.812 -> 21.81; gross 136.61
    assert (credit_note["corrects_number"], credit_note["net_total"], credit_note["tax_total"],
            credit_note["gross_total"]) == (number, "114.80", "21.81", "136.61")
    details = (await client.get(f"{base}/documents/{credit_note['number']}")).json()
    assert sorted((line["item_code"], line["net"], line["credit_reason"]) for line in details["lines"]) == [
        ("cable", "15.00", "order_cancelled"), ("setup", "99.80", "order_cancelled")]
    assert details["open_item"] is None

    [order] = (await client.get(f"{base}/orders")).json()["items"]
    assert order["status"] == "cancelled" and all(item["cancelled"] for item in order["items"])
    assert [(d["number"], d["type"]) for d in order["documents"]] == [(number, "invoice"),
                                                                      (credit_note["number"], "credit_note")]

    async def corrected() -> bool:
        invoice = (await client.get(f"{base}/documents/{number}")).json()
        return invoice["open_item"]["open_amount"] == "163.39"  # 300.00 - 136.61

    await wait_until(corrected, timeout_s=DEADLINE_S, what="the credit note paying the invoice")
    invoice = (await client.get(f"{base}/documents/{number}")).json()
    assert [d["number"] for d in invoice["corrected_by"]] == [credit_note["number"]]

    again = await client.post(f"{base}/orders/cancellations", json={"order_ids": [order_id]})
    assert again.status_code == 200 and "cancelled before" in again.json()["message"]
    # Settlement recorded the credit with who asked for it; the repeat changed nothing and is not there.
    credits = [r for r in (await client.get("/api/audit", params={"action": "order.cancel"})).json()
               if sorted(r["details"]["billable_item_ids"]) == sorted(item["billable_item_id"] for item in order["items"])]
    assert [(r["service"], r["actor"], r["role"]) for r in credits] == [("settlement", "token:tests-admin", "admin")]


async def test_an_order_that_cannot_be_credited_is_refused(invoiced_contract):
    client, base, contract, _ = invoiced_contract
    answer = await client.post(f"{base}/contracts/{contract}/purchases", json={
        "item_code": "cable", "description": "Cable", "quantity": "1", "unit_price": "5", "purchased_on": "2026-11-25"})
    assert answer.status_code == 201, answer.text
    await wait_for_rows(client, f"{base}/orders", 2)
    unbilled = await client.post(f"{base}/orders/cancellations", json={"order_ids": [f"{contract}@2026-11-25"]})
    assert unbilled.status_code == 422 and "not billed yet" in unbilled.json()["detail"]
    foreign = await client.post("/api/customers/NOBODY/orders/cancellations",
                                json={"order_ids": [f"{contract}@2026-11-20"]})
    assert foreign.status_code == 404
    nameless = await client.post(f"{base}/orders/cancellations", json={"order_ids": ["an order"]})
    assert nameless.status_code == 422
