"""parked messages; outbox quarantine

Revision ID: c3f8b2d61e47
Revises: 35044f574303
Create Date: 2026-12-02 07:00:00.000000
"""
from typing import Sequence, Union

from shared.db import add_parking_and_outbox_quarantine, drop_parking_and_outbox_quarantine

revision: str = 'c3f8b2d61e47'
down_revision: Union[str, None] = '35044f574303'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_parking_and_outbox_quarantine()


def downgrade() -> None:
    drop_parking_and_outbox_quarantine()
