"""contracts.close_due_on: the period close looks only at the contracts that are due

Revision ID: 5c2e9d41a7b3
Revises: be0a3f679669
Create Date: 2026-11-30 14:10:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '5c2e9d41a7b3'
down_revision: Union[str, None] = 'be0a3f679669'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # NULL for every existing contract: each is looked at by the next tick, which sets its day.
    op.add_column('contracts', sa.Column('close_due_on', sa.Date(), nullable=True))
    op.create_index(op.f('ix_contracts_close_due_on'), 'contracts', ['close_due_on'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_contracts_close_due_on'), table_name='contracts')
    op.drop_column('contracts', 'close_due_on')
