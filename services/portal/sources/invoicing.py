"""What the portal reads from invoicing's database: documents with their lines and tax, and their stored PDFs."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sqlalchemy import Date, DateTime, Integer, LargeBinary, Numeric, String, Uuid, column, select, table
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.portal.listing import Page, PageRequest, Period, Sort, fetch_page

documents = table(
    "documents",
    column("document_id", Uuid), column("document_type", String), column("number", String),
    column("status", String), column("settlement_run_id", Uuid), column("contract_id", String),
    column("customer_id", String), column("currency", String), column("issue_date", Date),
    column("due_date", Date), column("service_period_start", Date), column("service_period_end", Date),
    column("net_total", Numeric), column("tax_total", Numeric), column("gross_total", Numeric),
    column("corrects_number", String), column("finalized_at", DateTime(timezone=True)),
    column("payment_terms", String),
)
document_lines = table(
    "document_lines",
    column("document_id", Uuid), column("line_no", Integer), column("item_code", String),
    column("description", String), column("quantity", Numeric), column("unit_price", Numeric),
    column("discount", Numeric), column("net", Numeric), column("period_start", Date), column("period_end", Date),
    column("vat_category", String), column("vat_rate", Numeric), column("credit_reason", String),
)
document_tax_lines = table(
    "document_tax_lines",
    column("document_id", Uuid), column("vat_category", String), column("vat_rate", Numeric),
    column("base", Numeric), column("tax", Numeric),
)
document_pdfs = table("document_pdfs", column("document_id", Uuid), column("content", LargeBinary))

DOCUMENT_SORTS = {"issue_date": documents.c.issue_date, "number": documents.c.number,
                  "due_date": documents.c.due_date, "gross_total": documents.c.gross_total}


async def documents_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                         period: Period | None, document_type: str | None, status: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    docs = documents.c
    query = select(documents).where(docs.customer_id == customer_id)
    if contract_id:
        query = query.where(docs.contract_id == contract_id)
    if period:
        query = query.where(period.where(docs.issue_date))
    if document_type:
        query = query.where(docs.document_type == document_type)
    if status:
        query = query.where(docs.status == status)
    return await fetch_page(connection, query, sort=sort, sortable=DOCUMENT_SORTS,
                            tiebreak=[docs.number.desc()], page=page)


async def documents_of_runs(connection: AsyncConnection,
                            run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """The documents each settlement run produced (an invoice, a credit note): number, type, issue date."""
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    if not run_ids:
        return found
    docs = documents.c
    rows = await connection.execute(select(docs.settlement_run_id, docs.number, docs.document_type, docs.issue_date)
                                    .where(docs.settlement_run_id.in_(run_ids)).order_by(docs.number))
    for row in rows:
        found.setdefault(row.settlement_run_id, []).append(row)
    return found


async def numbers_of_runs(connection: AsyncConnection, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    return {run_id: [row.number for row in rows]
            for run_id, rows in (await documents_of_runs(connection, run_ids)).items()}


async def document(connection: AsyncConnection, customer_id: str, number: str) -> Row[Any] | None:
    return (await connection.execute(select(documents).where(
        documents.c.customer_id == customer_id, documents.c.number == number))).first()


async def lines_of(connection: AsyncConnection, document_id: uuid.UUID) -> list[Row[Any]]:
    return list((await connection.execute(select(document_lines).where(document_lines.c.document_id == document_id)
                                          .order_by(document_lines.c.line_no))).all())


async def tax_lines_of(connection: AsyncConnection, document_id: uuid.UUID) -> list[Row[Any]]:
    taxes = document_tax_lines.c
    return list((await connection.execute(select(document_tax_lines).where(taxes.document_id == document_id)
                                          .order_by(taxes.vat_category, taxes.vat_rate))).all())


async def corrections_of(connection: AsyncConnection, number: str) -> list[Row[Any]]:
    """The credit notes that correct document `number`."""
    docs = documents.c
    return list((await connection.execute(select(docs.number, docs.document_type, docs.issue_date)
                                          .where(docs.corrects_number == number).order_by(docs.number))).all())


async def pdf(connection: AsyncConnection, customer_id: str, number: str) -> bytes | None:
    """The PDF stored when document `number` was finalized, if it is one of the customer's."""
    return await connection.scalar(
        select(document_pdfs.c.content)
        .join_from(document_pdfs, documents, document_pdfs.c.document_id == documents.c.document_id)
        .where(documents.c.customer_id == customer_id, documents.c.number == number))
