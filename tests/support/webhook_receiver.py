"""A real local HTTP server standing in for a webhook endpoint (Slack, PagerDuty, a team's bot).

Each path answers from a script of statuses (``fail(path, 500, 500)``: the
first two requests get 500, then 200). Every request is recorded with its
headers and decoded JSON body.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server name)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    script = receiver._script[self.path]
                    status = script.popleft() if script else 200
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                    receiver._lock.notify_all()
                payload = b'{"ok": true}' if status < 400 else b'{"error": "scripted failure"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def fail(self, path: str, *statuses: int) -> None:
        with self._lock:
            self._script[path].extend(statuses)

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Wait until ``path`` received ``count`` requests answered 2xx (failures in between are recorded too)."""
        with self._lock:
            ok = lambda: [r for r in self.received if r.path == path and r.status < 400]  # noqa: E731
            if not self._lock.wait_for(lambda: len(ok()) >= count, timeout_s):
                raise TimeoutError(f"{path}: {len(ok())} of {count} deliveries arrived; all: {self.received}")
            return ok()

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
