"""The analyst-SQL guard on ClickHouse's real parse tree: what an attacker holding the SQL token would try.

Every refused case names what it expects the refusal to name, so a refusal for
the wrong reason (a syntax error, say) fails the test. Every allowed case is a
query analysts and the product really send: the shipped queries, the report
queries and the Grafana dashboard's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.grafana_sql import expand, targets

from ai_chargeback_aggregator.analytics import queries
from ai_chargeback_aggregator.analytics.governance import load_sql
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.server.sql_functions import DENIED_FUNCTIONS, classify, inventory
from ai_chargeback_aggregator.server.sql_guard import MAX_QUERY_BYTES, SqlGuard, SqlRefused, SqlRejected
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_aggregator.store.read_session import AnalystSessions

ROOT = Path(__file__).resolve().parents[2]
DB = "chargeback"


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlGuard]:
    store = Store(f"chdb://{tmp_path_factory.mktemp('guard') / 'store'}")
    store.migrate()  # the engine the parser runs on, as in the aggregator
    try:
        yield SqlGuard(DB, AnalystSessions(store.dsn, database=DB).parse)
    finally:
        store.close()


def refused(guard: SqlGuard, sql: str, params: dict[str, Any] | None = None) -> str:
    with pytest.raises(SqlRefused) as caught:
        guard.check(sql, params or {})
    return str(caught.value)


# (query, what the refusal must name)
TABLE_FUNCTIONS = [
    ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "table function file()"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
    ("SELECT * FROM url('http://127.0.0.1:8080/metrics', 'RawBLOB')", "table function url()"),
    ("SELECT * FROM urlCluster('c', 'http://x/', 'RawBLOB')", "table function urlCluster()"),
    ("SELECT * FROM s3('http://169.254.169.254/latest/meta-data/', 'RawBLOB')", "table function s3()"),
    ("SELECT * FROM s3Cluster('c', 'http://x/y', 'RawBLOB')", "table function s3Cluster()"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote()"),
    ("SELECT * FROM remoteSecure('127.0.0.1', system.one)", "table function remoteSecure()"),
    ("SELECT * FROM cluster('default', system.query_log)", "table function cluster()"),
    ("SELECT * FROM clusterAllReplicas('default', system.processes)", "table function clusterAllReplicas()"),
    ("SELECT * FROM mysql('db:3306', 'd', 't', 'u', 'p')", "table function mysql()"),
    ("SELECT * FROM postgresql('db:5432', 'd', 't', 'u', 'p')", "table function postgresql()"),
    ("SELECT * FROM hdfs('hdfs://x/y', 'TSV')", "table function hdfs()"),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", "table function executable()"),
    ("SELECT * FROM input('x String')", "table function input()"),
    ("SELECT * FROM python('globals')", "table function python()"),
    ("SELECT * FROM merge('system', '.*')", "table function merge()"),
    ("SELECT * FROM loop(system.one) LIMIT 1", "table function loop()"),
    ("SELECT * FROM dictionary('d')", "table function dictionary()"),
    ("SELECT * FROM jdbc('x', 'y')", "table function jdbc()"),
    ("SELECT * FROM odbc('x', 'y')", "table function odbc()"),
    ("SELECT * FROM sqlite('/tmp/x.db', 't')", "table function sqlite()"),
    ("SELECT * FROM mongodb('h:27017', 'd', 'c', 'u', 'p', 'x String')", "table function mongodb()"),
    ("SELECT * FROM redis('h:6379', 'k', 'k String')", "table function redis()"),
    ("SELECT * FROM azureBlobStorage('x', 'c', 'b')", "table function azureBlobStorage()"),
    ("SELECT * FROM icebergLocal('/var/lib')", "table function icebergLocal()"),
    ("SELECT * FROM deltaLakeLocal('/var/lib')", "table function deltaLakeLocal()"),
    ("SELECT * FROM fileCluster('c', '/etc/passwd')", "table function fileCluster()"),
    ("SELECT * FROM filesystem('/')", "table function filesystem()"),
    ("SELECT * FROM mergeTreeIndex(system, query_log)", "table function mergeTreeIndex()"),
    ("SELECT * FROM viewIfPermitted(SELECT 1 ELSE null('x UInt8'))", "table function viewIfPermitted()"),
    # odd casing, quoting and comments change nothing: the tree names the function
    ("SELECT * FROM FILE('/etc/passwd')", "table function FILE()"),
    ("sElEcT * fRoM FiLe('/etc/passwd')", "table function FiLe()"),
    ("SELECT * FROM `file`('/etc/passwd')", "table function file()"),
    ('SELECT * FROM "file"(\'/etc/passwd\')', "table function file()"),
    ("SELECT * FROM file/* hidden */('/etc/passwd')", "table function file()"),
    ("SELECT * FROM file -- a comment\n('/etc/passwd')", "table function file()"),
    ("SELECT * FROM\tfile\n(\n'/etc/passwd'\n)", "table function file()"),
    # nested where a scan of the top level would not look
    ("SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/passwd')))", "table function file()"),
    ("SELECT (SELECT count() FROM file('/etc/passwd'))", "table function file()"),
    ("SELECT 1 WHERE 1 IN (SELECT 1 FROM url('http://x/', 'RawBLOB'))", "table function url()"),
    ("SELECT 1 WHERE EXISTS (SELECT 1 FROM url('http://x/', 'RawBLOB'))", "table function url()"),
    ("SELECT * FROM numbers(1) AS a JOIN file('/etc/passwd') AS b ON 1", "table function file()"),
    ("SELECT 1 UNION ALL SELECT count() FROM file('/etc/passwd')", "table function file()"),
    ("SELECT 1 EXCEPT SELECT count() FROM file('/etc/passwd')", "table function file()"),
    ("SELECT * FROM view(SELECT * FROM file('/etc/passwd'))", "table function file()"),
    ("SELECT * FROM view(SELECT * FROM view(SELECT * FROM remote('h', system.one)))", "table function remote()"),
    ("WITH leak AS (SELECT * FROM file('/etc/passwd')) SELECT * FROM leak", "table function file()"),
    ("WITH (SELECT count() FROM file('/etc/passwd')) AS n SELECT n", "table function file()"),
    ("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM url('http://x/', 'TSV', 'n UInt8')) SELECT * FROM r",
     "table function url()"),
    ("SELECT arrayMap(x -> (SELECT count() FROM file('/etc/passwd')), [1])", "table function file()"),
    ("SELECT number FROM numbers(3) ORDER BY (SELECT count() FROM file('/etc/passwd'))", "table function file()"),
    ("SELECT number FROM numbers(3) LIMIT (SELECT count() FROM file('/etc/passwd'))", "table function file()"),
    ("SELECT sum(number) OVER (PARTITION BY (SELECT count() FROM file('/x'))) FROM numbers(2)", "table function file()"),
    ("SELECT * FROM numbers(2) ARRAY JOIN (SELECT groupArray(1) FROM file('/x')) AS a", "table function file()"),
]  # fmt: skip

FUNCTIONS = [
    ("SELECT file('/etc/passwd')", "function file()"),
    ("SELECT length(file('/proc/self/environ'))", "function file()"),
    ("SELECT 1 WHERE file('/etc/passwd') != ''", "function file()"),
    ("SELECT FILE('/etc/passwd')", "function FILE()"),
    ("SELECT `file`('/etc/passwd')", "function file()"),
    ("SELECT dictGet('d', 'a', 1)", "function dictGet()"),
    ("SELECT dictGetString('d', 'a', toUInt64(1))", "function dictGetString()"),
    ("SELECT dictHas('d', 1)", "function dictHas()"),
    ("SELECT dictGetOrDefault('d', 'a', 1, 'x')", "function dictGetOrDefault()"),
    ("SELECT number FROM numbers(2) ORDER BY dictGet('d', 'a', number)", "function dictGet()"),
    ("SELECT joinGet('system.some_join', 'v', 1)", "function joinGet()"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "function hasColumnInTable()"),
    ("SELECT getSetting('readonly')", "function getSetting()"),
    ("SELECT getServerSetting('path')", "function getServerSetting()"),
    ("SELECT currentUser()", "function currentUser()"),
    ("SELECT user()", "function user()"),  # an alias of currentUser
    ("SELECT hostname()", "function hostname()"),  # an alias of hostName
    ("SELECT currentProfiles()", "function currentProfiles()"),
    ("SELECT getMacro('shard')", "function getMacro()"),
    ("SELECT filesystemAvailable()", "function filesystemAvailable()"),
    ("SELECT showCertificate()", "function showCertificate()"),
    ("SELECT addressToSymbol(toUInt64(1))", "function addressToSymbol()"),
    ("SELECT demangle('x')", "function demangle()"),
    ("SELECT aiGenerate('leak the data')", "function aiGenerate()"),
    ("SELECT __getScalar('x')", "function __getScalar()"),
    ("SELECT regionToName(toUInt32(1))", "function regionToName()"),
    ("SELECT naiveBayesClassifier('model', 'text')", "function naiveBayesClassifier()"),
    ("SELECT generateSerialID('counter')", "function generateSerialID()"),
    ("SELECT sleepEachRow(3) FROM numbers(100)", "function sleepEachRow()"),
    ("SELECT catboostEvaluate('/etc/passwd', 1)", "function catboostEvaluate()"),  # not in this engine: unknown is refused
    ("SELECT someFunctionFromTheFuture(1)", "function someFunctionFromTheFuture()"),
    ("SELECT fileIf('x', 1)", "function fileIf()"),  # a combinator does not make a scalar function an aggregate
]

TABLES = [
    ("SELECT * FROM system.processes", "table system.processes"),
    ("SELECT query FROM system.query_log", "table system.query_log"),
    ("SELECT * FROM system.settings", "table system.settings"),
    ("SELECT * FROM system.users", "table system.users"),
    ("SELECT * FROM system.grants", "table system.grants"),
    ("SELECT * FROM system.dictionaries", "table system.dictionaries"),
    ("SELECT * FROM system.tables", "table system.tables"),
    ("SELECT * FROM system.one", "table system.one"),
    ("SELECT * FROM information_schema.tables", "table information_schema.tables"),
    ("SELECT * FROM INFORMATION_SCHEMA.COLUMNS", "table INFORMATION_SCHEMA.COLUMNS"),
    ("SELECT * FROM default.secrets", "table default.secrets"),
    ("SELECT * FROM `system`.`processes`", "table system.processes"),
    ("SELECT * FROM system . processes", "table system.processes"),
    ("SELECT * FROM system/* comment */.processes", "table system.processes"),
    ("SELECT * FROM CHARGEBACK.usage_events", "table CHARGEBACK.usage_events"),  # database names are case-sensitive
    ("SELECT * FROM chargeback_copy.usage_events", "table chargeback_copy.usage_events"),
    ("SELECT * FROM chargeback.usage_events AS e JOIN system.users AS u ON 1", "table system.users"),
    ("SELECT * FROM chargeback.usage_events WHERE team IN (SELECT name FROM system.users)", "table system.users"),
    ("SELECT 1 WHERE 0 IN system.one", "table system.one"),
    ("SELECT 1 WHERE 0 NOT IN system.one", "table system.one"),
    ("SELECT 1 WHERE 0 GLOBAL IN system.one", "table system.one"),
    ("SELECT 1 WHERE 0 IN (system.one)", "table system.one"),
    ("WITH q AS (SELECT * FROM system.query_log) SELECT * FROM q", "table system.query_log"),
    ("SELECT * FROM view(SELECT * FROM system.processes)", "table system.processes"),
]

SETTINGS_AND_CLAUSES = [
    ("SELECT number FROM numbers(2000000) SETTINGS max_result_rows = 0", "SETTINGS max_result_rows"),
    ("SELECT 1 SETTINGS max_execution_time = 0", "SETTINGS max_execution_time"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS readonly"),
    ("SELECT 1 SETTINGS max_memory_usage = 0, max_result_bytes = 0", "SETTINGS max_memory_usage, max_result_bytes"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)", "SETTINGS max_result_rows"),
    ("SELECT 1 UNION ALL (SELECT 2 SETTINGS max_result_rows = 0)", "SETTINGS max_result_rows"),
    ("WITH x AS (SELECT 1 SETTINGS max_execution_time = 0) SELECT * FROM x", "SETTINGS max_execution_time"),
    ("SELECT * FROM view(SELECT 1 SETTINGS max_result_rows = 0)", "SETTINGS max_result_rows"),
    ("SELECT 1 SETTINGS join_use_nulls = 1", "SETTINGS join_use_nulls"),
    ("SET readonly = 0", "SET readonly"),
    ("SET max_result_rows = 0, max_execution_time = 0", "SET max_result_rows, max_execution_time"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    ("SELECT 1 FORMAT Native", "FORMAT"),
    ("SELECT 1 INTO OUTFILE '/tmp/y'", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/y' TRUNCATE", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/y' APPEND", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/y' AND STDOUT", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/y.gz' COMPRESSION 'gzip'", "INTO OUTFILE"),
    ("SELECT * FROM numbers(1) INTO OUTFILE '/tmp/y' FORMAT CSV", "INTO OUTFILE"),
]

STATEMENTS = [
    ("INSERT INTO FUNCTION file('/tmp/x', 'CSV') SELECT 1", "statement INSERT"),
    ("INSERT INTO chargeback.price_overrides (override_id) VALUES ('x')", "statement INSERT"),
    ("INSERT INTO chargeback.price_overrides SELECT * FROM chargeback.price_overrides", "statement INSERT"),
    ("CREATE TABLE chargeback.x (a UInt8) ENGINE = Memory", "statement CREATE"),
    ("CREATE VIEW chargeback.v AS SELECT * FROM file('/etc/passwd')", "statement CREATE"),
    ("CREATE TEMPORARY TABLE t AS SELECT 1", "statement CREATE"),
    ("DROP TABLE chargeback.usage_events", "statement DROP"),
    ("TRUNCATE TABLE chargeback.usage_events", "statement TRUNCATE"),
    ("ALTER TABLE chargeback.usage_events DELETE WHERE 1", "statement ALTER"),
    ("ALTER TABLE chargeback.usage_events UPDATE team = 'x' WHERE 1", "statement ALTER"),
    ("DELETE FROM chargeback.usage_events WHERE 1", "statement DELETE"),
    ("RENAME TABLE chargeback.usage_events TO chargeback.gone", "statement RENAME"),
    ("OPTIMIZE TABLE chargeback.usage_events FINAL", "statement OPTIMIZE"),
    ("SYSTEM FLUSH LOGS", "statement SYSTEM"),
    ("SYSTEM SHUTDOWN", "statement SYSTEM"),
    ("KILL QUERY WHERE 1", "statement KILL"),
    ("USE system", "statement USE"),
    ("SHOW TABLES FROM system", "statement SHOW"),
    ("SHOW GRANTS", "statement SHOW"),
    ("SHOW CREATE TABLE chargeback.usage_events", "statement SHOW"),
    ("DESCRIBE TABLE chargeback.usage_events", "statement DESCRIBE"),
    ("EXPLAIN SELECT 1", "statement EXPLAIN"),
    ("EXPLAIN QUERY TREE SELECT * FROM file('/etc/passwd')", "statement EXPLAIN"),
    ("EXISTS TABLE chargeback.usage_events", "statement EXISTS"),
    ("GRANT ALL ON *.* TO default", "statement GRANT"),
    ("CREATE USER mallory IDENTIFIED BY 'x'", "statement CREATE"),
    ("BACKUP TABLE chargeback.usage_events TO Disk('default', 'x')", "statement BACKUP"),
    ("DETACH TABLE chargeback.usage_events", "statement DETACH"),
    ("ATTACH TABLE chargeback.x FROM '/tmp/x' (a UInt8) ENGINE = MergeTree ORDER BY a", "statement ATTACH"),
    ("CHECK TABLE chargeback.usage_events", "statement CHECK"),
]

MULTIPLE = [
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE chargeback.usage_events",
    "SELECT 1;\nINSERT INTO FUNCTION file('/tmp/x', 'CSV') SELECT 1",
    "SELECT 1 /* ; */; SET readonly = 0",
    "SELECT ';'; SELECT 2",
]


@pytest.mark.parametrize(("sql", "what"), TABLE_FUNCTIONS + FUNCTIONS + TABLES + SETTINGS_AND_CLAUSES + STATEMENTS)
def test_refused_naming_what_is_not_allowed(guard: SqlGuard, sql: str, what: str) -> None:
    assert refused(guard, sql).startswith(f"{what} is not allowed: "), sql


@pytest.mark.parametrize("sql", MULTIPLE)
def test_several_statements_are_refused(guard: SqlGuard, sql: str) -> None:
    assert refused(guard, sql).startswith("several statements in one request is not allowed")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM fіle('/etc/passwd')",  # Cyrillic і: not the function, and not a valid token either
    "SELECT * FROM fi\u200ble('/etc/passwd')",  # zero-width space
    "SELECT * FROM ｆｉｌｅ('/etc/passwd')",  # full-width letters
    "SELECT 1\x00; DROP TABLE chargeback.usage_events",
    "SELECT 1 FROM",
])  # fmt: skip
def test_unicode_tricks_and_broken_text_never_run(guard: SqlGuard, sql: str) -> None:
    with pytest.raises((SqlRejected, SqlRefused)):
        guard.check(sql, {})


def test_parameters_cannot_name_another_database(guard: SqlGuard) -> None:
    for params in ({"db": "system"}, {"db": "default"}, {"db": "system.processes"}):
        assert refused(guard, "SELECT * FROM {db:Identifier}.processes", params).startswith(f"table {params['db']}.processes")
    assert refused(guard, "SELECT * FROM {db:Identifier}.{t:Identifier}", {"db": "system", "t": "users"}).startswith("table system.users")
    assert refused(guard, "SELECT 1 WHERE 0 IN {db:Identifier}.one", {"db": "system"}).startswith("table system.one")
    assert refused(guard, "SELECT * FROM file({path:String})", {"path": "/etc/passwd"}).startswith("table function file()")
    # A table name parameter is a name part in the chargeback database, whatever it holds.
    checked = guard.check("SELECT count() FROM chargeback.{t:Identifier}", {"t": "system.users"})
    assert checked.parameters == {"t": "system.users"}


def test_only_the_parameters_the_query_binds_are_sent(guard: SqlGuard) -> None:
    checked = guard.check("SELECT {a:UInt8} + 1 FROM {db:Identifier}.usage_events",
                          {"a": 1, "db": DB, "unused": "x", "also": "DROP TABLE"})  # fmt: skip
    assert checked.parameters == {"a": 1, "db": DB}
    # No parameter in the tree: none is sent, so the driver has nothing to %-format into the text.
    assert guard.check("SELECT '%(x)s'", {"x": "1) FROM file('/etc/passwd') --"}).parameters == {}
    with pytest.raises(SqlRejected, match=r"\{n:UInt8\} has no value"):
        guard.check("SELECT {n:UInt8}", {})


def test_what_runs_is_clickhouses_own_text_of_the_checked_tree(guard: SqlGuard) -> None:
    checked = guard.check("select /* a comment */ team -- another\n from   chargeback.usage_events  limit 1", {})
    assert checked.sql == "SELECT team\nFROM chargeback.usage_events\nLIMIT 1"


def test_huge_and_deeply_nested_queries(guard: SqlGuard) -> None:
    huge = "SELECT " + " + ".join(["1"] * (MAX_QUERY_BYTES // 4 + 10))
    with pytest.raises(SqlRejected) as caught:
        guard.check(huge, {})
    assert caught.value.status == 413
    fits = "SELECT count() FROM chargeback.usage_events WHERE team IN (" + ", ".join(f"'t{i}'" for i in range(20_000)) + ")"
    assert len(fits) < MAX_QUERY_BYTES and guard.check(fits, {}).parameters == {}
    deep = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    with pytest.raises((SqlRejected, SqlRefused)):
        guard.check(deep, {})


ALLOWED = [
    "SELECT 1",
    "1 + 1",
    "SELECT team, sum(cost_total) FROM chargeback.usage_events FINAL GROUP BY team",
    "SELECT * FROM usage_events LIMIT 1",  # the session's database is the chargeback one
    "WITH file AS (SELECT 1 AS x) SELECT x FROM file",  # a CTE may be called anything
    "WITH t AS (SELECT team FROM chargeback.usage_events) SELECT count() FROM t WHERE team IN t",
    "SELECT sumIf(input_tokens, team = 'x'), uniqExactIf(app, app != ''), quantileExact(0.5)(cost_total), "
    "argMaxIf(team, cost_total, 1), countDistinct(app), SUM(1), Count(*), max_by(team, cost_total) FROM chargeback.usage_events",
    "SELECT team, row_number() OVER (PARTITION BY tenant ORDER BY cost_total DESC) FROM chargeback.usage_events",
    "SELECT arrayMap(x -> x * 2, [1, 2]), mapKeys(map('a', 1)), JSONExtractString('{\"a\":\"b\"}', 'a'), toStartOfMonth(now())",
    "SELECT CASE WHEN 1 THEN 'a' ELSE 'b' END, CASE 1 WHEN 1 THEN 2 END, INTERVAL 1 DAY, DATE '2026-01-01', x'41'",
    "SELECT * FROM numbers(10) AS n JOIN generate_series(1, 3) AS g ON n.number = g.generate_series",
    "SELECT * FROM values('a UInt8, b String', (1, 'x')) UNION ALL SELECT * FROM view(SELECT 2, 'y')",
    "SELECT number FROM numbers(10) WHERE number GLOBAL IN (SELECT 1) ORDER BY number WITH FILL LIMIT 1 BY number",
    "SELECT * FROM chargeback.usage_events AS e ASOF LEFT JOIN chargeback.price_overrides AS p ON e.provider = p.provider "
    "AND e.started_at >= p.effective_from",
    "SELECT COLUMNS('token') APPLY sum FROM chargeback.usage_events",
    "SELECT * EXCEPT (event_id) REPLACE (1 AS team) FROM chargeback.usage_events SAMPLE 1 / 10 LIMIT 1",
    "SELECT '%(x)s', 'SETTINGS readonly = 0', 'file(''/etc/passwd'')'",  # text in literals is data
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_analysts_queries_pass(guard: SqlGuard, sql: str) -> None:
    guard.check(sql, {})


@pytest.mark.parametrize("name", queries.names())
def test_every_shipped_query_passes(guard: SqlGuard, name: str) -> None:
    text = queries.text(name)
    names = sql_parameters(text)
    checked = guard.check(text, {n: DB if n == "db" else "x" for n in names})
    assert set(checked.parameters) == names


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "aggregator/ai_chargeback_aggregator/analytics/governance/sql").glob("*.sql")))
def test_every_governance_query_passes(guard: SqlGuard, name: str) -> None:
    text = load_sql(name)
    guard.check(text, {n: DB if n == "db" else "x" for n in sql_parameters(text)})


def test_every_grafana_panel_query_passes(guard: SqlGuard) -> None:
    """Grafana reads the server directly, as a user with the same limits; its queries must pass the same rules."""
    from datetime import UTC, datetime, timedelta

    dashboard = json.loads((ROOT / "deploy/grafana/chargeback.json").read_text())
    now = datetime.now(UTC)
    for title, sql in targets(dashboard):
        query = expand(sql, start=now - timedelta(days=1), end=now, interval_s=300, variables={"tenant": ["a"], "team": ["b"]})
        try:
            guard.check(query, {})
        except (SqlRefused, SqlRejected) as exc:
            pytest.fail(f"panel {title!r}: {exc}")


def test_function_inventory_denials_hold_for_every_alias() -> None:
    """An alias of a denied function is denied (user() -> currentUser, hostname() -> hostName, ...)."""
    for name, info in inventory().items():
        if info.alias_to in DENIED_FUNCTIONS:
            assert not classify(name).allowed, name
    for name in DENIED_FUNCTIONS:
        assert name in inventory(), f"{name}: denied but not in this engine (a typo would silently allow nothing)"
        assert not classify(name).allowed
    assert classify("sumIfOrNull").allowed and classify("uniqExactIfMerge").allowed
    assert not classify("dictGetIf").allowed


def test_function_inventory_is_the_locked_engines() -> None:
    """The reviewed inventory equals the engine's system.functions: a new engine's functions wait for a review."""
    import subprocess
    import sys

    check = subprocess.run([sys.executable, str(ROOT / "scripts/gen_sql_functions.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, "run scripts/gen_sql_functions.py and review the new functions:\n" + check.stdout[-4000:]
