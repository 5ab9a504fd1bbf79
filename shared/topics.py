"""Every topic name, defined once. Messages on all of them are keyed by contract id, but for
payment-accounts.changed, keyed by customer id."""

CONTRACTS_CHANGED = "contracts.changed"
USAGE_RECORDED = "usage.recorded"
ITEMS_RATED = "items.rated"
PERIODS_CLOSED = "periods.closed"
BILLING_RUNS_REQUESTED = "billing-runs.requested"
RECEIVABLES_POSTED = "receivables.posted"
DOCUMENTS_CREATED = "documents.created"
PAYMENTS_RECEIVED = "payments.received"
PAYMENT_ACCOUNTS_CHANGED = "payment-accounts.changed"
DEAD_LETTERS = "dead-letters"

ALL = (
    CONTRACTS_CHANGED,
    USAGE_RECORDED,
    ITEMS_RATED,
    PERIODS_CLOSED,
    BILLING_RUNS_REQUESTED,
    RECEIVABLES_POSTED,
    DOCUMENTS_CREATED,
    PAYMENTS_RECEIVED,
    PAYMENT_ACCOUNTS_CHANGED,
    DEAD_LETTERS,
)
