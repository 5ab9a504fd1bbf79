"""Invoicing worker: `faststream run services.invoicing.app:app [--workers N]`."""

from services.invoicing import handlers
from services.invoicing.tables import messaging
from shared import topics
from shared.events import ContractChanged, PaymentAccountsChanged, ReceivablesPosted
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime.create("invoicing", handlers.settings, messaging, publishes=[topics.DOCUMENTS_CREATED])
runtime.subscribe_batch(topics.CONTRACTS_CHANGED, ContractChanged, handlers.keep_contract_terms)
runtime.subscribe_batch(topics.PAYMENT_ACCOUNTS_CHANGED, PaymentAccountsChanged, handlers.keep_payment_accounts)
runtime.subscribe_batch(topics.RECEIVABLES_POSTED, ReceivablesPosted, handlers.create_documents)
app = runtime.app()


@app.after_startup
async def _start_render_processes() -> None:
    # Once the broker is connected: starting them first would put off joining the consumer groups
    # by the seconds the schematron takes to compile, in which a broker that goes away is missed.
    if handlers.settings.render_pdfs:
        await handlers.render_pool.start()


@app.on_shutdown
async def _stop_render_processes() -> None:
    handlers.render_pool.close()
