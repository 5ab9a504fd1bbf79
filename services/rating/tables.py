from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
)

from sqlalchemy.dialects.postgresql import JSONB

from shared.access.tables import audit_table
from shared.db import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)
# Who changed what through the API and the operator commands, in the transaction of the change.
audit_records = audit_table(metadata)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("name", String(500), nullable=False),
    Column("country", String(2), nullable=False),
    Column("vat_id", String(16)),
    Column("email", String(500)),
    Column("address_lines", JSONB, nullable=False),
    Column("postal_code", String(20)),
    Column("city", String(200)),
    # shared.events.EInvoicing; none: Factur-X with nothing XRechnung needs.
    Column("e_invoicing", JSONB(none_as_null=True)),
    # When it was created, and when its profile last changed (a contract change that repeats the
    # profile as it is leaves it).
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

contracts = Table(
    "contracts",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("customer_id", String(64), ForeignKey("customers.customer_id"), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date),
    Column("status", String(16), nullable=False),
    # Grows with every change; published with each contracts.changed snapshot.
    Column("revision", Integer, nullable=False),
    Column("billing_cycle", String(16), nullable=False),
    Column("period_months", Integer, nullable=False),
    Column("alignment_date", Date),
    # The business time zone (IANA name) its days and so its periods begin and end in.
    Column("time_zone", String(64), nullable=False),
    # Periods ending on or before this day are closed (fees charged, minimums topped up); usage
    # for them is late. Written only by the period close, never by a contract change.
    Column("closed_through", Date),
    # The first day on which the period close may have something to do for the contract (a period
    # begins whose fees are due, or its first open period is to be closed); NULL: at the next tick.
    # Each tick only looks at the contracts due, not at every contract; a change resets it.
    Column("close_due_on", Date, index=True),
)

contract_items = Table(
    "contract_items",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("item_code", String(64), primary_key=True),
    Column("description", String(500), nullable=False),
    Column("unit_price", Numeric(28, 10), nullable=False),
    Column("tax_category", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    # The item as specified (services.rating.specs.ContractItemSpec): pricing, measure, fee terms.
    Column("terms", JSONB, nullable=False),
    ForeignKeyConstraint(["contract_id"], ["contracts.contract_id"]),
)

billable_items = Table(
    "billable_items",
    metadata,
    Column("billable_item_id", Uuid, primary_key=True),
    # The (first) usage event it bills, or a fee's, top-up's or purchase's derived id: an event is
    # billed once, whatever the inbox says: the second guard.
    Column("source_event_id", Uuid, nullable=False, unique=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quantity", Numeric(28, 10), nullable=False),
    Column("free_quantity", Numeric(28, 10), nullable=False),
    Column("billable_quantity", Numeric(28, 10), nullable=False),
    Column("unit_price", Numeric(28, 10), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("rated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("charge_kind", String(16), nullable=False),
    Column("tax_category", String(16), nullable=False),
    Column("discount", Numeric(28, 4), nullable=False),
    Column("price_breakdown", JSONB, nullable=False),
    Column("previous_reading", Numeric(28, 10)),
    Column("current_reading", Numeric(28, 10)),
    Column("late_for_period_start", Date),
    Column("late_for_period_end", Date),
    # A billing line's items, page by page (the API's /lines/.../items).
    Index("billable_items_line", "contract_id", "item_code", "period_start", "occurred_at", "billable_item_id"),
)

# Every usage event rated, and the billable item it is billed in (a batch's events of one period
# become one item): the event detail behind a billing line. Written with COPY, the fastest path
# into PostgreSQL, since it is the one row per event; no foreign key, whose check per row would
# cost as much again, as both rows are written by the same statement sequence of one transaction.
# Its one index is its key, in a line's order: that an event is rated once is the inbox's claim of
# its id, in the same transaction, and a second index on the (random) event id alone cost
# PostgreSQL about a sixth of its work per rated event.
rated_usage = Table(
    "rated_usage",
    metadata,
    Column("event_id", Uuid, nullable=False),
    Column("billable_item_id", Uuid, nullable=False),
    Column("contract_id", String(64), nullable=False),
    Column("item_code", String(64), nullable=False),
    # The period it is billed in (a late event's: the first open one), as its item's.
    Column("period_start", Date, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    # What it consumed: its quantity, or a meter reading's difference to the previous one.
    Column("quantity", Numeric(28, 10), nullable=False),
    Column("meter_reading", Numeric(28, 10)),
    # A billing line's usage events, page by page (the API's /lines/.../usage).
    PrimaryKeyConstraint("contract_id", "item_code", "period_start", "occurred_at", "event_id",
                         name="rated_usage_pkey"),
)

# The cumulative state of each (contract, item, billing period): what was used and what its items
# have billed so far. Rated usage is charged what the period's net grows by (domain.rate).
period_usage = Table(
    "period_usage",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("item_code", String(64), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("period_end", Date, nullable=False),
    Column("quantity", Numeric(38, 10), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("discount", Numeric(28, 4), nullable=False),
)

# The newest rated reading of each metered item.
meters = Table(
    "meters",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("item_code", String(64), primary_key=True),
    Column("reading", Numeric(28, 10), nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=False),
)
