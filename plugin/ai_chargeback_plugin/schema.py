"""The plugin's configuration schema, in Kong's schema syntax: the one source of every default.

Kong validates each `ai-chargeback` config block (kong.yml, Admin API) against
this schema, fills the defaults, and hands the plugin a JSON string of the
result. ``config.PluginConfig`` reads that same result, and falls back to the
defaults here for anything missing, so there is no second copy of a default.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from ai_chargeback_proto.limits import BATCH_MAX_EVENTS, EVENT_LIMITS, Entries, Text

from .usage import registry
from .usage.registry import AUTO

PLUGIN_NAME = "ai-chargeback"
# The log-only variant for routes whose usage Kong's ai-proxy records (log_only.py):
# served by the same plugin server, it declares no access phase, so Kong makes no RPC
# into the plugin server while the request is in flight.
LOG_PLUGIN_NAME = "ai-chargeback-log"
VERSION = version("kong-ai-chargeback-plugin")
# Runs after auth plugins (key-auth 1250, jwt 1450...) so the consumer is known,
# and before logging plugins; ai-proxy (770) records analytics we may read in log.
PRIORITY = 760

IDENTITY_SOURCES = ("consumer", "route_tags", "service_tags", "headers")
USAGE_CAPTURE_MODES = ("auto", "ai_proxy", "buffered", "estimate")
BUDGET_FAIL_MODES = ("open", "closed")
# From the provider / API-family registry, so every adapter's family is allowed here.
PROVIDERS = (AUTO, *registry.PROVIDER_NAMES)
API_FAMILIES = (AUTO, *registry.FAMILY_NAMES)


_TAGS = next(limit for name, limit in EVENT_LIMITS.items() if name == "tags" and isinstance(limit, Entries))
_TAG_VALUE_CHARS = _TAGS.value.max_chars if isinstance(_TAGS.value, Text) else 0


def _string(default: str | None = None, *, required: bool = True, **extra: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"type": "string", "required": required, **extra}
    if default is not None:
        field["default"] = default
    return field


def _integer(default: int, low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "required": True, "default": default, "between": [low, high]}


def _boolean(default: bool) -> dict[str, Any]:
    return {"type": "boolean", "required": True, "default": default}


Schema: list[dict[str, Any]] = [
    # -- where events go --
    {"aggregator_addresses": {
        "type": "array", "required": True, "len_min": 1, "default": ["127.0.0.1:50051"],
        "elements": {"type": "string"},
        "description": "host:port of aggregators; the sender fails over in this order",
    }},
    {"aggregator_tls": _boolean(False)},
    {"aggregator_ca_cert_path": _string(required=False, description="PEM bundle to verify the aggregator (TLS)")},
    {"aggregator_client_cert_path": _string(required=False, description="PEM client certificate (mutual TLS)")},
    {"aggregator_client_key_path": _string(required=False, description="PEM client key (mutual TLS)")},
    {"aggregator_token": _string(required=False, referenceable=True, description="bearer token for the aggregator")},
    # -- who: identity resolution --
    {"identity_sources": {
        "type": "array", "required": True, "default": ["consumer", "route_tags", "service_tags"],
        "elements": {"type": "string", "one_of": list(IDENTITY_SOURCES)},
        "description": "trusted sources in precedence order; 'headers' only when listed",
    }},
    {"header_tenant": _string("x-tenant")},
    {"header_team": _string("x-team")},
    {"header_app": _string("x-app")},
    {"header_workload": _string("x-workload")},
    {"default_tenant": _string("default")},
    {"credential_hmac_secret": _string(
        required=False, referenceable=True, description="key for credential fingerprints (HMAC-SHA256)",
    )},
    {"trace_header": _string("traceparent", description="header grouping calls of one agent run")},
    {"client_retry_header": _string("x-stainless-retry-count", description="header carrying the client's retry count")},
    {"static_tags": {
        "type": "map", "required": True, "default": {},
        # Every event carries these: the event contract's tag limits apply (ai_chargeback_proto/limits.py).
        "keys": {"type": "string", "len_max": _TAGS.key.max_chars},
        "values": {"type": "string", "len_max": _TAG_VALUE_CHARS},
        "description": f"tags added to every event (at most {_TAGS.max_entries} are kept)",
    }},
    # -- what: usage capture --
    {"usage_capture": _string("auto", one_of=list(USAGE_CAPTURE_MODES))},
    {"provider": _string("auto", one_of=list(PROVIDERS))},
    {"api_family": _string("auto", one_of=list(API_FAMILIES))},
    {"inject_stream_usage": _boolean(True)},
    {"deployment_models": {
        "type": "map", "required": True, "default": {},
        "keys": {"type": "string"}, "values": {"type": "string"},
        "description": "Azure OpenAI deployment name -> model, for answers that do not name the model",
    }},
    {"max_body_bytes": {
        **_integer(10 * 1024 * 1024, 1024, 256 * 1024 * 1024),
        "description": "largest request or response body the plugin reads; a larger request body is not read and "
                       "its prompt is estimated from its size (labelled)",
    }},
    {"client_body_buffer_size": {
        **_integer(8 * 1024, 1024, 256 * 1024 * 1024),
        "description": "Kong's nginx_http_client_body_buffer_size: until Kong shows it is 3.8 or newer (which reads "
                       "request bodies nginx spooled to disk), larger bodies are not read; above max_body_bytes, "
                       "access checks Content-Length before reading (one more PDK call)",
    }},
    # -- delivery --
    {"queue_max_events": _integer(10_000, 100, 1_000_000)},
    {"batch_max_events": _integer(500, 1, min(10_000, BATCH_MAX_EVENTS))},
    {"flush_interval_ms": _integer(1000, 10, 60_000)},
    {"spool_dir": _string("/tmp/ai-chargeback-spool", description="durable spool for events the aggregator has not acked")},
    {"spool_max_bytes": _integer(256 * 1024 * 1024, 1024 * 1024, 64 * 1024 * 1024 * 1024)},
    # -- budgets (docs/budgets.md) --
    {"budget_enforcement": {**_boolean(False),
        "description": "refuse requests in scopes over an enforced budget (HTTP 429); costs one PDK call only while one is exhausted",
    }},
    {"budget_fail_mode": _string("open", one_of=list(BUDGET_FAIL_MODES),
        description="with no budget state, or one older than budget_state_max_age_s: open lets requests through, "
                    "closed refuses those an enforced budget covers (HTTP 503)",
    )},
    {"budget_state_max_age_s": {**_integer(300, 0, 86_400),
        "description": "how long the last budget state is followed without news from an aggregator (0: for ever)",
    }},
]  # fmt: skip


# What the log-only plugin cannot use: options that act in access (reading or rewriting
# the request, buffering, enforcing budgets) or on a buffered body. They are left out of
# its schema, so Kong refuses them there ("unknown field") instead of ignoring them;
# budget enforcement in particular needs access, i.e. the main plugin.
REQUEST_PATH_FIELDS = frozenset({
    "usage_capture", "inject_stream_usage", "deployment_models", "max_body_bytes", "client_body_buffer_size",
    "budget_enforcement", "budget_fail_mode", "budget_state_max_age_s",
})  # fmt: skip
# What the log-only plugin is, in the main plugin's terms: ai_proxy capture, no budgets.
LOG_ONLY_SETTINGS: dict[str, Any] = {"usage_capture": "ai_proxy", "budget_enforcement": False}

# The log-only plugin's schema: the main one's entries (same objects, same defaults) minus the above.
LogSchema: list[dict[str, Any]] = [entry for entry in Schema if next(iter(entry)) not in REQUEST_PATH_FIELDS]


def defaults() -> dict[str, Any]:
    """Every field's default, as Kong would fill it."""
    values: dict[str, Any] = {}
    for entry in Schema:
        ((name, field),) = entry.items()
        values[name] = field.get("default")
    return values
