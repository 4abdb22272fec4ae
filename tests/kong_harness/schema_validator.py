"""Validate a plugin `config` block the way Kong's schema library does.

Follows kong/db/schema/init.lua (`process_auto_fields` for defaults, then
`validate` / `validate_field`), kong/db/schema/entity.lua (records inside a
plugin schema are required unless they say otherwise, so their defaults get
expanded) and a subset of kong/db/schema/metaschema.lua (the checks Kong runs
on the dumped Schema before it accepts the plugin at all).

Values: Python `None` is Lua `ngx.null` (an explicit null); a key that is
absent is Lua `nil`. Arrays and sets come back as `LuaArray` so they encode as
`[]` even when empty, exactly like Kong's cjson.array_mt tables.
"""

from __future__ import annotations

import copy
import math
import re
import secrets
import uuid
from collections.abc import Iterable
from typing import Any

from .errors import ConfigValidationError, SchemaDefinitionError
from .lua_pattern import LuaPatternError, lua_match
from .luaisms import LuaArray, lua_tostring

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "nil"})()

MESSAGES = {
    "ARRAY": "expected an array",
    "SET": "expected a set",
    "MAP": "expected a map",
    "RECORD": "expected a record",
    "STRING": "expected a string",
    "NUMBER": "expected a number",
    "BOOLEAN": "expected a boolean",
    "INTEGER": "expected an integer",
    "FUNCTION": "expected a function",
    "EQ": "value must be %s",
    "NE": "value must not be %s",
    "GT": "value must be greater than %s",
    "BETWEEN": "value should be between %s and %s",
    "LEN_EQ": "length must be %s",
    "LEN_MIN": "length must be at least %s",
    "LEN_MAX": "length must be at most %s",
    "MATCH": "invalid value: %s",
    "NOT_MATCH": "invalid value: %s",
    "STARTS_WITH": "should start with: %s",
    "CONTAINS": "expected to contain: %s",
    "ONE_OF": "expected one of: %s",
    "NOT_ONE_OF": "must not be one of: %s",
    "IS_REGEX": "not a valid regex: %s",
    "TIMESTAMP": "expected a valid timestamp",
    "UUID": "expected a valid UUID",
    "VALIDATION": "failed validating: %s",
    "REQUIRED": "required field missing",
    "UNKNOWN": "unknown field",
    "REQUIRED_FOR_ENTITY_CHECK": "field required for entity check",
    "AT_LEAST_ONE_OF": "at least one of these fields must be non-empty: %s",
    "ONLY_ONE_OF": "exactly one of these fields must be non-empty: %s",
    "DISTINCT": "values of these fields must be distinct: %s",
    "MUTUALLY_REQUIRED": "all or none of these fields must be set: %s",
    "MUTUALLY_EXCLUSIVE": "only one or none of these fields must be set: %s",
    "MUTUALLY_EXCLUSIVE_SETS": "these sets are mutually exclusive: %s",
    "SCHEMA_TYPE": "invalid type: %s",
}

VALID_TYPES = ("array", "set", "string", "number", "boolean", "integer", "foreign", "map", "record", "function", "json")

VALIDATORS_ORDER = (
    "eq", "ne", "not_one_of", "one_of", "gt", "timestamp", "uuid", "is_regex", "between",
    "len_eq", "len_min", "len_max", "starts_with", "not_match", "match_none", "match",
    "match_all", "match_any", "contains", "custom_validator", "mutually_exclusive_subsets",
)  # fmt: skip

# metaschema.lua: attributes a field definition may carry.
FIELD_ATTRIBUTES = frozenset(
    {
        "type", "required", "reference", "description", "examples", "auto", "unique",
        "unique_across_ws", "on_delete", "default", "abstract", "generate_admin_api",
        "immutable", "err", "encrypted", "referenceable", "json_schema", "transient",
        "deprecation", "elements", "keys", "values", "fields", "entity_checks",
        "shorthand_fields",
    }
    | set(VALIDATORS_ORDER)
)  # fmt: skip
REQUIRED_ATTRIBUTES = {"array": ("elements",), "set": ("elements",), "map": ("keys", "values"), "record": ("fields",)}
ATTRIBUTE_TYPES = {
    "between": {"integer", "number"},
    "len_eq": {"array", "set", "string", "map"},
    "match": {"string"},
    "one_of": {"string", "number", "integer"},
    "contains": {"array", "set"},
    "is_regex": {"string"},
    "timestamp": {"number", "integer"},
    "uuid": {"string"},
    "unique": {"string", "number", "integer", "foreign"},
    "unique_across_ws": {"string", "number", "integer", "foreign"},
    "abstract": {"string", "number", "integer", "record", "array", "set", "map"},
    "json_schema": {"json"},
    "transient": {"string", "number", "integer", "array", "set", "boolean"},
}
SUPPORTED_ENTITY_CHECKS = (
    "at_least_one_of", "only_one_of", "distinct", "mutually_required", "mutually_exclusive",
    "mutually_exclusive_sets",
)  # fmt: skip

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


# ---------------------------------------------------------------- Lua views


def lua_type(value: Any) -> str:
    if value is MISSING:
        return "nil"
    if value is None:
        return "userdata"  # ngx.null
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (dict, list)):
        return "table"
    return "userdata"


def lua_eq(a: Any, b: Any) -> bool:
    """Lua `==`: true ~= 1, and tables compare by identity (never equal here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    return bool(a == b)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, dict) and not value)


def _fmt_number(n: Any) -> str:
    return lua_tostring(n)


def _quoted_list(words: Iterable[Any]) -> str:
    parts = []
    for w in words:
        parts.append(f"({_quoted_list(w)})" if isinstance(w, list) else f"'{w}'")
    return ", ".join(parts)


def _is_nonempty(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, (dict, list)) and not value:
        return False
    if value == "":
        return False
    return True


def _as_table(value: Any) -> dict[Any, Any]:
    """A Lua table seen through pairs(): lists have keys 1..n."""
    if isinstance(value, list):
        return {i + 1: v for i, v in enumerate(value)}
    return value


def _fields(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in record.get("fields") or []:
        (name, fdef), = item.items()
        out.append((name, fdef))
    return out


# ---------------------------------------------------------------- defaults


def _handle_missing(field: dict[str, Any], value: Any) -> Any:
    if "default" in field:
        default = copy.deepcopy(field["default"])
        if field.get("type") in ("array", "set") and isinstance(default, list):
            default = LuaArray(default)
        return default
    if field.get("nilable"):
        return value
    if field.get("required") is not True:
        return None
    if field.get("abstract"):
        return MISSING
    if field.get("type") == "record":
        return _process_record(field, {})
    return MISSING


def _process_record(record: dict[str, Any], data: Any) -> Any:
    data = copy.deepcopy(_as_table(data))
    for name, fdef in _fields(record):
        value = data.get(name, MISSING)
        if fdef.get("auto") and value is MISSING:
            if fdef.get("uuid"):
                value = str(uuid.uuid4())
            elif fdef.get("type") == "string":
                value = secrets.token_hex(16)
        value = _adjust(fdef, value)
        if value is MISSING:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def _adjust(field: dict[str, Any], value: Any) -> Any:
    """schema/init.lua adjust_field_for_context with context "insert"."""
    if field.get("abstract"):
        return value
    ftype = field.get("type")
    if ftype == "record":
        if value is not None and (value is not MISSING or field.get("required") is True):
            if value is MISSING:
                value = _handle_missing(field, value)
            if isinstance(value, (dict, list)):
                return _process_record(field, value)
    elif isinstance(value, (dict, list)):
        sub = None
        if ftype == "array":
            if _is_sequence(value):
                value = LuaArray(value if isinstance(value, list) else [])
            sub = field.get("elements")
        elif ftype == "set":
            if _is_sequence(value):
                deduped: list[Any] = []
                for item in value if isinstance(value, list) else []:
                    if item not in deduped:
                        deduped.append(item)
                value = LuaArray(deduped)
            sub = field.get("elements")
        elif ftype == "map":
            sub = field.get("values")
        if sub is not None:
            if isinstance(value, list):
                value = type(value)(_adjust(sub, v) for v in value)
            else:
                value = {k: _adjust(sub, v) for k, v in value.items()}
    if value is MISSING:
        return _handle_missing(field, value)
    return value


# ---------------------------------------------------------------- validation


def _validate_record(record: dict[str, Any], data: dict[Any, Any], full_check: bool = True) -> dict[Any, Any]:
    errors: dict[Any, Any] = {}
    by_name = dict(_fields(record))
    for key, value in data.items():
        fdef = by_name.get(str(key))
        if fdef is not None and fdef.get("type") == "json":
            continue  # JSON-schema fields are not modelled
        if fdef is None and str(key) == "updated_at":
            continue  # Schema.new marks updated_at as never validated
        if fdef is None:
            errors[key] = MESSAGES["UNKNOWN"]
            continue
        ok, err = validate_field(fdef, value)
        if not ok:
            errors[key] = err
    for name, fdef in by_name.items():
        value = data.get(name, MISSING)
        if fdef.get("required") is True and (value is None or (full_check and value is MISSING)):
            errors[name] = MESSAGES["REQUIRED"]
    _run_entity_checks(record, data, errors)
    return errors


def _run_entity_checks(record: dict[str, Any], data: dict[Any, Any], errors: dict[Any, Any]) -> None:
    for check in record.get("entity_checks") or []:
        (name, arg), = check.items()
        if arg is None:
            continue
        if name not in SUPPORTED_ENTITY_CHECKS:
            raise SchemaDefinitionError(f"entity check {name!r} is not supported by the harness")
        if name == "mutually_exclusive_sets":
            names = list(arg.get("set1", [])) + list(arg.get("set2", []))
        else:
            names = list(arg)
        run_with_missing = name in ("at_least_one_of", "mutually_required", "mutually_exclusive", "mutually_exclusive_sets")
        values = {n: data.get(n, MISSING) for n in names}
        if not run_with_missing:
            missing = [n for n, v in values.items() if v is MISSING]
            if missing:
                for n in missing:
                    errors[n] = MESSAGES["REQUIRED_FOR_ENTITY_CHECK"]
                continue
        nonempty = [n for n in names if _is_nonempty(values[n])]
        failed: str | None = None
        if name == "at_least_one_of" and not nonempty:
            failed = _quoted_list(names)
        elif name == "only_one_of" and len(nonempty) != 1:
            failed = _quoted_list(names)
        elif name == "distinct":
            seen = [values[n] for n in nonempty]
            if len(seen) != len({repr(v) for v in seen}):
                failed = _quoted_list(names)
        elif name == "mutually_required" and 0 < len(nonempty) < len(names):
            failed = _quoted_list(names)
        elif name == "mutually_exclusive" and len(nonempty) > 1:
            failed = _quoted_list(names)
        elif name == "mutually_exclusive_sets":
            in1 = [n for n in arg.get("set1", []) if _is_nonempty(values[n])]
            in2 = [n for n in arg.get("set2", []) if _is_nonempty(values[n])]
            if in1 and in2:
                failed = f"({_quoted_list(in1)}), ({_quoted_list(in2)})"
        if failed is not None:
            errors.setdefault("@entity", []).append(MESSAGES[name.upper()] % failed)


def _length(value: Any, field: dict[str, Any]) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))  # Lua's # counts bytes
    return len(value)


def _run_validators(field: dict[str, Any], value: Any) -> tuple[bool, Any]:
    for name in VALIDATORS_ORDER:
        if name not in field:
            continue
        arg = field[name]
        err: str | None = None
        ok = True
        if name == "eq":
            ok = lua_eq(value, arg)
            err = MESSAGES["EQ"] % ("null" if arg is None else lua_tostring(arg))
        elif name == "ne":
            ok = not lua_eq(value, arg)
            err = MESSAGES["NE"] % ("null" if arg is None else lua_tostring(value))
        elif name == "not_one_of":
            ok = not any(lua_eq(value, o) for o in arg)
            err = MESSAGES["NOT_ONE_OF"] % ", ".join(lua_tostring(o) for o in arg)
        elif name == "one_of":
            ok = any(lua_eq(value, o) for o in arg)
            err = MESSAGES["ONE_OF"] % ", ".join(lua_tostring(o) for o in arg)
        elif name == "gt":
            ok = value > arg
            err = MESSAGES["GT"] % lua_tostring(arg)
        elif name == "timestamp":
            ok = value > 0
            err = MESSAGES["TIMESTAMP"]
        elif name == "uuid":
            ok = len(value) == 36 and bool(_UUID_RE.match(value))
            err = MESSAGES["UUID"]
        elif name == "is_regex":
            try:
                re.compile(value)
            except re.error:
                ok = False
            err = MESSAGES["IS_REGEX"] % value
        elif name == "between":
            ok = arg[0] <= value <= arg[1]
            err = MESSAGES["BETWEEN"] % (_fmt_number(arg[0]), _fmt_number(arg[1]))
        elif name in ("len_eq", "len_min", "len_max"):
            length = _length(value, field)
            ok = {"len_eq": length == arg, "len_min": length >= arg, "len_max": length <= arg}[name]
            err = MESSAGES[name.upper()] % arg
        elif name == "starts_with":
            ok = value.startswith(arg)
            err = MESSAGES["STARTS_WITH"] % arg
        elif name in ("match", "not_match"):
            matched = _lua_match(value, arg)
            ok = matched if name == "match" else not matched
            err = MESSAGES[name.upper()] % value
        elif name in ("match_all", "match_none"):
            for item in arg:
                matched = _lua_match(value, item["pattern"])
                if matched != (name == "match_all"):
                    ok, err = False, item.get("err")
                    break
        elif name == "match_any":
            ok = any(_lua_match(value, p) for p in arg["patterns"])
            err = arg.get("err")
        elif name == "contains":
            ok = any(lua_eq(item, arg) for item in value)
            err = MESSAGES["CONTAINS"] % lua_tostring(arg)
        elif name == "mutually_exclusive_subsets":
            member_of: list[list[Any]] = []
            for item in value:
                for subset in arg:
                    if item in subset and subset not in member_of:
                        member_of.append(subset)
            ok = len(member_of) <= 1
            err = MESSAGES["MUTUALLY_EXCLUSIVE_SETS"] % _quoted_list(member_of)
        elif name == "custom_validator":
            # Only schemas written in Python (the bundled plugins) carry one;
            # a dumped schema cannot, and the metaschema check rejects it.
            if not callable(arg):
                raise SchemaDefinitionError("custom_validator must be a callable")
            ok, err = arg(value)
        if not ok:
            if err is None:
                err = MESSAGES.get(name.upper(), MESSAGES["VALIDATION"])
                err = err % value if "%s" in err else err
            return False, field.get("err") or err
    return True, None


def _lua_match(value: str, pattern: str) -> bool:
    try:
        return lua_match(value, pattern)
    except LuaPatternError as exc:
        raise SchemaDefinitionError(f"Lua pattern {pattern!r}: {exc}") from exc


def validate_field(field: dict[str, Any], value: Any) -> tuple[bool, Any]:
    """schema/init.lua Schema:validate_field. Returns (ok, error)."""
    if value is None:
        if "ne" in field and field["ne"] is None:
            return False, field.get("err") or MESSAGES["NE"] % "null"
        if "eq" in field and field["eq"] is not None:
            return False, MESSAGES["EQ"] % lua_tostring(field["eq"])
        if field.get("required"):
            return False, MESSAGES["REQUIRED"]
        return True, None
    if "eq" in field and field["eq"] is None:
        return False, field.get("err") or MESSAGES["EQ"] % "null"

    ftype = field.get("type")
    if ftype in ("array", "set"):
        if not _is_sequence(value):
            return False, MESSAGES[ftype.upper()]
        elements = dict(field["elements"], required=True)
        errs = {}
        for i, item in enumerate(value if isinstance(value, list) else []):
            ok, err = validate_field(elements, item)
            if not ok:
                errs[i + 1] = err
        if errs:
            return False, errs
    elif ftype == "map":
        if not isinstance(value, (dict, list)):
            return False, MESSAGES["MAP"]
        keys = dict(field["keys"], required=True)
        values = dict(field["values"], required=True)
        for k, v in _as_table(value).items():
            for sub, item in ((keys, k), (values, v)):
                ok, err = validate_field(sub, item)
                if not ok:
                    return False, err
    elif ftype == "record":
        if not isinstance(value, (dict, list)):
            return False, MESSAGES["RECORD"]
        filled = _process_record(field, value)
        errs = _validate_record(field, filled)
        if errs:
            return False, errs
    elif ftype == "foreign":
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            return False, {"id": MESSAGES["REQUIRED"]}
    elif ftype == "integer":
        if not (lua_type(value) == "number" and math.isfinite(value) and value == math.floor(value)):
            return False, MESSAGES["INTEGER"]
    elif ftype == "string":
        if not isinstance(value, str):
            return False, MESSAGES["STRING"]
        if "len_min" not in field:
            field = dict(field, len_min=1)  # empty strings are rejected by default
    elif ftype == "function":
        return False, MESSAGES["FUNCTION"]
    elif ftype in ("number", "boolean"):
        if lua_type(value) != ftype:
            return False, MESSAGES[ftype.upper()]
    elif ftype == "json":
        return True, None
    elif ftype != "any":
        return False, MESSAGES["SCHEMA_TYPE"] % ftype
    return _run_validators(field, value)


# ---------------------------------------------------------------- metaschema


def check_schema_definition(schema: dict[str, Any]) -> None:
    """The part of MetaSubSchema:validate that a dumped Python schema can fail.

    Kong refuses to load the plugin ("schema violation") if this fails.
    """
    errors: list[str] = []
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        raise SchemaDefinitionError("plugin schema must be a table with a string 'name'")
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise SchemaDefinitionError("'fields' must be a table")
    _check_fields(fields, "", errors)
    if errors:
        raise SchemaDefinitionError(
            f"plugin schema {schema['name']!r} would be rejected by Kong: " + "; ".join(errors)
        )


def _check_fields(fields: Any, prefix: str, errors: list[str]) -> None:
    if not isinstance(fields, list):
        errors.append(f"{prefix or 'fields'}: 'fields' must be a table")
        return
    for item in fields:
        if not isinstance(item, dict):
            errors.append(f"{prefix}fields: each entry in fields must be a sub-table")
            continue
        if len(item) != 1:
            errors.append(f"{prefix}fields: each entry must hold exactly one field (length must be 1)")
            continue
        (name, fdef), = item.items()
        if not isinstance(name, str):
            errors.append(f"{prefix}fields: each key in fields must be a string")
            continue
        _check_field(fdef, f"{prefix}{name}", errors)


def _check_field(fdef: Any, path: str, errors: list[str]) -> None:
    if not isinstance(fdef, dict):
        errors.append(f"{path}: '{path}' must be a table")
        return
    ftype = fdef.get("type")
    if not ftype:
        errors.append(f"{path}: missing type declaration")
        return
    if ftype not in VALID_TYPES:
        errors.append(f"{path}.type: expected one of: {', '.join(VALID_TYPES)}")
        return
    for attr in fdef:
        if attr not in FIELD_ATTRIBUTES:
            errors.append(f"{path}.{attr}: unknown field")
        elif attr in ATTRIBUTE_TYPES and ftype not in ATTRIBUTE_TYPES[attr]:
            errors.append(f"{path}: field of type '{ftype}' cannot have attribute '{attr}'")
    if not (fdef.get("abstract") and ftype == "record"):
        for attr in REQUIRED_ATTRIBUTES.get(ftype, ()):
            # any table is truthy in Lua, an empty one included
            if fdef.get(attr) is None or fdef.get(attr) is False:
                errors.append(f"{path}: field of type '{ftype}' must declare '{attr}'")
    description = fdef.get("description")
    if description is not None:
        if not isinstance(description, str):
            errors.append(f"{path}.description: expected a string")
        elif not 10 <= len(description.encode()) <= 500:
            limit = "at least 10" if len(description.encode()) < 10 else "at most 500"
            errors.append(f"{path}.description: length must be {limit}")
    if "custom_validator" in fdef and not callable(fdef["custom_validator"]):
        errors.append(f"{path}.custom_validator: expected a function")
    if "required" in fdef and not isinstance(fdef["required"], bool):
        errors.append(f"{path}.required: expected a boolean")
    for attr in ("elements", "keys", "values"):
        if attr in fdef:
            _check_field(fdef[attr], f"{path}.{attr}", errors)
    if "fields" in fdef:
        _check_fields(fdef["fields"], f"{path}.", errors)
    for check in fdef.get("entity_checks") or []:
        if not isinstance(check, dict) or len(check) != 1:
            errors.append(f"{path}.entity_checks: each check must hold exactly one checker")
        elif next(iter(check)) not in SUPPORTED_ENTITY_CHECKS:
            errors.append(f"{path}.entity_checks: {next(iter(check))!r} is not supported by the harness")
    if "default" in fdef and fdef["default"] is not None:
        try:
            ok, err = validate_field(fdef, fdef["default"])
        except SchemaDefinitionError as exc:
            ok, err = False, str(exc)
        if not ok:
            errors.append(f"{path}.default: {_flatten_one(err)}")


def _flatten_one(err: Any) -> str:
    if isinstance(err, dict):
        return "; ".join(f"{k}: {_flatten_one(v)}" for k, v in err.items())
    return str(err)


# ---------------------------------------------------------------- public API


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """Every leaf error as 'dotted.path: message', keys sorted like Kong's."""
    if not isinstance(errors, dict):
        return [f"{prefix}: {errors}" if prefix else str(errors)]
    out: list[str] = []
    for message in errors.get("@entity", []):
        out.append(f"{prefix}: {message}" if prefix else message)
    for key in sorted((k for k in errors if k != "@entity"), key=lambda k: str(k)):
        path = f"{prefix}.{key}" if prefix else str(key)
        out.extend(flatten_errors(errors[key], path))
    return out


def violation_message(errors: dict[Any, Any]) -> str:
    """Kong's 'schema violation (...)' wording (db/errors.lua), with nested
    errors spelled as dotted paths instead of Kong's pl.pretty dump."""
    lines = flatten_errors(errors)
    if len(lines) == 1:
        return f"schema violation ({lines[0]})"
    return f"{len(lines)} schema violations ({'; '.join(lines)})"


class ConfigSchema:
    """A plugin's config schema, ready to validate `config` blocks."""

    def __init__(self, plugin_schema: dict[str, Any], *, check_definition: bool = True) -> None:
        if check_definition:
            check_schema_definition(plugin_schema)
        self.name = plugin_schema["name"]
        config = None
        for item in plugin_schema["fields"]:
            if "config" in item:
                config = copy.deepcopy(item["config"])
        if config is None:
            raise SchemaDefinitionError(f"plugin schema {self.name!r} has no 'config' field")
        _make_records_required(config)
        config["required"] = True  # entity.lua: the plugin's config record is required too
        self.config_field = config

    def validate(self, config: Any = MISSING) -> dict[str, Any]:
        """Return the config with every default filled, or raise
        ConfigValidationError listing every field error at once."""
        value = _adjust(self.config_field, config)
        if value is MISSING or value is None:
            errors: dict[Any, Any] = {"config": MESSAGES["REQUIRED"]}
        else:
            ok, err = validate_field(self.config_field, value)
            errors = {} if ok else {"config": err}
        if errors:
            raise ConfigValidationError(violation_message(errors), errors)
        return _strip_missing(value)


def _make_records_required(field: dict[str, Any]) -> None:
    """entity.lua make_records_required: nested records default to required."""
    for _, fdef in _fields(field):
        if fdef.get("type") == "record":
            fdef.setdefault("required", True)
            _make_records_required(fdef)


def _strip_missing(value: Any) -> Any:
    if isinstance(value, LuaArray):
        return LuaArray(_strip_missing(v) for v in value)
    if isinstance(value, list):
        return [_strip_missing(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_missing(v) for k, v in value.items() if v is not MISSING}
    return value


def validate_plugin_config(plugin_schema: dict[str, Any], config: Any = MISSING) -> dict[str, Any]:
    """One-shot helper: `plugin_schema` is the dumped `Schema` ({"name", "fields"})."""
    return ConfigSchema(plugin_schema).validate(config)
