"""OpenAI legacy Completions (``/v1/completions``; also vLLM and Azure).

Same ``CompletionUsage`` arithmetic as chat (see :mod:`.openai_chat`)::

    input_tokens  = usage.prompt_tokens        # includes cached
    output_tokens = usage.completion_tokens    # includes reasoning

Streaming chunks are ``"object": "text_completion"`` with the same
``stream_options.include_usage`` rule and ``data: [DONE]`` terminator, so the
stream logic is shared with chat: the last chunk whose ``usage`` is not null.
"""

from __future__ import annotations

from ..record import UsageRecord
from . import openai_chat


def parse(body: bytes, *, stream: bool) -> UsageRecord:
    return openai_chat.parse(body, stream=stream)
