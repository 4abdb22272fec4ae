"""What a plugin server's durable spools hold on disk, read from outside the process.

A test that kills the plugin server with -9 to prove "spooled events survive" must
first know the events *are* spooled: the sender batches and appends on its own
thread, every flush interval, and a fixed sleep is not enough on a loaded machine.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

from ai_chargeback_plugin.spool import _HEADER, _SEGMENT_GLOB
from ai_chargeback_proto import pb


def spooled_events(spool_dir: Path) -> int:
    """Events in every complete record of every segment under `spool_dir` (a record being
    appended right now fails its length or CRC check and is not counted, as recovery would cut it)."""
    total = 0
    for segment in spool_dir.rglob(_SEGMENT_GLOB):
        try:
            data = segment.read_bytes()
        except FileNotFoundError:  # deleted once acked
            continue
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                break
            total += len(pb.UsageBatch.FromString(payload).events)
            offset += _HEADER.size + length
    return total


def wait_spooled(spool_dir: Path, count: int, timeout_s: float = 60.0) -> int:
    """Wait until the spools under `spool_dir` hold at least `count` events; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while (found := spooled_events(spool_dir)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} of {count} events spooled under {spool_dir}")
        time.sleep(0.05)
    return found
