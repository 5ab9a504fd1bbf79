"""billable items carry their tax category; parked messages; outbox quarantine

Revision ID: a1d4c7e20b55
Revises: 5c2e9d41a7b3
Create Date: 2026-12-02 07:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from shared.db import add_parking_and_outbox_quarantine, drop_parking_and_outbox_quarantine

revision: str = 'a1d4c7e20b55'
down_revision: Union[str, None] = '5c2e9d41a7b3'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Existing items were all rated from contract items, so their category is the item's.
    op.add_column('billable_items', sa.Column('tax_category', sa.String(length=16), nullable=True))
    op.execute("""UPDATE billable_items b SET tax_category = coalesce(
                    (SELECT i.tax_category FROM contract_items i
                      WHERE i.contract_id = b.contract_id AND i.item_code = b.item_code), 'standard')""")
    op.alter_column('billable_items', 'tax_category', nullable=False)
    add_parking_and_outbox_quarantine()


def downgrade() -> None:
    drop_parking_and_outbox_quarantine()
    op.drop_column('billable_items', 'tax_category')
