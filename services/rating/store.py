"""Rating's repository: contracts in, billable items out."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.rating.domain import BillableItem, Contract, ContractItem
from services.rating.tables import billable_items, contract_items, contracts, customers
from shared.events import ContractStatus, CustomerProfile, TaxCategory


async def find_contract(session: AsyncSession, contract_id: str) -> Contract | None:
    row = (await session.execute(select(contracts).where(contracts.c.contract_id == contract_id))).first()
    if row is None:
        return None
    items = (
        await session.execute(select(contract_items).where(contract_items.c.contract_id == contract_id))
    ).all()
    return Contract(
        contract_id=row.contract_id,
        customer_id=row.customer_id,
        currency=row.currency,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        status=ContractStatus(row.status),
        items={
            item.item_code: ContractItem(item.item_code, item.description, item.unit_price, TaxCategory(item.tax_category))
            for item in items
        },
    )


async def save_customer(session: AsyncSession, customer: CustomerProfile) -> None:
    values = customer.model_dump()
    await session.execute(
        insert(customers).values(values).on_conflict_do_update(index_elements=["customer_id"], set_=values)
    )


async def save_contract(session: AsyncSession, contract: Contract) -> int:
    """Create or replace a contract with exactly the given items; returns its new revision."""
    values = {
        "contract_id": contract.contract_id,
        "customer_id": contract.customer_id,
        "currency": contract.currency,
        "starts_on": contract.starts_on,
        "ends_on": contract.ends_on,
        "status": contract.status.value,
    }
    revision = (
        await session.execute(
            insert(contracts)
            .values(**values, revision=1)
            .on_conflict_do_update(
                index_elements=["contract_id"], set_={**values, "revision": contracts.c.revision + 1}
            )
            .returning(contracts.c.revision)
        )
    ).scalar_one()
    await session.execute(delete(contract_items).where(contract_items.c.contract_id == contract.contract_id))
    if contract.items:
        await session.execute(
            insert(contract_items),
            [{"contract_id": contract.contract_id, **asdict(item)} for item in contract.items.values()],
        )
    return revision


async def add_billable_item(session: AsyncSession, item: BillableItem) -> None:
    await session.execute(
        insert(billable_items).values(
            billable_item_id=item.billable_item_id,
            source_event_id=item.source_event_id,
            contract_id=item.contract_id,
            customer_id=item.customer_id,
            item_code=item.item_code,
            currency=item.net.currency,
            quantity=item.quantity,
            free_quantity=item.free_quantity,
            billable_quantity=item.billable_quantity,
            unit_price=item.unit_price,
            net=item.net.amount,
            period_start=item.period_start,
            period_end=item.period_end,
            occurred_at=item.occurred_at,
        )
    )
