"""`chargeback statement`: one team's showback or chargeback statement as a self-contained HTML page.

    chargeback statement --team payments --month 2026-10 --out payments-2026-10.html
    chargeback statement --team search --from 2026-10-01 --to 2026-10-31 --mode chargeback --config allocation.yaml --out s.html

The page has the totals, a daily spend chart, spend by app and by model, the
lines by app and model with their drill-down handles, unpriced usage flagged,
and where the team's identity came from. Its numbers are those of
`chargeback report --by app --team TEAM` for the same period and mode. One
file: inline CSS and SVG, no scripts, fonts or network.
Exit 0: written; 1: written, unpriced usage present; 2: error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..aggregator_client import AggregatorError, open_reader, whole_days
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_period_options, add_source_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("statement", help="one team's statement for a period as a self-contained HTML page",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("--team", required=True, help="the team, as the plugin recorded it")
    parser.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page ('-' for stdout)")
    parser.add_argument("--mode", choices=("showback", "chargeback"), default="showback")
    parser.add_argument("--config", metavar="FILE", help="allocation config YAML (default: CHARGEBACK_ALLOCATION_CONFIG_PATH)")
    parser.add_argument("--tenant", help="only this tenant")
    # The report's period options and their meaning, from the same code.
    add_period_options(parser)
    add_source_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reports import allocation_config
    from ...analytics.statement import build_statement, render_page
    from ...settings import AggregatorSettings
    from ...store.clickhouse import StoreError

    try:
        first, last = whole_days(args)
        config = allocation_config.load(args.config or AggregatorSettings().allocation_config_path)
        with open_reader(args) as runner:
            statement = build_statement(runner, team=args.team, first=first, last=last, mode=args.mode, config=config, tenant=args.tenant)
        page = render_page(statement, billing_account=config.billing_account_name)
        if args.out == "-":
            sys.stdout.write(page)
        else:
            Path(args.out).write_text(page, encoding="utf-8")
    except (AggregatorError, GovernanceError, StoreError, ValueError, OSError) as exc:
        print(f"chargeback statement: {exc}", file=sys.stderr)
        return EXIT_ERROR
    totals = statement.totals
    if args.out != "-":
        print(f"wrote {args.out}: team {args.team}, {first} .. {last}, {totals['events']} requests, "
              f"{statement.currency} {totals[statement.amount_column]}", file=sys.stderr)  # fmt: skip
    if not totals["events"]:
        print(f"chargeback statement: no usage recorded for team {args.team!r} in this period (check the name)", file=sys.stderr)
    if totals.get("unpriced_events"):
        print(f"chargeback statement: {statement.by_app.warnings[0]}", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK
