"""The schema validator accepts and rejects plugin configs like Kong's schema library."""

from __future__ import annotations

from typing import Any

import pytest
from kong_harness import ConfigSchema, ConfigValidationError, PluginServerProcess, SchemaDefinitionError, cjson_encode
from kong_harness.luaisms import LuaArray

from .helpers import PROBE_PLUGIN


def plugin_schema(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "fields": [{"config": {"type": "record", "fields": list(fields)}}]}


SCHEMA = plugin_schema(
    {"endpoint": {"type": "string", "required": True}},
    {"mode": {"type": "string", "default": "auto", "one_of": ["auto", "buffered", "estimate"]}},
    {"batch": {"type": "integer", "default": 500, "between": [1, 10000]}},
    {"ratio": {"type": "number", "gt": 0}},
    {"enabled": {"type": "boolean", "default": True}},
    {"hosts": {"type": "array", "elements": {"type": "string"}, "default": ["a:1"], "len_min": 1}},
    {"kinds": {"type": "set", "elements": {"type": "string", "one_of": ["x", "y"]}}},
    {"labels": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}, "default": {}}},
    {"name": {"type": "string", "match": "^[%w%-_]+$", "len_max": 10}},
    {
        "retry": {
            "type": "record",
            "fields": [
                {"attempts": {"type": "integer", "default": 3}},
                {"backoff": {"type": "record", "fields": [{"base_ms": {"type": "integer", "default": 100}}]}},
                {"optional": {"type": "record", "required": False, "fields": [{"x": {"type": "integer", "default": 1}}]}},
            ],
        }
    },
    {"targets": {"type": "array", "elements": {"type": "record", "fields": [
        {"host": {"type": "string", "required": True}},
        {"weight": {"type": "integer", "default": 100}},
    ]}}},
)


def validate(config: Any) -> dict[str, Any]:
    return ConfigSchema(SCHEMA).validate(config)


def errors_of(config: Any) -> dict[str, Any]:
    with pytest.raises(ConfigValidationError) as info:
        validate(config)
    return info.value.errors["config"]


def test_defaults_are_filled_recursively() -> None:
    config = validate({"endpoint": "e", "targets": [{"host": "h"}]})
    assert config == {
        "endpoint": "e",
        "mode": "auto",
        "batch": 500,
        "ratio": None,  # optional without default: null, not absent
        "enabled": True,
        "hosts": ["a:1"],
        "kinds": None,
        "labels": {},
        "name": None,
        # entity.lua makes nested records required, so their defaults expand;
        # an explicitly optional record stays null
        "retry": {"attempts": 3, "backoff": {"base_ms": 100}, "optional": None},
        "targets": [{"host": "h", "weight": 100}],
    }
    assert isinstance(config["hosts"], LuaArray)
    # empty arrays keep cjson.array_mt, empty maps are objects
    encoded = cjson_encode(ConfigSchema(SCHEMA).validate({"endpoint": "e/1", "hosts": ["h"], "kinds": []}))
    assert '"kinds":[]' in encoded and '"labels":{}' in encoded and '"endpoint":"e\\/1"' in encoded


def test_every_error_is_reported_at_once_with_kong_messages() -> None:
    errors = errors_of({
        "mode": "nope",
        "batch": 0,
        "ratio": 0,
        "enabled": "yes",
        "hosts": [],
        "kinds": ["x", "z"],
        "labels": {"k": 1},
        "name": "has space",
        "retry": {"attempts": 1.5, "bogus": 1},
        "targets": [{"weight": 1}],
        "unknown_field": True,
    })
    assert errors == {
        "endpoint": "required field missing",
        "mode": "expected one of: auto, buffered, estimate",
        "batch": "value should be between 1 and 10000",
        "ratio": "value must be greater than 0",
        "enabled": "expected a boolean",
        "hosts": "length must be at least 1",
        "kinds": {2: "expected one of: x, y"},
        "labels": "expected a string",
        "name": "invalid value: has space",
        "retry": {"attempts": "expected an integer", "bogus": "unknown field"},
        "targets": {1: {"host": "required field missing"}},
        "unknown_field": "unknown field",
    }


def test_message_reads_like_kongs_schema_violation() -> None:
    with pytest.raises(ConfigValidationError) as info:
        validate({"endpoint": "e", "mode": "x"})
    assert str(info.value) == "schema violation (config.mode: expected one of: auto, buffered, estimate)"
    with pytest.raises(ConfigValidationError) as info:
        validate({"mode": "x"})
    assert str(info.value).startswith("2 schema violations (config.endpoint: required field missing; config.mode:")


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"endpoint": ""}, "endpoint", "length must be at least 1"),  # empty strings are rejected by default
        ({"endpoint": None}, "endpoint", "required field missing"),  # explicit null of a required field
        ({"endpoint": "e", "retry": None}, "retry", "required field missing"),
        ({"endpoint": "e", "name": "x" * 11}, "name", "length must be at most 10"),
        ({"endpoint": 5}, "endpoint", "expected a string"),
        ({"endpoint": "e", "batch": True}, "batch", "expected an integer"),
        ({"endpoint": "e", "hosts": "a"}, "hosts", "expected an array"),
        ({"endpoint": "e", "retry": "x"}, "retry", "expected a record"),
    ],
)
def test_single_rejections(config: dict[str, Any], field: str, message: str) -> None:
    assert errors_of(config)[field] == message


def test_accepts_kong_equivalent_inputs() -> None:
    config = validate({"endpoint": "e", "batch": 2.0, "kinds": {}, "updated_at": 1})
    assert config["batch"] == 2.0  # integral numbers are integers in Lua
    assert config["kinds"] == []  # an empty Lua table is a valid (empty) set
    assert config["updated_at"] == 1  # Kong never validates updated_at
    assert validate({"endpoint": "e", "kinds": ["x", "x", "y"]})["kinds"] == ["x", "y"]  # sets drop duplicates


def test_missing_config_block_gets_all_defaults() -> None:
    schema = plugin_schema({"a": {"type": "string", "default": "x"}}, {"r": {"type": "record", "fields": [{"b": {"type": "integer", "default": 2}}]}})
    assert ConfigSchema(schema).validate() == {"a": "x", "r": {"b": 2}}


def test_entity_checks_inside_records() -> None:
    schema = plugin_schema({"auth": {"type": "record", "entity_checks": [{"at_least_one_of": ["token", "user"]}], "fields": [
        {"token": {"type": "string"}}, {"user": {"type": "string"}}]}})
    with pytest.raises(ConfigValidationError) as info:
        ConfigSchema(schema).validate({"auth": {}})
    assert info.value.errors == {"config": {"auth": {"@entity": ["at least one of these fields must be non-empty: 'token', 'user'"]}}}
    assert ConfigSchema(schema).validate({"auth": {"token": "t"}})["auth"] == {"token": "t", "user": None}


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"type": "strin"}, "x.type: expected one of"),
        ({"type": "string", "enum": ["a"]}, "x.enum: unknown field"),
        ({"type": "boolean", "one_of": [True]}, "field of type 'boolean' cannot have attribute 'one_of'"),
        ({"type": "array"}, "field of type 'array' must declare 'elements'"),
        ({"type": "map", "keys": {"type": "string"}}, "field of type 'map' must declare 'values'"),
        ({"type": "string", "description": "short"}, "x.description: length must be at least 10"),
        ({"type": "string", "default": "c", "one_of": ["a", "b"]}, "x.default: expected one of: a, b"),
        ({"type": "integer", "default": "3"}, "x.default: expected an integer"),
        ({"required": True}, "x: missing type declaration"),
    ],
)
def test_schema_definitions_kong_would_refuse(field: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaDefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ConfigSchema(plugin_schema({"x": field}))


def test_against_a_schema_dumped_by_a_real_server(tmp_path) -> None:
    info = PluginServerProcess.for_script(PROBE_PLUGIN, prefix=tmp_path).dump_info()
    schema = ConfigSchema(info.schema)
    assert schema.validate({"report_dir": "/r"})["limits"] == {"max_steps": 50, "labels": ["a"]}
    with pytest.raises(ConfigValidationError) as exc:
        schema.validate({"report_dir": "/r", "mode": "loud", "limits": {"max_steps": 5000}})
    assert exc.value.errors == {"config": {"mode": "expected one of: script, quiet",
                                           "limits": {"max_steps": "value should be between 1 and 1000"}}}
