"""Insert events as protobuf: ClickHouse parses them, Python only frames bytes.

The columnar path (rows.events_to_columns + clickhouse-connect) spends about
40 µs of Python per event; here the events the gRPC layer already parsed are
re-serialized by upb (C), length-prefixed, and read by ClickHouse's own
Protobuf input format with the wire schema (plus two storage-only fields), then transformed to
the table's columns in one ``INSERT ... SELECT``. Per-row values that are not
in the event (the sender id, the price columns the pricer adds) are
deduplicated in Python (a batch has few senders and few distinct prices) and
each stored copy of an event carries its indexes in two storage-only fields
(numbers the wire schema reserves), so the SQL stays small at any batch size.

Used for the embedded store (chDB reads the payload from a temp file); a
ClickHouse server takes the columnar path. ``tests/aggregator/test_protobuf_insert.py``
checks both paths store identical rows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.binding import format_query_value

from ai_chargeback_proto import pb

# The wire schema, with the storage-only fields in the range the wire reserves for them:
# each stored copy of an event carries its sender's and its extra row's index.
_WIRE_SCHEMA = resources.files("ai_chargeback_proto").joinpath("chargeback/v1/usage.proto").read_text()
_RESERVED = "reserved 1000 to 1099;"
_SCHEMA_TEXT = _WIRE_SCHEMA.replace(_RESERVED, "uint32 x_sender_index = 1000; uint32 x_extra_index = 1001;")
if _SCHEMA_TEXT == _WIRE_SCHEMA:
    raise RuntimeError(f"usage.proto no longer reserves the storage fields ({_RESERVED})")
_SENDER_TAG = bytes([0xC0, 0x3E])  # field 1000, varint
_EXTRA_TAG = bytes([0xC8, 0x3E])  # field 1001, varint
SCHEMA_FILE_NAME = "chargeback_stored_usage.proto"

# Every UsageEvent field read from the payload, with the type ClickHouse reads it as.
_STRUCTURE = (
    "event_id String, kong_request_id String, started_at_unix_ms Int64, observed_at_unix_ms Int64, gateway_node String, "
    "tenant String, tenant_source String, team String, team_source String, app String, app_source String, "
    "workload String, workload_source String, unattributed_reason String, identity_conflicts Array(String), "
    "consumer_id String, consumer_username String, consumer_custom_id String, credential_fingerprint String, "
    "client_ip String, trace_id String, route_id String, route_name String, service_id String, service_name String, "
    "provider String, api_family String, requested_model String, served_model String, "
    "input_tokens Nullable(UInt64), cached_input_tokens Nullable(UInt64), cache_write_input_tokens Nullable(UInt64), "
    "output_tokens Nullable(UInt64), reasoning_tokens Nullable(UInt64), billable_extras Map(String, UInt64), "
    "usage_source String, usage_note String, streaming Bool, service_tier String, latency_total_ms UInt32, "
    "latency_upstream_ms Nullable(UInt32), latency_gateway_ms UInt32, http_status UInt32, upstream_tries UInt32, "
    "client_retry_count UInt32, policy_outcome String, tags Map(String, String), "
    "x_sender_index UInt32, x_extra_index UInt32"
)
_PLAIN = (
    "kong_request_id", "gateway_node", "tenant", "team", "app", "workload", "unattributed_reason", "identity_conflicts",
    "consumer_id", "consumer_username", "consumer_custom_id", "credential_fingerprint", "client_ip", "trace_id",
    "route_id", "route_name", "service_id", "service_name", "provider", "api_family", "requested_model",
    "served_model", "billable_extras", "usage_note", "streaming", "service_tier", "latency_total_ms",
    "latency_gateway_ms", "http_status", "upstream_tries", "client_retry_count", "tags",
)  # fmt: skip
_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
# Enum names as protobuf writes them -> the words the table stores (rows.py uses the same words).
_ENUM_PREFIX = {"tenant_source": "IDENTITY_SOURCE_", "team_source": "IDENTITY_SOURCE_", "app_source": "IDENTITY_SOURCE_",
                "workload_source": "IDENTITY_SOURCE_", "policy_outcome": "POLICY_OUTCOME_"}  # fmt: skip

_SELECT: tuple[tuple[str, str], ...] = (
    ("event_id", "toUUID(event_id)"),
    ("started_at", "fromUnixTimestamp64Milli(started_at_unix_ms, 'UTC')"),
    ("observed_at", "fromUnixTimestamp64Milli(observed_at_unix_ms, 'UTC')"),
    *((name, name) for name in _PLAIN),
    *((name, f"lower(substring({name}, {len(prefix) + 1}))") for name, prefix in _ENUM_PREFIX.items()),
    *((name, f"ifNull({name}, 0)") for name in _TOKENS),
    ("usage_reported_mask", " + ".join(f"{1 << i} * ({name} IS NOT NULL)" for i, name in enumerate(_TOKENS))),
    ("usage_source", "transform(usage_source, ['USAGE_SOURCE_PROVIDER', 'USAGE_SOURCE_KONG_AI_PROXY', "
                     "'USAGE_SOURCE_ESTIMATED'], ['provider', 'kong-ai-proxy', 'estimated'], 'none')"),
    ("latency_upstream_ms", "ifNull(toInt32(latency_upstream_ms), -1)"),
)  # fmt: skip

# Varint prefixes for every message length below 16 KiB, computed once.
_VARINT = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(1 << 14)]


def _varint(n: int) -> bytes:
    if n < 1 << 14:
        return _VARINT[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(events: Sequence[pb.UsageEvent], sender_index: Sequence[int], extra_index: Sequence[int]) -> bytes:
    """Length-delimited messages (ClickHouse's Protobuf input format), each event followed
    by its storage-only index fields: concatenated protobuf encodings merge into one message."""
    parts: list[bytes] = []
    append = parts.append
    varint = _varint
    for event, sender, extra in zip(events, sender_index, extra_index):
        data = event.SerializeToString() + _SENDER_TAG + varint(sender) + _EXTRA_TAG + varint(extra)
        append(varint(len(data)))
        append(data)
    return b"".join(parts)


def _index(values: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """Distinct values and each row's 1-based position among them."""
    positions: dict[Any, int] = {}
    distinct: list[Any] = []
    index: list[int] = []
    for value in values:
        at = positions.get(value)
        if at is None:
            distinct.append(value)
            at = positions[value] = len(distinct)
        index.append(at)
    return distinct, index


def _literal(value: Any) -> str:
    """A SQL literal; strings quoted and escaped by the driver's own rules."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return str(format_query_value(value))


def insert_sql(*, table: str, source: str, senders: Sequence[str], extra_names: Sequence[str],
               extra_rows: Sequence[tuple[Any, ...]], extra_types: Mapping[str, str], ingested_at_ms: int) -> str:  # fmt: skip
    """The INSERT ... SELECT reading `source` (a table function over the payload)."""
    columns = [name for name, _ in _SELECT]
    selects = [expr for _, expr in _SELECT]
    columns += ["ingested_at", "sender_id"]
    selects += [f"fromUnixTimestamp64Milli({int(ingested_at_ms)}, 'UTC')", "sender_list[x_sender_index]"]
    arrays = [f"[{','.join(map(_literal, senders))}] AS sender_list"]
    if extra_names:
        tuple_type = "Tuple(" + ", ".join(extra_types[name] for name in extra_names) + ")"
        literal = "[" + ",".join("(" + ",".join(map(_literal, row)) + ")" for row in extra_rows) + "]"
        arrays.append(f"CAST({literal}, 'Array({tuple_type})') AS extra_rows")
        for position, name in enumerate(extra_names, start=1):
            columns.append(name)
            selects.append(f"tupleElement(extra_rows[x_extra_index], {position})")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"WITH {', '.join(arrays)} "
        f"SELECT {', '.join(selects)} FROM {source}"
    )


class EmbeddedProtobufInserter:
    """For chDB: the payload goes through a temp file read by ``file()``."""

    def __init__(self, store: Any, table: str) -> None:
        self._store = store
        self._table = f"`{store.database}`.{table}"
        # The schema goes in a file inside the store's own directory: given inline,
        # chDB would cache it in a folder under the process's working directory.
        data_dir = Path(store.dsn[len("chdb://") :] or tempfile.mkdtemp(prefix="chargeback-schema-")).resolve()
        schema_path = data_dir / "format_schemas" / SCHEMA_FILE_NAME
        schema_path.parent.mkdir(parents=True, exist_ok=True)
        if not schema_path.exists() or schema_path.read_text() != _SCHEMA_TEXT:
            schema_path.write_text(_SCHEMA_TEXT)
        self.settings = {"format_schema": f"{schema_path}:UsageEvent"}
        _, rows = store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {table:String}",
            {"db": store.database, "table": table},
        )
        self.column_types = {name: type_ for name, type_ in rows}

    def insert(self, events: Sequence[pb.UsageEvent], sender_ids: Sequence[str], ingested_at_ms: int,
               extra: Mapping[str, Sequence[Any]]) -> None:  # fmt: skip
        senders, sender_index = _index(sender_ids)
        names = list(extra)
        if names:
            extra_rows, extra_index = _index(list(zip(*(extra[name] for name in names))))
        else:
            extra_rows, extra_index = [], [0] * len(events)
        fd, path = tempfile.mkstemp(prefix="chargeback-insert-", suffix=".pb")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(frame(events, sender_index, extra_index))
            source = f"file({format_query_value(path)}, 'Protobuf', {format_query_value(_STRUCTURE)})"
            sql = insert_sql(table=self._table, source=source, senders=senders, extra_names=names, extra_rows=extra_rows,
                             extra_types=self.column_types, ingested_at_ms=ingested_at_ms)  # fmt: skip
            self._store.command(sql, settings=self.settings)
        finally:
            os.unlink(path)
