"""`chargeback prices`: load and list effective-dated price overrides; look up a price.

    chargeback prices load overrides.yaml [--replace]
    chargeback prices list [--format table|csv|json]
    chargeback prices lookup --provider openai --model gpt-4o [--tier batch] [--tenant acme] [--date 2026-10-01]

A price file (YAML list, or CSV with the same field names) holds overrides:
negotiated discounts, private models, catalog corrections, per-tenant
contracts (fields: aggregator/pricing/overrides.py). ``load`` validates the
whole file first and changes nothing if any entry is wrong. Through a
running aggregator (admin token) the new prices apply to the next batch;
events already stored keep theirs until `chargeback reprice`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ..aggregator_client import AggregatorError, add_write_target_options, load_into, open_reader
from ..query_source import EXIT_ERROR, EXIT_OK, add_source_options
from ..render import FORMATS, Report, Section, render

LIST_COLUMNS = ("override_id", "kind", "provider", "model", "tenant", "service_tier", "effective_from", "effective_to",
                "input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok",
                "per_request", "discount_percent", "currency", "note", "loaded_from")  # fmt: skip
LIST_TABLE = ("override_id", "kind", "provider", "model", "tenant", "service_tier", "effective_from", "effective_to",
              "input_per_mtok", "output_per_mtok", "discount_percent", "note")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("prices", help="price overrides: load, list, look up",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    commands = parser.add_subparsers(dest="prices_command", metavar="COMMAND", required=True)

    load = commands.add_parser("load", help="load a YAML or CSV price file (all or nothing)")
    load.add_argument("file", type=Path)
    load.add_argument("--replace", action="store_true", help="delete overrides not in the file")
    add_write_target_options(load)
    load.set_defaults(handler=run_load)

    listing = commands.add_parser("list", help="the overrides in force")
    listing.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(listing)
    listing.set_defaults(handler=run_list)

    lookup = commands.add_parser("lookup", help="the price an event would get: rates and where they come from")
    lookup.add_argument("--provider", required=True)
    lookup.add_argument("--model", required=True)
    lookup.add_argument("--tier", default="default", help="service tier (default, batch, flex, priority)")
    lookup.add_argument("--tenant", default="")
    lookup.add_argument("--date", type=date.fromisoformat, help="UTC day (default today)")
    lookup.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(lookup)
    lookup.set_defaults(handler=run_lookup)


def run_load(args: argparse.Namespace) -> int:
    from ...pricing.override_store import save_overrides
    from ...pricing.overrides import OverrideError, read_file
    from ...store.clickhouse import StoreError

    try:
        overrides = read_file(args.file)  # validate before touching anything
        result, url = load_into(args, "/v1/prices", {"overrides": [_record(o) for o in overrides]},
                                lambda store: save_overrides(store, overrides, replace=args.replace))  # fmt: skip
    except (OverrideError, AggregatorError, StoreError, OSError) as exc:
        print(f"chargeback prices load: {exc}", file=sys.stderr)
        return EXIT_ERROR
    where = (f"aggregator {url} (in force for the next batch)" if url
             else "the store (an aggregator picks them up within prices_refresh_interval_s)")  # fmt: skip
    print(f"loaded {len(overrides)} override(s) from {args.file} into {where}: "
          f"{result.get('added', 0)} added, {result.get('updated', 0)} updated, {result.get('deleted', 0)} deleted")  # fmt: skip
    print("stored events keep their prices: run `chargeback reprice --from ... --to ... --reason ...` to apply these to them")
    return EXIT_OK


def _record(override: Any) -> dict[str, Any]:
    """An Override back as a price-file entry (for the HTTP load)."""
    fields = ("provider", "model", "tenant", "service_tier", "kind", "currency", "input_per_mtok", "cached_input_per_mtok",
              "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok", "per_request", "discount_percent", "note")  # fmt: skip
    record: dict[str, Any] = {"id": override.override_id, "effective_from": override.effective_from.isoformat()}
    if override.effective_to:
        record["effective_to"] = override.effective_to.isoformat()
    for name in fields:
        value = getattr(override, name)
        if value not in (None, ""):
            record[name] = str(value)
    return record


def run_list(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...pricing.override_store import LIST_SQL
    from ...store.clickhouse import StoreError

    try:
        with open_reader(args) as runner:
            columns, rows = runner.query(LIST_SQL, {"db": runner.database})
    except (AggregatorError, GovernanceError, StoreError) as exc:
        print(f"chargeback prices list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    records = [dict(zip(columns, row)) for row in rows]
    render(
        Report(title="Price overrides", ok=True, verdict=f"{len(records)} in force", reasons=[],
               sections=[Section("overrides", "Overrides", LIST_COLUMNS, records, LIST_TABLE, "(none: catalog prices only)")],
               notes=["effective_from inclusive, effective_to exclusive (UTC days); rates in USD per 1M tokens"]),
        args.format,
        sys.stdout,
    )  # fmt: skip
    return EXIT_OK


def run_lookup(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...pricing.override_store import LIST_SQL, overrides_from_rows
    from ...pricing.pricer import Pricer
    from ...pricing.rates import COMPONENTS, from_e12
    from ...store.clickhouse import StoreError

    day = args.date or datetime.now(UTC).date()
    try:
        with open_reader(args) as runner:
            _, rows = runner.query(LIST_SQL, {"db": runner.database})
    except (AggregatorError, GovernanceError, StoreError) as exc:
        print(f"chargeback prices lookup: {exc}", file=sys.stderr)
        return EXIT_ERROR
    schedule = Pricer(overrides_from_rows(rows)).schedule(args.provider, args.model, args.tier, args.tenant, day)
    result_rows = []
    for slot, tiers in enumerate(schedule.slots):
        for tier_from, price in tiers:
            row: dict[str, Any] = {"slot": f"{slot * 30 // 60:02d}:{slot * 30 % 60:02d}" if schedule.time_of_day else "all day",
                                   "input_tokens_from": tier_from, **{k: getattr(price, k) for k in ("pricing_status", "price_tier", "price_source",
                                   "list_price_source", "catalog_version", "price_model_id")}}  # fmt: skip
            for component in COMPONENTS:
                row[f"{component}_per_mtok" if component != "request" else "per_request"] = from_e12(getattr(price, f"rate_{component}_e12")).normalize()
                row[f"list_{component}_per_mtok" if component != "request" else "list_per_request"] = from_e12(getattr(price, f"list_rate_{component}_e12")).normalize()
            result_rows.append(row)
    if args.format == "json":
        from ..render import plain

        json.dump(plain(result_rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    columns_out = list(result_rows[0]) if result_rows else []
    table = ("slot", "input_tokens_from", "pricing_status", "price_source", "price_model_id", "input_per_mtok",
             "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok", "per_request")  # fmt: skip
    render(Report(title=f"Price of {args.provider}/{args.model} ({args.tier} tier) for tenant {args.tenant or '(any)'} on {day}",
                  ok=True, verdict="contracted rates (list rates in CSV/JSON), USD per 1M tokens", reasons=[],
                  sections=[Section("prices", "Prices", columns_out, result_rows, table)]), args.format, sys.stdout)  # fmt: skip
    return EXIT_OK
