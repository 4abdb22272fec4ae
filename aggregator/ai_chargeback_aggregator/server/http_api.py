"""The aggregator's HTTP side: liveness, readiness, Prometheus metrics, and extra routes.

Health answers reveal nothing sensitive: no DSN, no credentials, no paths.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import REGISTRY

log = logging.getLogger(__name__)

# A route answers (status, content_type, body) for (method, path, headers, body). A body
# may be an open binary file positioned at its start (a spooled answer): it is sent in
# chunks with its length, then closed.
Body = bytes | IO[bytes]
Route = Callable[[str, dict[str, str], bytes], tuple[int, str, Body]]
MAX_REQUEST_BYTES = 1024 * 1024


def json_response(status: int, payload: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload, default=str).encode()


class HttpApi:
    def __init__(self, listen: str, readiness: Callable[[], tuple[bool, dict[str, str]]]) -> None:
        host, _, port = listen.rpartition(":")
        self._readiness = readiness
        self.routes: dict[str, Route] = {
            "/healthz": lambda method, headers, body: json_response(200, {"status": "alive"}),
            "/readyz": self._ready,
            "/metrics": lambda method, headers, body: (200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)),
        }
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="chargeback-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _ready(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        ready, checks = self._readiness()
        return json_response(200 if ready else 503, {"ready": ready, "checks": checks})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "chargeback-aggregator"
            sys_version = ""

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                route = api.routes.get(path)
                if route is None:
                    self._send(*json_response(404, {"error": "not found"}))
                    return
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_REQUEST_BYTES:
                    self._send(*json_response(413, {"error": "request too large"}))
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    self._send(*route(self.command, headers, body))
                except Exception:
                    log.exception("http route %s failed", path)
                    self._send(*json_response(500, {"error": "internal error"}))

            do_GET = do_POST = _serve  # noqa: N815 (http.server names)

            def _send(self, status: int, content_type: str, body: Body) -> None:
                if isinstance(body, bytes):
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with body:
                    start = body.tell()
                    length = body.seek(0, 2) - start
                    body.seek(start)
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(length))
                    self.end_headers()
                    shutil.copyfileobj(body, self.wfile, 64 * 1024)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("http %s", format % args)

        return Handler
