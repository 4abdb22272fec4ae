"""A tiny Kong: HTTP front that routes by kong.yml and runs external plugins.

Per request (kong/init.lua order): rewrite (global plugins) -> router ->
access (plugins by priority; key-auth is bundled) -> kong.response.exit or
proxy -> buffered (response phase) or streamed answer -> log, which for an
external plugin runs in a timer AFTER the client has the whole answer.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import ai_proxy as ai_proxy_plugin
from . import vault
from .bridge import ExternalPlugin, PluginEntity
from .context import Headers, RequestContext
from .declarative import DeclarativeConfig, load_declarative_config, upstream_path
from .errors import DeclarativeConfigError, HarnessFailures
from .key_auth import NAME as KEY_AUTH
from .key_auth import PRIORITY as KEY_AUTH_PRIORITY
from .key_auth import SCHEMA as KEY_AUTH_SCHEMA
from .key_auth import KeyAuth
from .pdk import PdkEnvironment, kong_error_exit
from .phases import Phase
from .process import PluginServerProcess
from .schema_validator import ConfigSchema
from .serialize import apply_serialize_values, build_serialize

KONG_VERSION = "3.10.0"
# kong/templates/kong_defaults.lua: nginx_http_client_body_buffer_size = 8k (a larger
# body goes to a temp file), nginx_http_client_max_body_size = 0 (no limit).
CLIENT_BODY_BUFFER_SIZE = 8 * 1024
CLIENT_MAX_BODY_SIZE = 0
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
SerializeHook = Callable[[RequestContext], "Mapping[str, Any] | None"]
# Kong's bundled plugins the harness runs itself, by priority (their handler.lua PRIORITY).
BUNDLED_PRIORITIES = {KEY_AUTH: KEY_AUTH_PRIORITY, ai_proxy_plugin.NAME: ai_proxy_plugin.PRIORITY}


def bundled_validators() -> dict[str, Callable[[Any], dict[str, Any]]]:
    """Config validators of the bundled plugins the harness models (Kong's own schemas, re-stated)."""
    ai_proxy_schema = ConfigSchema(ai_proxy_plugin.SCHEMA, check_definition=False)

    def ai_proxy(raw: Any) -> dict[str, Any]:
        config = ai_proxy_schema.validate(raw)
        ai_proxy_plugin.check_config(config)
        return config

    return {KEY_AUTH: ConfigSchema(KEY_AUTH_SCHEMA, check_definition=False).validate, ai_proxy_plugin.NAME: ai_proxy}


@dataclass
class _Collected:
    """A plugin entity chosen for this request (plugins_iterator 'collected')."""

    name: str
    priority: int
    entity: PluginEntity
    external: ExternalPlugin | None


class _ClientGone(Exception):
    pass


class KongFront:
    """Serve kong.yml on 127.0.0.1:<free port> with real plugin servers behind it."""

    def __init__(
        self,
        config: DeclarativeConfig,
        external_plugins: Mapping[str, ExternalPlugin],
        *,
        workers: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        kong_version: str = KONG_VERSION,
        serialize_hook: SerializeHook | None = None,
        keep_requests: int | None = 10_000,
        capture_limit: int = 8 * 1024 * 1024,
        owned_processes: Iterable[PluginServerProcess] = (),
        client_body_buffer_size: int = CLIENT_BODY_BUFFER_SIZE,
        client_max_body_size: int = CLIENT_MAX_BODY_SIZE,
        vault_env: Mapping[str, str] | None = None,
        ai_proxy_bugs: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.kong_version = _version_tuple(kong_version)
        self.client_body_buffer_size = client_body_buffer_size
        self.client_max_body_size = client_max_body_size
        self.external_plugins = dict(external_plugins)
        self.workers = max(1, workers)
        self.server_header = f"kong/{kong_version}"
        self.serialize_hook = serialize_hook
        self.capture_limit = capture_limit
        self.key_auth = KeyAuth(config.credentials, config.find_consumer)
        # Kong's env vault reads the process environment; tests pass their own.
        self.ai_proxy = ai_proxy_plugin.AiProxy(os.environ if vault_env is None else vault_env, self._record_failure)
        self.ai_proxy_bugs = tuple(ai_proxy_bugs)
        self._owned = list(owned_processes)
        self._bind = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._worker_ids = itertools.count()
        self._lock = threading.Lock()
        self._log_cond = threading.Condition(self._lock)
        self._pending_logs = 0
        self._requests_served = 0
        self.requests: collections.deque[RequestContext] = collections.deque(maxlen=keep_requests)
        self._failures: list[str] = []
        for plugin in self.external_plugins.values():
            plugin.set_failure_sink(self._plugin_failure)

    # ------------------------------------------------------------ building

    @classmethod
    def from_kong_yml(
        cls,
        path: str | Path | Mapping[str, Any],
        plugin_servers: Mapping[str, PluginServerProcess],
        upstream_overrides: Mapping[str, str] | None = None,
        *,
        ignore_plugins: Iterable[str] = (),
        workers: int = 1,
        rpc_timeout: float = 30.0,
        send_step_error: bool = False,
        serialize_hook: SerializeHook | None = None,
        start: bool = True,
        stop_servers_on_close: bool = False,
        vault_env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> KongFront:
        """Start (if needed) each plugin server, validate kong.yml against the
        dumped schemas, and start serving. `plugin_servers` maps plugin name to
        its server; the name must equal what the server's --dump reports."""
        lookup: dict[str, Callable[[str, bool], dict[str, Any] | None]] = {}
        env = PdkEnvironment(find_consumer=lambda key, by_name: lookup["find"](key, by_name))
        externals: dict[str, ExternalPlugin] = {}
        for name, process in plugin_servers.items():
            if not process.running:
                process.start()
            plugin = ExternalPlugin(
                process,
                pdk_env=env,
                rpc_timeout=rpc_timeout,
                send_step_error=send_step_error,
            )
            if plugin.name != name:
                raise ValueError(f"plugin_servers[{name!r}] serves plugin {plugin.name!r} according to --dump")
            externals[name] = plugin
        try:
            validators = bundled_validators()
            for name, plugin in externals.items():
                validators[name] = ConfigSchema(plugin.info.schema).validate
            config = load_declarative_config(
                path, validators=validators, ignore_plugins=frozenset(ignore_plugins),
                upstream_overrides=upstream_overrides,
            )
        except BaseException:
            for plugin in externals.values():
                plugin.close()
            raise
        lookup["find"] = config.find_consumer
        env = os.environ if vault_env is None else vault_env
        try:
            for entity in config.plugins:
                fields = (externals[entity.name].info.config_schema["fields"] if entity.name in externals
                          else ai_proxy_plugin.SCHEMA["fields"][0]["config"]["fields"] if entity.name == ai_proxy_plugin.NAME
                          else [])  # fmt: skip
                entity.config = vault.resolve_config(entity.config, fields, env)
        except KeyError as exc:
            for plugin in externals.values():
                plugin.close()
            raise DeclarativeConfigError(f"{exc.args[0]} (pass vault_env, or set it)") from None
        front = cls(
            config,
            externals,
            workers=workers,
            serialize_hook=serialize_hook,
            owned_processes=plugin_servers.values() if stop_servers_on_close else (),
            vault_env=vault_env,
            **kwargs,
        )
        if start:
            front.start()
        return front

    # ------------------------------------------------------------ lifecycle

    def start(self) -> KongFront:
        handler = type("Handler", (_Handler,), {"front": self})
        server = _Server(self._bind, handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kong-front", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.wait_for_logs(timeout=10)
        for plugin in self.external_plugins.values():
            plugin.close()
        for process in self._owned:
            process.stop()

    close = stop

    def __enter__(self) -> KongFront:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "front is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ counters

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._requests_served

    def rpc_calls_by_method(self) -> dict[str, int]:
        total: collections.Counter[str] = collections.Counter()
        for plugin in self.external_plugins.values():
            total.update(plugin.rpc.calls_by_method)
        return dict(total)

    def pdk_calls_by_method(self) -> dict[str, int]:
        total: collections.Counter[str] = collections.Counter()
        for plugin in self.external_plugins.values():
            total.update(plugin.pdk_calls)
        return dict(total)

    def stats(self) -> dict[str, Any]:
        """Averages over the kept requests: PDK calls per phase and RPC round
        trips (HandleEvent + Step*) per request, for benchmarks."""
        requests = list(self.requests)
        per_phase: collections.Counter[str] = collections.Counter()
        round_trips = 0
        for ctx in requests:
            per_phase.update(ctx.pdk_calls_by_phase())
            round_trips += sum(n for m, n in ctx.rpc_calls.items() if m != "plugin.StartInstance")
        count = max(1, len(requests))
        return {
            "requests": len(requests),
            "pdk_calls_per_request_by_phase": {k: v / count for k, v in per_phase.items()},
            "rpc_round_trips_per_request": round_trips / count,
            "rpc_calls_by_method": self.rpc_calls_by_method(),
        }

    def inject_lua_error(self, method: str, message: str | None = None) -> None:
        """From now on, the PDK call `method` raises a Lua error inside Kong (None message: stop)."""
        for plugin in self.external_plugins.values():
            if message is None:
                plugin.lua_errors.pop(method, None)
            else:
                plugin.lua_errors[method] = message

    def last_request(self) -> RequestContext:
        return self.requests[-1]

    def find_request(self, request_id: str) -> RequestContext:
        for ctx in reversed(self.requests):
            if ctx.request_id == request_id:
                return ctx
        raise KeyError(request_id)

    # ------------------------------------------------------------ failures

    @property
    def failures(self) -> list[str]:
        with self._lock:
            return list(self._failures)

    def take_failures(self) -> list[str]:
        """Return and forget recorded failures (for tests that expect some)."""
        with self._lock:
            taken, self._failures[:] = list(self._failures), []
            return taken

    def raise_failures(self) -> None:
        failures = self.take_failures()
        if failures:
            raise HarnessFailures(failures)

    def _plugin_failure(self, _ctx: RequestContext | None, message: str) -> None:
        with self._lock:
            self._failures.append(message)

    def _record_failure(self, ctx: RequestContext | None, message: str) -> None:
        if ctx is not None:
            ctx.record_failure(message)
        with self._lock:
            self._failures.append(message)

    # ------------------------------------------------------------ log phase bookkeeping

    def wait_for_logs(self, timeout: float = 30.0) -> bool:
        """Block until every request received so far has finished its log phase."""
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while self._pending_logs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._log_cond.wait(remaining)
        return True

    def _log_started(self) -> None:
        with self._log_cond:
            self._pending_logs += 1

    def _log_finished(self) -> None:
        with self._log_cond:
            self._pending_logs -= 1
            self._log_cond.notify_all()

    # ------------------------------------------------------------ plugin selection

    def _names_by_priority(self) -> list[tuple[int, str]]:
        names = {p.name for p in self.config.plugins}
        ranked = []
        for name in names:
            external = self.external_plugins.get(name)
            ranked.append((external.info.priority if external else BUNDLED_PRIORITIES[name], name))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return ranked

    def _select(self, ctx: RequestContext, name: str, priority: int) -> _Collected | None:
        """The plugin entity for this request right now (lookup_cfg)."""
        entity = self.config.plugin_for(
            name,
            ctx.route["id"] if ctx.route else None,
            ctx.service["id"] if ctx.service else None,
            ctx.consumer["id"] if ctx.consumer else None,
        )
        if entity is None or "http" not in entity.protocols:
            return None
        return _Collected(name, priority, entity, self.external_plugins.get(name))

    # ------------------------------------------------------------ request flow

    def _new_context(self, handler: _Handler, body: bytes, request_length: int) -> RequestContext:
        host_header = handler.headers.get("Host", "")
        host = host_header.rsplit(":", 1)[0] if host_header and not host_header.endswith("]") else host_header
        client_ip, client_port = handler.client_address[:2]
        return RequestContext(
            request_id=uuid.uuid4().hex,
            worker_id=handler.worker_id,
            method=handler.command,
            request_uri=handler.path,
            client_ip=client_ip,
            client_port=client_port,
            server_port=self.port,
            host=(host or "127.0.0.1").lower(),
            headers=Headers(handler.headers.items()),
            body=body,
            workspace_id=self.config.workspace_id,
            http_version=float(handler.request_version.split("/")[1]) if "/" in handler.request_version else 1.1,
            request_length=request_length,
            body_in_file=len(body) > self.client_body_buffer_size,
            kong_version=self.kong_version,
        )

    def _serve(self, handler: _Handler, body: bytes, request_length: int) -> None:
        ctx = self._new_context(handler, body, request_length)
        # Counted from the start: the client may see the answer (and call
        # wait_for_logs) before this thread reaches the log phase.
        self._log_started()
        with self._lock:
            self._requests_served += 1
            self.requests.append(ctx)
        collected: list[_Collected] = []  # filled in place, kept on errors
        try:
            self._run_request(ctx, handler, collected)
        except _ClientGone:
            # nginx stops proxying, but the log phase still runs
            ctx.client_aborted = True
        except Exception:  # noqa: BLE001 - a harness bug must fail the test, not hang it
            self._record_failure(ctx, "harness error:\n" + traceback.format_exc())
            if not ctx.headers_sent:
                ctx.exit = kong_error_exit(ctx, 500, None, None, source="harness", phase=None)
                try:
                    self._send_exit(ctx, handler)
                except _ClientGone:
                    ctx.client_aborted = True
        finally:
            ctx.finished_ms = ctx.now_ms()
            try:
                self._start_log_phase(ctx, collected)
            except Exception:  # noqa: BLE001
                self._record_failure(ctx, "harness error starting the log phase:\n" + traceback.format_exc())
                ctx.log_done.set()
                self._log_finished()

    def _run_request(self, ctx: RequestContext, handler: _Handler, collected: list[_Collected]) -> None:
        if self.client_max_body_size and len(ctx.body) > self.client_max_body_size:
            # nginx refuses the body before Kong's rewrite phase: no plugin runs,
            # none is collected, so no plugin's log phase runs either.
            ctx.exit = kong_error_exit(ctx, 413, None, None, source="nginx", phase=None)
            self._send_exit(ctx, handler)
            return
        # rewrite: only global plugins run (execute_global_plugins_iterator)
        ctx.phase = Phase.rewrite
        for priority, name in self._names_by_priority():
            item = self._select(ctx, name, priority)
            if item and item.entity.is_global and item.external and item.external.has_phase("rewrite"):
                if self._run_external(ctx, item, "rewrite"):
                    self._send_exit(ctx, handler)
                    return

        match = self.config.match(ctx.method, ctx.host, ctx.raw_path, ctx.headers)
        if match is None:
            ctx.exit = kong_error_exit(ctx, 404, "no Route matched with those values", None, source="router", phase="access")
            self._send_exit(ctx, handler)
            return

        ctx.phase = Phase.access
        ctx.route = match.route.record
        service_id = (ctx.route.get("service") or {}).get("id")
        ctx.service = self.config.service(service_id) if service_id else None
        ctx.match_prefix = match.prefix if ctx.route["strip_path"] else "/"
        if ctx.service:
            ctx.upstream_uri = upstream_path(match.route, match, ctx.service, ctx.raw_path)

        # The collecting iterator picks each plugin's config when it reaches
        # it, so plugins after an auth plugin see the authenticated consumer.
        for priority, name in self._names_by_priority():
            item = self._select(ctx, name, priority)
            if item is None:
                continue
            collected.append(item)
            if item.external and item.external.has_phase("response"):
                ctx.buffered_proxying = True  # plugins_iterator.lua
            if ctx.exit is not None:
                continue  # still collected (its log phase runs), not executed
            if name == KEY_AUTH:
                exit_record = self.key_auth.access(ctx, item.entity.config)
                if exit_record is not None:
                    ctx.exit = exit_record
            elif name == ai_proxy_plugin.NAME:
                exit_record = self.ai_proxy.access(ctx, item.entity.config)
                if exit_record is not None:
                    ctx.exit = exit_record
            elif item.external and item.external.has_phase("access"):
                self._run_external(ctx, item, "access")
        ctx.access_ended_ms = ctx.now_ms()

        if ctx.exit is not None:
            ctx.buffered_proxying = False  # kong/init.lua flush_delayed_response
            self._send_exit(ctx, handler)
            return
        if ctx.service is None:
            ctx.buffered_proxying = False  # kong/init.lua Kong.access: no service
            ctx.exit = kong_error_exit(ctx, 503, "no Service found with those values", None, source="router", phase="access")
            self._send_exit(ctx, handler)
            return
        upgrade = ctx.headers.first("upgrade")
        if ctx.buffered_proxying and upgrade is not None and upgrade.lower() == "websocket":
            # kong/runloop/handler.lua sets $upstream_upgrade for "Upgrade: websocket";
            # kong/init.lua Kong.access then turns buffering off ("connection upgrade").
            ctx.buffered_proxying = False
        self._proxy(ctx, handler, collected)

    def _run_external(self, ctx: RequestContext, item: _Collected, phase: str) -> bool:
        """Run one phase; True when the request was short-circuited."""
        assert item.external is not None
        ctx.phase = Phase[phase]
        outcome = item.external.run_phase(ctx, item.entity, phase)
        if outcome.lua_error is not None and phase != "log":
            # kong/init.lua: a plugin runtime error becomes a 500 delayed response
            ctx.kong_unexpected = True
            ctx.exit = kong_error_exit(ctx, 500, "An unexpected error occurred", None, source="unexpected", phase=phase)
            return True
        return outcome.exited

    # ------------------------------------------------------------ upstream

    def _upstream_headers(self, ctx: RequestContext) -> Headers:
        out = Headers()
        for name, value in ctx.headers:
            if name.lower() in HOP_BY_HOP or name.lower() in ("host", "content-length", "expect"):
                continue
            out.add(name, value)
        service = ctx.service or {}
        host_override = ctx.ngx_ctx.get("__upstream_host_header")
        if host_override:
            host = host_override[0] if isinstance(host_override, list) else host_override
        elif ctx.route and ctx.route.get("preserve_host"):
            host = ctx.headers.first("host") or ctx.host
        else:
            port = service.get("port")
            default_port = 443 if service.get("protocol") == "https" else 80
            host = service["host"] if port == default_port else f"{service['host']}:{port}"
        out.set("Host", host)
        forwarded_for = ctx.headers.first("x-forwarded-for")
        out.set("X-Forwarded-For", f"{forwarded_for}, {ctx.client_ip}" if forwarded_for else ctx.client_ip)
        out.set("X-Forwarded-Proto", ctx.scheme)
        out.set("X-Forwarded-Host", ctx.host)
        out.set("X-Forwarded-Port", str(ctx.server_port))
        out.set("X-Forwarded-Path", ctx.raw_path)
        if ctx.match_prefix != "/":
            out.set("X-Forwarded-Prefix", ctx.match_prefix)
        else:
            out.remove("X-Forwarded-Prefix")
        out.set("X-Real-IP", ctx.client_ip)
        out.set("X-Kong-Request-Id", ctx.request_id)
        via = ctx.headers.first("via")
        inbound = f"{ctx.http_version:g} {self.server_header}"
        out.set("Via", f"{via}, {inbound}" if via else inbound)
        if ctx.body or ctx.method in ("POST", "PUT", "PATCH"):
            out.set("Content-Length", str(len(ctx.body)))
        return out

    def _proxy(self, ctx: RequestContext, handler: _Handler, collected: list[_Collected]) -> None:
        service = ctx.service
        assert service is not None
        path = ctx.ngx_ctx.get("__upstream_path") or ctx.upstream_uri or "/"
        if ctx.raw_query or ctx.request_uri.endswith("?"):
            path = f"{path}?{ctx.raw_query}"
        ctx.upstream_uri = path
        ctx.proxied = True
        ctx.balancer_start_ms = ctx.now_ms()
        try:
            ip = socket.gethostbyname(service["host"])
        except OSError:
            ip = service["host"]
        ctx.balancer_ended_ms = ctx.now_ms()
        ctx.tries.append(
            {
                "balancer_start": round(ctx.balancer_start_ms),
                "balancer_start_ns": int(ctx.balancer_start_ms * 1_000_000),
                "ip": ip,
                "port": service["port"],
                "balancer_latency": round(ctx.balancer_ended_ms - ctx.balancer_start_ms),
                "balancer_latency_ns": int((ctx.balancer_ended_ms - ctx.balancer_start_ms) * 1_000_000),
            }
        )
        conn = http.client.HTTPConnection(ip, service["port"], timeout=service.get("read_timeout", 60000) / 1000)
        try:
            conn.putrequest(ctx.method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self._upstream_headers(ctx):
                conn.putheader(name, value)
            conn.endheaders(ctx.body if ctx.body else None)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            ctx.upstream_error = f"{type(exc).__name__}: {exc}"
            status = 504 if isinstance(exc, (socket.timeout, TimeoutError)) else 502
            ctx.upstream_status = status
            self._error_handler(ctx, handler, status, unexpected=True)
            return
        ctx.response_start_ms = ctx.now_ms()
        ctx.upstream_status = response.status
        ctx.upstream_headers = Headers(response.getheaders())
        try:
            if ctx.buffered_proxying:
                self._answer_buffered(ctx, handler, response, collected)
            else:
                self._answer_streaming(ctx, handler, response)
        finally:
            conn.close()

    def _response_headers(self, ctx: RequestContext, upstream: Headers) -> Headers:
        out = Headers((k, v) for k, v in upstream if k.lower() not in HOP_BY_HOP)
        waiting = round((ctx.response_start_ms or 0) - (ctx.balancer_ended_ms or 0))
        out.set("X-Kong-Upstream-Latency", str(waiting))
        out.set("X-Kong-Proxy-Latency", str(round((ctx.balancer_ended_ms or 0) - ctx.started_at_ms)))
        via = upstream.first("via")
        outbound = f"1.1 {self.server_header}"
        out.set("Via", f"{via}, {outbound}" if via else outbound)
        if "server" not in out:
            out.set("Server", self.server_header)
        out.set("X-Kong-Request-Id", ctx.request_id)
        return out

    def _answer_buffered(
        self, ctx: RequestContext, handler: _Handler, response: http.client.HTTPResponse, collected: list[_Collected]
    ) -> None:
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # kong/init.lua Kong.response: res.truncated -> 502 through the error handler
            ctx.body_ended_ms = ctx.now_ms()
            ctx.upstream_error = f"{type(exc).__name__}: {exc}"
            self._capture(ctx, getattr(exc, "partial", b"") or b"")
            self._error_handler(ctx, handler, 502, unexpected=False)
            return
        ctx.body_ended_ms = ctx.now_ms()
        ctx.buffered_status = response.status
        ctx.buffered_headers = ctx.upstream_headers.copy() if ctx.upstream_headers else Headers()
        ctx.buffered_body = body
        self._capture(ctx, body)
        ctx.response_status = response.status
        ctx.response_headers = self._response_headers(ctx, ctx.buffered_headers)
        for item in collected:
            if item.external and item.external.has_phase("response"):
                if self._run_external(ctx, item, "response"):
                    self._send_exit(ctx, handler)
                    return
        headers = ctx.response_headers
        headers.set("Content-Length", str(len(body)))
        self._write_head(ctx, handler, response.status, headers)
        if ctx.method != "HEAD":
            self._write(ctx, handler, body)

    def _error_handler(self, ctx: RequestContext, handler: _Handler, status: int, *, unexpected: bool) -> None:
        """nginx's error_page -> kong/error_handlers.lua: Kong's own error page.

        Kong.handle_error (kong/init.lua) marks the request KONG_UNEXPECTED; a truncated
        buffered answer reaches the handler from Kong.response without that mark. Either
        way the handler clears ctx.buffered_proxying, so kong.service.response.get_raw_body()
        raises in the log phase even when access enabled buffering, and answers with
        kong.response.exit (KONG_EXITED): serialize().source is "kong".
        """
        ctx.kong_unexpected = ctx.kong_unexpected or unexpected
        ctx.buffered_proxying = False
        ctx.exit = kong_error_exit(ctx, status, None, None, source="error-handler", phase=None)
        self._send_exit(ctx, handler)

    def _answer_streaming(self, ctx: RequestContext, handler: _Handler, response: http.client.HTTPResponse) -> None:
        headers = self._response_headers(ctx, ctx.upstream_headers or Headers())
        length = response.getheader("content-length")
        chunked = length is None and ctx.method != "HEAD" and response.status not in (204, 304)
        if chunked:
            headers.set("Transfer-Encoding", "chunked")
        ctx.response_status = response.status
        ctx.response_headers = headers
        self._write_head(ctx, handler, response.status, headers)
        if ctx.method == "HEAD":
            ctx.body_ended_ms = ctx.now_ms()
            return
        while True:
            try:
                chunk = response.read1(65536)
            except (OSError, http.client.HTTPException) as exc:
                # upstream broke mid-body: nginx just closes the client side
                ctx.upstream_error = f"{type(exc).__name__}: {exc}"
                handler.close_connection = True
                break
            if not chunk:
                break
            self._capture(ctx, chunk)
            self._write(ctx, handler, b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        ctx.body_ended_ms = ctx.now_ms()
        if ctx.upstream_error is not None:
            # nginx closes the client connection without the last chunk, so
            # the client can tell the answer is incomplete.
            handler.close_connection = True
            return
        if chunked:
            self._write(ctx, handler, b"0\r\n\r\n")

    def _capture(self, ctx: RequestContext, data: bytes) -> None:
        room = self.capture_limit - len(ctx.response_body_capture)
        if room > 0:
            ctx.response_body_capture += data[:room]

    # ------------------------------------------------------------ downstream

    def _send_exit(self, ctx: RequestContext, handler: _Handler) -> None:
        record = ctx.exit
        assert record is not None
        headers = record.headers.copy()
        headers.set("X-Kong-Response-Latency", str(round(ctx.now_ms() - ctx.started_at_ms)))
        headers.set("Server", self.server_header)
        headers.set("X-Kong-Request-Id", ctx.request_id)
        ctx.response_status = record.status
        ctx.response_headers = headers
        self._write_head(ctx, handler, record.status, headers)
        if ctx.method != "HEAD" and record.status not in (204, 304):
            self._write(ctx, handler, record.body)
        ctx.body_ended_ms = ctx.now_ms()

    def _write_head(self, ctx: RequestContext, handler: _Handler, status: int, headers: Headers) -> None:
        reason = http.client.responses.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {reason}"]
        if "date" not in headers:
            lines.append(f"Date: {handler.date_time_string()}")
        lines.extend(f"{k}: {v}" for k, v in headers)
        if handler.close_connection:
            lines.append("Connection: close")
        else:
            lines.append("Connection: keep-alive")
        ctx.headers_sent = True
        self._write(ctx, handler, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _write(self, ctx: RequestContext, handler: _Handler, data: bytes) -> None:
        try:
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError as exc:
            handler.close_connection = True
            raise _ClientGone() from exc
        ctx.bytes_sent += len(data)

    # ------------------------------------------------------------ log phase

    def _start_log_phase(self, ctx: RequestContext, collected: list[_Collected]) -> None:
        ctx.phase = Phase.log
        try:
            for item in collected:
                if item.name == ai_proxy_plugin.NAME and ctx.ai_proxy is not None:
                    # serialize-analytics.lua runs in header/body filter: before any log phase
                    values = ai_proxy_plugin.AiProxy.analytics(ctx, item.entity.id, self.ai_proxy_bugs)
                    ctx.serialize_values.extend((k, v, "set") for k, v in values.items())
            if self.serialize_hook is not None:
                extra = self.serialize_hook(ctx)
                for key, value in (extra or {}).items():
                    ctx.serialize_values.append((key, value, "set"))
            snapshot = build_serialize(ctx)
            if ctx.extra_serialize:
                snapshot = apply_serialize_values(snapshot, [(k, v, "set") for k, v in ctx.extra_serialize.items()])
            ctx.log_snapshot = snapshot
        except Exception:  # noqa: BLE001
            self._record_failure(ctx, "harness error building serialize():\n" + traceback.format_exc())
            ctx.log_snapshot = {}
        ctx.saved_log = {
            "request_headers": ctx.headers.copy(),
            "response_headers": ctx.response_headers.copy(),
            "response_status": ctx.response_status,
        }
        loggers = [c for c in collected if c.external and c.external.has_phase("log")]
        if not loggers:
            ctx.log_done.set()
            self._log_finished()
            return
        # Kong runs an external plugin's log handler in ngx.timer.at(0, ...)
        thread = threading.Thread(target=self._run_log_timer, args=(ctx, loggers), daemon=True, name="kong-log-timer")
        thread.start()

    def _run_log_timer(self, ctx: RequestContext, loggers: list[_Collected]) -> None:
        try:
            for item in loggers:
                self._run_external(ctx, item, "log")
        except Exception:  # noqa: BLE001
            self._record_failure(ctx, "harness error in log phase:\n" + traceback.format_exc())
        finally:
            ctx.log_done.set()
            self._log_finished()


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    return int(major), int(minor or 0)


class _Server(ThreadingHTTPServer):
    # Bursts of concurrent clients must queue, not be reset (default backlog is 5).
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client dropping its idle keep-alive connection is routine (nginx logs it at
        # info level); only other failures deserve a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes: with Nagle on, each answer
    # waits ~40 ms for the client's delayed ACK (nginx sets tcp_nodelay too).
    disable_nagle_algorithm = True
    front: KongFront
    worker_id: int = 0

    def setup(self) -> None:
        super().setup()
        # nginx: one connection is served by one worker for its whole life
        self.worker_id = next(self.front._worker_ids) % self.front.workers

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        head = len(self.requestline) + 2 + sum(len(k) + len(v) + 4 for k, v in self.headers.items()) + 2
        self.front._serve(self, body, head + len(body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815
