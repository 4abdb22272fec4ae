"""`chargeback export focus`: FinOps FOCUS 1.2 cost and usage rows, CSV or Parquet.

    chargeback export focus --month 2026-10 --out ai-2026-10.parquet
    chargeback export focus --from 2026-10-01 --to 2026-10-08 --out week.csv

One row per UTC day, group (tenant, team, app, consumer, route, model, tier,
price) and priced unit (input, cached input, cache write, output, reasoning
tokens; request fee). Progress goes to stderr. Usage without a known price
cannot be a valid FOCUS row: it is left out and counted on stderr (exit 1),
or written with zero cost and x_PricingStatus=unpriced with --include-unpriced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..aggregator_client import AggregatorError, open_reader, whole_days
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_period_options, add_source_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("export", help="export cost and usage (FOCUS 1.2)")
    kinds = parser.add_subparsers(dest="export_kind", metavar="FORMAT", required=True)
    focus = kinds.add_parser("focus", help="FOCUS 1.2 dataset as .csv or .parquet", description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    focus.add_argument("--out", required=True, type=Path, metavar="FILE.csv|FILE.parquet")
    focus.add_argument("--include-unpriced", action="store_true", help="write unpriced usage with zero cost (not FOCUS-valid)")
    focus.add_argument("--config", metavar="FILE", help="allocation config YAML (names the BillingAccount)")
    add_period_options(focus)
    add_source_options(focus)
    focus.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reports import allocation_config, export_focus, focus_progress
    from ...settings import AggregatorSettings
    from ...store.clickhouse import StoreError

    try:
        first, last = whole_days(args)
        config = allocation_config.load(args.config or AggregatorSettings().allocation_config_path)
        with open_reader(args) as runner:
            summary = export_focus(runner, first=first, last=last, out=args.out, config=config,
                             include_unpriced=args.include_unpriced, progress=focus_progress(sys.stderr))  # fmt: skip
    except (AggregatorError, GovernanceError, StoreError, ValueError, OSError) as exc:
        print(f"chargeback export focus: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {summary.rows:,} FOCUS rows for {summary.days} day(s) to {summary.path}: "
          f"BilledCost {summary.billed_cost.normalize():f} USD, ListCost {summary.list_cost.normalize():f} USD", file=sys.stderr)  # fmt: skip
    if summary.estimated_events or summary.unmeasured_events:
        print(f"ESTIMATED: {summary.estimated_events} of {summary.events} event(s) carry estimated usage "
              f"({summary.estimated_cost.normalize():f} USD contracted, x_EstimatedEvents / x_EstimatedCostShare); "
              f"UNMEASURED: {summary.unmeasured_events} answered event(s) could not be measured (x_UnmeasuredEvents)",
              file=sys.stderr)  # fmt: skip
    if summary.unpriced_events:
        action = "written with zero cost" if args.include_unpriced else "NOT exported"
        print(f"UNPRICED: {summary.unpriced_events} event(s), {summary.unpriced_tokens} token(s) {action} "
              f"(models: {', '.join(summary.unpriced_models)})", file=sys.stderr)  # fmt: skip
        return EXIT_FINDINGS
    return EXIT_OK
