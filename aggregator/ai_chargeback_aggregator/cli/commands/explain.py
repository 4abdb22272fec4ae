"""`chargeback explain HANDLE`: the events behind one report line.

    chargeback explain cb1.eyJmIjoi... [--limit 100] [--format table|csv|json]

Prints a summary of every matching event (count, tokens, cost, list cost,
price sources and catalog versions: it reconciles with the line's direct
usage) and the events themselves, each with where its tenant/team/app came
from and how it was priced (source, catalog version, matched model, rates).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..aggregator_client import AggregatorError, open_reader
from ..query_source import EXIT_ERROR, EXIT_OK, add_source_options
from ..render import FORMATS, Report, Section, plain, render

TABLE_COLUMNS = ("event_id", "started_at", "team", "team_source", "app", "app_source", "consumer_username", "billing_model",
                 "price_tier", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_total",
                 "pricing_status", "price_source", "price_model_id", "usage_source", "usage_note")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("explain", help="the events behind a report line (drill-down handle)",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("handle", help="a report line's handle (cb1.…)")
    parser.add_argument("--limit", type=int, default=100, help="events to list (the summary covers all; default 100)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reports import EVENT_COLUMNS, Handle, HandleError, explain
    from ...store.clickhouse import StoreError

    try:
        handle = Handle.decode(args.handle)
        with open_reader(args) as runner:
            result = explain(runner, handle, limit=args.limit)
    except (AggregatorError, GovernanceError, HandleError, StoreError, ValueError) as exc:
        print(f"chargeback explain: {exc}", file=sys.stderr)
        return EXIT_ERROR
    events = [dict(zip(result.columns, row)) for row in result.events]
    where = "".join(f", {name} = {value}" for name, value in handle.filters)
    line = f"{handle.by} = {handle.key or '(unattributed)'}{where}, {handle.first} .. {handle.last} (UTC days, inclusive)"
    if args.format == "json":
        json.dump(plain({"line": line, "summary": result.summary, "events": events}), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    shown = len(events)
    total = int(result.summary.get("events", 0) or 0)
    render(
        Report(
            title=f"Events behind {line}",
            ok=True,
            verdict=f"{total} event(s); listing {shown}",
            reasons=[],
            sections=[
                Section("summary", "Summary (all matching events)", list(result.summary), [result.summary]),
                Section("events", "Events", list(EVENT_COLUMNS), events, TABLE_COLUMNS),
            ],
            notes=[f"{total - shown} more not listed: raise --limit"] if total > shown else [],
        ),
        args.format,
        sys.stdout,
    )
    return EXIT_OK
