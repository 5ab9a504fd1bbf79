"""settlement_runs.adjustment_total: what a run credits because its items came to less than nothing

Revision ID: f2c6d8a41b93
Revises: b7e3a9154c02
Create Date: 2026-12-02 16:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'f2c6d8a41b93'
down_revision: Union[str, None] = 'b7e3a9154c02'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Runs before this revision never came to less than nothing: a negative run was refused.
    op.add_column('settlement_runs', sa.Column('adjustment_total', sa.Numeric(28, 4), nullable=False,
                                               server_default=sa.text('0')))


def downgrade() -> None:
    op.drop_column('settlement_runs', 'adjustment_total')
