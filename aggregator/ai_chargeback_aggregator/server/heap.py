"""The Python side's heap: large blocks go back to the kernel when freed.

glibc serves a block of 128 KiB or more with a mapping of its own, returned on
free, but raises that threshold to the size of each such block freed (up to
32 MiB): after the first received batch (~1 MB a 5,000-event batch) every
batch, encoding buffer and insert payload came from the heap instead, and the
heap kept the holes they left (through a 1M-event burst glibc held ~130 MB for
~80 MB in use). A fixed threshold keeps large blocks out of the heap: a mapping
and its page faults per block, a few per batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

LARGE_BLOCK_BYTES = 128 * 1024  # glibc's own starting threshold, kept fixed
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold (and trim the heap's top past the same size). False where the
    C library is not glibc: nothing to do there."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BLOCK_BYTES) == 1
    if not done:
        log.warning("could not set the C library's mmap threshold; large blocks may stay in the heap")
    return done
