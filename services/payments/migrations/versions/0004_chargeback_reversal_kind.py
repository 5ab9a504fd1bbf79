"""payments.kind: room for chargeback_reversal (a dispute the merchant won)

Revision ID: 3b7d2e9a5c41
Revises: d9a1e5c73f28
Create Date: 2026-12-02 18:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '3b7d2e9a5c41'
down_revision: Union[str, None] = 'd9a1e5c73f28'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.alter_column('payments', 'kind', type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    op.alter_column('payments', 'kind', type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
