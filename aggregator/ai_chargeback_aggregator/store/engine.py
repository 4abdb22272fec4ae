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
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class EngineMemory:
    """limit_mb: what the engine may have allocated in all (queries, inserts, merges, caches);
    past it the allocating query fails with MEMORY_LIMIT_EXCEEDED.
    dirty_mb: freed memory the engine's allocator may keep mapped before it is given back.
    cache_mb: the most each of the engine's caches holds."""

    limit_mb: int
    dirty_mb: int
    cache_mb: int

    @classmethod
    def from_settings(cls, settings: AggregatorSettings) -> EngineMemory:
        return cls(settings.store_engine_memory_mb, settings.store_engine_dirty_mb, settings.store_engine_cache_mb)

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
