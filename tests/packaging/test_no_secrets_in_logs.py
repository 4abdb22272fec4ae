"""No secret reaches a log line, an HTTP answer of the aggregator, or a crash trace.

Secrets in play: the aggregator's bearer token (both sides), the SQL token,
a ClickHouse DSN password, the plugin's credential HMAC key, and a consumer's
key-auth key. They are exercised on the paths that tend to leak: a full
metered run at DEBUG, a gateway presenting the wrong token, a store that
refuses the password and a store that cannot be reached.
"""

from __future__ import annotations

import base64
import http.server
import io
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.aggregator_fixtures import free_port, make_event, sender_config
from support.gateway import running_gateway

from ai_chargeback_aggregator.cli.logs import json_formatter
from ai_chargeback_plugin.sender import EventSender

AUTH_TOKEN = "agg-token-6f0c2d9e7b1a4c55"
SQL_TOKEN = "sql-token-93be4412aa07e1f0"
HMAC_SECRET = "hmac-secret-1d8f6c3b0e2a4977"
WRONG_TOKEN = "wrong-token-5a2e9c1f7d3b8e60"
CONSUMER_KEY = "demo-key-checkout"  # kong.yml's key-auth credential for checkout-service
DSN_PASSWORD = "dsn-password-c47a1e0b92f3d865"
SECRETS = (AUTH_TOKEN, SQL_TOKEN, HMAC_SECRET, WRONG_TOKEN, CONSUMER_KEY, DSN_PASSWORD)
# Our processes' loggers; the test harness (Kong's stand-in) logs what it likes.
OURS = ("ai_chargeback_aggregator", "ai-chargeback")


def leaked(text: str) -> list[str]:
    found = [s for s in SECRETS if s in text]
    basic = base64.b64encode(f"chargeback:{DSN_PASSWORD}".encode()).decode()
    return found + (["basic-auth header"] if basic in text else [])


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every record of our loggers at DEBUG, formatted as production formats them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    handler.addFilter(lambda record: record.name.startswith(OURS))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_metered_run_with_every_secret_configured_logs_none(tmp_path: Path, debug_logs: io.StringIO) -> None:
    plugin = {"aggregator_token": AUTH_TOKEN, "credential_hmac_secret": HMAC_SECRET}
    aggregator = {"auth_token": AUTH_TOKEN, "sql_token": SQL_TOKEN}
    with running_gateway(tmp_path, plugin_overrides=plugin, aggregator_settings=aggregator) as gw:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            assert client.post("/openai/v1/chat/completions", json=body, headers={"apikey": CONSUMER_KEY}).status_code == 200
            # The key in the query string, where access logs usually catch it.
            assert client.post(f"/openai/v1/chat/completions?apikey={CONSUMER_KEY}", json=body).status_code == 200
            assert client.post("/openai/v1/chat/completions", json=body, headers={"apikey": "nope"}).status_code == 401
        gw.wait_for_events(2)

        # A misconfigured gateway: its sender is refused and says so, without either token.
        settings = gw.aggregator.settings
        wrong = EventSender(sender_config(settings.grpc_listen, aggregator_token=WRONG_TOKEN))
        try:
            wrong.offer(make_event())
            assert not wrong.flush(2.0)
        finally:
            wrong.close()

        http_answers = "".join(
            urllib.request.urlopen(f"http://{settings.http_listen}{path}", timeout=5).read().decode()
            for path in ("/metrics", "/healthz", "/readyz")
        )
        stored = repr(gw.query("SELECT * FROM chargeback.usage_events"))
        plugin_log = gw.plugin_server.read_log()

    logs = debug_logs.getvalue()
    assert "UNAUTHENTICATED" in logs or "UNAUTHENTICATED" in plugin_log  # the refusal was logged...
    assert leaked(logs) == [], "aggregator/sender logs"
    assert leaked(plugin_log) == [], "plugin server log (Kong's error log in production)"
    assert leaked(http_answers) == [], "/metrics, /healthz, /readyz"
    assert leaked(stored) == [], "stored events (credentials are kept as HMAC fingerprints only)"


class _RefusingClickHouse(http.server.BaseHTTPRequestHandler):
    """Answers like a ClickHouse server whose user has another password; remembers what it was sent."""

    seen_authorization: list[str] = []

    def _refuse(self) -> None:
        self.seen_authorization.append(self.headers.get("authorization", ""))
        body = b"Code: 516. DB::Exception: chargeback: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED)\n"
        self.send_response(401)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("store", ["refuses the password", "is unreachable"])
def test_store_failures_at_start_do_not_print_the_dsn_password(store: str, tmp_path: Path) -> None:
    server = None
    if store == "refuses the password":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingClickHouse)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    else:
        port = free_port()
    env = {
        **os.environ,
        "CHARGEBACK_STORE_DSN": f"http://chargeback:{DSN_PASSWORD}@127.0.0.1:{port}",
        "CHARGEBACK_AUTH_TOKEN": AUTH_TOKEN,
        "CHARGEBACK_SQL_TOKEN": SQL_TOKEN,
    }
    try:
        run = subprocess.run(
            [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--log-level", "DEBUG",
             "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}"],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
    assert run.returncode != 0, "the aggregator must not start on a store it cannot use"
    output = run.stdout + run.stderr
    assert "127.0.0.1" in output  # it did say which store failed...
    assert leaked(output) == []  # ...without the password
    if server is not None:
        assert any(base64.b64decode(a.split()[-1]).decode().endswith(DSN_PASSWORD) for a in _RefusingClickHouse.seen_authorization if a)
