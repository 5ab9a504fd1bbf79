"""Scheduled billing runs: at the end of each contract's billing period, driven by a clock.

`run_due(database, as_of)` is one tick: what is due at `as_of` is recorded, then settled run by
run. The worker calls it with the system clock every `scheduler_interval_s`; the `run-due`
command and the tests call it with an instant of their own. Every worker may tick at once: due
runs have ids derived from contract and period, each run is settled by whoever locks it first,
and the contract's account lock serializes it with on-demand runs, so no item is settled twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Callable, Sequence

from services.settlement import domain, handlers, store
from services.settlement.domain import RunStatus
from services.settlement.store import RunRecord
from services.settlement.tables import messaging
from shared.db import Database
from shared.loop import BackgroundLoop
from shared.outbox import write_outbox

log = logging.getLogger("billing.settlement.scheduler")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


async def run_due(database: Database, as_of: datetime, *, contract_ids: Sequence[str] | None = None,
                  clock: Clock = system_clock) -> list[uuid.UUID]:
    """Settle what is due at `as_of` (for `contract_ids` only, if given); returns the runs it settled.

    Due are: each contract's run for the latest billing period that ended by `as_of`, if items
    used before the period's end are unsettled, and pending runs whose cutoff has passed. Entries
    are booked at `clock()`: the ledger says when it was written, whatever instant was asked about.
    """
    period_start, period_end = domain.latest_ended_period(as_of)
    cutoff = domain.period_cutoff(period_end)
    async with database.transaction() as session:
        accounts = await store.accounts_with_unsettled_before(session, cutoff, contract_ids)
        await store.record_runs(session, [
            (account, RunRecord(domain.scheduled_run_id(account.contract_id, period_end), account.contract_id,
                                cutoff, RunStatus.OPEN, "schedule", period_start, period_end))
            for account in accounts
        ])
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
                await write_outbox(session, messaging, outgoing)
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
