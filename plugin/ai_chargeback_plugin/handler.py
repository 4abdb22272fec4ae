"""The Kong plugin: `access` prepares the request, `log` meters it. Neither may ever fail a request.

PDK calls are IPC round trips to Kong, the main cost of a Python plugin, so each
phase makes as few as the mode allows (counts per request, both phases):

================================  =========================================  ===
mode / request                    PDK calls                                  n
================================  =========================================  ===
auto, non-streaming               request.get_raw_body, enable_buffering,     4
                                  log.serialize, service.response.get_raw_body
auto, streaming (not buffered)    request.get_raw_body, set_serialize_value,  3
                                  log.serialize  -> estimated usage
buffered, streaming               + set_raw_body (include_usage injected)     6
estimate                          request.get_raw_body, set_serialize_value,  3
                                  log.serialize
ai_proxy                          log.serialize                               1
================================  =========================================  ===

With ``api_family: auto``, access adds ``request.get_path`` in buffered mode and
for providers whose streaming shows only in the URL (auto, gemini, vertex,
bedrock, ollama).

Request facts travel from access to log through ``kong.log.set_serialize_value``
(they come back inside serialize()) only when log needs them.
An exception escaping a handler would leave Kong's RPC waiting forever, so each
phase catches everything, counts it, and returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .config import PluginConfig
from .identity import resolve
from .meter import build_event
from .sender import EventSender, sender_for
from .usage import (
    Exchange,
    RequestFacts,
    UsageRecord,
    estimate_usage,
    parse_usage,
    prepare_request,
    registry,
    usage_from_ai_proxy,
)

log = logging.getLogger("ai-chargeback")

FACTS_KEY = "ai_chargeback"
STREAM_CONTENT_TYPES = ("text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream")


class Plugin:
    def __init__(self, config: Mapping[str, Any]) -> None:
        # Runs under kong-pdk's global instance lock: keep it cheap, never block.
        self.config: PluginConfig | None = None
        self.sender: EventSender | None = None
        try:
            self.config = PluginConfig.from_kong(config)
            self.sender = sender_for(self.config.sender)
        except Exception:
            log.exception("ai-chargeback: invalid config; this instance will not meter")

    # -- access -------------------------------------------------------------------
    def access(self, kong: Any) -> None:
        try:
            if self.config is not None:
                self._access(kong, self.config)
        except Exception:
            log.exception("ai-chargeback: access phase failed; request continues unmetered-by-body")

    def _access(self, kong: Any, config: PluginConfig) -> None:
        mode = config.usage_capture
        if mode == "ai_proxy":
            return
        body = _bytes(kong.request.get_raw_body())
        path = ""
        # The path tells the API family (and so whether include_usage can be injected).
        if config.api_family == "auto" and (mode == "buffered" or config.provider not in registry.BODY_SAYS_STREAMING):
            path = _text(kong.request.get_path())
        # One parse answers everything access must decide: streaming or not, the
        # include_usage rewrite (buffered mode), and a prompt estimate for answers
        # that will not be seen (estimate mode, and streams in auto mode).
        facts, new_body = prepare_request(
            path, body, provider=config.provider, api_family=config.api_family,
            inject_stream_usage=mode == "buffered" and config.inject_stream_usage,
            estimate_prompt=mode == "estimate", estimate_streaming_prompt=mode == "auto",
            max_body_bytes=config.max_body_bytes,
        )  # fmt: skip
        buffer = mode == "buffered" or (mode == "auto" and not facts.streaming)
        if new_body is not None:
            kong.service.request.set_raw_body(new_body)
        if buffer:
            kong.service.request.enable_buffering()
        if new_body is not None or not buffer:
            kong.log.set_serialize_value(FACTS_KEY, {**facts.to_wire(), "buffered": buffer})

    # -- log ------------------------------------------------------------------------
    def log(self, kong: Any) -> None:
        try:
            if self.config is not None and self.sender is not None:
                self._log(kong, self.config, self.sender)
        except Exception:
            log.exception("ai-chargeback: log phase failed; event lost")
            if self.sender is not None:
                self.sender.counters.usage_parse_failures += 1

    def _log(self, kong: Any, config: PluginConfig, sender: EventSender) -> None:
        serialized = json.loads(kong.log.serialize())
        carried = serialized.get(FACTS_KEY) if isinstance(serialized.get(FACTS_KEY), Mapping) else None
        facts = RequestFacts.from_wire(carried)
        usage = self._usage(kong, config, serialized, facts, carried)
        if usage.source.value == "none" and usage.note != "not-proxied":
            sender.counters.usage_parse_failures += 1
        event = build_event(serialized, resolve(serialized, config), usage, facts, config)
        sender.offer(event)

    def _usage(self, kong: Any, config: PluginConfig, serialized: Mapping[str, Any], facts: RequestFacts | None,
               carried: Mapping[str, Any] | None) -> UsageRecord:  # fmt: skip
        mode = config.usage_capture
        if mode in ("auto", "ai_proxy"):
            from_ai_proxy = usage_from_ai_proxy(serialized)
            if from_ai_proxy is not None:
                return from_ai_proxy
        if mode == "ai_proxy":
            return UsageRecord.none("ai-proxy-analytics-missing")
        response = _mapping(serialized.get("response"))
        headers = {str(k).lower(): _first(v) for k, v in _mapping(response.get("headers")).items()}
        content_type = headers.get("content-type", "")
        if carried is not None and "buffered" in carried:
            buffered = bool(carried["buffered"])
        else:
            buffered = mode == "buffered" or (mode == "auto" and not content_type.startswith(STREAM_CONTENT_TYPES))
        proxied = bool(serialized.get("tries")) or _int(_mapping(serialized.get("latencies")).get("proxy")) >= 0
        if not proxied:
            return UsageRecord.none("not-proxied")
        exchange = Exchange(
            path=_text(serialized.get("upstream_uri")),
            response_body=_bytes(kong.service.response.get_raw_body()) if buffered else b"",
            content_type=content_type,
            content_encoding=headers.get("content-encoding", ""),
            response_headers=headers,
            status=_int(response.get("status")),
            host=_text(_mapping(serialized.get("service")).get("host")),
            provider=config.provider,
            api_family=config.api_family,
            requested_model=facts.requested_model if facts else "",
            facts=facts,
        )
        if buffered:
            return parse_usage(exchange, max_body_bytes=config.max_body_bytes, deployment_models=config.deployment_models)
        return estimate_usage(facts, exchange)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -1


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
