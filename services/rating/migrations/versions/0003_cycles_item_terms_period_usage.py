"""contract cycles, item kinds and terms, period usage, meters, rated item breakdown

Revision ID: be0a3f679669
Revises: 48bdb728fe40
Create Date: 2026-11-23 03:13:22.773842
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = 'be0a3f679669'
down_revision: Union[str, None] = '48bdb728fe40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('meters',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('reading', sa.Numeric(precision=28, scale=10), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'item_code', name='meters_pkey')
    )
    # Periods rated before this migration have no state: every contract so far was priced per
    # unit without free quantities or limits, where a period's state changes nothing.
    op.create_table('period_usage',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=38, scale=10), nullable=False),
    sa.Column('net', sa.Numeric(precision=28, scale=4), nullable=False),
    sa.Column('discount', sa.Numeric(precision=28, scale=4), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'item_code', 'period_start', name='period_usage_pkey')
    )
    # Server defaults fill the existing rows (what they were: usage priced per unit, calendar
    # months) and are dropped afterwards, so new rows must say what they are.
    new_not_null = [
        ('billable_items', sa.Column('charge_kind', sa.String(length=16), nullable=False, server_default='usage')),
        ('billable_items', sa.Column('discount', sa.Numeric(precision=28, scale=4), nullable=False,
                                     server_default='0')),
        ('billable_items', sa.Column('price_breakdown', postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                                     server_default='[]')),
        ('contract_items', sa.Column('kind', sa.String(length=16), nullable=False, server_default='usage')),
        ('contract_items', sa.Column('terms', postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                                     server_default='{}')),
        ('contracts', sa.Column('billing_cycle', sa.String(length=16), nullable=False, server_default='calendar')),
        ('contracts', sa.Column('period_months', sa.Integer(), nullable=False, server_default='1')),
    ]
    for table, column in new_not_null:
        op.add_column(table, column)
    op.add_column('billable_items', sa.Column('previous_reading', sa.Numeric(precision=28, scale=10), nullable=True))
    op.add_column('billable_items', sa.Column('current_reading', sa.Numeric(precision=28, scale=10), nullable=True))
    op.add_column('billable_items', sa.Column('late_for_period_start', sa.Date(), nullable=True))
    op.add_column('billable_items', sa.Column('late_for_period_end', sa.Date(), nullable=True))
    op.add_column('contracts', sa.Column('alignment_date', sa.Date(), nullable=True))
    op.add_column('contracts', sa.Column('closed_through', sa.Date(), nullable=True))
    # The items' terms as a ContractItemSpec: existing items are per-unit usage at their price.
    op.execute(
        "UPDATE contract_items SET terms = jsonb_build_object("
        "'item_code', item_code, 'description', description, 'tax_category', tax_category, "
        "'unit_price', unit_price::text)"
    )
    for table, column in new_not_null:
        op.alter_column(table, column.name, server_default=None)


def downgrade() -> None:
    op.drop_column('contracts', 'closed_through')
    op.drop_column('contracts', 'alignment_date')
    op.drop_column('contracts', 'period_months')
    op.drop_column('contracts', 'billing_cycle')
    op.drop_column('contract_items', 'terms')
    op.drop_column('contract_items', 'kind')
    op.drop_column('billable_items', 'late_for_period_end')
    op.drop_column('billable_items', 'late_for_period_start')
    op.drop_column('billable_items', 'current_reading')
    op.drop_column('billable_items', 'previous_reading')
    op.drop_column('billable_items', 'price_breakdown')
    op.drop_column('billable_items', 'discount')
    op.drop_column('billable_items', 'charge_kind')
    op.drop_table('period_usage')
    op.drop_table('meters')
