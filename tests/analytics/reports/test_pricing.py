"""Pricing at ingest, through the real Writer into the embedded store: ClickHouse computes the costs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from support.seed import Seed, day_start, recent_day, usage_event

from ai_chargeback_aggregator.pricing.catalog import catalog_version
from ai_chargeback_aggregator.pricing.overrides import OverrideError, parse_records, read_file

MTOK = Decimal(1_000_000)
COST_COLUMNS = ("cost_input", "cost_cached_input", "cost_cache_write", "cost_output", "cost_reasoning", "cost_request", "cost_total", "list_cost_total")


def stored(seed: Seed, event_id: str) -> dict[str, Any]:
    columns, rows = seed.store.query(
        "SELECT *, uncached_input_tokens, non_reasoning_output_tokens, " + ", ".join(COST_COLUMNS)
        + " FROM chargeback.usage_events FINAL WHERE event_id = {id:UUID}",
        {"id": event_id},
    )
    assert len(rows) == 1
    return dict(zip(columns, rows[0]))


def test_each_token_kind_is_priced_at_its_own_rate(seed: Seed) -> None:
    at = day_start(recent_day(2)) + timedelta(hours=3)
    # sonar-deep-research: input 2, output 8, reasoning 3 (USD per 1M tokens) in the catalog
    research = usage_event(at, provider="perplexity", requested_model="sonar-deep-research", served_model="sonar-deep-research",
                           input_tokens=10_000, cached_input_tokens=0, output_tokens=5_000, reasoning_tokens=4_000)  # fmt: skip
    # claude-sonnet-4-5: input 3, cache read 0.30, cache write 3.75, output 15
    claude = usage_event(at, provider="anthropic", requested_model="claude-sonnet-4-5", served_model="claude-sonnet-4-5",
                         input_tokens=10_000, cached_input_tokens=6_000, cache_write_input_tokens=1_000,  # 10_000 = 3_000 + 6_000 + 1_000
                         output_tokens=500, reasoning_tokens=0)  # fmt: skip
    # sonar: input 1, output 1, plus 12 USD per 1,000 requests
    sonar = usage_event(at, provider="perplexity", requested_model="sonar", served_model="sonar",
                        input_tokens=1_000, cached_input_tokens=0, output_tokens=1_000, reasoning_tokens=0)  # fmt: skip
    assert seed.insert([research, claude, sonar]) == 3

    r = stored(seed, research.event_id)
    assert (r["uncached_input_tokens"], r["non_reasoning_output_tokens"]) == (10_000, 1_000)  # 5_000 = 1_000 + 4_000 reasoning
    assert r["cost_input"] == 10_000 * Decimal(2) / MTOK
    assert r["cost_output"] == 1_000 * Decimal(8) / MTOK
    assert r["cost_reasoning"] == 4_000 * Decimal(3) / MTOK  # its own rate, not output's 8
    assert r["cost_total"] == Decimal("0.040")  # 0.02 + 0.008 + 0.012

    c = stored(seed, claude.event_id)
    assert c["uncached_input_tokens"] == 3_000
    assert c["cost_input"] == 3_000 * Decimal(3) / MTOK
    assert c["cost_cached_input"] == 6_000 * Decimal("0.30") / MTOK
    assert c["cost_cache_write"] == 1_000 * Decimal("3.75") / MTOK
    assert c["cost_output"] == 500 * Decimal(15) / MTOK
    assert c["cost_total"] == Decimal("0.009") + Decimal("0.0018") + Decimal("0.00375") + Decimal("0.0075")
    assert (c["price_source"], c["catalog_version"], c["price_model_id"]) == ("catalog", catalog_version(), "claude-sonnet-4-5")

    s = stored(seed, sonar.event_id)
    assert s["cost_request"] == Decimal("0.012")
    assert s["cost_total"] == Decimal("0.001") + Decimal("0.001") + Decimal("0.012")


@pytest.mark.parametrize(
    ("provider", "model", "tier", "tokens"),
    [
        ("openai", "gpt-4o-2024-08-06", "default", (12_345, 2_345, 0, 678, 0)),
        ("openai", "gpt-4o", "batch", (12_345, 2_345, 0, 678, 0)),
        ("openai", "gpt-4o", "priority", (12_345, 2_345, 0, 678, 0)),
        ("openai", "o3", "default", (40_000, 10_000, 0, 9_000, 7_000)),
        ("openai", "gpt-4o-mini", "flex", (999, 0, 0, 1, 0)),
        ("anthropic", "claude-sonnet-4-5", "default", (250_000, 40_000, 10_000, 2_000, 0)),  # above the 200k tier
        ("anthropic", "claude-haiku-4-5", "batch", (8_000, 3_000, 1_000, 700, 0)),
        ("google", "gemini-2.5-pro", "default", (300_000, 100_000, 0, 5_000, 3_000)),
        ("perplexity", "sonar-deep-research", "default", (5_000, 0, 0, 3_000, 2_000)),
        ("perplexity", "sonar", "default", (10, 0, 0, 10, 0)),
    ],
)
def test_stored_costs_equal_genai_prices_calc_price(seed: Seed, provider: str, model: str, tier: str, tokens: tuple[int, ...]) -> None:
    """Our rates x ClickHouse Decimal math give exactly what the library computes for the same usage."""
    input_, cached, write, output, reasoning = tokens
    at = day_start(recent_day(1)) + timedelta(hours=12)
    event = usage_event(at, provider=provider, requested_model=model, served_model=model, service_tier=tier, input_tokens=input_,
                        cached_input_tokens=cached, cache_write_input_tokens=write, output_tokens=output, reasoning_tokens=reasoning)  # fmt: skip
    seed.insert([event])
    row = stored(seed, event.event_id)
    context = {"processing": "batch"} if tier == "batch" else ({"service_tier": tier} if tier != "default" else None)
    expected = calc_price(
        Usage(input_tokens=input_, cache_read_tokens=cached, cache_write_tokens=write, output_tokens=output, output_reasoning_tokens=reasoning),
        model, provider_id=provider, genai_request_timestamp=at, price_context=context,
    )  # fmt: skip
    assert row["pricing_status"] == "priced"
    assert row["cost_total"] == expected.total_price
    assert row["list_cost_total"] == expected.total_price  # no override: list = contracted


def test_unknown_model_is_stored_unpriced_never_as_a_silent_zero(seed: Seed) -> None:
    event = usage_event(provider="vllm", requested_model="llama-3.1-70b-internal", served_model="llama-3.1-70b-internal")
    seed.insert([event])
    row = stored(seed, event.event_id)
    assert row["pricing_status"] == "unpriced"
    assert (row["price_source"], row["catalog_version"], row["price_model_id"]) == ("", "", "llama-3.1-70b-internal")


def test_override_applies_only_inside_its_effective_window(seed: Seed) -> None:
    d0, d1, d2, d3 = (recent_day(n) for n in (4, 3, 2, 1))
    seed.load_overrides([{"id": "msa-window", "provider": "openai", "model": "gpt-4o-mini", "discount_percent": "20",
                          "effective_from": d1.isoformat(), "effective_to": d3.isoformat()}])  # fmt: skip
    events = {
        day: usage_event(day_start(day) + timedelta(hours=hour), requested_model="gpt-4o-mini", served_model="gpt-4o-mini")
        for day, hour in ((d0, 23), (d1, 0), (d2, 23), (d3, 0))
    }
    seed.insert(list(events.values()))
    rows = {day: stored(seed, e.event_id) for day, e in events.items()}
    for day in (d0, d3):  # before it starts, and on its (exclusive) end day
        assert rows[day]["price_source"] == "catalog"
        assert rows[day]["cost_total"] == rows[day]["list_cost_total"]
    for day in (d1, d2):
        assert rows[day]["price_source"] == "override:msa-window"
        assert rows[day]["list_price_source"] == "catalog"
        assert rows[day]["cost_total"] == rows[day]["list_cost_total"] * Decimal("0.8")


def test_most_specific_override_wins_and_private_models_get_a_list_price(seed: Seed) -> None:
    first = recent_day(30).isoformat()
    seed.load_overrides([
        {"id": "all-openai", "provider": "openai", "discount_percent": 10, "effective_from": first},
        {"id": "acme-4o-mini", "provider": "openai", "model": "gpt-4o-mini", "tenant": "acme", "discount_percent": 30, "effective_from": first},
        {"id": "llama", "provider": "vllm", "model": "llama-internal", "kind": "list", "input_per_mtok": "0.4", "output_per_mtok": "0.8",
         "effective_from": first},
    ])  # fmt: skip
    acme = usage_event(tenant="acme", requested_model="gpt-4o-mini", served_model="gpt-4o-mini")
    globex = usage_event(tenant="globex", requested_model="gpt-4o-mini", served_model="gpt-4o-mini")
    llama = usage_event(provider="vllm", requested_model="llama-internal", served_model="llama-internal",
                        input_tokens=1_000, cached_input_tokens=0, output_tokens=500)  # fmt: skip
    seed.insert([acme, globex, llama])
    assert stored(seed, acme.event_id)["price_source"] == "override:acme-4o-mini"
    assert stored(seed, globex.event_id)["price_source"] == "override:all-openai"
    private = stored(seed, llama.event_id)
    assert (private["pricing_status"], private["price_source"], private["list_price_source"]) == ("priced", "override:llama", "override:llama")
    assert private["cost_total"] == Decimal("0.0004") + Decimal("0.0004")  # 1k x 0.4 + 500 x 0.8 per 1M


def test_a_bad_price_file_lists_every_problem_and_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "- {id: ok, provider: openai, discount_percent: 5, effective_from: 2026-01-01}\n"
        "- {id: ok, provider: openai, discount_percent: 5, effective_from: 2026-01-01}\n"
        "- {id: no-price, provider: openai, effective_from: 2026-01-01}\n"
        "- {id: both, provider: openai, discount_percent: 5, input_per_mtok: 1, effective_from: 2026-01-01}\n"
        "- {id: window, provider: openai, input_per_mtok: 1, effective_from: 2026-02-01, effective_to: 2026-01-01}\n"
        "- {id: eur, provider: openai, input_per_mtok: 1, currency: EUR, effective_from: 2026-01-01}\n"
        "- {id: list-discount, provider: openai, kind: list, discount_percent: 5, effective_from: 2026-01-01}\n"
        "- {provider: openai, input_per_mtok: -1}\n"
    )
    with pytest.raises(OverrideError) as raised:
        read_file(path)
    text = "\n".join(raised.value.problems)
    for needle in ("appears twice", "no price", "not both", "must be after", "only USD", "only contract overrides", "id: required",
                   "effective_from: required", "between 0"):  # fmt: skip
        assert needle in text, needle


def test_csv_price_files_load_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("id,provider,model,kind,effective_from,input_per_mtok,output_per_mtok\nllama,vllm,llama-internal,list,2026-01-01,0.4,0.8\n")
    (override,) = read_file(path)
    assert override == parse_records([{"id": "llama", "provider": "vllm", "model": "llama-internal", "kind": "list",
                                       "effective_from": "2026-01-01", "input_per_mtok": "0.4", "output_per_mtok": "0.8"}],
                                     loaded_from=str(path))[0]  # fmt: skip
