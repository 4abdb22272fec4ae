"""Query: one report line's totals, the raw events behind it, and the raw recount that proves they add up.

* The line's totals (events, tokens, cost, list cost, unpriced / estimated /
  unmeasured events, price sources, catalog versions) come from the report's
  own source (source.py: rollups where clean, raw events where not), grouped by
  day: the same figures the report line shows, in tens of milliseconds.
* The listing is the line's first events (oldest first, by started_at then
  event id), read from raw events only up to the end of the first day by which
  the line has ``limit`` events (the per-day counts above): the started_at
  minmax index then skips the other days' granules. usage_events is keyed by
  the event id, so a filter on team skips nothing and the listing used to read
  the whole period.
* The recount sums the line's raw events (usage_events FINAL over the whole
  period): seconds at ten million events, so the console runs it off the
  page's path (console analyses) and ``chargeback explain`` runs it inline.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ...periods import day_bounds
from ...rollups.columns import ESTIMATED, UNMEASURED
from .handle import Handle
from .runner import Runner
from .source import RAW_ONLY, filter_clause, plan, render
from .usage_by import DIMENSIONS, key_expression

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
MAX_LISTED_VALUES = 20  # price sources, catalog versions: the summary names at most this many
# Identity columns every stored version of an event shares: usage_events is keyed by the event id
# (migration 0010), and a replay whose content differs goes to event_conflicts, never to usage_events,
# so filtering on these before FINAL cannot drop the version FINAL would keep. (They no longer lead
# the sort key: such a filter now reads the whole period's granules.)
OWNER_COLUMNS = frozenset(("tenant", "team", "app"))
# Raw column for each --by dimension (raw events call the billed model billing_model).
_RAW = {"model": "billing_model"}
# The summary's figures, in order: the line's totals (from the report's source) and the recount (raw) both give them.
SUMMARY_FIELDS = ("events", "input_tokens", "output_tokens", "cost", "list_cost", "unpriced_events", "estimated_events",
                  "unmeasured_events", "price_sources", "catalog_versions")  # fmt: skip

EVENT_COLUMNS = (
    "event_id", "started_at", "tenant", "tenant_source", "team", "team_source", "app", "app_source",
    "unattributed_reason", "identity_conflicts", "consumer_id", "consumer_username", "route_name", "provider",
    "billing_model", "service_tier", "price_tier", "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
    "output_tokens", "reasoning_tokens", "cost_total", "list_cost_total", "pricing_status", "price_source",
    "list_price_source", "catalog_version", "price_model_id", "rate_input_e12", "rate_cached_input_e12",
    "rate_cache_write_e12", "rate_output_e12", "rate_reasoning_e12", "rate_request_e12", "usage_source", "usage_note",
    "ingested_at", "reprice_run_id",
)  # fmt: skip


@dataclass
class Recount:
    """The line's figures summed again from its raw events, and where they differ from the line's totals."""

    figures: dict[str, Any]
    differences: list[str]

    @property
    def matches(self) -> bool:
        return not self.differences


@dataclass
class Explanation:
    handle: Handle
    summary: dict[str, Any]  # the line's totals, from the report's source
    columns: list[str] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    recount: Recount | None = None  # None: not asked for (the console runs it as an analysis)


def _where(handle: Handle, params: dict[str, Any]) -> str:
    if handle.by not in DIMENSIONS:
        raise ValueError(f"handle names an unknown dimension {handle.by!r}")
    column = _RAW.get(handle.by, DIMENSIONS[handle.by][0])
    start, end = day_bounds(handle.first, handle.last)
    params.update({"start": start, "end": end, "key": handle.key})
    # The report's own filters, as the report applied them (the same clause on the raw columns).
    filters = dict(handle.filters)
    try:
        extra = filter_clause(filters, raw=True, prefix="w")
    except ValueError as exc:
        raise ValueError(f"handle {exc}") from exc
    narrow = ""
    for i, (name, value) in enumerate(sorted(filters.items())):
        params[f"w{i}"] = value
        if name in OWNER_COLUMNS:
            narrow += f" AND {name} = {{w{i}:String}}"
    if column in OWNER_COLUMNS:
        narrow += f" AND {column} IN ('', 'unattributed')" if handle.key == "" else f" AND {column} = {{key:String}}"
    # PREWHERE (before FINAL) only on columns every version of an event shares: started_at and the
    # OWNER_COLUMNS. The line's key is checked in WHERE, after FINAL.
    return (
        f"PREWHERE started_at >= {{start:DateTime64(3, 'UTC')}} AND started_at < {{end:DateTime64(3, 'UTC')}}{narrow} "
        f"WHERE {key_expression(column)} = {{key:String}}{extra}"
    )


def render_line_days(runner: Runner, handle: Handle) -> tuple[str, dict[str, Any]]:
    """The line's figures per UTC day, from the report's source: the rollups where clean, raw events where not."""
    if handle.by not in DIMENSIONS:
        raise ValueError(f"handle names an unknown dimension {handle.by!r}")
    column = DIMENSIONS[handle.by][0]
    start, end = day_bounds(handle.first, handle.last)
    try:
        source_plan = plan(runner, start, end, dict(handle.filters), raw_only=column in RAW_ONLY)
    except ValueError as exc:
        raise ValueError(f"handle {exc}") from exc
    source, params = render(source_plan, runner.database, sorted({column, "pricing_status", "price_source", "catalog_version"}))
    params["key"] = handle.key
    # source.events: the source's column (`events` alone would name this SELECT's own sum).
    sql = f"""
SELECT toDate(period_start) AS day, sum(events) AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_total) AS cost, sum(list_cost_total) AS list_cost, sumIf(source.events, pricing_status = 'unpriced') AS unpriced_events,
       sum(estimated_events) AS estimated_events, sum(unmeasured_events) AS unmeasured_events,
       groupUniqArray(price_source) AS price_sources, groupUniqArray(catalog_version) AS catalog_versions
FROM (
{source}
) AS source
WHERE {key_expression(column)} = {{key:String}}
GROUP BY day
ORDER BY day
"""
    return sql, params


def line_days(runner: Runner, handle: Handle) -> list[dict[str, Any]]:
    """The line's figures per day with events, oldest first (render_line_days)."""
    columns, rows = runner.query(*render_line_days(runner, handle))
    return [dict(zip(columns, row)) for row in rows]


def line_totals(days: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The line's totals over its days: the figures of the report's line, in the summary's fields."""
    totals: dict[str, Any] = {name: 0 for name in SUMMARY_FIELDS[:-2]}
    sources: set[str] = set()
    catalogs: set[str] = set()
    for day in days:
        for name in SUMMARY_FIELDS[:-2]:
            totals[name] += day[name]
        sources.update(day["price_sources"])
        catalogs.update(day["catalog_versions"])
    totals["price_sources"] = sorted(sources)[:MAX_LISTED_VALUES]
    totals["catalog_versions"] = sorted(catalogs)[:MAX_LISTED_VALUES]
    return totals


def render_summary(handle: Handle, database: str) -> tuple[str, dict[str, Any]]:
    """The recount: the summary's figures summed from every raw event of the line (the whole period, FINAL)."""
    params: dict[str, Any] = {"db": database}
    where = _where(handle, params)
    sql = f"""
SELECT count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_total) AS cost, sum(list_cost_total) AS list_cost,
       countIf(pricing_status = 'unpriced') AS unpriced_events,
       countIf({ESTIMATED}) AS estimated_events, countIf({UNMEASURED}) AS unmeasured_events,
       arraySort(groupUniqArray(price_source)) AS price_sources, arraySort(groupUniqArray(catalog_version)) AS catalog_versions
FROM {{db:Identifier}}.usage_events FINAL
{where}
"""
    return sql, params


def render_events(handle: Handle, database: str, limit: int, *, until: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """The line's first ``limit`` events, oldest first. ``until``: read only events that started before it
    (explain() passes the end of the day by which the line has ``limit`` events)."""
    params: dict[str, Any] = {"db": database, "limit": max(1, min(limit, MAX_LIMIT))}
    where = _where(handle, params)
    if until is not None:
        params["end"] = min(params["end"], until)
    sql = f"""
SELECT {", ".join(EVENT_COLUMNS)}
FROM {{db:Identifier}}.usage_events FINAL
{where}
ORDER BY started_at, event_id
LIMIT {{limit:UInt32}}
"""
    return sql, params


def listing_until(days: Sequence[Mapping[str, Any]], limit: int) -> datetime | None:
    """The end of the first day by which the line has ``limit`` events; None: the line has fewer, read it all."""
    seen = 0
    for day in days:
        seen += int(day["events"])
        if seen >= limit:
            when: date = day["day"]
            return datetime(when.year, when.month, when.day, tzinfo=UTC) + timedelta(days=1)
    return None


def recount(runner: Runner, handle: Handle, summary: Mapping[str, Any]) -> Recount:
    """Sum the line's raw events again (the whole period) and name every figure that differs from ``summary``."""
    columns, rows = runner.query(*render_summary(handle, runner.database))
    figures = dict(zip(columns, rows[0])) if rows else {}
    figures["price_sources"] = list(figures.get("price_sources") or ())[:MAX_LISTED_VALUES]
    figures["catalog_versions"] = list(figures.get("catalog_versions") or ())[:MAX_LISTED_VALUES]
    differences = [f"{name}: line {summary.get(name)!r}, raw events {figures.get(name)!r}"
                   for name in SUMMARY_FIELDS if summary.get(name) != figures.get(name)]  # fmt: skip
    return Recount(figures, differences)


def check(runner: Runner, handle: Handle) -> tuple[dict[str, Any], Recount]:
    """The line's totals and their raw recount, read one right after the other (the console's analysis)."""
    summary = line_totals(line_days(runner, handle))
    return summary, recount(runner, handle, summary)


def explain(runner: Runner, handle: Handle, *, limit: int = DEFAULT_LIMIT, with_recount: bool = True) -> Explanation:
    """``with_recount=False``: leave out the raw recount (it reads every event of the period)."""
    limit = max(1, min(limit, MAX_LIMIT))
    days = line_days(runner, handle)
    summary = line_totals(days)
    until = listing_until(days, limit)
    event_columns, events = runner.query(*render_events(handle, runner.database, limit, until=until))
    if until is not None and len(events) < limit:
        # The days said the window holds `limit` events but it held fewer (events deleted since the rollup
        # was built): list from the whole period rather than show fewer than there are.
        event_columns, events = runner.query(*render_events(handle, runner.database, limit))
    result = Explanation(handle, summary, event_columns, events)
    if with_recount:
        result.recount = recount(runner, handle, summary)
    return result
