"""Every shipped analyst query (analytics/sql/) runs with its documented parameters on seeded data and gives the right answer."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from support.seed import Seed, day_start, random_events, recent_day

from ai_chargeback_aggregator.analytics import queries
from ai_chargeback_aggregator.analytics.reports.report import build_report

QUERIES = queries.names()
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):")
_DOCUMENTED = re.compile(r"^--\s{2,}([a-z_]+)\s{2,}", re.MULTILINE)


def run(seed: Seed, name: str, **params: Any) -> list[dict[str, Any]]:
    columns, rows = seed.runner.query(queries.text(name), {"db": "chargeback", **params})
    return [dict(zip(columns, row)) for row in rows]


def first_of_month(day: date) -> date:
    return day.replace(day=1)


@pytest.fixture
def traffic(seed: Seed) -> tuple[Seed, list[Any], date, date]:
    this_month = first_of_month(recent_day(0))
    last_month = first_of_month(this_month - timedelta(days=1))
    events = random_events(700, first=this_month, days=max(1, (recent_day(0) - this_month).days + 1))
    events += random_events(300, first=last_month + timedelta(days=3), days=5)
    seed.insert(events)
    seed.insert(events[:150])  # a duplicate batch: the writer drops it
    seed.insert_again(events[150:300])  # duplicates that reach the store: FINAL collapses them
    return seed, events, last_month, this_month


@pytest.mark.parametrize("name", QUERIES)
def test_each_query_documents_exactly_the_parameters_it_binds(name: str) -> None:
    text = queries.text(name)
    header = text.split("-- Parameters:", 1)[1].split("--\n", 1)[0]
    assert set(_DOCUMENTED.findall(header)) == set(_PLACEHOLDER.findall(text)), name
    assert text.startswith(f"-- {name}:")


def test_showback_by_team(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, events, last_month, _ = traffic
    rows = run(seed, "showback_by_team", start=day_start(last_month), end=day_start(recent_day(-1)))
    expected = Counter("" if e.team == "unattributed" else e.team for e in events)
    assert {r["team"]: r["events"] for r in rows} == expected
    report = build_report(seed.runner, first=last_month, last=recent_day(0), by="team")
    assert {r["team"]: r["cost"] for r in rows} == {line["key"]: Decimal(line["cost_exact"]) for line in report.lines}
    assert [r["cost"] for r in rows] == sorted((r["cost"] for r in rows), reverse=True)


def test_top_apps(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, _, last_month, _ = traffic
    rows = run(seed, "top_apps", start=day_start(last_month), end=day_start(recent_day(-1)), limit=2)
    report = build_report(seed.runner, first=last_month, last=recent_day(0), by="app")
    costs = sorted((Decimal(line["cost_exact"]) for line in report.lines), reverse=True)
    assert [r["cost"] for r in rows] == costs[:2]
    assert abs(sum(r["cost_share"] for r in rows) - float(sum(costs[:2]) / sum(costs))) < 1e-9


def test_cost_per_model(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, _, last_month, _ = traffic
    rows = run(seed, "cost_per_model", start=day_start(last_month), end=day_start(recent_day(-1)))
    report = {line["key"]: line for line in build_report(seed.runner, first=last_month, last=recent_day(0), by="model").lines}
    for r in rows:
        line = report[r["model"]]
        assert (r["events"], r["cost"]) == (line["events"], Decimal(line["cost_exact"]))
        assert abs(r["cost_per_request"] - r["cost"] / r["events"]) < Decimal("1e-15")
        assert r["price_model_id"] and r["model"].startswith(r["price_model_id"])


def test_cache_hit_ratio(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, events, last_month, _ = traffic
    rows = run(seed, "cache_hit_ratio", start=day_start(last_month), end=day_start(recent_day(-1)))
    cached: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    saving: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for e in events:
        key = (e.tenant, e.app, e.served_model)
        cached[key][0] += e.cached_input_tokens
        cached[key][1] += e.input_tokens
        started = datetime.fromtimestamp(e.started_at_unix_ms / 1000, tz=UTC)
        price = seed.pricer.schedule(e.provider, e.served_model, e.service_tier, e.tenant, started.date()).pick(started, e.input_tokens)
        saving[key] += Decimal(e.cached_input_tokens * (price.rate_input_e12 - price.rate_cached_input_e12)).scaleb(-18)
    assert len(rows) == len(cached)
    for r in rows:
        key = (r["tenant"], r["app"], r["model"])
        assert abs(r["hit_ratio"] - cached[key][0] / cached[key][1]) < 1e-9
        assert r["saving"] == saving[key]


def test_unattributed_usage(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, events, last_month, _ = traffic
    rows = run(seed, "unattributed_usage", start=day_start(last_month), end=day_start(recent_day(-1)))
    assert sum(r["events"] for r in rows) == sum(1 for e in events if e.team == "unattributed")
    assert {r["reason"] for r in rows} == {"no-team-tag"}
    assert abs(sum(r["event_share"] for r in rows) - sum(1 for e in events if e.team == "unattributed") / len(events)) < 1e-9


def test_daily_trend(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, events, last_month, _ = traffic
    start, end = last_month, recent_day(-1)
    rows = run(seed, "daily_trend", start=start, end=end, tenant="")
    assert [r["day"] for r in rows] == [start + timedelta(days=i) for i in range((end - start).days)]  # no gaps
    per_day = Counter(datetime.fromtimestamp(e.started_at_unix_ms / 1000, tz=UTC).date() for e in events)
    assert {r["day"]: r["events"] for r in rows if r["events"]} == per_day
    quiet = [r for r in rows if r["day"] not in per_day]
    assert quiet and all((r["events"], r["cost"], r["list_cost"]) == (0, Decimal(0), Decimal(0)) for r in quiet)  # zeros, not NULL
    acme = run(seed, "daily_trend", start=start, end=end, tenant="acme")
    assert sum(r["events"] for r in acme) == sum(1 for e in events if e.tenant == "acme")


def test_month_over_month(traffic: tuple[Seed, list[Any], date, date]) -> None:
    seed, _, last_month, this_month = traffic
    rows = {r["team"]: r for r in run(seed, "month_over_month", month=recent_day(0))}
    now = build_report(seed.runner, first=this_month, last=recent_day(0), by="team")
    before = build_report(seed.runner, first=last_month, last=this_month - timedelta(days=1), by="team")
    for line in now.lines:
        assert rows[line["key"]]["cost"] == Decimal(line["cost_exact"])
    for line in before.lines:
        row = rows[line["key"]]
        assert row["previous_cost"] == Decimal(line["cost_exact"])
        assert row["change"] == row["cost"] - row["previous_cost"]
