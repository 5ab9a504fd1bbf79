from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    func,
)

from shared.db import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)

# The last number issued per series; its row lock serializes issuers until they commit, and a
# rollback hands the number back, so numbers have no gaps (a sequence would leave them).
number_series = Table(
    "number_series",
    metadata,
    Column("series", String(32), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

documents = Table(
    "documents",
    metadata,
    Column("document_id", Uuid, primary_key=True),
    Column("document_type", String(16), nullable=False),
    Column("number", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    # One document per settlement run, whatever the inbox says: the second guard.
    Column("settlement_run_id", Uuid, nullable=False, unique=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("net_total", Numeric(28, 4), nullable=False),
    Column("tax_total", Numeric(28, 4), nullable=False),
    Column("gross_total", Numeric(28, 4), nullable=False),
    Column("finalized_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

document_lines = Table(
    "document_lines",
    metadata,
    Column("document_id", Uuid, ForeignKey("documents.document_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("billable_item_id", Uuid, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("description", String(500), nullable=False),
    Column("quantity", Numeric(28, 10), nullable=False),
    Column("unit_price", Numeric(28, 10), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
)
