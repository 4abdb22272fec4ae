"""What every governance check shares: the period, the query runner, the SQL loader, the result.

A check is a frozen dataclass of parameters that renders one ``(sql, params)``
pair from ``governance/sql/<name>.sql``, always with bound parameters, and
turns the rows it gets back into a :class:`CheckResult`. Nothing here knows
how the rows are printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Protocol

DEFAULT_DATABASE = "chargeback"
DEFAULT_PERIOD_DAYS = 30
# One query per file, shipped inside this package (governance/sql/), read as a package resource.
SQL_DIR = resources.files(__package__).joinpath("sql")
# A query file starts with a comment header (purpose, parameters, columns);
# the same placeholders ClickHouse binds appear as {name:Type}.
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Row = dict[str, Any]


class GovernanceError(Exception):
    """A check was given parameters it cannot run with."""


class Runner(Protocol):
    """Anything that runs one read-only parameterized query (``Store`` is one)."""

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]: ...


@cache
def load_sql(name: str) -> str:
    """The text of ``governance/sql/<name>.sql``."""
    path = SQL_DIR.joinpath(f"{name}.sql")
    if not path.is_file():
        raise GovernanceError(f"no governance query named {name!r}")
    return path.read_text(encoding="utf-8")


def sql_parameters(sql: str) -> set[str]:
    """Names of the bound parameters a query uses (tests check render() supplies exactly these)."""
    return set(_PARAMETER.findall(sql))


@dataclass(frozen=True, slots=True)
class Period:
    """A UTC time range, start inclusive, end exclusive."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if value.tzinfo is None:
                raise GovernanceError("period bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise GovernanceError(f"empty period: {self.start.isoformat()} .. {self.end.isoformat()}")

    @classmethod
    def days(cls, first: date, last_exclusive: date) -> Period:
        return cls(_midnight(first), _midnight(last_exclusive))

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        first = date(year, month, 1)
        following = date(year + month // 12, month % 12 + 1, 1)
        return cls.days(first, following)

    @classmethod
    def trailing_days(cls, days: int = DEFAULT_PERIOD_DAYS, *, now: datetime | None = None) -> Period:
        """The last ``days`` whole UTC days plus today so far."""
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        return cls.days(today - timedelta(days=days - 1), today + timedelta(days=1))

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end}

    def __str__(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()}"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a check looks: database, period, optionally one tenant."""

    period: Period
    database: str = DEFAULT_DATABASE
    tenant: str = ""

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database):
            raise GovernanceError(f"bad database name {self.database!r}")

    def params(self) -> dict[str, Any]:
        return {"db": self.database, **self.period.params(), "tenant": self.tenant}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A yes/no answer with the reasons, each a sentence a reader can act on."""

    ok: bool
    label: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Rows of one check, plus (for checks that judge) a verdict."""

    check: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    verdict: Verdict
    scope: Scope | None = None
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def run_query(runner: Runner, sql: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Row, ...]]:
    columns, rows = runner.query(sql, params)
    names = tuple(columns)
    return names, tuple({name: _plain(value) for name, value in zip(names, row)} for row in rows)


def _plain(value: Any) -> Any:
    """Driver values as plain Python: tuples from arrays become lists; money stays Decimal."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def findings_verdict(rows: Sequence[Row], *, what: str) -> Verdict:
    """The verdict of a check that only lists: clean when nothing was flagged."""
    flagged = [row for row in rows if row.get("flagged", 1)]
    if not flagged:
        return Verdict(ok=True, label="clean", reasons=(f"no {what} found",))
    return Verdict(ok=False, label="findings", reasons=(f"{len(flagged)} {what} found",))



def check_all(errors: Sequence[str]) -> None:
    """Raise one GovernanceError naming every problem at once."""
    if errors:
        raise GovernanceError("; ".join(errors))


def require(errors: list[str], ok: bool, message: str) -> None:
    if not ok:
        errors.append(message)


def listing(
    *,
    check: str,
    title: str,
    what: str,
    runner: Runner,
    sql: str,
    params: Mapping[str, Any],
    scope: Scope,
    notes: Sequence[str] = (),
) -> CheckResult:
    """Run a query whose rows carry ``flagged``; the verdict is 'clean' when none is."""
    columns, rows = run_query(runner, sql, params)
    return CheckResult(
        check=check,
        title=title,
        columns=columns,
        rows=rows,
        verdict=findings_verdict(rows, what=what),
        scope=scope,
        notes=tuple(notes),
    )
