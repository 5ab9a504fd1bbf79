"""What the portal reads from rating's database: customers and their contracts."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Date, Integer, Numeric, String, column, func, select, table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Sort, fetch_page

customers = table(
    "customers",
    column("customer_id", String), column("name", String), column("country", String), column("vat_id", String),
    column("email", String), column("address_lines", JSONB),
)
contracts = table(
    "contracts",
    column("contract_id", String), column("customer_id", String), column("currency", String),
    column("starts_on", Date), column("ends_on", Date), column("status", String), column("revision", Integer),
)
contract_items = table(
    "contract_items",
    column("contract_id", String), column("item_code", String), column("description", String),
    column("unit_price", Numeric), column("tax_category", String),
)

CUSTOMER_SORTS = {"customer_id": customers.c.customer_id, "name": customers.c.name}
CONTRACT_SORTS = {"contract_id": contracts.c.contract_id, "starts_on": contracts.c.starts_on,
                  "ends_on": contracts.c.ends_on, "status": contracts.c.status}


async def customers_page(connection: AsyncConnection, *, search: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    contract_count = (select(func.count()).select_from(contracts)
                      .where(contracts.c.customer_id == customers.c.customer_id).scalar_subquery())
    query = select(customers, contract_count.label("contracts"))
    if search:
        pattern = f"%{search}%"
        query = query.where(customers.c.customer_id.ilike(pattern) | customers.c.name.ilike(pattern))
    return await fetch_page(connection, query, sort=sort, sortable=CUSTOMER_SORTS,
                            tiebreak=[customers.c.customer_id], page=page)


async def customer(connection: AsyncConnection, customer_id: str) -> Row[Any] | None:
    return (await connection.execute(select(customers).where(customers.c.customer_id == customer_id))).first()


async def contracts_page(connection: AsyncConnection, customer_id: str, *, status: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    query = select(contracts).where(contracts.c.customer_id == customer_id)
    if status:
        query = query.where(contracts.c.status == status)
    return await fetch_page(connection, query, sort=sort, sortable=CONTRACT_SORTS,
                            tiebreak=[contracts.c.contract_id], page=page)


async def contract(connection: AsyncConnection, customer_id: str, contract_id: str) -> Row[Any] | None:
    return (await connection.execute(select(contracts).where(
        contracts.c.customer_id == customer_id, contracts.c.contract_id == contract_id))).first()


async def items_of(connection: AsyncConnection, contract_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """Each contract's priced items (what usage can be recorded for), by item code."""
    found: dict[str, list[Row[Any]]] = {contract_id: [] for contract_id in contract_ids}
    rows = await connection.execute(
        select(contract_items).where(contract_items.c.contract_id.in_(contract_ids))
        .order_by(contract_items.c.contract_id, contract_items.c.item_code))
    for row in rows:
        found[row.contract_id].append(row)
    return found
