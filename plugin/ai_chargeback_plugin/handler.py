"""The Kong plugin: `access` prepares the request, `log` meters it. Neither may ever fail a request.

PDK calls are IPC round trips to Kong, the main cost of a Python plugin, so each
phase makes as few as the mode allows (counts per request, both phases):

================================  =========================================  ===
mode / request                    PDK calls                                  n
================================  =========================================  ===
auto, non-streaming               request.get_body, enable_buffering,        4
                                  log.serialize, service.response.get_raw_body
auto, streaming (not buffered)    get_body, set_serialize_value,             3
                                  log.serialize
                                  -> output estimated from Kong's byte count
buffered, non-streaming           request.get_header(content-length),        5
                                  request.get_raw_body, enable_buffering,
                                  log.serialize, service.response.get_raw_body
buffered, streaming               + set_raw_body (include_usage injected)     7
estimate                          get_body, set_serialize_value,             3
                                  log.serialize
auto, on a route learned to run   access: none. log: log.serialize,          3
Kong's ai-proxy (ai_proxy_route)  nginx.get_ctx, service.response.get_raw_body
                                  (non-streaming); log.serialize (streaming)  1
ai_proxy                          log.serialize                               1
ai-chargeback-log (log_only.py)   log.serialize, and no access phase at all   1
================================  =========================================  ===

In auto and estimate modes Kong decodes the body (``get_body``: one call that
cannot raise); buffered mode rewrites raw bytes, so it reads them after a
Content-Length check (two calls), and so do the other modes when
``client_body_buffer_size`` exceeds ``max_body_bytes`` (a body in Kong's memory
is read whatever its size). With ``api_family: auto``, access adds
``request.get_path`` in buffered mode and for providers whose streaming shows
only in the URL (auto, gemini, vertex, bedrock, ollama). A body that is empty,
too large (``max_body_bytes``) or that this Kong cannot read back from disk
(see kong_state.py) is not read; its prompt is estimated from its length.
Before Kong 3.8 (no ``source`` in serialize()), log adds ``nginx.get_ctx``
before reading a buffered answer.

Every call is one that cannot raise in that phase and state (kong_state.py):
a PDK call that raises inside Kong fails the request with HTTP 500 (access) or
loses its event and strands this handler (log). Request facts travel from
access to log through ``kong.log.set_serialize_value`` (they come back inside
serialize()) only when log needs them. An exception escaping a handler would
leave Kong's RPC waiting forever, so each phase catches everything, counts it,
and returns.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any

from . import budgets, kong_state, scheduling
from .ai_proxy_route import AiProxyRoute
from .config import PluginConfig
from .identity import resolve
from .meter import build_event
from .sender import EventSender, sender_for
from .usage import (
    Exchange,
    RequestFacts,
    UsageRecord,
    UsageSource,
    ai_proxy_ran,
    detect_family,
    estimate_usage,
    notes,
    parse_usage,
    prepare_decoded_request,
    prepare_request,
    registry,
    sizes,
    usage_from_ai_proxy,
)
from .usage.estimate import output_from_bytes_instead

log = logging.getLogger("ai-chargeback")

FACTS_KEY = "ai_chargeback"
_UPSTREAM_FAILURE_STATUSES = (502, 504)  # Kong's error page for an unreachable, timed-out or truncated upstream


class Metering:
    """What every plugin of this server does: one instance per plugin config, and the log phase.

    It defines no ``access``: kong-pdk advertises the phases a plugin class has
    (kong_pdk/module.py), so a subclass without one (log_only.LogPlugin) costs the
    request path nothing.
    """

    def __init__(self, config: Mapping[str, Any] | str) -> None:
        # Runs under kong-pdk's global instance lock: keep it cheap, never block.
        self.config: PluginConfig | None = None
        self.sender: EventSender | None = None
        self.budgets: budgets.BudgetGate | None = None
        self.route = AiProxyRoute()
        try:
            self.config = self.read_config(config)
            self.sender = sender_for(self.config.sender)
            self.budgets = budgets.gate_for(self.config)
        except Exception:
            log.exception("ai-chargeback: invalid config; this instance will not meter")

    @staticmethod
    def read_config(raw: Mapping[str, Any] | str) -> PluginConfig:
        return PluginConfig.from_kong(raw)

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
        raw = kong.log.serialize()
        scheduling.after_requests()  # after the first PDK call, never before (scheduling.py)
        serialized = _json_object(raw)
        kong_state.RUNTIME.observe(serialized)
        carried = serialized.get(FACTS_KEY) if isinstance(serialized.get(FACTS_KEY), Mapping) else None
        facts = RequestFacts.from_wire(carried)
        if facts is not None and facts.undecoded_body:
            facts = _sized_undecoded(facts, serialized, config)
        usage = self._usage(kong, config, serialized, facts, carried)
        if usage.source is UsageSource.NONE and usage.note != notes.NOT_PROXIED:
            sender.counters.usage_parse_failures += 1
        event = build_event(serialized, resolve(serialized, config), usage, facts, config)
        budgets.annotate(event, serialized)
        if self.budgets is not None:
            self.budgets.learn(serialized)
        if config.usage_capture == "auto":
            self.route.learn(serialized)
        sender.offer(event)

    def _usage(self, kong: Any, config: PluginConfig, serialized: Mapping[str, Any], facts: RequestFacts | None,
               carried: Mapping[str, Any] | None) -> UsageRecord:  # fmt: skip
        mode = config.usage_capture
        response = _mapping(serialized.get("response"))
        headers = {str(k).lower(): _first(v) for k, v in _mapping(response.get("headers")).items()}
        exchange = Exchange(
            path=_text(serialized.get("upstream_uri")),
            response_body=b"",
            content_type=headers.get("content-type", ""),
            content_encoding=headers.get("content-encoding", ""),
            response_headers=headers,
            status=_int(response.get("status")),
            host=_text(_mapping(serialized.get("service")).get("host")),
            provider=config.provider,
            api_family=config.api_family,
            requested_model=facts.requested_model if facts else "",
            facts=facts,
        )
        if mode == "ai_proxy":
            from_ai_proxy = usage_from_ai_proxy(serialized)
            if from_ai_proxy is not None:
                return _checked_ai_proxy(from_ai_proxy, serialized, exchange)
            return _without_ai_proxy_counts(serialized, exchange)
        if not kong_state.proxied(serialized):
            return UsageRecord.none(notes.NOT_PROXIED)
        if carried is not None and "buffered" in carried:
            buffered = bool(carried["buffered"])
        else:
            buffered = mode == "buffered" or (mode == "auto" and not registry.is_stream_content_type(exchange.content_type))
        # Best source first: the provider's own usage block in a buffered answer (with the
        # cache and reasoning breakdown), then Kong ai-proxy's analytics, then an estimate.
        parsed: UsageRecord | None = None
        if buffered:
            answered_by = kong_state.answered_by(serialized)
            if answered_by == "kong":
                return UsageRecord.none(_kong_error_page(exchange.status))
            # No facts from access in auto mode: access was skipped (ai_proxy_route.py) or buffered itself.
            # Once skipping was ever on, ask whether the answer really is buffered rather than assume it.
            unsure = carried is None and self.route.seen
            if _buffered_answer_kept(kong, serialized, answered_by, verify=unsure):
                exchange = dataclasses.replace(exchange, response_body=_bytes(kong.service.response.get_raw_body()))
                scheduling.after_requests()
                parsed = parse_usage(exchange, max_body_bytes=config.max_body_bytes, deployment_models=config.deployment_models)
                if parsed.source is not UsageSource.NONE:
                    return parsed
        if mode == "auto":
            from_ai_proxy = usage_from_ai_proxy(serialized)
            if from_ai_proxy is not None:
                return _checked_ai_proxy(from_ai_proxy, serialized, exchange)
        if parsed is not None:
            if 200 <= exchange.status < 300 and parsed.api_family and notes.NO_USAGE in parsed.note.split(","):
                # An LLM answer that reported no usage: estimate it from its text rather than bill nothing.
                estimated = estimate_usage(facts, exchange, request_bytes=sizes.request_body_bytes(serialized))
                return dataclasses.replace(estimated, provider=parsed.provider, api_family=parsed.api_family,
                                           served_model=parsed.served_model or estimated.served_model,
                                           note=notes.join(notes.NO_USAGE, estimated.note))  # fmt: skip
            return parsed
        if exchange.status >= 400:  # providers bill no error answer: never estimate one
            return UsageRecord.none(notes.join(notes.BODY_NOT_BUFFERED if buffered else "", notes.UPSTREAM_ERROR))
        if not _family(exchange)[1] and not registry.is_stream_content_type(exchange.content_type):
            return UsageRecord.none(notes.UNKNOWN_API)  # a model list, a file download...: nothing to estimate
        record = estimate_usage(facts, exchange, response_bytes=sizes.response_body_bytes(serialized),
                                request_bytes=sizes.request_body_bytes(serialized))  # fmt: skip
        suspect = mode == "auto" and 200 <= exchange.status < 300 and ai_proxy_ran(serialized)  # it said 0 for this answer
        extra = notes.join(notes.BODY_NOT_BUFFERED if buffered else "", notes.KONG_AI_PROXY_ZERO_OUTPUT if suspect else "")
        return dataclasses.replace(record, note=notes.join(record.note, extra)) if extra else record


class Plugin(Metering):
    """The main plugin: ``access`` prepares the request (and enforces budgets), ``log`` meters it."""

    def access(self, kong: Any) -> None:
        try:
            if self.config is not None:
                self._access(kong, self.config)
        except Exception:
            log.exception("ai-chargeback: access phase failed; request continues unmetered-by-body")

    def _access(self, kong: Any, config: PluginConfig) -> None:
        verdict = self.budgets.check(kong) if self.budgets is not None else None  # budgets.md: 0 PDK calls unless one is exhausted
        if verdict is not None and verdict.refused:
            return
        mode = config.usage_capture
        if mode == "ai_proxy":
            return
        if mode == "auto" and self.route.skip_access and (verdict is None or verdict.pending is None):
            return  # ai-proxy buffers non-streamed answers and counts streams: nothing to do here (ai_proxy_route.py)
        if mode != "buffered" and kong_state.decodes_bodies(max_body_bytes=config.max_body_bytes,
                                                           client_body_buffer_size=config.client_body_buffer_size):  # fmt: skip
            self._access_decoded(kong, config, verdict)
            return
        length = kong_state.content_length(kong.request.get_header("content-length"))
        unread = kong_state.unread_reason(length, max_body_bytes=config.max_body_bytes,
                                          client_body_buffer_size=config.client_body_buffer_size)  # fmt: skip
        body: bytes | None = None
        if length == 0:
            body = b""
        elif length is not None and not unread:
            body = _bytes(kong.request.get_raw_body(kong_state.READ_WHOLE_FILE))
        path = _path_if_needed(kong, config)
        # One parse answers everything access must decide: streaming or not, the
        # include_usage rewrite (buffered mode), and a prompt estimate for answers
        # that will not be seen (estimate mode, and streams in auto mode).
        facts, new_body = prepare_request(
            path, body, provider=config.provider, api_family=config.api_family,
            inject_stream_usage=mode == "buffered" and config.inject_stream_usage,
            estimate_prompt=mode == "estimate", estimate_streaming_prompt=mode == "auto",
            max_body_bytes=config.max_body_bytes,
        )  # fmt: skip
        if unread:
            facts = dataclasses.replace(facts, unread_body_bytes=length, unread_reason=unread)
        if verdict is not None and verdict.pending is not None and self.budgets.check(kong, facts, verdict.pending).refused:  # type: ignore[union-attr]
            return
        # Streaming is known only from a body that was read: never buffer a maybe-stream in auto mode.
        buffer = mode == "buffered" or (mode == "auto" and body is not None and not facts.streaming)
        if new_body is not None:
            kong.service.request.set_raw_body(new_body)
        if buffer:
            kong.service.request.enable_buffering()
        if new_body is not None or not buffer or unread:
            kong.log.set_serialize_value(FACTS_KEY, {**facts.to_wire(), "buffered": buffer})

    def _access_decoded(self, kong: Any, config: PluginConfig, verdict: budgets.Verdict | None) -> None:
        """auto and estimate modes: Kong reads and decodes the body in one PDK call (raw, it takes two).

        The raw read needs the Content-Length first, because get_raw_body raises on
        what it cannot read; get_body returns nil instead, and the log phase learns
        the size and the reason from serialize() (_sized_undecoded).
        """
        mode = config.usage_capture
        doc = kong.request.get_body(kong_state.JSON_BODY, kong_state.UNUSED_MAX_ARGS, config.max_body_bytes)
        decoded = isinstance(doc, (dict, list))  # a JSON object, or an array (and {} arrives as an empty one)
        facts = prepare_decoded_request(
            _path_if_needed(kong, config), doc, provider=config.provider, api_family=config.api_family,
            estimate_prompt=mode == "estimate", estimate_streaming_prompt=mode == "auto",
        )  # fmt: skip
        if not decoded:
            facts = dataclasses.replace(facts, undecoded_body=True)
        if verdict is not None and verdict.pending is not None and self.budgets.check(kong, facts, verdict.pending).refused:  # type: ignore[union-attr]
            return
        # Streaming is known only from a body that was read: never buffer a maybe-stream.
        if mode == "auto" and decoded and not facts.streaming:
            kong.service.request.enable_buffering()
        else:
            kong.log.set_serialize_value(FACTS_KEY, {**facts.to_wire(), "buffered": False})


def _path_if_needed(kong: Any, config: PluginConfig) -> str:
    """The request's path, when it must tell the API family (and so whether include_usage can be injected)."""
    if config.api_family == "auto" and (config.usage_capture == "buffered" or config.provider not in registry.BODY_SAYS_STREAMING):
        return _text(kong.request.get_path())
    return ""


def _sized_undecoded(facts: RequestFacts, serialized: Mapping[str, Any], config: PluginConfig) -> RequestFacts:
    """Access got no body from get_body: its size, and why, now that serialize() tells them."""
    length = sizes.request_body_bytes(serialized)
    if not length:
        return facts  # no body at all: nothing was left unread
    reason = kong_state.unread_reason(length, max_body_bytes=config.max_body_bytes,
                                      client_body_buffer_size=config.client_body_buffer_size)  # fmt: skip
    return dataclasses.replace(facts, unread_body_bytes=length, unread_reason=reason or notes.BODY_NOT_JSON)


def _buffered_answer_kept(kong: Any, serialized: Mapping[str, Any], answered_by: str | None, *, verify: bool = False) -> bool:
    """Whether kong.service.response.get_raw_body() can run: buffered_proxying survived the request.

    `verify`: this plugin did not buffer the request itself; ask whether anything (ai-proxy) did.
    """
    if answered_by == "upstream" and not verify:
        return not kong_state.websocket_upgrade(serialized)
    if answered_by == "upstream" and kong_state.websocket_upgrade(serialized):
        return False
    return bool(kong.nginx.get_ctx("buffered_proxying"))  # Kong < 3.8, or not buffered by us: ask the saved ctx itself


def _kong_error_page(status: int) -> str:
    failed = notes.UPSTREAM_FAILED if status in _UPSTREAM_FAILURE_STATUSES else ""
    return notes.join(notes.KONG_ERROR_PAGE, failed, notes.UPSTREAM_ERROR if status >= 400 else "")


def _family(exchange: Exchange) -> tuple[str, str]:
    if exchange.facts is not None and exchange.facts.api_family:
        return exchange.facts.provider, exchange.facts.api_family
    provider, family = detect_family(exchange.path, host=exchange.host, content_type=exchange.content_type)
    if exchange.api_family not in ("", "auto"):
        family = exchange.api_family
    return (exchange.provider if exchange.provider not in ("", "auto") else provider), family


def _checked_ai_proxy(record: UsageRecord, serialized: Mapping[str, Any], exchange: Exchange) -> UsageRecord:
    """ai-proxy's counts, unless they say 0 output for a 2xx answer that had a body (Kong/kong#14535, #14768)."""
    if not record.streaming and registry.is_stream_content_type(exchange.content_type):
        record = dataclasses.replace(record, streaming=True)  # ai-proxy's analytics do not say; the answer does
    if record.output_tokens or not 200 <= exchange.status < 300:
        return record
    _, family = _family(exchange)
    return output_from_bytes_instead(
        dataclasses.replace(record, api_family=record.api_family or family), family=family,
        response_bytes=sizes.response_body_bytes(serialized), streaming=registry.is_stream_content_type(exchange.content_type),
        reason=notes.KONG_AI_PROXY_ZERO_OUTPUT, content_encoding=exchange.content_encoding,
    )  # fmt: skip


def _without_ai_proxy_counts(serialized: Mapping[str, Any], exchange: Exchange) -> UsageRecord:
    """ai_proxy mode, no counts: a 2xx answer with a body is estimated from sizes, and flagged."""
    ran = ai_proxy_ran(serialized)
    missing = notes.KONG_AI_PROXY_ZERO_OUTPUT if ran else notes.AI_PROXY_ANALYTICS_MISSING
    response_bytes = sizes.response_body_bytes(serialized)
    if not kong_state.proxied(serialized) or not 200 <= exchange.status < 300 or not response_bytes:
        reason = notes.NOT_PROXIED if not kong_state.proxied(serialized) else missing
        return UsageRecord.none(notes.join(reason, notes.UPSTREAM_ERROR if exchange.status >= 400 else ""))
    provider, family = _family(exchange)
    exchange = dataclasses.replace(exchange, provider=provider or "auto", api_family=family or "auto")
    record = estimate_usage(None, exchange, response_bytes=response_bytes, request_bytes=sizes.request_body_bytes(serialized))
    return dataclasses.replace(record, note=notes.join(record.note, missing))


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):  # a plugin server that kept Kong's bytes: keep them visible, never fail
        raw = raw.decode("utf-8", errors="replace")
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


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
