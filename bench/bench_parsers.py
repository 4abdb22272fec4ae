"""Micro-benchmark of the usage parsers on Kong's hot path. Prints one JSON document.

For every API family it builds a realistic non-streaming body and a streaming
body (many small delta events, usage where the provider puts it) at ~1 KB and
~100 KB, then times ``parse_usage`` end to end (family detection, decoding,
adapter, record completion) per response: mean, p50, p99 in microseconds, and
MB/s of body parsed. Targets: p99 < 1 ms at 100 KB; >= 50 MB/s on streams.

    python bench/bench_parsers.py [--quick] [--sizes 1024,102400]

No asserts: the benchmark suite reads the JSON.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from ai_chargeback_plugin.usage import Exchange, parse_usage
from ai_chargeback_plugin.usage._eventstream import encode_event

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "keeps", "running", "through", "the", "forest"]


def _text(n: int) -> str:
    out, i = [], 0
    while sum(len(w) + 1 for w in out) < n:
        out.append(WORDS[i % len(WORDS)])
        i += 1
    return " ".join(out)


def _pieces(size: int, per_event_overhead: int) -> list[str]:
    n = max(1, size // (per_event_overhead + 6))
    return [" " + WORDS[i % len(WORDS)] for i in range(n)]


def _sse(events: list[Any], *, named: bool = False, done: bool = False) -> bytes:
    parts = []
    for e in events:
        data = json.dumps(e, separators=(",", ":"))
        parts.append((f"event: {e['type']}\n" if named else "") + f"data: {data}\n\n")
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


# --- body builders: (path, content_type, body) -----------------------------------------------


def openai_chat_json(size: int) -> tuple[str, str, bytes]:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": _text(size)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500, "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 0}},
            "service_tier": "default"}  # fmt: skip
    return "/v1/chat/completions", "application/json", json.dumps(body).encode()


def openai_chat_sse(size: int) -> tuple[str, str, bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_x"}
    events = [dict(base, choices=[{"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}], usage=None) for w in _pieces(size, 190)]
    events.append(dict(base, choices=[], usage={"prompt_tokens": 19, "completion_tokens": len(events), "total_tokens": 19 + len(events)}))
    return "/v1/chat/completions", "text/event-stream", _sse(events, done=True)


def responses_json(size: int) -> tuple[str, str, bytes]:
    body = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5", "service_tier": "default",
            "output": [{"type": "message", "id": "m", "role": "assistant", "content": [{"type": "output_text", "text": _text(size), "annotations": []}]}],
            "usage": {"input_tokens": 37, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 11, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 48}}  # fmt: skip
    return "/v1/responses", "application/json", json.dumps(body).encode()


def responses_sse(size: int) -> tuple[str, str, bytes]:
    pieces = _pieces(size // 2, 130)
    events: list[Any] = [{"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "model": "gpt-5", "output": [], "usage": None}}]
    events += [
        {"type": "response.output_text.delta", "sequence_number": i, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": w}
        for i, w in enumerate(pieces)
    ]
    _, _, final = responses_json(size // 2)
    events.append({"type": "response.completed", "sequence_number": len(events), "response": json.loads(final)})
    return "/v1/responses", "text/event-stream", _sse(events, named=True)


def anthropic_json(size: int) -> tuple[str, str, bytes]:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": _text(size)}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 800, "cache_read_input_tokens": 150, "cache_creation_input_tokens": 50, "output_tokens": 503}}  # fmt: skip
    return "/v1/messages", "application/json", json.dumps(body).encode()


def anthropic_sse(size: int) -> tuple[str, str, bytes]:
    events: list[Any] = [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 800, "cache_read_input_tokens": 150, "cache_creation_input_tokens": 50, "output_tokens": 1}}},
                         {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]  # fmt: skip
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in _pieces(size, 120)]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 503}},
        {"type": "message_stop"},
    ]
    return "/v1/messages", "text/event-stream", _sse(events, named=True)


def gemini_json(size: int) -> tuple[str, str, bytes]:
    body = {"candidates": [{"content": {"parts": [{"text": _text(size)}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1320, "cachedContentTokenCount": 1024, "candidatesTokenCount": 61, "thoughtsTokenCount": 402, "totalTokenCount": 1783}, "modelVersion": "gemini-2.5-flash"}  # fmt: skip
    return "/v1beta/models/gemini-2.5-flash:generateContent", "application/json", json.dumps(body).encode()


def gemini_sse(size: int) -> tuple[str, str, bytes]:
    pieces = _pieces(size, 260)
    events = []
    for i, w in enumerate(pieces):
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [{"text": w}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": i + 1, "totalTokenCount": 10 + i},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r",
        }
        if i == len(pieces) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
        chunk["type"] = "x"
        events.append(chunk)
    body = b"".join(b"data: " + json.dumps({k: v for k, v in e.items() if k != "type"}, separators=(",", ":")).encode() + b"\r\n\r\n" for e in events)
    return "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "text/event-stream", body


def bedrock_json(size: int) -> tuple[str, str, bytes]:
    body = {"output": {"message": {"role": "assistant", "content": [{"text": _text(size)}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 18, "outputTokens": 386, "totalTokens": 7906, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 7502}, "metrics": {"latencyMs": 5213}}  # fmt: skip
    return "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse", "application/json", json.dumps(body).encode()


def bedrock_eventstream(size: int) -> tuple[str, str, bytes]:
    frames = [encode_event("messageStart", b'{"p":"abcdefghi","role":"assistant"}')]
    for w in _pieces(size, 150):
        frames.append(encode_event("contentBlockDelta", json.dumps({"contentBlockIndex": 0, "delta": {"text": w}, "p": "abcdefghijkl"}).encode()))
    frames.append(encode_event("messageStop", b'{"p":"abc","stopReason":"end_turn"}'))
    frames.append(encode_event("metadata", b'{"metrics":{"latencyMs":1127},"usage":{"inputTokens":18,"outputTokens":34,"totalTokens":52}}'))
    return "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream", "application/vnd.amazon.eventstream", b"".join(frames)


def bedrock_invoke_eventstream(size: int) -> tuple[str, str, bytes]:
    def chunk(obj: Any) -> bytes:
        return encode_event("chunk", json.dumps({"bytes": base64.b64encode(json.dumps(obj).encode()).decode(), "p": "abcdefg"}).encode())

    frames = [chunk({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 14, "output_tokens": 1}}})]
    frames += [chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}) for w in _pieces(size, 220)]
    frames.append(
        chunk(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {"inputTokenCount": 14, "outputTokenCount": 6, "invocationLatency": 412, "firstByteLatency": 301},
            }
        )
    )
    return "/model/anthropic.claude-v2/invoke-with-response-stream", "application/vnd.amazon.eventstream", b"".join(frames)


def cohere_json(size: int) -> tuple[str, str, bytes]:
    body = {"id": "c1", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [{"type": "text", "text": _text(size)}]},
            "usage": {"billed_units": {"input_tokens": 6772, "output_tokens": 248}, "tokens": {"input_tokens": 7596, "output_tokens": 645}}}  # fmt: skip
    return "/v2/chat", "application/json", json.dumps(body).encode()


def cohere_sse(size: int) -> tuple[str, str, bytes]:
    events: list[Any] = [{"type": "message-start", "id": "x", "delta": {"message": {"role": "assistant"}}}]
    events += [{"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": w}}}} for w in _pieces(size, 110)]
    events.append(
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "COMPLETE",
                "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 7}, "tokens": {"input_tokens": 69, "output_tokens": 9}},
            },
        }
    )
    return "/v2/chat", "text/event-stream", _sse(events, named=True, done=True)


def ollama_json(size: int) -> tuple[str, str, bytes]:
    body = {"model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z", "message": {"role": "assistant", "content": _text(size)}, "done": True, "done_reason": "stop",
            "total_duration": 5191566416, "prompt_eval_count": 26, "eval_count": 298}  # fmt: skip
    return "/api/chat", "application/json", json.dumps(body).encode()


def ollama_ndjson(size: int) -> tuple[str, str, bytes]:
    lines = [
        {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "message": {"role": "assistant", "content": w}, "done": False}
        for w in _pieces(size, 130)
    ]
    lines.append(
        {
            "model": "llama3.2",
            "created_at": "2023-08-04T19:22:45.499127Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "prompt_eval_count": 26,
            "eval_count": 282,
        }
    )
    return "/api/chat", "application/x-ndjson", b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def embeddings_json(size: int) -> tuple[str, str, bytes]:
    def body(n: int) -> bytes:
        return json.dumps({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023064255 * (i % 7 - 3) for i in range(n)]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }).encode()  # fmt: skip

    per_value = len(body(1000)) / 1000  # the vector dominates: size it to the target
    return "/v1/embeddings", "application/json", body(max(1, int(size / per_value)))


CASES: list[tuple[str, str, Callable[[int], tuple[str, str, bytes]]]] = [
    ("openai.chat", "json", openai_chat_json),
    ("openai.chat", "sse", openai_chat_sse),
    ("openai.responses", "json", responses_json),
    ("openai.responses", "sse", responses_sse),
    ("openai.embeddings", "json", embeddings_json),
    ("anthropic.messages", "json", anthropic_json),
    ("anthropic.messages", "sse", anthropic_sse),
    ("gemini.generate_content", "json", gemini_json),
    ("gemini.generate_content", "sse", gemini_sse),
    ("bedrock.converse", "json", bedrock_json),
    ("bedrock.converse", "eventstream", bedrock_eventstream),
    ("bedrock.invoke", "eventstream", bedrock_invoke_eventstream),
    ("cohere.chat", "json", cohere_json),
    ("cohere.chat", "sse", cohere_sse),
    ("ollama.chat", "json", ollama_json),
    ("ollama.chat", "ndjson", ollama_ndjson),
]


def measure(exchange: Exchange, budget_s: float, max_iter: int) -> list[float]:
    for _ in range(20):
        parse_usage(exchange)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    gc_was = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < max_iter and (len(samples) < 50 or time.perf_counter() < deadline):
            t0 = time.perf_counter_ns()
            record = parse_usage(exchange)
            samples.append((time.perf_counter_ns() - t0) / 1000.0)
    finally:
        if gc_was:
            gc.enable()
    assert record.source.value == "provider", (exchange.path, record)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument("--sizes", default="1024,102400", help="comma-separated target body sizes in bytes")
    args = parser.parse_args(argv)
    budget, max_iter = (0.05, 300) if args.quick else (0.4, 5000)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = []
    for family, fmt, build in CASES:
        for size in sizes:
            path, ct, body = build(size)
            samples = sorted(measure(Exchange(path, body, content_type=ct), budget, max_iter))
            mean = statistics.fmean(samples)
            results.append(
                {
                    "family": family,
                    "format": fmt,
                    "target_bytes": size,
                    "body_bytes": len(body),
                    "iterations": len(samples),
                    "us_mean": round(mean, 2),
                    "us_p50": round(samples[len(samples) // 2], 2),
                    "us_p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
                    "mb_per_s": round(len(body) / mean, 1),  # bytes per microsecond == MB/s
                }
            )
    big = [r for r in results if r["target_bytes"] == max(sizes)]
    streams = [r for r in big if r["format"] != "json"]
    summary = {
        "max_p99_us_at_largest": max(r["us_p99"] for r in big),
        "min_stream_mb_per_s_at_largest": min(r["mb_per_s"] for r in streams) if streams else None,
        "targets": {"p99_us_at_100kb": 1000, "stream_mb_per_s": 50},
    }
    # p99 on a shared, busy machine is dominated by scheduler preemption: the load average says how busy it was.
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    doc = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "results": results,
        "summary": summary,
    }
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
