"""Saving a list of contracts (an operator's bulk import, the benchmark's setup) takes a few
statements for many contracts at once, and must leave rating's database exactly as saving them one
by one in the same order does: revisions, items, price-adjustment flags, time zones, customers
(and when their profile last changed) and a contracts.changed snapshot per save."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from services.rating.contracts import ContractSpec, save_contracts
from services.rating.handlers import CONTRACTS_WORTH_ANALYZING
from services.rating.tables import contract_items, contracts, customers, messaging
from shared.events import derive_id
from shared.settings import SellerSettings
from tests.e2e.conftest import new_contract_id

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def contract(prefix: str, name: str, customer: str, *, license_price: str = "100", api_price: str = "0.0125",
             customer_name: str | None = None, email: str | None = None, time_zone: str | None = None) -> ContractSpec:
    return ContractSpec.model_validate({
        "contract_id": f"{prefix}-{name}",
        "customer": {"customer_id": f"{prefix}-{customer}", "name": customer_name or f"Customer {customer}",
                     "country": "DE", "email": email},
        "currency": "EUR", "starts_on": "2026-01-01", "time_zone": time_zone,
        "items": [{"item_code": "license", "description": "License", "kind": "recurring_fee",
                   "list_price": license_price},
                  {"item_code": "api-calls", "description": "API calls", "unit_price": api_price}],
    })


def existing(prefix: str) -> list[ContractSpec]:
    return [contract(prefix, "existing", "c1", time_zone="America/New_York"),
            contract(prefix, "unchanged-customer", "c3")]


def changes(prefix: str) -> list[ContractSpec]:
    return [
        # A new price for the fee (flagged as adjusted), no time zone (keeps New York's), the same customer.
        contract(prefix, "existing", "c1", license_price="120"),
        contract(prefix, "new-1", "c2"),
        contract(prefix, "new-2", "c2", email="billing@c2.example"),  # the customer's profile grows
        contract(prefix, "new-3", "c1", customer_name="Customer c1, renamed"),
        contract(prefix, "new-4", "c1"),  # the stored profile again, after another one
        contract(prefix, "new-1", "c2", api_price="0.01", email="billing@c2.example"),  # named again: revision 2
        contract(prefix, "new-5", "c3"),  # a customer as stored: its profile did not change
    ]


async def stored(databases, prefix: str, since: datetime) -> dict:
    """What rating holds of the prefix's contracts and customers, the prefix left out; for each
    customer whether its profile changed at or after `since`."""
    async with databases["rating"].transaction() as session:
        contract_rows = (await session.execute(
            select(contracts).where(contracts.c.contract_id.startswith(prefix)).order_by(contracts.c.contract_id))).all()
        item_rows = (await session.execute(
            select(contract_items).where(contract_items.c.contract_id.startswith(prefix))
            .order_by(contract_items.c.contract_id, contract_items.c.item_code))).all()
        customer_rows = (await session.execute(
            select(customers).where(customers.c.customer_id.startswith(prefix))
            .order_by(customers.c.customer_id))).all()
        snapshots = set((await session.scalars(select(messaging.outbox.c.event_id).where(
            messaging.outbox.c.key.startswith(prefix)))).all())

    def unprefixed(row) -> dict:
        return {name: value.removeprefix(prefix) if name in ("contract_id", "customer_id") else value
                for name, value in row._mapping.items()}

    return {
        "contracts": [unprefixed(row) for row in contract_rows],
        "items": [unprefixed(row) for row in item_rows],
        "customers": [{**{name: value for name, value in unprefixed(row).items()
                          if name not in ("created_at", "updated_at")},
                       "changed_since": row.updated_at >= since} for row in customer_rows],
        # The snapshots, by the revision each was published with.
        "snapshots": {(row.contract_id.removeprefix(prefix), revision) for row in contract_rows
                      for revision in range(1, row.revision + 1)
                      if derive_id(f"{row.contract_id}:{revision}", "contracts.changed") in snapshots},
    }


async def database_now(databases) -> datetime:
    async with databases["rating"].transaction() as session:
        return await session.scalar(select(func.now()))


async def test_a_list_of_contracts_saved_at_once_ends_as_saving_them_one_by_one(pipeline, databases):
    one_by_one, at_once = new_contract_id("bulk-each"), new_contract_id("bulk-all")
    for prefix in (one_by_one, at_once):
        await save_contracts(databases["rating"], existing(prefix))

    started_each = await database_now(databases)
    revisions_each = [revision for spec in changes(one_by_one)
                      for revision in await save_contracts(databases["rating"], [spec])]
    started_all = await database_now(databases)
    revisions_all = await save_contracts(databases["rating"], changes(at_once))

    assert revisions_all == revisions_each == [2, 1, 1, 1, 1, 2, 1]
    each, all_at_once = await stored(databases, one_by_one, started_each), await stored(databases, at_once, started_all)
    assert all_at_once == each

    contracts_by_id = {row["contract_id"]: row for row in all_at_once["contracts"]}
    assert contracts_by_id["-existing"]["time_zone"] == "America/New_York"
    assert contracts_by_id["-new-1"]["time_zone"] == SellerSettings().time_zone
    assert all(row["close_due_on"] is None for row in all_at_once["contracts"])
    items = {(row["contract_id"], row["item_code"]): row for row in all_at_once["items"]}
    assert items["-existing", "license"]["terms"]["price_adjusted"] is True
    assert "price_adjusted" not in items["-new-1", "license"]["terms"]
    assert str(items["-new-1", "api-calls"]["unit_price"]) == "0.0100000000"
    assert [(row["customer_id"], row["name"], row["email"], row["changed_since"])
            for row in all_at_once["customers"]] == [
        # c1 was renamed and then given its stored profile back: as it is, but changed meanwhile.
        ("-c1", "Customer c1", None, True),
        ("-c2", "Customer c2", "billing@c2.example", True),
        ("-c3", "Customer c3", None, False),
    ]
    assert all_at_once["snapshots"] == {("-existing", 1), ("-existing", 2), ("-new-1", 1), ("-new-1", 2),
                                        ("-new-2", 1), ("-new-3", 1), ("-new-4", 1), ("-new-5", 1),
                                        ("-unchanged-customer", 1)}


async def test_a_bulk_import_leaves_the_planner_statistics_counting_its_contracts(pipeline, databases):
    """Without them PostgreSQL takes a batch's few contracts for most of a table it knows as empty
    and scans all of it on every batch rating applies, until autovacuum comes by (store.analyze_contracts)."""
    prefix = new_contract_id("bulk-stats")
    await save_contracts(databases["rating"], [contract(prefix, f"{number:05}", f"c{number % 50}")
                                               for number in range(CONTRACTS_WORTH_ANALYZING)])

    async with databases["rating"].transaction() as session:
        for table in (contracts, contract_items, customers):
            rows = await session.scalar(select(func.count()).select_from(table))
            estimated = await session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"),
                                             {"name": table.name})
            # Exact up to 30,000 rows (ANALYZE's sample); the suite's tables hold far fewer.
            assert (table.name, estimated) == (table.name, rows)
