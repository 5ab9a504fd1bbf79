"""items keep tax category and discount; the contract replica keeps the customer; parking

Revision ID: b7e3a9154c02
Revises: 100c0501a5ce
Create Date: 2026-12-02 07:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from shared.db import add_parking_and_outbox_quarantine, drop_parking_and_outbox_quarantine

revision: str = 'b7e3a9154c02'
down_revision: Union[str, None] = '100c0501a5ce'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # NULL for items received before: they were rated under items.rated v1, without a category.
    op.add_column('billable_items', sa.Column('tax_category', sa.String(length=16), nullable=True))
    op.add_column('billable_items', sa.Column('discount', sa.Numeric(precision=28, scale=4),
                                              server_default=sa.text('0'), nullable=False))
    # NULL until the contract's next snapshot arrives.
    op.add_column('contracts', sa.Column('customer', sa.dialects.postgresql.JSONB(), nullable=True))
    add_parking_and_outbox_quarantine()


def downgrade() -> None:
    drop_parking_and_outbox_quarantine()
    op.drop_column('contracts', 'customer')
    op.drop_column('billable_items', 'discount')
    op.drop_column('billable_items', 'tax_category')
