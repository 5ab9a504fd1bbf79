"""Price plans: what a billing period's cumulative quantity of an item costs. Pure, no I/O.

Every model is a function of the period's *cumulative* quantity, never of one event's, so that
free quantities, tiers and maximums see the whole period. Rating charges each event
round(net(after)) - round(net(before)); these differences add up to round(net(total)), so
rating a period event by event gives exactly the total of rating it at once. The minimum is the
one rule that needs the whole period: it is applied when the period closes (`settled_net`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from shared.money import Money

HUNDRED = Decimal(100)


class PricingModel(StrEnum):
    PER_UNIT = "per_unit"  # every billable unit at `unit_price`
    GRADUATED = "graduated"  # each band's units at that band's price
    VOLUME = "volume"  # all units at the price of the band the total reached
    PACKAGE = "package"  # `unit_price` per started block of `package_size` units


@dataclass(frozen=True, slots=True)
class Tier:
    """A band of billable quantity: above `from_quantity` up to and including `to_quantity`."""

    from_quantity: Decimal
    to_quantity: Decimal | None
    unit_price: Decimal

    def covers(self, quantity: Decimal) -> bool:
        return self.to_quantity is None or quantity <= self.to_quantity

    def units_of(self, quantity: Decimal) -> Decimal:
        upper = quantity if self.to_quantity is None else min(quantity, self.to_quantity)
        return max(upper - self.from_quantity, Decimal(0))


@dataclass(frozen=True, slots=True)
class BandCharge:
    """One line of a price breakdown: `quantity` charged at `unit_price` (units, or packages)."""

    from_quantity: Decimal | None
    to_quantity: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal  # unrounded; a breakdown explains, the net is what is rounded


@dataclass(frozen=True, slots=True)
class Price:
    """The price of a cumulative quantity, before rounding."""

    quantity: Decimal
    free_quantity: Decimal
    billable_quantity: Decimal
    bands: tuple[BandCharge, ...]
    gross: Decimal  # the bands' sum, at list prices
    net: Decimal  # after the percentage discount and the maximum
    unit_price: Decimal  # the price the last billable unit is charged at

    @property
    def discount(self) -> Decimal:
        """Everything taken off the list price: the percentage discount and what the maximum capped."""
        return self.gross - self.net


@dataclass(frozen=True, slots=True)
class PricePlan:
    model: PricingModel = PricingModel.PER_UNIT
    unit_price: Decimal = Decimal(0)  # per unit; for PACKAGE, per package
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal = Decimal(1)
    free_quantity: Decimal = Decimal(0)  # per period
    discount_percent: Decimal = Decimal(0)
    minimum: Decimal | None = None  # net amount per period, charged when the period closes
    maximum: Decimal | None = None  # net amount per period, never exceeded

    def __post_init__(self) -> None:
        problems = plan_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def billable(self, quantity: Decimal) -> Decimal:
        return max(quantity - self.free_quantity, Decimal(0))

    def price(self, quantity: Decimal) -> Price:
        billable = self.billable(quantity)
        bands = self._bands(billable)
        gross = sum((band.amount for band in bands), Decimal(0))
        net = gross * (HUNDRED - self.discount_percent) / HUNDRED
        if self.maximum is not None:
            net = min(net, self.maximum)
        return Price(
            quantity=quantity,
            free_quantity=quantity - billable,
            billable_quantity=billable,
            bands=bands,
            gross=gross,
            net=net,
            unit_price=bands[-1].unit_price if bands else self._first_price(),
        )

    def settled_net(self, quantity: Decimal, currency: str, *, closed: bool) -> Money:
        """The period's net so far, rounded once; a closed period owes at least its minimum."""
        return self.settled(self.price(quantity), currency, closed=closed)

    def settled(self, price: Price, currency: str, *, closed: bool) -> Money:
        """`settled_net` of a quantity already priced (`price`)."""
        net = Money.round(price.net, currency)
        if closed and self.minimum is not None:
            return max(net, Money.round(self.minimum, currency))
        return net

    def _first_price(self) -> Decimal:
        return self.tiers[0].unit_price if self.tiers else self.unit_price

    def _bands(self, billable: Decimal) -> tuple[BandCharge, ...]:
        if billable == 0:
            return ()
        if self.model is PricingModel.PER_UNIT:
            return (BandCharge(None, None, billable, self.unit_price, billable * self.unit_price),)
        if self.model is PricingModel.PACKAGE:
            packages = (billable / self.package_size).to_integral_value(rounding=ROUND_CEILING)
            return (BandCharge(None, None, packages, self.unit_price, packages * self.unit_price),)
        if self.model is PricingModel.VOLUME:
            tier = next(tier for tier in self.tiers if tier.covers(billable))
            return (BandCharge(tier.from_quantity, tier.to_quantity, billable, tier.unit_price,
                               billable * tier.unit_price),)
        return tuple(
            BandCharge(tier.from_quantity, tier.to_quantity, units, tier.unit_price, units * tier.unit_price)
            for tier in self.tiers
            if (units := tier.units_of(billable)) > 0
        )


def plan_problems(plan: PricePlan) -> list[str]:
    """What makes a plan unusable; empty when it prices every quantity."""
    problems = []
    if plan.model in (PricingModel.GRADUATED, PricingModel.VOLUME):
        if not plan.tiers:
            problems.append(f"{plan.model} pricing needs tiers")
        expected_from = Decimal(0)
        for index, tier in enumerate(plan.tiers):
            if tier.from_quantity != expected_from:
                problems.append(f"tier {index + 1} starts at {tier.from_quantity}, expected {expected_from}")
            if tier.unit_price < 0:
                problems.append(f"tier {index + 1} has a negative price")
            last = index == len(plan.tiers) - 1
            if tier.to_quantity is None:
                if not last:
                    problems.append(f"tier {index + 1} is open-ended but not the last")
                break
            if tier.to_quantity <= tier.from_quantity:
                problems.append(f"tier {index + 1} ends at or before it starts")
            if last:
                problems.append("the last tier must be open-ended (no to_quantity)")
            expected_from = tier.to_quantity
    elif plan.tiers:
        problems.append(f"{plan.model} pricing takes no tiers")
    if plan.model is PricingModel.PACKAGE and plan.package_size <= 0:
        problems.append("package_size must be positive")
    if plan.unit_price < 0 or plan.free_quantity < 0:
        problems.append("unit_price and free_quantity cannot be negative")
    if not 0 <= plan.discount_percent <= 100:
        problems.append("discount_percent must be between 0 and 100")
    for name in ("minimum", "maximum"):
        value = getattr(plan, name)
        if value is not None and value < 0:
            problems.append(f"{name} cannot be negative")
    if plan.minimum is not None and plan.maximum is not None and plan.minimum > plan.maximum:
        problems.append("minimum is above maximum")
    return problems


def band_differences(before: Price, after: Price) -> tuple[BandCharge, ...]:
    """What one event added to the period's breakdown, band by band.

    Under volume pricing an event that reaches a new band re-prices the units before it, so the
    old band shows up with negative quantity and amount: exactly what changed.
    """
    def key(band: BandCharge) -> tuple:
        return (band.from_quantity, band.to_quantity, band.unit_price)

    previous = {key(band): band for band in before.bands}
    current = {key(band): band for band in after.bands}
    changes = []
    for band_key in dict.fromkeys([*previous, *current]):
        old, new = previous.get(band_key), current.get(band_key)
        quantity = (new.quantity if new else Decimal(0)) - (old.quantity if old else Decimal(0))
        amount = (new.amount if new else Decimal(0)) - (old.amount if old else Decimal(0))
        if quantity or amount:
            changes.append(BandCharge(band_key[0], band_key[1], quantity, band_key[2], amount))
    return tuple(changes)
