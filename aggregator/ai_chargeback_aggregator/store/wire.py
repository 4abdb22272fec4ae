"""JSON that keeps money and time exact: Decimal, datetime, date and UUID survive a round trip.

Plain JSON would turn Decimal into float (never acceptable for money) and
datetimes into ambiguous strings. Tagged values: {"$decimal": "1.25"},
{"$datetime": "2026-01-01T00:00:00+00:00"}, {"$date": "2026-01-01"},
{"$uuid": "..."}; lists, tuples and dicts are walked.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, text), = value.items()
            if tag == "$decimal":
                return Decimal(text)
            if tag == "$datetime":
                return datetime.fromisoformat(text)
            if tag == "$date":
                return date.fromisoformat(text)
            if tag == "$uuid":
                return uuid.UUID(text)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
