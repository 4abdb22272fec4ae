"""The embedded engine's memory caps, as chDB startup options.

chDB runs one ClickHouse engine per process, and its server settings (cache
sizes, the memory limit) are fixed by whichever connection starts it: later
connections to the running engine cannot change them, and pass theirs in vain.
So every embedded connection of a process passes the same options, made here
from the aggregator's settings (``store_engine_*``), and whichever comes first
starts the engine with them. A ClickHouse server has its own configuration:
nothing here reaches it.

Left alone, the engine sizes itself for a server of its own: a memory limit of
90% of the host's RAM and caches of up to 5 GiB each.

Two choices cannot be made per connection at all, only before chDB is loaded
into the process: its allocator's options (read once, from the environment,
when the library starts) and the modules its import drags in. ``load_engine``
makes them; every embedded connection calls it before it connects.

One thing only the running engine can tell: which of its library's pages its
start read and will not need again. ``release_startup_pages`` gives them back
once the aggregator has started (docs/delivery.md §5).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import AggregatorSettings

MiB = 1024 * 1024
# The caches the engine fills as it reads (marks of the columns read, the primary and
# skip-index marks, which granules a filter skipped, compiled expressions). Uncompressed
# blocks, the page cache and the query cache are off by default already (size 0).
CACHE_SETTINGS = ("mark_cache_size", "index_mark_cache_size", "primary_index_cache_size",
                  "query_condition_cache_size", "compiled_expression_cache_size")  # fmt: skip
# chDB's jemalloc is built with the `je_` prefix: it reads its options from JE_MALLOC_CONF
# (MALLOC_CONF, which glibc-built tools document, is ignored), once, when the library starts.
ALLOCATOR_ENV = "JE_MALLOC_CONF"
# chDB imports pyarrow (and with it numpy) for its Arrow result APIs, which nothing here calls
# (clickhouse-connect reads chDB's Native format): ~11 MB of the process's own memory and ~25 MB
# of mapped library pages. Blocked while chDB loads; a later `import pyarrow` (a Parquet export)
# still works.
UNUSED_ENGINE_IMPORTS = ("pyarrow",)


@dataclass(frozen=True, slots=True)
class EngineMemory:
    """limit_mb: what the engine may have allocated in all (queries, inserts, merges, caches);
    past it the allocating query fails with MEMORY_LIMIT_EXCEEDED.
    dirty_mb: freed memory the engine's allocator may keep mapped before it is given back.
    cache_mb: the most each of the engine's caches holds.
    dirty_decay_ms: how long the allocator keeps freed pages before returning them to the kernel."""

    limit_mb: int
    dirty_mb: int
    cache_mb: int
    dirty_decay_ms: int = 5000  # chDB's own; the aggregator passes its setting

    @classmethod
    def from_settings(cls, settings: AggregatorSettings) -> EngineMemory:
        return cls(settings.store_engine_memory_mb, settings.store_engine_dirty_mb, settings.store_engine_cache_mb,
                   settings.store_engine_dirty_decay_ms)  # fmt: skip

    def allocator_conf(self) -> str:
        """jemalloc options (ALLOCATOR_ENV). chDB's build returns freed pages 5 s after they were
        freed (dirty_decay_ms 5000), which kept 35-45 MB of freed insert buffers resident through
        the 1M-event burst. 0 returns them at once, but each insert then faults its buffers in
        again: the burst ran 20-25% slower. Both also stop the same in the engine's per-thread
        caches, left at chDB's sizes: smaller ones saved ~10 MB for ~10% of the events/s."""
        return f"dirty_decay_ms:{self.dirty_decay_ms}"

    def options(self) -> dict[str, str]:
        """chDB connection options (clickhouse-local startup arguments: server settings)."""
        # The engine's memory worker purges the allocator's dirty pages once they pass this share of
        # the limit (default 20%: 200 MB of a 1 GiB limit kept for nothing).
        dirty_ratio = min(1.0, self.dirty_mb / self.limit_mb)
        return {
            "max_server_memory_usage": str(self.limit_mb * MiB),
            "memory_worker_purge_dirty_pages_threshold_ratio": f"{dirty_ratio:.6f}",
            **{name: str(self.cache_mb * MiB) for name in CACHE_SETTINGS},
        }


def load_engine(memory: EngineMemory | None) -> None:
    """Load chDB into this process with the allocator options of `memory` and without the
    modules it would import for nothing. Does nothing once chDB is loaded: its allocator has
    read its options by then (a process that loaded chDB first keeps chDB's own)."""
    if "chdb" in sys.modules:
        return
    operator_conf = os.environ.get(ALLOCATOR_ENV)
    if memory is not None:
        # Options an operator set come after ours: jemalloc takes the last value of each.
        os.environ[ALLOCATOR_ENV] = ",".join(filter(None, (memory.allocator_conf(), operator_conf)))
    blocked = [name for name in UNUSED_ENGINE_IMPORTS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError: chDB goes without
    try:
        import chdb  # noqa: F401  (its allocator reads the environment as the library starts)
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
        # Not inherited by processes this one starts (an aggregator a test or tool spawns has its own settings).
        if operator_conf is None:
            os.environ.pop(ALLOCATOR_ENV, None)
        else:
            os.environ[ALLOCATOR_ENV] = operator_conf


# madvise(2) advice: reclaim these pages now (Linux >= 5.4; older kernels answer EINVAL).
MADV_PAGEOUT = 21
ENGINE_LIBRARY_MODULE = "chdb._chdb"


def _engine_library_mappings() -> list[tuple[int, int]]:
    """The mappings of chDB's library file in this process that hold only its clean pages (start, end)."""
    library = getattr(sys.modules.get(ENGINE_LIBRARY_MODULE), "__file__", None)
    if not library:
        return []
    library = os.path.realpath(library)
    ranges: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            fields = line.split(maxsplit=5)
            if not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                path = fields[5].rstrip("\n") if len(fields) == 6 else ""
                current = None
                if path == library and "w" not in fields[1]:
                    start, end = (int(bound, 16) for bound in fields[0].split("-"))
                    current = (start, end)
            elif fields[0] == "Anonymous:" and current is not None:
                # A mapping with pages of the process's own (the relocated data the loader wrote,
                # then made read-only) is left alone: paging those out would mean swap.
                if int(fields[1]) == 0:
                    ranges.append(current)
                current = None
    return ranges


def _rss_file_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    return 0


_startup_pages_released = False


def release_startup_pages() -> int | None:
    """Give back the pages of chDB's library that only its start used; returns the KiB released,
    0 once they were (the engine starts once per process: a second aggregator in one process,
    as tests run them, would only evict what the running engine uses), None where it cannot
    (not Linux, chDB not loaded, a kernel without MADV_PAGEOUT).

    chDB's library is ~550 MB. Starting the engine reads about 170 MB of it once (static
    initialisers register every function, format and setting) and never again; those clean
    file pages then count in the process's RSS for its lifetime. Inserts, merges and the
    console's queries use ~100-120 MB of the library, which come back at first use (from the page
    cache, or the disk if the kernel dropped them: a slower first query)."""
    global _startup_pages_released
    if _startup_pages_released:
        return 0
    try:
        ranges = _engine_library_mappings()
        if not ranges:
            return None
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
        before = _rss_file_kb()
        for start, end in ranges:
            if madvise(start, end - start, MADV_PAGEOUT) != 0:
                return None
        _startup_pages_released = True
        return max(0, before - _rss_file_kb())
    except (OSError, AttributeError, ValueError):
        return None
