"""Anthropic message usage: the Admin API usage report JSON and the Console's usage CSV.

API: ``GET /v1/organizations/usage_report/messages`` pages of buckets
``{"starting_at", "ending_at", "results": [...]}``; each result has
``uncached_input_tokens``, ``cache_read_input_tokens``,
``cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``,
``output_tokens``, ``server_tool_use`` and, per ``group_by``, ``model``,
``api_key_id``, ``workspace_id``, ``service_tier``, ``context_window``.

Console CSV: ``usage_date_utc, model_version, api_key, workspace, usage_type,
context_window, usage_input_tokens_no_cache, usage_input_tokens_cache_write_5m,
usage_input_tokens_cache_write_1h, usage_input_tokens_cache_read,
usage_output_tokens, web_search_count[, inference_geo, speed]``. Its
``api_key`` is the key's *name*, not its id; map names in the mapping file.

Input follows the gateway rule: uncached + cache reads + cache writes.
"""

from __future__ import annotations

from typing import Any

from .json_pages import daily_results, first_result
from .lines import (
    BillLine,
    ProviderExport,
    add,
    as_day,
    as_int,
    csv_header,
    csv_rows,
    first,
    text,
)

FORMAT = "anthropic-usage"
PROVIDER = "anthropic"
CSV_REQUIRED = {"usage_date_utc", "usage_input_tokens_no_cache", "usage_output_tokens"}


def sniff(data: bytes) -> bool:
    result = first_result(data)
    if result is not None:
        return "uncached_input_tokens" in result
    return CSV_REQUIRED <= csv_header(data)


def parse(data: bytes, *, path: str = "") -> ProviderExport:
    if data.lstrip()[:1] in (b"{", b"["):
        return _parse_json(data, path)
    return _parse_csv(data, path)


def _line(day: Any, *, model: Any, uncached: Any, cache_read: Any, write_5m: Any, write_1h: Any, output: Any,
          api_key: Any, workspace: Any) -> BillLine:  # fmt: skip
    cached = as_int(cache_read)
    writes = add(as_int(write_5m), as_int(write_1h))
    key, workspace_id = text(api_key), text(workspace)
    account, kind = (key, "api_key_id") if key else ((workspace_id, "workspace_id") if workspace_id else ("", ""))
    return BillLine(
        day=as_day(day),
        provider=PROVIDER,
        model=text(model),
        account=account,
        account_kind=kind,
        input_tokens=(as_int(uncached) or 0) + (cached or 0) + (writes or 0),
        cached_input_tokens=cached,
        cache_write_input_tokens=writes,
        output_tokens=as_int(output) or 0,
    )


def _parse_json(data: bytes, path: str) -> ProviderExport:
    lines: list[BillLine] = []
    results, coverage = daily_results(data, start_key="starting_at", export="Anthropic usage")
    for day, r in results:
        creation = r.get("cache_creation") or {}
        lines.append(_line(
            day, model=r.get("model"), uncached=r.get("uncached_input_tokens"),
            cache_read=r.get("cache_read_input_tokens"),
            # older reports had the two cache-write counts flat on the result
            write_5m=creation.get("ephemeral_5m_input_tokens", r.get("cache_creation_5m_input_tokens")),
            write_1h=creation.get("ephemeral_1h_input_tokens", r.get("cache_creation_1h_input_tokens")),
            output=r.get("output_tokens"), api_key=r.get("api_key_id"), workspace=r.get("workspace_id"),
        ))  # fmt: skip
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), coverage=coverage, has_tokens=True,
                          notes=("Anthropic usage export: tokens only, no cost",))  # fmt: skip


def _parse_csv(data: bytes, path: str) -> ProviderExport:
    lines = [
        _line(
            row["usage_date_utc"], model=first(row, "model_version", "model"),
            uncached=row.get("usage_input_tokens_no_cache"), cache_read=row.get("usage_input_tokens_cache_read"),
            write_5m=row.get("usage_input_tokens_cache_write_5m"), write_1h=row.get("usage_input_tokens_cache_write_1h"),
            output=row.get("usage_output_tokens"), api_key=row.get("api_key"), workspace=row.get("workspace"),
        )
        for row in csv_rows(data)
        if row.get("usage_date_utc")
    ]  # fmt: skip
    return ProviderExport(format=FORMAT, path=path, provider=PROVIDER, lines=tuple(lines), has_tokens=True,
                          notes=("Anthropic usage export: tokens only, no cost",))  # fmt: skip
