"""An event delivered twice, or repriced, counts once in every rollup and every report."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from support.seed import Seed, day_start, random_events, recent_day, seeded_store, usage_event

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.rollups.maintainer import RollupMaintainer
from ai_chargeback_aggregator.store.clickhouse import Store

RAW_TOTALS = "SELECT count(), sum(cost_total), sum(list_cost_total), sum(input_tokens) FROM chargeback.usage_events FINAL"


@pytest.fixture(params=[0.0, 3600.0], ids=["settle-0-every-insert-marks", "settle-3600-marks-stand"])
def seed(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """Both ways the writer marks hours: every insert (settle 0), or once until a build (rollup_marks)."""
    with seeded_store(tmp_path, settle_s=request.param) as seeded:
        yield seeded


def rollup_totals(seed: Seed, table: str) -> tuple[int, Decimal, Decimal, int]:
    _, rows = seed.store.query(f"SELECT sum(events), sum(cost_total), sum(list_cost_total), sum(input_tokens) FROM chargeback.{table} FINAL")
    return rows[0]  # type: ignore[return-value]


def test_duplicates_do_not_double_count_in_rollups_or_reports(seed: Seed) -> None:
    first, last = recent_day(3), recent_day(1)
    events = random_events(1_500, first=first, days=3)
    seed.insert(events)
    by_team_before = build_report(seed.runner, first=first, last=last, by="team")
    assert by_team_before.sources["hours_from_raw_events"] == 72  # nothing built yet: all from raw FINAL

    seed.build_rollups()
    built = build_report(seed.runner, first=first, last=last, by="team")
    assert built.sources == {"days_from_daily_rollup": 3, "hours_from_hourly_rollup": 0, "hours_from_raw_events": 0}

    # The same 600 events again, past the writer's memory (a second aggregator), and 100 of them a third time.
    seed.insert_again(events[:600])
    seed.insert_again(events[:100], sender_id="kong-3")
    _, raw_rows = seed.store.query("SELECT count() FROM chargeback.usage_events")
    assert raw_rows[0][0] == 1_500 + 600 + 100  # all stored physically ...
    mixed = build_report(seed.runner, first=first, last=last, by="team")
    assert mixed.sources["hours_from_raw_events"] > 0  # touched hours are dirty: read from raw

    seed.build_rollups()
    rebuilt = build_report(seed.runner, first=first, last=last, by="team")
    assert rebuilt.sources == {"days_from_daily_rollup": 3, "hours_from_hourly_rollup": 0, "hours_from_raw_events": 0}

    _, raw = seed.store.query(RAW_TOTALS)
    assert raw[0][0] == 1_500  # ... and counted once
    assert rollup_totals(seed, "usage_rollup_hourly") == raw[0]
    assert rollup_totals(seed, "usage_rollup_daily") == raw[0]
    expected_by_team = Counter("" if e.team == "unattributed" else e.team for e in events)
    for report in (by_team_before, built, mixed, rebuilt):
        assert {line["key"]: line["events"] for line in report.lines} == expected_by_team
        assert report.totals["events"] == 1_500
        assert Decimal(report.totals["cost_exact"]) == raw[0][1]
        assert report.lines == by_team_before.lines


def test_a_group_that_vanishes_from_raw_is_tombstoned_in_the_rollups(seed: Seed) -> None:
    at = day_start(recent_day(2)) + timedelta(hours=5, minutes=1)
    keep, drop = usage_event(at, team="payments"), usage_event(at, team="search")
    seed.insert([keep, drop])
    seed.build_rollups()
    seed.store.command("DELETE FROM chargeback.usage_events WHERE team = 'search'")  # e.g. a GDPR erasure
    seed.maintainer.mark_hours_dirty([at.replace(minute=0)])
    seed.build_rollups()
    for table in ("usage_rollup_hourly", "usage_rollup_daily"):
        _, rows = seed.store.query(f"SELECT team, events FROM chargeback.{table} FINAL")
        assert rows == [("payments", 1)], table


def test_the_current_hour_waits_until_it_goes_quiet(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from support.seed import seeded_store

    with seeded_store(tmp_path, settle_s=3600) as seed:
        seed.insert([usage_event()])
        assert seed.maintainer.run_once().hours_built == 0  # written just now: not settled
        assert seed.maintainer.run_once(force=True).hours_built == 1


def test_rows_written_without_a_mark_are_found_by_reconcile(seed: Seed) -> None:
    """A crash between an insert and its dirty mark (here: rows written around the writer)."""
    from support.seed import priced_event_columns

    first = recent_day(2)
    events = random_events(200, first=first, days=1)
    columns, _ = priced_event_columns(seed.pricer, events, "x")
    seed.store.insert_columns("usage_events", columns)  # no after_insert: no marks
    fresh = RollupMaintainer(Store(seed.store.dsn))  # a restarted aggregator
    try:
        assert fresh.reconcile() > 0
        fresh.run_once(force=True)
    finally:
        fresh.close()
    report = build_report(seed.runner, first=first, last=first, by="app")
    assert report.sources["days_from_daily_rollup"] == 1
    assert report.totals["events"] == 200
