"""FOCUS 1.2 export: AI usage as FinOps cost and usage rows, CSV or Parquet.

One row per UTC day, per (tenant, team, app, consumer, route, provider, model,
service tier, price) and per priced unit: uncached input, cached input, cache
write, output, reasoning tokens and the per-request fee. Each row is one SKU
price, so ListUnitPrice x PricingQuantity = ListCost and ContractedUnitPrice x
PricingQuantity = ContractedCost hold exactly (FOCUS requires it): unit
prices are per 1,000,000 tokens, PricingQuantity is tokens / 10^6.

BilledCost = EffectiveCost = ContractedCost (what the contract says we pay;
no commitment discounts to amortize). Usage with no known price cannot be a
valid FOCUS row (ListUnitPrice must not be null for Usage): it is left out and
counted on stderr, or with ``include_unpriced`` written with zero costs, null
unit prices and x_PricingStatus = "unpriced".

How much of a row was measured rides beside it: x_EstimatedEvents (requests
whose usage the plugin estimated, labelled, not counted by the provider),
x_EstimatedCostShare (their part of the group's contracted cost, 0..1) and
x_UnmeasuredEvents (answered requests it could not measure at all: their cost
is missing, not zero). They describe the whole group, so each of its rows
carries the same values.

Column names, types, nullability and allowed values follow the FOCUS 1.2
specification (FinOps Foundation, specification/columns/*.md at tag v1.2);
our own dimensions ride in x_ columns as the spec's custom-column rule asks.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from ...periods import day_bounds
from ...rollups.columns import GROUP_KEY, MEASUREMENT, NAMES
from .allocation_config import AllocationConfig
from .runner import Runner
from .source import SourcePlan, plan, render

FOCUS_VERSION = "1.2"
MTOK = Decimal(1_000_000)

# (column, FOCUS data type); order = output order: the spec's columns alphabetically, then x_ columns.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("AvailabilityZone", "String"),
    ("BilledCost", "Decimal"),
    ("BillingAccountId", "String"),
    ("BillingAccountName", "String"),
    ("BillingCurrency", "String"),
    ("BillingPeriodEnd", "DateTime"),
    ("BillingPeriodStart", "DateTime"),
    ("ChargeCategory", "String"),
    ("ChargeClass", "String"),
    ("ChargeDescription", "String"),
    ("ChargeFrequency", "String"),
    ("ChargePeriodEnd", "DateTime"),
    ("ChargePeriodStart", "DateTime"),
    ("ConsumedQuantity", "Decimal"),
    ("ConsumedUnit", "String"),
    ("ContractedCost", "Decimal"),
    ("ContractedUnitPrice", "Decimal"),
    ("EffectiveCost", "Decimal"),
    ("InvoiceId", "String"),
    ("InvoiceIssuerName", "String"),
    ("ListCost", "Decimal"),
    ("ListUnitPrice", "Decimal"),
    ("PricingCategory", "String"),
    ("PricingQuantity", "Decimal"),
    ("PricingUnit", "String"),
    ("ProviderName", "String"),
    ("PublisherName", "String"),
    ("RegionId", "String"),
    ("RegionName", "String"),
    ("ResourceId", "String"),
    ("ResourceName", "String"),
    ("ResourceType", "String"),
    ("ServiceCategory", "String"),
    ("ServiceName", "String"),
    ("ServiceSubcategory", "String"),
    ("SkuId", "String"),
    ("SkuMeter", "String"),
    ("SkuPriceDetails", "JSON"),
    ("SkuPriceId", "String"),
    ("SubAccountId", "String"),
    ("SubAccountName", "String"),
    ("SubAccountType", "String"),
    ("Tags", "JSON"),
    ("x_App", "String"),
    ("x_CatalogVersion", "String"),
    ("x_Consumer", "String"),
    ("x_ConsumerName", "String"),
    ("x_EstimatedCostShare", "Decimal"),
    ("x_EstimatedEvents", "Integer"),
    ("x_Events", "Integer"),
    ("x_ListPriceSource", "String"),
    ("x_Model", "String"),
    ("x_PriceModelId", "String"),
    ("x_PriceSource", "String"),
    ("x_PricingStatus", "String"),
    ("x_Provider", "String"),
    ("x_Route", "String"),
    ("x_RouteName", "String"),
    ("x_ServiceTier", "String"),
    ("x_Team", "String"),
    ("x_Tenant", "String"),
    ("x_TokenType", "String"),
    ("x_UnmeasuredEvents", "Integer"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
# Decimal scales in Parquet: costs carry the store's 18, unit prices 12 (per 1M tokens), quantities 6.
DECIMAL_SCALE = {"ListUnitPrice": 12, "ContractedUnitPrice": 12, "PricingQuantity": 6, "ConsumedQuantity": 0, "x_EstimatedCostShare": 6}
# Unit price (12 decimals) x quantity (6) needs up to ~40 digits; Python's default context keeps 28.
EXACT = Context(prec=80)
COST_SCALE = 18

# Priced units: (x_TokenType, SkuMeter, tokens column or None for requests, rate suffix).
UNITS: tuple[tuple[str, str, str | None, str], ...] = (
    ("input", "Input Tokens", "uncached_input_tokens", "input"),
    ("cached-input", "Cached Input Tokens", "cached_input_tokens", "cached_input"),
    ("cache-write", "Cache Write Input Tokens", "cache_write_input_tokens", "cache_write"),
    ("output", "Output Tokens", "non_reasoning_output_tokens", "output"),
    ("reasoning", "Reasoning Tokens", "reasoning_tokens", "reasoning"),
    ("request", "API Requests", None, "request"),
)
# How providers are named in FOCUS: (ProviderName, ServiceName). Unknown ones: title-cased id.
# Every provider the plugin's registry can record has a row (tests/analytics/reports/test_focus.py).
PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Claude API"),
    "azure": ("Microsoft", "Azure OpenAI"),
    "bedrock": ("Amazon Web Services", "Amazon Bedrock"),
    "aws": ("Amazon Web Services", "Amazon Bedrock"),
    "gemini": ("Google", "Gemini API"),
    "google": ("Google", "Gemini API"),
    "vertex": ("Google", "Vertex AI"),
    "mistral": ("Mistral AI", "Mistral AI API"),
    "cohere": ("Cohere", "Cohere API"),
    "deepseek": ("DeepSeek", "DeepSeek API"),
    "x-ai": ("xAI", "xAI API"),
    "groq": ("Groq", "GroqCloud"),
    "ollama": ("Ollama (self-hosted)", "Ollama API"),
    "openai-compatible": ("OpenAI-compatible (self-hosted)", "OpenAI-compatible API"),
}
# Who made the model, by model-name prefix (PublisherName): a Claude model on Bedrock is Anthropic's.
PUBLISHERS: tuple[tuple[str, str], ...] = (
    ("claude", "Anthropic"), ("gpt", "OpenAI"), ("o1", "OpenAI"), ("o3", "OpenAI"), ("o4", "OpenAI"),
    ("text-embedding", "OpenAI"), ("gemini", "Google"), ("llama", "Meta"), ("mistral", "Mistral AI"),
    ("command", "Cohere"), ("deepseek", "DeepSeek"), ("grok", "xAI"),
)  # fmt: skip

Progress = Callable[[int, int, int], None]


@dataclass
class ExportSummary:
    path: str
    rows: int
    days: int
    unpriced_events: int
    unpriced_tokens: int
    unpriced_models: list[str]
    billed_cost: Decimal
    list_cost: Decimal
    events: int = 0
    estimated_events: int = 0
    estimated_cost: Decimal = Decimal(0)
    unmeasured_events: int = 0


def render_day(day_plan: SourcePlan, database: str) -> tuple[str, dict[str, Any]]:
    """Query: one day's groups with their price key and quantities."""
    source, params = render(day_plan, database)
    keys = ", ".join(GROUP_KEY)
    sql = f"""
SELECT {keys}, {", ".join(f"max({n})" for n in NAMES)},
       sum(events), sum(input_tokens) - sum(cached_input_tokens) - sum(cache_write_input_tokens),
       sum(cached_input_tokens), sum(cache_write_input_tokens),
       sum(output_tokens) - sum(reasoning_tokens), sum(reasoning_tokens),
       sum(cost_total), {", ".join(f"sum({m})" for m in MEASUREMENT)}
FROM (
{source}
)
GROUP BY {keys}
ORDER BY {keys}
"""
    return sql, params


_TOKEN_FIELDS = ("uncached_input_tokens", "cached_input_tokens", "cache_write_input_tokens", "non_reasoning_output_tokens", "reasoning_tokens")
_GROUP_FIELDS = (*GROUP_KEY, *NAMES, "events", *_TOKEN_FIELDS, "cost_total", *MEASUREMENT)


def focus_rows(group: dict[str, Any], day: date, config: AllocationConfig, *, include_unpriced: bool) -> Iterator[dict[str, Any]]:
    """The FOCUS rows of one rollup group on one day."""
    priced = group["pricing_status"] == "priced"
    if not priced and not include_unpriced:
        return
    provider, model, tier = group["provider"], group["model"], group["price_tier"] or "default"
    provider_name, service_name = PROVIDERS.get(provider, (provider.title() or "Unknown", f"{provider.title() or 'Unknown'} API"))
    publisher = next((name for prefix, name in PUBLISHERS if model.lower().startswith(prefix)), provider_name)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    month = datetime(day.year, day.month, 1, tzinfo=UTC)
    next_month = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
    sku_model = group["price_model_id"] or model
    # The group's usage the plugin estimated, as a share of its contracted cost (the same on each of its rows).
    cost = Decimal(group["cost_total"])
    estimated_share = EXACT.divide(Decimal(group["estimated_cost_total"]), cost).quantize(Decimal("0.000001")) if cost else Decimal(0)
    tags = {k: v for k, v in (("tenant", group["tenant"]), ("team", group["team"]), ("app", group["app"]), ("consumer", group["consumer_id"]), ("route", group["route_id"])) if v}
    for token_type, meter, tokens_column, rate in UNITS:
        list_rate = Decimal(group[f"list_rate_{rate}_e12"]).scaleb(-12)
        contracted_rate = Decimal(group[f"rate_{rate}_e12"]).scaleb(-12)
        if tokens_column is None:
            if not (list_rate or contracted_rate):
                continue
            consumed, consumed_unit = Decimal(group["events"]), "Requests"
            pricing_quantity, pricing_unit = consumed, "Requests"
        else:
            consumed, consumed_unit = Decimal(group[tokens_column]), "Tokens"
            if not consumed:
                continue
            pricing_quantity, pricing_unit = EXACT.divide(consumed, MTOK), "1000000 Tokens"
        list_cost = EXACT.multiply(list_rate, pricing_quantity) if priced else Decimal(0)
        contracted_cost = EXACT.multiply(contracted_rate, pricing_quantity) if priced else Decimal(0)
        sku = f"{provider}/{sku_model}/{token_type}"
        yield {
            "AvailabilityZone": None,
            "BilledCost": contracted_cost,
            "BillingAccountId": config.billing_account_id,
            "BillingAccountName": config.billing_account_name,
            "BillingCurrency": group["currency"] or "USD",
            "BillingPeriodEnd": next_month,
            "BillingPeriodStart": month,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeDescription": f"{model} {meter.lower()} ({provider_name}, {tier} tier)",
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": start + timedelta(days=1),
            "ChargePeriodStart": start,
            "ConsumedQuantity": consumed,
            "ConsumedUnit": consumed_unit,
            "ContractedCost": contracted_cost,
            "ContractedUnitPrice": contracted_rate if priced else None,
            "EffectiveCost": contracted_cost,
            "InvoiceId": None,
            "InvoiceIssuerName": provider_name,
            "ListCost": list_cost,
            "ListUnitPrice": list_rate if priced else None,
            "PricingCategory": "Standard",
            "PricingQuantity": pricing_quantity,
            "PricingUnit": pricing_unit,
            "ProviderName": provider_name,
            "PublisherName": publisher,
            "RegionId": None,
            "RegionName": None,
            "ResourceId": f"{provider}/{model}",
            "ResourceName": model,
            "ResourceType": "Model",
            "ServiceCategory": "AI and Machine Learning",
            "ServiceName": service_name,
            "ServiceSubcategory": "Generative AI",
            "SkuId": sku,
            "SkuMeter": meter,
            "SkuPriceDetails": json.dumps({"x_ServiceTier": tier, "x_TokenType": token_type}, sort_keys=True),
            "SkuPriceId": f"{sku}/{tier}",
            "SubAccountId": group["tenant"] or None,
            "SubAccountName": group["tenant"] or None,
            "SubAccountType": "Tenant" if group["tenant"] else None,
            "Tags": json.dumps(tags, sort_keys=True),
            "x_App": group["app"],
            "x_CatalogVersion": group["catalog_version"],
            "x_Consumer": group["consumer_id"],
            "x_ConsumerName": group["consumer_name"],
            "x_EstimatedCostShare": estimated_share,
            "x_EstimatedEvents": int(group["estimated_events"]),
            "x_Events": int(group["events"]),
            "x_ListPriceSource": group["list_price_source"],
            "x_Model": model,
            "x_PriceModelId": group["price_model_id"],
            "x_PriceSource": group["price_source"],
            "x_PricingStatus": group["pricing_status"],
            "x_Provider": provider,
            "x_Route": group["route_id"],
            "x_RouteName": group["route_name"],
            "x_ServiceTier": tier,
            "x_Team": group["team"],
            "x_Tenant": group["tenant"],
            "x_TokenType": token_type,
            "x_UnmeasuredEvents": int(group["unmeasured_events"]),
        }


def export(
    runner: Runner,
    *,
    first: date,
    last: date,
    out: Path,
    config: AllocationConfig | None = None,
    include_unpriced: bool = False,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the FOCUS dataset for [first, last] (UTC days) to out (.csv or .parquet), a day at a time."""
    config = config or AllocationConfig()
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError("--out must end in .csv or .parquet")
    start, end = day_bounds(first, last)
    full = plan(runner, start, end)
    days = full.days()
    summary = ExportSummary(str(out), 0, len(days), 0, 0, [], Decimal(0), Decimal(0))
    unpriced_models: set[str] = set()
    writer = _ParquetWriter(out) if suffix == ".parquet" else _CsvWriter(out)
    try:
        for index, day in enumerate(days, start=1):
            _, rows = runner.query(*render_day(full.for_day(day), runner.database))
            batch: list[dict[str, Any]] = []
            for row in rows:
                group = dict(zip(_GROUP_FIELDS, row))
                summary.events += int(group["events"])
                summary.estimated_events += int(group["estimated_events"])
                summary.estimated_cost = EXACT.add(summary.estimated_cost, Decimal(group["estimated_cost_total"]))
                summary.unmeasured_events += int(group["unmeasured_events"])
                if group["pricing_status"] != "priced":
                    summary.unpriced_events += int(group["events"])
                    summary.unpriced_tokens += sum(int(group[c]) for c in _TOKEN_FIELDS)
                    unpriced_models.add(group["model"])
                for focus_row in focus_rows(group, day, config, include_unpriced=include_unpriced):
                    summary.billed_cost = EXACT.add(summary.billed_cost, focus_row["BilledCost"])
                    summary.list_cost = EXACT.add(summary.list_cost, focus_row["ListCost"])
                    batch.append(focus_row)
            writer.write(batch)
            summary.rows += len(batch)
            if progress is not None:
                progress(index, len(days), summary.rows)
    finally:
        writer.close()
    summary.unpriced_models = sorted(unpriced_models)
    return summary


def format_datetime(moment: datetime) -> str:
    """FOCUS Date/Time format: UTC, 'YYYY-MM-DDTHH:mm:ssZ'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_decimal(value: Decimal) -> str:
    """FOCUS Numeric format: plain decimal, no exponent, no '+', trailing zeros dropped."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class _CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMN_NAMES)

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._csv.writerow([_csv_value(row[name]) for name in COLUMN_NAMES])

    def close(self) -> None:
        self._file.close()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    return str(value)


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        fields = []
        for name, kind in COLUMNS:
            if kind == "Decimal":
                arrow_type = pa.decimal128(38, DECIMAL_SCALE.get(name, COST_SCALE))
            elif kind == "Integer":
                arrow_type = pa.int64()
            elif kind == "DateTime":
                arrow_type = pa.timestamp("s", tz="UTC")
            else:
                arrow_type = pa.string()
            fields.append(pa.field(name, arrow_type, nullable=True))
        self._schema = pa.schema(fields, metadata={b"focus_version": FOCUS_VERSION.encode()})
        self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = {name: [row[name] for row in rows] for name in COLUMN_NAMES}
        self._writer.write_table(self._pa.Table.from_pydict(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def default_progress(stream: Any) -> Progress:
    """Progress on stderr: one line updated in place on a terminal, a line per 10% otherwise."""
    tty = hasattr(stream, "isatty") and stream.isatty()
    last_decile = [-1]

    def report(done: int, total: int, rows: int) -> None:
        if tty:
            stream.write(f"\rFOCUS export: day {done}/{total}, {rows:,} rows")
            if done == total:
                stream.write("\n")
        else:
            decile = done * 10 // max(total, 1)
            if decile != last_decile[0] or done == total:
                last_decile[0] = decile
                stream.write(f"FOCUS export: day {done}/{total}, {rows:,} rows\n")
        stream.flush()

    return report
