"""Server-sent events, read the cheap way.

Only a handful of events in a stream carry usage (OpenAI's last chunk,
Anthropic's ``message_start`` and ``message_delta``, Gemini's last chunk...).
JSON-parsing every chunk of a 100 KB stream to find them would cost more than
everything else on the hot path, so the helpers here *search the raw bytes* for
a quoted marker (``b'"usage"'``, ``b'"message_delta"'``) and parse only the
``data:`` line it sits on. A marker inside generated text cannot match: JSON
escapes the quotes of any string content (``\\"usage\\"``).

Providers send one JSON document per ``data:`` line. For anything else (a
multi-line ``data:`` event), :func:`iter_events` is the full, spec-following
parser; adapters fall back to it when the fast path finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._values import json_object


def _line_bounds(buf: bytes, pos: int) -> tuple[int, int]:
    start = buf.rfind(b"\n", 0, pos) + 1
    end = buf.find(b"\n", pos)
    if end < 0:
        end = len(buf)
    return start, end


def _data(line: bytes) -> bytes | None:
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(b"data:"):
        return None
    payload = line[5:]
    if payload[:1] == b" ":
        payload = payload[1:]
    return payload


def rfind_events(buf: bytes, marker: bytes, stats: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """JSON ``data:`` payloads whose line holds ``marker``, last first.

    ``stats`` (optional, a one-element list) counts lines that matched but failed to parse.
    """
    pos = len(buf)
    while pos > 0:
        i = buf.rfind(marker, 0, pos)
        if i < 0:
            return
        start, end = _line_bounds(buf, i)
        pos = start
        payload = _data(buf[start:end])
        if payload is None:
            continue
        event = json_object(payload)
        if event is None:
            if stats is not None:
                stats[0] += 1
            continue
        yield event


def find_events(buf: bytes, marker: bytes) -> Iterator[dict[str, Any]]:
    """JSON ``data:`` payloads whose line holds ``marker``, first first."""
    pos = 0
    n = len(buf)
    while pos < n:
        i = buf.find(marker, pos)
        if i < 0:
            return
        start, end = _line_bounds(buf, i)
        pos = end + 1
        payload = _data(buf[start:end])
        if payload is None:
            continue
        event = json_object(payload)
        if event is not None:
            yield event


def last_data(buf: bytes) -> bytes | None:
    """The payload of the last non-empty ``data:`` line (e.g. ``b"[DONE]"``), or None."""
    pos = len(buf)
    while pos > 0:
        i = buf.rfind(b"data:", 0, pos)
        if i < 0:
            return None
        start, end = _line_bounds(buf, i)
        pos = start
        if start != i:
            continue  # "data:" in the middle of a line is not a field
        payload = _data(buf[start:end])
        if payload is not None and payload.strip():
            return payload.strip()
    return None


def has_done(buf: bytes) -> bool:
    """True when the stream ends with OpenAI's ``data: [DONE]`` sentinel."""
    return last_data(buf[-256:] if len(buf) > 256 else buf) == b"[DONE]"


def iter_events(buf: bytes) -> Iterator[tuple[str, str]]:
    """Every event as ``(event_name, data)`` following the WHATWG SSE rules (slow, complete)."""
    text = buf.decode("utf-8", "replace")
    name = ""
    data: list[str] = []
    for line in text.splitlines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:
        yield name, "\n".join(data)


def iter_json_events(buf: bytes) -> Iterator[dict[str, Any]]:
    """Every event whose data is a JSON object, in order (slow path)."""
    for _, data in iter_events(buf):
        if data == "[DONE]":
            continue
        value = json_object(data)
        if value is not None:
            yield value


def is_stream(buf: bytes, hint: bool) -> bool:
    """Whether to read ``buf`` as SSE: the bytes decide, ``hint`` only breaks a tie."""
    if looks_like_sse(buf):
        return True
    head = buf[:64].lstrip()
    if head.startswith((b"{", b"[")):
        return False
    return hint


def looks_like_sse(buf: bytes) -> bool:
    head = buf[:64].lstrip()
    return head.startswith((b"data:", b"event:", b":", b"id:", b"retry:"))


def first_match(events: Iterator[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    for event in events:
        if pred(event):
            return event
    return None
