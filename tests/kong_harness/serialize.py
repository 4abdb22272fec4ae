"""The table kong.log.serialize() returns, built from what really happened.

Layout from kong/pdk/log.lua (`serialize` for the http subsystem) and the
dotted-path merge of `kong.log.set_serialize_value` (`edit_result`).
"""

from __future__ import annotations

import copy
from typing import Any

from .context import RequestContext
from .errors import LuaError
from .luaisms import decode_query, lua_number, wire_bytes

REDACTED = "REDACTED"


def build_serialize(ctx: RequestContext) -> dict[str, Any]:
    """Kong's serialize() at the start of the log phase, as a plain dict."""
    # Header values are nginx's bytes: cjson copies them as they are (invalid UTF-8 included).
    request_headers = ctx.headers.wire_lua_table()
    for secret in ("authorization", "proxy-authorization"):
        if secret in request_headers:
            request_headers[secret] = REDACTED

    upstream_uri = ctx.upstream_uri
    if upstream_uri and "?" not in upstream_uri and ctx.has_query_marker:
        upstream_uri = f"{upstream_uri}?{ctx.raw_query}"

    started = ctx.started_at_ms
    finished = ctx.finished_ms or ctx.now_ms()
    if ctx.proxied and ctx.balancer_ended_ms is not None:
        kong_latency = ctx.balancer_ended_ms - started
    elif ctx.access_ended_ms is not None:
        kong_latency = ctx.access_ended_ms - started
    else:
        kong_latency = 0
    proxy_latency = -1
    if ctx.response_start_ms is not None and ctx.balancer_ended_ms is not None:
        proxy_latency = ctx.response_start_ms - ctx.balancer_ended_ms
    receive = 0
    if ctx.body_ended_ms is not None and ctx.response_start_ms is not None:
        receive = ctx.body_ended_ms - ctx.response_start_ms

    root: dict[str, Any] = {
        "request": {
            "id": ctx.request_id,
            "uri": wire_bytes(ctx.request_uri),
            "url": wire_bytes(ctx.url),
            "querystring": decode_query(ctx.raw_query),
            "method": ctx.method,
            "headers": request_headers,
            "size": ctx.request_length,
        },
        "upstream_uri": upstream_uri,
        # $upstream_status is a string ("200"); "" when nothing was proxied.
        "upstream_status": str(ctx.upstream_status) if ctx.upstream_status is not None else "",
        "response": {
            "status": ctx.response_status,
            "headers": ctx.response_headers.wire_lua_table(),
            "size": ctx.bytes_sent,
        },
        "latencies": {
            "kong": round(kong_latency),
            "proxy": round(proxy_latency),
            "request": round(finished - started),
            "receive": round(receive),
        },
        "client_ip": ctx.client_ip,
        "started_at": lua_number(ctx.started_at_ms),
        "workspace": ctx.workspace_id,
        "workspace_name": ctx.workspace_name,
    }
    if ctx.kong_version >= (3, 8):
        root["source"] = _source_name(ctx)  # added to serialize() in Kong 3.8 (Kong/kong#13177)
    # Absent (nil) rather than null when Kong has nothing to put there.
    if ctx.tries:
        root["tries"] = copy.deepcopy(ctx.tries)
    if ctx.credential is not None:
        root["authenticated_entity"] = {
            "id": ctx.credential["id"],
            "consumer_id": ctx.credential.get("consumer", {}).get("id") or (ctx.consumer or {}).get("id"),
        }
    if ctx.route is not None:
        root["route"] = copy.deepcopy(ctx.route)
    if ctx.service is not None:
        root["service"] = copy.deepcopy(ctx.service)
    if ctx.consumer is not None:
        root["consumer"] = copy.deepcopy(ctx.consumer)
    return apply_serialize_values(root, list(ctx.serialize_values))


def _source_name(ctx: RequestContext) -> str:
    # constants.RESPONSE_SOURCE.NAMES
    if ctx.kong_unexpected or ctx.exit is not None or not ctx.proxied:
        return "kong"
    return "upstream"


def _split_key(key: str) -> list[str]:
    # Dots separate levels; a backslash-escaped dot ("a\.b") stays in the name.
    parts, current, i = [], [], 0
    while i < len(key):
        if key[i] == "\\" and i + 1 < len(key) and key[i + 1] == ".":
            current.append(".")
            i += 2
            continue
        if key[i] == "." and i > 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(key[i])
        i += 1
    parts.append("".join(current))
    return parts


def apply_serialize_values(root: dict[str, Any], values: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """log.lua edit_result: modes set / add (only if absent) / replace (only if present)."""
    for key, value, mode in values:
        parts = _split_key(key)
        node: Any = root
        for sub in parts[:-1]:
            if sub not in node or node[sub] is None:
                if mode in ("set", "add"):
                    node[sub] = {}
                else:
                    node = None
                    break
            elif not isinstance(node[sub], dict):
                raise LuaError(
                    f"The key '{key}' could not be used as a serialize value. "
                    f"Subkey '{sub}' is not a table. It's {node[sub]}"
                )
            node = node[sub]
        if isinstance(node, dict):
            last = parts[-1]
            exists = node.get(last) is not None
            if mode == "set" or (mode == "add" and not exists) or (mode == "replace" and exists):
                if value is None:
                    node.pop(last, None)
                else:
                    node[last] = copy.deepcopy(value)
    return root
