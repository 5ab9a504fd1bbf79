from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
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

open_items = Table(
    "open_items",
    metadata,
    Column("document_id", Uuid, primary_key=True),
    Column("invoice_number", String(64), nullable=False, unique=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("open_amount", Numeric(28, 4), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_event_id", Uuid, primary_key=True),
    Column("payment_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("invoice_number", String(64)),
    # What is not assigned to an open item yet: the customer's credit on this contract.
    Column("unassigned_amount", Numeric(28, 4), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("payment_id", "kind"),
    Index("payments_with_credit", "contract_id", "received_at", postgresql_where=text("unassigned_amount > 0")),
)

payment_assignments = Table(
    "payment_assignments",
    metadata,
    Column("payment_event_id", Uuid, ForeignKey("payments.payment_event_id"), primary_key=True),
    Column("document_id", Uuid, ForeignKey("open_items.document_id"), primary_key=True),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
