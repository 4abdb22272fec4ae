"""Where report queries run: the store itself, or an aggregator's read-only SQL endpoint.

Both take the same parameterized (sql, params) and answer (columns, rows) with
the same Python types, so a report never knows which it used. Read-only is
enforced by ClickHouse (`readonly`) in both cases; the endpoint also checks each
query's parse tree (server/sql_guard.py), so report SQL stays within what it
allows: one SELECT over the chargeback database, no SETTINGS.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from ...store.clickhouse import Store, StoreError
from ...store.wire import decode, encode

SQL_PATH = "/v1/sql"
DEFAULT_TIMEOUT_S = 300.0

Rows = list[tuple[Any, ...]]


class Runner(Protocol):
    database: str

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], Rows]: ...


class LocalRunner:
    """Reads straight from a store this process opened."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.database = store.database

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], Rows]:
        return self.store.query(sql, params, read_only=True)


class RemoteRunner:
    """Reads through a running aggregator (POST /v1/sql with the SQL bearer token)."""

    def __init__(self, base_url: str, token: str, *, database: str = "chargeback", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self._token = token
        self._timeout_s = timeout_s

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], Rows]:
        body = json.dumps({"sql": sql, "params": encode(dict(params or {}))}).encode()
        request = urllib.request.Request(
            self.base_url + SQL_PATH,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise StoreError(f"{SQL_PATH} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"cannot reach aggregator at {self.base_url}: {exc}") from exc
        return list(payload["columns"]), [tuple(decode(row)) for row in payload["rows"]]
