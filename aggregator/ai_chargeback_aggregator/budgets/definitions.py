"""Budgets as data: what a budget is, how a budgets file becomes budgets, and when one is in force.

A budget file is YAML: a list, or a mapping with a ``budgets`` list::

    budgets:
      - id: payments-monthly
        scope: {team: payments}          # tenant, team, app, workload, consumer (+ provider, model)
        period: monthly                  # daily | weekly (ISO, Monday) | monthly
        timezone: Europe/Berlin          # IANA name; default UTC
        amount: 10000                    # in `unit`
        unit: usd                        # usd | tokens
        cost_basis: chargeback           # usd only: chargeback (default) | showback
        thresholds: [50, 80, 100]        # percent; the default
        action: enforce                  # alert (default) | enforce: refuse at the gateway at 100%
        notify: [payments-slack]         # webhook names; default every configured webhook
        effective_from: 2026-11-01       # local dates in `timezone`; to is exclusive
        effective_to: 2027-01-01
        note: "FY27 envelope"

``load`` validates the whole file first and reports every problem, then changes
nothing if any entry is wrong. Budgets may overlap (a monthly envelope and a
daily cap, a soft alert and a hard limit on one team): each is evaluated on its
own, and a request is refused when any enforced budget over it is exhausted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ..record_fields import parse_date, parse_decimal

PERIODS = ("daily", "weekly", "monthly")
UNITS = ("usd", "tokens")
ACTIONS = ("alert", "enforce")
COST_BASES = ("chargeback", "showback")
# Owner dimensions, most specific first: the report a budget's spend comes from is by the first one set.
OWNER_DIMENSIONS = ("consumer", "workload", "app", "team", "tenant")
NARROWING_DIMENSIONS = ("provider", "model")
SCOPE_DIMENSIONS = (*reversed(OWNER_DIMENSIONS), *NARROWING_DIMENSIONS)
DEFAULT_THRESHOLDS = (Decimal(50), Decimal(80), Decimal(100))
DEFAULT_TIMEZONE = "UTC"
MAX_AMOUNT = Decimal(10) ** 15
MAX_THRESHOLD = Decimal(1000)
MAX_AMOUNT_DECIMALS = 9
MAX_VALUE_CHARS = 256
# Values the plugin records for "nobody": a budget names an owner (watch unattributed usage with governance).
UNATTRIBUTED_VALUES = ("", "unattributed")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FIELDS = frozenset((
    "id", "scope", "period", "timezone", "amount", "unit", "cost_basis", "thresholds", "action", "notify",
    "effective_from", "effective_to", "note",
))  # fmt: skip


class BudgetError(ValueError):
    """A budget file did not validate; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid budgets:\n  " + "\n  ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who and what a budget covers; '' = any. ``consumer`` is the Kong consumer id."""

    tenant: str = ""
    team: str = ""
    app: str = ""
    workload: str = ""
    consumer: str = ""
    provider: str = ""
    model: str = ""

    def items(self) -> list[tuple[str, str]]:
        """The set dimensions, broadest first: [("team", "payments"), ("model", "gpt-4o")]."""
        return [(name, value) for name in SCOPE_DIMENSIONS if (value := getattr(self, name))]

    def text(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.items())

    def to_dict(self) -> dict[str, str]:
        return dict(self.items())

    def within(self, other: Mapping[str, str]) -> bool:
        """True when every dimension ``other`` names has that value here (a console's scope filter)."""
        return all(getattr(self, name, None) == value for name, value in other.items())


@dataclass(frozen=True, slots=True)
class Budget:
    budget_id: str
    scope: Scope
    period: str
    amount: Decimal
    effective_from: date
    unit: str = "usd"
    timezone: str = DEFAULT_TIMEZONE
    cost_basis: str = "chargeback"  # '' for tokens
    thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS
    action: str = "alert"
    notify: tuple[str, ...] = ()
    effective_to: date | None = None
    note: str = ""
    loaded_from: str = ""
    version: int = 0
    _zone: ZoneInfo | None = field(default=None, compare=False, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        if self._zone is None:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        assert self._zone is not None
        return self._zone

    @property
    def enforced(self) -> bool:
        return self.action == "enforce"

    def in_force(self, at: datetime) -> bool:
        """Effective on the local date of ``at`` (dates are the budget's own time zone's)."""
        local_day = at.astimezone(self.zone).date()
        return self.effective_from <= local_day and (self.effective_to is None or local_day < self.effective_to)

    def describe(self) -> dict[str, Any]:
        return {
            "budget_id": self.budget_id, "scope": self.scope.to_dict(), "period": self.period, "timezone": self.timezone,
            "amount": decimal_text(self.amount), "unit": self.unit, "cost_basis": self.cost_basis,
            "thresholds": [decimal_text(t) for t in self.thresholds], "action": self.action, "notify": list(self.notify),
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None, "note": self.note,
        }  # fmt: skip


def decimal_text(value: Decimal) -> str:
    """Plain text of an amount or percent without padding zeros: 10000.000000000 -> '10000', 2.50 -> '2.5'."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- files ----------------------------------------------------------------------
def read_file(path: Path) -> list[Budget]:
    """Parse and validate a YAML budgets file."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise BudgetError([f"{path.name}: expected a .yaml or .yml file"])
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BudgetError([f"{path.name}: not valid YAML: {exc}"]) from exc
    if loaded is None:
        loaded = []
    if isinstance(loaded, Mapping):
        unknown = sorted(set(map(str, loaded)) - {"budgets"})
        if unknown:
            raise BudgetError([f"unknown top-level key(s) {', '.join(unknown)} (expected 'budgets')"])
        loaded = loaded.get("budgets") or []
    if not isinstance(loaded, list):
        raise BudgetError(["expected a list of budgets (or a mapping with a 'budgets' list)"])
    return parse_records(loaded, loaded_from=str(path))


def parse_records(records: Sequence[Any], *, loaded_from: str = "") -> list[Budget]:
    problems: list[str] = []
    result: list[Budget] = []
    seen: set[str] = set()
    for index, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            problems.append(f"entry {index}: not a mapping")
            continue
        errors: list[str] = []
        budget = _parse(record, errors, seen, loaded_from)
        where = f"entry {index} ({str(record.get('id', '')).strip() or 'no id'})"
        if errors or budget is None:
            problems.extend(f"{where}: {e}" for e in errors)
            continue
        result.append(budget)
    if problems:
        raise BudgetError(problems)
    return result


def _parse(record: Mapping[str, Any], errors: list[str], seen: set[str], loaded_from: str) -> Budget | None:
    unknown = sorted(set(map(str, record)) - _FIELDS)
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)}")
    budget_id = str(record.get("id", "") or "").strip()
    if not _ID.match(budget_id):
        errors.append("id: required; letters, digits, . _ : - (at most 128)")
    elif budget_id in seen:
        errors.append(f"id: {budget_id!r} appears twice in the file")
    seen.add(budget_id)
    scope = _scope(record.get("scope"), errors)
    period = _choice(record.get("period"), "period", PERIODS, errors, default=None)
    unit = _choice(record.get("unit"), "unit", UNITS, errors, default="usd")
    action = _choice(record.get("action"), "action", ACTIONS, errors, default="alert")
    basis_given = record.get("cost_basis")
    cost_basis = _choice(basis_given, "cost_basis", COST_BASES, errors, default="chargeback")
    if unit == "tokens":
        if basis_given not in (None, ""):
            errors.append("cost_basis: only for usd budgets (tokens are counted the same in every report)")
        cost_basis = ""
    timezone = _timezone(record.get("timezone"), errors)
    amount = _amount(record.get("amount"), unit, errors)
    thresholds = _thresholds(record.get("thresholds"), errors)
    notify = _notify(record.get("notify"), errors)
    start = parse_date(record.get("effective_from"), "effective_from", errors, required=True, zone="in the budget's time zone")
    end = parse_date(record.get("effective_to"), "effective_to", errors, required=False, zone="in the budget's time zone")
    if start and end and end <= start:
        errors.append("effective_to: must be after effective_from (it is exclusive)")
    note = record.get("note", "")
    if not isinstance(note, str) or len(note) > 1024:
        errors.append("note: text of at most 1024 characters")
    if errors or None in (scope, period, unit, action, cost_basis, timezone, amount, thresholds, start):
        return None
    assert scope is not None and period and unit and action and timezone and amount is not None and thresholds and start
    return Budget(
        budget_id=budget_id, scope=scope, period=period, amount=amount, effective_from=start, unit=unit, timezone=timezone,
        cost_basis=cost_basis or "", thresholds=thresholds, action=action, notify=notify, effective_to=end, note=note,
        loaded_from=loaded_from,
    )  # fmt: skip


def _scope(value: Any, errors: list[str]) -> Scope | None:
    if not isinstance(value, Mapping) or not value:
        errors.append(f"scope: required, a mapping of {', '.join(SCOPE_DIMENSIONS)}")
        return None
    unknown = sorted(set(map(str, value)) - set(SCOPE_DIMENSIONS))
    if unknown:
        errors.append(f"scope: unknown dimension(s) {', '.join(unknown)} (expected {', '.join(SCOPE_DIMENSIONS)})")
        return None
    values: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            errors.append(f"scope.{name}: a single value (text)")
            continue
        text = str(raw).strip()
        if name in ("provider", "model"):
            text = text.lower()  # as price overrides: providers and models are matched case-insensitively
        if text.lower() in UNATTRIBUTED_VALUES:
            errors.append(f"scope.{name}: budgets name an owner; '{raw}' is not one (see `chargeback governance attribution`)")
        elif len(text) > MAX_VALUE_CHARS:
            errors.append(f"scope.{name}: at most {MAX_VALUE_CHARS} characters")
        else:
            values[str(name)] = text
    if not any(name in value for name in OWNER_DIMENSIONS):
        errors.append(f"scope: name an owner ({', '.join(reversed(OWNER_DIMENSIONS))}); provider and model only narrow one")
        return None
    return Scope(**values)


def _choice(value: Any, name: str, allowed: Sequence[str], errors: list[str], *, default: str | None) -> str | None:
    if value is None or value == "":
        if default is None:
            errors.append(f"{name}: required, one of {', '.join(allowed)}")
        return default
    text = str(value).strip().lower()
    if text not in allowed:
        errors.append(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return None
    return text


def _timezone(value: Any, errors: list[str]) -> str | None:
    if value is None or value == "":
        return DEFAULT_TIMEZONE
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"timezone: {value!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)")
        return None
    return name


def _amount(value: Any, unit: str | None, errors: list[str]) -> Decimal | None:
    number = parse_decimal(value, "amount", errors)
    if number is None:
        if value is None or value == "":
            errors.append("amount: required")
        return None
    if number <= 0 or number > MAX_AMOUNT:
        errors.append(f"amount: must be above 0 and at most {MAX_AMOUNT}")
        return None
    if unit == "tokens" and number != number.to_integral_value():
        errors.append("amount: a whole number of tokens")
        return None
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_AMOUNT_DECIMALS:
        errors.append(f"amount: at most {MAX_AMOUNT_DECIMALS} decimals")
        return None
    return number


def _thresholds(value: Any, errors: list[str]) -> tuple[Decimal, ...] | None:
    if value is None:
        return DEFAULT_THRESHOLDS
    if not isinstance(value, list) or not value:
        errors.append("thresholds: a non-empty list of percents, e.g. [50, 80, 100]")
        return None
    found: list[Decimal] = []
    for item in value:
        number = parse_decimal(item, "thresholds", errors)
        if number is None:
            return None
        if number <= 0 or number > MAX_THRESHOLD:
            errors.append(f"thresholds: each above 0 and at most {MAX_THRESHOLD} percent, got {item!r}")
            return None
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > 4:
            errors.append("thresholds: at most 4 decimals")
            return None
        found.append(Decimal(decimal_text(number)))
    if len(set(found)) != len(found):
        errors.append("thresholds: a percent appears twice")
        return None
    return tuple(sorted(found))


def _notify(value: Any, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and _WEBHOOK_NAME.match(n) for n in names):
        errors.append("notify: webhook names (letters, digits, . _ -), as configured in CHARGEBACK_BUDGET_WEBHOOKS")
        return ()
    return tuple(dict.fromkeys(names))

