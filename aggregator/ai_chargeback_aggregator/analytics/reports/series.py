"""Query: spend per UTC day and per value of one dimension, in one pass over the report's source.

The report (report.py) answers a period; charts want its days. Asking the
report once per day costs one query plan per day; this reads the same source
union (rollups where clean, raw events where not: source.py) once, grouped by
day and line key, with the report's key expression, so every event lands on
the same line as in ``chargeback report``. Amounts are exact (Decimal);
:func:`day_cents` rounds a series into cents that add up to a report total,
with the reports' largest-remainder method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from ...periods import day_bounds
from .allocation import largest_remainder
from .runner import Runner
from .source import plan, render
from .usage_by import DIMENSIONS, key_expression

CENT = Decimal("0.01")


@dataclass(frozen=True)
class DayLine:
    day: date
    key: str  # the report line's key ('' = unattributed)
    label: str
    events: int
    cost: Decimal  # contracted model cost, exact
    list_cost: Decimal  # at list price, exact
    unpriced_events: int


def daily(runner: Runner, *, first: date, last: date, by: str, filters: Mapping[str, str] | None = None) -> list[DayLine]:
    """One row per (UTC day, line key) with usage, ordered by day then key."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    column, label = DIMENSIONS[by]
    start, end = day_bounds(first, last)
    source_plan = plan(runner, start, end, filters)
    needed = {column, "pricing_status", *(n for n in ("consumer_name", "route_name") if n in label)}
    source, params = render(source_plan, runner.database, sorted(needed))
    sql = f"""
SELECT toDate(period_start) AS day, {key_expression(column)} AS key, {label} AS label,
       sum(events), sum(cost_total), sum(list_cost_total), sumIf(events, pricing_status = 'unpriced')
FROM (
{source}
)
GROUP BY day, key
ORDER BY day, key
"""
    _, rows = runner.query(sql, params)
    return [DayLine(_day(r[0]), str(r[1]), str(r[2] or r[1] or ""), int(r[3]), r[4], r[5], int(r[6])) for r in rows]


def days_of(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def day_cents(amounts: Sequence[Decimal], total_text: str) -> list[int]:
    """Cents per day that add up to a report total (its money text), by largest remainder."""
    total = Decimal(total_text) / CENT
    if total != total.to_integral_value():
        raise ValueError(f"not an amount in cents: {total_text!r}")
    return largest_remainder(list(amounts), int(total)) if amounts else []


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
