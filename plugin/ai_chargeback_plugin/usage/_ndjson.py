"""Newline-delimited JSON (Ollama's ``application/x-ndjson``), read from the end.

Ollama puts its counts on the final ``"done": true`` object, so the reader
walks lines backwards and parses only until it finds what the adapter asks for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def rlines(buf: bytes) -> Iterator[dict[str, Any]]:
    """JSON objects, one per non-empty line, last first; unparsable lines are skipped."""
    end = len(buf)
    while end > 0:
        start = buf.rfind(b"\n", 0, end) + 1
        line = buf[start:end].strip()
        end = start - 1
        if not line:
            continue
        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            yield value


def looks_like_ndjson(buf: bytes) -> bool:
    head = buf[:65536].lstrip()
    if not head.startswith(b"{"):
        return False
    nl = head.find(b"\n")
    if nl < 0:
        return False
    # The first line must be a whole object (pretty-printed JSON's first line is a lone "{").
    return head[:nl].rstrip().endswith(b"}") and nl < len(head.rstrip())
