"""Runs due by a clock: on-demand runs for a cutoff still ahead when they were asked for.

A period's run needs no clock here: rating closes the period by the contract's business day and
announces it on periods.closed, which bills it (handlers.bill_closed_period). `run_due(database,
as_of)` is one tick: the pending runs whose cutoff has passed are opened, then every open run is
settled, run by run (a run that failed stays open and is settled again from scratch). The worker
calls it with the system clock every `scheduler_interval_s`; the `run-due` command and the tests
call it with an instant of their own. Every worker may tick at once: each run is settled by
whoever locks it first, and the contract's account lock serializes it with the other runs, so no
item is settled twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Callable, Sequence

from services.settlement import handlers, store
from services.settlement.tables import audit_records, messaging
from shared.access.domain import Actor
from shared.access.store import Change
from shared.access.store import record as record_change
from shared.db import Database
from shared.loop import BackgroundLoop
from shared.outbox import write_outbox

log = logging.getLogger("billing.settlement.scheduler")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


async def run_due(database: Database, as_of: datetime, *, contract_ids: Sequence[str] | None = None,
                  clock: Clock = system_clock, actor: Actor | None = None) -> list[uuid.UUID]:
    """Settle what is due at `as_of` (for `contract_ids` only, if given); returns the runs it settled.
    Settled for an `actor` (an operator's command), each run is in the audit trail.

    Entries are booked at `clock()`: the ledger says when it was written, whatever instant was asked about.
    """
    async with database.transaction() as session:
        await store.open_pending_runs(session, as_of, contract_ids)

    settled: list[uuid.UUID] = []
    failed: list[uuid.UUID] = []
    while True:
        record = None
        try:
            async with database.transaction() as session:
                record = await store.claim_open_run(session, as_of, contract_ids, failed)
                if record is None:
                    break
                outgoing = await handlers.settle_open_run(session, record, booked_at=clock())
                await write_outbox(session, messaging, outgoing, actor.label if actor else None)
                if actor is not None and outgoing:
                    await record_change(session, audit_records, Change(actor, "billing-run.settle", record.contract_id, {
                        "settlement_run_id": str(record.settlement_run_id), "as_of": as_of.isoformat()}))
        except Exception:
            if record is None:
                raise
            # It stays open and is settled again, from scratch, on the next tick.
            log.exception("settling run %s of %s failed", record.settlement_run_id, record.contract_id)
            failed.append(record.settlement_run_id)
            continue
        if outgoing:
            settled.append(record.settlement_run_id)
    return settled


def scheduler(database: Database, interval_s: float, clock: Clock = system_clock, *,
              contract_ids: Sequence[str] | None = None) -> BackgroundLoop:
    """The worker's loop that ticks `run_due` with its clock (and, for a test, only `contract_ids`)."""

    async def tick() -> bool:
        settled = await run_due(database, clock(), contract_ids=contract_ids, clock=clock)
        if settled:
            log.info("scheduled billing: settled %d run(s)", len(settled))
        else:
            log.debug("scheduled billing: nothing due")
        return False

    return BackgroundLoop("settlement-scheduler", tick, interval_s, log)
