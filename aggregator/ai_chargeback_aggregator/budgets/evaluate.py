"""A budget's spend and status: read from the reports, never from a second spend query.

The spend of a budget over its period is one line of the report
``chargeback report`` would print for that scope and window:

* by the budget's most specific owner dimension (consumer > workload > app >
  team > tenant), filtered on every other dimension of its scope (a model
  also matches its dated snapshots);
* usd with ``cost_basis: chargeback``: the line's total (model cost +
  platform fee + its share of unattributed usage, as the allocation config
  moves it); ``showback``: the line's list cost; tokens: the line's input +
  output tokens (a report never moves tokens). Decisions use the line's exact
  amounts (``model_cost_exact + platform_fee_exact``, ``list_cost_exact``);
  the spend shown is the line's own cents (``total``, ``list_cost``), so it
  reads exactly as the report prints it;
* estimated usage counts as the report counts it; unpriced usage is not in
  a USD spend and is named on the status, as on the report line.

Budgets that need the same report (same dimension, filters, mode and window:
every monthly UTC team budget, say) share one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..analytics.reports import AllocationConfig, Report, Runner, build_window_report
from .definitions import OWNER_DIMENSIONS, Budget, decimal_text
from .periods import period_label, period_window

# Budget scope dimension -> report --by dimension / report filter.
REPORT_BY = {"consumer": "consumer", "workload": "workload", "app": "app", "team": "team", "tenant": "tenant"}
REPORT_FILTER = {
    "tenant": "tenant", "team": "team", "app": "app", "workload": "workload", "consumer": "consumer_id",
    "provider": "provider", "model": "model_family",
}  # fmt: skip
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """One report: budgets sharing it read their own line of it."""

    by: str
    mode: str
    filters: tuple[tuple[str, str], ...]
    start: datetime
    end: datetime


def spend_query(budget: Budget, start: datetime, end: datetime) -> tuple[SpendQuery, str]:
    """The report a budget's spend comes from, and the key of its line."""
    owner = next(name for name in OWNER_DIMENSIONS if getattr(budget.scope, name))
    filters = tuple(sorted((REPORT_FILTER[name], value) for name, value in budget.scope.items() if name != owner))
    mode = "chargeback" if budget.unit == "usd" and budget.cost_basis == "chargeback" else "showback"
    return SpendQuery(REPORT_BY[owner], mode, filters, start, end), getattr(budget.scope, owner)


def spend_of(budget: Budget, line: Mapping[str, Any] | None) -> tuple[Decimal, str]:
    """The budget's exact spend from its report line (none: nothing spent), and the text the report prints for it."""
    if line is None:
        return Decimal(0), "0" if budget.unit == "tokens" else "0.00"
    if budget.unit == "tokens":
        tokens = int(line["input_tokens"]) + int(line["output_tokens"])
        return Decimal(tokens), str(tokens)
    if budget.cost_basis == "chargeback":
        return Decimal(line["model_cost_exact"]) + Decimal(line["platform_fee_exact"]), str(line["total"])
    return Decimal(line["list_cost_exact"]), str(line["list_cost"])


@dataclass(frozen=True, slots=True)
class Forecast:
    """At the period's run rate so far: when the limit is reached, and the spend at the period's end."""

    exhausts_at: datetime | None  # None: already exhausted, no spend yet, or not within this period
    projected_spend: Decimal
    run_rate_per_day: Decimal
    verdict: str  # "exhausted" | "exhausts <time>" | "holds (projected ...)" | "no spend yet"

    @classmethod
    def of(cls, spend: Decimal, limit: Decimal, start: datetime, end: datetime, at: datetime) -> Forecast:
        elapsed = Decimal(str(max((min(at, end) - start).total_seconds(), 0.0)))
        length = Decimal(str((end - start).total_seconds()))
        if spend <= 0 or elapsed <= 0:
            return cls(None, spend, Decimal(0), "no spend yet")
        rate = spend / elapsed  # per second
        projected = spend * length / elapsed
        per_day = spend * 86400 / elapsed
        if spend >= limit:
            return cls(None, projected, per_day, "exhausted")
        seconds = (limit - spend) / rate
        if seconds >= Decimal(str((end - at).total_seconds())):  # compared first: a far-off date may not fit a datetime
            return cls(None, projected, per_day, "holds this period")
        return cls(at + timedelta(seconds=float(seconds)), projected, per_day, "exhausts before the period ends")


@dataclass
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime  # exclusive: when the budget resets
    period_label: str
    spend: Decimal  # exact
    spend_text: str  # as the report line prints it (cents, or tokens)
    events: int
    unpriced_events: int
    unpriced_models: list[str]
    forecast: Forecast
    evaluated_at: datetime
    handle: str = ""
    warnings: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # filled by `budgets status` from the store

    @property
    def limit(self) -> Decimal:
        return self.budget.amount

    @property
    def utilization(self) -> Decimal:
        """Spend / limit (1 = 100 %)."""
        return self.spend / self.limit

    @property
    def exhausted(self) -> bool:
        return self.spend >= self.limit

    @property
    def thresholds_crossed(self) -> tuple[Decimal, ...]:
        return tuple(t for t in self.budget.thresholds if self.spend * HUNDRED >= self.limit * t)

    @property
    def state(self) -> str:
        if self.exhausted:
            return "enforced" if self.budget.enforced else "exhausted"
        return "warning" if self.thresholds_crossed else "ok"

    def to_dict(self) -> dict[str, Any]:
        f = self.forecast
        return {
            **self.budget.describe(),
            "period_label": self.period_label,
            "period_start": _iso(self.period_start),
            "resets_at": _iso(self.period_end),
            "spend": self.spend_text,
            "spend_exact": str(self.spend),
            "limit": _amount(self.limit, self.budget.unit),
            "utilization_percent": str((self.utilization * HUNDRED).quantize(Decimal("0.01"))),
            "state": self.state,
            "thresholds_crossed": [decimal_text(t) for t in self.thresholds_crossed],
            "events": self.events,
            "unpriced_events": self.unpriced_events,
            "unpriced_models": self.unpriced_models,
            "forecast": {
                "verdict": f.verdict,
                "exhausts_at": _iso(f.exhausts_at) if f.exhausts_at else None,
                "projected_spend": _amount(f.projected_spend, self.budget.unit),
                "run_rate_per_day": _amount(f.run_rate_per_day, self.budget.unit),
            },
            "evaluated_at": _iso(self.evaluated_at),
            "handle": self.handle,
            "warnings": self.warnings,
            "alerts": self.alerts,
        }


def in_force(budgets: Iterable[Budget], at: datetime) -> list[Budget]:
    return [b for b in budgets if b.in_force(at)]


def evaluate(runner: Runner, budgets: Sequence[Budget], *, at: datetime, config: AllocationConfig | None = None) -> list[BudgetStatus]:
    """The status of each budget for its period holding ``at`` (budgets not in force at ``at`` are skipped)."""
    at = at.astimezone(UTC)
    planned: list[tuple[Budget, SpendQuery, str, datetime, datetime]] = []
    for budget in in_force(budgets, at):
        start, end = period_window(budget.period, budget.zone, at)
        query, key = spend_query(budget, start, end)
        planned.append((budget, query, key, start, end))
    reports: dict[SpendQuery, Report] = {}
    for _, query, _, _, _ in planned:
        if query not in reports:
            reports[query] = build_window_report(runner, start=query.start, end=query.end, by=query.by, mode=query.mode,
                                                 config=config, filters=dict(query.filters) or None)  # fmt: skip
    evaluated_at = datetime.now(UTC)
    result = []
    for budget, query, key, start, end in planned:
        report = reports[query]
        line = next((candidate for candidate in report.lines if candidate["key"] == key), None)
        spend, spend_text = spend_of(budget, line)
        unpriced = int(line["unpriced_events"]) if line else 0
        warnings = []
        lost = int(report.totals.get("events_lost_reported") or 0)
        if lost:
            warnings.append(f"gateways reported {lost} event(s) lost in this period: they are not in the spend")
        if unpriced and budget.unit == "usd":
            warnings.append(f"UNPRICED: {unpriced} event(s) in this scope have no known price and are not in the spend")
        result.append(
            BudgetStatus(
                budget=budget, period_start=start, period_end=end, period_label=period_label(budget.period, start, budget.zone),
                spend=spend, spend_text=spend_text, events=int(line["events"]) if line else 0, unpriced_events=unpriced,
                unpriced_models=list(line["unpriced_models"]) if line else [],
                forecast=Forecast.of(spend, budget.amount, start, end, at), evaluated_at=evaluated_at,
                handle=str(line.get("handle", "")) if line else "", warnings=warnings,
            )  # fmt: skip
        )
    return result


def _amount(value: Decimal, unit: str) -> str:
    if unit == "tokens":
        return str(int(value))
    return str(value.quantize(Decimal("0.01")))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
