"""Settlement worker: `faststream run services.settlement.app:app [--workers N]`."""

from services.settlement import handlers
from services.settlement.scheduler import scheduler
from services.settlement.settings import SettlementSettings
from services.settlement.tables import messaging
from shared import topics
from shared.backlog import AppliedThrough
from shared.events import (
    BillingRunRequested,
    ContractChanged,
    DocumentCreated,
    PaymentReceived,
    PeriodClosed,
    RatedItem,
)
from shared.runtime import ServiceRuntime

settings = SettlementSettings()
runtime = ServiceRuntime.create("settlement", settings, messaging, publishes=[topics.RECEIVABLES_POSTED])
runtime.subscribe_batch(topics.CONTRACTS_CHANGED, ContractChanged, handlers.record_contracts)
runtime.subscribe_batch(topics.ITEMS_RATED, RatedItem, handlers.record_rated_items)
runtime.subscribe(topics.PERIODS_CLOSED, PeriodClosed, handlers.bill_closed_period)
# Runs bill what settlement's consumer of items.rated applied of what was rated before them.
rated_items = AppliedThrough(runtime.kafka, runtime.group_of(topics.ITEMS_RATED), topics.ITEMS_RATED)
runtime.subscribe_batch(topics.BILLING_RUNS_REQUESTED, BillingRunRequested,
                        handlers.billing_runs(rated_items, settings.run_waits_for_rated_s))
runtime.subscribe(topics.PAYMENTS_RECEIVED, PaymentReceived, handlers.post_payment)
runtime.subscribe_batch(topics.DOCUMENTS_CREATED, DocumentCreated, handlers.post_document_tax)
app = runtime.app()
billing_scheduler = scheduler(runtime.database, settings.scheduler_interval_s)


@app.after_startup
async def _start_scheduler() -> None:
    billing_scheduler.start()  # on the worker's event loop (FastStream runs plain functions in a thread)


app.on_shutdown(billing_scheduler.stop)
app.on_shutdown(rated_items.stop)
