"""The drill-down reads the rollups and a few days of raw events, never the whole period; its figures stay exact.

usage_events is keyed by the event id, so a filter on team skips no granule:
the drill-down's summary and listing used to read every event of the period
(10.1M rows at 10M events; docs/console.md, "Speed"). Now the line's totals
come from the report's source and the listing reads only up to the day by
which the line has its first ``limit`` events. These tests count the rows each
query reads from the engine's own counters (system.events, SelectedRows: this
process's embedded engine, nothing else querying it), not time: they fail if
the listing or the totals read the whole period again, and they hold the
figures to the report line, to the raw recount, and the listing to the one a
whole-period read gives.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.seed import day_start, recent_day

from ai_chargeback_aggregator.analytics.reports import Handle, LocalRunner, build_report
from ai_chargeback_aggregator.rollups.maintainer import RollupMaintainer
from ai_chargeback_aggregator.store.clickhouse import Store

# The package exports the function `explain` under the module's name: reach the module itself.
explain_module = importlib.import_module("ai_chargeback_aggregator.analytics.reports.explain")

BENCH = Path(__file__).resolve().parents[3] / "bench"
EVENTS = 600_000  # 30 days, 20,000 a day: a few granules (8,192 rows) per day, so skipping days shows in rows read
READ_ROWS_SQL = "SELECT value FROM system.events WHERE event = 'SelectedRows'"


class CountingRunner(LocalRunner):
    """A runner that notes how many rows each query read (the engine's SelectedRows counter before and after)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, int]] = []

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        before = self._read_rows()
        answer = super().query(sql, params)
        self.reads.append((sql, self._read_rows() - before))
        return answer

    def _read_rows(self) -> int:
        _, rows = self.store.query(READ_ROWS_SQL)
        return int(rows[0][0]) if rows else 0


@dataclass
class Busy:
    store: Store
    runner: CountingRunner
    first: date
    last: date


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Busy]:
    sys.path.insert(0, str(BENCH))
    try:
        from bench_reports import DAYS, generate
    finally:
        sys.path.remove(str(BENCH))
    dsn = f"chdb://{tmp_path_factory.mktemp('explain-reads') / 'store'}"
    store = Store(dsn)
    store.migrate()
    first = recent_day(DAYS + 1)
    generate(store, EVENTS, day_start(first))
    # One part per month, as background merges leave a settled store (the generator's 1% resent ids are one
    # part spanning every day, which FINAL's exact use of the started_at index would widen to every granule).
    store.command("OPTIMIZE TABLE chargeback.usage_events FINAL")
    maintainer = RollupMaintainer(Store(dsn))
    maintainer.reconcile()
    maintainer.run_once(force=True)
    maintainer.close()
    try:
        yield Busy(store, CountingRunner(store), first, first + timedelta(days=DAYS - 1))
    finally:
        store.close()


def line_of(busy: Busy, by: str, key: str, filters: Mapping[str, str] | None = None) -> dict[str, Any]:
    report = build_report(busy.runner, first=busy.first, last=busy.last, by=by, filters=filters)
    return next(line for line in report.lines if line["key"] == key)


def whole_period_listing(busy: Busy, handle: Handle, limit: int) -> list[tuple[Any, ...]]:
    """The listing as it was read before: every event of the period, sorted, the first ``limit``."""
    _, rows = busy.store.query(*explain_module.render_events(handle, busy.store.database, limit))
    return rows


def test_the_listing_reads_the_days_holding_its_first_events_and_the_totals_read_no_raw_period(busy: Busy) -> None:
    line = line_of(busy, "team", "team-1")
    handle = Handle.decode(line["handle"])
    assert line["events"] > 1_000  # a big line: its first 100 events are in its first day
    busy.runner.reads.clear()
    result = explain_module.explain(busy.runner, handle, limit=100, with_recount=False)
    listing = [rows for sql, rows in busy.runner.reads if "ORDER BY started_at, event_id" in sql]
    assert len(listing) == 1, busy.runner.reads  # no fallback to the whole period
    # The period holds EVENTS (+1% resent) rows; the listing reads about one day of 30, the rest the rollups.
    assert listing[0] < EVENTS // 10, f"the listing read {listing[0]:,} rows of {EVENTS:,}: the whole period again?"
    assert all(rows < EVENTS // 10 for _, rows in busy.runner.reads), [(sql[:60], rows) for sql, rows in busy.runner.reads]
    assert result.events == whole_period_listing(busy, handle, 100)
    assert len(result.events) == 100

    busy.runner.reads.clear()
    explain_module.explain(busy.runner, handle, limit=100)  # the CLI's: with the raw recount, which reads the period
    assert max(rows for _, rows in busy.runner.reads) >= EVENTS  # (the counter does see a whole-period read)


@pytest.mark.parametrize(("by", "key", "filters"), [
    ("team", "team-1", None), ("team", "", None), ("model", "gpt-4o-2024-08-06", None), ("app", "app-7", {"team": "team-7"}),
    ("model", "llama-internal", {"tenant": "tenant-1"}),  # unpriced
])  # fmt: skip
def test_the_totals_are_the_report_line_and_the_raw_events_add_up_to_them(busy: Busy, by: str, key: str,
                                                                         filters: dict[str, str] | None) -> None:  # fmt: skip
    line = line_of(busy, by, key, filters)
    handle = Handle.decode(line["handle"])
    result = explain_module.explain(busy.runner, handle, limit=50)
    summary = result.summary
    assert summary["events"] == line["events"] and summary["input_tokens"] == line["input_tokens"]
    assert summary["output_tokens"] == line["output_tokens"] and summary["unpriced_events"] == line["unpriced_events"]
    assert summary["cost"] == Decimal(line["cost_exact"]) and summary["list_cost"] == Decimal(line["list_cost_exact"])
    assert result.recount is not None and result.recount.matches, result.recount.differences
    assert result.recount.figures["events"] == line["events"]
    assert result.events == whole_period_listing(busy, handle, 50)


def test_events_gone_since_the_rollups_were_built_still_list_right_and_the_recount_says_so(busy: Busy) -> None:
    """Last in this module: it deletes events behind the rollups' back."""
    line = line_of(busy, "team", "team-2")
    handle = Handle.decode(line["handle"])
    before = whole_period_listing(busy, handle, 100)
    busy.store.command("ALTER TABLE chargeback.usage_events DELETE WHERE team = 'team-2' AND started_at < {end:DateTime64(3, 'UTC')}",
                       {"end": day_start(busy.first) + timedelta(days=2)}, settings={"mutations_sync": 2})  # fmt: skip
    expected = whole_period_listing(busy, handle, 100)
    assert expected != before and len(expected) == 100
    # The rollups still count the deleted days: the window they give holds none of them, so the listing reads the period.
    result = explain_module.explain(busy.runner, handle, limit=100)
    assert result.events == expected
    assert result.summary["events"] == line["events"]  # the line, as the report still shows it
    assert result.recount is not None and not result.recount.matches
    assert any(d.startswith("events:") for d in result.recount.differences)
