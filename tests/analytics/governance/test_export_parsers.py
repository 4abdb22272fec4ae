"""Provider export parsers against fixtures written from the providers' documentation.

Each ``exports/<name>.<ext>`` has ``<name>.expected.json`` beside it: the
detected format, the days the export says it covers, and every parsed line.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ai_chargeback_aggregator.analytics.reconcile import (
    ExportError,
    detect,
    load_export,
    normalize_model,
    parse_mapping,
)
from ai_chargeback_aggregator.analytics.reconcile.lines import BillLine

EXPORTS = Path(__file__).parent / "exports"
CASES = sorted(p for p in EXPORTS.iterdir() if not p.name.endswith(".expected.json"))


def as_dict(line: BillLine) -> dict[str, Any]:
    out = dataclasses.asdict(line)
    out["day"] = line.day.isoformat()
    return out


@pytest.mark.parametrize("source", CASES, ids=[p.name for p in CASES])
def test_export_parses_to_the_expected_lines(source: Path) -> None:
    expected = json.loads(source.with_name(source.name.rsplit(".", 1)[0] + ".expected.json").read_text())
    export = load_export(source)
    assert export.format == expected["format"] == detect(source.read_bytes())
    coverage = None if export.coverage is None else [d.isoformat() for d in export.coverage]
    assert coverage == expected["coverage"]
    got = [as_dict(line) for line in export.lines]
    want = expected["lines"]
    for line in want:
        line["cost"] = None if line["cost"] is None else Decimal(line["cost"])
    assert got == want


def test_every_fixture_has_its_expectation() -> None:
    assert len(CASES) == 9
    for source in CASES:
        assert source.with_name(source.name.rsplit(".", 1)[0] + ".expected.json").exists(), source.name


def test_focus_parquet_reads_like_its_csv(tmp_path: Path) -> None:
    table = pacsv.read_csv(EXPORTS / "focus_azure.csv")
    # What clouds write: timestamps and numbers typed, not strings.
    start = pa.array([datetime(2025, 3, 1, tzinfo=UTC)] * table.num_rows, pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("ChargePeriodStart"), "ChargePeriodStart", start)
    path = tmp_path / "focus.parquet"
    pq.write_table(table, path)
    from_parquet = load_export(path)
    from_csv = load_export(EXPORTS / "focus_azure.csv")
    assert from_parquet.format == "focus"
    assert [as_dict(x) for x in from_parquet.lines] == [as_dict(x) for x in from_csv.lines]
    assert from_parquet.notes == ("1 non-usage FOCUS rows (credits, tax, purchases, adjustments) left out",)


def test_focus_provider_can_be_named_on_the_command_line() -> None:
    export = load_export(EXPORTS / "focus_azure.csv", provider="openai")
    assert {line.provider for line in export.lines} == {"openai"}


def test_unknown_and_malformed_exports_say_so(tmp_path: Path) -> None:
    unknown = tmp_path / "x.csv"
    unknown.write_text("a,b\n1,2\n")
    with pytest.raises(ExportError, match="unrecognized provider export"):
        load_export(unknown)
    broken = tmp_path / "y.json"
    broken.write_text('{"data": [{"start_time": 1740787200, "results": [{"object": "organization.usage.completions.result", '
                      '"input_tokens": "many", "output_tokens": 1, "num_model_requests": 1}]}]}')  # fmt: skip
    with pytest.raises(ExportError, match="expected a count"):
        load_export(broken)


@pytest.mark.parametrize(
    ("raw", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # dated snapshot
        ("gpt-4o-mini-0718", "gpt-4o-mini"),  # Azure meter
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4.1", "gpt-4.1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("Claude Sonnet 4", "claude-sonnet-4"),  # Console display name
        ("Claude Haiku 4.5", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-haiku-3-5"),  # old word order
        ("Claude Haiku 3.5", "claude-haiku-3-5"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-sonnet-3-5"),  # Bedrock
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-sonnet-3-7"),  # Bedrock inference profile
        ("claude-3-5-sonnet@20240620", "claude-sonnet-3-5"),  # Vertex
        ("text-embedding-3-small", "text-embedding-3-small"),
    ],
)
def test_model_names_normalize_to_one_family(raw: str, family: str) -> None:
    assert normalize_model(raw) == family


def test_mapping_aliases_apply_before_normalizing() -> None:
    mapping = parse_mapping({"models": {"DZH318Z0BQ4R": "gpt-4o-mini"}})
    assert normalize_model("DZH318Z0BQ4R", mapping.models) == "gpt-4o-mini"


def test_mapping_file_errors_are_collected() -> None:
    with pytest.raises(ExportError) as info:
        parse_mapping({"accounts": [{"provider": "openai"}, {"api_key_id": "k", "provider": "openai"}], "extra": 1})
    message = str(info.value)
    assert "unknown sections ['extra']" in message
    assert "accounts[0] needs exactly one of" in message
    assert "accounts[1] maps to no consumer" in message


def test_unix_buckets_are_utc_days() -> None:
    from ai_chargeback_aggregator.analytics.reconcile.lines import as_day

    assert as_day(1740787200) == date(2025, 3, 1)
    assert as_day("2025-03-01T23:30:00-02:00") == date(2025, 3, 2)
