"""OpenAI Responses (``/v1/responses``; Azure OpenAI's too).

Arithmetic (``response.usage``; totals include their details)::

    input_tokens             = usage.input_tokens                              # includes cached
    cached_input_tokens      = usage.input_tokens_details.cached_tokens         # subset
    cache_write_input_tokens = usage.input_tokens_details.cache_write_tokens    # subset
    output_tokens            = usage.output_tokens                             # includes reasoning
    reasoning_tokens         = usage.output_tokens_details.reasoning_tokens     # subset

Billable extras (tool calls are priced per call, on top of tokens):
``web_search_requests`` = ``response.tool_usage.web_search.num_requests`` when
present (OpenAI's own billable count, which leaves out page opens), else the
number of ``web_search_call`` output items whose action is a search;
``file_search_calls`` / ``code_interpreter_calls`` count those output items;
``image_gen_input_tokens`` / ``image_gen_output_tokens`` come from
``tool_usage.image_gen`` (priced apart from the model's tokens, not part of
``usage``). ``service_tier`` is the response's.

Streaming: typed SSE events; the terminal one (``response.completed``,
``response.incomplete`` or ``response.failed``) carries the whole response with
its usage. There is no ``[DONE]``; a stream without a terminal event is noted
``stream-truncated`` (and has no usage: Responses reports it only at the end).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _sse, notes
from .._values import Invalid, count, json_object, obj, text
from ..record import UsageRecord
from ._common import none_record, provider_record

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_TERMINAL_MARKERS = tuple(f'"{t}"'.encode() for t in _TERMINAL)


def _extras(response: Mapping[str, Any], flag: Invalid) -> dict[str, int]:
    extras: dict[str, int] = {}
    searches = file_searches = interpreters = 0
    output = response.get("output")
    if isinstance(output, list):
        for item in output:
            if not isinstance(item, Mapping):
                continue
            kind = item.get("type")
            if kind == "web_search_call":
                action = obj(item.get("action")).get("type")
                if action in (None, "search"):
                    searches += 1
            elif kind == "file_search_call":
                file_searches += 1
            elif kind == "code_interpreter_call":
                interpreters += 1
    tool_usage = obj(response.get("tool_usage"))
    reported = count(obj(tool_usage.get("web_search")).get("num_requests"), flag)
    extras[notes.WEB_SEARCH_REQUESTS] = reported if reported is not None else searches
    extras[notes.FILE_SEARCH_CALLS] = file_searches
    extras[notes.CODE_INTERPRETER_CALLS] = interpreters
    image_gen = obj(tool_usage.get("image_gen"))
    extras[notes.IMAGE_GEN_INPUT_TOKENS] = count(image_gen.get("input_tokens"), flag) or 0
    extras[notes.IMAGE_GEN_OUTPUT_TOKENS] = count(image_gen.get("output_tokens"), flag) or 0
    return extras


def from_response(response: Mapping[str, Any], *, note: str = "") -> UsageRecord:
    model = text(response.get("model"))
    tier = text(response.get("service_tier"))
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return provider_record(input_tokens=None, output_tokens=None, model=model, tier=tier, note=note)
    flag = Invalid()
    in_details = obj(usage.get("input_tokens_details"))
    out_details = obj(usage.get("output_tokens_details"))
    return provider_record(
        input_tokens=count(usage.get("input_tokens"), flag),
        cached=count(in_details.get("cached_tokens"), flag),
        cache_write=count(in_details.get("cache_write_tokens"), flag),
        output_tokens=count(usage.get("output_tokens"), flag),
        reasoning=count(out_details.get("reasoning_tokens"), flag),
        extras=_extras(response, flag),
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
    return from_response(doc)


def _model_from_start(body: bytes) -> str:
    for event in _sse.find_events(body, b'"response"'):
        model = text(obj(event.get("response")).get("model"))
        if model:
            return model
    return ""


def parse_stream(body: bytes) -> UsageRecord:
    best: dict[str, Any] | None = None
    bad = [0]
    for marker in _TERMINAL_MARKERS:  # a stream has one terminal event
        for event in _sse.rfind_events(body, marker, bad):
            if event.get("type") in _TERMINAL and isinstance(event.get("response"), Mapping):
                best = event
                break
        if best is not None:
            break
    if best is None and bad[0]:
        for event in _sse.iter_json_events(body):
            if event.get("type") in _TERMINAL and isinstance(event.get("response"), Mapping):
                best = event
    if best is None:
        reason = notes.MALFORMED if bad[0] else notes.NO_USAGE
        return none_record(notes.join(notes.STREAM_TRUNCATED, reason), model=_model_from_start(body))
    return from_response(best["response"])
