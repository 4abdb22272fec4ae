"""Adapter paths the fixture corpus does not reach, each with its arithmetic in a comment."""

from __future__ import annotations

import base64
import json

from ai_chargeback_plugin.usage import Exchange, UsageSource, parse_usage
from ai_chargeback_plugin.usage._eventstream import encode_event


def test_cohere_v1_ndjson_stream_end() -> None:
    lines = [
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g"},
        {"is_finished": False, "event_type": "text-generation", "text": "Hi"},
        {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
         "response": {"text": "Hi", "meta": {"billed_units": {"input_tokens": 12, "output_tokens": 2}, "tokens": {"input_tokens": 80, "output_tokens": 2}}}},
    ]  # fmt: skip
    body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    rec = parse_usage(Exchange("/v1/chat", body, content_type="application/stream+json", requested_model="command-r"))
    assert (rec.input_tokens, rec.output_tokens) == (12, 2)  # billed_units, not tokens (80)
    assert rec.streaming and rec.served_model == "command-r"


def test_cohere_tokens_fallback_is_noted() -> None:
    body = json.dumps({"usage": {"tokens": {"input_tokens": 70, "output_tokens": 9}}}).encode()
    rec = parse_usage(Exchange("/v2/chat", body))
    assert (rec.input_tokens, rec.output_tokens) == (70, 9)
    assert rec.note == "cohere-unbilled-tokens"


def test_cohere_stream_without_message_end() -> None:
    body = b'event: message-start\ndata: {"type":"message-start","id":"x"}\n\n'
    rec = parse_usage(Exchange("/v2/chat", body, content_type="text/event-stream"))
    assert rec.source is UsageSource.NONE and rec.note == "stream-truncated,no-usage"


def test_bedrock_invoke_stream_without_metrics_uses_anthropic_events() -> None:
    def chunk(obj: dict) -> bytes:
        return encode_event("chunk", json.dumps({"bytes": base64.b64encode(json.dumps(obj).encode()).decode()}).encode())

    body = b"".join(
        [
            chunk({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 30, "cache_read_input_tokens": 70, "output_tokens": 1}}}),
            chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}),
            chunk({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            chunk({"type": "message_stop"}),
        ]
    )
    rec = parse_usage(
        Exchange("/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream", body, content_type="application/vnd.amazon.eventstream")
    )
    assert rec.input_tokens == 100  # 30 + 70 cache read + 0 cache write (Anthropic arithmetic inside Bedrock chunks)
    assert rec.output_tokens == 9  # last message_delta
    assert rec.served_model == "anthropic.claude-3-haiku-20240307-v1:0" and rec.note == ""


def test_bedrock_invoke_llama_and_nova_bodies() -> None:
    llama = json.dumps({"generation": "Hi", "prompt_token_count": 11, "generation_token_count": 3, "stop_reason": "stop"}).encode()
    rec = parse_usage(Exchange("/model/meta.llama3-8b-instruct-v1:0/invoke", llama))
    assert (rec.input_tokens, rec.output_tokens) == (11, 3)
    nova = json.dumps(
        {
            "output": {"message": {"content": [{"text": "Hi"}]}},
            "usage": {"inputTokens": 5, "outputTokens": 2, "cacheReadInputTokenCount": 100, "cacheWriteInputTokenCount": 0},
        }
    ).encode()
    rec = parse_usage(Exchange("/model/us.amazon.nova-lite-v1:0/invoke", nova))
    assert rec.input_tokens == 105  # 5 + 100 cache read + 0 cache write
    assert rec.served_model == "amazon.nova-lite-v1:0"


def test_gemini_cut_array_stream_counts_what_arrived() -> None:
    chunks = [
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1},
            "modelVersion": "gemini-2.0-flash",
        },
        {
            "candidates": [{"content": {"parts": [{"text": "b"}]}}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
            "modelVersion": "gemini-2.0-flash",
        },
    ]
    body = ("[" + ",\r\n".join(json.dumps(c) for c in chunks) + ',\r\n{"candidates": [{"conte').encode()
    rec = parse_usage(Exchange("/v1beta/models/gemini-2.0-flash:streamGenerateContent", body, content_type="application/json"))
    assert (rec.input_tokens, rec.output_tokens) == (4, 2)  # last complete chunk, cumulative
    assert rec.note == "stream-truncated" and rec.streaming


def test_openai_chat_stream_multiline_data_falls_back_to_full_parser() -> None:
    usage = '{"model":"m","choices":[],\ndata: "usage":{"prompt_tokens":3,"completion_tokens":4}}'
    body = f"data: {usage}\n\ndata: [DONE]\n\n".encode()
    rec = parse_usage(Exchange("/v1/chat/completions", body, content_type="text/event-stream"))
    assert (rec.input_tokens, rec.output_tokens) == (3, 4)  # one event split over two data: lines


def test_responses_failed_without_usage() -> None:
    failed = {"type": "response.failed", "response": {"id": "r", "model": "gpt-5", "status": "failed", "error": {"code": "server_error"}, "usage": None}}
    body = f"event: response.failed\ndata: {json.dumps(failed)}\n\n".encode()
    rec = parse_usage(Exchange("/v1/responses", body, content_type="text/event-stream"))
    assert rec.source is UsageSource.NONE and rec.note == "no-usage" and rec.served_model == "gpt-5"


def test_ollama_stream_error_line() -> None:
    body = b'{"model":"llama3.2","message":{"content":"a"},"done":false}\n{"error":"model runner has unexpectedly stopped"}\n'
    rec = parse_usage(Exchange("/api/chat", body, content_type="application/x-ndjson"))
    assert rec.source is UsageSource.NONE and rec.note == "upstream-error,stream-truncated,no-usage"
    assert rec.served_model == "llama3.2"


def test_ollama_embed() -> None:
    body = json.dumps({"model": "all-minilm", "embeddings": [[0.01, -0.02]], "total_duration": 14143917, "prompt_eval_count": 8}).encode()
    rec = parse_usage(Exchange("/api/embed", body))
    assert (rec.api_family, rec.input_tokens, rec.output_tokens) == ("ollama.embed", 8, 0)
