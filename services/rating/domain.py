"""Pricing usage: pure functions over contracts and usage, no I/O."""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from shared.errors import Rejected
from shared.events import ContractStatus, TaxCategory
from shared.money import Money


class RatingError(Rejected):
    """Usage that cannot be rated against its contract."""


@dataclass(frozen=True, slots=True)
class ContractItem:
    item_code: str
    description: str
    unit_price: Decimal
    tax_category: TaxCategory = TaxCategory.STANDARD


@dataclass(frozen=True, slots=True)
class Contract:
    contract_id: str
    customer_id: str
    currency: str
    starts_on: date
    ends_on: date | None
    items: dict[str, ContractItem]
    status: ContractStatus = ContractStatus.ACTIVE

    def is_active_on(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


@dataclass(frozen=True, slots=True)
class Usage:
    event_id: uuid.UUID
    contract_id: str
    item_code: str
    quantity: Decimal
    occurred_at: datetime


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


def billing_period(day: date) -> tuple[date, date]:
    """The calendar month containing `day`: the billing cycle of every contract for now."""
    last_day = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1), day.replace(day=last_day)


def rate(usage: Usage, contract: Contract, billable_item_id: uuid.UUID) -> BillableItem:
    """Price one usage event per unit: net = quantity x unit price, rounded once to the currency."""
    item = contract.items.get(usage.item_code)
    if item is None:
        raise RatingError(f"contract {contract.contract_id} has no item {usage.item_code!r}")
    usage_day = usage.occurred_at.date()
    if not contract.is_active_on(usage_day):
        raise RatingError(
            f"usage on {usage_day} is outside contract {contract.contract_id}'s term "
            f"({contract.starts_on} to {contract.ends_on or 'open end'})"
        )
    if usage.quantity < 0:
        raise RatingError(f"quantity {usage.quantity} is negative")
    period_start, period_end = billing_period(usage_day)
    return BillableItem(
        billable_item_id=billable_item_id,
        source_event_id=usage.event_id,
        contract_id=contract.contract_id,
        customer_id=contract.customer_id,
        item_code=item.item_code,
        description=item.description,
        quantity=usage.quantity,
        free_quantity=Decimal(0),
        billable_quantity=usage.quantity,
        unit_price=item.unit_price,
        net=Money.round(usage.quantity * item.unit_price, contract.currency),
        period_start=period_start,
        period_end=period_end,
        occurred_at=usage.occurred_at,
    )
