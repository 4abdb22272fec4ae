"""The entry point for responses: :class:`Exchange` in, :class:`UsageRecord` out.

:func:`parse_usage` decides the API family (plugin pin → request facts → URL →
a sniff of the body), undoes the Content-Encoding under the size cap, hands the
bytes to that family's adapter, and then completes the record the same way for
every family:

* ``provider``, ``api_family``, ``streaming``;
* ``served_model``: the response's model first (an empty string counts as
  missing), then the URL's (Gemini ``models/{m}:generateContent``, Bedrock
  ``/model/{id}/...`` normalized to the base model id, Azure
  ``/openai/deployments/{d}/`` through the optional ``deployment_models`` map),
  then the request body's ``model``, then (Azure) the deployment name itself;
* ``upstream-error`` in the note when the status is >= 400 and there is no usage.

It never raises: anything unexpected becomes a NONE record with a note.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import _decode, _eventstream, _ndjson, _sse, detect, notes, registry
from .facts import DEFAULT_MAX_BODY_BYTES, RequestFacts
from .record import UsageRecord, UsageSource

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})



@dataclass(frozen=True, slots=True)
class Exchange:
    """One buffered upstream response and what is known about its request.

    Parameters: ``path`` (upstream path, may include ``?query``),
    ``response_body`` (raw bytes as received, possibly compressed),
    ``content_type`` / ``content_encoding`` (response headers),
    ``response_headers`` (lower-case names; Bedrock InvokeModel puts counts there),
    ``status``, ``host`` (upstream host), ``provider`` / ``api_family``
    (``"auto"`` or pinned by plugin config), ``requested_model`` (when no facts),
    ``facts`` (from :func:`prepare_request`, via ``RequestFacts.from_wire``).
    """

    path: str
    response_body: bytes
    content_type: str = ""
    content_encoding: str = ""
    response_headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    status: int = 200
    host: str = ""
    provider: str = "auto"
    api_family: str = "auto"
    requested_model: str = ""
    facts: RequestFacts | None = None


def _pinned(value: str) -> bool:
    return bool(value) and value != "auto"


def _adapter(family: str) -> Any:
    name = registry.adapter_module(family)
    if name is None:
        return None
    return importlib.import_module(f"{__package__}.adapters.{name}")


def sniff_family(body: bytes, content_type: str = "") -> tuple[str, str]:
    """``(provider, api_family)`` guessed from the response body itself; ``("", "")`` when unsure."""
    ct = (content_type or "").lower()
    if "amazon.eventstream" in ct or _eventstream.looks_like_eventstream(body):
        head = body[:4096]
        return "bedrock", ("bedrock.invoke" if b"chunk" in head and b"bytes" in head else "bedrock.converse")
    head = body[:8192]
    if _sse.looks_like_sse(body):
        # The marker seen first wins: it sits in the stream's first event, before any generated text.
        found = [(at, provider, family) for marker, provider, family in registry.SSE_MARKERS if (at := head.find(marker)) >= 0]
        if found:
            _, provider, family = min(found)
            return provider, family
        return "", ""
    if _ndjson.looks_like_ndjson(body) and b'"done"' in body[-4096:]:
        return "ollama", ("ollama.generate" if b'"response"' in head else "ollama.chat")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", ""
    if isinstance(doc, list):
        return ("gemini", "gemini.generate_content") if b"usageMetadata" in body or b'"candidates"' in head else ("", "")
    if not isinstance(doc, dict):
        return "", ""
    kind = doc.get("object")
    if isinstance(kind, str) and kind in registry.JSON_OBJECTS:
        return registry.JSON_OBJECTS[kind]
    if kind == "list" and isinstance(doc.get("data"), list):
        return "", "openai.embeddings"
    if doc.get("type") == "message" and isinstance(doc.get("usage"), Mapping):
        return "anthropic", "anthropic.messages"
    if "usageMetadata" in doc or "candidates" in doc:
        return "gemini", "gemini.generate_content"
    if "stopReason" in doc and "output" in doc:
        return "bedrock", "bedrock.converse"
    if "done" in doc and ("eval_count" in doc or "prompt_eval_count" in doc):
        if "embeddings" in doc:
            return "ollama", "ollama.embed"
        return "ollama", ("ollama.generate" if "response" in doc else "ollama.chat")
    usage = doc.get("usage")
    if isinstance(usage, Mapping) and ("billed_units" in usage or "tokens" in usage):
        return "cohere", "cohere.chat"
    if isinstance(doc.get("meta"), Mapping) and "billed_units" in doc["meta"]:
        return "cohere", "cohere.chat"
    if isinstance(usage, Mapping) and "prompt_tokens" in usage:
        return "", "openai.chat"
    return "", ""


def parse_usage(
    exchange: Exchange,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    deployment_models: Mapping[str, str] | None = None,
) -> UsageRecord:
    """Usage from a complete (buffered) upstream response, streaming or not. Never raises.

    Parameters: ``exchange``; ``max_body_bytes`` (cap on the raw *and* the
    decoded body: a decompression bomb stops at the cap and gives NONE with note
    ``body-too-large``); ``deployment_models`` (Azure deployment name → model,
    used when the response names no model).

    Returns a PROVIDER record when the provider reported usage, else NONE with
    the reason in ``note``. Truncated streams keep what arrived, noted
    ``stream-truncated``.
    """
    try:
        return _parse(exchange, max_body_bytes, deployment_models)
    except Exception as exc:  # noqa: BLE001 - last line of defence on Kong's hot path
        return UsageRecord.none(f"internal-error:{type(exc).__name__}")


def _resolve(exchange: Exchange) -> tuple[str, str]:
    """Plugin pin first; then the upstream host (it names the provider better than a path-only
    guess made in the access phase); then the request facts; then the path."""
    facts = exchange.facts
    provider = exchange.provider if _pinned(exchange.provider) else ""
    family = exchange.api_family if _pinned(exchange.api_family) else ""
    det_provider, det_family = detect.detect_family(exchange.path, host=exchange.host, content_type=exchange.content_type)
    if not provider and exchange.host:
        provider = det_provider
    if facts is not None:
        provider = provider or facts.provider
        family = family or facts.api_family
    return provider or det_provider, family or det_family


def _parse(exchange: Exchange, cap: int, deployment_models: Mapping[str, str] | None) -> UsageRecord:
    provider, family = _resolve(exchange)
    facts = exchange.facts
    ct = (exchange.content_type or "").lower()
    headers = exchange.response_headers or _NO_HEADERS
    body = exchange.response_body or b""

    stream_hint = registry.is_stream_content_type(ct) or (facts.streaming if facts else False)
    decoded, note = _decode.decode(body, exchange.content_encoding, cap)
    if decoded is None and note == notes.DECODE_ERROR and body[:16].lstrip()[:1] in (b"{", b"[", b"d", b"e", b":"):
        decoded, note = body, ""  # Content-Encoding header left on an already-decoded body
    if decoded is not None and not decoded.strip() and family != "bedrock.invoke":
        note, decoded = notes.EMPTY_BODY, None

    if decoded is None:
        record = UsageRecord.none(note)
    else:
        if not family:
            sniffed_provider, family = sniff_family(decoded, ct)
            provider = provider or sniffed_provider or ("openai-compatible" if family.startswith("openai.") else "")
        adapter = _adapter(family)
        if adapter is None:
            record = UsageRecord.none(notes.UNKNOWN_API)
        else:
            if family == "bedrock.invoke":
                record = adapter.parse(decoded, stream=stream_hint, headers=headers)
            else:
                record = adapter.parse(decoded, stream=stream_hint)
            stream_hint = _streamed(decoded, stream_hint)
    return _complete(record, exchange, provider, family, stream_hint, deployment_models)


def _streamed(body: bytes, hint: bool) -> bool:
    """Whether the exchange streamed: the body's format decides, the hint only when it cannot."""
    if _sse.looks_like_sse(body) or _eventstream.looks_like_eventstream(body) or _ndjson.looks_like_ndjson(body):
        return True
    head = body[:64].lstrip()
    if head.startswith(b"["):
        return True  # Gemini streamGenerateContent without alt=sse: a JSON array of chunks
    if head.startswith(b"{"):
        return False
    return hint


def _complete(
    record: UsageRecord,
    exchange: Exchange,
    provider: str,
    family: str,
    streaming: bool,
    deployment_models: Mapping[str, str] | None,
) -> UsageRecord:
    url_model = detect.model_from_path(exchange.path, deployment_models=deployment_models)
    # Bedrock bills on the URL's model id; a native body's "model" (Claude via InvokeModel) is not it.
    model = url_model if family.startswith("bedrock.") and url_model else record.served_model
    if not model:
        model = url_model
    if not model:
        model = exchange.requested_model or (exchange.facts.requested_model if exchange.facts else "")
    if not model:
        model = detect.azure_deployment(exchange.path)
    note = record.note
    if exchange.status >= 400 and record.source is UsageSource.NONE:
        note = notes.join(note, notes.UPSTREAM_ERROR)
    return dataclasses.replace(
        record,
        provider=provider,
        api_family=family,
        streaming=bool(streaming),
        served_model=model,
        note=note,
    )
