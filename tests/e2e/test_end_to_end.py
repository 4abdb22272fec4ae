"""The whole metering path with real clients, the real plugin server and a real store.

openai / anthropic SDK -> Kong harness front (kong.yml: routes, key-auth consumers,
plugin config) -> real ai-chargeback plugin server -> mock LLM upstream; then the
plugin's sender -> real gRPC -> aggregator -> embedded ClickHouse, checked by SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from support.gateway import Gateway, running_gateway
from support.mock_llm import expected_usage


@pytest.fixture(params=["gevent", "threads"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(tmp_path, gevent=request.param == "gevent") as gw:
        yield gw


def openai_client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key="sk-not-used-by-the-mock",
                         default_headers={"apikey": key}, max_retries=0)  # fmt: skip


def rows(gw: Gateway, where: str, columns: str) -> list[tuple[object, ...]]:
    return gw.query(f"SELECT {columns} FROM chargeback.usage_events FINAL WHERE {where} ORDER BY started_at")


def test_openai_sdk_request_is_metered_with_identity_and_exact_tokens(gateway: Gateway) -> None:
    client = openai_client(gateway, "demo-key-checkout")
    messages = [{"role": "user", "content": "Summarize the quarterly ledger in three bullet points."}]
    headers = {"x-mock-cached-tokens": "12", "x-mock-reasoning-tokens": "7"}
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers=headers)
    expected = expected_usage({"model": "gpt-4o-mini", "messages": messages}, headers)
    assert answer.usage is not None and answer.usage.prompt_tokens == expected["prompt_tokens"]

    gateway.wait_for_events(1)
    (row,) = rows(gateway, "1", "tenant, tenant_source, team, team_source, app, workload, consumer_username, "
                  "provider, requested_model, served_model, input_tokens, cached_input_tokens, output_tokens, "
                  "reasoning_tokens, usage_source, streaming, http_status, policy_outcome, route_name, service_name, "
                  "length(credential_fingerprint), upstream_tries, tags['gateway']")  # fmt: skip
    assert row == (
        "acme", "consumer", "payments", "consumer", "checkout", "spiffe://acme/payments/checkout", "checkout-service",
        # requested_model: from ai-proxy's record (the body's facts do not travel to log for a buffered answer)
        "openai", "gpt-4o-mini", expected["model"], expected["prompt_tokens"], 12, expected["completion_tokens"], 7,
        "provider", False, 200, "allowed", "openai-chat", "openai", 32, 1, "kong-eu-1",
    )  # fmt: skip


def test_anthropic_sdk_request_is_metered_with_cache_reads_and_writes(gateway: Gateway) -> None:
    # This SDK version authenticates with "Authorization: Bearer"; Kong's key-auth reads the key header.
    client = anthropic.Anthropic(base_url=f"{gateway.url}/anthropic", api_key="sk-ant-not-used-by-the-mock",
                                 default_headers={"apikey": "demo-key-fraud"}, max_retries=0)  # fmt: skip
    body = {"model": "claude-3-5-sonnet-latest", "max_tokens": 200, "messages": [{"role": "user", "content": "Score this card transaction for fraud risk given the merchant history and the cardholder profile."}]}
    headers = {"x-mock-cached-tokens": "8", "x-mock-cache-creation-tokens": "5"}
    message = client.messages.create(**body, extra_headers=headers)  # type: ignore[arg-type]
    expected = expected_usage(body, headers)
    assert message.usage.input_tokens == expected["input_tokens"]

    gateway.wait_for_events(1)
    (row,) = rows(gateway, "1", "team, app, provider, served_model, input_tokens, cached_input_tokens, "
                  "cache_write_input_tokens, output_tokens, usage_source")  # fmt: skip
    total_input = expected["input_tokens"] + expected["cache_read_input_tokens"] + expected["cache_creation_input_tokens"]
    assert expected["cache_read_input_tokens"] > 0 and expected["cache_creation_input_tokens"] > 0
    assert row == ("risk", "fraud-scoring", "anthropic", expected["model"], total_input,
                   expected["cache_read_input_tokens"], expected["cache_creation_input_tokens"],
                   expected["output_tokens"], "provider")  # fmt: skip


def test_spoofed_team_header_from_an_authenticated_consumer_is_ignored_and_recorded(gateway: Gateway) -> None:
    client = openai_client(gateway, "demo-key-support")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"x-team": "payments", "x-tenant": "acme"})  # fmt: skip
    gateway.wait_for_events(1)
    (row,) = rows(gateway, "1", "tenant, team, team_source, identity_conflicts")
    assert row[:3] == ("globex", "support", "consumer")
    assert sorted(row[3]) == ["team: header=payments resolved=support", "tenant: header=acme resolved=globex"]


def test_malformed_upstream_body_still_completes_and_is_recorded_with_usage_source_none(gateway: Gateway) -> None:
    response = httpx.post(f"{gateway.url}/openai/v1/chat/completions", headers={"apikey": "demo-key-checkout",
                          "x-mock-behavior": "malformed"}, json={"model": "gpt-4o-mini", "messages": []}, timeout=30)  # fmt: skip
    assert response.status_code == 200  # the client gets exactly what the upstream sent
    gateway.wait_for_events(1)
    (row,) = rows(gateway, "1", "usage_source, usage_note, input_tokens, usage_reported_mask, team")
    assert row[0] == "none" and row[1] and row[2] == 0 and row[3] == 0 and row[4] == "payments"


def test_unauthenticated_request_is_refused_by_key_auth_and_unattributed_usage_is_kept(gateway: Gateway) -> None:
    refused = httpx.post(f"{gateway.url}/openai/v1/chat/completions", json={"model": "gpt-4o-mini"}, timeout=30)
    assert refused.status_code == 401
    client = openai_client(gateway, "demo-key-legacy")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "nightly batch"}])
    gateway.wait_for_events(2)  # Kong runs the log phase for the refused request too
    found = rows(gateway, "consumer_username = 'legacy-batch'", "team, team_source, unattributed_reason, tenant")
    assert found == [("unattributed", "none", "no-team-tag", "acme")]
    refused_rows = rows(gateway, "http_status = 401", "policy_outcome, usage_source, usage_note, unattributed_reason, input_tokens")
    assert refused_rows == [("rejected_auth", "none", "not-proxied", "no-authenticated-consumer", 0)]
