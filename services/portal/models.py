"""What the portal's API answers with. Amounts and quantities are decimal strings, never floats;
amounts are written at their currency's minor unit ("407.25"), prices and quantities as exact as stored."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, Field, PlainSerializer

T = TypeVar("T")

DecimalString = Annotated[Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str)]


# The filter vocabularies: the values the owning services store (their documented statuses and
# types), so a typo in a filter is a 422 rather than an empty table.
class ItemStatus(StrEnum):
    UNBILLED = "unbilled"
    BILLED = "billed"


class ChargeType(StrEnum):
    USAGE = "usage"
    RECURRING_FEE = "recurring_fee"
    ONE_TIME = "one_time"


class DocumentStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"


class RunStatus(StrEnum):
    PENDING = "pending"
    OPEN = "open"
    COMPLETE = "complete"


class OpenItemStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"


class OpenItemType(StrEnum):
    INVOICE = "invoice"
    CHARGEBACK_FEE = "chargeback_fee"
    DEBIT = "debit"


class PaymentMethod(StrEnum):
    SEPA_DIRECT_DEBIT = "sepa_direct_debit"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"


class EntryType(StrEnum):
    RECEIVABLE = "Receivable"
    CREDIT_MEMO = "CreditMemo"
    TAX = "Tax"
    TAX_CREDIT = "TaxCredit"
    PAYMENT = "Payment"
    CHARGEBACK = "Chargeback"
    CHARGEBACK_FEE = "ChargebackFee"
    REFUND = "Refund"
    CHARGEBACK_REVERSAL = "ChargebackReversal"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Rows matching the filters, over all pages.")
    limit: int
    offset: int
    sort: str


class CustomerSummary(BaseModel):
    customer_id: str
    name: str
    country: str
    contracts: int


class Customer(BaseModel):
    customer_id: str
    name: str
    country: str
    vat_id: str | None
    email: str | None
    address_lines: list[str]
    created_at: datetime
    updated_at: datetime = Field(description="When the customer's profile last changed.")


class BillableItem(BaseModel):
    billable_item_id: uuid.UUID
    contract_id: str
    item_code: str
    description: str
    type: str = Field(description="What it charges for: usage, recurring_fee or one_time (a purchase).")
    quantity: DecimalString
    unit_price: DecimalString
    net: DecimalString
    currency: str
    period_start: date
    period_end: date
    occurred_at: datetime
    status: ItemStatus
    settlement_run_id: uuid.UUID | None
    document_numbers: list[str] = Field(description="The documents of the run that billed it.")


class Document(BaseModel):
    document_id: uuid.UUID
    number: str
    type: str
    status: str
    contract_id: str
    issue_date: date
    due_date: date
    service_period_start: date
    service_period_end: date
    net_total: DecimalString
    tax_total: DecimalString
    gross_total: DecimalString
    currency: str
    corrects_number: str | None
    pdf_url: str
    # The EN 16931 XML (Factur-X CII, or XRechnung); none for a document issued without one.
    xml_url: str | None = None


class ContractItem(BaseModel):
    item_code: str
    description: str
    unit_price: DecimalString
    tax_category: str


class Contract(BaseModel):
    contract_id: str
    currency: str
    starts_on: date
    expires_on: date | None = Field(description="The contract's last day, if it ends.")
    status: str
    revision: int
    items: list[ContractItem]


class PriceBand(BaseModel):
    from_quantity: DecimalString
    to_quantity: DecimalString | None = Field(description="Up to and including; none for the open-ended last band.")
    unit_price: DecimalString


class PricePlan(BaseModel):
    model: str = Field(description="per_unit, graduated (each band's units at its price), volume (all units at the "
                                   "price of the band reached) or package (per started package).")
    bands: list[PriceBand] = Field(description="Of billable quantity, after the free quantity.")
    package_size: DecimalString
    free_quantity: DecimalString = Field(description="Per billing period.")
    discount_percent: DecimalString
    minimum: DecimalString | None = Field(description="Net per period, charged when the period closes.")
    maximum: DecimalString | None = Field(description="Net per period, never exceeded.")


class ContractItemDetails(ContractItem):
    kind: str = Field(description="usage or recurring_fee.")
    measure: str = Field(description="consumption, or meter_reading (consumption from the readings).")
    price_plan: PricePlan | None = Field(description="A usage item's; none for a recurring fee.")
    list_price: DecimalString | None = Field(description="A recurring fee's price per full period.")
    deviation_percent: DecimalString | None = Field(description="What a recurring fee's price deviates from its list price.")


class ContractDetails(BaseModel):
    contract_id: str
    customer_id: str
    customer_name: str
    currency: str
    starts_on: date
    expires_on: date | None = Field(description="The contract's last day, if it ends.")
    status: str
    billing_cycle: str = Field(description="calendar (from 1 January) or anniversary (from the alignment date).")
    period_months: int = Field(description="1 monthly, 3 quarterly, 12 yearly.")
    cycle: str = Field(description="The cycle in words, e.g. 'monthly, calendar'.")
    time_zone: str
    revision: int
    items: list[ContractItemDetails]


class Timing(StrEnum):
    PAST = "past"
    CURRENT = "current"
    FUTURE = "future"


class BillingStatus(StrEnum):
    NOTHING_RATED = "nothing rated"  # no usage, fee or purchase in the period (yet)
    UNBILLED = "unbilled"
    PARTLY_BILLED = "partly billed"
    BILLED = "billed"


class DocumentRef(BaseModel):
    number: str
    type: str
    issue_date: date


class ScheduleRow(BaseModel):
    """One item in one billing period: what was rated into it so far, and whether it was invoiced."""

    item_code: str
    description: str
    period_start: date
    period_end: date
    timing: Timing
    previous_reading: DecimalString | None = Field(description="Metered items: the reading the period starts from.")
    current_reading: DecimalString | None = Field(description="Metered items: the period's last reading.")
    consumed: DecimalString
    free: DecimalString
    billable: DecimalString
    unit_price: DecimalString = Field(description="The price of the band the period's quantity reached.")
    discount: DecimalString
    net: DecimalString
    credit: DecimalString = Field(description="Credited on the period's items (goodwill, cancelled orders, adjustments).")
    termination_credit: DecimalString = Field(description="Prepaid fees credited beyond a cancellation date.")
    currency: str
    estimated: bool = Field(description="An estimated consumption was applied: the estimated figures are a forecast, "
                                        "never billed.")
    estimate_edited: bool = Field(description="This period's estimate was edited on its own (estimate_period).")
    estimated_quantity: DecimalString | None
    estimated_net: DecimalString | None = Field(description="What rating's price plan makes of the estimated quantity.")
    billed: bool = Field(description="Every billable item of the period is settled (and there is at least one).")
    status: BillingStatus
    invoices: list[DocumentRef] = Field(description="The invoices that billed the period's items.")


class PriceDetailBand(BaseModel):
    """One band of a period's price detail: the quantity charged at the band's unit price."""

    from_quantity: DecimalString | None = Field(description="None for a per-unit or package plan's one band.")
    to_quantity: DecimalString | None = Field(description="None for an open-ended band.")
    unit_price: DecimalString
    quantity: DecimalString = Field(description="Billable units in the band (packages for a package plan).")
    net: DecimalString = Field(description="quantity x unit price, rounded to the currency, before the item's "
                                           "discount and maximum (which the row's discount shows).")


class UsageEvent(BaseModel):
    """One usage event behind a schedule row, and the billable item it is billed in."""

    event_id: uuid.UUID
    occurred_at: datetime
    quantity: DecimalString = Field(description="What it consumed: its quantity, or a meter reading's difference "
                                                "to the one before.")
    meter_reading: DecimalString | None
    billable_item_id: uuid.UUID


class ScheduleLine(BaseModel):
    """A billing schedule row's billing detail: the row, its price detail per band and a page of the
    usage events behind it."""

    row: ScheduleRow
    price_detail: list[PriceDetailBand]
    usage: list[UsageEvent]
    limit: int
    next: str | None = Field(description="Pass as `after` for the next page of usage events; None on the last one.")


class OrderItem(BaseModel):
    billable_item_id: uuid.UUID
    item_code: str
    description: str
    quantity: DecimalString
    unit_price: DecimalString
    net: DecimalString
    billed: bool
    cancelled: bool = Field(description="Credited in full by an order cancellation.")


class OrderStatus(StrEnum):
    UNBILLED = "unbilled"
    PARTLY_BILLED = "partly billed"
    BILLED = "billed"
    CANCELLED = "cancelled"


class Order(BaseModel):
    order_id: str = Field(description="<contract>@<day>: a contract's one-time purchases of one day are one order.")
    contract_id: str
    ordered_on: date
    status: OrderStatus
    net: DecimalString
    currency: str
    items: list[OrderItem]
    documents: list[DocumentRef] = Field(description="Its invoices and, once cancelled, its credit notes.")


class DocumentLine(BaseModel):
    line_no: int
    item_code: str
    description: str
    quantity: DecimalString
    unit_price: DecimalString
    discount: DecimalString
    net: DecimalString
    period_start: date
    period_end: date
    vat_category: str
    vat_rate: DecimalString
    credit_reason: str | None


class TaxLine(BaseModel):
    vat_category: str
    vat_rate: DecimalString
    base: DecimalString
    tax: DecimalString


class SettlementRun(BaseModel):
    settlement_run_id: uuid.UUID
    month: str = Field(description="The month of its cutoff, YYYY-MM: runs are grouped by it.")
    contract_id: str
    status: str
    cutoff: datetime
    period_start: date | None
    period_end: date | None
    total: DecimalString
    credit_total: DecimalString
    currency: str
    requested_by: str
    settled_at: datetime | None
    document_numbers: list[str]


class Assignment(BaseModel):
    payment_event_id: uuid.UUID = Field(description="The payment (or credit note) as payments records it.")
    payment_id: str
    kind: str
    provider: str
    status: str
    amount: DecimalString = Field(description="Assigned to the item; negative when a chargeback or refund took it back.")
    assigned_at: datetime


class OpenItem(BaseModel):
    document_id: uuid.UUID
    reference: str
    type: str
    contract_id: str
    amount: DecimalString
    open_amount: DecimalString
    currency: str
    due_date: date
    status: OpenItemStatus
    assignments: list[Assignment]


class DocumentDetails(Document):
    customer_id: str
    payment_terms: str
    lines: list[DocumentLine]
    tax_lines: list[TaxLine]
    corrected_by: list[DocumentRef] = Field(description="The credit notes that correct it.")
    open_item: OpenItem | None = Field(description="An invoice's item in the OPOS list, with its assigned payments.")


class OpenItemChoice(BaseModel):
    document_id: uuid.UUID
    reference: str
    open_amount: DecimalString
    due_date: date


class Credit(BaseModel):
    """A payment or credit note with money no open item holds yet: the customer's credit."""

    payment_event_id: uuid.UUID
    payment_id: str
    kind: str
    provider: str
    contract_id: str
    amount: DecimalString
    unassigned_amount: DecimalString
    currency: str
    received_at: datetime
    assignable_to: list[OpenItemChoice] = Field(description="Its contract's items still open, oldest due first.")


class PaymentAccount(BaseModel):
    account_id: uuid.UUID
    method: str
    holder_name: str | None
    iban: str | None = Field(description="Masked: country, check digits and the last four characters.")
    bic: str | None
    mandate_reference: str | None
    mandate_signed_on: date | None
    mandate_status: str | None = Field(description="A direct debit's mandate as its provider last reported it: "
                                                   "active, cancelled, failed or expired.")
    provider: str | None
    is_default: bool
    created_at: datetime


class LedgerEntry(BaseModel):
    entry_id: uuid.UUID
    contract_id: str
    sequence: int
    type: str
    amount: DecimalString
    balance: DecimalString = Field(description="The contract's running balance after this entry.")
    currency: str
    description: str
    booked_at: datetime
    document_number: str | None
    payment_id: str | None
    settlement_run_id: uuid.UUID | None
    reverses_entry_id: uuid.UUID | None


class LedgerFigures(BaseModel):
    currency: str
    balance: DecimalString
    entries: int
    by_type: dict[str, DecimalString] = Field(description="Entry type -> signed sum, as it moved the balance.")


class ContractLedger(LedgerFigures):
    contract_id: str


class LedgerSummary(BaseModel):
    contracts: list[ContractLedger]
    totals: list[LedgerFigures] = Field(description="The customer's ledgers added up, per currency.")


# --- actions ------------------------------------------------------------------------------------


class UsageRequest(BaseModel):
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                  description="Sending the same request id again records the usage once.")
    item_code: str
    quantity: Annotated[Decimal, Field(gt=0, max_digits=28, decimal_places=10)]
    day: date


class PurchaseRequest(BaseModel):
    purchase_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                   description="Sending the same purchase id again adds the purchase once.")
    item_code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    description: Annotated[str, Field(min_length=1, max_length=500)]
    quantity: Annotated[Decimal, Field(gt=0, max_digits=28, decimal_places=10)]
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=28, decimal_places=10)]
    purchased_on: date


class BillingRunRequest(BaseModel):
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                  description="Sending the same request id again requests each run once.")
    contract_ids: list[str] = Field(min_length=1, max_length=200)


class CancellationRequest(BaseModel):
    contract_ids: list[str] = Field(min_length=1, max_length=200)
    ends_on: date = Field(description="The contracts' last day.")


class OrderCancellationRequest(BaseModel):
    order_ids: list[str] = Field(min_length=1, max_length=200, description="As the orders list names them.")


class AssignmentRequest(BaseModel):
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                  description="Sending the same request id again assigns once.")
    payment_event_id: uuid.UUID
    document_id: uuid.UUID = Field(description="The open item of the payment's contract to assign it to.")
    amount: Annotated[Decimal, Field(gt=0, max_digits=28, decimal_places=4)] | None = Field(
        None, description="Default: as much as the credit and the item's open amount allow.")


class UndoAssignmentRequest(BaseModel):
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                  description="Sending the same request id again undoes once.")
    payment_event_id: uuid.UUID
    document_id: uuid.UUID


class PaymentAccountRequest(BaseModel):
    """SEPA direct debit: IBAN, mandate reference and date (BIC optional); card: provider and its token;
    bank transfer: nothing more."""

    method: PaymentMethod
    holder_name: Annotated[str, Field(max_length=200)] | None = None
    iban: Annotated[str, Field(max_length=42)] | None = None
    bic: Annotated[str, Field(max_length=11)] | None = None
    mandate_reference: Annotated[str, Field(max_length=35)] | None = None
    mandate_signed_on: date | None = None
    provider: Annotated[str, Field(max_length=64)] | None = None
    provider_token: Annotated[str, Field(max_length=255)] | None = None
    make_default: bool = False


class ActionResult(BaseModel):
    message: str
    event_ids: list[uuid.UUID] = Field(default_factory=list)
