"""The aggregator against a real ClickHouse server: migrations, ingest, reports and dashboards.

Both modes from the one migration source: single-node, and cluster mode on a
one-node cluster (one shard, one replica, embedded Keeper), where every table
is Replicated* ON CLUSTER behind a Distributed table of the same name.
Each test gets its own database, so tests never see each other's rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.aggregator_fixtures import free_port, make_event, sender_config
from support.grafana_sql import expand, targets

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_aggregator.store.schema import _DISTRIBUTED, load_migrations
from ai_chargeback_plugin.sender import EventSender
from ai_chargeback_proto import pb

from . import stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
DISTRIBUTED_TABLES = sorted({table for m in load_migrations() for table, _ in _DISTRIBUTED.findall(m.source)})


@pytest.fixture(scope="module")
def single_node(docker_daemon: None) -> Iterator[Any]:
    with stack.clickhouse() as container:
        yield container


@pytest.fixture(scope="module")
def one_node_cluster(docker_daemon: None) -> Iterator[Any]:
    with stack.clickhouse(cluster=True) as container:
        stack.wait_for_keeper(container)
        yield container


@pytest.fixture(params=["single-node", "cluster"])
def server(request: pytest.FixtureRequest) -> tuple[Any, str]:
    """(container, cluster name or "") for tests that must hold in both modes."""
    if request.param == "cluster":
        return request.getfixturevalue("one_node_cluster"), stack.CLUSTER_NAME
    return request.getfixturevalue("single_node"), ""


def engines(store: Store) -> dict[str, str]:
    _, rows = store.query("SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": store.database})
    return dict(rows)  # type: ignore[arg-type]


def columns(store: Store, table: str) -> set[str]:
    _, rows = store.query("SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                          {"db": store.database, "t": table})  # fmt: skip
    return {r[0] for r in rows}


# -- migrations --------------------------------------------------------------------------------


def test_single_node_migrations_apply_once(single_node: Any) -> None:
    store = Store(stack.dsn(single_node), database=stack.unique_database("mig"))
    with stack.logs_on_failure(single_node):
        assert store.migrate() == ALL_MIGRATIONS
        assert store.migrate() == []  # idempotent: a restart or a second aggregator applies nothing
        found = engines(store)
        assert found["usage_events"] == "ReplacingMergeTree"
        assert "Distributed" not in found.values() and not any(name.endswith("_local") for name in found)
        assert {"cost_total", "list_cost_total", "billing_model"} <= columns(store, "usage_events")
    store.close()


def test_cluster_mode_migrations_create_replicated_shards_behind_distributed_tables(one_node_cluster: Any) -> None:
    store = Store(stack.dsn(one_node_cluster), database=stack.unique_database("mig"), cluster=stack.CLUSTER_NAME)
    with stack.logs_on_failure(one_node_cluster):
        assert store.migrate() == ALL_MIGRATIONS
        assert store.migrate() == []
        found = engines(store)
        assert DISTRIBUTED_TABLES, "migrations declare their Distributed tables"
        for table in DISTRIBUTED_TABLES:
            assert found[table] == "Distributed", table
            assert found[f"{table}_local"].startswith("Replicated"), table
            # ALTERs in later migrations must reach both, or queries miss columns.
            assert columns(store, table) == columns(store, f"{table}_local"), table
        assert found["schema_migrations"] == "ReplicatedMergeTree"
    store.close()


# -- ingest, report, dashboards ----------------------------------------------------------------


@pytest.fixture
def aggregator(server: tuple[Any, str]) -> Iterator[Aggregator]:
    container, cluster = server
    settings = AggregatorSettings(
        store_dsn=stack.dsn(container), database=stack.unique_database("ingest"), cluster=cluster,
        grpc_listen=f"127.0.0.1:{free_port()}", http_listen=f"127.0.0.1:{free_port()}", flush_interval_ms=50,
    )  # fmt: skip
    agg = Aggregator(settings)
    with stack.logs_on_failure(container):
        agg.start()
    try:
        yield agg
    finally:
        agg.stop(grace_s=5)


TEAMS = {"payments": ("acme", "checkout"), "risk": ("acme", "fraud-scoring"), "support": ("globex", "support-bot")}


def test_events_from_the_plugin_sender_are_stored_once_and_reported(aggregator: Aggregator, server: tuple[Any, str]) -> None:
    container, _ = server
    events = [
        make_event(kong_request_id=f"r{i}", team=team, tenant=TEAMS[team][0], app=TEAMS[team][1])
        for i, team in enumerate(["payments"] * 30 + ["risk"] * 20 + ["support"] * 10)
    ]
    sender = EventSender(sender_config(f"127.0.0.1:{aggregator.grpc_port}", batch_max_events=25))
    with stack.logs_on_failure(container):
        try:
            for event in events:
                assert sender.offer(event)
            assert sender.flush(60)
            # A replay of already-stored events (another aggregator, a spool resend) stores nothing new.
            for event in events[:15]:
                replay = pb.UsageEvent()
                replay.CopyFrom(event)
                assert sender.offer(replay)
            assert sender.flush(60)
        finally:
            sender.close()

        db = aggregator.settings.database
        _, rows = aggregator.store.query(f"SELECT count(), uniqExact(event_id) FROM `{db}`.usage_events FINAL")
        assert rows[0] == (60, 60)

        today = datetime.now(UTC).date()
        report = build_report(LocalRunner(aggregator.store), first=today - timedelta(days=1), last=today, by="team")
        by_team = {line["key"]: line["events"] for line in report.to_dict()["lines"]}
        assert by_team == dict(Counter(e.team for e in events))
        assert report.to_dict()["totals"]["events"] == 60


def test_dashboard_queries_run_on_the_server(aggregator: Aggregator, server: tuple[Any, str]) -> None:
    container, _ = server
    channel_events = [make_event(team="payments"), make_event(team="unattributed", app="", unattributed_reason="no-team-tag")]
    sender = EventSender(sender_config(f"127.0.0.1:{aggregator.grpc_port}"))
    try:
        for event in channel_events:
            sender.offer(event)
        assert sender.flush(60)
    finally:
        sender.close()
    dashboard = json.loads((stack.ROOT / "deploy/grafana/chargeback.json").read_text())
    db = aggregator.settings.database
    now = datetime.now(UTC)
    with stack.logs_on_failure(container):
        for _title, sql in targets(dashboard):
            query = expand(sql.replace("chargeback.", f"`{db}`."), start=now - timedelta(days=1), end=now + timedelta(hours=1),
                           interval_s=300, variables={"tenant": ["acme"], "team": ["payments", "unattributed"]})  # fmt: skip
            aggregator.store.query(query)  # raises on any SQL error, in either mode
        _, rows = aggregator.store.query(
            expand(dict(targets(dashboard))["Unattributed share"].replace("chargeback.", f"`{db}`."),
                   start=now - timedelta(days=1), end=now + timedelta(hours=1), interval_s=300,
                   variables={"tenant": ["acme"], "team": ["payments", "unattributed"]})  # fmt: skip
        )
        assert rows[0][1] == pytest.approx(0.5)  # one request of two has no team
