"""One event contract: the .proto descriptor plus one limits table, and everything derived from them.

Each test fails when one side drifts from the .proto: a field without a limit
(or a limit without a field), a row builder or insert path that misses a field,
a store column that cannot hold an accepted value, validation that accepts or
refuses other values than the table says, a plugin that sends what the
aggregator would quarantine, a Kong schema that allows more than the contract.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from support.aggregator_fixtures import make_event

from ai_chargeback_aggregator.ingest import protobuf_insert, rows
from ai_chargeback_aggregator.ingest.validation import Invalid, validate_event
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_plugin import schema
from ai_chargeback_plugin.config import PluginConfig
from ai_chargeback_plugin.identity import resolve
from ai_chargeback_plugin.meter import build_event
from ai_chargeback_plugin.usage import UsageRecord, UsageSource
from ai_chargeback_plugin.usage._values import MAX_COUNT
from ai_chargeback_proto import limits, pb
from ai_chargeback_proto.limits import (
    EVENT_LIMITS,
    Count,
    Entries,
    Enum,
    EventId,
    Flag,
    Range,
    Strings,
    Text,
    Timestamp,
    contract_problems,
)

WIRE_FIELDS = [f.name for f in pb.UsageEvent.DESCRIPTOR.fields if f.number < 1000]


def test_the_limits_table_and_the_proto_agree() -> None:
    assert contract_problems(pb.UsageEvent.DESCRIPTOR) == []
    assert list(EVENT_LIMITS) == WIRE_FIELDS  # same fields, in .proto order


def _drifted(change: Any) -> Any:
    """UsageEvent from a copy of usage.proto changed by ``change`` (in a pool of its own)."""
    file = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    message = next(m for m in file.message_type if m.name == "UsageEvent")
    change(message)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindMessageTypeByName("chargeback.v1.UsageEvent")


def test_a_field_added_to_the_proto_without_a_limit_is_caught() -> None:
    def add(message: descriptor_pb2.DescriptorProto) -> None:
        message.field.add(name="carbon_grams", number=80, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)  # fmt: skip

    assert contract_problems(_drifted(add)) == ["carbon_grams: in usage.proto but has no limit"]


def test_a_retyped_or_removed_field_is_caught() -> None:
    def retype(message: descriptor_pb2.DescriptorProto) -> None:
        next(f for f in message.field if f.name == "http_status").type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING

    def remove(message: descriptor_pb2.DescriptorProto) -> None:
        message.field.remove(next(f for f in message.field if f.name == "client_ip"))

    assert any(p.startswith("http_status: a Range limit") for p in contract_problems(_drifted(retype)))
    assert contract_problems(_drifted(remove)) == ["client_ip: has a limit but is not in usage.proto"]


def test_both_insert_paths_cover_every_wire_field() -> None:
    assert set(rows.COLUMN_OF_FIELD) == set(WIRE_FIELDS)
    assert set(rows.COLUMN_OF_FIELD.values()) <= set(rows.EVENT_COLUMNS)
    read = {part.split()[0] for part in protobuf_insert.STRUCTURE.split(", ")}
    assert set(WIRE_FIELDS) <= read
    selected = {column for column, _ in protobuf_insert._SELECT}
    assert set(rows.EVENT_COLUMNS) - {"ingested_at", "sender_id"} <= selected


# The largest value each ClickHouse integer type holds.
_INT_MAX = {"UInt8": 2**8 - 1, "UInt16": 2**16 - 1, "UInt32": 2**32 - 1, "UInt64": 2**64 - 1, "Int32": 2**31 - 1, "Int64": 2**63 - 1}


def _column_holds(limit: object, column_type: str) -> bool:
    plain = column_type.replace("LowCardinality(", "").replace(")", "") if column_type.startswith("LowCardinality") else column_type
    if isinstance(limit, (Text, Enum)):
        return plain == "String"
    if isinstance(limit, EventId):
        return plain == "UUID"
    if isinstance(limit, Timestamp):
        return plain.startswith("DateTime64(3")
    if isinstance(limit, Flag):
        return plain == "Bool"
    if isinstance(limit, Count):
        return _INT_MAX.get(plain, 0) >= limit.max
    if isinstance(limit, Range):
        return _INT_MAX.get(plain, 0) >= limit.high
    if isinstance(limit, Strings):
        return plain == "Array(String)"
    if isinstance(limit, Entries):
        value = "String" if isinstance(limit.value, Text) else "UInt64"
        return column_type in (f"Map(LowCardinality(String), {value})", f"Map(String, {value})")
    return False


def test_every_accepted_value_fits_its_store_column(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        _, found = store.query("SELECT name, type FROM system.columns WHERE database = 'chargeback' AND table = 'usage_events'")
    finally:
        store.close()
    types = dict(found)
    assert set(rows.EVENT_COLUMNS) <= set(types)
    misfits = [(f, types[rows.COLUMN_OF_FIELD[f]]) for f, lim in EVENT_LIMITS.items() if not _column_holds(lim, types[rows.COLUMN_OF_FIELD[f]])]
    assert misfits == []


def _at(value: int | str, name: str, now_ms: int) -> pb.UsageEvent:
    """A valid event with ``name`` set to ``value`` (a count's subsets and whole kept consistent)."""
    event = make_event(started_at_unix_ms=now_ms - 50, observed_at_unix_ms=now_ms)
    setattr(event, name, value)
    limit = EVENT_LIMITS[name]
    if isinstance(limit, Count) and isinstance(value, int):
        for parts, whole in limits.SUBSET_RULES:
            if name in parts:  # the whole must hold its subsets; it stays within its own limit
                for part in parts:
                    if part != name:
                        setattr(event, part, 0)
                setattr(event, whole, min(value, limit.max))
            if name == whole:
                for part in parts:
                    setattr(event, part, 0)
    return event


@pytest.mark.parametrize("name", [n for n, lim in EVENT_LIMITS.items() if isinstance(lim, (Text, Count, Range))])
def test_validation_accepts_the_limit_and_quarantines_one_past_it(name: str) -> None:
    now_ms = int(time.time() * 1000)
    limit = EVENT_LIMITS[name]
    if isinstance(limit, Text):
        at, past = "x" * limit.max_chars, "x" * (limit.max_chars + 1)
    elif isinstance(limit, Count):
        at, past = limit.max, limit.max + 1
    else:
        assert isinstance(limit, Range)
        at, past = limit.high, limit.high + 1
    validate_event(_at(at, name, now_ms), now_ms)
    with pytest.raises(Invalid) as err:
        validate_event(_at(past, name, now_ms), now_ms)
    assert err.value.field == name


@pytest.mark.parametrize("name", [n for n, lim in EVENT_LIMITS.items() if isinstance(lim, (Strings, Entries))])
def test_repeated_fields_accept_their_limit_and_quarantine_one_more(name: str) -> None:
    now_ms = int(time.time() * 1000)
    limit = EVENT_LIMITS[name]
    count = limit.max_items if isinstance(limit, Strings) else limit.max_entries
    for n, accepted in ((count, True), (count + 1, False)):
        event = make_event(started_at_unix_ms=now_ms - 50, observed_at_unix_ms=now_ms)
        if isinstance(limit, Strings):
            getattr(event, name).extend(["v"] * n)
        else:
            for i in range(n):
                getattr(event, name)[f"k{i}"] = 1 if isinstance(limit.value, Count) else "v"
        if accepted:
            validate_event(event, now_ms)
        else:
            with pytest.raises(Invalid) as err:
                validate_event(event, now_ms)
            assert err.value.field == name


def test_the_plugin_never_sends_what_the_aggregator_would_quarantine_except_counts() -> None:
    long = "ü" * 5000
    config = PluginConfig.from_kong({
        "__plugin_id": "p-1", "route_id": long, "service_id": long, "trace_header": "traceparent",
        "client_retry_header": "x-retry", "static_tags": {f"tag-{i:02d}": "v" * 256 for i in range(40)},
    })  # fmt: skip
    serialized = {
        "started_at": int(time.time() * 1000) - 100, "client_ip": long,
        "request": {"id": long, "headers": {"x-team": long, "traceparent": long, "x-retry": "999999"}},
        "response": {"status": 999}, "latencies": {"request": 10**12, "kong": 10**12, "proxy": 10**12},
        "tries": [{}] * 500, "route": {"id": long, "name": long, "tags": [f"team:{long}", f"app:{long}"]},
        "service": {"id": long, "name": long, "tags": [f"tenant:{long}"]},
        "consumer": {"id": long, "username": long, "custom_id": long, "tags": [f"workload:{long}"]},
    }  # fmt: skip
    usage = UsageRecord(UsageSource.PROVIDER, provider=long, api_family=long, served_model=long, service_tier=long, note=long,
                        input_tokens=10, output_tokens=5)  # fmt: skip
    event = build_event(serialized, resolve(serialized, config), usage, None, config)
    validate_event(event, int(time.time() * 1000))  # every text cut, every measurement in range
    assert len(event.tags) == EVENT_LIMITS["tags"].max_entries  # type: ignore[union-attr]


def test_the_plugin_parser_passes_every_count_the_contract_accepts() -> None:
    # Counts are never clamped in the plugin: the parser keeps anything up to the contract's
    # maximum (and beyond, so the aggregator can quarantine it with the number as measured).
    assert all(MAX_COUNT >= lim.max for lim in EVENT_LIMITS.values() if isinstance(lim, Count))


def test_kongs_schema_allows_no_more_than_the_contract() -> None:
    fields = {name: spec for entry in schema.Schema for name, spec in entry.items()}
    assert fields["batch_max_events"]["between"][1] <= limits.BATCH_MAX_EVENTS
    tags = EVENT_LIMITS["tags"]
    assert isinstance(tags, Entries) and isinstance(tags.value, Text)
    assert fields["static_tags"]["keys"]["len_max"] == tags.key.max_chars
    assert fields["static_tags"]["values"]["len_max"] == tags.value.max_chars
