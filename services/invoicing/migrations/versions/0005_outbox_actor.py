"""the outbox's actor

Revision ID: 0a5bfb3f9e2a
Revises: 5a7e9c1d2b48
Create Date: 2026-12-03 14:30:00.000000
"""
from typing import Sequence, Union

from shared.access.tables import add_outbox_actor, drop_outbox_actor

revision: str = '0a5bfb3f9e2a'
down_revision: Union[str, None] = '5a7e9c1d2b48'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_outbox_actor()


def downgrade() -> None:
    drop_outbox_actor()
