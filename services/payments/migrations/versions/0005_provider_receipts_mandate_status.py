"""webhook_receipts: whose transaction each was, and the ones held until what they reference arrives;
payment_accounts.mandate_status

Revision ID: 5c9e0b7d3a62
Revises: 3b7d2e9a5c41
Create Date: 2026-12-02 18:30:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '5c9e0b7d3a62'
down_revision: Union[str, None] = '3b7d2e9a5c41'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('webhook_receipts', sa.Column('payment_id', sa.String(64)))
    op.add_column('webhook_receipts', sa.Column('contract_id', sa.String(64)))
    op.add_column('webhook_receipts', sa.Column('customer_id', sa.String(64)))
    op.add_column('webhook_receipts', sa.Column('held_transaction', postgresql.JSONB()))
    op.add_column('webhook_receipts', sa.Column('waiting_for', sa.String(64)))
    op.create_index('webhook_receipts_payment', 'webhook_receipts', ['provider', 'payment_id'],
                    postgresql_where=sa.text('contract_id IS NOT NULL'))
    op.create_index('webhook_receipts_held', 'webhook_receipts', ['provider', 'waiting_for'],
                    postgresql_where=sa.text('held_transaction IS NOT NULL'))
    # Mandates registered before were active: nothing said otherwise.
    op.add_column('payment_accounts', sa.Column('mandate_status', sa.String(16)))
    op.execute("UPDATE payment_accounts SET mandate_status = 'active' WHERE method = 'sepa_direct_debit'")


def downgrade() -> None:
    op.drop_column('payment_accounts', 'mandate_status')
    op.drop_index('webhook_receipts_held', table_name='webhook_receipts')
    op.drop_index('webhook_receipts_payment', table_name='webhook_receipts')
    for column in ('waiting_for', 'held_transaction', 'customer_id', 'contract_id', 'payment_id'):
        op.drop_column('webhook_receipts', column)
