"""Unit tests for the shared helpers: detection, model ids, decoding, SSE scanning, AWS event-stream."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest

from ai_chargeback_plugin.usage import Exchange, _decode, _eventstream, _sse, detect_family, parse_usage, sniff_family
from ai_chargeback_plugin.usage.detect import bedrock_base_model, model_from_path


@pytest.mark.parametrize(
    ("path", "host", "expected"),
    [
        ("/v1/chat/completions", "", ("openai", "openai.chat")),
        ("/v1/chat/completions", "api.openai.com", ("openai", "openai.chat")),
        ("/v1/chat/completions", "vllm.ml.svc:8000", ("openai-compatible", "openai.chat")),
        ("/v1/chat/completions", "ollama:11434", ("ollama", "openai.chat")),
        ("/v1/chat/completions", "api.mistral.ai", ("mistral", "openai.chat")),
        ("/openai/deployments/d1/chat/completions?api-version=2024-10-21", "x.openai.azure.com", ("azure", "openai.chat")),
        ("/openai/deployments/d1/embeddings?api-version=2024-10-21", "", ("azure", "openai.embeddings")),
        ("/openai/v1/responses", "x.cognitiveservices.azure.com", ("azure", "openai.responses")),
        ("/v1/responses", "", ("openai", "openai.responses")),
        ("/v1/responses/resp_123", "", ("", "")),  # retrieval: billing it again would double count
        ("/v1/chat/completions/chatcmpl-1", "", ("", "")),
        ("/v1/completions", "", ("openai", "openai.completions")),
        ("/v1/messages", "api.anthropic.com", ("anthropic", "anthropic.messages")),
        ("/v1/messages/count_tokens", "", ("", "")),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "", ("gemini", "gemini.generate_content")),
        ("/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:streamGenerateContent", "", ("vertex", "gemini.generate_content")),
        ("/v1/projects/p/locations/l/publishers/anthropic/models/claude-x:streamRawPredict", "", ("vertex", "anthropic.messages")),
        ("/model/anthropic.claude-v2/invoke", "", ("bedrock", "bedrock.invoke")),
        ("/model/x/invoke-with-response-stream", "", ("bedrock", "bedrock.invoke")),
        ("/model/x/converse-stream", "bedrock-runtime.us-east-1.amazonaws.com", ("bedrock", "bedrock.converse")),
        ("/v2/chat", "", ("cohere", "cohere.chat")),
        ("/api/chat", "", ("ollama", "ollama.chat")),
        ("/api/generate", "", ("ollama", "ollama.generate")),
        ("/route/x", "", ("", "")),
    ],
)
def test_detect_family(path: str, host: str, expected: tuple[str, str]) -> None:
    assert detect_family(path, host=host) == expected


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1%3A0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("eu.meta.llama3-2-1b-instruct-v1:0", "meta.llama3-2-1b-instruct-v1:0"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("apac.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2", "anthropic.claude-v2"),
        ("arn%3Aaws%3Abedrock%3Aus-west-2%3A123%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("arn:aws:bedrock:us-east-1:123:application-inference-profile/a1b2c3", "application-inference-profile/a1b2c3"),
        ("amazon.titan-text-express-v1", "amazon.titan-text-express-v1"),
    ],
)
def test_bedrock_base_model(model_id: str, base: str) -> None:
    assert bedrock_base_model(model_id) == base


def test_model_from_path() -> None:
    assert model_from_path("/v1beta/models/gemini-2.5-flash:generateContent?key=x") == "gemini-2.5-flash"
    assert model_from_path("/model/us.amazon.nova-lite-v1%3A0/converse") == "amazon.nova-lite-v1:0"
    assert model_from_path("/openai/deployments/prod/chat/completions", deployment_models={"prod": "gpt-4o"}) == "gpt-4o"
    assert model_from_path("/openai/deployments/prod/chat/completions") == ""


def test_decode_codings_and_caps() -> None:
    raw = b'{"a": 1}' * 100
    assert _decode.decode(gzip.compress(raw), "gzip", 10_000) == (raw, "")
    assert _decode.decode(zlib.compress(raw), "deflate", 10_000) == (raw, "")
    raw_deflate = zlib.compressobj(wbits=-15)
    assert _decode.decode(raw_deflate.compress(raw) + raw_deflate.flush(), "deflate", 10_000) == (raw, "")
    assert _decode.decode(brotli.compress(raw), "br", 10_000) == (raw, "")
    assert _decode.decode(brotli.compress(gzip.compress(raw)), "gzip, br", 10_000) == (raw, "")
    assert _decode.decode(gzip.compress(raw) + gzip.compress(raw), "gzip", 10_000) == (raw + raw, "")
    assert _decode.decode(gzip.compress(raw), "gzip", 100) == (None, "body-too-large")
    assert _decode.decode(brotli.compress(b"x" * 1_000_000), "br", 1000) == (None, "body-too-large")
    assert _decode.decode(b"not gzip", "gzip", 1000) == (None, "decode-error")
    assert _decode.decode(raw, "compress", 10_000) == (None, "unsupported-encoding")
    assert _decode.decode(raw, "", 10) == (None, "body-too-large")


def test_stale_content_encoding_on_plain_body() -> None:
    body = json.dumps({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()
    rec = parse_usage(Exchange("/v1/chat/completions", body, content_encoding="gzip"))
    assert (rec.input_tokens, rec.output_tokens) == (1, 2)  # Kong may already have decoded it


def test_sse_scan_ignores_markers_inside_text() -> None:
    buf = b'data: {"text": "say \\"usage\\" now"}\n\ndata: {"usage": {"x": 1}}\n\ndata: [DONE]\n\n'
    events = list(_sse.rfind_events(buf, b'"usage"'))
    assert events == [{"usage": {"x": 1}}]
    assert _sse.has_done(buf)
    assert not _sse.has_done(buf[:-4])
    assert list(_sse.iter_events(b"event: a\ndata: 1\ndata: 2\n\n: comment\ndata: x")) == [("a", "1\n2"), ("", "x")]


def test_eventstream_round_trip_and_errors() -> None:
    frames = [
        _eventstream.encode({":event-type": "metadata", ":message-type": "event", "flag": True, "n": 7, "b": b"\x00\x01"}, b'{"usage":{}}'),
        _eventstream.encode_event("messageStop", b"{}"),
    ]
    decoded = _eventstream.decode(b"".join(frames))
    assert not (decoded.truncated or decoded.crc_error or decoded.malformed)
    assert [m.event_type for m in decoded.messages] == ["metadata", "messageStop"]
    assert decoded.messages[0].headers == {":event-type": "metadata", ":message-type": "event", "flag": True, "n": 7, "b": b"\x00\x01"}
    assert _eventstream.decode(b"".join(frames)[:-3]).truncated
    corrupt = bytearray(frames[0])
    corrupt[20] ^= 1
    lazy = _eventstream.decode(bytes(corrupt))
    assert not lazy.crc_error and not lazy.messages[0].crc_ok()  # message CRC: checked on the frames read
    corrupt[5] ^= 1
    assert _eventstream.decode(bytes(corrupt)).crc_error  # prelude CRC: checked before trusting a length
    assert _eventstream.looks_like_eventstream(frames[0]) and not _eventstream.looks_like_eventstream(b'{"a": 1}' * 4)


def test_sniffing_without_a_known_path() -> None:
    chat = json.dumps({"object": "chat.completion", "model": "m", "usage": {"prompt_tokens": 2, "completion_tokens": 3}}).encode()
    assert sniff_family(chat) == ("", "openai.chat")
    rec = parse_usage(Exchange("/my-kong-route", chat))
    assert (rec.api_family, rec.provider, rec.input_tokens) == ("openai.chat", "openai-compatible", 2)
    anth = b'event: message_start\ndata: {"type":"message_start","message":{"model":"c","usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
    assert sniff_family(anth) == ("anthropic", "anthropic.messages")
    assert parse_usage(Exchange("/x", b"plain text")).note == "unknown-api"


def test_pinned_family_wins_over_path() -> None:
    body = json.dumps({"type": "message", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}).encode()
    rec = parse_usage(Exchange("/v1/chat/completions", body, api_family="anthropic.messages", provider="anthropic"))
    assert (rec.provider, rec.api_family, rec.input_tokens) == ("anthropic", "anthropic.messages", 5)


def test_inconsistent_subsets_are_clamped_and_noted() -> None:
    body = json.dumps(
        {
            "model": "m",
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 50},
                "completion_tokens_details": {"reasoning_tokens": 9},
            },
        }
    ).encode()
    rec = parse_usage(Exchange("/v1/chat/completions", body))
    assert (rec.input_tokens, rec.cached_input_tokens, rec.output_tokens, rec.reasoning_tokens) == (10, 10, 5, 5)
    assert rec.note == "inconsistent-counts"


def test_invalid_counts_are_missing_not_zero() -> None:
    body = json.dumps({"model": "m", "usage": {"prompt_tokens": -4, "completion_tokens": "7"}}).encode()
    rec = parse_usage(Exchange("/v1/chat/completions", body))
    assert rec.input_tokens is None and rec.output_tokens is None
    assert rec.note == "invalid-count"  # the reason there is no usage


def test_large_embeddings_fast_path_matches_full_parse() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.125] * 1536} for i in range(3)],
        "model": "text-embedding-3-large",
        "usage": {"prompt_tokens": 33, "total_tokens": 33},
    }
    raw = json.dumps(body).encode()
    rec = parse_usage(Exchange("/v1/embeddings", raw))
    assert (rec.input_tokens, rec.output_tokens, rec.served_model) == (33, 0, "text-embedding-3-large")  # output 0: embeddings generate nothing
    small = parse_usage(Exchange("/v1/embeddings", json.dumps(dict(body, data=[])).encode()))
    assert (small.input_tokens, small.output_tokens, small.served_model) == (33, 0, "text-embedding-3-large")
