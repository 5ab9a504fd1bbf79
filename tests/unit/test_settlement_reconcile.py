"""The reconciliation's arithmetic: what counts as a difference, per contract and in total."""

from decimal import Decimal

from ops.reconcile import Figures, report, totals_per_currency
from services.settlement.domain import EntryType


def balanced(**changes) -> Figures:
    """154.21 rated and settled (150.00 by a run, 4.21 waiting), credited 4.21, paid 100, charged back, refunded 20."""
    figures = dict(
        currency="EUR", rated=Decimal("154.21"), settled=Decimal("150.00"), unsettled=Decimal("4.21"),
        run_totals=Decimal("150.00"), credited=Decimal("4.21"),
        entry_sums={EntryType.RECEIVABLE: Decimal("150.00"), EntryType.CREDIT_MEMO: Decimal("-4.21"),
                    EntryType.PAYMENT: Decimal("-100.00"), EntryType.CHARGEBACK: Decimal("100.00"),
                    EntryType.REFUND: Decimal("20.00")},
        # 150.00 - 4.21 - 100.00 + 100.00 + 20.00
        account_balance=Decimal("165.79"), last_running_balance=Decimal("165.79"),
    )
    return Figures(**{**figures, **changes})


def test_a_contract_whose_figures_agree_has_no_difference():
    figures = balanced()
    assert figures.differences() == []
    assert (figures.rated_difference, figures.ledger_difference) == (0, 0)
    assert figures.ledger.balance.amount == Decimal("165.79")


def test_each_kind_of_disagreement_is_reported():
    assert balanced(rated=Decimal("154.22")).differences() == [
        "rated 154.22 != settled 150.00 + unsettled 4.21"]
    assert balanced(run_totals=Decimal("149.00")).differences() == [
        "receivables 150.00 EUR != runs' totals 149.00"]
    assert balanced(credited=Decimal("5.0000")).differences() == ["credit memos 4.21 EUR != credits 5.00"]
    assert balanced(account_balance=Decimal("165.80")).differences() == [
        "entries give a balance of 165.79 EUR, the account has 165.80",
        "last entry's running balance 165.79 != account 165.80"]


def test_totals_are_per_currency_and_the_report_counts_every_difference():
    per_contract = {
        "C-1": balanced(),
        "C-2": balanced(rated=Decimal("1.00"), settled=Decimal("0"), unsettled=Decimal("0"), run_totals=Decimal("0"),
                        credited=Decimal("0"), entry_sums={}, account_balance=Decimal("0"),
                        last_running_balance=Decimal("0")),
        "C-3": Figures("USD", rated=Decimal("7.78"), settled=Decimal("7.78"), run_totals=Decimal("7.78"),
                       entry_sums={EntryType.RECEIVABLE: Decimal("7.78")}, account_balance=Decimal("7.78"),
                       last_running_balance=Decimal("7.78")),
    }
    totals = totals_per_currency(per_contract)
    assert (totals["EUR"].rated, totals["EUR"].rated_difference) == (Decimal("155.21"), Decimal("1.00"))
    assert totals["EUR"].ledger.balance.amount == Decimal("165.79")
    assert totals["USD"].differences() == []
    table, problems = report(per_contract)
    assert problems == 1
    assert "DIFFERENCE C-2: rated 1.00 != settled 0.00 + unsettled 0.00" in table
    assert "3 contract(s), 1 difference(s)" in table
    assert [line.split()[:2] for line in table.splitlines() if line.startswith("TOTAL")] == [["TOTAL", "EUR"],
                                                                                           ["TOTAL", "USD"]]
