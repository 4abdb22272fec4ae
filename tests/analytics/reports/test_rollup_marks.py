"""Dirty marks on the embedded store: one per hour until a build may have read it, and the rollups stay exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.seed import Seed, day_start, random_events, recent_day, seeded_store, store_dsn, usage_event

from ai_chargeback_aggregator.rollups.maintainer import MARK_REFRESH_SHARE, RollupMaintainer, hour_of
from ai_chargeback_aggregator.store.clickhouse import Store, StoreError

SETTLE_S = 3600.0  # nothing settles by itself: builds run only when a test forces one
RAW_BY_HOUR = (
    "SELECT toStartOfHour(started_at) AS hour, count(), sum(cost_total) FROM chargeback.usage_events FINAL "
    "GROUP BY hour ORDER BY hour"
)
ROLLUP_BY_HOUR = (
    "SELECT period_start, sum(events), sum(cost_total) FROM chargeback.usage_rollup_hourly FINAL "
    "WHERE is_deleted = 0 GROUP BY period_start ORDER BY period_start"
)


def state_of(seed: Seed | Store, hour: datetime) -> tuple[str, int]:
    """The hour's standing state and its version (each mark statement stamps its own store clock)."""
    store = seed.store if isinstance(seed, Seed) else seed
    _, rows = store.query(
        "SELECT state, version FROM chargeback.rollup_state FINAL WHERE grain = 'hour' AND period_start = {h:DateTime('UTC')}",
        {"h": hour},
    )
    return (str(rows[0][0]), int(rows[0][1])) if rows else ("", 0)


def started(event) -> datetime:  # type: ignore[no-untyped-def]
    return datetime.fromtimestamp(event.started_at_unix_ms / 1000, tz=UTC)


@pytest.fixture
def quiet(tmp_path: Path):  # type: ignore[no-untyped-def]
    with seeded_store(tmp_path, settle_s=SETTLE_S) as seed:
        yield seed


def test_an_hour_marked_dirty_is_not_marked_again_by_each_insert(quiet: Seed) -> None:
    at = day_start(recent_day(1)) + timedelta(hours=9)
    hour = hour_of(at)
    quiet.insert([usage_event(at)])
    first_mark = state_of(quiet, hour)
    assert first_mark[0] == "dirty"
    for minute in range(1, 20):
        quiet.insert([usage_event(at.replace(minute=minute))])
    assert state_of(quiet, hour) == first_mark


def test_a_write_after_a_build_marks_its_hour_again_and_the_rollup_catches_up(quiet: Seed) -> None:
    first = recent_day(2)
    events = random_events(300, first=first, days=1)
    quiet.insert(events[:100])
    hours = {hour_of(started(e)) for e in events}
    quiet.maintainer.run_once(force=True)
    built = {h: state_of(quiet, h) for h in hours}
    assert {state for state, _ in built.values()} == {"clean"}

    quiet.insert(events[100:200])  # every hour it touches was built since its mark: marked again
    second = {h: state_of(quiet, h) for h in hours}
    quiet.insert(events[200:])  # no build since: the marks of hours both touch stand
    again = {hour_of(started(e)) for e in events[100:200]}
    for hour in hours:
        state, version = state_of(quiet, hour)
        assert state == "dirty", hour
        assert version > built[hour][1], hour
        if hour in again:
            assert (state, version) == second[hour], hour

    quiet.maintainer.run_once(force=True)
    _, raw = quiet.store.query(RAW_BY_HOUR)
    _, rollup = quiet.store.query(ROLLUP_BY_HOUR)
    assert sum(r[1] for r in raw) == 300
    assert [(r[0], r[1], r[2]) for r in rollup] == [(r[0], r[1], r[2]) for r in raw]


def test_a_build_begun_while_a_mark_is_written_voids_it(quiet: Seed) -> None:
    """The build count is read before the mark: a build that began meanwhile may have read the store
    before the write, so the next write marks the hour again."""
    at = datetime.now(UTC) - timedelta(hours=30)
    hour = hour_of(at)
    maintainer = quiet.maintainer
    mark = maintainer._mark_dirty

    def mark_while_a_build_begins(hours):  # type: ignore[no-untyped-def]
        maintainer._build_version()
        mark(hours)

    maintainer._mark_dirty = mark_while_a_build_begins  # type: ignore[method-assign]
    quiet.insert([usage_event(at)])
    first_mark = state_of(quiet, hour)
    maintainer._mark_dirty = mark  # type: ignore[method-assign]
    quiet.insert([usage_event(at)])
    state, version = state_of(quiet, hour)
    assert state == "dirty" and version > first_mark[1]


def test_a_standing_mark_is_renewed_once_a_quarter_of_the_settle_time_old(tmp_path: Path) -> None:
    """Else an hour written all along would look quiet settle_s after its first write and be rebuilt each pass."""
    now = [1000.0]
    dsn = store_dsn(tmp_path)
    store = Store(dsn)
    store.migrate()
    maintainer = RollupMaintainer(Store(dsn), mark_store=store, settle_s=40.0, monotonic=lambda: now[0])
    hour = hour_of(datetime.now(UTC) - timedelta(hours=5))
    written = {"started_ms": [int(hour.timestamp() * 1000) + 60_000]}
    try:
        maintainer.after_insert(written)
        first_mark = state_of(store, hour)
        now[0] += 40.0 * MARK_REFRESH_SHARE - 0.5
        maintainer.after_insert(written)
        assert state_of(store, hour) == first_mark
        now[0] += 0.5
        maintainer.after_insert(written)
        state, version = state_of(store, hour)
        assert state == "dirty" and version > first_mark[1]
    finally:
        maintainer.close()
        store.close()


def test_a_mark_that_failed_is_retried_and_not_taken_as_standing(quiet: Seed) -> None:
    at = datetime.now(UTC) - timedelta(hours=7)
    hour = hour_of(at)
    maintainer = quiet.maintainer
    mark = maintainer._mark_dirty

    def failing(hours):  # type: ignore[no-untyped-def]
        raise StoreError("disk full")

    maintainer._mark_dirty = failing  # type: ignore[method-assign]
    quiet.insert([usage_event(at)])
    assert state_of(quiet, hour) == ("", 0)
    maintainer._mark_dirty = mark  # type: ignore[method-assign]
    quiet.insert([usage_event(at)])
    assert state_of(quiet, hour)[0] == "dirty"
