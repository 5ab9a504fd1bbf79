"""rated_usage: every usage event rated and the billable item it is billed in, now that a batch's
events of one period are billed as one item; the events rated one item each before are copied in

Revision ID: 7c1e5a9b3d20
Revises: e4b7c2a90d16
Create Date: 2026-12-02 18:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '7c1e5a9b3d20'
down_revision: Union[str, None] = 'e4b7c2a90d16'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'rated_usage',
        sa.Column('event_id', sa.Uuid(), primary_key=True),
        sa.Column('billable_item_id', sa.Uuid(), nullable=False),
        sa.Column('contract_id', sa.String(64), nullable=False),
        sa.Column('item_code', sa.String(64), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('quantity', sa.Numeric(28, 10), nullable=False),
        sa.Column('meter_reading', sa.Numeric(28, 10)),
    )
    # Each usage item so far billed one event (its source); minimum top-ups are usage items too, but
    # the only ones that charge for nothing consumed.
    op.execute("INSERT INTO rated_usage (event_id, billable_item_id, contract_id, item_code, period_start, occurred_at,"
               " quantity, meter_reading) SELECT source_event_id, billable_item_id, contract_id, item_code,"
               " period_start, occurred_at, quantity, current_reading FROM billable_items"
               " WHERE charge_kind = 'usage' AND NOT (quantity = 0 AND net <> 0)")
    op.create_index('rated_usage_line', 'rated_usage',
                    ['contract_id', 'item_code', 'period_start', 'occurred_at', 'event_id'])


def downgrade() -> None:
    op.drop_index('rated_usage_line', table_name='rated_usage')
    op.drop_table('rated_usage')
