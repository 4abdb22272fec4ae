"""Small re-implementations of how Kong/OpenResty shape values.

cjson encoding quirks, ngx query-string decoding, Kong's URI normalization and
Lua's first-return-value rule all change what a Python plugin observes, so
they live here, written from the behaviour documented in Kong's sources.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import msgpack

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
    """Encode like lua-cjson with Kong's defaults, as text (for values that are valid UTF-8).

    See :func:`cjson_encode_raw`; bytes that are not UTF-8 become U+FFFD here.
    """
    return cjson_encode_raw(value).decode("utf-8", errors="replace")


_CJSON_ESCAPE = re.compile(rb'[\x00-\x1f"\\/\x7f]')
_CJSON_SHORT = {b'"': b'\\"', b"\\": b"\\\\", b"/": b"\\/", b"\b": b"\\b", b"\f": b"\\f",
                b"\n": b"\\n", b"\r": b"\\r", b"\t": b"\\t"}  # fmt: skip


def _cjson_string(raw: bytes) -> bytes:
    def escape(match: re.Match[bytes]) -> bytes:
        char = match.group(0)
        return _CJSON_SHORT.get(char) or b"\\u%04x" % char[0]

    return b'"' + _CJSON_ESCAPE.sub(escape, raw) + b'"'


def cjson_encode_raw(value: Any) -> bytes:
    """Encode like lua-cjson with Kong's defaults, as the bytes Kong would produce.

    - an empty table encodes as `{}` (a plain Lua table cannot remember it was
      meant to be an array) unless it carries array_mt (`LuaArray`);
    - '/' is escaped as '\\/';
    - integral numbers have no fractional part;
    - strings are byte strings: cjson copies bytes >= 0x80 through unchanged, so a
      header holding a Latin-1 byte makes the output invalid UTF-8
      (lua-cjson strbuf escaping; Kong's serialize() is then sent as it is).
      `bytes` values stand for such wire strings; `str` values are UTF-8.

    Keys are strings or numbers, as lua-cjson allows. Most values take a fast
    path through the C json encoder; it gives up, leaving them to the exact
    encoder below, on anything whose bytes could differ (an empty or Lua array,
    a `bytes` value, an integral float, a lone surrogate). Kong's cjson is C,
    and the plugin bench times requests next to this encoder in one process.
    """
    fast = _cjson_encode_fast(value)
    return fast if fast is not None else _cjson_encode_exact(value)


_INTEGRAL_FLOAT = re.compile(r"(?:^|[:\[,])-?\d+\.0(?:[,\]}]|$)")  # a number token like 3.0 (Python's repr of one)


def _reject(_: Any) -> Any:
    raise TypeError


def _cjson_encode_fast(value: Any) -> bytes | None:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_reject)
    except (TypeError, ValueError):
        return None
    if "[]" in text or _INTEGRAL_FLOAT.search(text):
        return None  # an empty table ({} or, with array_mt, []), an integral float; inside a string: only slower
    try:
        return text.replace("/", "\\/").replace("\x7f", "\\u007f").encode("utf-8")
    except UnicodeEncodeError:
        return None


def _cjson_encode_exact(value: Any) -> bytes:
    if isinstance(value, LuaArray):
        return b"[" + b",".join(_cjson_encode_exact(v) for v in value) + b"]"
    if isinstance(value, (list, tuple)):
        if not value:
            return b"{}"
        return b"[" + b",".join(_cjson_encode_exact(v) for v in value) + b"]"
    if isinstance(value, dict):
        items = (_cjson_string(_key_bytes(k)) + b":" + _cjson_encode_exact(v) for k, v in value.items())
        return b"{" + b",".join(items) + b"}"
    if isinstance(value, bytes):
        return _cjson_string(value)
    if isinstance(value, str):
        return _cjson_string(value.encode("utf-8"))
    return json.dumps(lua_number(value), allow_nan=False).encode()


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")


def wire_bytes(text: str) -> bytes | str:
    """A string as nginx holds it: header values and request lines are bytes.

    Python's http.server decodes them as Latin-1 (one char per byte), so encoding
    back to Latin-1 gives the exact bytes the client sent. ASCII stays `str`.
    """
    if text.isascii():
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")  # set by a plugin as UTF-8 text


@dataclass(frozen=True)
class LuaBinary:
    """A value mp_rpc.lua wraps with fix_raw: it travels as msgpack bin, not str."""

    data: bytes


_STR_PACKER = msgpack.Packer(use_bin_type=False)  # lua-MessagePack: every Lua string is a str
_BIN_PACKER = msgpack.Packer(use_bin_type=True)


def lua_packb(value: Any) -> bytes:
    """msgpack as lua-MessagePack packs Kong's values (kong/runloop/plugin_servers/rpc/mp_rpc.lua).

    Lua strings are byte strings and go out as msgpack *str* whatever their bytes
    (`bytes` here), so a receiver decoding str as UTF-8 can fail on them; only
    values wrapped by fix_raw (`LuaBinary`) go out as *bin*.
    """
    if isinstance(value, LuaBinary):
        return _BIN_PACKER.pack(value.data)
    if isinstance(value, dict):
        return _STR_PACKER.pack_map_header(len(value)) + b"".join(lua_packb(k) + lua_packb(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return _STR_PACKER.pack_array_header(len(value)) + b"".join(lua_packb(v) for v in value)
    return _STR_PACKER.pack(value)


# lua-cjson (openresty/lua-cjson, the decoder Kong's kong/tools/cjson.lua wraps in
# cjson.safe): escapes are read in order, and a \\u escape of a surrogate must be a high
# one followed at once by a low one, or decoding fails.
_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
CJSON_DECODE_MAX_DEPTH = 1000  # lua-cjson's default; Kong does not change it
# Python's json and msgpack count nesting against the recursion limit (1000 by default):
# without room above cjson's depth the harness would refuse bodies Kong decodes.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * CJSON_DECODE_MAX_DEPTH))


class CjsonDecodeError(ValueError):
    """cjson.safe.decode returned nil (and an error Kong's get_body drops)."""


def cjson_decode(raw: bytes) -> Any:
    """cjson.safe.decode as Kong runs it, in the shapes lua-MessagePack then sends.

    - bytes that are not UTF-8 pass through inside strings (they come back as
      `bytes`, which :func:`lua_packb` sends as msgpack str, like Lua would);
    - an unpaired surrogate escape, nesting deeper than 1000, or trailing text fail;
    - raw control characters inside strings are accepted;
    - JSON null is cjson.null, which mp_rpc packs as nil (None); an empty object or
      array is an empty Lua table, which lua-MessagePack packs as an empty array;
      integral numbers travel as integers (:func:`lua_number`).
    """
    text = raw.decode("utf-8", errors="surrogateescape")
    if "\\u" in text:
        _check_surrogate_escapes(text)
    try:
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        raise CjsonDecodeError(str(exc)) from None
    # Each level opens a bracket: fewer brackets than the limit cannot nest past it.
    if text.count("[") + text.count("{") > CJSON_DECODE_MAX_DEPTH and _depth(value) > CJSON_DECODE_MAX_DEPTH:
        raise CjsonDecodeError(f"found too many nested data structures ({CJSON_DECODE_MAX_DEPTH + 1})")
    return _lua_shape(value)


def _check_surrogate_escapes(text: str) -> None:
    escapes = list(_JSON_ESCAPE.finditer(text))
    for i, match in enumerate(escapes):
        code = int(match.group(1), 16) if match.group(1) else None
        if code is None or not 0xD800 <= code <= 0xDFFF:
            continue
        follower = escapes[i + 1] if i + 1 < len(escapes) else None
        paired_low = (follower is not None and follower.start() == match.end() and follower.group(1) is not None
                      and 0xDC00 <= int(follower.group(1), 16) <= 0xDFFF)  # fmt: skip
        previous = escapes[i - 1] if i else None
        is_low_of_pair = (previous is not None and previous.end() == match.start() and previous.group(1) is not None
                          and 0xD800 <= int(previous.group(1), 16) <= 0xDBFF)  # fmt: skip
        if not ((code <= 0xDBFF and paired_low) or (code >= 0xDC00 and is_low_of_pair)):
            raise CjsonDecodeError("invalid unicode escape")


def _depth(value: Any) -> int:
    """Nesting as lua-cjson counts it (json_decode_descend): each object or array is one level."""
    depth, level = 0, [value]
    while True:
        containers = [c for c in level if isinstance(c, (dict, list))]
        if not containers:
            return depth
        depth += 1
        level = [v for c in containers for v in (c.values() if isinstance(c, dict) else c)]


def _lua_shape(value: Any) -> Any:
    if isinstance(value, str):
        if value.isascii():
            return value
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw  # not UTF-8: a Lua string keeps the bytes
    if isinstance(value, dict):
        return {_lua_shape(k): _lua_shape(v) for k, v in value.items()} if value else []
    if isinstance(value, list):
        return [_lua_shape(v) for v in value]
    return lua_number(value)


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
