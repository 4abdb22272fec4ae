"""Attribution quality and the readiness verdict: a clean month is ready, a messy one is not."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from ai_chargeback_aggregator.analytics.governance import (
    IdentityConflicts,
    IdentitySources,
    Readiness,
    Thresholds,
    Unattributed,
)
from ai_chargeback_aggregator.analytics.governance.base import load_sql, sql_parameters
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

from .conftest import month_scope
from .seeding import (
    ANONYMOUS,
    OPENAI_MINI,
    RATES,
    SONNET,
    at,
    consumer,
    event,
    every,
    insert,
)

# Three teams, each through its own tagged consumer, every day of March 2025:
# 3 consumers x 31 days x 10 requests = 930 requests.
TEAMS = (("checkout-svc", "payments"), ("search-svc", "search"), ("support-bot", "support"))


def clean_month() -> list[pb.UsageEvent]:
    events = []
    for day in range(31):
        for name, team in TEAMS:
            for when in every(at("2025-03-01", 9) + timedelta(days=day), 10, timedelta(minutes=7)):
                events.append(event(when, **consumer(name, team), **OPENAI_MINI, input_tokens=2_000, output_tokens=500))
    return events


def messy_month() -> list[pb.UsageEvent]:
    """The clean month plus 124 anonymous requests on a legacy route (11.1% of 1116) and 62
    requests whose team header disagrees with the consumer's tag (5.6%)."""
    events = clean_month()
    for day in range(31):
        for when in every(at("2025-03-01", 14) + timedelta(days=day), 4, timedelta(minutes=3)):
            events.append(event(when, **ANONYMOUS, **SONNET, route_name="legacy-chat", input_tokens=5_000, output_tokens=1_000))
        for when in every(at("2025-03-01", 16) + timedelta(days=day), 2, timedelta(minutes=5)):
            events.append(event(when, **consumer("search-svc", "search"), **OPENAI_MINI, input_tokens=2_000, output_tokens=500,
                                identity_conflicts=["team: header=payments resolved=search"]))  # fmt: skip
    return events


def test_every_query_gets_exactly_its_parameters() -> None:
    scope = month_scope()
    for check in (Unattributed(scope), IdentityConflicts(scope), IdentitySources(scope), Readiness(scope)):
        sql, params = check.render()
        assert sql == load_sql(check.NAME)
        assert set(params) == sql_parameters(sql)
    assert Unattributed(scope).render()[1] == {
        "db": "chargeback", "start": scope.period.start, "end": scope.period.end, "tenant": "",
    }  # fmt: skip


def test_clean_month_is_ready_for_chargeback(store: Store) -> None:
    insert(store, clean_month())
    result = Readiness(month_scope()).run(store)
    assert result.verdict.ok, result.verdict.reasons
    assert result.verdict.label == "ready for chargeback"
    summary = result.extra["summary"]
    assert summary["requests"] == 930
    assert summary["unattributed_requests"] == 0 and summary["conflict_requests"] == 0
    assert summary["teams"] == 3 and summary["credentials"] == 3
    # 930 x (2000 x 0.15 + 500 x 0.60) / 1M = 930 x 0.0006 = $0.558
    assert summary["cost"] == Decimal("0.558")
    assert [m["metric"] for m in result.rows] == [
        "requests", "unattributed_request_share", "unattributed_cost_share", "conflict_share", "unpriced_share",
        "estimated_cost_share", "unmeasured_share", "unbilled_share", "replay_conflicts",
    ]  # fmt: skip
    assert all(m["passed"] for m in result.rows)
    assert Unattributed(month_scope()).run(store).rows == ()


def test_messy_month_is_not_ready_and_says_why(store: Store) -> None:
    insert(store, messy_month())
    result = Readiness(month_scope()).run(store)
    assert not result.verdict.ok
    assert result.verdict.label == "not ready for chargeback"
    summary = result.extra["summary"]
    assert summary["requests"] == 930 + 124 + 62
    assert summary["unattributed_requests"] == 124
    assert summary["conflict_requests"] == 62
    failed = {m["metric"]: m for m in result.rows if not m["passed"]}
    assert set(failed) == {"unattributed_request_share", "unattributed_cost_share", "conflict_share"}
    assert abs(failed["unattributed_request_share"]["value"] - 124 / 1116) < 1e-9
    # Sonnet: 124 x (5000 x 3 + 1000 x 15) / 1M = 124 x 0.03 = $3.72 of $3.72 + 992 x $0.0006 = $4.3152
    unattributed_cost = 124 * RATES["claude-sonnet-4-20250514"].cost(input_tokens=5_000, output=1_000)
    assert summary["unattributed_cost"] == unattributed_cost == Decimal("3.72")
    assert summary["cost"] == Decimal("4.3152")
    # The explanation names what to fix first.
    assert "anthropic/legacy-chat (no-authenticated-consumer) 124" in failed["unattributed_request_share"]["detail"]
    assert "search-svc claimed team=payments, resolved search 62" in failed["conflict_share"]["detail"]
    assert len(result.verdict.reasons) == 3


def test_thresholds_are_configurable(store: Store) -> None:
    insert(store, messy_month())
    lenient = Thresholds(max_unattributed_request_share=0.2, max_unattributed_cost_share=0.9, max_conflict_share=0.1)
    assert Readiness(month_scope(), lenient).run(store).verdict.ok


def test_unattributed_by_route_and_reason(store: Store) -> None:
    insert(store, messy_month())
    rows = Unattributed(month_scope()).run(store).rows
    assert len(rows) == 1
    row = rows[0]
    assert (row["service"], row["route"], row["reason"]) == ("anthropic", "legacy-chat", "no-authenticated-consumer")
    assert row["unattributed_requests"] == row["route_requests"] == 124
    assert row["request_share"] == 1.0 and row["cost_share"] == 1.0


def test_conflicts_and_identity_source_mix(store: Store) -> None:
    insert(store, messy_month())
    conflicts = IdentityConflicts(month_scope()).run(store)
    assert [(r["attribute"], r["header_value"], r["resolved_value"], r["consumer"], r["requests"]) for r in conflicts.rows] == [
        ("team", "payments", "search", "search-svc", 62)
    ]
    assert not conflicts.verdict.ok
    sources = {(r["attribute"], r["source"]): r for r in IdentitySources(month_scope()).run(store).rows}
    assert sources[("team", "consumer")]["requests"] == 992
    assert sources[("team", "none")]["requests"] == 124
    assert abs(sources[("team", "none")]["request_share"] - 124 / 1116) < 1e-9


def test_empty_period_is_not_ready(store: Store) -> None:
    result = Readiness(month_scope()).run(store)
    assert not result.verdict.ok
    assert "0 requests in the period" in result.verdict.reasons[0]
