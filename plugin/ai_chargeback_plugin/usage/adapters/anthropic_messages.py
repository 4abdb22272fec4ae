"""Anthropic Messages (``/v1/messages``; also Claude on Vertex ``:rawPredict`` / ``:streamRawPredict``).

Arithmetic (``usage``; Anthropic's ``input_tokens`` EXCLUDES the cache)::

    input_tokens             = usage.input_tokens
                             + usage.cache_read_input_tokens
                             + usage.cache_creation_input_tokens
    cached_input_tokens      = usage.cache_read_input_tokens        # subset
    cache_write_input_tokens = usage.cache_creation_input_tokens    # subset
    output_tokens            = usage.output_tokens                  # includes thinking
    reasoning_tokens         = usage.output_tokens_details.thinking_tokens  # subset, when reported

e.g. ``input 1000  # 800 + 150 cache read + 50 cache write``. Billable extras:
``web_search_requests`` / ``web_fetch_requests`` from ``usage.server_tool_use``,
``cache_write_1h_tokens`` (subset of the cache write) from
``usage.cache_creation.ephemeral_1h_input_tokens``. ``service_tier`` is
``usage.service_tier``.

Streaming: ``message_start`` carries ``message.usage`` (input, cache, a first
output count) and ``message.model``; each ``message_delta`` carries CUMULATIVE
``usage.output_tokens`` and possibly updated input/cache/server-tool counts.
Server tools produce several ``message_delta`` events: they are never summed.
Input and cache come from ``message_start`` and are overwritten by non-null
values from the message_delta events (taking the larger, since cumulative counts
only grow: this also survives Anthropic-compatible gateways that send
``input_tokens: 0`` at the start and the real value at the end); output is the
last ``message_delta``'s. A stream without ``message_stop`` is noted
``stream-truncated`` and keeps what arrived (message_start's output count is a
lower bound then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import _sse, notes
from .._values import Invalid, count, json_object, obj, text
from ..record import UsageRecord
from ._common import none_record, provider_record

_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _extras(usage: Mapping[str, Any], flag: Invalid) -> dict[str, int]:
    extras: dict[str, int] = {}
    tools = obj(usage.get("server_tool_use"))
    for key, name in (("web_search_requests", notes.WEB_SEARCH_REQUESTS), ("web_fetch_requests", notes.WEB_FETCH_REQUESTS)):
        value = count(tools.get(key), flag)
        if value:
            extras[name] = value
    one_hour = count(obj(usage.get("cache_creation")).get("ephemeral_1h_input_tokens"), flag)
    if one_hour:
        extras[notes.CACHE_WRITE_1H_TOKENS] = one_hour
    return extras


def _record(
    fields: Mapping[str, int | None],
    output: int | None,
    thinking: int | None,
    extras: dict[str, int],
    *,
    model: str,
    tier: str,
    note: str,
    invalid: bool,
) -> UsageRecord:
    plain, read, write = (fields.get(k) for k in _FIELDS)
    total = None if plain is None else plain + (read or 0) + (write or 0)
    return provider_record(
        input_tokens=total,
        cached=read,
        cache_write=write,
        output_tokens=output,
        reasoning=thinking,
        extras=extras,
        model=model,
        tier=tier,
        note=note,
        invalid=invalid,
    )


def from_usage(usage: Any, *, model: str = "", note: str = "") -> UsageRecord:
    """A record from one complete Anthropic ``usage`` object (also used for Bedrock InvokeModel bodies)."""
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, model=model, note=note)
    flag = Invalid()
    fields = {k: count(usage.get(k), flag) for k in _FIELDS}
    return _record(
        fields,
        count(usage.get("output_tokens"), flag),
        count(obj(usage.get("output_tokens_details")).get("thinking_tokens"), flag),
        _extras(usage, flag),
        model=model,
        tier=text(usage.get("service_tier")),
        note=note,
        invalid=flag.bad,
    )


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    if _sse.is_stream(body, stream):
        return parse_stream(body)
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    return from_usage(doc.get("usage"), model=text(doc.get("model")))


def parse_stream(body: bytes) -> UsageRecord:
    tail = body[-2048:]
    truncated = b"message_stop" not in tail
    note = notes.STREAM_TRUNCATED if truncated else ""

    start = _sse.first_match(_sse.find_events(body, b'"message_start"'), lambda e: e.get("type") == "message_start")
    deltas = [e for e in _sse.rfind_events(body, b'"message_delta"') if e.get("type") == "message_delta"]
    deltas.reverse()
    if start is None and not deltas and (b"message_start" in body or b"message_delta" in body):
        events = [e for e in _sse.iter_json_events(body) if e.get("type") in ("message_start", "message_delta")]
        start = next((e for e in events if e.get("type") == "message_start"), None)
        deltas = [e for e in events if e.get("type") == "message_delta"]

    return from_stream_events(start, deltas, note=note)


def from_stream_events(start: Mapping[str, Any] | None, deltas: Sequence[Mapping[str, Any]], *, note: str = "") -> UsageRecord:
    """Combine a ``message_start`` event and the ``message_delta`` events (in stream order).

    Shared with Bedrock InvokeModelWithResponseStream, whose chunks are these same events.
    """
    if start is None and not deltas:
        return none_record(notes.join(note, notes.NO_USAGE))
    flag = Invalid()
    message = obj(start.get("message")) if start else obj(None)
    start_usage = obj(message.get("usage"))
    model = text(message.get("model"))
    fields: dict[str, int | None] = {k: count(start_usage.get(k), flag) for k in _FIELDS}
    output = count(start_usage.get("output_tokens"), flag)
    thinking = count(obj(start_usage.get("output_tokens_details")).get("thinking_tokens"), flag)
    extras = _extras(start_usage, flag)
    tier = text(start_usage.get("service_tier"))

    for delta in deltas:
        usage = obj(delta.get("usage"))
        for key in _FIELDS:
            value = count(usage.get(key), flag)
            if value is not None:
                old = fields[key]
                fields[key] = value if old is None else max(old, value)
        value = count(usage.get("output_tokens"), flag)
        if value is not None:
            output = value
        value = count(obj(usage.get("output_tokens_details")).get("thinking_tokens"), flag)
        if value is not None:
            thinking = value
        delta_extras = _extras(usage, flag)
        if delta_extras:
            extras.update(delta_extras)  # cumulative: the latest value replaces, never adds
        tier = text(usage.get("service_tier")) or tier
    return _record(fields, output, thinking, extras, model=model, tier=tier, note=note, invalid=flag.bad)
