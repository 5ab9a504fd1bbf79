"""The portal's OPOS and payment account actions against the real pipeline and payments' HTTP app:
credit assigned by hand and assignments undone, with open items and the ledger staying equal; payment
accounts added and made the default. Amounts hand-checked."""

from __future__ import annotations

import uuid

import httpx
import pytest
import pytest_asyncio

from tests.e2e.conftest import as_role
from tests.e2e.conftest import given_contract, new_contract_id, open_amounts_are, two_invoices_and_a_payment

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(portal_url):
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as opened:
        yield opened


async def test_a_payment_undone_and_assigned_by_hand_keeps_open_items_and_the_ledger_equal(
        broker, databases, client):
    base, contract = await two_invoices_and_a_payment(broker, databases, client, "portal-opos")
    first, second = (await client.get(f"{base}/open-items", params={"sort": "-amount"})).json()["items"]
    [assigned] = first["assignments"]
    assert (assigned["payment_id"], assigned["amount"]) == (f"{contract}-P1", "80.00")
    undo = {"request_id": str(uuid.uuid4()), "payment_event_id": assigned["payment_event_id"],
            "document_id": first["document_id"]}

    answer = await client.post(f"{base}/assignments/undo", json=undo)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"80.00 EUR of payment {contract}-P1 taken back from {first['reference']}"
    assert await open_amounts_are(client, base, ["119.00", "59.50"])
    [credit] = (await client.get(f"{base}/credits")).json()["items"]
    assert (credit["payment_id"], credit["amount"], credit["unassigned_amount"]) == (f"{contract}-P1", "80.00", "80.00")
    assert [(i["reference"], i["open_amount"]) for i in credit["assignable_to"]] == [
        (first["reference"], "119.00"), (second["reference"], "59.50")]
    again = await client.post(f"{base}/assignments/undo", json=undo)
    assert "done before" in again.json()["message"]

    # By hand: all the second invoice asks (59.50 of 80.00), then the rest (20.50) to the first.
    to_second = {"payment_event_id": credit["payment_event_id"], "document_id": second["document_id"]}
    answer = await client.post(f"{base}/assignments", json=to_second)
    assert answer.json()["message"] == f"59.50 EUR of payment {contract}-P1 assigned to {second['reference']}"
    too_much = await client.post(f"{base}/assignments", json={**to_second, "document_id": first["document_id"],
                                                               "amount": "20.51"})
    assert too_much.status_code == 422 and "less than 20.51" in too_much.json()["detail"]
    answer = await client.post(f"{base}/assignments", json={**to_second, "document_id": first["document_id"],
                                                             "amount": "20.50"})
    assert answer.status_code == 200, answer.text
    assert await open_amounts_are(client, base, ["98.50", "0.00"])
    assert (await client.get(f"{base}/credits")).json()["total"] == 0

    # Open items minus credit are what the ledger says is owed: 119.00 + 59.50 - 80.00.
    [ledger] = (await client.get(f"{base}/ledger/summary")).json()["contracts"]
    assert ledger["balance"] == "98.50"

    # Payments recorded each move with who asked (the portal forwarded the caller's token), once.
    trail = (await client.get("/api/audit", params={"actor": "token:tests-admin"})).json()
    moves = [(r["service"], r["action"], r["target"]) for r in trail if r["action"].startswith("payment.")
             and r["target"] in (first["document_id"], second["document_id"])]
    assert moves == [("payments", "payment.assign", first["document_id"]),
                     ("payments", "payment.assign", second["document_id"]),
                     ("payments", "payment.unassign", first["document_id"])]  # newest first; the repeat is none

    foreign = await client.post(f"/api/customers/CUST-{new_contract_id('nobody')}/assignments", json=to_second)
    assert foreign.status_code == 404
    other_customer = await given_other_customer(databases)
    refused = await client.post(f"/api/customers/{other_customer}/assignments", json=to_second)
    assert refused.status_code == 422 and "has no payment" in refused.json()["detail"]


async def given_other_customer(databases) -> str:
    contract = new_contract_id("portal-opos-other")
    await given_contract(databases, contract, {"sms": "0.10"})
    return f"CUST-{contract}"


async def test_payment_accounts_are_added_and_one_made_the_default(databases, client):
    contract = new_contract_id("portal-accounts")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"sms": "0.10"}, customer_id=customer)
    # Mandate references and card tokens are unique across customers: this test's own.
    mandate, token = f"M-{contract[-10:]}", f"pm_{contract[-10:]}_1234"
    base = f"/api/customers/{customer}"
    sepa = await client.post(f"{base}/payment-accounts", json={
        "method": "sepa_direct_debit", "holder_name": "Ada Example", "iban": "DE89 3704 0044 0532 0130 00",
        "mandate_reference": mandate, "mandate_signed_on": "2026-11-02"})
    assert sepa.status_code == 201, sepa.text
    assert sepa.json()["message"] == f"SEPA direct debit DE89 …3000, mandate {mandate} (active) added as the default"
    card = await client.post(f"{base}/payment-accounts", json={
        "method": "card", "provider": "stripe", "provider_token": token, "make_default": True})
    assert card.json()["message"] == "card via stripe, token …1234 added as the default"
    transfer = await client.post(f"{base}/payment-accounts", json={"method": "bank_transfer"})
    assert transfer.json()["message"] == "bank transfer added"
    refused = await client.post(f"{base}/payment-accounts", json={
        "method": "sepa_direct_debit", "iban": "DE00 0000 0000 0000 0000 00", "mandate_reference": "M-2",
        "mandate_signed_on": "2026-11-02"})
    assert refused.status_code == 422 and "invalid bank details" in refused.json()["detail"]
    same_mandate = await client.post(f"{base}/payment-accounts", json={
        "method": "sepa_direct_debit", "iban": "DE89 3704 0044 0532 0130 00", "mandate_reference": mandate,
        "mandate_signed_on": "2026-11-03"})
    assert same_mandate.status_code == 422, same_mandate.text
    assert f"mandate reference {mandate} belongs to another payment account" in same_mandate.json()["detail"]
    same_card = await client.post(f"{base}/payment-accounts", json={
        "method": "card", "provider": "stripe", "provider_token": token})
    assert same_card.status_code == 422 and f"stripe token {token} belongs" in same_card.json()["detail"]

    accounts = (await client.get(f"{base}/payment-accounts", params={"sort": "created_at"})).json()["items"]
    assert [(a["method"], a["is_default"], a["iban"]) for a in accounts] == [
        ("sepa_direct_debit", False, "DE89 **** 3000"), ("card", True, None), ("bank_transfer", False, None)]
    made = await client.post(f"{base}/payment-accounts/{accounts[0]['account_id']}/default")
    assert made.status_code == 200, made.text
    accounts = (await client.get(f"{base}/payment-accounts", params={"sort": "created_at"})).json()["items"]
    assert [a["is_default"] for a in accounts] == [True, False, False]
    someone_elses = await client.post(f"/api/customers/{await given_other_customer(databases)}/payment-accounts/"
                                      f"{accounts[1]['account_id']}/default")
    assert someone_elses.status_code == 422
