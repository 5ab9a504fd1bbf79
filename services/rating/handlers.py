"""Rating's use cases, each inside one transaction (a consumer's, the period close's or an
operator's): load via the store, decide in the domain, save, return the events to emit."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Iterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.rating import domain, store
from services.rating.domain import BillableItem
from services.rating.specs import CancellationSpec, ContractSpec, PurchaseSpec
from shared import topics
from shared.errors import Rejected
from shared.events import (
    ContractChanged,
    ContractItemTerms,
    ContractStatus,
    PeriodClosed,
    PriceBand,
    RatedItem,
    UsageRecorded,
    derive_id,
)
from shared.inbox import BatchOutcome
from shared.settings import SellerSettings
from shared.outbox import Outgoing
from shared.periods import Period, end_of_day
from shared.vat import TaxContext


class NotFound(Rejected):
    """What a use case was asked about does not exist."""


async def rate_usage(session: AsyncSession, events: Sequence[UsageRecorded]) -> BatchOutcome:
    """Rate a batch of usage: one query for its contracts, one locking its period states (and
    one its meters), the events in order in the domain, then bulk writes: one billable item (and
    one items.rated) per contract item and period the batch has events of, one row per event."""
    contracts = await store.load_contracts(session, {event.contract_id for event in events})
    placed, rejected = domain.place_batch(events, contracts)
    placements = {placement.key: placement for _, placement in placed}
    states = await store.lock_period_usage(session, placements.keys())
    meters = await store.lock_meters(session, [placement.meter_key for placement in placements.values()
                                               if placement.meter_key is not None])
    rating = domain.rate_batch(placed, contracts, states, meters)
    await store.save_period_usage(session, {key: (state, placements[key].period.end)
                                            for key, state in rating.states.items()})
    await store.save_meters(session, rating.meters)
    await store.add_billable_items(session, rating.items)
    await store.add_rated_usage(session, rating.usage)
    return BatchOutcome([rated(item) for item in rating.items], {**rejected, **rating.rejected})


def rated(item: BillableItem) -> Outgoing:
    event = RatedItem(
        event_id=derive_id(item.billable_item_id, "items.rated"),
        occurred_at=item.occurred_at,
        contract_id=item.contract_id,
        billable_item_id=item.billable_item_id,
        customer_id=item.customer_id,
        item_code=item.item_code,
        description=item.description,
        currency=item.net.currency,
        quantity=item.quantity,
        free_quantity=item.free_quantity,
        billable_quantity=item.billable_quantity,
        unit_price=item.unit_price,
        net=item.net.amount,
        period_start=item.period_start,
        period_end=item.period_end,
        tax_category=item.tax_category,
        source_event_ids=list(item.source_event_ids) or [item.source_event_id],
        charge_kind=item.charge_kind,
        discount=item.discount_amount.amount,
        price_breakdown=[PriceBand(from_quantity=band.from_quantity, to_quantity=band.to_quantity,
                                   quantity=band.quantity, unit_price=band.unit_price, amount=band.amount)
                         for band in item.bands],
        previous_reading=item.previous_reading,
        current_reading=item.current_reading,
        late_for_period_start=item.late_for.start if item.late_for else None,
        late_for_period_end=item.late_for.end if item.late_for else None,
    )
    return Outgoing(topics.ITEMS_RATED, event)


def changed_event(spec: ContractSpec, revision: int) -> ContractChanged:
    return ContractChanged(
        event_id=derive_id(f"{spec.contract_id}:{revision}", "contracts.changed"),
        occurred_at=datetime.now(UTC),
        contract_id=spec.contract_id,
        revision=revision,
        customer=spec.customer,
        currency=spec.currency,
        starts_on=spec.starts_on,
        ends_on=spec.ends_on,
        status=spec.status,
        items=[
            ContractItemTerms(item_code=item.item_code, description=item.description, tax_category=item.tax_category)
            for item in spec.items
        ],
        billing_cycle=spec.billing_cycle,
        period_months=spec.period_months,
        alignment_date=spec.alignment_date,
    )


async def save_contract(session: AsyncSession, spec: ContractSpec, seller: SellerSettings) -> tuple[int, list[Outgoing]]:
    """`save_contracts` of one contract: its new revision and its snapshot."""
    revisions, outgoing = await save_contracts(session, [spec], seller)
    return revisions[0], outgoing


async def save_contracts(session: AsyncSession, specs: Sequence[ContractSpec],
                         seller: SellerSettings) -> tuple[list[int], list[Outgoing]]:
    """Create or replace contracts (and their customers), ending as saving them one by one in this
    order would; returns their new revisions, in that order, and a snapshot of each.

    Refused, with nothing written, when invoicing could not tax one of a contract's items for its
    customer of `seller` (ContractSpec.check_invoiceable). A contract that names no time zone keeps
    the one it has, and a new one gets the seller's. A fee whose price the change changed is flagged
    as price-adjusted. The contract's closed periods stay closed: a change applies to its open periods.
    """
    for spec in specs:
        spec.check_invoiceable(seller.country)
    return await _replace_contracts(session, specs, seller.time_zone)


# How many contracts are saved by one round of statements. A round costs the same handful of round
# trips however many contracts it holds (one at a time, each cost six: 100,000 took ten minutes);
# a bounded round keeps an operator's bulk import's rows and statements a few MB each.
CONTRACTS_PER_ROUND = 2_000


# A save of this many contracts or more refreshes the planner's statistics of the contract tables
# (store.analyze_contracts) before it commits.
CONTRACTS_WORTH_ANALYZING = 1_000


async def _replace_contracts(session: AsyncSession, specs: Sequence[ContractSpec],
                             default_time_zone: str | None) -> tuple[list[int], list[Outgoing]]:
    saved = []
    for round_of_specs in _rounds(specs):
        saved += await _replace_distinct_contracts(session, round_of_specs, default_time_zone)
    if len(specs) >= CONTRACTS_WORTH_ANALYZING:
        await store.analyze_contracts(session)
    return ([revision for _, revision in saved],
            [Outgoing(topics.CONTRACTS_CHANGED, changed_event(spec, revision)) for spec, revision in saved])


def _rounds(specs: Sequence[ContractSpec]) -> Iterator[list[ContractSpec]]:
    """The specs in order, cut into rounds of distinct contracts: a round's upsert cannot change a
    row twice, and a contract named again, saved in a later round, replaces what the earlier one
    saved, as saving them in order would."""
    round_of_specs: list[ContractSpec] = []
    contract_ids: set[str] = set()
    for spec in specs:
        if len(round_of_specs) == CONTRACTS_PER_ROUND or spec.contract_id in contract_ids:
            yield round_of_specs
            round_of_specs, contract_ids = [], set()
        round_of_specs.append(spec)
        contract_ids.add(spec.contract_id)
    if round_of_specs:
        yield round_of_specs


async def _replace_distinct_contracts(session: AsyncSession, specs: list[ContractSpec],
                                      default_time_zone: str | None) -> list[tuple[ContractSpec, int]]:
    """Each contract as saved (time zone and price-adjustment flags settled) with its new revision."""
    old = await store.load_contracts(session, [spec.contract_id for spec in specs], for_update=True)
    specs = [_with_time_zone(spec, old.get(spec.contract_id), default_time_zone) for spec in specs]
    await _refuse_rebasing_billed_contracts(session, specs, old)
    specs = [_with_adjusted_prices(spec, old.get(spec.contract_id)) for spec in specs]
    await store.save_customers(session, [spec.customer for spec in specs])
    return list(zip(specs, await store.save_contracts(session, specs), strict=True))


def _with_time_zone(spec: ContractSpec, old: domain.Contract | None, default_time_zone: str | None) -> ContractSpec:
    if spec.time_zone is not None:
        return spec
    return spec.model_copy(update={"time_zone": old.time_zone if old else default_time_zone})


async def _refuse_rebasing_billed_contracts(session: AsyncSession, specs: list[ContractSpec],
                                            old: dict[str, domain.Contract]) -> None:
    """Refuse (the first in order) a change of currency or time zone of a contract that has billable
    items: settlement keeps the contract's account, and bills its items, in the currency they were
    rated in; and its items were placed in periods of the days of its time zone."""
    rebased = [spec for spec in specs if spec.contract_id in old
               and (old[spec.contract_id].currency, old[spec.contract_id].time_zone) != (spec.currency, spec.time_zone)]
    billed = await store.contracts_with_billable_items(session, [spec.contract_id for spec in rebased])
    for spec in rebased:
        if spec.contract_id in billed:
            before = old[spec.contract_id]
            raise Rejected(f"contract {spec.contract_id} has billable items in {before.currency}, placed in periods "
                           f"of {before.time_zone} days; neither its currency nor its time zone can change now (to "
                           f"{spec.currency}, {spec.time_zone}): start a new contract instead")


def _with_adjusted_prices(spec: ContractSpec, old: domain.Contract | None) -> ContractSpec:
    adjusted = domain.adjusted_prices(old, spec.to_domain())
    return spec.model_copy(update={"items": [
        item.model_copy(update={"price_adjusted": adjusted.items[item.item_code].price_adjusted})
        for item in spec.items
    ]})


async def cancel_contract(session: AsyncSession, contract_id: str, cancellation: CancellationSpec) -> list[Outgoing]:
    """Cancel on a date: usage after it is refused, fees not charged yet are prorated to it, and
    settlement credits the part of fees already charged beyond it (from contracts.changed)."""
    spec = await store.find_contract_spec(session, contract_id)
    if spec is None:
        raise NotFound(f"unknown contract {contract_id!r}")
    if cancellation.ends_on < spec.starts_on:
        raise Rejected(f"cannot cancel on {cancellation.ends_on}, before the contract starts on {spec.starts_on}")
    cancelled = ContractSpec.model_validate(
        {**spec.model_dump(), "status": ContractStatus.CANCELLED, "ends_on": cancellation.ends_on})
    # Not checked for being invoiceable: a cancellation changes neither customer nor items, and
    # refusing it for a contract stored before that check would keep it rating what cannot be invoiced.
    _, outgoing = await _replace_contracts(session, [cancelled], default_time_zone=spec.time_zone)
    return outgoing


async def add_purchase(session: AsyncSession, contract_id: str, purchase: PurchaseSpec, seller_country: str,
                       max_future_skew: timedelta) -> list[Outgoing]:
    """A one-time purchase item; sending the same `purchase_id` again adds nothing.

    Refused, with nothing written, when it is dated further ahead than events may be (every later
    stage would refuse it), or when invoicing could not tax its category for the contract's customer.
    """
    contract = await store.find_contract(session, contract_id)
    spec = await store.find_contract_spec(session, contract_id)
    if contract is None or spec is None:
        raise NotFound(f"unknown contract {contract_id!r}")
    latest = (datetime.now(UTC) + max_future_skew).date()
    if purchase.purchased_on > latest:
        raise Rejected(f"a purchase dated {purchase.purchased_on} is too far ahead; the latest day accepted now is "
                       f"{latest}")
    TaxContext(seller_country, spec.customer.country, spec.customer.vat_id).vat_for(purchase.tax_category)
    purchase_id = derive_id(f"{contract_id}:{purchase.purchase_id}", "purchase") if purchase.purchase_id \
        else uuid.uuid4()
    item = domain.purchase_item(contract, purchase_id, purchase.item_code, purchase.description, purchase.quantity,
                                purchase.unit_price, purchase.purchased_on, purchase.tax_category)
    return [rated(added) for added in await store.add_new_billable_items(session, [item])]


async def close_periods(session: AsyncSession, contract_id: str, now: datetime, grace_days: int = 0) -> list[Outgoing]:
    """Charge the fees of the periods begun by `now` and close those ended `grace_days` before it,
    by the contract's business day; each closed period is announced on periods.closed with what
    was billed into it, so settlement bills it once it holds all of that.

    The contract row is locked exclusively, so no usage of it is rated meanwhile; fees and
    top-ups have derived ids, so closing again (another worker, the CLI) charges nothing twice.
    """
    contract = await store.find_contract(session, contract_id, for_update=True)
    if contract is None:
        return []
    as_of = contract.day_of(now)
    keys = [domain.state_key(contract_id, item.item_code, period)
            for period in domain.periods_to_close(contract, as_of - timedelta(days=grace_days)) for item in contract.items.values()
            if item.plan.minimum is not None]
    closing = domain.close_periods(contract, as_of, await store.lock_period_usage(session, keys),
                                   grace_days=grace_days)
    added = await store.add_new_billable_items(session, closing.fees + closing.top_ups)
    await store.save_period_usage(session, {key: (state, closing.period_end(key))
                                            for key, state in closing.states.items()})
    closed = replace(contract, closed_through=closing.closed_through)
    await store.mark_closed(session, contract_id, closing.closed_through,
                            domain.next_close_due(closed, as_of, grace_days))
    billed = await store.billed_into(session, contract_id, closing.closed)
    return [rated(item) for item in added] + [
        period_closed(contract, period, count, net, now) for period, (count, net) in billed.items()]


def period_closed(contract: domain.Contract, period: Period, item_count: int, net: Decimal,
                  now: datetime) -> Outgoing:
    return Outgoing(topics.PERIODS_CLOSED, PeriodClosed(
        event_id=derive_id(f"{contract.contract_id}:{period.start}:{period.end}", "periods.closed"),
        occurred_at=now, contract_id=contract.contract_id, customer_id=contract.customer_id,
        currency=contract.currency, period_start=period.start, period_end=period.end,
        ends_at=end_of_day(period.end, contract.time_zone), time_zone=contract.time_zone,
        item_count=item_count, net_total=net))


async def estimate(session: AsyncSession, contract_id: str, item_code: str, quantity: Decimal,
                   horizon: int = 12) -> list[domain.EstimatedPeriod]:
    contract = await store.find_contract(session, contract_id)
    if contract is None:
        raise NotFound(f"unknown contract {contract_id!r}")
    return domain.estimate(contract, item_code, quantity, horizon=horizon)
