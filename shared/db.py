"""PostgreSQL plumbing every service reuses: engine and transactions, the inbox and outbox
tables that each service database carries, and the migration runner."""

from __future__ import annotations

import functools
import weakref
import zlib
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable, NamedTuple, Sequence

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    any_,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Executable,
    Select,
    Uuid,
    bindparam,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, Insert, insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


class Database:
    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        # No pool_pre_ping: it costs three round trips per checkout (BEGIN, ";", ROLLBACK), more than
        # many a small batch's own statements. A connection the server closed (a restart) is known to
        # asyncpg without asking; one that broke silently fails its first statement, which is a
        # transient error: a consumer retries it on a fresh connection, an API request fails once.
        self.engine = create_async_engine(url, pool_size=pool_size)
        event.listen(self.engine.sync_engine, "checkout", _refuse_closed)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _refuse_closed(dbapi_connection, _record, _proxy) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")  # the pool connects again


async def in_transaction(session: AsyncSession) -> asyncpg.Connection:
    """The session's asyncpg connection, inside the session's transaction. SQLAlchemy's adapter
    begins the transaction lazily, at its own first statement: a statement sent to asyncpg before
    that would run (and commit) on its own, outside the transaction.

    Kept in the session for as long as that transaction lasts: asking SQLAlchemy again took two
    greenlet hops a statement, and a consumer's batch and its relay run eleven (a rating batch of
    one event and its publication: 1.7 ms of CPU in finding the connection, 0.8 ms kept)."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_KEPT_CONNECTION)
    if kept is not None and transaction is not None and kept[0]() is transaction:
        return kept[1]
    pooled = await (await session.connection()).get_raw_connection()
    if not pooled.driver_connection.is_in_transaction():
        await pooled.dbapi_connection._start_transaction()  # what the adapter does before its first statement
    # Keyed by the transaction: once it ends, the session's next one may be on another connection.
    # Read again, not `transaction`: session.connection() begins one if the session had none. By a
    # weak reference: the transaction refers to its session, whose info would refer back to it, and
    # that cycle of some forty objects a transaction was left for the garbage collector (at 1,000
    # events/s, a pause of about 60 ms every few seconds, in which the events arriving waited).
    session.info[_KEPT_CONNECTION] = (weakref.ref(session.sync_session.get_transaction()), pooled.driver_connection)
    return pooled.driver_connection


_KEPT_CONNECTION = "shared.db.in_transaction"


def unnested(table: Table, columns: Sequence[str], rows: Sequence[tuple] = ()) -> Select:
    """The rows as a SELECT of one array parameter per column (unnest in lockstep): one statement
    with as many parameters as columns however many rows, where SQLAlchemy would otherwise build
    and send parameters per row (an upsert's, a lookup's or `insert_rows`' batch).
    Without rows, for a `CompiledOnce` statement that takes them as `column_arrays`."""
    arrays = column_arrays(columns, rows)
    return select(*(func.unnest(bindparam(parameter, arrays[parameter], type_=ARRAY(table.c[name].type))).label(name)
                    for name, parameter in zip(columns, arrays, strict=True)))


def among(column: Column, values: Iterable) -> ColumnElement[bool]:
    """`column = ANY(values)` with the values as one array parameter: a batch's hundreds of ids as
    IN (...) would be a parameter each, and a statement text of its own for every batch size, and
    more ids than PostgreSQL takes parameters (32,767) would not go at all. As `= ANY` PostgreSQL
    looks the values up in the column's index; as `IN (SELECT unnest(...))` it hash-joined them
    with a scan of the whole table once a contract had many rows (110 ms instead of 15). Each value
    goes once, in the order given: sorting a batch's 5,000 UUIDs took a millisecond of Python
    comparisons, and the order of `= ANY`'s values changes neither the rows nor the plan."""
    return column == any_(bindparam(f"{column.name}_values", list(dict.fromkeys(values)), type_=ARRAY(column.type),
                                    unique=True))


def any_of(column: Column) -> ColumnElement[bool]:
    """`among` in a `CompiledOnce` statement: `column = ANY(:<column>_values)`, whose values are
    given each time it runs (`<column>_values=[...]`, each value once)."""
    return column == any_(bindparam(f"{column.name}_values", type_=ARRAY(column.type)))


def column_arrays(columns: Sequence[str], rows: Sequence[tuple]) -> dict[str, list]:
    """The parameters of `unnested(table, columns)`: one list of values per column."""
    return {f"{name}_values": [row[index] for row in rows] for index, name in enumerate(columns)}


class CompiledOnce:
    """A statement compiled once and run by asyncpg on the session's connection (asyncpg prepares
    it once per connection). For PostgreSQL's INSERT ... ON CONFLICT on the consumers' paths:
    SQLAlchemy 2.0 cannot cache that construct and compiles it anew on every execution, about
    1.5 ms of CPU each, on every batch of every consumer."""

    def __init__(self, statement: Executable) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())
        self.sql = str(compiled)
        self.parameters = tuple(compiled.positiontup or ())
        # The statement's own values (a status it compares with); the callers give the arrays.
        self.constants = {name: value for name, value in compiled.params.items() if value != []}

    async def execute(self, session: AsyncSession, **values: object) -> list:
        """Run it in the session's transaction; returns the rows it returns (asyncpg records)."""
        arguments = {**self.constants, **values}
        return await (await in_transaction(session)).fetch(self.sql, *(arguments[name] for name in self.parameters))


# Fewer rows than this go as one INSERT of unnested arrays, in one round trip; more with COPY,
# which takes two (the COPY, then its data) but encodes rows faster. At low traffic a consumer's
# batch is a handful of rows, and its round trips are most of what it costs.
COPY_FROM_ROWS = 100


async def insert_rows(session: AsyncSession, table: Table, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Write rows on the session's own connection (so in its transaction), in one statement
    however many rows: a few as one INSERT (`inserting`), many with PostgreSQL's COPY."""
    rows = list(rows)
    if not rows:
        return
    if len(rows) < COPY_FROM_ROWS:
        await _inserting(table, tuple(columns)).execute(session, **column_arrays(columns, rows))
        return
    await (await in_transaction(session)).copy_records_to_table(table.name, columns=list(columns), records=rows)


def inserting(table: Table, columns: Sequence[str]) -> Insert:
    """PostgreSQL's INSERT of the rows given as `column_arrays` (`unnested`), for a `CompiledOnce`:
    one statement for a batch of any size, which may go on with ON CONFLICT or RETURNING."""
    return insert(table).from_select(columns, unnested(table, columns))


@functools.cache
def _inserting(table: Table, columns: tuple[str, ...]) -> CompiledOnce:
    return CompiledOnce(inserting(table, columns))


class MessagingTables(NamedTuple):
    inbox: Table
    outbox: Table
    parked: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """The inbox (what this service has applied), the outbox (what it has still to publish) and
    the parked messages (what it could not apply yet because something it needs has not arrived)."""
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(64), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        # A resend with the same id must carry the same content; the digest lets us tell.
        Column("payload_digest", String(64), nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(64), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # A row the broker can never take (too large, refused) is set aside with the reason instead
        # of being retried forever ahead of the rows behind it.
        Column("quarantined_at", DateTime(timezone=True)),
        Column("quarantine_reason", String(2000)),
        # Who caused the event, when a person or token did (published as the billing-actor header).
        Column("actor", String(200)),
        Index("outbox_pending", "id", postgresql_where=text("published_at IS NULL AND quarantined_at IS NULL")),
    )
    parked = Table(
        "parked",
        metadata,
        Column("consumer", String(64), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("topic", String(255), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        # The message's key (its contract): applying a message of the same key re-drives it at once.
        Column("key", String(64), index=True),
        Column("payload", LargeBinary, nullable=False),
        Column("waiting_for", String(2000), nullable=False),
        Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    )
    return MessagingTables(inbox, outbox, parked)


def add_parking_and_outbox_quarantine() -> None:
    """The migration step every service database takes to get `parked` and the outbox quarantine.

    Written once here because the four services' messaging tables are the same shape; it is the
    body of each service's migration that introduced them and must not change afterwards."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column("outbox", sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("quarantine_reason", sa.String(length=2000), nullable=True))
    op.drop_index("outbox_unpublished", table_name="outbox")
    op.create_index("outbox_pending", "outbox", ["id"], unique=False,
                    postgresql_where=sa.text("published_at IS NULL AND quarantined_at IS NULL"))
    op.create_table(
        "parked",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("waiting_for", sa.String(length=2000), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_index("ix_parked_key", "parked", ["key"], unique=False)
    op.create_index("ix_parked_next_attempt_at", "parked", ["next_attempt_at"], unique=False)


def drop_parking_and_outbox_quarantine() -> None:
    import sqlalchemy as sa
    from alembic import op

    op.drop_table("parked")
    op.drop_index("outbox_pending", table_name="outbox")
    op.create_index("outbox_unpublished", "outbox", ["id"], unique=False,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.drop_column("outbox", "quarantine_reason")
    op.drop_column("outbox", "quarantined_at")


def advisory_lock_key(name: str) -> int:
    """A stable 32-bit key for pg_advisory_*lock, so names never collide across processes."""
    return zlib.crc32(name.encode())


def _alembic_config(service: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", f"services.{service}:migrations")
    config.attributes["connection"] = connection
    return config


async def migrate(service: str, url: str) -> None:
    """Bring `service`'s database to the newest migration.

    Every worker of a service calls this at start; the advisory lock makes concurrent starts
    (`--workers N`, several replicas) take turns instead of racing on DDL.
    """
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key(f"migrate:{service}")}
            )
            await connection.run_sync(lambda sync: command.upgrade(_alembic_config(service, sync), "head"))
    finally:
        await engine.dispose()


async def migrations_at_head(service: str, engine: AsyncEngine) -> bool:
    """Whether `service`'s database is at the newest migration of its history (readiness: a worker
    whose code expects a newer schema than its database has must not take messages)."""
    async with engine.connect() as connection:
        current = set((await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    return current == migration_heads(service)


@functools.cache
def migration_heads(service: str) -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(_alembic_config(service)).get_heads())


def run_migrations(target_metadata: MetaData) -> None:
    """The body of every service's alembic env.py: migrate on the connection `migrate` handed in."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through shared.db.migrate (e.g. `billing migrate`)")
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def new_revision(service: str, url: str, message: str) -> None:
    """Autogenerate `service`'s next migration from the difference between its tables and `url`."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.revision(_alembic_config(service, sync), message=message, autogenerate=True)
            )
    finally:
        await engine.dispose()
