"""Query: the raw events behind one report line, with identity sources and price provenance.

The summary covers every matching event (so it reconciles with the line's
direct usage and cost); the listing is capped by ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...periods import day_bounds
from ...rollups.columns import ESTIMATED, UNMEASURED
from .handle import Handle
from .runner import Runner
from .source import filter_clause
from .usage_by import DIMENSIONS, key_expression

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
# Identity columns every stored version of an event shares: usage_events is keyed by the event id
# (migration 0010), and a replay whose content differs goes to event_conflicts, never to usage_events,
# so filtering on these before FINAL cannot drop the version FINAL would keep. (They no longer lead
# the sort key: such a filter now reads the whole period's granules.)
OWNER_COLUMNS = frozenset(("tenant", "team", "app"))
# Raw column for each --by dimension (raw events call the billed model billing_model).
_RAW = {"model": "billing_model"}

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
class Explanation:
    handle: Handle
    summary: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


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


def render_summary(handle: Handle, database: str) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"db": database}
    where = _where(handle, params)
    sql = f"""
SELECT count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_total) AS cost, sum(list_cost_total) AS list_cost,
       countIf(pricing_status = 'unpriced') AS unpriced_events,
       countIf({ESTIMATED}) AS estimated_events, countIf({UNMEASURED}) AS unmeasured_events,
       groupUniqArray(20)(price_source) AS price_sources, groupUniqArray(20)(catalog_version) AS catalog_versions
FROM {{db:Identifier}}.usage_events FINAL
{where}
"""
    return sql, params


def render_events(handle: Handle, database: str, limit: int) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"db": database, "limit": max(1, min(limit, MAX_LIMIT))}
    where = _where(handle, params)
    sql = f"""
SELECT {", ".join(EVENT_COLUMNS)}
FROM {{db:Identifier}}.usage_events FINAL
{where}
ORDER BY started_at, event_id
LIMIT {{limit:UInt32}}
"""
    return sql, params


def explain(runner: Runner, handle: Handle, *, limit: int = DEFAULT_LIMIT) -> Explanation:
    columns, rows = runner.query(*render_summary(handle, runner.database))
    summary = dict(zip(columns, rows[0])) if rows else {}
    event_columns, events = runner.query(*render_events(handle, runner.database, limit))
    return Explanation(handle, summary, event_columns, events)
