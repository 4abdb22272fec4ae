"""Problem 5 of issue 16 through the real plugin server: spools are never orphaned or shared.

kong.yml's plugin configs (one per service) each get a sender and a durable
spool keyed by the gateway node and Kong's plugin id. The plugin server is
killed with -9 while the aggregator is away; after a restart, with the
delivery options or the aggregator addresses changed in between, every event
arrives exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from kong_harness import MsgpackRpcClient, PluginServerProcess
from kong_harness.front import KongFront
from support.aggregator_fixtures import make_settings, refusing_address
from support.gateway import DEMO_VAULT_ENV, PLUGIN, SERVICES, kong_config_for, with_log_plugin
from support.mock_llm import MockLLM
from support.spool_files import wait_spooled

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_plugin.spool import node_name

OPENAI = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "meter me"}]}
ANTHROPIC = {"model": "claude-3-5-sonnet-latest", "max_tokens": 50, "messages": [{"role": "user", "content": "meter me"}]}


def front_for(config: dict[str, Any], llm: MockLLM, server: PluginServerProcess) -> KongFront:
    return KongFront.from_kong_yml(config, with_log_plugin({PLUGIN: server}), keep_requests=1000, vault_env=DEMO_VAULT_ENV,
                                   upstream_overrides=dict.fromkeys(SERVICES, llm.url))  # fmt: skip


def with_options(config: dict[str, Any], service: str, **options: Any) -> dict[str, Any]:
    block = next(p for s in config["services"] if s["name"] == service for p in s["plugins"] if p["name"] == PLUGIN)
    block["config"].update(options)
    return config


def send(front: KongFront, openai: int, anthropic: int, label: str) -> None:
    with httpx.Client(base_url=front.url, timeout=30) as client:
        for n in range(openai):
            client.post("/openai/v1/chat/completions", json=OPENAI, headers={"apikey": "demo-key-checkout"},
                        params={"n": f"{label}{n}"}).raise_for_status()  # fmt: skip
        for n in range(anthropic):
            client.post("/anthropic/v1/messages", json=ANTHROPIC, headers={"apikey": "demo-key-fraud"},
                        params={"n": f"{label}{n}"}).raise_for_status()  # fmt: skip
    assert front.wait_for_logs(60)


def restart(server: PluginServerProcess, front: KongFront) -> None:
    server.start()  # Kong restarts the plugin server
    plugin = front.external_plugins[PLUGIN]
    plugin.rpc = MsgpackRpcClient(server.socket_path)  # the old connections died with it
    plugin.reset_instances()


def wait_stored(aggregator: Aggregator, count: int) -> tuple[int, int]:
    deadline = time.monotonic() + 90
    rows = (0, 0)
    while time.monotonic() < deadline:
        _, found = aggregator.store.query("SELECT count(), uniqExact(event_id) FROM chargeback.usage_events")
        rows = found[0]
        if rows[0] >= count:
            break
        time.sleep(0.1)
    return rows  # type: ignore[return-value]


def test_each_plugin_config_keeps_its_own_durable_spool_and_a_kill_9_loses_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # the aggregator is not running yet
    spool = tmp_path / "spool"
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=tmp_path / "kong",
                                                    log_path=tmp_path / "pluginserver.log")  # fmt: skip
    (tmp_path / "kong").mkdir()
    # Same aggregator, different delivery options: two senders, which used to fight over one spool.
    config = with_options(kong_config_for(settings.grpc_listen, spool), "anthropic", batch_max_events=7, flush_interval_ms=30)
    with MockLLM() as llm:
        front = front_for(config, llm, server)
        try:
            send(front, 120, 80, "before")
            # Every event in a spooled batch before the kill (the senders spool on their own thread
            # every flush interval; a fixed 0.5 s sleep was a guess a loaded machine can outlast).
            wait_spooled(spool, 200)
            spools = sorted(p for p in (spool / node_name()).iterdir() if list(p.glob("segment-*.log")))
            assert len(spools) == 2, spools  # one per plugin config, both on disk
            os.kill(server.pid or 0, signal.SIGKILL)
            server.stop()
            assert "in memory only" not in server.read_log()

            aggregator = Aggregator(settings)
            aggregator.start()
            try:
                restart(server, front)
                send(front, 1, 1, "after")  # instances (and their senders) start on their route's next request
                assert wait_stored(aggregator, 202) == (202, 202), server.read_log()[-3000:]
            finally:
                aggregator.stop(grace_s=2)
        finally:
            front.stop()
            server.stop()


def test_events_spooled_under_the_old_addresses_reach_the_aggregator_configured_now(tmp_path: Path) -> None:
    # The only aggregator listed at first: down, and held so for the whole test (a bare free port
    # can be taken by any other server on the machine, which would then ack the "old" events).
    with refusing_address() as old_address:
        _old_addresses_drain_to_the_new(tmp_path, old_address)


def _old_addresses_drain_to_the_new(tmp_path: Path, old_address: str) -> None:
    settings = make_settings(tmp_path)
    spool = tmp_path / "spool"
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=tmp_path / "kong",
                                                    log_path=tmp_path / "pluginserver.log")  # fmt: skip
    (tmp_path / "kong").mkdir()
    with MockLLM() as llm:
        front = front_for(kong_config_for(old_address, spool), llm, server)
        try:
            send(front, 90, 0, "old")
            wait_spooled(spool, 90)  # every event spooled before the kill, however slow the sender thread is
            os.kill(server.pid or 0, signal.SIGKILL)
            server.stop()
        finally:
            front.stop()
        aggregator = Aggregator(settings)
        aggregator.start()
        # The config now lists a new aggregator first, the old address as failover.
        edited = kong_config_for(old_address, spool)
        for service in edited["services"]:
            for plugin in service.get("plugins") or []:
                if plugin["name"] == PLUGIN:
                    plugin["config"]["aggregator_addresses"] = [settings.grpc_listen, old_address]
        server.start()
        front = front_for(edited, llm, server)
        try:
            send(front, 1, 0, "new")
            assert wait_stored(aggregator, 91) == (91, 91), server.read_log()[-3000:]
        finally:
            front.stop()
            server.stop()
            aggregator.stop(grace_s=2)
