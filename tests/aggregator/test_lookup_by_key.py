"""Issue 20: the dedup lookup finds ids by the raw table's primary key alone.

usage_events is sorted by toUInt128(event_id) (migration 0010), so `event_id IN
...` reads only the granules that can hold those ids. The bloom filter 0001 put
on event_id skipped nothing beyond that, and cost every insert and merge its
hashing; 0023 drops it. These tests count the rows the lookup reads (the
engine's SelectedRows counter, this process's engine only) for ids spread over
the whole table, the case where the id range alone prunes nothing: in both the
forms the writer sends (a list for a ClickHouse server, a subquery over the
payload file for the embedded store).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.aggregator_fixtures import make_event, make_settings

from ai_chargeback_aggregator.ingest.rows import events_to_columns
from ai_chargeback_aggregator.ingest.sinks import EVENTS_TABLE, _lookup_sql, id_range
from ai_chargeback_aggregator.store.clickhouse import Store

EVENTS = 160_000  # about 20 granules of 8,192 rows
GRANULE = 8192
READ_ROWS_SQL = "SELECT value FROM system.events WHERE event = 'SelectedRows'"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, list[str]]]:
    store = Store.from_settings(make_settings(tmp_path_factory.mktemp("lookup")))
    store.migrate()
    events = [make_event(kong_request_id=f"r{i}") for i in range(EVENTS)]
    store.insert_columns(EVENTS_TABLE, events_to_columns(events, ["test"] * EVENTS, int(time.time() * 1000)))
    store.command(f"OPTIMIZE TABLE chargeback.{EVENTS_TABLE} FINAL")
    yield store, sorted(event.event_id for event in events)
    store.close()


def rows_read(store: Store, sql: str, params: dict[str, object]) -> tuple[int, list[tuple[object, ...]]]:
    before = int(store.query(READ_ROWS_SQL)[1][0][0])
    _, rows = store.query(sql, params)
    return int(store.query(READ_ROWS_SQL)[1][0][0]) - before, rows


def spread(ids: list[str]) -> list[str]:
    """Four ids from the first to the last granule: their range is the whole table."""
    return [ids[0], ids[len(ids) // 3], ids[2 * len(ids) // 3], ids[-1]]


def test_the_raw_table_has_no_skip_index_on_the_event_id(filled: tuple[Store, list[str]]) -> None:
    store, _ = filled
    _, rows = store.query("SELECT name, expr FROM system.data_skipping_indices "
                          "WHERE database = 'chargeback' AND table = {table:String}", {"table": EVENTS_TABLE})  # fmt: skip
    assert [name for name, expr in rows if expr == "event_id"] == []
    _, key = store.query("SELECT sorting_key FROM system.tables WHERE database = 'chargeback' AND name = {table:String}",
                         {"table": EVENTS_TABLE})  # fmt: skip
    assert key == [("toUInt128(event_id)",)]


def test_a_lookup_by_a_list_of_ids_reads_only_their_granules(filled: tuple[Store, list[str]]) -> None:
    store, ids = filled
    wanted = spread(ids)
    lo, hi = id_range(wanted)
    read, rows = rows_read(store, _lookup_sql("chargeback", "event_id IN {ids:Array(UUID)}"),
                           {"lo": lo, "hi": hi, "ids": wanted})  # fmt: skip
    assert sorted(row[0] for row in rows) == wanted
    assert read <= len(wanted) * GRANULE < EVENTS // 4, read


def test_a_lookup_by_a_subquery_of_ids_reads_only_their_granules(filled: tuple[Store, list[str]]) -> None:
    """The embedded store's form: the ids come from a subquery (over the flush's payload file)."""
    store, ids = filled
    wanted = spread(ids)
    lo, hi = id_range(wanted)
    sql = _lookup_sql("chargeback", "event_id IN (SELECT toUUID(arrayJoin({wanted:Array(String)})))")
    read, rows = rows_read(store, sql, {"lo": lo, "hi": hi, "wanted": wanted})
    assert sorted(row[0] for row in rows) == wanted
    assert read <= len(wanted) * GRANULE + 1 < EVENTS // 4, read  # (+1: the subquery's own row)
