"""Budgets as the console shows them: a small interface, so the budgets engine plugs in without the console knowing it.

The console needs, for the moment a page is drawn, each budget's scope, period,
limit, spend, status and forecast. Anything with a ``statuses(runner, at=...)``
method answering :class:`BudgetStatus` rows is a :class:`BudgetSource`.

Where it plugs in: :func:`default_source` looks for the analytics side's budgets
module (``analytics/budgets``, issue 18) and adapts its ``statuses`` function;
until that module exists the budgets page and the team page say budgets are not
available. Wiring a different engine is one function here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from ..analytics.reports.runner import Runner

STATUSES = ("ok", "warning", "exceeded")
ANALYTICS_MODULE = "ai_chargeback_aggregator.analytics.budgets"


@dataclass(frozen=True)
class BudgetStatus:
    budget_id: str
    scope: Mapping[str, str]  # {"team": "payments"}, {"tenant": "acme", "model": "gpt-4o"}, ...
    period: str  # daily | weekly | monthly
    period_start: datetime
    period_end: datetime  # exclusive
    unit: str  # USD | tokens
    limit: Decimal
    spend: Decimal
    action: str  # alert | enforce
    status: str  # ok | warning | exceeded
    thresholds: tuple[int, ...] = (50, 80, 100)
    forecast_exhausted_at: datetime | None = None  # at the period's run rate; None: not within the period

    @property
    def utilization(self) -> Decimal:
        return self.spend / self.limit if self.limit else Decimal(0)


class BudgetSource(Protocol):
    def statuses(self, runner: Runner, *, at: datetime) -> Sequence[BudgetStatus]: ...


class Unavailable:
    """No budgets engine in this build: the pages say so instead of showing an empty list."""

    reason = "budgets are not available in this build (the budgets engine, analytics/budgets, is not installed)"

    def statuses(self, runner: Runner, *, at: datetime) -> Sequence[BudgetStatus]:
        raise LookupError(self.reason)


class _AnalyticsBudgets:
    """Adapts the analytics side's ``statuses(runner, at=...)`` rows (objects or mappings) to BudgetStatus."""

    def __init__(self, function: Any) -> None:
        self._function = function

    def statuses(self, runner: Runner, *, at: datetime) -> Sequence[BudgetStatus]:
        return [row if isinstance(row, BudgetStatus) else _adapt(row) for row in self._function(runner, at=at)]


def _adapt(row: Any) -> BudgetStatus:
    def get(name: str, default: Any = None) -> Any:
        return row.get(name, default) if isinstance(row, Mapping) else getattr(row, name, default)

    return BudgetStatus(
        budget_id=str(get("budget_id") or get("id")), scope=dict(get("scope") or {}), period=str(get("period")),
        period_start=get("period_start"), period_end=get("period_end"), unit=str(get("unit", "USD")),
        limit=Decimal(str(get("limit"))), spend=Decimal(str(get("spend"))), action=str(get("action", "alert")),
        status=str(get("status")), thresholds=tuple(get("thresholds") or (50, 80, 100)),
        forecast_exhausted_at=get("forecast_exhausted_at"),
    )  # fmt: skip


def default_source() -> BudgetSource:
    try:
        module = importlib.import_module(ANALYTICS_MODULE)
    except ImportError:
        return Unavailable()
    function = getattr(module, "statuses", None)
    return _AnalyticsBudgets(function) if callable(function) else Unavailable()
