"""Budgets as the console shows them: a small interface, so the budgets engine plugs in without the console knowing it.

The console needs, for the moment a page is drawn, each budget's scope, period,
limit, spend, status and forecast. Anything with a ``statuses(runner, at=...)``
method answering :class:`BudgetStatus` rows is a :class:`BudgetSource`.

Where it plugs in: :func:`default_source` adapts the budgets engine
(``ai_chargeback_aggregator.budgets.budget_status``, issue 18: the same statuses as
`chargeback budgets status`); without it the budgets page and the team page say
budgets are not available. Wiring a different engine is one function here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from ..analytics.reports import Runner

STATUSES = ("ok", "warning", "exceeded")
ENGINE_MODULE = "ai_chargeback_aggregator.budgets"
# The engine's states -> the console's: exhausted (alert only) and enforced (refused at the gateway) are both exceeded.
_STATUS = {"ok": "ok", "warning": "warning", "exhausted": "exceeded", "enforced": "exceeded"}


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

    reason = "budgets are not available in this build (the budgets engine, ai_chargeback_aggregator.budgets, is not installed)"

    def statuses(self, runner: Runner, *, at: datetime) -> Sequence[BudgetStatus]:
        raise LookupError(self.reason)


class EngineBudgets:
    """The budgets engine's ``budget_status(runner, at=...)`` as BudgetStatus rows (spend as the report prints it)."""

    def __init__(self, function: Any) -> None:
        self._function = function

    def statuses(self, runner: Runner, *, at: datetime) -> Sequence[BudgetStatus]:
        return [_adapt(status) for status in self._function(runner, at=at, with_alerts=False)]


def _adapt(status: Any) -> BudgetStatus:
    budget = status.budget
    return BudgetStatus(
        budget_id=budget.budget_id, scope=budget.scope.to_dict(), period=budget.period, period_start=status.period_start,
        period_end=status.period_end, unit="USD" if budget.unit == "usd" else "tokens", limit=status.limit,
        spend=Decimal(status.spend_text), action=budget.action, status=_STATUS.get(status.state, status.state),
        thresholds=tuple(int(t) if t == int(t) else t for t in budget.thresholds),
        forecast_exhausted_at=status.forecast.exhausts_at,
    )  # fmt: skip


def default_source() -> BudgetSource:
    try:
        module = importlib.import_module(ENGINE_MODULE)
    except ImportError:
        return Unavailable()
    function = getattr(module, "budget_status", None)
    return EngineBudgets(function) if callable(function) else Unavailable()
