"""The interpreter's cycle collector, set for a process that serves ingest.

CPython starts a young-generation collection every 700 net container allocations.
The ingest path makes tuples, lists and protobuf wrappers by the thousand in every
flush, and nearly all of them die by reference counting; the collections found
little and cost ~1.5–2 µs of the ~17 µs of Python per event (bench: 48k → 52–55k
events/s, the same run's A/B, issue 20). A young generation of 10,000 keeps a
collection's reach to ~1 MB of young objects, so cyclic garbage still goes quickly.

``gc.freeze`` moves what startup made (modules, the engine's bindings, the
settings, the console's templates) out of the collector's reach: it lives as long
as the process, and full collections no longer walk it.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 10_000


def tune_for_ingest() -> None:
    """Once the server has started (``chargeback serve``): the process is the aggregator's alone."""
    gc.collect()  # what startup left as garbage is freed now, not frozen for good
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
