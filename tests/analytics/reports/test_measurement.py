"""Estimated and unmeasured usage is shown everywhere money is: reports, statements, FOCUS, readiness.

An estimate (``usage_source = estimated``) is labelled, never passed off as a
measured count; an answered request the plugin could not measure at all
(``usage_source = none`` on an allowed request) is never shown as free. Both are
carried through the rollups (migration 0007), so a report read from rollups and
one read from raw events agree.
"""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from support.seed import Seed, day_start, recent_day, usage_event

from ai_chargeback_aggregator.analytics.governance import Readiness, Scope
from ai_chargeback_aggregator.analytics.governance.base import Period
from ai_chargeback_aggregator.analytics.reports.explain import explain
from ai_chargeback_aggregator.analytics.reports.focus import export
from ai_chargeback_aggregator.analytics.reports.handle import Handle
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.statement.data import build_statement
from ai_chargeback_aggregator.analytics.statement.page import render_page
from ai_chargeback_proto import pb

DAY = recent_day(2)


def _events() -> list[pb.UsageEvent]:
    """payments: 6 measured + 3 estimated streams (1 of them Kong ai-proxy's 0-output bug) + 1 unmeasured answer;
    search: 2 measured + 2 requests key-auth refused (usage none, but no answer: not unmeasured)."""
    at = day_start(DAY) + timedelta(hours=10)
    tick = iter(range(100))
    events = [usage_event(at + timedelta(minutes=next(tick)), team="payments") for _ in range(6)]
    for note in ("estimated,output-from-bytes", "estimated,output-from-bytes", "kong-ai-proxy-zero-output,output-from-bytes"):
        events.append(usage_event(at + timedelta(minutes=next(tick)), team="payments", usage_source=pb.USAGE_SOURCE_ESTIMATED,
                                  usage_note=note, streaming=True, cached_input_tokens=0, output_tokens=900))  # fmt: skip
    unmeasured = usage_event(at + timedelta(minutes=next(tick)), team="payments", usage_source=pb.USAGE_SOURCE_NONE,
                             usage_note="malformed-json")  # fmt: skip
    events.append(unmeasured)
    events += [usage_event(at + timedelta(minutes=next(tick)), team="search", app="ranker") for _ in range(2)]
    for _ in range(2):
        refused = usage_event(at + timedelta(minutes=next(tick)), team="search", usage_source=pb.USAGE_SOURCE_NONE,
                              usage_note="not-proxied", policy_outcome=pb.POLICY_OUTCOME_REJECTED_AUTH, http_status=401)  # fmt: skip
        events.append(refused)
    for event in (unmeasured, *events[-2:]):
        for name in ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens"):
            event.ClearField(name)
    return events


@pytest.fixture
def mixed(seed: Seed) -> Seed:
    seed.insert(_events())
    return seed


def _exact(seed: Seed, column: str, where: str) -> Decimal:
    return Decimal(seed.store.query(f"SELECT sum({column}) FROM chargeback.usage_events FINAL WHERE {where}")[1][0][0])


@pytest.mark.parametrize("mode", ["showback", "chargeback"])
def test_report_lines_and_totals_show_estimated_and_unmeasured_shares_from_raw_and_rollups_alike(mixed: Seed, mode: str) -> None:
    raw = build_report(mixed.runner, first=DAY, last=DAY, by="team", mode=mode)
    mixed.build_rollups()
    rolled = build_report(mixed.runner, first=DAY, last=DAY, by="team", mode=mode)
    assert rolled.sources["hours_from_raw_events"] == 0  # really read from the rollups
    assert raw.lines == rolled.lines and raw.totals == rolled.totals

    cost = "cost_total" if mode == "chargeback" else "list_cost_total"
    estimated_cost = _exact(mixed, cost, "usage_source = 'estimated'")
    all_cost = _exact(mixed, cost, "1")
    payments = next(line for line in rolled.lines if line["key"] == "payments")
    assert (payments["events"], payments["estimated_events"], payments["unmeasured_events"]) == (10, 3, 1)
    assert payments["estimated_request_share"] == 0.3 and payments["unmeasured_request_share"] == 0.1
    search = next(line for line in rolled.lines if line["key"] == "search")
    assert (search["events"], search["estimated_events"], search["unmeasured_events"]) == (4, 0, 0)  # refused is not unmeasured

    totals = rolled.totals
    assert (totals["estimated_events"], totals["unmeasured_events"]) == (3, 1)
    assert totals["estimated_cost_share"] == round(float(estimated_cost / all_cost), 6) > 0
    assert Decimal(totals["estimated_cost"]) == estimated_cost.quantize(Decimal("0.01"))
    warnings = " ".join(rolled.warnings)
    assert "ESTIMATED: 3 of 14 request(s)" in warnings and "UNMEASURED: 1 answered request(s)" in warnings


def test_a_report_without_estimates_says_nothing_about_them(seed: Seed) -> None:
    seed.insert([usage_event(day_start(DAY) + timedelta(hours=3), team="payments")])
    report = build_report(seed.runner, first=DAY, last=DAY, by="team")
    assert (report.totals["estimated_events"], report.totals["unmeasured_events"], report.totals["estimated_cost_share"]) == (0, 0, 0.0)
    assert not [w for w in report.warnings if w.startswith(("ESTIMATED", "UNMEASURED"))]


def test_focus_rows_carry_the_estimated_and_unmeasured_counts_of_their_group(mixed: Seed, tmp_path: Path) -> None:
    mixed.build_rollups()
    out = tmp_path / "focus.csv"
    summary = export(mixed.runner, first=DAY, last=DAY, out=out)
    assert (summary.events, summary.estimated_events, summary.unmeasured_events) == (14, 3, 1)
    assert summary.estimated_cost == _exact(mixed, "cost_total", "usage_source = 'estimated'")
    rows = list(csv.DictReader(out.open()))
    # Each group's values repeat on each of its token-type rows: count each group once.
    groups = {(r["x_Team"], r["x_Model"], r["x_Consumer"], r["x_Route"], r["x_Events"], r["x_EstimatedEvents"],
               r["x_UnmeasuredEvents"], r["x_EstimatedCostShare"]) for r in rows}  # fmt: skip
    assert sum(int(g[5]) for g in groups) == 3 and sum(int(g[6]) for g in groups) == 1
    shares = {Decimal(g[7]) for g in groups if g[0] == "payments"}
    assert len(shares) == 1 and Decimal(0) < shares.pop() < Decimal(1)


def test_readiness_fails_on_estimated_cost_and_unmeasured_answers_and_counts_kong_zero_outputs(mixed: Seed) -> None:
    scope = Scope(Period.days(DAY, DAY + timedelta(days=1)), database="chargeback")
    result = Readiness(scope).run(mixed.store)
    assert result.verdict is not None and not result.verdict.ok
    metrics = {row["metric"]: row for row in result.rows}
    estimated, unmeasured = metrics["estimated_cost_share"], metrics["unmeasured_share"]
    assert not estimated["passed"] and estimated["limit"] == 0.05
    assert "1 of them Kong ai-proxy answers reporting 0 output tokens" in estimated["detail"]
    assert not unmeasured["passed"] and unmeasured["value"] == pytest.approx(1 / 14)
    assert any("their cost is missing" in reason for reason in result.verdict.reasons)


def test_readiness_passes_what_stays_under_the_thresholds(seed: Seed) -> None:
    at = day_start(DAY) + timedelta(hours=4)
    seed.insert([usage_event(at + timedelta(seconds=i), team="payments") for i in range(200)]
                + [usage_event(at + timedelta(minutes=30), team="payments", usage_source=pb.USAGE_SOURCE_ESTIMATED,
                               usage_note="estimated,output-from-bytes")])  # fmt: skip
    result = Readiness(Scope(Period.days(DAY, DAY + timedelta(days=1)), database="chargeback")).run(seed.store)
    metrics = {row["metric"]: row for row in result.rows}
    assert metrics["estimated_cost_share"]["passed"] and metrics["unmeasured_share"]["passed"]
    assert 0 < metrics["estimated_cost_share"]["value"] < 0.05


def test_the_statement_shows_what_was_estimated_and_what_could_not_be_measured(mixed: Seed) -> None:
    mixed.build_rollups()
    statement = build_statement(mixed.runner, team="payments", first=DAY, last=DAY)
    html = render_page(statement)
    section = re.search(r'<section class="notice" data-section="measurement">.*?</section>', html, re.S)
    assert section is not None
    totals = dict(re.findall(r'data-total="(estimated_events|unmeasured_events|estimated_cost)" data-value="([^"]+)"', section.group(0)))
    assert totals == {"estimated_events": "3", "unmeasured_events": "1", "estimated_cost": statement.totals["estimated_cost"]}
    assert "30.00%" in section.group(0)  # 3 of 10 requests


def test_migration_0007_sends_rollups_built_before_it_back_to_raw_until_rebuilt(mixed: Seed) -> None:
    mixed.build_rollups()
    expected = build_report(mixed.runner, first=DAY, last=DAY, by="team").totals
    # A store migrated before 0007 has clean rollups whose new columns say 0: replay the migration on them.
    mixed.store.command("ALTER TABLE chargeback.usage_rollup_hourly UPDATE estimated_events = 0, unmeasured_events = 0 WHERE 1 "
                        "SETTINGS mutations_sync = 2")  # fmt: skip
    mixed.store.command("ALTER TABLE chargeback.usage_rollup_daily UPDATE estimated_events = 0, unmeasured_events = 0 WHERE 1 "
                        "SETTINGS mutations_sync = 2")  # fmt: skip
    mixed.store.command("DELETE FROM chargeback.schema_migrations WHERE version = 7")
    assert mixed.store.migrate() == ["0007_rollup_measurement"]
    states = {state for _, state in mixed.store.query("SELECT grain, state FROM chargeback.rollup_state FINAL")[1]}
    assert states == {"dirty"}
    during = build_report(mixed.runner, first=DAY, last=DAY, by="team")
    assert during.sources["hours_from_raw_events"] == 24 and during.totals == expected
    mixed.build_rollups()
    assert build_report(mixed.runner, first=DAY, last=DAY, by="team").totals == expected


def test_explain_lists_each_estimate_with_its_note(mixed: Seed) -> None:
    payments = next(line for line in build_report(mixed.runner, first=DAY, last=DAY, by="team").lines if line["key"] == "payments")
    result = explain(mixed.runner, Handle.decode(payments["handle"]))
    assert (result.summary["estimated_events"], result.summary["unmeasured_events"]) == (3, 1)
    notes = [dict(zip(result.columns, row))["usage_note"] for row in result.events]
    assert sorted(n for n in notes if "output-from-bytes" in n) == [
        "estimated,output-from-bytes", "estimated,output-from-bytes", "kong-ai-proxy-zero-output,output-from-bytes"]  # fmt: skip
