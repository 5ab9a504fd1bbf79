"""document_einvoices: each document's EN 16931 XMLs (the Factur-X CII its PDF embeds; XRechnung too
for the customers who need it),
with its sha256 and the validation it passed before the document took its number; append-only
like the documents. customer_payment_accounts: the replica of payment-accounts.changed, for the
payment means of invoices

Revision ID: 5a7e9c1d2b48
Revises: c3f8b2d61e47
Create Date: 2026-12-03 10:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '5a7e9c1d2b48'
down_revision: Union[str, None] = 'c3f8b2d61e47'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'document_einvoices',
        sa.Column('document_id', sa.Uuid(), sa.ForeignKey('documents.document_id'), primary_key=True),
        sa.Column('format', sa.String(16), primary_key=True),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('validation', sa.Text(), nullable=False),
    )
    op.execute("CREATE TRIGGER document_einvoices_append_only BEFORE UPDATE OR DELETE ON document_einvoices "
               "FOR EACH ROW EXECUTE FUNCTION documents_are_append_only()")
    op.create_table(
        'customer_payment_accounts',
        sa.Column('customer_id', sa.String(64), primary_key=True),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('mandate_reference', sa.String(35)),
        sa.Column('iban', sa.String(34)),
    )


def downgrade() -> None:
    op.drop_table('customer_payment_accounts')
    op.execute("DROP TRIGGER document_einvoices_append_only ON document_einvoices")
    op.drop_table('document_einvoices')
