"""Ollama's native API: ``/api/chat``, ``/api/generate``, ``/api/embed``.

Arithmetic (final object, ``"done": true``)::

    input_tokens  = prompt_eval_count
    output_tokens = eval_count          # 0 for /api/embed, which generates nothing

Ollama's Go types mark both ``omitempty``, so on a done object a missing count
is 0 — which happens for ``prompt_eval_count`` when the whole prompt was served
from Ollama's KV cache. That record says 0 (what Ollama reported) and carries
the note ``prompt-count-missing`` so a chargeback can tell.

Streaming is NDJSON (``application/x-ndjson``; ``/api/chat`` and
``/api/generate`` stream unless the request says ``"stream": false``): only the
last object, ``"done": true``, carries counts. Without it the stream is
``stream-truncated`` and has no usage.

Model: the response's ``model`` (the same name the request used).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _ndjson, notes
from .._values import Invalid, count, json_object, text
from ..record import UsageRecord
from ._common import none_record, provider_record


def from_final(doc: Mapping[str, Any]) -> UsageRecord:
    flag = Invalid()
    model = text(doc.get("model"))
    prompt = count(doc.get("prompt_eval_count"), flag)
    generated = count(doc.get("eval_count"), flag)
    note = ""
    if prompt is None:
        prompt, note = 0, notes.PROMPT_COUNT_MISSING
    if generated is None:
        generated = 0
    return provider_record(input_tokens=prompt, output_tokens=generated, model=model, note=note, invalid=flag.bad)


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    if _ndjson.looks_like_ndjson(body):
        model, error = "", ""
        for doc in _ndjson.rlines(body):
            if doc.get("done") is True:
                return from_final(doc)
            if "error" in doc and not error:
                error = notes.UPSTREAM_ERROR  # Ollama reports a failure after HTTP 200 as a last {"error": ...} line
                continue
            model = text(doc.get("model"))
            break  # counts only ever sit on the last object
        return none_record(notes.join(error, notes.STREAM_TRUNCATED, notes.NO_USAGE), model=model)
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    if "embeddings" in doc or "embedding" in doc:
        flag = Invalid()
        prompt = count(doc.get("prompt_eval_count"), flag)
        return provider_record(input_tokens=prompt, output_tokens=0 if prompt is not None else None, model=text(doc.get("model")), invalid=flag.bad)
    if doc.get("done") is True:
        return from_final(doc)
    return none_record(notes.NO_USAGE, model=text(doc.get("model")))
