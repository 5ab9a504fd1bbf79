"""A contract's terms as billing users read them: price plans, the cycle, and the billing schedule's
periods. Pure, no I/O; the periods come from the one billing clock every service uses
(shared.periods), so the schedule's rows are the periods rating rated into.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Mapping

from services.portal.domain import ActionRefused, plain_number
from services.portal.models import BillingStatus, OrderStatus, PriceBand, PricePlan, Timing
from shared.events import BillingCycle
from shared.periods import BillingSchedule, Period

# An open-ended contract's schedule shows this many periods after the current one (as many as
# rating's estimate looks ahead by default).
FUTURE_PERIODS = 12
CYCLE_NAMES = {1: "monthly", 3: "quarterly", 6: "half-yearly", 12: "yearly"}


def cycle_in_words(billing_cycle: str, period_months: int) -> str:
    every = CYCLE_NAMES.get(period_months, f"every {period_months} months")
    return f"{every}, {billing_cycle}"


def price_plan(terms: Mapping[str, Any]) -> PricePlan | None:
    """A usage item's plan from its stored terms (rating's item spec, defaults left out); None for a fee.

    A plain `unit_price` is a per-unit plan of one open band; every default is rating's PricingSpec's.
    """
    if terms.get("kind", "usage") != "usage":
        return None
    pricing = terms.get("pricing") or {"unit_price": terms.get("unit_price", "0")}
    model = pricing.get("model", "per_unit")
    tiers = pricing.get("tiers") or [{"from_quantity": "0", "unit_price": pricing.get("unit_price", "0")}]

    def number(value: Any) -> Decimal:
        return plain_number(Decimal(str(value)))

    def optional(name: str) -> Decimal | None:
        return None if pricing.get(name) is None else number(pricing[name])

    return PricePlan(
        model=model,
        bands=[PriceBand(from_quantity=number(tier["from_quantity"]),
                         to_quantity=None if tier.get("to_quantity") is None else number(tier["to_quantity"]),
                         unit_price=number(tier["unit_price"])) for tier in tiers],
        package_size=number(pricing.get("package_size", 1)),
        free_quantity=number(pricing.get("free_quantity", 0)),
        discount_percent=number(pricing.get("discount_percent", 0)),
        minimum=optional("minimum"), maximum=optional("maximum"))


def billing_schedule(starts_on: date, ends_on: date | None, billing_cycle: str, period_months: int,
                     alignment_date: date | None) -> BillingSchedule:
    return BillingSchedule(starts_on, ends_on, BillingCycle(billing_cycle), period_months, alignment_date)


def periods_in_term(schedule: BillingSchedule, today: date, future_periods: int = FUTURE_PERIODS) -> list[Period]:
    """Every period of the term, past, current and future; an open-ended term's up to `future_periods`
    periods after today's."""
    periods = []
    ahead = 0
    for period in schedule.periods(date.max):
        if schedule.ends_on is None and period.start > today:
            if ahead == future_periods:
                break
            ahead += 1
        periods.append(period)
    return periods


def timing(period: Period, today: date) -> Timing:
    if period.end < today:
        return Timing.PAST
    return Timing.CURRENT if period.start <= today else Timing.FUTURE


@dataclass(frozen=True, slots=True)
class Settled:
    """Of a period's billable items: how many settlement holds, and how many of those are settled."""

    items: int = 0
    settled: int = 0

    @property
    def status(self) -> BillingStatus:
        if not self.items:
            return BillingStatus.NOTHING_RATED
        if self.settled == self.items:
            return BillingStatus.BILLED
        return BillingStatus.PARTLY_BILLED if self.settled else BillingStatus.UNBILLED


@dataclass(frozen=True, slots=True)
class EstimatedPeriod:
    quantity: Decimal
    net: Decimal  # what rating's price plan makes of the quantity in the period
    edited: bool = False  # this period's estimate was edited on its own


@dataclass(frozen=True, slots=True)
class Estimate:
    """An item's estimated consumption on the schedule, per period start. A forecast: never stored or billed."""

    item_code: str
    periods: Mapping[date, EstimatedPeriod]

    @property
    def edited_start(self) -> date | None:
        return next((start for start, period in self.periods.items() if period.edited), None)


@dataclass(frozen=True, slots=True)
class EditedPeriod:
    """One period's estimate edited on its own: its start, the quantity, and rating's net of that
    quantity per unbilled period."""

    start: date
    quantity: Decimal
    nets: Mapping[date, Decimal]


def estimate(item_code: str, quantity: Decimal | None, nets: Mapping[date, Decimal],
             edited: EditedPeriod | None = None) -> Estimate:
    """The item's estimate: `quantity` in every unbilled period (`nets`: rating's net of it per period start).

    As billing users edit the lines of an estimate in order: editing one period's estimate sets
    that period's quantity, the unbilled periods before it are treated as if their actual
    consumption had been entered (their estimate is cleared), and the periods after it keep the
    item's estimate. Only an unbilled period (one rating estimates) can be edited.
    """
    periods = {} if quantity is None else {start: EstimatedPeriod(quantity, net) for start, net in nets.items()}
    if edited is None:
        return Estimate(item_code, periods)
    if edited.start not in edited.nets:
        raise ActionRefused(f"no unbilled period of {item_code} begins on {edited.start.isoformat()}: "
                            "only those can have an estimate")
    later = {start: period for start, period in periods.items() if start > edited.start}
    return Estimate(item_code, {edited.start: EstimatedPeriod(edited.quantity, edited.nets[edited.start], edited=True),
                                **later})


def order_status(billed: list[bool], cancelled: list[bool]) -> OrderStatus:
    """An order's purchases, each billed or not and cancelled or not: cancelled once all of them are."""
    if cancelled and all(cancelled):
        return OrderStatus.CANCELLED
    if billed and all(billed):
        return OrderStatus.BILLED
    return OrderStatus.PARTLY_BILLED if any(billed) else OrderStatus.UNBILLED
