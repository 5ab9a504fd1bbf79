"""Settlement's pure rules with hand-computed amounts: the ledger, periods, credits and runs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.settlement import domain
from services.settlement.domain import (
    Account,
    ContractLedger,
    ContractTerms,
    EntryType,
    Item,
    LedgerTotals,
)
from services.settlement.handlers import receivables_posted
from shared.errors import Rejected
from shared.events import ChargeKind, ContractStatus, CreditReason, CustomerProfile, TaxCategory, derive_id
from shared.money import Money

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RUN = uuid.UUID("00000000-0000-0000-0000-00000000a001")
CUSTOMER = CustomerProfile(customer_id="CUST-1", name="ACME Robotics GmbH", country="DE", vat_id="DE123456789")
BILLED_BY = uuid.UUID("00000000-0000-0000-0000-00000000b001")


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def account(balance: str = "0") -> Account:
    return Account("C-1", "CUST-1", eur(balance), 0)


def book(acc: Account, entry_type: EntryType, amount: str, **references):
    return domain.post(acc, entry_type, eur(amount), entry_id=uuid.uuid4(), description="", booked_at=AT,
                       **references)


def fee(net: str, start: date = date(2026, 11, 1), end: date = date(2026, 11, 30), *, currency: str = "EUR",
        credited: str = "0", billed: bool = True, kind: ChargeKind = ChargeKind.RECURRING_FEE) -> Item:
    return Item(
        billable_item_id=uuid.uuid4(), contract_id="C-1", item_code="licence", description="Licence",
        quantity=Decimal(1), unit_price=Decimal(net), net=Money.of(net, currency), period_start=start,
        period_end=end, charge_kind=kind, settlement_run_id=BILLED_BY if billed else None,
        credited=Money.of(credited, currency), tax_category=TaxCategory.REDUCED,
    )


def cancelled(on: date) -> ContractTerms:
    return ContractTerms("C-1", "CUST-1", "EUR", date(2026, 1, 1), on, ContractStatus.CANCELLED, 2)


# --- the ledger -----------------------------------------------------------------------------------


def test_a_hand_computed_ledger_of_receivable_partial_payment_chargeback_refund_and_credit_memo():
    acc = account()
    balances, amounts = [], []
    for entry_type, magnitude in [
        (EntryType.RECEIVABLE, "154.21"),  # owes 154.21
        (EntryType.PAYMENT, "100.00"),  # paid in part: 54.21
        (EntryType.CHARGEBACK, "100.00"),  # the payment came back: 154.21
        (EntryType.REFUND, "20.00"),  # money paid out to the customer: 174.21
        (EntryType.CREDIT_MEMO, "4.21"),  # credited: 170.00
    ]:
        acc, entry = book(acc, entry_type, magnitude)
        balances.append(entry.balance)
        amounts.append(entry.amount)
    assert amounts == [eur("154.21"), eur("-100.00"), eur("100.00"), eur("20.00"), eur("-4.21")]
    assert balances == [eur("154.21"), eur("54.21"), eur("154.21"), eur("174.21"), eur("170.00")]
    assert (acc.balance, acc.last_sequence) == (eur("170.00"), 5)
    totals = LedgerTotals.of("EUR", {EntryType.RECEIVABLE: Decimal("154.21"), EntryType.PAYMENT: Decimal("-100.00"),
                                     EntryType.CHARGEBACK: Decimal("100.00"), EntryType.REFUND: Decimal("20.00"),
                                     EntryType.CREDIT_MEMO: Decimal("-4.21")})
    assert (totals.receivables, totals.credit_memos, totals.payments) == (eur("154.21"), eur("4.21"), eur("100.00"))
    assert totals.balance == eur("170.00")


def test_posting_refuses_negative_amounts_and_other_currencies():
    with pytest.raises(Rejected, match="must not be negative"):
        book(account(), EntryType.PAYMENT, "-1.00")
    with pytest.raises(Rejected, match="kept in EUR, not USD"):
        domain.post(account(), EntryType.PAYMENT, Money.of("1.00", "USD"), entry_id=uuid.uuid4(), description="",
                    booked_at=AT)


def test_a_reversal_is_a_new_entry_with_the_opposite_amount_and_the_original_untouched():
    acc, receivable = book(account(), EntryType.RECEIVABLE, "80.00")
    acc, payment = book(acc, EntryType.PAYMENT, "50.00", payment_id="PAY-1", document_number="R2026-0001")
    acc, reversal = domain.reverse(acc, payment, entry_id=domain.reversal_id(payment.entry_id), reason="wrong contract",
                                   booked_at=AT)
    assert (reversal.entry_type, reversal.amount, reversal.balance) == (EntryType.PAYMENT, eur("50.00"), eur("80.00"))
    assert (reversal.sequence, reversal.reverses_entry_id, reversal.document_number) == (3, payment.entry_id,
                                                                                         "R2026-0001")
    assert reversal.payment_id is None  # one entry per provider transaction and kind: the original's
    assert reversal.description == "Reversal of #2: wrong contract"
    assert domain.reversal_id(payment.entry_id) == reversal.entry_id
    assert payment.amount == eur("-50.00")
    totals = LedgerTotals.of("EUR", {EntryType.RECEIVABLE: Decimal("80.00"), EntryType.PAYMENT: Decimal("0.00")})
    assert totals.balance == acc.balance
    with pytest.raises(Rejected, match="itself a reversal"):
        domain.reverse(acc, reversal, entry_id=uuid.uuid4(), reason="", booked_at=AT)
    with pytest.raises(Rejected, match="corrected with a credit"):
        domain.reverse(acc, receivable, entry_id=uuid.uuid4(), reason="", booked_at=AT)


def test_customer_totals_are_summed_per_currency():
    def ledger(contract: str, currency: str, receivables: str, payments: str) -> ContractLedger:
        totals = LedgerTotals.of(currency, {EntryType.RECEIVABLE: Decimal(receivables),
                                            EntryType.PAYMENT: -Decimal(payments)})
        return ContractLedger(contract, totals.balance, 2, totals)

    summary = domain.totals_per_currency([ledger("A", "EUR", "10.00", "4.00"), ledger("B", "USD", "7.00", "7.00"),
                                          ledger("C", "EUR", "2.50", "0")])
    assert summary["EUR"].receivables == eur("12.50") and summary["EUR"].balance == eur("8.50")
    assert summary["USD"].balance == Money.of("0.00", "USD")


def test_document_vat_makes_the_balance_gross_and_a_credit_note_gives_its_vat_back():
    document = uuid.UUID("00000000-0000-0000-0000-00000000d001")
    acc, _ = book(account(), EntryType.RECEIVABLE, "100.00")
    acc, [tax] = domain.post_document_tax(acc, document, "R2026-0001", True, eur("19.00"), booked_at=AT)
    assert (tax.entry_type, tax.amount, tax.balance, tax.document_number) == (
        EntryType.TAX, eur("19.00"), eur("119.00"), "R2026-0001")
    assert (tax.entry_id, tax.description) == (derive_id(document, "tax"), "VAT: R2026-0001")
    acc, _ = book(acc, EntryType.CREDIT_MEMO, "10.00")
    acc, [given_back] = domain.post_document_tax(acc, uuid.uuid4(), "G2026-0001", False, eur("1.90"), booked_at=AT)
    assert (given_back.entry_type, given_back.amount, acc.balance) == (EntryType.TAX_CREDIT, eur("-1.90"),
                                                                       eur("107.10"))
    assert domain.post_document_tax(acc, uuid.uuid4(), "R2026-0002", True, eur("0.00"), booked_at=AT) == (acc, [])
    totals = LedgerTotals.of("EUR", {EntryType.RECEIVABLE: Decimal("100.00"), EntryType.TAX: Decimal("19.00"),
                                     EntryType.CREDIT_MEMO: Decimal("-10.00"), EntryType.TAX_CREDIT: Decimal("-1.90")})
    assert (totals.tax, totals.tax_credits, totals.balance) == (eur("19.00"), eur("1.90"), eur("107.10"))


def test_a_chargeback_books_its_fee_as_a_second_entry_owed_by_the_customer():
    event = uuid.UUID("00000000-0000-0000-0000-00000000e001")
    acc, _ = book(account(), EntryType.RECEIVABLE, "50.00")
    acc, _ = book(acc, EntryType.PAYMENT, "50.00", payment_id="P-1")
    acc, [chargeback, fee_entry] = domain.post_transaction(
        acc, EntryType.CHARGEBACK, eur("50.00"), eur("15.00"), event_id=event, payment_id="P-1",
        document_number="R2026-0001", booked_at=AT)
    assert [(e.entry_type, e.amount, e.balance) for e in (chargeback, fee_entry)] == [
        (EntryType.CHARGEBACK, eur("50.00"), eur("50.00")), (EntryType.CHARGEBACK_FEE, eur("15.00"), eur("65.00"))]
    assert (chargeback.entry_id, fee_entry.entry_id) == (derive_id(event, "ledger-entry"),
                                                         derive_id(event, "chargeback-fee"))
    assert fee_entry.description == "Chargeback fee: P-1"
    with pytest.raises(Rejected, match="only chargebacks do"):
        domain.post_transaction(acc, EntryType.REFUND, eur("5.00"), eur("1.00"), event_id=uuid.uuid4(),
                                payment_id="R-1", document_number=None, booked_at=AT)
    acc, [payment] = domain.post_transaction(acc, EntryType.PAYMENT, eur("65.00"), None, event_id=uuid.uuid4(),
                                             payment_id="P-2", document_number=None, booked_at=AT)
    assert (payment.amount, acc.balance) == (eur("-65.00"), eur("0.00"))


def test_a_chargeback_reversal_lowers_the_balance_again_like_the_payment_it_reinstates():
    acc, _ = book(account(), EntryType.RECEIVABLE, "50.00")
    acc, _ = book(acc, EntryType.PAYMENT, "50.00", payment_id="P-1")
    acc, _ = domain.post_transaction(acc, EntryType.CHARGEBACK, eur("50.00"), eur("15.00"), event_id=uuid.uuid4(),
                                     payment_id="DP-1", document_number=None, booked_at=AT)
    acc, [reversal] = domain.post_transaction(acc, EntryType.CHARGEBACK_REVERSAL, eur("50.00"), None,
                                              event_id=uuid.uuid4(), payment_id="DP-1-won", document_number=None,
                                              booked_at=AT)
    assert (reversal.amount, acc.balance) == (eur("-50.00"), eur("15.00"))  # the fee stays owed
    totals = LedgerTotals.of("EUR", {EntryType.RECEIVABLE: Decimal("50.00"), EntryType.PAYMENT: Decimal("-50.00"),
                                     EntryType.CHARGEBACK: Decimal("50.00"), EntryType.CHARGEBACK_FEE: Decimal("15.00"),
                                     EntryType.CHARGEBACK_REVERSAL: Decimal("-50.00")})
    assert (totals.chargeback_reversals, totals.balance) == (eur("50.00"), eur("15.00"))


# --- the runs of closed periods ---------------------------------------------------------------------


def test_a_periods_run_is_named_by_contract_and_period():
    run = domain.scheduled_run_id("C-1", date(2026, 11, 30))
    assert run == domain.scheduled_run_id("C-1", date(2026, 11, 30))
    assert run != domain.scheduled_run_id("C-1", date(2026, 12, 31))
    assert run != domain.scheduled_run_id("C-2", date(2026, 11, 30))


# --- credits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("net, start, end, cancelled_on, credited, expected, credited_from", [
    # 20 of 30 days after 10 Nov: 100.00 x 20 / 30 = 66.666... -> 66.67
    ("100.00", date(2026, 11, 1), date(2026, 11, 30), date(2026, 11, 10), "0", "66.67", date(2026, 11, 11)),
    # 99.99 x 20 / 30 = 66.66
    ("99.99", date(2026, 11, 1), date(2026, 11, 30), date(2026, 11, 10), "0", "66.66", date(2026, 11, 11)),
    # 0.05 x 1 / 2 = 0.025 -> 0.03 (HALF_UP; half-even would give 0.02)
    ("0.05", date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 1), "0", "0.03", date(2026, 11, 2)),
    # a period wholly after the last day is credited in full
    ("100.00", date(2026, 12, 1), date(2026, 12, 31), date(2026, 11, 10), "0", "100.00", date(2026, 12, 1)),
    # never more than what earlier credits left: min(66.67, 100.00 - 50.00)
    ("100.00", date(2026, 11, 1), date(2026, 11, 30), date(2026, 11, 10), "50.00", "50.00", date(2026, 11, 11)),
    # February 2028 has 29 days: 29.00 x 19 / 29 = 19.00
    ("29.00", date(2028, 2, 1), date(2028, 2, 29), date(2028, 2, 10), "0", "19.00", date(2028, 2, 11)),
])
def test_termination_credit_is_the_prorated_net_beyond_the_last_day(net, start, end, cancelled_on, credited,
                                                                     expected, credited_from):
    item = fee(net, start, end, credited=credited)
    credit = domain.termination_credit(item, cancelled_on)
    assert credit is not None
    assert (credit.net, credit.period_start, credit.period_end) == (eur(expected), credited_from, end)
    assert (credit.reason, credit.credited_settlement_run_id) == (CreditReason.TERMINATION, BILLED_BY)
    assert credit.credit_id == derive_id(item.billable_item_id, "termination-credit")


def test_termination_credit_in_a_currency_without_minor_units():
    # 1000 JPY x 21 / 31 = 677.42 -> 677
    item = fee("1000", date(2026, 12, 1), date(2026, 12, 31), currency="JPY")
    credit = domain.termination_credit(item, date(2026, 12, 10))
    assert credit is not None and credit.net == Money.of(677, "JPY")


@pytest.mark.parametrize("item, cancelled_on", [
    (fee("100.00"), date(2026, 11, 30)),  # the period ends on the last day: nothing was prepaid beyond it
    (fee("100.00"), date(2026, 12, 5)),
    (fee("100.00", kind=ChargeKind.USAGE), date(2026, 11, 10)),  # usage is not prepaid
    (fee("100.00", kind=ChargeKind.ONE_TIME), date(2026, 11, 10)),
    (fee("100.00", credited="100.00"), date(2026, 11, 10)),  # already credited in full
    (fee("0.00"), date(2026, 11, 10)),
])
def test_no_termination_credit_when_nothing_prepaid_is_left_beyond_the_last_day(item, cancelled_on):
    assert domain.termination_credit(item, cancelled_on) is None


def test_termination_credits_only_for_cancelled_contracts():
    items = [fee("30.00"), fee("60.00", kind=ChargeKind.USAGE)]
    running = ContractTerms("C-1", "CUST-1", "EUR", date(2026, 1, 1), date(2026, 11, 10), ContractStatus.ACTIVE, 1)
    assert domain.termination_credits(running, items) == []
    assert domain.termination_credits(None, items) == []
    [credit] = domain.termination_credits(cancelled(date(2026, 11, 10)), items)
    assert credit.net == eur("20.00")  # 30.00 x 20 / 30


def test_a_granted_credit_is_positive_within_what_is_creditable_and_on_a_billed_item():
    item = fee("40.00", credited="15.00")
    credit = domain.grant_credit(item, eur("25.00"), "outage on 12 Nov", uuid.UUID(int=7))
    assert (credit.net, credit.reason, credit.credit_id) == (eur("25.00"), CreditReason.CREDIT, uuid.UUID(int=7))
    assert credit.description == "Credit on Licence: outage on 12 Nov"
    assert (credit.period_start, credit.period_end) == (item.period_start, item.period_end)
    with pytest.raises(Rejected, match=r"25.00 EUR more at most \(net 40.00 EUR\), not 25.01 EUR"):
        domain.grant_credit(item, eur("25.01"), "too much", uuid.uuid4())
    with pytest.raises(Rejected, match="must be positive"):
        domain.grant_credit(item, eur("0.00"), "nothing", uuid.uuid4())
    with pytest.raises(Rejected, match="has not been billed yet"):
        domain.grant_credit(fee("40.00", billed=False), eur("1.00"), "early", uuid.uuid4())


def test_cancelling_an_order_credits_what_is_left_of_its_net_once():
    item = fee("40.00", credited="15.00")
    credit = domain.cancel_order(item)
    assert (credit.net, credit.reason, credit.description) == (eur("25.00"), CreditReason.ORDER_CANCELLED,
                                                               "Cancelled: Licence")
    assert credit.credit_id == domain.order_cancellation_id(item.billable_item_id) == domain.cancel_order(item).credit_id
    with pytest.raises(Rejected, match="already credited in full"):
        domain.cancel_order(fee("40.00", credited="40.00"))
    with pytest.raises(Rejected, match="has not been billed yet"):
        domain.cancel_order(fee("40.00", billed=False))


def test_a_credit_run_is_named_by_its_credits_in_any_order():
    first, second = domain.cancel_order(fee("1.00")), domain.cancel_order(fee("2.00"))
    assert domain.credit_run_id([first, second]) == domain.credit_run_id([second, first])
    assert domain.credit_run_id([first]) != domain.credit_run_id([first, second])


# --- runs ---------------------------------------------------------------------------------------------


def test_a_run_settles_its_items_and_credits_the_recurring_fees_of_a_cancelled_contract_beyond_its_end():
    usage = fee("12.34", kind=ChargeKind.USAGE, billed=False)
    licence = fee("100.00", date(2026, 11, 1), date(2026, 11, 30), billed=False)
    run = domain.settle(RUN, account(), AT, [usage, licence], cancelled(date(2026, 11, 10)))
    assert run is not None
    assert [item.settlement_run_id for item in run.items] == [RUN, RUN]
    assert (run.total, run.credit_total) == (eur("112.34"), eur("66.67"))
    [credit] = run.credits
    assert (credit.item.billable_item_id, credit.credited_settlement_run_id) == (licence.billable_item_id, RUN)

    acc, entries = domain.post_run(account("10.00"), run, AT)
    assert [(e.entry_type, e.amount, e.balance, e.sequence) for e in entries] == [
        (EntryType.RECEIVABLE, eur("112.34"), eur("122.34"), 1),
        (EntryType.CREDIT_MEMO, eur("-66.67"), eur("55.67"), 2),
    ]
    assert [e.entry_id for e in entries] == [derive_id(RUN, "receivable"), derive_id(RUN, "credit-memo")]
    assert acc.balance == eur("55.67")

    event = receivables_posted(run, acc, CUSTOMER, AT)
    assert (event.total, event.credit_total, event.ledger_balance) == (Decimal("112.34"), Decimal("66.67"),
                                                                       Decimal("55.67"))
    # Self-contained: the customer as of the run, and each line's (and credit's) tax category.
    assert (event.schema_version, event.customer) == (4, CUSTOMER)
    assert [line.tax_category for line in [*event.items, *event.credits]] == [TaxCategory.REDUCED] * 3
    assert [(line.unit_price, line.net, line.item_count) for line in event.items] == [
        (Decimal("12.34"), Decimal("12.34"), 1), (Decimal("100.00"), Decimal("100.00"), 1)]
    [line] = event.credits
    assert (line.reason, line.net, line.period_start, line.credited_settlement_run_id) == (
        CreditReason.TERMINATION, Decimal("66.67"), date(2026, 11, 11), RUN)
    assert event.event_id == derive_id(RUN, "receivables.posted")


def test_a_run_with_nothing_to_settle_or_credit_is_no_run():
    assert domain.settle(RUN, account(), AT, []) is None
    assert domain.settle(RUN, account(), AT, [], cancelled(date(2026, 11, 10))) is None


def test_a_credit_only_run_posts_just_a_credit_memo():
    credit = domain.cancel_order(fee("19.99"))
    run = domain.settle(RUN, account("19.99"), AT, [], credits=[credit])
    assert run is not None and run.items == () and run.total == eur("0.00")
    acc, [entry] = domain.post_run(account("19.99"), run, AT)
    assert (entry.entry_type, entry.amount, entry.balance) == (EntryType.CREDIT_MEMO, eur("-19.99"), eur("0.00"))
    assert entry.description == f"Credit memo (order_cancelled), settlement run {RUN}"
    event = receivables_posted(run, acc, None, AT)
    assert (event.items, event.total, event.credit_total) == ([], Decimal("0.00"), Decimal("19.99"))
    assert event.customer is None  # settlement had no snapshot: invoicing falls back to its replica


def test_a_runs_items_are_summed_into_one_line_per_item_period_price_and_tax_category():
    def used(net: str, price: str = "0.0125", *, code: str = "api-calls", period_start: date = date(2026, 11, 1),
             category: TaxCategory = TaxCategory.STANDARD, discount: str = "0") -> Item:
        return Item(billable_item_id=uuid.uuid4(), contract_id="C-1", item_code=code, description=code,
                    quantity=Decimal(net) / Decimal(price), unit_price=Decimal(price), net=eur(net),
                    period_start=period_start, period_end=period_start.replace(day=30), tax_category=category,
                    discount=eur(discount))

    # 5,000 usage events of one period become one line; what differs in price, period or category stays apart.
    many = [used("0.01", discount="0.01") for _ in range(5_000)]
    others = [used("1.00", "0.01"), used("2.50", period_start=date(2026, 10, 1)),
              used("3.00", category=TaxCategory.REDUCED), used("4.00", code="storage-gb")]
    run = domain.settle(RUN, account(), AT, [*many, *others])
    assert run is not None
    lines = run.lines
    assert [(line.item_code, line.period_start, line.unit_price, line.tax_category, line.net, line.item_count)
            for line in lines] == [
        ("api-calls", date(2026, 10, 1), Decimal("0.0125"), TaxCategory.STANDARD, eur("2.50"), 1),
        ("api-calls", date(2026, 11, 1), Decimal("0.01"), TaxCategory.STANDARD, eur("1.00"), 1),
        ("api-calls", date(2026, 11, 1), Decimal("0.0125"), TaxCategory.STANDARD, eur("50.00"), 5_000),
        ("api-calls", date(2026, 11, 1), Decimal("0.0125"), TaxCategory.REDUCED, eur("3.00"), 1),
        ("storage-gb", date(2026, 11, 1), Decimal("0.0125"), TaxCategory.STANDARD, eur("4.00"), 1),
    ]
    summed = lines[2]
    assert (summed.quantity, summed.discount) == (Decimal(4000), eur("50.00"))  # 5,000 x 0.8 units, x 0.01
    assert Money.sum((line.net for line in lines), "EUR") == run.total == eur("60.50")
    assert summed.line_id == domain.settle(RUN, account(), AT, [*many, *others]).lines[2].line_id  # stable
    event = receivables_posted(run, account(), CUSTOMER, AT)
    assert len(event.items) == 5 and len(event.model_dump_json()) < 5_000


def used(net: str, price: str, quantity: str, *, code: str = "api-calls") -> Item:
    return Item(billable_item_id=uuid.uuid4(), contract_id="C-1", item_code=code, description=code,
                quantity=Decimal(quantity), unit_price=Decimal(price), net=eur(net), period_start=date(2026, 11, 1),
                period_end=date(2026, 11, 30), tax_category=TaxCategory.STANDARD)


def test_a_run_whose_items_come_to_less_than_nothing_credits_its_negative_lines_and_invoices_the_rest():
    # Volume pricing: 1,000 calls at 0.10 were billed (100.00); 1 more reached the 0.08 band for all
    # 1,001 (80.08), so the period's later items come to -19.92, and a fee of 5.00 is due with them.
    cheaper = used("-19.92", "0.08", "1")
    fee_item = used("5.00", "5.00", "1", code="support")
    run = domain.settle(RUN, account("119.00"), AT, [cheaper, fee_item])
    assert run is not None and run.total == eur("-14.92")
    assert [line.item_code for line in run.invoiced_lines] == ["support"]
    assert [line.item_code for line in run.adjusted_lines] == ["api-calls"]
    assert (run.receivable, run.adjustment) == (eur("5.00"), eur("19.92"))

    moved, entries = domain.post_run(account("119.00"), run, AT)
    assert [(entry.entry_type, entry.amount, entry.balance) for entry in entries] == [
        (EntryType.RECEIVABLE, eur("5.00"), eur("124.00")), (EntryType.CREDIT_MEMO, eur("-19.92"), eur("104.08"))]
    assert moved.balance == eur("104.08") == eur("119.00") + run.total

    # The run that invoiced November's api-calls before: the adjustment corrects its invoice.
    billed_before = {("C-1", "api-calls", date(2026, 11, 1), date(2026, 11, 30)): BILLED_BY}
    event = receivables_posted(run, moved, CUSTOMER, AT, billed_before)
    assert ([item.item_code for item in event.items], event.total) == (["support"], Decimal("5.00"))
    [adjustment] = event.credits
    assert (adjustment.reason, adjustment.quantity, adjustment.unit_price, adjustment.net, adjustment.description,
            adjustment.credited_settlement_run_id) == (
        CreditReason.ADJUSTMENT, Decimal(1), Decimal("19.92"), Decimal("19.92"), "Adjustment: api-calls", BILLED_BY)
    assert event.credit_total == Decimal("19.92")


def test_a_run_that_comes_to_zero_or_more_invoices_its_negative_lines_too():
    run = domain.settle(RUN, account(), AT, [used("-19.92", "0.08", "1"), used("25.00", "0.10", "250")])
    assert run is not None and (run.receivable, run.adjustment, run.adjusted_lines) == (eur("5.08"), eur("0"), ())
    _, entries = domain.post_run(account(), run, AT)
    assert [(entry.entry_type, entry.amount) for entry in entries] == [(EntryType.RECEIVABLE, eur("5.08"))]


def test_a_run_of_only_negative_lines_is_a_credit_memo_alone():
    run = domain.settle(RUN, account("100.00"), AT, [used("-19.92", "0.08", "1")])
    assert run is not None and run.invoiced_lines == ()
    moved, entries = domain.post_run(account("100.00"), run, AT)
    assert [(entry.entry_type, entry.amount) for entry in entries] == [(EntryType.CREDIT_MEMO, eur("-19.92"))]
    event = receivables_posted(run, moved, CUSTOMER, AT)
    assert (event.items, event.total, event.credit_total, event.ledger_balance) == (
        [], Decimal(0), Decimal("19.92"), Decimal("80.08"))


def test_vouchers_requested_are_one_run_per_contract_with_ids_from_the_request():
    request_id = uuid.uuid4()
    now = datetime(2026, 12, 3, 9, tzinfo=UTC)
    cutoff = datetime(2026, 12, 1, tzinfo=UTC)
    runs = domain.billing_run_requests(request_id, ["C-1", "C-2", "C-1"], cutoff, now, "user:erika")
    assert [(r.contract_id, r.cutoff, r.occurred_at, r.requested_by) for r in runs] == [
        ("C-1", cutoff, now, "user:erika"), ("C-2", cutoff, now, "user:erika")]
    assert [r.event_id for r in runs] == [derive_id(str(request_id), "billing-run:C-1"),
                                         derive_id(str(request_id), "billing-run:C-2")]
    # The same request again (a resubmitted form) is the same events, which settlement applies once.
    assert domain.billing_run_requests(request_id, ["C-1"], cutoff, now, "user:erika")[0].event_id == runs[0].event_id
    with pytest.raises(Rejected):
        domain.billing_run_requests(request_id, [], cutoff, now, "user:erika")
