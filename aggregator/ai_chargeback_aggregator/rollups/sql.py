"""The rollup maintainer's statements, each rendered as (sql, params) with bound parameters.

Identifiers come from the column tuples in ``columns`` (constants, never user
input); every value is a ClickHouse query parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from .columns import FROM_EVENTS, FROM_ROLLUP, GROUP_KEY, ROLLUP_COLUMNS

Query = tuple[str, dict[str, Any]]

HOUR = "hour"
DAY = "day"
DIRTY = "dirty"
CLEAN = "clean"
_PAYLOAD = [c for c in ROLLUP_COLUMNS if c not in ("period_start", "build_version", "is_deleted")]


def store_clock() -> Query:
    """Nanoseconds on the store's clock: the one clock every writer of rollup_state shares."""
    return "SELECT toUnixTimestamp64Nano(now64(9))", {}


def mark(database: str, periods: Mapping[str, Sequence[datetime]], state: str, version: int | None = None) -> Query:
    """Mark periods (by grain) dirty (version = store clock now) or clean (version = the build's
    start), every grain in one insert: the writer marks a flush's hours and days after the flush
    (unless their marks stand: maintainer.py), and a second store round trip there is time the
    next flush waits (~0.6 µs per event)."""
    version_sql = "{version:UInt64}" if version is not None else "toUnixTimestamp64Nano(now64(9))"
    params: dict[str, Any] = {"db": database, "state": state}
    selects = []
    for i, (grain, grain_periods) in enumerate(periods.items()):
        selects.append(f"SELECT {{grain_{i}:String}} AS grain, arrayJoin({{periods_{i}:Array(DateTime('UTC'))}}) AS period")
        params[f"grain_{i}"], params[f"periods_{i}"] = grain, list(grain_periods)
    if version is not None:
        params["version"] = version
    sql = (
        "INSERT INTO {db:Identifier}.rollup_state (grain, period_start, state, version) "
        f"SELECT grain, period, {{state:String}}, {version_sql} FROM ({' UNION ALL '.join(selects)})"
    )
    return sql, params


def states(database: str, grain: str, start: datetime, end: datetime) -> Query:
    """(period_start, state, version) for a grain in [start, end); WHERE after FINAL, so exact."""
    sql = (
        "SELECT period_start, state, version FROM {db:Identifier}.rollup_state FINAL "
        "WHERE grain = {grain:String} AND period_start >= {start:DateTime('UTC')} AND period_start < {end:DateTime('UTC')} "
        "ORDER BY period_start"
    )
    return sql, {"db": database, "grain": grain, "start": start, "end": end}


def dirty(database: str) -> Query:
    """Every dirty period of both grains, with the version of its latest mark."""
    sql = "SELECT grain, period_start, version FROM {db:Identifier}.rollup_state FINAL WHERE state = 'dirty' ORDER BY grain, period_start"
    return sql, {"db": database}


def latest_clean_version(database: str) -> Query:
    return (
        "SELECT max(version) FROM {db:Identifier}.rollup_state FINAL WHERE grain = 'hour' AND state = 'clean'",
        {"db": database},
    )


def written_since(database: str, since: datetime) -> Query:
    """Hours holding rows written (ingested or repriced) since a moment, with the latest write."""
    sql = (
        "SELECT toStartOfHour(started_at) AS hour, max(ingested_at) FROM {db:Identifier}.usage_events "
        "WHERE ingested_at >= {since:DateTime64(3, 'UTC')} GROUP BY hour ORDER BY hour"
    )
    return sql, {"db": database, "since": since}


def build_hours(database: str, hours: Sequence[datetime], version: int) -> Query:
    """Rebuild whole hours from deduplicated raw events."""
    lo, hi = min(hours), max(hours) + timedelta(hours=1)
    select = ",\n       ".join(f"{FROM_EVENTS[c]} AS {c}" if FROM_EVENTS[c] != c else c for c in _PAYLOAD)
    sql = f"""
INSERT INTO {{db:Identifier}}.usage_rollup_hourly ({", ".join(ROLLUP_COLUMNS)})
SELECT toStartOfHour(started_at) AS period_start,
       {select},
       {{version:UInt64}} AS build_version, 0 AS is_deleted
FROM {{db:Identifier}}.usage_events FINAL
-- PREWHERE before FINAL: safe on started_at, the same in every version of an event
PREWHERE started_at >= {{lo:DateTime64(3, 'UTC')}} AND started_at < {{hi:DateTime64(3, 'UTC')}}
WHERE toStartOfHour(started_at) IN {{hours:Array(DateTime('UTC'))}}
GROUP BY period_start, {", ".join(GROUP_KEY)}
"""
    return sql, {"db": database, "lo": lo, "hi": hi, "hours": list(hours), "version": version}


def build_days(database: str, days: Sequence[date], version: int) -> Query:
    """Rebuild whole days from their hourly rollups (all of which are clean)."""
    select = ",\n       ".join(f"{FROM_ROLLUP[c]} AS {c}" if FROM_ROLLUP[c] != c else c for c in _PAYLOAD)
    sql = f"""
INSERT INTO {{db:Identifier}}.usage_rollup_daily ({", ".join(ROLLUP_COLUMNS)})
SELECT toDate(period_start) AS day,
       {select},
       {{version:UInt64}} AS build_version, 0 AS is_deleted
FROM {{db:Identifier}}.usage_rollup_hourly FINAL
WHERE toDate(period_start) IN {{days:Array(Date)}}
GROUP BY day, {", ".join(GROUP_KEY)}
"""
    return sql, {"db": database, "days": list(days), "version": version}


def tombstones(database: str, table: str, periods: Sequence[Any], version: int, period_type: str) -> Query:
    """Delete groups of the rebuilt periods that the rebuild did not write again."""
    if table not in ("usage_rollup_hourly", "usage_rollup_daily"):
        raise ValueError(table)
    kept = ", ".join(c for c in ROLLUP_COLUMNS if c not in ("build_version", "is_deleted"))
    sql = (
        f"INSERT INTO {{db:Identifier}}.{table} ({', '.join(ROLLUP_COLUMNS)}) "
        f"SELECT {kept}, {{version:UInt64}}, 1 "
        f"FROM {{db:Identifier}}.{table} FINAL "
        f"WHERE period_start IN {{periods:Array({period_type})}} AND build_version < {{version:UInt64}}"
    )
    return sql, {"db": database, "periods": list(periods), "version": version}


def merge_months(database: str, table: str, months: Sequence[int], *, cluster: str = "") -> list[Query]:
    """Merge each month partition (YYYYMM) of a rollup into one part: FINAL then reads one version per group
    without merging parts at query time. In cluster mode the shard tables are merged, on every shard."""
    if table not in ("usage_rollup_hourly", "usage_rollup_daily"):
        raise ValueError(table)
    target = f"{table}_local ON CLUSTER {{cluster:Identifier}}" if cluster else table
    params: dict[str, Any] = {"db": database, **({"cluster": cluster} if cluster else {})}
    # The partition id is an integer literal (the partition key is toYYYYMM): formatted from an int, never user text.
    return [(f"OPTIMIZE TABLE {{db:Identifier}}.{target} PARTITION {int(month)} FINAL", params) for month in months]

