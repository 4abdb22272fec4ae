"""`auto` mode on a route Kong's ai-proxy serves: once learned, access costs no PDK call, and nothing is lost.

The real plugin server behind the Kong harness front with Kong's ai-proxy
(buffering non-streamed requests, analytics in serialize()). A global
ai-chargeback instance covers an ai-proxy service and a plain one, so the
"mixed scope" case is the real one: one plugin config over both kinds of route.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from kong_harness import KongFront, PluginServerProcess
from support.event_sink import EventSink
from support.mock_llm import MockLLM, expected_usage

from ai_chargeback_proto import pb

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Reconcile the ledger for November."}]}
CACHED = {"x-mock-cached-tokens": "6"}  # only the provider's own usage block carries it


@contextmanager
def gateway(tmp_path: Path) -> Iterator[tuple[KongFront, EventSink]]:
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))  # short: a unix socket path has ~100 bytes
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=prefix,
                                                    log_path=tmp_path / "pluginserver.log").start()  # fmt: skip
    sink = EventSink().start()
    llm = MockLLM().start()
    ai_proxy = {"name": "ai-proxy", "config": {"route_type": "llm/v1/chat", "model": {"provider": "openai"},
                                               "logging": {"log_statistics": True}}}  # fmt: skip
    config = {
        "_format_version": "3.0",
        "plugins": [{"name": "ai-chargeback", "config": {
            "aggregator_addresses": [sink.address], "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 20,
            "provider": "openai", "usage_capture": "auto"}}],
        "services": [
            {"name": "proxied", "url": llm.url, "plugins": [ai_proxy],
             "routes": [{"name": "proxied", "paths": ["/proxied"], "strip_path": True}]},
            {"name": "plain", "url": llm.url, "routes": [{"name": "plain", "paths": ["/plain"], "strip_path": True}]},
        ],
    }  # fmt: skip
    front = KongFront.from_kong_yml(config, {"ai-chargeback": server}, {"proxied": llm.url, "plain": llm.url})
    try:
        yield front, sink
        front.wait_for_logs(15)
        front.raise_failures()
    finally:
        front.stop()
        server.stop()
        llm.stop()
        sink.stop()


def _send(front: KongFront, sink: EventSink, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
          ) -> tuple[list[str], pb.UsageEvent]:  # fmt: skip
    """(PDK methods access called, the request's event), one request at a time (learning happens in log)."""
    count = len(sink.events)
    assert httpx.post(f"{front.url}{path}/v1/chat/completions", json=body, headers=headers or {}, timeout=30).status_code == 200
    ctx = front.last_request()
    assert front.wait_for_logs(30)
    event = sink.wait_for(count + 1)[-1]
    return [c.method for c in ctx.pdk_calls if c.phase == "access"], event


def test_auto_mode_learns_ai_proxy_and_stops_calling_kong_in_access(tmp_path: Path) -> None:
    expected = expected_usage(CHAT, CACHED)
    with gateway(tmp_path) as (front, sink):
        first, event = _send(front, sink, "/proxied", CHAT, CACHED)
        assert "kong.request.get_body" in first  # nothing learned yet: the full auto work
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER

        for _ in range(2):
            access, event = _send(front, sink, "/proxied", CHAT, CACHED)
            assert access == []  # ai-proxy buffered it: no PDK call on the request path
            # Still exact: the provider's usage block, read from what ai-proxy buffered, with its breakdown.
            assert event.usage_source == pb.USAGE_SOURCE_PROVIDER, event.usage_note
            assert (event.input_tokens, event.cached_input_tokens) == (expected["prompt_tokens"], 6)
            assert event.requested_model == "gpt-4o-mini"  # from ai-proxy's record: the body was not read

        access, streamed = _send(front, sink, "/proxied", {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
        assert access == [] and streamed.streaming
        assert streamed.usage_source == pb.USAGE_SOURCE_KONG_AI_PROXY and streamed.output_tokens > 0


def test_a_plugin_config_that_also_covers_a_route_without_ai_proxy_goes_back_to_the_full_work(tmp_path: Path) -> None:
    expected = expected_usage(CHAT, CACHED)
    with gateway(tmp_path) as (front, sink):
        _send(front, sink, "/proxied", CHAT, CACHED)  # learned: ai-proxy
        access, event = _send(front, sink, "/plain", CHAT, CACHED)
        # The one request that pays for the mixed scope: not buffered by anyone, so counted, labelled, never guessed
        # as buffered (log asked Kong first: no Lua error, no lost event).
        assert access == []
        assert event.usage_source == pb.USAGE_SOURCE_ESTIMATED and "body-not-buffered" in event.usage_note.split(",")
        assert front.last_request().pdk_calls[-1].method == "kong.nginx.get_ctx"
        for path in ("/plain", "/proxied"):  # from now on: the full auto work, exact on both routes
            access, event = _send(front, sink, path, CHAT, CACHED)
            assert "kong.service.request.enable_buffering" in access
            assert event.usage_source == pb.USAGE_SOURCE_PROVIDER and event.cached_input_tokens == 6
            assert event.input_tokens == expected["prompt_tokens"]
