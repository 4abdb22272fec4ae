"""A real Kong, built from deploy/kong/Dockerfile, metering requests into a real ClickHouse server.

client -> Kong 3.x (key-auth, Kong's own ai-proxy with the provider key from its
env vault, ai-chargeback via its kong-pdk plugin server) -> mock LLM container;
the plugin's sender -> aggregator container (gRPC) -> ClickHouse server
container. Kong loads deploy/kong/kong.compose.yml, the same generated config
`make up` uses (kong.yml's production shape), so this also proves the compose
wiring and what the harness models of Kong: a spooled request body, an
unreachable upstream, a streamed answer.
"""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from support.mock_llm import expected_usage

from ai_chargeback_aggregator.store.clickhouse import Store

from . import stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SOCKET = "/usr/local/kong/ai-chargeback.sock"  # KONG_PLUGINSERVER_AI_CHARGEBACK_SOCKET in the image
CONFIG_IN_CONTAINER = "/etc/kong/kong.yml"


@dataclass
class Stack:
    kong: Any
    aggregator: Any
    clickhouse: Any
    mock_llm: Any

    @property
    def proxy(self) -> str:
        return f"http://{self.kong.get_container_host_ip()}:{self.kong.get_exposed_port(8000)}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.aggregator.get_container_host_ip()}:{self.aggregator.get_exposed_port(8080)}/metrics"

    def store(self) -> Store:
        return Store(stack.dsn(self.clickhouse), database="chargeback")

    def containers(self) -> tuple[Any, ...]:
        return (self.kong, self.aggregator, self.clickhouse, self.mock_llm)


@pytest.fixture(scope="module")
def images(docker_daemon: None) -> dict[str, str]:
    return {name: stack.build_image(name) for name in ("kong", "aggregator", "mock-llm")}


@pytest.fixture(scope="module")
def running(images: dict[str, str]) -> Iterator[Stack]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    with Network() as network:
        clickhouse = stack.clickhouse(network=network, alias="clickhouse")
        aggregator = (
            DockerContainer(images["aggregator"])
            .with_env("CHARGEBACK_STORE_DSN", f"http://{stack.CH_USER}:{stack.CH_PASSWORD}@clickhouse:8123")
            .with_env("CHARGEBACK_FLUSH_INTERVAL_MS", "100")
            .with_exposed_ports(8080)
            .with_network(network).with_network_aliases("aggregator")
            .waiting_for(HttpWaitStrategy(8080, "/readyz").for_status_code(200).with_startup_timeout(120))
        )  # fmt: skip
        mock_llm = (
            DockerContainer(images["mock-llm"]).with_network(network).with_network_aliases("mock-llm")
            .with_exposed_ports(8080)
            .waiting_for(HttpWaitStrategy(8080, "/v1/models").for_status_code(200).with_startup_timeout(60))
        )  # fmt: skip
        kong = (
            DockerContainer(images["kong"])
            .with_env("KONG_DATABASE", "off")
            .with_env("KONG_DECLARATIVE_CONFIG", CONFIG_IN_CONTAINER)
            .with_env("KONG_PROXY_LISTEN", "0.0.0.0:8000")
            .with_env("KONG_ADMIN_LISTEN", "0.0.0.0:8001")
            .with_env("KONG_PROXY_ERROR_LOG", "/dev/stderr")
            .with_env("KONG_LOG_LEVEL", "info")
            .with_env("OPENAI_API_KEY", "sk-test-openai")  # Kong's env vault: kong.yml's {vault://env/...}
            .with_env("ANTHROPIC_API_KEY", "sk-ant-test")
            .with_env("AI_CHARGEBACK_HMAC_SECRET", "test-hmac-secret")
            .with_copy_into_container(stack.ROOT / "deploy/kong/kong.compose.yml", CONFIG_IN_CONTAINER)
            .with_exposed_ports(8000, 8001)
            .with_network(network).with_network_aliases("kong")
            .waiting_for(HttpWaitStrategy(8001, "/status").for_status_code(200).with_startup_timeout(120))
        )  # fmt: skip
        started: list[Any] = []
        try:
            for container in (clickhouse, aggregator, mock_llm, kong):
                with stack.logs_on_failure(*started, container):
                    container.start()
                started.append(container)
            with stack.logs_on_failure(kong):
                # Kong spawns the plugin server from worker 0 after start: wait for its socket.
                stack.wait_until(lambda: kong.exec(["test", "-S", SOCKET]).exit_code == 0, timeout_s=60,
                                 what=f"the plugin server socket {SOCKET}")  # fmt: skip
            yield Stack(kong, aggregator, clickhouse, mock_llm)
        finally:
            for container in reversed(started):
                container.stop()


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def stored(running: Stack, trace_id: str, columns: str) -> list[tuple[Any, ...]]:
    store = running.store()
    try:
        return store.query(
            f"SELECT {columns} FROM chargeback.usage_events FINAL WHERE trace_id = {{t:String}} AND http_status = 200",
            {"t": trace_id},
        )[1]
    finally:
        store.close()


def test_openai_request_through_kong_lands_in_clickhouse_with_identity_and_exact_tokens(running: Stack) -> None:
    trace_id, header = traceparent()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarize the quarterly ledger."}]}
    headers = {"apikey": "demo-key-checkout", "traceparent": header, "x-mock-cached-tokens": "4"}
    with stack.logs_on_failure(*running.containers()):
        answer = httpx.post(f"{running.proxy}/openai/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        expected = expected_usage(body, headers)
        assert answer.json()["usage"]["prompt_tokens"] == expected["prompt_tokens"]

        rows = stack.wait_until(
            lambda: stored(running, trace_id, "tenant, team, app, consumer_username, provider, served_model, input_tokens, "
                           "cached_input_tokens, output_tokens, usage_source, route_name, tags['gateway']"),
            timeout_s=60, what="the event in ClickHouse",
        )  # fmt: skip
        assert rows == [(
            "acme", "payments", "checkout", "checkout-service", "openai", expected["model"], expected["prompt_tokens"],
            4, expected["completion_tokens"], "provider", "openai-chat", "kong-eu-1",
        )]  # fmt: skip


def test_anthropic_request_is_attributed_to_its_kong_consumer_not_its_provider_header(running: Stack) -> None:
    trace_id, header = traceparent()
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": [{"role": "user", "content": "Score it."}]}
    # The Kong key travels as apikey; x-api-key is the provider's header, which ai-proxy sets from the vault.
    headers = {"apikey": "demo-key-fraud", "x-api-key": "caller-junk", "anthropic-version": "2023-06-01", "traceparent": header}
    with stack.logs_on_failure(*running.containers()):
        answer = httpx.post(f"{running.proxy}/anthropic/v1/messages", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        expected = expected_usage(body, headers)
        rows = stack.wait_until(lambda: stored(running, trace_id, "team, app, provider, input_tokens, output_tokens"),
                                timeout_s=60, what="the event in ClickHouse")  # fmt: skip
        assert rows == [("risk", "fraud-scoring", "anthropic", expected["input_tokens"], expected["output_tokens"])]


def test_a_body_larger_than_client_body_buffer_size_is_proxied_and_metered(running: Stack) -> None:
    trace_id, header = traceparent()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ledger line. " * 4000}]}  # ~52 kB: spooled to disk
    headers = {"apikey": "demo-key-checkout", "traceparent": header}
    with stack.logs_on_failure(*running.containers()):
        answer = httpx.post(f"{running.proxy}/openai/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        rows = stack.wait_until(lambda: stored(running, trace_id, "usage_source, input_tokens"), timeout_s=60,
                                what="the event in ClickHouse")  # fmt: skip
        ((source, input_tokens),) = rows
        assert source in ("provider", "estimated") and input_tokens > 0  # exact once Kong showed it reads spooled bodies


def test_a_stream_is_counted_by_ai_proxy_or_a_labelled_estimate_never_free(running: Stack) -> None:
    trace_id, header = traceparent()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Stream a haiku."}]}
    headers = {"apikey": "demo-key-checkout", "traceparent": header}
    with stack.logs_on_failure(*running.containers()):
        with httpx.stream("POST", f"{running.proxy}/openai/v1/chat/completions", json=body, headers=headers, timeout=30) as answer:
            assert answer.status_code == 200
            assert b"data:" in b"".join(answer.iter_raw())
        rows = stack.wait_until(lambda: stored(running, trace_id, "usage_source, output_tokens, usage_note"), timeout_s=60,
                                what="the event in ClickHouse")  # fmt: skip
        ((source, output_tokens, note),) = rows
        assert output_tokens > 0, note
        assert source == "kong-ai-proxy" or (source == "estimated" and "output-from-bytes" in note.split(",")), note


def test_key_auth_refuses_a_wrong_key_before_the_upstream(running: Stack) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{running.proxy}/openai/v1/chat/completions", json=body, headers={"apikey": "wrong"}, timeout=30)
    assert answer.status_code == 401


def test_aggregator_metrics_show_the_gateway_sender(running: Stack) -> None:
    with stack.logs_on_failure(*running.containers()):
        def scrape() -> str:
            text = urllib.request.urlopen(running.metrics_url, timeout=5).read().decode()
            return text if 'chargeback_sender_events{counter="sent"' in text else ""

        text = stack.wait_until(scrape, timeout_s=60, what="a sender report from Kong's plugin")
        stored_total = next(line for line in text.splitlines() if line.startswith("chargeback_events_stored_total"))
        assert float(stored_total.split()[-1]) >= 1
