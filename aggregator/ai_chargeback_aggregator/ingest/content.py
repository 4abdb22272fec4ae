"""An event's canonical encoding and its content hash: how a replay is told from a resend.

Two deliveries of one event id are the same event when their content hashes are
equal. The canonical encoding is deterministic protobuf (map entries in key
order), so equal content gives equal bytes in any process, whatever order a
map's entries arrived in.
"""

from __future__ import annotations

import hashlib

from ai_chargeback_proto import pb

# What rows stored before content hashes existed carry: unknown, so a replay of one counts as a duplicate.
UNKNOWN_CONTENT_HASH = 0


def canonical_encoding(event: pb.UsageEvent) -> bytes:
    return event.SerializeToString(deterministic=True)


def content_hash(canonical: bytes) -> int:
    """64-bit digest of a canonical encoding; never UNKNOWN_CONTENT_HASH."""
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "little") or 1
