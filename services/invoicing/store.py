"""Invoicing's repository: number series and documents."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing.domain import Document
from services.invoicing.tables import document_lines, documents, number_series


async def next_number(session: AsyncSession, series: str) -> int:
    """The next number of `series`, locked to this transaction until it commits or rolls back."""
    statement = (
        pg_insert(number_series)
        .values(series=series, last_number=1)
        .on_conflict_do_update(index_elements=["series"], set_={"last_number": number_series.c.last_number + 1})
        .returning(number_series.c.last_number)
    )
    return (await session.execute(statement)).scalar_one()


async def add_document(session: AsyncSession, document: Document) -> None:
    await session.execute(
        insert(documents).values(
            document_id=document.document_id,
            document_type=document.document_type.value,
            number=document.number,
            status=document.status.value,
            settlement_run_id=document.settlement_run_id,
            contract_id=document.contract_id,
            customer_id=document.customer_id,
            currency=document.net_total.currency,
            issue_date=document.issue_date,
            due_date=document.due_date,
            net_total=document.net_total.amount,
            tax_total=document.tax_total.amount,
            gross_total=document.gross_total.amount,
        )
    )
    await session.execute(
        insert(document_lines),
        [
            {
                "document_id": document.document_id,
                "line_no": line.line_no,
                "billable_item_id": line.billable_item_id,
                "item_code": line.item_code,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "net": line.net.amount,
                "period_start": line.period_start,
                "period_end": line.period_end,
            }
            for line in document.lines
        ],
    )
