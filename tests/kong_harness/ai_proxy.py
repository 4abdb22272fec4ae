"""What Kong's own ai-proxy plugin adds to serialize(), for tests that need it.

kong/llm/plugin/shared-filters/serialize-analytics.lua sets, in body_filter
(so before any log phase):
  ai.proxy.meta  = {plugin_id, provider_name, request_model, response_model, llm_latency}
  ai.proxy.usage = {time_per_token, prompt_tokens, completion_tokens, total_tokens, cost}
with every usage metric defaulting to 0 (observability.lua metrics_get) and
total = prompt + completion. This module derives those numbers from the
request and the upstream answer that actually went through the front,
JSON or SSE, OpenAI or Anthropic shaped.

Kong's numbers are not always right, and `kong_bugs` reproduces two known cases:
  "14535"  Kong/kong#14535: a streamed chat answer is logged with completion_tokens 0;
  "14768"  Kong/kong#14768: a streamed Responses API answer leaves every count at 0.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import vault
from .context import RequestContext


def _decoded_body(ctx: RequestContext) -> bytes:
    body = bytes(ctx.response_body_capture)
    encoding = (ctx.upstream_headers.first("content-encoding") if ctx.upstream_headers else None) or ""
    if "gzip" in encoding.lower():
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return b""
    return body


def _sse_events(body: bytes) -> list[Any]:
    events = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                try:
                    events.append(json.loads(data))
                except ValueError:
                    continue
    return events


def extract_usage(ctx: RequestContext) -> dict[str, Any]:
    """{provider, request_model, response_model, prompt_tokens, completion_tokens}."""
    try:
        request = json.loads(ctx.body or b"{}")
    except ValueError:
        request = {}
    request = request if isinstance(request, dict) else {}
    out: dict[str, Any] = {
        "provider": "anthropic" if "/messages" in ctx.upstream_uri else "openai",
        "request_model": request.get("model") or "UNSPECIFIED",
        "response_model": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    body = _decoded_body(ctx)
    content_type = (ctx.upstream_headers.first("content-type") if ctx.upstream_headers else "") or ""
    if "text/event-stream" in content_type or body.lstrip().startswith((b"data:", b"event:")):
        for event in _sse_events(body):
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "message_start":  # Anthropic
                message = event.get("message") or {}
                out["response_model"] = message.get("model") or out["response_model"]
                usage = message.get("usage") or {}
                out["prompt_tokens"] = usage.get("input_tokens", 0)
                out["completion_tokens"] = usage.get("output_tokens", 0)
            elif kind == "message_delta":
                usage = event.get("usage") or {}
                out["completion_tokens"] = usage.get("output_tokens", out["completion_tokens"])
            elif "choices" in event or "usage" in event:  # OpenAI chunk
                out["response_model"] = event.get("model") or out["response_model"]
                usage = event.get("usage") or {}
                if usage:
                    out["prompt_tokens"] = usage.get("prompt_tokens", 0)
                    out["completion_tokens"] = usage.get("completion_tokens", 0)
    else:
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            out["response_model"] = parsed.get("model")
            usage = parsed.get("usage") or {}
            if "input_tokens" in usage or parsed.get("type") == "message":
                out["provider"] = "anthropic"
                out["prompt_tokens"] = usage.get("input_tokens", 0)
                out["completion_tokens"] = usage.get("output_tokens", 0)
            else:
                out["prompt_tokens"] = usage.get("prompt_tokens", 0)
                out["completion_tokens"] = usage.get("completion_tokens", 0)
    out["response_model"] = out["response_model"] or out["request_model"]
    return out


def ai_proxy_serialize_values(
    ctx: RequestContext,
    *,
    plugin_id: str = "",
    provider_name: str | None = None,
    input_cost: float | None = None,
    output_cost: float | None = None,
    namespace: str = "proxy",
    kong_bugs: Iterable[str] = (),
) -> dict[str, Any]:
    """The two set_serialize_value calls ai-proxy makes, as {dotted_key: value}."""
    facts = extract_usage(ctx)
    bugs = set(kong_bugs)
    unknown = bugs - {"14535", "14768"}
    if unknown:
        raise ValueError(f"unknown Kong bugs {sorted(unknown)}")
    streamed = "event-stream" in ((ctx.upstream_headers.first("content-type") if ctx.upstream_headers else "") or "")
    if streamed and "14535" in bugs:
        facts["completion_tokens"] = 0
    if streamed and "14768" in bugs and ctx.upstream_uri.split("?")[0].endswith("/responses"):
        facts["prompt_tokens"] = facts["completion_tokens"] = 0
    if ctx.response_start_ms is not None and ctx.balancer_ended_ms is not None:
        llm_latency = int((ctx.body_ended_ms or ctx.now_ms()) - ctx.balancer_ended_ms)
    else:
        llm_latency = 0
    prompt, completion = facts["prompt_tokens"], facts["completion_tokens"]
    cost = 0
    if input_cost is not None and output_cost is not None:
        cost = (prompt * input_cost + completion * output_cost) / 1_000_000
    return {
        f"ai.{namespace}.meta": {
            "plugin_id": plugin_id,
            "provider_name": provider_name or facts["provider"],
            "request_model": facts["request_model"],
            "response_model": facts["response_model"],
            "llm_latency": llm_latency,
        },
        f"ai.{namespace}.usage": {
            "time_per_token": (llm_latency / completion) if completion > 0 else 0,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost": cost,
        },
    }


def ai_proxy_hook(**options: Any) -> Callable[[RequestContext], Mapping[str, Any] | None]:
    """A KongFront serialize hook that behaves like ai-proxy on every proxied
    request that got a 200 from the upstream (normalize-json-response.lua
    only records usage for source == "service" and status 200)."""

    def hook(ctx: RequestContext) -> Mapping[str, Any] | None:
        if not ctx.proxied or ctx.exit is not None or ctx.upstream_status != 200:
            return None
        return ai_proxy_serialize_values(ctx, **options)

    return hook


# ----------------------------------------------------------------------------- the plugin itself
#
# Kong's bundled ai-proxy (kong/plugins/ai-proxy/, kong/llm/): schema, priority,
# and what it does to a request on the way in. Modelled: the auth header (from a
# vault reference: Kong's env vault), the upstream path of llm/v1/chat and
# llm/v1/completions for OpenAI-format providers, `preserve` pass-through,
# response_streaming, a pinned model.name, buffering non-streamed answers
# (shared-filters/enable-buffering.lua) and the analytics above. Not modelled,
# and refused loudly: translating llm/v1/* to another provider's format. The
# upstream stays the service's (tests point it at the mock LLM); Kong's
# ai-proxy would target the provider's own endpoint.

NAME = "ai-proxy"
PRIORITY = 770  # kong/plugins/ai-proxy/handler.lua
PROVIDERS = ("openai", "azure", "anthropic", "cohere", "mistral", "llama2", "gemini", "bedrock", "huggingface")
ROUTE_TYPES = ("llm/v1/chat", "llm/v1/completions", "preserve")
# llm/v1/* routes the harness can model: OpenAI-format providers need no translation.
_OPENAI_PATHS = {"llm/v1/chat": "/v1/chat/completions", "llm/v1/completions": "/v1/completions"}
_UNTRANSLATED = ("openai",)


def _string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", "required": False, **extra}


# kong/llm/schemas/init.lua + kong/plugins/ai-proxy/schema.lua (the fields a kong.yml uses).
SCHEMA: dict[str, Any] = {
    "name": NAME,
    "fields": [{"config": {"type": "record", "fields": [
        {"route_type": {"type": "string", "required": True, "one_of": list(ROUTE_TYPES)}},
        {"auth": {"type": "record", "required": False, "fields": [
            {"header_name": _string(referenceable=True)},
            {"header_value": _string(referenceable=True, encrypted=True)},
            {"param_name": _string(referenceable=True)},
            {"param_value": _string(referenceable=True, encrypted=True)},
            {"param_location": _string(one_of=["query", "body"])},
            {"allow_override": {"type": "boolean", "required": False, "default": False}},
        ], "entity_checks": [
            {"mutually_required": ["header_name", "header_value"]},
            {"mutually_required": ["param_name", "param_value", "param_location"]},
        ]}},
        {"model": {"type": "record", "required": True, "fields": [
            {"provider": {"type": "string", "required": True, "one_of": list(PROVIDERS)}},
            {"name": _string()},
            {"options": {"type": "record", "required": False, "fields": [
                {"max_tokens": {"type": "integer", "required": False}},
                {"input_cost": {"type": "number", "required": False, "gt": 0}},
                {"output_cost": {"type": "number", "required": False, "gt": 0}},
                {"anthropic_version": _string()},
                {"azure_instance": _string()},
                {"azure_api_version": _string(default="2023-05-15")},
                {"azure_deployment_id": _string()},
                {"upstream_url": _string()},
            ]}},
        ]}},
        {"logging": {"type": "record", "required": True, "fields": [
            {"log_statistics": {"type": "boolean", "required": True, "default": False}},
            {"log_payloads": {"type": "boolean", "required": True, "default": False}},
        ]}},
        {"response_streaming": {"type": "string", "required": False, "default": "allow", "one_of": ["allow", "deny", "always"]}},
        {"max_request_body_size": {"type": "integer", "default": 8 * 1024, "gt": 0}},
        {"model_name_header": {"type": "boolean", "default": True}},
    ]}}],
}  # fmt: skip


def check_config(config: Mapping[str, Any]) -> None:
    """kong/llm/schemas/init.lua entity checks on nested fields, which the generic validator does not run."""
    from .errors import ConfigValidationError

    provider = config["model"]["provider"]
    options = config["model"].get("options") or {}
    required = {"anthropic": ("anthropic_version",), "azure": ("azure_instance", "azure_deployment_id")}
    missing = [name for name in required.get(provider, ()) if not options.get(name)]
    if missing:
        raise ConfigValidationError(f"must set model.options.{missing[0]} for {provider} provider",
                                    {"@entity": [f"must set model.options.{missing[0]} for {provider} provider"]})  # fmt: skip


class AiProxy:
    def __init__(self, env: Mapping[str, str], on_failure: Callable[[RequestContext, str], None]) -> None:
        self.env = env
        self.on_failure = on_failure

    def access(self, ctx: RequestContext, config: Mapping[str, Any]) -> Any:
        from .pdk import build_exit

        route_type, provider = config["route_type"], config["model"]["provider"]
        try:
            request = json.loads(ctx.body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return build_exit(400, {"error": {"message": "content-type header does not match request body, or bad JSON formatting"}},
                              None, source=NAME, phase="access")  # fmt: skip
        stream = request.get("stream") is True or config["response_streaming"] == "always"
        if stream and config["response_streaming"] == "deny":
            return build_exit(400, {"error": {"message": "response streaming is not enabled for this LLM"}},
                              None, source=NAME, phase="access")  # fmt: skip
        pinned = config["model"].get("name")
        if route_type != "preserve":
            if provider not in _UNTRANSLATED:
                self.on_failure(ctx, f"[{NAME}] the harness does not model translating {route_type} to {provider}")
                return None
            if pinned and request.get("model") not in (None, pinned):
                return build_exit(400, {"error": {"message": f"cannot use own model - must be: {pinned}"}},
                                  None, source=NAME, phase="access")  # fmt: skip
            ctx.ngx_ctx["__upstream_path"] = _OPENAI_PATHS[route_type]
        auth = config.get("auth") or {}
        if auth.get("header_name") and (not auth.get("allow_override") or ctx.headers.first(auth["header_name"]) is None):
            try:
                ctx.headers.set(auth["header_name"], vault.resolve(auth["header_value"], self.env))
            except KeyError as exc:
                self.on_failure(ctx, f"[{NAME}] {exc}")
        if not stream:
            ctx.buffered_proxying = True  # shared-filters/enable-buffering.lua
        ctx.ai_proxy = {"config": config, "stream": stream, "model": pinned or request.get("model") or "UNSPECIFIED"}
        return None

    @staticmethod
    def analytics(ctx: RequestContext, entity_id: str, kong_bugs: Iterable[str] = ()) -> dict[str, Any]:
        """serialize-analytics.lua: written whenever log_statistics is on; zeros unless a 200 from the service
        was normalized (normalize-json-response.lua / normalize-sse-chunk.lua), never in preserve mode."""
        state = ctx.ai_proxy or {}
        config = state.get("config") or {}
        if not (config.get("logging") or {}).get("log_statistics"):
            return {}
        provider = config["model"]["provider"]
        measured = ctx.proxied and ctx.exit is None and ctx.upstream_status == 200 and config["route_type"] != "preserve"
        if measured:
            options = config["model"].get("options") or {}
            return ai_proxy_serialize_values(ctx, plugin_id=entity_id, provider_name=provider, kong_bugs=kong_bugs,
                                             input_cost=options.get("input_cost"), output_cost=options.get("output_cost"))  # fmt: skip
        return {
            "ai.proxy.meta": {"plugin_id": entity_id, "provider_name": provider, "request_model": state.get("model"),
                              "response_model": state.get("model"), "llm_latency": 0},
            "ai.proxy.usage": {"time_per_token": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0},
        }  # fmt: skip
