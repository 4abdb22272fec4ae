"""POST /v1/sql without the HTTP: check the query, run it in a session of its own, spool its answer.

The answer is written to a spooled file as its blocks arrive (in memory up to
SPOOL_IN_MEMORY_BYTES, then on disk) and is sent only once the query has
finished: the status is known before the first byte goes out, a failed query
never sends part of an answer, and the aggregator holds at most one block of
rows in Python objects. An answer past MAX_ANSWER_BYTES stops the query and is
refused, whatever limit ClickHouse counts.

Outcomes: 200 with {"columns": [...], "rows": [...]} (store/wire.py values);
403 when the guard or ClickHouse refuses what the query asks; 400 for a bad
query or a limit reached; 413 for a query text too long; 503 when no
read-only session can be opened. Every refusal is logged with its reason.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from ..metrics import SQL_QUERIES
from ..store.engine import EngineMemory
from ..store.read_session import AnalystQueryError, AnalystSessions, ResultStream
from ..store.wire import decode, encode
from .sql_guard import SqlGuard, SqlRefused, SqlRejected

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024
MAX_ANSWER_BYTES = 256 * 1024 * 1024
MAX_ROWS_PER_WRITE = 512
WRITE_TARGET_BYTES = 256 * 1024
_LOGGED_QUERY_CHARS = 500


class AnswerTooLarge(Exception):
    pass


@dataclass(slots=True)
class SqlOutcome:
    status: int
    error: dict[str, str] = field(default_factory=dict)
    body: IO[bytes] | None = None  # the spooled JSON answer (status 200); the receiver closes it
    size: int = 0


class AnalystSql:
    def __init__(self, sessions: AnalystSessions, guard: SqlGuard, *, max_answer_bytes: int | None = None) -> None:
        self.sessions = sessions
        self.guard = guard
        self.max_answer_bytes = max_answer_bytes or MAX_ANSWER_BYTES
        # One analyst query at a time: its memory, and the engine's, stay one query's worth.
        self._one_at_a_time = threading.Lock()

    @classmethod
    def for_store(cls, store_dsn: str, *, database: str, sql_store_dsn: str = "",
                  engine: EngineMemory | None = None) -> AnalystSql:  # fmt: skip
        sessions = AnalystSessions(store_dsn, database=database, sql_store_dsn=sql_store_dsn, engine=engine)
        return cls(sessions, SqlGuard(database, sessions.parse))

    def run(self, sql: object, params: object) -> SqlOutcome:
        if not isinstance(sql, str) or not sql.strip():
            return self._outcome(400, "bad_request", "sql: required (one SELECT query as a string)")
        if not isinstance(params, Mapping) or not all(isinstance(name, str) for name in params):
            return self._outcome(400, "bad_request", "params: must be an object of {name: value}")
        try:
            values = decode(dict(params))
        except (ValueError, ArithmeticError) as exc:  # {"$decimal": "x"}, {"$date": "tomorrow"}
            return self._outcome(400, "bad_request", f"params: {exc}")
        with self._one_at_a_time:
            try:
                checked = self.guard.check(sql, values)
                with self.sessions.stream(checked.sql, checked.parameters) as result:
                    body, size = self._spool(result)
            except SqlRefused as exc:
                log.warning("analyst SQL refused: %s; query: %.*r", exc, _LOGGED_QUERY_CHARS, sql)
                return self._outcome(403, "refused", str(exc))
            except SqlRejected as exc:
                return self._outcome(exc.status, "rejected", str(exc))
            except AnswerTooLarge as exc:
                return self._outcome(400, "limit", str(exc))
            except AnalystQueryError as exc:
                if exc.kind == "refused":  # the engine itself refused: as much a refusal as the guard's
                    log.warning("analyst SQL refused by ClickHouse: %s; query: %.*r", exc, _LOGGED_QUERY_CHARS, sql)
                    return self._outcome(403, "refused", str(exc))
                if exc.kind == "unavailable":
                    return self._outcome(503, "unavailable", str(exc))
                return self._outcome(400, exc.kind, str(exc))
        SQL_QUERIES.labels("ok").inc()
        return SqlOutcome(200, body=body, size=size)

    def _spool(self, result: ResultStream) -> tuple[IO[bytes], int]:
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 (handed to the caller)
        try:
            out.write(b'{"columns": ' + json.dumps(result.columns).encode() + b', "rows": [')
            separator = b""
            rows_per_write = 1
            for block in result.blocks:
                done = 0
                while done < len(block):
                    rows = block[done : done + rows_per_write]
                    text = json.dumps(encode([list(row) for row in rows]), default=str).encode()
                    out.write(separator + text[1:-1])
                    separator = b", "
                    done += len(rows)
                    # Many rows per json.dumps is fast; few keeps huge rows from piling up as JSON in memory.
                    grow = len(text) < WRITE_TARGET_BYTES and len(rows) == rows_per_write
                    rows_per_write = min(MAX_ROWS_PER_WRITE, rows_per_write * 2) if grow else max(1, rows_per_write // 2)
                    if out.tell() > self.max_answer_bytes:
                        raise AnswerTooLarge(f"the answer is larger than {self.max_answer_bytes // (1024 * 1024)} MiB of JSON; "
                                             "aggregate further, select fewer columns or add a LIMIT")  # fmt: skip
            out.write(b"]}")
            size = out.tell()
            out.seek(0)
            return out, size
        except BaseException:
            out.close()
            raise

    @staticmethod
    def _outcome(status: int, kind: str, message: str) -> SqlOutcome:
        SQL_QUERIES.labels(kind).inc()
        return SqlOutcome(status, error={"error": message, "kind": kind})
