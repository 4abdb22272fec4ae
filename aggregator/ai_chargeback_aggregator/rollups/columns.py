"""The shape every rollup row shares (migrations 0004 and 0007), named once for every query that reads or writes one."""

from __future__ import annotations

from ..pricing.rates import LIST_RATE_COLUMNS, RATE_COLUMNS

# Group key after the period: who, where, what, at which price.
DIMENSIONS: tuple[str, ...] = ("tenant", "team", "app", "provider", "model", "consumer_id", "route_id", "price_tier")
PRICE_KEY: tuple[str, ...] = (
    "pricing_status", "price_source", "list_price_source", "catalog_version", "price_model_id", "currency",
    *RATE_COLUMNS, *LIST_RATE_COLUMNS,
)  # fmt: skip
GROUP_KEY: tuple[str, ...] = DIMENSIONS + PRICE_KEY
NAMES: tuple[str, ...] = ("consumer_name", "route_name")
TOKENS: tuple[str, ...] = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
COSTS: tuple[str, ...] = (
    "cost_input", "cost_cached_input", "cost_cache_write", "cost_output", "cost_reasoning", "cost_request",
    "cost_total", "list_cost_total",
)  # fmt: skip
# How much of a group was measured (migration 0007): estimated usage and its cost, and
# answered requests whose usage could not be measured at all.
MEASUREMENT: tuple[str, ...] = ("estimated_events", "estimated_cost_total", "estimated_list_cost_total", "unmeasured_events")
MEASURES: tuple[str, ...] = ("events", *TOKENS, *COSTS, *MEASUREMENT)
ROLLUP_COLUMNS: tuple[str, ...] = ("period_start", *GROUP_KEY, *NAMES, *MEASURES, "build_version", "is_deleted")

# Raw-event conditions: the plugin estimated the usage (labelled), or could not measure an answered request.
# Costs are named by table (usage_events.cost_total): in the same SELECT, cost_total is the alias of sum(cost_total).
ESTIMATED = "usage_source = 'estimated'"
UNMEASURED = "usage_source = 'none' AND policy_outcome = 'allowed'"

# How each rollup column is computed from raw events (usage_events FINAL).
FROM_EVENTS: dict[str, str] = {
    **{c: c for c in GROUP_KEY},
    "model": "billing_model",
    # max(): deterministic, so a rebuild never flips a display name
    "consumer_name": "max(if(consumer_username != '', consumer_username, consumer_custom_id))",
    "route_name": "max(route_name)",
    "events": "count()",
    **{c: f"sum({c})" for c in TOKENS},
    **{c: f"sum({c})" for c in COSTS},
    "estimated_events": f"countIf({ESTIMATED})",
    "estimated_cost_total": f"sumIf(usage_events.cost_total, {ESTIMATED})",
    "estimated_list_cost_total": f"sumIf(usage_events.list_cost_total, {ESTIMATED})",
    "unmeasured_events": f"countIf({UNMEASURED})",
}
# How a coarser rollup row is computed from finer rollup rows.
FROM_ROLLUP: dict[str, str] = {
    **{c: c for c in GROUP_KEY},
    "consumer_name": "max(consumer_name)",
    "route_name": "max(route_name)",
    **{c: f"sum({c})" for c in MEASURES},
}
