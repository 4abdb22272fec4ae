"""Tables as the console shows and downloads them: one definition, an HTML table and a CSV file.

A page builds :class:`Table` objects; the template draws them and
``?download=<name>`` answers the same rows as CSV, so a download can never
hold more (or other) rows than the page it came from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# kind: how a cell is drawn; money cells hold the report's own text (cents, e.g. "-12.30")
KINDS = ("text", "money", "int", "pct", "code", "bool", "list")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"
    link: str = ""  # name of the row field holding this cell's link (drill-down, team page)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}")


@dataclass
class Table:
    name: str
    title: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    caption: str = ""
    empty: str = "Nothing in this view."
    footer: Mapping[str, Any] | None = None  # a totals row (same keys)
    notes: list[str] = field(default_factory=list)
    shown: int = 500  # rows drawn in the page; the CSV always has every row

    @property
    def visible(self) -> Sequence[Mapping[str, Any]]:
        return self.rows[: self.shown]


def cell_text(value: Any) -> str:
    """Plain text of a value, for CSV (exact: Decimal as written, never a float)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # Exact; trailing zeros past the cents dropped (Decimal(38, 18) costs carry eighteen).
        text = format(value, "f")
        if "." in text:
            whole, fraction = text.split(".")
            fraction = fraction.rstrip("0").ljust(2, "0")
            text = f"{whole}.{fraction}"
        return text
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return "; ".join(cell_text(v) for v in value)
    return str(value)


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.key for c in table.columns])
    for row in table.rows:
        writer.writerow([_safe(cell_text(row.get(c.key))) for c in table.columns])
    if table.footer:
        writer.writerow([_safe(cell_text(table.footer.get(c.key))) for c in table.columns])
    return out.getvalue()


def _safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @ ...) is quoted with a leading apostrophe.

    Names come from request tags and headers: they must not execute in finance's
    spreadsheet. Numbers (money '-12.30' included) are left as they are.
    """
    if text and text[0] in "=+-@\t\r" and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return text.strip() == text
