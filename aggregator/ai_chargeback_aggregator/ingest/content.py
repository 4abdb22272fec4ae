"""An event's canonical encoding and its content hash: how a replay is told from a resend.

Two deliveries of one event id are the same event when their content hashes are
equal. The canonical encoding is deterministic protobuf (map entries in key
order), so equal content gives equal bytes in any process, whatever order a
map's entries arrived in.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable

from ai_chargeback_proto import pb

# What rows stored before content hashes existed carry: unknown, so a replay of one counts as a duplicate.
UNKNOWN_CONTENT_HASH = 0


def canonical_encoding(event: pb.UsageEvent) -> bytes:
    return event.SerializeToString(deterministic=True)


_EMPTY_DIGEST = hashlib.blake2b(digest_size=8)


def content_hash(canonical: bytes | memoryview) -> int:
    """64-bit digest of a canonical encoding; never UNKNOWN_CONTENT_HASH."""
    return content_hashes((canonical,))[0]


def content_hashes(canonicals: Iterable[bytes | memoryview]) -> array[int]:
    """``content_hash`` of each (64-bit BLAKE2b, little-endian), as one array: ~0.2 µs an event
    less than one call each the usual way (copying a ready digest state skips the constructor's
    keyword parsing, and the digests are read as one buffer). Admission hashes every event."""
    copy = _EMPTY_DIGEST.copy
    digests = []
    for canonical in canonicals:
        state = copy()
        state.update(canonical)
        digests.append(state.digest())
    hashes = array("Q", b"".join(digests))
    if sys.byteorder != "little":
        hashes.byteswap()
    if UNKNOWN_CONTENT_HASH in hashes:  # one chance in 2**64 per event
        hashes = array("Q", (value or 1 for value in hashes))
    return hashes
