"""Raw-event retention: a TTL on usage_events from settings, rollups untouched."""

from __future__ import annotations

import pytest
from support.seed import Seed

from ai_chargeback_aggregator.store.retention import MIN_RAW_RETENTION_DAYS, apply_raw_retention


def create_query(seed: Seed, table: str) -> str:
    _, rows = seed.store.query("SELECT create_table_query FROM system.tables WHERE database = 'chargeback' AND name = {t:String}", {"t": table})
    return str(rows[0][0])


def test_retention_sets_changes_and_removes_the_raw_ttl(seed: Seed) -> None:
    assert "TTL" not in create_query(seed, "usage_events")
    assert apply_raw_retention(seed.store, 400) == "raw retention set to 400 days"
    assert "TTL toDateTime(started_at) + toIntervalDay(400)" in create_query(seed, "usage_events")
    assert apply_raw_retention(seed.store, 400) == "raw events kept 400 days"  # no ALTER when it already matches
    apply_raw_retention(seed.store, 90)
    assert "toIntervalDay(90)" in create_query(seed, "usage_events")
    for rollup in ("usage_rollup_hourly", "usage_rollup_daily"):
        assert " TTL " not in create_query(seed, rollup)  # rollups keep longer
    apply_raw_retention(seed.store, 0)
    assert " TTL " not in create_query(seed, "usage_events")


def test_retention_shorter_than_the_accepted_event_age_is_refused(seed: Seed) -> None:
    with pytest.raises(ValueError, match="at least"):
        apply_raw_retention(seed.store, MIN_RAW_RETENTION_DAYS - 1)
