"""The aggregator's HTTP side for people: read-only SQL and the admin writes, over a real socket."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.aggregator_fixtures import make_settings, stub_for
from support.seed import recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.runner import RemoteRunner
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.store.clickhouse import StoreError
from ai_chargeback_proto import pb

SQL_TOKEN, ADMIN_TOKEN = "sql-secret", "admin-secret"


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[Aggregator]:
    agg = Aggregator(make_settings(tmp_path, sql_token=SQL_TOKEN, admin_token=ADMIN_TOKEN))
    agg.start()
    try:
        yield agg
    finally:
        agg.stop(grace_s=2)


def url(agg: Aggregator) -> str:
    return f"http://127.0.0.1:{agg.http.port}"


def post(agg: Aggregator, path: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url(agg) + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ingest(agg: Aggregator, events: list[pb.UsageEvent]) -> None:
    channel, stub = stub_for(agg)
    (ack,) = list(stub.StreamUsage(iter([pb.UsageBatch(batch_id=events[0].event_id, sequence=1, events=events)]), timeout=30))
    channel.close()
    assert ack.status == pb.BatchAck.STATUS_STORED and ack.events_stored == len(events)


def test_sql_needs_the_bearer_token(aggregator: Aggregator) -> None:
    query = {"sql": "SELECT 1"}
    assert post(aggregator, "/v1/sql", query, None)[0] == 401
    assert post(aggregator, "/v1/sql", query, "wrong")[0] == 401
    assert post(aggregator, "/v1/sql", query, ADMIN_TOKEN)[0] == 401  # the admin token is not a SQL token
    assert post(aggregator, "/v1/sql", query, SQL_TOKEN) == (200, {"columns": ["1"], "rows": [[1]]})


def test_writes_are_refused_and_ingest_keeps_working(aggregator: Aggregator) -> None:
    for sql, what in (("INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')", "statement INSERT"),
                      ("DROP TABLE chargeback.usage_events", "statement DROP"),
                      ("CREATE TABLE chargeback.x (a UInt8) ENGINE = Memory", "statement CREATE"),
                      ("SELECT 1 SETTINGS readonly = 0", "SETTINGS readonly")):  # fmt: skip
        status, body = post(aggregator, "/v1/sql", {"sql": sql}, SQL_TOKEN)
        assert (status, body["kind"]) == (403, "refused") and body["error"].startswith(f"{what} is not allowed"), sql
    event = usage_event()
    ingest(aggregator, [event])  # the refused writes left the ingest session writable
    runner = RemoteRunner(url(aggregator), SQL_TOKEN)
    _, rows = runner.query(
        "SELECT count(), sum(cost_total), any(started_at) FROM {db:Identifier}.usage_events FINAL WHERE event_id = {id:UUID}",
        {"db": "chargeback", "id": event.event_id},
    )
    assert rows[0][0] == 1 and isinstance(rows[0][1], Decimal) and rows[0][1] > 0  # exact Decimal over the wire


def test_admin_endpoints_load_prices_and_reprice(aggregator: Aggregator, tmp_path: Path) -> None:
    first = recent_day(1)
    before = usage_event(requested_model="gpt-4o-mini", served_model="gpt-4o-mini")
    ingest(aggregator, [before])
    override = {"id": "half", "provider": "openai", "discount_percent": "50", "effective_from": first.isoformat()}
    assert post(aggregator, "/v1/prices", {"overrides": [override]}, SQL_TOKEN)[0] == 401
    status, body = post(aggregator, "/v1/prices", {"overrides": [override]}, ADMIN_TOKEN)
    assert (status, body["added"], body["active"]) == (200, 1, 1)
    after = usage_event(requested_model="gpt-4o-mini", served_model="gpt-4o-mini")
    ingest(aggregator, [after])  # priced with the override at once: the pricer was refreshed
    sources = dict(aggregator.store.query("SELECT toString(event_id), price_source FROM chargeback.usage_events FINAL")[1])
    assert sources == {before.event_id: "catalog", after.event_id: "override:half"}

    assert post(aggregator, "/v1/reprice", {"from": first.isoformat(), "to": recent_day(0).isoformat()}, ADMIN_TOKEN)[0] == 400  # no reason
    status, run = post(aggregator, "/v1/reprice", {"from": first.isoformat(), "to": recent_day(0).isoformat(), "reason": "MSA"}, ADMIN_TOKEN)
    assert status == 200 and run["events_repriced"] == 1
    sources = dict(aggregator.store.query("SELECT toString(event_id), price_source FROM chargeback.usage_events FINAL")[1])
    assert set(sources.values()) == {"override:half"}


def test_cli_reads_and_writes_through_the_running_aggregator(aggregator: Aggregator, tmp_path: Path) -> None:
    ingest(aggregator, [usage_event(team="payments"), usage_event(team="unattributed")])
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"- {{id: vllm, provider: vllm, kind: list, input_per_mtok: 1, effective_from: {recent_day(5)}}}\n")
    remote = ["--aggregator", url(aggregator)]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["prices", "load", str(prices), *remote, "--admin-token", ADMIN_TOKEN]) == 0
        assert main(["prices", "list", *remote, "--sql-token", SQL_TOKEN, "--format", "json"]) == 0
    assert '"override_id": "vllm"' in out.getvalue()
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["report", "--by", "team", "--from", recent_day(1).isoformat(), "--to", recent_day(0).isoformat(),
                     "--format", "json", *remote, "--sql-token", SQL_TOKEN])  # fmt: skip
    assert code == 0
    report = json.loads(out.getvalue())
    assert [line["label"] for line in report["lines"]] == ["payments", "(unattributed)"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sql", "SELECT count() AS n FROM {db:Identifier}.usage_events FINAL", "--url", url(aggregator),
                     "--token", SQL_TOKEN, "--format", "csv"]) == 0  # fmt: skip
    assert out.getvalue().splitlines() == ["n", "2"]
    with pytest.raises(StoreError):
        RemoteRunner(url(aggregator), "wrong").query("SELECT 1")


def test_endpoints_are_off_without_tokens(tmp_path: Path) -> None:
    agg = Aggregator(make_settings(tmp_path))
    agg.start()
    try:
        for path in ("/v1/sql", "/v1/prices", "/v1/reprice"):
            assert post(agg, path, {}, "anything")[0] == 403
    finally:
        agg.stop(grace_s=2)
