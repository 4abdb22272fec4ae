"""Gemini API and Vertex AI ``generateContent`` / ``streamGenerateContent``.

Arithmetic (``usageMetadata``; ``totalTokenCount`` = prompt + candidates + toolUsePrompt + thoughts)::

    input_tokens        = promptTokenCount + toolUsePromptTokenCount   # prompt includes cachedContentTokenCount
    cached_input_tokens = cachedContentTokenCount                       # subset of promptTokenCount
    output_tokens       = candidatesTokenCount + thoughtsTokenCount     # candidates EXCLUDES thoughts
    reasoning_tokens    = thoughtsTokenCount                            # subset of output

e.g. ``output 1300  # 1000 candidates + 300 thoughts``. Gemini speaks proto3
JSON, which omits zero-valued fields, so once ``usageMetadata`` is present a
missing count means 0 (a blocked prompt has no ``candidatesTokenCount``).
``service_tier`` is Vertex's ``trafficType`` (lower-cased, e.g.
``on_demand`` / ``provisioned_throughput``) when present.

Streaming (``:streamGenerateContent?alt=sse``, or without ``alt=sse`` a JSON
array streamed element by element): each chunk's ``usageMetadata`` is
CUMULATIVE (some models send it only on the last chunk), so the **last** one is
taken, never a sum. A stream whose last chunk has no ``finishReason`` (or an
array that never closes) is noted ``stream-truncated``.

Model: ``modelVersion`` from the response; the dispatcher falls back to the URL's
``models/{model}:`` segment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import _sse, notes
from .._values import Invalid, count, json_object, text
from ..record import UsageRecord
from ._common import none_record, provider_record


def from_metadata(meta: Any, *, model: str = "", note: str = "") -> UsageRecord:
    if not isinstance(meta, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, model=model, note=note)
    flag = Invalid()
    prompt = count(meta.get("promptTokenCount"), flag)
    total = count(meta.get("totalTokenCount"), flag)
    tool_prompt = count(meta.get("toolUsePromptTokenCount"), flag)
    cached = count(meta.get("cachedContentTokenCount"), flag)
    candidates = count(meta.get("candidatesTokenCount"), flag)
    if candidates is None:
        candidates = count(meta.get("responseTokenCount"), flag)
    thoughts = count(meta.get("thoughtsTokenCount"), flag)
    present = prompt is not None or total is not None or candidates is not None
    if not present:
        return provider_record(input_tokens=None, output_tokens=None, model=model, note=note, invalid=flag.bad)
    input_tokens = (prompt or 0) + (tool_prompt or 0)
    output_tokens = (candidates or 0) + (thoughts or 0)
    tier = text(meta.get("trafficType")).lower()
    return provider_record(
        input_tokens=input_tokens,
        cached=cached,
        output_tokens=output_tokens,
        reasoning=thoughts,
        model=model,
        tier=tier,
        note=note,
        invalid=flag.bad,
    )


def _finished(chunk: Mapping[str, Any]) -> bool:
    candidates = chunk.get("candidates")
    if isinstance(candidates, list):
        for c in candidates:
            if isinstance(c, Mapping) and c.get("finishReason"):
                return True
    feedback = chunk.get("promptFeedback")
    return isinstance(feedback, Mapping) and bool(feedback.get("blockReason"))


def _from_chunks(chunks: list[Any], *, truncated: bool) -> UsageRecord:
    note = notes.STREAM_TRUNCATED if truncated else ""
    model = ""
    for chunk in reversed(chunks):
        if isinstance(chunk, Mapping) and text(chunk.get("modelVersion")):
            model = text(chunk.get("modelVersion"))
            break
    for chunk in reversed(chunks):
        if isinstance(chunk, Mapping) and isinstance(chunk.get("usageMetadata"), Mapping):
            return from_metadata(chunk["usageMetadata"], model=text(chunk.get("modelVersion")) or model, note=note)
    return none_record(notes.join(note, notes.NO_USAGE), model=model)


def _parse_array(body: bytes) -> UsageRecord:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    else:
        return _from_chunks(doc, truncated=False) if isinstance(doc, list) else none_record(notes.MALFORMED)
    # A cut-off array: close it after the last complete element.
    end = len(body)
    for _ in range(16):
        end = body.rfind(b"}", 0, end)
        if end < 0:
            break
        try:
            doc = json.loads(body[: end + 1] + b"]")
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if isinstance(doc, list):
            return _from_chunks(doc, truncated=True)
    return none_record(notes.join(notes.STREAM_TRUNCATED, notes.MALFORMED))


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    head = body[:64].lstrip()
    if head.startswith(b"["):
        return _parse_array(body)
    if _sse.is_stream(body, stream):
        return parse_stream(body)
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    return from_metadata(doc.get("usageMetadata"), model=text(doc.get("modelVersion")))


def parse_stream(body: bytes) -> UsageRecord:
    last = _sse.last_data(body)
    last_chunk: Any = None
    if last is not None:
        try:
            last_chunk = json.loads(last)
        except (ValueError, UnicodeDecodeError, RecursionError):
            last_chunk = None
    truncated = not (isinstance(last_chunk, Mapping) and _finished(last_chunk))
    bad = [0]
    chunk = next(
        (e for e in _sse.rfind_events(body, b'"usageMetadata"', bad) if isinstance(e.get("usageMetadata"), Mapping)),
        None,
    )
    if chunk is None and bad[0]:
        chunks = list(_sse.iter_json_events(body))
        return _from_chunks(chunks, truncated=truncated)
    if chunk is None:
        model = text(last_chunk.get("modelVersion")) if isinstance(last_chunk, Mapping) else ""
        return none_record(notes.join(notes.STREAM_TRUNCATED if truncated else "", notes.NO_USAGE), model=model)
    return from_metadata(
        chunk["usageMetadata"],
        model=text(chunk.get("modelVersion")),
        note=notes.STREAM_TRUNCATED if truncated else "",
    )
