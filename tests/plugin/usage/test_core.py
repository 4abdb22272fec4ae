"""Core behaviour of the usage package: OpenAI chat, Anthropic, facts, Kong analytics, estimates.

The arithmetic sits in comments beside each expected number.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Any

import msgpack
import pytest
from kong_harness.luaisms import cjson_decode, lua_packb

from ai_chargeback_plugin import usage
from ai_chargeback_plugin.usage import (
    Exchange,
    RequestFacts,
    UsageSource,
    estimate_usage,
    parse_usage,
    prepare_decoded_request,
    prepare_request,
    usage_from_ai_proxy,
)
from ai_chargeback_plugin.usage import estimate as estimate_module


def sse(*chunks: object, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def anthropic_sse(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def test_all_is_sorted_and_complete() -> None:
    assert usage.__all__ == sorted(usage.__all__)
    for name in usage.__all__:
        assert hasattr(usage, name)


# --- OpenAI chat -------------------------------------------------------------


def test_openai_chat_non_streaming_subsets_not_added() -> None:
    body = {
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "service_tier": "default",
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 200},
        },
    }
    rec = parse_usage(Exchange("/v1/chat/completions", json.dumps(body).encode(), content_type="application/json"))
    assert rec.source is UsageSource.PROVIDER
    assert rec.input_tokens == 1200  # prompt_tokens, already includes the 1024 cached
    assert rec.cached_input_tokens == 1024
    assert rec.output_tokens == 300  # completion_tokens, already includes the 200 reasoning
    assert rec.reasoning_tokens == 200
    assert rec.served_model == "gpt-4o-2024-08-06"
    assert rec.service_tier == "default"
    assert (rec.provider, rec.api_family, rec.streaming) == ("openai", "openai.chat", False)


def test_openai_chat_stream_azure_empty_first_chunk() -> None:
    body = sse(
        {"object": "chat.completion.chunk", "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
        {"object": "chat.completion.chunk", "model": "gpt-4o-2024-11-20", "choices": [{"delta": {"content": "Hi"}}], "usage": None},
        {
            "object": "chat.completion.chunk",
            "model": "gpt-4o-2024-11-20",
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )
    rec = parse_usage(
        Exchange("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", body, content_type="text/event-stream", host="acme.openai.azure.com")
    )
    assert (rec.input_tokens, rec.output_tokens) == (10, 5)
    assert rec.provider == "azure" and rec.streaming and rec.note == ""
    assert rec.served_model == "gpt-4o-2024-11-20"


def test_openai_chat_stream_without_usage_is_none() -> None:
    body = sse({"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"delta": {"content": "x"}}]})
    rec = parse_usage(Exchange("/v1/chat/completions", body, content_type="text/event-stream"))
    assert rec.source is UsageSource.NONE and rec.note == "no-usage"
    assert rec.served_model == "gpt-4o"


def test_openai_chat_stream_truncated_before_usage() -> None:
    body = sse({"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"delta": {"content": "x"}}], "usage": None}, done=False)
    rec = parse_usage(Exchange("/v1/chat/completions", body[:-3], content_type="text/event-stream"))
    assert rec.source is UsageSource.NONE
    assert "stream-truncated" in rec.note.split(",")


def test_gzip_body() -> None:
    body = json.dumps({"model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
    rec = parse_usage(Exchange("/v1/chat/completions", gzip.compress(body), content_encoding="gzip"))
    assert (rec.input_tokens, rec.output_tokens) == (3, 4)


def test_gzip_bomb_stops_at_cap() -> None:
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    rec = parse_usage(Exchange("/v1/chat/completions", bomb, content_encoding="gzip"), max_body_bytes=100_000)
    assert rec.source is UsageSource.NONE and rec.note == "body-too-large"


# --- Anthropic ----------------------------------------------------------------


def test_anthropic_non_streaming_adds_cache_to_input() -> None:
    body = {
        "type": "message",
        "model": "claude-sonnet-4-5-20250929",
        "usage": {
            "input_tokens": 800,
            "cache_read_input_tokens": 150,
            "cache_creation_input_tokens": 50,
            "output_tokens": 120,
            "service_tier": "standard",
        },
    }
    rec = parse_usage(Exchange("/v1/messages", json.dumps(body).encode()))
    assert rec.input_tokens == 1000  # 800 + 150 cache read + 50 cache write
    assert rec.cached_input_tokens == 150
    assert rec.cache_write_input_tokens == 50
    assert rec.output_tokens == 120
    assert rec.service_tier == "standard"


def test_anthropic_stream_deltas_are_cumulative_never_summed() -> None:
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 800, "cache_read_input_tokens": 150, "cache_creation_input_tokens": 50, "output_tokens": 1},
        },
    }
    body = anthropic_sse(
        start,
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 'say "usage" and "message_delta"'}},
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 40, "server_tool_use": {"web_search_requests": 1}}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 95, "server_tool_use": {"web_search_requests": 2}}},
        {"type": "message_stop"},
    )
    rec = parse_usage(Exchange("/v1/messages", body, content_type="text/event-stream"))
    assert rec.input_tokens == 1000  # 800 + 150 cache read + 50 cache write, from message_start
    assert rec.output_tokens == 95  # last message_delta (cumulative), not 1 + 40 + 95
    assert dict(rec.billable_extras) == {"web_search_requests": 2}  # cumulative too, not 1 + 2
    assert rec.note == ""


def test_anthropic_stream_zero_input_at_start_overwritten() -> None:
    body = anthropic_sse(
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 0, "output_tokens": 0}}},
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 900, "cache_read_input_tokens": 100, "output_tokens": 70}},
        {"type": "message_stop"},
    )
    rec = parse_usage(Exchange("/v1/messages", body, content_type="text/event-stream"))
    assert rec.input_tokens == 1000  # 900 + 100 cache read, both from message_delta
    assert rec.output_tokens == 70


# --- prepare_request ----------------------------------------------------------


def test_injects_include_usage_only_when_streaming() -> None:
    raw = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.1}'
    facts, new = prepare_request("/v1/chat/completions", raw)
    assert facts.usage_injected and facts.streaming and not facts.client_requested_usage
    assert new is not None
    doc = json.loads(new)
    assert doc["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in doc.items() if k != "stream_options"} == json.loads(raw)
    assert new.endswith(raw[1:])  # every other byte as the client sent it

    facts, new = prepare_request("/v1/chat/completions", b'{"model":"gpt-4o","stream":false}')
    assert new is None and not facts.usage_injected and not facts.streaming


def test_no_injection_when_client_asked() -> None:
    facts, new = prepare_request("/v1/chat/completions", b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}')
    assert new is None and facts.client_requested_usage and not facts.usage_injected


def test_injection_merges_existing_stream_options() -> None:
    facts, new = prepare_request("/v1/chat/completions", b'{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}')
    assert new is not None and facts.usage_injected
    assert json.loads(new)["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@pytest.mark.parametrize(
    ("path", "host", "body"),
    [
        ("/v1/messages", "", b'{"model":"claude","stream":true}'),  # Anthropic reports usage itself
        ("/v1/responses", "", b'{"model":"gpt-4o","stream":true}'),  # Responses too
        ("/v1/chat/completions", "api.mistral.ai", b'{"model":"mistral-large","stream":true}'),  # Mistral: final chunk
        ("/openai/deployments/d/chat/completions?api-version=2024-06-01", "x.openai.azure.com", b'{"stream":true}'),  # too old
    ],
)
def test_no_injection_where_it_does_not_belong(path: str, host: str, body: bytes) -> None:
    facts, new = prepare_request(path, body, host=host)
    assert new is None and not facts.usage_injected and facts.streaming


def test_prepare_request_never_raises_on_junk() -> None:
    for body in (None, b"", b"\xff\xfe", b"[1,2]", b"{", b"x" * 100):
        facts, new = prepare_request("/v1/chat/completions", body)
        assert new is None and facts.api_family == "openai.chat"
    facts, new = prepare_request("/v1/chat/completions", b'{"stream":true}' + b" " * 100, max_body_bytes=10)
    assert new is None and not facts.streaming


def _as_kong_sends(body: bytes) -> Any:
    """kong.request.get_body's answer as the plugin server receives it: cjson, then lua-MessagePack."""
    return msgpack.unpackb(lua_packb(cjson_decode(body)), raw=False, strict_map_key=False, unicode_errors="replace")


_TOOL = {"type": "function", "function": {"name": "f", "parameters": {}}}


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi é"}], "tools": [_TOOL]}),
        ("/v1/chat/completions", {"model": "gpt-4o", "stream": True, "stream_options": {}, "messages": []}),
        ("/v1/chat/completions", {"model": "m", "stream": True, "stream_options": {"include_usage": True}}),
        ("/v1/messages", {"model": "claude", "stream": True, "system": [{"type": "text", "text": "s"}],
                          "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 500}]}]}),
        ("/v1/responses", {"model": "gpt-4o", "input": "hello", "stream": None}),
        ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", {"contents": [{"parts": [{"text": "t"}]}]}),
        ("/api/generate", {"model": "llama3", "prompt": "p"}),
        ("/api/chat", {"model": "llama3", "stream": False, "messages": [{"role": "user", "content": "c"}]}),
        ("/model/anthropic.claude-3/invoke-with-response-stream", {"messages": [], "max_tokens": 1.0}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}),
        ("/v1/chat/completions", {}),
    ],
)
def test_a_body_kong_decoded_gives_the_facts_its_raw_bytes_give(path: str, doc: dict[str, Any]) -> None:
    """Auto and estimate modes read bodies through get_body, buffered mode raw: one request, the same facts."""
    body = json.dumps(doc).encode()
    for estimate_prompt, estimate_streaming_prompt in ((False, True), (True, False)):
        raw_facts, _ = prepare_request(path, body, inject_stream_usage=False, estimate_prompt=estimate_prompt,
                                       estimate_streaming_prompt=estimate_streaming_prompt)  # fmt: skip
        decoded_facts = prepare_decoded_request(path, _as_kong_sends(body), estimate_prompt=estimate_prompt,
                                                estimate_streaming_prompt=estimate_streaming_prompt)  # fmt: skip
        if not _has_empty_object(doc):
            assert decoded_facts == raw_facts
            continue
        # {} arrives as an empty Lua table, i.e. an empty array: the same facts, and the
        # prompt estimate counts a tool's empty parameters as "[]": a token apart at most.
        raw_tokens, decoded_tokens = raw_facts.estimated_prompt_tokens, decoded_facts.estimated_prompt_tokens
        assert dataclasses.replace(decoded_facts, estimated_prompt_tokens=raw_tokens) == raw_facts
        assert raw_tokens is None or abs(raw_tokens - (decoded_tokens or 0)) <= 1


def _has_empty_object(value: Any) -> bool:
    if isinstance(value, dict):
        return not value or any(_has_empty_object(v) for v in value.values())
    return isinstance(value, list) and any(_has_empty_object(v) for v in value)


def test_prepare_decoded_request_never_raises_on_what_kong_may_send() -> None:
    for doc in (None, [], [1, 2], "x", 3, {"model": 7, "stream": "yes"}, {"messages": [[[[]]]]}, {"messages": {"a": None}}):
        facts = prepare_decoded_request("/v1/chat/completions", doc, estimate_prompt=True)
        assert facts.api_family == "openai.chat" and not facts.usage_injected


def test_facts_wire_round_trip_and_tolerance() -> None:
    facts = RequestFacts("azure", "openai.chat", "gpt-4o", True, False, True, 42)
    wire = facts.to_wire()
    assert json.loads(json.dumps(wire)) == wire
    assert RequestFacts.from_wire(wire) == facts
    for bad in (None, {}, {"p": 1, "f": ""}, {"p": "", "f": "", "s": "yes"}, "x", [1]):
        assert RequestFacts.from_wire(bad) is None  # type: ignore[arg-type]


# --- Kong ai-proxy ------------------------------------------------------------


def test_usage_from_ai_proxy() -> None:
    serialized = {
        "ai": {
            "proxy": {
                "meta": {"provider_name": "anthropic", "request_model": "claude-x", "response_model": "claude-x-2025"},
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "cost": 0, "time_per_token": 5},
            }
        }
    }
    rec = usage_from_ai_proxy(serialized)
    assert rec is not None and rec.source is UsageSource.KONG_AI_PROXY
    assert (rec.input_tokens, rec.output_tokens, rec.served_model) == (10, 20, "claude-x-2025")
    assert rec.note == "kong-excludes-cache"
    assert usage_from_ai_proxy({}) is None
    assert usage_from_ai_proxy({"ai": {"proxy": {"usage": {"prompt_tokens": 0, "completion_tokens": 0}}}}) is None


# --- estimates ------------------------------------------------------------------


def test_estimate_is_labelled() -> None:
    facts, _ = prepare_request("/v1/chat/completions", b'{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}', estimate_prompt=True)
    assert facts.estimated_prompt_tokens and facts.estimated_prompt_tokens > 0
    body = json.dumps({"model": "gpt-4o", "choices": [{"message": {"role": "assistant", "content": "hello world"}}]}).encode()
    rec = estimate_usage(facts, Exchange("/v1/chat/completions", body))
    assert rec.source is UsageSource.ESTIMATED
    assert rec.input_tokens == facts.estimated_prompt_tokens
    if usage.estimate.tokenizer_available():
        assert rec.output_tokens == 2  # "hello world" in o200k_base
        assert "tokenizer=o200k_base" in rec.note.split(",")
    assert rec.note.startswith("estimated")
    rec = estimate_usage(facts, None)
    assert rec.output_tokens is None and "completion-not-visible" in rec.note


def test_estimate_degrades_to_labelled_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(estimate_module, "_toktok", lambda: None)
    facts, _ = prepare_request("/v1/messages", b'{"model":"claude","messages":[{"role":"user","content":"abcdefgh"}]}', estimate_prompt=True)
    assert facts.estimated_prompt_tokens == 2 + 4 + 3  # 8 ASCII chars / 4 + one message's framing + reply priming
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "\u00e9t\u00e9 abcd"}}
    body = b"event: content_block_delta\ndata: " + json.dumps(delta).encode() + b"\n\n"
    rec = estimate_usage(facts, Exchange("/v1/messages", body, content_type="text/event-stream"))
    assert rec.output_tokens == 2 + 2  # "été abcd": 6 ASCII chars -> (6 + 3) // 4 = 2, plus 2 non-ASCII chars at 1 each
    assert "heuristic-chars" in rec.note.split(",")


def test_prepare_request_more_cases() -> None:
    # Azure on a new API version: injection allowed
    facts, new = prepare_request("/openai/deployments/d/chat/completions?api-version=2024-10-21", b'{"stream":true,"messages":[]}', host="x.openai.azure.com")
    assert new is not None and facts.provider == "azure" and facts.requested_model == "d"
    # Ollama native streams by default; no injection there (counts come on the done object)
    facts, new = prepare_request("/api/chat", b'{"model":"llama3.2","messages":[]}')
    assert facts.streaming and new is None and facts.requested_model == "llama3.2"
    # Gemini: the URL says streaming and names the model
    facts, new = prepare_request("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", b'{"contents":[]}')
    assert facts.streaming and facts.requested_model == "gemini-2.5-flash" and new is None
    # Bedrock: model id from the URL, normalized
    facts, _ = prepare_request("/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream", b'{"messages":[]}')
    assert facts.streaming and facts.requested_model == "anthropic.claude-3-haiku-20240307-v1:0"
    # BOM and whitespace before the object: spliced after the brace
    facts, new = prepare_request("/v1/chat/completions", b'\xef\xbb\xbf  {"stream":true}')
    assert new == b'\xef\xbb\xbf  {"stream_options":{"include_usage":true},"stream":true}'
    # NaN in a body that must be re-serialized: left alone rather than corrupted
    facts, new = prepare_request("/v1/chat/completions", b'{"stream":true,"stream_options":null,"temperature":NaN}')
    assert new is None and not facts.usage_injected
    # include_usage explicitly false: the client opted out, we still need the count
    facts, new = prepare_request("/v1/chat/completions", b'{"stream":true,"stream_options":{"include_usage":false}}')
    assert new is not None and json.loads(new)["stream_options"] == {"include_usage": True}
    # completions too
    facts, new = prepare_request("/v1/completions", b'{"model":"gpt-3.5-turbo-instruct","prompt":"x","stream":true}')
    assert new is not None and facts.api_family == "openai.completions"
    # injection disabled by config
    facts, new = prepare_request("/v1/chat/completions", b'{"stream":true}', inject_stream_usage=False)
    assert new is None and not facts.usage_injected


def test_prompt_estimate_only_for_streaming_requests_when_asked_so() -> None:
    streaming = b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "count me please"}]}'
    plain = streaming.replace(b'"stream": true', b'"stream": false')
    facts, _ = prepare_request("/v1/chat/completions", streaming, provider="openai", estimate_streaming_prompt=True)
    assert facts.streaming and facts.estimated_prompt_tokens and facts.estimated_prompt_tokens > 0
    facts, _ = prepare_request("/v1/chat/completions", plain, provider="openai", estimate_streaming_prompt=True)
    assert not facts.streaming and facts.estimated_prompt_tokens is None
