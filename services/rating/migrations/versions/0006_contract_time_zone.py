"""contracts.time_zone: the business time zone a contract's days and periods begin and end in; an
index to page through a billing line's items

Revision ID: e4b7c2a90d16
Revises: a1d4c7e20b55
Create Date: 2026-12-02 15:30:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'e4b7c2a90d16'
down_revision: Union[str, None] = 'a1d4c7e20b55'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Contracts rated before this revision had their periods cut at UTC days: they keep them.
    op.add_column('contracts', sa.Column('time_zone', sa.String(64), nullable=False, server_default='UTC'))
    op.alter_column('contracts', 'time_zone', server_default=None)
    op.create_index('billable_items_line', 'billable_items',
                    ['contract_id', 'item_code', 'period_start', 'occurred_at', 'billable_item_id'])


def downgrade() -> None:
    op.drop_index('billable_items_line', table_name='billable_items')
    op.drop_column('contracts', 'time_zone')
