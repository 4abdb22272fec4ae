"""kong.yml stays valid for the plugin we ship, and shows the production shape.

Every `ai-chargeback` config block in the repository's kong.yml is validated
against the schema the real `ai-chargeback-pluginserver --dump` prints, the
way Kong validates an external plugin's config (kong_harness.ConfigSchema,
which also applies the metaschema checks Kong runs on the dumped schema);
key-auth and ai-proxy blocks against their schemas as the harness re-states
them. The shape is checked too: LLM routes behind ai-proxy with the provider
key from Kong's vault, key-auth names that cannot swallow a provider's auth
header, and one plain proxy route. tests/harness/test_kong_yml_served.py
sends requests through all of it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kong_harness import ConfigSchema, ConfigValidationError, PluginServerProcess, find_console_script
from kong_harness.declarative import load_declarative_config
from kong_harness.front import bundled_validators

PLUGIN_NAME = "ai-chargeback"
LOG_PLUGIN_NAME = "ai-chargeback-log"  # log-only, same server: its query command is `--dump --plugin ai-chargeback-log`
SERVER_COMMAND = "ai-chargeback-pluginserver"
KONG_YML = Path(__file__).resolve().parents[1] / "kong.yml"


def _plugin_blocks(doc: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, plugin entry) for every plugin entry anywhere in kong.yml."""
    if not isinstance(doc, dict):
        return
    for i, plugin in enumerate(doc.get("plugins") or []):
        yield f"plugins[{i}]", plugin
    for s, service in enumerate(doc.get("services") or []):
        sname = service.get("name", s)
        for i, plugin in enumerate(service.get("plugins") or []):
            yield f"services[{sname}].plugins[{i}]", plugin
        for r, route in enumerate(service.get("routes") or []):
            for i, plugin in enumerate(route.get("plugins") or []):
                yield f"services[{sname}].routes[{route.get('name', r)}].plugins[{i}]", plugin
    for r, route in enumerate(doc.get("routes") or []):
        for i, plugin in enumerate(route.get("plugins") or []):
            yield f"routes[{route.get('name', r)}].plugins[{i}]", plugin
    for c, consumer in enumerate(doc.get("consumers") or []):
        for i, plugin in enumerate(consumer.get("plugins") or []):
            yield f"consumers[{consumer.get('username', c)}].plugins[{i}]", plugin


def _chargeback_blocks() -> list[Any]:
    if not KONG_YML.exists():
        return [pytest.param(None, None, id="kong.yml-missing")]
    doc = yaml.safe_load(KONG_YML.read_text())
    blocks = [pytest.param(where, plugin, id=where) for where, plugin in _plugin_blocks(doc)
              if isinstance(plugin, dict) and plugin.get("name") in (PLUGIN_NAME, LOG_PLUGIN_NAME)]
    return blocks or [pytest.param(None, None, id="no-ai-chargeback-block")]


def _dumped_schema(tmp_path_factory: pytest.TempPathFactory, name: str, query_args: list[str]) -> ConfigSchema:
    command = find_console_script(SERVER_COMMAND)
    if command is None:
        pytest.skip(f"{SERVER_COMMAND} is not on PATH (nor next to {sys.executable}): "
                    "the plugin package is not installed yet")
    server = PluginServerProcess([command], prefix=tmp_path_factory.mktemp("dump"))
    server.query_args = query_args
    info = server.dump_info()  # fails loudly on anything but one JSON list on stdout
    assert info.name == name, f"{SERVER_COMMAND} --dump {' '.join(query_args)} reports plugin {info.name!r}"
    return ConfigSchema(info.schema)


@pytest.fixture(scope="module")
def chargeback_schema(tmp_path_factory: pytest.TempPathFactory) -> ConfigSchema:
    return _dumped_schema(tmp_path_factory, PLUGIN_NAME, [])


@pytest.fixture(scope="module")
def log_only_schema(tmp_path_factory: pytest.TempPathFactory) -> ConfigSchema:
    return _dumped_schema(tmp_path_factory, LOG_PLUGIN_NAME, ["--plugin", LOG_PLUGIN_NAME])


@pytest.mark.parametrize(("where", "plugin"), _chargeback_blocks())
def test_every_ai_chargeback_block_validates(chargeback_schema: ConfigSchema, log_only_schema: ConfigSchema,
                                             where: str | None, plugin: Any) -> None:  # fmt: skip
    assert KONG_YML.exists(), f"{KONG_YML} does not exist"
    assert where is not None, f"{KONG_YML} has no '{PLUGIN_NAME}' plugin block"
    unknown = set(plugin) - {"name", "config", "enabled", "protocols", "tags", "instance_name", "id",
                             "route", "service", "consumer"}
    assert not unknown, f"{where}: unknown plugin keys {sorted(unknown)}"
    schema = log_only_schema if plugin["name"] == LOG_PLUGIN_NAME else chargeback_schema
    try:
        filled = schema.validate(plugin.get("config") or {})
    except ConfigValidationError as exc:
        pytest.fail(f"{KONG_YML.name} {where}: {exc}")
    assert isinstance(filled, dict)


def test_whole_kong_yml_loads_in_the_harness(chargeback_schema: ConfigSchema, log_only_schema: ConfigSchema) -> None:
    """References between services, routes, consumers and credentials resolve, every
    plugin block validates (nothing ignored), and no plugin is configured twice for a scope."""
    assert KONG_YML.exists(), f"{KONG_YML} does not exist"
    validators = {PLUGIN_NAME: chargeback_schema.validate, LOG_PLUGIN_NAME: log_only_schema.validate, **bundled_validators()}
    config = load_declarative_config(KONG_YML, validators=validators)
    assert config.plugins_named(PLUGIN_NAME) and config.plugins_named(LOG_PLUGIN_NAME)


# ---------------------------------------------------------------- the production shape

# Headers providers read credentials from: a Kong credential under one of these names would be
# taken (and hidden) by key-auth before the provider could see it.
PROVIDER_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
VAULT_REFERENCE = re.compile(r"\{vault://[a-z0-9_-]+/[A-Za-z0-9_./-]+\}")


def _services() -> list[dict[str, Any]]:
    return yaml.safe_load(KONG_YML.read_text())["services"]


def _plugin(service: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in service.get("plugins") or [] if p["name"] == name), None)


def test_llm_routes_use_ai_proxy_with_the_provider_key_from_a_vault_reference() -> None:
    behind_ai_proxy = [s for s in _services() if _plugin(s, "ai-proxy")]
    assert {s["name"] for s in behind_ai_proxy} >= {"openai", "anthropic"}
    for service in behind_ai_proxy:
        auth = _plugin(service, "ai-proxy")["config"]["auth"]  # type: ignore[index]
        assert VAULT_REFERENCE.search(auth["header_value"]), f"{service['name']}: provider key is not a vault reference"
        assert auth["header_name"].lower() in PROVIDER_AUTH_HEADERS
        assert auth.get("allow_override") is not True, f"{service['name']}: a caller could bring its own provider key"


def test_key_auth_never_takes_a_header_a_provider_reads_its_key_from() -> None:
    for service in _services():
        key_auth = _plugin(service, "key-auth")
        if key_auth is None:
            continue
        names = {n.lower().replace("_", "-") for n in key_auth["config"].get("key_names", ["apikey"])}
        assert not names & PROVIDER_AUTH_HEADERS, f"{service['name']}: key-auth would eat {sorted(names & PROVIDER_AUTH_HEADERS)}"
        assert key_auth["config"].get("hide_credentials") is True, f"{service['name']}: the Kong key would reach the provider"


def test_the_plugin_runs_in_a_capture_mode_that_fits_each_route() -> None:
    plain = []
    for service in _services():
        block = _plugin(service, PLUGIN_NAME) or _plugin(service, LOG_PLUGIN_NAME)
        assert block is not None, f"{service['name']} is not metered"
        assert not (_plugin(service, PLUGIN_NAME) and _plugin(service, LOG_PLUGIN_NAME)), f"{service['name']}: metered twice"
        # The log-only plugin is ai_proxy capture with nothing on the request path.
        mode = "ai_proxy" if block["name"] == LOG_PLUGIN_NAME else block["config"].get("usage_capture", "auto")
        ai_proxy = _plugin(service, "ai-proxy")
        if mode == "ai_proxy" and ai_proxy is not None:
            assert ai_proxy["config"]["logging"]["log_statistics"], f"{service['name']}: ai-proxy records no analytics"
        if ai_proxy is None:
            plain.append(service["name"])
            assert mode != "ai_proxy", f"{service['name']}: ai_proxy mode without ai-proxy meters nothing"
        elif ai_proxy["config"]["route_type"] == "preserve":
            assert mode == "auto", f"{service['name']}: ai-proxy records no usage in preserve mode"
        else:
            assert mode in ("auto", "ai_proxy"), f"{service['name']}: {mode} would buffer streams ai-proxy already counts"
        secret = block["config"].get("credential_hmac_secret")
        assert secret is None or VAULT_REFERENCE.fullmatch(secret), f"{service['name']}: HMAC key written in clear"
    assert plain, "kong.yml shows no plain proxy route without ai-proxy"
