"""Budgets: limits on spend or tokens per scope and period, with alerts and gateway enforcement.

Definitions (``definitions``) are loaded from a YAML file into the store
(``store``); spend comes from the reports (``evaluate``); the aggregator's
``monitor`` evaluates them, shows gauges, fires alerts (``alerts``,
``webhooks``) and hands the enforced ones to the gateway feed. Sits after
analytics in the data flow: the ingest path never imports it (server/app.py
wires it in).

``budget_status`` is the one call a console needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ..analytics.reports import AllocationConfig, Runner
from .definitions import SCOPE_DIMENSIONS, Budget, BudgetError, Scope
from .definitions import read_file as read_budget_file
from .evaluate import BudgetStatus, evaluate
from .store import list_budgets, save_budgets

__all__ = [
    "Budget", "BudgetError", "BudgetStatus", "Scope", "budget_status", "list_budgets", "read_budget_file", "save_budgets",
]  # fmt: skip


def budget_status(
    runner: Runner,
    *,
    scope: Mapping[str, str] | None = None,
    at: datetime | None = None,
    config: AllocationConfig | None = None,
    with_alerts: bool = True,
) -> list[BudgetStatus]:
    """The status of every budget in force at ``at`` (default now) whose scope matches ``scope``.

    ``scope`` filters on budget scope dimensions (tenant, team, app, workload,
    consumer, provider, model): {"team": "payments"} gives the budgets whose scope
    names team payments. Each status carries spend, limit, utilization, state,
    forecast, reset time and (``with_alerts``) the alerts fired this period with
    their delivery state. ``status.to_dict()`` is JSON-ready. ``config``: the
    allocation config chargeback spend is computed under (default: the one in
    settings, as the aggregator and `chargeback budgets status` use).
    """
    from ..analytics.reports import allocation_config
    from ..settings import AggregatorSettings
    from .alerts import alert_history
    from .store import list_budgets

    unknown = set(scope or {}) - set(SCOPE_DIMENSIONS)
    if unknown:
        raise ValueError(f"scope filter: unknown dimension(s) {', '.join(sorted(unknown))}")
    at = at or datetime.now(UTC)
    config = config if config is not None else allocation_config.load(AggregatorSettings().allocation_config_path)
    budgets = [b for b in list_budgets(runner) if b.scope.within(scope or {})]
    statuses = evaluate(runner, budgets, at=at, config=config)
    if with_alerts and statuses:
        earliest = min(s.period_start for s in statuses)
        history = alert_history(runner, [s.budget.budget_id for s in statuses], earliest - timedelta(seconds=1))
        for status in statuses:
            status.alerts = [a for a in history.get(status.budget.budget_id, []) if a["period_start"] == _iso(status.period_start)]
    return statuses


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
