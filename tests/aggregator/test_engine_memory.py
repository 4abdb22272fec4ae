"""Issue 16, bounded memory: the embedded engine runs with the aggregator's caps, not its own defaults.

Left alone, chDB sizes itself for a host of its own (a memory limit of 90% of
RAM, caches of 5 GiB each). The caps are server settings, fixed by whichever
connection starts the engine; these tests read them back from a real engine
(``system.server_settings``) after each kind of connection started it, and
check that the limit, once reached, fails the query with a clear error that
the analyst endpoint reports as a limit and that leaves ingest working.

What is fixed before chDB loads (its allocator's options, the modules loaded
with it) is checked in a fresh interpreter: this one may have loaded chDB already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.aggregator_fixtures import make_settings

from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_aggregator.store.engine import CACHE_SETTINGS, EngineMemory, MiB
from ai_chargeback_aggregator.store.read_session import AnalystQueryError, AnalystSessions

CAPS = ("max_server_memory_usage", "memory_worker_purge_dirty_pages_threshold_ratio", *CACHE_SETTINGS)


def server_settings(store: Store) -> dict[str, str]:
    names = ", ".join(f"'{name}'" for name in CAPS)
    _, rows = store.query(f"SELECT name, value FROM system.server_settings WHERE name IN ({names})")
    return dict(rows)  # type: ignore[arg-type]


def expected(memory: EngineMemory) -> dict[str, str]:
    return {
        "max_server_memory_usage": str(memory.limit_mb * MiB),
        "memory_worker_purge_dirty_pages_threshold_ratio": f"{memory.dirty_mb / memory.limit_mb:g}",
        **{name: str(memory.cache_mb * MiB) for name in CACHE_SETTINGS},
    }


def test_the_aggregator_settings_reach_the_engine(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_engine_memory_mb=700, store_engine_dirty_mb=21, store_engine_cache_mb=24)
    store = Store.from_settings(settings)
    try:
        store.migrate()
        assert server_settings(store) == expected(EngineMemory(700, 21, 24))
    finally:
        store.close()


def test_the_defaults_are_caps_not_the_engine_defaults(tmp_path: Path) -> None:
    """The engine's own defaults would be 5 GiB per cache and 90% of the host's RAM."""
    settings = make_settings(tmp_path)
    store = Store.from_settings(settings)
    try:
        found = server_settings(store)
    finally:
        store.close()
    assert found == expected(EngineMemory.from_settings(settings))
    assert int(found["max_server_memory_usage"]) <= 1024 * MiB
    assert all(int(found[name]) <= 64 * MiB for name in CACHE_SETTINGS)


def test_an_analyst_session_that_starts_the_engine_starts_it_capped(tmp_path: Path) -> None:
    """Whichever connection comes first starts the engine: the analyst path passes the same caps."""
    settings = make_settings(tmp_path, store_engine_memory_mb=640)
    memory = EngineMemory.from_settings(settings)
    (tmp_path / "store").mkdir()
    client = AnalystSessions(settings.store_dsn, database="default", engine=memory).open_session()
    try:
        rows = client.query("SELECT value FROM system.server_settings WHERE name = 'max_server_memory_usage'").result_rows
    finally:
        client.close()
    assert rows == [(str(640 * MiB),)]


def test_past_the_limit_a_query_fails_clearly_and_the_store_keeps_working(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_engine_memory_mb=128)
    store = Store.from_settings(settings)
    sessions = AnalystSessions(settings.store_dsn, database="chargeback", engine=EngineMemory.from_settings(settings))
    try:
        store.migrate()
        # One array of 25M numbers (~200 MB, which cannot spill to disk): under the analyst query's
        # own limit (256 MiB), past the engine's 128 MiB.
        big = "SELECT length(groupArray(number)) FROM numbers(25000000)"
        with pytest.raises(AnalystQueryError) as failed, sessions.stream(big, {}) as result:
            for _ in result.blocks:
                pass
        assert failed.value.kind == "limit"
        assert "MEMORY_LIMIT_EXCEEDED" in str(failed.value) and "(total)" in str(failed.value), failed.value
        # The writing session is unaffected: an insert still commits.
        store.command("INSERT INTO chargeback.price_overrides (override_id) VALUES ('after-the-limit')")
        assert store.query("SELECT count() FROM chargeback.price_overrides WHERE override_id = 'after-the-limit'") == (
            ["count()"], [(1,)])  # fmt: skip
    finally:
        store.close()


# A fresh process opens a store the way the aggregator does, writes to it, and reports what its
# engine's allocator runs with and which dataframe modules got loaded along the way.
FRESH_PROCESS_STORE = textwrap.dedent("""
    import json, re, sys
    from support.aggregator_fixtures import make_settings
    from ai_chargeback_aggregator.store.clickhouse import Store
    from pathlib import Path
    store = Store.from_settings(make_settings(Path(sys.argv[1]), **json.loads(sys.argv[2])))
    try:
        store.migrate()
        store.command("INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')")
        store.insert_columns("price_overrides", {"override_id": ["y"]})
        _, rows = store.query("SELECT * FROM system.jemalloc_stats")
    finally:
        store.close()
    stats = "".join(str(row[0]) for row in rows)
    print(json.dumps({
        "dirty_decay_ms": re.search(r"opt.dirty_decay_ms: (-?\\d+)", stats).group(1),
        "loaded": sorted(name for name in ("pandas", "numpy", "pyarrow") if name in sys.modules),
    }))
""")


def run_fresh(script: str, tmp_path: Path, overrides: dict[str, object]) -> dict[str, object]:
    """Run `script` in a fresh interpreter with a store under tmp_path and these settings; its last line, as JSON."""
    tests_dir = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(overrides)],
                          capture_output=True, text=True, timeout=180, cwd=tests_dir)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def fresh_process_store(tmp_path: Path, **overrides: object) -> dict[str, object]:
    return run_fresh(FRESH_PROCESS_STORE, tmp_path, overrides)


def test_the_engine_allocator_returns_freed_pages_as_set(tmp_path: Path) -> None:
    """How long chDB's allocator keeps freed pages is the aggregator's setting (JE_MALLOC_CONF:
    its jemalloc ignores MALLOC_CONF)."""
    assert fresh_process_store(tmp_path, store_engine_dirty_decay_ms=0)["dirty_decay_ms"] == "0"
    assert fresh_process_store(tmp_path / "other", store_engine_dirty_decay_ms=250)["dirty_decay_ms"] == "250"


def test_a_store_process_loads_no_dataframe_modules(tmp_path: Path) -> None:
    """chDB would import pyarrow, clickhouse-connect pandas (and numpy) on the first insert: ~100 MB of RSS
    that the aggregator never uses."""
    assert fresh_process_store(tmp_path)["loaded"] == []


# A fresh process starts an aggregator (embedded store) and reports how many of chDB's library
# pages it holds that no other process maps (smaps' Private_Clean), and whether the store still
# inserts and reads. Pages another process maps too are shared and never released (MADV_PAGEOUT
# skips them), and this test's own process has loaded chDB: so before the aggregator starts, the
# child reads every page of the library's first segment (144 MB: symbol tables, read-only data),
# pages this process never read, as the engine's start reads pages it never needs again.
AFTER_START = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from support.aggregator_fixtures import make_settings
    from ai_chargeback_aggregator import metrics
    from ai_chargeback_aggregator.server.app import Aggregator
    from ai_chargeback_aggregator.store import engine

    def library_private_clean_mb():
        library = engine.os.path.realpath(sys.modules[engine.ENGINE_LIBRARY_MODULE].__file__)
        total, inside = 0, False
        for line in open("/proc/self/smaps"):
            fields = line.split()
            if not fields[0].endswith(":"):
                inside = len(fields) == 6 and fields[5] == library
            elif inside and fields[0] == "Private_Clean:":
                total += int(fields[1])
        return total / 1024

    settings = make_settings(Path(sys.argv[1]), **json.loads(sys.argv[2]))
    engine.load_engine(engine.EngineMemory.from_settings(settings))
    import ctypes
    start, end = engine._engine_library_mappings()[0]
    first_segment = (ctypes.c_char * (end - start)).from_address(start)
    sum(first_segment[offset][0] for offset in range(0, end - start, 4096))
    touched = library_private_clean_mb()
    aggregator = Aggregator(settings)
    aggregator.start()
    try:
        after_start = library_private_clean_mb()
        store = aggregator.store
        store.command("INSERT INTO chargeback.price_overrides (override_id) SELECT toString(number) FROM numbers(1000)")
        _, rows = store.query("SELECT count(), uniqExact(override_id) FROM chargeback.price_overrides")
        print(json.dumps({
            "released_bytes": metrics.ENGINE_PAGES_RELEASED._value.get(),
            "private_mb_touched": touched,
            "private_mb_after_start": after_start,
            "private_mb_after_queries": library_private_clean_mb(),
            "rows": list(rows[0]),
            "second_release_kb": engine.release_startup_pages(),
        }))
    finally:
        aggregator.stop(grace_s=1)
""")


def start_aggregator_fresh(tmp_path: Path, **overrides: object) -> dict[str, object]:
    return run_fresh(AFTER_START, tmp_path, overrides)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux's (5.4+)")
def test_a_started_aggregator_gives_back_the_engine_library_pages_only_its_start_used(tmp_path: Path) -> None:
    """Starting chDB reads ~170 MB of its library once (static initialisers); kept, they were a third
    of the aggregator's RSS through a burst. Given back after start, they stay out (nothing runs
    them again), and the store keeps working: the pages a query needs fault back in."""
    kept = start_aggregator_fresh(tmp_path / "kept", store_engine_release_startup_pages=False)
    released = start_aggregator_fresh(tmp_path / "released")
    assert kept["rows"] == released["rows"] == [1000, 1000]
    assert kept["released_bytes"] == 0
    # (~260 MB when no other process maps the library; ~100 MB beside this test's own engine)
    assert kept["private_mb_touched"] > 60 and released["private_mb_touched"] > 60, (kept, released)
    assert kept["private_mb_after_queries"] >= kept["private_mb_touched"], kept
    assert released["released_bytes"] >= 50 * MiB, released
    # Once per process: the engine started once, and what a second call would evict is in use.
    assert released["second_release_kb"] == 0, released
    # The pages the start touched are gone; what came back is what the running engine uses.
    assert released["private_mb_after_queries"] < released["private_mb_touched"] - 50, released
    assert released["private_mb_after_queries"] < kept["private_mb_after_queries"] - 50, (kept, released)


def test_release_startup_pages_without_the_engine_loaded_is_a_no_op() -> None:
    """A process that never loaded chDB (a ClickHouse server store) has nothing to release."""
    script = "import sys; from ai_chargeback_aggregator.store.engine import release_startup_pages; " \
             "print(release_startup_pages(), 'chdb' in sys.modules)"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["None", "False"]
