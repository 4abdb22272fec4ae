"""The store's own sessions (reports, the CLI, rollups) never hand one query's rows to the next one.

chDB keeps the unread output of a query that failed midway and gives it to the
next query on the same connection: with the same connection reused, the check
below read 784,913 rows for numbers(5). The store drops a connection that saw
a query fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_chargeback_aggregator.store.clickhouse import Store, StoreError

STOPS_MIDWAY = {"max_result_rows": 1_000_000, "result_overflow_mode": "throw"}  # fails after ~1M rows were produced


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only session", "writing session"])
def test_after_a_query_fails_midway_the_next_answer_is_exact(tmp_path: Path, read_only: bool) -> None:
    store = Store(f"chdb://{tmp_path / 'store'}")
    try:
        store.migrate()
        for _ in range(2):
            with pytest.raises(StoreError, match="TOO_MANY_ROWS_OR_BYTES"):
                store.query("SELECT number FROM numbers(2000000)", settings=STOPS_MIDWAY, read_only=read_only)
            assert store.query("SELECT number FROM numbers(5)", read_only=read_only) == (["number"], [(i,) for i in range(5)])
        # The read-only session is still read-only after being replaced.
        with pytest.raises(StoreError, match="READONLY"):
            store.query("INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')", read_only=True)
    finally:
        store.close()
