"""Amazon Bedrock Runtime: Converse / ConverseStream and InvokeModel / InvokeModelWithResponseStream.

Converse arithmetic (``usage``, a ``TokenUsage``; ``inputTokens`` EXCLUDES the cache)::

    input_tokens             = usage.inputTokens + usage.cacheReadInputTokens + usage.cacheWriteInputTokens
    cached_input_tokens      = usage.cacheReadInputTokens     # subset
    cache_write_input_tokens = usage.cacheWriteInputTokens    # subset
    output_tokens            = usage.outputTokens

e.g. ``input 7520  # 18 + 0 cache read + 7502 cache write``. Billable extra
``cache_write_1h_tokens`` (subset of the write) sums ``usage.cacheDetails``
entries with ``ttl: "1h"``. ``service_tier`` is ``serviceTier.type``.

ConverseStream answers in AWS binary event-stream
(``application/vnd.amazon.eventstream``, decoded by ``.._eventstream`` with both
CRCs checked); the final ``metadata`` event's payload has ``usage``,
``metrics`` and maybe ``serviceTier``. No ``metadata`` event (or a frame cut
short) means ``stream-truncated``; a CRC failure stops the walk and adds
``eventstream-crc-mismatch``.

InvokeModel: Bedrock reports the counts in response headers
``X-Amzn-Bedrock-Input-Token-Count`` / ``X-Amzn-Bedrock-Output-Token-Count``
(plus ``X-Amzn-Bedrock-Cache-Read-Input-Token-Count`` /
``X-Amzn-Bedrock-Cache-Write-Input-Token-Count`` with prompt caching; the input
count excludes them, as in Converse). Headers win; without them the native body
is read: Anthropic-shaped ``usage`` (see ``.anthropic_messages``), Nova-shaped
``usage.inputTokens``, ``amazon-bedrock-invocationMetrics``, Llama's
``prompt_token_count`` / ``generation_token_count``, Titan's
``inputTextTokenCount`` / ``results[].tokenCount``, or OpenAI-shaped ``usage``.
InvokeModelWithResponseStream sends ``chunk`` events whose ``bytes`` are
base64 native events; the last one carries ``amazon-bedrock-invocationMetrics``
(``inputTokenCount``, ``outputTokenCount``, and cache counts when caching),
which are used; failing that, Anthropic ``message_start`` / ``message_delta``
chunks are combined as in ``.anthropic_messages``.

Model: none in the response; the dispatcher takes the URL's model id,
normalizing inference profiles and ARNs to the base model id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .. import _eventstream, notes
from .._values import Invalid, count, header_count, obj, text
from ..record import UsageRecord
from . import anthropic_messages, openai_chat
from ._common import none_record, provider_record

_H_IN = "x-amzn-bedrock-input-token-count"
_H_OUT = "x-amzn-bedrock-output-token-count"
_H_READ = "x-amzn-bedrock-cache-read-input-token-count"
_H_WRITE = "x-amzn-bedrock-cache-write-input-token-count"
_METRICS = "amazon-bedrock-invocationMetrics"


def _record(
    plain: int | None,
    read: int | None,
    write: int | None,
    output: int | None,
    *,
    extras: dict[str, int] | None = None,
    tier: str = "",
    note: str = "",
    invalid: bool = False,
) -> UsageRecord:
    total = None if plain is None else plain + (read or 0) + (write or 0)
    return provider_record(
        input_tokens=total,
        cached=read,
        cache_write=write,
        output_tokens=output,
        extras=extras,
        tier=tier,
        note=note,
        invalid=invalid,
    )


def from_token_usage(usage: Any, *, tier: str = "", note: str = "") -> UsageRecord:
    """A Converse ``TokenUsage`` (also Nova's InvokeModel ``usage``, whose cache keys end in ``Count``)."""
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, tier=tier, note=note)
    flag = Invalid()
    read = count(usage.get("cacheReadInputTokens"), flag)
    if read is None:
        read = count(usage.get("cacheReadInputTokenCount"), flag)
    write = count(usage.get("cacheWriteInputTokens"), flag)
    if write is None:
        write = count(usage.get("cacheWriteInputTokenCount"), flag)
    one_hour = 0
    details = usage.get("cacheDetails")
    if isinstance(details, list):
        for d in details:
            if isinstance(d, Mapping) and d.get("ttl") == "1h":
                one_hour += count(d.get("inputTokens"), flag) or 0
    return _record(
        count(usage.get("inputTokens"), flag),
        read,
        write,
        count(usage.get("outputTokens"), flag),
        extras={notes.CACHE_WRITE_1H_TOKENS: one_hour},
        tier=tier,
        note=note,
        invalid=flag.bad,
    )


def _tier(doc: Mapping[str, Any]) -> str:
    return text(obj(doc.get("serviceTier")).get("type"))


def _from_metrics(metrics: Mapping[str, Any], note: str = "") -> UsageRecord:
    flag = Invalid()
    return _record(
        count(metrics.get("inputTokenCount"), flag),
        count(metrics.get("cacheReadInputTokenCount"), flag),
        count(metrics.get("cacheWriteInputTokenCount"), flag),
        count(metrics.get("outputTokenCount"), flag),
        note=note,
        invalid=flag.bad,
    )


def _lower(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    if all(k == k.lower() for k in headers):
        return headers
    return {k.lower(): v for k, v in headers.items()}


def from_headers(headers: Mapping[str, Any]) -> UsageRecord | None:
    """InvokeModel's header counts, or None when Bedrock sent none."""
    if not headers:
        return None
    h = _lower(headers)
    if _H_IN not in h and _H_OUT not in h:
        return None
    flag = Invalid()
    return _record(
        header_count(h.get(_H_IN), flag),
        header_count(h.get(_H_READ), flag),
        header_count(h.get(_H_WRITE), flag),
        header_count(h.get(_H_OUT), flag),
        invalid=flag.bad,
    )


def parse(body: bytes, *, stream: bool, headers: Mapping[str, Any] | None = None) -> UsageRecord:
    if _eventstream.looks_like_eventstream(body) or (stream and not body[:64].lstrip().startswith(b"{")):
        return parse_stream(body)
    header_record = from_headers(headers or {})
    doc: Any = None
    if body.strip():
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
    if header_record is not None:
        h = _lower(headers or {})
        if isinstance(doc, Mapping) and _H_READ not in h and _H_WRITE not in h:
            # Headers without cache counts: a native body that agrees on the plain input count
            # and reports cache tokens is the same metering with more detail.
            body_record = from_native(doc)
            plain = header_count(h.get(_H_IN))
            usage = obj(doc.get("usage"))
            body_plain = count(usage.get("input_tokens", usage.get("inputTokens")))
            if body_record.input_tokens is not None and body_plain == plain and body_record.output_tokens == header_record.output_tokens:
                return body_record
        return header_record
    if doc is None:
        return none_record(notes.MALFORMED if body.strip() else notes.NO_USAGE)
    if not isinstance(doc, dict):
        return none_record(notes.MALFORMED)
    return from_native(doc)


def from_native(doc: Mapping[str, Any], *, note: str = "") -> UsageRecord:
    """A Converse response or an InvokeModel native body."""
    usage = doc.get("usage")
    if isinstance(usage, Mapping):
        if "inputTokens" in usage or "outputTokens" in usage:
            return from_token_usage(usage, tier=_tier(doc), note=note)
        if "input_tokens" in usage:
            return anthropic_messages.from_usage(usage, note=note)
        if "prompt_tokens" in usage:
            return openai_chat.from_usage(usage, note=note)
    metrics = doc.get(_METRICS)
    if isinstance(metrics, Mapping):
        return _from_metrics(metrics, note)
    flag = Invalid()
    if "prompt_token_count" in doc or "generation_token_count" in doc:  # Meta Llama
        return _record(count(doc.get("prompt_token_count"), flag), None, None, count(doc.get("generation_token_count"), flag), note=note, invalid=flag.bad)
    if "inputTextTokenCount" in doc:  # Amazon Titan
        results = doc.get("results")
        out = None
        if isinstance(results, list):
            out = sum(count(obj(r).get("tokenCount"), flag) or 0 for r in results)
        return _record(count(doc.get("inputTextTokenCount"), flag), None, None, out, note=note, invalid=flag.bad)
    return none_record(notes.join(note, notes.NO_USAGE))


def _chunk_json(payload: bytes) -> Mapping[str, Any] | None:
    try:
        outer = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(outer, Mapping):
        return None
    raw = outer.get("bytes")
    if not isinstance(raw, str):
        return None
    try:
        inner = json.loads(base64.b64decode(raw, validate=False))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    return inner if isinstance(inner, Mapping) else None


_TAIL = 6  # metadata / the metrics chunk are the last frames; look no further back than this


def _read_json(msg: _eventstream.Message, bad: list[str]) -> Any:
    if not msg.crc_ok():
        bad.append(notes.EVENTSTREAM_CRC)
        return None
    try:
        return json.loads(msg.payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        bad.append(notes.MALFORMED)
        return None


def parse_stream(body: bytes) -> UsageRecord:
    decoded = _eventstream.decode(body)
    bad: list[str] = []
    if decoded.crc_error:
        bad.append(notes.EVENTSTREAM_CRC)
    if decoded.malformed:
        bad.append(notes.MALFORMED)
    messages = decoded.messages
    tail = messages[-_TAIL:]
    if any(m.message_type == "exception" for m in tail):
        bad.append(notes.UPSTREAM_ERROR)

    # ConverseStream: the metadata event is the last one.
    for msg in reversed(tail):
        if msg.event_type == "metadata":
            doc = _read_json(msg, bad)
            if isinstance(doc, Mapping):
                note = notes.join(*bad, notes.STREAM_TRUNCATED if decoded.truncated else "")
                return from_token_usage(doc.get("usage"), tier=_tier(doc), note=note)
            break

    # InvokeModelWithResponseStream: base64 native chunks, invocation metrics on the last.
    if any(m.event_type == "chunk" for m in tail):
        natives: list[Mapping[str, Any]] = []
        for msg in reversed(tail):
            if msg.event_type != "chunk" or not msg.crc_ok():
                continue
            inner = _chunk_json(msg.payload)
            if inner is None:
                continue
            metrics = inner.get(_METRICS)
            if isinstance(metrics, Mapping):
                note = notes.join(*bad, notes.STREAM_TRUNCATED if decoded.truncated else "")
                return _from_metrics(metrics, note)
            natives.append(inner)
        natives.reverse()
        # No metrics: combine Anthropic's own message_start (first chunk) and message_delta events.
        first = _chunk_json(messages[0].payload) if messages and messages[0].event_type == "chunk" else None
        start = first if isinstance(first, Mapping) and first.get("type") == "message_start" else None
        deltas = [n for n in natives if n.get("type") == "message_delta"]
        truncated = decoded.truncated or not any(n.get("type") == "message_stop" for n in natives)
        note = notes.join(*bad, notes.STREAM_TRUNCATED if truncated else "")
        if start is not None or deltas:
            return anthropic_messages.from_stream_events(start, deltas, note=note)
        return none_record(notes.join(note, notes.NO_USAGE))

    return none_record(notes.join(*bad, notes.STREAM_TRUNCATED, notes.NO_USAGE))
