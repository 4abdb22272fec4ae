"""Query: usage and cost per value of one dimension, split by platform-fee period.

Reads the source union (rollups where clean, raw where not). One row per
(dimension value, fee period): the fee policy can change mid-range and each
part is charged under its own policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from .source import SourcePlan, render

# --by value -> (grouping column, display label expression); constants, never user text.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "tenant": ("tenant", "any(tenant)"),
    "team": ("team", "any(team)"),
    "app": ("app", "any(app)"),
    "model": ("model", "any(model)"),
    "provider": ("provider", "any(provider)"),
    "consumer": ("consumer_id", "max(consumer_name)"),
    "route": ("route_id", "max(route_name)"),
}
MAX_UNPRICED_MODELS = 20
# Values meaning "nobody": the plugin records a team it could not resolve as 'unattributed'.
UNATTRIBUTED_VALUES = ("", "unattributed")


def key_expression(column: str) -> str:
    """The line key: every spelling of 'nobody' becomes '' (one unattributed line)."""
    return f"if({column} IN ('', 'unattributed'), '', {column})"

COLUMNS = (
    "key", "label", "fee_period", "events", "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
    "output_tokens", "reasoning_tokens", "cost", "list_cost", "unpriced_events", "unpriced_tokens", "unpriced_models",
    "estimated_events", "estimated_cost", "estimated_list_cost", "unmeasured_events",
)  # fmt: skip


def render_usage_by(plan: SourcePlan, database: str, by: str, fee_starts: Sequence[date]) -> tuple[str, dict[str, Any]]:
    if by not in DIMENSIONS:
        raise ValueError(f"--by must be one of {', '.join(DIMENSIONS)}")
    column, label = DIMENSIONS[by]
    needed = {column, "model", "pricing_status", *(n for n in ("consumer_name", "route_name") if n in label)}
    source, params = render(plan, database, sorted(needed))
    params["fee_starts"] = list(fee_starts)
    sql = f"""
SELECT {key_expression(column)} AS key,
       {label} AS label,
       arrayCount(s -> s <= toDate(period_start), {{fee_starts:Array(Date)}}) AS fee_period,
       sum(events),
       sum(input_tokens), sum(cached_input_tokens), sum(cache_write_input_tokens), sum(output_tokens), sum(reasoning_tokens),
       sum(cost_total) AS cost,
       sum(list_cost_total) AS list_cost,
       sumIf(events, pricing_status = 'unpriced') AS unpriced_events,
       sumIf(input_tokens + output_tokens, pricing_status = 'unpriced') AS unpriced_tokens,
       arraySort(groupUniqArrayIf({MAX_UNPRICED_MODELS})(model, pricing_status = 'unpriced')) AS unpriced_models,
       sum(estimated_events), sum(estimated_cost_total), sum(estimated_list_cost_total), sum(unmeasured_events)
FROM (
{source}
)
GROUP BY key, fee_period
ORDER BY key, fee_period
"""
    return sql, params
