"""POST /v1/sql as an attacker holding only the analyst token, over a real socket, on the embedded store.

The probes of issue 15, each with its evidence checked (no file written, no
request reached the SSRF target, no token in the answer), and the exact-answer
check after every kind of failure: the next answers must be exactly their own
queries' (numbers(5) is five rows; each team's token sum is 1,000).
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aggregator_fixtures import make_event, make_settings, stub_for

from ai_chargeback_aggregator.metrics import SQL_QUERIES
from ai_chargeback_aggregator.server.analyst_sql import AnalystSql
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.store import read_session
from ai_chargeback_aggregator.store.read_session import ANALYST_LIMITS, AnalystQueryError, AnalystSessions
from ai_chargeback_proto import pb

SQL_TOKEN, ADMIN_TOKEN, INGEST_TOKEN = "analyst-7d1c", "admin-93fa", "ingest-51be"
TEAMS = ("payments", "risk", "search")
FIVE = {"columns": ["number"], "rows": [[0], [1], [2], [3], [4]]}
PER_TEAM = "SELECT team, toUInt64(sum(input_tokens)) AS tokens FROM chargeback.usage_events FINAL GROUP BY team ORDER BY team"


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    agg = Aggregator(make_settings(tmp_path_factory.mktemp("analyst"), sql_token=SQL_TOKEN, admin_token=ADMIN_TOKEN))
    agg.start()
    try:
        channel, stub = stub_for(agg)
        # Ten events of 100 input tokens per team: 1,000 per team.
        events = [make_event(kong_request_id=f"{team}-{i}", team=team, input_tokens=100, cached_input_tokens=0)
                  for team in TEAMS for i in range(10)]  # fmt: skip
        (ack,) = list(stub.StreamUsage(iter([pb.UsageBatch(batch_id="seed", sequence=1, events=events)]), timeout=60))
        channel.close()
        assert ack.status == pb.BatchAck.STATUS_STORED and ack.events_stored == len(events)
        yield agg
    finally:
        agg.stop(grace_s=2)


def post(target: Aggregator | str, sql: str, params: dict[str, Any] | None = None, token: str = SQL_TOKEN) -> tuple[int, dict[str, Any]]:
    """POST /v1/sql to an in-process aggregator, or to the base URL of one running as a process."""
    base = target if isinstance(target, str) else f"http://127.0.0.1:{target.http.port}"
    request = urllib.request.Request(
        f"{base}/v1/sql", data=json.dumps({"sql": sql, "params": params or {}}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"}, method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_answers_are_exact(agg: Aggregator) -> None:
    assert post(agg, "SELECT number FROM numbers(5)") == (200, FIVE)
    assert post(agg, PER_TEAM) == (200, {"columns": ["team", "tokens"], "rows": [[team, 1000] for team in TEAMS]})


def counted(outcome: str) -> float:
    return SQL_QUERIES.labels(outcome)._value.get()


# -- the probes of the issue ------------------------------------------------------------------


def test_environment_and_host_files_cannot_be_read(aggregator: Aggregator, caplog: pytest.LogCaptureFixture) -> None:
    refusals = counted("refused")
    for sql in ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "SELECT * FROM file('/etc/passwd', 'LineAsString')",
                "SELECT file('/proc/self/environ')", "SELECT * FROM view(SELECT * FROM file('/proc/self/environ', 'RawBLOB'))"):  # fmt: skip
        status, body = post(aggregator, sql)
        assert (status, body["kind"]) == (403, "refused") and "file()" in body["error"], sql
        assert SQL_TOKEN not in json.dumps(body) and ADMIN_TOKEN not in json.dumps(body)
    assert counted("refused") == refusals + 4
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("analyst SQL refused")]
    assert len(logged) == 4 and all("file() is not allowed" in line for line in logged)


def test_no_request_leaves_for_a_url(aggregator: Aggregator) -> None:
    hits: list[str] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args: Any) -> None:
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{target.server_address[1]}/metrics"
    try:
        for sql in (f"SELECT * FROM url('{url}', 'RawBLOB')", f"SELECT * FROM urlCluster('default', '{url}', 'RawBLOB')",
                    f"WITH x AS (SELECT * FROM url('{url}', 'RawBLOB')) SELECT * FROM x",
                    f"SELECT * FROM s3('{url}', 'RawBLOB')", f"SELECT * FROM remote('127.0.0.1:{target.server_address[1]}', system.one)"):  # fmt: skip
            status, body = post(aggregator, sql)
            assert (status, body["kind"]) == (403, "refused"), sql
        urllib.request.urlopen(url, timeout=5).close()  # the target works: it would have seen them
    finally:
        target.shutdown()
    assert hits == ["/metrics"]


def test_nothing_is_written_on_the_host(aggregator: Aggregator, tmp_path: Path) -> None:
    written, outfile = tmp_path / "x.csv", tmp_path / "y.tsv"
    for sql in (f"INSERT INTO FUNCTION file('{written}', 'CSV') SELECT 1", f"SELECT 1 INTO OUTFILE '{outfile}'",
                f"SELECT 1 INTO OUTFILE '{outfile}' TRUNCATE FORMAT CSV", f"SELECT * FROM numbers(3) INTO OUTFILE '{outfile}' AND STDOUT"):  # fmt: skip
        status, body = post(aggregator, sql)
        assert (status, body["kind"]) == (403, "refused"), sql
    assert not written.exists() and not outfile.exists()


def test_guard_rails_cannot_be_lifted(aggregator: Aggregator) -> None:
    for sql, what in (("SELECT number FROM numbers(2000000) SETTINGS max_result_rows = 0", "SETTINGS max_result_rows"),
                      ("SELECT 1 SETTINGS max_execution_time = 0", "SETTINGS max_execution_time"),
                      ("SELECT * FROM (SELECT number FROM numbers(2000000) SETTINGS max_result_rows = 0)", "SETTINGS max_result_rows"),
                      ("SET readonly = 0", "SET readonly")):  # fmt: skip
        status, body = post(aggregator, sql)
        assert status == 403 and body["error"].startswith(f"{what} is not allowed"), sql
    status, body = post(aggregator, "SELECT number FROM numbers(2000000)")
    assert (status, body["kind"]) == (400, "limit") and "TOO_MANY_ROWS_OR_BYTES" in body["error"]


def test_other_databases_and_several_statements_are_refused(aggregator: Aggregator) -> None:
    for sql, params in (("SELECT query FROM system.processes", {}), ("SELECT * FROM {db:Identifier}.users", {"db": "system"}),
                        ("SELECT 1; DROP TABLE chargeback.usage_events", {}),
                        ("SELECT dictGet('d', 'a', toUInt64(1))", {})):  # fmt: skip
        status, body = post(aggregator, sql, params)
        assert (status, body["kind"]) == (403, "refused"), sql
    assert post(aggregator, "SELECT count() FROM {db:Identifier}.usage_events FINAL", {"db": "chargeback"}) == (
        200, {"columns": ["count()"], "rows": [[len(TEAMS) * 10]]})  # fmt: skip


def test_tokens_of_other_roles_do_not_open_the_endpoint(aggregator: Aggregator) -> None:
    # Whitespace around a header value is not part of it (RFC 9110 5.5; the HTTP server strips it):
    # a near miss is a character more, or a space inside the value.
    for token in (ADMIN_TOKEN, INGEST_TOKEN, SQL_TOKEN.upper(), SQL_TOKEN + "x", " " + SQL_TOKEN, ""):
        assert post(aggregator, "SELECT 1", token=token)[0] == 401


# -- every answer is its own query's ----------------------------------------------------------


FAILURES = [
    ("row limit", "SELECT number FROM numbers(2000000)", 400, "limit"),
    ("memory limit", "SELECT groupArray(number) FROM numbers(100000000)", 400, "limit"),
    ("syntax error", "SELECT number FROM numbers(5) WHERE", 400, "rejected"),
    ("unknown table", "SELECT * FROM chargeback.no_such_table", 400, "query"),
    ("failing function mid-stream", "SELECT throwIf(number = 900000, 'stop') FROM numbers(1000000)", 400, "query"),
    ("guard refusal", "SELECT * FROM file('/etc/passwd')", 403, "refused"),
]


@pytest.mark.parametrize(("kind", "sql", "status", "outcome"), FAILURES, ids=[f[0] for f in FAILURES])
def test_after_each_kind_of_failure_the_next_answers_are_exact(aggregator: Aggregator, kind: str, sql: str, status: int,
                                                               outcome: str) -> None:  # fmt: skip
    got, body = post(aggregator, sql)
    assert (got, body["kind"]) == (status, outcome), body
    assert_answers_are_exact(aggregator)


def test_after_a_time_limit_the_next_answers_are_exact(aggregator: Aggregator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(read_session.ANALYST_LIMITS, "max_execution_time", 1)  # 120 s in production; a session reads it when opened
    status, body = post(aggregator, "SELECT count() FROM numbers_mt(1000000000000)")
    assert (status, body["kind"]) == (400, "limit") and "TIMEOUT_EXCEEDED" in body["error"], body
    assert_answers_are_exact(aggregator)


def test_after_an_answer_too_large_the_next_answers_are_exact(aggregator: Aggregator) -> None:
    small = AnalystSql.for_store(aggregator.settings.store_dsn, database="chargeback")
    small.max_answer_bytes = 1024 * 1024
    outcome = small.run("SELECT number, repeat('x', 100) FROM numbers(900000)", {})
    assert outcome.status == 400 and outcome.error["kind"] == "limit" and "larger than 1 MiB" in outcome.error["error"]
    exact = small.run("SELECT number FROM numbers(5)", {})
    assert exact.status == 200 and exact.body is not None
    with exact.body:
        assert json.loads(exact.body.read()) == FIVE
    assert_answers_are_exact(aggregator)


def test_concurrent_failures_never_reach_other_answers(aggregator: Aggregator) -> None:
    wrong: list[Any] = []

    def client(index: int) -> None:
        for _ in range(3):
            post(aggregator, "SELECT number FROM numbers(2000000)" if index % 2 else "SELECT * FROM chargeback.nope")
            for sql, expected in (("SELECT number FROM numbers(5)", (200, FIVE)),
                                  (PER_TEAM, (200, {"columns": ["team", "tokens"], "rows": [[t, 1000] for t in TEAMS]}))):  # fmt: skip
                answer = post(aggregator, sql)
                if answer != expected:
                    wrong.append((sql, answer))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert wrong == []


# -- what ClickHouse itself enforces under the guard ------------------------------------------


def native(aggregator: Aggregator, sql: str) -> list[Any]:
    """Run `sql` in an analyst session directly, without the guard."""
    sessions = AnalystSessions(aggregator.settings.store_dsn, database="chargeback")
    with sessions.stream(sql, {}) as result:
        return [row for block in result.blocks for row in block]


def native_statement(aggregator: Aggregator, sql: str) -> Any:
    """Run any statement in an analyst session directly, without the guard (the stream runs only queries)."""
    client = AnalystSessions(aggregator.settings.store_dsn, database="chargeback").open_session()
    try:
        return client.command(sql)
    finally:
        client.close()


@pytest.mark.parametrize("sql", [
    "INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')",
    "CREATE TABLE chargeback.x (a UInt8) ENGINE = Memory",
    "DROP TABLE chargeback.usage_events",
    "SET readonly = 0",
    "SELECT 1 SETTINGS max_result_rows = 0",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'RawBLOB')",
    "INSERT INTO FUNCTION file('/tmp/chargeback-never', 'CSV') SELECT 1",
])  # fmt: skip
def test_the_session_itself_refuses_writes_settings_and_sources(aggregator: Aggregator, sql: str) -> None:
    with pytest.raises(Exception) as caught:  # noqa: B017 (the driver's error type varies by statement)
        native_statement(aggregator, sql)
    assert "(READONLY)" in str(caught.value), caught.value
    if sql.startswith("SELECT"):  # and the streamed path reports it as a refusal
        with pytest.raises(AnalystQueryError) as refused:
            native(aggregator, sql)
        assert (refused.value.kind, refused.value.code) == ("refused", "READONLY")


def test_the_session_runs_read_only_with_the_documented_limits(aggregator: Aggregator) -> None:
    names = ["readonly", *ANALYST_LIMITS]
    (row,) = native(aggregator, "SELECT " + ", ".join(f"toString(getSetting('{name}'))" for name in names))
    applied = {name: {"false": "0", "true": "1"}.get(value, value) for name, value in zip(names, row)}  # Bool settings
    assert applied == {"readonly": "1", **{name: str(value) for name, value in ANALYST_LIMITS.items()}}


def test_what_only_the_guard_stops(aggregator: Aggregator, tmp_path: Path) -> None:
    """Read-only mode still lets the scalar file() read the host: why every query passes the guard first."""
    marker = tmp_path / "marker"
    marker.write_text("read by the engine")
    assert native(aggregator, f"SELECT file('{marker}')") == [("read by the engine",)]
    status, body = post(aggregator, f"SELECT file('{marker}')")
    assert status == 403 and "read by the engine" not in json.dumps(body)


# -- memory --------------------------------------------------------------------------------------

OVERSIZED = [
    # (what, query, the kind of refusal); the 2M-row answer grew the aggregator by 718 MiB
    ("2M rows, past the row limit", "SELECT number FROM numbers(2000000)", "limit"),
    ("900k wide rows, past the answer size", "SELECT number, repeat('x', 1000) FROM numbers(900000)", "limit"),
    ("1,000 cells of 1 MB, past the memory limit", "SELECT repeat('x', 1000000) FROM numbers(1000)", "limit"),
]
# Generous: measured +57, +107 and +0 MiB on the 2-vCPU CI box.
MAX_GROWTH_MIB = 200


def peak_rss_mib(pid: int) -> int:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) // 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the aggregator's peak RSS from /proc (Linux)")
def test_a_rejected_oversized_answer_does_not_grow_the_aggregator(tmp_path: Path) -> None:
    from support.aggregator_fixtures import free_port
    from support.aggregator_process import start_serve

    http_listen = f"127.0.0.1:{free_port()}"
    process = start_serve(f"chdb://{tmp_path / 'store'}", f"127.0.0.1:{free_port()}", http_listen, tmp_path / "log", SQL_TOKEN)
    base = f"http://{http_listen}"
    try:
        for _ in range(3):  # warm: the first sessions load what every later one uses
            assert post(base, "SELECT number, toString(number) FROM numbers(100000)")[0] == 200
        growth = {}
        for what, sql, kind in OVERSIZED:
            before = peak_rss_mib(process.pid)
            status, body = post(base, sql)
            assert (status, body["kind"]) == (400, kind), (what, body)
            growth[what] = peak_rss_mib(process.pid) - before
        assert max(growth.values()) < MAX_GROWTH_MIB, growth
        assert post(base, "SELECT number FROM numbers(5)") == (200, FIVE)
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_malformed_requests_are_clear_400s(aggregator: Aggregator) -> None:
    for payload, message in (({"params": {}}, "sql: required"), ({"sql": 42}, "sql: required"),
                             ({"sql": "SELECT {d:Decimal(9, 2)}", "params": {"d": {"$decimal": "not a number"}}}, "params:"),
                             ({"sql": "SELECT {d:Date}", "params": {"d": {"$date": "tomorrow"}}}, "params:"),
                             ({"sql": "SELECT 1", "params": ["not", "an", "object"]}, "params: must be an object")):  # fmt: skip
        request = urllib.request.Request(f"http://127.0.0.1:{aggregator.http.port}/v1/sql", data=json.dumps(payload).encode(),
                                         headers={"authorization": f"Bearer {SQL_TOKEN}"}, method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        body = json.loads(caught.value.read())
        assert (caught.value.code, body["kind"]) == (400, "bad_request") and body["error"].startswith(message), (payload, body)
