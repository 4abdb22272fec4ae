"""Kong ai-proxy's own analytics, read from ``kong.log.serialize()``.

Layout (Kong 3.8+, ``kong/llm/plugin/shared-filters/serialize-analytics.lua``;
namespace ``proxy`` from ``kong/llm/plugin/observability.lua``)::

    serialized["ai"]["proxy"]["meta"]  = {plugin_id, provider_name, request_model,
                                          response_model, llm_latency,
                                          azure_instance_id?, azure_deployment_id?, azure_api_version?}
    serialized["ai"]["proxy"]["usage"] = {prompt_tokens, completion_tokens, total_tokens,
                                          time_per_token, cost}

Older Kong (``kong/llm/drivers/shared.lua`` ``post_request``) keys the namespace
by plugin name (``ai["ai-proxy"]``, ``ai["ai-proxy-advanced"]``...), with the
same ``meta`` / ``usage`` containers; both are read.

Caveats taken from Kong's source:

* ``observability.metrics_get`` returns 0 for a metric never set, so
  ``prompt_tokens == completion_tokens == 0`` means "Kong saw no usage", not a
  free request: that gives None here.
* Kong's Anthropic and Bedrock drivers copy ``input_tokens`` / ``inputTokens``
  only, without the cache counts, so their prompt count undercounts cached
  requests; such records carry the note ``kong-excludes-cache``.
* Kong OSS reports no cached/reasoning breakdown; if a Kong build adds OpenAI-style
  ``prompt_tokens_details.cached_tokens`` / ``completion_tokens_details.reasoning_tokens``
  (or flat ``cached_tokens`` / ``reasoning_tokens``) they are mapped as subsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import notes, registry
from ._values import Invalid, count, obj, text
from .adapters._common import provider_record
from .record import UsageRecord, UsageSource

_NAMESPACES = ("proxy", "ai-proxy", "ai-proxy-advanced")
_UNSET = ("", "UNSPECIFIED")


def _namespace(ai: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for name in _NAMESPACES:
        ns = ai.get(name)
        if isinstance(ns, Mapping) and isinstance(ns.get("usage"), Mapping):
            return ns
    for ns in ai.values():
        if isinstance(ns, Mapping) and isinstance(ns.get("usage"), Mapping):
            return ns
    return None


def ai_proxy_ran(serialized: Mapping[str, Any]) -> bool:
    """Whether ai-proxy wrote analytics for this request (all zeros included). Never raises."""
    try:
        ai = serialized.get("ai") if isinstance(serialized, Mapping) else None
        return isinstance(ai, Mapping) and _namespace(ai) is not None
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return False


def requested_model_from_ai_proxy(serialized: Mapping[str, Any]) -> str:
    """The model the client asked for, as ai-proxy recorded it ("" when unknown). Never raises.

    For events whose request body the plugin did not read (ai_proxy capture, the
    log-only plugin, auto mode on a learned ai-proxy route).
    """
    try:
        ai = serialized.get("ai") if isinstance(serialized, Mapping) else None
        ns = _namespace(ai) if isinstance(ai, Mapping) else None
        model = text(obj(ns.get("meta")).get("request_model")) if ns is not None else ""
        return "" if model in _UNSET else model
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return ""


def usage_from_ai_proxy(serialized: Mapping[str, Any]) -> UsageRecord | None:
    """A KONG_AI_PROXY record from ai-proxy's analytics, or None when there are none. Never raises."""
    try:
        return _from_serialized(serialized)
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return None


def _from_serialized(serialized: Mapping[str, Any]) -> UsageRecord | None:
    if not isinstance(serialized, Mapping):
        return None
    ai = serialized.get("ai")
    if not isinstance(ai, Mapping):
        return None
    ns = _namespace(ai)
    if ns is None:
        return None
    usage = obj(ns.get("usage"))
    meta = obj(ns.get("meta"))
    flag = Invalid()
    prompt = count(usage.get("prompt_tokens"), flag)
    completion = count(usage.get("completion_tokens"), flag)
    if not prompt and not completion:
        return None  # Kong fills unset metrics with 0: nothing was metered
    cached = count(obj(usage.get("prompt_tokens_details")).get("cached_tokens"), flag)
    if cached is None:
        cached = count(usage.get("cached_tokens"), flag)
    reasoning = count(obj(usage.get("completion_tokens_details")).get("reasoning_tokens"), flag)
    if reasoning is None:
        reasoning = count(usage.get("reasoning_tokens"), flag)

    kong_provider = text(meta.get("provider_name")).lower()
    provider = registry.KONG_PROVIDERS.get(kong_provider, kong_provider if kong_provider not in ("unspecified",) else "")
    model = text(meta.get("response_model"))
    if model in _UNSET:
        model = text(meta.get("request_model"))
        if model in _UNSET:
            model = ""
    note = notes.KONG_EXCLUDES_CACHE if provider in registry.KONG_EXCLUDES_CACHE else ""
    base = provider_record(
        input_tokens=prompt,
        output_tokens=completion,
        cached=cached,
        reasoning=reasoning,
        model=model,
        note=note,
        invalid=flag.bad,
    )
    return UsageRecord(
        UsageSource.KONG_AI_PROXY,
        provider=provider,
        api_family="",
        input_tokens=base.input_tokens,
        cached_input_tokens=base.cached_input_tokens,
        output_tokens=base.output_tokens,
        reasoning_tokens=base.reasoning_tokens,
        served_model=base.served_model,
        note=base.note,
    )
