"""The one relation every report reads: rollups where they are clean, raw events where not.

For a range of whole UTC days, each hour is read from exactly one place:

* a day marked clean                       -> usage_rollup_daily
* an hour marked clean on any other day    -> usage_rollup_hourly
* every other hour (dirty, or never built) -> usage_events FINAL, grouped the same way

so every event counts once, duplicates collapse (FINAL everywhere), and the
answer equals a full scan of the raw table while reading mostly rollups.
``plan`` reads rollup_state first (a few hundred rows); ``render`` then
returns the union as SQL with bound parameters only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ...rollups.columns import FROM_EVENTS, GROUP_KEY, MEASURES, NAMES
from .runner import Runner

HOUR = timedelta(hours=1)
# Report dimensions users may filter or group by -> the rollup column holding them.
FILTERABLE = frozenset(("tenant", "team", "app", "provider", "model", "consumer_id", "route_id", "price_tier", "pricing_status"))
_RAW_COLUMN = {"model": "billing_model"}  # raw events name the billed model differently

STATE_SQL = """
SELECT grain, period_start, state
FROM {db:Identifier}.rollup_state FINAL
WHERE period_start >= {start:DateTime('UTC')} AND period_start < {end:DateTime('UTC')}
"""


@dataclass(frozen=True)
class SourcePlan:
    start: datetime  # inclusive, UTC midnight
    end: datetime  # exclusive, UTC midnight
    daily: tuple[date, ...] = ()
    hourly: tuple[datetime, ...] = ()
    raw: tuple[datetime, ...] = ()
    filters: Mapping[str, str] = field(default_factory=dict)

    def days(self) -> list[date]:
        count = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).date() for i in range(count)]

    def for_day(self, day: date) -> SourcePlan:
        """The same plan narrowed to one day (long exports go a day at a time)."""
        return SourcePlan(
            start=datetime(day.year, day.month, day.day, tzinfo=UTC),
            end=datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
            daily=tuple(d for d in self.daily if d == day),
            hourly=tuple(h for h in self.hourly if h.date() == day),
            raw=tuple(h for h in self.raw if h.date() == day),
            filters=self.filters,
        )

    def describe(self) -> dict[str, int]:
        return {"days_from_daily_rollup": len(self.daily), "hours_from_hourly_rollup": len(self.hourly), "hours_from_raw_events": len(self.raw)}


def plan(runner: Runner, start: datetime, end: datetime, filters: Mapping[str, str] | None = None) -> SourcePlan:
    for name in filters or {}:
        if name not in FILTERABLE:
            raise ValueError(f"cannot filter on {name!r}")
    _, rows = runner.query(STATE_SQL, {"db": runner.database, "start": start, "end": end})
    clean_days = {_utc(p).date() for grain, p, state in rows if grain == "day" and state == "clean"}
    clean_hours = {_utc(p) for grain, p, state in rows if grain == "hour" and state == "clean"}
    daily, hourly, raw = [], [], []
    day = start
    while day < end:
        if day.date() in clean_days:
            daily.append(day.date())
        else:
            for h in range(24):
                hour = day + h * HOUR
                (hourly if hour in clean_hours else raw).append(hour)
        day += timedelta(days=1)
    return SourcePlan(start, end, tuple(daily), tuple(hourly), tuple(raw), dict(filters or {}))


def render(plan: SourcePlan, database: str, dimensions: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The union as a subquery (no surrounding parentheses) and its parameters.

    ``dimensions``: the key and name columns the caller reads (default: all).
    Fewer columns make the raw branch's GROUP BY, the costly part, cheaper.
    Every branch always carries period_start and all measures.
    """
    keys = [c for c in GROUP_KEY if dimensions is None or c in dimensions]
    names = [c for c in NAMES if dimensions is None or c in dimensions]
    unknown = set(dimensions or ()) - set(GROUP_KEY) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown source columns {sorted(unknown)}")
    columns = [*keys, *names, *MEASURES]
    params: dict[str, Any] = {"db": database}
    for i, (_, value) in enumerate(sorted(plan.filters.items())):
        params[f"f{i}"] = value
    where_extra = _filters(plan.filters, {})
    raw_filters = _filters(plan.filters, _RAW_COLUMN)
    branches = []
    if plan.daily:
        params["daily"] = list(plan.daily)
        branches.append(
            f"SELECT toDateTime(period_start, 'UTC') AS period_start, {', '.join(columns)} FROM {{db:Identifier}}.usage_rollup_daily FINAL "
            f"WHERE period_start IN {{daily:Array(Date)}}{where_extra}"
        )
    if plan.hourly:
        params["hourly"] = list(plan.hourly)
        params["hourly_lo"], params["hourly_hi"] = min(plan.hourly), max(plan.hourly) + HOUR
        branches.append(
            f"SELECT period_start, {', '.join(columns)} FROM {{db:Identifier}}.usage_rollup_hourly FINAL "
            "WHERE period_start >= {hourly_lo:DateTime('UTC')} AND period_start < {hourly_hi:DateTime('UTC')} "
            f"AND period_start IN {{hourly:Array(DateTime('UTC'))}}{where_extra}"
        )
    if plan.raw:
        params["raw"] = list(plan.raw)
        params["raw_lo"], params["raw_hi"] = min(plan.raw), max(plan.raw) + HOUR
        select = ", ".join(f"{FROM_EVENTS[c]} AS {c}" if FROM_EVENTS[c] != c else c for c in columns)
        # PREWHERE before FINAL is safe on started_at only: every version of an event has
        # the same started_at, so a filter on it keeps all versions or none.
        branches.append(
            f"SELECT toStartOfHour(started_at) AS period_start, {select} FROM {{db:Identifier}}.usage_events FINAL "
            "PREWHERE started_at >= {raw_lo:DateTime64(3, 'UTC')} AND started_at < {raw_hi:DateTime64(3, 'UTC')} "
            f"WHERE toStartOfHour(started_at) IN {{raw:Array(DateTime('UTC'))}}{raw_filters} "
            f"GROUP BY {', '.join(['period_start', *keys])}"
        )
    if not branches:
        branches.append(f"SELECT period_start, {', '.join(columns)} FROM {{db:Identifier}}.usage_rollup_hourly WHERE 0")
    return "\nUNION ALL\n".join(branches), params


def _filters(filters: Mapping[str, str], columns: Mapping[str, str]) -> str:
    """AND-ed equality filters on known dimension names, values bound as f0, f1, ..."""
    return "".join(f" AND {columns.get(name, name)} = {{f{i}:String}}" for i, name in enumerate(sorted(filters)))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
