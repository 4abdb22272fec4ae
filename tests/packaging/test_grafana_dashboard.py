"""The Grafana dashboard: well-formed JSON for grafana-clickhouse-datasource, and SQL that runs and adds up.

Every panel and variable query is expanded the way the plugin expands it and
run on the embedded store with all migrations applied, over events spread
across three hours: one served from its rollup (its raw rows already dropped,
as raw retention does), one whose rollup went stale when a late event
arrived, one never rolled up. Totals must equal the events' own arithmetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.grafana_sql import expand, targets

from ai_chargeback_aggregator.store.clickhouse import Store

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "chargeback.json"
H0 = datetime(2025, 6, 2, 10, tzinfo=UTC)
H1, H2 = H0 + timedelta(hours=1), H0 + timedelta(hours=2)
RANGE = (H0 - timedelta(hours=1), H2 + timedelta(hours=1))
# USD per 1M tokens x 10^12 (migration 0002)
RATES = {"gpt-4o": (2_500_000_000_000, 1_250_000_000_000, 10_000_000_000_000),
         "claude-sonnet-4": (3_000_000_000_000, 300_000_000_000, 15_000_000_000_000)}  # fmt: skip


@dataclass(frozen=True)
class Ev:
    hour: datetime
    tenant: str
    team: str
    app: str
    provider: str
    model: str
    input_tokens: int
    cached: int
    output: int
    priced: bool = True

    @property
    def cost(self) -> Decimal:
        if not self.priced:
            return Decimal(0)
        r_in, r_cached, r_out = RATES[self.model]
        e12 = (self.input_tokens - self.cached) * r_in + self.cached * r_cached + self.output * r_out
        return Decimal(e12) / Decimal(10**18)


RAW_H0 = [
    *[Ev(H0, "acme", "payments", "checkout", "openai", "gpt-4o", 1000, 400, 200)] * 3,
    Ev(H0, "acme", "unattributed", "legacy-batch", "openai", "gpt-4o", 500, 0, 100),
]
RAW_H1 = [
    *[Ev(H1, "globex", "support", "support-bot", "anthropic", "claude-sonnet-4", 2000, 0, 300)] * 2,
    Ev(H1, "acme", "payments", "checkout", "openai", "gpt-4o", 700, 0, 50, priced=False),
]
LATE_H1 = [Ev(H1, "acme", "risk", "fraud-scoring", "openai", "gpt-4o", 100, 100, 10)]
RAW_H2 = [*[Ev(H2, "acme", "risk", "fraud-scoring", "openai", "gpt-4o", 300, 30, 40)] * 2]
ALL = RAW_H0 + RAW_H1 + LATE_H1 + RAW_H2


def _insert(store: Store, events: list[Ev]) -> None:
    cols: dict[str, list[Any]] = defaultdict(list)
    for i, ev in enumerate(events):
        started = ev.hour + timedelta(minutes=5, seconds=i)
        rates = RATES[ev.model] if ev.priced else (0, 0, 0)
        for name, value in {
            "event_id": uuid.uuid4(), "started_at": started, "observed_at": started, "ingested_at": started,
            "tenant": ev.tenant, "team": ev.team, "app": ev.app, "provider": ev.provider,
            "requested_model": ev.model, "served_model": ev.model, "input_tokens": ev.input_tokens,
            "cached_input_tokens": ev.cached, "output_tokens": ev.output,
            "pricing_status": "priced" if ev.priced else "unpriced",
            "rate_input_e12": rates[0], "rate_cached_input_e12": rates[1], "rate_output_e12": rates[2],
            "list_rate_input_e12": rates[0], "list_rate_cached_input_e12": rates[1], "list_rate_output_e12": rates[2],
        }.items():  # fmt: skip
            cols[name].append(value)
    store.insert_columns("usage_events", cols)


def _build_rollup(store: Store, hour: datetime, version: int) -> None:
    """What the rollup maintainer writes for a clean hour (migration 0004), done directly."""
    store.command(
        "INSERT INTO chargeback.usage_rollup_hourly (period_start, tenant, team, app, provider, model, pricing_status,"
        " events, input_tokens, cached_input_tokens, output_tokens, cost_total, list_cost_total, build_version, is_deleted)"
        " SELECT toStartOfHour(started_at), tenant, team, app, provider, billing_model, pricing_status, count(),"
        " sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), sum(cost_total), sum(list_cost_total),"
        " {v:UInt64}, 0 FROM chargeback.usage_events FINAL WHERE toStartOfHour(started_at) = {h:DateTime('UTC')}"
        " GROUP BY ALL",
        {"h": hour, "v": version},
    )
    _mark(store, hour, "clean", version)


def _mark(store: Store, hour: datetime, state: str, version: int) -> None:
    store.command(
        "INSERT INTO chargeback.rollup_state (grain, period_start, state, version) VALUES ('hour', {h:DateTime('UTC')}, {s:String}, {v:UInt64})",
        {"h": hour, "s": state, "v": version},
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"chdb://{tmp_path_factory.mktemp('grafana') / 'store'}")
    store.migrate()
    _insert(store, RAW_H0 + RAW_H1)
    _build_rollup(store, H0, version=100)
    _build_rollup(store, H1, version=100)
    # Raw retention dropped H0's events; its rollup is all that is left.
    store.command("ALTER TABLE chargeback.usage_events DELETE WHERE toStartOfHour(started_at) = {h:DateTime('UTC')} "
                  "SETTINGS mutations_sync = 2", {"h": H0})  # fmt: skip
    assert store.query("SELECT count() FROM chargeback.usage_events WHERE started_at < {h:DateTime('UTC')}", {"h": H1})[1] == [(0,)]
    # A late event makes H1's rollup stale: the writer marks the hour dirty (a later version wins).
    _insert(store, LATE_H1)
    _mark(store, H1, "dirty", version=200)
    _insert(store, RAW_H2)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def run(store: Store, dashboard: dict[str, Any], title: str, **variables: list[str]) -> dict[str, list[Any]]:
    """A panel's query as Grafana would send it; the result by column."""
    (sql,) = [q for t, q in targets(dashboard) if t == title]
    values = {"tenant": ["acme", "globex"], "team": sorted({e.team for e in ALL}), **variables}
    names, rows = store.query(expand(sql, start=RANGE[0], end=RANGE[1], interval_s=60, variables=values))
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


# -- structure ---------------------------------------------------------------------------------


def test_json_is_current_with_its_generator() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "deploy/grafana/dashboard.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_panel_is_a_clickhouse_sql_panel_on_the_grid(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        assert p["type"] in {"stat", "timeseries", "table", "bargauge", "barchart", "piechart"}, p["title"]
        assert p["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["editorType"] == "sql" and t["queryType"] == "sql"
            assert t["format"] == (0 if p["type"] == "timeseries" else 1), p["title"]
            assert t["refId"] and t["rawSql"].strip()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "grafana-clickhouse-datasource"
    assert {"tenant", "team"} <= variables.keys()


def test_covers_what_finance_asks_for(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("spend by team", "spend by tenant", "top apps", "top models", "unattributed", "cache hit ratio"):
        assert needed in titles


# -- the SQL, run ------------------------------------------------------------------------------


def test_every_panel_answers_with_data_on_the_embedded_store(store: Store, dashboard: dict[str, Any]) -> None:
    """Each panel's SQL runs as Grafana sends it (a StoreError fails the test) and finds the seeded traffic."""
    for title, _ in targets(dashboard):
        result = run(store, dashboard, title)
        assert result, f"{title}: no columns"
        assert all(len(values) > 0 for values in result.values()), f"{title}: no rows over the seeded range"


def test_spend_reads_rollups_for_clean_hours_and_raw_events_for_the_rest(store: Store, dashboard: dict[str, Any]) -> None:
    expected = sum(e.cost for e in ALL)
    assert run(store, dashboard, "Spend (contracted)")["spend_usd"][0] == pytest.approx(float(expected), rel=1e-12)

    by_team = run(store, dashboard, "Spend by team")
    got: dict[str, float] = defaultdict(float)
    for team, spend in zip(by_team["team"], by_team["spend"]):
        got[team] += spend
    want: dict[str, Decimal] = defaultdict(Decimal)
    for e in ALL:
        want[e.team] += e.cost
    assert got == pytest.approx({team: float(v) for team, v in want.items()}, rel=1e-12)
    assert all(t.minute == 0 for t in by_team["time"])  # hourly buckets, the rollup grain


def test_filters_restrict_every_figure(store: Store, dashboard: dict[str, Any]) -> None:
    globex = run(store, dashboard, "Spend by tenant", tenant=["globex"])
    assert set(globex["tenant"]) == {"globex"}
    assert sum(globex["spend"]) == pytest.approx(float(sum(e.cost for e in ALL if e.tenant == "globex")))


def test_unattributed_share_cache_ratio_and_unpriced_count(store: Store, dashboard: dict[str, Any]) -> None:
    share = run(store, dashboard, "Unattributed share")
    total = sum(e.cost for e in ALL)
    assert share["spend_share"][0] == pytest.approx(float(sum(e.cost for e in ALL if e.team == "unattributed") / total))
    assert share["request_share"][0] == pytest.approx(1 / len(ALL))
    ratio = run(store, dashboard, "Cache hit ratio")["cache_hit_ratio"][0]
    assert ratio == pytest.approx(sum(e.cached for e in ALL) / sum(e.input_tokens for e in ALL))
    assert run(store, dashboard, "Unpriced requests")["unpriced_requests"][0] == 1


def test_top_apps_and_models_rank_by_spend(store: Store, dashboard: dict[str, Any]) -> None:
    apps = run(store, dashboard, "Top apps")
    spend = defaultdict(Decimal)
    for e in ALL:
        spend[e.app] += e.cost
    assert apps["app"][0] == max(spend, key=lambda app: spend[app])
    assert apps["spend_usd"] == sorted(apps["spend_usd"], reverse=True)
    models = run(store, dashboard, "Top models")
    assert set(models["model"]) == {"gpt-4o", "claude-sonnet-4"}
    assert sum(models["requests"]) == len(ALL)
