"""Drill-down handles: a report line's address, opaque on screen, exact to decode.

``cb1.<base64url(JSON)>`` holding the period and the line's filter. `chargeback
explain HANDLE` turns it back into the events behind that line. Versioned so
old handles in saved reports stay readable.
"""

from __future__ import annotations

import base64
import json
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

    def encode(self) -> str:
        payload = json.dumps({"f": self.first.isoformat(), "t": self.last.isoformat(), "b": self.by, "k": self.key}, separators=(",", ":"))
        return PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Handle:
        if not text.startswith(PREFIX):
            raise HandleError("not a drill-down handle (expected cb1.…)")
        body = text[len(PREFIX) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return cls(date.fromisoformat(data["f"]), date.fromisoformat(data["t"]), str(data["b"]), str(data["k"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HandleError(f"damaged drill-down handle: {exc}") from exc
