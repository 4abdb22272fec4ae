"""Matching gateway records with provider bills, line by line, within a tolerance.

A line is one UTC day x provider x model (x account, in the account
breakdown). Its status:

``matched``       both sides agree within tolerance on every figure the bill has
``differs``       both sides have the line but some figure is out of tolerance
``gateway_only``  the gateway metered usage the bill does not show (a missing
                  bill day, a model billed elsewhere, or over-metering)
``bill_only``     the provider billed usage the gateway never saw: traffic that
                  bypassed the gateway (a direct key, another tool)

Each figure is compared only where the bill has it: usage exports carry
tokens and no money, cost exports the reverse. Models are compared by family
name (normalize.py); when any line of a provider's bill has no model (a cost
report not grouped by model), that provider is compared per day only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from ..governance.base import Period, Verdict
from .gateway import GatewayLine
from .lines import BillLine, ProviderExport
from .mapping import AccountMapping
from .normalize import normalize_model, normalize_provider

Key = tuple[date, str, str, str]  # day, provider, model, account ('' in the main table)

MATCHED = "matched"
DIFFERS = "differs"
GATEWAY_ONLY = "gateway_only"
BILL_ONLY = "bill_only"
STATUSES = (MATCHED, DIFFERS, GATEWAY_ONLY, BILL_ONLY)
ANY_MODEL = "*"

DEFAULT_TOLERANCE_PCT = 1.0
DEFAULT_TOLERANCE_TOKENS = 100
DEFAULT_TOLERANCE_COST_USD = Decimal("0.01")

LINE_COLUMNS: tuple[str, ...] = (
    "day", "provider", "model", "account", "status",
    "gateway_input_tokens", "bill_input_tokens", "input_diff",
    "gateway_output_tokens", "bill_output_tokens", "output_diff",
    "gateway_tokens", "bill_tokens", "tokens_diff",
    "gateway_cost", "bill_cost", "cost_diff",
    "gateway_requests", "bill_requests", "gateway_models", "bill_models", "detail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tolerance:
    """A figure matches when |gateway - bill| <= max(absolute, pct% of the larger side)."""

    pct: float = DEFAULT_TOLERANCE_PCT
    tokens: int = DEFAULT_TOLERANCE_TOKENS
    cost_usd: Decimal = DEFAULT_TOLERANCE_COST_USD

    def __post_init__(self) -> None:
        errors = []
        if not 0 <= self.pct <= 100:
            errors.append(f"tolerance pct must be in 0..100, got {self.pct}")
        if self.tokens < 0:
            errors.append(f"tolerance tokens must be >= 0, got {self.tokens}")
        if self.cost_usd < 0:
            errors.append(f"tolerance cost must be >= 0, got {self.cost_usd}")
        if errors:
            raise ValueError("; ".join(errors))

    def allows(self, gateway: int | Decimal, bill: int | Decimal, absolute: int | Decimal) -> bool:
        g, b = Decimal(gateway), Decimal(bill)
        allowed = max(Decimal(absolute), Decimal(str(self.pct)) / 100 * max(abs(g), abs(b)))
        return abs(g - b) <= allowed


@dataclass(slots=True)
class _Side:
    input_tokens: int | None = None
    output_tokens: int | None = None
    other_tokens: int | None = None
    requests: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"
    unpriced: int = 0
    models: set[str] = field(default_factory=set)

    @property
    def tokens(self) -> int | None:
        parts = [self.input_tokens, self.output_tokens, self.other_tokens]
        return None if all(p is None for p in parts) else sum(p or 0 for p in parts)

    @property
    def empty(self) -> bool:
        return not (self.tokens or self.cost or self.requests)


def _plus(a: Any, b: Any) -> Any:
    return a if b is None else (b if a is None else a + b)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period: Period
    lines: tuple[dict[str, Any], ...]
    accounts: tuple[dict[str, Any], ...]
    summary: Mapping[str, Any]
    verdict: Verdict
    notes: tuple[str, ...] = ()


def reconcile(
    exports: Sequence[ProviderExport],
    gateway: Sequence[GatewayLine],
    *,
    period: Period,
    tolerance: Tolerance = Tolerance(),
    mapping: AccountMapping | None = None,
) -> Reconciliation:
    mapping = mapping or AccountMapping()
    notes: list[str] = [note for export in exports for note in export.notes]
    first_day, end_day = period.start.date(), period.end.date()
    bill: list[BillLine] = []
    outside = 0
    for export in exports:
        for line in export.lines:
            if first_day <= line.day < end_day:
                bill.append(line)
            else:
                outside += 1
    if outside:
        notes.append(f"{outside} bill lines outside {first_day}..{end_day} left out")

    def provider_of(name: str) -> str:
        return normalize_provider(name, mapping.providers)

    # Only providers some export is about are judged: an OpenAI bill says nothing
    # about the gateway's Anthropic traffic.
    billed = export_providers(exports, mapping.providers)
    gateway = [g for g in gateway if provider_of(g.provider) in billed]

    per_day_only = {provider_of(b.provider) for b in bill if not b.model}
    for provider in sorted(per_day_only):
        notes.append(f"{provider}: the bill names no model on some lines, so {provider} is compared per day only")

    def model_of(provider: str, raw: str) -> str:
        return ANY_MODEL if provider in per_day_only else normalize_model(raw, mapping.models)

    bill_days = {(provider_of(b.provider), b.day) for b in bill if not _bill_side([b]).empty}
    main = _compare(
        bill_groups=_group_bill(bill, lambda b: (b.day, provider_of(b.provider), model_of(provider_of(b.provider), b.model), "")),
        gateway_groups=_group_gateway(gateway, lambda g: (g.day, provider_of(g.provider), model_of(provider_of(g.provider), g.model), "")),
        tolerance=tolerance,
        bill_days=bill_days,
    )

    accounts: list[dict[str, Any]] = []
    if mapping.accounts:
        mapped = mapping.mapped_providers
        with_account = [b for b in bill if provider_of(b.provider) in mapped and mapping.bill_label(b) is not None]
        without = sum(1 for b in bill if provider_of(b.provider) in mapped and mapping.bill_label(b) is None)
        if without:
            notes.append(f"{without} bill lines of mapped providers carry no API key, project or workspace: left out of the account breakdown")
        # Only days on which the bill has accounts at all: a cost export without
        # project ids says nothing about which key the gateway's traffic belongs to.
        account_days = {(provider_of(b.provider), b.day) for b in with_account}

        def bill_key(b: BillLine) -> Key:
            provider = provider_of(b.provider)
            return (b.day, provider, model_of(provider, b.model), mapping.bill_label(b) or "")

        def gateway_key(g: GatewayLine) -> Key:
            provider = provider_of(g.provider)
            return (g.day, provider, model_of(provider, g.model), mapping.gateway_label(provider, g.identities, g.credential_fingerprint))

        accounts = _compare(
            bill_groups=_group_bill(with_account, bill_key),
            gateway_groups=_group_gateway([g for g in gateway if (provider_of(g.provider), g.day) in account_days], gateway_key),
            tolerance=tolerance,
            bill_days=bill_days,
        )

    summary = _summary(main, exports, period)
    reasons = _reasons(main, "") + _reasons(accounts, "per account: ")
    if reasons:
        verdict = Verdict(ok=False, label="discrepancies", reasons=reasons)
    elif not main:
        verdict = Verdict(ok=True, label="nothing to reconcile", reasons=("no usage on either side in the period",))
    else:
        verdict = Verdict(ok=True, label="reconciled", reasons=(f"{len(main)} lines match within tolerance",))
    return Reconciliation(period=period, lines=tuple(main), accounts=tuple(accounts), summary=summary,
                          verdict=verdict, notes=tuple(dict.fromkeys(notes)))  # fmt: skip


_MEANING = {
    DIFFERS: "both sides, out of tolerance",
    GATEWAY_ONLY: "gateway usage the bill does not show",
    BILL_ONLY: "billed usage the gateway never saw",
}


def _reasons(lines: Sequence[dict[str, Any]], prefix: str) -> tuple[str, ...]:
    counts: dict[str, int] = defaultdict(int)
    for line in lines:
        counts[line["status"]] += 1
    return tuple(
        f"{prefix}{counts[status]} {status.replace('_', '-')} line{'s' if counts[status] > 1 else ''} ({_MEANING[status]})"
        for status in (DIFFERS, GATEWAY_ONLY, BILL_ONLY)
        if counts[status]
    )


def _bill_side(lines: Iterable[BillLine]) -> _Side:
    side = _Side()
    for b in lines:
        side.input_tokens = _plus(side.input_tokens, b.input_tokens)
        side.output_tokens = _plus(side.output_tokens, b.output_tokens)
        side.other_tokens = _plus(side.other_tokens, b.other_tokens)
        side.requests = _plus(side.requests, b.requests)
        side.cost = _plus(side.cost, b.cost)
        side.currency = b.currency if b.cost is not None else side.currency
        if b.model:
            side.models.add(b.model)
    return side


def _group_bill(lines: Iterable[BillLine], key: Any) -> dict[Key, _Side]:
    grouped: dict[Key, list[BillLine]] = defaultdict(list)
    for line in lines:
        grouped[key(line)].append(line)
    return {k: _bill_side(v) for k, v in grouped.items()}


def _group_gateway(lines: Iterable[GatewayLine], key: Any) -> dict[Key, _Side]:
    grouped: dict[Key, _Side] = {}
    for g in lines:
        side = grouped.setdefault(key(g), _Side(input_tokens=0, output_tokens=0, requests=0, cost=Decimal(0)))
        side.input_tokens = (side.input_tokens or 0) + g.input_tokens
        side.output_tokens = (side.output_tokens or 0) + g.output_tokens
        side.requests = (side.requests or 0) + g.requests
        side.cost = (side.cost or Decimal(0)) + g.cost
        side.currency = g.currency
        side.unpriced += g.unpriced_requests
        if g.model:
            side.models.add(g.model)
    return grouped


def _compare(*, bill_groups: Mapping[Key, _Side], gateway_groups: Mapping[Key, _Side], tolerance: Tolerance,
             bill_days: set[tuple[str, date]]) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for key in sorted(set(bill_groups) | set(gateway_groups)):
        day, provider, _, _ = key
        gw, bl = gateway_groups.get(key), bill_groups.get(key)
        if gw is not None and gw.empty:
            gw = None
        if bl is not None and bl.empty:
            bl = None
        if gw is None and bl is None:
            continue
        details: list[str] = []
        if bl is None:
            status = GATEWAY_ONLY
            assert gw is not None
            if (provider, day) not in bill_days:
                details.append(f"the bill has no {provider} usage on {day}: missing bill day?")
            else:
                details.append("gateway usage the bill does not show")
        elif gw is None:
            status = BILL_ONLY
            details.append("billed usage the gateway never saw: bypassed the gateway?")
        else:
            details = _differences(gw, bl, tolerance)
            status = DIFFERS if details else MATCHED
        if gw is not None and gw.unpriced:
            details.append(f"{gw.unpriced} gateway requests unpriced: gateway cost is short")
        rows.append(_row(key, status, gw, bl, details))
    return rows


def _differences(gw: _Side, bl: _Side, tolerance: Tolerance) -> list[str]:
    found: list[str] = []
    pairs: list[tuple[str, int | None, int | None]] = []
    if bl.other_tokens is None:
        pairs += [("input tokens", gw.input_tokens, bl.input_tokens), ("output tokens", gw.output_tokens, bl.output_tokens)]
    else:
        pairs.append(("tokens", gw.tokens, bl.tokens))
    for label, g, b in pairs:
        if b is None or g is None:
            continue
        if not tolerance.allows(g, b, tolerance.tokens):
            found.append(f"{label}: gateway {g} vs bill {b} ({_signed_pct(g, b)})")
    if bl.cost is not None and gw.cost is not None:
        if bl.currency != gw.currency:
            found.append(f"cost not compared: bill in {bl.currency}, gateway in {gw.currency}")
        elif not tolerance.allows(gw.cost, bl.cost, tolerance.cost_usd):
            found.append(f"cost: gateway {gw.cost:.6f} vs bill {bl.cost:.6f} ({_signed_pct(gw.cost, bl.cost)})")
    return found


def _signed_pct(gateway: int | Decimal, bill: int | Decimal) -> str:
    if not bill:
        return "bill 0"
    pct = (Decimal(gateway) - Decimal(bill)) / Decimal(bill) * 100
    return f"gateway {pct:+.2f}% vs bill"


def _diff(g: Any, b: Any) -> Any:
    return None if g is None or b is None else g - b


def _row(key: Key, status: str, gw: _Side | None, bl: _Side | None, details: list[str]) -> dict[str, Any]:
    day, provider, model, account = key
    g = gw or _Side()
    b = bl or _Side()
    g_in = g.input_tokens if gw else 0
    g_out = g.output_tokens if gw else 0
    g_cost = g.cost if gw else Decimal(0)
    return {
        "day": day,
        "provider": provider,
        "model": model,
        "account": account,
        "status": status,
        "gateway_input_tokens": g_in,
        "bill_input_tokens": b.input_tokens,
        "input_diff": _diff(g_in, b.input_tokens),
        "gateway_output_tokens": g_out,
        "bill_output_tokens": b.output_tokens,
        "output_diff": _diff(g_out, b.output_tokens),
        "gateway_tokens": g.tokens if gw else 0,
        "bill_tokens": b.tokens,
        "tokens_diff": _diff(g.tokens if gw else 0, b.tokens),
        "gateway_cost": g_cost,
        "bill_cost": b.cost,
        "cost_diff": _diff(g_cost, b.cost),
        "gateway_requests": g.requests if gw else 0,
        "bill_requests": b.requests,
        "gateway_models": sorted(g.models),
        "bill_models": sorted(b.models),
        "detail": "; ".join(details),
    }


def _summary(lines: Sequence[dict[str, Any]], exports: Sequence[ProviderExport], period: Period) -> dict[str, Any]:
    def total(column: str) -> Any:
        values = [line[column] for line in lines if line[column] is not None]
        return sum(values) if values else None

    counts = {status: sum(1 for line in lines if line["status"] == status) for status in STATUSES}
    return {
        "period_start": period.start,
        "period_end": period.end,
        "exports": [
            {
                "path": e.path,
                "format": e.format,
                "lines": len(e.lines),
                "coverage": None if e.coverage is None else [e.coverage[0], e.coverage[1]],
            }
            for e in exports
        ],
        "lines": len(lines),
        **{f"{status}_lines": n for status, n in counts.items()},
        "gateway_tokens": total("gateway_tokens"),
        "bill_tokens": total("bill_tokens"),
        "gateway_cost": total("gateway_cost"),
        "bill_cost": total("bill_cost"),
    }


def export_providers(exports: Sequence[ProviderExport], aliases: Mapping[str, str] | None = None) -> set[str]:
    """Gateway provider names the exports are about."""
    names = {e.provider for e in exports if e.provider} | {line.provider for e in exports for line in e.lines}
    return {normalize_provider(name, aliases) for name in names}


def export_period(exports: Sequence[ProviderExport]) -> Period | None:
    """The days the exports cover: their stated coverage, else their first to last line's day."""
    starts: list[date] = []
    ends: list[date] = []
    for export in exports:
        if export.coverage is not None:
            starts.append(export.coverage[0])
            ends.append(export.coverage[1])
        elif export.lines:
            days = [line.day for line in export.lines]
            starts.append(min(days))
            ends.append(date.fromordinal(max(days).toordinal() + 1))
    if not starts:
        return None
    return Period.days(min(starts), max(ends))
