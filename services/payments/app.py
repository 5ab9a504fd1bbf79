"""Payments worker: `faststream run services.payments.app:app [--workers N]`."""

from services.payments import handlers
from services.payments.settings import PaymentsSettings
from services.payments.tables import messaging
from shared import topics
from shared.events import DocumentCreated, PaymentReceived
from shared.messaging import ServiceRuntime

runtime = ServiceRuntime.create("payments", PaymentsSettings(), messaging)
runtime.subscribe(topics.DOCUMENTS_CREATED, DocumentCreated, handlers.open_item_for_invoice)
runtime.subscribe(topics.PAYMENTS_RECEIVED, PaymentReceived, handlers.record_payment)
app = runtime.app()
