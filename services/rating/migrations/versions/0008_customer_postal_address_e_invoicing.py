"""customers: postal code, city and e-invoicing (format, buyer reference, electronic address), which
contracts.changed v2 carries for the documents' EN 16931 data

Revision ID: 8d2f6b0c4e31
Revises: 7c1e5a9b3d20
Create Date: 2026-12-03 09:30:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '8d2f6b0c4e31'
down_revision: Union[str, None] = '7c1e5a9b3d20'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('customers', sa.Column('postal_code', sa.String(20)))
    op.add_column('customers', sa.Column('city', sa.String(200)))
    op.add_column('customers', sa.Column('e_invoicing', postgresql.JSONB(none_as_null=True)))


def downgrade() -> None:
    for column in ('e_invoicing', 'city', 'postal_code'):
        op.drop_column('customers', column)
