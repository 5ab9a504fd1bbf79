"""Rating's rules: contracts, their billing periods, and how usage, fees and purchases become
billable items. Pure functions and dataclasses, no I/O.

Usage is rated against the cumulative state of its (contract, item, period): a batch's events of
one period become one billable item, charged what the period's settled net grew by (see
pricing.py), so a period rated batch by batch costs exactly what it costs rated at once, and a
late event can never bill twice.

Late usage: a period is *closed* once `close_periods` passed its end (its minimum was topped
up). Usage for a closed period is still rated against that period's state (its tiers and free
quantity continue where they were, so the free quantity is not granted again, and what the
minimum top-up already charged is not charged again), but is billed in the contract's first
open period and carries a reference to the period it belongs to.

Meter readings: consumption = this reading - the meter's previous reading (the item's
`initial_reading` before the first one), rated in the period of the reading's own timestamp.
A reading older than the newest one already rated is refused: the newer reading's consumption
already covers its interval, and re-splitting it could bill it twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Iterator, Mapping, NamedTuple, Sequence

from services.rating.pricing import BandCharge, PricePlan, band_differences
from shared.errors import Rejected
from shared.events import BillingCycle, ChargeKind, ContractStatus, TaxCategory, UsageRecorded, derive_id
from shared.money import Money
from shared.periods import BillingSchedule, Period, business_day, start_of_day

HUNDRED = Decimal(100)
# A billable item names the usage events it bills (items.rated's source_event_ids): at most this
# many, so that the message stays far below the broker's and the consumers' size limits.
MAX_EVENTS_PER_ITEM = 1000
# Quantities travel with at most this many decimals (shared.events.Quantity).
QUANTITY_QUANTUM = Decimal("1e-10")


class RatingError(Rejected):
    """Usage that cannot be rated against its contract."""


class ItemKind(StrEnum):
    USAGE = "usage"
    RECURRING_FEE = "recurring_fee"


class Measure(StrEnum):
    CONSUMPTION = "consumption"  # each event carries a consumed quantity
    METER_READING = "meter_reading"  # each event carries the meter's current reading


@dataclass(frozen=True, slots=True)
class ContractItem:
    item_code: str
    description: str
    tax_category: TaxCategory = TaxCategory.STANDARD
    kind: ItemKind = ItemKind.USAGE
    # usage items
    plan: PricePlan = field(default_factory=PricePlan)
    measure: Measure = Measure.CONSUMPTION
    initial_reading: Decimal = Decimal(0)
    # recurring fees: the list price per full period, less `deviation_percent`
    list_price: Decimal = Decimal(0)
    deviation_percent: Decimal = Decimal(0)
    # Set when a change of the contract (a renewal) changed the fee's price.
    price_adjusted: bool = False

    @property
    def unit_price(self) -> Decimal:
        """The price per unit (usage) or per full period (fees), as a listing shows it."""
        return self.fee_net_price if self.kind is ItemKind.RECURRING_FEE else self.plan.price(Decimal(0)).unit_price

    @property
    def fee_net_price(self) -> Decimal:
        return self.list_price * (HUNDRED - self.deviation_percent) / HUNDRED


@dataclass(frozen=True, slots=True)
class Contract:
    contract_id: str
    customer_id: str
    currency: str
    starts_on: date
    ends_on: date | None
    items: dict[str, ContractItem]
    status: ContractStatus = ContractStatus.ACTIVE
    billing_cycle: BillingCycle = BillingCycle.CALENDAR
    period_months: int = 1
    # Anniversary cycles: the first regular period starts here; the first period runs from
    # `starts_on` to the day before, so it is shorter or longer than a regular one.
    alignment_date: date | None = None
    # Every period ending on or before this day is closed (see the module docstring).
    closed_through: date | None = None
    # The business time zone its days (and so its periods) begin and end in.
    time_zone: str = "UTC"
    # Its billing schedule, made once: every usage event is placed in one of its periods.
    schedule: BillingSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", BillingSchedule(self.starts_on, self.ends_on, self.billing_cycle,
                                                             self.period_months, self.alignment_date))

    def is_active_on(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)

    def day_of(self, instant: datetime) -> date:
        """The contract's business day `instant` falls on."""
        return business_day(instant, self.time_zone)

    def start_of(self, day: date) -> datetime:
        return start_of_day(day, self.time_zone)

    def period_of(self, day: date) -> Period:
        """The billing period `day` falls in, cut to the contract's life."""
        return self.schedule.period_of(day)

    def periods(self, until: date) -> Iterator[Period]:
        """The contract's periods from its start that begin on or before `until`."""
        return self.schedule.periods(until)

    def is_closed(self, period: Period) -> bool:
        return self.closed_through is not None and period.end <= self.closed_through

    def first_open_period(self) -> Period | None:
        """Where late usage is billed; None once the contract's last period is closed."""
        day = self.starts_on if self.closed_through is None else self.closed_through + timedelta(days=1)
        return self.period_of(day) if self.is_active_on(day) else None

    def item(self, item_code: str) -> ContractItem:
        item = self.items.get(item_code)
        if item is None:
            raise RatingError(f"contract {self.contract_id} has no item {item_code!r}")
        return item


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """The cumulative state of one (contract, item, period): what was used and what was billed."""

    quantity: Decimal = Decimal(0)
    net: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class MeterState:
    reading: Decimal
    read_at: datetime


@dataclass(frozen=True, slots=True)
class BillableItem:
    billable_item_id: uuid.UUID
    source_event_id: uuid.UUID
    contract_id: str
    customer_id: str
    item_code: str
    description: str
    quantity: Decimal
    free_quantity: Decimal
    billable_quantity: Decimal
    unit_price: Decimal
    net: Money
    period_start: date
    period_end: date
    occurred_at: datetime
    # What the item is taxed with: its contract item's category, or a purchase's own.
    tax_category: TaxCategory
    charge_kind: ChargeKind = ChargeKind.USAGE
    discount: Money | None = None
    # The breakdown, each band's amount rounded on its own, as it is shown and sent.
    bands: tuple[BandCharge, ...] = ()
    # Late usage: the (closed) period it was used in; `period_*` is where it is billed.
    late_for: Period | None = None
    previous_reading: Decimal | None = None
    current_reading: Decimal | None = None
    # The usage events it bills (a fee's, top-up's or purchase's: none).
    source_event_ids: tuple[uuid.UUID, ...] = ()

    @property
    def discount_amount(self) -> Money:
        return self.discount or Money.zero(self.net.currency)


StateKey = tuple[str, str, date]  # contract, item, period start


def state_key(contract_id: str, item_code: str, period: Period) -> StateKey:
    return (contract_id, item_code, period.start)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a usage event goes: its item, period and state key; and its meter, if it has one."""

    item: ContractItem
    period: Period
    key: StateKey
    meter_key: tuple[str, str] | None


def placed_on(contract: Contract, item_code: str, day: date) -> Placement:
    """Where usage of a contract item on a (business) day goes; raises RatingError."""
    item = contract.item(item_code)
    if item.kind is not ItemKind.USAGE:
        raise RatingError(f"item {item.item_code!r} of contract {contract.contract_id} is a {item.kind}, "
                          "not a usage item")
    if not contract.is_active_on(day):
        raise RatingError(
            f"usage on {day} is outside contract {contract.contract_id}'s term "
            f"({contract.starts_on} to {contract.ends_on or 'open end'})"
        )
    period = contract.period_of(day)
    meter_key = (contract.contract_id, item.item_code) if item.measure is Measure.METER_READING else None
    return Placement(item, period, state_key(contract.contract_id, item.item_code, period), meter_key)


def check_measure(usage: UsageRecorded, item: ContractItem) -> None:
    """A usage event must carry what its item is measured by; raises RatingError."""
    if item.measure is Measure.METER_READING:
        if usage.meter_reading is None:
            raise RatingError(f"item {item.item_code!r} is metered: send its current meter_reading")
        if usage.quantity != 0:
            raise RatingError(f"item {item.item_code!r} is metered: its consumption comes from the readings, "
                              f"so quantity must be 0, not {usage.quantity}")
    elif usage.meter_reading is not None:
        raise RatingError(f"item {item.item_code!r} is measured by consumption: send quantity, not a meter_reading")


def consumed_by_reading(usage: UsageRecorded, item: ContractItem, meter: MeterState | None) -> tuple[Decimal, Decimal]:
    """(previous reading, consumption) of a meter reading; raises RatingError for one out of order."""
    assert usage.meter_reading is not None
    previous = item.initial_reading if meter is None else meter.reading
    if meter is not None and usage.occurred_at <= meter.read_at:
        raise RatingError(
            f"meter reading {usage.meter_reading} of {usage.occurred_at.isoformat()} is not newer than the "
            f"reading {meter.reading} of {meter.read_at.isoformat()} already rated, whose consumption covers it"
        )
    if usage.meter_reading < previous:
        raise RatingError(f"meter reading {usage.meter_reading} is below the previous reading {previous}")
    return previous, usage.meter_reading - previous


# The two per-event records are named tuples: a batch makes thousands of them, and a tuple is
# built in a third of the time a frozen dataclass takes.
class Consumption(NamedTuple):
    """A usage event accepted for rating: what it consumed (a metered one: its reading minus the
    previous one) in the period it was placed in."""

    usage: UsageRecorded
    quantity: Decimal
    previous_reading: Decimal | None = None


class RatedUsage(NamedTuple):
    """A usage event as rated: what it consumed and the billable item it is billed in (its fields
    in the order of the rated_usage table's columns, which it is copied into as it is)."""

    event_id: uuid.UUID
    billable_item_id: uuid.UUID
    contract_id: str
    item_code: str
    period_start: date
    occurred_at: datetime
    quantity: Decimal
    meter_reading: Decimal | None = None


def rate(consumed: Sequence[Consumption], contract: Contract, placement: Placement,
         state: PeriodUsage) -> tuple[BillableItem, PeriodUsage]:
    """Rate a period's events of one batch (in order) against the period's cumulative state, as ONE
    billable item; returns it and the new state.

    The item is charged what the period's settled net grows by, so whatever events a batch holds,
    the items of a period add up to the period's price of its whole consumption.
    """
    item, period = placement.item, placement.period
    first, last = consumed[0], consumed[-1]
    quantity = sum((event.quantity for event in consumed), Decimal(0))
    closed = contract.is_closed(period)
    billed_in = (contract.first_open_period() or period) if closed else period
    plan, currency = item.plan, contract.currency
    before, after = plan.price(state.quantity), plan.price(state.quantity + quantity)
    net = plan.settled(after, currency, closed=closed)
    # The item's net and discount are what the period's grew by, each checked once as Money (a
    # one-event item is priced at 1,000 events/s: its Money objects were a fifth of its cost).
    discount = Money.round(after.gross, currency).amount - Money.round(after.net, currency).amount
    free = after.free_quantity - before.free_quantity
    rated = BillableItem(
        billable_item_id=derive_id(first.usage.event_id, "billable-item"),
        source_event_id=first.usage.event_id,
        contract_id=contract.contract_id,
        customer_id=contract.customer_id,
        item_code=item.item_code,
        description=item.description,
        quantity=quantity,
        free_quantity=free,
        billable_quantity=quantity - free,
        unit_price=after.unit_price,
        net=Money(net.amount - state.net, currency),
        period_start=billed_in.start,
        period_end=billed_in.end,
        # The latest use it bills: a run that bills up to a moment takes it once all of it is before.
        occurred_at=max(event.usage.occurred_at for event in consumed),
        tax_category=item.tax_category,
        discount=Money(discount - state.discount, currency),
        bands=tuple(BandCharge(band.from_quantity, band.to_quantity, band.quantity, band.unit_price,
                               Money.round(band.amount, currency).amount)
                    for band in band_differences(before, after)),
        late_for=period if closed else None,
        previous_reading=first.previous_reading,
        current_reading=last.usage.meter_reading,
        source_event_ids=tuple(event.usage.event_id for event in consumed),
    )
    return rated, PeriodUsage(after.quantity, net.amount, discount)


@dataclass
class BatchRating:
    items: list[BillableItem] = field(default_factory=list)
    usage: list[RatedUsage] = field(default_factory=list)
    states: dict[StateKey, PeriodUsage] = field(default_factory=dict)
    meters: dict[tuple[str, str], MeterState] = field(default_factory=dict)
    rejected: dict[uuid.UUID, Rejected] = field(default_factory=dict)


Placed = list[tuple[UsageRecorded, Placement]]


def place_batch(usages: Sequence[UsageRecorded], contracts: Mapping[str, Contract]
                ) -> tuple[Placed, dict[uuid.UUID, Rejected]]:
    """Place every event of a batch: the accepted ones in order with their placement, and the
    refused ones with their reason."""
    placed: Placed = []
    rejected: dict[uuid.UUID, Rejected] = {}
    # Every event of a (contract, item, day) is placed alike: each is looked up once per batch.
    found: dict[tuple[str, str, date], Placement | RatingError] = {}
    for usage in usages:
        contract = contracts.get(usage.contract_id)
        if contract is None:
            rejected[usage.event_id] = RatingError(f"unknown contract {usage.contract_id!r}")
            continue
        day = contract.day_of(usage.occurred_at)
        placement = found.get((usage.contract_id, usage.item_code, day))
        if placement is None:
            try:
                placement = placed_on(contract, usage.item_code, day)
            except RatingError as error:
                placement = error
            found[usage.contract_id, usage.item_code, day] = placement
        try:
            if isinstance(placement, RatingError):
                raise placement
            check_measure(usage, placement.item)
        except RatingError as error:
            rejected[usage.event_id] = error
            continue
        placed.append((usage, placement))
    return placed, rejected


def rate_batch(placed: Placed, contracts: Mapping[str, Contract], states: Mapping[StateKey, PeriodUsage],
               meters: Mapping[tuple[str, str], MeterState]) -> BatchRating:
    """Rate a batch: one billable item per (contract, item, period) it has events of. `placed`
    holds the events `place_batch` accepted, in order, with their placements.

    Meter readings are taken in order, each against the one before it (a reading out of order is
    refused on its own); then each period's events are priced at once, so the work per event is
    placing and adding it up, whatever the price plan. Returns the items, the events each bills,
    and only the states and meters that changed.
    """
    outcome = BatchRating()
    current_meters = dict(meters)
    periods: dict[StateKey, tuple[Placement, list[list[Consumption]]]] = {}
    for usage, placement in placed:
        consumption = Consumption(usage, usage.quantity)
        if placement.meter_key is not None:
            try:
                previous, quantity = consumed_by_reading(usage, placement.item, current_meters.get(placement.meter_key))
            except RatingError as error:
                outcome.rejected[usage.event_id] = error
                continue
            consumption = Consumption(usage, quantity, previous)
            assert usage.meter_reading is not None
            current_meters[placement.meter_key] = outcome.meters[placement.meter_key] = MeterState(
                usage.meter_reading, usage.occurred_at)
        period = periods.get(placement.key)
        if period is None:
            period = periods[placement.key] = (placement, [[]])
        chunks = period[1]  # each chunk one item's events
        if len(chunks[-1]) == MAX_EVENTS_PER_ITEM:
            chunks.append([])
        chunks[-1].append(consumption)
    for key, (placement, chunks) in periods.items():
        for consumed in chunks:
            item, outcome.states[key] = rate(consumed, contracts[key[0]], placement,
                                             outcome.states.get(key) or states.get(key, PeriodUsage()))
            outcome.items.append(item)
            outcome.usage += [RatedUsage(event.usage.event_id, item.billable_item_id, item.contract_id,
                                         item.item_code, item.period_start, event.usage.occurred_at, event.quantity,
                                         event.usage.meter_reading)
                              for event in consumed]
    return outcome


def fee_item(contract: Contract, item: ContractItem, period: Period) -> BillableItem:
    """A recurring fee for one period, charged in advance, prorated by day for a partial period.

    net = net price x days of the period / days of a regular period, rounded once. As the
    contract lists it: quantity = the part of a regular period, unit price = the list price,
    discount = what the deviation (and the rounding) took off it, so quantity x list price -
    discount = net holds on the invoice line.
    """
    source = derive_id(f"{contract.contract_id}:{item.item_code}:{period.start.isoformat()}", "recurring-fee")
    fraction = Decimal(period.days) / Decimal(period.regular_days)
    shown_fraction = fraction.quantize(QUANTITY_QUANTUM)
    list_amount = Money.round(item.list_price * fraction, contract.currency)
    net = Money.round(item.fee_net_price * fraction, contract.currency)
    return BillableItem(
        billable_item_id=derive_id(source, "billable-item"),
        source_event_id=source,
        contract_id=contract.contract_id,
        customer_id=contract.customer_id,
        item_code=item.item_code,
        description=item.description,
        quantity=shown_fraction,
        free_quantity=Decimal(0),
        billable_quantity=shown_fraction,
        unit_price=item.list_price,
        net=net,
        period_start=period.start,
        period_end=period.end,
        occurred_at=contract.start_of(period.start),
        tax_category=item.tax_category,
        charge_kind=ChargeKind.RECURRING_FEE,
        discount=list_amount - net,
    )


def minimum_top_up(contract: Contract, item: ContractItem, period: Period,
                   state: PeriodUsage) -> tuple[BillableItem | None, PeriodUsage]:
    """Closing a period: what its net falls short of the item's minimum, as an item of its own."""
    closed_net = item.plan.settled_net(state.quantity, contract.currency, closed=True)
    top_up = closed_net - Money.of(state.net, contract.currency)
    if top_up.is_zero():
        return None, state
    source = derive_id(f"{contract.contract_id}:{item.item_code}:{period.start.isoformat()}", "minimum-top-up")
    return BillableItem(
        billable_item_id=derive_id(source, "billable-item"),
        source_event_id=source,
        contract_id=contract.contract_id,
        customer_id=contract.customer_id,
        item_code=item.item_code,
        description=f"Minimum charge: {item.description}"[:500],
        quantity=Decimal(0),
        free_quantity=Decimal(0),
        billable_quantity=Decimal(0),
        unit_price=Decimal(0),
        net=top_up,
        period_start=period.start,
        period_end=period.end,
        occurred_at=contract.start_of(period.end),
        tax_category=item.tax_category,
    ), replace(state, net=closed_net.amount)


@dataclass(frozen=True, slots=True)
class Closing:
    """What closing a contract's periods up to a day produces."""

    fees: list[BillableItem]
    top_ups: list[BillableItem]
    closed: list[Period]
    states: dict[StateKey, PeriodUsage]
    closed_through: date | None

    def period_end(self, key: StateKey) -> date:
        return next(period.end for period in self.closed if period.start == key[2])


def periods_to_close(contract: Contract, as_of: date) -> list[Period]:
    """The periods that ended before `as_of` and are not closed yet."""
    return [period for period in contract.periods(as_of - timedelta(days=1))
            if period.end < as_of and not contract.is_closed(period)]


def close_periods(contract: Contract, as_of: date, states: Mapping[StateKey, PeriodUsage], *,
                  grace_days: int = 0) -> Closing:
    """At `as_of`: charge every recurring fee for each open period begun by then (in advance; the
    caller skips the ones already charged by their ids), and close the periods that ended more
    than `grace_days` before it, topping up their minimums. `states` holds the cumulative states
    of the periods to close (`periods_to_close`).

    A closed period's fees were charged when it began, so a fee added to a contract later is
    charged from its first open period on, never for closed ones.
    """
    open_periods = [period for period in contract.periods(as_of) if not contract.is_closed(period)]
    fees = [fee_item(contract, item, period)
            for item in contract.items.values() if item.kind is ItemKind.RECURRING_FEE
            for period in open_periods]
    closing = periods_to_close(contract, as_of - timedelta(days=grace_days))
    top_ups, changed = [], {}
    for period in closing:
        for item in contract.items.values():
            if item.kind is not ItemKind.USAGE or item.plan.minimum is None:
                continue
            key = state_key(contract.contract_id, item.item_code, period)
            top_up, state = minimum_top_up(contract, item, period, states.get(key, PeriodUsage()))
            if top_up is not None:
                top_ups.append(top_up)
                changed[key] = state
    closed_through = closing[-1].end if closing else contract.closed_through
    return Closing(fees, top_ups, closing, changed, closed_through)


def next_close_due(contract: Contract, as_of: date, grace_days: int) -> date | None:
    """After closing `contract` as of `as_of`: the first later day on which closing it again may do
    something. That is the day its first open period is `grace_days` past its end, or, with
    recurring fees, the day its next period begins; None once its last period is closed."""
    first_open = contract.first_open_period()
    if first_open is None:
        return None
    due = first_open.end + timedelta(days=grace_days + 1)
    if any(item.kind is ItemKind.RECURRING_FEE for item in contract.items.values()):
        next_start = contract.starts_on if as_of < contract.starts_on else contract.period_of(as_of).end + timedelta(days=1)
        if contract.is_active_on(next_start):
            due = min(due, next_start)
    return due


@dataclass(frozen=True, slots=True)
class EstimatedPeriod:
    period: Period
    quantity: Decimal
    net: Money


def estimate(contract: Contract, item_code: str, quantity: Decimal, *, horizon: int = 12) -> list[EstimatedPeriod]:
    """The expected net of each unbilled (not yet closed) period, if `quantity` is used in each.

    Usage items: the plan's settled net of `quantity` with the minimum applied, as a closed
    period would bill it. Fees: their prorated price, whatever the quantity. An open-ended
    contract is estimated for `horizon` periods.
    """
    item = contract.item(item_code)
    first = contract.first_open_period()
    estimated: list[EstimatedPeriod] = []
    day = first.start if first else None
    while day is not None and contract.is_active_on(day) and len(estimated) < horizon:
        period = contract.period_of(day)
        if item.kind is ItemKind.RECURRING_FEE:
            estimated.append(EstimatedPeriod(period, Decimal(1), fee_item(contract, item, period).net))
        else:
            estimated.append(EstimatedPeriod(period, quantity,
                                             item.plan.settled_net(quantity, contract.currency, closed=True)))
        day = period.end + timedelta(days=1)
    return estimated


def purchase_item(contract: Contract, purchase_id: uuid.UUID, item_code: str, description: str, quantity: Decimal,
                  unit_price: Decimal, purchased_on: date, tax_category: TaxCategory) -> BillableItem:
    """A one-time purchase added to a contract: net = quantity x unit price, rounded once.

    Its item code need not be one of the contract's items; its tax category travels with it. A
    purchase dated in a closed period is billed in the first open one, like late usage."""
    if not contract.is_active_on(purchased_on):
        raise RatingError(f"purchase on {purchased_on} is outside contract {contract.contract_id}'s term "
                          f"({contract.starts_on} to {contract.ends_on or 'open end'})")
    bought_in = contract.period_of(purchased_on)
    closed = contract.is_closed(bought_in)
    period = (contract.first_open_period() or bought_in) if closed else bought_in
    return BillableItem(
        billable_item_id=derive_id(purchase_id, "billable-item"),
        source_event_id=purchase_id,
        contract_id=contract.contract_id,
        customer_id=contract.customer_id,
        item_code=item_code,
        description=description,
        quantity=quantity,
        free_quantity=Decimal(0),
        billable_quantity=quantity,
        unit_price=unit_price,
        net=Money.round(quantity * unit_price, contract.currency),
        period_start=period.start,
        period_end=period.end,
        occurred_at=contract.start_of(purchased_on),
        tax_category=tax_category,
        charge_kind=ChargeKind.ONE_TIME,
        late_for=bought_in if closed else None,
    )


def adjusted_prices(old: Contract | None, new: Contract) -> Contract:
    """Flag the fees whose price a change (a renewal) changed; a flag once set stays."""
    if old is None:
        return new
    items = {}
    for code, item in new.items.items():
        before = old.items.get(code)
        changed = before is not None and item.kind is ItemKind.RECURRING_FEE and (
            before.list_price != item.list_price or before.deviation_percent != item.deviation_percent)
        items[code] = replace(item, price_adjusted=item.price_adjusted or changed
                              or (before is not None and before.price_adjusted))
    return replace(new, items=items)
