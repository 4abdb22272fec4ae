"""`chargeback sql`: run one read-only, parameterized query (ad hoc, a file, or a shipped query).

    chargeback sql "SELECT team, sum(cost_total) FROM {db:Identifier}.usage_events FINAL
                    WHERE started_at >= {start:DateTime64(3)} GROUP BY team" --param start=2026-10-01
    chargeback sql --query showback_by_team --param start=2026-10-01 --param end=2026-11-01 --format csv
    chargeback sql --list     # the shipped queries (analytics/sql/README.md documents each)

Through a running aggregator's POST /v1/sql when one runs (--url/--aggregator
with --token/--sql-token or CHARGEBACK_SQL_TOKEN, or the token a local
`chargeback serve` keeps beside the store), else straight from the store.
Either way it runs read-only; through the aggregator it must also be one SELECT
over the chargeback database, without SETTINGS (docs/security.md).
Values go as bound parameters ({name:Type} in the query), never spliced into
the text. Name tables as {db:Identifier}.usage_events (``db`` is bound to the
store's database, as the shipped queries do) or chargeback.usage_events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..aggregator_client import AggregatorError, open_reader
from ..query_source import EXIT_ERROR, EXIT_OK, add_source_options
from ..render import FORMATS, Report, Section, render


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("sql", help="run a read-only parameterized SQL query",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("query", nargs="?", help="the SQL text (or use --file)")
    parser.add_argument("--file", type=Path, help="read the SQL from a file")
    parser.add_argument("--query", dest="query_name", metavar="NAME", help="run a shipped query by name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the shipped queries and exit")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="bind {NAME:Type} (repeatable)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(parser)
    # The brief's short spellings of --aggregator / --sql-token.
    parser.add_argument("--url", dest="aggregator", help=argparse.SUPPRESS)
    parser.add_argument("--token", dest="sql_token", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics import queries
    from ...analytics.governance import GovernanceError
    from ...store.clickhouse import StoreError

    if args.list:
        print("\n".join(queries.names()))
        return EXIT_OK
    try:
        if args.query_name:
            sql = queries.text(args.query_name)
        else:
            sql = args.file.read_text(encoding="utf-8") if args.file else args.query
        if not sql:
            raise ValueError("give the SQL text, --file or --query")
        params: dict[str, str] = {}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
            params[name] = value
        with open_reader(args) as runner:
            params.setdefault("db", runner.database)
            if "{db:" not in sql:
                params.pop("db")
            columns, rows = runner.query(sql, params)
    except (AggregatorError, GovernanceError, StoreError, ValueError, OSError, queries.UnknownQuery) as exc:
        print(f"chargeback sql: {exc}", file=sys.stderr)
        return EXIT_ERROR
    records = [dict(zip(columns, row)) for row in rows]
    render(Report(title="Query result", ok=True, verdict=f"{len(records)} row(s)", reasons=[],
                  sections=[Section("rows", "Rows", columns, records)]), args.format, sys.stdout)  # fmt: skip
    return EXIT_OK

