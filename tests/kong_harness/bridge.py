"""Kong's side of an external plugin: instances and the event bridge loop.

Mirrors kong/runloop/plugin_servers/plugin.lua (instance cache keyed by the
plugin entity id, one per worker, started lazily, restarted on "no plugin
instance") and rpc/mp_rpc.lua (`bridge_loop`, `get_step_method`).
"""

from __future__ import annotations

import collections
import functools
import inspect
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .context import PdkCall, RequestContext
from .errors import LuaError, PdkSoftError, RpcError, RpcProtocolError, RpcTimeout
from .luaisms import LuaBinary, cjson_encode, lua_number
from .pdk import (
    FIX_RAW_METHODS,
    FIX_RAW_NIL,
    KNOWN_KONG_METHODS,
    TYPED_STEPS,
    ExitSignal,
    PdkEnvironment,
    PdkMethod,
    build_registry,
)
from .phases import Phase
from .process import PluginInfo, PluginServerProcess
from .rpc import MsgpackRpcClient

# Kong's ngx.shared.kong "plugins_iterator:__seq__" counter is node-wide.
_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()


def _next_seq() -> int:
    with _SEQ_LOCK:
        return next(_SEQ)


@dataclass
class PluginEntity:
    """A `plugins` row from kong.yml, with its config already validated/filled."""

    id: str
    name: str
    config: dict[str, Any]
    route_id: str | None = None
    service_id: str | None = None
    consumer_id: str | None = None
    instance_name: str | None = None
    enabled: bool = True
    protocols: list[str] = field(default_factory=lambda: ["grpc", "grpcs", "http", "https"])
    tags: list[str] | None = None
    ws_id: str = ""

    @property
    def is_global(self) -> bool:
        return not (self.route_id or self.service_id or self.consumer_id)


@dataclass
class PhaseOutcome:
    exited: bool = False
    lua_error: str | None = None
    rpc_error: str | None = None


@dataclass
class _InstanceSlot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    instance_id: int | None = None
    config: dict[str, Any] | None = None


FailureSink = Callable[[RequestContext | None, str], None]


class ExternalPlugin:
    """A plugin served by one dedicated plugin server process."""

    def __init__(
        self,
        process: PluginServerProcess,
        *,
        pdk_env: PdkEnvironment | None = None,
        rpc_timeout: float = 30.0,
        send_step_error: bool = False,
        max_instance_restarts: int = 1,
        on_failure: FailureSink | None = None,
    ) -> None:
        self.process = process
        self.info: PluginInfo = process.dump_info()
        self.name = self.info.name
        self.rpc = MsgpackRpcClient(process.socket_path, timeout=rpc_timeout)
        # Kong's mp_rpc keeps only the first return value of a PDK function,
        # so `nil, err` is never turned into StepError. Opt in to see how a
        # plugin would behave if it were.
        self.send_step_error = send_step_error
        self.max_instance_restarts = max_instance_restarts
        self.methods: dict[str, PdkMethod] = build_registry(pdk_env or PdkEnvironment())
        self._on_failure = on_failure
        self._slots: dict[tuple[int, str], _InstanceSlot] = {}
        self._seqs: dict[tuple[int, str], int] = {}
        self._slots_lock = threading.Lock()
        self.instance_restarts = 0
        # Fault injection: PDK method -> the Lua error Kong raises for it (e.g. nginx's temp
        # file of a spooled body vanished: get_raw_body returns nil, fix_raw cannot pack it).
        self.lua_errors: dict[str, str] = {}
        self.pdk_calls: collections.Counter[str] = collections.Counter()
        self._counter_lock = threading.Lock()

    def set_failure_sink(self, sink: FailureSink | None) -> None:
        self._on_failure = sink

    @property
    def phases(self) -> tuple[str, ...]:
        return self.info.phases

    def has_phase(self, phase: str) -> bool:
        return phase in self.info.phases

    def close(self) -> None:
        self.rpc.close()

    # ---------- instances ----------

    def kong_config(self, entity: PluginEntity, worker_id: int) -> dict[str, Any]:
        """plugins_iterator.lua get_plugin_config: config + injected keys."""
        with self._slots_lock:
            seq = self._seqs.setdefault((worker_id, entity.id), _next_seq())
        conf = dict(entity.config)
        # Lua tables cannot hold nil: absent ids are absent keys, not null.
        for key, value in (
            ("route_id", entity.route_id),
            ("service_id", entity.service_id),
            ("consumer_id", entity.consumer_id),
            ("plugin_instance_name", entity.instance_name),
        ):
            if value is not None:
                conf[key] = value
        conf["__plugin_id"] = entity.id
        conf["__ws_id"] = entity.ws_id
        conf["__key__"] = (
            f"plugins:{entity.name}:{entity.route_id or ''}:{entity.service_id or ''}:"
            f"{entity.consumer_id or ''}::{entity.ws_id}"
        )
        conf["__seq__"] = seq
        return conf

    def _slot(self, entity: PluginEntity, worker_id: int) -> _InstanceSlot:
        with self._slots_lock:
            return self._slots.setdefault((worker_id, entity.id), _InstanceSlot())

    def instance_id(self, ctx: RequestContext | None, entity: PluginEntity, worker_id: int) -> int:
        slot = self._slot(entity, worker_id)
        # Kong makes concurrent requests wait for the one starting the instance.
        with slot.lock:
            if slot.instance_id is None:
                conf = self.kong_config(entity, worker_id)
                status = self._call(ctx, "plugin.StartInstance", {"Name": self.name, "Config": cjson_encode(conf)})
                slot.instance_id = status["Id"]
                slot.config = status.get("Config")
            return slot.instance_id

    def reset_instances(self) -> None:
        """plugin.lua reset_instances_for_plugin: forget every instance id."""
        with self._slots_lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                slot.instance_id = None

    def instance_ids(self) -> dict[tuple[int, str], int | None]:
        with self._slots_lock:
            return {key: slot.instance_id for key, slot in self._slots.items()}

    # ---------- events ----------

    def _call(self, ctx: RequestContext | None, method: str, arg: Any) -> Any:
        if ctx is not None:
            with ctx.lock:
                ctx.rpc_calls[method] += 1
        return self.rpc.call(method, arg)

    def _fail(self, ctx: RequestContext | None, message: str) -> None:
        if ctx is not None:
            ctx.record_failure(message)
        if self._on_failure is not None:
            self._on_failure(ctx, message)

    def run_phase(self, ctx: RequestContext, entity: PluginEntity, phase: str) -> PhaseOutcome:
        """Kong's Rpc:handle_event for one plugin and one phase."""
        restarts = 0
        while True:
            try:
                instance_id = self.instance_id(ctx, entity, ctx.worker_id)
                return self._bridge_loop(ctx, instance_id, phase)
            except RpcError as exc:
                if "no plugin instance" in exc.message.lower() and restarts < self.max_instance_restarts:
                    restarts += 1
                    with self._counter_lock:
                        self.instance_restarts += 1
                    self.reset_instances()
                    continue
                # Kong logs the error and carries on with the request.
                self._fail(ctx, f"[{self.name}] {phase}: {exc}")
                return PhaseOutcome(rpc_error=str(exc))
            except (RpcTimeout, RpcProtocolError, OSError) as exc:
                self._fail(ctx, f"[{self.name}] {phase}: {type(exc).__name__}: {exc}")
                return PhaseOutcome(rpc_error=str(exc))

    def _bridge_loop(self, ctx: RequestContext, instance_id: int, phase: str) -> PhaseOutcome:
        step_in = self._call(ctx, "plugin.HandleEvent", {"InstanceId": instance_id, "EventName": phase})
        event_id = step_in["EventId"]
        while True:
            data = step_in.get("Data")
            if data == "ret":
                return PhaseOutcome()
            if not isinstance(data, dict) or "Method" not in data:
                raise RpcProtocolError(f"unexpected event data from plugin server: {data!r}")
            method = data["Method"]
            args = data.get("Args")
            args = list(args) if isinstance(args, (list, tuple)) else ([] if args is None else [args])
            if None in args and any(a is not None for a in args[args.index(None):]):
                # lua-MessagePack unpacks the Args array into a table with a hole, and
                # call_pdk_method runs method(unpack(args)): the length of a table with
                # a hole is undefined in Lua, so the arguments after it may be lost.
                self._fail(ctx, f"[{self.name}] {phase}: {method} called with nil before another argument: {args!r}")
                args = args[: args.index(None)]
            with self._counter_lock:
                self.pdk_calls[method] += 1
            try:
                result = self._run_pdk(ctx, method, args)
            except LuaError as exc:
                # No pcall around the PDK call in mp_rpc: the Lua error unwinds
                # the bridge, the plugin's event is never answered again.
                ctx.pdk_calls.append(PdkCall(phase, method, args, None, f"lua-error: {exc}"))
                self._fail(ctx, f"[{self.name}] {phase}: {method}: {exc}")
                return PhaseOutcome(lua_error=str(exc))
            except PdkSoftError as exc:
                if self.send_step_error:
                    step_method, payload = "plugin.StepError", {"EventId": event_id, "Data": str(exc)}
                else:
                    step_method = TYPED_STEPS.get(method, "plugin.Step")
                    payload = {"EventId": event_id}  # nil Data: the key is absent in Lua
                ctx.pdk_calls.append(PdkCall(phase, method, args, step_method, f"soft-error: {exc}"))
                step_in = self._call(ctx, step_method, payload)
                continue
            if isinstance(result, ExitSignal):
                ctx.pdk_calls.append(PdkCall(phase, method, args, None, "exit"))
                ctx.exit = result.record
                return PhaseOutcome(exited=True)
            if result is _UNKNOWN:
                ctx.pdk_calls.append(PdkCall(phase, method, args, "plugin.Step", "unknown"))
                step_method, payload = "plugin.Step", {"EventId": event_id}
            else:
                step_method = TYPED_STEPS.get(method, "plugin.Step")
                ctx.pdk_calls.append(PdkCall(phase, method, args, step_method, "ok"))
                payload = {"EventId": event_id}
                if result is not None:
                    payload["Data"] = result if isinstance(result, LuaBinary) else lua_number(result)
            step_in = self._call(ctx, step_method, payload)

    def _run_pdk(self, ctx: RequestContext, method: str, args: list[Any]) -> Any:
        impl = self.methods.get(method)
        if impl is None:
            if method in KNOWN_KONG_METHODS:
                # Kong would run it; the harness cannot pretend to.
                self._fail(ctx, f"[{self.name}] harness does not implement PDK method {method} (Kong has it)")
            else:
                self._fail(ctx, f"[{self.name}] could not find pdk method: {method}")
            return _UNKNOWN
        if method in self.lua_errors:
            raise LuaError(self.lua_errors[method])
        in_log_timer = ctx.phase is Phase.log and ctx.saved_log is not None
        func = impl.log_override if (in_log_timer and impl.log_override is not None) else impl.func
        # Lua silently drops surplus arguments.
        try:
            result = func(ctx, *args[: _max_positional(func)])
        except PdkSoftError:
            if method in FIX_RAW_METHODS:
                raise LuaError(FIX_RAW_NIL) from None  # fix_raw(nil): see pdk.FIX_RAW_METHODS
            raise
        if method in FIX_RAW_METHODS and result is None:
            raise LuaError(FIX_RAW_NIL)
        return result


_UNKNOWN = object()


@functools.cache
def _max_positional(func: Callable[..., Any]) -> int:
    params = list(inspect.signature(func).parameters.values())[1:]  # drop ctx
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 1 << 16
    return sum(1 for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
