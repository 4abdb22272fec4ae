"""Subcommands of `chargeback`; each module defines ``register(subparsers)``."""
