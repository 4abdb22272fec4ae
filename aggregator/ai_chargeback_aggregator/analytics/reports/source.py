"""The one relation every report reads: rollups where they are clean, raw events where not.

For a window [start, end), each hour is read from exactly one place:

* a whole UTC day in the window, marked clean  -> usage_rollup_daily
* a whole hour in the window, marked clean     -> usage_rollup_hourly
* every other hour (dirty, never built, or cut
  by the window's edge)                        -> usage_events FINAL, grouped the same way

so every event counts once, duplicates collapse (FINAL everywhere), and the
answer equals a full scan of the raw table while reading mostly rollups.
Reports over whole UTC days never meet a cut hour; budget periods in a time
zone with a half-hour offset do (an Indian day starts at 18:30 UTC), and their
edge hours are read from raw events between the window's exact bounds.

Workload is not a rollup dimension: a plan filtered or grouped by it reads
every hour from raw events (``raw_only``). ``model_family`` filters on a model
and its dated snapshots (``gpt-4o`` matches ``gpt-4o-2024-08-06``, not
``gpt-4o-mini``); ``model`` stays an exact match.

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
DAY = timedelta(days=1)
MODEL_FAMILY = "model_family"
# Dimensions only raw events carry (not in the rollups): a plan that needs one reads raw only.
RAW_ONLY = frozenset(("workload",))
# Report dimensions users may filter or group by -> the rollup column holding them.
FILTERABLE = frozenset((
    "tenant", "team", "app", "provider", "model", "consumer_id", "route_id", "price_tier", "pricing_status",
    *RAW_ONLY, MODEL_FAMILY,
))  # fmt: skip
_RAW_COLUMN = {"model": "billing_model", MODEL_FAMILY: "billing_model"}  # raw events name the billed model differently
# A dated snapshot suffix (-2024-08-06, -20250929). Character classes, not {4}: braces are for parameters.
SNAPSHOT_SUFFIX = "-[0-9][0-9][0-9][0-9]-?[0-9][0-9]-?[0-9][0-9]$"

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


def plan(runner: Runner, start: datetime, end: datetime, filters: Mapping[str, str] | None = None, *,
         raw_only: bool = False) -> SourcePlan:  # fmt: skip
    """Where each hour of [start, end) is read from. ``raw_only``: every hour from raw events."""
    for name in filters or {}:
        if name not in FILTERABLE:
            raise ValueError(f"cannot filter on {name!r}")
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    raw_only = raw_only or any(name in RAW_ONLY for name in filters or {})
    first_day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    clean_days: set[date] = set()
    clean_hours: set[datetime] = set()
    if not raw_only:
        _, rows = runner.query(STATE_SQL, {"db": runner.database, "start": first_day, "end": end})
        clean_days = {_utc(p).date() for grain, p, state in rows if grain == "day" and state == "clean"}
        clean_hours = {_utc(p) for grain, p, state in rows if grain == "hour" and state == "clean"}
    daily, hourly, raw = [], [], []
    day = first_day
    while day < end:
        if start <= day and day + DAY <= end and day.date() in clean_days:
            daily.append(day.date())
        else:
            for h in range(24):
                hour = day + h * HOUR
                if hour + HOUR <= start or hour >= end:
                    continue
                whole = start <= hour and hour + HOUR <= end
                (hourly if whole and hour in clean_hours else raw).append(hour)
        day += DAY
    return SourcePlan(start, end, tuple(daily), tuple(hourly), tuple(raw), dict(filters or {}))


def render(plan: SourcePlan, database: str, dimensions: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The union as a subquery (no surrounding parentheses) and its parameters.

    ``dimensions``: the key and name columns the caller reads (default: all).
    Fewer columns make the raw branch's GROUP BY, the costly part, cheaper.
    Every branch always carries period_start and all measures.
    """
    keys = [c for c in GROUP_KEY if dimensions is None or c in dimensions]
    keys += [c for c in sorted(RAW_ONLY) if dimensions is not None and c in dimensions]
    names = [c for c in NAMES if dimensions is None or c in dimensions]
    unknown = set(dimensions or ()) - set(GROUP_KEY) - set(NAMES) - RAW_ONLY
    if unknown:
        raise ValueError(f"unknown source columns {sorted(unknown)}")
    if (plan.daily or plan.hourly) and RAW_ONLY & set(dimensions or ()):
        raise ValueError(f"{sorted(RAW_ONLY & set(dimensions or ()))} exist in raw events only: plan with raw_only=True")
    columns = [*keys, *names, *MEASURES]
    params: dict[str, Any] = {"db": database}
    for i, (_, value) in enumerate(sorted(plan.filters.items())):
        params[f"f{i}"] = value
    where_extra = filter_clause(plan.filters, raw=False)
    raw_filters = filter_clause(plan.filters, raw=True)
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
        # Clamped to the window: its edge hours may be cut (time zones with half-hour offsets).
        params["raw_lo"] = max(min(plan.raw), plan.start)
        params["raw_hi"] = min(max(plan.raw) + HOUR, plan.end)
        select = ", ".join(f"{_from_events(c)} AS {c}" if _from_events(c) != c else c for c in columns)
        # PREWHERE before FINAL is safe on started_at only: every version of an event has
        # the same started_at, so a filter on it keeps all versions or none.
        branches.append(
            f"SELECT toStartOfHour(started_at) AS period_start, {select} FROM {{db:Identifier}}.usage_events FINAL "
            "PREWHERE started_at >= {raw_lo:DateTime64(3, 'UTC')} AND started_at < {raw_hi:DateTime64(3, 'UTC')} "
            f"WHERE toStartOfHour(started_at) IN {{raw:Array(DateTime('UTC'))}}{raw_filters} "
            f"GROUP BY {', '.join(['period_start', *keys])}"
        )
    if not branches:
        if RAW_ONLY & set(columns):
            select = ", ".join(f"{_from_events(c)} AS {c}" for c in columns)
            branches.append(f"SELECT toStartOfHour(started_at) AS period_start, {select} FROM {{db:Identifier}}.usage_events "
                            f"WHERE 0 GROUP BY {', '.join(['period_start', *keys])}")  # fmt: skip
        else:
            branches.append(f"SELECT period_start, {', '.join(columns)} FROM {{db:Identifier}}.usage_rollup_hourly WHERE 0")
    return "\nUNION ALL\n".join(branches), params


def _from_events(column: str) -> str:
    return column if column in RAW_ONLY else FROM_EVENTS[column]


def filter_clause(filters: Mapping[str, str], *, raw: bool, prefix: str = "f") -> str:
    """AND-ed filters on known dimension names, values bound as f0, f1, ... (sorted by name):
    equality, or a model family. ``raw``: for usage_events (else a rollup table)."""
    parts = []
    for i, name in enumerate(sorted(filters)):
        if name not in FILTERABLE:
            raise ValueError(f"cannot filter on {name!r}")
        column = _RAW_COLUMN.get(name, name) if raw else ("model" if name == MODEL_FAMILY else name)
        if name == MODEL_FAMILY:
            parts.append(f" AND (lower({column}) = {{{prefix}{i}:String}} "
                         f"OR replaceRegexpOne(lower({column}), '{SNAPSHOT_SUFFIX}', '') = {{{prefix}{i}:String}})")  # fmt: skip
        else:
            parts.append(f" AND {column} = {{{prefix}{i}:String}}")
    return "".join(parts)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
