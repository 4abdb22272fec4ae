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
