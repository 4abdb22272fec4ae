"""Usage/cost APIs page their answers: a file may hold one page, a list of pages, or JSON lines."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from .lines import ExportError, as_day


def load_pages(data: bytes) -> list[dict[str, Any]]:
    body = data.decode("utf-8-sig").strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        try:
            value = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ExportError(f"not JSON: {exc}") from exc
    pages = value if isinstance(value, list) else [value]
    if not all(isinstance(p, dict) for p in pages):
        raise ExportError("expected a page object or a list of page objects")
    return pages


def buckets(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in pages:
        data = page.get("data")
        if not isinstance(data, list):
            raise ExportError("page without a 'data' list")
        found.extend(b for b in data if isinstance(b, dict))
    return found


def first_result(data: bytes) -> dict[str, Any] | None:
    """The first result of the first bucket, for sniffing the format; None if not a usage/cost page."""
    try:
        for bucket in buckets(load_pages(data)):
            for result in bucket.get("results") or []:
                if isinstance(result, dict):
                    return result
    except (ExportError, UnicodeDecodeError):
        return None
    return None


def daily_results(data: bytes, *, start_key: str, export: str) -> tuple[list[tuple[date, Any]], tuple[date, date] | None]:
    """Every result of every daily bucket with its day, and the days the export covers
    (first day, day after the last); `start_key` names the bucket's start field."""
    results: list[tuple[date, Any]] = []
    days: list[date] = []
    for bucket in buckets(load_pages(data)):
        if start_key not in bucket:
            raise ExportError(f"{export} bucket without {start_key}")
        day = as_day(bucket[start_key])
        days.append(day)
        results.extend((day, result) for result in bucket.get("results") or [])
    coverage = (min(days), max(days) + timedelta(days=1)) if days else None
    return results, coverage
