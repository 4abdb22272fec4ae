"""The dedup lookup is skipped only when it cannot find anything (issue 20).

With the embedded store this process is the only writer (chDB lets one process open a data
directory), so a flush whose ids are all above every id that may be stored without being
remembered (the store's newest id at start, the ids the memory forgot, a failed attempt's
ids) is new for sure. Each test breaks one of those three and checks nothing is stored twice.
Real chDB store, real writer; the failure after a commit is a real materialized view that throws.
"""

from __future__ import annotations

import time
from pathlib import Path

from support.aggregator_fixtures import make_event, submit_events, written

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store


def skipped() -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_store_lookups_skipped_total") or 0.0


def counts(store: Store) -> tuple[int, int]:
    _, rows = store.query("SELECT count(), uniqExact(event_id) FROM chargeback.usage_events")
    return rows[0]


def new_writer(store: Store, **kwargs: object) -> Writer:
    writer = Writer(store, flush_interval_ms=5, flush_max_events=100, enrich=Pricer().enrich, **kwargs)  # type: ignore[arg-type]
    writer.start()
    return writer


def test_new_events_skip_the_lookup_and_replays_after_a_restart_do_not(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    first = [make_event() for _ in range(50)]
    writer = new_writer(store)
    before = skipped()
    assert written(submit_events(writer, first, "b1")) == (50, 0)
    assert written(submit_events(writer, [make_event() for _ in range(50)], "b2")) == (50, 0)
    assert skipped() == before + 2  # an empty store, then ids above everything remembered
    writer.stop()
    # A new writer (a restart) remembers nothing: the store's newest id is its floor.
    writer = new_writer(store)
    before = skipped()
    assert written(submit_events(writer, first[10:40], "replay")) == (0, 30)
    assert skipped() == before
    assert written(submit_events(writer, [make_event() for _ in range(20)], "b3")) == (20, 0)
    assert skipped() == before + 1
    # Replays among new ids: only the ids at or below the bound may be stored unremembered, and
    # the lookup asks for their range alone; the new ones above it cannot be stored.
    assert written(submit_events(writer, first[40:50] + [make_event() for _ in range(10)], "mixed")) == (10, 10)
    assert skipped() == before + 1
    writer.stop()
    assert counts(store) == (130, 130)
    store.close()


def test_ids_the_memory_forgot_are_looked_up(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    writer = new_writer(store, recent_ids_capacity=40)  # two generations of 20
    early = [make_event() for _ in range(60)]
    assert written(submit_events(writer, early, "b1")) == (60, 0)
    for n in range(3):  # the memory now holds none of the early ids
        assert written(submit_events(writer, [make_event() for _ in range(30)], f"later-{n}")) == (30, 0)
    before = skipped()
    assert written(submit_events(writer, early[:25], "replay")) == (0, 25)
    assert skipped() == before
    writer.stop()
    assert counts(store) == (150, 150)
    store.close()


def test_a_flush_that_failed_after_its_commit_is_looked_up_on_retry(tmp_path: Path) -> None:
    """The insert commits, then the engine fails the statement (a materialized view throwing
    after the table's part was written): the retry must find what the first attempt stored."""
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    store.command("CREATE TABLE chargeback.failing_sink (team String) ENGINE = Memory")
    store.command("CREATE MATERIALIZED VIEW chargeback.fails_after_commit TO chargeback.failing_sink AS "
                  "SELECT team FROM chargeback.usage_events WHERE throwIf(team = 'explode', 'failing after the commit') = 0")  # fmt: skip
    writer = new_writer(store)
    assert written(submit_events(writer, [make_event() for _ in range(10)], "b1")) == (10, 0)
    errors = metrics.REGISTRY.get_sample_value("chargeback_store_errors_total", {"operation": "insert"}) or 0.0
    ticket = submit_events(writer, [make_event(team="explode") for _ in range(10)], "b2")
    deadline = time.monotonic() + 30
    while (metrics.REGISTRY.get_sample_value("chargeback_store_errors_total", {"operation": "insert"}) or 0.0) == errors:
        assert time.monotonic() < deadline, "the insert did not fail"
        time.sleep(0.01)
    assert counts(store)[0] == 20  # the failed attempt's rows are committed
    store.command("DROP VIEW chargeback.fails_after_commit")
    assert written(ticket) == (0, 10)  # found by the retry's lookup: not stored twice
    writer.stop()
    assert counts(store) == (20, 20)
    store.close()
