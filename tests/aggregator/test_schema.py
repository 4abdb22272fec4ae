from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_aggregator.store.schema import distributed_tables_of, load_migrations

ROOT = Path(__file__).resolve().parents[2]


def test_generated_wire_code_is_fresh() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_apply_once_to_the_embedded_store(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    try:
        applied = store.migrate()
        assert applied == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
        assert store.migrate() == []
        _, rows = store.query("SELECT engine, sorting_key, partition_key FROM system.tables "
                              "WHERE database='chargeback' AND name='usage_events'")
        # Key and partition come from the event id alone: every copy of an event collapses.
        assert rows[0][:2] == ("ReplacingMergeTree", "toUInt128(event_id)")
        assert "UUIDv7ToDateTime(event_id)" in rows[0][2]
    finally:
        store.close()


def test_cluster_rendering_comes_from_the_same_source() -> None:
    for migration in load_migrations():
        single = migration.render(database="cb")
        cluster = migration.render(database="cb", cluster="prod")
        assert not any("ON CLUSTER" in s or "Replicated" in s or "_local" in s for s in single)
        creates = [s for s in cluster if s.startswith("CREATE TABLE")]
        assert all("ON CLUSTER `prod`" in s for s in creates)
        engines = [s for s in cluster if "MergeTree" in s]
        assert all("ReplicatedReplacingMergeTree" in s or "ReplicatedMergeTree" in s or "Replicated" in s for s in engines)
    first = load_migrations()[0].render(database="cb", cluster="prod")
    assert any("Distributed(`prod`, `cb`, usage_events_local" in s for s in first)


def test_column_alters_reach_the_distributed_table_in_cluster_mode_only() -> None:
    migrations = load_migrations()
    fronted = distributed_tables_of(migrations)
    prices = next(m for m in migrations if m.name == "event_prices")
    single = [s for s in prices.render(database="cb", distributed_tables=fronted) if s.startswith("ALTER")]
    cluster = [s for s in prices.render(database="cb", cluster="prod", distributed_tables=fronted) if s.startswith("ALTER")]
    assert [s.split()[2] for s in single] == ["`cb`.usage_events", "`cb`.usage_events"]  # columns, then indexes
    assert [s.split()[2] for s in cluster] == ["`cb`.usage_events_local", "`cb`.usage_events", "`cb`.usage_events_local"]
    assert "ADD INDEX" in cluster[2] and "cost_total" in cluster[1]
