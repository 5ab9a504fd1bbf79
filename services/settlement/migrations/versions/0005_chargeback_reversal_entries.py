"""ledger_entries.entry_type: room for ChargebackReversal (a dispute the merchant won)

Revision ID: 8e4a1c6f2d07
Revises: f2c6d8a41b93
Create Date: 2026-12-02 18:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '8e4a1c6f2d07'
down_revision: Union[str, None] = 'f2c6d8a41b93'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.alter_column('ledger_entries', 'entry_type', type_=sa.String(24), existing_type=sa.String(16),
                    existing_nullable=False)


def downgrade() -> None:
    op.alter_column('ledger_entries', 'entry_type', type_=sa.String(16), existing_type=sa.String(24),
                    existing_nullable=False)
