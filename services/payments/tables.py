from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
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
from sqlalchemy.dialects.postgresql import JSONB

from shared.access.tables import audit_table
from shared.db import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)
# Who changed what through the API and the operator commands, in the transaction of the change.
audit_records = audit_table(metadata)

# What the customer owes, item by item (OPOS): invoices, and what payments open themselves
# (chargeback fees, money paid back beyond what the customer had paid).
open_items = Table(
    "open_items",
    metadata,
    Column("document_id", Uuid, primary_key=True),
    # Set for invoices only.
    Column("invoice_number", String(64), unique=True),
    Column("item_type", String(16), nullable=False, server_default="invoice"),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("open_amount", Numeric(28, 4), nullable=False),
    Column("due_date", Date, nullable=False),
    # The chargeback or refund that opened an item of payments' own.
    Column("opened_by", Uuid, ForeignKey("payments.payment_event_id", name="open_items_opened_by_fkey")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Provider transactions (payments, chargebacks, refunds) and credit notes: everything that
# settles open items or takes that back.
payments = Table(
    "payments",
    metadata,
    Column("payment_event_id", Uuid, primary_key=True),
    Column("payment_id", String(64), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("status", String(16), nullable=False, server_default="succeeded"),
    Column("provider", String(64), nullable=False),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(28, 4), nullable=False),
    Column("invoice_number", String(64)),
    # The payment a chargeback or refund took back.
    Column("reverses", Uuid, ForeignKey("payments.payment_event_id", name="payments_reverses_fkey")),
    # A chargeback's fee, opened as an item of its own.
    Column("fee", Numeric(28, 4)),
    # What is not assigned to an open item yet: the customer's credit on this contract.
    Column("unassigned_amount", Numeric(28, 4), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("payment_id", "kind"),
    Index("payments_with_credit", "contract_id", "received_at", postgresql_where=text("unassigned_amount > 0")),
)

# A journal: each row assigns money of one payment to one item (positive) or takes it back
# (negative, when a chargeback or refund reopens the item). Rows are never changed.
payment_assignments = Table(
    "payment_assignments",
    metadata,
    Column("assignment_id", BigInteger, Identity(), primary_key=True),
    Column("payment_event_id", Uuid, ForeignKey("payments.payment_event_id"), nullable=False, index=True),
    Column("document_id", Uuid, ForeignKey("open_items.document_id"), nullable=False, index=True),
    Column("amount", Numeric(28, 4), nullable=False),
    # The event that made the row: the payment itself, a new invoice its credit went to, a chargeback...
    Column("caused_by", Uuid, nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per provider event the bridge recorded: a second delivery of the same provider event
# records nothing, and its PaymentReceived is in the outbox of the same transaction.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("provider", String(64), primary_key=True),
    Column("provider_event_id", String(64), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("body_sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The provider transaction and whose it was found to be: a later refund or dispute of it that
    # names no contract (the provider's payloads often do not) is that contract's too.
    Column("payment_id", String(64)),
    Column("contract_id", String(64)),
    Column("customer_id", String(64)),
    # A transaction whose contract is not known yet (a refund or dispute before its payment, or a
    # payment that names nothing billing knows): published once what it waits for is received.
    Column("held_transaction", JSONB(none_as_null=True)),  # None is SQL NULL, not JSON null
    # The provider payment id a held transaction waits for; none: unmatched, for an operator.
    Column("waiting_for", String(64)),
    Index("webhook_receipts_payment", "provider", "payment_id", postgresql_where=text("contract_id IS NOT NULL")),
    Index("webhook_receipts_held", "provider", "waiting_for", postgresql_where=text("held_transaction IS NOT NULL")),
)

payment_accounts = Table(
    "payment_accounts",
    metadata,
    Column("account_id", Uuid, primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("method", String(24), nullable=False),
    Column("holder_name", String(200)),
    Column("iban", String(34)),
    Column("bic", String(11)),
    Column("mandate_reference", String(35)),
    Column("mandate_signed_on", Date),
    Column("provider", String(64)),
    Column("provider_token", String(255)),
    Column("is_default", Boolean, nullable=False, server_default="false"),
    # A direct debit's mandate: active, cancelled, failed or expired, as its provider reports it.
    Column("mandate_status", String(16)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "(method = 'sepa_direct_debit' AND iban IS NOT NULL AND mandate_reference IS NOT NULL"
        " AND mandate_signed_on IS NOT NULL)"
        " OR (method = 'card' AND provider IS NOT NULL AND provider_token IS NOT NULL)"
        " OR method = 'bank_transfer'",
        name="payment_accounts_details_of_method",
    ),
    Index("payment_accounts_one_default", "customer_id", unique=True, postgresql_where=text("is_default")),
    Index("payment_accounts_mandate", "mandate_reference", unique=True,
          postgresql_where=text("mandate_reference IS NOT NULL")),
    Index("payment_accounts_card", "provider", "provider_token", unique=True,
          postgresql_where=text("provider_token IS NOT NULL")),
)
