"""The plugin config as the handler uses it: typed, frozen, read once per instance."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ai_chargeback_proto.limits import EVENT_LIMITS, Entries, Text

from .schema import defaults

log = logging.getLogger("ai-chargeback")

_DEFAULTS = defaults()
_TAGS = next(limit for name, limit in EVENT_LIMITS.items() if name == "tags" and isinstance(limit, Entries))
_UNSAFE_IN_PATH = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """How one plugin config delivers its events.

    ``sender_key`` names the sender and its durable spool: Kong's plugin id, stable
    across restarts and config edits, so every instance of one plugin config (old
    and new config versions, every worker) shares one sender and one spool, and the
    spool is drained to whatever addresses the config names now. The other fields
    are that sender's current settings.
    """

    sender_key: str
    aggregator_addresses: tuple[str, ...]
    aggregator_tls: bool
    aggregator_ca_cert_path: str
    aggregator_client_cert_path: str
    aggregator_client_key_path: str
    aggregator_token: str
    queue_max_events: int
    batch_max_events: int
    flush_interval_ms: int
    spool_dir: str
    spool_max_bytes: int


@dataclass(frozen=True, slots=True)
class PluginConfig:
    sender: SenderConfig
    identity_sources: tuple[str, ...]
    header_tenant: str
    header_team: str
    header_app: str
    header_workload: str
    default_tenant: str
    credential_hmac_secret: bytes
    trace_header: str
    client_retry_header: str
    static_tags: Mapping[str, str]
    usage_capture: str
    provider: str
    api_family: str
    inject_stream_usage: bool
    deployment_models: Mapping[str, str]
    max_body_bytes: int
    client_body_buffer_size: int
    route_id: str
    service_id: str
    budget_enforcement: bool
    budget_fail_mode: str
    budget_state_max_age_s: int

    @property
    def trust_headers(self) -> bool:
        return "headers" in self.identity_sources

    @classmethod
    def from_kong(cls, raw: Mapping[str, Any] | str) -> PluginConfig:
        """From Kong's config (a dict, or the JSON string StartInstance carries).

        Missing or null fields take the Schema default; Kong has validated types.
        """
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)

        def get(name: str) -> Any:
            value = data.get(name)
            return _DEFAULTS[name] if value is None else value

        for address in get("aggregator_addresses"):
            host, sep, port = str(address).rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"aggregator_addresses: expected host:port, got {address!r}")
        sender = SenderConfig(
            sender_key=sender_key(data),
            aggregator_addresses=tuple(get("aggregator_addresses")),
            aggregator_tls=bool(get("aggregator_tls")),
            aggregator_ca_cert_path=get("aggregator_ca_cert_path") or "",
            aggregator_client_cert_path=get("aggregator_client_cert_path") or "",
            aggregator_client_key_path=get("aggregator_client_key_path") or "",
            aggregator_token=get("aggregator_token") or "",
            queue_max_events=int(get("queue_max_events")),
            batch_max_events=int(get("batch_max_events")),
            flush_interval_ms=int(get("flush_interval_ms")),
            spool_dir=get("spool_dir"),
            spool_max_bytes=int(get("spool_max_bytes")),
        )
        return cls(
            sender=sender,
            identity_sources=tuple(get("identity_sources")),
            header_tenant=get("header_tenant").lower(),
            header_team=get("header_team").lower(),
            header_app=get("header_app").lower(),
            header_workload=get("header_workload").lower(),
            default_tenant=get("default_tenant"),
            credential_hmac_secret=(get("credential_hmac_secret") or "").encode(),
            trace_header=get("trace_header").lower(),
            client_retry_header=get("client_retry_header").lower(),
            static_tags=fit_static_tags(get("static_tags")),
            usage_capture=get("usage_capture"),
            provider=get("provider"),
            api_family=get("api_family"),
            inject_stream_usage=bool(get("inject_stream_usage")),
            deployment_models=dict(get("deployment_models")),
            max_body_bytes=int(get("max_body_bytes")),
            client_body_buffer_size=int(get("client_body_buffer_size")),
            route_id=_entity_id(data.get("route_id")),
            service_id=_entity_id(data.get("service_id")),
            budget_enforcement=bool(get("budget_enforcement")),
            budget_fail_mode=get("budget_fail_mode"),
            budget_state_max_age_s=int(get("budget_state_max_age_s")),
        )


def _entity_id(value: Any) -> str:
    # Kong injects route_id/service_id as a string or as {"id": ...} depending on version.
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def sender_key(data: Mapping[str, Any]) -> str:
    """Kong's plugin id (``__plugin_id``, injected into every instance's config), safe as a path part.

    Without one (an old Kong, a hand-made config), the scope the config applies to
    stands in: the same route/service/consumer keeps the same key.
    """
    plugin_id = data.get("__plugin_id")
    if isinstance(plugin_id, str) and plugin_id:
        return _UNSAFE_IN_PATH.sub("_", plugin_id)[:64]
    scope = "|".join(_entity_id(data.get(name)) for name in ("route_id", "service_id", "consumer_id"))
    return "scope-" + hashlib.sha256(scope.encode()).hexdigest()[:16] if scope.strip("|") else "global"


def fit_static_tags(raw: Mapping[str, Any]) -> dict[str, str]:
    """``static_tags`` within the event contract's tag limits (every event carries them).

    Kong's schema already caps key and value lengths; what is left (too many tags)
    keeps the first ones by key, and says so once: metering goes on either way.
    """
    key_limit = _TAGS.key.max_chars
    value_limit = _TAGS.value.max_chars if isinstance(_TAGS.value, Text) else 0
    given = {str(k): str(v) for k, v in sorted(raw.items(), key=lambda kv: str(kv[0])) if k}
    fitted = {k[:key_limit]: v[:value_limit] for k, v in list(given.items())[: _TAGS.max_entries]}
    if fitted != given:
        log.warning("ai-chargeback: static_tags cut to the event contract's limits (%d tags, keys <= %d, values <= %d chars)",
                    _TAGS.max_entries, key_limit, value_limit)  # fmt: skip
    return fitted
