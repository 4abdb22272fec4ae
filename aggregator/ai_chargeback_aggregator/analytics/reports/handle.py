"""Drill-down handles: a report line's address, opaque on screen, exact to decode.

``cb1.<base64url(JSON)>`` holding the period and the line's filter. `chargeback
explain HANDLE` turns it back into the events behind that line. Versioned so
old handles in saved reports stay readable. A line of a filtered report (one
tenant, one team, a statement's app x model line) also carries the report's
filters (``w``), so its events are exactly the line's; handles without
filters encode as before.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

PREFIX = "cb1."


class HandleError(ValueError):
    pass


@dataclass(frozen=True)
class Handle:
    first: date
    last: date  # inclusive
    by: str
    key: str
    filters: tuple[tuple[str, str], ...] = ()  # (dimension, exact value), sorted

    @classmethod
    def of(cls, first: date, last: date, by: str, key: str, filters: Mapping[str, str] | None = None) -> Handle:
        return cls(first, last, by, key, tuple(sorted((str(k), str(v)) for k, v in (filters or {}).items())))

    def encode(self) -> str:
        data: dict[str, object] = {"f": self.first.isoformat(), "t": self.last.isoformat(), "b": self.by, "k": self.key}
        if self.filters:
            data["w"] = dict(self.filters)
        payload = json.dumps(data, separators=(",", ":"))
        return PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Handle:
        if not text.startswith(PREFIX):
            raise HandleError("not a drill-down handle (expected cb1.…)")
        body = text[len(PREFIX) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return cls.of(date.fromisoformat(data["f"]), date.fromisoformat(data["t"]), str(data["b"]), str(data["k"]), data.get("w"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HandleError(f"damaged drill-down handle: {exc}") from exc
