"""Kong-side test harness for Python (kong-pdk) plugins.

Plays Kong's half of the plugin-server protocol against a real kong-pdk
server process: msgpack-RPC, plugin instances, the PDK with Kong's phase
checks, schema validation of plugin configs, and a small HTTP gateway
(`KongFront`) driven by a declarative kong.yml.

    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True)
    with MockLLM() as llm, KongFront.from_kong_yml(
        "kong.yml", {"ai-chargeback": server}, {"openai": llm.url}, stop_servers_on_close=True
    ) as front:
        httpx.post(f"{front.url}/openai/v1/chat/completions", json=..., headers={"apikey": "..."})
        front.wait_for_logs()
        front.raise_failures()          # unknown PDK methods, Lua errors, RPC errors...
        front.stats()                   # PDK calls / RPC round trips per request
"""

from __future__ import annotations

from .ai_proxy import ai_proxy_hook, ai_proxy_serialize_values, extract_usage
from .bridge import ExternalPlugin, PhaseOutcome, PluginEntity
from .context import ExitRecord, Headers, PdkCall, RequestContext
from .declarative import DeclarativeConfig, load_declarative_config, stable_id
from .errors import (
    ConfigValidationError,
    DeclarativeConfigError,
    HarnessError,
    HarnessFailures,
    LuaError,
    PluginInfoError,
    PluginServerStartError,
    RpcError,
    RpcProtocolError,
    RpcTimeout,
    SchemaDefinitionError,
)
from .front import KongFront
from .luaisms import LuaArray, LuaBinary, cjson_encode, cjson_encode_raw, lua_packb
from .pdk import KNOWN_KONG_METHODS, TYPED_STEPS, PdkEnvironment
from .phases import Phase
from .process import PluginInfo, PluginServerProcess, SharedPluginServer, find_console_script, parse_dump_output
from .rpc import MsgpackRpcClient
from .schema_validator import ConfigSchema, check_schema_definition, validate_plugin_config
from .serialize import apply_serialize_values, build_serialize

__all__ = [
    "ConfigSchema",
    "ConfigValidationError",
    "DeclarativeConfig",
    "DeclarativeConfigError",
    "ExitRecord",
    "ExternalPlugin",
    "HarnessError",
    "HarnessFailures",
    "Headers",
    "KNOWN_KONG_METHODS",
    "KongFront",
    "LuaArray",
    "LuaBinary",
    "LuaError",
    "MsgpackRpcClient",
    "PdkCall",
    "PdkEnvironment",
    "Phase",
    "PhaseOutcome",
    "PluginEntity",
    "PluginInfo",
    "PluginInfoError",
    "PluginServerProcess",
    "PluginServerStartError",
    "RequestContext",
    "RpcError",
    "RpcProtocolError",
    "RpcTimeout",
    "SchemaDefinitionError",
    "SharedPluginServer",
    "TYPED_STEPS",
    "ai_proxy_hook",
    "ai_proxy_serialize_values",
    "apply_serialize_values",
    "build_serialize",
    "check_schema_definition",
    "cjson_encode",
    "cjson_encode_raw",
    "extract_usage",
    "find_console_script",
    "load_declarative_config",
    "lua_packb",
    "parse_dump_output",
    "stable_id",
    "validate_plugin_config",
]
