"""What the portal reads from invoicing's database: documents and their stored PDFs."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sqlalchemy import Date, DateTime, LargeBinary, Numeric, String, Uuid, column, exists, select, table
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
)
document_pdfs = table("document_pdfs", column("document_id", Uuid), column("content", LargeBinary))
document_einvoices = table("document_einvoices", column("document_id", Uuid), column("format", String),
                           column("content", LargeBinary))
# A document's files as invoicing stored them when it was issued.
FILES = {"pdf": document_pdfs, "xml": document_einvoices}

DOCUMENT_SORTS = {"issue_date": documents.c.issue_date, "number": documents.c.number,
                  "due_date": documents.c.due_date, "gross_total": documents.c.gross_total}


async def documents_page(connection: AsyncConnection, customer_id: str, *, contract_id: str | None,
                         period: Period | None, document_type: str | None, status: str | None, sort: Sort,
                         page: PageRequest) -> Page[Row[Any]]:
    docs = documents.c
    has_einvoice = exists().where(document_einvoices.c.document_id == docs.document_id).label("has_einvoice")
    query = select(documents, has_einvoice).where(docs.customer_id == customer_id)
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


async def numbers_of_runs(connection: AsyncConnection, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The documents each settlement run produced (an invoice, a credit note), by number."""
    found: dict[uuid.UUID, list[str]] = {}
    if not run_ids:
        return found
    rows = await connection.execute(select(documents.c.settlement_run_id, documents.c.number)
                                    .where(documents.c.settlement_run_id.in_(run_ids)).order_by(documents.c.number))
    for row in rows:
        found.setdefault(row.settlement_run_id, []).append(row.number)
    return found


async def document_file(connection: AsyncConnection, customer_id: str, number: str, kind: str) -> bytes | None:
    """The file (`pdf` or `xml`, the e-invoice) stored when document `number` was issued, if it is the
    customer's. Its e-invoice is the XRechnung XML for a customer who receives XRechnung, else the
    Factur-X XML (the one the PDF carries)."""
    files = FILES[kind]
    query = (select(files.c.content)
             .join_from(files, documents, files.c.document_id == documents.c.document_id)
             .where(documents.c.customer_id == customer_id, documents.c.number == number))
    if kind == "xml":
        query = query.order_by((document_einvoices.c.format == "factur-x").asc()).limit(1)
    return await connection.scalar(query)
