"""Settlement's repository: billable items, runs, accounts and ledger entries."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.settlement.domain import Account, EntryType, LedgerEntry, SettlementRun, UnsettledItem
from services.settlement.tables import billable_items, contract_accounts, ledger_entries, settlement_runs
from shared.events import RatedItem
from shared.money import Money


async def account_for(session: AsyncSession, contract_id: str, customer_id: str, currency: str) -> Account:
    """The contract's account, locked until the transaction ends; opened on first use."""
    await session.execute(
        insert(contract_accounts)
        .values(contract_id=contract_id, customer_id=customer_id, currency=currency, balance=0, last_sequence=0)
        .on_conflict_do_nothing()
    )
    account = await lock_account(session, contract_id)
    assert account is not None
    return account


async def lock_account(session: AsyncSession, contract_id: str) -> Account | None:
    row = (
        await session.execute(
            select(contract_accounts).where(contract_accounts.c.contract_id == contract_id).with_for_update()
        )
    ).first()
    if row is None:
        return None
    return Account(row.contract_id, row.customer_id, Money(row.balance, row.currency), row.last_sequence)


async def save_posting(session: AsyncSession, account: Account, entry: LedgerEntry) -> None:
    await session.execute(
        update(contract_accounts)
        .where(contract_accounts.c.contract_id == account.contract_id)
        .values(balance=account.balance.amount, last_sequence=account.last_sequence)
    )
    await session.execute(
        insert(ledger_entries).values(
            entry_id=entry.entry_id,
            contract_id=entry.contract_id,
            customer_id=entry.customer_id,
            sequence=entry.sequence,
            entry_type=entry.entry_type.value,
            amount=entry.amount.amount,
            currency=entry.amount.currency,
            balance=entry.balance.amount,
            description=entry.description,
            settlement_run_id=entry.settlement_run_id,
            payment_id=entry.payment_id,
            booked_at=entry.booked_at,
        )
    )


async def payment_already_posted(session: AsyncSession, payment_id: str, entry_type: EntryType) -> bool:
    found = await session.scalar(
        select(ledger_entries.c.entry_id).where(
            ledger_entries.c.payment_id == payment_id, ledger_entries.c.entry_type == entry_type.value
        )
    )
    return found is not None


async def add_billable_item(session: AsyncSession, item: RatedItem) -> None:
    await session.execute(
        insert(billable_items)
        .values(
            billable_item_id=item.billable_item_id,
            contract_id=item.contract_id,
            customer_id=item.customer_id,
            item_code=item.item_code,
            description=item.description,
            currency=item.currency,
            quantity=item.billable_quantity,
            unit_price=item.unit_price,
            net=item.net,
            period_start=item.period_start,
            period_end=item.period_end,
            occurred_at=item.occurred_at,
        )
        .on_conflict_do_nothing()
    )


async def unsettled_items(session: AsyncSession, account: Account, cutoff) -> list[UnsettledItem]:
    rows = (
        await session.execute(
            select(billable_items)
            .where(
                billable_items.c.contract_id == account.contract_id,
                billable_items.c.settlement_run_id.is_(None),
                billable_items.c.occurred_at < cutoff,
            )
            .order_by(billable_items.c.period_start, billable_items.c.occurred_at, billable_items.c.billable_item_id)
            .with_for_update()
        )
    ).all()
    return [
        UnsettledItem(
            billable_item_id=row.billable_item_id,
            item_code=row.item_code,
            description=row.description,
            quantity=row.quantity,
            unit_price=row.unit_price,
            net=Money(row.net, row.currency),
            period_start=row.period_start,
            period_end=row.period_end,
        )
        for row in rows
    ]


async def add_run(session: AsyncSession, run: SettlementRun) -> None:
    await session.execute(
        insert(settlement_runs).values(
            settlement_run_id=run.settlement_run_id,
            contract_id=run.contract_id,
            customer_id=run.customer_id,
            currency=run.total.currency,
            cutoff=run.cutoff,
            status=run.status.value,
            total=run.total.amount,
        )
    )
    settled = await session.execute(
        update(billable_items)
        .where(
            billable_items.c.billable_item_id.in_([item.billable_item_id for item in run.items]),
            billable_items.c.settlement_run_id.is_(None),
        )
        .values(settlement_run_id=run.settlement_run_id)
    )
    if settled.rowcount != len(run.items):
        raise RuntimeError(f"run {run.settlement_run_id} found items already settled by another run")
