"""Rating: turns usage of a contract's items into priced billable items."""
