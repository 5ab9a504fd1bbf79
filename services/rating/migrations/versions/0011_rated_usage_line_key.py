"""rated_usage: keyed by its line (contract, item, period, time, event id) instead of its event id
alone, whose index on random ids was a second one per rated event; the inbox's claim already makes
each event rated once

Revision ID: 5d2f8a1c7e94
Revises: 41a81b861313
Create Date: 2026-12-08 04:30:00.000000
"""
from typing import Sequence, Union

from alembic import op

revision: str = '5d2f8a1c7e94'
down_revision: Union[str, None] = '41a81b861313'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LINE = ['contract_id', 'item_code', 'period_start', 'occurred_at', 'event_id']


def upgrade() -> None:
    op.drop_constraint('rated_usage_pkey', 'rated_usage', type_='primary')
    op.drop_index('rated_usage_line', table_name='rated_usage')
    op.create_primary_key('rated_usage_pkey', 'rated_usage', LINE)


def downgrade() -> None:
    op.drop_constraint('rated_usage_pkey', 'rated_usage', type_='primary')
    op.create_index('rated_usage_line', 'rated_usage', LINE)
    op.create_primary_key('rated_usage_pkey', 'rated_usage', ['event_id'])
