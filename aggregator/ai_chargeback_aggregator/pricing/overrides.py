"""Price overrides: what they are, how a file becomes them, and which one wins.

An override is effective-dated (UTC days, ``effective_from`` inclusive,
``effective_to`` exclusive or open) and matches a provider and optionally a
model, a tenant and a service tier (empty = any). Two kinds:

``list``      replaces the public price (a private model, a catalog correction).
              Needs explicit rates.
``contract``  what we actually pay (a negotiated discount or contract rates);
              the list price stays the public one. Either explicit rates or
              ``discount_percent`` off the list rates.

Explicit rates follow the catalog's fallback rule: cached and cache-write
input default to the input rate, reasoning to the output rate, the request fee
to zero. When several overrides of a kind match, the most specific wins:
tenant, then model, then tier, then the latest ``effective_from``, then the
latest load; never two at once. A discount applies to the list price in force
(a list override's, else the catalog's).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from ..record_fields import parse_date, parse_decimal
from .catalog import normalize_tier
from .rates import OVERRIDE_PREFIX, Rates, to_e12

KINDS = ("contract", "list")
CURRENCY = "USD"  # every cost column is USD; an override in another currency would mix units
RATE_FIELDS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok", "per_request")
MAX_RATE_DECIMALS = 12
MAX_RATE = Decimal(1_000_000)  # per 1M tokens or per request: anything above is a typo
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_FIELDS = (
    "id", "provider", "model", "tenant", "service_tier", "effective_from", "effective_to", "kind", "currency",
    *RATE_FIELDS, "discount_percent", "note",
)  # fmt: skip


class OverrideError(ValueError):
    """A price file did not validate; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid price overrides:\n  " + "\n  ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Override:
    override_id: str
    provider: str
    effective_from: date
    kind: str = "contract"
    model: str = ""
    tenant: str = ""
    service_tier: str = ""
    effective_to: date | None = None
    currency: str = CURRENCY
    input_per_mtok: Decimal | None = None
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    reasoning_per_mtok: Decimal | None = None
    per_request: Decimal | None = None
    discount_percent: Decimal | None = None
    note: str = ""
    loaded_from: str = ""
    version: int = 0  # load order: later loads win ties
    _rates: Rates | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        return f"{OVERRIDE_PREFIX}{self.override_id}"

    @property
    def has_rates(self) -> bool:
        return any(getattr(self, name) is not None for name in RATE_FIELDS)

    def rates(self) -> Rates:
        """Explicit rates with the fallback rule applied (only when has_rates)."""
        if self._rates is None:
            zero = Decimal(0)
            input_ = self.input_per_mtok if self.input_per_mtok is not None else zero
            output = self.output_per_mtok if self.output_per_mtok is not None else zero
            rates = Rates(
                input=to_e12(input_),
                cached_input=to_e12(self.cached_input_per_mtok if self.cached_input_per_mtok is not None else input_),
                cache_write=to_e12(self.cache_write_per_mtok if self.cache_write_per_mtok is not None else input_),
                output=to_e12(output),
                reasoning=to_e12(self.reasoning_per_mtok if self.reasoning_per_mtok is not None else output),
                request=to_e12(self.per_request if self.per_request is not None else zero),
            )
            object.__setattr__(self, "_rates", rates)
        assert self._rates is not None
        return self._rates

    def discount_factor(self) -> Decimal:
        assert self.discount_percent is not None
        return (Decimal(100) - self.discount_percent) / Decimal(100)

    def matches(self, provider: str, model: str, tenant: str, tier: str, day: date) -> bool:
        return (
            self.provider == provider
            and (not self.model or self.model == model)
            and (not self.tenant or self.tenant == tenant)
            and (not self.service_tier or self.service_tier == tier)
            and self.effective_from <= day
            and (self.effective_to is None or day < self.effective_to)
        )

    def specificity(self) -> tuple[bool, bool, bool, date, int, str]:
        return (bool(self.tenant), bool(self.model), bool(self.service_tier), self.effective_from, self.version, self.override_id)


def best(overrides: Iterable[Override], kind: str, provider: str, model: str, tenant: str, tier: str, day: date) -> Override | None:
    """The winning override of one kind for one price key, or None."""
    candidates = [o for o in overrides if o.kind == kind and o.matches(provider, model, tenant, tier, day)]
    return max(candidates, key=Override.specificity) if candidates else None


# -- files ------------------------------------------------------------------
def read_file(path: Path) -> list[Override]:
    """Parse and validate a YAML (.yaml/.yml) or CSV (.csv) price file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        records: list[Mapping[str, Any]] = [
            {k.strip(): v for k, v in row.items() if k and v is not None and str(v).strip() != ""}
            for row in csv.DictReader(io.StringIO(text))
        ]
    elif path.suffix.lower() in (".yaml", ".yml"):
        loaded = yaml.safe_load(text) or []
        if isinstance(loaded, Mapping):
            loaded = loaded.get("overrides", [])
        if not isinstance(loaded, list):
            raise OverrideError(["expected a list of overrides (or a mapping with an 'overrides' list)"])
        records = loaded
    else:
        raise OverrideError([f"{path.name}: expected .yaml, .yml or .csv"])
    return parse_records(records, loaded_from=str(path))


def parse_records(records: Sequence[Mapping[str, Any]], *, loaded_from: str = "") -> list[Override]:
    problems: list[str] = []
    result: list[Override] = []
    seen: set[str] = set()
    for index, record in enumerate(records, start=1):
        where = f"entry {index}"
        if not isinstance(record, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        errors: list[str] = []
        unknown = sorted(set(record) - set(_FIELDS))
        if unknown:
            errors.append(f"unknown field(s) {', '.join(unknown)}")
        override_id = str(record.get("id", "")).strip()
        if not _ID.match(override_id):
            errors.append("id: required; letters, digits, . _ : - (at most 128)")
        elif override_id in seen:
            errors.append(f"id: {override_id!r} appears twice in the file")
        seen.add(override_id)
        where = f"entry {index} ({override_id or 'no id'})"
        provider = str(record.get("provider", "")).strip().lower()
        if not provider:
            errors.append("provider: required")
        kind = str(record.get("kind", "contract")).strip().lower()
        if kind not in KINDS:
            errors.append(f"kind: expected one of {', '.join(KINDS)}")
        start = parse_date(record.get("effective_from"), "effective_from", errors, required=True, zone="UTC")
        end = parse_date(record.get("effective_to"), "effective_to", errors, required=False, zone="UTC")
        if start and end and end <= start:
            errors.append("effective_to: must be after effective_from (it is exclusive)")
        currency = str(record.get("currency", CURRENCY)).strip().upper()
        if currency != CURRENCY:
            errors.append(f"currency: only {CURRENCY} is supported")
        rates = {name: _decimal(record.get(name), name, errors, MAX_RATE) for name in RATE_FIELDS}
        discount = _decimal(record.get("discount_percent"), "discount_percent", errors, Decimal(100))
        has_rates = any(v is not None for v in rates.values())
        if discount is not None and has_rates:
            errors.append("give either rates or discount_percent, not both")
        if not has_rates and discount is None:
            errors.append("no price: give rates (input_per_mtok, ...) or discount_percent")
        if kind == "list" and discount is not None:
            errors.append("discount_percent: only contract overrides discount (a list override states the price)")
        if errors:
            problems.extend(f"{where}: {e}" for e in errors)
            continue
        assert start is not None
        result.append(
            Override(
                override_id=override_id, provider=provider, effective_from=start, effective_to=end, kind=kind,
                model=str(record.get("model", "") or "").strip().lower(),
                tenant=str(record.get("tenant", "") or "").strip(),
                service_tier=_tier(str(record.get("service_tier", "") or "")),
                currency=currency, discount_percent=discount, note=str(record.get("note", "") or ""),
                loaded_from=loaded_from, **rates,
            )
        )
    if problems:
        raise OverrideError(problems)
    return result


def _tier(value: str) -> str:
    return normalize_tier(value) if value.strip() else ""


def _decimal(value: Any, name: str, errors: list[str], maximum: Decimal) -> Decimal | None:
    number = parse_decimal(value, name, errors)
    if number is None:
        return None
    if number < 0 or number > maximum:
        errors.append(f"{name}: must be between 0 and {maximum}")
        return None
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_RATE_DECIMALS:
        errors.append(f"{name}: at most {MAX_RATE_DECIMALS} decimals")
        return None
    return number
