"""The aggregator's HTTP server itself: a busy port, unknown paths, oversized bodies, over a real socket."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.aggregator_fixtures import free_port, make_settings, refusing_address

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.server.http_api import ListenError


def request(agg: Aggregator, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", agg.http.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def test_a_busy_http_port_fails_with_one_line_naming_the_address_and_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        process = subprocess.run(
            [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", f"chdb://{tmp_path / 'store'}",
             "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", address],
            capture_output=True, text=True, timeout=120, env={**os.environ, "CHARGEBACK_HTTP_LISTEN": address},
        )  # fmt: skip
    assert process.returncode == 2
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, process.stderr
    assert address in lines[0] and "CHARGEBACK_HTTP_LISTEN" in lines[0] and "in use" in lines[0]
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "store").exists()  # failed before touching the store


def test_a_grpc_port_another_aggregator_listens_on_is_refused(aggregator: Aggregator, tmp_path: Path) -> None:
    """gRPC binds with SO_REUSEPORT unless told not to: a second aggregator on the same port would
    start, and the kernel would split the gateways' streams between the two."""
    second = Aggregator(make_settings(tmp_path, grpc_listen=aggregator.settings.grpc_listen))  # same store: chDB allows one per process
    try:
        with pytest.raises(ListenError, match="cannot listen for gRPC"):
            second.start()
    finally:
        second.stop(grace_s=1)


def test_unknown_paths_and_methods_answer_json(aggregator: Aggregator) -> None:
    status, headers, body = request(aggregator, "GET", "/v1/nothing-here")
    assert (status, headers["content-type"], json.loads(body)) == (404, "application/json", {"error": "not found"})
    status, _, body = request(aggregator, "DELETE", "/healthz")
    assert status == 405 and json.loads(body) == {"error": "method not allowed"}
    status, _, body = request(aggregator, "GET", "/v1/sql")  # the route decides: it wants POST
    assert status == 405 and json.loads(body) == {"error": "use POST"}
    status, headers, body = request(aggregator, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert "server" not in headers  # the server does not announce itself


def test_bodies_over_the_limit_are_refused_declared_or_streamed(aggregator: Aggregator) -> None:
    big = b"x" * (1024 * 1024 + 1)
    status, _, body = request(aggregator, "POST", "/v1/sql", big, {"content-type": "application/json"})
    assert status == 413 and json.loads(body) == {"error": "request too large"}
    # No content-length (chunked): counted while it arrives.
    conn = http.client.HTTPConnection("127.0.0.1", aggregator.http.port, timeout=30)
    try:
        conn.request("POST", "/v1/sql", body=iter([big[:600_000], big[600_000:]]), encode_chunked=True,
                     headers={"content-type": "application/json", "transfer-encoding": "chunked"})  # fmt: skip
        answer = conn.getresponse()
        assert answer.status == 413 and json.loads(answer.read()) == {"error": "request too large"}
    finally:
        conn.close()


def _own_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("chargeback-")}


def test_a_start_that_fails_after_binding_stops_what_it_started_and_frees_its_ports(tmp_path: Path) -> None:
    """The store is down at start (a ClickHouse server that refuses): migrations fail after the HTTP
    port was taken. The failed start leaves no thread of its own (one left in the
    engine can hang the process's exit) and no port taken, so the next start can have them."""
    before = _own_threads()
    with refusing_address() as store_address:
        settings = make_settings(tmp_path, store_dsn=f"http://{store_address}")
        failed = Aggregator(settings)
        with pytest.raises(Exception) as raised:
            failed.start()
    assert not isinstance(raised.value, ListenError), raised.value
    assert _own_threads() == before
    grpc_port, http_port = (int(address.rpartition(":")[2]) for address in (settings.grpc_listen, settings.http_listen))
    for port in (grpc_port, http_port):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # raises if the failed start still holds it
    failed.stop(grace_s=1)  # a second stop (the caller's finally) is harmless


def test_a_started_aggregator_has_read_the_price_catalog(tmp_path: Path) -> None:
    """The bundled catalog is read on first use (~0.15 s): at start, not in the first flush after
    a restart, the one a reconnecting fleet's backlog waits on. A fresh process, so no other test
    has read it already."""
    script = ("import sys; from pathlib import Path; from support.aggregator_fixtures import make_settings; "
              "from ai_chargeback_aggregator.server.app import Aggregator; "
              "agg = Aggregator(make_settings(Path(sys.argv[1]))); before = 'genai_prices.data' in sys.modules; "
              "agg.start(); after = 'genai_prices.data' in sys.modules; agg.stop(grace_s=1); print(before, after)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]
