"""The whole metering path on one machine: mock LLM -> Kong harness front (kong.yml) with the
real ai-chargeback plugin server -> real gRPC -> real aggregator -> embedded ClickHouse.

Used by the end-to-end tests, `make demo` and the benchmarks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kong_harness import PluginServerProcess, SharedPluginServer
from kong_harness.front import KongFront

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from support.aggregator_fixtures import free_port
from support.mock_llm import MockLLM

ROOT = Path(__file__).resolve().parents[2]
KONG_YML = ROOT / "kong.yml"
PLUGIN = "ai-chargeback"
LOG_PLUGIN = "ai-chargeback-log"  # the log-only plugin, served by the same plugin server
# kong.yml's services, all pointed at the mock LLM here.
SERVICES = ("openai", "anthropic", "openai-tools", "internal-vllm")
# What Kong's env vault would read on a gateway node for kong.yml's references (fake keys).
DEMO_VAULT_ENV = {
    "OPENAI_API_KEY": "sk-demo-openai-0000",
    "ANTHROPIC_API_KEY": "sk-ant-demo-0000",
    "AI_CHARGEBACK_HMAC_SECRET": "demo-only-change-me",
}


def kong_config_for(aggregator_address: str, spool_dir: Path, *, overrides: Mapping[str, Any] | None = None,
                    source: Path = KONG_YML) -> dict[str, Any]:  # fmt: skip
    """kong.yml as shipped, with every ai-chargeback(-log) block pointed at this run's aggregator and spool.

    `overrides` go to every ai-chargeback block, and to ai-chargeback-log blocks minus the
    fields its schema does not have (request-path options: schema.REQUEST_PATH_FIELDS).
    """
    from ai_chargeback_plugin.schema import REQUEST_PATH_FIELDS

    config = yaml.safe_load(source.read_text())
    for plugin in _plugins(config):
        if plugin.get("name") in (PLUGIN, LOG_PLUGIN):
            block = plugin.setdefault("config", {})
            block["aggregator_addresses"] = [aggregator_address]
            block["spool_dir"] = str(spool_dir)
            block.setdefault("flush_interval_ms", 50)
            wanted = dict(overrides or {})
            if plugin["name"] == LOG_PLUGIN:
                wanted = {k: v for k, v in wanted.items() if k not in REQUEST_PATH_FIELDS}
            block.update(copy.deepcopy(wanted))
    return config


def with_log_plugin(plugin_servers: Mapping[str, PluginServerProcess]) -> dict[str, PluginServerProcess]:
    """`plugin_servers` plus ai-chargeback-log served by the ai-chargeback server, as Kong is configured
    for it (its own pluginserver entry: query command ``--dump --plugin ai-chargeback-log``, same socket)."""
    servers = dict(plugin_servers)
    if PLUGIN in servers and LOG_PLUGIN not in servers:
        servers[LOG_PLUGIN] = SharedPluginServer(servers[PLUGIN], ["--plugin", LOG_PLUGIN])
    return servers


def _plugins(config: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from config.get("plugins") or []
    for service in config.get("services") or []:
        yield from service.get("plugins") or []
        for route in service.get("routes") or []:
            yield from route.get("plugins") or []
    for route in config.get("routes") or []:
        yield from route.get("plugins") or []


def front_for(config: Mapping[str, Any], plugin_servers: Mapping[str, PluginServerProcess], upstream_url: str,
              **kwargs: Any) -> KongFront:  # fmt: skip
    """A harness front serving `config` (kong.yml as parsed) with every service sent to `upstream_url`."""
    kwargs.setdefault("vault_env", DEMO_VAULT_ENV)
    return KongFront.from_kong_yml(config, with_log_plugin(plugin_servers), dict.fromkeys(SERVICES, upstream_url), **kwargs)


@dataclass
class Gateway:
    aggregator: Aggregator
    llm: MockLLM
    front: KongFront
    plugin_server: PluginServerProcess

    @property
    def url(self) -> str:
        return self.front.url

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.aggregator.store.query(sql, parameters)[1]

    def wait_for_events(self, count: int, timeout_s: float = 60.0) -> int:
        """Wait until the store holds at least `count` events (plugin log phase + sender + ingest)."""
        self.front.wait_for_logs(timeout_s)
        deadline = time.monotonic() + timeout_s
        stored = 0
        while time.monotonic() < deadline:
            stored = self.query("SELECT count() FROM chargeback.usage_events FINAL")[0][0]
            if stored >= count:
                return int(stored)
            time.sleep(0.05)
        raise TimeoutError(f"{stored} of {count} events stored; plugin server log:\n{self.plugin_server.read_log()[-4000:]}")


@contextmanager
def running_gateway(workdir: Path, *, gevent: bool = True, plugin_overrides: Mapping[str, Any] | None = None,
                    serialize_hook: Any = None, aggregator_settings: Mapping[str, Any] | None = None,
                    workers: int = 1) -> Iterator[Gateway]:  # fmt: skip
    settings = AggregatorSettings(
        store_dsn=f"chdb://{workdir / 'store'}",
        grpc_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        **{"flush_interval_ms": 50, **dict(aggregator_settings or {})},
    )
    aggregator = Aggregator(settings)
    aggregator.start()
    llm = MockLLM().start()
    plugin_server = PluginServerProcess.for_console_script(
        "ai-chargeback-pluginserver", gevent=gevent, prefix=workdir / "kong", log_path=workdir / "pluginserver.log"
    )
    (workdir / "kong").mkdir(parents=True, exist_ok=True)
    front = None
    try:
        config = kong_config_for(settings.grpc_listen, workdir / "spool", overrides=plugin_overrides)
        front = front_for(config, {PLUGIN: plugin_server}, llm.url, serialize_hook=serialize_hook, workers=workers)
        yield Gateway(aggregator, llm, front, plugin_server)
        front.raise_failures()
    finally:
        if front is not None:
            front.stop()
        plugin_server.stop()
        llm.stop()
        aggregator.stop(grace_s=2)
