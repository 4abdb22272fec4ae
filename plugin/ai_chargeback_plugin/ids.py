"""UUIDv7 event ids (RFC 9562): unique, and sortable by creation time."""

from __future__ import annotations

import os
import time
import uuid


def uuid7(unix_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
