"""Reconciliation with provider bills on the embedded store.

The gateway saw three days (2025-03-01..03) of:
  * openai gpt-4o-mini-2024-07-18 through checkout-svc: 100 requests/day x (1000 input of
    which 200 cached, 300 output) = 100000 input, 30000 output; cost
    100 x (800 x 0.15 + 200 x 0.075 + 300 x 0.60) / 1M = $0.0315 a day;
  * anthropic claude-sonnet-4-20250514 through support-bot: 50 requests/day x (4000 input,
    500 output) = 200000 input, 25000 output; cost 50 x (4000 x 3 + 500 x 15) / 1M = $0.975 a day.
Each scenario writes the provider's export in its documented shape and reconciles.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ai_chargeback_aggregator.analytics.governance import Period
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.analytics.reconcile import (
    BILL_ONLY,
    DIFFERS,
    GATEWAY_ONLY,
    MATCHED,
    GatewayUsage,
    Tolerance,
    load_export,
    parse_mapping,
    reconcile,
)  # fmt: skip
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.store.clickhouse import Store

from .seeding import OPENAI_MINI, SONNET, at, consumer, event, every, insert

DAYS = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
PERIOD = Period.days(date(2025, 3, 1), date(2025, 3, 4))
OPENAI_DAY_COST = Decimal("0.0315")
ANTHROPIC_DAY_COST = Decimal("0.975")


def seeded_dsn(tmp_path: Path) -> str:
    """A migrated store holding seed()'s events, closed: the commands open it themselves."""
    dsn = f"chdb://{tmp_path / 'store'}"
    store = Store(dsn)
    store.migrate()
    try:
        seed(store)
    finally:
        store.close()
    return dsn


def seed(store: Store) -> None:
    events = []
    for day in DAYS:
        start = at(day.isoformat(), 8)
        events += [event(w, **consumer("checkout-svc", "payments"), **OPENAI_MINI, input_tokens=1_000, cached_input_tokens=200,
                         output_tokens=300) for w in every(start, 100, timedelta(minutes=3))]  # fmt: skip
        events += [event(w, **consumer("support-bot", "support"), **SONNET, input_tokens=4_000, output_tokens=500)
                   for w in every(start, 50, timedelta(minutes=5))]  # fmt: skip
    # Kong refused these itself: never reached the provider, never billed.
    events += [event(at("2025-03-02", 9), **OPENAI_MINI, input_tokens=0, output_tokens=0, http_status=429,
                     policy_outcome=3) for _ in range(5)]  # fmt: skip
    insert(store, events)


def unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def openai_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": unix(day), "end_time": unix(day + timedelta(days=1)), "results": results}


def openai_usage_page(days: dict[date, list[dict[str, Any]]]) -> dict[str, Any]:
    """GET /v1/organization/usage/completions?group_by=model&group_by=api_key_id, one page."""
    base = {"object": "organization.usage.completions.result", "input_cached_tokens": 0, "num_model_requests": 0,
            "project_id": None, "user_id": None, "batch": None}  # fmt: skip
    data = [openai_bucket(day, [{**base, **r} for r in results]) for day, results in days.items()]
    return {"object": "page", "data": data, "has_more": False, "next_page": None}


def openai_costs_page(days: dict[date, list[tuple[str, float]]]) -> dict[str, Any]:
    """GET /v1/organization/costs?group_by=line_item, one page."""

    def result(item: str, value: float) -> dict[str, Any]:
        return {"object": "organization.costs.result", "amount": {"value": value, "currency": "usd"}, "line_item": item,
                "project_id": None}  # fmt: skip

    data = [openai_bucket(day, [result(item, value) for item, value in items]) for day, items in days.items()]
    return {"object": "page", "data": data, "has_more": False, "next_page": None}


def anthropic_usage_report(days: list[date], *, uncached: int = 200_000, output: int = 25_000) -> dict[str, Any]:
    """GET /v1/organizations/usage_report/messages?group_by[]=model&group_by[]=api_key_id."""
    result = {
        "uncached_input_tokens": uncached,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_read_input_tokens": 0,
        "output_tokens": output,
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": "apikey_support",
        "workspace_id": None,
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "context_window": "0-200k",
    }
    data = [{"starting_at": f"{day}T00:00:00Z", "ending_at": f"{day + timedelta(days=1)}T00:00:00Z", "results": [result]} for day in days]
    return {"data": data, "has_more": False, "next_page": None}


def mini(input_tokens: int = 100_000, output_tokens: int = 30_000, *, key: str = "key_checkout") -> dict[str, Any]:
    return {"model": "gpt-4o-mini-2024-07-18", "api_key_id": key, "input_tokens": input_tokens,
            "input_cached_tokens": 20_000, "output_tokens": output_tokens, "num_model_requests": 100}  # fmt: skip


def write(tmp_path: Path, name: str, payload: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def run(store: Store, *paths: Path, tolerance: Tolerance | None = None, mapping: dict[str, Any] | None = None) -> Any:
    exports = [load_export(p) for p in paths]
    gateway = GatewayUsage(period=PERIOD, providers=("anthropic", "openai")).run(store)
    return reconcile(exports, gateway, period=PERIOD, tolerance=tolerance or Tolerance(),
                     mapping=parse_mapping(mapping) if mapping else None)  # fmt: skip


def test_gateway_query_renders_bound_parameters() -> None:
    sql, params = GatewayUsage(period=PERIOD, providers=("openai",)).render()
    assert set(params) == sql_parameters(sql)
    assert params == {"db": "chargeback", "start": PERIOD.start, "end": PERIOD.end, "providers": ["openai"]}


def test_export_that_matches_within_tolerance(store: Store, tmp_path: Path) -> None:
    seed(store)
    # The bill counts 0.2% more input and 0.1% more output than the gateway (a few
    # requests in flight at midnight), and bills 1 cent-fraction more: within 1%.
    usage = write(tmp_path, "usage.json", openai_usage_page({d: [mini(100_200, 30_030)] for d in DAYS}))
    costs = write(tmp_path, "costs.json", openai_costs_page({d: [("gpt-4o-mini-2024-07-18, input", 0.0135),
                                                                 ("gpt-4o-mini-2024-07-18, output", 0.0181)] for d in DAYS}))  # fmt: skip
    claude = write(tmp_path, "claude.json", anthropic_usage_report(DAYS))
    result = run(store, usage, costs, claude)
    assert result.verdict.ok and result.verdict.label == "reconciled", result.lines
    assert [(l["day"], l["provider"], l["model"], l["status"]) for l in result.lines] == [
        (day, provider, model, MATCHED) for day in DAYS for provider, model in (("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini"))
    ]
    openai = next(l for l in result.lines if l["provider"] == "openai")
    assert (openai["gateway_input_tokens"], openai["bill_input_tokens"], openai["input_diff"]) == (100_000, 100_200, -200)
    assert (openai["gateway_cost"], openai["bill_cost"]) == (OPENAI_DAY_COST, Decimal("0.0316"))
    assert openai["gateway_requests"] == 100  # the five 429s Kong answered itself are not provider requests
    assert openai["gateway_models"] == ["gpt-4o-mini-2024-07-18"]
    claude_line = next(l for l in result.lines if l["provider"] == "anthropic")
    assert claude_line["bill_cost"] is None  # a usage report has no money
    assert result.summary["matched_lines"] == 6 and result.summary["bill_tokens"] == 3 * (130_230 + 225_000)


def test_tolerance_is_configurable(store: Store, tmp_path: Path) -> None:
    seed(store)
    usage = write(tmp_path, "usage.json", openai_usage_page({d: [mini(100_200, 30_030)] for d in DAYS}))
    strict = run(store, usage, tolerance=Tolerance(pct=0.1, tokens=10))
    assert {l["status"] for l in strict.lines} == {DIFFERS}
    assert "input tokens: gateway 100000 vs bill 100200 (gateway -0.20% vs bill)" in strict.lines[0]["detail"]
    by_tokens = run(store, usage, tolerance=Tolerance(pct=0, tokens=200))
    assert {l["status"] for l in by_tokens.lines} == {MATCHED}


def test_export_with_a_missing_day(store: Store, tmp_path: Path) -> None:
    seed(store)
    # The export skips 2025-03-02 altogether (an incomplete download, a failed billing job).
    usage = write(tmp_path, "usage.json", openai_usage_page({DAYS[0]: [mini()], DAYS[2]: [mini()]}))
    result = run(store, usage)
    assert not result.verdict.ok
    assert result.verdict.reasons == ("1 gateway-only line (gateway usage the bill does not show)",)
    statuses = {(l["day"], l["model"]): l for l in result.lines}
    missing = statuses[(date(2025, 3, 2), "gpt-4o-mini")]
    assert missing["status"] == GATEWAY_ONLY
    assert missing["gateway_input_tokens"] == 100_000 and missing["bill_input_tokens"] is None
    assert missing["detail"] == "the bill has no openai usage on 2025-03-02: missing bill day?"
    assert statuses[(date(2025, 3, 1), "gpt-4o-mini")]["status"] == MATCHED
    # Anthropic had no export: its gateway traffic is not judged against an OpenAI bill.
    assert {l["provider"] for l in result.lines} == {"openai"}


def test_export_with_traffic_that_bypassed_the_gateway(store: Store, tmp_path: Path) -> None:
    seed(store)
    # A research script calls OpenAI directly with its own key: 2025-03-02 carries 50000
    # input tokens of gpt-4o-mini the gateway never saw, and gpt-4.1 appears only on the bill.
    direct_mini = {**mini(50_000, 10_000, key="key_direct"), "num_model_requests": 20}
    direct_41 = {"model": "gpt-4.1-2025-04-14", "api_key_id": "key_direct", "input_tokens": 80_000, "output_tokens": 9_000,
                 "num_model_requests": 12}  # fmt: skip
    usage = write(tmp_path, "usage.json", openai_usage_page({
        DAYS[0]: [mini()], DAYS[1]: [mini(), direct_mini, direct_41], DAYS[2]: [mini()],
    }))  # fmt: skip
    mapping = {"accounts": [{"provider": "openai", "api_key_id": "key_checkout", "label": "checkout", "consumers": ["checkout-svc"]}]}
    result = run(store, usage, mapping=mapping)
    assert not result.verdict.ok
    lines = {(l["day"], l["model"]): l for l in result.lines}
    partial = lines[(date(2025, 3, 2), "gpt-4o-mini")]
    assert partial["status"] == DIFFERS
    assert (partial["bill_input_tokens"], partial["gateway_input_tokens"], partial["input_diff"]) == (150_000, 100_000, -50_000)
    only = lines[(date(2025, 3, 2), "gpt-4.1")]
    assert only["status"] == BILL_ONLY and only["bill_tokens"] == 89_000 and only["gateway_tokens"] == 0
    assert only["detail"] == "billed usage the gateway never saw: bypassed the gateway?"
    # Per account, the mapped key reconciles exactly; the direct key is all bill-only.
    accounts = {(l["day"], l["model"], l["account"]): l["status"] for l in result.accounts}
    assert accounts[(date(2025, 3, 2), "gpt-4o-mini", "checkout")] == MATCHED
    assert accounts[(date(2025, 3, 2), "gpt-4o-mini", "unmapped api_key_id key_direct")] == BILL_ONLY
    assert accounts[(date(2025, 3, 2), "gpt-4.1", "unmapped api_key_id key_direct")] == BILL_ONLY
    assert sum(1 for status in accounts.values() if status != MATCHED) == 2


def test_cost_differences_are_findings(store: Store, tmp_path: Path) -> None:
    seed(store)
    # Billed 20% above what the gateway's contract rates say: a price change not loaded yet.
    costs = write(tmp_path, "costs.json", openai_costs_page({d: [("gpt-4o-mini-2024-07-18, input", 0.0378)] for d in DAYS}))
    # The default absolute allowance ($0.01 a line) would hide this small a line.
    assert {l["status"] for l in run(store, costs).lines} == {MATCHED}
    result = run(store, costs, tolerance=Tolerance(cost_usd=Decimal("0.001")))
    assert {l["status"] for l in result.lines} == {DIFFERS}
    assert result.lines[0]["cost_diff"] == Decimal("-0.0063")
    assert "cost: gateway 0.031500 vs bill 0.037800 (gateway -16.67% vs bill)" in result.lines[0]["detail"]


@pytest.mark.parametrize(("scenario", "exit_code"), [("match", 0), ("missing_day", 1)])
def test_cli_reconcile_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str, exit_code: int) -> None:
    dsn = seeded_dsn(tmp_path)
    days = {d: [mini()] for d in DAYS} if scenario == "match" else {DAYS[0]: [mini()], DAYS[2]: [mini()]}
    usage = write(tmp_path, "usage.json", openai_usage_page(days))
    assert main(["reconcile", "--provider-export", str(usage), "--store-dsn", dsn, "--format", "json"]) == exit_code
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is (exit_code == 0)
    assert payload["period"] == "2025-03-01T00:00:00+00:00 .. 2025-03-04T00:00:00+00:00"
    assert [line["status"] for line in payload["sections"]["lines"]] == (
        ["matched"] * 3 if scenario == "match" else ["matched", "gateway_only", "matched"]
    )
    assert payload["sections"]["lines"][0]["gateway_cost"] == "0.0315"
    assert main(["reconcile", "--provider-export", str(usage), "--store-dsn", dsn, "--format", "csv"]) == exit_code
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0].startswith("day,provider,model,account,status,") and len(csv_lines) == 4
