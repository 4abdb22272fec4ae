"""Delivery through the real plugin server: Kong-side crashes and aggregator crashes lose nothing.

Requests go through the Kong harness front (kong.yml) to the mock LLM; the real
ai-chargeback plugin server meters them and its sender spools and streams them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from kong_harness import MsgpackRpcClient, PluginServerProcess
from kong_harness.front import KongFront
from support import gateway
from support.aggregator_fixtures import make_settings
from support.aggregator_process import remote_count, start_serve, store_counts
from support.gateway import PLUGIN, kong_config_for
from support.mock_llm import MockLLM
from support.spool_files import wait_spooled

from ai_chargeback_aggregator.server.app import Aggregator

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "meter me"}]}
SQL_TOKEN = "e2e-sql-token-0123456789"


def front_for(tmp_path: Path, grpc_listen: str, llm: MockLLM, server: PluginServerProcess) -> KongFront:
    config = kong_config_for(grpc_listen, tmp_path / "spool", overrides={"batch_max_events": 200})
    return gateway.front_for(config, {PLUGIN: server}, llm.url, keep_requests=1000)


def send(front: KongFront, count: int, *, threads: int = 1, label: str = "r") -> None:
    def worker(index: int) -> None:
        with httpx.Client(base_url=front.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
            for n in range(index, count, threads):
                client.post("/openai/v1/chat/completions", json=BODY, params={"n": f"{label}{n}"}).raise_for_status()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert front.wait_for_logs(60)


def test_plugin_server_killed_with_events_spooled_delivers_them_all_after_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # the aggregator is not running yet
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=tmp_path / "kong",
                                                    log_path=tmp_path / "pluginserver.log")  # fmt: skip
    (tmp_path / "kong").mkdir()
    with MockLLM() as llm:
        front = front_for(tmp_path, settings.grpc_listen, llm, server)
        try:
            send(front, 300)
            # The sender batches and spools on its own thread every flush interval (50 ms here):
            # wait until all 300 are on disk before the kill (a fixed 0.5 s sleep was a guess
            # that a stalled plugin server on a loaded machine can outlast).
            wait_spooled(tmp_path / "spool", 300)
            os.kill(server.pid or 0, signal.SIGKILL)  # Kong's plugin server dies with events unsent
            server.stop()

            aggregator = Aggregator(settings)
            aggregator.start()
            try:
                server.start()  # Kong restarts the plugin server
                plugin = front.external_plugins[PLUGIN]
                plugin.rpc = MsgpackRpcClient(server.socket_path)  # the old connections died with it
                plugin.reset_instances()
                send(front, 1, label="after")  # instances (and the sender) start on the next request
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    stored = aggregator.store.query("SELECT count() FROM chargeback.usage_events FINAL")[1][0][0]
                    if stored >= 301:
                        break
                    time.sleep(0.1)
                _, rows = aggregator.store.query(
                    "SELECT count(), uniqExact(event_id), uniqExact(kong_request_id) FROM chargeback.usage_events")
                assert rows[0] == (301, 301, 301), server.read_log()[-3000:]
            finally:
                aggregator.stop(grace_s=2)
        finally:
            front.stop()
            server.stop()


@pytest.mark.slow
def test_kill_9_aggregator_during_20k_requests_through_the_plugin_server_counts_each_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    log = tmp_path / "aggregator.log"
    aggregator = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, log, SQL_TOKEN)
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=tmp_path / "kong",
                                                    log_path=tmp_path / "pluginserver.log")  # fmt: skip
    (tmp_path / "kong").mkdir()
    total = 20_000
    with MockLLM() as llm:
        front = front_for(tmp_path, settings.grpc_listen, llm, server)
        try:
            killer_done = threading.Event()

            def kill_mid_stream() -> None:
                nonlocal aggregator
                while front.requests_served < total // 3:
                    time.sleep(0.05)
                aggregator.send_signal(signal.SIGKILL)
                aggregator.wait(10)
                time.sleep(1.0)  # events pile up in the plugin's spool meanwhile
                aggregator = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, log, SQL_TOKEN)
                killer_done.set()

            killer = threading.Thread(target=kill_mid_stream)
            killer.start()
            send(front, total, threads=8)
            killer.join(120)
            assert killer_done.is_set()
            deadline = time.monotonic() + 180
            stored = 0
            while time.monotonic() < deadline:
                stored = remote_count(settings.http_listen, SQL_TOKEN, "SELECT count() FROM chargeback.usage_events FINAL")
                if stored >= total:
                    break
                time.sleep(0.5)
            assert stored == total, server.read_log()[-3000:]
            front.raise_failures()
        finally:
            front.stop()
            server.stop()
            aggregator.send_signal(signal.SIGTERM)
            assert aggregator.wait(60) == 0
    raw, distinct, final = store_counts(settings.store_dsn)
    assert (raw, distinct, final) == (total, total, total)
