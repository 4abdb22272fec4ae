"""The mock LLM against the official SDKs, its usage arithmetic and failure knobs."""

from __future__ import annotations

import gzip
import http.client
import json

import anthropic
import openai
import pytest
from support.mock_llm import MockLLM, expected_usage

from .helpers import PROBE_PLUGIN, chat_body, probe_kong_yml, request

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is metering, in one line?"}]


def _openai(base_url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, **kwargs)


def _anthropic(base_url: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", max_retries=0, **kwargs)


def test_openai_sdk_non_streaming(mock_llm: MockLLM) -> None:
    completion = _openai(mock_llm.url + "/v1").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    sent = mock_llm.last_request()
    expected = expected_usage(sent.json)
    assert sent.path == "/v1/chat/completions" and sent.api == "openai"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == expected["prompt_tokens"]
    assert completion.usage.completion_tokens == expected["completion_tokens"]
    assert completion.usage.total_tokens == expected["prompt_tokens"] + expected["completion_tokens"]
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_openai_sdk_streaming_with_usage(mock_llm: MockLLM) -> None:
    client = _openai(mock_llm.url + "/v1", default_headers={"x-mock-reasoning-tokens": "7", "x-mock-cached-tokens": "4"})
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    expected = expected_usage(mock_llm.last_request().json, mock_llm.last_request().headers)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.prompt_tokens == expected["prompt_tokens"]
    assert usage.completion_tokens == expected["completion_tokens"] == expected["output_pieces"] + 7
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details.reasoning_tokens == 7
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) > 0


def test_openai_stream_without_include_usage_has_no_usage(mock_llm: MockLLM) -> None:
    chunks = list(_openai(mock_llm.url + "/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    raw = request(mock_llm.url, "POST", "/v1/chat/completions", body=chat_body(stream=True)).body
    assert b'"usage"' not in raw and raw.rstrip().endswith(b"data: [DONE]")


def test_anthropic_sdk_non_streaming(mock_llm: MockLLM) -> None:
    client = _anthropic(mock_llm.url, default_headers={"x-mock-cache-creation-tokens": "3", "x-mock-cached-tokens": "2"})
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=100, system="Be brief.",
                                     messages=[{"role": "user", "content": "Hello!"}])
    sent = mock_llm.last_request()
    expected = expected_usage(sent.json, sent.headers)
    assert sent.path == "/v1/messages"
    # depending on the SDK version the key travels as x-api-key or a bearer token
    assert "sk-ant-test" in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    assert message.type == "message" and message.model == "claude-haiku-4-5-20251001"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == expected["input_tokens"]
    assert message.usage.output_tokens == expected["output_tokens"]
    assert message.usage.cache_creation_input_tokens == 3
    assert message.usage.cache_read_input_tokens == 2


def test_anthropic_sdk_streaming(mock_llm: MockLLM) -> None:
    client = _anthropic(mock_llm.url, default_headers={"x-mock-output-tokens": "5"})
    with client.messages.stream(model="claude-opus-4-1", max_tokens=3,
                                messages=[{"role": "user", "content": "Count to ten"}]) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    expected = expected_usage(mock_llm.last_request().json, mock_llm.last_request().headers)
    assert events[0] == "message_start" and "message_delta" in events and events[-1] == "message_stop"
    assert final.model == "claude-opus-4-1-20250805"
    assert final.stop_reason == "max_tokens"  # 5 requested tokens, max_tokens=3
    assert final.usage.output_tokens == expected["output_tokens"] == 3
    assert final.usage.input_tokens == expected["input_tokens"]


def test_usage_is_a_pure_function_of_the_request() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 40}]}
    assert expected_usage(body) == expected_usage(json.loads(json.dumps(body)))
    longer = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 80}]}
    assert expected_usage(longer)["prompt_tokens"] == expected_usage(body)["prompt_tokens"] + 10
    assert expected_usage({"model": "claude-haiku-4-5", "messages": [], "max_tokens": 5})["output_tokens"] == 5


def test_failure_knobs(mock_llm: MockLLM) -> None:
    malformed = request(mock_llm.url, "POST", "/v1/chat/completions", body=chat_body(),
                        headers={"x-mock-behavior": "malformed"})
    assert malformed.status == 200
    with pytest.raises(ValueError):
        json.loads(malformed.body)

    gz = request(mock_llm.url, "POST", "/v1/chat/completions", body=chat_body(),
                 headers={"x-mock-behavior": "gzip,delay-ms:5"})
    assert gz.header("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(gz.body))["object"] == "chat.completion"

    failed = request(mock_llm.url, "POST", "/v1/messages", body={"model": "claude-haiku-4-5", "max_tokens": 5,
                                                                  "messages": []},
                     headers={"x-mock-behavior": "status:529"})
    assert failed.status == 529 and failed.json()["type"] == "error"
    with pytest.raises(openai.InternalServerError):
        _openai(mock_llm.url + "/v1", default_headers={"x-mock-behavior": "status:500"}).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES)

    conn = http.client.HTTPConnection("127.0.0.1", mock_llm.port, timeout=10)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps(chat_body(stream=True, stream_options={"include_usage": True})),
                 headers={"x-mock-behavior": "cut", "Content-Type": "application/json"})
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    conn.close()
    assert b"data: {" in cut.value.partial
    assert b'"choices": []' not in cut.value.partial and b"[DONE]" not in cut.value.partial

    assert [r.headers.get("x-mock-behavior") for r in mock_llm.requests] == [
        "malformed", "gzip,delay-ms:5", "status:529", "status:500", "cut"]


def test_sdks_through_the_front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm: MockLLM) -> None:
    report_dir = tmp_path / "r"
    server = plugin_server_factory(PROBE_PLUGIN)
    yml = probe_kong_yml(report_dir, key_auth=True)
    yml["services"][0]["url"] = "http://upstream.invalid"  # no base path: SDK paths map 1:1
    front = kong_front_factory(yml, {"probe": server}, {"llm": mock_llm.url})
    chunks = list(_openai(front.url + "/llm/v1", default_headers={"apikey": "alice-key"}).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == expected_usage(mock_llm.last_request().json)["total_tokens"]
    assert mock_llm.last_request().path == "/v1/chat/completions"

    message = _anthropic(front.url + "/llm", default_headers={"apikey": "alice-key"}).messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert message.usage.output_tokens == expected_usage(mock_llm.last_request().json)["output_tokens"]
    front.wait_for_logs()
    assert [ctx.log_snapshot["upstream_status"] for ctx in front.requests] == ["200", "200"]
