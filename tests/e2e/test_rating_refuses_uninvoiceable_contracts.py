"""Rating's edge refuses a contract invoicing could not tax, through both ways contracts come in
(the HTTP API and `load-contracts`), with a 4xx or an exit code naming the country and the tax
category, and writes nothing: no contract, no customer, no contracts.changed in the outbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import select

from services.rating.api import create_app
from services.rating.tables import contracts, customers, messaging
from tests.e2e.conftest import as_role
from tests.e2e.conftest import new_contract_id

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def contract_body(contract_id: str, country: str, tax_category: str) -> dict:
    return {
        "contract_id": contract_id,
        "customer": {"customer_id": f"CUST-{contract_id}", "name": f"Consumer of {contract_id}", "country": country},
        "currency": "EUR",
        "starts_on": "2026-01-01",
        "items": [{"item_code": "api-calls", "description": "API calls", "unit_price": "0.01"},
                  {"item_code": "ebook", "description": "E-book", "unit_price": "9.99", "tax_category": tax_category}],
    }


async def nothing_written(databases, contract_id: str) -> bool:
    async with databases["rating"].transaction() as session:
        found = [
            (await session.execute(select(contracts).where(contracts.c.contract_id == contract_id))).all(),
            (await session.execute(select(customers).where(customers.c.customer_id == f"CUST-{contract_id}"))).all(),
            (await session.execute(select(messaging.outbox).where(messaging.outbox.c.key == contract_id))).all(),
        ]
    return not any(found)


async def test_the_api_refuses_a_reduced_item_for_a_danish_consumer_and_accepts_belgian_and_polish_ones(databases, access_guard):
    danish, belgian, polish = (new_contract_id(f"vat-{country}") for country in ("dk", "be", "pl"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(databases["rating"], access_guard)),
                                 base_url="http://rating", headers=as_role()) as api:
        refused = await api.put(f"/contracts/{danish}", json=contract_body(danish, "DK", "reduced"))
        assert refused.status_code == 422
        assert "DK has no reduced VAT rate: an item in tax category 'reduced'" in refused.json()["detail"]
        assert (await api.get(f"/contracts/{danish}")).status_code == 404
        for contract_id, country in ((belgian, "BE"), (polish, "PL")):
            created = await api.put(f"/contracts/{contract_id}", json=contract_body(contract_id, country, "reduced"))
            assert created.status_code == 200, created.text
        # A change that makes an accepted contract uninvoiceable is refused too, and changes nothing.
        moved = await api.put(f"/contracts/{belgian}", json=contract_body(belgian, "DK", "reduced"))
        assert moved.status_code == 422
        assert (await api.get(f"/contracts/{belgian}")).json()["customer"]["country"] == "BE"
    assert await nothing_written(databases, danish)


async def test_load_contracts_refuses_the_whole_file_when_one_contract_could_not_be_invoiced(databases, tmp_path):
    fine, refused = new_contract_id("vat-file-be"), new_contract_id("vat-file-dk")
    path = tmp_path / "contracts.json"
    path.write_text(json.dumps([contract_body(fine, "BE", "reduced"), contract_body(refused, "DK", "reduced")]))
    run = subprocess.run([sys.executable, "-m", "services.rating.admin", "load-contracts", str(path)],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert run.returncode == 1
    assert "refused: DK has no reduced VAT rate: an item in tax category 'reduced'" in run.stderr
    assert await nothing_written(databases, fine) and await nothing_written(databases, refused)


async def test_purchases_and_currency_changes_that_later_stages_would_refuse_are_refused_at_the_api(databases, access_guard):
    danish = new_contract_id("vat-purchase-dk")
    body = contract_body(danish, "DK", "standard")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(databases["rating"], access_guard)),
                                 base_url="http://rating", headers=as_role()) as api:
        assert (await api.put(f"/contracts/{danish}", json=body)).status_code == 200

        def purchase(**changes) -> dict:
            return {"item_code": "setup", "description": "Setup", "quantity": "1", "unit_price": "49.90",
                    "purchased_on": "2026-11-15", **changes}

        reduced = await api.post(f"/contracts/{danish}/purchases", json=purchase(tax_category="reduced"))
        assert reduced.status_code == 422
        assert "DK has no reduced VAT rate" in reduced.json()["detail"]
        ahead = await api.post(f"/contracts/{danish}/purchases", json=purchase(purchased_on="2027-01-01"))
        assert ahead.status_code == 422 and "too far ahead" in ahead.json()["detail"]
        # Before anything was rated the currency may still change; once an item is, it may not.
        assert (await api.put(f"/contracts/{danish}", json={**body, "currency": "DKK"})).status_code == 200
        assert (await api.put(f"/contracts/{danish}", json=body)).status_code == 200
        bought = await api.post(f"/contracts/{danish}/purchases", json=purchase())
        assert bought.status_code == 201 and bought.json()[0]["net"] == "49.90"
        changed = await api.put(f"/contracts/{danish}", json={**body, "currency": "DKK"})
        assert changed.status_code == 422
        assert "has billable items in EUR, placed in periods of" in changed.json()["detail"]
        assert (await api.get(f"/contracts/{danish}")).json()["currency"] == "EUR"
    async with databases["rating"].transaction() as session:
        written = (await session.execute(select(messaging.outbox.c.topic).where(messaging.outbox.c.key == danish)
                                         .order_by(messaging.outbox.c.id))).scalars().all()
    # Three accepted contract changes and the one purchase; nothing of what was refused.
    assert written == ["contracts.changed"] * 3 + ["items.rated"]
