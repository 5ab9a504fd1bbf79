from sqlalchemy import (
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

from shared.db import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)

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
    Index("billable_items_unsettled", "contract_id", "occurred_at", postgresql_where=text("settlement_run_id IS NULL")),
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
    Column("entry_type", String(16), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance", Numeric(28, 4), nullable=False),
    Column("description", String(500), nullable=False),
    Column("settlement_run_id", Uuid, ForeignKey("settlement_runs.settlement_run_id")),
    Column("payment_id", String(64)),
    Column("booked_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("contract_id", "sequence"),
    # A provider transaction moves the balance once per kind, whatever event carried it.
    Index("ledger_entries_one_per_payment", "payment_id", "entry_type", unique=True,
          postgresql_where=text("payment_id IS NOT NULL")),
)
