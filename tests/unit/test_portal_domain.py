"""The portal's pure rules: periods, sort orders, pages, what its actions publish, and the ledger summary."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.portal import domain
from services.portal import queries as q
from services.portal.listing import Period, Sort
from services.portal.web import SECTIONS, PageLinks, section_query
from shared.money import Money

NOW = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-11", date(2026, 11, 1), date(2026, 12, 1)),
    ("2026-12", date(2026, 12, 1), date(2027, 1, 1)),
    ("2024-02", date(2024, 2, 1), date(2024, 3, 1)),
])
def test_a_period_is_a_calendar_month(text, start, end):
    period = Period.parse(text)
    assert (period.start, period.end) == (start, end)
    assert period.instants() == (datetime(start.year, start.month, 1, tzinfo=UTC),
                                 datetime(end.year, end.month, 1, tzinfo=UTC))


def test_sort_orders_read_a_leading_minus_as_descending():
    assert Sort.parse("-net") == Sort("net", True)
    assert Sort.parse("net") == Sort("net", False)
    assert str(Sort("occurred_at", True)) == "-occurred_at"


@pytest.mark.parametrize("params", [
    {"period": "2026-13"}, {"period": "2026-1"}, {"sort": "price"}, {"sort": "--net"}, {"limit": 0},
    {"limit": 501}, {"offset": -1}, {"status": "paid"}, {"type": "purchase"}, {"unknown": "x"},
])
def test_queries_refuse_what_they_cannot_mean(params):
    with pytest.raises(ValidationError):
        q.BillableItemQuery.model_validate(params)


def test_a_query_with_its_defaults_and_its_filters():
    query = q.BillableItemQuery.model_validate({"period": "2026-11", "status": "billed", "sort": "-net", "limit": "10"})
    assert (query.month, query.order, query.page.limit, query.page.offset) == (
        Period(date(2026, 11, 1), date(2026, 12, 1)), Sort("net", True), 10, 0)
    assert q.LedgerQuery().order == Sort("booked_at", False)


def test_usage_for_today_happens_now_and_for_a_past_day_at_its_noon():
    request_id = uuid.uuid4()
    today = domain.usage_recorded(request_id, "C-1", "sms", Decimal("1234"), date(2026, 11, 23), NOW)
    assert (today.event_id, today.occurred_at, today.contract_id, today.item_code, today.quantity) == (
        request_id, NOW, "C-1", "sms", Decimal("1234"))
    assert domain.usage_instant(date(2026, 11, 3), NOW) == datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    with pytest.raises(domain.ActionRefused, match="future day"):
        domain.usage_instant(date(2026, 11, 24), NOW)


def test_numbers_are_written_plainly_and_amounts_at_their_minor_unit():
    assert str(domain.plain_number(Decimal("8500.0000000000"))) == "8500"
    assert str(domain.plain_number(Decimal("0.1000000000"))) == "0.1"
    assert str(domain.plain_number(Decimal("250.5"))) == "250.5"
    assert str(domain.minor_units(Decimal("407.2500"), "EUR")) == "407.25"
    assert str(domain.minor_units(Decimal("1200.0000"), "JPY")) == "1200"
    assert domain.mask_iban("DE89 3704 0044 0532 0130 00") == "DE89 **** 3000"


def test_the_ledger_summary_per_contract_and_per_currency():
    accounts = [domain.AccountRow("C-A", "EUR", Decimal("204.9400")), domain.AccountRow("C-B", "EUR", Decimal("110.1300")),
                domain.AccountRow("C-U", "USD", Decimal("66.6600"))]
    sums = [domain.TypeSum("C-A", "Receivable", Decimal("256.25"), 1), domain.TypeSum("C-A", "Tax", Decimal("48.69"), 1),
            domain.TypeSum("C-A", "Payment", Decimal("-100.00"), 1),
            domain.TypeSum("C-B", "Receivable", Decimal("92.55"), 1), domain.TypeSum("C-B", "Tax", Decimal("17.58"), 1),
            domain.TypeSum("C-U", "Receivable", Decimal("66.66"), 1)]
    contracts, totals = domain.ledger_summary(accounts, sums)
    eur = lambda value: Money(Decimal(value), "EUR")  # noqa: E731
    assert [(c.contract_id, c.figures.balance, c.figures.entries) for c in contracts] == [
        ("C-A", eur("204.94"), 3), ("C-B", eur("110.13"), 2), ("C-U", Money(Decimal("66.66"), "USD"), 1)]
    assert contracts[0].figures.by_type == {"Payment": eur("-100.00"), "Receivable": eur("256.25"), "Tax": eur("48.69")}
    assert [(t.currency, t.balance, t.entries) for t in totals] == [
        ("EUR", eur("315.07"), 5), ("USD", Money(Decimal("66.66"), "USD"), 1)]
    # 256.25 + 92.55 receivables; 48.69 + 17.58 tax; the balance is what those and the payment leave.
    assert totals[0].by_type == {"Payment": eur("-100.00"), "Receivable": eur("348.80"), "Tax": eur("66.27")}


def test_a_section_reads_only_its_own_parameters_and_ignores_bad_ones_with_the_reason():
    items = next(section for section in SECTIONS if section.key == "items")
    query, problem = section_query(items, {"items.period": "2026-11", "documents.period": "bogus", "items.sort": "net"})
    assert (query.period, query.sort, problem) == ("2026-11", "net", None)
    query, problem = section_query(items, {"items.period": "2026-13"})
    assert query.period is None and "period" in problem


def test_page_links_change_one_section_and_keep_the_others():
    links = PageLinks("/customers/C", {"items.period": "2026-11", "items.offset": "25", "documents.type": "invoice",
                                      "notice": "done"})
    assert links("items", sort="-net") == (
        "/customers/C?items.period=2026-11&documents.type=invoice&items.sort=-net#items")
    assert links("items", offset=50) == "/customers/C?items.period=2026-11&items.offset=50&documents.type=invoice#items"
    assert links.cleared("items") == "/customers/C?documents.type=invoice#items"
    assert links.hidden("items") == [("documents.type", "invoice")]
