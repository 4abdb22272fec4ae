"""Coercing provider JSON values into counts, once, with the same rules everywhere.

A count is a non-negative integer. JSON gives us ints, sometimes integral floats
(Cohere's SDK types them as float), and on bad days strings, booleans, negatives
or huge numbers. :func:`count` keeps the good ones and reports the bad ones as
``None`` so "the provider did not say" never silently becomes 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Anything above this is not a real token count (and would overflow UInt64 maths downstream).
MAX_COUNT = 1 << 53


class Invalid:
    """Sentinel-ish flag holder: adapters set ``bad = True`` when a present value was rejected."""

    __slots__ = ("bad",)

    def __init__(self) -> None:
        self.bad = False


def count(value: Any, flag: Invalid | None = None) -> int | None:
    """A token count from a JSON value; None when absent or unusable (and ``flag.bad`` set if present-but-bad)."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_COUNT:
        return int(value)
    if flag is not None:
        flag.bad = True
    return None


def header_count(value: Any, flag: Invalid | None = None) -> int | None:
    """A count from an HTTP header value (decimal digits only)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        if value is None:
            return None
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) <= 16:
        return count(int(text), flag)
    if flag is not None:
        flag.bad = True
    return None


def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty mapping (so chained .get() never raises)."""
    return value if isinstance(value, Mapping) else _EMPTY


def text(value: Any) -> str:
    """``value`` when it is a non-empty string, else ""."""
    return value if isinstance(value, str) else ""


def add(*values: int | None) -> int | None:
    """Sum that keeps "missing" apart from zero: None only when every part is None."""
    total = None
    for v in values:
        if v is not None:
            total = v if total is None else total + v
    return total


_EMPTY: Mapping[str, Any] = {}


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """A JSON object from raw bytes; None for anything else (malformed, not UTF-8, too deep, not an object)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
