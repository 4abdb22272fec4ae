"""Printing check results as a table (people), CSV (spreadsheets) or JSON (tools).

A :class:`Report` is a verdict plus one or more sections of rows. Money stays
exact: Decimal is printed as a decimal string in every format, never a float.
The table shows a section's ``table_columns`` (the ones that fit a terminal);
CSV and JSON carry every column.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

FORMATS = ("table", "csv", "json")
MAX_CELL_CHARS = 60
MONEY_DECIMALS = 6


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    columns: Sequence[str]
    rows: Sequence[Mapping[str, Any]]
    table_columns: Sequence[str] | None = None
    empty_text: str = "(none)"


@dataclass(frozen=True)
class Report:
    title: str
    ok: bool
    verdict: str
    reasons: Sequence[str]
    sections: Sequence[Section]
    notes: Sequence[str] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


def render(report: Report, fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        _json(report, out)
    elif fmt == "csv":
        _csv(report, out)
    elif fmt == "table":
        _table(report, out)
    else:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def plain(value: Any) -> Any:
    """JSON-safe value: Decimal as an exact string, times as ISO 8601."""
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f").rstrip("0")
    return text.rstrip(".") if "." in text else text


def _json(report: Report, out: IO[str]) -> None:
    payload = {
        "title": report.title,
        "ok": report.ok,
        "verdict": report.verdict,
        "reasons": list(report.reasons),
        **{k: plain(v) for k, v in report.meta.items()},
        "sections": {s.name: [{c: plain(row.get(c)) for c in s.columns} for row in s.rows] for s in report.sections},
        "notes": list(report.notes),
    }
    json.dump(payload, out, indent=2)
    out.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "; ".join(_cell(v) for v in value)
    return str(value)


def _csv(report: Report, out: IO[str]) -> None:
    multiple = len(report.sections) > 1
    for index, section in enumerate(report.sections):
        if multiple:
            if index:
                out.write("\n")
            out.write(f"# {section.name}\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(section.columns)
        for row in section.rows:
            writer.writerow([_cell(row.get(c)) for c in section.columns])


def _table_cell(value: Any, *, last: bool = False) -> str:
    """A cell for the terminal; only the last column may run long (it wraps without breaking the grid)."""
    if isinstance(value, Decimal):
        value = value.quantize(Decimal(1).scaleb(-MONEY_DECIMALS)) if value.as_tuple().exponent < -MONEY_DECIMALS else value  # type: ignore[operator]
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    text = "-" if value is None else _cell(value)
    return text if last or len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _table(report: Report, out: IO[str]) -> None:
    out.write(f"{report.title}\n")
    period = report.meta.get("period")
    if period:
        out.write(f"period: {period}\n")
    out.write(f"verdict: {report.verdict.upper() if not report.ok else report.verdict}\n")
    for reason in report.reasons:
        out.write(f"  - {reason}\n")
    for section in report.sections:
        out.write(f"\n{section.title}\n")
        columns = list(section.table_columns or section.columns)
        if not section.rows:
            out.write(f"  {section.empty_text}\n")
            continue
        cells = [[_table_cell(row.get(c), last=i == len(columns) - 1) for i, c in enumerate(columns)] for row in section.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
        out.write("  " + "  ".join("-" * w for w in widths) + "\n")
        for r in cells:
            out.write("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    for note in report.notes:
        out.write(f"\nnote: {note}")
    if report.notes:
        out.write("\n")
