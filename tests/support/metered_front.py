"""The real ai-chargeback plugin server behind the Kong harness, its events caught by an EventSink.

For tests of what the plugin does under Kong (request outcomes, events, PDK
calls) without the aggregator's storage; the whole path is tests/e2e/.

    with metered_front(tmp_path, plugin_config={"usage_capture": "auto"}) as m:
        httpx.post(f"{m.url}/llm/v1/chat/completions", json=...)
        (event,) = m.events(1)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kong_harness import KongFront, MsgpackRpcClient, PluginServerProcess

from ai_chargeback_proto import pb

from .event_sink import EventSink
from .mock_llm import MockLLM

PLUGIN = "ai-chargeback"
CONSUMER_KEY = "key-payments"


@dataclass
class Metered:
    front: KongFront
    sink: EventSink
    llm: MockLLM
    server: PluginServerProcess

    @property
    def url(self) -> str:
        return self.front.url

    def runtime_stats(self) -> dict[str, Any]:
        """The plugin server's own count of events in flight, greenlets, threads and RSS (plugin.GetRuntimeStats)."""
        client = MsgpackRpcClient(self.server.socket_path, timeout=30)
        try:
            return dict(client.call("plugin.GetRuntimeStats"))
        finally:
            client.close()

    def events(self, count: int, timeout_s: float = 30.0) -> list[pb.UsageEvent]:
        """Exactly `count` events once every log phase ran (more is a failure too)."""
        assert self.front.wait_for_logs(timeout_s), "log phases still running"
        events = self.sink.wait_for(count, timeout_s)
        assert len(events) == count, f"{len(events)} events for {count} requests"
        return events


def kong_yml(sink_address: str, spool_dir: Path, *, plugin_config: Mapping[str, Any] | None = None,
             key_auth: bool = False, upstream: str = "http://upstream.invalid") -> dict[str, Any]:  # fmt: skip
    plugins: list[dict[str, Any]] = []
    if key_auth:
        plugins.append({"name": "key-auth", "config": {"key_names": ["apikey"], "hide_credentials": True}})
    config = {"aggregator_addresses": [sink_address], "spool_dir": str(spool_dir), "flush_interval_ms": 20,
              "provider": "openai", **dict(plugin_config or {})}  # fmt: skip
    plugins.append({"name": PLUGIN, "config": config})
    return {
        "_format_version": "3.0",
        "services": [{"name": "llm", "url": upstream, "tags": ["tenant:acme"],
                      "routes": [{"name": "chat", "paths": ["/llm"], "strip_path": True}], "plugins": plugins}],
        "consumers": [{"username": "checkout", "tags": ["team:payments"], "keyauth_credentials": [{"key": CONSUMER_KEY}]}],
    }  # fmt: skip


@contextmanager
def metered_front(tmp_path: Path, *, plugin_config: Mapping[str, Any] | None = None, key_auth: bool = False,
                  upstream: str | None = None, gevent: bool = True, serialize_hook: Any = None,
                  server_env: Mapping[str, str] | None = None, **front_kwargs: Any) -> Iterator[Metered]:  # fmt: skip
    """Start sink, mock LLM, plugin server and front; on exit, fail on harness failures nobody took."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))  # short: a unix socket path has ~100 bytes
    server = PluginServerProcess.for_console_script(
        "ai-chargeback-pluginserver", gevent=gevent, prefix=prefix, log_path=tmp_path / "pluginserver.log", env=server_env
    )
    # Fork the plugin server before this process runs gRPC threads: forking next to
    # live gRPC pollers can abort the child (grpc fork_posix: "skipping fork() handlers").
    server.start()
    sink = EventSink().start()
    llm = MockLLM().start()
    front = None
    try:
        config = kong_yml(sink.address, tmp_path / "spool", plugin_config=plugin_config, key_auth=key_auth)
        front = KongFront.from_kong_yml(config, {PLUGIN: server}, {"llm": upstream or llm.url},
                                        serialize_hook=serialize_hook, **front_kwargs)  # fmt: skip
        yield Metered(front, sink, llm, server)
        front.wait_for_logs(15)
        front.raise_failures()
    finally:
        if front is not None:
            front.stop()
        server.stop()
        llm.stop()
        sink.stop()
        shutil.rmtree(prefix, ignore_errors=True)
