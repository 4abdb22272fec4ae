"""Property-based tests: whatever the bytes, parsing never raises and never breaks the record's rule.

Invariants checked on every record: counts are None or non-negative ints;
cached + cache-write <= input; reasoning <= output; a subset is never present
without its total; NONE records carry no counts; total_tokens = input + output.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_chargeback_plugin.usage import (
    Exchange,
    RequestFacts,
    UsageRecord,
    UsageSource,
    estimate_usage,
    parse_usage,
    prepare_request,
    usage_from_ai_proxy,
)
from ai_chargeback_plugin.usage.detect import API_FAMILIES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BODIES = sorted(
    p
    for p in FIXTURES.rglob("*")
    if p.is_file() and p.suffix in (".json", ".sse", ".ndjson", ".bin") and not p.name.endswith(".expected.json") and "bomb" not in p.name
)
SAMPLES = [p.read_bytes() for p in BODIES]
PATHS = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
    "/model/anthropic.claude-v2/invoke",
    "/v2/chat",
    "/api/chat",
    "/api/generate",
    "/unknown/route",
]
CONTENT_TYPES = ["", "application/json", "text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream"]
FAMILIES = ["auto", *API_FAMILIES]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(record: UsageRecord) -> None:
    assert isinstance(record, UsageRecord)
    assert isinstance(record.source, UsageSource)
    for name in ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens"):
        value = getattr(record, name)
        assert value is None or (type(value) is int and value >= 0), (name, value)
    if record.cached_input_tokens is not None or record.cache_write_input_tokens is not None:
        assert record.input_tokens is not None
        assert (record.cached_input_tokens or 0) + (record.cache_write_input_tokens or 0) <= record.input_tokens
    if record.reasoning_tokens is not None:
        assert record.output_tokens is not None and record.reasoning_tokens <= record.output_tokens
    if record.source is UsageSource.NONE:
        assert record.input_tokens is None and record.output_tokens is None
    assert record.total_tokens == (record.input_tokens or 0) + (record.output_tokens or 0)
    for key, value in record.billable_extras.items():
        assert isinstance(key, str) and type(value) is int and value > 0
    assert isinstance(record.note, str) and isinstance(record.served_model, str)


# --- random bytes -------------------------------------------------------------------


@SETTINGS
@given(body=st.binary(max_size=2048), path=st.sampled_from(PATHS), ct=st.sampled_from(CONTENT_TYPES), family=st.sampled_from(FAMILIES))
def test_random_bytes(body: bytes, path: str, ct: str, family: str) -> None:
    check(parse_usage(Exchange(path, body, content_type=ct, api_family=family)))


@SETTINGS
@given(body=st.binary(max_size=512), enc=st.sampled_from(["gzip", "deflate", "br", "zstd", "gzip, br", "compress"]))
def test_random_bytes_with_encoding(body: bytes, enc: str) -> None:
    check(parse_usage(Exchange("/v1/chat/completions", body, content_encoding=enc)))


# --- mutated real bodies ------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "cut":
            del data[i:]
        elif op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b"\n", b"data: ", b'"usage":', b"-1", b"null", b"{", b"}", b"\xff", b"1e400", b'"message_delta"', b"[DONE]"]))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 64))]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 256))]
    return bytes(data)


@SETTINGS
@given(body=mutated(), path=st.sampled_from(PATHS), ct=st.sampled_from(CONTENT_TYPES), family=st.sampled_from(FAMILIES))
def test_mutated_fixtures(body: bytes, path: str, ct: str, family: str) -> None:
    check(parse_usage(Exchange(path, body, content_type=ct, api_family=family)))
    check(estimate_usage(None, Exchange(path, body, content_type=ct)))


# --- structurally valid usage with hostile values -------------------------------------------

WEIRD = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
COUNT = st.one_of(st.integers(0, 10**7), WEIRD)


def openai_usage(d: st.DrawFn) -> dict[str, Any]:
    return {
        "prompt_tokens": d(COUNT),
        "completion_tokens": d(COUNT),
        "prompt_tokens_details": {"cached_tokens": d(COUNT), "cache_write_tokens": d(COUNT)},
        "completion_tokens_details": {"reasoning_tokens": d(COUNT)},
    }


@st.composite
def family_body(draw: st.DrawFn) -> tuple[str, str, bytes]:
    kind = draw(
        st.sampled_from(["chat", "chat_stream", "responses", "anthropic", "anthropic_stream", "gemini", "gemini_stream", "converse", "cohere", "ollama"])
    )
    d = draw
    if kind == "chat":
        return "/v1/chat/completions", "application/json", json.dumps({"model": d(WEIRD), "usage": openai_usage(d)}).encode()
    if kind == "chat_stream":
        chunks = [{"model": "m", "choices": [], "usage": None}, {"model": d(WEIRD), "choices": [], "usage": openai_usage(d)}]
        return "/v1/chat/completions", "text/event-stream", b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    if kind == "responses":
        usage = {
            "input_tokens": d(COUNT),
            "output_tokens": d(COUNT),
            "input_tokens_details": {"cached_tokens": d(COUNT)},
            "output_tokens_details": {"reasoning_tokens": d(COUNT)},
        }
        resp = {
            "object": "response",
            "model": "m",
            "usage": usage,
            "output": [{"type": "web_search_call", "action": {"type": "search"}}],
            "tool_usage": {"web_search": {"num_requests": d(COUNT)}},
        }
        return "/v1/responses", "application/json", json.dumps(resp).encode()
    anth = {
        "input_tokens": d(COUNT),
        "cache_read_input_tokens": d(COUNT),
        "cache_creation_input_tokens": d(COUNT),
        "output_tokens": d(COUNT),
        "output_tokens_details": {"thinking_tokens": d(COUNT)},
        "server_tool_use": {"web_search_requests": d(COUNT)},
    }
    if kind == "anthropic":
        return "/v1/messages", "application/json", json.dumps({"type": "message", "model": "m", "usage": anth}).encode()
    if kind == "anthropic_stream":
        events = [{"type": "message_start", "message": {"model": d(WEIRD), "usage": anth}}]
        for _ in range(d(st.integers(0, 3))):
            events.append({"type": "message_delta", "usage": {"output_tokens": d(COUNT), "input_tokens": d(COUNT), "cache_read_input_tokens": d(COUNT)}})
        if d(st.booleans()):
            events.append({"type": "message_stop"})
        return "/v1/messages", "text/event-stream", b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    meta = {
        k: d(COUNT)
        for k in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount", "cachedContentTokenCount", "totalTokenCount")
    }
    if kind == "gemini":
        return "/v1beta/models/g:generateContent", "application/json", json.dumps({"usageMetadata": meta}).encode()
    if kind == "gemini_stream":
        chunk = {"candidates": [{"finishReason": "STOP"}], "usageMetadata": meta}
        return "/v1beta/models/g:streamGenerateContent?alt=sse", "text/event-stream", b"data: " + json.dumps(chunk).encode() + b"\n\n"
    if kind == "converse":
        usage = {k: d(COUNT) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")}
        return "/model/x/converse", "application/json", json.dumps({"output": {}, "stopReason": "end_turn", "usage": usage}).encode()
    if kind == "cohere":
        usage = {"billed_units": {"input_tokens": d(COUNT), "output_tokens": d(COUNT)}, "cached_tokens": d(COUNT)}
        return "/v2/chat", "application/json", json.dumps({"usage": usage}).encode()
    return "/api/chat", "application/json", json.dumps({"model": "m", "done": True, "prompt_eval_count": d(COUNT), "eval_count": d(COUNT)}).encode()


@SETTINGS
@given(case=family_body(), gz=st.booleans())
def test_hostile_values_in_valid_shapes(case: tuple[str, str, bytes], gz: bool) -> None:
    path, ct, body = case
    exchange = Exchange(path, gzip.compress(body) if gz else body, content_type=ct, content_encoding="gzip" if gz else "")
    check(parse_usage(exchange))


@SETTINGS
@given(p=st.integers(0, 10**6), r=st.integers(0, 10**6), w=st.integers(0, 10**6), o=st.integers(0, 10**6))
def test_anthropic_arithmetic_holds_for_any_counts(p: int, r: int, w: int, o: int) -> None:
    body = {"type": "message", "model": "m", "usage": {"input_tokens": p, "cache_read_input_tokens": r, "cache_creation_input_tokens": w, "output_tokens": o}}
    rec = parse_usage(Exchange("/v1/messages", json.dumps(body).encode()))
    assert rec.input_tokens == p + r + w  # input excludes the cache at Anthropic: add both
    assert (rec.cached_input_tokens, rec.cache_write_input_tokens, rec.output_tokens) == (r, w, o)
    assert rec.note == ""


@SETTINGS
@given(p=st.integers(0, 10**6), c=st.integers(0, 10**6), o=st.integers(0, 10**6), t=st.integers(0, 10**6), tool=st.integers(0, 10**6))
def test_gemini_arithmetic_holds_for_any_counts(p: int, c: int, o: int, t: int, tool: int) -> None:
    meta = {"promptTokenCount": p + c, "cachedContentTokenCount": c, "candidatesTokenCount": o, "thoughtsTokenCount": t, "toolUsePromptTokenCount": tool}
    rec = parse_usage(Exchange("/v1beta/models/g:generateContent", json.dumps({"usageMetadata": meta}).encode()))
    assert rec.input_tokens == p + c + tool  # promptTokenCount (cache included) + toolUsePrompt
    assert rec.output_tokens == o + t  # candidates exclude thoughts: add them
    assert (rec.cached_input_tokens, rec.reasoning_tokens) == (c, t)


# --- request side -----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)


@SETTINGS
@given(
    doc=st.dictionaries(st.sampled_from(["model", "messages", "stream", "stream_options", "input", "prompt", "x"]), JSON_VALUES, max_size=6),
    stream=st.sampled_from([None, True, False, "true", 1]),
    path=st.sampled_from(PATHS),
    estimate=st.booleans(),
)
def test_prepare_request_properties(doc: dict[str, Any], stream: Any, path: str, estimate: bool) -> None:
    if stream is not None:
        doc["stream"] = stream
    raw = json.dumps(doc).encode()
    facts, new = prepare_request(path, raw, estimate_prompt=estimate)
    assert isinstance(facts, RequestFacts)
    assert RequestFacts.from_wire(json.loads(json.dumps(facts.to_wire()))) == facts
    if new is None:
        assert not facts.usage_injected
        return
    assert facts.usage_injected and doc.get("stream") is True  # only ever for stream: true
    rewritten = json.loads(new)
    assert rewritten["stream_options"]["include_usage"] is True
    assert {k: v for k, v in rewritten.items() if k != "stream_options"} == {k: v for k, v in doc.items() if k != "stream_options"}
    if isinstance(doc.get("stream_options"), dict):
        assert {k: v for k, v in rewritten["stream_options"].items() if k != "include_usage"} == {
            k: v for k, v in doc["stream_options"].items() if k != "include_usage"
        }


@SETTINGS
@given(body=st.one_of(st.none(), st.binary(max_size=256)), path=st.text(max_size=40), host=st.text(max_size=20))
def test_prepare_request_never_raises(body: bytes | None, path: str, host: str) -> None:
    facts, new = prepare_request(path, body, host=host)
    assert isinstance(facts, RequestFacts)
    assert new is None or isinstance(new, bytes)


@SETTINGS
@given(data=st.one_of(st.none(), JSON_VALUES, st.dictionaries(st.sampled_from(["p", "f", "m", "s", "cu", "ui", "ep", "v"]), JSON_VALUES)))
def test_from_wire_is_tolerant(data: Any) -> None:
    result = RequestFacts.from_wire(data)
    assert result is None or isinstance(result, RequestFacts)


@SETTINGS
@given(
    usage=st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"]), WEIRD),
    meta=st.dictionaries(st.sampled_from(["provider_name", "request_model", "response_model"]), WEIRD),
    ns=st.sampled_from(["proxy", "ai-proxy", "other"]),
)
def test_ai_proxy_tolerant(usage: dict[str, Any], meta: dict[str, Any], ns: str) -> None:
    rec = usage_from_ai_proxy({"ai": {ns: {"usage": usage, "meta": meta}}})
    if rec is not None:
        check(rec)
        assert rec.source is UsageSource.KONG_AI_PROXY
