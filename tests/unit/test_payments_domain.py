"""Payments' pure rules: assignment order, credit, taking money back, status changes, payment accounts."""

import uuid
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.payments.domain import (
    reinstate,
    MandateStatus,
    mandate_status_after,
    Assignment,
    Credit,
    Held,
    InvalidPaymentAccount,
    ItemType,
    OpenItem,
    PaymentMethod,
    StatusChange,
    apply_credits,
    assign,
    assignment_by_hand,
    assignment_order,
    new_payment_account,
    status_change,
    withdraw,
)
from shared.errors import Rejected
from shared.events import PaymentStatus
from shared.money import Money


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def item(number: str | None, open_amount: str, due: date, amount: str | None = None,
         item_type: ItemType = ItemType.INVOICE) -> OpenItem:
    return OpenItem(uuid.uuid5(uuid.NAMESPACE_URL, number or f"own-{open_amount}-{due}"), number,
                    eur(amount or open_amount), eur(open_amount), due, item_type)


A = item("R2026-0001", "100.00", date(2026, 11, 10))
B = item("R2026-0002", "50.00", date(2026, 11, 5))
C = item("R2026-0003", "30.00", date(2026, 11, 5))
P1, P2, P3 = (uuid.uuid5(uuid.NAMESPACE_URL, f"payment-{n}") for n in range(3))


# --- assignment ----------------------------------------------------------------------------------


def test_a_won_dispute_pays_back_what_its_chargeback_reopened_first_then_the_oldest_due():
    fee = item(None, "15.00", date(2026, 11, 1), item_type=ItemType.CHARGEBACK_FEE)
    assignments, left = reinstate(eur("60.00"), [fee, B, A], reopened=[A.document_id])
    assert [(a.document_id, a.amount) for a in assignments] == [(A.document_id, eur("60.00"))]
    assert left == eur("0.00")
    # More than it reopened: the rest pays like any payment (oldest due first), then is credit.
    assignments, left = reinstate(eur("200.00"), [fee, B, A], reopened=[A.document_id, A.document_id])
    assert [(a.document_id, a.amount) for a in assignments] == [
        (A.document_id, eur("100.00")), (fee.document_id, eur("15.00")), (B.document_id, eur("50.00"))]
    assert left == eur("35.00")


def test_the_named_invoice_comes_first_then_the_oldest_due_then_the_number():
    assert [i.invoice_number for i in assignment_order([A, C, B], "R2026-0001")] == [
        "R2026-0001", "R2026-0002", "R2026-0003"]
    assert [i.invoice_number for i in assignment_order([A, C, B], None)] == ["R2026-0002", "R2026-0003", "R2026-0001"]


def test_an_item_of_payments_own_is_not_taken_for_the_named_invoice_when_none_is_named():
    fee = item(None, "15.00", date(2026, 11, 20), item_type=ItemType.CHARGEBACK_FEE)
    assert assignment_order([fee, A], None) == [A, fee]  # due 11-10 before 11-20
    assert assignment_order([A, fee], "R2026-0001") == [A, fee]


def test_a_partial_payment_leaves_the_rest_open():
    assignments, after, left = assign(eur("120.00"), [A, B], "R2026-0001")
    assert assignments == [Assignment(A.document_id, eur("100.00")), Assignment(B.document_id, eur("20.00"))]
    assert [(i.invoice_number, i.open_amount) for i in after] == [("R2026-0001", eur("0.00")),
                                                                 ("R2026-0002", eur("30.00"))]
    assert left == eur("0.00")


def test_an_overpayment_is_kept_as_credit():
    assignments, _, left = assign(eur("200.00"), [A, B, C])
    assert [a.amount for a in assignments] == [eur("50.00"), eur("30.00"), eur("100.00")]
    assert left == eur("20.00")


def test_a_payment_with_nothing_open_is_all_credit():
    assert assign(eur("12.34"), []) == ([], [], eur("12.34"))


def test_credit_pays_the_oldest_due_item_oldest_credit_first():
    uses = apply_credits([Credit(P1, eur("60.00")), Credit(P2, eur("40.00"))], [A, B])
    assert [(u.payment_event_id, u.assignments, u.left) for u in uses] == [
        (P1, [Assignment(B.document_id, eur("50.00")), Assignment(A.document_id, eur("10.00"))], eur("0.00")),
        (P2, [Assignment(A.document_id, eur("40.00"))], eur("0.00")),
    ]


def test_credit_that_finds_nothing_open_stays_credit():
    paid = item("R2026-0009", "0.00", date(2026, 11, 1), amount="80.00")
    assert apply_credits([Credit(P1, eur("5.00"))], [paid]) == []


# --- taking money back ---------------------------------------------------------------------------


def test_money_going_back_comes_out_of_credit_first_then_the_newest_assignments():
    held = [Held(P1, A.document_id, eur("30.00")), Held(P1, B.document_id, eur("50.00"))]
    result = withdraw(eur("45.00"), [Credit(P1, eur("10.00"))], held)
    assert result.taken_credit == [Credit(P1, eur("10.00"))]
    assert result.reopened == [Held(P1, A.document_id, eur("30.00")), Held(P1, B.document_id, eur("5.00"))]
    assert result.uncovered == eur("0.00")


def test_what_neither_credit_nor_assignments_cover_is_uncovered():
    result = withdraw(eur("100.00"), [Credit(P2, eur("20.00"))], [Held(P2, A.document_id, eur("50.00"))])
    assert (result.taken_credit, result.reopened, result.uncovered) == (
        [Credit(P2, eur("20.00"))], [Held(P2, A.document_id, eur("50.00"))], eur("30.00"))


def test_a_refund_out_of_credit_reopens_nothing():
    result = withdraw(eur("7.50"), [Credit(P1, eur("5.00")), Credit(P2, eur("5.00"))],
                      [Held(P1, A.document_id, eur("100.00"))])
    assert result.taken_credit == [Credit(P1, eur("5.00")), Credit(P2, eur("2.50"))]
    assert result.reopened == [] and result.uncovered == eur("0.00")


@given(
    amount=st.integers(min_value=1, max_value=100_000),
    credits=st.lists(st.integers(min_value=1, max_value=10_000), max_size=4),
    held=st.lists(st.integers(min_value=1, max_value=10_000), max_size=4),
)
def test_a_withdrawal_always_accounts_for_the_whole_amount(amount, credits, held):
    cents = lambda n: Money(Decimal(n).scaleb(-2), "EUR")  # noqa: E731
    result = withdraw(cents(amount), [Credit(P1, cents(c)) for c in credits],
                      [Held(P1, A.document_id, cents(h)) for h in held])
    total = Money.sum([c.amount for c in result.taken_credit] + [h.amount for h in result.reopened], "EUR")
    assert total + result.uncovered == cents(amount)
    assert all(taken.amount <= cents(given) for taken, given in zip(result.taken_credit, credits, strict=False))
    assert result.uncovered.is_zero() or total == cents(sum(credits) + sum(held))


# --- status of a provider transaction ------------------------------------------------------------


@pytest.mark.parametrize(("held", "reported", "change"), [
    (None, PaymentStatus.PENDING, StatusChange.NEW),
    (None, PaymentStatus.SUCCEEDED, StatusChange.NEW),
    (None, PaymentStatus.FAILED, StatusChange.NEW),
    (PaymentStatus.PENDING, PaymentStatus.SUCCEEDED, StatusChange.SETTLED),
    (PaymentStatus.PENDING, PaymentStatus.FAILED, StatusChange.SETTLED),
    (PaymentStatus.FAILED, PaymentStatus.SUCCEEDED, StatusChange.SETTLED),  # the provider retried it
    (PaymentStatus.PENDING, PaymentStatus.PENDING, StatusChange.NONE),
    (PaymentStatus.SUCCEEDED, PaymentStatus.SUCCEEDED, StatusChange.NONE),  # a repeat never pays twice
    (PaymentStatus.SUCCEEDED, PaymentStatus.PENDING, StatusChange.NONE),  # late news of the past
    (PaymentStatus.FAILED, PaymentStatus.FAILED, StatusChange.NONE),
    (PaymentStatus.FAILED, PaymentStatus.PENDING, StatusChange.NONE),
])
def test_status_changes(held, reported, change):
    assert status_change(held, reported) is change


def test_a_succeeded_payment_cannot_fail_afterwards():
    with pytest.raises(Rejected, match="chargeback"):
        status_change(PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)


# --- payment accounts ----------------------------------------------------------------------------

ACCOUNT = uuid.UUID(int=1)


def sepa(**overrides):
    details = {"iban": "DE89 3704 0044 0532 0130 00", "mandate_reference": "MNDT-2026/001",
               "mandate_signed_on": date(2026, 1, 2), **overrides}
    return new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.SEPA_DIRECT_DEBIT, first_of_customer=False,
                               **details)


def test_a_sepa_account_keeps_the_compact_iban_and_its_mandate():
    account = sepa(bic="COBADEFFXXX")
    assert (account.iban, account.bic, account.mandate_reference) == ("DE89370400440532013000", "COBADEFFXXX",
                                                                      "MNDT-2026/001")
    assert account.describe() == "SEPA direct debit DE89 …3000, mandate MNDT-2026/001 (active)"
    assert not account.is_default
    assert account.mandate_status is MandateStatus.ACTIVE


def test_a_direct_debit_collected_by_a_provider_keeps_the_providers_mandate_id():
    account = sepa(provider="gocardless", provider_token="MD0000AB12CD")
    assert (account.provider, account.provider_token) == ("gocardless", "MD0000AB12CD")


@pytest.mark.parametrize(("held", "reported", "after"), [
    (None, MandateStatus.ACTIVE, MandateStatus.ACTIVE),
    (MandateStatus.ACTIVE, MandateStatus.CANCELLED, MandateStatus.CANCELLED),
    (MandateStatus.ACTIVE, MandateStatus.EXPIRED, MandateStatus.EXPIRED),
    (MandateStatus.CANCELLED, MandateStatus.ACTIVE, MandateStatus.CANCELLED),  # a late "active" revives nothing
    (MandateStatus.FAILED, MandateStatus.ACTIVE, MandateStatus.FAILED),
    (MandateStatus.CANCELLED, MandateStatus.EXPIRED, MandateStatus.EXPIRED),
])
def test_an_ended_mandate_stays_ended(held, reported, after):
    assert mandate_status_after(held, reported) is after


@pytest.mark.parametrize(("overrides", "message"), [
    ({"iban": "DE89 3704 0044 0532 0130 01"}, "invalid bank details"),  # checksum
    ({"bic": "NOTABIC"}, "invalid bank details"),
    ({"mandate_reference": None}, "needs an IBAN, a mandate reference"),
    ({"mandate_signed_on": None}, "needs an IBAN, a mandate reference"),
    ({"mandate_reference": "/LEADING-SLASH"}, "not a SEPA mandate reference"),
    ({"mandate_reference": "A//B"}, "not a SEPA mandate reference"),
    ({"mandate_reference": "WITH SPACE"}, "not a SEPA mandate reference"),
    ({"mandate_reference": "M" * 36}, "not a SEPA mandate reference"),
    ({"provider_token": "MD0001"}, "names the provider and its mandate id"),
    ({"provider": "gocardless"}, "names the provider and its mandate id"),
])
def test_invalid_sepa_details_are_refused(overrides, message):
    with pytest.raises(InvalidPaymentAccount, match=message):
        sepa(**overrides)


def test_a_card_is_kept_by_the_providers_token_never_its_number():
    card = new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.CARD, first_of_customer=False,
                               provider="demo-psp", provider_token="tok_visa_4242")
    assert card.describe() == "card via demo-psp, token …4242"
    with pytest.raises(InvalidPaymentAccount, match="looks like a card number"):
        new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.CARD, first_of_customer=False,
                            provider="demo-psp", provider_token="4242 4242 4242 4242")
    with pytest.raises(InvalidPaymentAccount, match="needs the provider"):
        new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.CARD, first_of_customer=False, provider="demo-psp")


def test_a_bank_transfer_takes_no_details_and_the_first_account_is_the_default():
    transfer = new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.BANK_TRANSFER, first_of_customer=True)
    assert transfer.is_default and transfer.describe() == "bank transfer"
    assert new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.BANK_TRANSFER, first_of_customer=False,
                               make_default=True).is_default
    with pytest.raises(InvalidPaymentAccount, match="do not take iban"):
        new_payment_account(ACCOUNT, "CUST-1", PaymentMethod.BANK_TRANSFER, first_of_customer=True,
                            iban="DE89370400440532013000")


def test_credit_assigned_by_hand_is_as_much_as_credit_and_item_allow():
    credit = Credit(uuid.uuid4(), eur("50.00"))
    invoice = item("R2026-0002", "30.00", date(2026, 12, 1))
    assert assignment_by_hand(credit, invoice) == Assignment(invoice.document_id, eur("30.00"))
    assert assignment_by_hand(credit, invoice, eur("12.50")) == Assignment(invoice.document_id, eur("12.50"))


@pytest.mark.parametrize(("credit", "open_amount", "wanted", "reason"), [
    ("50.00", "30.00", "30.01", "open, less than"), ("20.00", "30.00", "25.00", "credit is 20.00 EUR"),
    ("20.00", "0.00", None, "nothing to assign"), ("20.00", "30.00", "0.00", "nothing to assign")])
def test_credit_assigned_by_hand_never_exceeds_either(credit, open_amount, wanted, reason):
    with pytest.raises(Rejected, match=reason):
        assignment_by_hand(Credit(uuid.uuid4(), eur(credit)), item("R2026-0002", open_amount, date(2026, 12, 1)),
                           None if wanted is None else eur(wanted))
