"""Token estimates from byte counts, for bodies the plugin never read. Always labelled, with their error bound.

When an answer streams past the plugin (``auto`` mode), or a body is too large
to read, the only measure left is its size: Kong reports the bytes it sent
(``response.size``, nginx's ``$bytes_sent``) and received (``request.size``).
A body's bytes become tokens through the calibration of its API family in the
registry (``registry.Calibration``), fitted on the recorded and synthesized
streams under ``tests/fixtures`` by ``tests/fixtures/calibrate.py``; the fit's
largest error on that corpus is its ``error_pct``, printed in the note of every
estimate made with it (``err<=NN%``) and stated in docs/plugin.md.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from typing import Any

from . import registry

# nginx writes Date and Connection (and Server when the upstream sent none) after the
# headers Kong's serialize() lists (ngx.resp.get_headers()): about this many bytes.
NGINX_ADDED_HEADER_BYTES = 64
_EMBEDDINGS = "embeddings"


def _header_block(status_line: int, headers: Mapping[str, Any]) -> int:
    size = status_line + 2  # the final CRLF
    for name, value in headers.items():
        for one in value if isinstance(value, list) else [value]:
            size += len(str(name)) + 2 + len(str(one).encode("utf-8", "replace")) + 2
    return size


def _content_length(headers: Mapping[str, Any]) -> int | None:
    value = headers.get("content-length")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        length = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None


def response_body_bytes(serialized: Mapping[str, Any]) -> int | None:
    """The answer's body size: its Content-Length, else Kong's ``$bytes_sent`` less the header block."""
    response = serialized.get("response")
    if not isinstance(response, Mapping):
        return None
    headers = response.get("headers") if isinstance(response.get("headers"), Mapping) else {}
    length = _content_length(headers)
    if length is not None:
        return length
    size = response.get("size")
    if not isinstance(size, (int, float)) or isinstance(size, bool) or size <= 0:
        return None
    status = response.get("status") if isinstance(response.get("status"), int) else 200
    phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
    status_line = len(f"HTTP/1.1 {status} {phrase}\r\n")
    return max(0, int(size) - _header_block(status_line, headers) - NGINX_ADDED_HEADER_BYTES)


def request_body_bytes(serialized: Mapping[str, Any]) -> int | None:
    """The request body size: its Content-Length, else Kong's ``$request_length`` less the request head."""
    request = serialized.get("request")
    if not isinstance(request, Mapping):
        return None
    headers = request.get("headers") if isinstance(request.get("headers"), Mapping) else {}
    length = _content_length(headers)
    if length is not None:
        return length
    size = request.get("size")
    if not isinstance(size, (int, float)) or isinstance(size, bool) or size <= 0:
        return None
    line = len(f"{request.get('method', 'POST')} {request.get('uri', '/')} HTTP/1.1\r\n")
    return max(0, int(size) - _header_block(line, headers))


def output_from_bytes(family: str, body_bytes: int, *, streaming: bool) -> tuple[int, int] | None:
    """``(tokens, error_pct)`` for an answer of `body_bytes` bytes; None for embeddings (no output tokens)."""
    if body_bytes <= 0 or family.endswith(_EMBEDDINGS):
        return None
    row = registry.BY_FAMILY.get(family)
    if streaming:
        calibration = (row.stream if row is not None else None) or registry.ANY_STREAM
    else:
        calibration = registry.JSON_ANSWER
    return calibration.tokens(body_bytes), calibration.error_pct


def prompt_from_bytes(body_bytes: int) -> tuple[int, int]:
    """``(tokens, error_pct)`` for a request body of `body_bytes` bytes."""
    return registry.REQUEST_BODY.tokens(body_bytes), registry.REQUEST_BODY.error_pct
