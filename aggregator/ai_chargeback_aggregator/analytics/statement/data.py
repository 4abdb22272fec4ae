"""One team's statement for a period: the report's numbers, broken down for a page.

Every amount comes from ``build_report`` (report.py); nothing here queries cost:

* totals and lines by app: ``build_report(by="app", filters={team})``, the same
  numbers ``chargeback report --by app --team T`` prints;
* lines by model: ``build_report(by="model")`` with the same filters;
* app x model lines: ``build_report(by="model")`` per app (filters team + app);
  these two from one query (``build_whole_and_split_reports``);
* the daily series: the report's source read once by day and app (reports/series.py),
  with the report's fee formula per day.

The app x model lines and the days are finer cuts of the same usage. Their exact
amounts are rounded to cents again with the reports' largest-remainder method:
an app's model lines against that app's line, the days against the totals. So
the table adds up to the app lines and they to the totals, to the cent (each
cut rounded on its own would not). What is not money comes from two places:

* tenants seen, catalog versions and price sources: the report's source again
  (rollups where clean), one query;
* first and last request, last write, identity sources and identity conflicts
  exist in raw events only: one pass over the team's events of the period
  (usage_events FINAL; about a second for a month at ten million events). The
  CLI and the statement file read it inline; the console's statement page reads
  it as an analysis and says so while it is being computed (``attach_raw_facts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from ...periods import day_bounds
from ..reports.allocation import largest_remainder
from ..reports.allocation_config import AllocationConfig, UnattributedRule
from ..reports.explain import OWNER_COLUMNS
from ..reports.report import UNATTRIBUTED_LABEL, Report, build_report, build_whole_and_split_reports, money_text
from ..reports.runner import Runner
from ..reports.series import daily, days_of
from ..reports.source import FILTERABLE, plan, render
from ..reports.usage_by import UNATTRIBUTED_VALUES

# Money columns a statement shows, per mode: (cents column, exact column) from the report.
MONEY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "showback": (("list_cost", "list_cost_exact"),),
    "chargeback": (("model_cost", "model_cost_exact"), ("platform_fee", "platform_fee_exact")),
}
MAX_DAYS = 366  # one report per day: a year is the most a page should chart
_RAW = {"model": "billing_model"}  # raw events name the billed model differently

# What the statement names beside the money, from the report's source (rollups where clean, raw where not).
SOURCE_FACTS_SQL = """
SELECT sum(events) AS events,
       arraySort(groupUniqArray(50)(tenant)) AS tenants,
       arraySort(groupUniqArrayIf(20)(catalog_version, catalog_version != '')) AS catalog_versions,
       arraySort(groupUniqArray(20)(price_source)) AS price_sources
FROM (
{source}
)
"""

# What only raw events know, in one pass: per identity-source triple, its requests, the first and last
# request, the last write and the requests that carried a disagreeing identity header.
RAW_FACTS_SQL = """
SELECT toString(tenant_source) AS tenant_source, toString(team_source) AS team_source, toString(app_source) AS app_source,
       count() AS requests, min(started_at) AS first_event_at, max(started_at) AS last_event_at,
       max(ingested_at) AS last_written_at, countIf(notEmpty(identity_conflicts)) AS identity_conflicts
FROM {{db:Identifier}}.usage_events FINAL
PREWHERE started_at >= {{start:DateTime64(3, 'UTC')}} AND started_at < {{end:DateTime64(3, 'UTC')}}{narrow}
WHERE 1{where}
GROUP BY tenant_source, team_source, app_source
"""
IDENTITY_ATTRIBUTES = ("tenant", "team", "app")
RAW_META = ("first_event_at", "last_event_at", "last_written_at", "identity_conflicts")


@dataclass
class RawFacts:
    """The statement's facts only raw events know (RAW_FACTS_SQL), ready to attach to a statement."""

    meta: dict[str, Any]  # RAW_META
    identity: list[dict[str, Any]]  # attribute, source, requests, share


@dataclass
class DaySpend:
    day: date
    events: int
    amount: str  # cents text: this day's share of the statement total
    by_app: dict[str, Decimal] = field(default_factory=dict)  # app label -> exact amount (chart geometry)


@dataclass
class Statement:
    team: str
    filters: dict[str, str]
    mode: str
    first: date
    last: date
    generated_at: datetime
    by_app: Report
    by_model: Report
    own_by_app: Report  # the by-app lines before unattributed apps are moved (== by_app when nothing moved)
    detail: list[dict[str, Any]]  # app x model lines, grouped by app in own_by_app's order
    days: list[DaySpend]
    identity: list[dict[str, Any]]
    meta: dict[str, Any]
    team_line: dict[str, Any] | None = None  # chargeback: this team's line in the report by team
    team_policy: dict[str, Any] | None = None
    # Empty: the raw-event facts (RAW_META, identity) are in. Else what to say in their place ("being computed ...").
    raw_facts_note: str = ""
    raw_facts_at: datetime | None = None  # when they were read, if earlier than this statement (the console's analysis)

    @property
    def totals(self) -> dict[str, Any]:
        return self.by_app.totals

    @property
    def currency(self) -> str:
        return self.by_app.currency

    @property
    def amount_column(self) -> str:
        """The column that is 'what this team is charged': list cost in showback, total in chargeback."""
        return "total" if self.mode == "chargeback" else "list_cost"


def build_statement(
    runner: Runner,
    *,
    team: str,
    first: date,
    last: date,
    mode: str = "showback",
    config: AllocationConfig | None = None,
    tenant: str | None = None,
    facts: bool = True,
    raw_facts: bool = True,
) -> Statement:
    """``facts=False`` leaves out what is not money (tenants seen, catalogs, freshness, identity sources),
    for views that show only the amounts. ``raw_facts=False`` leaves out those only raw events know
    (read_raw_facts, a pass over the period's events): the caller attaches them (attach_raw_facts)."""
    if not team:
        raise ValueError("--team is required")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"a statement covers at most {MAX_DAYS} days")
    config = config or AllocationConfig()
    filters = statement_filters(team, tenant)

    def report(by: str, policy: AllocationConfig) -> Report:
        return build_report(runner, first=first, last=last, by=by, mode=mode, config=policy, filters=filters)

    by_app = report("app", config)
    # The finer cuts show usage where it happened: no unattributed-line moves inside them
    # (those are in the by-app lines, as `report --by app` shows them); fees still apply.
    own = replace(config, unattributed=UnattributedRule(), per_dimension={})
    moved = mode == "chargeback" and any(line["note"] for line in by_app.lines)
    # Same totals either way (allocation only moves cents); the own lines differ only when it moved some.
    own_by_app = report("app", own) if moved else by_app
    columns = MONEY_COLUMNS[mode]
    # The unattributed app line is every spelling of 'nobody'; a filter matches one each.
    values = {app["key"]: UNATTRIBUTED_VALUES if app["key"] == "" else (app["key"],) for app in own_by_app.lines}
    # One query for the report by model and every app's report by model (each as `report --by model --app <app>`).
    by_model, per_app = build_whole_and_split_reports(runner, by="model", split="app", values=[v for vs in values.values() for v in vs],
                                                      first=first, last=last, mode=mode, config=own, whole_config=config,
                                                      filters=filters)  # fmt: skip
    detail = _detail(own_by_app, values, per_app, columns)
    days = _days(runner, by_app, first=first, last=last, mode=mode, config=own, filters=filters, columns=columns)
    statement = Statement(
        team=team, filters=filters, mode=mode, first=first, last=last, generated_at=datetime.now(UTC),
        by_app=by_app, by_model=by_model, own_by_app=own_by_app, detail=detail, days=days,
        identity=[], meta=_source_facts(runner, first, last, filters) if facts else {},
    )  # fmt: skip
    if facts and raw_facts:
        attach_raw_facts(statement, read_raw_facts(runner, team=team, first=first, last=last, tenant=tenant))
    if mode == "chargeback":
        # What the team is charged once unattributed usage is allocated between teams:
        # the team's line of the report by team (same tenant scope), shown beside the totals.
        by_team = build_report(runner, by="team", first=first, last=last, mode=mode, config=config,
                               filters={"tenant": tenant} if tenant else None)  # fmt: skip
        statement.team_line = next((line for line in by_team.lines if line["key"] == team), None)
        rule = config.rule_for("team")
        statement.team_policy = {"strategy": rule.strategy, "owner": rule.owner}
    return statement


def cents(text: str) -> int:
    """'12.34' (a report's money text) -> 1234."""
    value = Decimal(text) * 100
    if value != value.to_integral_value():
        raise ValueError(f"not an amount in cents: {text!r}")
    return int(value)


def _detail(by_app: Report, values: Mapping[str, Sequence[str]], per_app: Mapping[str, Report],
            columns: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:  # fmt: skip
    """The app x model lines, grouped by app in ``by_app``'s order, rounded into each app's line."""
    lines: list[dict[str, Any]] = []
    for app in by_app.lines:
        cells: list[dict[str, Any]] = []
        for value in values[app["key"]]:
            sub = per_app[value]
            cells += [{**line, "app": app["label"], "app_key": app["key"], "model": line["label"], "model_key": line["key"]} for line in sub.lines]
        round_into(cells, app, columns)
        lines += cells
    return lines


def _days(
    runner: Runner,
    by_app: Report,
    *,
    first: date,
    last: date,
    mode: str,
    config: AllocationConfig,
    filters: Mapping[str, str],
    columns: Sequence[tuple[str, str]],
) -> list[DaySpend]:
    """The period's days, from one pass over the report's source (reports/series.py), fees as the report charges them."""
    starts = config.fee_starts() if mode == "chargeback" else []
    rows: dict[date, dict[str, Any]] = {
        day: {"events": 0, "list_cost_exact": Decimal(0), "model_cost_exact": Decimal(0), "platform_fee_exact": Decimal(0), "by_app": {}}
        for day in days_of(first, last)
    }  # fmt: skip
    for line in daily(runner, first=first, last=last, by="app", filters=filters):
        row = rows[line.day]
        fee = Decimal(0)
        period = config.fee_period(sum(1 for start in starts if start <= line.day)) if mode == "chargeback" else None
        if period is not None:  # the report's fee, per (line, fee period): linear, so it splits by day exactly
            fee = Decimal(line.events) * period.per_request + line.cost * period.uplift_percent / Decimal(100)
        row["events"] += line.events
        row["list_cost_exact"] += line.list_cost
        row["model_cost_exact"] += line.cost
        row["platform_fee_exact"] += fee
        label = UNATTRIBUTED_LABEL if line.key == "" else line.label or line.key
        row["by_app"][label] = row["by_app"].get(label, Decimal(0)) + (line.cost + fee if mode == "chargeback" else line.list_cost)
    ordered = [rows[day] for day in sorted(rows)]
    round_into(ordered, by_app.totals, columns)
    return [DaySpend(day=day, events=row["events"], amount=money_text(sum(cents(row[c]) for c, _ in columns)), by_app=row["by_app"])
            for day, row in zip(sorted(rows), ordered)]  # fmt: skip


def round_into(rows: list[dict[str, Any]], totals: Mapping[str, Any], columns: Sequence[tuple[str, str]]) -> None:
    """Give each row cents for each money column that sum to ``totals`` (a report line or its totals).

    Rows hold exact amounts (the report's ``*_exact``) that add up to the exact amount behind
    ``totals``, whose cents lie within one cent per row of the rows' floors: largest remainder
    (as the report rounds) then hands out exactly those cents.
    """
    for column, exact in columns:
        split = largest_remainder([Decimal(row[exact]) for row in rows], cents(totals[column])) if rows else []
        for row, c in zip(rows, split):
            row[column] = money_text(c)
    if len(columns) > 1:
        for row in rows:
            row["total"] = money_text(sum(cents(row[c]) for c, _ in columns))


def _where(filters: Mapping[str, str], params: dict[str, Any]) -> str:
    clauses = ""
    for i, (name, value) in enumerate(sorted(filters.items())):
        if name not in FILTERABLE:
            raise ValueError(f"cannot filter on {name!r}")
        params[f"w{i}"] = value
        clauses += f" AND {_RAW.get(name, name)} = {{w{i}:String}}"
    return clauses


def _narrow(filters: Mapping[str, str]) -> str:
    """The filters on tenant, team and app again before FINAL (every version of an event shares them:
    reports/explain.py's OWNER_COLUMNS), so FINAL merges only the scope's rows."""
    return "".join(f" AND {name} = {{w{i}:String}}" for i, (name, _) in enumerate(sorted(filters.items())) if name in OWNER_COLUMNS)


def _params(runner: Runner, first: date, last: date) -> dict[str, Any]:
    start, end = day_bounds(first, last)
    return {"db": runner.database, "start": start, "end": end}


def _source_facts(runner: Runner, first: date, last: date, filters: Mapping[str, str]) -> dict[str, Any]:
    """Requests, tenants seen, catalog versions and price sources, from the report's source (the rollups where clean)."""
    start, end = day_bounds(first, last)
    source, params = render(plan(runner, start, end, filters), runner.database, ["tenant", "catalog_version", "price_source"])
    columns, rows = runner.query(SOURCE_FACTS_SQL.format(source=source), params)
    meta = dict(zip(columns, rows[0])) if rows else {}
    meta = {k: list(v) if isinstance(v, tuple) else v for k, v in meta.items()}
    meta["events"] = int(meta.get("events") or 0)
    return {**meta, **dict.fromkeys(RAW_META)}  # raw facts: none until attached


def statement_filters(team: str, tenant: str | None) -> dict[str, str]:
    """The report filters a statement of ``team`` (within ``tenant``, if given) applies everywhere."""
    return {"team": team, **({"tenant": tenant} if tenant else {})}


def read_raw_facts(runner: Runner, *, team: str, first: date, last: date, tenant: str | None = None) -> RawFacts:
    """First and last request, last write, identity conflicts and identity sources: one pass over the team's raw events."""
    filters = statement_filters(team, tenant)
    params = _params(runner, first, last)
    columns, rows = runner.query(RAW_FACTS_SQL.format(where=_where(filters, params), narrow=_narrow(filters)), params)
    found = [dict(zip(columns, row)) for row in rows]
    meta: dict[str, Any] = {
        "first_event_at": min((r["first_event_at"] for r in found), default=None),  # min/max over no rows: never, not the epoch
        "last_event_at": max((r["last_event_at"] for r in found), default=None),
        "last_written_at": max((r["last_written_at"] for r in found), default=None),
        "identity_conflicts": sum(int(r["identity_conflicts"]) for r in found),
    }
    identity: list[dict[str, Any]] = []
    for attribute in IDENTITY_ATTRIBUTES:
        counts: dict[str, int] = {}
        for r in found:
            counts[r[f"{attribute}_source"]] = counts.get(r[f"{attribute}_source"], 0) + int(r["requests"])
        total = sum(counts.values())
        identity += [{"attribute": attribute, "source": source, "requests": n, "share": n / total if total else 0.0}
                     for source, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]  # fmt: skip
    return RawFacts(meta, identity)


def attach_raw_facts(statement: Statement, facts: RawFacts | None, *, note: str = "", read_at: datetime | None = None) -> None:
    """Put the raw-event facts in the statement; ``facts=None``: say ``note`` where they would be.
    ``read_at``: when they were read, if not just now (the page then says so)."""
    if facts is None:
        statement.raw_facts_note = note or "being computed"
        return
    statement.meta.update(facts.meta)
    statement.identity = list(facts.identity)
    statement.raw_facts_note = ""
    statement.raw_facts_at = read_at
