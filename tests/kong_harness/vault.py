"""Kong's env vault: `{vault://env/openai-api-key}` in a referenceable field is $OPENAI_API_KEY.

Kong dereferences a field declared ``referenceable`` before a plugin sees its
config (kong/pdk/vault.lua; the env strategy is kong/vaults/env: the name is
upper-cased and "-" becomes "_"). A reference the harness cannot resolve is an
error, never a silent literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ENV_REFERENCE = re.compile(r"\{vault://env/([A-Za-z0-9_-]+)\}")


def resolve(value: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1).upper().replace("-", "_")
        if name not in env:
            raise KeyError(f"vault reference {match.group(0)}: environment variable {name} is not set")
        return env[name]

    return _ENV_REFERENCE.sub(one, value)


def resolve_config(config: dict[str, Any], fields: list[dict[str, Any]], env: Mapping[str, str]) -> dict[str, Any]:
    """A copy of a validated plugin config with every referenceable string field dereferenced."""
    out = dict(config)
    for entry in fields:
        ((name, field),) = entry.items()
        value = out.get(name)
        if field.get("type") == "record" and isinstance(value, dict):
            out[name] = resolve_config(value, field.get("fields") or [], env)
        elif field.get("referenceable") and isinstance(value, str):
            out[name] = resolve(value, env)
    return out
