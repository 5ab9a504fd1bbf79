"""Payments: incoming payments, open items (OPOS) and the assignment of one to the other."""
