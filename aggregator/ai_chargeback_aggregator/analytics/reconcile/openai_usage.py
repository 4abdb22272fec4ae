"""OpenAI completions usage: the Usage API JSON and the usage dashboard's CSV export.

API: ``GET /v1/organization/usage/completions`` pages of buckets
``{"object": "bucket", "start_time", "end_time", "results": [...]}``, each result
``organization.usage.completions.result`` with ``input_tokens`` (including
cached tokens), ``input_cached_tokens``, ``output_tokens``,
``num_model_requests`` and, per ``group_by``, ``model``, ``project_id``,
``api_key_id``, ``user_id``, ``batch``, ``service_tier``. Quiet days come back
as buckets with no results, so the export says which days it covers.

Dashboard CSV: the same fields flattened, one row per bucket x group, with
``start_time``/``end_time`` (unix seconds) and ``start_time_iso``/``end_time_iso``;
counts may be written as floats (``59200.0``) and quiet days as empty rows.

Usage exports carry no money; pair them with a costs export for cost.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .json_pages import daily_results, first_result
from .lines import (
    BillLine,
    ProviderExport,
    as_day,
    as_int,
    csv_header,
    csv_rows,
    first,
    text,
)

FORMAT = "openai-usage"
PROVIDER = "openai"
RESULT_OBJECT = "organization.usage.completions.result"
CSV_REQUIRED = {"start_time", "num_model_requests", "input_tokens", "output_tokens"}


def sniff(data: bytes) -> bool:
    result = first_result(data)
    if result is not None:
        return result.get("object") == RESULT_OBJECT or ("num_model_requests" in result and "input_tokens" in result)
    return CSV_REQUIRED <= csv_header(data)


def parse(data: bytes, *, path: str = "") -> ProviderExport:
    if data.lstrip()[:1] in (b"{", b"["):
        return _parse_json(data, path)
    return _parse_csv(data, path)


def _line(day: Any, result: dict[str, Any]) -> BillLine:
    account, kind = _account(result)
    return BillLine(
        day=as_day(day),
        provider=PROVIDER,
        model=text(result.get("model")),
        account=account,
        account_kind=kind,
        input_tokens=as_int(result.get("input_tokens")) or 0,
        cached_input_tokens=as_int(result.get("input_cached_tokens")),
        output_tokens=as_int(result.get("output_tokens")) or 0,
        requests=as_int(result.get("num_model_requests")),
    )


def _account(result: dict[str, Any]) -> tuple[str, str]:
    # The API key is the finest identity the export has; a project groups keys.
    for kind in ("api_key_id", "project_id"):
        value = text(result.get(kind))
        if value:
            return value, kind
    return "", ""


def _parse_json(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    results, coverage = daily_results(data, start_key="start_time", export="OpenAI usage")
    for start, result in results:
        lines.append(_line(start, result))
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_tokens=True,
                          notes=("OpenAI usage export: tokens only, no cost",))  # fmt: skip


def _parse_csv(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    days = []
    for row in csv_rows(data):
        start = first(row, "start_time_iso", "start_time")
        if start is None:
            continue
        day = as_day(start)
        days.append(day)
        if first(row, "input_tokens", "output_tokens", "num_model_requests") is None:
            continue  # a quiet day: covered, nothing used
        lines.append(_line(day, row))
    coverage = (min(days), max(days) + timedelta(days=1)) if days else None
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_tokens=True,
                          notes=("OpenAI usage export: tokens only, no cost",))  # fmt: skip
