"""The FOCUS export against the FOCUS 1.2 specification (FinOps Foundation, tag v1.2, specification/columns/*.md).

SPEC below is the spec's own column table, transcribed: Column ID -> (feature
level, allows nulls, data type). The export is checked against it, and
against the spec's format, allowed-value and arithmetic rules, in CSV and Parquet.
"""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.seed import Seed, day_start, random_events, recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.focus import export
from ai_chargeback_aggregator.analytics.reports.report import build_report

# FOCUS 1.2: Column ID: (Feature level, Allows nulls, Data type)
SPEC: dict[str, tuple[str, bool, str]] = {
    "AvailabilityZone": ("Recommended", True, "String"),
    "BilledCost": ("Mandatory", False, "Decimal"),
    "BillingAccountId": ("Mandatory", False, "String"),
    "BillingAccountName": ("Mandatory", True, "String"),
    "BillingAccountType": ("Conditional", False, "String"),
    "BillingCurrency": ("Mandatory", False, "String"),
    "BillingPeriodEnd": ("Mandatory", False, "Date/Time"),
    "BillingPeriodStart": ("Mandatory", False, "Date/Time"),
    "CapacityReservationId": ("Conditional", True, "String"),
    "CapacityReservationStatus": ("Conditional", True, "String"),
    "ChargeCategory": ("Mandatory", False, "String"),
    "ChargeClass": ("Mandatory", True, "String"),
    "ChargeDescription": ("Mandatory", True, "String"),
    "ChargeFrequency": ("Recommended", False, "String"),
    "ChargePeriodEnd": ("Mandatory", False, "Date/Time"),
    "ChargePeriodStart": ("Mandatory", False, "Date/Time"),
    "CommitmentDiscountCategory": ("Conditional", True, "String"),
    "CommitmentDiscountId": ("Conditional", True, "String"),
    "CommitmentDiscountName": ("Conditional", True, "String"),
    "CommitmentDiscountQuantity": ("Conditional", True, "Decimal"),
    "CommitmentDiscountStatus": ("Conditional", True, "String"),
    "CommitmentDiscountType": ("Conditional", True, "String"),
    "CommitmentDiscountUnit": ("Conditional", True, "String"),
    "ConsumedQuantity": ("Conditional", True, "Decimal"),
    "ConsumedUnit": ("Conditional", True, "String"),
    "ContractedCost": ("Mandatory", False, "Decimal"),
    "ContractedUnitPrice": ("Conditional", True, "Decimal"),
    "EffectiveCost": ("Mandatory", False, "Decimal"),
    "InvoiceId": ("Recommended", True, "String"),
    "InvoiceIssuerName": ("Mandatory", False, "String"),
    "ListCost": ("Mandatory", False, "Decimal"),
    "ListUnitPrice": ("Conditional", True, "Decimal"),
    "PricingCategory": ("Conditional", True, "String"),
    "PricingCurrency": ("Conditional", True, "String"),
    "PricingCurrencyContractedUnitPrice": ("Conditional", True, "Decimal"),
    "PricingCurrencyEffectiveCost": ("Conditional", True, "Decimal"),
    "PricingCurrencyListUnitPrice": ("Conditional", True, "Decimal"),
    "PricingQuantity": ("Mandatory", True, "Decimal"),
    "PricingUnit": ("Mandatory", True, "String"),
    "ProviderName": ("Mandatory", False, "String"),
    "PublisherName": ("Mandatory", False, "String"),
    "RegionId": ("Conditional", True, "String"),
    "RegionName": ("Conditional", True, "String"),
    "ResourceId": ("Conditional", True, "String"),
    "ResourceName": ("Conditional", True, "String"),
    "ResourceType": ("Conditional", True, "String"),
    "ServiceCategory": ("Mandatory", False, "String"),
    "ServiceName": ("Mandatory", False, "String"),
    "ServiceSubcategory": ("Recommended", False, "String"),
    "SkuId": ("Conditional", True, "String"),
    "SkuMeter": ("Conditional", True, "String"),
    "SkuPriceDetails": ("Conditional", True, "JSON"),
    "SkuPriceId": ("Conditional", True, "String"),
    "SubAccountId": ("Conditional", True, "String"),
    "SubAccountName": ("Conditional", True, "String"),
    "SubAccountType": ("Conditional", True, "String"),
    "Tags": ("Conditional", True, "JSON"),
}
# Conditional columns whose condition holds for metered AI usage (unit prices, SKUs, usage measurement, tenants as
# sub accounts, resources); each "MUST be present when ...".
APPLICABLE_CONDITIONAL = {
    "ConsumedQuantity", "ConsumedUnit", "ContractedUnitPrice", "ListUnitPrice", "PricingCategory", "ResourceId",
    "ResourceName", "ResourceType", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId",
    "SubAccountName", "SubAccountType", "Tags",
}  # fmt: skip
# "MUST NOT be null when ChargeCategory is Usage and ChargeClass is not Correction" (every row we write).
NOT_NULL_FOR_USAGE = {"ConsumedQuantity", "ConsumedUnit", "ContractedUnitPrice", "ListUnitPrice", "PricingCategory",
                      "PricingQuantity", "PricingUnit", "SkuId", "SkuPriceId"}  # fmt: skip
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {None, "Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {"AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
                        "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
                        "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other"},
    "ServiceSubcategory": {"AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
                           "Other (AI and Machine Learning)"},  # the AI and Machine Learning children
}  # fmt: skip
ARROW_TYPE = {"Decimal": pa.types.is_decimal, "String": pa.types.is_string, "JSON": pa.types.is_string,
              "Date/Time": pa.types.is_timestamp}  # fmt: skip
DATETIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # Date/Time Format: 'YYYY-MM-DDTHH:mm:ssZ'
NUMERIC_FORMAT = re.compile(r"^-?\d+(\.\d+)?([eE]-?\d+)?$")  # Numeric Format: no commas, units, '+'
CURRENCY_FORMAT = re.compile(r"^[A-Z]{3}$")  # ISO 4217


@pytest.fixture
def exported(seed: Seed, tmp_path: Path) -> tuple[Seed, Path, Path]:
    seed.insert(random_events(600, first=recent_day(3), days=3))
    seed.insert([usage_event(day_start(recent_day(2)), provider="perplexity", requested_model="sonar", served_model="sonar"),  # a request fee
                 usage_event(day_start(recent_day(2)), provider="vllm", requested_model="llama-internal", served_model="llama-internal")])  # fmt: skip
    seed.build_rollups()
    csv_path, parquet_path = tmp_path / "focus.csv", tmp_path / "focus.parquet"
    for path in (csv_path, parquet_path):
        summary = export(seed.runner, first=recent_day(3), last=recent_day(1), out=path)
        assert summary.unpriced_events == 1 and summary.unpriced_models == ["llama-internal"]
    return seed, csv_path, parquet_path


def test_parquet_columns_types_and_nullability_follow_the_spec(exported: tuple[Seed, Path, Path]) -> None:
    _, _, path = exported
    table = pq.read_table(path)
    names = set(table.column_names)
    mandatory = {c for c, (level, _, _) in SPEC.items() if level == "Mandatory"}
    assert mandatory <= names, mandatory - names
    assert APPLICABLE_CONDITIONAL <= names
    assert all(c in SPEC or c.startswith("x_") for c in names)  # custom columns carry the x_ prefix
    assert {"x_Tenant", "x_Team", "x_App", "x_Consumer", "x_Model"} <= names
    for name in names & SPEC.keys():
        _, nullable, kind = SPEC[name]
        assert ARROW_TYPE[kind](table.schema.field(name).type), name
        if not nullable:
            assert table.column(name).null_count == 0, name
    for name in NOT_NULL_FOR_USAGE:
        assert table.column(name).null_count == 0, name
    rows = table.to_pylist()
    assert rows
    for column, allowed in ALLOWED.items():
        assert {row[column] for row in rows} <= allowed, column
    for row in rows:
        assert row["ListUnitPrice"] * row["PricingQuantity"] == row["ListCost"]
        assert row["ContractedUnitPrice"] * row["PricingQuantity"] == row["ContractedCost"]
        assert row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"]
        assert row["ListUnitPrice"] >= 0 and row["ContractedUnitPrice"] >= 0
        assert row["ChargePeriodStart"] < row["ChargePeriodEnd"]
        assert row["BillingPeriodStart"] <= row["ChargePeriodStart"] and row["ChargePeriodEnd"] <= row["BillingPeriodEnd"]
        assert CURRENCY_FORMAT.match(row["BillingCurrency"])
        assert (row["ConsumedUnit"] is None) == (row["ConsumedQuantity"] is None)
        assert (row["SubAccountType"] is None) == (row["SubAccountId"] is None)
        for key_value in ("Tags", "SkuPriceDetails"):  # Key-Value Format: a JSON object of scalars
            value = json.loads(row[key_value])
            assert isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values())
        assert all(k.startswith("x_") for k in json.loads(row["SkuPriceDetails"]))  # not FOCUS-defined properties
    assert {row["x_TokenType"] for row in rows} >= {"input", "cached-input", "output", "reasoning", "request"}


def test_csv_values_use_the_spec_formats(exported: tuple[Seed, Path, Path]) -> None:
    _, path, _ = exported
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for row in rows:
        for name, (_, nullable, kind) in SPEC.items():
            if name not in row:
                continue
            value = row[name]
            if value == "":
                assert nullable, name
            elif kind == "Decimal":
                assert NUMERIC_FORMAT.match(value), (name, value)
            elif kind == "Date/Time":
                assert DATETIME_FORMAT.match(value), (name, value)
        assert Decimal(row["ListUnitPrice"]) * Decimal(row["PricingQuantity"]) == Decimal(row["ListCost"])


def test_focus_costs_reconcile_with_the_chargeback_report(exported: tuple[Seed, Path, Path]) -> None:
    seed, _, path = exported
    table = pq.read_table(path).to_pylist()
    report = build_report(seed.runner, first=recent_day(3), last=recent_day(1), by="model")
    assert sum((r["BilledCost"] for r in table), Decimal(0)) == Decimal(report.totals["cost_exact"])
    assert sum((r["ListCost"] for r in table), Decimal(0)) == Decimal(report.totals["list_cost_exact"])
    tokens = sum(int(r["ConsumedQuantity"]) for r in table if r["ConsumedUnit"] == "Tokens")
    priced = [line for line in report.lines if not line["unpriced_events"]]
    assert tokens == sum(line["input_tokens"] + line["output_tokens"] for line in priced)


def test_unpriced_usage_is_left_out_or_written_as_unpriced_on_request(exported: tuple[Seed, Path, Path], tmp_path: Path) -> None:
    seed, _, path = exported
    assert "llama-internal" not in {r["x_Model"] for r in pq.read_table(path).to_pylist()}
    out = tmp_path / "with-unpriced.csv"
    export(seed.runner, first=recent_day(3), last=recent_day(1), out=out, include_unpriced=True)
    rows = [r for r in csv.DictReader(out.open()) if r["x_Model"] == "llama-internal"]
    assert rows and all(r["x_PricingStatus"] == "unpriced" and r["BilledCost"] == "0" and r["ListUnitPrice"] == "" for r in rows)


def test_long_exports_report_progress_per_day(seed: Seed, tmp_path: Path) -> None:
    seed.insert(random_events(50, first=recent_day(3), days=3))
    calls: list[tuple[int, int, int]] = []
    export(seed.runner, first=recent_day(3), last=recent_day(1), out=tmp_path / "f.csv", progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2] > 0


def test_every_provider_the_plugin_records_has_a_focus_name() -> None:
    """The plugin's registry is the list of providers an event can name (the aggregator never imports the plugin)."""
    from ai_chargeback_aggregator.analytics.reports.focus import PROVIDERS
    from ai_chargeback_plugin.usage.registry import PROVIDER_NAMES

    assert set(PROVIDER_NAMES) <= set(PROVIDERS)
