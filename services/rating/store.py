"""Rating's repository: contracts and customers, cumulative period state, meters, billable items.

Every function that serves the usage path takes a whole batch and costs one statement.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict, defaultdict
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Collection, Iterable, Mapping, Sequence

from sqlalchemy import any_, bindparam, func, null, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.rating.domain import (
    QUANTITY_QUANTUM,
    BillableItem,
    Contract,
    MeterState,
    PeriodUsage,
    RatedUsage,
    StateKey,
)
from services.rating.specs import ContractItemSpec, ContractSpec
from services.rating.tables import (
    billable_items,
    contract_items,
    contracts,
    customers,
    meters,
    period_usage,
    rated_usage,
)
from shared.db import CompiledOnce, among, any_of, column_arrays, insert_rows, inserting, unnested
from shared.events import BillingCycle, ContractStatus, CustomerProfile
from shared.periods import Period


def _contract(row, items: list[ContractItemSpec]) -> Contract:
    return Contract(
        contract_id=row.contract_id,
        customer_id=row.customer_id,
        currency=row.currency,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        status=ContractStatus(row.status),
        items={item.item_code: item.to_domain() for item in items},
        billing_cycle=BillingCycle(row.billing_cycle),
        period_months=row.period_months,
        alignment_date=row.alignment_date,
        closed_through=row.closed_through,
        time_zone=row.time_zone,
    )


class ContractCache:
    """The contracts this process rated lately, as of their revision: every change of a contract
    or its items goes through `save_contracts`, which bumps the revision, so a cached contract of
    the revision the database holds is the contract. Only `closed_through`, which the period close
    moves without a new revision, is read each time. Building a contract from its rows (its items'
    terms validated by pydantic) was the largest part of a batch of a few dozen events."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._contracts: OrderedDict[str, tuple[int, Contract]] = OrderedDict()

    def get(self, contract_id: str, revision: int, closed_through: date | None) -> Contract | None:
        cached = self._contracts.get(contract_id)
        if cached is None or cached[0] != revision:
            return None
        contract = cached[1]
        if contract.closed_through != closed_through:
            contract = replace(contract, closed_through=closed_through)
        self.put(revision, contract)
        return contract

    def put(self, revision: int, contract: Contract) -> None:
        self._contracts[contract.contract_id] = (revision, contract)
        self._contracts.move_to_end(contract.contract_id)
        if len(self._contracts) > self.size:
            self._contracts.popitem(last=False)


# About 1 KB a contract of one item: the contracts of the customers whose usage a worker rates day
# to day stay at hand for 2 MB or so, where 10,000 took the worker's peak memory to its target of
# 200 MB in the benchmark's run over 100,000 contracts (a batch builds the rest as it always did).
_cached = ContractCache(size=2_000)


def _locking_contracts(*, read: bool) -> CompiledOnce:
    """The revisions (and `closed_through`) of the contracts `contract_id_values`, locked in
    contract order. Compiled once: at a few dozen events a batch, building, caching and compiling
    the statement cost as much CPU as its round trip."""
    return CompiledOnce(select(contracts.c.contract_id, contracts.c.revision, contracts.c.closed_through)
                        .where(any_of(contracts.c.contract_id)).order_by(contracts.c.contract_id)
                        .with_for_update(read=read))


_lock_for_share, _lock_for_update = _locking_contracts(read=True), _locking_contracts(read=False)


async def load_contracts(session: AsyncSession, contract_ids: Collection[str], *,
                         for_update: bool = False) -> dict[str, Contract]:
    """The contracts with their items, locked against concurrent changes: one query for their
    revisions and the lock, one more for those not cached at their revision.

    Rating takes a share lock, so usage of a contract is never rated while its periods are
    being closed (an exclusive lock) or the contract is replaced.
    """
    locked = await (_lock_for_update if for_update else _lock_for_share).execute(
        session, contract_id_values=list(contract_ids))
    found = {contract_id: _cached.get(contract_id, revision, closed_through)
             for contract_id, revision, closed_through in locked}
    missing = [contract_id for contract_id, contract in found.items() if contract is None]
    if missing:
        rows_by_contract = defaultdict(list)
        for row in (await session.execute(
            select(contracts, contract_items.c.terms)
            .join(contract_items, contract_items.c.contract_id == contracts.c.contract_id)
            .where(among(contracts.c.contract_id, missing))
        )).all():
            rows_by_contract[row.contract_id].append(row)
        for contract_id, rows in rows_by_contract.items():
            found[contract_id] = _contract(rows[0], [ContractItemSpec.model_validate(row.terms) for row in rows])
            _cached.put(rows[0].revision, found[contract_id])
    return {contract_id: contract for contract_id, contract in found.items() if contract is not None}


async def find_contract(session: AsyncSession, contract_id: str, *, for_update: bool = False) -> Contract | None:
    return (await load_contracts(session, [contract_id], for_update=for_update)).get(contract_id)


async def find_contract_spec(session: AsyncSession, contract_id: str) -> ContractSpec | None:
    """The contract as it was specified (with rating's price-adjustment flags), for reading back."""
    specs = await contract_specs(session, contracts.c.contract_id == contract_id)
    return specs[0] if specs else None


async def customer_contract_specs(session: AsyncSession, customer_id: str) -> list[ContractSpec]:
    return await contract_specs(session, contracts.c.customer_id == customer_id)


async def contract_specs(session: AsyncSession, condition) -> list[ContractSpec]:
    rows = (
        await session.execute(
            select(contracts, contract_items.c.terms, customers.c.name, customers.c.country, customers.c.vat_id,
                   customers.c.email, customers.c.address_lines, customers.c.postal_code, customers.c.city,
                   customers.c.e_invoicing)
            .join(contract_items, contract_items.c.contract_id == contracts.c.contract_id)
            .join(customers, customers.c.customer_id == contracts.c.customer_id)
            .where(condition)
            .order_by(contracts.c.contract_id, contract_items.c.item_code)
        )
    ).all()
    grouped = defaultdict(list)
    for row in rows:
        grouped[row.contract_id].append(row)
    return [
        ContractSpec(
            contract_id=first.contract_id,
            customer=CustomerProfile(customer_id=first.customer_id, name=first.name, country=first.country,
                                     vat_id=first.vat_id, email=first.email, address_lines=first.address_lines,
                                     postal_code=first.postal_code, city=first.city, e_invoicing=first.e_invoicing),
            currency=first.currency,
            starts_on=first.starts_on,
            ends_on=first.ends_on,
            status=ContractStatus(first.status),
            billing_cycle=BillingCycle(first.billing_cycle),
            period_months=first.period_months,
            alignment_date=first.alignment_date,
            time_zone=first.time_zone,
            items=[ContractItemSpec.model_validate(row.terms) for row in group],
        )
        for first, group in ((group[0], group) for group in grouped.values())
    ]


async def contract_ids_to_close(session: AsyncSession, as_of: date) -> list[str]:
    """Contracts whose period close may have something to do by `as_of`."""
    return list(
        (
            await session.scalars(
                select(contracts.c.contract_id)
                .where(contracts.c.closed_through.is_(None) | contracts.c.ends_on.is_(None)
                       | (contracts.c.closed_through < contracts.c.ends_on),
                       contracts.c.close_due_on.is_(None) | (contracts.c.close_due_on <= as_of))
                .order_by(contracts.c.contract_id)
            )
        ).all()
    )


_CUSTOMER_COLUMNS = tuple(CustomerProfile.model_fields)
_PROFILE_COLUMNS = _CUSTOMER_COLUMNS[1:]
_new_customers = inserting(customers, _CUSTOMER_COLUMNS)
_save_customers = CompiledOnce(_new_customers.on_conflict_do_update(
    index_elements=["customer_id"],
    set_={**{name: _new_customers.excluded[name] for name in _PROFILE_COLUMNS}, "updated_at": func.now()},
    where=or_(*(customers.c[name].is_distinct_from(_new_customers.excluded[name]) for name in _PROFILE_COLUMNS),
              # Given several profiles in one call, one of them differed from the stored one (see below).
              customers.c.customer_id == any_(bindparam("profile_varied", type_=ARRAY(customers.c.customer_id.type)))),
))


async def save_customers(session: AsyncSession, profiles: Sequence[CustomerProfile]) -> None:
    """Create or change customers in one statement, leaving what saving the profiles one by one in
    this order would: each customer its last profile, and `updated_at` moved only when one of its
    profiles differs from the stored one. (An upsert cannot change a row twice: a customer given
    several profiles is written once, with its last, and moved even if that one is the stored one,
    since an earlier one then differed from it.)"""
    rows_by_customer: dict[str, list[tuple]] = defaultdict(list)
    for profile in profiles:
        rows_by_customer[profile.customer_id].append(_customer_row(profile))
    varied = [customer_id for customer_id, rows in rows_by_customer.items() if len(set(rows)) > 1]
    last_rows = [rows[-1] for _, rows in sorted(rows_by_customer.items())]  # locked in key order
    if last_rows:
        await _save_customers.execute(session, **column_arrays(_CUSTOMER_COLUMNS, last_rows), profile_varied=varied)


def _customer_row(profile: CustomerProfile) -> tuple:
    values = profile.model_dump(mode="json")
    return tuple(_jsonb(values[name]) if isinstance(customers.c[name].type, JSONB) else values[name]
                 for name in _CUSTOMER_COLUMNS)


def _jsonb(value: object) -> str | None:
    """A JSONB value as asyncpg takes it from an array parameter or COPY: its text; None stays SQL NULL."""
    return None if value is None else json.dumps(value)


_CONTRACT_COLUMNS = ("contract_id", "customer_id", "currency", "starts_on", "ends_on", "status", "billing_cycle",
                     "period_months", "alignment_date", "time_zone", "revision")
_new_contracts = inserting(contracts, _CONTRACT_COLUMNS)
_save_contracts = CompiledOnce(_new_contracts.on_conflict_do_update(
    index_elements=["contract_id"],
    set_={**{name: _new_contracts.excluded[name] for name in _CONTRACT_COLUMNS if name not in ("contract_id", "revision")},
          "revision": contracts.c.revision + 1,
          "close_due_on": null()},  # its periods or fees may have changed: the next tick looks again
).returning(contracts.c.contract_id, contracts.c.revision))

_CONTRACT_ITEM_COLUMNS = ("contract_id", "item_code", "description", "unit_price", "tax_category", "kind", "terms")


async def save_contracts(session: AsyncSession, specs: Sequence[ContractSpec]) -> list[int]:
    """Create or replace contracts, each with exactly the given items, in four statements however
    many; returns their new revisions (1 for a new one) in the order of `specs`. Each contract once:
    PostgreSQL's upsert cannot change a row twice in one statement."""
    contract_ids = [spec.contract_id for spec in specs]
    assert len(set(contract_ids)) == len(contract_ids), "each contract once per call"
    if not specs:
        return []
    ordered = sorted(specs, key=lambda spec: spec.contract_id)  # rows locked in key order, as load_contracts does
    saved = await _save_contracts.execute(session, **column_arrays(_CONTRACT_COLUMNS, list(map(_contract_row, ordered))))
    await session.execute(contract_items.delete().where(among(contract_items.c.contract_id, contract_ids)))
    await insert_rows(session, contract_items, _CONTRACT_ITEM_COLUMNS,
                      [row for spec in ordered for row in _contract_item_rows(spec)])
    revisions = {row["contract_id"]: row["revision"] for row in saved}
    return [revisions[contract_id] for contract_id in contract_ids]


async def analyze_contracts(session: AsyncSession) -> None:
    """Refresh the planner's statistics of the contract tables, in the caller's transaction (which
    they count the rows of, and roll back with).

    After a bulk import they describe tables a fraction of the size, or none: PostgreSQL then takes
    a batch's `contract_id = ANY(...)` for most of the table and scans all of it, on every batch
    rating applies (load_contracts), until autovacuum analyzes them, up to a minute or more later.
    Right after 20,000 contracts were imported, usage offered at 1,000 events/s waited 14 s (p50),
    as rating fell behind."""
    await session.execute(text("ANALYZE contracts, contract_items, customers"))


def _contract_row(spec: ContractSpec) -> tuple:
    """The values of `_CONTRACT_COLUMNS`; the revision is a new contract's (a stored one's grows)."""
    return (spec.contract_id, spec.customer.customer_id, spec.currency, spec.starts_on, spec.ends_on,
            spec.status.value, spec.billing_cycle.value, spec.period_months, spec.alignment_date, spec.time_zone, 1)


def _contract_item_rows(spec: ContractSpec) -> list[tuple]:
    """The values of `_CONTRACT_ITEM_COLUMNS` for each of the contract's items."""
    return [(spec.contract_id, item.item_code, item.description,
             item.to_domain().unit_price.quantize(QUANTITY_QUANTUM), item.tax_category.value, item.kind.value,
             _jsonb(item.model_dump(mode="json", exclude_defaults=True)))
            for item in spec.items]


async def mark_closed(session: AsyncSession, contract_id: str, closed_through: date | None,
                      close_due_on: date | None) -> None:
    await session.execute(
        update(contracts).where(contracts.c.contract_id == contract_id)
        .values(closed_through=closed_through, close_due_on=close_due_on)
    )


STATE_KEY_COLUMNS = ("contract_id", "item_code", "period_start")
_STATE_KEY = [period_usage.c[name] for name in STATE_KEY_COLUMNS]
_lock_period_usage = CompiledOnce(
    select(*_STATE_KEY, period_usage.c.quantity, period_usage.c.net, period_usage.c.discount)
    .where(tuple_(*_STATE_KEY).in_(unnested(period_usage, STATE_KEY_COLUMNS)))
    .order_by(*_STATE_KEY)
    .with_for_update())


async def lock_period_usage(session: AsyncSession, keys: Iterable[StateKey]) -> dict[StateKey, PeriodUsage]:
    """The cumulative states of `keys`, locked in key order so that concurrent workers never deadlock."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = await _lock_period_usage.execute(session, **column_arrays(STATE_KEY_COLUMNS, ordered))
    return {(contract_id, item_code, period_start): PeriodUsage(quantity, net, discount)
            for contract_id, item_code, period_start, quantity, net, discount in rows}


_PERIOD_USAGE_COLUMNS = (*STATE_KEY_COLUMNS, "period_end", "quantity", "net", "discount")
_new_period_usage = inserting(period_usage, _PERIOD_USAGE_COLUMNS)
_save_period_usage = CompiledOnce(_new_period_usage.on_conflict_do_update(
    index_elements=list(STATE_KEY_COLUMNS),
    set_={"quantity": _new_period_usage.excluded.quantity, "net": _new_period_usage.excluded.net,
          "discount": _new_period_usage.excluded.discount},
))


async def save_period_usage(session: AsyncSession, states: Mapping[StateKey, tuple[PeriodUsage, date]]) -> None:
    """Write the new cumulative states (with each period's end) in one statement."""
    if states:
        await _save_period_usage.execute(session, **column_arrays(_PERIOD_USAGE_COLUMNS, [
            (*key, period_end, state.quantity, state.net, state.discount)
            for key, (state, period_end) in sorted(states.items())]))


async def lock_meters(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], MeterState]:
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = (
        await session.execute(
            select(meters)
            .where(tuple_(meters.c.contract_id, meters.c.item_code).in_(ordered))
            .order_by(meters.c.contract_id, meters.c.item_code)
            .with_for_update()
        )
    ).all()
    return {(row.contract_id, row.item_code): MeterState(row.reading, row.read_at) for row in rows}


async def save_meters(session: AsyncSession, readings: Mapping[tuple[str, str], MeterState]) -> None:
    if not readings:
        return
    statement = insert(meters)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["contract_id", "item_code"],
        set_={"reading": statement.excluded.reading, "read_at": statement.excluded.read_at},
    ), [
        {"contract_id": contract_id, "item_code": item_code, "reading": state.reading, "read_at": state.read_at}
        for (contract_id, item_code), state in sorted(readings.items())
    ])


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _row(item: BillableItem) -> dict:
    return {
        "billable_item_id": item.billable_item_id,
        "source_event_id": item.source_event_id,
        "contract_id": item.contract_id,
        "customer_id": item.customer_id,
        "item_code": item.item_code,
        "currency": item.net.currency,
        "quantity": item.quantity,
        "free_quantity": item.free_quantity,
        "billable_quantity": item.billable_quantity,
        "unit_price": item.unit_price,
        "net": item.net.amount,
        "period_start": item.period_start,
        "period_end": item.period_end,
        "occurred_at": item.occurred_at,
        "charge_kind": item.charge_kind.value,
        "tax_category": item.tax_category.value,
        "discount": item.discount_amount.amount,
        "price_breakdown": [
            {"from_quantity": _text(band.from_quantity), "to_quantity": _text(band.to_quantity),
             "quantity": str(band.quantity), "unit_price": str(band.unit_price), "amount": str(band.amount)}
            for band in item.bands
        ],
        "previous_reading": item.previous_reading,
        "current_reading": item.current_reading,
        "late_for_period_start": item.late_for.start if item.late_for else None,
        "late_for_period_end": item.late_for.end if item.late_for else None,
    }


async def contracts_with_billable_items(session: AsyncSession, contract_ids: Collection[str]) -> set[str]:
    """Those of the contracts that have billable items, in one query (none for no contracts)."""
    if not contract_ids:
        return set()
    return set(await session.scalars(select(contracts.c.contract_id).where(
        among(contracts.c.contract_id, contract_ids),
        select(billable_items.c.billable_item_id).where(billable_items.c.contract_id == contracts.c.contract_id).exists(),
    )))


async def billed_into(session: AsyncSession, contract_id: str, periods: Sequence[Period]) -> dict[Period, tuple[int, Decimal]]:
    """How many billable items of the contract are billed in each of `periods`, and their net sum."""
    if not periods:
        return {}
    rows = (await session.execute(
        select(billable_items.c.period_start, billable_items.c.period_end, func.count(), func.sum(billable_items.c.net))
        .where(billable_items.c.contract_id == contract_id,
               tuple_(billable_items.c.period_start, billable_items.c.period_end).in_(
                   [(period.start, period.end) for period in periods]))
        .group_by(billable_items.c.period_start, billable_items.c.period_end)
    )).all()
    found = {(row[0], row[1]): (row[2], row[3]) for row in rows}
    return {period: found.get((period.start, period.end), (0, Decimal(0))) for period in periods}


async def items_of_line(session: AsyncSession, contract_id: str, item_code: str, period_start: date,
                        after: tuple[datetime, uuid.UUID] | None, limit: int) -> list:
    """A billing line's billable items (its usage, batch by batch, fees, top-ups and purchases billed
    in the period beginning `period_start`), in the order of their last use, `limit` at a time after
    `after` (the last row's occurred_at and billable_item_id)."""
    columns = billable_items.c
    return await _line_page(session, billable_items, columns.billable_item_id, [
        columns.billable_item_id, columns.source_event_id, columns.occurred_at, columns.quantity,
        columns.billable_quantity, columns.unit_price, columns.discount, columns.net, columns.charge_kind,
        columns.late_for_period_start], (contract_id, item_code, period_start), after, limit)


async def usage_of_line(session: AsyncSession, contract_id: str, item_code: str, period_start: date,
                        after: tuple[datetime, uuid.UUID] | None, limit: int) -> list:
    """A billing line's usage events, in the order they were used, `limit` at a time after `after`
    (the last row's occurred_at and event_id)."""
    columns = rated_usage.c
    return await _line_page(session, rated_usage, columns.event_id, [
        columns.event_id, columns.billable_item_id, columns.occurred_at, columns.quantity, columns.meter_reading,
    ], (contract_id, item_code, period_start), after, limit)


async def _line_page(session: AsyncSession, table, row_id, columns: list, line: tuple[str, str, date],
                     after: tuple[datetime, uuid.UUID] | None, limit: int) -> list:
    """A page of a line's rows in (occurred_at, row_id) order, keyset-paged: a page costs the same
    however deep it is (both tables have an index on the line and that order)."""
    contract_id, item_code, period_start = line
    statement = (
        select(*columns)
        .where(table.c.contract_id == contract_id, table.c.item_code == item_code, table.c.period_start == period_start)
        .order_by(table.c.occurred_at, row_id)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(tuple_(table.c.occurred_at, row_id) > after)
    return list((await session.execute(statement)).all())


async def add_rated_usage(session: AsyncSession, usage: Sequence[RatedUsage]) -> None:
    """Record every rated event with its item, in one statement; an event recorded twice in its line fails
    loudly (the inbox claims each event once: it is never rated twice)."""
    if usage:
        await insert_rows(session, rated_usage, RatedUsage._fields, usage)


_BILLABLE_ITEM_COLUMNS = tuple(column.name for column in billable_items.columns if column.name != "rated_at")


async def add_billable_items(session: AsyncSession, items: list[BillableItem]) -> None:
    """Insert new items in one statement (a batch at a low rate holds an item for almost every event); a
    second item for the same source fails loudly."""
    if items:
        rows = [{**row, "price_breakdown": _jsonb(row["price_breakdown"])} for row in map(_row, items)]
        await insert_rows(session, billable_items, _BILLABLE_ITEM_COLUMNS,
                          [tuple(row[name] for name in _BILLABLE_ITEM_COLUMNS) for row in rows])


async def add_new_billable_items(session: AsyncSession, items: list[BillableItem]) -> list[BillableItem]:
    """Insert the items not there yet (derived ids: fees, top-ups, purchases); returns those."""
    if not items:
        return []
    inserted = set(
        (
            await session.scalars(
                insert(billable_items).on_conflict_do_nothing().returning(billable_items.c.billable_item_id),
                [_row(item) for item in items],
            )
        ).all()
    )
    return [item for item in items if item.billable_item_id in inserted]
