"""Kong's phase bit flags and the phase checks PDK functions run first.

Values and message wording follow kong/pdk/private/phases.lua so that a
phase violation recorded by the harness reads exactly like Kong's error log.
"""

from __future__ import annotations

from enum import IntFlag

from .errors import LuaError


class Phase(IntFlag):
    init_worker = 0x00000001
    certificate = 0x00000002
    client_hello = 0x00000008
    rewrite = 0x00000010
    access = 0x00000020
    balancer = 0x00000040
    response = 0x00000080
    cluster_listener = 0x00000100
    header_filter = 0x00000200
    body_filter = 0x00000400
    log = 0x00002000
    preread = 0x00004000
    error = 0x01000000
    admin_api = 0x10000000


# Kong's `PHASES.request` alias.
REQUEST = (
    Phase.rewrite
    | Phase.access
    | Phase.balancer
    | Phase.response
    | Phase.header_filter
    | Phase.body_filter
    | Phase.log
    | Phase.error
    | Phase.admin_api
    | Phase.cluster_listener
)

# Named groups used by several PDK modules (same names as in the Lua sources).
BEFORE_CONTENT = Phase.rewrite | Phase.access | Phase.response | Phase.error | Phase.admin_api
AUTH_AND_LATER = Phase.access | Phase.header_filter | Phase.response | Phase.body_filter | Phase.log
ROUTER_PHASES = AUTH_AND_LATER
REWRITE_ACCESS_HEADER = (
    Phase.rewrite
    | Phase.access
    | Phase.response
    | Phase.balancer
    | Phase.header_filter
    | Phase.error
    | Phase.admin_api
)
RESPONSE_HEADER_BODY_LOG = (
    Phase.response | Phase.header_filter | Phase.body_filter | Phase.log | Phase.error | Phase.admin_api
)
SERVICE_RESPONSE_HEADER_BODY_LOG = Phase.response | Phase.header_filter | Phase.body_filter | Phase.log
ACCESS_AND_REWRITE = Phase.rewrite | Phase.access
ACCESS_REWRITE_BALANCER = Phase.rewrite | Phase.access | Phase.balancer
PHASES_WITH_CTX = (
    Phase.rewrite | Phase.access | Phase.header_filter | Phase.response | Phase.body_filter | Phase.log
)

# Phases a Python plugin may declare (kong_pdk/module.py).
PLUGIN_PHASES = ("certificate", "rewrite", "access", "response", "preread", "log")


def phase_names(flags: int) -> list[str]:
    """Names of the phases in `flags`, lowest bit first, as Kong lists them."""
    names = []
    for member in sorted(Phase, key=lambda p: p.value):
        if flags & member.value:
            names.append(member.name)
    return names


def check_phase(current: Phase, accepted: int) -> None:
    if current & accepted:
        return
    raise LuaError(
        f"function cannot be called in {current.name} phase "
        f"(only in: {', '.join(phase_names(accepted))})"
    )


def check_not_phase(current: Phase, rejected: int) -> None:
    if not current & rejected:
        return
    raise LuaError(
        f"function cannot be called in {current.name} phase "
        f"(can be called in any phases except: {', '.join(phase_names(rejected))})"
    )
