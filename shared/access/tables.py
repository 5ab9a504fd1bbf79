"""The access database's tables (operators, API tokens, sessions, failed sign-ins, and the audit
of its own changes), and the audit trail table each service database carries."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


def audit_table(metadata: MetaData) -> Table:
    """Who changed what, when and from where: append-only (a trigger refuses UPDATE, DELETE and
    TRUNCATE, see `create_audit_trail`), written in the transaction of the change it records."""
    return Table(
        "audit_records",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("actor", String(200), nullable=False),  # user:<name> or token:<name>
        Column("role", String(20), nullable=False),
        Column("credential_id", String(32)),
        Column("source", String(100)),  # the client's address
        Column("action", String(100), nullable=False),  # e.g. contract.change, payment.assign
        Column("target", String(500), nullable=False),  # what it was done to (a contract, an item)
        Column("details", JSONB, nullable=False),
        Index("audit_records_by_time", "recorded_at"),
    )


operators = Table(
    "operators",
    metadata,
    Column("username", String(100), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    # None for someone who only signs in through the OpenID Connect provider.
    Column("password_hash", String(200)),
    # The provider's `sub` (issuer-qualified), once they have signed in that way.
    Column("oidc_subject", String(500), unique=True),
    Column("email", String(320), unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("disabled_at", DateTime(timezone=True)),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    Column("secret_digest", String(64), nullable=False, unique=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(200)),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(32), primary_key=True),
    Column("secret_digest", String(64), nullable=False, unique=True),
    Column("username", String(100), nullable=False, index=True),
    Column("source", String(100)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)

sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("username", String(100), nullable=False),
    Column("source", String(100), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("sign_in_failures_by_name", "username", "failed_at"),
    Index("sign_in_failures_by_source", "source", "failed_at"),
)

audit_records = audit_table(metadata)


def create_audit_trail() -> None:
    """The migration step that gives a database its append-only `audit_records` (and its outbox,
    if it has one, the actor of the events a change wrote). Written once here for every database
    that records changes; it is the body of their migrations and must not change afterwards."""
    import sqlalchemy as sa
    from alembic import op

    audit_table(sa.MetaData()).create(op.get_bind())
    op.execute("""
        CREATE FUNCTION audit_records_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_records is append-only: % refused', TG_OP;
        END $$""")
    op.execute("""CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
                  FOR EACH ROW EXECUTE FUNCTION audit_records_are_append_only()""")
    op.execute("""CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
                  FOR EACH STATEMENT EXECUTE FUNCTION audit_records_are_append_only()""")


def add_outbox_actor() -> None:
    """The outbox's `actor`: who caused an event (published as the billing-actor header)."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column("outbox", sa.Column("actor", sa.String(200), nullable=True))


def drop_audit_trail() -> None:
    from alembic import op

    op.drop_table("audit_records")
    op.execute("DROP FUNCTION audit_records_are_append_only()")


def drop_outbox_actor() -> None:
    from alembic import op

    op.drop_column("outbox", "actor")
