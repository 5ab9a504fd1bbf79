"""The reconciliation's arithmetic: what counts as a difference, per contract and in total."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from ops.reconcile import (
    Document,
    Figures,
    Held,
    Parked,
    Reconciliation,
    Run,
    report,
    totals_per_currency,
    undocumented,
)
from services.settlement.domain import EntryType
from shared.events import DeadLetter, DocumentType


def balanced(**changes) -> Figures:
    """154.21 rated and settled (150.00 by a run, 4.21 waiting), credited 4.21, paid 100, charged back, refunded 20;
    invoiced and credited without VAT (a customer outside the EU), and payments agree."""
    figures = dict(
        currency="EUR", rated=Decimal("154.21"), settled=Decimal("150.00"), unsettled=Decimal("4.21"),
        run_totals=Decimal("150.00"), credited=Decimal("4.21"),
        entry_sums={EntryType.RECEIVABLE: Decimal("150.00"), EntryType.CREDIT_MEMO: Decimal("-4.21"),
                    EntryType.PAYMENT: Decimal("-100.00"), EntryType.CHARGEBACK: Decimal("100.00"),
                    EntryType.REFUND: Decimal("20.00")},
        # 150.00 - 4.21 - 100.00 + 100.00 + 20.00
        account_balance=Decimal("165.79"), last_running_balance=Decimal("165.79"),
        invoiced_net=Decimal("150.00"), credit_notes_net=Decimal("4.21"),
        paid=Decimal("100.00"), charged_back=Decimal("100.00"), refunded=Decimal("20.00"),
        # the invoice's 150.00 reopened by the chargeback, less the credit note's 4.21, and the refund's 20.00 debit
        open_amount=Decimal("165.79"),
    )
    return Figures(**{**figures, **changes})


def test_a_contract_whose_figures_agree_has_no_difference():
    figures = balanced()
    assert figures.differences() == []
    assert (figures.rated_difference, figures.ledger_difference, figures.payments_difference) == (0, 0, 0)
    assert figures.ledger.balance.amount == figures.counterparts.balance.amount == Decimal("165.79")


def test_each_kind_of_disagreement_within_rating_and_settlement_is_reported():
    assert balanced(rated=Decimal("154.22")).differences() == [
        "rated 154.22 != settled 150.00 + unsettled 4.21"]
    assert balanced(run_totals=Decimal("149.00")).differences() == [
        "settled items 150.00 != runs' totals 149.00", "receivables 150.00 EUR != runs' totals 149.00"]
    assert balanced(settled=Decimal("151.00"), unsettled=Decimal("3.21")).differences() == [
        "settled items 151.00 != runs' totals 150.00"]
    assert balanced(credited=Decimal("5.0000")).differences() == ["credit memos 4.21 EUR != credits 5.00"]
    assert balanced(account_balance=Decimal("165.80")).differences() == [
        "entries give a balance of 165.79 EUR, the account has 165.80",
        "last entry's running balance 165.79 != account 165.80"]


def test_the_ledger_is_compared_with_invoicings_documents_type_by_type_and_in_its_balance():
    assert balanced(invoiced_net=Decimal("149.00")).differences() == [
        "Receivable entries 150.00 EUR != invoices' net 149.00 EUR",
        ("ledger balance 165.79 EUR != documents' gross - payments + chargebacks + fees + refunds - chargeback "
         "reversals 164.79 EUR")]
    # VAT an invoice charged that settlement never booked: the ledger is short of what payments holds open.
    assert balanced(invoiced_tax=Decimal("28.50"), open_amount=Decimal("194.29")).differences() == [
        "Tax entries 0.00 EUR != invoices' VAT 28.50 EUR",
        ("ledger balance 165.79 EUR != documents' gross - payments + chargebacks + fees + refunds - chargeback "
         "reversals 194.29 EUR"),
        "ledger balance 165.79 EUR != payments' open items 194.29 - unassigned credit 0.00 = 194.29"]


def test_the_ledger_is_compared_with_payments_transactions_and_its_open_items_minus_credit():
    # A chargeback's fee payments opened as an item, which the ledger never booked.
    assert balanced(chargeback_fees=Decimal("15.00"), open_amount=Decimal("180.79")).differences() == [
        "ChargebackFee entries 0.00 EUR != payments' chargeback fees 15.00 EUR",
        ("ledger balance 165.79 EUR != documents' gross - payments + chargebacks + fees + refunds - chargeback "
         "reversals 180.79 EUR"),
        "ledger balance 165.79 EUR != payments' open items 180.79 - unassigned credit 0.00 = 180.79"]
    # Money payments holds as the customer's credit lowers what is owed there.
    assert balanced(open_amount=Decimal("175.79"), unassigned_credit=Decimal("10.00")).differences() == []
    assert balanced(unassigned_credit=Decimal("10.00")).differences() == [
        "ledger balance 165.79 EUR != payments' open items 165.79 - unassigned credit 10.00 = 155.79"]


def test_totals_are_per_currency_and_the_report_counts_every_difference():
    per_contract = {
        "C-1": balanced(),
        "C-2": Figures("EUR", rated=Decimal("1.00")),
        "C-3": Figures("USD", rated=Decimal("7.78"), settled=Decimal("7.78"), run_totals=Decimal("7.78"),
                       entry_sums={EntryType.RECEIVABLE: Decimal("7.78")}, account_balance=Decimal("7.78"),
                       last_running_balance=Decimal("7.78"), invoiced_net=Decimal("7.78"),
                       open_amount=Decimal("7.78")),
    }
    totals = totals_per_currency(per_contract)
    assert (totals["EUR"].rated, totals["EUR"].rated_difference) == (Decimal("155.21"), Decimal("1.00"))
    assert (totals["EUR"].ledger.balance.amount, totals["EUR"].open_minus_credit) == (Decimal("165.79"),
                                                                                      Decimal("165.79"))
    assert totals["USD"].differences() == []
    table, problems = report(Reconciliation(per_contract))
    assert problems == 1
    assert "DIFFERENCE C-2: rated 1.00 != settled 0.00 + unsettled 0.00" in table
    assert "3 contract(s), 1 difference(s)" in table
    assert [line.split()[:2] for line in table.splitlines() if line.startswith("TOTAL")] == [["TOTAL", "EUR"],
                                                                                           ["TOTAL", "USD"]]


RUN_ID, CREDIT_RUN_ID, INVOICE_ID, CREDIT_NOTE_ID = (uuid.uuid4() for _ in range(4))


def runs() -> list[Run]:
    """A run that settled items and a later one that credited some of them."""
    return [Run(RUN_ID, "C-1", "EUR", Decimal("150.0000"), Decimal(0), has_items=True, has_credits=False),
            Run(CREDIT_RUN_ID, "C-1", "EUR", Decimal(0), Decimal("4.2100"), has_items=False, has_credits=True)]


INVOICE = Document(INVOICE_ID, "R2026-0001", DocumentType.INVOICE, RUN_ID, "C-1")
CREDIT_NOTE = Document(CREDIT_NOTE_ID, "G2026-0001", DocumentType.CREDIT_NOTE, CREDIT_RUN_ID, "C-1")


def test_every_run_has_its_documents_and_every_document_is_in_payments():
    assert undocumented(runs(), [INVOICE, CREDIT_NOTE], {INVOICE_ID}, {"G2026-0001"}) == {}


def test_a_run_without_its_document_and_a_document_payments_does_not_have_are_reported():
    assert undocumented(runs(), [CREDIT_NOTE], set(), set()) == {"C-1": [
        f"settlement run {RUN_ID} settled 150.00 EUR, but invoicing has no invoice for it",
        "credit note G2026-0001 is not recorded in payments"]}
    assert undocumented(runs(), [INVOICE], {INVOICE_ID}, set()) == {"C-1": [
        f"settlement run {CREDIT_RUN_ID} credited 4.21 EUR, but invoicing has no credit note for it"]}
    assert undocumented(runs(), [INVOICE, CREDIT_NOTE], set(), {"G2026-0001"}) == {"C-1": [
        "invoice R2026-0001 has no open item in payments"]}


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def dead_letter(key: str) -> DeadLetter:
    return DeadLetter(event_id=uuid.uuid4(), occurred_at=NOW, consumer="rating.usage.recorded",
                      source_topic="usage.recorded", partition=0, offset=3, key=key, reason="contract C-9 has no item",
                      error_type="Rejected", payload="{}", payload_encoding="utf-8", payload_truncated=False)


def test_parked_messages_and_dead_letters_are_listed_and_counted_unless_dead_letters_are_allowed():
    parked = Parked("invoicing", "invoicing.receivables.posted", uuid.uuid4(), "receivables.posted", 1, 7, "C-1",
                    "contract C-1 has no item 'setup' yet", NOW)
    reconciliation = Reconciliation({"C-1": balanced()}, {"C-1": ["invoice R2026-0001 has no open item in payments"]},
                                    [parked], [dead_letter("C-9")])
    table, problems = report(reconciliation)
    assert problems == 3
    assert table.splitlines()[-4:] == [
        "1 contract(s), 3 difference(s)",
        "  DIFFERENCE C-1: invoice R2026-0001 has no open item in payments",
        "  PARKED invoicing: receivables.posted[1]@7 key C-1 (invoicing.receivables.posted), parked "
        "2026-11-30 12:00:00: contract C-1 has no item 'setup' yet",
        "  DEAD LETTER usage.recorded[0]@3 key C-9 (rating.usage.recorded): contract C-9 has no item",
    ]
    table, problems = report(reconciliation, allow_dead_letters=True)
    assert problems == 2
    assert table.splitlines()[-1] == (
        "  DEAD LETTER (allowed) usage.recorded[0]@3 key C-9 (rating.usage.recorded): contract C-9 has no item")
    assert report(Reconciliation({"C-1": balanced()}, dead_letters=[dead_letter("C-9")]),
                  allow_dead_letters=True)[1] == 0


def test_provider_transactions_the_bridge_holds_are_listed_and_counted():
    held = [Held("stripe", "evt_1", {"kind": "payment", "payment_id": "pi_1", "amount": "10.00", "currency": "EUR"},
                 None, NOW),
            Held("gocardless", "EV2", {"kind": "refund", "payment_id": "RF1", "amount": "5.00", "currency": "EUR"},
                 "PM1", NOW)]
    table, problems = report(Reconciliation({"C-1": balanced()}, held=held))
    assert problems == 2
    assert ("HELD stripe event evt_1, received 2026-11-30 12:00:00: payment pi_1 10.00 EUR names no contract, "
            "invoice or customer billing knows") in table
    assert "HELD gocardless event EV2, received 2026-11-30 12:00:00: refund RF1 5.00 EUR waits for PM1" in table
