"""Usage exceptions: a burst, a retry storm, premium models, cache misses and agent fan-out."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from ai_chargeback_aggregator.analytics.governance import (
    Bursts,
    CacheMisses,
    FanOut,
    PremiumModels,
    Retries,
)
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.store.clickhouse import Store

from .conftest import month_scope, utc
from .seeding import OPENAI_MINI, RATES, SONNET, at, consumer, event, every, insert


def test_every_exception_query_gets_exactly_its_parameters() -> None:
    scope = month_scope()
    for check in (Bursts(scope), CacheMisses(scope, apps=("rag",)), FanOut(scope), PremiumModels(scope, models=("gpt-4.1*",)),
                  Retries(scope)):  # fmt: skip
        sql, params = check.render()
        assert set(params) == sql_parameters(sql), check.NAME
    assert Bursts(scope).render()[1]["multiple"] == 5.0
    assert PremiumModels(scope, models=("gpt-4.1*",), min_request_cost_usd=0.25).render()[1]["premium_models"] == ["gpt-4.1*"]


def test_burst_minute_is_flagged_against_the_apps_own_baseline(store: Store) -> None:
    events = []
    # checkout: 2 requests a minute for two hours ...
    for minute in range(120):
        for second in (5, 35):
            events.append(event(at("2025-03-12", 9, 0) + timedelta(minutes=minute, seconds=second), **OPENAI_MINI))
    # ... then 80 in one minute.
    for i in range(80):
        events.append(event(at("2025-03-12", 11, 30) + timedelta(milliseconds=700 * i), **OPENAI_MINI))
    # search: a steady 40 a minute is its normal, not a burst.
    for minute in range(30):
        for i in range(40):
            events.append(event(at("2025-03-12", 13) + timedelta(minutes=minute, seconds=i),
                                **consumer("search-svc", "search"), **OPENAI_MINI))  # fmt: skip
    insert(store, events)
    result = Bursts(month_scope()).run(store)
    assert not result.verdict.ok
    assert len(result.rows) == 1
    burst = result.rows[0]
    assert (burst["app"], burst["minute"], burst["requests"]) == ("checkout", utc("2025-03-12 11:30:00"), 80)
    assert burst["baseline_requests"] == 2.0 and burst["request_factor"] == 40.0
    assert burst["reasons"] == ["requests 80/min = 40x baseline"]
    # A higher multiple or floor makes it normal.
    assert Bursts(month_scope(), multiple=50).run(store).rows == ()
    assert Bursts(month_scope(), min_requests_per_minute=100).run(store).rows == ()


def test_retry_storm(store: Store) -> None:
    events = []
    # ingest: 100 requests, 60 tried three times upstream, 15 more retried by the client.
    for i, when in enumerate(every(at("2025-03-20", 2), 100, timedelta(seconds=20))):
        tries, client = (3, 0) if i < 60 else ((1, 2) if i < 75 else (1, 0))
        events.append(event(when, **consumer("ingest-worker", "data"), **OPENAI_MINI, upstream_tries=tries,
                            client_retry_count=client, http_status=200 if i >= 40 else 502))  # fmt: skip
    # checkout: 200 requests, one retry: healthy.
    for i, when in enumerate(every(at("2025-03-20", 9), 200, timedelta(seconds=30))):
        events.append(event(when, **OPENAI_MINI, upstream_tries=2 if i == 0 else 1))
    insert(store, events)
    result = Retries(month_scope()).run(store)
    assert not result.verdict.ok
    assert len(result.rows) == 1
    storm = result.rows[0]
    assert (storm["app"], storm["team"], storm["route"]) == ("ingest-worker", "data", "chat")
    assert (storm["requests"], storm["upstream_retried"], storm["extra_upstream_tries"]) == (100, 60, 120)
    assert (storm["client_retried"], storm["client_retries"], storm["max_client_retry"]) == (15, 30, 2)
    assert (storm["retried"], storm["retry_share"], storm["error_requests"]) == (75, 0.75, 40)
    assert storm["reasons"] == ["retried 75/100 = 0.75 > 0.1"]
    everything = Retries(month_scope(), only_flagged=False).run(store).rows
    healthy = next(r for r in everything if r["app"] == "checkout")
    assert (healthy["flagged"], healthy["retried"]) == (0, 1)


def test_premium_models_by_list_and_by_price(store: Store) -> None:
    events = [
        *(event(w, **OPENAI_MINI, input_tokens=1_000, output_tokens=100) for w in every(at("2025-03-02"), 50, timedelta(minutes=1))),
        *(event(w, **consumer("research-bot", "research"), provider="openai", requested_model="gpt-4.1",
                served_model="gpt-4.1-2025-04-14", input_tokens=10_000, output_tokens=2_000)
          for w in every(at("2025-03-02"), 10, timedelta(minutes=1))),
        # One huge Sonnet request: $0.30 + $0.15 = $0.45, over a $0.25 per-request threshold.
        event(at("2025-03-03"), **consumer("support-bot", "support"), **SONNET, input_tokens=100_000, output_tokens=10_000),
    ]  # fmt: skip
    insert(store, events)
    by_list = PremiumModels(month_scope(), models=("gpt-4.1*", "claude-opus-4-1")).run(store)
    assert [(r["app"], r["model"], r["premium_requests"], r["by_model"]) for r in by_list.rows] == [
        ("research-bot", "gpt-4.1-2025-04-14", 10, 10)
    ]
    # 10 x (10000 x 2 + 2000 x 8) / 1M = 10 x 0.036
    assert by_list.rows[0]["premium_cost"] == Decimal("0.36")
    by_price = PremiumModels(month_scope(), min_request_cost_usd=0.25).run(store)
    assert [(r["app"], r["by_price"], r["max_request_cost"]) for r in by_price.rows] == [
        ("support-bot", 1, RATES["claude-sonnet-4-20250514"].cost(input_tokens=100_000, output=10_000))
    ]
    assert PremiumModels(month_scope()).run(store).notes == ("no premium models or price threshold configured",)


def test_cache_miss_ratio_for_apps_expected_to_cache(store: Store) -> None:
    events = []
    for i, when in enumerate(every(at("2025-03-05"), 40, timedelta(minutes=1))):
        # rag-good: 8000 of 10000 input tokens cached after the first call
        events.append(event(when, **consumer("rag-good", "search"), **SONNET, input_tokens=10_000,
                            cached_input_tokens=0 if i == 0 else 8_000, output_tokens=100))  # fmt: skip
        # rag-bad: its prefix changes every call; 1 in 4 hits a small cache
        events.append(event(when, **consumer("rag-bad", "search"), **SONNET, input_tokens=10_000,
                            cached_input_tokens=2_000 if i % 4 == 0 else 0, output_tokens=100))  # fmt: skip
    insert(store, events)
    result = CacheMisses(month_scope(), apps=("rag-good", "rag-bad")).run(store)
    assert [r["app"] for r in result.rows] == ["rag-bad"]
    bad = result.rows[0]
    assert (bad["requests"], bad["miss_requests"], bad["request_miss_ratio"]) == (40, 30, 0.75)
    assert (bad["input_tokens"], bad["cached_input_tokens"], bad["token_hit_ratio"]) == (400_000, 20_000, 0.05)
    both = CacheMisses(month_scope(), apps=("rag-good", "rag-bad"), only_flagged=False).run(store).rows
    good = next(r for r in both if r["app"] == "rag-good")
    assert good["token_hit_ratio"] == 312_000 / 400_000 and good["flagged"] == 0
    assert CacheMisses(month_scope()).run(store).rows == ()


def test_agent_fan_out_by_trace_id(store: Store) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    events = [
        *(event(at("2025-03-07", 10) + timedelta(seconds=2 * i), **consumer("agent", "research"),
                **{**SONNET, "served_model": "claude-sonnet-4-20250514" if i % 5 else "claude-opus-4-1-20250805"},
                trace_id=trace, input_tokens=3_000, output_tokens=300)
          for i in range(40)),
        *(event(at("2025-03-07", 11) + timedelta(seconds=i), **OPENAI_MINI, trace_id=f"{i:032x}") for i in range(30)),
    ]  # fmt: skip
    insert(store, events)
    result = FanOut(month_scope()).run(store)
    assert len(result.rows) == 1
    row = result.rows[0]
    assert (row["trace_id"], row["calls"], row["models"], row["app"], row["duration_s"]) == (trace, 40, 2, "agent", 78.0)
    assert row["model_list"] == ["claude-opus-4-1-20250805", "claude-sonnet-4-20250514"]
    # 32 Sonnet calls x $0.0135 + 8 Opus calls x $0.0675
    assert row["cost"] == 32 * Decimal("0.0135") + 8 * Decimal("0.0675")
    assert FanOut(month_scope(), min_calls=50).run(store).verdict.ok
