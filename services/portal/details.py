"""One contract, one document, a customer's orders: the detail views, gathered from the services' stores.

Each answers None for something that is not the customer's, so the API and the pages say 404.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Row

from services.portal import domain, models, schedule
from services.portal import queries as q
from services.portal.reads import Sources, document_fields, money, open_item
from services.portal.sources import invoicing, payments, rating, settlement
from shared.money import Money
from shared.periods import Period, business_day, start_of_day

ZERO = Decimal(0)


def _optional(value: Decimal | None) -> Decimal | None:
    return None if value is None else domain.plain_number(value)


def _ref(document: Row[Any]) -> models.DocumentRef:
    return models.DocumentRef(number=document.number, type=document.document_type, issue_date=document.issue_date)


def _item(item: Row[Any]) -> models.ContractItemDetails:
    terms = item.terms or {}
    fee = item.kind == "recurring_fee"
    return models.ContractItemDetails(
        item_code=item.item_code, description=item.description, unit_price=domain.plain_number(item.unit_price),
        tax_category=item.tax_category, kind=item.kind, measure=terms.get("measure", "consumption"),
        price_plan=schedule.price_plan(terms),
        list_price=_optional(Decimal(str(terms["list_price"]))) if fee else None,
        deviation_percent=_optional(Decimal(str(terms.get("deviation_percent", 0)))) if fee else None)


async def contract(sources: Sources, customer_id: str, contract_id: str) -> models.ContractDetails | None:
    async with sources.rating.read() as connection:
        row = await rating.contract(connection, customer_id, contract_id)
        if row is None:
            return None
        customer = await rating.customer(connection, customer_id)
        items = (await rating.items_of(connection, [contract_id]))[contract_id]
    assert customer is not None  # a contract's customer exists (rating's foreign key)
    return models.ContractDetails(
        contract_id=row.contract_id, customer_id=row.customer_id, customer_name=customer.name, currency=row.currency,
        starts_on=row.starts_on, expires_on=row.ends_on, status=row.status, billing_cycle=row.billing_cycle,
        period_months=row.period_months, cycle=schedule.cycle_in_words(row.billing_cycle, row.period_months),
        time_zone=row.time_zone, revision=row.revision, items=[_item(item) for item in items])


async def billing_schedule(sources: Sources, customer_id: str, contract_id: str, query: q.ScheduleQuery,
                           estimate: schedule.Estimate | None = None,
                           now: datetime | None = None) -> models.Page[models.ScheduleRow] | None:
    """One row per item and billing period of the term, a page of them; only the page's periods are read.
    The `estimate` (the query's, priced by rating) is applied to the estimated item's current and
    future rows that nothing of was billed; ActionRefused if its edited period is not such a row.
    """
    async with sources.rating.read() as connection:
        row = await rating.contract(connection, customer_id, contract_id)
        if row is None:
            return None
        contract_items = (await rating.items_of(connection, [contract_id]))[contract_id]
    today = business_day(now or datetime.now(UTC), row.time_zone)
    term = _periods_in_term(row, today)
    if estimate is not None and estimate.edited_start is not None:
        await _refuse_an_edit_of_no_estimated_row(sources, row, term, contract_items, today, estimate)
    items = [item for item in contract_items if query.item_code in (None, item.item_code)]
    periods = [period for period in term if query.timing in (None, schedule.timing(period, today))]
    if query.order.descending:
        periods.reverse()
    cells = [(period, item) for period in periods for item in items]
    page = cells[query.offset:query.offset + query.limit]
    return models.Page(items=await _schedule_rows(sources, row, page, today, estimate), total=len(cells),
                       limit=query.limit, offset=query.offset, sort=query.sort)


async def schedule_line(sources: Sources, customer_id: str, contract_id: str, item_code: str, period_start: date,
                        query: q.LineUsageQuery, now: datetime | None = None) -> models.ScheduleLine | None:
    """A schedule row's billing detail: the row, its price detail per band, and a page of its usage
    events; None unless the item is the customer's contract's and the period one of its term."""
    async with sources.rating.read() as connection:
        row = await rating.contract(connection, customer_id, contract_id)
        if row is None:
            return None
        item = next((item for item in (await rating.items_of(connection, [contract_id]))[contract_id]
                     if item.item_code == item_code), None)
        today = business_day(now or datetime.now(UTC), row.time_zone)
        period = next((period for period in _periods_in_term(row, today) if period.start == period_start), None)
        if item is None or period is None:
            return None
        bands = await rating.price_detail(connection, contract_id, item_code, period_start)
        events = await rating.usage_events(connection, contract_id, item_code, period_start, query.cursor,
                                           query.limit)
    [schedule_row] = await _schedule_rows(sources, row, [(period, item)], today, None)
    return models.ScheduleLine(
        row=schedule_row,
        price_detail=[models.PriceDetailBand(
            from_quantity=_optional(band.from_quantity), to_quantity=_optional(band.to_quantity),
            unit_price=domain.plain_number(band.unit_price), quantity=domain.plain_number(band.quantity),
            net=Money.round(band.quantity * band.unit_price, row.currency).amount) for band in bands],
        usage=[models.UsageEvent(event_id=event.event_id, occurred_at=event.occurred_at,
                                 quantity=domain.plain_number(event.quantity),
                                 meter_reading=_optional(event.meter_reading), billable_item_id=event.billable_item_id)
               for event in events],
        limit=query.limit,
        next=q.usage_cursor(events[-1].occurred_at, events[-1].event_id) if len(events) == query.limit else None)


async def _refuse_an_edit_of_no_estimated_row(sources: Sources, contract: Row[Any], term: list[Period],
                                              items: list[Row[Any]], today: date, estimate: schedule.Estimate) -> None:
    """An edited period's estimate is shown on its row only if the row takes an estimate (current or
    future, nothing of it billed): edits of any other period are refused, not silently dropped."""
    period = next((period for period in term if period.start == estimate.edited_start), None)
    item = next((item for item in items if item.item_code == estimate.item_code), None)
    if period is not None and item is not None:
        [edited] = await _schedule_rows(sources, contract, [(period, item)], today, estimate)
        if edited.estimated:
            return
    raise domain.ActionRefused(f"no unbilled period of {estimate.item_code} begins on {estimate.edited_start}: "
                               "only a current or future period nothing of was billed can have an estimate")


def _periods_in_term(contract: Row[Any], today: date) -> list[Period]:
    return schedule.periods_in_term(schedule.billing_schedule(
        contract.starts_on, contract.ends_on, contract.billing_cycle, contract.period_months, contract.alignment_date),
        today)


async def _schedule_rows(sources: Sources, contract: Row[Any], cells: list[tuple[Period, Row[Any]]], today: date,
                         estimate: schedule.Estimate | None) -> list[models.ScheduleRow]:
    """The rows of (period, item) cells; `estimate` is applied to its item's current and future rows
    that nothing of was billed.

    What a row shows comes from rating (what was rated into the period, whatever number of usage
    events it stands for), settlement (which of those items are settled, what was credited on
    them) and invoicing (the invoices of the runs that settled them).
    """
    contract_id = contract.contract_id
    starts = sorted({period.start for period, _ in cells})
    async with sources.rating.read() as connection:
        rated = await rating.rated_periods(connection, contract_id, starts)
    async with sources.settlement.read() as connection:
        settled = await settlement.settled_periods(connection, contract_id, starts)
    run_ids = sorted({run_id for found in settled.values() for run_id in found.run_ids if run_id is not None})
    async with sources.invoicing.read() as connection:
        documents = await invoicing.documents_of_runs(connection, run_ids)

    def schedule_row(period: Period, item: Row[Any]) -> models.ScheduleRow:
        key = (item.item_code, period.start)
        use, held = rated.get(key), settled.get(key)
        state = schedule.Settled(held.items, held.settled) if held else schedule.Settled()
        invoices = [_ref(doc) for run_id in (held.run_ids if held else []) if run_id is not None
                    for doc in documents.get(run_id, []) if doc.document_type == "invoice"]

        def figure(source: Row[Any] | None, name: str) -> Decimal:
            return ZERO if source is None else getattr(source, name)

        def amount(source: Row[Any] | None, name: str) -> Decimal:
            return Money(figure(source, name), contract.currency).amount

        estimated = None
        if (estimate is not None and item.item_code == estimate.item_code
                and schedule.timing(period, today) is not models.Timing.PAST
                and state.status in (models.BillingStatus.NOTHING_RATED, models.BillingStatus.UNBILLED)):
            estimated = estimate.periods.get(period.start)

        return models.ScheduleRow(
            item_code=item.item_code, description=item.description, period_start=period.start,
            period_end=period.end, timing=schedule.timing(period, today),
            previous_reading=_optional(use.previous_reading) if use else None,
            current_reading=_optional(use.current_reading) if use else None,
            consumed=domain.plain_number(figure(use, "quantity")), free=domain.plain_number(figure(use, "free_quantity")),
            billable=domain.plain_number(figure(use, "billable_quantity")),
            unit_price=domain.plain_number(use.unit_price if use else item.unit_price),
            discount=amount(use, "discount"), net=amount(use, "net"), credit=amount(held, "credit"),
            termination_credit=amount(held, "termination_credit"), currency=contract.currency,
            estimated=estimated is not None, estimate_edited=estimated is not None and estimated.edited,
            estimated_quantity=domain.plain_number(estimated.quantity) if estimated else None,
            estimated_net=Money(estimated.net, contract.currency).amount if estimated else None,
            billed=state.status is models.BillingStatus.BILLED, status=state.status,
            invoices=sorted(invoices, key=lambda doc: doc.number))

    return [schedule_row(period, item) for period, item in cells]


def order_id(contract_id: str, ordered_on: date) -> str:
    return f"{contract_id}@{ordered_on.isoformat()}"


def parse_order_id(text: str) -> tuple[str, date]:
    """'C-1@2026-11-20' -> ('C-1', 2026-11-20); ActionRefused for anything the orders list never names."""
    contract_id, _, day = text.rpartition("@")
    try:
        return contract_id, date.fromisoformat(day)
    except ValueError:
        raise domain.ActionRefused(f"{text!r} is no order (orders are named <contract>@<YYYY-MM-DD>)") from None


async def orders(sources: Sources, customer_id: str, query: q.OrderQuery) -> models.Page[models.Order]:
    """One-time purchases, an order per contract and purchase day, with each purchase's state."""
    async with sources.settlement.read() as connection:
        found = await settlement.orders_page(connection, customer_id, contract_id=query.contract_id,
                                             period=query.month, sort=query.order, page=query.page)
        purchases = await settlement.order_items(connection, [(row.contract_id, row.occurred_at) for row in found.items])
    async with sources.rating.read() as connection:
        zones = await rating.time_zones(connection, sorted({row.contract_id for row in found.items}))
    run_ids = sorted({run_id for item in purchases for run_id in (item.settlement_run_id, item.credit_run_id) if run_id})
    async with sources.invoicing.read() as connection:
        documents = await invoicing.documents_of_runs(connection, run_ids)

    def order(row: Row[Any]) -> models.Order:
        mine = [item for item in purchases if (item.contract_id, item.occurred_at) == (row.contract_id, row.occurred_at)]
        ordered_on = business_day(row.occurred_at, zones.get(row.contract_id, "UTC"))
        runs = sorted({run_id for item in mine for run_id in (item.settlement_run_id, item.credit_run_id) if run_id})
        return models.Order(
            order_id=order_id(row.contract_id, ordered_on), contract_id=row.contract_id, ordered_on=ordered_on,
            status=schedule.order_status([item.settlement_run_id is not None for item in mine],
                                         [item.cancelled_net is not None for item in mine]),
            net=money(row, "net"), currency=row.currency,
            items=[models.OrderItem(billable_item_id=item.billable_item_id, item_code=item.item_code,
                                    description=item.description, quantity=domain.plain_number(item.quantity),
                                    unit_price=domain.plain_number(item.unit_price), net=money(item, "net"),
                                    billed=item.settlement_run_id is not None, cancelled=item.cancelled_net is not None)
                   for item in mine],
            # as they were issued: an invoice before the credit notes that correct it
            documents=sorted((_ref(doc) for run_id in runs for doc in documents.get(run_id, [])),
                             key=lambda doc: (doc.issue_date, doc.type != "invoice", doc.number)))

    return models.Page(items=[order(row) for row in found.items], total=found.total, limit=found.limit,
                       offset=found.offset, sort=query.sort)


async def order_items(sources: Sources, orders: list[tuple[str, date]]) -> list[Row[Any]]:
    """The purchases of the (contract, day) orders named."""
    async with sources.rating.read() as connection:
        zones = await rating.time_zones(connection, sorted({contract_id for contract_id, _ in orders}))
    async with sources.settlement.read() as connection:
        return await settlement.order_items(connection, [(contract_id, start_of_day(day, zones[contract_id]))
                                                         for contract_id, day in orders])


async def document(sources: Sources, customer_id: str, number: str) -> models.DocumentDetails | None:
    async with sources.invoicing.read() as connection:
        row = await invoicing.document(connection, customer_id, number)
        if row is None:
            return None
        lines = await invoicing.lines_of(connection, row.document_id)
        taxes = await invoicing.tax_lines_of(connection, row.document_id)
        corrections = await invoicing.corrections_of(connection, number)
    async with sources.payments.read() as connection:
        item = await payments.open_item(connection, row.document_id)
        assigned = await payments.assignments_of(connection, [row.document_id]) if item else {}

    def minor(value: Decimal) -> Decimal:
        return Money(value, row.currency).amount

    return models.DocumentDetails(
        **document_fields(customer_id, row), customer_id=customer_id, payment_terms=row.payment_terms,
        lines=[models.DocumentLine(
            line_no=line.line_no, item_code=line.item_code, description=line.description,
            quantity=domain.plain_number(line.quantity), unit_price=domain.plain_number(line.unit_price),
            discount=minor(line.discount), net=minor(line.net), period_start=line.period_start,
            period_end=line.period_end, vat_category=line.vat_category, vat_rate=domain.plain_number(line.vat_rate),
            credit_reason=line.credit_reason) for line in lines],
        tax_lines=[models.TaxLine(vat_category=tax.vat_category, vat_rate=domain.plain_number(tax.vat_rate),
                                  base=minor(tax.base), tax=minor(tax.tax)) for tax in taxes],
        corrected_by=[_ref(doc) for doc in corrections],
        open_item=open_item(item, assigned.get(row.document_id, [])) if item else None)
