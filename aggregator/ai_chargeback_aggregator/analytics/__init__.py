"""Read-only answers over the store: reports, statements, governance, reconciliation."""
