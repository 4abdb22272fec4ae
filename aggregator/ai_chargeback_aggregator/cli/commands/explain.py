"""`chargeback explain HANDLE`: the events behind one report line.

    chargeback explain cb1.eyJmIjoi... [--limit 100] [--format table|csv|json]

Prints the line's totals (count, tokens, cost, list cost, price sources and
catalog versions, from the rollups as the report reads them), the same figures
summed again from every raw event of the line (the recount: it reads the whole
period's events, seconds at ten million) with whether they match, and the
line's first events, oldest first, each with where its tenant/team/app came
from and how it was priced (source, catalog version, matched model, rates).
Exit status 1 when the recount differs from the line's totals.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..aggregator_client import AggregatorError, open_reader
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_source_options
from ..render import FORMATS, Report, Section, plain, render

TABLE_COLUMNS = ("event_id", "started_at", "team", "team_source", "app", "app_source", "consumer_username", "billing_model",
                 "price_tier", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_total",
                 "pricing_status", "price_source", "price_model_id", "usage_source", "usage_note")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("explain", help="the events behind a report line (drill-down handle)",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("handle", help="a report line's handle (cb1.…)")
    parser.add_argument("--limit", type=int, default=100, help="events to list, oldest first (the totals cover all; default 100)")
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
    recount = result.recount
    assert recount is not None  # asked for: explain() recounts unless told not to
    if args.format == "json":
        json.dump(plain({"line": line, "summary": result.summary, "recount": recount.figures, "recount_matches": recount.matches,
                         "recount_differences": recount.differences, "events": events}), sys.stdout, indent=2, default=str)  # fmt: skip
        sys.stdout.write("\n")
        return EXIT_OK if recount.matches else EXIT_FINDINGS
    shown = len(events)
    total = int(result.summary.get("events", 0) or 0)
    verdict = f"{total} event(s); listing {shown}; " + ("the raw events add up to the line" if recount.matches
                                                        else "the raw events DIFFER from the line's totals")  # fmt: skip
    render(
        Report(
            title=f"Events behind {line}",
            ok=recount.matches,
            verdict=verdict,
            reasons=recount.differences,
            sections=[
                Section("summary", "The line's totals (all matching events, from the rollups as the report)", list(result.summary),
                        [result.summary]),
                Section("recount", "Recount from every raw event", list(recount.figures), [recount.figures]),
                Section("events", "Events (oldest first)", list(EVENT_COLUMNS), events, TABLE_COLUMNS),
            ],
            notes=[f"{total - shown} more not listed: raise --limit"] if total > shown else [],
        ),
        args.format,
        sys.stdout,
    )
    return EXIT_OK if recount.matches else EXIT_FINDINGS
