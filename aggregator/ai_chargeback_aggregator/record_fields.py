"""Fields of the definition files people write (price overrides, budgets): one reading of each.

Each parser appends a sentence to ``errors`` instead of raising, so a file is
refused once with every problem in it.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def parse_date(value: Any, name: str, errors: list[str], *, required: bool, zone: str) -> date | None:
    """A calendar day, from YAML's date or ISO text; ``zone`` says whose days (shown when it is missing)."""
    if value is None or value == "":
        if required:
            errors.append(f"{name}: required (YYYY-MM-DD, {zone})")
        return None
    if isinstance(value, datetime):  # YAML reads 2026-01-01T00:00:00 as a time: a day was meant, say so
        errors.append(f"{name}: a date (YYYY-MM-DD), not a time")
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        errors.append(f"{name}: not a date (YYYY-MM-DD)")
        return None


def parse_decimal(value: Any, name: str, errors: list[str]) -> Decimal | None:
    """An exact, finite number (None when absent); ``1_000`` reads as 1000."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        errors.append(f"{name}: not a number")
        return None
    try:
        # repr of a float is its shortest round-trip text: 0.1 -> Decimal("0.1"), not 0.1000000000000000055...
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip().replace("_", ""))
    except InvalidOperation:
        errors.append(f"{name}: not a number, got {value!r}")
        return None
    if not number.is_finite():
        errors.append(f"{name}: not a finite number")
        return None
    return number
