"""FOCUS cost and usage exports (FinOps Open Cost and Usage Specification), CSV or Parquet.

What clouds and a growing number of SaaS vendors emit: one row per charge with
``ChargePeriodStart``, ``ChargeCategory`` (Usage, Purchase, Tax, Credit,
Adjustment), ``ProviderName`` (``ServiceProviderName`` from FOCUS 1.3),
``ServiceName``, ``ResourceId``, ``SkuId``, ``ChargeDescription``,
``ConsumedQuantity`` + ``ConsumedUnit``, ``BilledCost`` + ``BillingCurrency``
and provider extensions prefixed ``x_``.

FOCUS has no model column. The model is taken from the first non-empty of an
``x_`` model column (``x_Model``, ``x_ModelName``, ``x_ModelId``),
``x_SkuMeterName``, ``SkuId``, ``ResourceName``, ``ResourceId``; meters and
SKU ids that are not model names are mapped in the mapping file's ``models``
section. Token direction (input, cached input, cache write, output) comes from
an ``x_TokenType``/``x_UsageType`` column or the meter/description text;
quantities are scaled by the unit ("Tokens", "1K Tokens", "1M Tokens",
"1000 Tokens"); rows in other units add cost only. Only ``Usage`` rows count:
credits and adjustments are invoice-level and have no gateway counterpart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

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
from .normalize import normalize_provider

FORMAT = "focus"
PARQUET_MAGIC = b"PAR1"
REQUIRED = {"ChargePeriodStart", "BilledCost"}
USAGE_CATEGORY = "usage"
_MODEL_EXTENSIONS = ("x_model", "x_modelname", "x_model_name", "x_modelid", "x_model_id")
_MODEL_FALLBACKS = ("x_skumetername", "skuid", "resourcename", "resourceid")
_TOKEN_TYPE_COLUMNS = ("x_tokentype", "x_token_type", "x_usagetype", "x_usage_type")
_DIRECTION_TEXT_COLUMNS = ("x_skumetername", "x_skudescription", "chargedescription", "skuid", "skupriceid")
_ACCOUNT_COLUMNS = (("x_apikeyid", "api_key_id"), ("x_api_key_id", "api_key_id"), ("x_projectid", "project_id"),
                    ("x_project_id", "project_id"), ("x_workspaceid", "workspace_id"), ("x_workspace_id", "workspace_id"))  # fmt: skip
# Trailing words of meter names that are not part of the model: unit, deployment
# region (Azure glbl/regnl/dzone), direction.
_METER_NOISE = re.compile(
    r"[\s_-]+(?:tokens?|1k|1m|glbl|global|regnl|regional|dzone|data[\s_-]?zone|batch|"
    r"cached[\s_-]?input|cache[\s_-]?(?:read|write|creation)|cached|input|output|inp|outp|prompt|completion)$",
    re.IGNORECASE,
)
_UNIT = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)?\s*(?P<scale>[km])?\s*tokens?\s*$", re.IGNORECASE)
_SCALE = {None: 1, "k": 1_000, "m": 1_000_000}
# Checked in order: "cached input" also says "input".
_DIRECTIONS = (
    ("cache_write", re.compile(r"cache[\s_-]*(?:write|creation)", re.IGNORECASE)),
    ("cached", re.compile(r"cache[\s_-]*(?:read|hit)|cached", re.IGNORECASE)),
    ("output", re.compile(r"output|outp\b|completion", re.IGNORECASE)),
    ("input", re.compile(r"input|inp\b|prompt", re.IGNORECASE)),
)


def sniff(data: bytes) -> bool:
    if data[:4] == PARQUET_MAGIC:
        return True
    return REQUIRED <= csv_header(data)


def parse(data: bytes, *, path: str = "", provider: str = "", provider_aliases: Mapping[str, str] | None = None) -> ProviderExport:
    rows = _parquet_rows(data) if data[:4] == PARQUET_MAGIC else csv_rows(data)
    lines: list[BillLine] = []
    skipped = 0
    days = []
    for raw in rows:
        row = {k.lower(): v for k, v in raw.items()}
        if not REQUIRED <= {k for k in raw}:
            raise ExportError(f"FOCUS row without {sorted(REQUIRED - set(raw))}")
        if text(row.get("chargecategory")).lower() not in ("", USAGE_CATEGORY):
            skipped += 1
            continue
        day = as_day(row["chargeperiodstart"])
        days.append(day)
        lines.append(_line(row, day, provider, provider_aliases))
    notes = [f"{skipped} non-usage FOCUS rows (credits, tax, purchases, adjustments) left out"] if skipped else []
    coverage = (min(days), max(days) + timedelta(days=1)) if days else None
    return ProviderExport(format=FORMAT, path=path, lines=tuple(lines), coverage=coverage, has_cost=True,
                          has_tokens=any(line.total_tokens is not None for line in lines), notes=tuple(notes))  # fmt: skip


def _line(row: Mapping[str, Any], day: Any, provider: str, aliases: Mapping[str, str] | None) -> BillLine:
    name = provider or text(row.get("serviceprovidername")) or text(row.get("providername"))
    if not name:
        raise ExportError("FOCUS row without ProviderName; pass --provider")
    tokens = _tokens(row)
    direction = _direction(row) if tokens is not None else None
    account, kind = "", ""
    for column, account_kind in _ACCOUNT_COLUMNS:
        if text(row.get(column)):
            account, kind = text(row.get(column)), account_kind
            break
    cost = as_decimal(row.get("billedcost"))
    return BillLine(
        day=day,
        provider=normalize_provider(name, aliases),
        model=_model(row),
        account=account,
        account_kind=kind,
        input_tokens=tokens if direction in ("input", "cached", "cache_write") else None,
        cached_input_tokens=tokens if direction == "cached" else None,
        cache_write_input_tokens=tokens if direction == "cache_write" else None,
        output_tokens=tokens if direction == "output" else None,
        other_tokens=tokens if direction is None and tokens is not None else None,
        cost=cost if cost is not None else Decimal(0),
        currency=text(row.get("billingcurrency")).upper() or "USD",
    )


def _model(row: Mapping[str, Any]) -> str:
    for column in _MODEL_EXTENSIONS:
        value = text(row.get(column))
        if value:
            return value
    for column in _MODEL_FALLBACKS:
        value = text(row.get(column))
        if value:
            return meter_model(value)
    return ""


def meter_model(name: str) -> str:
    """A meter or SKU name without its unit, region and direction words.

    'gpt-4o-mini-0718-Inp-glbl' -> 'gpt-4o-mini-0718'; 'gpt-4o input tokens' -> 'gpt-4o'.
    """
    cleaned = name.strip()
    previous = None
    while previous != cleaned:
        previous = cleaned
        cleaned = _METER_NOISE.sub("", cleaned).strip()
    return cleaned or name.strip()


def _tokens(row: Mapping[str, Any]) -> int | None:
    quantity = as_decimal(row.get("consumedquantity"))
    match = _UNIT.match(text(row.get("consumedunit")))
    if quantity is None or match is None:
        return None
    per_unit = Decimal(match.group("n") or 1) * _SCALE[(match.group("scale") or "").lower() or None]
    return int((quantity * per_unit).to_integral_value())


def _direction(row: Mapping[str, Any]) -> str | None:
    explicit = " ".join(text(row.get(c)) for c in _TOKEN_TYPE_COLUMNS)
    described = " ".join(text(row.get(c)) for c in _DIRECTION_TEXT_COLUMNS)
    for source in (explicit, described):
        for direction, pattern in _DIRECTIONS:
            if pattern.search(source):
                return direction
    return None


def _parquet_rows(data: bytes) -> Iterable[dict[str, Any]]:
    import io

    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is in the aggregator extra
        raise ExportError("reading Parquet needs pyarrow (the aggregator extra)") from exc
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ExportError(f"not a readable Parquet file: {exc}") from exc
    for row in table.to_pylist():
        yield {str(k): v for k, v in row.items()}
