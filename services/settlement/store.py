"""Settlement's repository: contracts, billable items, runs, credits, accounts and ledger entries."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Iterable, Sequence

from sqlalchemy import (ARRAY, Date, DateTime, String, Uuid, and_, any_, bindparam, case, delete,
                        func, literal, literal_column, null, or_, select, tuple_, update)
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.settlement.domain import (
    Account,
    ContractLedger,
    ContractTerms,
    EntryType,
    Item,
    LedgerEntry,
    LedgerTotals,
    RunStatus,
    SettlementRun,
)
from services.settlement.tables import (
    billable_items,
    contract_accounts,
    contracts,
    credits,
    ledger_entries,
    settlement_runs,
)
from shared.db import CompiledOnce, among, column_arrays, insert_rows, inserting, unnested
from shared.events import ChargeKind, ContractStatus, CreditReason, CustomerProfile, RatedItem, TaxCategory
from shared.money import Money

# --- accounts and the ledger ------------------------------------------------------------------


async def account_for(session: AsyncSession, contract_id: str, customer_id: str, currency: str) -> Account:
    """The contract's account, locked until the transaction ends; opened on first use."""
    return (await lock_accounts_opening(session, [(contract_id, customer_id, currency)]))[contract_id]


async def lock_accounts_opening(session: AsyncSession, owners: Iterable[tuple[str, str, str]]) -> dict[str, Account]:
    """Lock the accounts of (contract, customer, currency), opening those that are new. Locked in
    contract order, so concurrent batches never deadlock."""
    owners = sorted(set(owners))
    if owners:
        await _open_accounts.execute(session, **column_arrays(_OWNER_COLUMNS, owners))
    return await lock_accounts(session, {contract_id for contract_id, _, _ in owners})


_OWNER_COLUMNS = ("contract_id", "customer_id", "currency")
_open_accounts = CompiledOnce(
    insert(contract_accounts)
    .from_select([*_OWNER_COLUMNS, "balance", "last_sequence"],
                 unnested(contract_accounts, _OWNER_COLUMNS).add_columns(literal_column("0"), literal_column("0")))
    .on_conflict_do_nothing())


async def lock_accounts(session: AsyncSession, contract_ids: Iterable[str]) -> dict[str, Account]:
    """The accounts of those contracts that have one, locked in contract order until the transaction ends."""
    rows = await session.execute(
        select(contract_accounts).where(among(contract_accounts.c.contract_id, contract_ids))
        .order_by(contract_accounts.c.contract_id).with_for_update()
    )
    return {row.contract_id: _account(row) for row in rows}


async def lock_account(session: AsyncSession, contract_id: str) -> Account | None:
    return (await lock_accounts(session, [contract_id])).get(contract_id)


def _account(row) -> Account:
    return Account(row.contract_id, row.customer_id, Money(row.balance, row.currency), row.last_sequence)


LEDGER_ENTRY_COLUMNS = ("entry_id", "contract_id", "customer_id", "sequence", "entry_type", "amount", "currency",
                        "balance", "description", "settlement_run_id", "payment_id", "document_number",
                        "reverses_entry_id", "booked_at")


async def save_postings(session: AsyncSession, accounts: Iterable[Account], entries: Sequence[LedgerEntry]) -> None:
    """Store `entries` and the balances of the accounts (as moved by them) they were booked on."""
    if not entries:
        return
    booked_on = {entry.contract_id for entry in entries}
    moved = unnested(contract_accounts, ("contract_id", "balance", "last_sequence"), [
        (account.contract_id, account.balance.amount, account.last_sequence)
        for account in accounts if account.contract_id in booked_on]).subquery()
    await session.execute(
        update(contract_accounts).where(contract_accounts.c.contract_id == moved.c.contract_id)
        .values(balance=moved.c.balance, last_sequence=moved.c.last_sequence))
    # One statement (COPY for hundreds): a batch of runs or documents books an entry or more on each account.
    await insert_rows(session, ledger_entries, LEDGER_ENTRY_COLUMNS, [
        (entry.entry_id, entry.contract_id, entry.customer_id, entry.sequence, entry.entry_type.value,
         entry.amount.amount, entry.amount.currency, entry.balance.amount, entry.description,
         entry.settlement_run_id, entry.payment_id, entry.document_number, entry.reverses_entry_id, entry.booked_at)
        for entry in entries])


async def payment_already_posted(session: AsyncSession, payment_id: str, entry_type: EntryType) -> bool:
    found = await session.scalar(
        select(ledger_entries.c.entry_id).where(
            ledger_entries.c.payment_id == payment_id, ledger_entries.c.entry_type == entry_type.value
        )
    )
    return found is not None


def _entry(row) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row.entry_id,
        contract_id=row.contract_id,
        customer_id=row.customer_id,
        sequence=row.sequence,
        entry_type=EntryType(row.entry_type),
        amount=Money(row.amount, row.currency),
        balance=Money(row.balance, row.currency),
        description=row.description,
        booked_at=row.booked_at,
        settlement_run_id=row.settlement_run_id,
        payment_id=row.payment_id,
        document_number=row.document_number,
        reverses_entry_id=row.reverses_entry_id,
    )


async def find_entry(session: AsyncSession, entry_id: uuid.UUID) -> LedgerEntry | None:
    row = (await session.execute(select(ledger_entries).where(ledger_entries.c.entry_id == entry_id))).first()
    return _entry(row) if row else None


async def is_reversed(session: AsyncSession, entry_id: uuid.UUID) -> bool:
    found = await session.scalar(select(ledger_entries.c.entry_id).where(ledger_entries.c.reverses_entry_id == entry_id))
    return found is not None


async def ledger(session: AsyncSession, contract_id: str) -> list[LedgerEntry]:
    rows = await session.execute(
        select(ledger_entries).where(ledger_entries.c.contract_id == contract_id).order_by(ledger_entries.c.sequence)
    )
    return [_entry(row) for row in rows]


async def customer_summary(session: AsyncSession, customer_id: str) -> list[ContractLedger]:
    """The ledgers of all the customer's contracts, each with its entries summed per type."""
    accounts = (
        await session.execute(
            select(contract_accounts).where(contract_accounts.c.customer_id == customer_id)
            .order_by(contract_accounts.c.currency, contract_accounts.c.contract_id)
        )
    ).all()
    sums: dict[str, dict[EntryType, Decimal]] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    for contract_id, entry_type, total, count in await session.execute(
        select(ledger_entries.c.contract_id, ledger_entries.c.entry_type, func.sum(ledger_entries.c.amount),
               func.count())
        .where(ledger_entries.c.customer_id == customer_id)
        .group_by(ledger_entries.c.contract_id, ledger_entries.c.entry_type)
    ):
        sums[contract_id][EntryType(entry_type)] = total
        counts[contract_id] += count
    return [
        ContractLedger(row.contract_id, Money(row.balance, row.currency), counts[row.contract_id],
                       LedgerTotals.of(row.currency, sums[row.contract_id]))
        for row in accounts
    ]


# --- the contract replica ---------------------------------------------------------------------


_CONTRACT_TERMS = ("customer_id", "currency", "starts_on", "ends_on", "status", "revision", "customer")
_keep_contract = insert(contracts)
_keep_contract = _keep_contract.on_conflict_do_update(
    index_elements=[contracts.c.contract_id], set_={name: _keep_contract.excluded[name] for name in _CONTRACT_TERMS},
    where=contracts.c.revision < _keep_contract.excluded.revision,
).returning(contracts.c.contract_id)


async def save_contracts(session: AsyncSession, snapshots: Sequence[ContractTerms]) -> int:
    """Keep the snapshots (one per contract) unless a newer revision is already held; how many were kept."""
    if not snapshots:
        return 0
    saved = await session.execute(_keep_contract, [
        dict(contract_id=terms.contract_id, customer_id=terms.customer_id, currency=terms.currency,
             starts_on=terms.starts_on, ends_on=terms.ends_on, status=terms.status.value, revision=terms.revision,
             customer=terms.customer.model_dump(mode="json") if terms.customer else None)
        for terms in snapshots])
    return len(saved.all())


async def find_contracts(session: AsyncSession, contract_ids: Iterable[str]) -> dict[str, ContractTerms]:
    rows = await session.execute(select(contracts).where(among(contracts.c.contract_id, contract_ids)))
    return {row.contract_id: ContractTerms(row.contract_id, row.customer_id, row.currency, row.starts_on, row.ends_on,
                                           ContractStatus(row.status), row.revision,
                                           CustomerProfile.model_validate(row.customer) if row.customer else None)
            for row in rows}


# --- billable items and credits ---------------------------------------------------------------


_ITEM_COLUMNS = ("billable_item_id", "contract_id", "customer_id", "item_code", "description", "currency", "quantity",
                 "unit_price", "net", "period_start", "period_end", "occurred_at", "charge_kind", "tax_category",
                 "discount")
_add_billable_items = CompiledOnce(
    inserting(billable_items, _ITEM_COLUMNS).on_conflict_do_nothing())


async def add_billable_items(session: AsyncSession, items: Sequence[RatedItem]) -> None:
    """Keep the items, in one statement of one array per column; an item received before is kept as it was."""
    if items:
        await _add_billable_items.execute(session, **column_arrays(_ITEM_COLUMNS, [
            (item.billable_item_id, item.contract_id, item.customer_id, item.item_code, item.description,
             item.currency, item.billable_quantity, item.unit_price, item.net, item.period_start, item.period_end,
             item.occurred_at, item.charge_kind.value, item.tax_category.value if item.tax_category else None,
             item.discount)
            for item in items]))


_credited = (
    select(credits.c.billable_item_id, func.sum(credits.c.net).label("credited"))
    .group_by(credits.c.billable_item_id)
    .subquery()
)


def _items_with_credits():
    return select(billable_items, func.coalesce(_credited.c.credited, 0).label("credited")).outerjoin(
        _credited, _credited.c.billable_item_id == billable_items.c.billable_item_id
    )


def _item(row) -> Item:
    return Item(
        billable_item_id=row.billable_item_id,
        contract_id=row.contract_id,
        item_code=row.item_code,
        description=row.description,
        quantity=row.quantity,
        unit_price=row.unit_price,
        net=Money(row.net, row.currency),
        period_start=row.period_start,
        period_end=row.period_end,
        charge_kind=ChargeKind(row.charge_kind),
        settlement_run_id=row.settlement_run_id,
        credited=Money(row.credited, row.currency),
        tax_category=TaxCategory(row.tax_category) if row.tax_category else None,
        discount=Money(row.discount, row.currency),
        item_count=row._mapping.get("item_count", 1),
    )


async def unsettled_items(session: AsyncSession, contract_ids: Iterable[str], cutoff: datetime,
                          billed_through: date | None = None) -> dict[str, list[Item]]:
    """Per contract, what a run over its unsettled items used before `cutoff` (or, for a period's
    run, billed in periods ending by `billed_through`) settles, summed in the database per period,
    item, price and tax category (Item); in the order a run lists them."""
    one_by_one = case((billable_items.c.charge_kind == ChargeKind.RECURRING_FEE.value,
                       billable_items.c.billable_item_id))
    key = (billable_items.c.contract_id, billable_items.c.currency, billable_items.c.period_start,
           billable_items.c.period_end, billable_items.c.item_code, billable_items.c.description,
           billable_items.c.unit_price, billable_items.c.tax_category, billable_items.c.charge_kind)
    rows = (
        await session.execute(
            select(*key, one_by_one.label("billable_item_id"), func.count().label("item_count"),
                   func.sum(billable_items.c.quantity).label("quantity"), func.sum(billable_items.c.net).label("net"),
                   func.sum(billable_items.c.discount).label("discount"),
                   # What _item reads of an item: an unsettled one has no run and no credit yet.
                   null().label("settlement_run_id"), literal(0).label("credited"))
            .where(among(billable_items.c.contract_id, contract_ids), billable_items.c.settlement_run_id.is_(None),
                   _due(cutoff, billed_through))
            .group_by(*key, one_by_one)
            .order_by(billable_items.c.period_start, billable_items.c.item_code, billable_items.c.unit_price,
                      one_by_one)
        )
    ).all()
    by_contract: dict[str, list[Item]] = defaultdict(list)
    for row in rows:
        by_contract[row.contract_id].append(_item(row))
    return by_contract


def _due(cutoff: datetime | ColumnElement, billed_through: date | None | ColumnElement):
    """A run's items: used before its cutoff, or, for a period's run, billed in periods ending by its end."""
    if isinstance(billed_through, ColumnElement):
        return or_(and_(billed_through.is_(None), billable_items.c.occurred_at < cutoff),
                   billable_items.c.period_end <= billed_through)
    if billed_through is None:
        return billable_items.c.occurred_at < cutoff
    return billable_items.c.period_end <= billed_through


async def runs_that_billed(session: AsyncSession, items: Iterable[Item]) -> dict[tuple, uuid.UUID]:
    """Per (contract, item code, period) of `items`, the latest run that settled items of it before:
    the run whose invoice a later adjustment of that period corrects."""
    keys = sorted({(item.contract_id, item.item_code, item.period_start, item.period_end) for item in items})
    if not keys:
        return {}
    key = (billable_items.c.contract_id, billable_items.c.item_code, billable_items.c.period_start,
           billable_items.c.period_end)
    rows = (await session.execute(
        select(*key, billable_items.c.settlement_run_id)
        .join(settlement_runs, settlement_runs.c.settlement_run_id == billable_items.c.settlement_run_id)
        .where(tuple_(*key).in_(keys))
        .distinct(*key)
        .order_by(*key, settlement_runs.c.settled_at.desc())
    )).all()
    return {tuple(row[:4]): row.settlement_run_id for row in rows}


async def items(session: AsyncSession, item_ids: Sequence[uuid.UUID]) -> list[Item]:
    rows = (
        await session.execute(_items_with_credits().where(billable_items.c.billable_item_id.in_(item_ids)))
    ).all()
    return [_item(row) for row in rows]


async def item_contract(session: AsyncSession, item_id: uuid.UUID) -> str | None:
    return await session.scalar(
        select(billable_items.c.contract_id).where(billable_items.c.billable_item_id == item_id)
    )


async def termination_candidates(session: AsyncSession, contract_id: str, terminated_on: date) -> list[Item]:
    """Billed recurring fees of the contract reaching beyond `terminated_on` without a termination credit."""
    terminated = select(credits.c.billable_item_id).where(credits.c.reason == CreditReason.TERMINATION.value)
    rows = (
        await session.execute(
            _items_with_credits()
            .where(
                billable_items.c.contract_id == contract_id,
                billable_items.c.settlement_run_id.is_not(None),
                billable_items.c.charge_kind == ChargeKind.RECURRING_FEE.value,
                billable_items.c.period_end > terminated_on,
                billable_items.c.billable_item_id.not_in(terminated),
            )
            .order_by(billable_items.c.period_start, billable_items.c.billable_item_id)
        )
    ).all()
    return [_item(row) for row in rows]


async def existing_credits(session: AsyncSession, credit_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await session.scalars(select(credits.c.credit_id).where(credits.c.credit_id.in_(credit_ids)))
    return set(rows)


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as recorded before it settles: what it is for, not yet what it holds."""

    settlement_run_id: uuid.UUID
    contract_id: str
    cutoff: datetime
    status: RunStatus
    requested_by: str
    period_start: date | None = None
    period_end: date | None = None


def _record(row) -> RunRecord:
    return RunRecord(row.settlement_run_id, row.contract_id, row.cutoff, RunStatus(row.status), row.requested_by,
                     row.period_start, row.period_end)


async def find_run(session: AsyncSession, settlement_run_id: uuid.UUID) -> RunRecord | None:
    row = (
        await session.execute(select(settlement_runs).where(settlement_runs.c.settlement_run_id == settlement_run_id))
    ).first()
    return _record(row) if row else None


async def runs(session: AsyncSession, contract_id: str) -> list[RunRecord]:
    rows = await session.execute(
        select(settlement_runs).where(settlement_runs.c.contract_id == contract_id)
        .order_by(settlement_runs.c.created_at, settlement_runs.c.settlement_run_id)
    )
    return [_record(row) for row in rows]


RECORDED_RUN_COLUMNS = ("settlement_run_id", "contract_id", "customer_id", "currency", "cutoff", "status",
                        "requested_by", "period_start", "period_end")
_record_runs = CompiledOnce(
    insert(settlement_runs)
    .from_select([*RECORDED_RUN_COLUMNS, "total", "credit_total"],
                 unnested(settlement_runs, RECORDED_RUN_COLUMNS).add_columns(literal_column("0"), literal_column("0")))
    .on_conflict_do_nothing())


async def record_runs(session: AsyncSession, account_rows: Sequence[tuple[Account, RunRecord]]) -> None:
    """Record runs that are to settle later; a run already recorded (or settled) stays as it is."""
    if account_rows:
        await _record_runs.execute(session, **column_arrays(RECORDED_RUN_COLUMNS, [
            (run.settlement_run_id, run.contract_id, account.customer_id, account.balance.currency, run.cutoff,
             run.status.value, run.requested_by, run.period_start, run.period_end)
            for account, run in account_rows]))


async def forget_runs(session: AsyncSession, settlement_run_ids: Sequence[uuid.UUID]) -> None:
    """Drop recorded runs that found nothing to settle: runs exist for what they settled."""
    if settlement_run_ids:
        await session.execute(delete(settlement_runs).where(settlement_runs.c.settlement_run_id.in_(settlement_run_ids),
                                                            settlement_runs.c.status != RunStatus.COMPLETE.value))


@dataclass(frozen=True, slots=True)
class Settled:
    """A run as it settled: what it holds, what it was recorded as, and when it was booked."""

    run: SettlementRun
    record: RunRecord
    settled_at: datetime


SETTLED_RUN_COLUMNS = ("settlement_run_id", "contract_id", "customer_id", "currency", "cutoff", "status", "total",
                       "credit_total", "adjustment_total", "requested_by", "period_start", "period_end", "settled_at")


_settled_runs = inserting(settlement_runs, SETTLED_RUN_COLUMNS)
# The runs stored as settled, over what was recorded of them, in one statement.
_upsert_runs = CompiledOnce(_settled_runs.on_conflict_do_update(
    index_elements=[settlement_runs.c.settlement_run_id],
    set_={name: _settled_runs.excluded[name] for name in SETTLED_RUN_COLUMNS[2:]},
    where=settlement_runs.c.status != RunStatus.COMPLETE.value,
))

# Each run's items (at most one run per contract in a batch) to the run, if no run took them
# yet: one statement for a whole batch of runs, however many items they hold. The contracts are
# named once more as `= ANY(...)`, which PostgreSQL looks up in the index: joined only with the
# runs, it scanned every unsettled item of every contract (180 ms a batch at 450,000 items).
_contract_ids = bindparam("contract_ids", type_=ARRAY(String))
_settling = select(
    func.unnest(_contract_ids).label("contract_id"),
    func.unnest(bindparam("run_ids", type_=ARRAY(Uuid))).label("run_id"),
    func.unnest(bindparam("cutoffs", type_=ARRAY(DateTime(timezone=True)))).label("cutoff"),
    func.unnest(bindparam("billed_through", type_=ARRAY(Date))).label("billed_through"),
).subquery()
_settle_items = (
    update(billable_items)
    .values(settlement_run_id=_settling.c.run_id)
    .where(billable_items.c.contract_id == _settling.c.contract_id, billable_items.c.contract_id == any_(_contract_ids),
           billable_items.c.settlement_run_id.is_(None), _due(_settling.c.cutoff, _settling.c.billed_through))
)


async def save_runs(session: AsyncSession, settled: Sequence[Settled]) -> None:
    """Store the runs as complete, settle their items and keep their credits; fails if another run got an item first."""
    if not settled:
        return
    await _upsert_runs.execute(session, **column_arrays(SETTLED_RUN_COLUMNS, [
        (one.run.settlement_run_id, one.run.contract_id, one.run.customer_id, one.run.total.currency, one.run.cutoff,
         RunStatus.COMPLETE.value, one.run.receivable.amount, (one.run.credit_total + one.run.adjustment).amount,
         one.run.adjustment.amount, one.record.requested_by, one.record.period_start, one.record.period_end,
         one.settled_at)
        for one in settled]))
    with_items = [one for one in settled if one.run.items]
    if len({one.run.contract_id for one in with_items}) != len(with_items):
        raise RuntimeError("a batch settles one run per contract at most: their items could not be told apart")
    if with_items:
        updated = await session.execute(_settle_items, {
            "contract_ids": [one.run.contract_id for one in with_items],
            "run_ids": [one.run.settlement_run_id for one in with_items],
            "cutoffs": [one.record.cutoff for one in with_items],
            "billed_through": [one.record.period_end for one in with_items]})
        expected = sum(item.item_count for one in with_items for item in one.run.items)
        if updated.rowcount != expected:
            raise RuntimeError(f"runs {[one.run.settlement_run_id for one in with_items]} settle {updated.rowcount} "
                               f"items, not the {expected} they summed: another run got some first")
    run_credits = [(one.run, credit) for one in settled for credit in one.run.credits]
    if run_credits:
        await session.execute(
            insert(credits),
            [
                dict(credit_id=credit.credit_id, contract_id=run.contract_id,
                     billable_item_id=credit.item.billable_item_id, reason=credit.reason.value,
                     description=credit.description, net=credit.net.amount, currency=credit.net.currency,
                     period_start=credit.period_start, period_end=credit.period_end,
                     credited_settlement_run_id=credit.credited_settlement_run_id,
                     settlement_run_id=run.settlement_run_id)
                for run, credit in run_credits
            ],
        )


async def items_billed_in(session: AsyncSession, contract_id: str, period_start: date, period_end: date) -> int:
    """How many items of the contract rating billed in the period, settled or not."""
    return await session.scalar(select(func.count()).select_from(billable_items).where(
        billable_items.c.contract_id == contract_id, billable_items.c.period_start == period_start,
        billable_items.c.period_end == period_end))


async def open_pending_runs(session: AsyncSession, as_of: datetime, contract_ids: Sequence[str] | None) -> None:
    """Pending runs whose cutoff `as_of` has passed are due."""
    statement = (
        update(settlement_runs)
        .where(settlement_runs.c.status == RunStatus.PENDING.value, settlement_runs.c.cutoff <= as_of)
        .values(status=RunStatus.OPEN.value)
    )
    if contract_ids is not None:
        statement = statement.where(settlement_runs.c.contract_id.in_(contract_ids))
    await session.execute(statement)


async def claim_open_run(
    session: AsyncSession, as_of: datetime, contract_ids: Sequence[str] | None, skip: Sequence[uuid.UUID]
) -> RunRecord | None:
    """The next open run due by `as_of`, locked; runs other workers are settling are passed over."""
    statement = select(settlement_runs).where(
        and_(settlement_runs.c.status == RunStatus.OPEN.value, settlement_runs.c.cutoff <= as_of)
    )
    if contract_ids is not None:
        statement = statement.where(settlement_runs.c.contract_id.in_(contract_ids))
    if skip:
        statement = statement.where(settlement_runs.c.settlement_run_id.not_in(skip))
    row = (
        await session.execute(
            statement.order_by(settlement_runs.c.cutoff, settlement_runs.c.settlement_run_id)
            .limit(1).with_for_update(skip_locked=True)
        )
    ).first()
    return _record(row) if row else None
