"""Insert events as protobuf: ClickHouse parses them, Python only frames bytes.

The columnar path (rows.events_to_columns + clickhouse-connect) spends tens of
µs of Python per event; here each event's canonical encoding, made once at
admission, is length-prefixed and read by ClickHouse's own Protobuf input
format with the wire schema (plus storage-only fields), then transformed to the
table's columns in one ``INSERT ... SELECT``. Per-row values that are not in
the event travel in storage-only fields (numbers the wire schema reserves): the
sender's index, the index of the row's deduplicated extra values (the price
columns the pricer adds: a batch has few distinct prices), and the content hash.

The read structure and the SELECT are derived from the .proto descriptor and
``rows`` (the same field lists and enum words as the columnar path), so a new
wire field reaches both paths or a test fails. Used for the embedded store
(chDB reads the payload from a file in the store's own directory); a ClickHouse
server takes the columnar path. ``tests/aggregator/test_protobuf_insert.py``
checks both paths store identical rows.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.binding import format_query_value
from google.protobuf.descriptor import FieldDescriptor

from ai_chargeback_proto import pb

from . import rows

# The wire schema, with the storage-only fields in the range the wire reserves for them.
_WIRE_SCHEMA = resources.files("ai_chargeback_proto").joinpath("chargeback/v1/usage.proto").read_text()
_RESERVED = "reserved 1000 to 1099;"
_SCHEMA_TEXT = _WIRE_SCHEMA.replace(
    _RESERVED, "uint32 x_sender_index = 1000; uint32 x_extra_index = 1001; fixed64 x_content_hash = 1002;"
)
if _SCHEMA_TEXT == _WIRE_SCHEMA:
    raise RuntimeError(f"usage.proto no longer reserves the storage fields ({_RESERVED})")
_SENDER_TAG = bytes([0xC0, 0x3E])  # field 1000, varint
_EXTRA_TAG = bytes([0xC8, 0x3E])  # field 1001, varint
_HASH_TAG = bytes([0xD1, 0x3E])  # field 1002, fixed64
_HASH = struct.Struct("<Q")
_STORAGE_FIELDS_BYTES = len(_SENDER_TAG) + len(_EXTRA_TAG) + len(_HASH_TAG) + _HASH.size  # plus the two varints
SCHEMA_FILE_NAME = "chargeback_stored_usage.proto"
PAYLOAD_DIR = "insert-payloads"

_SCALAR_TYPES = {
    FieldDescriptor.TYPE_STRING: "String", FieldDescriptor.TYPE_INT64: "Int64", FieldDescriptor.TYPE_UINT64: "UInt64",
    FieldDescriptor.TYPE_UINT32: "UInt32", FieldDescriptor.TYPE_BOOL: "Bool", FieldDescriptor.TYPE_ENUM: "String",
}  # fmt: skip


def _read_type(field: FieldDescriptor) -> str:
    """The type ClickHouse reads a wire field as (enums as their value names)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        return f"Map({_SCALAR_TYPES[key.type]}, {_SCALAR_TYPES[value.type]})"
    scalar = _SCALAR_TYPES[field.type]
    if field.is_repeated:
        return f"Array({scalar})"
    if field.has_presence and field.containing_oneof is not None:
        return f"Nullable({scalar})"
    return scalar


_WIRE_FIELDS = [f for f in pb.UsageEvent.DESCRIPTOR.fields if f.number < 1000]
# The fields read as Nullable (the rest read an absent value as 0, '' or empty).
NULLABLE_FIELDS = frozenset(f.name for f in _WIRE_FIELDS if _read_type(f).startswith("Nullable("))
STRUCTURE = ", ".join(
    [f"{f.name} {_read_type(f)}" for f in _WIRE_FIELDS]
    + ["x_sender_index UInt32", "x_extra_index UInt32", "x_content_hash UInt64"]
)


def structure_of(names: Sequence[str]) -> str:
    """A read structure of only these wire fields, plus the id and the content hash: ClickHouse
    skips the rest of each message (a full read costs about as much as the insert)."""
    fields = pb.UsageEvent.DESCRIPTOR.fields_by_name
    return ", ".join(["event_id String", "x_content_hash UInt64", *(f"{n} {_read_type(fields[n])}" for n in names)])
_ID_STRUCTURE = "event_id String"


def _sql_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join(str(format_query_value(v)) for v in values) + "]"


def _enum_expression(name: str) -> str:
    enum = pb.UsageEvent.DESCRIPTOR.fields_by_name[name].enum_type
    words = rows.enum_words(name)
    names = [v.name for v in enum.values]
    return f"transform({name}, {_sql_strings(names)}, {_sql_strings([words[v.number] for v in enum.values])}, '')"


_SELECT: tuple[tuple[str, str], ...] = (
    ("event_id", "toUUID(event_id)"),
    *((column, f"fromUnixTimestamp64Milli({field}, 'UTC')") for field, column in rows.TIMESTAMP_COLUMNS.items()),
    ("content_hash", "x_content_hash"),
    *((name, name) for name in (*rows.TEXT_FIELDS, *rows.LIST_FIELDS, *rows.MAP_FIELDS, *rows.FLAG_FIELDS, *rows.RANGE_FIELDS)),
    *((name, _enum_expression(name)) for name in rows.ENUM_FIELDS),
    *((name, f"ifNull({name}, 0)") for name, _ in rows.TOKEN_FIELDS),
    ("usage_reported_mask", " + ".join(f"{bit} * ({name} IS NOT NULL)" for name, bit in rows.TOKEN_FIELDS)),
    *((name, f"ifNull(toInt32({name}), -1)") for name in rows.ABSENT_AS_MINUS_ONE),
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
    return out


def frame(payloads: Sequence[bytes | memoryview], content_hashes: Sequence[int], sender_index: Sequence[int],
          extra_index: Sequence[int]) -> bytearray:  # fmt: skip
    """Length-delimited messages (ClickHouse's Protobuf input format): each event's encoding
    followed by its storage-only fields (concatenated protobuf encodings merge into one message)."""
    out = bytearray()  # one growing buffer: no per-event copies, no second copy to join them
    varint, pack = _varint, _HASH.pack
    for payload, content_hash, sender, extra in zip(payloads, content_hashes, sender_index, extra_index):
        sender_field, extra_field = varint(sender), varint(extra)
        out += varint(len(payload) + len(sender_field) + len(extra_field) + _STORAGE_FIELDS_BYTES)
        out += payload
        out += _SENDER_TAG
        out += sender_field
        out += _EXTRA_TAG
        out += extra_field
        out += _HASH_TAG
        out += pack(content_hash)
    return out


def index_values(values: Sequence[Any]) -> tuple[list[Any], list[int]]:
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


def distinct_extra(extra: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]], list[int]]:
    """The enricher's column names (``rows.EXTRA``), each distinct instance's values, and each
    event's 1-based position among them. Instances are told apart by identity: no 18-value
    tuple built and hashed per event (~0.5 µs an event, issue 20); equal values in two
    instances only cost a row."""
    names = rows.extra_names(extra)
    identities, index = index_values(list(map(id, extra)))
    by_identity = dict(zip(map(id, extra), extra))
    return names, [tuple(getattr(by_identity[i], name) for name in names) for i in identities], index


def _literal(value: Any) -> str:
    """A SQL literal; strings quoted and escaped by the driver's own rules."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return str(format_query_value(value))


# In the error of an insert refused by its ``unless`` condition (ClickHouse's throwIf).
INSERT_REFUSED_MARK = "chargeback: the insert's condition refused an event"


def insert_sql(*, table: str, source: str, senders: Sequence[str], extra_names: Sequence[str],
               extra_rows: Sequence[tuple[Any, ...]], extra_types: Mapping[str, str], ingested_at_ms: int,
               unless: str | None = None, settings: Mapping[str, Any] | None = None) -> str:  # fmt: skip
    """The INSERT ... SELECT reading `source` (a table function over the payload), with
    ``settings`` in its own SETTINGS clause.

    ``unless``: a condition over the payload's fields; if it holds for any event, the insert
    fails with INSERT_REFUSED_MARK in its error and stores nothing. (The condition runs on each
    block before it is written: a flush is one block, below ClickHouse's squashing size, and
    the writer looks ids up again after a refusal in case a larger insert were ever split.)
    """
    columns = [name for name, _ in _SELECT]
    selects = [expr for _, expr in _SELECT]
    columns += ["ingested_at", "sender_id"]
    selects += [f"fromUnixTimestamp64Milli({int(ingested_at_ms)}, 'UTC')", "sender_list[x_sender_index]"]
    arrays = [f"[{','.join(map(_literal, senders))}] AS sender_list"]
    if extra_names:
        tuple_type = "Tuple(" + ", ".join(extra_types[name] for name in extra_names) + ")"
        literal = "[" + ",".join("(" + ",".join(map(_literal, row)) + ")" for row in extra_rows) + "]"
        arrays.append(f"CAST({literal}, 'Array({tuple_type})') AS extra_rows")
        # One expression for all of them (not one tupleElement each): the engine plans ~1.5 ms
        # less per insert, whatever its size.
        columns += extra_names
        selects.append("untuple(extra_rows[x_extra_index])")
    refuse = f" WHERE throwIf({unless}, {format_query_value(INSERT_REFUSED_MARK)}) = 0" if unless else ""
    clause = f"SETTINGS {', '.join(f'{name} = {format_query_value(value)}' for name, value in settings.items())} " if settings else ""
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) {clause}"
        f"WITH {', '.join(arrays)} "
        f"SELECT {', '.join(selects)} FROM {source}{refuse}"
    )


class EmbeddedProtobufInserter:
    """For chDB: the payload goes through a file in the store's directory, read by ``file()``.

    The file lives beside the data (not in the system temp directory), so one
    filesystem holds everything an insert writes: when it fills up, the insert
    fails as a whole and the writer retries it.
    """

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
        self.payload_dir = data_dir / PAYLOAD_DIR
        self.payload_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.payload_dir.glob("*.pb"):  # left by a process that was killed mid-insert
            stale.unlink(missing_ok=True)
        self.settings = {"format_schema": f"{schema_path}:UsageEvent"}
        # The writer never inserts two rows with one event id (it deduplicates each flush and
        # looks the ids up first), so the Replacing merge ClickHouse runs on every inserted block
        # by default finds nothing to merge: ~1.6 µs of engine CPU per row spent for nothing.
        # In the statement's own SETTINGS clause: passed per call, clickhouse-connect's chDB client
        # wraps the command in a read of system.settings, a SET per setting and their restore
        # (five more engine calls, ~1.5 ms of each ~30 ms insert's fixed cost).
        self.insert_settings = {**self.settings, "optimize_on_insert": 0}
        _, found = store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {table:String}",
            {"db": store.database, "table": table},
        )
        self.column_types = {name: type_ for name, type_ in found}

    def write_payload(self, data: bytes | bytearray) -> Path:
        """The framed events in a file of their own (raises OSError when the disk is full)."""
        fd, path = tempfile.mkstemp(prefix="events-", suffix=".pb", dir=self.payload_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:
            os.unlink(path)
            raise
        return Path(path)

    def source(self, path: Path, structure: str = STRUCTURE) -> str:
        return f"file({format_query_value(str(path))}, 'Protobuf', {format_query_value(structure)})"

    def id_source(self, path: Path) -> str:
        """The event ids of a payload, as a table function (for the dedup lookup)."""
        return self.source(path, _ID_STRUCTURE)

    def insert(self, path: Path, senders: Sequence[str], ingested_at_ms: int, extra_names: Sequence[str],
               extra_rows: Sequence[tuple[Any, ...]], unless: str | None = None) -> None:  # fmt: skip
        sql = insert_sql(table=self._table, source=self.source(path), senders=senders, extra_names=extra_names,
                         extra_rows=extra_rows, extra_types=self.column_types, ingested_at_ms=ingested_at_ms,
                         unless=unless)  # fmt: skip
        self._store.command(sql, settings=self.insert_settings)

    def insert_events(self, payloads: Sequence[bytes | memoryview], content_hashes: Sequence[int], sender_ids: Sequence[str],
                      ingested_at_ms: int, extra: Mapping[str, Sequence[Any]]) -> None:  # fmt: skip
        """Frame, write and insert in one call (tests and benchmarks; the writer uses the steps)."""
        senders, sender_index = index_values(sender_ids)
        names = list(extra)
        if names:
            extra_rows, extra_index = index_values(list(zip(*(extra[name] for name in names))))
        else:
            extra_rows, extra_index = [], [0] * len(payloads)
        path = self.write_payload(frame(payloads, content_hashes, sender_index, extra_index))
        try:
            self.insert(path, senders, ingested_at_ms, names, extra_rows)
        finally:
            path.unlink(missing_ok=True)
