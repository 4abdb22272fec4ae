"""Analyst SQL on a real ClickHouse server: the read-only users of deploy/clickhouse, and POST /v1/sql running as one.

The server enforces by itself what it can (grants on the chargeback database
only, readonly=1, the limits as constraints); the aggregator's guard refuses the
rest before a query leaves, and checks each session is really locked down.
Skipped where no Docker daemon answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import clickhouse_connect
import pytest
from support.aggregator_fixtures import free_port, make_event, stub_for
from support.grafana_sql import expand, targets

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from ai_chargeback_proto import pb

from . import stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SQL_TOKEN = "server-analyst-token-5e1d"
TEAMS = ("payments", "risk")
FIVE = {"columns": ["number"], "rows": [[0], [1], [2], [3], [4]]}


@pytest.fixture(scope="module")
def server(docker_daemon: None) -> Iterator[Any]:
    with stack.clickhouse() as container:
        yield container


def start(container: Any, sql_store_dsn: str) -> Aggregator:
    settings = AggregatorSettings(
        store_dsn=stack.dsn(container), database="chargeback",  # the read-only users are granted this database
        grpc_listen=f"127.0.0.1:{free_port()}", http_listen=f"127.0.0.1:{free_port()}", flush_interval_ms=50,
        sql_token=SQL_TOKEN, sql_store_dsn=sql_store_dsn,
    )  # fmt: skip
    agg = Aggregator(settings)
    agg.start()
    return agg


@pytest.fixture(scope="module")
def aggregator(server: Any) -> Iterator[Aggregator]:
    agg = start(server, stack.dsn(server, stack.ANALYST_USER, stack.ANALYST_PASSWORD))
    try:
        channel, stub = stub_for(agg)
        events = [make_event(kong_request_id=f"{t}-{i}", team=t, input_tokens=100, cached_input_tokens=0) for t in TEAMS for i in range(10)]
        (ack,) = list(stub.StreamUsage(iter([pb.UsageBatch(batch_id="seed", sequence=1, events=events)]), timeout=60))
        channel.close()
        assert ack.status == pb.BatchAck.STATUS_STORED
        yield agg
    finally:
        agg.stop(grace_s=5)


def post(agg: Aggregator, sql: str, params: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://{agg.settings.http_listen}/v1/sql", method="POST",
                                     data=json.dumps({"sql": sql, "params": params or {}}).encode(),
                                     headers={"authorization": f"Bearer {SQL_TOKEN}", "content-type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_refuses_and_answers_exactly_on_a_server(aggregator: Aggregator, server: Any) -> None:
    with stack.logs_on_failure(server):
        for sql in ("SELECT * FROM file('/etc/passwd')", "SELECT * FROM url('http://127.0.0.1:8123/', 'RawBLOB')",
                    "SELECT query FROM system.processes", "SELECT 1 SETTINGS max_result_rows = 0",
                    "INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')", "SELECT 1; SELECT 2"):  # fmt: skip
            assert post(aggregator, sql)[0] == 403, sql
        status, body = post(aggregator, "SELECT number FROM numbers(2000000)")
        assert (status, body["kind"]) == (400, "limit"), body
        assert post(aggregator, "SELECT number FROM numbers(5)") == (200, FIVE)
        sums = "SELECT team, toUInt64(sum(input_tokens)) FROM chargeback.usage_events FINAL GROUP BY team ORDER BY team"
        assert post(aggregator, sums)[1]["rows"] == [[t, 1000] for t in TEAMS]


@pytest.mark.parametrize("user", [stack.ANALYST_USER, stack.GRAFANA_USER])
def test_the_server_itself_keeps_each_read_only_user_in_the_chargeback_database(aggregator: Aggregator, server: Any, user: str) -> None:
    password = stack.ANALYST_PASSWORD if user == stack.ANALYST_USER else stack.GRAFANA_PASSWORD
    client = clickhouse_connect.get_client(dsn=stack.dsn(server, user, password), database="chargeback", autogenerate_session_id=False)
    try:
        assert client.query("SELECT count() FROM chargeback.usage_events FINAL").result_rows == [(len(TEAMS) * 10,)]
        for sql in ("INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')", "DROP TABLE chargeback.usage_events",
                    "SELECT * FROM system.processes", "SELECT * FROM system.query_log", "SELECT * FROM system.users",
                    "SELECT * FROM information_schema.tables WHERE table_schema = 'system'",
                    "SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT * FROM url('http://127.0.0.1:8123/', 'RawBLOB')",
                    "SELECT * FROM remote('127.0.0.1', system.one)", "SELECT 1 SETTINGS max_result_rows = 0",
                    "SELECT 1 SETTINGS max_execution_time = 0", "SELECT 1 SETTINGS max_execution_time = 121",
                    "SET max_memory_usage = 0", "SET readonly = 0"):  # fmt: skip
            with pytest.raises(Exception) as caught:  # noqa: B017 (the driver raises by statement kind)
                client.command(sql) if not sql.startswith("SELECT") else client.query(sql)
            assert any(code in str(caught.value) for code in ("READONLY", "ACCESS_DENIED", "SETTING_CONSTRAINT_VIOLATION",
                                                              "NOT_ENOUGH_PRIVILEGES")), (sql, caught.value)  # fmt: skip
        # What Grafana sets on every query stays possible within the limit.
        assert client.query("SELECT 1", settings={"max_execution_time": 60}).result_rows == [(1,)]
    finally:
        client.close()


def test_grafana_dashboards_run_as_the_grafana_user(aggregator: Aggregator, server: Any) -> None:
    client = clickhouse_connect.get_client(dsn=stack.dsn(server, stack.GRAFANA_USER, stack.GRAFANA_PASSWORD), database="chargeback")
    dashboard = json.loads((stack.ROOT / "deploy/grafana/chargeback.json").read_text())
    now = datetime.now(UTC)
    try:
        for _title, sql in targets(dashboard):
            client.query(expand(sql, start=now - timedelta(days=1), end=now + timedelta(hours=1), interval_s=300,
                                variables={"tenant": ["acme"], "team": list(TEAMS)}), settings={"max_execution_time": 60})  # fmt: skip
    finally:
        client.close()


def test_a_user_that_is_not_locked_down_runs_nothing(server: Any) -> None:
    """The owner user (full rights) given as the analyst user: every session's check refuses it."""
    agg = start(server, stack.dsn(server))
    try:
        status, body = post(agg, "SELECT 1")
        assert (status, body["kind"]) == (503, "unavailable") and "not locked down: readonly = 0" in body["error"]
    finally:
        agg.stop(grace_s=5)
