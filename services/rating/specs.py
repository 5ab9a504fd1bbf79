"""Contracts, items and purchases as operators and upstream products describe them (JSON in the
HTTP API, the admin CLI and `load-contracts` files), and their translation into the domain."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

import pycountry
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from services.rating.domain import Contract, ContractItem, ItemKind, Measure
from services.rating.pricing import PricePlan, PricingModel, Tier
from shared.events import (
    Amount,
    BillingCycle,
    ContractStatus,
    Currency,
    CustomerProfile,
    Identifier,
    Quantity,
    TaxCategory,
    Text,
    UnitPrice,
)
from shared.errors import Rejected
from shared.periods import time_zone
from shared.vat import TaxContext

Price = Annotated[UnitPrice, Field(ge=0)]
Percent = Annotated[Quantity, Field(le=100)]
NonNegativeAmount = Annotated[Amount, Field(ge=0)]


class TierSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_quantity: Quantity
    to_quantity: Quantity | None = None  # None: open-ended, only the last tier
    unit_price: Price


class PricingSpec(BaseModel):
    """How a usage item is priced per billing period; see services.rating.pricing."""

    model_config = ConfigDict(extra="forbid")

    model: PricingModel = PricingModel.PER_UNIT
    unit_price: Price = Decimal(0)  # per unit; for "package", per package
    tiers: list[TierSpec] = Field(default_factory=list, max_length=50)
    package_size: Annotated[Quantity, Field(gt=0)] = Decimal(1)
    free_quantity: Quantity = Decimal(0)
    discount_percent: Percent = Decimal(0)
    minimum: NonNegativeAmount | None = None
    maximum: NonNegativeAmount | None = None

    def to_domain(self) -> PricePlan:
        return PricePlan(
            model=self.model,
            unit_price=self.unit_price,
            tiers=tuple(Tier(tier.from_quantity, tier.to_quantity, tier.unit_price) for tier in self.tiers),
            package_size=self.package_size,
            free_quantity=self.free_quantity,
            discount_percent=self.discount_percent,
            minimum=self.minimum,
            maximum=self.maximum,
        )

    @model_validator(mode="after")
    def _prices_every_quantity(self) -> PricingSpec:
        self.to_domain()  # a PricePlan refuses an unusable plan with its problems
        return self


class ContractItemSpec(BaseModel):
    """A usage item (`unit_price` for plain per-unit pricing, or `pricing`) or a recurring fee
    (`list_price` per full period less `deviation_percent`, prorated by day for partial periods)."""

    model_config = ConfigDict(extra="forbid")

    item_code: Identifier
    description: Text
    tax_category: TaxCategory = TaxCategory.STANDARD
    kind: ItemKind = ItemKind.USAGE
    unit_price: Price | None = None
    pricing: PricingSpec | None = None
    measure: Measure = Measure.CONSUMPTION
    initial_reading: Quantity = Decimal(0)
    list_price: Price | None = None
    deviation_percent: Percent = Decimal(0)
    # Set by rating when a change (a renewal) changed a fee's price; given values are kept, not cleared.
    price_adjusted: bool = False

    @model_validator(mode="after")
    def _terms_fit_the_kind(self) -> ContractItemSpec:
        if self.kind is ItemKind.USAGE:
            if (self.unit_price is None) == (self.pricing is None):
                raise ValueError(f"usage item {self.item_code!r} needs either unit_price or pricing")
            if self.list_price is not None:
                raise ValueError(f"usage item {self.item_code!r} has no list_price; that is for recurring fees")
        else:
            if self.list_price is None:
                raise ValueError(f"recurring fee {self.item_code!r} needs a list_price")
            if self.unit_price is not None or self.pricing is not None or self.measure is not Measure.CONSUMPTION:
                raise ValueError(f"recurring fee {self.item_code!r} is priced by list_price and deviation_percent")
        return self

    def to_domain(self) -> ContractItem:
        pricing = self.pricing or PricingSpec(unit_price=self.unit_price or Decimal(0))
        return ContractItem(
            item_code=self.item_code,
            description=self.description,
            tax_category=self.tax_category,
            kind=self.kind,
            plan=pricing.to_domain(),
            measure=self.measure,
            initial_reading=self.initial_reading,
            list_price=self.list_price or Decimal(0),
            deviation_percent=self.deviation_percent,
            price_adjusted=self.price_adjusted,
        )


class ContractSpec(BaseModel):
    """A contract with its customer, as an operator or upstream product describes it."""

    model_config = ConfigDict(extra="forbid")

    contract_id: Identifier
    customer: CustomerProfile
    currency: Currency
    starts_on: date
    ends_on: date | None = None
    status: ContractStatus = ContractStatus.ACTIVE
    billing_cycle: BillingCycle = BillingCycle.CALENDAR
    # 1 monthly, 3 quarterly, 12 yearly
    period_months: Annotated[int, Field(ge=1, le=12)] = 1
    # Anniversary cycles only: where the first regular period starts (default: starts_on).
    alignment_date: date | None = None
    # The IANA time zone its days begin and end in (an event at 23:30 UTC on the 31st is used on
    # the 1st in Berlin); None: the seller's, BILLING_SELLER_TIME_ZONE, fixed when it is saved.
    time_zone: Annotated[str, Field(max_length=64)] | None = None
    items: list[ContractItemSpec] = Field(min_length=1, max_length=1000)

    @field_validator("time_zone")
    @classmethod
    def _time_zone_is_known(cls, name: str | None) -> str | None:
        if name is not None:
            time_zone(name)
        return name

    @model_validator(mode="after")
    def _dates_make_sense(self) -> ContractSpec:
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        if self.alignment_date is not None:
            if self.billing_cycle is not BillingCycle.ANNIVERSARY:
                raise ValueError("alignment_date is for anniversary billing cycles")
            if self.alignment_date < self.starts_on:
                raise ValueError("alignment_date is before starts_on")
        codes = [item.item_code for item in self.items]
        if len(set(codes)) != len(codes):
            raise ValueError("item codes must be unique within a contract")
        return self

    def check_invoiceable(self, seller_country: str) -> None:
        """Refuse (Rejected) a contract invoicing could not tax: for this customer, every item's tax
        category must have a VAT rate under the rules invoicing applies (shared.vat), e.g. not a
        `reduced` item for a consumer in Denmark, which has no reduced rate, nor a customer in a country
        ISO 3166 does not know. Refused here, before
        any of its usage is rated, settled and posted as a receivable no invoice could be issued for."""
        # Each of these would fail every e-invoice of the customer (EN 16931 BR-07, BR-CL-14, BR-CO-09).
        if not self.customer.name.strip():
            raise Rejected("the customer has no name, which every invoice must give (EN 16931 BR-07)")
        if pycountry.countries.get(alpha_2=self.customer.country) is None:
            raise Rejected(f"{self.customer.country} is not an ISO 3166-1 country code (the United Kingdom is GB)")
        vat_prefix = (self.customer.vat_id or "")[:2]
        if vat_prefix and vat_prefix != "EL" and pycountry.countries.get(alpha_2=vat_prefix) is None:
            raise Rejected(f"VAT id {self.customer.vat_id} does not begin with an ISO 3166-1 country code "
                           "(or EL, Greece's)")
        context = TaxContext(seller_country, self.customer.country, self.customer.vat_id)
        for category in sorted({item.tax_category for item in self.items}):
            context.vat_for(category)

    def to_domain(self, closed_through: date | None = None) -> Contract:
        return Contract(
            contract_id=self.contract_id,
            customer_id=self.customer.customer_id,
            currency=self.currency,
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            status=self.status,
            items={item.item_code: item.to_domain() for item in self.items},
            billing_cycle=self.billing_cycle,
            period_months=self.period_months,
            alignment_date=self.alignment_date,
            closed_through=closed_through,
            time_zone=self.time_zone or "UTC",
        )


CONTRACT_LIST = TypeAdapter(list[ContractSpec])


class PurchaseSpec(BaseModel):
    """A one-time purchase added to a contract; `purchase_id` makes a resend the same purchase."""

    model_config = ConfigDict(extra="forbid")

    item_code: Identifier
    description: Text
    quantity: Annotated[Quantity, Field(gt=0)]
    unit_price: Price
    purchased_on: date
    purchase_id: Identifier | None = None
    # How the purchase is taxed: it need not be one of the contract's items, so it says so itself.
    tax_category: TaxCategory = TaxCategory.STANDARD


class CancellationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ends_on: date
