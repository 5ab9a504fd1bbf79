"""customers: when each was created and last changed, which the portal's customer summary shows
(customers from before take the migration's time: when they were created is not known)

Revision ID: 9a4c7e2f1b53
Revises: 8d2f6b0c4e31
Create Date: 2026-12-03 13:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '9a4c7e2f1b53'
down_revision: Union[str, None] = '8d2f6b0c4e31'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    for name in ('created_at', 'updated_at'):
        op.add_column('customers', sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                                             server_default=sa.func.now()))


def downgrade() -> None:
    for name in ('updated_at', 'created_at'):
        op.drop_column('customers', name)
