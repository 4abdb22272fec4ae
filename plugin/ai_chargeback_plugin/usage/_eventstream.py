"""AWS binary event-stream (``application/vnd.amazon.eventstream``), decoded and encoded.

Bedrock's ConverseStream and InvokeModelWithResponseStream answer in this
framing, not SSE. Each message is::

    prelude   total_length:uint32  headers_length:uint32  prelude_crc:uint32   (CRC32 of the first 8 bytes)
    headers   repeated: name_len:uint8 name:bytes type:uint8 value
    payload   total_length - headers_length - 16 bytes
    trailer   message_crc:uint32                                            (CRC32 of everything before it)

all big-endian. Header value types: 0 true, 1 false, 2 int8, 3 int16, 4 int32,
5 int64, 6 bytes (uint16 length), 7 string (uint16 length), 8 timestamp (int64
ms), 9 uuid (16 bytes). Bedrock sets ``:message-type`` (``event`` or
``exception``), ``:event-type`` (``messageStart``, ``contentBlockDelta``,
``messageStop``, ``metadata``, ``chunk``...) and ``:content-type``.

:func:`decode` walks the frames by their lengths, trusting a length only after
its prelude CRC matched; headers are decoded and the message CRC checked only
for the frames a caller reads (the usage is in the last one, so a 100 KB stream
costs one header decode, not 800). A frame cut short ends the walk with
``truncated=True``. :func:`encode` exists for the fixture builder and tests.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

_PRELUDE = struct.Struct(">III")
_MIN_FRAME = 16  # prelude (12) + message CRC (4)
_MAX_FRAME = 16 * 1024 * 1024  # the spec's limit for one message


class Message:
    """One frame. Headers are decoded and the message CRC checked only when asked for:
    a 100 KB stream has ~800 frames and the usage sits in the last one."""

    __slots__ = ("_buf", "_end", "_headers", "_payload_start", "_start")

    def __init__(self, buf: bytes, start: int, payload_start: int, end: int) -> None:
        self._buf = buf
        self._start = start
        self._payload_start = payload_start
        self._end = end  # offset of the message CRC
        self._headers: dict[str, Any] | None = None

    @property
    def headers(self) -> dict[str, Any]:
        if self._headers is None:
            try:
                self._headers = _headers(self._buf[self._start + 12 : self._payload_start])
            except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                self._headers = {}
        return self._headers

    @property
    def payload(self) -> bytes:
        return self._buf[self._payload_start : self._end]

    def crc_ok(self) -> bool:
        (expected,) = struct.unpack_from(">I", self._buf, self._end)
        return zlib.crc32(memoryview(self._buf)[self._start : self._end]) == int(expected)

    @property
    def event_type(self) -> str:
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else ""

    @property
    def message_type(self) -> str:
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else ""


@dataclass(slots=True)
class Decoded:
    messages: list[Message] = field(default_factory=list)
    truncated: bool = False  # the buffer ended inside a frame
    crc_error: bool = False  # a prelude failed its CRC (the walk stops there)
    malformed: bool = False  # lengths made no sense


def _headers(buf: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i, n = 0, len(buf)
    while i < n:
        name_len = buf[i]
        i += 1
        name = buf[i : i + name_len].decode("utf-8")
        i += name_len
        kind = buf[i]
        i += 1
        value: Any
        if kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif kind == 2:
            value = struct.unpack_from(">b", buf, i)[0]
            i += 1
        elif kind == 3:
            value = struct.unpack_from(">h", buf, i)[0]
            i += 2
        elif kind == 4:
            value = struct.unpack_from(">i", buf, i)[0]
            i += 4
        elif kind in (5, 8):
            value = struct.unpack_from(">q", buf, i)[0]
            i += 8
        elif kind in (6, 7):
            (length,) = struct.unpack_from(">H", buf, i)
            i += 2
            raw = buf[i : i + length]
            if len(raw) != length:
                raise ValueError("header value cut short")
            value = raw.decode("utf-8") if kind == 7 else bytes(raw)
            i += length
        elif kind == 9:
            value = bytes(buf[i : i + 16])
            i += 16
        else:
            raise ValueError(f"unknown header type {kind}")
        if i > n:
            raise ValueError("header cut short")
        out[name] = value
    return out


def decode(buf: bytes) -> Decoded:
    """Every whole frame in ``buf``, in order. Never raises.

    The walk trusts a frame's lengths only after its prelude CRC matches; the
    message CRC is checked by the caller (:meth:`Message.crc_ok`) on the frames
    it actually reads.
    """
    result = Decoded()
    messages = result.messages
    unpack = _PRELUDE.unpack_from
    crc32 = zlib.crc32
    view = memoryview(buf)
    i, n = 0, len(buf)
    while i < n:
        if n - i < 12:
            result.truncated = True
            break
        total, headers_len, prelude_crc = unpack(buf, i)
        if total < _MIN_FRAME or total > _MAX_FRAME or headers_len > total - _MIN_FRAME:
            result.malformed = crc32(view[i : i + 8]) == prelude_crc
            result.crc_error = not result.malformed
            break
        if crc32(view[i : i + 8]) != prelude_crc:
            result.crc_error = True
            break
        if n - i < total:
            result.truncated = True
            break
        messages.append(Message(buf, i, i + 12 + headers_len, i + total - 4))
        i += total
    return result


def _encode_header(name: str, value: Any) -> bytes:
    raw_name = name.encode("utf-8")
    head = bytes([len(raw_name)]) + raw_name
    if value is True:
        return head + b"\x00"
    if value is False:
        return head + b"\x01"
    if isinstance(value, int):
        return head + b"\x04" + struct.pack(">i", value)
    if isinstance(value, bytes):
        return head + b"\x06" + struct.pack(">H", len(value)) + value
    raw = str(value).encode("utf-8")
    return head + b"\x07" + struct.pack(">H", len(raw)) + raw


def encode(headers: dict[str, Any], payload: bytes) -> bytes:
    """One event-stream message (for fixtures and tests)."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def encode_event(event_type: str, payload: bytes, *, content_type: str = "application/json") -> bytes:
    """A Bedrock-style ``event`` message."""
    return encode({":event-type": event_type, ":content-type": content_type, ":message-type": "event"}, payload)


def looks_like_eventstream(buf: bytes) -> bool:
    if len(buf) < 16:
        return False
    total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, 0)
    return bool(_MIN_FRAME <= total <= _MAX_FRAME and headers_len <= total and zlib.crc32(buf[:8]) == prelude_crc)
