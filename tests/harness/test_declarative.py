"""kong.yml loading: entities, stable ids, plugin scoping and Kong-like errors."""

from __future__ import annotations

import pytest
from kong_harness import ConfigSchema, DeclarativeConfigError, load_declarative_config, stable_id
from kong_harness.key_auth import SCHEMA as KEY_AUTH_SCHEMA

LIMITS = {"name": "limits", "fields": [{"config": {"type": "record", "fields": [
    {"rpm": {"type": "integer", "required": True, "gt": 0}},
]}}]}
VALIDATORS = {
    "limits": ConfigSchema(LIMITS).validate,
    "key-auth": ConfigSchema(KEY_AUTH_SCHEMA, check_definition=False).validate,
}

KONG_YML = """
_format_version: "3.0"
services:
  - name: a
    host: a.internal
    port: 8080
    protocol: http
    path: /v1
    routes:
      - name: ra
        paths: ["/a"]
        methods: [get, post]
        plugins:
          - name: limits
            config: {rpm: 3}
    plugins:
      - name: limits
        config: {rpm: 2}
      - name: key-auth
routes:
  - name: rb
    service: a
    paths: ["~/b/\\\\d+$"]
consumers:
  - username: alice
    keyauth_credentials: [{key: k1}]
    plugins:
      - name: limits
        config: {rpm: 4}
plugins:
  - name: limits
    config: {rpm: 1}
"""


def test_entities_defaults_and_stable_ids() -> None:
    config = load_declarative_config(KONG_YML, validators=VALIDATORS)
    service = config.service_by_name("a")
    assert service["id"] == stable_id("service", "a")
    assert (service["host"], service["port"], service["path"], service["retries"]) == ("a.internal", 8080, "/v1", 5)
    route = config.route_by_name("ra")
    assert route.record["methods"] == ["GET", "POST"] and route.record["strip_path"] is True
    assert route.record["service"] == {"id": service["id"]}
    again = load_declarative_config(KONG_YML, validators=VALIDATORS)
    assert [p.id for p in again.plugins] == [p.id for p in config.plugins]
    assert config.credentials["k1"]["consumer"] == {"id": config.consumer_by_username("alice")["id"]}
    assert "updated_at" not in config.credentials["k1"]  # keyauth_credentials has no such field


def test_plugin_precedence_follows_lookup_cfg() -> None:
    config = load_declarative_config(KONG_YML, validators=VALIDATORS)
    route, service = config.route_by_name("ra").id, config.service_by_name("a")["id"]
    alice = config.consumer_by_username("alice")["id"]
    rpm = lambda *ids: config.plugin_for("limits", *ids).config["rpm"]  # noqa: E731
    assert rpm(route, service, None) == 3  # route beats service
    assert rpm(None, service, None) == 2
    assert rpm(route, service, alice) == 4  # consumer-only beats route-only (combo order)
    assert rpm(None, None, None) == 1  # global


def test_router_prefix_regex_and_methods() -> None:
    config = load_declarative_config(KONG_YML, validators=VALIDATORS)
    assert config.match("GET", "x", "/a/chat").route.name == "ra"
    assert config.match("DELETE", "x", "/a/chat") is None
    assert config.match("GET", "x", "/b/12").route.name == "rb"
    assert config.match("GET", "x", "/b/x") is None


def test_errors_are_collected_and_kong_worded() -> None:
    broken = KONG_YML.replace("{rpm: 3}", "{rpm: 0, burst: 1}").replace("name: key-auth", "name: rate-limiting")
    with pytest.raises(DeclarativeConfigError) as info:
        load_declarative_config(broken, validators=VALIDATORS)
    message = str(info.value)
    assert "2 schema violations (config.burst: unknown field; config.rpm: value must be greater than 0)" in message
    assert "plugin 'rate-limiting' not enabled; add it to the 'plugins' configuration property" in message
    # a plugin the harness should not model can be ignored explicitly
    load_declarative_config(broken.replace("{rpm: 0, burst: 1}", "{rpm: 3}"), validators=VALIDATORS,
                            ignore_plugins=frozenset({"rate-limiting"}))
