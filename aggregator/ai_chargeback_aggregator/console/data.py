"""What each page shows, built from analytics' public functions only: no SQL about money here.

Amounts are the reports' own: ``build_report`` (the overview's tables, the same
lines ``chargeback report --by team|tenant`` prints for the same view),
``build_statement`` (the team page and the statement, as ``chargeback
statement``), ``explain`` (the drill-down, as ``chargeback explain``), the
governance checks and readiness, and ``series.daily`` for charts, whose day
amounts are re-rounded to add up to the report's total to the cent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..analytics.governance import (
    Bursts,
    CacheMisses,
    CheckResult,
    FanOut,
    IdentityConflicts,
    Period,
    PremiumModels,
    Readiness,
    Retries,
    Scope,
    SharedCredentials,
    SpendAnomalies,
    Unattributed,
)
from ..analytics.reports import (
    UNATTRIBUTED_LABEL,
    AllocationConfig,
    Explanation,
    Handle,
    Recount,
    Report,
    Runner,
    build_report,
    check_line,
    daily,
    day_cents,
    days_of,
    explain,
    money_text,
)
from ..analytics.statement import (
    Bar,
    Day,
    RawFacts,
    Statement,
    bar_chart,
    build_statement,
    colors_for,
    daily_chart,
    legend,
    read_raw_facts,
)
from .access import Principal, View
from .budgets import BudgetSource, BudgetStatus
from .tables import Column, Table

MAX_CHART_SERIES = 7  # past it, the smallest lines share the grey "other"
OTHER = "(other)"
EXPLAIN_MAX_LIMIT = 1000
USAGE = (Column("events", "Requests", "int"), Column("input_tokens", "Input tokens", "int"), Column("output_tokens", "Output tokens", "int"))


def amount_columns(mode: str) -> list[Column]:
    if mode == "chargeback":
        return [Column("model_cost", "Model cost", "money"), Column("platform_fee", "Platform fee", "money"),
                Column("allocated_in", "Allocated in", "money"), Column("total", "Total", "money")]  # fmt: skip
    return [Column("list_cost", "List cost", "money")]


def headline_column(mode: str) -> str:
    return "total" if mode == "chargeback" else "list_cost"


def chart_column(mode: str) -> str:
    """What a day's bar measures: spend at the report's cost basis, before fees and allocation."""
    return "model_cost" if mode == "chargeback" else "list_cost"


def _cents(text: str) -> int:
    return int(Decimal(text) * 100)


def _share(part: int | Decimal, whole: int | Decimal) -> float:
    return float(part) / float(whole) if whole else 0.0


# ------------------------------------------------------------------ overview


@dataclass
class Overview:
    by_team: Report
    by_tenant: Report
    tables: dict[str, Table]
    chart: str
    legend: str
    shares: list[dict[str, Any]]
    extra_totals: dict[str, Any] = field(default_factory=dict)  # estimated/unmeasured figures, as the report gives them


def overview(runner: Runner, view: View, config: AllocationConfig, *, link: Callable[..., str]) -> Overview:
    filters = view.filters or None
    by_team = build_report(runner, first=view.first, last=view.last, by="team", mode=view.mode, config=config, filters=filters)
    by_tenant = build_report(runner, first=view.first, last=view.last, by="tenant", mode=view.mode, config=config, filters=filters)
    money = amount_columns(view.mode)
    team_rows = [{**line, "_label": link("team", team=line["key"]) if line["key"] else "",
                  "_handle": link("explain", handle=line["handle"])} for line in by_team.lines]  # fmt: skip
    tenant_rows = [{**line, "_label": link("overview", tenant=line["key"]) if line["key"] else "",
                    "_handle": link("explain", handle=line["handle"])} for line in by_tenant.lines]  # fmt: skip
    columns = [Column("label", "Team", link="_label"), *USAGE, *money, Column("flag", "Flag"), Column("handle", "Events", "code", link="_handle")]
    tables = {
        "teams": Table("teams", "Spend by team", columns, team_rows, footer={"label": "Total", **by_team.totals}),
        "tenants": Table("tenants", "Spend by tenant", [Column("label", "Tenant", link="_label"), *columns[1:]], tenant_rows,
                         footer={"label": "Total", **by_tenant.totals}),
    }  # fmt: skip
    chart, chart_legend, days = _daily_chart(runner, view, by_team)
    tables["days"] = Table("days", "Spend per UTC day", [Column("day", "Day"), Column("events", "Requests", "int"),
                           Column("amount", "Model cost" if view.mode == "chargeback" else "List cost", "money")], days)  # fmt: skip
    return Overview(by_team, by_tenant, tables, chart, chart_legend, _shares(by_team, view.mode), _extra_totals(by_team.totals))


def _daily_chart(runner: Runner, view: View, by_team: Report) -> tuple[str, str, list[dict[str, Any]]]:
    lines = daily(runner, first=view.first, last=view.last, by="team", filters=view.filters or None)
    exact = "cost" if view.mode == "chargeback" else "list_cost"
    totals: dict[str, Decimal] = {}
    for line in lines:
        totals[_label(line)] = totals.get(_label(line), Decimal(0)) + getattr(line, exact)
    ranked = sorted(totals, key=lambda label: (-totals[label], label))
    shown = ranked[:MAX_CHART_SERIES]
    series = shown + ([OTHER] if len(ranked) > len(shown) else [])
    per_day: dict[date, dict[str, Decimal]] = {d: {} for d in days_of(view.first, view.last)}
    events: dict[date, int] = dict.fromkeys(per_day, 0)
    for line in lines:
        name = _label(line) if _label(line) in shown else OTHER
        per_day[line.day][name] = per_day[line.day].get(name, Decimal(0)) + getattr(line, exact)
        events[line.day] += line.events
    ordered = sorted(per_day)
    cents = day_cents([sum(per_day[d].values(), Decimal(0)) for d in ordered], by_team.totals[chart_column(view.mode)])
    days = [Day(d, money_text(c), events[d], per_day[d]) for d, c in zip(ordered, cents)]
    colors = colors_for(series)
    chart = daily_chart(days, series, colors, currency=by_team.currency)
    rows = [{"day": d.day.isoformat(), "events": d.events, "amount": d.amount} for d in days]
    return chart, legend(series, colors), rows


def _label(line: Any) -> str:
    return line.label if line.key else UNATTRIBUTED_LABEL


def _shares(report: Report, mode: str) -> list[dict[str, Any]]:
    column = headline_column(mode)
    totals = report.totals
    nobody = next((line for line in report.lines if line["key"] == ""), None)
    total_cents = _cents(totals[column])
    shares = [
        {"name": "unattributed_cost", "label": "Unattributed spend", "value": _share(_cents(nobody[column]) if nobody else 0, total_cents),
         "detail": f"{nobody[column] if nobody else '0.00'} of {totals[column]} {report.currency}"
                   + (f" ({nobody['note']})" if nobody and nobody.get("note") else "")},
        {"name": "unattributed_requests", "label": "Unattributed requests", "value": _share(nobody["events"] if nobody else 0, totals["events"]),
         "detail": f"{nobody['events'] if nobody else 0:,} of {totals['events']:,} requests"},
        {"name": "unpriced_requests", "label": "Unpriced requests", "value": _share(totals.get("unpriced_events", 0), totals["events"]),
         "detail": f"{totals.get('unpriced_events', 0):,} requests, models: {', '.join(totals.get('unpriced_models') or []) or 'none'}"},
    ]  # fmt: skip
    return shares


def _extra_totals(totals: Mapping[str, Any]) -> dict[str, Any]:
    """Figures on estimated or unmeasured usage and reported losses, as the report states them."""
    return {k: v for k, v in totals.items() if "estimated" in k or "unmeasured" in k or k == "events_lost_reported"}


def readiness(runner: Runner, view: View) -> CheckResult:
    return Readiness(_scope(runner, view)).run(runner)


def _scope(runner: Runner, view: View) -> Scope:
    return Scope(Period.days(view.first, view.last + timedelta(days=1)), database=runner.database, tenant=view.filters.get("tenant", ""))


# ------------------------------------------------------------------ team


@dataclass
class TeamPage:
    statement: Statement
    tables: dict[str, Table]
    daily_chart: str
    daily_legend: str
    app_chart: str
    model_chart: str


def team_page(statement: Statement, view: View, *, link: Callable[..., str]) -> TeamPage:
    s = statement
    money = amount_columns(view.mode)
    short_money = [c for c in money if c.key != "allocated_in"]

    def rows(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{**line, "_handle": link("explain", handle=line["handle"])} for line in lines]

    detail = [row for row in s.detail
              if all(row.get(k) == v for k, v in (("app_key", view.filters.get("app")), ("model_key", view.filters.get("model"))) if v)]  # fmt: skip
    handle = Column("handle", "Events", "code", link="_handle")
    tables = {
        "apps": Table("apps", "By app", [Column("label", "App"), *USAGE, *money, Column("flag", "Flag"), handle], rows(s.by_app.lines),
                      footer={"label": "Total", **s.by_app.totals}),
        "models": Table("models", "By model", [Column("label", "Model"), *USAGE, *money, Column("flag", "Flag"), handle],
                        rows(s.by_model.lines), footer={"label": "Total", **s.by_model.totals}),
        "apps_models": Table("apps_models", "Apps × models", [Column("app", "App"), Column("model", "Model"), *USAGE, *short_money,
                             Column("flag", "Flag"), handle], rows(detail),
                             notes=["filtered by " + ", ".join(f"{k} = {v}" for k, v in view.filters.items() if k in ("app", "model"))]
                             if any(k in view.filters for k in ("app", "model")) else []),
        "days": Table("days", "Spend per UTC day", [Column("day", "Day"), Column("events", "Requests", "int"),
                      Column("amount", "Amount", "money")],
                      [{"day": d.day.isoformat(), "events": d.events, "amount": d.amount} for d in s.days]),
    }  # fmt: skip
    apps = [line["label"] for line in s.by_app.lines]
    series = apps[:MAX_CHART_SERIES] + ([OTHER] if len(apps) > MAX_CHART_SERIES else [])
    colors = colors_for(series)
    days = [Day(d.day, d.amount, d.events, _fold(d.by_app, apps[:MAX_CHART_SERIES])) for d in s.days]
    column = s.amount_column

    def bars(lines: Sequence[Mapping[str, Any]]) -> list[Bar]:
        return [Bar(line["key"], line["label"], _exact(line, view.mode), line[column], colors.get(line["label"], "#0072B2"),
                    line.get("flag", "")) for line in lines]  # fmt: skip

    return TeamPage(s, tables, daily_chart(days, series, colors, currency=s.currency), legend(series, colors),
                    bar_chart("app", bars(s.by_app.lines), currency=s.currency), bar_chart("model", bars(s.by_model.lines), currency=s.currency))


def _fold(parts: Mapping[str, Decimal], shown: Sequence[str]) -> dict[str, Decimal]:
    folded: dict[str, Decimal] = {}
    for name, value in parts.items():
        key = name if name in shown else OTHER
        folded[key] = folded.get(key, Decimal(0)) + value
    return folded


def _exact(line: Mapping[str, Any], mode: str) -> Decimal:
    if mode == "chargeback":
        return Decimal(line["model_cost_exact"]) + Decimal(line["platform_fee_exact"])
    return Decimal(line["list_cost_exact"])


def statement_for(runner: Runner, view: View, config: AllocationConfig, *, facts: bool = True, raw_facts: bool = True) -> Statement:
    """The team's statement; ``facts=False`` (the team page) skips what is not money, which that page does not show;
    ``raw_facts=False`` (the statement page) skips the facts only raw events know: statement_raw_facts, an analysis."""
    return build_statement(runner, team=view.filters["team"], first=view.first, last=view.last, mode=view.mode, config=config,
                           tenant=view.filters.get("tenant"), facts=facts, raw_facts=raw_facts)  # fmt: skip


def statement_raw_facts(runner: Runner, view: View) -> RawFacts:
    """First and last request, last write, identity sources and conflicts: a pass over the period's raw events."""
    return read_raw_facts(runner, team=view.filters["team"], first=view.first, last=view.last, tenant=view.filters.get("tenant"))


# ------------------------------------------------------------------ drill-down

EVENT_COLUMNS = (
    Column("started_at", "Started (UTC)"), Column("event_id", "Event", "code"),
    Column("tenant", "Tenant"), Column("tenant_source", "from"), Column("team", "Team"), Column("team_source", "from"),
    Column("app", "App"), Column("app_source", "from"), Column("unattributed_reason", "Unattributed because"),
    Column("identity_conflicts", "Identity conflicts", "list"), Column("consumer_username", "Consumer"), Column("route_name", "Route"),
    Column("provider", "Provider"), Column("billing_model", "Model"), Column("service_tier", "Tier"),
    Column("input_tokens", "Input", "int"), Column("cached_input_tokens", "Cached", "int"), Column("output_tokens", "Output", "int"),
    Column("reasoning_tokens", "Reasoning", "int"), Column("cost_total", "Cost"), Column("list_cost_total", "List cost"),
    Column("pricing_status", "Pricing"), Column("price_source", "Price source"), Column("list_price_source", "List price source"),
    Column("catalog_version", "Catalog"), Column("price_model_id", "Priced as"), Column("usage_source", "Usage from"),
    Column("usage_note", "Capture note"), Column("reprice_run_id", "Reprice run", "code"),
)  # fmt: skip


def handle_slice(handle: Handle) -> dict[str, str]:
    """The equality filters a handle's events satisfy: its own filters and its line's key."""
    filters = dict(handle.filters)
    if handle.by in ("team", "tenant", "app", "model") and handle.key:
        filters.setdefault(handle.by, handle.key)
    return filters


def drill_down(runner: Runner, handle: Handle, limit: int) -> tuple[Explanation, Table, Table]:
    """The line's totals (from the rollups, as its report) and its first events; the raw recount is line_recount."""
    result = explain(runner, handle, limit=max(1, min(limit, EXPLAIN_MAX_LIMIT)), with_recount=False)
    events = [dict(zip(result.columns, row)) for row in result.events]
    present = set(result.columns)
    columns = [c for c in EVENT_COLUMNS if c.key in present]
    summary = _summary_table("summary", "The line's totals (every matching event, from the rollups as its report)", result.summary)
    return result, summary, Table("events", "Events (oldest first)", columns, events, empty="No events behind this line.")


def line_recount(runner: Runner, handle: Handle) -> tuple[dict[str, Any], Recount]:
    """The line's totals and every raw event of it summed again, one right after the other (an analysis: seconds at 10M events)."""
    return check_line(runner, handle)


def recount_table(recount: Recount) -> Table:
    return _summary_table("recount", "Recount from raw events", recount.figures)


def _summary_table(name: str, title: str, figures: Mapping[str, Any]) -> Table:
    return Table(name, title, [Column(k, k.replace("_", " ").capitalize(), "list" if isinstance(v, (list, tuple)) else "text")
                               for k, v in figures.items()], [dict(figures)])  # fmt: skip


# ------------------------------------------------------------------ governance

CHECKS: dict[str, tuple[str, Callable[[Scope], Any]]] = {
    "shared_credentials": ("Shared credentials", lambda scope: SharedCredentials(scope)),
    "retries": ("Retries", lambda scope: Retries(scope)),
    "bursts": ("Bursts", lambda scope: Bursts(scope)),
    "fan_out": ("Fan-out", lambda scope: FanOut(scope)),
    "premium_models": ("Premium models", lambda scope: PremiumModels(scope)),
    "spend_anomalies": ("Spend anomalies", lambda scope: SpendAnomalies(scope)),
    "cache_misses": ("Cache misses", lambda scope: CacheMisses(scope)),
    "unattributed": ("Unattributed usage", lambda scope: Unattributed(scope)),
    "identity_conflicts": ("Identity conflicts", lambda scope: IdentityConflicts(scope)),
}


def governance_check(runner: Runner, view: View, name: str) -> CheckResult:
    return CHECKS[name][1](_scope(runner, view)).run(runner)


def check_table(name: str, result: CheckResult) -> Table:
    columns = [Column(c, c.replace("_", " ")) for c in result.columns]
    return Table(name, CHECKS[name][0] if name in CHECKS else result.title, columns, list(result.rows),
                 caption=result.verdict.label + (": " + "; ".join(result.verdict.reasons) if result.verdict.reasons else ""),
                 empty="No findings.", notes=list(result.notes), shown=100)  # fmt: skip


# ------------------------------------------------------------------ budgets


def budget_table(statuses: Sequence[BudgetStatus], principal: Principal, *, only: Mapping[str, str] | None = None) -> Table:
    rows = []
    for b in statuses:
        if not principal.may_see(b.scope):
            continue
        if only and any(b.scope.get(k) != v for k, v in only.items()):
            continue
        rows.append({
            "budget_id": b.budget_id, "scope": ", ".join(f"{k} = {v}" for k, v in sorted(b.scope.items())), "period": b.period,
            "period_start": b.period_start, "period_end": b.period_end, "unit": b.unit, "limit": b.limit, "spend": b.spend,
            "utilization": float(b.utilization), "status": b.status, "action": b.action,
            "forecast_exhausted_at": b.forecast_exhausted_at or "not within the period",
        })  # fmt: skip
    columns = [Column("budget_id", "Budget"), Column("scope", "Scope"), Column("period", "Period"), Column("period_start", "From"),
               Column("period_end", "Until"), Column("unit", "Unit"), Column("limit", "Limit"), Column("spend", "Spend"),
               Column("utilization", "Used", "pct"), Column("status", "Status"), Column("action", "At 100%"),
               Column("forecast_exhausted_at", "Exhausted at current rate")]  # fmt: skip
    return Table("budgets", "Budgets", columns, rows, empty="No budgets in this view.")


def budget_statuses(source: BudgetSource, runner: Runner) -> Sequence[BudgetStatus]:
    return source.statuses(runner, at=datetime.now(UTC))
