"""Invoicing's use cases, each inside the consumer's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing import domain, store
from services.invoicing.settings import InvoicingSettings
from shared import topics
from shared.events import DocumentCreated, ReceivablesPosted, derive_id
from shared.messaging import Outgoing
from shared.money import Money

settings = InvoicingSettings()


async def create_invoice(session: AsyncSession, event: ReceivablesPosted) -> list[Outgoing]:
    lines = [
        domain.DocumentLine(
            line_no=number,
            billable_item_id=item.billable_item_id,
            item_code=item.item_code,
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            net=Money.of(item.net, event.currency),
            period_start=item.period_start,
            period_end=item.period_end,
        )
        for number, item in enumerate(event.items, start=1)
    ]
    draft = domain.draft_invoice(
        document_id=derive_id(event.settlement_run_id, "invoice"),
        settlement_run_id=event.settlement_run_id,
        contract_id=event.contract_id,
        customer_id=event.customer_id,
        currency=event.currency,
        lines=lines,
        issue_date=event.occurred_at.date(),
        payment_terms_days=settings.payment_terms_days,
    )
    invoice = draft.finalize(await store.next_number(session, draft.series))
    await store.add_document(session, invoice)
    created = DocumentCreated(
        event_id=derive_id(invoice.document_id, "documents.created"),
        occurred_at=event.occurred_at,
        contract_id=invoice.contract_id,
        document_id=invoice.document_id,
        document_type=invoice.document_type,
        number=invoice.number,
        settlement_run_id=invoice.settlement_run_id,
        customer_id=invoice.customer_id,
        currency=invoice.net_total.currency,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        net_total=invoice.net_total.amount,
        tax_total=invoice.tax_total.amount,
        gross_total=invoice.gross_total.amount,
    )
    return [Outgoing(topics.DOCUMENTS_CREATED, created)]
