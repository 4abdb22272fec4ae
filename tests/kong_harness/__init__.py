"""Kong-side test harness for Python (kong-pdk) plugins.

Plays Kong's half of the plugin-server protocol against a real kong-pdk
server process: msgpack-RPC, instances, the PDK with Kong's phase checks,
schema validation of plugin configs, and (in `front`) a small HTTP gateway
driven by a declarative kong.yml.
"""

from __future__ import annotations

from .errors import (
    ConfigValidationError,
    HarnessError,
    LuaError,
    PluginInfoError,
    PluginServerStartError,
    RpcError,
    RpcTimeout,
    SchemaDefinitionError,
)
from .process import PluginInfo, PluginServerProcess, find_console_script, parse_dump_output
from .rpc import MsgpackRpcClient
from .schema_validator import ConfigSchema, check_schema_definition, validate_plugin_config

__all__ = sorted(
    [
        "ConfigSchema",
        "ConfigValidationError",
        "HarnessError",
        "LuaError",
        "MsgpackRpcClient",
        "PluginInfo",
        "PluginInfoError",
        "PluginServerProcess",
        "PluginServerStartError",
        "RpcError",
        "RpcTimeout",
        "SchemaDefinitionError",
        "check_schema_definition",
        "find_console_script",
        "parse_dump_output",
        "validate_plugin_config",
    ]
)
