"""`chargeback report`: showback or chargeback by team, tenant, app, model, consumer or route.

    chargeback report --month 2026-10 --by team --mode chargeback --config allocation.yaml
    chargeback report --from 2026-10-01 --to 2026-10-31 --by model --format csv

Showback lists usage and list cost; chargeback the contracted model cost plus
the platform fee, with unattributed usage kept, given to an owner or split pro
rata per the allocation config. Amounts are exact to the cent and add up to the
totals. Every line has a drill-down handle for `chargeback explain`. Usage
without a known price is flagged UNPRICED on its line and in the totals (exit 1).
Usage the plugin estimated, and answered requests it could not measure, are
counted per line and in the totals, with their share of requests and cost
(warnings ESTIMATED / UNMEASURED).
Exit 0: complete; 1: unpriced usage present, or no usage at all in the period; 2: error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..aggregator_client import AggregatorError, open_reader, whole_days
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_period_options, add_source_options
from ..render import FORMATS, Report, Section, render

BY = ("team", "tenant", "app", "model", "consumer", "route", "provider", "workload")  # workload: read from raw events
USAGE_COLUMNS = ("events", "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
# Usage the plugin estimated (labelled) or could not measure: shares of the line's requests and cost.
MEASUREMENT_COLUMNS = ("estimated_events", "estimated_request_share", "estimated_cost", "estimated_cost_share",
                       "unmeasured_events", "unmeasured_request_share")  # fmt: skip
SHOWBACK_COLUMNS = ("label", "key", *USAGE_COLUMNS, "list_cost", "list_cost_exact", "cost_exact",
                    "unpriced_events", "unpriced_tokens", "unpriced_models", *MEASUREMENT_COLUMNS, "flag", "handle")  # fmt: skip
SHOWBACK_TABLE = ("label", *USAGE_COLUMNS, "list_cost", "flag", "handle")
CHARGEBACK_COLUMNS = ("label", "key", *USAGE_COLUMNS, "model_cost", "platform_fee", "allocated_in", "total",
                      "model_cost_exact", "platform_fee_exact", "unpriced_events", "unpriced_tokens", "unpriced_models",
                      *MEASUREMENT_COLUMNS, "flag", "note", "handle")  # fmt: skip
CHARGEBACK_TABLE = ("label", "events", "input_tokens", "output_tokens", "model_cost", "platform_fee", "allocated_in", "total",
                    "flag", "note", "handle")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("report", help="showback/chargeback report by team, tenant, app, model, consumer or route",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("--by", choices=BY, required=True)
    parser.add_argument("--mode", choices=("showback", "chargeback"), default="showback")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--config", metavar="FILE", help="allocation config YAML (default: CHARGEBACK_ALLOCATION_CONFIG_PATH)")
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--team", help="only this team (as the plugin recorded it)")
    add_period_options(parser)
    add_source_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reports import allocation_config, build_report
    from ...settings import AggregatorSettings
    from ...store.clickhouse import StoreError

    try:
        first, last = whole_days(args)
        config = allocation_config.load(args.config or AggregatorSettings().allocation_config_path)
        with open_reader(args) as runner:
            report = build_report(runner, first=first, last=last, by=args.by, mode=args.mode, config=config,
                                  filters=report_filters(args))  # fmt: skip
    except (AggregatorError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(_as_render_report(report), args.format, sys.stdout)
    return EXIT_OK if verdict(report) == COMPLETE else EXIT_FINDINGS


COMPLETE = "complete"


def verdict(report: Any) -> str:
    """An empty period is not a complete one: it usually means the wrong month, store or aggregator."""
    if not report.totals.get("events") and not report.totals.get("events_lost_reported"):
        return f"no usage recorded from {report.first} to {report.last}"
    return "unpriced usage present" if report.totals.get("unpriced_events") else COMPLETE


def report_filters(args: argparse.Namespace) -> dict[str, str] | None:
    """--tenant / --team as build_report filters (the statement command narrows the same way)."""
    filters = {name: value for name in ("tenant", "team") if (value := getattr(args, name, None))}
    return filters or None


def _as_render_report(report: Any) -> Report:
    chargeback = report.mode == "chargeback"
    columns = CHARGEBACK_COLUMNS if chargeback else SHOWBACK_COLUMNS
    totals = {"label": "TOTAL", **report.totals}
    sources = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.sources.items())
    notes = [f"read from {sources}", "drill down: chargeback explain HANDLE"]
    if chargeback:
        policy = report.policy
        notes.append(f"allocation config: {policy['source']}; unattributed: {policy['unattributed']['strategy']}"
                     + (f" -> {policy['unattributed']['owner']}" if policy["unattributed"]["owner"] else ""))  # fmt: skip
        for fee in policy["platform_fee"]:
            notes.append(f"platform fee from {fee['effective_from']}: {fee['per_request_usd']} USD/request + {fee['uplift_percent']}% of model cost")
    return Report(
        title=f"{report.mode.title()} by {report.by} ({report.currency})",
        ok=verdict(report) == COMPLETE,
        verdict=verdict(report),
        reasons=report.warnings,
        sections=[
            Section("lines", f"By {report.by}", columns, report.lines, CHARGEBACK_TABLE if chargeback else SHOWBACK_TABLE),
            Section("totals", "Totals", columns, [totals], CHARGEBACK_TABLE[:-1] if chargeback else SHOWBACK_TABLE[:-1]),
        ],
        notes=notes,
        meta={"period": f"{report.first} .. {report.last} (UTC days, inclusive)"},
    )
