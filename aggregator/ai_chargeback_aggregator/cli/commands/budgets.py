"""`chargeback budgets`: load, list and check budgets (spend or token limits per scope and period).

    chargeback budgets load budgets.yaml [--replace]
    chargeback budgets list [--format table|csv|json]
    chargeback budgets status [--team payments] [--at 2026-11-30T12:00:00Z] [--format table|csv|json]

A budgets file (YAML; fields: aggregator/budgets/definitions.py, docs/budgets.md)
is validated whole first: nothing changes if any entry is wrong. Through a
running aggregator (admin token) new budgets apply at its next pass, without a
restart. `status` shows each budget's period, spend (the same numbers as
`chargeback report` for that scope and window), limit, utilization, when it
resets, when it will be exhausted at the period's run rate, and the alerts
fired this period with their delivery state.
Exit (status): 0 every budget under its limit; 1 some budget at or over it; 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..aggregator_client import AggregatorError, add_write_target_options, load_into, open_reader
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_source_options
from ..render import FORMATS, Report, Section, render

SCOPE_OPTIONS = ("tenant", "team", "app", "workload", "consumer", "provider", "model")
LIST_COLUMNS = ("budget_id", "scope", "period", "timezone", "amount", "unit", "cost_basis", "thresholds", "action", "notify",
                "effective_from", "effective_to", "note", "loaded_from")  # fmt: skip
LIST_TABLE = ("budget_id", "scope", "period", "timezone", "amount", "unit", "action", "thresholds", "effective_from", "effective_to")
STATUS_COLUMNS = ("budget_id", "scope", "period_label", "timezone", "action", "unit", "spend", "limit", "utilization_percent",
                  "state", "thresholds_crossed", "resets_at", "forecast", "exhausts_at", "projected_spend", "run_rate_per_day",
                  "events", "unpriced_events", "alerts", "handle")  # fmt: skip
STATUS_TABLE = ("budget_id", "scope", "period_label", "spend", "limit", "utilization_percent", "state", "resets_at",
                "forecast", "alerts")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("budgets", help="budgets: load, list, status (spend, forecast, alerts)",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    commands = parser.add_subparsers(dest="budgets_command", metavar="COMMAND", required=True)

    load = commands.add_parser("load", help="load a YAML budgets file (all or nothing)")
    load.add_argument("file", type=Path)
    load.add_argument("--replace", action="store_true", help="delete budgets not in the file")
    add_write_target_options(load)
    load.set_defaults(handler=run_load)

    listing = commands.add_parser("list", help="every budget loaded, in force or not")
    listing.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(listing)
    listing.set_defaults(handler=run_list)

    status = commands.add_parser("status", help="spend, limit, forecast and alerts of the budgets in force")
    for name in SCOPE_OPTIONS:
        status.add_argument(f"--{name}", help=f"only budgets whose scope names this {name}" + (" (Kong consumer id)" if name == "consumer" else ""))
    status.add_argument("--at", help="evaluate the periods holding this instant (ISO 8601, default now)")
    status.add_argument("--config", metavar="FILE", help="allocation config YAML (default: CHARGEBACK_ALLOCATION_CONFIG_PATH)")
    status.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(status)
    status.set_defaults(handler=run_status)


def run_load(args: argparse.Namespace) -> int:
    from ...budgets import BudgetError, read_budget_file, save_budgets
    from ...store.clickhouse import StoreError

    try:
        budgets = read_budget_file(args.file)  # validate before touching anything
        result, url = load_into(args, "/v1/budgets", {"budgets": [_record(b) for b in budgets]},
                                lambda store: save_budgets(store, budgets, replace=args.replace))  # fmt: skip
    except (BudgetError, AggregatorError, StoreError, OSError) as exc:
        print(f"chargeback budgets load: {exc}", file=sys.stderr)
        return EXIT_ERROR
    where = f"aggregator {url} (in force at its next pass)" if url else "the store (running aggregators apply them at their next pass)"
    enforced = sum(1 for b in budgets if b.enforced)
    print(f"loaded {len(budgets)} budget(s) ({enforced} enforced) from {args.file} into {where}: "
          f"{result.get('added', 0)} added, {result.get('updated', 0)} updated, {result.get('deleted', 0)} deleted")  # fmt: skip
    return EXIT_OK


def _record(budget: Any) -> dict[str, Any]:
    """A Budget back as a budgets-file entry (for the HTTP load)."""
    described = budget.describe()
    record: dict[str, Any] = {
        "id": budget.budget_id, "scope": described["scope"], "period": budget.period, "timezone": budget.timezone,
        "amount": described["amount"], "unit": budget.unit, "thresholds": described["thresholds"], "action": budget.action,
        "effective_from": described["effective_from"], "note": budget.note,
    }  # fmt: skip
    if budget.unit == "usd":
        record["cost_basis"] = budget.cost_basis
    if budget.notify:
        record["notify"] = list(budget.notify)
    if budget.effective_to:
        record["effective_to"] = described["effective_to"]
    return record


def run_list(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...budgets import list_budgets
    from ...store.clickhouse import StoreError

    try:
        with open_reader(args) as runner:
            budgets = list_budgets(runner)
    except (AggregatorError, GovernanceError, StoreError) as exc:
        print(f"chargeback budgets list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    rows = [{**b.describe(), "scope": b.scope.text(), "loaded_from": b.loaded_from} for b in budgets]
    render(Report(title="Budgets", ok=True, verdict=f"{len(rows)} loaded", reasons=[],
                  sections=[Section("budgets", "Budgets", LIST_COLUMNS, rows, LIST_TABLE, "(none: chargeback budgets load FILE)")],
                  notes=["effective dates are local dates in each budget's time zone (from inclusive, to exclusive)"]),
           args.format, sys.stdout)  # fmt: skip
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reports import allocation_config
    from ...budgets import budget_status
    from ...settings import AggregatorSettings
    from ...store.clickhouse import StoreError

    scope = {name: value for name in SCOPE_OPTIONS if (value := getattr(args, name, None))}
    try:
        at = _instant(args.at) if args.at else datetime.now(UTC)
        config = allocation_config.load(args.config or AggregatorSettings().allocation_config_path)
        with open_reader(args) as runner:
            statuses = budget_status(runner, scope=scope, at=at, config=config)
    except (AggregatorError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback budgets status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    over = [s for s in statuses if s.exhausted]
    if args.format == "json":
        json.dump({"at": at.astimezone(UTC).isoformat(), "budgets": [s.to_dict() for s in statuses]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_FINDINGS if over else EXIT_OK
    rows = [_status_row(s.to_dict()) for s in statuses]
    reasons = [f"{s.budget.budget_id}: {s.budget.scope.text()} at {s.to_dict()['utilization_percent']}% of its {s.period_label} limit"
               + (" (requests refused at the gateway)" if s.budget.enforced else "") for s in over]  # fmt: skip
    reasons += [f"{s.budget.budget_id}: {w}" for s in statuses for w in s.warnings]
    render(
        Report(title=f"Budgets at {at.astimezone(UTC):%Y-%m-%d %H:%M}Z", ok=not over,
               verdict=f"{len(over)} of {len(statuses)} at or over the limit" if over else f"{len(statuses)} budget(s) under their limit",
               reasons=reasons,
               sections=[Section("budgets", "Budgets in force", STATUS_COLUMNS, rows, STATUS_TABLE, "(no budget in force matches)")],
               notes=["spend: the same numbers as `chargeback report` for the scope and the period (in its time zone)",
                      "exhausts_at: at the period's run rate so far; empty when the budget holds this period"]),
        args.format, sys.stdout,
    )  # fmt: skip
    return EXIT_FINDINGS if over else EXIT_OK


def _status_row(d: dict[str, Any]) -> dict[str, Any]:
    alerts = []
    for alert in d["alerts"]:
        deliveries = ", ".join(f"{name}: {info['state']}" + (f" ({info.get('last_error')})" if info.get("last_error") and info["state"] != "delivered" else "")
                               for name, info in alert["deliveries"].items())  # fmt: skip
        alerts.append(f"{alert['threshold_percent']}% at {alert['fired_at']}" + (f" [{deliveries}]" if deliveries else ""))
    return {
        **{k: d[k] for k in ("budget_id", "period_label", "timezone", "action", "unit", "spend", "limit", "utilization_percent",
                             "state", "resets_at", "events", "unpriced_events", "handle")},
        "scope": ", ".join(f"{k}={v}" for k, v in d["scope"].items()),
        "thresholds_crossed": ", ".join(d["thresholds_crossed"]),
        "exhausts_at": d["forecast"]["exhausts_at"] or "",
        "forecast": f"exhausted by {d['forecast']['exhausts_at']}" if d["forecast"]["exhausts_at"]
                    else f"{d['forecast']['verdict']} (projected {d['forecast']['projected_spend']})",
        "projected_spend": d["forecast"]["projected_spend"],
        "run_rate_per_day": d["forecast"]["run_rate_per_day"],
        "alerts": "; ".join(alerts),
    }  # fmt: skip


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--at: not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
