"""ai-chargeback-log: nothing of ours on the request path of an ai-proxy route, and the same event.

The real `ai-chargeback-pluginserver` serves both plugins on one socket; the Kong
harness front (key-auth, ai-proxy and its analytics, both plugins) plays Kong. One
front carries two services, identical but for the metering plugin: `main` with
`ai-chargeback` in `usage_capture: ai_proxy`, `logonly` with `ai-chargeback-log`.
Every RPC the harness makes into the plugin server is recorded with the request's
state at that moment, so "no RPC before the upstream answers" is observed, not assumed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kong_harness import ConfigSchema, ConfigValidationError, KongFront, PluginServerProcess, SharedPluginServer
from kong_harness.bridge import ExternalPlugin
from kong_harness.context import RequestContext
from kong_harness.phases import Phase
from support.event_sink import EventSink
from support.mock_llm import MockLLM

from ai_chargeback_plugin.schema import LOG_PLUGIN_NAME, PLUGIN_NAME, REQUEST_PATH_FIELDS
from ai_chargeback_proto import pb

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Reconcile the ledger for November."}]}
KEY = "key-payments"
# Differ between two requests through two routes, whatever the plugin: cleared before comparing.
VOLATILE = ("event_id", "kong_request_id", "started_at_unix_ms", "observed_at_unix_ms", "route_id", "route_name",
            "service_id", "service_name", *(f.name for f in pb.UsageEvent.DESCRIPTOR.fields if f.name.startswith("latency_")))  # fmt: skip


@dataclass(frozen=True)
class Rpc:
    plugin: str
    method: str
    phase: str
    before_upstream_answered: bool
    ctx_id: int


@pytest.fixture
def rpcs(monkeypatch: pytest.MonkeyPatch) -> list[Rpc]:
    """Every RPC into a plugin server, with where the request stood (the harness's own call, observed)."""
    seen: list[Rpc] = []
    original = ExternalPlugin._call

    def recording(self: ExternalPlugin, ctx: RequestContext | None, method: str, arg: Any) -> Any:
        if ctx is not None:
            phase = ctx.phase.name if isinstance(ctx.phase, Phase) else str(ctx.phase)
            seen.append(Rpc(self.name, method, phase or "", ctx.response_start_ms is None, id(ctx)))
        return original(self, ctx, method, arg)

    monkeypatch.setattr(ExternalPlugin, "_call", recording)
    return seen


def _service(name: str, upstream: str, plugin: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name, "url": upstream, "tags": ["tenant:acme"],
        "routes": [{"name": f"{name}-chat", "paths": [f"/{name}"], "strip_path": True, "tags": ["workload:ledger"]}],
        "plugins": [
            {"name": "key-auth", "config": {"key_names": ["apikey"], "hide_credentials": True}},
            {"name": "ai-proxy", "config": {"route_type": "llm/v1/chat", "model": {"provider": "openai"},
                                            "logging": {"log_statistics": True}}},
            {"name": plugin, "config": config},
        ],
    }  # fmt: skip


@contextmanager
def two_routes(tmp_path: Path, **front_kwargs: Any) -> Iterator[tuple[KongFront, EventSink]]:
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))  # short: a unix socket path has ~100 bytes
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=prefix,
                                                    log_path=tmp_path / "pluginserver.log").start()  # fmt: skip
    sink = EventSink().start()
    llm = MockLLM().start()
    common = {
        "aggregator_addresses": [sink.address], "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 20,
        "provider": "openai", "identity_sources": ["consumer", "route_tags", "service_tags", "headers"],
        "header_app": "x-app", "credential_hmac_secret": "test-only", "static_tags": {"gateway": "test"},
    }  # fmt: skip
    config = {
        "_format_version": "3.0",
        "services": [_service("main", llm.url, PLUGIN_NAME, {**common, "usage_capture": "ai_proxy"}),
                     _service("logonly", llm.url, LOG_PLUGIN_NAME, common)],
        "consumers": [{"username": "checkout", "custom_id": "spiffe://acme/checkout", "tags": ["team:payments"],
                       "keyauth_credentials": [{"key": KEY}]}],
    }  # fmt: skip
    servers = {PLUGIN_NAME: server, LOG_PLUGIN_NAME: SharedPluginServer(server, ["--plugin", LOG_PLUGIN_NAME])}
    front = KongFront.from_kong_yml(config, servers, {"main": llm.url, "logonly": llm.url}, **front_kwargs)
    try:
        yield front, sink
        front.wait_for_logs(15)
        front.raise_failures()
    finally:
        front.stop()
        server.stop()
        llm.stop()
        sink.stop()


def _comparable(event: pb.UsageEvent) -> pb.UsageEvent:
    copy = pb.UsageEvent()
    copy.CopyFrom(event)
    for name in VOLATILE:
        copy.ClearField(name)
    return copy


def test_the_log_only_plugin_declares_the_log_phase_only_and_the_main_schema_minus_request_path_fields(tmp_path: Path) -> None:
    main = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", prefix=tmp_path)
    log_only = SharedPluginServer(main, ["--plugin", LOG_PLUGIN_NAME])
    assert (main.info.name, log_only.info.name) == (PLUGIN_NAME, LOG_PLUGIN_NAME)
    assert log_only.info.phases == ("log",)  # Kong builds no access handler for it (plugin.lua build_phases)
    assert set(main.info.phases) == {"access", "log"}
    assert log_only.info.priority == main.info.priority
    main_fields = [next(iter(f.items())) for f in main.info.config_schema["fields"]]
    log_fields = [next(iter(f.items())) for f in log_only.info.config_schema["fields"]]
    assert log_fields == [(name, field) for name, field in main_fields if name not in REQUEST_PATH_FIELDS]
    # Budget enforcement needs access: Kong refuses it on the log-only plugin instead of ignoring it.
    schema = ConfigSchema(log_only.info.schema)
    for option in ({"budget_enforcement": True}, {"usage_capture": "auto"}):
        with pytest.raises(ConfigValidationError, match="unknown field"):
            schema.validate(option)
    assert schema.validate({"aggregator_addresses": ["127.0.0.1:1"]})["default_tenant"] == "default"


def test_no_rpc_before_the_upstream_answers_and_the_same_event_as_the_main_plugin(tmp_path: Path, rpcs: list[Rpc]) -> None:
    headers = {"apikey": KEY, "x-app": "claimed-by-header"}  # a trusted header naming another app: a conflict
    sent = [("non-streaming", CHAT, headers, 200), ("streaming", {**CHAT, "stream": True}, headers, 200),
            ("no-key", CHAT, {}, 401)]  # fmt: skip
    with two_routes(tmp_path, ai_proxy_bugs=("14535",)) as (front, sink):  # 14535: Kong says 0 output for streams
        contexts: dict[tuple[str, str], int] = {}
        with httpx.Client(base_url=front.url, timeout=30) as client:
            for route in ("main", "logonly"):
                for label, body, request_headers, status in sent:
                    assert client.post(f"/{route}/v1/chat/completions", json=body, headers=request_headers).status_code == status
                    contexts[(route, label)] = id(front.last_request())
        assert front.wait_for_logs(30)
        events = sink.wait_for(2 * len(sent))
    assert len(events) == 2 * len(sent)  # one event per log phase, none lost, none doubled

    for (route, label), ctx_id in contexts.items():
        calls = [r for r in rpcs if r.ctx_id == ctx_id]
        proxied = label != "no-key"  # key-auth answers that one: no upstream, Kong's log phase after its 401
        early = [r for r in calls if r.phase != "log" or (proxied and r.before_upstream_answered)]
        if route == "logonly":
            assert calls, f"{label}: the log-only plugin never ran"
            assert early == [], f"{label}: RPCs on the request path: {early}"
        elif proxied:  # the main plugin's access handler: the round trip this design removes
            assert any(r.method == "plugin.HandleEvent" and r.phase == "access" for r in early), early

    by_route: dict[str, dict[str, pb.UsageEvent]] = {"main-chat": {}, "logonly-chat": {}}
    for event in events:
        label = "no-key" if event.http_status == 401 else "streaming" if event.streaming else "non-streaming"
        by_route[event.route_name][label] = event
    for label, *_ in sent:
        main, log_only = by_route["main-chat"][label], by_route["logonly-chat"][label]
        assert _comparable(log_only) == _comparable(main), f"{label}:\nmain: {main}\nlog-only: {log_only}"
    # What that equality covers, spelled out once.
    ok = by_route["logonly-chat"]["non-streaming"]
    assert (ok.tenant, ok.team, ok.app, ok.workload) == ("acme", "payments", "checkout", "spiffe://acme/checkout")
    assert ok.identity_conflicts and ok.credential_fingerprint and ok.tags["gateway"] == "test"
    assert ok.usage_source == pb.USAGE_SOURCE_KONG_AI_PROXY and ok.input_tokens > 0 and ok.output_tokens > 0
    assert ok.policy_outcome == pb.POLICY_OUTCOME_ALLOWED
    streamed = by_route["logonly-chat"]["streaming"]
    assert "kong-ai-proxy-zero-output" in streamed.usage_note and streamed.output_tokens > 0
    refused = by_route["logonly-chat"]["no-key"]
    assert refused.policy_outcome == pb.POLICY_OUTCOME_REJECTED_AUTH and refused.team == "unattributed"
