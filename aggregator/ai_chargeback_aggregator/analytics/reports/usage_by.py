"""Query: usage and cost per value of one dimension, split by platform-fee period.

Reads the source union (rollups where clean, raw where not). One row per
(dimension value, fee period): the fee policy can change mid-range and each
part is charged under its own policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from ...pricing.rates import NOT_BILLED_SOURCE
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
    # Raw events only (not a rollup dimension): a report by workload scans its period's events.
    "workload": ("workload", "any(workload)"),
}
MAX_UNPRICED_MODELS = 20
# Values meaning "nobody": the plugin records a team it could not resolve as 'unattributed'.
UNATTRIBUTED_VALUES = ("", "unattributed")
# Columns a report may be split on (render_usage_by's ``split``): rollup dimensions, named as in filters.
SPLITTABLE = frozenset(("tenant", "team", "app", "provider", "model"))


def key_expression(column: str) -> str:
    """The line key: every spelling of 'nobody' becomes '' (one unattributed line)."""
    return f"if({column} IN ('', 'unattributed'), '', {column})"

COLUMNS = (
    "key", "label", "fee_period", "events", "fee_events", "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
    "output_tokens", "reasoning_tokens", "cost", "list_cost", "unpriced_events", "unpriced_tokens", "unpriced_models",
    "estimated_events", "estimated_cost", "estimated_list_cost", "unmeasured_events",
)  # fmt: skip


def render_usage_by(plan: SourcePlan, database: str, by: str, fee_starts: Sequence[date], *,
                    split: str | None = None) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``split``: a rollup column whose value is one more leading column and group key (one report per value,
    from one query: the rows of each value are exactly those of the same query filtered ``split = value``)."""
    if by not in DIMENSIONS:
        raise ValueError(f"--by must be one of {', '.join(DIMENSIONS)}")
    if split is not None and split not in SPLITTABLE:
        raise ValueError(f"cannot split on {split!r}")
    column, label = DIMENSIONS[by]
    needed = {column, "model", "pricing_status", "price_source", *(n for n in ("consumer_name", "route_name") if n in label)}
    needed |= {split} if split else set()
    source, params = render(plan, database, sorted(needed))
    params["fee_starts"] = list(fee_starts)
    params["not_billed"] = NOT_BILLED_SOURCE
    sql = f"""
SELECT {f'{split} AS split, ' if split else ''}{key_expression(column)} AS key,
       {label} AS label,
       arrayCount(s -> s <= toDate(period_start), {{fee_starts:Array(Date)}}) AS fee_period,
       sum(events),
       sumIf(events, price_source != {{not_billed:String}}) AS fee_events,
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
GROUP BY {'split, ' if split else ''}key, fee_period
ORDER BY {'split, ' if split else ''}key, fee_period
"""
    return sql, params
