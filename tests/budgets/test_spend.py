"""A budget's spend is a line of the report for its scope and period: the same numbers, every time.

Checked against `build_report` (what `chargeback report` prints) and against a
plain scan of the deduplicated raw events, with rollups built and with
duplicates delivered, in UTC and in zones whose days are not UTC days.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from support.seed import Seed, random_events, recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.allocation_config import parse
from ai_chargeback_aggregator.analytics.reports.explain import explain
from ai_chargeback_aggregator.analytics.reports.handle import Handle
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import Rows, Runner
from ai_chargeback_aggregator.budgets import budget_status
from ai_chargeback_aggregator.budgets.definitions import parse_records
from ai_chargeback_aggregator.budgets.evaluate import evaluate
from ai_chargeback_aggregator.budgets.store import list_budgets, save_budgets

CONFIG = parse({
    "platform_fee": [{"effective_from": "2026-01-01", "per_request_usd": "0.0004", "uplift_percent": "3"}],
    "unattributed": {"strategy": "pro_rata"},
})  # fmt: skip


def budget(budget_id: str, scope: Mapping[str, str], **fields: Any) -> dict[str, Any]:
    return {"id": budget_id, "scope": dict(scope), "period": "monthly", "amount": 1000, "effective_from": "2026-01-01", **fields}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def raw_sum(seed: Seed, start: datetime, end: datetime, where: str = "1") -> tuple[int, Decimal, Decimal, int]:
    """(events, contracted cost, list cost, tokens) by a plain scan of the deduplicated raw table."""
    rows = seed.store.query(
        "SELECT count(), sum(cost_total), sum(list_cost_total), sum(input_tokens + output_tokens) FROM chargeback.usage_events FINAL "
        f"WHERE started_at >= {{s:DateTime64(3, 'UTC')}} AND started_at < {{e:DateTime64(3, 'UTC')}} AND {where}",
        {"s": start, "e": end},
    )[1]
    events, cost, list_cost, tokens = rows[0]
    return int(events), Decimal(cost), Decimal(list_cost), int(tokens)


@pytest.fixture
def traffic(seed: Seed) -> Seed:
    events = random_events(900, first=recent_day(3), days=3)
    seed.insert(events)
    seed.insert_again(events[::7])  # a second delivery of some, past the writer's memory: counted once
    seed.insert([usage_event(datetime.now(UTC) - timedelta(minutes=2), team="payments", workload="nightly",
                             usage_source=2)])  # fmt: skip
    seed.build_rollups()
    return seed


@pytest.mark.parametrize(("scope", "by", "key", "filters"), [
    ({"team": "payments"}, "team", "payments", {}),
    ({"tenant": "acme"}, "tenant", "acme", {}),
    ({"tenant": "globex", "team": "search"}, "team", "search", {"tenant": "globex"}),
    ({"team": "payments", "app": "checkout"}, "app", "checkout", {"team": "payments"}),
    ({"consumer": "c-0002"}, "consumer", "c-0002", {}),
    ({"team": "search", "provider": "anthropic"}, "team", "search", {"provider": "anthropic"}),
])  # fmt: skip
@pytest.mark.parametrize(("unit", "basis"), [("usd", "chargeback"), ("usd", "showback"), ("tokens", "")])
def test_spend_is_the_report_line_for_the_scope_and_period(traffic: Seed, scope: dict[str, str], by: str, key: str,
                                                            filters: dict[str, str], unit: str, basis: str) -> None:  # fmt: skip
    fields: dict[str, Any] = {"unit": unit, "amount": 10**12 if unit == "tokens" else 1000}
    if basis:
        fields["cost_basis"] = basis
    (b,) = parse_records([budget("b", scope, **fields)])
    at = datetime.now(UTC)
    (status,) = evaluate(traffic.runner, [b], at=at, config=CONFIG)
    first, last = status.period_start.date(), (status.period_end - timedelta(days=1)).date()
    report = build_report(traffic.runner, first=first, last=last, by=by, mode="showback" if basis != "chargeback" else "chargeback",
                          config=CONFIG, filters=filters or None)  # fmt: skip
    (line,) = [line for line in report.lines if line["key"] == key]
    assert line["events"] > 0
    if unit == "tokens":
        assert status.spend == line["input_tokens"] + line["output_tokens"]
    elif basis == "chargeback":
        assert status.spend_text == line["total"]
        assert status.spend == Decimal(line["model_cost_exact"]) + Decimal(line["platform_fee_exact"])
    else:
        assert status.spend_text == line["list_cost"] and status.spend == Decimal(line["list_cost_exact"])
    assert status.events == line["events"] and status.handle == line["handle"]


def test_a_team_budget_includes_its_share_of_unattributed_usage_as_the_report_allocates_it(traffic: Seed) -> None:
    budgets = parse_records([budget("kept", {"team": "payments"})])
    (kept,) = evaluate(traffic.runner, budgets, at=datetime.now(UTC))  # no allocation config: unattributed kept apart
    (shared,) = evaluate(traffic.runner, budgets, at=datetime.now(UTC), config=CONFIG)
    fee_only = parse({"platform_fee": [{"effective_from": "2026-01-01", "per_request_usd": "0.0004", "uplift_percent": "3"}]})
    (own,) = evaluate(traffic.runner, budgets, at=datetime.now(UTC), config=fee_only)
    assert shared.spend > own.spend > kept.spend > 0


def test_spend_matches_a_raw_scan_in_a_half_hour_zone_with_rollups_and_duplicates(seed: Seed) -> None:
    # Kolkata days start at 18:30 UTC: the edge hours are cut, read raw; the middle comes from clean rollups.
    events = [usage_event(utc(2026, 11, 2, 17) + timedelta(minutes=7 * i), team="payments", input_tokens=1000 + i,
                          cached_input_tokens=0, output_tokens=100) for i in range(600)]  # fmt: skip
    seed.insert(events)
    seed.insert_again(events[::5])
    seed.build_rollups()
    seed.insert_again(events[1::9])  # dirty some hours again after the build
    (b,) = parse_records([budget("daily-ist", {"team": "payments"}, period="daily", timezone="Asia/Kolkata", unit="tokens",
                                 amount=10**9)])  # fmt: skip
    (status,) = evaluate(seed.runner, [b], at=utc(2026, 11, 3, 12))
    assert (status.period_start, status.period_end) == (utc(2026, 11, 2, 18, 30), utc(2026, 11, 3, 18, 30))
    events_in, _, _, tokens = raw_sum(seed, status.period_start, status.period_end)
    assert (status.events, int(status.spend)) == (events_in, tokens)
    assert 0 < events_in < len(events)  # the window really cuts the traffic on both sides


def test_spend_of_a_berlin_month_across_the_clock_change(seed: Seed) -> None:
    # October 2026 in Berlin: from Sep 30 22:00 UTC (CEST) to Oct 31 23:00 UTC (CET).
    inside = [utc(2026, 9, 30, 22, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 31, 22, 59)]
    outside = [utc(2026, 9, 30, 21, 59), utc(2026, 10, 31, 23, 0)]
    seed.insert([usage_event(at, team="payments", input_tokens=1000, cached_input_tokens=0, output_tokens=0) for at in inside + outside])
    seed.build_rollups()
    (b,) = parse_records([budget("oct", {"team": "payments"}, timezone="Europe/Berlin", unit="tokens", amount=10**6)])
    (status,) = evaluate(seed.runner, [b], at=utc(2026, 10, 15))
    assert status.period_label == "2026-10"
    assert status.events == len(inside) and status.spend == 1000 * len(inside)


def test_a_model_covers_its_dated_snapshots_and_nothing_else(seed: Seed) -> None:
    at = datetime.now(UTC) - timedelta(minutes=3)
    seed.insert([
        usage_event(at, requested_model="gpt-4o", served_model="gpt-4o-2024-08-06", input_tokens=100, cached_input_tokens=0, output_tokens=0),
        usage_event(at, requested_model="gpt-4o", served_model="GPT-4o", input_tokens=20, cached_input_tokens=0, output_tokens=0),
        usage_event(at, requested_model="gpt-4o-mini", served_model="gpt-4o-mini-2024-07-18", input_tokens=7, cached_input_tokens=0, output_tokens=0),
        usage_event(at, requested_model="claude", served_model="claude-sonnet-4-5-20250929", provider="anthropic",
                    input_tokens=3000, cached_input_tokens=0, output_tokens=0),
    ])  # fmt: skip
    budgets = parse_records([
        budget("4o", {"team": "payments", "model": "gpt-4o"}, unit="tokens"),
        budget("4o-dated", {"team": "payments", "model": "gpt-4o-2024-08-06"}, unit="tokens"),
        budget("mini", {"team": "payments", "model": "gpt-4o-mini"}, unit="tokens"),
        budget("sonnet", {"team": "payments", "model": "claude-sonnet-4-5"}, unit="tokens"),
    ])  # fmt: skip
    spend = {s.budget.budget_id: int(s.spend) for s in evaluate(seed.runner, budgets, at=datetime.now(UTC))}
    assert spend == {"4o": 120, "4o-dated": 100, "mini": 7, "sonnet": 3000}


def test_workload_budgets_read_raw_events(seed: Seed) -> None:
    at = datetime.now(UTC) - timedelta(minutes=3)
    seed.insert([usage_event(at, workload="nightly", input_tokens=500, cached_input_tokens=0, output_tokens=5),
                 usage_event(at, workload="nightly", team="search", input_tokens=50, cached_input_tokens=0, output_tokens=5),
                 usage_event(at, workload="interactive", input_tokens=9, cached_input_tokens=0, output_tokens=0)])  # fmt: skip
    seed.build_rollups()
    budgets = parse_records([budget("w", {"workload": "nightly"}, unit="tokens"),
                             budget("wt", {"workload": "nightly", "team": "search"}, unit="tokens")])  # fmt: skip
    spend = {s.budget.budget_id: int(s.spend) for s in evaluate(seed.runner, budgets, at=datetime.now(UTC))}
    assert spend == {"w": 560, "wt": 55}
    report = build_report(seed.runner, first=datetime.now(UTC).date(), last=datetime.now(UTC).date(), by="workload")
    assert {line["key"]: line["input_tokens"] + line["output_tokens"] for line in report.lines}["nightly"] == 560


def test_estimated_usage_counts_and_unpriced_usage_is_named_not_hidden(seed: Seed) -> None:
    at = datetime.now(UTC) - timedelta(minutes=3)
    seed.insert([usage_event(at, usage_source=3, input_tokens=1_000_000, cached_input_tokens=0, output_tokens=0),  # estimated
                 usage_event(at, provider="vllm", requested_model="llama-internal", served_model="llama-internal")])  # fmt: skip
    (b,) = parse_records([budget("b", {"team": "payments"}, cost_basis="showback", amount="0.10")])
    (status,) = evaluate(seed.runner, [b], at=datetime.now(UTC))
    assert status.spend == Decimal("0.15")  # gpt-4o-mini list price: $0.15 per 1M input tokens, estimated or not
    assert status.unpriced_events == 1 and status.unpriced_models == ["llama-internal"]
    assert any("UNPRICED" in w for w in status.warnings)
    assert status.exhausted and status.state == "exhausted" and status.thresholds_crossed == (50, 80, 100)


def test_overlapping_budgets_stand_alone_and_share_one_report(traffic: Seed) -> None:
    class Counting:
        def __init__(self, inner: Runner) -> None:
            self.inner, self.database, self.reports = inner, inner.database, 0

        def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], Rows]:
            self.reports += "GROUP BY key, fee_period" in sql
            return self.inner.query(sql, params)

    runner = Counting(traffic.runner)
    budgets = parse_records([
        budget("soft", {"team": "payments"}, amount=1), budget("hard", {"team": "payments"}, action="enforce", amount=10**6),
        budget("search", {"team": "search"}), budget("daily", {"team": "payments"}, period="daily"),
    ])  # fmt: skip
    statuses = {s.budget.budget_id: s for s in evaluate(runner, budgets, at=datetime.now(UTC), config=CONFIG)}
    assert runner.reports == 2  # monthly by team (three budgets) + daily by team
    assert statuses["soft"].spend == statuses["hard"].spend
    assert statuses["soft"].exhausted and not statuses["hard"].exhausted


def test_the_status_handle_drills_down_to_the_events_of_the_spend(traffic: Seed) -> None:
    (b,) = parse_records([budget("m", {"team": "search", "model": "gpt-4o"}, cost_basis="showback")])
    (status,) = evaluate(traffic.runner, [b], at=datetime.now(UTC))
    summary = explain(traffic.runner, Handle.decode(status.handle), limit=1).summary
    assert summary["events"] == status.events > 0
    assert Decimal(summary["list_cost"]) == status.spend


def test_effective_dates_reloads_and_the_console_filter(seed: Seed) -> None:
    today = datetime.now(UTC).date()
    later = (today + timedelta(days=40)).isoformat()
    save_budgets(seed.store, parse_records([budget("now", {"team": "payments"}), budget("future", {"team": "payments"}, effective_from=later),
                                            budget("other", {"tenant": "globex"})]))  # fmt: skip
    assert [s.budget.budget_id for s in budget_status(seed.runner, scope={"team": "payments"})] == ["now"]
    assert {s.budget.budget_id for s in budget_status(seed.runner)} == {"now", "other"}
    counts = save_budgets(seed.store, parse_records([budget("now", {"team": "payments"}, amount=5)]), replace=True)
    assert counts == {"added": 0, "updated": 1, "deleted": 2}
    (only,) = list_budgets(seed.runner)
    assert (only.budget_id, only.amount) == ("now", 5)
    with pytest.raises(ValueError, match="unknown dimension"):
        budget_status(seed.runner, scope={"squad": "x"})


def test_a_budget_before_its_first_day_is_not_in_force(seed: Seed) -> None:
    (b,) = parse_records([budget("b", {"team": "payments"}, effective_from="2026-11-01", effective_to="2026-12-01")])
    assert evaluate(seed.runner, [b], at=utc(2026, 10, 31, 23, 59)) == []
    assert len(evaluate(seed.runner, [b], at=utc(2026, 11, 1))) == 1
    assert evaluate(seed.runner, [b], at=utc(2026, 12, 1)) == []
    assert date(2026, 11, 1) == b.effective_from
