"""audit trail; the outbox's actor

Revision ID: 740aaa3d1ad3
Revises: 5c9e0b7d3a62
Create Date: 2026-12-03 14:30:00.000000
"""
from typing import Sequence, Union

from shared.access.tables import add_outbox_actor, drop_outbox_actor, create_audit_trail, drop_audit_trail

revision: str = '740aaa3d1ad3'
down_revision: Union[str, None] = '5c9e0b7d3a62'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_outbox_actor()
    create_audit_trail()


def downgrade() -> None:
    drop_audit_trail()
    drop_outbox_actor()
