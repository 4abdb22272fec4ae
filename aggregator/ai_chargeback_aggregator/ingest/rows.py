"""Wire events -> store columns, one pass, column-oriented (what ClickHouse inserts fastest)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ai_chargeback_proto import pb

_IDENTITY = {v.number: v.name.removeprefix("IDENTITY_SOURCE_").lower() for v in pb.IdentitySource.DESCRIPTOR.values}
_USAGE = {
    pb.USAGE_SOURCE_UNSPECIFIED: "none",
    pb.USAGE_SOURCE_PROVIDER: "provider",
    pb.USAGE_SOURCE_KONG_AI_PROXY: "kong-ai-proxy",
    pb.USAGE_SOURCE_ESTIMATED: "estimated",
    pb.USAGE_SOURCE_NONE: "none",
}
_OUTCOME = {v.number: v.name.removeprefix("POLICY_OUTCOME_").lower() for v in pb.PolicyOutcome.DESCRIPTOR.values}

# Token fields and their bit in usage_reported_mask (see migration 0001).
TOKEN_FIELDS: tuple[tuple[str, int], ...] = (
    ("input_tokens", 1),
    ("cached_input_tokens", 2),
    ("cache_write_input_tokens", 4),
    ("output_tokens", 8),
    ("reasoning_tokens", 16),
)

_STRING_FIELDS = (
    "kong_request_id", "gateway_node", "tenant", "team", "app", "workload", "unattributed_reason",
    "consumer_id", "consumer_username", "consumer_custom_id", "credential_fingerprint", "client_ip", "trace_id",
    "route_id", "route_name", "service_id", "service_name", "provider", "api_family", "requested_model",
    "served_model", "usage_note", "service_tier",
)  # fmt: skip
_UINT_FIELDS = ("latency_total_ms", "latency_gateway_ms", "http_status", "upstream_tries", "client_retry_count")

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "started_at", "observed_at", "ingested_at", "sender_id",
    *_STRING_FIELDS,
    "tenant_source", "team_source", "app_source", "workload_source", "identity_conflicts",
    *(name for name, _ in TOKEN_FIELDS), "usage_reported_mask", "billable_extras", "usage_source", "streaming",
    *_UINT_FIELDS, "latency_upstream_ms", "policy_outcome", "tags",
)  # fmt: skip


def _ts(unix_ms: int) -> datetime:
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC)


def events_to_columns(events: Sequence[pb.UsageEvent], sender_ids: Sequence[str], ingested_at_ms: int) -> dict[str, list[Any]]:
    """Columns for ``usage_events``. Events must already be validated."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    ingested = _ts(ingested_at_ms)
    for event, sender_id in zip(events, sender_ids):
        cols["event_id"].append(uuid.UUID(event.event_id))
        cols["started_at"].append(_ts(event.started_at_unix_ms))
        cols["observed_at"].append(_ts(event.observed_at_unix_ms))
        cols["ingested_at"].append(ingested)
        cols["sender_id"].append(sender_id)
        for name in _STRING_FIELDS:
            cols[name].append(getattr(event, name))
        cols["tenant_source"].append(_IDENTITY[event.tenant_source])
        cols["team_source"].append(_IDENTITY[event.team_source])
        cols["app_source"].append(_IDENTITY[event.app_source])
        cols["workload_source"].append(_IDENTITY[event.workload_source])
        cols["identity_conflicts"].append(list(event.identity_conflicts))
        mask = 0
        for name, bit in TOKEN_FIELDS:
            if event.HasField(name):
                mask |= bit
                cols[name].append(getattr(event, name))
            else:
                cols[name].append(0)
        cols["usage_reported_mask"].append(mask)
        cols["billable_extras"].append(dict(event.billable_extras))
        cols["usage_source"].append(_USAGE[event.usage_source])
        cols["streaming"].append(event.streaming)
        for name in _UINT_FIELDS:
            cols[name].append(getattr(event, name))
        cols["latency_upstream_ms"].append(event.latency_upstream_ms if event.HasField("latency_upstream_ms") else -1)
        cols["policy_outcome"].append(_OUTCOME[event.policy_outcome])
        cols["tags"].append(dict(event.tags))
    return cols


# What the pricer and the rollup maintainer read, for inserts where ClickHouse builds the row.
KEY_COLUMNS = ("provider", "served_model", "requested_model", "service_tier", "tenant", "started_at", "input_tokens", "policy_outcome")


def key_columns(events: Sequence[pb.UsageEvent]) -> dict[str, list[Any]]:
    return {
        "provider": [e.provider for e in events],
        "served_model": [e.served_model for e in events],
        "requested_model": [e.requested_model for e in events],
        "service_tier": [e.service_tier for e in events],
        "tenant": [e.tenant for e in events],
        "started_at": [_ts(e.started_at_unix_ms) for e in events],
        "input_tokens": [e.input_tokens for e in events],
        "policy_outcome": [_OUTCOME[e.policy_outcome] for e in events],  # the pricer does not bill what the gateway refused
    }
