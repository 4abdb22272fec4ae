"""The repository's kong.yml, served by the harness with the real plugin server: the production shape works.

ai-proxy adds the provider key from Kong's env vault; key-auth takes the Kong key
(`apikey`) and hides it, so a caller's own provider header never authenticates it
to Kong nor reaches the provider; each route meters in its capture mode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kong_harness import DeclarativeConfigError, KongFront, PluginServerProcess
from kong_harness.ai_proxy import AiProxy
from kong_harness.context import Headers, RequestContext
from support.event_sink import EventSink
from support.gateway import DEMO_VAULT_ENV, PLUGIN, front_for, kong_config_for
from support.mock_llm import MockLLM, expected_usage

from ai_chargeback_proto import pb

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What did payments spend on inference in November?"}]}
MESSAGES = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": [{"role": "user", "content": "Score it."}]}


@dataclass
class Served:
    front: KongFront
    llm: MockLLM
    sink: EventSink

    def post(self, path: str, body: dict[str, object], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.front.url}{path}", json=body, headers=headers, timeout=30)

    def event(self) -> pb.UsageEvent:
        self.front.wait_for_logs(30)
        count = len(self.sink.events)
        return self.sink.wait_for(max(count, 1))[-1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=prefix,
                                                    log_path=tmp_path / "pluginserver.log").start()  # fmt: skip
    sink = EventSink().start()
    llm = MockLLM().start()
    front = front_for(kong_config_for(sink.address, tmp_path / "spool"), {PLUGIN: server}, llm.url)
    try:
        yield Served(front, llm, sink)
        front.wait_for_logs(15)
        front.raise_failures()
    finally:
        front.stop()
        server.stop()
        llm.stop()
        sink.stop()


def test_openai_route_sends_the_vault_key_hides_the_kong_key_and_meters_exactly(served: Served) -> None:
    resp = served.post("/openai/v1/chat/completions", CHAT, apikey="demo-key-checkout",
                       authorization="Bearer caller-brought-this", **{"x-mock-cached-tokens": "6"})  # fmt: skip
    assert resp.status_code == 200
    upstream = served.llm.last_request()
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {DEMO_VAULT_ENV['OPENAI_API_KEY']}"
    assert "apikey" not in upstream.headers
    event = served.event()
    expected = expected_usage(CHAT, {"x-mock-cached-tokens": "6"})
    assert (event.team, event.usage_source) == ("payments", pb.USAGE_SOURCE_PROVIDER)
    assert (event.input_tokens, event.cached_input_tokens) == (expected["prompt_tokens"], 6)  # the breakdown ai-proxy lacks


def test_openai_stream_is_counted_by_ai_proxy_or_estimated_when_kong_says_zero(served: Served) -> None:
    stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    assert served.post("/openai/v1/chat/completions", stream, apikey="demo-key-checkout").status_code == 200
    counted = served.event()
    assert counted.usage_source == pb.USAGE_SOURCE_KONG_AI_PROXY and counted.streaming
    assert served.front.last_request().buffered_proxying is False  # the caller really got a stream

    assert served.post("/openai/v1/chat/completions", {**CHAT, "stream": True}, apikey="demo-key-checkout").status_code == 200
    served.sink.wait_for(2)
    estimated = served.event()
    assert estimated.usage_source == pb.USAGE_SOURCE_ESTIMATED and estimated.output_tokens > 0
    assert {"kong-ai-proxy-zero-output", "output-from-bytes"} <= set(estimated.usage_note.split(","))


def test_the_tools_route_is_metered_by_the_log_only_plugin_with_nothing_on_the_request_path(served: Served) -> None:
    resp = served.post("/tools/openai/v1/chat/completions", CHAT, apikey="demo-key-checkout")
    assert resp.status_code == 200
    assert served.llm.last_request().headers["authorization"] == f"Bearer {DEMO_VAULT_ENV['OPENAI_API_KEY']}"
    event = served.event()
    expected = expected_usage(CHAT, {})
    assert (event.service_name, event.team, event.app) == ("openai-tools", "payments", "checkout")
    assert event.usage_source == pb.USAGE_SOURCE_KONG_AI_PROXY and event.tags["gateway"] == "kong-eu-1"
    assert (event.input_tokens, event.output_tokens) == (expected["prompt_tokens"], expected["completion_tokens"])
    ctx = served.front.last_request()
    assert [c.phase for c in ctx.pdk_calls] == ["log"]  # kong.log.serialize(), in Kong's log timer
    assert ctx.rpc_calls["plugin.HandleEvent"] == 1  # the log event only: no access handler was called


def test_anthropic_route_takes_the_kong_key_from_apikey_and_sets_x_api_key_from_the_vault(served: Served) -> None:
    resp = served.post("/anthropic/v1/messages", MESSAGES, apikey="demo-key-fraud", **{"x-api-key": "caller-junk",
                       "anthropic-version": "2023-06-01"})  # fmt: skip
    assert resp.status_code == 200
    assert served.llm.last_request().headers["x-api-key"] == DEMO_VAULT_ENV["ANTHROPIC_API_KEY"]
    event = served.event()
    expected = expected_usage(MESSAGES, {})
    assert (event.team, event.app, event.usage_source) == ("risk", "fraud-scoring", pb.USAGE_SOURCE_PROVIDER)
    assert (event.input_tokens, event.output_tokens) == (expected["input_tokens"], expected["output_tokens"])


def test_a_provider_key_alone_is_not_a_kong_credential(served: Served) -> None:
    resp = served.post("/anthropic/v1/messages", MESSAGES, **{"x-api-key": "demo-key-fraud"})
    assert resp.status_code == 401 and served.llm.requests == []


def test_the_plain_proxy_route_buffers_and_injects_include_usage(served: Served) -> None:
    resp = served.post("/vllm/v1/chat/completions", {**CHAT, "stream": True}, **{"x-team": "ml-research", "x-app": "eval"})
    assert resp.status_code == 200
    assert served.llm.last_request().json["stream_options"] == {"include_usage": True}
    event = served.event()
    assert (event.team, event.app, event.usage_source) == ("ml-platform", "eval", pb.USAGE_SOURCE_PROVIDER)


def test_an_unset_vault_variable_refuses_the_config(tmp_path: Path) -> None:
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", prefix=prefix).start()
    try:
        with pytest.raises(DeclarativeConfigError, match="OPENAI_API_KEY is not set"):
            front_for(kong_config_for("127.0.0.1:1", tmp_path / "spool"), {PLUGIN: server}, "http://127.0.0.1:1",
                      vault_env={"ANTHROPIC_API_KEY": "k", "AI_CHARGEBACK_HMAC_SECRET": "s"})  # fmt: skip
    finally:
        server.stop()


# ---------------------------------------------------------------- the ai-proxy model on its own


def _ctx(body: bytes) -> RequestContext:
    return RequestContext(request_id="r", worker_id=0, method="POST", request_uri="/x", client_ip="127.0.0.1",
                          client_port=1, server_port=8000, host="kong", headers=Headers(), body=body)  # fmt: skip


def _config(**over: object) -> dict[str, object]:
    config: dict[str, object] = {"route_type": "llm/v1/chat", "auth": {}, "model": {"provider": "openai", "name": None},
                                 "logging": {"log_statistics": True}, "response_streaming": "allow"}  # fmt: skip
    config.update(over)
    return config


def test_ai_proxy_refuses_streams_when_denied_and_a_foreign_model_when_pinned() -> None:
    failures: list[str] = []
    proxy = AiProxy({}, lambda _ctx, message: failures.append(message))
    denied = proxy.access(_ctx(b'{"stream": true}'), _config(response_streaming="deny"))
    assert denied.status == 400 and b"streaming is not enabled" in denied.body
    pinned = proxy.access(_ctx(b'{"model": "gpt-4o"}'), _config(model={"provider": "openai", "name": "gpt-4o-mini"}))
    assert pinned.status == 400 and b"must be: gpt-4o-mini" in pinned.body
    ctx = _ctx(b'{"model": "gpt-4o-mini"}')
    assert proxy.access(ctx, _config()) is None and ctx.buffered_proxying  # enable-buffering for a non-stream
    assert failures == []


def test_ai_proxy_translation_the_harness_does_not_model_is_a_loud_failure() -> None:
    failures: list[str] = []
    proxy = AiProxy({}, lambda _ctx, message: failures.append(message))
    proxy.access(_ctx(b"{}"), _config(model={"provider": "anthropic", "options": {"anthropic_version": "2023-06-01"}}))
    assert failures and "does not model translating llm/v1/chat to anthropic" in failures[0]
