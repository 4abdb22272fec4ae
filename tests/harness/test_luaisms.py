"""The harness's cjson encoder: its fast path writes exactly the bytes of the exact one, or steps aside."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from kong_harness import luaisms
from kong_harness.luaisms import LuaArray

_ALPHABET = string.printable + "/\x7f\x00\x1f\"\\é日😀\u2028"


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(11 if depth < 4 else 7)
    if kind == 0:
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(12)))
    if kind == 1:
        return rng.choice([0, 1, -7, 2**40, 2**60])
    if kind == 2:
        return rng.choice([0.5, -2.25, 1.0, -3.0, 1e16, 1e-7, 123456789.0, 0.1 + 0.2])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.choice([b"caf\xe9", b"plain", b"a/b", b""])
    if kind == 5:
        return "lone \udc80 surrogate"
    if kind == 6:
        return rng.choice(["1.0 in text", "[] in text", "a/b"])
    if kind == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8:
        return LuaArray(_random_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    keys = ["id", "uri", "a/b", "é", "1", "x\x7f"]
    return {rng.choice(keys) + str(i): _random_value(rng, depth + 1) for i in range(rng.randrange(5))}


def _exact(value: Any) -> bytes | None:
    try:
        return luaisms._cjson_encode_exact(value)
    except (ValueError, TypeError):
        return None


@pytest.mark.parametrize("seed", range(8))
def test_the_fast_encoder_writes_the_exact_encoders_bytes_or_steps_aside(seed: int) -> None:
    rng = random.Random(seed)
    took_fast = 0
    for _ in range(2000):
        value = _random_value(rng)
        fast = luaisms._cjson_encode_fast(value)
        if fast is not None:
            took_fast += 1
            assert fast == _exact(value), value
    assert took_fast > 200  # the fast path is really taken


def test_a_serialize_shaped_table_takes_the_fast_path() -> None:
    snapshot = {"request": {"id": "r1", "uri": "/llm/v1/chat", "headers": {"host": "kong", "user-agent": "x/1"},
                            "size": 321, "querystring": {}},
                "latencies": {"request": 12, "proxy": 10, "kong": 1.5}, "tries": [{"ip": "127.0.0.1", "port": 80}]}
    fast = luaisms._cjson_encode_fast(snapshot)
    assert fast is not None and fast == luaisms._cjson_encode_exact(snapshot)
    assert b'"\\/llm\\/v1\\/chat"' in fast
    snapshot["tries"] = []  # an empty Lua table is {} to cjson: the exact path writes it
    assert luaisms._cjson_encode_fast(snapshot) is None
    assert b'"tries":{}' in luaisms.cjson_encode_raw(snapshot)
