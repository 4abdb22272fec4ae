"""Exceptions raised by the harness.

Kept in one small module so every other module (and the tests) can import them
without pulling in sockets or HTTP servers.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class for everything the harness raises on purpose."""


class PluginInfoError(HarnessError):
    """The query command (`--dump`) did not print what Kong can parse."""


class PluginServerStartError(HarnessError):
    """The plugin server process died or never opened its socket."""


class RpcError(HarnessError):
    """The plugin server answered a call with an error (response slot 3)."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.message = message


class RpcProtocolError(HarnessError):
    """The bytes on the socket do not follow msgpack-RPC as Kong expects it."""


class RpcTimeout(HarnessError):
    """No answer in time; Kong would log a socket timeout for the request.

    kong-pdk never answers an event whose handler raised, so this is also what
    a plugin exception looks like from Kong's side.
    """


class LuaError(HarnessError):
    """A Lua `error()` raised inside a PDK function (phase check, bad argument).

    In Kong this aborts the bridge loop: no further Step is sent for the event.
    """


class PdkSoftError(HarnessError):
    """A PDK function returned `nil, err` (not a Lua error)."""


class SchemaDefinitionError(HarnessError):
    """The dumped plugin Schema would be rejected by Kong's metaschema."""


class ConfigValidationError(HarnessError):
    """A plugin `config` block fails Kong's schema validation.

    `errors` mirrors the nested error table Kong returns: field name to message
    (or to a nested dict / a dict of array indexes for records and arrays).
    """

    def __init__(self, message: str, errors: dict) -> None:
        super().__init__(message)
        self.errors = errors


class DeclarativeConfigError(HarnessError):
    """kong.yml uses something the harness cannot load (or Kong would reject)."""


class HarnessFailures(HarnessError):
    """Failures recorded while serving requests (unknown PDK method, Lua errors,
    RPC errors...). Raised by `KongFront.raise_failures()` so a test fails loudly
    even when the failure happened in a server or log thread."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("harness recorded failures:\n  - " + "\n  - ".join(failures))
        self.failures = failures
