"""A mock LLM upstream speaking the OpenAI and Anthropic HTTP APIs.

Bodies follow the providers' API references field by field:
- OpenAI `POST /v1/chat/completions`: `chat.completion` objects and, with
  `stream: true`, `chat.completion.chunk` SSE events ended by `data: [DONE]`;
  with `stream_options.include_usage` every chunk carries `"usage": null` and
  one last chunk has `"choices": []` and the full usage.
- Anthropic `POST /v1/messages`: a `message` object, or the SSE sequence
  message_start / content_block_start / ping / content_block_delta... /
  content_block_stop / message_delta (cumulative usage.output_tokens) /
  message_stop.

Token counts are a pure function of the request (see `expected_usage`), so a
test can compute exactly what a meter should record. Request headers:
  x-mock-behavior: comma list of `malformed` (invalid JSON, 200), `gzip`,
                   `cut` (stream ends without the usage chunk / message_delta and
                   without the final chunk; a JSON body stops halfway), `status:<code>`,
                   `delay-ms:<n>` (before answering), `chunk-delay-ms:<n>`
                   (between stream events), `hold` (stream the first event,
                   then wait until `release()`).
  x-mock-output-tokens: number of visible output tokens (default 12)
  x-mock-cached-tokens / x-mock-cache-creation-tokens / x-mock-reasoning-tokens
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
}
ANTHROPIC_SNAPSHOTS = {
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-5-sonnet-latest": "claude-3-5-sonnet-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}
DEFAULT_OUTPUT_TOKENS = 12
_WORDS = ["Hello", " from", " the", " mock", " model", ",", " here", " is", " a", " short", " answer", "."]


# ------------------------------------------------------------------ token maths


def text_tokens(text: str) -> int:
    """~4 characters per token, rounded up (0 for empty text)."""
    return math.ceil(len(text) / 4)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _int_header(headers: Mapping[str, str] | None, name: str, default: int = 0) -> int:
    value = _header(headers, name)
    return int(value) if value else default


def detect_api(request: Mapping[str, Any]) -> str:
    model = str(request.get("model", ""))
    return "anthropic" if model.startswith("claude") else "openai"


def expected_usage(
    request: Mapping[str, Any], headers: Mapping[str, str] | None = None, *, api: str | None = None
) -> dict[str, Any]:
    """Exactly the usage the mock answers `request` with (same for streaming,
    unless `cut`). OpenAI keys: prompt_tokens, completion_tokens,
    total_tokens, cached_tokens, reasoning_tokens. Anthropic keys:
    input_tokens, output_tokens, cache_creation_input_tokens,
    cache_read_input_tokens. Both include `model` (the dated snapshot the
    response reports) and `output_pieces` (visible text tokens)."""
    api = api or detect_api(request)
    messages = request.get("messages") or []
    prompt = 3 + sum(4 + text_tokens(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    if api == "anthropic":
        prompt += text_tokens(_content_text(request.get("system")))
    visible = _int_header(headers, "x-mock-output-tokens", DEFAULT_OUTPUT_TOKENS)
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    truncated = bool(limit) and visible > int(limit)
    if truncated:
        visible = int(limit)
    reasoning = _int_header(headers, "x-mock-reasoning-tokens")
    cached = min(_int_header(headers, "x-mock-cached-tokens"), prompt)
    model = str(request.get("model", "unknown"))
    if api == "anthropic":
        creation = min(_int_header(headers, "x-mock-cache-creation-tokens"), prompt - cached)
        return {
            "model": ANTHROPIC_SNAPSHOTS.get(model, model),
            "input_tokens": prompt - cached - creation,
            "output_tokens": visible,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": cached,
            "output_pieces": visible,
            "stop_reason": "max_tokens" if truncated else "end_turn",
        }
    return {
        "model": OPENAI_SNAPSHOTS.get(model, model),
        "prompt_tokens": prompt,
        "completion_tokens": visible + reasoning,
        "total_tokens": prompt + visible + reasoning,
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
        "output_pieces": visible,
        "finish_reason": "length" if truncated else "stop",
    }


def output_pieces(count: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(count)]


# ------------------------------------------------------------------ records


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_headers: list[tuple[str, str]]
    body: bytes
    json: Any = None
    api: str | None = None
    stream: bool = False
    completed: bool = False  # the mock finished writing its answer
    received_at: float = field(default_factory=time.time)


def _behaviors(headers: Mapping[str, str]) -> dict[str, str]:
    raw = _header(headers, "x-mock-behavior") or ""
    out = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(":")
        out[key.strip().lower()] = value.strip()
    return out


# ------------------------------------------------------------------ server


class _Server(ThreadingHTTPServer):
    # Bursts of concurrent clients must queue, not be reset (default backlog is 5).
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client dropping its idle keep-alive connection is routine (nginx logs it at
        # info level); only other failures deserve a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes: with Nagle on, each answer
    # waits ~40 ms for the client's delayed ACK (nginx sets tcp_nodelay too).
    disable_nagle_algorithm = True
    mock: MockLLM

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        body = self._read_body()
        self._record(body, None)
        if self.path.split("?", 1)[0].rstrip("/").endswith("/v1/models"):
            self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1721172741,
                                                              "owned_by": "system"} for m in OPENAI_SNAPSHOTS]})
            return
        self._send_json(404, {"error": {"message": f"Unknown request URL: GET {self.path}", "type": "invalid_request_error",
                                        "param": None, "code": "unknown_url"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = None
        path = self.path.split("?", 1)[0].rstrip("/")
        api = "openai" if path.endswith("/chat/completions") else "anthropic" if path.endswith("/messages") else None
        record = self._record(body, payload, api)
        behaviors = _behaviors(record.headers)
        if "delay-ms" in behaviors:
            time.sleep(int(behaviors["delay-ms"]) / 1000)
        if api is None:
            self._send_json(404, {"error": {"message": f"Unknown request URL: POST {self.path}",
                                            "type": "invalid_request_error", "param": None, "code": "unknown_url"}})
        elif not isinstance(payload, dict):
            self._send_error(api, 400, "invalid_request_error", "We could not parse the JSON body of your request.")
        elif "status" in behaviors:
            status = int(behaviors["status"] or 500)
            self._send_error(api, status, "api_error" if status >= 500 else "invalid_request_error",
                             f"mock failure with status {status}")
        elif api == "openai":
            self._openai(record, payload, behaviors)
        else:
            self._anthropic(record, payload, behaviors)
        record.completed = True
        self.mock._note_completed()

    # ----- helpers -----

    def _record(self, body: bytes, payload: Any, api: str | None = None) -> RecordedRequest:
        raw = list(self.headers.items())
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in raw},
            raw_headers=raw,
            body=body,
            json=payload,
            api=api,
            stream=bool(isinstance(payload, dict) and payload.get("stream")),
        )
        self.mock._add(record)
        return record

    def _common_headers(self, api: str | None) -> list[tuple[str, str]]:
        rid = hashlib.sha1(f"{time.time_ns()}-{id(self)}".encode()).hexdigest()[:24]
        if api == "anthropic":
            return [("request-id", f"req_{rid}"), ("anthropic-organization-id", "mock-org")]
        return [("x-request-id", f"req_{rid}"), ("openai-processing-ms", "1"), ("openai-version", "2020-10-01")]

    def _send_json(self, status: int, obj: Any, api: str | None = None, *, gzip_body: bool = False,
                   raw: bytes | None = None, cut: bool = False) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        headers = [("Content-Type", "application/json")] + self._common_headers(api)
        if gzip_body:
            data = gzip.compress(data)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut:
            # the connection drops after half the promised bytes
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def _send_error(self, api: str, status: int, kind: str, message: str) -> None:
        if api == "anthropic":
            self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}}, api)
        else:
            self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, api)

    def _stream(self, api: str, events: Iterator[bytes], behaviors: dict[str, str]) -> None:
        compress = zlib.compressobj(wbits=31) if "gzip" in behaviors else None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        for k, v in self._common_headers(api):
            self.send_header(k, v)
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = int(behaviors.get("chunk-delay-ms") or 0) / 1000
        for index, event in enumerate(events):
            data = compress.compress(event) + compress.flush(zlib.Z_SYNC_FLUSH) if compress else event
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if index == 0 and "hold" in behaviors:
                self.mock._hold_reached.set()
                self.mock._release.wait(timeout=30)
            if delay:
                time.sleep(delay)
        if "cut" in behaviors:
            # the connection drops mid-stream: no terminating chunk
            self.close_connection = True
            self.wfile.flush()
            return
        if compress:
            tail = compress.flush()
            if tail:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ----- OpenAI -----

    def _openai(self, record: RecordedRequest, req: dict[str, Any], behaviors: dict[str, str]) -> None:
        usage = expected_usage(req, record.headers, api="openai")
        completion_id = "chatcmpl-" + hashlib.sha1(record.body + str(record.received_at).encode()).hexdigest()[:29]
        created = int(record.received_at)
        pieces = output_pieces(usage["output_pieces"])
        usage_obj = {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"], "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": usage["reasoning_tokens"],
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if not req.get("stream"):
            body = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": usage["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(pieces), "refusal": None,
                                    "annotations": []},
                        "logprobs": None,
                        "finish_reason": usage["finish_reason"],
                    }
                ],
                "usage": usage_obj,
                "service_tier": "default",
                "system_fingerprint": "fp_mock0001",
            }
            raw = json.dumps(body).encode()
            if "malformed" in behaviors:
                raw = raw[: len(raw) // 2]
            self._send_json(200, None, "openai", gzip_body="gzip" in behaviors, raw=raw, cut="cut" in behaviors)
            return
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[Any], usage_value: Any = None, final_usage: bool = False) -> bytes:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": usage["model"],
                "service_tier": "default",
                "system_fingerprint": "fp_mock0001",
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage_value if final_usage else None
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        def events() -> Iterator[bytes]:
            yield chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                          "logprobs": None, "finish_reason": None}])
            for i, piece in enumerate(pieces):
                if "malformed" in behaviors and i == len(pieces) // 2:
                    yield b'data: {"id": "' + completion_id.encode() + b'", "choices": [\n\n'
                yield chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
            if "cut" in behaviors:
                return
            yield chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": usage["finish_reason"]}])
            if include_usage:
                yield chunk([], usage_obj, final_usage=True)
            yield b"data: [DONE]\n\n"

        self._stream("openai", events(), behaviors)

    # ----- Anthropic -----

    def _anthropic(self, record: RecordedRequest, req: dict[str, Any], behaviors: dict[str, str]) -> None:
        usage = expected_usage(req, record.headers, api="anthropic")
        message_id = "msg_" + hashlib.sha1(record.body + str(record.received_at).encode()).hexdigest()[:24]
        pieces = output_pieces(usage["output_pieces"])
        full_usage = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
            "service_tier": "standard",
        }
        if not req.get("stream"):
            body = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": usage["model"],
                "content": [{"type": "text", "text": "".join(pieces)}],
                "stop_reason": usage["stop_reason"],
                "stop_sequence": None,
                "usage": full_usage,
            }
            raw = json.dumps(body).encode()
            if "malformed" in behaviors:
                raw = raw[: len(raw) // 2]
            self._send_json(200, None, "anthropic", gzip_body="gzip" in behaviors, raw=raw, cut="cut" in behaviors)
            return

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        def events() -> Iterator[bytes]:
            start_usage = dict(full_usage, output_tokens=1)
            yield event("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": usage["model"], "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
            yield event("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
            yield event("ping", {"type": "ping"})
            for i, piece in enumerate(pieces):
                if "malformed" in behaviors and i == len(pieces) // 2:
                    yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": \n\n'
                yield event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": piece}})
            if "cut" in behaviors:
                return
            yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": usage["stop_reason"], "stop_sequence": None},
                                           "usage": {"output_tokens": usage["output_tokens"]}})
            yield event("message_stop", {"type": "message_stop"})

        self._stream("anthropic", events(), behaviors)


class MockLLM:
    """`with MockLLM() as llm:` then point clients at `llm.url` (add `/v1` for
    the OpenAI SDK's base_url; the Anthropic SDK takes `llm.url` as is)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._bind = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._completed = 0
        self._release = threading.Event()
        self._hold_reached = threading.Event()

    expected_usage = staticmethod(expected_usage)

    def start(self) -> MockLLM:
        handler = type("Handler", (_Handler,), {"mock": self})
        self._server = _Server(self._bind, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MockLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "mock is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----- recorded traffic -----

    def _add(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _note_completed(self) -> None:
        with self._lock:
            self._completed += 1

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def completed(self) -> int:
        """Answers fully written so far."""
        with self._lock:
            return self._completed

    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----- `hold` behaviour -----

    def wait_until_held(self, timeout: float = 10.0) -> bool:
        """True once a `hold` stream has sent its first event and is waiting."""
        return self._hold_reached.wait(timeout)

    def release(self) -> None:
        """Let `hold` streams finish."""
        self._release.set()

    def rearm_hold(self) -> None:
        """Make the next `hold` stream wait again."""
        self._release.clear()
        self._hold_reached.clear()
