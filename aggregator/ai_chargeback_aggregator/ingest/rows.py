"""Wire events -> ``usage_events`` columns, derived from the contract.

Which column each wire field becomes, and how, is computed here from the
.proto descriptor and the limits table (``ai_chargeback_proto.limits``), so a
field added to the contract reaches the store through both insert paths (this
columnar one for a ClickHouse server, ``protobuf_insert`` for the embedded store)
or a test fails. One pass, column-oriented (what ClickHouse inserts fastest).
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from array import array
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from ai_chargeback_proto import pb
from ai_chargeback_proto.limits import EVENT_LIMITS, Count, Entries, Enum, Flag, Range, Strings, Text, Timestamp

from ..periods import utc_from_ms
from .content import canonical_encoding, content_hash

_FIELDS = {f.name: f for f in pb.UsageEvent.DESCRIPTOR.fields if f.number < 1000}

# Wire fields stored under another column name.
TIMESTAMP_COLUMNS: Mapping[str, str] = {"started_at_unix_ms": "started_at", "observed_at_unix_ms": "observed_at"}
# Enum values as the words the table stores; unnamed values read as the enum's name, lower case.
_ENUM_WORDS_OVERRIDE: Mapping[str, Mapping[int, str]] = {
    "usage_source": {pb.USAGE_SOURCE_UNSPECIFIED: "none", pb.USAGE_SOURCE_KONG_AI_PROXY: "kong-ai-proxy"},
}


def _optional(name: str) -> bool:
    field = _FIELDS[name]
    return field.has_presence and field.containing_oneof is not None


def _of(kind: type[Any]) -> tuple[str, ...]:
    return tuple(name for name, limit in EVENT_LIMITS.items() if isinstance(limit, kind))


TEXT_FIELDS = _of(Text)
ENUM_FIELDS = _of(Enum)
LIST_FIELDS = _of(Strings)
MAP_FIELDS = _of(Entries)
FLAG_FIELDS = _of(Flag)
# Counts keep "not reported" apart from zero in usage_reported_mask, one bit each in .proto order.
TOKEN_FIELDS: tuple[tuple[str, int], ...] = tuple((name, 1 << i) for i, name in enumerate(_of(Count)))
RANGE_FIELDS = tuple(name for name in _of(Range) if not _optional(name))
# Optional measurements are stored as -1 when absent (latency_upstream_ms: never proxied).
ABSENT_AS_MINUS_ONE = tuple(name for name in _of(Range) if _optional(name))


def enum_words(field: str) -> dict[int, str]:
    """Wire enum value -> the word stored for it (both insert paths use this)."""
    enum = _FIELDS[field].enum_type
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    words = {v.number: v.name.removeprefix(prefix).lower() for v in enum.values}
    words.update(_ENUM_WORDS_OVERRIDE.get(field, {}))
    return words


_WORDS = {name: enum_words(name) for name in ENUM_FIELDS}

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", *TIMESTAMP_COLUMNS.values(), "ingested_at", "sender_id", "content_hash",
    *TEXT_FIELDS, *ENUM_FIELDS, *LIST_FIELDS,
    *(name for name, _ in TOKEN_FIELDS), "usage_reported_mask", *MAP_FIELDS, *FLAG_FIELDS,
    *RANGE_FIELDS, *ABSENT_AS_MINUS_ONE,
)  # fmt: skip

# Every wire field and the column it lands in (a test holds this against the .proto and the table).
COLUMN_OF_FIELD: Mapping[str, str] = {
    "event_id": "event_id", **TIMESTAMP_COLUMNS,
    **{name: name for name in (*TEXT_FIELDS, *ENUM_FIELDS, *LIST_FIELDS, *(n for n, _ in TOKEN_FIELDS), *MAP_FIELDS,
                               *FLAG_FIELDS, *RANGE_FIELDS, *ABSENT_AS_MINUS_ONE)},
}  # fmt: skip
if set(COLUMN_OF_FIELD) != set(_FIELDS) or any(_FIELDS[n].type == FieldDescriptor.TYPE_GROUP for n in _FIELDS):
    raise RuntimeError("the row builder does not cover usage.proto: every wire field needs a column")
if any(not isinstance(EVENT_LIMITS[name], Timestamp) for name in TIMESTAMP_COLUMNS):
    raise RuntimeError("TIMESTAMP_COLUMNS names a field the limits table does not call a timestamp")


def events_to_columns(events: Sequence[pb.UsageEvent], sender_ids: Sequence[str], ingested_at_ms: int,
                      content_hashes: Sequence[int] | None = None) -> dict[str, list[Any]]:  # fmt: skip
    """Columns for ``usage_events``. Events must already be validated; hashes are computed when not given."""
    if content_hashes is None:
        content_hashes = [content_hash(canonical_encoding(event)) for event in events]
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    ingested = utc_from_ms(ingested_at_ms)
    for event, sender_id, digest in zip(events, sender_ids, content_hashes):
        cols["event_id"].append(uuid.UUID(event.event_id))
        for field, column in TIMESTAMP_COLUMNS.items():
            cols[column].append(utc_from_ms(getattr(event, field)))
        cols["ingested_at"].append(ingested)
        cols["sender_id"].append(sender_id)
        cols["content_hash"].append(digest)
        for name in TEXT_FIELDS:
            cols[name].append(getattr(event, name))
        for name in ENUM_FIELDS:
            cols[name].append(_WORDS[name][getattr(event, name)])
        for name in LIST_FIELDS:
            cols[name].append(list(getattr(event, name)))
        mask = 0
        for name, bit in TOKEN_FIELDS:
            if event.HasField(name):
                mask |= bit
                cols[name].append(getattr(event, name))
            else:
                cols[name].append(0)
        cols["usage_reported_mask"].append(mask)
        for name in (*MAP_FIELDS, *FLAG_FIELDS, *RANGE_FIELDS):
            value = getattr(event, name)
            cols[name].append(dict(value) if name in MAP_FIELDS else value)
        for name in ABSENT_AS_MINUS_ONE:
            cols[name].append(getattr(event, name) if event.HasField(name) else -1)
    return cols


# What the pricer and the rollup maintainer read, for inserts where ClickHouse builds the row.
KEY_COLUMNS = (
    "provider", "served_model", "requested_model", "service_tier", "tenant", "started_ms", "input_tokens", "policy_outcome",
)  # fmt: skip
# The texts the aggregator holds on to before the store has checked them (the pricer caches
# prices by them): admission checks their lengths itself (validation.py).
KEY_TEXT = ("provider", "served_model", "requested_model", "service_tier", "tenant")
# Next to KEY_COLUMNS in a flush's columns: what the enricher returned, one frozen dataclass per
# event whose fields are more of the row's columns (the pricer: a rates.Price). Events with the
# same values share one instance, so the embedded insert sends each distinct one once.
EXTRA = "extra"


def extra_names(extra: Sequence[Any]) -> list[str]:
    """The columns the enricher's values hold (none when there are no values)."""
    return [f.name for f in dataclasses.fields(extra[0])] if extra else []


def extra_columns(extra: Sequence[Any]) -> dict[str, list[Any]]:
    """The enricher's values as columns (the columnar insert)."""
    return {name: list(map(attrgetter(name), extra)) for name in extra_names(extra)}


_KEY_GETTER = attrgetter(*KEY_TEXT, "started_at_unix_ms", "input_tokens", "policy_outcome")


def key_columns(events: Sequence[pb.UsageEvent]) -> dict[str, Any]:
    """The pricer's and the rollups' values of validated events, compact while they wait:
    text interned (a batch holds one copy of each of its few distinct strings), numbers in
    arrays. ``price_columns`` turns them into the columns the pricer takes. Each event's
    fields are read in one C call and transposed (per-field generators cost ~2 µs an event)."""
    intern = sys.intern
    transposed = list(zip(*map(_KEY_GETTER, events))) or [()] * (len(KEY_TEXT) + 3)
    keys: dict[str, Any] = {name: list(map(intern, values)) for name, values in zip(KEY_TEXT, transposed)}
    keys["started_ms"] = array("q", transposed[-3])
    keys["input_tokens"] = array("Q", transposed[-2])
    outcome_words = _WORDS["policy_outcome"]  # the pricer does not bill what the gateway refused
    keys["policy_outcome"] = list(map(outcome_words.__getitem__, transposed[-1]))
    return keys


def empty_keys() -> dict[str, Any]:
    return {**{name: [] for name in KEY_TEXT}, "started_ms": array("q"), "input_tokens": array("Q"), "policy_outcome": []}


def price_columns(keys: dict[str, Any]) -> dict[str, list[Any]]:
    """KEY_COLUMNS for the pricer and the rollups (built for one flush, then dropped). Start
    times stay milliseconds: a datetime per event cost ~0.4 µs, for a key that needs the day."""
    columns: dict[str, list[Any]] = {name: list(keys[name]) for name in KEY_TEXT}
    columns["started_ms"] = list(keys["started_ms"])
    columns["input_tokens"] = list(keys["input_tokens"])
    columns["policy_outcome"] = list(keys["policy_outcome"])
    return columns
