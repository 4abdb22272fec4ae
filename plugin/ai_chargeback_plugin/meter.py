"""One usage event from what the log phase saw: the serialize() snapshot plus the usage record.

Every value is fitted to the event contract's limits table
(``ai_chargeback_proto.limits``), the same table the aggregator validates with:
text is cut to its field's length, and the gateway's own measurements
(latencies, status, tries) are kept inside their ranges. Token counts are
never changed: a count the aggregator cannot accept is sent as measured, and
quarantined there with the reason, rather than billed wrong here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

from ai_chargeback_proto import limits, pb
from ai_chargeback_proto.limits import EVENT_LIMITS, Range, clamp_text

from .config import PluginConfig
from .identity import Identity, header_value
from .ids import uuid7
from .usage import RequestFacts, UsageRecord, UsageSource, requested_model_from_ai_proxy

GATEWAY_NODE = clamp_text("gateway_node", socket.gethostname())
_USAGE_SOURCE = {
    UsageSource.PROVIDER: pb.USAGE_SOURCE_PROVIDER,
    UsageSource.KONG_AI_PROXY: pb.USAGE_SOURCE_KONG_AI_PROXY,
    UsageSource.ESTIMATED: pb.USAGE_SOURCE_ESTIMATED,
    UsageSource.NONE: pb.USAGE_SOURCE_NONE,
}
_TOKEN_FIELDS = limits.fields_of(limits.Count)
_RANGES = {name: limit for name, limit in EVENT_LIMITS.items() if isinstance(limit, Range)}
_CONFLICTS = next(limit for name, limit in EVENT_LIMITS.items() if name == "identity_conflicts" and isinstance(limit, limits.Strings))


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
        kong_request_id=_text("kong_request_id", request.get("id")),
        started_at_unix_ms=started_ms,
        observed_at_unix_ms=now_ms,
        gateway_node=GATEWAY_NODE,
        tenant=clamp_text("tenant", identity.values["tenant"]),
        tenant_source=identity.sources["tenant"],
        team=clamp_text("team", identity.values["team"]),
        team_source=identity.sources["team"],
        app=clamp_text("app", identity.values["app"]),
        app_source=identity.sources["app"],
        workload=clamp_text("workload", identity.values["workload"]),
        workload_source=identity.sources["workload"],
        unattributed_reason=clamp_text("unattributed_reason", identity.unattributed_reason),
        identity_conflicts=[c[: _CONFLICTS.item.max_chars] for c in identity.conflicts[: _CONFLICTS.max_items]],
        consumer_id=clamp_text("consumer_id", identity.consumer_id),
        consumer_username=clamp_text("consumer_username", identity.consumer_username),
        consumer_custom_id=clamp_text("consumer_custom_id", identity.consumer_custom_id),
        credential_fingerprint=clamp_text("credential_fingerprint", identity.credential_fingerprint),
        client_ip=_text("client_ip", serialized.get("client_ip")),
        trace_id=clamp_text("trace_id", _trace_id(header_value(headers, config.trace_header))),
        route_id=_text("route_id", route.get("id")) or clamp_text("route_id", config.route_id),
        route_name=_text("route_name", route.get("name")),
        service_id=_text("service_id", service.get("id")) or clamp_text("service_id", config.service_id),
        service_name=_text("service_name", service.get("name")),
        provider=clamp_text("provider", usage.provider or (facts.provider if facts else "")),
        api_family=clamp_text("api_family", usage.api_family or (facts.api_family if facts else "")),
        # Without facts from access (body not read here), ai-proxy's record of the request, if any.
        requested_model=clamp_text("requested_model", facts.requested_model if facts else requested_model_from_ai_proxy(serialized)),
        served_model=clamp_text("served_model", usage.served_model),
        usage_source=_USAGE_SOURCE[usage.source],
        usage_note=clamp_text("usage_note", usage.note),
        streaming=usage.streaming or bool(facts and facts.streaming),
        service_tier=clamp_text("service_tier", usage.service_tier),
        latency_total_ms=_within("latency_total_ms", _int(latencies.get("request"))),
        latency_gateway_ms=_within("latency_gateway_ms", _int(latencies.get("kong"))),
        http_status=_within("http_status", _int(response.get("status"))),
        upstream_tries=_within("upstream_tries", len(serialized.get("tries") or ())),
        client_retry_count=_within("client_retry_count", _int(header_value(headers, config.client_retry_header))),
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
        event.latency_upstream_ms = _within("latency_upstream_ms", proxy_ms)
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


def _within(field: str, value: int) -> int:
    """A gateway measurement inside its contract range; a status outside it is "no status" (0)."""
    window = _RANGES[field]
    if window.zero_means_unset and not window.low <= value <= window.high:
        return 0
    return min(max(value, window.low), window.high)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(field: str, value: Any) -> str:
    return clamp_text(field, value) if isinstance(value, str) else ""


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
