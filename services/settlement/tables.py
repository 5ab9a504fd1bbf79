from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.access.tables import audit_table
from shared.db import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)
# Who changed what through the API and the operator commands, in the transaction of the change.
audit_records = audit_table(metadata)

# Settlement's replica of rating's contracts (contracts.changed), newest revision only.
contracts = Table(
    "contracts",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date),
    Column("status", String(16), nullable=False),
    Column("revision", Integer, nullable=False),
    # The customer's profile (shared.events.CustomerProfile) as of this revision: runs pass it on
    # to invoicing, so a document is drawn up from the run alone.
    Column("customer", JSONB),
)

# A run's status is domain.RunStatus; its id says where it came from (a request's event id, a
# contract and billing period for scheduled runs, the credits it posts for credit runs).
settlement_runs = Table(
    "settlement_runs",
    metadata,
    Column("settlement_run_id", Uuid, primary_key=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("cutoff", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("total", Numeric(28, 4), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What its invoice charges (`total`) and its credit note credits (`credit_total`); of that, what
    # it credits because its items came to less than nothing (`adjustment_total`).
    Column("credit_total", Numeric(28, 4), nullable=False, server_default=text("0")),
    Column("adjustment_total", Numeric(28, 4), nullable=False, server_default=text("0")),
    Column("requested_by", String(500), nullable=False, server_default="operator"),
    # The billing period a scheduled run closes; empty for runs requested on demand and credit runs.
    Column("period_start", Date),
    Column("period_end", Date),
    Column("settled_at", DateTime(timezone=True)),
    Index("settlement_runs_due", "cutoff", postgresql_where=text("status <> 'complete'")),
)

billable_items = Table(
    "billable_items",
    metadata,
    Column("billable_item_id", Uuid, primary_key=True),
    Column("contract_id", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("description", String(500), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quantity", Numeric(28, 10), nullable=False),
    Column("unit_price", Numeric(28, 10), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    # Set once, by the run that settles the item: an item is settled exactly once.
    Column("settlement_run_id", Uuid, ForeignKey("settlement_runs.settlement_run_id")),
    Column("charge_kind", String(16), nullable=False, server_default="usage"),
    # NULL only for items rated under items.rated v1, before rated items carried their category.
    Column("tax_category", String(16)),
    Column("discount", Numeric(28, 4), nullable=False, server_default=text("0")),
    Index("billable_items_unsettled", "contract_id", "occurred_at", postgresql_where=text("settlement_run_id IS NULL")),
    Index("billable_items_by_contract", "contract_id"),
)

# Credit memo lines: each is posted once, by the run named here, on the item it credits.
credits = Table(
    "credits",
    metadata,
    Column("credit_id", Uuid, primary_key=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("billable_item_id", Uuid, ForeignKey("billable_items.billable_item_id"), nullable=False, index=True),
    Column("reason", String(32), nullable=False),
    Column("description", String(500), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    # The run that billed the item (whose invoice the credit corrects) and the run that posted the credit.
    Column("credited_settlement_run_id", Uuid, ForeignKey("settlement_runs.settlement_run_id")),
    Column("settlement_run_id", Uuid, ForeignKey("settlement_runs.settlement_run_id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("net > 0", name="credits_positive"),
    # An item is cancelled at most once and terminated at most once; goodwill credits may repeat.
    Index("credits_once_per_item", "billable_item_id", "reason", unique=True,
          postgresql_where=text("reason <> 'credit'")),
)

# One row per contract: the balance the next ledger entry starts from, locked while posting.
contract_accounts = Table(
    "contract_accounts",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("balance", Numeric(28, 4), nullable=False),
    Column("last_sequence", Integer, nullable=False),
)

# Immutable: corrections are new, reversing entries.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", Uuid, primary_key=True),
    Column("contract_id", String(64), ForeignKey("contract_accounts.contract_id"), nullable=False),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("sequence", Integer, nullable=False),
    Column("entry_type", String(24), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance", Numeric(28, 4), nullable=False),
    Column("description", String(500), nullable=False),
    Column("settlement_run_id", Uuid, ForeignKey("settlement_runs.settlement_run_id")),
    Column("payment_id", String(64)),
    Column("booked_at", DateTime(timezone=True), nullable=False),
    Column("document_number", String(64)),
    # A correction: this entry undoes the one named here (which stays as it was), at most once.
    Column("reverses_entry_id", Uuid, ForeignKey("ledger_entries.entry_id", name="ledger_entries_reverses_fkey")),
    UniqueConstraint("contract_id", "sequence"),
    UniqueConstraint("reverses_entry_id", name="ledger_entries_one_reversal"),
    # A provider transaction moves the balance once per kind, whatever event carried it.
    Index("ledger_entries_one_per_payment", "payment_id", "entry_type", unique=True,
          postgresql_where=text("payment_id IS NOT NULL")),
)
