"""The aggregator's HTTP side: liveness, readiness, Prometheus metrics, and extra routes.

An ASGI application (Starlette) served by uvicorn on its own thread and event
loop, so the gRPC side and the HTTP side never wait on each other. Handlers
that touch the store are plain functions: Starlette runs them on its thread
pool.

Two kinds of routes:

* ``routes``: ``path -> Route``, a function of (method, headers, body) answering
  (status, content type, body). /healthz, /readyz, /metrics and the JSON API
  (server/sql_api.py) are written this way.
* ``mounts``: any Starlette route or mount (the console, console/).

Health answers reveal nothing sensitive: no DSN, no credentials, no paths.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..metrics import REGISTRY

log = logging.getLogger(__name__)

# A route answers (status, content_type, body) for (method, path, headers, body). A body
# may be an open binary file positioned at its start (a spooled answer): it is sent in
# chunks with its length, then closed.
Body = bytes | IO[bytes]
Route = Callable[[str, dict[str, str], bytes], tuple[int, str, Body]]
Answer = tuple[int, str, Body]
CHUNK_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
METHODS = ["GET", "POST"]
LISTEN_SETTING = "CHARGEBACK_HTTP_LISTEN"
START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5


class ListenError(RuntimeError):
    """The HTTP address cannot be listened on; the message is one line a person can act on."""


def json_response(status: int, payload: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload, default=str).encode()


def bearer_json_route(token: SecretStr | None, what: str, handler: Callable[[dict[str, Any]], Answer]) -> Route:
    """A POST route taking a JSON object, open only to ``Bearer <token>`` (no token configured: the route is off)."""
    expected = token.get_secret_value().encode() if token else None

    def route(method: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST":
            return json_response(405, {"error": "use POST"})
        if expected is None:
            return json_response(403, {"error": f"{what} disabled: no token configured"})
        presented = headers.get("authorization", "")
        token_bytes = presented[len("Bearer ") :].encode() if presented.startswith("Bearer ") else b""
        if not hmac.compare_digest(token_bytes, expected):
            return json_response(401, {"error": "missing or wrong bearer token"})
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        return handler(payload)

    return route


def _send(answer: tuple[int, str, Body]) -> Response:
    status, content_type, body = answer
    if isinstance(body, bytes):
        return Response(body, status_code=status, media_type=content_type)
    start = body.tell()
    length = body.seek(0, 2) - start
    body.seek(start)

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := body.read(CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    # Closed by the iterator when sent, and by the task when the client left before the end.
    return StreamingResponse(chunks(), status_code=status, media_type=content_type, headers={"content-length": str(length)},
                             background=BackgroundTask(body.close))  # fmt: skip


class HttpApi:
    def __init__(self, listen: str, readiness: Callable[[], tuple[bool, dict[str, str]]], *, root_path: str = "",
                 trusted_proxies: str = "127.0.0.1") -> None:  # fmt: skip
        self.listen = listen
        self.root_path = root_path.rstrip("/")
        self.trusted_proxies = trusted_proxies
        self._readiness = readiness
        self.routes: dict[str, Route] = {
            "/healthz": lambda method, headers, body: json_response(200, {"status": "alive"}),
            "/readyz": self._ready,
            "/metrics": lambda method, headers, body: (200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)),
        }
        self.mounts: list[BaseRoute] = []
        # Wraps the finished application (path prefix behind a proxy, security headers).
        self.wrap: Callable[[ASGIApp], ASGIApp] = lambda app: app
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("HTTP socket not bound yet")
        return int(self._socket.getsockname()[1])

    def bind(self) -> None:
        """Take the address now, so a busy port fails before anything else starts."""
        if self._socket is not None:
            return
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ListenError(f"cannot listen for HTTP on {self.listen}: {reason}; set {LISTEN_SETTING} (or --http-listen) to a free host:port") from None
        sock.set_inheritable(True)
        self._socket = sock

    def application(self) -> ASGIApp:
        legacy = [StarletteRoute(path, self._endpoint(route), methods=METHODS) for path, route in self.routes.items()]
        app = Starlette(routes=[*legacy, *self.mounts], exception_handlers={HTTPException: _http_error})
        return PathPrefix(self.wrap(app), self.root_path) if self.root_path else self.wrap(app)

    def start(self) -> None:
        self.bind()
        assert self._socket is not None
        config = uvicorn.Config(
            self.application(), log_config=None, log_level="warning", access_log=False, lifespan="off",
            server_header=False, proxy_headers=True, forwarded_allow_ips=self.trusted_proxies, timeout_graceful_shutdown=STOP_GRACE_S,
        )  # fmt: skip
        server = uvicorn.Server(config)
        sockets = [self._socket]
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=sockets)), name="chargeback-http", daemon=True)
        self._server = server
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.listen} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_GRACE_S + 5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def _ready(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        ready, checks = self._readiness()
        return json_response(200 if ready else 503, {"ready": ready, "checks": checks})

    @staticmethod
    def _endpoint(route: Route) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_REQUEST_BYTES):
                return _send(json_response(413, {"error": "request too large"}))
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_REQUEST_BYTES:
                    return _send(json_response(413, {"error": "request too large"}))
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                return _send(await run_in_threadpool(route, request.method, headers, bytes(body)))
            except Exception:
                log.exception("http route %s failed", request.url.path)
                return _send(json_response(500, {"error": "internal error"}))

        return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _send(json_response(404, {"error": "not found"}))
    if exc.status_code == 405:
        return _send(json_response(405, {"error": "method not allowed"}))
    return _send(json_response(exc.status_code, {"error": exc.detail}))


class PathPrefix:
    """Serves the application under a path prefix (settings.http_root_path), behind a proxy that keeps or strips it.

    Links and cookies are built from ``root_path``; a request that arrives
    without the prefix (the proxy stripped it, or a direct call such as a
    health probe) is routed the same as one that carries it.
    """

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if not (path == self.prefix or path.startswith(self.prefix + "/")):
                path = self.prefix + path
            scope = {**scope, "root_path": self.prefix, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
