"""Settlement worker: `faststream run services.settlement.app:app [--workers N]`."""

from services.settlement import handlers
from services.settlement.settings import SettlementSettings
from services.settlement.tables import messaging
from shared import topics
from shared.events import BillingRunRequested, PaymentReceived, RatedItem
from shared.messaging import ServiceRuntime

runtime = ServiceRuntime.create("settlement", SettlementSettings(), messaging, publishes=[topics.RECEIVABLES_POSTED])
runtime.subscribe(topics.ITEMS_RATED, RatedItem, handlers.record_rated_item)
runtime.subscribe(topics.BILLING_RUNS_REQUESTED, BillingRunRequested, handlers.run_billing)
runtime.subscribe(topics.PAYMENTS_RECEIVED, PaymentReceived, handlers.post_payment)
app = runtime.app()
