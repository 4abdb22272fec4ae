"""Raw-event retention: a TTL on usage_events, applied at start-up from settings.

Rollups carry no TTL: they keep history after the raw rows are gone (reports
of old periods read rollups; drill-down and reprice need the raw rows, so
they only reach back as far as retention). The TTL is changed without
rewriting existing parts (materialize_ttl_after_modify = 0): old parts expire
at their next merge.
"""

from __future__ import annotations

import logging

from ai_chargeback_proto.limits import DAY_MS, PAST_WINDOW_MS

from .clickhouse import Store

log = logging.getLogger(__name__)

# Events up to PAST_WINDOW_MS old are accepted; a shorter retention would drop them on arrival.
MIN_RAW_RETENTION_DAYS = PAST_WINDOW_MS // DAY_MS + 1


def apply_raw_retention(store: Store, days: int) -> str:
    """Make the usage_events TTL match ``days`` (0 = keep forever); returns what it did."""
    if 0 < days < MIN_RAW_RETENTION_DAYS:
        raise ValueError(f"raw_retention_days must be 0 (forever) or at least {MIN_RAW_RETENTION_DAYS}: events up to 35 days old are accepted")
    table = f"`{store.database}`.usage_events{'_local' if store.cluster else ''}"
    on_cluster = f" ON CLUSTER `{store.cluster}`" if store.cluster else ""
    _, rows = store.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        {"db": store.database, "name": "usage_events_local" if store.cluster else "usage_events"},
    )
    current = rows[0][0] if rows else ""
    wanted = f"toDateTime(started_at) + toIntervalDay({days})"
    if days == 0:
        if " TTL " not in current:
            return "raw events kept forever"
        store.command(f"ALTER TABLE {table}{on_cluster} REMOVE TTL")
        log.info("raw event retention removed: kept forever")
        return "raw retention removed"
    if wanted in current:
        return f"raw events kept {days} days"
    # days is an int validated above; DDL cannot bind a TTL interval as a parameter.
    store.command(
        f"ALTER TABLE {table}{on_cluster} MODIFY TTL toDateTime(started_at) + INTERVAL {int(days)} DAY "
        "SETTINGS materialize_ttl_after_modify = 0"
    )
    log.info("raw event retention set to %d days", days)
    return f"raw retention set to {days} days"
