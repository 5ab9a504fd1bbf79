"""audit trail; the outbox's actor

Revision ID: 41a81b861313
Revises: 9a4c7e2f1b53
Create Date: 2026-12-03 14:30:00.000000
"""
from typing import Sequence, Union

from shared.access.tables import add_outbox_actor, drop_outbox_actor, create_audit_trail, drop_audit_trail

revision: str = '41a81b861313'
down_revision: Union[str, None] = '9a4c7e2f1b53'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_outbox_actor()
    create_audit_trail()


def downgrade() -> None:
    drop_audit_trail()
    drop_outbox_actor()
