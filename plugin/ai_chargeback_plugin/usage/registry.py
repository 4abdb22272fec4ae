"""The provider and API-family registry: one row per provider, one row per API family.

Everything that depends on which providers and API families exist is derived from
the two tables below, so adding one is a row here (plus, for a family, its adapter
module in ``adapters/`` and fixtures under ``tests/fixtures/<provider>/<api>/``):

* the plugin schema's ``provider`` and ``api_family`` ``one_of`` lists (``..schema``);
* which adapter reads a family's responses (``.parse``);
* recognising a provider from the upstream host and a family from the path
  (``.detect``), or from the response body itself (``.parse.sniff_family``);
* the streaming rules: whose requests say ``"stream": true`` in the body, which
  paths always stream, which families stream unless told not to, where
  ``stream_options.include_usage`` may be injected (``.facts``, ``..handler``);
* the provider names Kong's ai-proxy writes into its analytics, and whose counts
  there leave out cache tokens (``.kong``);
* the per-family calibration that turns the byte count of an answer nobody
  parsed into an output-token estimate (``.sizes``).

``tests/plugin/usage/test_registry.py`` fails when any of these drift apart.
Rows are in detection order: the first family whose path pattern matches wins
(``/chat/completions`` before ``/completions``, ``/embeddings`` before Ollama's
``/api/embeddings``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider (the ``provider`` of an event).

    ``hosts``: upstream host names; a leading ``.`` matches a suffix, anything
    else a substring. ``default_port``: a port that names the provider when the
    host does not (Ollama's 11434). ``body_says_streaming``: a streaming request
    to this provider says ``"stream": true`` in its body, so the access phase
    need not read the path. ``inject_stream_usage``: OpenAI-style streams here
    accept ``stream_options.include_usage``. ``kong_names``: the
    ``provider_name`` Kong's ai-proxy writes for it. ``kong_excludes_cache``:
    Kong's driver copies the prompt count without the cache tokens.
    """

    name: str
    hosts: tuple[str, ...] = ()
    default_port: int = 0
    body_says_streaming: bool = False
    inject_stream_usage: bool = False
    kong_names: tuple[str, ...] = ()
    kong_excludes_cache: bool = False


@dataclass(frozen=True, slots=True)
class Calibration:
    """Tokens from a body's size in bytes, fitted on a corpus of bodies whose tokens are known.

    ``tokens = max(0, bytes - overhead_bytes) / bytes_per_token``. ``error_pct``
    is the largest relative error of that formula over the corpus bodies of at
    least ``corpus.MIN_TOKENS`` tokens; ``tests/fixtures/calibrate.py`` fits all
    three numbers from ``tests/fixtures`` and ``tests/plugin/usage/test_calibration.py``
    fails when the rows below differ from a fresh fit. Every estimate made with
    a calibration prints its ``error_pct`` in its note.
    """

    overhead_bytes: int
    bytes_per_token: float
    error_pct: int

    def tokens(self, body_bytes: int) -> int:
        return max(0, round((body_bytes - self.overhead_bytes) / self.bytes_per_token))


@dataclass(frozen=True, slots=True)
class Family:
    """An API family (the ``api_family`` of an event) and how to recognise and read it.

    ``adapter``: module in ``adapters/`` with ``parse(body, *, stream)``.
    ``paths``: ``(pattern, provider the path implies or "")``, matched against
    the end of the upstream path. ``stream_path``: a path pattern that always
    streams (Gemini ``:streamGenerateContent``). ``streams_by_default``: the API
    streams unless the body says ``"stream": false`` (Ollama's native API).
    ``sse_markers``: ``(bytes, provider or "")`` found near the start of an SSE
    answer of this family. ``json_objects``: values of a JSON answer's
    ``"object"`` member that name this family. ``inject_stream_usage``: the
    family's streams accept ``stream_options.include_usage``. ``stream``: the
    byte-count calibration of its streams (``ANY_STREAM`` when None).
    """

    name: str
    adapter: str
    paths: tuple[tuple[str, str], ...]
    stream_path: str = ""
    streams_by_default: bool = False
    sse_markers: tuple[tuple[bytes, str], ...] = ()
    json_objects: tuple[tuple[str, str], ...] = ()
    inject_stream_usage: bool = False
    stream: Calibration | None = None


PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", hosts=("api.openai.com",), body_says_streaming=True, inject_stream_usage=True, kong_names=("openai",)),
    Provider(
        "azure",
        hosts=(".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com", ".models.ai.azure.com"),
        body_says_streaming=True, inject_stream_usage=True, kong_names=("azure",),
    ),  # fmt: skip
    Provider("anthropic", hosts=("api.anthropic.com",), body_says_streaming=True, kong_names=("anthropic",), kong_excludes_cache=True),
    Provider("gemini", hosts=("generativelanguage.googleapis.com",), kong_names=("gemini",)),
    Provider("vertex", hosts=("aiplatform.googleapis.com",)),
    Provider("bedrock", hosts=("bedrock-runtime.",), kong_names=("bedrock",), kong_excludes_cache=True),
    Provider("cohere", hosts=("api.cohere.com", "api.cohere.ai"), body_says_streaming=True, kong_names=("cohere",)),
    Provider("mistral", hosts=("api.mistral.ai",), body_says_streaming=True, kong_names=("mistral",)),
    Provider("ollama", default_port=11434, inject_stream_usage=True),
    Provider(
        "openai-compatible", body_says_streaming=True, inject_stream_usage=True, kong_names=("llama2", "huggingface"),
    ),  # fmt: skip
)

FAMILIES: tuple[Family, ...] = (
    Family(
        "openai.chat", "openai_chat",
        paths=((r"/chat/completions$", ""), (r"/fim/completions$", "mistral"), (r"/agents/completions$", "mistral")),
        sse_markers=((b"chat.completion.chunk", ""),), json_objects=(("chat.completion", ""),),
        inject_stream_usage=True,
        stream=Calibration(overhead_bytes=330, bytes_per_token=259.57, error_pct=21),
    ),  # fmt: skip
    Family(
        "openai.responses", "openai_responses", paths=((r"/responses$", ""),),
        sse_markers=((b"response.created", "openai"),), json_objects=(("response", "openai"),),
        stream=Calibration(overhead_bytes=1716, bytes_per_token=178.02, error_pct=2),
    ),  # fmt: skip
    Family(
        "openai.completions", "openai_completions", paths=((r"/completions$", ""),),
        sse_markers=((b"text_completion", ""),), json_objects=(("text_completion", ""),), inject_stream_usage=True,
    ),  # fmt: skip
    Family("openai.embeddings", "openai_embeddings", paths=((r"/embeddings$", ""),)),
    Family(
        "anthropic.messages", "anthropic_messages",
        paths=((r"/publishers/anthropic/models/[^/:]+:(?:stream)?[rR]aw[pP]redict$", "vertex"), (r"/v1/messages$", "anthropic")),
        stream_path=r":streamRawPredict$", sse_markers=((b"message_start", "anthropic"),),
        stream=Calibration(overhead_bytes=625, bytes_per_token=71.32, error_pct=70),
    ),  # fmt: skip
    Family(
        "gemini.generate_content", "gemini", paths=((r"/models/[^/:]+:(?:stream)?[gG]enerate[cC]ontent$", "gemini"),),
        stream_path=r":streamGenerateContent$", sse_markers=((b'"candidates"', "gemini"), (b"usageMetadata", "gemini")),
        stream=Calibration(overhead_bytes=131, bytes_per_token=22.7, error_pct=60),
    ),  # fmt: skip
    Family(
        "bedrock.converse", "bedrock", paths=((r"/model/[^/]+/converse(?:-stream)?$", "bedrock"),),
        stream_path=r"/converse-stream$",
        stream=Calibration(overhead_bytes=777, bytes_per_token=99.37, error_pct=70),
    ),  # fmt: skip
    Family(
        "bedrock.invoke", "bedrock", paths=((r"/model/[^/]+/invoke(?:-with-response-stream)?$", "bedrock"),),
        stream_path=r"/invoke-with-response-stream$",
    ),  # fmt: skip
    Family("cohere.chat", "cohere", paths=((r"/v2/chat$", "cohere"), (r"/v1/chat$", "cohere")), sse_markers=((b"message-start", "cohere"),), stream=Calibration(overhead_bytes=616, bytes_per_token=110.84, error_pct=2)),
    Family("ollama.chat", "ollama", paths=((r"/api/chat$", "ollama"),), streams_by_default=True, stream=Calibration(overhead_bytes=336, bytes_per_token=142.58, error_pct=2)),
    Family("ollama.generate", "ollama", paths=((r"/api/generate$", "ollama"),), streams_by_default=True),
    Family("ollama.embed", "ollama", paths=((r"/api/embed(?:dings)?$", "ollama"),)),
)

# Bodies no family row calibrates: a stream of an unknown or uncalibrated family, a
# JSON answer, a request body. Fitted like the rows above (tests/fixtures/calibrate.py).
ANY_STREAM = Calibration(overhead_bytes=0, bytes_per_token=168.89, error_pct=95)
JSON_ANSWER = Calibration(overhead_bytes=404, bytes_per_token=12.26, error_pct=77)
REQUEST_BODY = Calibration(overhead_bytes=0, bytes_per_token=5.67, error_pct=34)

PROVIDER_NAMES: tuple[str, ...] = tuple(p.name for p in PROVIDERS)
FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
BY_PROVIDER: Mapping[str, Provider] = MappingProxyType({p.name: p for p in PROVIDERS})
BY_FAMILY: Mapping[str, Family] = MappingProxyType({f.name: f for f in FAMILIES})

# --- derived views, each used by exactly one consumer ---------------------------------

# detect.py: (suffix-or-substring, provider), in table order.
HOSTS: tuple[tuple[str, str], ...] = tuple((host, p.name) for p in PROVIDERS for host in p.hosts)
DEFAULT_PORTS: Mapping[str, str] = MappingProxyType({str(p.default_port): p.name for p in PROVIDERS if p.default_port})
# detect.py: (compiled pattern, family, implied provider), in detection order.
PATHS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), f.name, provider) for f in FAMILIES for pattern, provider in f.paths
)
STREAMING_PATH: re.Pattern[str] = re.compile("|".join(f"(?:{f.stream_path})" for f in FAMILIES if f.stream_path))
# facts.py / handler.py: the streaming and include_usage rules.
BODY_SAYS_STREAMING: frozenset[str] = frozenset(p.name for p in PROVIDERS if p.body_says_streaming)
STREAMS_BY_DEFAULT: frozenset[str] = frozenset(f.name for f in FAMILIES if f.streams_by_default)
INJECT_FAMILIES: frozenset[str] = frozenset(f.name for f in FAMILIES if f.inject_stream_usage)
# "" (a provider nobody could tell) is treated like an OpenAI-compatible server.
INJECT_PROVIDERS: frozenset[str] = frozenset({"", *(p.name for p in PROVIDERS if p.inject_stream_usage)})
# parse.sniff_family: SSE markers in table order, and JSON "object" values.
SSE_MARKERS: tuple[tuple[bytes, str, str], ...] = tuple((m, provider, f.name) for f in FAMILIES for m, provider in f.sse_markers)
JSON_OBJECTS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {value: (provider, f.name) for f in FAMILIES for value, provider in f.json_objects}
)
# kong.py: ai-proxy's provider_name -> ours.
KONG_PROVIDERS: Mapping[str, str] = MappingProxyType({kong: p.name for p in PROVIDERS for kong in p.kong_names})
KONG_EXCLUDES_CACHE: frozenset[str] = frozenset(p.name for p in PROVIDERS if p.kong_excludes_cache)


# Response content types of streamed answers (SSE, NDJSON, AWS event-stream, Gemini's JSON stream).
STREAM_CONTENT_TYPES: tuple[str, ...] = ("text/event-stream", "ndjson", "amazon.eventstream", "stream+json")


def is_stream_content_type(content_type: str) -> bool:
    ct = (content_type or "").lower()
    return any(kind in ct for kind in STREAM_CONTENT_TYPES)


def adapter_module(family: str) -> str | None:
    """The adapter module name (in ``adapters/``) for a family, None for an unknown one."""
    row = BY_FAMILY.get(family)
    return row.adapter if row else None
