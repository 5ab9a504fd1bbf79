"""tax, credit notes, pdfs, contract replica

Documents get VAT (per line category and rate, a tax breakdown), seller and customer snapshots,
payment terms, notes, a service period, the invoice a credit note corrects, and their PDF; a
settlement run may now have an invoice and a credit note. Lines are grouped, so the settled
items (or credit lines) behind each line move to document_line_sources. Invoicing keeps a
replica of contract terms. Finalized documents become append-only (triggers).

Documents written before this migration charged no VAT: they get one tax line in category O
("not subject to VAT") at 0 %, empty seller/customer snapshots and no PDF.

Revision ID: 35044f574303
Revises: 8c696221405a
Create Date: 2026-11-23 00:13:01.363963
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '35044f574303'
down_revision: Union[str, None] = '8c696221405a'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APPEND_ONLY = ("documents", "document_lines", "document_line_sources", "document_tax_lines", "document_pdfs")


def upgrade() -> None:
    op.create_table('contract_terms',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('customer', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('tax_categories', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name='contract_terms_pkey')
    )
    op.create_table('document_pdfs',
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.document_id'], name='document_pdfs_document_id_fkey'),
    sa.PrimaryKeyConstraint('document_id', name='document_pdfs_pkey')
    )
    op.create_table('document_tax_lines',
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('vat_category', sa.String(length=2), nullable=False),
    sa.Column('vat_rate', sa.Numeric(precision=7, scale=4), nullable=False),
    sa.Column('base', sa.Numeric(precision=28, scale=4), nullable=False),
    sa.Column('tax', sa.Numeric(precision=28, scale=4), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.document_id'], name='document_tax_lines_document_id_fkey'),
    sa.PrimaryKeyConstraint('document_id', 'vat_category', 'vat_rate', name='document_tax_lines_pkey')
    )
    op.create_table('document_line_sources',
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['document_id', 'line_no'], ['document_lines.document_id', 'document_lines.line_no'], name='document_line_sources_line_fkey'),
    sa.PrimaryKeyConstraint('source_id', name='document_line_sources_pkey')
    )
    op.execute("INSERT INTO document_line_sources (source_id, document_id, line_no) "
               "SELECT billable_item_id, document_id, line_no FROM document_lines")
    op.execute("INSERT INTO document_tax_lines (document_id, vat_category, vat_rate, base, tax) "
               "SELECT document_id, 'O', 0, net_total, 0 FROM documents")

    # Server defaults only to fill the rows that exist; new rows always carry their values.
    line_columns = [
        sa.Column('discount', sa.Numeric(precision=28, scale=4), nullable=False, server_default='0'),
        sa.Column('tax_category', sa.String(length=16), nullable=False, server_default='standard'),
        sa.Column('vat_category', sa.String(length=2), nullable=False, server_default='O'),
        sa.Column('vat_rate', sa.Numeric(precision=7, scale=4), nullable=False, server_default='0'),
    ]
    for column in line_columns:
        op.add_column('document_lines', column)
        op.alter_column('document_lines', column.name, server_default=None)
    op.add_column('document_lines', sa.Column('credit_reason', sa.String(length=32), nullable=True))
    op.add_column('document_lines', sa.Column('corrects_number', sa.String(length=64), nullable=True))
    op.drop_column('document_lines', 'billable_item_id')

    op.add_column('documents', sa.Column('service_period_start', sa.Date(), nullable=True))
    op.add_column('documents', sa.Column('service_period_end', sa.Date(), nullable=True))
    op.execute("UPDATE documents SET service_period_start = lines.first_day, service_period_end = lines.last_day "
               "FROM (SELECT document_id, min(period_start) AS first_day, max(period_end) AS last_day "
               "      FROM document_lines GROUP BY document_id) AS lines "
               "WHERE lines.document_id = documents.document_id")
    op.alter_column('documents', 'service_period_start', nullable=False)
    op.alter_column('documents', 'service_period_end', nullable=False)
    document_columns = [
        sa.Column('seller', postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default='{}'),
        sa.Column('customer', postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default='{}'),
        sa.Column('payment_terms', sa.Text(), nullable=False, server_default=''),
        sa.Column('notes', postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default='[]'),
    ]
    for column in document_columns:
        op.add_column('documents', column)
        op.alter_column('documents', column.name, server_default=None)
    op.add_column('documents', sa.Column('corrects_number', sa.String(length=64), nullable=True))
    op.drop_constraint('documents_settlement_run_id_key', 'documents', type_='unique')
    op.create_unique_constraint('documents_settlement_run_id_document_type_key', 'documents', ['settlement_run_id', 'document_type'])

    op.execute("""
        CREATE FUNCTION documents_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'finalized documents are immutable (% on %); correct them with a credit note',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END $$
    """)
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION documents_are_append_only()")


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute("DROP FUNCTION documents_are_append_only()")
    # Fails if a settlement run has both an invoice and a credit note, which the old schema cannot hold.
    op.drop_constraint('documents_settlement_run_id_document_type_key', 'documents', type_='unique')
    op.create_unique_constraint('documents_settlement_run_id_key', 'documents', ['settlement_run_id'])
    for column in ('corrects_number', 'notes', 'payment_terms', 'customer', 'seller', 'service_period_end',
                   'service_period_start'):
        op.drop_column('documents', column)
    # A grouped line keeps one of its sources; the others are lost with the grouping.
    op.add_column('document_lines', sa.Column('billable_item_id', sa.UUID(), nullable=True))
    op.execute("UPDATE document_lines SET billable_item_id = sources.source_id "
               "FROM (SELECT document_id, line_no, min(source_id::text)::uuid AS source_id "
               "      FROM document_line_sources GROUP BY document_id, line_no) AS sources "
               "WHERE sources.document_id = document_lines.document_id AND sources.line_no = document_lines.line_no")
    op.alter_column('document_lines', 'billable_item_id', nullable=False)
    for column in ('corrects_number', 'credit_reason', 'vat_rate', 'vat_category', 'tax_category', 'discount'):
        op.drop_column('document_lines', column)
    op.drop_table('document_line_sources')
    op.drop_table('document_tax_lines')
    op.drop_table('document_pdfs')
    op.drop_table('contract_terms')
