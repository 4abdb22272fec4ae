"""Requests the gateway answered itself (auth refusals, rate limits, budget refusals) are metered, never billed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from support.seed import Seed, usage_event

from ai_chargeback_aggregator.analytics.reports.allocation_config import parse
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.pricing.rates import NOT_BILLED_SOURCE
from ai_chargeback_aggregator.pricing.reprice import reprice
from ai_chargeback_proto import pb

FEE = parse({"platform_fee": [{"effective_from": "2026-01-01", "per_request_usd": "0.01", "uplift_percent": "0"}]})


def refused(outcome: int, **fields: object) -> pb.UsageEvent:
    values: dict[str, object] = {"policy_outcome": outcome, "usage_source": pb.USAGE_SOURCE_NONE, "usage_note": "not-proxied",
                                 "input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "http_status": 429,
                                 "upstream_tries": 0, **fields}  # fmt: skip
    return usage_event(datetime.now(UTC) - timedelta(minutes=5), **values)


def test_refusals_cost_nothing_are_not_unpriced_and_pay_no_per_request_fee(seed: Seed) -> None:
    seed.insert([
        usage_event(datetime.now(UTC) - timedelta(minutes=5)),  # a real request
        refused(pb.POLICY_OUTCOME_BUDGET_EXCEEDED, requested_model=""),  # refused before the body was read: no model
        refused(pb.POLICY_OUTCOME_BUDGET_EXCEEDED, requested_model="gpt-4o-mini"),
        refused(pb.POLICY_OUTCOME_REJECTED_AUTH, provider="", requested_model="", served_model="", http_status=401),
    ])  # fmt: skip
    rows = seed.store.query("SELECT policy_outcome, pricing_status, price_source, cost_total FROM chargeback.usage_events FINAL "
                            "ORDER BY policy_outcome")[1]  # fmt: skip
    assert [(o, s, src) for o, s, src, _ in rows if o != "allowed"] == [("budget_exceeded", "priced", NOT_BILLED_SOURCE)] * 2 + [
        ("rejected_auth", "priced", NOT_BILLED_SOURCE)]
    assert all(cost == 0 for o, _, _, cost in rows if o != "allowed")
    today = datetime.now(UTC).date()
    for built in (False, True):
        if built:
            seed.build_rollups()  # the same from the rollups (price_source is in their key)
        report = build_report(seed.runner, first=today - timedelta(days=1), last=today, by="team", mode="chargeback", config=FEE)
        (line,) = report.lines
        assert line["events"] == 4 and line["unpriced_events"] == 0 and report.totals["flag"] == ""
        assert Decimal(line["platform_fee_exact"]) == Decimal("0.01")  # one request reached a provider


def test_a_reprice_leaves_refusals_alone(seed: Seed) -> None:
    seed.insert([usage_event(datetime.now(UTC) - timedelta(minutes=5)), refused(pb.POLICY_OUTCOME_BUDGET_EXCEEDED)])
    seed.load_overrides([{"id": "mini", "provider": "openai", "model": "gpt-4o-mini-2024-07-18", "kind": "contract",
                          "effective_from": "2026-01-01", "discount_percent": "50"}])  # fmt: skip
    today = datetime.now(UTC).date()
    result = reprice(seed.store, first=today - timedelta(days=1), last=today, reason="contract signed", pricer=seed.pricer,
                     maintainer=seed.maintainer)  # fmt: skip
    assert result.events_repriced == 1
    rows = seed.store.query("SELECT policy_outcome, price_source FROM chargeback.usage_events FINAL ORDER BY policy_outcome")[1]
    assert rows == [("allowed", "override:mini"), ("budget_exceeded", NOT_BILLED_SOURCE)]
