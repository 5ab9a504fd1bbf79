"""Invoicing's own tables.

Documents are append-only: migration 0002 installs triggers that refuse UPDATE and DELETE on
documents, their lines, line sources, tax lines, PDFs (migration 0004: and e-invoices), because a finalized document is never
changed (corrections are credit notes).
"""

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

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

# The replica of what invoicing needs from each contract, kept from contracts.changed.
contract_terms = Table(
    "contract_terms",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("customer", JSONB, nullable=False),
    # item_code -> tax category
    Column("tax_categories", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

documents = Table(
    "documents",
    metadata,
    Column("document_id", Uuid, primary_key=True),
    Column("document_type", String(16), nullable=False),
    Column("number", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("settlement_run_id", Uuid, nullable=False),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("service_period_start", Date, nullable=False),
    Column("service_period_end", Date, nullable=False),
    Column("net_total", Numeric(28, 4), nullable=False),
    Column("tax_total", Numeric(28, 4), nullable=False),
    Column("gross_total", Numeric(28, 4), nullable=False),
    # Seller and customer as printed, so the document stays what it was when the parties change.
    Column("seller", JSONB, nullable=False),
    Column("customer", JSONB, nullable=False),
    Column("payment_terms", Text, nullable=False),
    Column("notes", JSONB, nullable=False),
    Column("corrects_number", String(64)),
    Column("finalized_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One invoice and one credit note per settlement run at most, whatever the inbox says.
    UniqueConstraint("settlement_run_id", "document_type", name="documents_settlement_run_id_document_type_key"),
)

document_lines = Table(
    "document_lines",
    metadata,
    Column("document_id", Uuid, ForeignKey("documents.document_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("item_code", String(64), nullable=False),
    Column("description", String(500), nullable=False),
    Column("quantity", Numeric(28, 10), nullable=False),
    Column("unit_price", Numeric(28, 10), nullable=False),
    Column("discount", Numeric(28, 4), nullable=False),
    Column("net", Numeric(28, 4), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("tax_category", String(16), nullable=False),
    Column("vat_category", String(2), nullable=False),
    Column("vat_rate", Numeric(7, 4), nullable=False),
    Column("credit_reason", String(32)),
    Column("corrects_number", String(64)),
)

# Which settled items (invoices) or credit memo lines (credit notes) a line sums up. The primary
# key bills each of them at most once across all documents.
document_line_sources = Table(
    "document_line_sources",
    metadata,
    Column("source_id", Uuid, primary_key=True),
    Column("document_id", Uuid, nullable=False),
    Column("line_no", Integer, nullable=False),
    ForeignKeyConstraint(["document_id", "line_no"], ["document_lines.document_id", "document_lines.line_no"],
                         name="document_line_sources_line_fkey"),
)

document_tax_lines = Table(
    "document_tax_lines",
    metadata,
    Column("document_id", Uuid, ForeignKey("documents.document_id"), primary_key=True),
    Column("vat_category", String(2), primary_key=True),
    Column("vat_rate", Numeric(7, 4), primary_key=True),
    Column("base", Numeric(28, 4), nullable=False),
    Column("tax", Numeric(28, 4), nullable=False),
)

document_pdfs = Table(
    "document_pdfs",
    metadata,
    Column("document_id", Uuid, ForeignKey("documents.document_id"), primary_key=True),
    Column("content", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
)

# Each document's EN 16931 XMLs as issued (the Factur-X one its PDF embeds, and XRechnung's for the
# customers who receive it), and the validation each passed before the document's number was taken.
document_einvoices = Table(
    "document_einvoices",
    metadata,
    Column("document_id", Uuid, ForeignKey("documents.document_id"), primary_key=True),
    Column("format", String(16), primary_key=True),
    Column("content", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("validation", Text, nullable=False),
)

# The replica of payment-accounts.changed: each customer's newest default account, as far as an
# invoice's payment means need it: the active SEPA mandate collected from, if it is one.
customer_payment_accounts = Table(
    "customer_payment_accounts",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("mandate_reference", String(35)),
    Column("iban", String(34)),
)
