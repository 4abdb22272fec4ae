"""Validation of incoming usage events: every rule here, with the reason it gives.

A batch holding invalid events is not refused as a whole: valid events are
stored, each invalid one is named in the ack with its reason and never stored.
Resending an invalid event cannot make it valid, so senders do not retry it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ai_chargeback_proto import pb

MAX_TEXT = 256
MAX_LONG_TEXT = 1024  # trace ids, conflicts
MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_EXTRAS = 16
MAX_CONFLICTS = 8
MAX_TOKENS = 100_000_000  # per request; far above any model's context window
MAX_LATENCY_MS = 24 * 3600 * 1000
MAX_PAST_MS = 35 * 24 * 3600 * 1000  # a spool may hold events for weeks, not months
MAX_FUTURE_MS = 5 * 60 * 1000  # clock skew between gateway and aggregator

_LONG_TEXT_FIELDS = ("trace_id",)
_TEXT_FIELDS = (
    "kong_request_id", "gateway_node", "tenant", "team", "app", "workload", "unattributed_reason",
    "consumer_id", "consumer_username", "consumer_custom_id", "credential_fingerprint", "client_ip",
    "route_id", "route_name", "service_id", "service_name", "provider", "api_family", "requested_model",
    "served_model", "usage_note", "service_tier",
)  # fmt: skip
_ENUMS = (
    ("tenant_source", pb.IdentitySource),
    ("team_source", pb.IdentitySource),
    ("app_source", pb.IdentitySource),
    ("workload_source", pb.IdentitySource),
    ("usage_source", pb.UsageSource),
    ("policy_outcome", pb.PolicyOutcome),
)
_ENUM_VALUES = {name: {v.number for v in enum.DESCRIPTOR.values} for name, enum in _ENUMS}
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")


class Invalid(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def validate_event(event: pb.UsageEvent, now_ms: int) -> None:
    """Raise Invalid naming the first broken rule.

    Runs once per event on the ingest path, so the common case is kept cheap:
    an event whose whole encoding is shorter than a field limit cannot hold a
    field past that limit, and only then are the per-field checks skipped.
    """
    if not _CANONICAL_UUID(event.event_id):
        raise Invalid("event_id", "not a UUID in canonical lower-case form")
    if not event.started_at_unix_ms:
        raise Invalid("started_at_unix_ms", "missing")
    if event.started_at_unix_ms < now_ms - MAX_PAST_MS:
        raise Invalid("started_at_unix_ms", "older than the accepted window (35 days)")
    if event.started_at_unix_ms > now_ms + MAX_FUTURE_MS or event.observed_at_unix_ms > now_ms + MAX_FUTURE_MS:
        raise Invalid("started_at_unix_ms", "in the future")
    if event.observed_at_unix_ms and event.observed_at_unix_ms < event.started_at_unix_ms - MAX_FUTURE_MS:
        raise Invalid("observed_at_unix_ms", "before started_at")
    size = event.ByteSize()
    if size > MAX_TEXT:
        for name in _TEXT_FIELDS:
            if len(getattr(event, name)) > MAX_TEXT:
                raise Invalid(name, f"longer than {MAX_TEXT} characters")
    if size > MAX_LONG_TEXT:
        for name in _LONG_TEXT_FIELDS:
            if len(getattr(event, name)) > MAX_LONG_TEXT:
                raise Invalid(name, f"longer than {MAX_LONG_TEXT} characters")
    if event.identity_conflicts:
        _check_strings("identity_conflicts", event.identity_conflicts, MAX_CONFLICTS, MAX_LONG_TEXT)
    for name, values in _ENUM_VALUES.items():
        if getattr(event, name) not in values:
            raise Invalid(name, "unknown enum value")
    input_tokens, output_tokens = event.input_tokens, event.output_tokens
    cached, cache_write, reasoning = event.cached_input_tokens, event.cache_write_input_tokens, event.reasoning_tokens
    if max(input_tokens, output_tokens, cached, cache_write, reasoning) > MAX_TOKENS:
        name = next(n for n in _TOKEN_FIELDS if getattr(event, n) > MAX_TOKENS)
        raise Invalid(name, f"above {MAX_TOKENS}")
    if cached + cache_write > input_tokens:
        raise Invalid("cached_input_tokens", "cached + cache-write exceed input (input must include them)")
    if reasoning > output_tokens:
        raise Invalid("reasoning_tokens", "exceed output (output must include them)")
    if event.billable_extras and len(event.billable_extras) > MAX_EXTRAS:
        raise Invalid("billable_extras", f"more than {MAX_EXTRAS} entries")
    for key, count in event.billable_extras.items():
        if not key or len(key) > MAX_TAG_KEY:
            raise Invalid("billable_extras", "key empty or too long")
        if count > MAX_TOKENS:
            raise Invalid("billable_extras", f"{key} above {MAX_TOKENS}")
    tags = event.tags
    if tags and len(tags) > MAX_TAGS:
        raise Invalid("tags", f"more than {MAX_TAGS} tags")
    for key, value in tags.items() if tags else ():
        if not key or len(key) > MAX_TAG_KEY:
            raise Invalid("tags", "key empty or longer than 64 characters")
        if len(value) > MAX_TAG_VALUE:
            raise Invalid("tags", f"value of {key!r} longer than {MAX_TAG_VALUE} characters")
    if max(event.latency_total_ms, event.latency_upstream_ms, event.latency_gateway_ms) > MAX_LATENCY_MS:
        name = next(n for n in ("latency_total_ms", "latency_upstream_ms", "latency_gateway_ms") if getattr(event, n) > MAX_LATENCY_MS)
        raise Invalid(name, "above 24 hours")
    if event.http_status and not 100 <= event.http_status <= 599:
        raise Invalid("http_status", "not an HTTP status")
    if event.upstream_tries > 100 or event.client_retry_count > 1000:
        raise Invalid("upstream_tries", "implausible retry count")


def _check_strings(field: str, values: Iterable[str], max_items: int, max_len: int) -> None:
    items = list(values)
    if len(items) > max_items:
        raise Invalid(field, f"more than {max_items} entries")
    if any(len(v) > max_len for v in items):
        raise Invalid(field, f"entry longer than {max_len} characters")
