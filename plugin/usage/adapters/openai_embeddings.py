"""OpenAI Embeddings (``/v1/embeddings``; Azure, vLLM and other compatible servers too).

Arithmetic::

    input_tokens  = usage.prompt_tokens   # the only billed count
    output_tokens = 0                     # embeddings produce no tokens (0, not None: the provider's answer is complete)

e.g. ``input 8, output 0``. There is no streaming form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .. import notes
from .._values import Invalid, count, text
from ..record import UsageRecord
from ._common import none_record, provider_record


def parse(body: bytes, *, stream: bool = False) -> UsageRecord:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return none_record(notes.MALFORMED)
    if not isinstance(doc, dict):
        return none_record(notes.MALFORMED)
    model = text(doc.get("model"))
    usage = doc.get("usage")
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
