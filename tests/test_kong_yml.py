"""kong.yml stays valid for the plugin we ship.

Every `ai-chargeback` config block in the repository's kong.yml is validated
against the schema the real `ai-chargeback-pluginserver --dump` prints, the
way Kong validates an external plugin's config (kong_harness.ConfigSchema,
which also applies the metaschema checks Kong runs on the dumped schema).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kong_harness import ConfigSchema, ConfigValidationError, PluginServerProcess, find_console_script
from kong_harness.declarative import load_declarative_config
from kong_harness.key_auth import SCHEMA as KEY_AUTH_SCHEMA

PLUGIN_NAME = "ai-chargeback"
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
              if isinstance(plugin, dict) and plugin.get("name") == PLUGIN_NAME]
    return blocks or [pytest.param(None, None, id="no-ai-chargeback-block")]


@pytest.fixture(scope="module")
def chargeback_schema(tmp_path_factory: pytest.TempPathFactory) -> ConfigSchema:
    command = find_console_script(SERVER_COMMAND)
    if command is None:
        pytest.skip(f"{SERVER_COMMAND} is not on PATH (nor next to {sys.executable}): "
                    "the plugin package is not installed yet")
    server = PluginServerProcess([command], prefix=tmp_path_factory.mktemp("dump"))
    info = server.dump_info()  # fails loudly on anything but one JSON list on stdout
    assert info.name == PLUGIN_NAME, f"{SERVER_COMMAND} --dump reports plugin {info.name!r}"
    return ConfigSchema(info.schema)


@pytest.mark.parametrize(("where", "plugin"), _chargeback_blocks())
def test_every_ai_chargeback_block_validates(chargeback_schema: ConfigSchema, where: str | None, plugin: Any) -> None:
    assert KONG_YML.exists(), f"{KONG_YML} does not exist"
    assert where is not None, f"{KONG_YML} has no '{PLUGIN_NAME}' plugin block"
    unknown = set(plugin) - {"name", "config", "enabled", "protocols", "tags", "instance_name", "id",
                             "route", "service", "consumer"}
    assert not unknown, f"{where}: unknown plugin keys {sorted(unknown)}"
    try:
        filled = chargeback_schema.validate(plugin.get("config") or {})
    except ConfigValidationError as exc:
        pytest.fail(f"{KONG_YML.name} {where}: {exc}")
    assert isinstance(filled, dict)


def test_whole_kong_yml_loads_in_the_harness(chargeback_schema: ConfigSchema) -> None:
    """References between services, routes, consumers and credentials resolve
    and no plugin is configured twice for the same scope."""
    assert KONG_YML.exists(), f"{KONG_YML} does not exist"
    doc = yaml.safe_load(KONG_YML.read_text())
    others = {p.get("name") for _, p in _plugin_blocks(doc)} - {PLUGIN_NAME, "key-auth"}
    config = load_declarative_config(
        KONG_YML,
        validators={
            PLUGIN_NAME: chargeback_schema.validate,
            "key-auth": ConfigSchema(KEY_AUTH_SCHEMA, check_definition=False).validate,
        },
        ignore_plugins=frozenset(n for n in others if n),
    )
    assert config.plugins_named(PLUGIN_NAME)
