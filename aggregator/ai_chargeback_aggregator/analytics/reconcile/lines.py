"""The common shape every provider export is parsed into, and small value helpers.

Token rule, the gateway's (migration 0001): ``input_tokens`` includes cached
and cache-write input; ``output_tokens`` includes reasoning. A parser whose
export splits input differently (Anthropic: uncached + cache reads + cache
writes) adds the parts up, so both sides count the same thing. ``None`` means
the export does not say, which is not the same as zero.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


class ExportError(Exception):
    """A provider export could not be read or is not a format we know."""


@dataclass(frozen=True, slots=True)
class BillLine:
    """Usage and/or cost of one day x provider x model (x account) as the provider billed it."""

    day: date
    provider: str
    model: str  # as the export names it; '' when the export has no model
    account: str = ""  # provider api key id, project id or workspace id ('' = not in the export)
    account_kind: str = ""  # api_key_id | project_id | workspace_id
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    output_tokens: int | None = None
    # Tokens an export counts without saying input or output (some FOCUS rows).
    other_tokens: int | None = None
    requests: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"

    @property
    def total_tokens(self) -> int | None:
        parts = [self.input_tokens, self.output_tokens, self.other_tokens]
        return None if all(p is None for p in parts) else sum(p or 0 for p in parts)


@dataclass(frozen=True, slots=True)
class ProviderExport:
    """What one export file held."""

    format: str
    path: str
    lines: tuple[BillLine, ...]
    # The provider a single-provider export is about, even when it holds no line
    # (a usage export of quiet days still says "nothing was billed").
    provider: str = ""
    # [first day, last day exclusive) the export covers, when it says so
    # (usage APIs return empty buckets for quiet days; a CSV only has the days with rows).
    coverage: tuple[date, date] | None = None
    has_cost: bool = False
    has_tokens: bool = False
    notes: tuple[str, ...] = ()


def as_int(value: Any) -> int | None:
    """Export counts: ints, '10', '10.0', 10.0 (spreadsheet round trips); '' / None -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ExportError(f"expected a count, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation as exc:
        raise ExportError(f"expected a count, got {value!r}") from exc
    if number != number.to_integral_value():
        raise ExportError(f"expected a whole count, got {value!r}")
    return int(number)


def as_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ExportError(f"expected an amount, got {value!r}") from exc


def as_day(value: Any) -> date:
    """A UTC day from unix seconds, an ISO date or an ISO timestamp (any offset -> UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(value), tz=UTC).date()
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00").replace(" ", "T", 1)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                return date.fromisoformat(text[:10])
            except ValueError as exc:
                raise ExportError(f"expected a date, got {value!r}") from exc
        return as_day(parsed)
    raise ExportError(f"expected a date, got {value!r}")


def add(a: int | None, b: int | None) -> int | None:
    return a if b is None else (b if a is None else a + b)


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def csv_rows(data: bytes) -> Iterator[dict[str, str]]:
    """Rows of a CSV (or TSV) export as dicts; BOM and delimiter handled."""
    body = data.decode("utf-8-sig")
    first = body.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    for row in csv.DictReader(io.StringIO(body), delimiter=delimiter):
        yield {(k or "").strip(): (v or "").strip() for k, v in row.items()}


def csv_header(data: bytes) -> set[str]:
    first = data.decode("utf-8-sig", errors="replace").split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    return {c.strip().strip('"') for c in first.split(delimiter)}


def first(row: Mapping[str, Any], *names: str) -> Any:
    """The first present, non-empty value among column names (exports rename columns)."""
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return value
    return None
