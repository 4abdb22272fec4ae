"""Re-rating: recompute the prices of stored events after a price change, idempotently.

One run, for whole UTC days [first, last]:

1. record the run (reprice_runs, status running, with its reason);
2. resolve every distinct price key of the range with a pricer holding the
   current overrides, and write the resulting rates to reprice_rates;
3. re-insert, as a newer version of the same event id, every event whose
   resolved price differs from the one it carries (ASOF join on input tokens
   for tiered prices). The ReplacingMergeTree keeps the newest, so every
   event still counts once; events already at the right price are not
   touched, so running it again changes nothing;
4. mark the touched hours dirty (the rollups are rebuilt) and finish the run
   row with counts and cost before/after.

Only raw events can be repriced: hours past raw retention keep their rollups.
Reads use PREWHERE before FINAL only on started_at, which every version of an
event shares, so whole events are kept or dropped.
"""

from __future__ import annotations

import getpass
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from ..periods import day_bounds
from ..rollups.maintainer import RollupMaintainer, hour_of
from ..store.clickhouse import Store
from .catalog import catalog_version
from .pricer import Pricer, price_rows
from .rates import LIST_RATE_COLUMNS, NOT_BILLED_OUTCOMES, PROVENANCE_COLUMNS, RATE_COLUMNS, SLOTS_PER_DAY

log = logging.getLogger(__name__)

MIN_REASON_LENGTH = 3
_PRICE_COLUMNS = (*RATE_COLUMNS, *LIST_RATE_COLUMNS, *PROVENANCE_COLUMNS)
_RATE_VALUE_COLUMNS = (*PROVENANCE_COLUMNS, *RATE_COLUMNS, *LIST_RATE_COLUMNS)
_RATE_TABLE_COLUMNS = ("run_id", "provider", "model", "service_tier", "tenant", "day", "slot", "tier_from", *_RATE_VALUE_COLUMNS)


class RepriceError(ValueError):
    pass


@dataclass
class RepriceResult:
    run_id: str
    status: str
    reason: str
    first: date
    last: date
    events_examined: int
    events_repriced: int
    cost_before: Decimal
    cost_after: Decimal
    list_cost_before: Decimal
    list_cost_after: Decimal
    hours_marked: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (str(v) if isinstance(v, (Decimal, date)) else v) for k, v in data.items()}


# Requests the gateway answered itself keep their not-billed price: never looked up, never repriced.
KEYS_SQL = """
SELECT provider, billing_model, service_tier, tenant, toDate(started_at) AS day
FROM {db:Identifier}.usage_events FINAL
PREWHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
WHERE policy_outcome NOT IN {not_billed:Array(String)}
GROUP BY provider, billing_model, service_tier, tenant, day
"""

TOTALS_SQL = """
SELECT count(), sum(cost_total), sum(list_cost_total)
FROM {db:Identifier}.usage_events FINAL
PREWHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
"""

WRITABLE_COLUMNS_SQL = """
SELECT name FROM system.columns
WHERE database = {db:String} AND table = 'usage_events' AND default_kind NOT IN ('MATERIALIZED', 'ALIAS', 'EPHEMERAL')
ORDER BY position
"""

TOUCHED_HOURS_SQL = """
SELECT DISTINCT toStartOfHour(started_at) FROM {db:Identifier}.usage_events WHERE reprice_run_id = {run:String}
"""

COUNT_SQL = "SELECT count() FROM {db:Identifier}.usage_events WHERE reprice_run_id = {run:String}"


def render_reinsert(columns: list[str]) -> str:
    """INSERT ... SELECT of changed events with their new prices (identifiers from system.columns)."""
    priced = set(_PRICE_COLUMNS) | {"ingested_at", "reprice_run_id"}
    select = []
    for name in columns:
        if name == "ingested_at":
            # the version: strictly newer than the row it replaces, on the store clock
            select.append("greatest(now64(3), e.ingested_at + toIntervalMillisecond(1)) AS ingested_at")
        elif name == "reprice_run_id":
            select.append("{run:String} AS reprice_run_id")
        elif name in priced:
            select.append(f"r.{name} AS {name}")
        else:
            select.append(f"e.{name} AS {name}")
    changed = " OR ".join(f"e.{c} != r.{c}" for c in _PRICE_COLUMNS)
    return f"""
INSERT INTO {{db:Identifier}}.usage_events ({", ".join(f"`{c}`" for c in columns)})
SELECT {", ".join(select)}
FROM (
    SELECT *, if(served_model != '', served_model, requested_model) AS key_model, toDate(started_at) AS key_day,
           if((provider, key_model) IN {{slotted:Array(Tuple(String, String))}},
              toUInt8(intDiv(toHour(started_at) * 3600 + toMinute(started_at) * 60 + toSecond(started_at), 1800)), 0) AS key_slot
    FROM {{db:Identifier}}.usage_events FINAL
    PREWHERE started_at >= {{start:DateTime64(3, 'UTC')}} AND started_at < {{end:DateTime64(3, 'UTC')}}
    WHERE policy_outcome NOT IN {{not_billed:Array(String)}}
) AS e
ASOF INNER JOIN (
    SELECT * FROM {{db:Identifier}}.reprice_rates WHERE run_id = {{run:String}}
) AS r
ON e.provider = r.provider AND e.key_model = r.model AND e.service_tier = r.service_tier AND e.tenant = r.tenant
   AND e.key_day = r.day AND e.key_slot = r.slot AND e.input_tokens >= r.tier_from
WHERE {changed}
SETTINGS distributed_product_mode = 'global'  -- cluster mode: the rates are read once and shipped to every shard
"""


def reprice(
    store: Store,
    *,
    first: date,
    last: date,
    reason: str,
    pricer: Pricer | None = None,
    maintainer: RollupMaintainer | None = None,
    requested_by: str = "",
    rebuild_now: bool = True,
) -> RepriceResult:
    """Reprice [first, last] (UTC days, inclusive). Raises RepriceError on bad input."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise RepriceError("a reason is required (say what changed and why)")
    start, end = day_bounds(first, last)
    started = time.perf_counter()
    pricer = pricer or Pricer()
    pricer.refresh(store)
    db = store.database
    run_id = f"rp-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    by = requested_by or _user()
    run_started = datetime.now(UTC)
    record: dict[str, Any] = {"run_id": run_id, "reason": reason, "by": by, "first": first, "last": last, "digest": pricer.digest,
                              "started_at": run_started}
    _record(store, status="running", version=1, **record)
    try:
        _, before = store.query(TOTALS_SQL, {"db": db, "start": start, "end": end}, read_only=False)
        slotted = _write_rates(store, pricer, run_id, start, end)
        _, cols = store.query(WRITABLE_COLUMNS_SQL, {"db": db}, read_only=False)
        store.command(render_reinsert([c for (c,) in cols]), {"db": db, "run": run_id, "start": start, "end": end, "slotted": slotted,
                                                              "not_billed": list(NOT_BILLED_OUTCOMES)})  # fmt: skip
        _, counted = store.query(COUNT_SQL, {"db": db, "run": run_id}, read_only=False)
        _, hours = store.query(TOUCHED_HOURS_SQL, {"db": db, "run": run_id}, read_only=False)
        touched = [hour_of(h.replace(tzinfo=UTC) if h.tzinfo is None else h) for (h,) in hours]
        maintainer = maintainer or RollupMaintainer(store)
        maintainer.mark_hours_dirty(touched)
        if rebuild_now and touched:
            maintainer.run_once(force=True)
        _, after = store.query(TOTALS_SQL, {"db": db, "start": start, "end": end}, read_only=False)
    except Exception as exc:
        _record(store, status="failed", version=3, error=str(exc)[:2000], **record)
        raise
    result = RepriceResult(
        run_id=run_id, status="done", reason=reason, first=first, last=last,
        events_examined=int(before[0][0]), events_repriced=int(counted[0][0]),
        cost_before=before[0][1], cost_after=after[0][1], list_cost_before=before[0][2], list_cost_after=after[0][2],
        hours_marked=len(touched), seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
    _record(store, status="done", version=2, result=result, **record)
    log.info("reprice %s: %d of %d events repriced (%s -> %s USD)", run_id, result.events_repriced, result.events_examined, result.cost_before, result.cost_after)
    return result


def _write_rates(store: Store, pricer: Pricer, run_id: str, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """Resolve every price key in range into reprice_rates; returns the time-of-day (provider, model) pairs."""
    _, keys = store.query(KEYS_SQL, {"db": store.database, "start": start, "end": end, "not_billed": list(NOT_BILLED_OUTCOMES)},
                          read_only=False)  # fmt: skip
    schedules = [(key, pricer.schedule(*key)) for key in keys]
    # Events of a time-of-day model look up their half-hour slot, so every key of
    # that model needs a row per slot, even on a day its price does not vary.
    slotted = {(key[0], key[1]) for key, schedule in schedules if schedule.time_of_day}
    rows: list[list[Any]] = []
    for (provider, model, tier, tenant, day), schedule in schedules:
        entries = price_rows(schedule)
        if (provider, model) in slotted and not schedule.time_of_day:
            entries = [(slot, tier_from, price) for slot in range(SLOTS_PER_DAY) for _, tier_from, price in entries]
        for slot, tier_from, price in entries:
            rows.append([run_id, provider, model, tier, tenant, day, slot, tier_from, *(getattr(price, c) for c in _RATE_VALUE_COLUMNS)])
    if rows:
        store.insert_columns("reprice_rates", {name: [r[i] for r in rows] for i, name in enumerate(_RATE_TABLE_COLUMNS)})
    return sorted(slotted)


def _record(
    store: Store, *, run_id: str, status: str, reason: str, by: str, first: date, last: date, digest: str,
    started_at: datetime, version: int, error: str = "", result: RepriceResult | None = None,
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    zero = Decimal(0)
    store.insert_columns(
        "reprice_runs",
        {
            "run_id": [run_id], "status": [status], "reason": [reason], "requested_by": [by],
            "range_from": [first], "range_to": [day_bounds(first, last)[1].date()],
            "catalog_version": [catalog_version()], "overrides_digest": [digest],
            "events_examined": [result.events_examined if result else 0],
            "events_repriced": [result.events_repriced if result else 0],
            "cost_before": [result.cost_before if result else zero], "cost_after": [result.cost_after if result else zero],
            "list_cost_before": [result.list_cost_before if result else zero],
            "list_cost_after": [result.list_cost_after if result else zero],
            "error": [error], "started_at": [started_at], "finished_at": [now if status != "running" else None], "version": [version],
        },
    )  # fmt: skip


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"
