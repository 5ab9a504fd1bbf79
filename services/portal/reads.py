"""A customer's billing data, gathered from the services' stores: what the API answers and the page shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

from sqlalchemy.engine import Row

from services.portal import domain, models
from services.portal import queries as q
from services.portal.listing import Page
from services.portal.settings import PortalSettings
from services.portal.sources import Source
from services.portal.sources import invoicing, payments, rating, settlement


@dataclass(frozen=True)
class Sources:
    rating: Source
    settlement: Source
    invoicing: Source
    payments: Source

    @classmethod
    def of(cls, settings: PortalSettings) -> Sources:
        return cls(**{service: Source(url) for service, url in settings.database_urls().items()})

    def items(self) -> list[tuple[str, Source]]:
        return [("rating", self.rating), ("settlement", self.settlement), ("invoicing", self.invoicing),
                ("payments", self.payments)]

    async def dispose(self) -> None:
        for _, source in self.items():
            await source.dispose()


def _page(page: Page[Row[Any]], query: q.ListQuery, convert: Callable[[Row[Any]], Any]) -> models.Page[Any]:
    return models.Page(items=[convert(row) for row in page.items], total=page.total, limit=page.limit,
                       offset=page.offset, sort=str(query.order))


def file_url(customer_id: str, number: str, kind: str) -> str:
    return f"/api/customers/{quote(customer_id, safe='')}/documents/{quote(number, safe='')}/{kind}"


def money(row: Row[Any], name: str) -> Any:
    return domain.minor_units(getattr(row, name), row.currency)


async def customers(sources: Sources, query: q.CustomerQuery) -> models.Page[models.CustomerSummary]:
    async with sources.rating.read() as connection:
        found = await rating.customers_page(connection, search=query.search, sort=query.order, page=query.page)
    return _page(found, query, lambda row: models.CustomerSummary(
        customer_id=row.customer_id, name=row.name, country=row.country, contracts=row.contracts))


async def customer(sources: Sources, customer_id: str) -> models.Customer | None:
    async with sources.rating.read() as connection:
        row = await rating.customer(connection, customer_id)
    if row is None:
        return None
    return models.Customer(customer_id=row.customer_id, name=row.name, country=row.country, vat_id=row.vat_id,
                           email=row.email, address_lines=row.address_lines, created_at=row.created_at,
                           updated_at=row.updated_at)


async def billable_items(sources: Sources, customer_id: str,
                         query: q.BillableItemQuery) -> models.Page[models.BillableItem]:
    async with sources.settlement.read() as connection:
        found = await settlement.billable_items_page(
            connection, customer_id, contract_id=query.contract_id, period=query.month,
            billed=None if query.status is None else query.status is models.ItemStatus.BILLED,
            charge_kind=query.type, sort=query.order, page=query.page)
    async with sources.invoicing.read() as connection:
        numbers = await invoicing.numbers_of_runs(
            connection, list({row.settlement_run_id for row in found.items if row.settlement_run_id}))
    return _page(found, query, lambda row: models.BillableItem(
        billable_item_id=row.billable_item_id, contract_id=row.contract_id, item_code=row.item_code,
        description=row.description, type=row.charge_kind, quantity=domain.plain_number(row.quantity),
        unit_price=domain.plain_number(row.unit_price), net=money(row, "net"), currency=row.currency,
        period_start=row.period_start, period_end=row.period_end, occurred_at=row.occurred_at,
        status=models.ItemStatus.BILLED if row.settlement_run_id else models.ItemStatus.UNBILLED,
        settlement_run_id=row.settlement_run_id, document_numbers=numbers.get(row.settlement_run_id, [])))


async def documents(sources: Sources, customer_id: str, query: q.DocumentQuery) -> models.Page[models.Document]:
    async with sources.invoicing.read() as connection:
        found = await invoicing.documents_page(
            connection, customer_id, contract_id=query.contract_id, period=query.month, document_type=query.type,
            status=query.status, sort=query.order, page=query.page)
    return _page(found, query, lambda row: models.Document(**document_fields(customer_id, row)))


def document_fields(customer_id: str, row: Row[Any]) -> dict[str, Any]:
    """What a document's row in the list and its details page both show."""
    return dict(
        document_id=row.document_id, number=row.number, type=row.document_type, status=row.status,
        contract_id=row.contract_id, issue_date=row.issue_date, due_date=row.due_date,
        service_period_start=row.service_period_start, service_period_end=row.service_period_end,
        net_total=money(row, "net_total"), tax_total=money(row, "tax_total"),
        gross_total=money(row, "gross_total"), currency=row.currency, corrects_number=row.corrects_number,
        pdf_url=file_url(customer_id, row.number, "pdf"),
        xml_url=file_url(customer_id, row.number, "xml") if row.has_einvoice else None)


async def document_file(sources: Sources, customer_id: str, number: str, kind: str) -> bytes | None:
    async with sources.invoicing.read() as connection:
        return await invoicing.document_file(connection, customer_id, number, kind)


async def contracts(sources: Sources, customer_id: str, query: q.ContractQuery) -> models.Page[models.Contract]:
    async with sources.rating.read() as connection:
        found = await rating.contracts_page(connection, customer_id, status=query.status, sort=query.order,
                                            page=query.page)
        items = await rating.items_of(connection, [row.contract_id for row in found.items])
    return _page(found, query, lambda row: models.Contract(
        contract_id=row.contract_id, currency=row.currency, starts_on=row.starts_on, expires_on=row.ends_on,
        status=row.status, revision=row.revision,
        items=[models.ContractItem(item_code=item.item_code, description=item.description,
                                   unit_price=domain.plain_number(item.unit_price), tax_category=item.tax_category)
               for item in items[row.contract_id]]))


async def settlement_runs(sources: Sources, customer_id: str, query: q.RunQuery) -> models.Page[models.SettlementRun]:
    async with sources.settlement.read() as connection:
        found = await settlement.runs_page(connection, customer_id, contract_id=query.contract_id,
                                           period=query.month, status=query.status, sort=query.order,
                                           page=query.page)
    async with sources.invoicing.read() as connection:
        numbers = await invoicing.numbers_of_runs(connection, [row.settlement_run_id for row in found.items])
    return _page(found, query, lambda row: models.SettlementRun(
        settlement_run_id=row.settlement_run_id, month=f"{row.cutoff:%Y-%m}", contract_id=row.contract_id,
        status=row.status, cutoff=row.cutoff, period_start=row.period_start, period_end=row.period_end,
        total=money(row, "total"), credit_total=money(row, "credit_total"), currency=row.currency,
        requested_by=row.requested_by, settled_at=row.settled_at,
        document_numbers=numbers.get(row.settlement_run_id, [])))


async def open_items(sources: Sources, customer_id: str, query: q.OpenItemQuery) -> models.Page[models.OpenItem]:
    async with sources.payments.read() as connection:
        found = await payments.open_items_page(
            connection, customer_id, contract_id=query.contract_id, period=query.month,
            still_open=None if query.status is None else query.status is models.OpenItemStatus.OPEN,
            item_type=query.type, sort=query.order, page=query.page)
        assigned = await payments.assignments_of(connection, [row.document_id for row in found.items])
    return _page(found, query, lambda row: open_item(row, assigned.get(row.document_id, [])))


def open_item(row: Row[Any], assigned: list[Row[Any]]) -> models.OpenItem:
    return models.OpenItem(
        document_id=row.document_id, reference=row.invoice_number or str(row.document_id), type=row.item_type,
        contract_id=row.contract_id, amount=money(row, "amount"), open_amount=money(row, "open_amount"),
        currency=row.currency, due_date=row.due_date,
        status=models.OpenItemStatus.OPEN if row.open_amount else models.OpenItemStatus.PAID,
        assignments=[models.Assignment(payment_event_id=a.payment_event_id, payment_id=a.payment_id, kind=a.kind, provider=a.provider, status=a.status,
                                       amount=money(a, "amount"), assigned_at=a.assigned_at) for a in assigned])


async def credits(sources: Sources, customer_id: str, query: q.CreditQuery) -> models.Page[models.Credit]:
    async with sources.payments.read() as connection:
        found = await payments.credits_page(connection, customer_id, contract_id=query.contract_id, sort=query.order,
                                            page=query.page)
        items = await payments.open_items_of_contracts(connection, sorted({row.contract_id for row in found.items}))
    return _page(found, query, lambda row: models.Credit(
        payment_event_id=row.payment_event_id, payment_id=row.payment_id, kind=row.kind, provider=row.provider,
        contract_id=row.contract_id, amount=money(row, "amount"), unassigned_amount=money(row, "unassigned_amount"),
        currency=row.currency, received_at=row.received_at,
        assignable_to=[models.OpenItemChoice(document_id=item.document_id,
                                             reference=item.invoice_number or str(item.document_id),
                                             open_amount=money(item, "open_amount"), due_date=item.due_date)
                       for item in items if item.contract_id == row.contract_id and item.currency == row.currency]))


async def payment_accounts(sources: Sources, customer_id: str,
                           query: q.PaymentAccountQuery) -> models.Page[models.PaymentAccount]:
    async with sources.payments.read() as connection:
        found = await payments.accounts_page(connection, customer_id, method=query.type, sort=query.order,
                                             page=query.page)
    return _page(found, query, lambda row: models.PaymentAccount(
        account_id=row.account_id, method=row.method, holder_name=row.holder_name, iban=domain.mask_iban(row.iban),
        bic=row.bic, mandate_reference=row.mandate_reference, mandate_signed_on=row.mandate_signed_on,
        mandate_status=row.mandate_status, provider=row.provider, is_default=row.is_default, created_at=row.created_at))


async def ledger(sources: Sources, customer_id: str, query: q.LedgerQuery) -> models.Page[models.LedgerEntry]:
    async with sources.settlement.read() as connection:
        found = await settlement.ledger_page(connection, customer_id, contract_id=query.contract_id,
                                             period=query.month, entry_type=query.type, sort=query.order,
                                             page=query.page)
    return _page(found, query, lambda row: models.LedgerEntry(
        entry_id=row.entry_id, contract_id=row.contract_id, sequence=row.sequence, type=row.entry_type,
        amount=money(row, "amount"), balance=money(row, "balance"), currency=row.currency,
        description=row.description, booked_at=row.booked_at, document_number=row.document_number,
        payment_id=row.payment_id, settlement_run_id=row.settlement_run_id, reverses_entry_id=row.reverses_entry_id))


def _figures(figures: domain.LedgerFigures) -> dict[str, Any]:
    return dict(currency=figures.currency, balance=figures.balance.amount, entries=figures.entries,
                by_type={entry_type: amount.amount for entry_type, amount in figures.by_type.items()})


async def ledger_summary(sources: Sources, customer_id: str) -> models.LedgerSummary:
    async with sources.settlement.read() as connection:
        accounts = await settlement.ledger_accounts(connection, customer_id)
        sums = await settlement.ledger_sums(connection, customer_id)
    contracts, totals = domain.ledger_summary(
        [domain.AccountRow(row.contract_id, row.currency, row.balance) for row in accounts],
        [domain.TypeSum(row.contract_id, row.entry_type, row.amount, row.entries) for row in sums])
    return models.LedgerSummary(
        contracts=[models.ContractLedger(contract_id=ledger.contract_id, **_figures(ledger.figures))
                   for ledger in contracts],
        totals=[models.LedgerFigures(**_figures(figures)) for figures in totals])
