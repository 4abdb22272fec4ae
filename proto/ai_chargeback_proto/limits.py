"""The limits of the event contract, defined once.

``usage.proto`` says which fields a ``UsageEvent`` has and their wire types;
this table says which values each field may hold. Everything that touches an
event derives from it:

* the plugin truncates its text to these lengths (``clamp_text``) and never
  changes a count: a count out of range is sent as measured;
* the aggregator's validation accepts exactly these values; an event outside
  them is quarantined with the field and the reason, never billed, never lost;
* the store's columns must hold every value accepted here (a test reads the
  column types), and the row builders take their field lists from the .proto.

``contract_problems()`` compares this table with the .proto descriptor; a test
fails on any difference, so a field cannot be added to one and not the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

DAY_MS = 24 * 3600 * 1000
# A spool may hold events for weeks, not months; older events are refused.
PAST_WINDOW_MS = 35 * DAY_MS
# Clock skew between a gateway and an aggregator.
FUTURE_SKEW_MS = 5 * 60 * 1000
# Per request, far above any model's context window: a larger count is a provider or parser fault.
MAX_TOKENS = 100_000_000


@dataclass(frozen=True, slots=True)
class EventId:
    """A UUIDv7 in canonical lower-case form: unique, and it carries the event's time."""


@dataclass(frozen=True, slots=True)
class Timestamp:
    """Unix milliseconds inside the accepted window (``PAST_WINDOW_MS`` back, ``FUTURE_SKEW_MS`` ahead)."""

    required: bool


@dataclass(frozen=True, slots=True)
class Text:
    max_chars: int


@dataclass(frozen=True, slots=True)
class Count:
    """A non-negative count (tokens, units): the plugin sends it as measured, never clamped."""

    max: int


@dataclass(frozen=True, slots=True)
class Range:
    """An integer measurement the gateway itself produces (latencies, statuses, tries)."""

    low: int
    high: int
    zero_means_unset: bool = False


@dataclass(frozen=True, slots=True)
class Strings:
    """A repeated string field."""

    max_items: int
    item: Text


@dataclass(frozen=True, slots=True)
class Entries:
    """A map field: keys are non-empty text, values text or counts."""

    max_entries: int
    key: Text
    value: Text | Count


@dataclass(frozen=True, slots=True)
class Enum:
    """Only values the .proto defines are accepted."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A bool."""


Limit = EventId | Timestamp | Text | Count | Range | Strings | Entries | Enum | Flag

TEXT = Text(256)
LONG_TEXT = Text(1024)
ENUM = Enum()
LATENCY = Range(0, DAY_MS)

EVENT_LIMITS: Mapping[str, Limit] = MappingProxyType({
    # identity of the event
    "event_id": EventId(),
    "kong_request_id": TEXT,
    "started_at_unix_ms": Timestamp(required=True),
    "observed_at_unix_ms": Timestamp(required=False),
    "gateway_node": TEXT,
    # who
    "tenant": TEXT,
    "tenant_source": ENUM,
    "team": TEXT,
    "team_source": ENUM,
    "app": TEXT,
    "app_source": ENUM,
    "workload": TEXT,
    "workload_source": ENUM,
    "unattributed_reason": TEXT,
    "identity_conflicts": Strings(8, LONG_TEXT),
    "consumer_id": TEXT,
    "consumer_username": TEXT,
    "consumer_custom_id": TEXT,
    "credential_fingerprint": TEXT,
    "client_ip": TEXT,
    "trace_id": LONG_TEXT,
    # where
    "route_id": TEXT,
    "route_name": TEXT,
    "service_id": TEXT,
    "service_name": TEXT,
    # what
    "provider": TEXT,
    "api_family": TEXT,
    "requested_model": TEXT,
    "served_model": TEXT,
    "input_tokens": Count(MAX_TOKENS),
    "cached_input_tokens": Count(MAX_TOKENS),
    "cache_write_input_tokens": Count(MAX_TOKENS),
    "output_tokens": Count(MAX_TOKENS),
    "reasoning_tokens": Count(MAX_TOKENS),
    "billable_extras": Entries(16, key=Text(64), value=Count(MAX_TOKENS)),
    "usage_source": ENUM,
    "usage_note": TEXT,
    "streaming": Flag(),
    "service_tier": Text(64),
    # how it went
    "latency_total_ms": LATENCY,
    "latency_upstream_ms": LATENCY,
    "latency_gateway_ms": LATENCY,
    "http_status": Range(100, 599, zero_means_unset=True),
    "upstream_tries": Range(0, 100),
    "client_retry_count": Range(0, 1000),
    "policy_outcome": ENUM,
    "tags": Entries(32, key=Text(64), value=TEXT),
})  # fmt: skip

# Rules between fields (token subsets), named the way validation reports them.
SUBSET_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("cached_input_tokens", "cache_write_input_tokens"), "input_tokens"),
    (("reasoning_tokens",), "output_tokens"),
)

# A UsageBatch: what makes one malformed as a whole (the stream ends with INVALID_ARGUMENT).
BATCH_MAX_EVENTS = 100_000
BATCH_ID_MAX_CHARS = 128  # batch_id (required) and sender_id


def text_limit(field: str) -> int:
    limit = EVENT_LIMITS[field]
    if not isinstance(limit, Text):
        raise KeyError(f"{field} is not a text field of the contract")
    return limit.max_chars


def clamp_text(field: str, value: str) -> str:
    """``value`` cut to the contract's length for ``field`` (what the plugin sends)."""
    return value[: text_limit(field)]


def fields_of(kind: type[Any]) -> tuple[str, ...]:
    """Event fields whose limit is of ``kind``, in .proto order."""
    return tuple(name for name, limit in EVENT_LIMITS.items() if isinstance(limit, kind))


# Which limit kinds fit which wire types (cardinality and type of the .proto field).
_KINDS: dict[type[Any], tuple[int, ...]] = {
    EventId: (FieldDescriptor.TYPE_STRING,),
    Text: (FieldDescriptor.TYPE_STRING,),
    Timestamp: (FieldDescriptor.TYPE_INT64,),
    Count: (FieldDescriptor.TYPE_UINT64,),
    Range: (FieldDescriptor.TYPE_UINT32,),
    Enum: (FieldDescriptor.TYPE_ENUM,),
    Flag: (FieldDescriptor.TYPE_BOOL,),
    Strings: (FieldDescriptor.TYPE_STRING,),
    Entries: (FieldDescriptor.TYPE_MESSAGE,),
}
_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1


def contract_problems(event: Descriptor) -> list[str]:
    """Every way this table and the .proto's UsageEvent disagree (empty when they agree)."""
    problems: list[str] = []
    wire = {f.name: f for f in event.fields if f.number < 1000}
    for name in wire.keys() - EVENT_LIMITS.keys():
        problems.append(f"{name}: in usage.proto but has no limit")
    for name in EVENT_LIMITS.keys() - wire.keys():
        problems.append(f"{name}: has a limit but is not in usage.proto")
    for name in wire.keys() & EVENT_LIMITS.keys():
        field, limit = wire[name], EVENT_LIMITS[name]
        if field.type not in _KINDS[type(limit)]:
            problems.append(f"{name}: a {type(limit).__name__} limit on a wire type {field.type}")
        repeated = field.is_repeated
        if repeated != isinstance(limit, (Strings, Entries)):
            problems.append(f"{name}: repeated on the wire is {repeated}, the limit says {type(limit).__name__}")
        if isinstance(limit, Entries):
            entry = field.message_type
            if entry is None or not entry.GetOptions().map_entry:
                problems.append(f"{name}: an Entries limit on a field that is not a map")
            else:
                value_type = entry.fields_by_name["value"].type
                wanted = FieldDescriptor.TYPE_STRING if isinstance(limit.value, Text) else FieldDescriptor.TYPE_UINT64
                if value_type != wanted:
                    problems.append(f"{name}: map values are wire type {value_type}, the limit says {type(limit.value).__name__}")
        if isinstance(limit, Range) and not 0 <= limit.low <= limit.high <= _UINT32_MAX:
            problems.append(f"{name}: range {limit.low}..{limit.high} does not fit uint32")
        if isinstance(limit, Count) and not 0 < limit.max <= _UINT64_MAX:
            problems.append(f"{name}: max {limit.max} does not fit uint64")
        optional = field.has_presence and not repeated and field.containing_oneof is not None
        if optional and not isinstance(limit, (Count, Range)):
            problems.append(f"{name}: proto3 optional is only used for counts and measurements")
    for parts, whole in SUBSET_RULES:
        for name in (*parts, whole):
            if not isinstance(EVENT_LIMITS.get(name), Count):
                problems.append(f"subset rule names {name}, which is not a count")
    return sorted(problems)
