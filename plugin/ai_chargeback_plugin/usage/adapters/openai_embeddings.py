"""OpenAI Embeddings (``/v1/embeddings``; Azure, vLLM and other compatible servers too).

Arithmetic::

    input_tokens  = usage.prompt_tokens   # the only billed count
    output_tokens = 0                     # embeddings produce no tokens (0, not None: the provider's answer is complete)

e.g. ``input 8, output 0``. There is no streaming form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import notes
from .._values import Invalid, count, json_object, text
from ..record import UsageRecord
from ._common import none_record, provider_record

_DECODER = json.JSONDecoder()
_FAST_PATH_BYTES = 8192


def _value_after(body: bytes, key: bytes) -> Any:
    """The JSON value of the last ``"key":`` in ``body``, parsed alone (no full-document parse)."""
    i = body.rfind(key)
    if i < 0:
        return None
    colon = body.find(b":", i + len(key))
    if colon < 0 or body[i + len(key) : colon].strip():
        return None
    tail = body[colon + 1 : colon + 1 + 4096].decode("utf-8", "replace").lstrip()
    try:
        value, _ = _DECODER.raw_decode(tail)
    except (ValueError, RecursionError):
        return None
    return value


def parse(body: bytes, *, stream: bool = False) -> UsageRecord:
    if len(body) > _FAST_PATH_BYTES:
        # Vectors are numbers (or base64 strings): the only "usage" / "model" keys are the top-level ones,
        # so a large response need not be parsed whole.
        usage = _value_after(body, b'"usage"')
        if isinstance(usage, Mapping) and "prompt_tokens" in usage:
            model = _value_after(body, b'"model"')
            return _record(usage, text(model))
    doc = json_object(body)
    if doc is None:
        return none_record(notes.MALFORMED)
    return _record(doc.get("usage"), text(doc.get("model")))


def _record(usage: Any, model: str) -> UsageRecord:
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, model=model)
    flag = Invalid()
    prompt = count(usage.get("prompt_tokens"), flag)
    if prompt is None:
        prompt = count(usage.get("total_tokens"), flag)  # some compatible servers send only the total
    return provider_record(
        input_tokens=prompt,
        output_tokens=0 if prompt is not None else None,
        model=model,
        invalid=flag.bad,
    )
