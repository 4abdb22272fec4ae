"""OpenAI costs: the Costs API JSON and the dashboard's cost CSV export.

API: ``GET /v1/organization/costs`` pages of daily buckets, each result
``organization.costs.result`` with ``amount: {"value": 0.06, "currency": "usd"}``
and, per ``group_by``, ``line_item`` (e.g. ``"gpt-4o-2024-08-06, input"``)
and ``project_id``. The model is the part of the line item before the comma;
without ``group_by=line_item`` there is no model and costs are compared per
day and provider only.

Dashboard CSV: ``start_time, end_time, start_time_iso, end_time_iso,
amount_value, amount_currency, line_item, project_id, organization_id,
organization_name``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .json_pages import daily_results, first_result
from .lines import (
    BillLine,
    ExportError,
    ProviderExport,
    as_day,
    as_decimal,
    csv_header,
    csv_rows,
    first,
    text,
)

FORMAT = "openai-costs"
PROVIDER = "openai"
RESULT_OBJECT = "organization.costs.result"
CSV_REQUIRED = {"start_time", "amount_value"}


def sniff(data: bytes) -> bool:
    result = first_result(data)
    if result is not None:
        return result.get("object") == RESULT_OBJECT or isinstance(result.get("amount"), dict)
    return CSV_REQUIRED <= csv_header(data)


def parse(data: bytes, *, path: str = "") -> ProviderExport:
    if data.lstrip()[:1] in (b"{", b"["):
        return _parse_json(data, path)
    return _parse_csv(data, path)


def model_of(line_item: str) -> str:
    """'gpt-4o-2024-08-06, input' -> 'gpt-4o-2024-08-06'; non-model items keep their name."""
    return line_item.split(",", 1)[0].strip()


def _line(day: Any, amount: Any, currency: Any, line_item: Any, project_id: Any) -> BillLine:
    project = text(project_id)
    return BillLine(
        day=as_day(day),
        provider=PROVIDER,
        model=model_of(text(line_item)),
        account=project,
        account_kind="project_id" if project else "",
        cost=as_decimal(amount),
        currency=(text(currency) or "usd").upper(),
    )


def _parse_json(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    results, coverage = daily_results(data, start_key="start_time", export="OpenAI costs")
    for day, result in results:
        amount = result.get("amount") or {}
        if not isinstance(amount, dict):
            raise ExportError(f"OpenAI costs result with amount {amount!r}")
        lines.append(_line(day, amount.get("value"), amount.get("currency"), result.get("line_item"), result.get("project_id")))
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_cost=True)


def _parse_csv(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    days = []
    for row in csv_rows(data):
        start = first(row, "start_time_iso", "start_time")
        if start is None:
            continue
        day = as_day(start)
        days.append(day)
        if row.get("amount_value", "") == "":
            continue
        lines.append(_line(day, row["amount_value"], row.get("amount_currency"), row.get("line_item"), row.get("project_id")))
    coverage = (min(days), max(days) + timedelta(days=1)) if days else None
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_cost=True)
