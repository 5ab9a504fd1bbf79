"""Invoicing: documents with gapless numbers from settled receivables."""
