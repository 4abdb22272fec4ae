"""The PDK functions Kong runs on behalf of an external plugin.

Every function starts with the same phase check as in kong/pdk/*.lua. Inside
the `log` phase an external plugin runs in a timer (plugin_servers/plugin.lua)
where there is no request: only the functions Kong overrides with saved data
(serialize, request/response headers, response status, ctx.shared,
nginx ctx, req_start_time) and those that only read `ngx.ctx` work; anything
touching `ngx.var`/`ngx.req` raises "no request found" there, as it does in
Kong. Functions return the FIRST Lua return value only (mp_rpc.lua
call_pdk_method), so a `nil, err` return reaches Python as plain nil.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import phases as ph
from .context import ExitRecord, Headers, RequestContext
from .errors import LuaError, PdkSoftError
from .luaisms import (
    CjsonDecodeError,
    LuaBinary,
    cjson_decode,
    cjson_encode,
    cjson_encode_raw,
    decode_query,
    fix_mmap,
    lua_number,
    lua_tostring,
    normalize_path,
)
from .phases import Phase, check_not_phase, check_phase

# mp_rpc.lua get_step_method: by_pdk_method
TYPED_STEPS: dict[str, str] = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}

# mp_rpc.lua must_fix: these results are wrapped by fix_raw so they travel as
# msgpack bin. The wrapper packs whatever the PDK function returned, and
# lua-MessagePack cannot pack nil as binary: a `nil, err` return becomes a Lua
# error while Kong packs its Step (Rpc:call -> mp_pack), outside any pcall.
FIX_RAW_METHODS = frozenset(
    {"kong.request.get_raw_body", "kong.response.get_raw_body", "kong.service.response.get_raw_body"}
)
FIX_RAW_NIL = "attempt to get length of local 'str' (a nil value)"

# kong-pdk's pdk/__init__.py and server.py: the Python side does not wait for
# an answer to these, and Kong sends none.
TERMINAL_METHODS = frozenset({"kong.response.exit", "kong.response.error"})

# Everything Kong resolves for an external plugin: the documented PDK plus the
# extra entries of plugin_servers/plugin.lua's exposed_api. A name outside this
# set gets "could not find pdk method" from Kong itself.
KNOWN_KONG_METHODS = frozenset(
    """
    kong.client.authenticate kong.client.get_consumer kong.client.get_credential kong.client.get_forwarded_ip
    kong.client.get_forwarded_port kong.client.get_ip kong.client.get_port kong.client.get_protocol
    kong.client.load_consumer kong.client.tls.disable_session_reuse
    kong.client.tls.get_full_client_certificate_chain kong.client.tls.request_client_certificate
    kong.client.tls.set_client_verify kong.cluster.get_id kong.ip.is_trusted kong.log.deprecation
    kong.log.inspect kong.log.serialize kong.log.set_serialize_value kong.log.alert kong.log.crit
    kong.log.debug kong.log.emerg kong.log.err kong.log.info kong.log.notice kong.log.warn
    kong.nginx.get_statistics kong.nginx.get_subsystem kong.nginx.get_var kong.nginx.get_ctx
    kong.nginx.set_ctx kong.nginx.req_start_time kong.nginx.get_tls1_version_str
    kong.ctx.shared.get kong.ctx.shared.set
    kong.node.get_hostname kong.node.get_id kong.node.get_memory_stats kong.plugin.get_id
    kong.request.get_body kong.request.get_forwarded_host kong.request.get_forwarded_path
    kong.request.get_forwarded_port kong.request.get_forwarded_prefix kong.request.get_forwarded_scheme
    kong.request.get_header kong.request.get_headers kong.request.get_host kong.request.get_http_version
    kong.request.get_method kong.request.get_path kong.request.get_path_with_query kong.request.get_port
    kong.request.get_query kong.request.get_query_arg kong.request.get_raw_body kong.request.get_raw_path
    kong.request.get_raw_query kong.request.get_scheme kong.request.get_start_time
    kong.request.get_uri_captures kong.response.add_header kong.response.clear_header kong.response.error
    kong.response.exit kong.response.get_header kong.response.get_headers kong.response.get_raw_body
    kong.response.get_source kong.response.get_status kong.response.set_header kong.response.set_headers
    kong.response.set_raw_body kong.response.set_status kong.router.get_route kong.router.get_service
    kong.service.request.add_header kong.service.request.clear_header kong.service.request.clear_query_arg
    kong.service.request.disable_tls kong.service.request.enable_buffering kong.service.request.set_body
    kong.service.request.set_header kong.service.request.set_headers kong.service.request.set_method
    kong.service.request.set_path kong.service.request.set_query kong.service.request.set_raw_body
    kong.service.request.set_raw_query kong.service.request.set_scheme kong.service.response.get_body
    kong.service.response.get_header kong.service.response.get_headers kong.service.response.get_raw_body
    kong.service.response.get_status kong.service.set_retries kong.service.set_target
    kong.service.set_timeouts kong.service.set_tls_verify kong.service.set_tls_verify_depth
    kong.service.set_upstream kong.table.clear kong.table.merge kong.table.new kong.telemetry.log
    kong.vault.get kong.vault.is_reference kong.vault.parse_reference
    """.split()
)

NO_REQUEST = "no request found"  # resty.core's error outside a request (the log timer)

# kong/pdk/response.lua HTTP_ERROR_MESSAGES
HTTP_ERROR_MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden",
    404: "Not found", 405: "Method not allowed", 406: "Not acceptable",
    407: "Proxy authentication required", 408: "Request timeout", 409: "Conflict", 410: "Gone",
    411: "Length required", 412: "Precondition failed", 413: "Payload too large",
    414: "URI too long", 415: "Unsupported media type", 416: "Range not satisfiable",
    417: "Expectation failed", 418: "I'm a teapot", 421: "Misdirected request",
    422: "Unprocessable entity", 423: "Locked", 424: "Failed dependency", 425: "Too early",
    426: "Upgrade required", 428: "Precondition required", 429: "Too many requests",
    431: "Request header fields too large", 451: "Unavailable for legal reasons",
    494: "Request header or cookie too large", 500: "An unexpected error occurred",
    501: "Not implemented", 502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable", 504: "The upstream server is timing out",
    505: "HTTP version not supported", 506: "Variant also negotiates", 507: "Insufficient storage",
    508: "Loop detected", 510: "Not extended", 511: "Network authentication required",
}  # fmt: skip

# kong/tools/http.lua error templates (message and request id are not escaped).
JSON_CT = "application/json; charset=utf-8"
_ERROR_TEMPLATES = {
    JSON_CT: '{\n  "message":"%s",\n  "request_id":"%s"\n}',
    "text/html; charset=utf-8": (
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n'
        "  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n"
        "  </body>\n</html>\n"
    ),
    "text/plain; charset=utf-8": "%s\nrequest_id: %s\n",
    "application/xml; charset=utf-8": (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n'
        "  <requestid>%s</requestid>\n</error>\n"
    ),
}
_MIME_TYPES = {
    "text/html": "text/html; charset=utf-8",
    "application/json": JSON_CT,
    "text/plain": "text/plain; charset=utf-8",
    "application/xml": "application/xml; charset=utf-8",
    "application": JSON_CT,
    "text": "text/plain; charset=utf-8",
}


def response_type_for_accept(accept: str | None) -> str:
    """kong.tools.http.get_response_type: the best-q known MIME type, JSON by default."""
    content_type = JSON_CT
    if not accept:
        return content_type
    best_q = 0.0
    for item in accept.split(","):
        parts = [p.strip() for p in item.strip().split(";")]
        media = parts[0].lower()
        if "/" not in media:
            continue
        q = 1.0
        for param in parts[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > best_q:
            best_q = q
            major, _, minor = media.partition("/")
            if minor == "*":
                content_type = JSON_CT if major == "*" else _MIME_TYPES.get(major, JSON_CT)
            else:
                content_type = _MIME_TYPES.get(media, JSON_CT)
    return content_type


def error_body(content_type: str, message: str, request_id: str) -> bytes:
    template = _ERROR_TEMPLATES.get(content_type, _ERROR_TEMPLATES[JSON_CT])
    return (template % (message, request_id)).encode()


def build_exit(
    status: int, body: Any, headers: dict[str, Any] | None, *, source: str, phase: str | None
) -> ExitRecord:
    """kong/pdk/response.lua send(): encode the body, set Content-Type/Length."""
    out = Headers()
    has_ct = has_cl = False
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower in ("transfer-encoding", "transfer_encoding"):
            continue  # Kong ignores it with a warning
        out.set(name, [str(v) for v in value] if isinstance(value, list) else _header_str(value))
        has_ct = has_ct or lower in ("content-type", "content_type")
        has_cl = has_cl or lower in ("content-length", "content_length")
    if isinstance(body, (dict, list)):
        payload = cjson_encode(body).encode()
        if not has_ct:
            out.set("Content-Type", JSON_CT)
    elif body is None:
        payload = b""
    else:
        payload = body if isinstance(body, bytes) else str(body).encode()
    if not has_cl:
        out.set("Content-Length", str(len(payload)))
    return ExitRecord(status=status, body=payload, headers=out, source=source, phase=phase)


def _header_str(value: Any) -> str:
    # checks.normalize_header: "" becomes " ", numbers/booleans tostring'd
    if value == "":
        return " "
    return lua_tostring(value)


def _validate_header(name: Any, value: Any) -> Any:
    if not isinstance(name, str):
        raise LuaError(f'invalid header name "{name}": got {_lua_type(name)}, expected string')
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise LuaError(f'invalid header value in array "{name}": got {_lua_type(item)}, expected string')
        return [v if v != "" else " " for v in value]
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        return text if text != "" else " "
    if isinstance(value, (bool, int, float)):
        return lua_tostring(value)
    raise LuaError(
        f'invalid header value for "{name}": got {_lua_type(value)}, '
        "expected array of string, string, number or boolean"
    )


def _lua_type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, (dict, list)):
        return "table"
    return "userdata"


@dataclass(frozen=True)
class ExitSignal:
    """Returned by exit/error: the bridge must stop without sending a Step."""

    record: ExitRecord


# mp_rpc.lua fix_raw: the value goes over the wire as msgpack bin.
RawBody = LuaBinary


@dataclass(frozen=True)
class PdkMethod:
    name: str
    func: Callable[..., Any]
    # Kong's plugin.lua replaces it with saved data inside the log timer,
    # skipping the PDK's own phase check there.
    log_override: Callable[..., Any] | None = None


class PdkEnvironment:
    """What PDK functions may need from outside the request (node, consumers)."""

    def __init__(
        self,
        *,
        hostname: str | None = None,
        node_id: str | None = None,
        find_consumer: Callable[[str, bool], dict[str, Any] | None] | None = None,
        plugin_log: Callable[[RequestContext, str, str], None] | None = None,
    ) -> None:
        self.hostname = hostname or socket.gethostname()
        self.node_id = node_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, self.hostname))
        self.find_consumer = find_consumer or (lambda _key, _by_username: None)
        self.plugin_log = plugin_log


def _require_request(ctx: RequestContext) -> None:
    if ctx.phase is Phase.log:
        raise LuaError(NO_REQUEST)


def _str_arg(value: Any, message: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise LuaError(message)
    return value


def _check_max(value: Any, what: str, low: int, high: int) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise LuaError(f"{what} must be a number")
    if value < low:
        raise LuaError(f"{what} must be >= {low}")
    if value > high:
        raise LuaError(f"{what} must be <= {high}")


def build_registry(env: PdkEnvironment) -> dict[str, PdkMethod]:
    methods: dict[str, PdkMethod] = {}

    def pdk(name: str, log_override: Callable[..., Any] | None = None) -> Callable[[Callable[..., Any]], Any]:
        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            methods[name] = PdkMethod(name, func, log_override)
            return func

        return register

    # ----- kong.request -----

    @pdk("kong.request.get_scheme")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        return ctx.scheme  # ngx.ctx.scheme, set before access

    @pdk("kong.request.get_host")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        return ctx.host

    @pdk("kong.request.get_port")
    def _(ctx: RequestContext) -> int:
        check_not_phase(ctx.phase, Phase.init_worker)
        _require_request(ctx)
        return ctx.server_port

    # No trusted_ips configured: the forwarded getters see the direct values.
    @pdk("kong.request.get_forwarded_scheme")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.scheme

    @pdk("kong.request.get_forwarded_host")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.host

    @pdk("kong.request.get_forwarded_port")
    def _(ctx: RequestContext) -> int:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.server_port

    @pdk("kong.request.get_http_version")
    def _(ctx: RequestContext) -> float:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.http_version

    @pdk("kong.request.get_method")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.method

    @pdk("kong.request.get_raw_path")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        return ctx.raw_path  # ngx.ctx.request_uri survives into the log timer

    @pdk("kong.request.get_path")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        return normalize_path(ctx.raw_path, True)

    @pdk("kong.request.get_path_with_query")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        return ctx.request_uri

    @pdk("kong.request.get_raw_query")
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.REQUEST)
        _require_request(ctx)
        return ctx.raw_query

    @pdk("kong.request.get_query")
    def _(ctx: RequestContext, max_args: Any = None) -> dict[str, Any]:
        check_phase(ctx.phase, ph.REQUEST)
        _check_max(max_args, "max_args", 1, 1000)
        _require_request(ctx)
        return fix_mmap(decode_query(ctx.raw_query, int(max_args or 100)))

    @pdk("kong.request.get_query_arg")
    def _(ctx: RequestContext, name: Any = None) -> Any:
        check_phase(ctx.phase, ph.REQUEST)
        key = _str_arg(name, "query argument name must be a string")
        _require_request(ctx)
        value = decode_query(ctx.raw_query).get(key)
        return value[0] if isinstance(value, list) else value

    def saved_request_header(ctx: RequestContext, name: Any = None) -> Any:
        return ctx.saved_log["request_headers"].wire_first(str(name)) if ctx.saved_log else None

    @pdk("kong.request.get_header", log_override=saved_request_header)
    def _(ctx: RequestContext, name: Any = None) -> str | None:
        check_phase(ctx.phase, ph.REQUEST)
        return ctx.headers.wire_first(_str_arg(name, "header name must be a string"))

    def saved_request_headers(ctx: RequestContext, _max: Any = None) -> dict[str, Any]:
        return ctx.saved_log["request_headers"].wire_multimap() if ctx.saved_log else {}

    @pdk("kong.request.get_headers", log_override=saved_request_headers)
    def _(ctx: RequestContext, max_headers: Any = None) -> dict[str, list[str]]:
        check_phase(ctx.phase, ph.REQUEST)
        _check_max(max_headers, "max_headers", 1, 1000)
        return ctx.headers.wire_multimap()

    @pdk("kong.request.get_raw_body")
    def _(ctx: RequestContext, max_allowed_file_size: Any = None) -> RawBody:
        # kong/pdk/request.lua get_raw_body: a body larger than client_body_buffer_size
        # is in nginx's temp file, where ngx.req.get_body_data() is nil. Kong 3.8+
        # reads the file only when given max_allowed_file_size >= 0 (0: no limit but
        # client_max_body_size), and returns nil, err for a file over a positive limit;
        # before 3.8 the function takes no argument and always returns nil, err there.
        check_phase(ctx.phase, ph.BEFORE_CONTENT)
        _require_request(ctx)
        if not ctx.body_in_file:
            return RawBody(ctx.body)
        if ctx.kong_version < (3, 8) or not isinstance(max_allowed_file_size, (int, float)) or max_allowed_file_size < 0:
            raise PdkSoftError("request body did not fit into client body buffer, consider raising 'client_body_buffer_size'")
        if max_allowed_file_size > 0 and len(ctx.body) > max_allowed_file_size:
            raise PdkSoftError(f"request body file too big: {len(ctx.body)} > {int(max_allowed_file_size)}")
        return RawBody(ctx.body)

    @pdk("kong.request.get_body")
    def _(ctx: RequestContext, mimetype: Any = None, max_args: Any = None, max_file: Any = None) -> Any:
        # kong/pdk/request.lua get_body: the type is the given mimetype or the request's,
        # without parameters, matched by prefix. It returns nil, err for what it cannot
        # read or decode; mp_rpc keeps the nil (no fix_raw: nothing raises).
        check_phase(ctx.phase, ph.BEFORE_CONTENT)
        _require_request(ctx)
        content_type = mimetype or ctx.headers.first("content-type")
        if not content_type:
            raise PdkSoftError("missing content type")
        kind = str(content_type).lower().split(";", 1)[0]
        if kind.startswith("application/x-www-form-urlencoded"):
            _check_max(max_args, "max_args", 1, 1000)
            return decode_query(ctx.body.decode("utf-8", errors="replace"), int(max_args or 100))
        if kind.startswith("application/json"):
            # get_raw_body(max_allowed_file_size), then cjson.safe.decode: the same limits
            spooled = ctx.body_in_file and (ctx.kong_version < (3, 8) or not isinstance(max_file, (int, float))
                                            or max_file < 0 or 0 < max_file < len(ctx.body))  # fmt: skip
            if spooled:
                raise PdkSoftError("request body did not fit into client body buffer, consider raising 'client_body_buffer_size'")
            try:
                doc = cjson_decode(ctx.body)
            except CjsonDecodeError:
                raise PdkSoftError("invalid json body") from None
            if not isinstance(doc, (dict, list)):
                raise PdkSoftError("invalid json body")
            return doc
        raise PdkSoftError(f"unsupported content type '{content_type}'")

    @pdk("kong.request.get_start_time")
    def _(ctx: RequestContext) -> Any:
        check_phase(ctx.phase, ph.REQUEST)
        return lua_number(ctx.started_at_ms)

    # ----- kong.service.request -----

    @pdk("kong.service.request.enable_buffering")
    def _(ctx: RequestContext) -> None:
        check_phase(ctx.phase, ph.ACCESS_REWRITE_BALANCER)
        ctx.buffered_proxying = True

    @pdk("kong.service.request.set_header")
    def _(ctx: RequestContext, name: Any = None, value: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_REWRITE_BALANCER)
        normalized = _validate_header(name, value)
        if name.lower() == ":authority":
            raise PdkSoftError("cannot set :authority pseudo-header on non-grpc requests")
        if name.lower() == "host":
            ctx.ngx_ctx["__upstream_host_header"] = normalized
        ctx.headers.set(name, normalized)

    @pdk("kong.service.request.add_header")
    def _(ctx: RequestContext, name: Any = None, value: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_AND_REWRITE)
        normalized = _validate_header(name, value)
        for item in normalized if isinstance(normalized, list) else [normalized]:
            ctx.headers.add(name, item)

    @pdk("kong.service.request.clear_header")
    def _(ctx: RequestContext, name: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_AND_REWRITE)
        ctx.headers.remove(_str_arg(name, "header must be a string"))

    @pdk("kong.service.request.set_headers")
    def _(ctx: RequestContext, headers: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_AND_REWRITE)
        if not isinstance(headers, dict):
            raise LuaError("headers must be a table")
        normalized = {k: _validate_header(k, v) for k, v in headers.items()}
        for k, v in normalized.items():
            ctx.headers.set(k, v)

    @pdk("kong.service.request.set_raw_body")
    def _(ctx: RequestContext, body: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_REWRITE_BALANCER)
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise LuaError("body must be a string")
        ctx.body = body  # ngx.req.set_body_data: later get_raw_body sees it too

    @pdk("kong.service.request.set_path")
    def _(ctx: RequestContext, path: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_REWRITE_BALANCER)
        value = _str_arg(path, "path must be a string")
        if not value.startswith("/"):
            raise LuaError("path must start with /")
        ctx.ngx_ctx["__upstream_path"] = value

    @pdk("kong.service.request.set_raw_query")
    def _(ctx: RequestContext, query: Any = None) -> None:
        check_phase(ctx.phase, ph.ACCESS_AND_REWRITE)
        ctx.args_override = _str_arg(query, "query must be a string")

    # ----- kong.service.response -----

    def service_headers(ctx: RequestContext) -> Headers:
        if ctx.buffered_headers is not None:
            return ctx.buffered_headers
        _require_request(ctx)
        return ctx.upstream_headers or Headers()

    @pdk("kong.service.response.get_status")
    def _(ctx: RequestContext) -> int | None:
        check_phase(ctx.phase, ph.SERVICE_RESPONSE_HEADER_BODY_LOG)
        if ctx.buffered_status is not None:
            return ctx.buffered_status
        _require_request(ctx)
        return ctx.upstream_status

    @pdk("kong.service.response.get_headers")
    def _(ctx: RequestContext, max_headers: Any = None) -> dict[str, list[str]]:
        check_phase(ctx.phase, ph.SERVICE_RESPONSE_HEADER_BODY_LOG)
        _check_max(max_headers, "max_headers", 1, 1000)
        return service_headers(ctx).wire_multimap()

    @pdk("kong.service.response.get_header")
    def _(ctx: RequestContext, name: Any = None) -> str | None:
        check_phase(ctx.phase, ph.SERVICE_RESPONSE_HEADER_BODY_LOG)
        return service_headers(ctx).wire_first(_str_arg(name, "name must be a string"))

    @pdk("kong.service.response.get_raw_body")
    def _(ctx: RequestContext) -> RawBody:
        check_phase(ctx.phase, ph.SERVICE_RESPONSE_HEADER_BODY_LOG)
        if not ctx.buffered_proxying:
            raise LuaError(
                "service body is only available with buffered proxying "
                "(see: kong.service.request.enable_buffering function)"
            )
        return RawBody(ctx.buffered_body or b"")

    # ----- kong.response -----

    def saved_status(ctx: RequestContext) -> Any:
        return ctx.saved_log["response_status"] if ctx.saved_log else None

    @pdk("kong.response.get_status", log_override=saved_status)
    def _(ctx: RequestContext) -> int:
        check_phase(ctx.phase, ph.RESPONSE_HEADER_BODY_LOG)
        return ctx.response_status

    def saved_response_header(ctx: RequestContext, name: Any = None) -> Any:
        return ctx.saved_log["response_headers"].wire_first(str(name)) if ctx.saved_log else None

    @pdk("kong.response.get_header", log_override=saved_response_header)
    def _(ctx: RequestContext, name: Any = None) -> str | None:
        check_phase(ctx.phase, ph.RESPONSE_HEADER_BODY_LOG)
        return ctx.response_headers.wire_first(_str_arg(name, "header name must be a string"))

    def saved_response_headers(ctx: RequestContext, _max: Any = None) -> dict[str, Any]:
        return ctx.saved_log["response_headers"].wire_multimap() if ctx.saved_log else {}

    @pdk("kong.response.get_headers", log_override=saved_response_headers)
    def _(ctx: RequestContext, max_headers: Any = None) -> dict[str, list[str]]:
        check_phase(ctx.phase, ph.RESPONSE_HEADER_BODY_LOG)
        _check_max(max_headers, "max_headers", 1, 1000)
        return ctx.response_headers.wire_multimap()

    def response_source(ctx: RequestContext) -> str:
        if ctx.kong_unexpected:
            return "error"
        if ctx.exit is not None:
            return "exit"
        if ctx.proxied:
            return "service"
        return "error"

    @pdk("kong.response.get_source", log_override=response_source)
    def _(ctx: RequestContext) -> str:
        check_phase(ctx.phase, ph.RESPONSE_HEADER_BODY_LOG)
        return response_source(ctx)

    @pdk("kong.response.exit")
    def _(ctx: RequestContext, status: Any = None, body: Any = None, headers: Any = None) -> ExitSignal:
        check_phase(ctx.phase, ph.REWRITE_ACCESS_HEADER)
        if ctx.headers_sent:
            raise LuaError("headers have already been sent")
        if not isinstance(status, (int, float)) or isinstance(status, bool):
            raise LuaError("code must be a number")
        if status < 100 or status > 599:
            raise LuaError("code must be a number between 100 and 599")
        if body is not None and not isinstance(body, (str, bytes, dict, list)):
            raise LuaError("body must be a nil, string or table")
        if headers is not None and not isinstance(headers, dict):
            raise LuaError("headers must be a nil or table")
        for name, value in (headers or {}).items():
            _validate_header(name, value)
        record = build_exit(int(status), body, headers, source="kong.response.exit", phase=ctx.phase.name)
        return ExitSignal(record)

    @pdk("kong.response.error")
    def _(ctx: RequestContext, status: Any = None, message: Any = None, headers: Any = None) -> ExitSignal:
        check_phase(ctx.phase, ph.REWRITE_ACCESS_HEADER)
        if ctx.headers_sent:
            raise LuaError("headers have already been sent")
        if not isinstance(status, (int, float)) or isinstance(status, bool):
            raise LuaError("code must be a number")
        if status < 400 or status > 599:
            raise LuaError("code must be a number between 400 and 599")
        if isinstance(message, (dict, list)):
            message = cjson_encode(message)
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        if message is not None and not isinstance(message, str):
            raise LuaError("message must be a nil, a string or a table")
        if headers is not None and not isinstance(headers, dict):
            raise LuaError("headers must be a nil or table")
        record = kong_error_exit(
            ctx, int(status), message, headers, source="kong.response.error", phase=ctx.phase.name
        )
        return ExitSignal(record)

    # ----- kong.log -----

    def saved_serialize(ctx: RequestContext) -> bytes:
        # plugin.lua: cjson.encode(saved.serialize_data), bytes exactly as cjson made them
        return cjson_encode_raw(ctx.log_snapshot or {})

    @pdk("kong.log.serialize", log_override=saved_serialize)
    def _(ctx: RequestContext, *_args: Any) -> bytes:
        check_phase(ctx.phase, Phase.log)
        return saved_serialize(ctx)

    @pdk("kong.log.set_serialize_value")
    def _(ctx: RequestContext, key: Any = None, value: Any = None, options: Any = None) -> None:
        check_phase(ctx.phase, ph.PHASES_WITH_CTX)
        if not isinstance(key, str):
            raise LuaError("key must be a string")
        mode = (options or {}).get("mode", "set") if isinstance(options, dict) else "set"
        if mode not in ("set", "add", "replace"):
            raise LuaError("mode must be 'set', 'add' or 'replace'")
        with ctx.lock:
            ctx.serialize_values.append((key, value, mode))

    for level in ("debug", "info", "notice", "warn", "err", "crit", "alert", "emerg"):

        def log_at(ctx: RequestContext, *args: Any, _level: str = level) -> None:
            message = "".join(lua_tostring(a) for a in args)
            with ctx.lock:
                ctx.log_lines.append((ctx.phase.name, _level, message))
            if env.plugin_log is not None:
                env.plugin_log(ctx, _level, message)

        methods[f"kong.log.{level}"] = PdkMethod(f"kong.log.{level}", log_at)

    # ----- kong.client -----

    @pdk("kong.client.get_consumer")
    def _(ctx: RequestContext) -> dict[str, Any] | None:
        check_phase(ctx.phase, ph.AUTH_AND_LATER)
        return ctx.consumer

    @pdk("kong.client.get_credential")
    def _(ctx: RequestContext) -> dict[str, Any] | None:
        check_phase(ctx.phase, ph.AUTH_AND_LATER)
        return ctx.credential

    @pdk("kong.client.load_consumer")
    def _(ctx: RequestContext, consumer_id: Any = None, search_by_username: Any = None) -> Any:
        check_phase(ctx.phase, ph.AUTH_AND_LATER)
        if not isinstance(consumer_id, str):
            raise LuaError("consumer_id must be a string")
        return env.find_consumer(consumer_id, bool(search_by_username))

    @pdk("kong.client.get_ip")
    def _(ctx: RequestContext) -> str:
        check_not_phase(ctx.phase, Phase.init_worker)
        _require_request(ctx)
        return ctx.client_ip

    @pdk("kong.client.get_forwarded_ip")
    def _(ctx: RequestContext) -> str:
        check_not_phase(ctx.phase, Phase.init_worker)
        _require_request(ctx)
        return ctx.client_ip

    @pdk("kong.client.get_port")
    def _(ctx: RequestContext) -> int:
        check_not_phase(ctx.phase, Phase.init_worker)
        _require_request(ctx)
        return ctx.client_port

    @pdk("kong.client.get_forwarded_port")
    def _(ctx: RequestContext) -> int:
        check_not_phase(ctx.phase, Phase.init_worker)
        _require_request(ctx)
        return ctx.client_port

    # ----- kong.router -----

    @pdk("kong.router.get_route")
    def _(ctx: RequestContext) -> dict[str, Any] | None:
        check_phase(ctx.phase, ph.ROUTER_PHASES)
        return ctx.route

    @pdk("kong.router.get_service")
    def _(ctx: RequestContext) -> dict[str, Any] | None:
        check_phase(ctx.phase, ph.ROUTER_PHASES)
        return ctx.service

    # ----- kong.ctx.shared / kong.nginx (plugin.lua exposed_api: no phase check) -----

    @pdk("kong.ctx.shared.get")
    def _(ctx: RequestContext, key: Any = None) -> Any:
        with ctx.lock:
            return ctx.ctx_shared.get(key)

    @pdk("kong.ctx.shared.set")
    def _(ctx: RequestContext, key: Any = None, value: Any = None) -> None:
        with ctx.lock:
            if value is None:
                ctx.ctx_shared.pop(key, None)
            else:
                ctx.ctx_shared[key] = value

    @pdk("kong.nginx.get_ctx")
    def _(ctx: RequestContext, key: Any = None) -> Any:
        if key == "buffered_proxying":
            # Kong keeps the flag in ngx.ctx itself (kong/pdk/service/request.lua enable_buffering);
            # the log timer reads the clone plugin.lua saved: true, or nil once cleared.
            return True if ctx.buffered_proxying else None
        with ctx.lock:
            return ctx.ngx_ctx.get(key)

    @pdk("kong.nginx.set_ctx")
    def _(ctx: RequestContext, key: Any = None, value: Any = None) -> None:
        with ctx.lock:
            ctx.ngx_ctx[key] = value

    @pdk("kong.nginx.get_subsystem")
    def _(ctx: RequestContext) -> str:
        return "http"

    @pdk("kong.nginx.req_start_time")
    def _(ctx: RequestContext) -> float:
        return ctx.started_at_ms / 1000.0

    @pdk("kong.nginx.get_var")
    def _(ctx: RequestContext, name: Any = None) -> Any:
        _require_request(ctx)
        variables = {
            "request_uri": ctx.request_uri,
            "uri": ctx.raw_path,
            "args": ctx.raw_query or None,
            "host": ctx.host,
            "scheme": ctx.scheme,
            "server_port": str(ctx.server_port),
            "remote_addr": ctx.client_ip,
            "remote_port": str(ctx.client_port),
            "request_method": ctx.method,
            "kong_request_id": ctx.request_id,
            "upstream_uri": ctx.upstream_uri or None,
        }
        return variables.get(str(name))

    # ----- kong.node -----

    @pdk("kong.node.get_hostname")
    def _(ctx: RequestContext) -> str:
        return env.hostname

    @pdk("kong.node.get_id")
    def _(ctx: RequestContext) -> str:
        return env.node_id

    return methods


def kong_error_exit(
    ctx: RequestContext,
    status: int,
    message: str | None,
    headers: dict[str, Any] | None,
    *,
    source: str,
    phase: str | None,
) -> ExitRecord:
    """kong.response.error(): negotiate the type from Accept, fill Kong's template."""
    headers = dict(headers or {})
    content_type_value = headers.get("Content-Type")
    if isinstance(content_type_value, list):
        content_type_value = content_type_value[0] if content_type_value else None
    content_type = content_type_value or response_type_for_accept(ctx.headers.first("accept"))
    headers["Content-Type"] = content_type
    text = message if message is not None else HTTP_ERROR_MESSAGES.get(
        status, f"The upstream server responded with {status}"
    )
    body = error_body(content_type, text, ctx.request_id)
    return build_exit(status, body, headers, source=source, phase=phase)
