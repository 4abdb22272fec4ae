"""The ClickHouse store: one small interface over clickhouse-connect.

Embedded (``chdb:///path``) and server (``http://host:8123``) stores differ only
in their DSN. The embedded engine runs in this process and allows one opener per
data directory, so every query goes through this one client, serialized by a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import clickhouse_connect
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client

from .engine import EngineMemory, load_engine
from .schema import Migration, distributed_tables_of, load_migrations

if TYPE_CHECKING:
    from ..settings import AggregatorSettings

log = logging.getLogger(__name__)

# clickhouse-connect imports pandas (and with it numpy and pyarrow) on the first insert, only to
# ask whether the rows are a DataFrame; nothing here passes it DataFrames or numpy arrays. Told
# they are absent (its lazy probes' own answer when they are not installed), it never loads them:
# in the aggregator ~45 MB less of its own memory and ~40 MB less of mapped libraries.
# `tests/aggregator/test_engine_memory.py` checks that a store's process stays without them.
driver_options.pd = driver_options.pd_time_test = driver_options.np = None

# Tables a migration set aside (the data as it was) for an operator to check before dropping.
SET_ASIDE_TABLES = ("usage_events_before_0011",)
EMBEDDED_WRITE_SESSION_SETTINGS: Mapping[str, Any] = {
    "compile_expressions": 0, "compile_aggregate_expressions": 0, "compile_sort_description": 0,
}  # fmt: skip
# Queries that read for people (reports, analyst SQL) must never write.
READ_ONLY_SETTINGS: Mapping[str, Any] = {"readonly": 2}


class StoreError(Exception):
    """The store could not be reached or refused an operation."""


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def normalize_dsn(dsn: str) -> str:
    """``chdb://./var/x`` -> ``chdb:///abs/var/x``: the driver would read a relative
    path's first part as a host and its second as a database name."""
    if not is_embedded(dsn):
        return dsn
    path = dsn[len("chdb://") :]
    return f"chdb://{Path(path).resolve()}" if path else dsn


class Store:
    def __init__(self, dsn: str, *, database: str = "chargeback", cluster: str = "",
                 engine: EngineMemory | None = None) -> None:  # fmt: skip
        self.dsn = normalize_dsn(dsn)
        self.database = database
        self.cluster = cluster
        # The embedded engine's caps: every connection passes them, the first one starts the engine with them.
        self._engine = engine if is_embedded(self.dsn) else None
        self._engine_options = self._engine.options() if self._engine is not None else {}
        self._lock = threading.RLock()
        self._client: Client | None = None
        # Reads for people get their own client: in the embedded engine a
        # per-query `readonly` is applied with SET and cannot be lifted again,
        # so a refused write would leave the shared session read-only (and
        # stop ingest). This session is read-only for its whole life instead.
        self._ro_lock = threading.RLock()
        self._ro_client: Client | None = None
        # A Distributed insert otherwise returns once queued on this node, before
        # the shards have it: an ack must mean stored, so every insert of the
        # writing session (writer batches, rollup INSERT ... SELECT) waits for them.
        self._session_settings: dict[str, Any] = {"insert_distributed_sync": 1} if cluster else {}
        if is_embedded(self.dsn):
            # The embedded engine lives in this process: its JIT-compiled expressions (the
            # insert's transforms, the lookups) would stay in the aggregator's memory for good.
            self._session_settings.update(EMBEDDED_WRITE_SESSION_SETTINGS)

    @classmethod
    def from_settings(cls, settings: AggregatorSettings) -> Store:
        """The store as the aggregator's settings describe it, with the engine's memory caps."""
        return cls(settings.store_dsn, database=settings.database, cluster=settings.cluster,
                   engine=EngineMemory.from_settings(settings))  # fmt: skip

    def _get_client(self, **kwargs: Any) -> Client:
        if is_embedded(self.dsn):
            load_engine(self._engine)
        if self._engine_options:
            kwargs["chdb_options"] = self._engine_options
        return clickhouse_connect.get_client(dsn=self.dsn, **kwargs)

    # -- connection -------------------------------------------------------
    def _connect(self) -> Client:
        if self._client is None:
            if is_embedded(self.dsn):
                path = self.dsn[len("chdb://") :]
                if path:
                    Path(path).mkdir(parents=True, exist_ok=True)
            try:
                self._client = self._get_client(settings=self._session_settings)
            except Exception as exc:  # driver raises many types; callers need one
                raise StoreError(f"cannot open store {redact_dsn(self.dsn)}: {exc}") from exc
        return self._client

    def _connect_read_only(self) -> Client:
        if self._ro_client is None:
            with self._lock:
                self._connect()  # creates the data directory; one engine per process
            try:
                client = self._get_client()
                if is_embedded(self.dsn):
                    client.command(f"SET readonly = {READ_ONLY_SETTINGS['readonly']}")
            except Exception as exc:
                raise StoreError(f"cannot open read-only session on {redact_dsn(self.dsn)}: {exc}") from exc
            self._ro_client = client
        return self._ro_client

    # chDB hands the unread output of a query that failed midway to the next query
    # on the same connection (after a query stopped at a 1M-row limit, numbers(5)
    # answered 784,913 rows): a connection that saw a query fail is never reused.
    def _discard_read_only(self) -> None:
        client, self._ro_client = self._ro_client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing a failed read-only session", exc_info=True)

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing a failed session", exc_info=True)

    def close(self) -> None:
        with self._ro_lock:
            if self._ro_client is not None:
                try:
                    self._ro_client.close()
                finally:
                    self._ro_client = None
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None

    def ping(self) -> tuple[bool, str]:
        """(ok, reason) without raising: used by /readyz."""
        try:
            with self._lock:
                self._connect().command("SELECT 1")
            return True, "ok"
        except Exception as exc:
            if not is_embedded(self.dsn):
                self.close()  # reconnect on the next call
            return False, f"store unreachable: {type(exc).__name__}"

    # -- schema -----------------------------------------------------------
    def migrate(self) -> list[str]:
        """Create the database and apply pending migrations; returns what was applied."""
        on_cluster = f" ON CLUSTER `{self.cluster}`" if self.cluster else ""
        engine = "ReplicatedMergeTree" if self.cluster else "MergeTree"
        applied: list[str] = []
        with self._lock:
            client = self._connect()
            client.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`{on_cluster}")
            client.command(
                f"CREATE TABLE IF NOT EXISTS `{self.database}`.schema_migrations{on_cluster} "
                "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                f"ENGINE = {engine} ORDER BY version"
            )
            done = {row[0] for row in client.query(f"SELECT version FROM `{self.database}`.schema_migrations").result_rows}
            for migration in load_migrations():
                if migration.version in done:
                    continue
                self._apply(client, migration)
                applied.append(f"{migration.version:04d}_{migration.name}")
            self._drop_empty_set_aside(client)
        return applied

    def _drop_empty_set_aside(self, client: Client) -> None:
        """A fresh install leaves the tables a migration set aside empty: drop those (single node;
        in cluster mode each shard's copy is the operator's to check and drop)."""
        if self.cluster:
            return
        for table in SET_ASIDE_TABLES:
            found = client.query(
                "SELECT total_rows FROM system.tables WHERE database = {db:String} AND name = {table:String}",
                parameters={"db": self.database, "table": table},
            ).result_rows
            if found and found[0][0] == 0:
                client.command(f"DROP TABLE IF EXISTS `{self.database}`.`{table}`")
                log.info("dropped %s: empty (a fresh install has nothing to keep)", table)
            elif found:
                log.warning("%s holds the raw events as they were before migration 0011; drop it once checked", table)

    def _apply(self, client: Client, migration: Migration) -> None:
        for statement in migration.render(database=self.database, cluster=self.cluster,
                                          distributed_tables=distributed_tables_of(load_migrations())):
            try:
                client.command(statement)
            except Exception as exc:
                raise StoreError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
        client.insert(
            f"`{self.database}`.schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        log.info("applied migration %04d_%s", migration.version, migration.name)

    # -- data -------------------------------------------------------------
    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """One columnar insert; returns only after ClickHouse committed it."""
        names = list(columns)
        data = [columns[name] for name in names]
        try:
            with self._lock:
                self._connect().insert(
                    f"`{self.database}`.{table}",
                    data,
                    column_names=names,
                    column_oriented=True,
                )
        except StoreError:
            raise
        except Exception as exc:
            if not is_embedded(self.dsn):
                self.close()
            raise StoreError(f"insert into {table} failed: {exc}") from exc

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        settings: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a parameterized query; read-only at the ClickHouse level unless told otherwise."""
        # Server sessions take `readonly` per query; the embedded read-only session has it already.
        merged: dict[str, Any] = dict(READ_ONLY_SETTINGS) if read_only and not is_embedded(self.dsn) else {}
        if settings:
            merged.update(settings)
        started = time.perf_counter()
        try:
            if read_only:
                with self._ro_lock:
                    try:
                        result = self._connect_read_only().query(sql, parameters=dict(parameters or {}), settings=merged)
                    except Exception:
                        self._discard_read_only()
                        raise
            else:
                with self._lock:
                    try:
                        result = self._connect().query(sql, parameters=dict(parameters or {}), settings=merged)
                    except Exception:
                        self._discard()
                        raise
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        log.debug("query took %.1f ms", (time.perf_counter() - started) * 1000)
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None, *,
                settings: Mapping[str, Any] | None = None) -> Any:  # fmt: skip
        try:
            with self._lock:
                return self._connect().command(sql, parameters=dict(parameters) if parameters else None,
                                               settings=dict(settings) if settings else None)  # fmt: skip
        except Exception as exc:
            raise StoreError(str(exc)) from exc


def redact_dsn(dsn: str) -> str:
    """DSN safe to log: drops any password."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return dsn
