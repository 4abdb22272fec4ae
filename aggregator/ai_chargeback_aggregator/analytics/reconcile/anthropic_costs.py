"""Anthropic costs: the Admin API cost report JSON and the Console's cost CSV.

API: ``GET /v1/organizations/cost_report`` pages of daily buckets
``{"starting_at", "ending_at", "results": [...]}``; each result has ``amount``
(a decimal string in the currency's *lowest unit*: "123.45" USD is $1.2345),
``currency`` and, when grouped by description, ``model``, ``cost_type``
(tokens | web_search | code_execution | session_usage), ``token_type``,
``service_tier``, ``context_window``, ``description``; grouped by workspace,
``workspace_id``. Without a model, costs are compared per day and provider.

Console CSV: ``usage_date_utc, model, workspace, api_key, usage_type,
context_window, token_type, cost_usd, cost_type[, inference_geo, speed]``
with ``cost_usd`` in dollars and ``model`` a display name ("Claude Sonnet 4").
"""

from __future__ import annotations

from decimal import Decimal

from .json_pages import daily_results, first_result
from .lines import (
    BillLine,
    ExportError,
    ProviderExport,
    as_day,
    as_decimal,
    csv_header,
    csv_rows,
    text,
)

FORMAT = "anthropic-costs"
PROVIDER = "anthropic"
CSV_REQUIRED = {"usage_date_utc", "cost_usd"}
# Lowest currency units per unit for the currencies the report uses.
MINOR_UNITS = {"USD": Decimal(100)}


def sniff(data: bytes) -> bool:
    result = first_result(data)
    if result is not None:
        return isinstance(result.get("amount"), str) and "currency" in result
    return CSV_REQUIRED <= csv_header(data)


def parse(data: bytes, *, path: str = "") -> ProviderExport:
    if data.lstrip()[:1] in (b"{", b"["):
        return _parse_json(data, path)
    return _parse_csv(data, path)


def _parse_json(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    results, coverage = daily_results(data, start_key="starting_at", export="Anthropic cost")
    for day, r in results:
        currency = text(r.get("currency")).upper() or "USD"
        if currency not in MINOR_UNITS:
            raise ExportError(f"Anthropic cost report in {currency}: minor unit unknown")
        amount = as_decimal(r.get("amount"))
        workspace = text(r.get("workspace_id"))
        lines.append(BillLine(
            day=day, provider=PROVIDER, model=text(r.get("model")),
            account=workspace, account_kind="workspace_id" if workspace else "",
            cost=None if amount is None else amount / MINOR_UNITS[currency], currency=currency,
        ))  # fmt: skip
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_cost=True)


def _parse_csv(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    for row in csv_rows(data):
        if not row.get("usage_date_utc"):
            continue
        key = text(row.get("api_key"))
        lines.append(BillLine(
            day=as_day(row["usage_date_utc"]), provider=PROVIDER, model=text(row.get("model")),
            account=key, account_kind="api_key_id" if key else "",
            cost=as_decimal(row.get("cost_usd")), currency="USD",
        ))  # fmt: skip
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), has_cost=True)
