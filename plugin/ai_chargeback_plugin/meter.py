"""One usage event from what the log phase saw: the serialize() snapshot plus the usage record."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

from ai_chargeback_proto import pb

from .config import PluginConfig
from .identity import Identity, header_value
from .ids import uuid7
from .usage import RequestFacts, UsageRecord, UsageSource

GATEWAY_NODE = socket.gethostname()[:256]
_USAGE_SOURCE = {
    UsageSource.PROVIDER: pb.USAGE_SOURCE_PROVIDER,
    UsageSource.KONG_AI_PROXY: pb.USAGE_SOURCE_KONG_AI_PROXY,
    UsageSource.ESTIMATED: pb.USAGE_SOURCE_ESTIMATED,
    UsageSource.NONE: pb.USAGE_SOURCE_NONE,
}
_TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
_MAX_TEXT = 256


def build_event(
    serialized: Mapping[str, Any],
    identity: Identity,
    usage: UsageRecord,
    facts: RequestFacts | None,
    config: PluginConfig,
) -> pb.UsageEvent:
    request = _mapping(serialized.get("request"))
    response = _mapping(serialized.get("response"))
    latencies = _mapping(serialized.get("latencies"))
    route = _mapping(serialized.get("route"))
    service = _mapping(serialized.get("service"))
    headers = _mapping(request.get("headers"))
    now_ms = int(time.time() * 1000)
    started_ms = _int(serialized.get("started_at")) or now_ms

    event = pb.UsageEvent(
        event_id=uuid7(started_ms),
        kong_request_id=_text(request.get("id")),
        started_at_unix_ms=started_ms,
        observed_at_unix_ms=now_ms,
        gateway_node=GATEWAY_NODE,
        tenant=identity.values["tenant"],
        tenant_source=identity.sources["tenant"],
        team=identity.values["team"],
        team_source=identity.sources["team"],
        app=identity.values["app"],
        app_source=identity.sources["app"],
        workload=identity.values["workload"],
        workload_source=identity.sources["workload"],
        unattributed_reason=identity.unattributed_reason,
        identity_conflicts=identity.conflicts,
        consumer_id=identity.consumer_id,
        consumer_username=identity.consumer_username[:_MAX_TEXT],
        consumer_custom_id=identity.consumer_custom_id[:_MAX_TEXT],
        credential_fingerprint=identity.credential_fingerprint,
        client_ip=_text(serialized.get("client_ip")),
        trace_id=_trace_id(header_value(headers, config.trace_header)),
        route_id=_text(route.get("id")) or config.route_id,
        route_name=_text(route.get("name")),
        service_id=_text(service.get("id")) or config.service_id,
        service_name=_text(service.get("name")),
        provider=usage.provider or (facts.provider if facts else ""),
        api_family=usage.api_family or (facts.api_family if facts else ""),
        requested_model=(facts.requested_model if facts else "")[:_MAX_TEXT],
        served_model=usage.served_model[:_MAX_TEXT],
        usage_source=_USAGE_SOURCE[usage.source],
        usage_note=usage.note[:_MAX_TEXT],
        streaming=usage.streaming or bool(facts and facts.streaming),
        service_tier=usage.service_tier[:64],
        latency_total_ms=max(_int(latencies.get("request")), 0),
        latency_gateway_ms=max(_int(latencies.get("kong")), 0),
        http_status=_int(response.get("status")),
        upstream_tries=len(serialized.get("tries") or ()),
        client_retry_count=min(max(_int(header_value(headers, config.client_retry_header)), 0), 1000),
        policy_outcome=policy_outcome(serialized),
        tags=config.static_tags,
    )
    for name in _TOKEN_FIELDS:
        value = getattr(usage, name)
        if value is not None:
            setattr(event, name, value)
    for name, count in usage.billable_extras.items():
        event.billable_extras[name] = count
    proxy_ms = _int(latencies.get("proxy"), -1)
    if proxy_ms >= 0:
        event.latency_upstream_ms = proxy_ms
    return event


def policy_outcome(serialized: Mapping[str, Any]) -> int:
    status = _int(_mapping(serialized.get("response")).get("status"))
    proxied = bool(serialized.get("tries")) or _int(_mapping(serialized.get("latencies")).get("proxy"), -1) >= 0
    if proxied:
        return pb.POLICY_OUTCOME_UPSTREAM_ERROR if status >= 400 else pb.POLICY_OUTCOME_ALLOWED
    if status in (401, 403):
        return pb.POLICY_OUTCOME_REJECTED_AUTH
    if status == 429:
        return pb.POLICY_OUTCOME_RATE_LIMITED
    return pb.POLICY_OUTCOME_REJECTED_OTHER


def _trace_id(value: str) -> str:
    # W3C traceparent "00-<trace-id>-<span-id>-<flags>": calls of one run share the trace id.
    parts = value.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return value[:128]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default
