"""Analyst SQL when the store is a ClickHouse server, without one: what is refused before any server is reached.

(tests/containers/test_analyst_sql_server.py runs the same against a real server where Docker exists.)
"""

from __future__ import annotations

from support.aggregator_fixtures import free_port

from ai_chargeback_aggregator.server.analyst_sql import AnalystSql

SERVER = f"http://chargeback:pw@127.0.0.1:{free_port()}"  # nothing listens there


def test_without_a_read_only_user_the_endpoint_runs_nothing() -> None:
    analyst = AnalystSql.for_store(SERVER, database="chargeback")
    outcome = analyst.run("SELECT 1", {})
    assert outcome.status == 503 and "CHARGEBACK_SQL_STORE_DSN" in outcome.error["error"]


def test_the_guard_parses_in_process_and_refuses_before_any_server_is_reached() -> None:
    analyst = AnalystSql.for_store(SERVER, database="chargeback", sql_store_dsn=f"http://chargeback_analyst:pw-9c31@127.0.0.1:{free_port()}")
    refused = analyst.run("SELECT * FROM url('http://169.254.169.254/latest/meta-data/', 'RawBLOB')", {})
    assert (refused.status, refused.error["kind"]) == (403, "refused") and "table function url()" in refused.error["error"]
    unreachable = analyst.run("SELECT 1", {})
    assert unreachable.status == 503 and "cannot open a read-only session" in unreachable.error["error"]
    assert "pw-9c31" not in unreachable.error["error"]  # the DSN's password is never shown
