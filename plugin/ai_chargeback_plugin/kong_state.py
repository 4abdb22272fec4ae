"""When a PDK call cannot raise: the rules, read from Kong's source, that keep the plugin from failing a request.

A PDK function that raises inside Kong is not caught by Kong's bridge loop
(kong/runloop/plugin_servers/rpc/mp_rpc.lua): in access the client gets HTTP
500, in log the event is lost and the Python handler waits forever. So the
plugin asks Kong only what cannot raise in the request's present state:

* ``kong.request.get_raw_body`` returns nil (and nil cannot be packed: a Lua
  error) for a body nginx spooled to a temp file, i.e. larger than
  ``client_body_buffer_size`` (kong/pdk/request.lua). Kong 3.8+ reads the file
  when passed ``max_allowed_file_size`` 0; older Kong cannot. Kong's version
  shows in its first ``serialize()`` (the ``source`` field came with 3.8,
  Kong/kong#13177, like the file read, #13431): until then, and on older
  Kong, a body above ``client_body_buffer_size`` is not read.
* ``kong.request.get_body`` cannot raise for JSON: what it cannot read (a
  spooled body before 3.8, a file over ``max_allowed_file_size``) or decode
  comes back as ``nil, err``, and mp_rpc sends a plain nil (no fix_raw). A body
  nginx holds in memory (up to ``client_body_buffer_size``) is read whatever
  the limit, so the plugin uses it only when that is at most ``max_body_bytes``.
* ``kong.service.response.get_raw_body`` raises unless ``ngx.ctx.buffered_proxying``
  is still set in the log timer. Kong clears it when its error handler answers
  (kong/error_handlers.lua: 502/504, a truncated buffered answer; serialize()
  then says ``source: "kong"``), when a plugin exits in access, and for a
  websocket upgrade (kong/init.lua, kong/runloop/handler.lua). On Kong without
  ``source`` the plugin asks ``kong.nginx.get_ctx("buffered_proxying")``, which
  reads the saved ctx the timer runs on and cannot raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .usage import notes

READ_WHOLE_FILE = 0  # get_raw_body(max_allowed_file_size=0): no limit but client_max_body_size
# kong.request.get_body(mimetype, max_args, max_allowed_file_size) decodes the body as JSON
# whatever its Content-Type. max_args is unused for JSON but must not be nil: the
# Args array would have a hole, and Lua's unpack() of it may drop the size limit.
JSON_BODY = "application/json"
UNUSED_MAX_ARGS = 100


class KongRuntime:
    """What this plugin server has learned about the Kong it serves (one per process)."""

    def __init__(self) -> None:
        self.reads_spooled_bodies = False

    def observe(self, serialized: Mapping[str, Any]) -> None:
        if not self.reads_spooled_bodies and "source" in serialized:
            self.reads_spooled_bodies = True


RUNTIME = KongRuntime()


def content_length(value: Any) -> int | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or not value.strip().isdigit():
        return None
    return int(value.strip())


def unread_reason(length: int | None, *, max_body_bytes: int, client_body_buffer_size: int,
                  runtime: KongRuntime = RUNTIME) -> str:  # fmt: skip
    """Why a request body of `length` bytes must not be read now ("" when reading it cannot fail)."""
    if length is None or length == 0:
        return ""
    if length > max_body_bytes:
        return notes.BODY_TOO_LARGE
    if length > client_body_buffer_size and not runtime.reads_spooled_bodies:
        return notes.BODY_SPOOLED
    return ""


def decodes_bodies(*, max_body_bytes: int, client_body_buffer_size: int) -> bool:
    """Whether ``get_body`` keeps to ``max_body_bytes``: no body in memory can be larger."""
    return client_body_buffer_size <= max_body_bytes


def answered_by(serialized: Mapping[str, Any]) -> str | None:
    """``"upstream"`` or ``"kong"`` (Kong's own page or exit); None before Kong 3.8 said it."""
    source = serialized.get("source")
    return source if isinstance(source, str) else None


def websocket_upgrade(serialized: Mapping[str, Any]) -> bool:
    headers = _mapping(_mapping(serialized.get("request")).get("headers"))
    value = headers.get("upgrade")
    if isinstance(value, list):
        value = value[0] if value else ""
    return isinstance(value, str) and value.strip().lower() == "websocket"


def proxied(serialized: Mapping[str, Any]) -> bool:
    latency = _mapping(serialized.get("latencies")).get("proxy")
    return bool(serialized.get("tries")) or (isinstance(latency, (int, float)) and latency >= 0)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
