"""OpenAI Chat Completions (``/v1/chat/completions``) and everything shaped like it.

Also serves Azure OpenAI, Mistral (``/v1/chat/completions``, ``/v1/fim/completions``),
vLLM and other OpenAI-compatible servers, and Ollama's OpenAI endpoint.

Arithmetic (``usage`` object; every total already includes its details)::

    input_tokens             = usage.prompt_tokens                        # includes cached
    cached_input_tokens      = usage.prompt_tokens_details.cached_tokens   # subset
    cache_write_input_tokens = usage.prompt_tokens_details.cache_write_tokens  # subset
    output_tokens            = usage.completion_tokens                    # includes reasoning
    reasoning_tokens         = usage.completion_tokens_details.reasoning_tokens  # subset

Nothing is ever added to ``prompt_tokens`` or ``completion_tokens``.

Streaming: usage arrives in one chunk (``"choices": []``) before ``data: [DONE]``
when the request had ``stream_options.include_usage``; every other chunk has
``"usage": null``. Mistral sends it in the final chunk without opt-in; vLLM with
``continuous_usage_stats`` repeats cumulative usage on every chunk. All three
are handled by taking the **last chunk whose usage is not null** (never by
looking for empty ``choices``: Azure's first chunk has empty choices and
``"model": ""`` carrying content-filter results). A stream without
``data: [DONE]`` is noted ``stream-truncated``.

Model: the response's ``model`` (the dated snapshot), first non-empty one in a
stream. ``service_tier`` is taken from the response when present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _sse, notes
from .._values import Invalid, count, json_object, obj, text
from ..record import UsageRecord
from ._common import none_record, provider_record


def from_usage(usage: Any, *, model: str = "", tier: str = "", note: str = "") -> UsageRecord:
    """The OpenAI ``CompletionUsage`` arithmetic (also used for OpenAI-shaped Bedrock bodies)."""
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, model=model, tier=tier, note=note)
    flag = Invalid()
    prompt_details = obj(usage.get("prompt_tokens_details"))
    completion_details = obj(usage.get("completion_tokens_details"))
    return provider_record(
        input_tokens=count(usage.get("prompt_tokens"), flag),
        cached=count(prompt_details.get("cached_tokens"), flag),
        cache_write=count(prompt_details.get("cache_write_tokens"), flag),
        output_tokens=count(usage.get("completion_tokens"), flag),
        reasoning=count(completion_details.get("reasoning_tokens"), flag),
        model=model,
        tier=tier,
        note=note,
        invalid=flag.bad,
    )


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    if _sse.is_stream(body, stream):
        return parse_stream(body)
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    return from_usage(doc.get("usage"), model=text(doc.get("model")), tier=text(doc.get("service_tier")))


def _first_model(body: bytes) -> str:
    for event in _sse.find_events(body, b'"model"'):
        model = text(event.get("model"))
        if model:
            return model
    return ""


def parse_stream(body: bytes) -> UsageRecord:
    truncated = not _sse.has_done(body)
    note = notes.STREAM_TRUNCATED if truncated else ""
    bad = [0]
    chunk = None
    for event in _sse.rfind_events(body, b'"usage"', bad):
        if isinstance(event.get("usage"), Mapping):
            chunk = event
            break
    if chunk is None and bad[0] and not truncated:
        # Slow path: a marker line failed to parse (multi-line data events, CR-only line ends...).
        for event in _sse.iter_json_events(body):
            if isinstance(event.get("usage"), Mapping):
                chunk = event
    if chunk is None:
        reason = notes.MALFORMED if bad[0] and not truncated else notes.NO_USAGE
        return none_record(notes.join(note, reason), model=_first_model(body))
    model = text(chunk.get("model")) or _first_model(body)
    tier = text(chunk.get("service_tier"))
    return from_usage(chunk["usage"], model=model, tier=tier, note=note)
