"""The provider / API-family registry is the one list: everything that names a provider or family agrees with it.

Each test names one consumer of the registry and fails when that consumer could
accept, produce or route something the registry does not know (or the other way
round), which is how the lists drifted before (``ollama.embed`` was parsed but
the schema refused it).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ai_chargeback_plugin.usage import detect_family, parse, registry, sniff_family
from ai_chargeback_plugin.usage.kong import usage_from_ai_proxy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _dumped_schema_fields() -> dict[str, dict[str, object]]:
    # What Kong validates kong.yml against: the query command's output, not the Python module.
    out = subprocess.run([sys.executable, "-m", "ai_chargeback_plugin.server", "--dump"], capture_output=True, check=True, timeout=60)
    config = json.loads(out.stdout)[0]["Schema"]["fields"][0]["config"]["fields"]
    return {name: field for entry in config for name, field in entry.items()}


def test_the_schema_allows_exactly_the_registered_providers_and_families() -> None:
    fields = _dumped_schema_fields()
    assert fields["provider"]["one_of"] == [registry.AUTO, *registry.PROVIDER_NAMES]
    assert fields["api_family"]["one_of"] == [registry.AUTO, *registry.FAMILY_NAMES]


@pytest.mark.parametrize("family", registry.FAMILY_NAMES)
def test_every_family_has_an_adapter_that_parses(family: str) -> None:
    module = importlib.import_module(f"ai_chargeback_plugin.usage.adapters.{registry.adapter_module(family)}")
    assert callable(module.parse)
    assert parse._adapter(family) is module


def test_every_adapter_module_serves_a_registered_family() -> None:
    adapters = Path(parse.__file__).parent / "adapters"
    modules = {p.stem for p in adapters.glob("*.py") if not p.name.startswith("_")}
    assert modules == {f.adapter for f in registry.FAMILIES}


def test_names_are_unique_and_path_providers_are_registered() -> None:
    assert len(set(registry.PROVIDER_NAMES)) == len(registry.PROVIDERS)
    assert len(set(registry.FAMILY_NAMES)) == len(registry.FAMILIES)
    implied = {provider for f in registry.FAMILIES for _, provider in (*f.paths, *f.sse_markers, *f.json_objects)}
    assert implied - {""} <= set(registry.PROVIDER_NAMES)
    assert set(registry.KONG_PROVIDERS.values()) <= set(registry.PROVIDER_NAMES)
    assert registry.BODY_SAYS_STREAMING | registry.KONG_EXCLUDES_CACHE <= set(registry.PROVIDER_NAMES)
    assert registry.STREAMS_BY_DEFAULT | registry.INJECT_FAMILIES <= set(registry.FAMILY_NAMES)


@pytest.mark.parametrize("family", registry.FAMILIES, ids=lambda f: f.name)
def test_each_family_is_recognised_from_its_own_paths(family: registry.Family) -> None:
    examples = {
        r"/chat/completions$": "/v1/chat/completions", r"/fim/completions$": "/v1/fim/completions",
        r"/agents/completions$": "/v1/agents/completions", r"/responses$": "/v1/responses",
        r"/completions$": "/v1/completions", r"/embeddings$": "/v1/embeddings",
        r"/publishers/anthropic/models/[^/:]+:(?:stream)?[rR]aw[pP]redict$":
            "/v1/projects/p/locations/l/publishers/anthropic/models/claude:rawPredict",
        r"/v1/messages$": "/v1/messages", r"/models/[^/:]+:(?:stream)?[gG]enerate[cC]ontent$": "/v1beta/models/g:generateContent",
        r"/model/[^/]+/converse(?:-stream)?$": "/model/m/converse", r"/model/[^/]+/invoke(?:-with-response-stream)?$": "/model/m/invoke",
        r"/v2/chat$": "/v2/chat", r"/v1/chat$": "/v1/chat", r"/api/chat$": "/api/chat", r"/api/generate$": "/api/generate",
        r"/api/embed(?:dings)?$": "/api/embed",
    }  # fmt: skip
    for pattern, provider in family.paths:
        found_provider, found_family = detect_family(examples[pattern])
        assert found_family == family.name, pattern
        if provider:
            assert found_provider == provider, pattern


def test_fixture_folders_name_registered_families() -> None:
    """tests/fixtures/<provider>/<api>/: each case's api_family, as parsed, is a registered family."""
    for expected in FIXTURES.rglob("*.expected.json"):
        family = json.loads(expected.read_text())["expected"].get("api_family")
        if family:
            assert family in registry.FAMILY_NAMES, expected


def test_sniffing_names_only_registered_families() -> None:
    for body in FIXTURES.rglob("*"):
        if body.is_file() and body.suffix in (".json", ".sse", ".ndjson", ".bin") and not body.name.endswith(".expected.json"):
            provider, family = sniff_family(body.read_bytes())
            assert family in ("", *registry.FAMILY_NAMES), body
            assert provider in ("", *registry.PROVIDER_NAMES), body


def test_sniffing_an_sse_answer_trusts_its_first_event_over_generated_text() -> None:
    body = b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude"}}\n\n' \
           b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"a text_completion"}}\n\n'  # fmt: skip
    assert sniff_family(body) == ("anthropic", "anthropic.messages")


@pytest.mark.parametrize("kong_name", sorted(registry.KONG_PROVIDERS))
def test_ai_proxy_provider_names_map_into_the_registry(kong_name: str) -> None:
    serialized = {"ai": {"proxy": {"meta": {"provider_name": kong_name}, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}}}
    record = usage_from_ai_proxy(serialized)
    assert record is not None and record.provider == registry.KONG_PROVIDERS[kong_name]
    assert ("kong-excludes-cache" in record.note) == (record.provider in registry.KONG_EXCLUDES_CACHE)
