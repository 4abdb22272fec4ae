"""Undoing Content-Encoding under a hard size cap.

Every decoder here stops producing output once ``cap`` bytes are out, so a
decompression bomb (a few KB that inflate to gigabytes) costs at most ``cap``
bytes of memory and the time to produce them, and comes back as
``body-too-large`` instead of an exhausted Kong worker.

Supported codings: gzip / x-gzip, deflate (zlib-wrapped, or raw as some servers
send it), br (the ``brotli`` package, a base dependency), zstd (only when a zstd
module is importable: Python 3.14's ``compression.zstd`` or ``backports.zstd``),
identity. Several codings (``gzip, br``) are undone last-applied first.
"""

from __future__ import annotations

import zlib
from typing import Any

from . import notes

_CHUNK = 65536


def _inflate(data: bytes, wbits: int, cap: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, cap + 1)
    if len(out) > cap:
        raise _TooLarge
    # Concatenated gzip members: keep going while input remains.
    while d.eof and d.unused_data and wbits in (31, 47):
        rest = d.unused_data
        d = zlib.decompressobj(wbits)
        more = d.decompress(rest, cap + 1 - len(out))
        out += more
        if len(out) > cap:
            raise _TooLarge
    if not d.eof and d.unconsumed_tail:
        # Output hit the limit with input left over: a bomb (or just big).
        raise _TooLarge
    return out


def _brotli(data: bytes, cap: int) -> bytes:
    import brotli  # base dependency; imported lazily to keep import time low

    d = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    chunk = d.process(data, output_buffer_limit=min(cap + 1, 1 << 20))
    while True:
        parts.append(chunk)
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        if d.is_finished() or d.can_accept_more_data():
            break
        chunk = d.process(b"", output_buffer_limit=min(cap + 1 - size, 1 << 20))
    return b"".join(parts)


def _zstd_module() -> Any:
    try:
        from compression import zstd  # Python 3.14+

        return zstd
    except ImportError:
        pass
    try:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]

        return zstd
    except ImportError:
        return None


def _zstd(data: bytes, cap: int) -> bytes:
    mod = _zstd_module()
    if mod is None:
        raise _Unsupported
    d = mod.ZstdDecompressor()
    out = d.decompress(data, max_length=cap + 1)
    if len(out) > cap or (not d.eof and d.needs_input is False):
        raise _TooLarge
    return bytes(out)


class _TooLarge(Exception):
    pass


class _Unsupported(Exception):
    pass


def decode(body: bytes, content_encoding: str, cap: int) -> tuple[bytes | None, str]:
    """Return ``(decoded, "")`` or ``(None, note)``. Never raises."""
    if len(body) > cap:
        return None, notes.BODY_TOO_LARGE
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = body
    try:
        for coding in reversed(codings):
            if coding in ("identity", "none"):
                continue
            if coding in ("gzip", "x-gzip"):
                data = _inflate(data, 47, cap)  # 47 = auto-detect gzip or zlib header
            elif coding == "deflate":
                try:
                    data = _inflate(data, 15, cap)
                except zlib.error:
                    data = _inflate(data, -15, cap)  # raw deflate, as some servers send it
            elif coding == "br":
                data = _brotli(data, cap)
            elif coding == "zstd":
                data = _zstd(data, cap)
            else:
                return None, notes.UNSUPPORTED_ENCODING
    except _TooLarge:
        return None, notes.BODY_TOO_LARGE
    except _Unsupported:
        return None, notes.UNSUPPORTED_ENCODING
    except Exception:  # noqa: BLE001 - zlib.error, brotli.error, ZstdError, MemoryError on absurd input
        return None, notes.DECODE_ERROR
    return data, ""
