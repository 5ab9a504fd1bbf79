"""customers, contract revision and status, item tax category

Revision ID: 48bdb728fe40
Revises: 38653164c453
Create Date: 2026-11-22 23:23:16.354074
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '48bdb728fe40'
down_revision: Union[str, None] = '38653164c453'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('vat_id', sa.String(length=16), nullable=True),
    sa.Column('email', sa.String(length=500), nullable=True),
    sa.Column('address_lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    # Defaults fill existing rows; contracts saved before customers existed must be re-saved with
    # their customer before this runs, or the foreign key below refuses them (loudly, by design).
    op.add_column('contract_items', sa.Column('tax_category', sa.String(length=16), nullable=False,
                                              server_default='standard'))
    op.add_column('contracts', sa.Column('status', sa.String(length=16), nullable=False, server_default='active'))
    op.add_column('contracts', sa.Column('revision', sa.Integer(), nullable=False, server_default='1'))
    for table, column in (('contract_items', 'tax_category'), ('contracts', 'status'), ('contracts', 'revision')):
        op.alter_column(table, column, server_default=None)
    op.create_foreign_key('contracts_customer_id_fkey', 'contracts', 'customers', ['customer_id'], ['customer_id'])


def downgrade() -> None:
    op.drop_constraint('contracts_customer_id_fkey', 'contracts', type_='foreignkey')
    op.drop_column('contracts', 'revision')
    op.drop_column('contracts', 'status')
    op.drop_column('contract_items', 'tax_category')
    op.drop_table('customers')
