"""Small re-implementations of how Kong/OpenResty shape values.

cjson encoding quirks, ngx query-string decoding, Kong's URI normalization and
Lua's first-return-value rule all change what a Python plugin observes, so
they live here, written from the behaviour documented in Kong's sources.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_plus

# kong/tools/uri.lua: reserved characters stay percent-encoded when normalizing.
_RESERVED = set(b"!*'();:@&=+$,/?%#[]")


def lua_number(value: Any) -> Any:
    """LuaJIT numbers are doubles; cjson and lua-MessagePack write integral
    ones as integers. Convert recursively so Python output matches."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == math.floor(value) and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: lua_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [lua_number(v) for v in value]
    return value


class LuaArray(list):  # type: ignore[type-arg]
    """A list that carries cjson.array_mt in Kong (schema arrays, defaults),
    so it still encodes as `[]` when empty."""


def cjson_encode(value: Any) -> str:
    """Encode like lua-cjson with Kong's defaults.

    - an empty table encodes as `{}` (a plain Lua table cannot remember it was
      meant to be an array) unless it carries array_mt (`LuaArray`);
    - '/' is escaped as '\\/';
    - integral numbers have no fractional part; non-ASCII is left as UTF-8.
    """

    def convert(v: Any) -> Any:
        if isinstance(v, LuaArray):
            return [convert(x) for x in v]
        if isinstance(v, (list, tuple)):
            return {} if len(v) == 0 else [convert(x) for x in v]
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        return lua_number(v)

    text = json.dumps(convert(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("/", "\\/")


def decode_query(query: str, max_args: int = 100) -> dict[str, Any]:
    """ngx.req.get_uri_args(): `a=1&a=2&flag&e=` -> {a: ["1","2"], flag: True, e: ""}."""
    out: dict[str, Any] = {}
    count = 0
    for part in query.split("&"):
        if not part:
            continue
        if count >= max_args:
            break
        count += 1
        if "=" in part:
            raw_key, raw_value = part.split("=", 1)
            value: Any = unquote_plus(raw_value, errors="replace")
        else:
            raw_key, value = part, True
        key = unquote_plus(raw_key, errors="replace")
        if not key:
            continue
        if key in out:
            previous = out[key]
            out[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            out[key] = value
    return out


def fix_mmap(table: dict[str, Any]) -> dict[str, Any]:
    """mp_rpc.lua fix_mmap: `true` -> [], "x" -> ["x"], lists unchanged."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if value is True:
            out[key] = []
        elif isinstance(value, str):
            out[key] = [value]
        else:
            out[key] = value
    return out


def normalize_path(uri: str, merge_slashes: bool = True) -> str:
    """kong.tools.uri.normalize: decode unreserved %XX, upper-case the rest,
    resolve dot segments, optionally merge duplicate slashes."""
    if uri in ("", "/"):
        return uri
    if "%" in uri:
        uri = _decode_unreserved(uri)
    if "." not in uri and (not merge_slashes or "//" not in uri):
        return uri

    output: list[str] = []
    while uri:
        if uri == "/.":
            uri = "/"
        elif uri == "/..":
            uri = "/"
            if output:
                output.pop()
        elif uri in (".", ".."):
            uri = ""
        elif uri.startswith("../"):
            uri = uri[3:]
        elif uri.startswith("./"):
            uri = uri[2:]
        elif uri.startswith("/./"):
            uri = uri[2:]
        elif uri.startswith("/../"):
            uri = uri[3:]
            if output:
                output.pop()
        elif merge_slashes and uri.startswith("//"):
            uri = uri[1:]
        else:
            idx = uri.find("/", 1)
            if idx >= 0:
                output.append(uri[:idx])
                uri = uri[idx:]
            else:
                output.append(uri)
                uri = ""
    return "".join(output)


def _decode_unreserved(uri: str) -> str:
    out = []
    i = 0
    while i < len(uri):
        ch = uri[i]
        hex_digits = uri[i + 1 : i + 3]
        if ch == "%" and len(hex_digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in hex_digits):
            byte = int(hex_digits, 16)
            if byte in _RESERVED:
                out.append("%" + hex_digits.upper())
            else:
                out.append(chr(byte))
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def lua_tostring(value: Any) -> str:
    """tostring() as kong.log would apply it to each argument."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(lua_number(value))
    if isinstance(value, (dict, list)):
        return f"table: 0x{id(value):08x}"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
