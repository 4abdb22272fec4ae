"""Per-request state: what nginx/Kong know about one request while it runs.

One `RequestContext` plays the role of `ngx.var`, `ngx.req`, `ngx.ctx` and
`kong.ctx.shared` for a single client request. PDK functions read and write
it; the HTTP front fills it in as the request moves through the phases.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .luaisms import wire_bytes
from .phases import Phase


def normalize_header_name(name: str) -> str:
    """nginx header lookups ignore case and treat '_' like '-'."""
    return name.lower().replace("_", "-")


class Headers:
    """Ordered, case-preserving header list with nginx-like lookups."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        return Headers(self._items)

    def get_all(self, name: str) -> list[str]:
        key = normalize_header_name(name)
        return [v for k, v in self._items if normalize_header_name(k) == key]

    def first(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def remove(self, name: str) -> None:
        key = normalize_header_name(name)
        self._items = [(k, v) for k, v in self._items if normalize_header_name(k) != key]

    def set(self, name: str, value: str | list[str]) -> None:
        """Replace every occurrence, like ngx.req.set_header / ngx.header[x] = v."""
        self.remove(name)
        values = value if isinstance(value, list) else [value]
        self._items.extend((name, str(v)) for v in values)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, str(value)))

    def multimap(self) -> dict[str, list[str]]:
        """Lower-cased names to every value, as ngx.req.get_headers() after
        mp_rpc's fix_mmap (strings become one-element lists)."""
        out: dict[str, list[str]] = {}
        for k, v in self._items:
            out.setdefault(k.lower(), []).append(v)
        return out

    def wire_first(self, name: str) -> str | bytes | None:
        """`first`, as the bytes nginx holds (see luaisms.wire_bytes)."""
        value = self.first(name)
        return None if value is None else wire_bytes(value)

    def wire_multimap(self) -> dict[str, list[str | bytes]]:
        return {k: [wire_bytes(v) for v in values] for k, values in self.multimap().items()}

    def lua_table(self) -> dict[str, str | list[str]]:
        """ngx.req.get_headers() before fix_mmap: a string, or a list when repeated.
        This is what cjson puts into serialize()'s request/response headers."""
        out: dict[str, str | list[str]] = {}
        for k, v in self.multimap().items():
            out[k] = v[0] if len(v) == 1 else v
        return out

    def wire_lua_table(self) -> dict[str, str | bytes | list[str | bytes]]:
        """`lua_table` with values as the bytes nginx holds: what cjson writes into serialize()."""
        out: dict[str, str | bytes | list[str | bytes]] = {}
        for k, v in self.wire_multimap().items():
            out[k] = v[0] if len(v) == 1 else v
        return out


@dataclass
class ExitRecord:
    """A response produced by Kong itself instead of the upstream."""

    status: int
    body: bytes
    headers: Headers
    source: str  # "kong.response.exit", "kong.response.error", "key-auth", "unexpected", ...
    phase: str | None = None


@dataclass
class PdkCall:
    phase: str
    method: str
    args: list[Any]
    step: str | None  # RPC method used to answer, None for exits / Lua errors
    outcome: str  # "ok", "soft-error: ...", "lua-error: ...", "unknown", "exit"


@dataclass
class RequestContext:
    request_id: str
    worker_id: int
    method: str
    request_uri: str
    client_ip: str
    client_port: int
    server_port: int
    host: str
    headers: Headers
    body: bytes
    scheme: str = "http"
    http_version: float = 1.1
    workspace_id: str = ""
    workspace_name: str = "default"

    # Wall clock (ms) as nginx's ngx.req.start_time()*1000; monotonic for durations.
    started_at_ms: float = field(default_factory=lambda: round(time.time() * 1000))
    started_monotonic: float = field(default_factory=time.monotonic)

    phase: Phase = Phase.rewrite
    route: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    consumer: dict[str, Any] | None = None
    credential: dict[str, Any] | None = None
    match_prefix: str = "/"
    upstream_scheme: str = "http"
    upstream_host: str = ""
    upstream_port: int = 0
    upstream_uri: str = ""
    # $args after kong.service.request.set_raw_query / clear_query_arg;
    # $request_uri (get_path_with_query) keeps the original.
    args_override: str | None = None
    response_body_capture: bytearray = field(default_factory=bytearray, repr=False)

    ctx_shared: dict[str, Any] = field(default_factory=dict)
    ngx_ctx: dict[str, Any] = field(default_factory=dict)
    serialize_values: list[tuple[str, Any, str]] = field(default_factory=list)
    extra_serialize: dict[str, Any] = field(default_factory=dict)
    log_lines: list[tuple[str, str, str]] = field(default_factory=list)

    # nginx spooled the request body to a temp file (larger than client_body_buffer_size)
    body_in_file: bool = False
    kong_version: tuple[int, int] = (3, 10)

    buffered_proxying: bool = False
    ai_proxy: dict[str, Any] | None = None  # set by the bundled ai-proxy model in access
    buffered_status: int | None = None
    buffered_headers: Headers | None = None
    buffered_body: bytes | None = None

    proxied: bool = False
    upstream_status: int | None = None
    upstream_headers: Headers | None = None
    upstream_error: str | None = None
    response_status: int = 0
    response_headers: Headers = field(default_factory=Headers)
    bytes_sent: int = 0
    request_length: int = 0
    exit: ExitRecord | None = None
    kong_unexpected: bool = False
    client_aborted: bool = False
    headers_sent: bool = False

    # Millisecond marks relative to the epoch, like the KONG_* ctx fields.
    balancer_start_ms: float | None = None
    balancer_ended_ms: float | None = None
    access_ended_ms: float | None = None
    response_start_ms: float | None = None
    body_ended_ms: float | None = None
    finished_ms: float | None = None
    tries: list[dict[str, Any]] = field(default_factory=list)

    pdk_calls: list[PdkCall] = field(default_factory=list)
    rpc_calls: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    log_snapshot: dict[str, Any] | None = None
    saved_log: dict[str, Any] | None = None
    log_done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------- derived views ----------

    @property
    def raw_path(self) -> str:
        idx = self.request_uri.find("?", 1)
        return self.request_uri if idx < 0 else self.request_uri[:idx]

    @property
    def raw_query(self) -> str:
        if self.args_override is not None:
            return self.args_override
        idx = self.request_uri.find("?", 1)
        return "" if idx < 0 else self.request_uri[idx + 1 :]

    @property
    def has_query_marker(self) -> bool:
        return self.request_uri.find("?", 1) >= 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.server_port}{self.request_uri}"

    def pdk_calls_by_phase(self) -> dict[str, int]:
        counts: collections.Counter[str] = collections.Counter()
        for call in self.pdk_calls:
            counts[call.phase] += 1
        return dict(counts)

    def record_failure(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    @staticmethod
    def now_ms() -> float:
        return time.time() * 1000
