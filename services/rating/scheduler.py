"""The period close, driven by a clock: `close_due(database, now)` is one tick.

Each tick charges the recurring fees of the periods begun by `now` and closes the periods that
ended `grace_days` before it (minimum top-ups), each contract by its own business day and in its
own transaction, and announces each closed period on periods.closed, which is what bills it. The
worker ticks with the system clock every `period_close_interval_s`; the `close-periods` command
and the tests tick with an instant of their own. Every worker may tick at once: the contract row
lock serializes them and derived ids charge nothing twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Callable, Sequence

from services.rating import handlers, store
from services.rating.contracts import operate, read
from shared.db import Database
from shared.loop import BackgroundLoop
from shared.access.domain import Actor
from shared.access.store import Change
from shared.outbox import Outgoing

log = logging.getLogger("billing.rating.period-close")

LATEST_UTC_OFFSET = timedelta(hours=14)


async def close_due(database: Database, now: datetime, *, grace_days: int = 0,
                    contract_ids: Sequence[str] | None = None, actor: Actor | None = None) -> list[Outgoing]:
    """Close every contract's due periods (of `contract_ids` only, if given); returns what it emitted.
    Closed for an `actor` (an operator's command), each contract's close is in the audit trail."""
    # The latest business day anywhere at `now` (UTC+14): each contract then goes by its own.
    due = await read(database, store.contract_ids_to_close, (now + LATEST_UTC_OFFSET).date())
    charged: list[Outgoing] = []
    for contract_id in due if contract_ids is None else [cid for cid in due if cid in contract_ids]:
        try:
            change = None if actor is None else Change(actor, "periods.close", contract_id, {
                "as_of": now.isoformat(), "grace_days": grace_days})
            charged.extend(await operate(database, handlers.close_periods, contract_id, now, grace_days, change=change))
        except Exception:
            # One contract's failure must not hold up the others; it is closed again next tick.
            log.exception("closing the periods of %s failed", contract_id)
    return charged


def period_closer(database: Database, interval_s: float, grace_days: int,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> BackgroundLoop:
    """The worker's loop that ticks `close_due` with its clock (the system clock unless a test's)."""

    async def tick() -> bool:
        emitted = await close_due(database, clock(), grace_days=grace_days)
        if emitted:
            log.info("period close: %d item(s) charged and period(s) closed", len(emitted))
        return False

    return BackgroundLoop("rating-period-close", tick, interval_s, log)
