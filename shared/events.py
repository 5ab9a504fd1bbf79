"""Versioned event schemas: the single source of truth for what travels on each topic.

Rules every schema follows:
- `schema_version` is a Literal: a consumer refuses versions it does not know instead of guessing.
- Amounts, prices and quantities are Decimal and cross the wire as JSON strings; JSON floats are
  refused because they are inexact.
- Unknown fields are refused (`extra="forbid"`): a new field means a new schema version.
- `event_id` identifies the event for deduplication; ids of derived events are uuid5s of their
  source (`derive_id`), so re-processing a message emits the very same ids again.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from hashlib import sha1
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared import topics
from shared.money import CURRENCY_EXPONENTS, MoneyError, exponent, to_decimal

# Messages larger than this are dead-lettered unread; no legitimate event comes near it.
MAX_MESSAGE_BYTES = 256 * 1024

_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4d8e-9a57-2b8f0c6a4e11")
_NAMESPACE_BYTES = _NAMESPACE.bytes
# RFC 9562 version 5: the SHA-1's first 16 bytes with the version nibble set to 5 and the variant
# bits to 10, as an integer (the same bits as uuid.uuid5).
_VERSION_5_KEPT = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_5_SET = (0x5000 << 64) | (0x8000 << 48)


def derive_id(source: uuid.UUID | str, kind: str) -> uuid.UUID:
    """The id of whatever `source` gives rise to as `kind`; the same inputs always give the same id.

    It is `uuid.uuid5(_NAMESPACE, f"{source}:{kind}")`, built from the integer: uuid5 goes through
    UUID(bytes=..., version=5), which takes twice as long, and every stage derives several ids per
    item or document (6.5 against 3.3 µs a call)."""
    digest = sha1(_NAMESPACE_BYTES + f"{source}:{kind}".encode()).digest()
    return uuid.UUID(int=int.from_bytes(digest[:16]) & _VERSION_5_KEPT | _VERSION_5_SET)


def _exact_decimal(value: object) -> Decimal:
    try:
        return to_decimal(value)  # type: ignore[arg-type]
    except MoneyError as error:
        raise ValueError(str(error)) from None


def _known_currency(value: object) -> str:
    if not isinstance(value, str) or value not in CURRENCY_EXPONENTS:
        raise ValueError(f"unsupported currency {value!r}")
    return value


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
Text = Annotated[str, StringConstraints(max_length=500)]
Currency = Annotated[str, BeforeValidator(_known_currency)]


def exact_decimal_field(*, max_digits: int, decimal_places: int, **bounds: Decimal | int) -> tuple[object, ...]:
    """Metadata for an exact Decimal field: str/int/Decimal only (never float), finite, bounded.

    The constraints go before the validator so that pydantic-core checks them natively (after a
    validator they run as Python functions, several times slower on every message); they are
    repeated for the JSON schema, where the validator would otherwise hide them.
    """
    documented = {"max_digits": max_digits, "decimal_places": decimal_places, **bounds}
    return (Field(max_digits=max_digits, decimal_places=decimal_places, **bounds, json_schema_extra=documented),
            BeforeValidator(_exact_decimal))


# 28 significant digits keeps every value inside PostgreSQL's numeric columns with room to spare.
Amount = Annotated[Decimal, *exact_decimal_field(max_digits=28, decimal_places=4)]
UnitPrice = Annotated[Decimal, *exact_decimal_field(max_digits=28, decimal_places=10)]
Quantity = Annotated[Decimal, *exact_decimal_field(max_digits=28, decimal_places=10, ge=0)]


class Message(BaseModel):
    """What every event has: an id to deduplicate it by, when it happened, and a partition key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    occurred_at: AwareDatetime

    @property
    def key(self) -> str:
        raise NotImplementedError


class Event(Message):
    """An event about one contract: most topics' events."""

    contract_id: Identifier

    @property
    def key(self) -> str:
        """The partition key: all of one contract's events stay in order on one partition."""
        return self.contract_id


class CustomerEvent(Message):
    """An event about a customer as a whole (all of its contracts)."""

    customer_id: Identifier

    @property
    def key(self) -> str:
        """The partition key: all of one customer's events stay in order on one partition."""
        return self.customer_id


def _require_from_version(event: BaseModel, version: int, *fields: str) -> None:
    """Fields a schema version added: required from `version` on, absent in the messages before it
    (which stay readable while they can still be in a topic; consumers fall back for them)."""
    for name in fields:
        present = getattr(event, name) is not None
        if event.schema_version >= version and not present:  # type: ignore[attr-defined]
            raise ValueError(f"{name} is required from schema_version {version} on")
        if event.schema_version < version and present:  # type: ignore[attr-defined]
            raise ValueError(f"{name} is not part of schema_version {event.schema_version}")  # type: ignore[attr-defined]


def _check_minor_units(currency: str, **amounts: Decimal) -> None:
    places = exponent(currency)
    for name, value in amounts.items():
        if value != value.quantize(Decimal(1).scaleb(-places)):
            raise ValueError(f"{name} {value} has more decimals than {currency} allows ({places})")


class TaxCategory(StrEnum):
    STANDARD = "standard"
    REDUCED = "reduced"
    ZERO = "zero"
    EXEMPT = "exempt"


class ContractStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class BillingCycle(StrEnum):
    """How a contract's billing periods fall: on the calendar, or from an alignment date."""

    CALENDAR = "calendar"  # months (quarters, years) from the 1st of January
    ANNIVERSARY = "anniversary"  # from the alignment date's day of the month (default: the start date)


CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
VatId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[A-Za-z0-9+*.]{2,13}$")]


class EInvoiceFormat(StrEnum):
    """What a customer's documents are issued as, besides the data every document has (EN 16931)."""

    # The ZUGFeRD / Factur-X PDF: PDF/A-3 with the CII XML (profile EN 16931) embedded. The default.
    FACTUR_X = "factur-x"
    # The same, and an XRechnung 3.0 CII XML, which German public buyers require.
    XRECHNUNG = "xrechnung"


class ElectronicAddress(BaseModel):
    """Where a party receives e-invoices (EN 16931 BT-34 / BT-49): an address in an EAS scheme, e.g.
    `EM` (e-mail), `0204` (German Leitweg-ID), `9930` (German VAT number), `0088` (GLN)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2,4}$")]
    address: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class EInvoicing(BaseModel):
    """A customer's e-invoicing: the format, and what XRechnung requires of the buyer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: EInvoiceFormat = EInvoiceFormat.FACTUR_X
    # BT-10: the reference the buyer wants quoted (for public buyers in Germany, the Leitweg-ID).
    buyer_reference: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    electronic_address: ElectronicAddress | None = None


class CustomerProfile(BaseModel):
    """Who is billed: what documents and tax rules need to know about a customer.

    `postal_code`, `city` and `e_invoicing` are part of contracts.changed v2 and receivables.posted
    v4 on. An XRechnung customer is refused without what XRechnung requires of the buyer (BT-10,
    BT-49, BT-52, BT-53), here where the customer enters, not when its first invoice is issued.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: Identifier
    name: Text
    country: CountryCode
    vat_id: VatId | None = None
    email: Text | None = None
    # Street lines, without the postal code and city when those are given.
    address_lines: list[Text] = Field(default_factory=list, max_length=6)
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    e_invoicing: EInvoicing | None = None

    @model_validator(mode="after")
    def _xrechnung_has_what_it_requires(self) -> CustomerProfile:
        if self.e_invoicing is not None and self.e_invoicing.format is EInvoiceFormat.XRECHNUNG:
            missing = [name for name, value in (
                ("e_invoicing.buyer_reference (BT-10)", self.e_invoicing.buyer_reference),
                ("e_invoicing.electronic_address (BT-49)", self.e_invoicing.electronic_address),
                ("postal_code (BT-53)", self.postal_code), ("city (BT-52)", self.city)) if value is None]
            if missing:
                raise ValueError(f"an XRechnung customer needs {', '.join(missing)}")
        return self

    @property
    def has_v2_fields(self) -> bool:
        """Whether it uses what contracts.changed v2 (receivables.posted v4) added."""
        return self.postal_code is not None or self.city is not None or self.e_invoicing is not None


class ContractItemTerms(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    item_code: Identifier
    description: Text
    tax_category: TaxCategory = TaxCategory.STANDARD


class ContractChanged(Event):
    """contracts.changed: the whole contract as rating now holds it, after every change.

    Consumers keep replicas; `revision` grows with each change, so an older snapshot that
    arrives late is recognisable and ignored.
    """

    schema_version: Literal[1, 2] = 2
    revision: int = Field(ge=1)
    customer: CustomerProfile
    currency: Currency
    starts_on: date
    ends_on: date | None
    status: ContractStatus
    items: list[ContractItemTerms] = Field(min_length=1, max_length=1000)
    billing_cycle: BillingCycle = BillingCycle.CALENDAR
    period_months: int = Field(default=1, ge=1, le=12)
    # Anniversary cycles: the first regular period starts here; the one before it runs from
    # `starts_on`, so it is shorter or longer than a regular period.
    alignment_date: date | None = None

    @model_validator(mode="after")
    def _customer_fits_the_version(self) -> ContractChanged:
        if self.schema_version < 2 and self.customer.has_v2_fields:
            raise ValueError("postal_code, city and e_invoicing of the customer are part of schema_version 2 on")
        return self


class UsageRecorded(Event):
    """usage.recorded: an upstream product reports consumption of a contract item."""

    schema_version: Literal[1] = 1
    item_code: Identifier
    quantity: Quantity
    # For metered items: the meter's current reading (then `quantity` is 0; rating derives the
    # consumption from the previous reading).
    meter_reading: Quantity | None = None


class ChargeKind(StrEnum):
    """What a billable item charges for; settlement credits prepaid recurring fees on termination."""

    USAGE = "usage"  # consumption, charged after it happened
    RECURRING_FEE = "recurring_fee"  # a fee for its whole period, charged in advance
    ONE_TIME = "one_time"  # a purchase


class PriceBand(BaseModel):
    """One line of a rated item's price breakdown: what the item added to a band of its period.

    Under volume pricing an item that reaches a new band re-prices the period's earlier units, so
    a band may show a negative quantity and amount. `amount` is rounded per band; the item's net is
    rounded once over all bands, so the bands may differ from it by the rounding.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_quantity: Quantity | None = None
    to_quantity: Quantity | None = None
    quantity: Annotated[Decimal, *exact_decimal_field(max_digits=28, decimal_places=10)]
    unit_price: UnitPrice
    amount: Amount


class RatedItem(Event):
    """items.rated: a billable item, priced, with its breakdown.

    Version 2 adds `tax_category`, so that what the item is taxed with travels with it (a one-time
    purchase need not be a contract item). Version 1 messages are read with `tax_category` None.
    """

    schema_version: Literal[1, 2] = 2
    tax_category: TaxCategory | None = None
    billable_item_id: uuid.UUID
    customer_id: Identifier
    item_code: Identifier
    description: Text
    currency: Currency
    quantity: Quantity
    free_quantity: Quantity
    billable_quantity: Quantity
    unit_price: UnitPrice
    net: Amount
    period_start: date
    period_end: date
    source_event_ids: list[uuid.UUID] = Field(min_length=1)
    charge_kind: ChargeKind = ChargeKind.USAGE
    # What came off the list price (percentage discount, maximum): list amount - discount = net,
    # except where a minimum charge raised the net.
    discount: Amount = Decimal(0)
    price_breakdown: list[PriceBand] = Field(default_factory=list, max_length=100)
    previous_reading: Quantity | None = None
    current_reading: Quantity | None = None
    # Late usage: the closed period it was used in; `period_*` is the open period billing it.
    late_for_period_start: date | None = None
    late_for_period_end: date | None = None

    @model_validator(mode="after")
    def _amounts_fit_currency(self) -> RatedItem:
        _require_from_version(self, 2, "tax_category")
        _check_minor_units(self.currency, net=self.net, discount=self.discount)
        for band in self.price_breakdown:
            _check_minor_units(self.currency, band_amount=band.amount)
        return self


class PeriodClosed(Event):
    """periods.closed: rating closed one of the contract's billing periods. Everything it bills into
    the period is rated (its grace days passed, its minimums were topped up), and nothing more will
    be: usage for it arriving later is billed in the next open period. Settlement bills the period
    as soon as it holds all `item_count` items rated into it, whose nets sum to `net_total`.
    """

    schema_version: Literal[1] = 1
    customer_id: Identifier
    currency: Currency
    period_start: date
    period_end: date
    # The instant the period ended in the contract's business time zone: the cutoff of its run.
    ends_at: AwareDatetime
    time_zone: Annotated[str, Field(min_length=1, max_length=64)]
    item_count: int = Field(ge=0)
    net_total: Amount

    @model_validator(mode="after")
    def _period_is_a_period(self) -> PeriodClosed:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        _check_minor_units(self.currency, net_total=self.net_total)
        return self


class BillingRunRequested(Event):
    """billing-runs.requested: settle everything of a contract that was used before `cutoff`."""

    schema_version: Literal[1] = 1
    cutoff: AwareDatetime
    requested_by: Text = "operator"


class SettlementItem(BaseModel):
    """A line of a settlement run. Versions 1 and 2: one billable item (`billable_item_id`). Version
    3: the run's items of one contract item, period, unit price and tax category summed (`line_id`,
    and `item_count` of them), so a run's size follows its contract, not the number of usage events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    billable_item_id: uuid.UUID | None = None
    line_id: uuid.UUID | None = None
    item_count: int | None = Field(default=None, ge=1)
    item_code: Identifier
    description: Text
    quantity: Quantity
    unit_price: UnitPrice
    net: Amount
    period_start: date
    period_end: date
    # What discounts took off the list amount (per unit price: quantity x unit_price - discount = net
    # before rounding); negative where a later item of the period gave some of it back.
    discount: Amount = Decimal(0)
    # Version 2 on: the items' tax category as rated; None for items rated under items.rated v1.
    tax_category: TaxCategory | None = None

    @property
    def source_id(self) -> uuid.UUID:
        """What the line stands for: its billing line (v2) or billable item (v1)."""
        return self.line_id or self.billable_item_id  # type: ignore[return-value]


class CreditReason(StrEnum):
    CREDIT = "credit"  # granted on a billable item
    ORDER_CANCELLED = "order_cancelled"  # an order cancelled after it was billed
    TERMINATION = "termination"  # prepaid recurring fees beyond a cancellation date
    # A run's items came to less than nothing (a cheaper volume band reached after part of the
    # period was billed): what they came to below zero is credited.
    ADJUSTMENT = "adjustment"


class CreditItem(BaseModel):
    """A credit memo line: `net` is the (positive) amount credited to the customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    credit_id: uuid.UUID
    reason: CreditReason
    billable_item_id: uuid.UUID | None = None
    # The run whose invoice this credit corrects, when there is one.
    credited_settlement_run_id: uuid.UUID | None = None
    item_code: Identifier
    description: Text
    quantity: Quantity
    unit_price: UnitPrice
    net: Annotated[Amount, Field(ge=0)]
    period_start: date
    period_end: date
    # Version 2 on: the credited item's tax category; None for items rated under items.rated v1.
    tax_category: TaxCategory | None = None


class ReceivablesPosted(Event):
    """receivables.posted: a settlement run with everything invoicing needs to build documents.

    `items` became a receivable of `total`, `credits` a credit memo of `credit_total`; a run
    has at least one of them. Version 2 makes the run self-contained: it carries the customer's
    tax profile as of the run and each line's tax category, so invoicing needs no replica of
    another topic for it. `customer` is None in version 1, and in version 2 only when settlement
    had no snapshot of the contract yet; a line's category is None only for an item rated under
    items.rated v1. Invoicing falls back to its contract replica for what is None. Version 3: the
    items are billing lines (SettlementItem), and a run whose items came to less than nothing
    credits them as `adjustment` credits. Version 4: the customer may carry its postal code, city and
    e-invoicing (contracts.changed v2).
    """

    schema_version: Literal[1, 2, 3, 4] = 4
    settlement_run_id: uuid.UUID
    customer_id: Identifier
    customer: CustomerProfile | None = None
    currency: Currency
    cutoff: AwareDatetime
    items: list[SettlementItem] = Field(default_factory=list, max_length=10_000)
    total: Amount
    credits: list[CreditItem] = Field(default_factory=list, max_length=10_000)
    credit_total: Amount = Decimal(0)
    ledger_balance: Amount

    @model_validator(mode="after")
    def _totals_are_the_sums_of_their_lines(self) -> ReceivablesPosted:
        _check_minor_units(
            self.currency, total=self.total, credit_total=self.credit_total, ledger_balance=self.ledger_balance
        )
        if self.schema_version < 2 and (self.customer is not None or any(
                line.tax_category is not None for line in [*self.items, *self.credits])):
            raise ValueError("customer and tax categories are not part of schema_version 1")
        if self.schema_version < 4 and self.customer is not None and self.customer.has_v2_fields:
            raise ValueError("postal_code, city and e_invoicing of the customer are part of schema_version 4 on")
        per_item = self.schema_version < 3
        for item in self.items:
            if (item.billable_item_id is not None) != per_item or \
                    (item.line_id is not None and item.item_count is not None) == per_item:
                raise ValueError("items name a billable_item_id in schema_versions 1 and 2, and a line_id with its "
                                 "item_count from schema_version 3 on")
        if per_item and any(credit.reason is CreditReason.ADJUSTMENT for credit in self.credits):
            raise ValueError("adjustment credits are part of schema_version 3 on")
        if not self.items and not self.credits:
            raise ValueError("a settlement run has items, credits or both")
        if self.total != sum((item.net for item in self.items), Decimal(0)):
            raise ValueError("total is not the sum of the items' net amounts")
        if self.credit_total != sum((credit.net for credit in self.credits), Decimal(0)):
            raise ValueError("credit_total is not the sum of the credits' net amounts")
        return self


class DocumentType(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class TaxLine(BaseModel):
    """One line of a document's VAT breakdown: category (UNCL5305 code: S, Z, E, AE, G) and rate in percent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,2}$")]
    rate: Annotated[Decimal, *exact_decimal_field(max_digits=7, decimal_places=4, ge=0, le=100)]
    base: Amount
    tax: Amount


class DocumentCreated(Event):
    """documents.created: a finalized document with its number and totals.

    Amounts are positive for both types: a credit note's totals are what it credits.
    """

    schema_version: Literal[1] = 1
    document_id: uuid.UUID
    document_type: DocumentType
    number: Identifier
    settlement_run_id: uuid.UUID
    customer_id: Identifier
    currency: Currency
    issue_date: date
    due_date: date
    net_total: Amount
    tax_total: Amount
    gross_total: Amount
    # The invoice a credit note corrects, when all of its lines correct the same one.
    corrects_number: Identifier | None = None
    tax_lines: list[TaxLine] = Field(default_factory=list, max_length=100)
    # The PDF as invoicing stores it: its path under invoicing (`documents/<number>.pdf`) and sha256.
    pdf_path: Text | None = None
    pdf_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _totals_add_up(self) -> DocumentCreated:
        _check_minor_units(
            self.currency, net_total=self.net_total, tax_total=self.tax_total, gross_total=self.gross_total
        )
        if self.net_total + self.tax_total != self.gross_total:
            raise ValueError("gross_total is not net_total + tax_total")
        for line in self.tax_lines:
            _check_minor_units(self.currency, base=line.base, tax=line.tax)
        if self.tax_lines and (
            sum((line.base for line in self.tax_lines), Decimal(0)) != self.net_total
            or sum((line.tax for line in self.tax_lines), Decimal(0)) != self.tax_total
        ):
            raise ValueError("the tax lines do not add up to net_total and tax_total")
        return self


class PaymentKind(StrEnum):
    PAYMENT = "payment"
    CHARGEBACK = "chargeback"
    REFUND = "refund"
    # A dispute the merchant won: the provider gives back what a chargeback took (schema_version 2 on).
    CHARGEBACK_REVERSAL = "chargeback_reversal"


class PaymentStatus(StrEnum):
    """Where a provider transaction stands; only a succeeded one has moved money."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PaymentReceived(Event):
    """payments.received: a provider transaction, normalized from a payment provider's webhook.

    Money moved only when `status` is succeeded; pending and failed payments are reported so
    that their transaction is known, and must not be booked or assigned.

    Version 2 adds the kind chargeback_reversal (a dispute won: `reverses_payment_id` names the
    chargeback it undoes); version 1 messages stay readable.
    """

    schema_version: Literal[1, 2] = 2
    payment_id: Identifier
    kind: PaymentKind
    provider: Identifier
    customer_id: Identifier
    currency: Currency
    amount: Annotated[Amount, Field(gt=0)]
    invoice_number: Identifier | None = None
    status: PaymentStatus = PaymentStatus.SUCCEEDED
    # The payment a chargeback or refund takes back (a chargeback without it takes back `payment_id`);
    # the chargeback a chargeback reversal undoes.
    reverses_payment_id: Identifier | None = None
    # What the provider charged for a chargeback, passed on to the customer.
    fee: Annotated[Amount, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> PaymentReceived:
        _check_minor_units(self.currency, amount=self.amount, fee=self.fee or Decimal(0))
        if self.kind is PaymentKind.CHARGEBACK_REVERSAL:
            if self.schema_version < 2:
                raise ValueError("a chargeback_reversal is part of schema_version 2 on")
            if self.reverses_payment_id is None or self.fee is not None:
                raise ValueError("a chargeback_reversal names the chargeback it undoes in reverses_payment_id "
                                 "and carries no fee")
        return self


class DeadLetter(BaseModel):
    """dead-letters: a message a consumer could not apply, with where it came from and why.

    Version 2 keeps the payload replayable byte for byte: as text when it is UTF-8, as base64
    otherwise (`payload_encoding`); version 1 kept text with undecodable bytes escaped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1, 2] = 2
    event_id: uuid.UUID
    occurred_at: AwareDatetime
    consumer: str
    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error_type: str
    payload: str
    payload_truncated: bool
    payload_encoding: Literal["utf-8", "base64"] | None = None

    @model_validator(mode="after")
    def _encoding_from_version_2(self) -> DeadLetter:
        _require_from_version(self, 2, "payload_encoding")
        return self

    def original_payload(self) -> bytes:
        """The bytes the consumer received (the first part of them, if `payload_truncated`)."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode()


class PaymentMethod(StrEnum):
    SEPA_DIRECT_DEBIT = "sepa_direct_debit"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"


class DefaultPaymentAccount(BaseModel):
    """How a customer pays by default, as invoices need it: for a SEPA direct debit with an active
    mandate, the mandate reference and the IBAN collected from (EN 16931 BT-89, BT-91)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: uuid.UUID
    method: PaymentMethod
    mandate_reference: Annotated[str, StringConstraints(min_length=1, max_length=35)] | None = None
    iban: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$")] | None = None
    mandate_active: bool = False

    @model_validator(mode="after")
    def _a_direct_debit_names_its_mandate(self) -> DefaultPaymentAccount:
        if self.method is PaymentMethod.SEPA_DIRECT_DEBIT and (self.mandate_reference is None or self.iban is None):
            raise ValueError("a SEPA direct debit names its mandate_reference and iban")
        return self


class PaymentAccountsChanged(CustomerEvent):
    """payment-accounts.changed: a customer's default payment account after a change of its accounts
    (one added, another made the default, a mandate's status reported by its provider); None: it
    has none. Keyed by customer id. Invoicing keeps the newest per customer for the payment
    means of its invoices."""

    schema_version: Literal[1] = 1
    default_account: DefaultPaymentAccount | None = None


TOPIC_SCHEMAS: dict[str, type[BaseModel]] = {
    topics.CONTRACTS_CHANGED: ContractChanged,
    topics.USAGE_RECORDED: UsageRecorded,
    topics.ITEMS_RATED: RatedItem,
    topics.PERIODS_CLOSED: PeriodClosed,
    topics.BILLING_RUNS_REQUESTED: BillingRunRequested,
    topics.RECEIVABLES_POSTED: ReceivablesPosted,
    topics.DOCUMENTS_CREATED: DocumentCreated,
    topics.PAYMENTS_RECEIVED: PaymentReceived,
    topics.PAYMENT_ACCOUNTS_CHANGED: PaymentAccountsChanged,
    topics.DEAD_LETTERS: DeadLetter,
}


class InvalidMessage(ValueError):
    """A message that can never be applied, however often it is retried."""


E = TypeVar("E", bound=BaseModel)


def parse_event(schema: type[E], payload: bytes) -> E:
    """Decode and validate one message, or raise InvalidMessage with a reason a person can act on."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message of {len(payload)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        return schema.model_validate_json(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'message'}: {problem['msg']}"
            for problem in error.errors(include_url=False)[:10]
        )
        raise InvalidMessage(f"invalid {schema.__name__}: {problems}") from None


def encode_event(event: BaseModel) -> bytes:
    # model_dump_json's bytes, without its decoding to str (and the encoding back) of every message.
    return event.__pydantic_serializer__.to_json(event)
