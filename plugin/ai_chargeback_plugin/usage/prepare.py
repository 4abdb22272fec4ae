"""The access phase's look at the client's request.

:func:`prepare_request` runs in Kong's access phase. It reads the request once,
decides the provider and API family, the requested model and whether the
exchange streams, and — for OpenAI-style streaming chat/completions requests
whose client did not ask for usage — adds ``"stream_options":
{"include_usage": true}`` so the provider reports exact counts instead of
leaving us to estimate them.

Injection rules (each one a real failure seen in gateways):

* only when ``"stream": true`` (``stream_options`` with ``stream: false`` is a 400 at OpenAI);
* only for ``openai.chat`` / ``openai.completions`` at OpenAI, Azure OpenAI,
  OpenAI-compatible servers (vLLM honours it) and Ollama's OpenAI endpoint — not
  Mistral, which reports usage in its final chunk anyway;
* never on Azure ``api-version`` dates before 2024-09-01, which reject the field;
* never when the client already sent ``include_usage: true``;
* the rewrite keeps every other field intact: when ``stream_options`` is absent
  the member is spliced in after the opening brace and every other byte stays
  as the client sent it; when it is present (e.g. ``include_usage: false`` or
  ``include_obfuscation``) the body is re-serialized with its other options kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from . import detect, registry
from .estimate import estimate_prompt_tokens
from .facts import DEFAULT_MAX_BODY_BYTES, RequestFacts

_AZURE_MIN_API_VERSION = "2024-09-01"
_API_VERSION = re.compile(r"(?:^|&)api-version=(\d{4}-\d{2}-\d{2})")


def _azure_accepts_stream_options(query: str) -> bool:
    m = _API_VERSION.search(query)
    return m is None or m.group(1) >= _AZURE_MIN_API_VERSION


def _splice_stream_options(body: bytes) -> bytes | None:
    i = 0
    if body.startswith(b"\xef\xbb\xbf"):
        i = 3
    while i < len(body) and body[i] in b" \t\r\n":
        i += 1
    if i >= len(body) or body[i] != 0x7B:  # "{"
        return None
    return body[: i + 1] + b'"stream_options":{"include_usage":true},' + body[i + 1 :]


def _reserialize(doc: dict[str, Any]) -> bytes | None:
    options = doc.get("stream_options")
    merged = dict(options) if isinstance(options, Mapping) else {}
    merged["include_usage"] = True
    out = dict(doc)
    out["stream_options"] = merged
    try:
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):
        return None  # NaN/Infinity or 1e400 in the body: leave it exactly as the client sent it


def prepare_request(
    path: str,
    body: bytes | None,
    *,
    host: str = "",
    provider: str = "auto",
    api_family: str = "auto",
    inject_stream_usage: bool = True,
    estimate_prompt: bool = False,
    estimate_streaming_prompt: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> tuple[RequestFacts, bytes | None]:
    """Inspect the client's request (Kong access phase). Never raises.

    Parameters: ``path`` (upstream path, may carry ``?query``), ``body`` (raw
    request body or None when Kong buffered none), ``host`` (upstream host),
    ``provider`` / ``api_family`` (``"auto"`` to detect, else pinned by plugin
    config), ``inject_stream_usage`` (allow the rewrite), ``estimate_prompt``
    (count prompt tokens offline into ``estimated_prompt_tokens``),
    ``estimate_streaming_prompt`` (the same, only when the request streams: its
    answer will not be seen, so the count must be estimated; one parse serves
    both decisions), ``max_body_bytes`` (bodies larger than this are not parsed).

    Returns the facts and the rewritten body when ``include_usage`` was
    injected, else None (forward the original body).
    """
    try:
        return _facts(path or "", _json_object(body, max_body_bytes), host, provider, api_family, inject_stream_usage,
                      estimate_prompt, estimate_streaming_prompt, body)  # fmt: skip
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return _fallback(path, host, provider, api_family)


def _fallback(path: str, host: str, provider: str, api_family: str) -> tuple[RequestFacts, None]:
    try:
        prov, fam = detect.detect_family(path or "", host=host or "")
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        prov, fam = "", ""
    return RequestFacts(_pin(provider, prov), _pin(api_family, fam), "", False, False, False), None


def _pin(configured: str, detected: str) -> str:
    return detected if configured in ("", "auto", None) else configured


def prepare_decoded_request(
    path: str,
    doc: Any,
    *,
    provider: str = "auto",
    api_family: str = "auto",
    estimate_prompt: bool = False,
    estimate_streaming_prompt: bool = False,
) -> RequestFacts:
    """:func:`prepare_request` for a body Kong decoded itself (``kong.request.get_body``). Never raises.

    ``doc`` is what Kong sent back: a dict for a JSON object, None when Kong could
    not read or decode the body. Nothing can be rewritten from it (its bytes are
    not here), so there is no ``include_usage`` injection.
    """
    try:
        return _facts(path or "", doc if isinstance(doc, dict) else None, "", provider, api_family, False,
                      estimate_prompt, estimate_streaming_prompt, None)[0]  # fmt: skip
    except Exception:  # noqa: BLE001 - contract: never raises on the hot path
        return _fallback(path, "", provider, api_family)[0]


def _json_object(body: bytes | None, max_body_bytes: int) -> dict[str, Any] | None:
    """The raw body as a JSON object, or None (absent, too large, not JSON, not an object)."""
    if not body or len(body) > max_body_bytes:
        return None
    head = body[:4].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not (head.startswith(b"{") or not head):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _facts(
    path: str,
    doc: dict[str, Any] | None,
    host: str,
    provider_cfg: str,
    family_cfg: str,
    inject: bool,
    estimate_prompt: bool,
    estimate_streaming_prompt: bool,
    body: bytes | None,
) -> tuple[RequestFacts, bytes | None]:
    """What the request says, from its decoded body (`body`: its bytes, when the caller has them)."""
    det_provider, det_family = detect.detect_family(path, host=host or "")
    provider = _pin(provider_cfg, det_provider)
    family = _pin(family_cfg, det_family)
    url_model = detect.model_from_path(path) or detect.azure_deployment(path)
    streaming = detect.is_streaming_path(path)
    if doc is None:
        if family in registry.STREAMS_BY_DEFAULT and body is not None and not body.strip():
            streaming = True
        return RequestFacts(provider, family, url_model, streaming, False, False), None

    model = doc.get("model")
    requested_model = model if isinstance(model, str) and model else url_model
    stream_value = doc.get("stream")
    if stream_value is True:
        streaming = True
    elif family in registry.STREAMS_BY_DEFAULT and "stream" not in doc:
        streaming = True  # Ollama's native API streams unless told "stream": false
    options = doc.get("stream_options")
    client_usage = isinstance(options, Mapping) and options.get("include_usage") is True

    new_body: bytes | None = None
    if (
        inject
        and stream_value is True
        and not client_usage
        and family in registry.INJECT_FAMILIES
        and provider in registry.INJECT_PROVIDERS
        and (provider != "azure" or _azure_accepts_stream_options(detect.split_path(path)[1]))
    ):
        if "stream_options" not in doc:
            new_body = _splice_stream_options(body or b"")
        elif options is None or isinstance(options, Mapping):
            new_body = _reserialize(doc)

    estimated = None
    if estimate_prompt or (estimate_streaming_prompt and streaming):
        estimated = estimate_prompt_tokens(doc, api_family=family, model=requested_model)

    facts = RequestFacts(
        provider=provider,
        api_family=family,
        requested_model=requested_model,
        streaming=streaming,
        client_requested_usage=client_usage,
        usage_injected=new_body is not None,
        estimated_prompt_tokens=estimated,
    )
    return facts, new_body
