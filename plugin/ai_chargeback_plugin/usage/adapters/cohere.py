"""Cohere Chat (v2 ``/v2/chat``; v1 ``/v1/chat`` read too).

Arithmetic (``usage``; ``billed_units`` is what Cohere bills, ``tokens`` is
everything the model processed, including tokens Cohere adds and does not
charge for)::

    input_tokens        = usage.billed_units.input_tokens
    cached_input_tokens = usage.cached_tokens             # prompt tokens that hit the cache, a subset
    output_tokens       = usage.billed_units.output_tokens

e.g. ``input 6772  # billed, not tokens.input_tokens 7596``. Only when a
response has no ``billed_units`` at all is ``tokens`` used, noted
``cohere-unbilled-tokens``. v1 responses carry the same under ``meta``.

Streaming (v2, SSE): the ``message-end`` event's ``delta.usage``; a stream
without it is ``stream-truncated``. v1's NDJSON stream ends with a
``stream-end`` event whose ``response.meta`` holds the counts.

Model: Cohere's chat response names none; the dispatcher uses the request's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _ndjson, _sse, notes
from .._values import Invalid, count, json_object, obj
from ..record import UsageRecord
from ._common import none_record, provider_record

UNBILLED = "cohere-unbilled-tokens"


def from_usage(usage: Any, *, note: str = "") -> UsageRecord:
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, note=note)
    flag = Invalid()
    billed = usage.get("billed_units")
    if isinstance(billed, Mapping):
        source = billed
    elif isinstance(usage.get("tokens"), Mapping):
        source, note = usage["tokens"], notes.join(note, UNBILLED)
    else:
        source = obj(None)
    return provider_record(
        input_tokens=count(source.get("input_tokens"), flag),
        cached=count(usage.get("cached_tokens"), flag),
        output_tokens=count(source.get("output_tokens"), flag),
        note=note,
        invalid=flag.bad,
    )


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    if _sse.looks_like_sse(body):
        return parse_stream(body)
    if _ndjson.looks_like_ndjson(body):
        for event in _ndjson.rlines(body):
            if event.get("event_type") == "stream-end":
                return from_usage(obj(obj(event.get("response")).get("meta")))
        if b'"event_type"' in body[:512]:
            return none_record(notes.join(notes.STREAM_TRUNCATED, notes.NO_USAGE))
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    usage = doc.get("usage")
    if not isinstance(usage, Mapping) and isinstance(doc.get("meta"), Mapping):
        usage = doc["meta"]  # v1
    return from_usage(usage)


def parse_stream(body: bytes) -> UsageRecord:
    bad = [0]
    event = next((e for e in _sse.rfind_events(body, b'"message-end"', bad) if e.get("type") == "message-end"), None)
    if event is None and bad[0]:
        event = next((e for e in _sse.iter_json_events(body) if e.get("type") == "message-end"), None)
    if event is None:
        return none_record(notes.join(notes.STREAM_TRUNCATED, notes.MALFORMED if bad[0] else notes.NO_USAGE))
    return from_usage(obj(event.get("delta")).get("usage"))
