"""Where a read-only CLI command gets its rows, and for which period.

Two sources, the same answers (aggregator/reports/runner.py):

* ``--aggregator URL`` (with ``--sql-token`` or ``CHARGEBACK_SQL_TOKEN``): the
  running aggregator's authenticated ``POST /v1/sql``. Use this while an
  aggregator runs on an embedded store, which only one process may open.
* otherwise the store itself, ``--store-dsn`` (default: the aggregator's
  settings, ``CHARGEBACK_STORE_DSN``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from ..analytics.governance import DEFAULT_PERIOD_DAYS, GovernanceError, Period

if TYPE_CHECKING:
    from ..analytics.reports import Runner

SQL_TOKEN_ENV = "CHARGEBACK_SQL_TOKEN"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

# Exit codes shared by the governance and reconcile commands.
EXIT_OK = 0
EXIT_FINDINGS = 1  # not ready / findings / discrepancies: for CI gates
EXIT_ERROR = 2


def add_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where to read")
    group.add_argument("--store-dsn", help="chdb:///path or http://host:8123 (default: CHARGEBACK_STORE_DSN or ./var/chargeback)")
    group.add_argument("--database", help="ClickHouse database (default: chargeback)")
    group.add_argument("--aggregator", metavar="URL", help="read through a running aggregator's POST /v1/sql instead")
    group.add_argument("--sql-token", help=f"bearer token for --aggregator (default: ${SQL_TOKEN_ENV}, ${SQL_TOKEN_ENV}_FILE, or the "
                                           "token a local `chargeback serve` keeps beside the store)")


def add_period_options(parser: argparse.ArgumentParser, *, default_days: int | None = DEFAULT_PERIOD_DAYS) -> None:
    group = parser.add_argument_group("period (UTC)")
    group.add_argument("--month", metavar="YYYY-MM", help="a calendar month")
    group.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day (inclusive)")
    group.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day (inclusive)")
    if default_days is not None:
        group.add_argument("--days", type=int, default=None, help=f"the last N days including today (default {default_days})")


def period_from(args: argparse.Namespace, *, default_days: int | None = DEFAULT_PERIOD_DAYS) -> Period | None:
    """The period the options name; None when none is named and there is no default."""
    month = getattr(args, "month", None)
    first, last = getattr(args, "date_from", None), getattr(args, "date_to", None)
    days = getattr(args, "days", None)
    named = [bool(month), bool(first or last), days is not None]
    if sum(named) > 1:
        raise GovernanceError("use one of --month, --from/--to, --days")
    if month:
        match = _MONTH.match(month)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise GovernanceError(f"--month wants YYYY-MM, got {month!r}")
        return Period.month(int(match.group(1)), int(match.group(2)))
    if first or last:
        if not (first and last):
            raise GovernanceError("--from and --to go together")
        try:
            first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
        except ValueError as exc:
            raise GovernanceError(f"bad date: {exc}") from exc
        if last_day < first_day:
            raise GovernanceError(f"--to {last} is before --from {first}")
        # Both days count, as on an invoice: --from 2026-11-01 --to 2026-11-30 is November.
        return Period.days(first_day, last_day + timedelta(days=1))
    if days is not None:
        if days < 1:
            raise GovernanceError(f"--days must be >= 1, got {days}")
        return Period.trailing_days(days)
    if default_days is None:
        return None
    return Period.trailing_days(default_days, now=datetime.now(UTC))


@contextmanager
def open_runner(args: argparse.Namespace) -> Iterator[Runner]:
    # Imported here: the store driver is the aggregator extra; the CLI starts without it.
    from ..analytics.reports import LocalRunner, RemoteRunner
    from ..secret_env import read_secret
    from ..settings import AggregatorSettings
    from ..store.clickhouse import Store

    if args.aggregator:
        token = args.sql_token or read_secret("sql_token")
        if not token:
            raise GovernanceError(f"--aggregator needs --sql-token, ${SQL_TOKEN_ENV} or ${SQL_TOKEN_ENV}_FILE")
        yield RemoteRunner(args.aggregator, token, database=args.database or "chargeback")
        return
    overrides = {k: v for k, v in (("store_dsn", args.store_dsn), ("database", args.database)) if v}
    settings = AggregatorSettings(**overrides)
    store = Store.from_settings(settings)
    try:
        yield LocalRunner(store)
    finally:
        store.close()
