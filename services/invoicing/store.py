"""Invoicing's repository: contract replicas, number series, documents and their PDFs."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.invoicing.domain import ContractTerms, DirectDebit, Document, Party
from services.invoicing.tables import (
    contract_terms,
    customer_payment_accounts,
    document_einvoices,
    document_line_sources,
    document_lines,
    document_pdfs,
    document_tax_lines,
    documents,
    number_series,
)
from shared.events import DocumentType, EInvoiceFormat, PaymentAccountsChanged, TaxCategory


def _party_json(party: Party) -> dict[str, Any]:
    return {**dataclasses.asdict(party), "address_lines": list(party.address_lines)}


def _party(data: dict[str, Any]) -> Party:
    """A party as stored; parties stored before it had postal code, city or contact take the defaults."""
    return Party(**{**data, "address_lines": tuple(data["address_lines"])})


async def save_contract_terms(session: AsyncSession, snapshots: Sequence[ContractTerms]) -> int:
    """Keep the snapshots (one per contract) unless a newer revision is already held; returns how many were kept."""
    if not snapshots:
        return 0
    statement = pg_insert(contract_terms)
    statement = statement.on_conflict_do_update(
        index_elements=[contract_terms.c.contract_id],
        set_={**{name: statement.excluded[name] for name in ("revision", "customer_id", "customer", "tax_categories")},
              "updated_at": func.now()},
        where=contract_terms.c.revision < statement.excluded.revision,
    ).returning(contract_terms.c.contract_id)
    kept = await session.execute(statement, [
        {
            "contract_id": terms.contract_id,
            "revision": terms.revision,
            "customer_id": terms.customer_id,
            "customer": _party_json(terms.customer),
            "tax_categories": {code: category.value for code, category in terms.tax_categories.items()},
        }
        for terms in snapshots
    ])
    return len(kept.all())


async def find_contract_terms(session: AsyncSession, contract_ids: Iterable[str]) -> dict[str, ContractTerms]:
    rows = await session.execute(select(contract_terms).where(contract_terms.c.contract_id.in_(set(contract_ids))))
    return {
        row.contract_id: ContractTerms(
            contract_id=row.contract_id,
            revision=row.revision,
            customer_id=row.customer_id,
            customer=_party(row.customer),
            tax_categories={code: TaxCategory(category) for code, category in row.tax_categories.items()},
        )
        for row in rows
    }


async def save_payment_accounts(session: AsyncSession, changes: Sequence[PaymentAccountsChanged]) -> None:
    """Keep each customer's newest default account (one change per customer), unless a newer one is held."""
    if not changes:
        return
    statement = pg_insert(customer_payment_accounts)
    statement = statement.on_conflict_do_update(
        index_elements=[customer_payment_accounts.c.customer_id],
        set_={name: statement.excluded[name] for name in ("changed_at", "mandate_reference", "iban")},
        where=customer_payment_accounts.c.changed_at <= statement.excluded.changed_at,
    )
    await session.execute(statement, [
        {"customer_id": change.customer_id, "changed_at": change.occurred_at,
         **({"mandate_reference": account.mandate_reference, "iban": account.iban}
            if (account := change.default_account) is not None and account.mandate_active
            else {"mandate_reference": None, "iban": None})}
        for change in changes
    ])


async def direct_debits(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, DirectDebit]:
    """The customers whose default account is an active SEPA mandate, with it."""
    rows = await session.execute(select(customer_payment_accounts).where(
        customer_payment_accounts.c.customer_id.in_(set(customer_ids)),
        customer_payment_accounts.c.mandate_reference.is_not(None)))
    return {row.customer_id: DirectDebit(row.mandate_reference, row.iban) for row in rows}


async def invoice_numbers_of_runs(session: AsyncSession, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    run_ids = set(run_ids)
    if not run_ids:
        return {}
    rows = await session.execute(
        select(documents.c.settlement_run_id, documents.c.number).where(
            documents.c.settlement_run_id.in_(run_ids),
            documents.c.document_type == DocumentType.INVOICE.value,
        )
    )
    return {row.settlement_run_id: row.number for row in rows}


async def last_numbers(session: AsyncSession, series: Iterable[str]) -> dict[str, int]:
    """The last number issued in each series (0 for a new one), as it stands, without locking it."""
    names = set(series)
    rows = await session.execute(select(number_series.c.series, number_series.c.last_number)
                                 .where(number_series.c.series.in_(names)))
    return {name: 0 for name in names} | dict(rows.all())


async def lock_series(session: AsyncSession, series: Iterable[str]) -> dict[str, int]:
    """The last number issued in each series (0 for a new one), its row locked until the transaction
    commits or rolls back. Locked in series order, so concurrent workers never deadlock."""
    names = sorted(set(series))
    if not names:
        return {}
    await session.execute(pg_insert(number_series).on_conflict_do_nothing(),
                          [{"series": name, "last_number": 0} for name in names])
    rows = await session.execute(
        select(number_series.c.series, number_series.c.last_number)
        .where(number_series.c.series.in_(names)).order_by(number_series.c.series).with_for_update()
    )
    return dict(rows.all())


_advance_series = (
    update(number_series)
    .where(number_series.c.series == bindparam("name"))
    .values(last_number=bindparam("last"))
)


async def advance_series(session: AsyncSession, last_numbers: Mapping[str, int]) -> None:
    """Record the last numbers issued in series this transaction holds (`lock_series`)."""
    if last_numbers:
        await session.execute(_advance_series, [{"name": name, "last": last} for name, last in last_numbers.items()])


@dataclass(frozen=True, slots=True)
class EInvoice:
    """One of a document's EN 16931 XMLs as issued, and what its validation said."""

    format: EInvoiceFormat
    content: bytes
    sha256: str
    validation: str


@dataclass(frozen=True, slots=True)
class Issued:
    """A finalized document with its PDF and e-invoices, if they were rendered."""

    document: Document
    pdf: bytes | None
    pdf_sha256: str | None
    einvoices: tuple[EInvoice, ...] = ()


async def add_documents(session: AsyncSession, issued: Sequence[Issued]) -> None:
    if not issued:
        return
    await session.execute(insert(documents), [_document_row(one.document) for one in issued])
    await session.execute(
        insert(document_lines),
        [
            {
                "document_id": one.document.document_id,
                "line_no": line.line_no,
                "item_code": line.item_code,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "discount": line.discount.amount,
                "net": line.net.amount,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "tax_category": line.tax_category.value,
                "vat_category": line.vat.category.value,
                "vat_rate": line.vat.rate,
                "credit_reason": line.credit_reason.value if line.credit_reason else None,
                "corrects_number": line.corrects_number,
            }
            for one in issued
            for line in one.document.lines
        ],
    )
    await session.execute(
        insert(document_line_sources),
        [
            {"source_id": source_id, "document_id": one.document.document_id, "line_no": line.line_no}
            for one in issued
            for line in one.document.lines
            for source_id in line.source_ids
        ],
    )
    await session.execute(
        insert(document_tax_lines),
        [
            {"document_id": one.document.document_id, "vat_category": line.vat.category.value,
             "vat_rate": line.vat.rate, "base": line.base.amount, "tax": line.tax.amount}
            for one in issued
            for line in one.document.tax_lines
        ],
    )
    pdfs = [{"document_id": one.document.document_id, "content": one.pdf, "sha256": one.pdf_sha256}
            for one in issued if one.pdf is not None]
    if pdfs:
        await session.execute(insert(document_pdfs), pdfs)
    einvoices = [{"document_id": one.document.document_id, "format": xml.format.value, "content": xml.content,
                  "sha256": xml.sha256, "validation": xml.validation}
                 for one in issued for xml in one.einvoices]
    if einvoices:
        await session.execute(insert(document_einvoices), einvoices)


def _document_row(document: Document) -> dict[str, Any]:
    period_start, period_end = document.service_period
    return dict(
        document_id=document.document_id,
        document_type=document.document_type.value,
        number=document.number,
        status=document.status.value,
        settlement_run_id=document.settlement_run_id,
        contract_id=document.contract_id,
        customer_id=document.customer_id,
        currency=document.currency,
        issue_date=document.issue_date,
        due_date=document.due_date,
        service_period_start=period_start,
        service_period_end=period_end,
        net_total=document.net_total.amount,
        tax_total=document.tax_total.amount,
        gross_total=document.gross_total.amount,
        seller=_party_json(document.seller),
        customer=_party_json(document.customer),
        payment_terms=document.payment_terms,
        notes=list(document.notes),
        corrects_number=document.corrects_number,
    )


async def pdf_by_number(session: AsyncSession, number: str) -> bytes | None:
    """The stored PDF of the document numbered `number` (for the admin command or an API)."""
    return await session.scalar(
        select(document_pdfs.c.content)
        .join(documents, documents.c.document_id == document_pdfs.c.document_id)
        .where(documents.c.number == number)
    )


async def einvoice_by_number(session: AsyncSession, number: str) -> bytes | None:
    """The stored e-invoice of the document numbered `number`, as it was issued: the XRechnung XML
    for a customer who receives XRechnung, else the Factur-X XML (the one in the PDF)."""
    return await session.scalar(
        select(document_einvoices.c.content)
        .join(documents, documents.c.document_id == document_einvoices.c.document_id)
        .where(documents.c.number == number)
        .order_by((document_einvoices.c.format == EInvoiceFormat.FACTUR_X.value).asc()).limit(1)
    )
