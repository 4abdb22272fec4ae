"""Showback and chargeback lines: exact cents that add up, unattributed allocation, fees, drill-down."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.seed import Seed, day_start, random_events, recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.allocation import largest_remainder, to_cents
from ai_chargeback_aggregator.analytics.reports.allocation_config import parse
from ai_chargeback_aggregator.analytics.reports.explain import explain
from ai_chargeback_aggregator.analytics.reports.handle import Handle
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.pricing.catalog import catalog_version


def cents(text: str) -> int:
    return int(Decimal(text) * 100)


@pytest.fixture
def traffic(seed: Seed) -> Seed:
    seed.insert(random_events(1_200, first=recent_day(3), days=3))
    seed.insert([usage_event(day_start(recent_day(2)), provider="vllm", requested_model="llama-internal", served_model="llama-internal",
                             team="search")])  # fmt: skip
    seed.build_rollups()
    return seed


@pytest.mark.parametrize("strategy", ["keep", "owner", "pro_rata"])
@pytest.mark.parametrize("by", ["team", "app", "consumer", "route", "model", "tenant"])
def test_chargeback_lines_add_up_to_the_total_exactly(traffic: Seed, strategy: str, by: str) -> None:
    config = parse({
        "platform_fee": [{"effective_from": "2026-01-01", "per_request_usd": "0.00037", "uplift_percent": "3.3"}],
        "unattributed": {"strategy": strategy, "owner": "platform"} if strategy == "owner" else {"strategy": strategy},
    })  # fmt: skip
    report = build_report(traffic.runner, first=recent_day(3), last=recent_day(1), by=by, mode="chargeback", config=config)
    totals = report.totals
    for column in ("model_cost", "platform_fee", "allocated_in", "total"):
        assert sum(cents(line[column]) for line in report.lines) == cents(totals[column]), column
    for line in report.lines:
        assert cents(line["model_cost"]) + cents(line["platform_fee"]) == cents(line["total"])
    exact_cost = Decimal(totals["model_cost_exact"])
    exact_fee = Decimal(totals["platform_fee_exact"])
    assert cents(totals["model_cost"]) == to_cents(exact_cost)
    assert cents(totals["platform_fee"]) == to_cents(exact_fee)
    # the fee is what the policy says: per request on every event, uplift on the contracted cost
    assert exact_fee == Decimal(totals["events"]) * Decimal("0.00037") + exact_cost * Decimal("0.033")
    assert sum(line["events"] for line in report.lines) == totals["events"] == 1_201


def test_unattributed_cost_goes_to_the_owner_or_pro_rata(traffic: Seed) -> None:
    first, last = recent_day(3), recent_day(1)
    keep = build_report(traffic.runner, first=first, last=last, by="team", mode="chargeback")
    lines = {line["key"]: line for line in keep.lines}
    unattributed = Decimal(lines[""]["model_cost_exact"])
    assert unattributed > 0 and lines[""]["label"] == "(unattributed)"

    owner = build_report(traffic.runner, first=first, last=last, by="team", mode="chargeback",
                         config=parse({"unattributed": {"strategy": "owner", "owner": "platform"}}))  # fmt: skip
    owned = {line["key"]: line for line in owner.lines}
    assert owned[""]["total"] == "0.00" and owned[""]["events"] == lines[""]["events"]  # usage still shown
    assert Decimal(owned["platform"]["model_cost_exact"]) == unattributed
    assert owned["platform"]["allocated_in"] == owned["platform"]["total"] == owner.totals["allocated_in"]

    split = build_report(traffic.runner, first=first, last=last, by="team", mode="chargeback", config=parse({"unattributed": {"strategy": "pro_rata"}}))
    shares = {line["key"]: line for line in split.lines}
    attributed = {k: Decimal(v["model_cost_exact"]) for k, v in lines.items() if k}
    whole = sum(attributed.values())
    for key, own in attributed.items():
        received = Decimal(shares[key]["model_cost_exact"]) - own
        assert abs(received - unattributed * own / whole) < Decimal("1e-20")  # shares carry 60 digits; this side 28
    assert shares[""]["total"] == "0.00"
    assert split.totals["total"] == keep.totals["total"]  # moving cost never creates or loses a cent


def test_fee_policy_changes_mid_period_charge_each_part_under_its_own_policy(traffic: Seed) -> None:
    first, middle, last = recent_day(3), recent_day(2), recent_day(1)
    config = parse({"platform_fee": [{"effective_from": "2026-01-01", "per_request_usd": "0.01"},
                                     {"effective_from": middle.isoformat(), "per_request_usd": "0.02"}]})  # fmt: skip
    whole = build_report(traffic.runner, first=first, last=last, by="tenant", mode="chargeback", config=config)
    before = build_report(traffic.runner, first=first, last=first, by="tenant", mode="chargeback")
    after = build_report(traffic.runner, first=middle, last=last, by="tenant", mode="chargeback")
    expected = Decimal(before.totals["events"]) * Decimal("0.01") + Decimal(after.totals["events"]) * Decimal("0.02")
    assert Decimal(whole.totals["platform_fee_exact"]) == expected


def test_unpriced_usage_is_flagged_on_its_line_and_in_the_totals(traffic: Seed) -> None:
    for mode in ("showback", "chargeback"):
        report = build_report(traffic.runner, first=recent_day(3), last=recent_day(1), by="team", mode=mode)
        flagged = [line for line in report.lines if line["flag"]]
        assert [line["key"] for line in flagged] == ["search"]
        assert flagged[0]["unpriced_events"] == 1 and flagged[0]["unpriced_models"] == ["llama-internal"]
        assert report.totals["flag"] == "UNPRICED" and report.totals["unpriced_tokens"] == 1_500
        assert any("llama-internal" in w for w in report.warnings)


def test_every_line_drills_down_to_its_events(traffic: Seed) -> None:
    first, last = recent_day(3), recent_day(1)
    for by in ("team", "model", "consumer"):
        report = build_report(traffic.runner, first=first, last=last, by=by)
        for line in report.lines:
            result = explain(traffic.runner, Handle.decode(line["handle"]), limit=5)
            assert result.summary["events"] == line["events"]
            assert result.summary["cost"] == Decimal(line["cost_exact"])
            assert result.summary["input_tokens"] == line["input_tokens"]
            assert len(result.events) == min(5, line["events"])
            event = dict(zip(result.columns, result.events[0]))
            assert event["team_source"] in ("consumer", "none") and event["app_source"] == "route_tag"
            assert event["pricing_status"] == "unpriced" or event["catalog_version"] == catalog_version()


def test_showback_list_cost_cents_add_up(traffic: Seed) -> None:
    report = build_report(traffic.runner, first=recent_day(3), last=recent_day(1), by="app")
    assert sum(cents(line["list_cost"]) for line in report.lines) == cents(report.totals["list_cost"])
    assert cents(report.totals["list_cost"]) == to_cents(Decimal(report.totals["list_cost_exact"]))


@given(st.lists(st.decimals(min_value=0, max_value=10_000, places=18, allow_nan=False), min_size=1, max_size=40))
def test_largest_remainder_always_sums_to_the_rounded_total(amounts: list[Decimal]) -> None:
    total = to_cents(sum(amounts, Decimal(0)))
    result = largest_remainder(amounts, total)
    assert sum(result) == total
    assert all(abs(Decimal(c) / 100 - a) < Decimal("0.01") for c, a in zip(result, amounts))


def test_report_period_is_whole_utc_days(traffic: Seed) -> None:
    day = recent_day(2)
    report = build_report(traffic.runner, first=day, last=day, by="team")
    assert report.start == day_start(day) and report.end == day_start(day) + timedelta(days=1)
