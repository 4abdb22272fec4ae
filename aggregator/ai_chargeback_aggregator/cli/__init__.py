"""The `chargeback` command line."""
