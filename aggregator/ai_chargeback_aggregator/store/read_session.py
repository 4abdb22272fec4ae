"""Analyst reads: each query in a session of its own, read-only with fixed limits, its rows streamed in blocks.

Why a new session for every query: chDB keeps a failed query's unread output in
the connection that ran it, and hands it to the next query on that connection
(measured: after a query stopped at the 1M-row limit, ``SELECT number FROM
numbers(5)`` answered 981,140 rows). A session that has run one query is
therefore never used again; opening one costs about 12 ms.

Embedded (chDB): the session sets ANALYST_LIMITS, then ``readonly = 1``, after
which ClickHouse refuses any write, DDL, ``SET`` or ``SETTINGS`` clause, and
table functions that reach outside the process. On a server the session logs in
as the dedicated read-only user (``CHARGEBACK_SQL_STORE_DSN``), whose settings
profile holds the same limits as constraints (deploy/clickhouse/users.d/); every
session first checks that the server really applies them, and refuses to run
the query otherwise.

ClickHouse's own parser is reached here too (``parse``): the analyst-SQL guard
(server/sql_guard.py) checks its parse tree. Servers before 26.x lack
``parseQueryToJSON``, so the text is always parsed by the chDB engine in this
process: the store's own engine, or an in-memory one for a server store.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from .clickhouse import StoreError, is_embedded, normalize_dsn, redact_dsn
from .engine import EngineMemory, load_engine

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# The limits of every analyst query. The server's settings profile for the
# read-only users states the same values (a test compares them).
ANALYST_LIMITS: Mapping[str, int | str] = {
    "max_result_rows": 1_000_000,
    "result_overflow_mode": "throw",
    "max_execution_time": 120,
    "timeout_overflow_mode": "throw",
    # chDB runs inside the aggregator: a query's memory is the aggregator's memory.
    "max_memory_usage": 256 * MiB,
    # Big GROUP BY / ORDER BY spill to disk before reaching the memory limit.
    "max_bytes_before_external_group_by": 128 * MiB,
    "max_bytes_before_external_sort": 128 * MiB,
    "max_result_bytes": 256 * MiB,
    # Rows per block: the aggregator decodes one block at a time, so this bounds that block's memory.
    "max_block_size": 8192,
    "allow_introspection_functions": 0,
}
# What the server must apply to the read-only user, checked by every server session.
_EXACT = ("result_overflow_mode", "timeout_overflow_mode")
_AT_MOST = ("max_result_rows", "max_execution_time", "max_memory_usage", "max_result_bytes")

# ClickHouse error names, by what they mean for the person who sent the query.
LIMIT_ERRORS = frozenset({"TOO_MANY_ROWS_OR_BYTES", "TOO_MANY_ROWS", "TOO_MANY_BYTES", "TIMEOUT_EXCEEDED",
                          "MEMORY_LIMIT_EXCEEDED", "TOO_SLOW", "QUERY_WAS_CANCELLED"})  # fmt: skip
REFUSAL_ERRORS = frozenset({"READONLY", "ACCESS_DENIED", "NOT_ENOUGH_PRIVILEGES", "SETTING_CONSTRAINT_VIOLATION",
                            "QUERY_IS_PROHIBITED", "FUNCTION_NOT_ALLOWED"})  # fmt: skip

# Hex in, hex out: no escaping stands between the text checked and the text sent.
_FORMAT_SQL = "WITH unhex({text:String}) AS q SELECT hex(formatQuery(q))"
_TREE_SQL = "WITH unhex({text:String}) AS q SELECT hex(parseQueryToJSON(q)), parseQueryToJSON(formatQuery(q)) = parseQueryToJSON(q)"


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    tree: dict[str, Any]  # parseQueryToJSON: ClickHouse's parse tree
    canonical: str  # formatQuery: the same query as ClickHouse writes it
    round_trips: bool  # the canonical text parses back to the same tree


class QueryParseError(StoreError):
    """ClickHouse's parser refused the text, or has no tree to show for it (unsupported_statement)."""

    def __init__(self, message: str, *, unsupported_statement: str = "") -> None:
        super().__init__(message)
        self.multiple_statements = "Multi-statements are not allowed" in message
        self.unsupported_statement = unsupported_statement  # e.g. "INSERT", from ClickHouse's formatting of it


class AnalystQueryError(StoreError):
    """An analyst query failed in ClickHouse. kind: limit | refused | query | unavailable."""

    def __init__(self, message: str, *, kind: str, code: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


@dataclass(frozen=True, slots=True)
class ResultStream:
    columns: list[str]
    blocks: Iterator[Sequence[tuple[Any, ...]]]


class AnalystSessions:
    """Opens one read-only session per analyst query, on the store or the read-only server user."""

    def __init__(self, store_dsn: str, *, database: str, sql_store_dsn: str = "", engine: EngineMemory | None = None) -> None:
        self.store_dsn = normalize_dsn(store_dsn)
        self.database = database
        self.embedded = is_embedded(self.store_dsn)
        # The engine's caps, passed by every connection (store/engine.py: the first one starts the engine).
        self._engine = engine if self.embedded else None
        self._engine_options = self._engine.options() if self._engine is not None else {}
        self.query_dsn = self.store_dsn if self.embedded else sql_store_dsn
        # A server store leaves this process without an engine: each parse starts an in-memory one (about 50 ms).
        self._parser_path = os.path.realpath(self.store_dsn[len("chdb://") :]) if self.embedded else ":memory:"

    @property
    def available(self) -> str:
        """'' when analyst queries can run, else why not."""
        if not self.query_dsn:
            return ("the store is a ClickHouse server: set CHARGEBACK_SQL_STORE_DSN to its read-only analyst user "
                    "(deploy/clickhouse/users.d/chargeback-readonly.xml)")  # fmt: skip
        return ""

    # -- parsing -------------------------------------------------------------
    def parse(self, sql: str) -> ParsedQuery:
        """ClickHouse's parse tree and canonical text of `sql` (one statement), from a connection of its own."""
        load_engine(self._engine)
        import chdb

        params = {"text": sql.encode("utf-8").hex()}
        try:
            connection = chdb.connect(f"{self._parser_path}?{urlencode(self._engine_options)}" if self._engine_options
                                      else self._parser_path)  # fmt: skip
        except Exception as exc:
            raise AnalystQueryError(f"cannot start ClickHouse's parser: {_first_line(str(exc))}", kind="unavailable") from exc
        try:
            try:
                canonical = bytes.fromhex(connection.query(_FORMAT_SQL, "TabSeparated", params=params).bytes().decode().strip())
            except Exception as exc:
                raise QueryParseError(_parse_error(exc)) from exc
            try:
                raw = connection.query(_TREE_SQL, "TabSeparated", params=params).bytes().decode()
            except Exception as exc:
                # parseQueryToJSON has no tree for most statements other than SELECT (INSERT, DESCRIBE, ...).
                statement = canonical.decode("utf-8", "replace").split(maxsplit=1)[0].upper() if canonical.strip() else "?"
                raise QueryParseError(_parse_error(exc), unsupported_statement=statement) from exc
        finally:
            connection.close()
        tree_hex, round_trips = raw.rstrip("\n").split("\t")
        try:
            tree = json.loads(bytes.fromhex(tree_hex))
        except RecursionError:
            raise QueryParseError("Syntax error: the query nests too deeply") from None
        return ParsedQuery(tree, canonical.decode("utf-8"), round_trips == "1")

    # -- running -------------------------------------------------------------
    @contextmanager
    def stream(self, sql: str, parameters: Mapping[str, Any]) -> Iterator[ResultStream]:
        """Run one query in a new read-only session; its rows arrive in blocks. Failures raise AnalystQueryError."""
        if self.available:
            raise AnalystQueryError(self.available, kind="unavailable")
        client = self.open_session()
        try:
            try:
                # No parameters, no binding: with none, the driver would apply Python %-formatting to the text.
                context = client.query_row_block_stream(sql, parameters=dict(parameters) or None)
                columns = list(getattr(context.source, "column_names", ()))
            except Exception as exc:
                raise _query_error(exc) from exc
            # Leaving the context closes the engine's stream, which stops the query if it is not done.
            with context as stream:
                yield ResultStream(columns, _translated(stream))
        finally:
            client.close()

    def open_session(self) -> Client:
        """A new read-only session with the analyst limits; the caller closes it after one query."""
        try:
            if self.embedded:
                load_engine(self._engine)
                client = clickhouse_connect.get_client(dsn=self.query_dsn, database=self.database, settings=dict(ANALYST_LIMITS),
                                                       chdb_options=self._engine_options or None)  # fmt: skip
            else:
                client = clickhouse_connect.get_client(dsn=self.query_dsn, database=self.database, autogenerate_session_id=False)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        try:
            if self.embedded:
                client.command("SET readonly = 1")  # last: from here on the session cannot change a setting or write
            else:
                self._verify(client)
        except AnalystQueryError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise self._unavailable(exc) from exc
        return client

    def _unavailable(self, exc: BaseException) -> AnalystQueryError:
        return AnalystQueryError(f"cannot open a read-only session on {redact_dsn(self.query_dsn)}: {_first_line(str(exc))}",
                                 kind="unavailable")  # fmt: skip

    def _verify(self, client: Client) -> None:
        """A server session must be read-only with limits no looser than ANALYST_LIMITS, or no query runs in it."""
        names = ("readonly", *_EXACT, *_AT_MOST)
        row = client.query("SELECT " + ", ".join(f"toString(getSetting('{name}'))" for name in names)).result_rows[0]
        actual = dict(zip(names, row))
        problems = [] if actual["readonly"] == "1" else [f"readonly = {actual['readonly']} (want 1)"]
        problems += [f"{n} = {actual[n]} (want {ANALYST_LIMITS[n]})" for n in _EXACT if actual[n] != ANALYST_LIMITS[n]]
        problems += [f"{n} = {actual[n]} (want 1..{ANALYST_LIMITS[n]})" for n in _AT_MOST
                     if not 0 < int(actual[n]) <= int(ANALYST_LIMITS[n])]  # fmt: skip
        if problems:
            message = f"the analyst user of {redact_dsn(self.query_dsn)} is not locked down: {'; '.join(problems)}"
            log.error("%s", message)
            raise AnalystQueryError(message, kind="unavailable")


def _translated(stream: Any) -> Iterator[Sequence[tuple[Any, ...]]]:
    try:
        yield from stream
    except Exception as exc:
        raise _query_error(exc) from exc


def _query_error(exc: BaseException) -> AnalystQueryError:
    message = _first_line(str(exc))
    code = str(getattr(exc, "name", "") or "") or _error_name(message)
    kind = "limit" if code in LIMIT_ERRORS else "refused" if code in REFUSAL_ERRORS else "query"
    return AnalystQueryError(message, kind=kind, code=code)


def _error_name(message: str) -> str:
    """'... (TOO_MANY_ROWS_OR_BYTES)' -> 'TOO_MANY_ROWS_OR_BYTES'."""
    tail = message.rstrip(". ").rsplit("(", 1)[-1].rstrip(")")
    return tail if tail.replace("_", "").isalnum() and tail.isupper() else ""


def _parse_error(exc: BaseException) -> str:
    # The engine quotes the enclosing parse query after the reason: not the sender's business.
    return _first_line(str(exc)).split(": In scope WITH unhex(", 1)[0]


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:2000]
