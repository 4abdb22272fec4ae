"""Which provider and API family an exchange belongs to, and what the URL says about the model.

Detection looks at the upstream host first (it names the provider), then the
path (it names the API family). Paths are matched on their *ending*, so Kong
route prefixes and Azure's ``/openai/deployments/{d}`` do not matter, and only
the create endpoints count: ``GET /v1/responses/{id}`` or
``/v1/messages/count_tokens`` return usage-looking bodies that must never be
billed again, so they are not recognised.

The providers, families, hosts and path patterns are the rows of
:mod:`.registry`; ``""`` stands for what cannot be told.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from . import registry

PROVIDERS = registry.PROVIDER_NAMES
API_FAMILIES = registry.FAMILY_NAMES


def split_path(path: str) -> tuple[str, str]:
    """``(path without query, query)``."""
    base, _, query = (path or "").partition("?")
    return base.rstrip("/") or "/", query


def provider_from_host(host: str) -> str:
    host = (host or "").lower().strip()
    if not host:
        return ""
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    for suffix, provider in registry.HOSTS:
        if suffix.startswith(".") and name.endswith(suffix):
            return provider
        if not suffix.startswith(".") and (name == suffix or suffix in name):
            return provider
    return registry.DEFAULT_PORTS.get(port, "")


def detect_family(path: str, *, host: str = "", content_type: str = "") -> tuple[str, str]:
    """``(provider, api_family)`` for an upstream request; ``""`` for what cannot be told.

    ``content_type`` is only a hint (Bedrock's ``application/vnd.amazon.eventstream``).
    """
    base, _ = split_path(path)
    host_provider = provider_from_host(host)
    family, path_provider = "", ""
    for pattern, fam, prov in registry.PATHS:
        if pattern.search(base):
            family, path_provider = fam, prov
            break
    if family == "gemini.generate_content" and ("/projects/" in base or host_provider == "vertex"):
        path_provider = "vertex"
    if not family and "amazon.eventstream" in (content_type or "").lower():
        path_provider = "bedrock"
    if family == "openai.chat" and path_provider == "mistral" and host_provider not in ("", "mistral"):
        path_provider = host_provider
    provider = host_provider or path_provider
    if not provider and family.startswith("openai."):
        if "/openai/deployments/" in base or base.startswith("/openai/"):
            provider = "azure"
        else:
            provider = "openai-compatible" if host else "openai"
    return provider, family


def is_streaming_path(path: str) -> bool:
    """True for endpoints that always stream (Gemini ``:streamGenerateContent``, Bedrock ``converse-stream``...)."""
    return bool(registry.STREAMING_PATH.search(split_path(path)[0]))


_GEMINI_MODEL = re.compile(r"/(?:models|tunedModels)/([^/:]+):")
_BEDROCK_MODEL = re.compile(r"/model/([^/]+)/(?:converse|invoke)")
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")
# Cross-region inference-profile prefixes Bedrock puts before "<vendor>.<model>".
_GEO_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca", "uk", "in", "sa", "me", "af"})


def bedrock_base_model(model_id: str) -> str:
    """The base model id from a Bedrock URL model id, inference-profile id or ARN.

    ``us.anthropic.claude-3-5-sonnet-20240620-v1:0`` → ``anthropic.claude-3-5-sonnet-20240620-v1:0``;
    ``arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2`` → ``anthropic.claude-v2``;
    ``arn:...:inference-profile/eu.meta.llama3-2-1b-instruct-v1:0`` → ``meta.llama3-2-1b-instruct-v1:0``.
    Application inference profiles and provisioned models have opaque ids; their
    resource part (``application-inference-profile/abc123``) is returned as is.
    """
    mid = unquote(model_id or "").strip()
    if mid.startswith("arn:"):
        resource = mid.split(":", 5)[-1] if mid.count(":") >= 5 else mid
        kind, _, rest = resource.partition("/")
        if kind in ("foundation-model", "inference-profile", "system-defined-inference-profile") and rest:
            mid = rest
        else:
            return resource
    head, sep, tail = mid.partition(".")
    if sep and head in _GEO_PREFIXES and "." in tail:
        mid = tail
    return mid


def model_from_path(path: str, *, deployment_models: Mapping[str, str] | None = None) -> str:
    """The model a URL names (Gemini/Vertex, Bedrock, Azure deployment via ``deployment_models``), or ""."""
    base, _ = split_path(path)
    m = _GEMINI_MODEL.search(base)
    if m:
        return unquote(m.group(1))
    m = _BEDROCK_MODEL.search(base)
    if m:
        return bedrock_base_model(m.group(1))
    m = _AZURE_DEPLOYMENT.search(base + "/")
    if m and deployment_models:
        return deployment_models.get(unquote(m.group(1)), "")
    return ""


def azure_deployment(path: str) -> str:
    m = _AZURE_DEPLOYMENT.search(split_path(path)[0] + "/")
    return unquote(m.group(1)) if m else ""
