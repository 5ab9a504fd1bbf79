"""parked messages; outbox quarantine

Revision ID: d9a1e5c73f28
Revises: 6f080cb80fde
Create Date: 2026-12-02 07:00:00.000000
"""
from typing import Sequence, Union

from shared.db import add_parking_and_outbox_quarantine, drop_parking_and_outbox_quarantine

revision: str = 'd9a1e5c73f28'
down_revision: Union[str, None] = '6f080cb80fde'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_parking_and_outbox_quarantine()


def downgrade() -> None:
    drop_parking_and_outbox_quarantine()
