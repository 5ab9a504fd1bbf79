"""Payments worker: `faststream run services.payments.app:app [--workers N]`.

Its outbox relay also publishes the payments.received events the webhook bridge
(services.payments.bridge) writes to payments' outbox, and the payment-accounts.changed events
of changes to customers' payment accounts (operator commands, the portal, mandate webhooks).
"""

from services.payments import handlers
from services.payments.settings import PaymentsSettings
from services.payments.tables import messaging
from shared import topics
from shared.events import DocumentCreated, PaymentReceived
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime.create("payments", PaymentsSettings(), messaging,
                                publishes=[topics.PAYMENTS_RECEIVED, topics.PAYMENT_ACCOUNTS_CHANGED])
runtime.subscribe_batch(topics.DOCUMENTS_CREATED, DocumentCreated, handlers.record_documents)
runtime.subscribe(topics.PAYMENTS_RECEIVED, PaymentReceived, handlers.record_payment)
app = runtime.app()
