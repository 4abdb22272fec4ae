"""kong-pdk's dedicated plugin server, made to survive what Kong actually sends and does.

kong-pdk's ``start_dedicated_server`` is used as it is except for four things:

* **Strings that are not UTF-8.** Kong packs every Lua string as msgpack *str*
  whatever its bytes (lua-MessagePack in kong/runloop/plugin_servers/rpc/mp_rpc.lua),
  and ``kong.log.serialize()`` is cjson output that copies header bytes as they
  are (kong/pdk/log.lua), so one Latin-1 byte in a request header makes the
  whole serialize() string invalid UTF-8. kong-pdk's listener decodes str
  strictly: the connection dies and that request's handler waits forever. This
  listener decodes with replacement characters (U+FFFD), visible in the event.
* **Events Kong abandoned.** A Lua error inside a PDK call is not caught by
  Kong's bridge loop (mp_rpc.lua ``bridge_loop``): Kong never sends the Step the
  Python handler waits for, and kong-pdk keeps that handler (a greenlet or a
  thread) and its channel forever. The plugin calls nothing that can raise, but
  if Kong abandons an event anyway, it is released after
  ``AI_CHARGEBACK_ABANDONED_EVENT_S`` seconds without a Step (default 300: far
  beyond any PDK call, so a live event is never touched): its handler gets an
  error from the pending PDK call, catches it like any other and returns.
* **The request path first.** Started with ``-g``, the server lets a log
  handler wait for the hub to be idle before its Python work (scheduling.py),
  so an access handler's RPC is not held up by metering.
* **A health answer.** ``plugin.GetRuntimeStats`` (Kong never calls it) reports
  events in flight, events released, live greenlets and threads and RSS, so an
  operator or a test can see that nothing accumulates.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from kong_pdk.exception import PDKException, PluginServerException
from kong_pdk.listener import DEFAULT_SOCKET_NAME, UnixStreamServer, WrapSocket, write_error, write_response
from kong_pdk.server import MSG_RET, PluginServer, terminal_methods

from . import scheduling

log = logging.getLogger("ai-chargeback.pluginserver")

ABANDONED_EVENT_ENV = "AI_CHARGEBACK_ABANDONED_EVENT_S"
DEFAULT_ABANDONED_EVENT_S = 300.0
ABANDONED = "ai-chargeback: Kong abandoned this event (no Step within the abandon timeout)"
_MAX_RELEASE_STEPS = 64  # a released handler that keeps calling the PDK gets this many error answers
_CAMEL = re.compile(r"([a-z])([A-Z])")


def abandon_after_s() -> float:
    raw = os.environ.get(ABANDONED_EVENT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_ABANDONED_EVENT_S
    except ValueError:
        log.warning("ignoring %s=%r: not a number of seconds", ABANDONED_EVENT_ENV, raw)
        return DEFAULT_ABANDONED_EVENT_S
    return value if value > 0 else DEFAULT_ABANDONED_EVENT_S


class ChargebackPluginServer(PluginServer):  # type: ignore[misc]
    """kong-pdk's PluginServer, plus the last time Kong touched each event in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._touched: dict[int, float] = {}
        self.events_released = 0
        # An event leaves `events` and is counted released in one step as get_runtime_stats sees it:
        # in threads mode the reaper is a thread, and a stats call between its pop and its count
        # saw the event in neither place (never blocks: nothing waits while holding it).
        self._release_lock = threading.Lock()

    def handle_event(self, event: Any) -> dict[str, Any]:
        reply: dict[str, Any] = super().handle_event(event)
        if reply["EventId"] in self.events:
            self._touched[reply["EventId"]] = time.monotonic()
        return reply

    def _step(self, data: Any, is_error: bool) -> dict[str, Any]:
        reply: dict[str, Any] = super()._step(data, is_error)
        eid = reply["EventId"]
        if eid in self.events:
            self._touched[eid] = time.monotonic()
        else:
            self._touched.pop(eid, None)
        return reply

    def get_runtime_stats(self, *_: Any) -> dict[str, Any]:
        from greenlet import greenlet

        with self._release_lock:
            in_flight, released = len(self.events), self.events_released
        return {
            "Pid": os.getpid(),
            "EventsInFlight": in_flight,
            "EventsReleased": released,
            "Greenlets": sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead),
            "Threads": threading.active_count(),
            "RssBytes": _rss_bytes(),
        }

    def release_abandoned(self, older_than_s: float) -> int:
        """Answer every event Kong left without a Step for `older_than_s` with an error; returns how many."""
        cutoff = time.monotonic() - older_than_s
        stale = [eid for eid, at in list(self._touched.items()) if at < cutoff]
        for eid in stale:
            self._touched.pop(eid, None)
            with self._release_lock:
                channel = self.events.pop(eid, None)
                if channel is None:
                    continue
                self.events_released += 1
            log.warning("releasing event %s: Kong sent no Step for %.0f s", eid, older_than_s)
            for _ in range(_MAX_RELEASE_STEPS):
                channel.put((None, ABANDONED))
                answer = channel.get()
                if answer == MSG_RET or (isinstance(answer, dict) and answer.get("Method") in terminal_methods):
                    break
        return len(stale)


class TolerantListener(UnixStreamServer):  # type: ignore[misc]
    """kong-pdk's unix socket server, decoding Kong's strings with replacement characters."""

    def handle(self, fd: Any, address: Any, *_: Any) -> None:
        unpacker = msgpack.Unpacker(WrapSocket(fd), strict_map_key=False, unicode_errors="replace")
        for message in unpacker:
            if not isinstance(message, (list, tuple)) or len(message) != 4:
                log.error("closing a connection that sent something other than a msgpack-RPC request")
                return
            _, msgid, method, args = message
            namespace, _, command = str(method).partition(".")
            if namespace != "plugin":
                write_error(fd, msgid, f"RPC for {namespace} is not supported")
                continue
            name = command[:1].lower() + _CAMEL.sub(lambda m: f"{m.group(1)}_{m.group(2).lower()}", command[1:])
            try:
                write_response(fd, msgid, getattr(self.ps, name)(*(args or ())))
            except (PluginServerException, PDKException) as exc:
                write_error(fd, msgid, str(exc))
            except Exception as exc:  # noqa: BLE001 - an answer, never a dead connection
                log.exception("rpc %s failed", method)
                write_error(fd, msgid, str(exc))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


def _reaper(server: ChargebackPluginServer, sleep: Callable[[float], Any], older_than_s: float) -> None:
    while True:
        sleep(min(30.0, older_than_s / 2))
        try:
            server.release_abandoned(older_than_s)
        except Exception:  # noqa: BLE001 - the reaper must outlive any one bad event
            log.exception("releasing abandoned events failed")


@dataclass(frozen=True)
class PluginSpec:
    """One plugin this server serves: its name, handler class and config schema."""

    name: str
    plugin: type
    schema: list[dict[str, Any]]


def serve(plugins: Sequence[PluginSpec], version: str, priority: int, *, dump_name: str) -> None:
    """kong-pdk's ``start_dedicated_server``, serving every plugin in `plugins` on one socket
    (kong-pdk's server keeps a name -> plugin map: StartInstance names the plugin).

    ``--dump`` prints the info of `dump_name` only: Kong 3.9+ reads the first entry of
    the list, and each plugin has its own query command (server.py). The default socket
    is named after the first plugin. Parses Kong's arguments.
    """
    from kong_pdk.cli import display_lua_style_notice, parse
    from kong_pdk.logger import Logger
    from kong_pdk.module import Module

    args = parse(dedicated=True)
    name = plugins[0].name
    server = ChargebackPluginServer(
        loglevel=Logger.WARNING - args.verbose, use_multiprocess=args.multiprocessing, use_gevent=args.gevent,
        name=f"{name} version {version}", lua_style=not args.no_lua_style,
    )  # fmt: skip
    for spec in plugins:
        module = type("module", (), {"Plugin": spec.plugin, "Schema": spec.schema, "version": version, "priority": priority})
        server.plugins[spec.name] = Module(spec.name, module=module)
    if args.dump:
        import json
        import sys

        if dump_name not in server.plugins:
            sys.stderr.write(f"unknown plugin {dump_name!r}; this server serves {', '.join(server.plugins)}\n")
            sys.exit(2)
        sys.stdout.write(json.dumps([server.get_plugin_info(dump_name)]))
        sys.exit(0)
    socket_name = f"{name}.sock" if args.socket_name == DEFAULT_SOCKET_NAME else args.socket_name
    listener = TolerantListener(server, args.prefix, sock_name=socket_name, use_gevent=args.gevent,
                                listen_queue_size=args.listen_queue_size)  # fmt: skip
    display_lua_style_notice(not args.no_lua_style, server)
    older_than_s = abandon_after_s()
    if args.gevent:
        import gevent

        scheduling.use_gevent()
        gevent.spawn(_reaper, server, gevent.sleep, older_than_s)
    elif not args.multiprocessing:  # multiprocessing handlers live in pool processes: nothing to release here
        threading.Thread(target=_reaper, args=(server, time.sleep, older_than_s), daemon=True, name="ai-chargeback-reaper").start()
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        log.info("polite exit requested, terminating")
    server.cleanup()
