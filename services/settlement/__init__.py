"""Settlement: billing runs turn billable items into receivables on each contract's ledger."""
