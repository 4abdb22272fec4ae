"""ai-chargeback under a Kong that fails like Kong: no request harmed, none lost, no unmeasured answer free.

Each test drives the real `ai-chargeback-pluginserver` (gevent, as deployed)
through the harness front, whose PDK raises where Kong's raises
(tests/harness/test_kong_failures.py shows each behaviour on a stock plugin),
and reads the events the plugin delivered over gRPC. `metered_front` fails a
test on any harness failure nobody claimed: a Lua error, a dropped RPC, an
unknown PDK method.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from kong_harness import ai_proxy_hook
from support.metered_front import CONSUMER_KEY, metered_front
from support.mock_llm import expected_usage

from ai_chargeback_proto import pb

CHAT = "/llm/v1/chat/completions"


def chat(size: int = 0, **extra: Any) -> dict[str, Any]:
    """An OpenAI chat request whose JSON body is about `size` bytes."""
    text = "Summarise the ledger. " + "x" * max(0, size - 120)
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def post(url: str, path: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def notes(event: pb.UsageEvent) -> set[str]:
    return set(event.usage_note.split(","))


def pdk_methods(front: Any, phase: str) -> list[str]:
    return [c.method for c in front.last_request().pdk_calls if c.phase == phase]


# ------------------------------------------------------------ request bodies of any size


GET_BODY_ARGS = ["application/json", 100, 10 * 1024 * 1024]  # JSON whatever the type; no nil hole; max_body_bytes


@pytest.mark.parametrize("size", [9 * 1024, 200 * 1024, 3 * 1024 * 1024], ids=["9k", "200k", "3m"])
def test_a_body_nginx_spooled_to_disk_is_decoded_by_kong_and_metered_exactly_from_the_first_request(
        tmp_path: Path, size: int) -> None:  # fmt: skip
    with metered_front(tmp_path) as m:
        body = chat(size)
        status, _ = post(m.url, CHAT, body)
        assert status == 200
        (event,) = m.events(1)
        assert m.front.last_request().body_in_file
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER
        assert event.input_tokens == expected_usage(body)["prompt_tokens"]
        assert pdk_methods(m.front, "access") == ["kong.request.get_body", "kong.service.request.enable_buffering"]
        assert next(c.args for c in m.front.last_request().pdk_calls if c.method == "kong.request.get_body") == GET_BODY_ARGS


def test_a_small_body_costs_one_decode_and_the_buffering_switch(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        status, _ = post(m.url, CHAT, chat(100))
        assert status == 200
        (event,) = m.events(1)
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER
        assert pdk_methods(m.front, "access") == ["kong.request.get_body", "kong.service.request.enable_buffering"]
        assert len(m.front.last_request().pdk_calls) == 4  # with serialize and the answer: the ≤ 4 calls goal


def test_on_kong_3_7_a_spooled_body_is_never_read_and_never_fails(tmp_path: Path) -> None:
    with metered_front(tmp_path, kong_version="3.7.1") as m:
        for _ in range(3):
            status, _ = post(m.url, CHAT, chat(20 * 1024))
            assert status == 200
        events = m.events(3)
        assert all(e.usage_source == pb.USAGE_SOURCE_ESTIMATED for e in events)
        assert all({"body-spooled", "prompt-from-content-length"} <= notes(e) for e in events)
        assert "kong.service.request.enable_buffering" not in pdk_methods(m.front, "access")  # streaming unknown


def test_a_body_above_max_body_bytes_is_not_read_and_the_prompt_is_estimated_from_content_length(tmp_path: Path) -> None:
    with metered_front(tmp_path, plugin_config={"max_body_bytes": 16 * 1024}) as m:
        body = chat(64 * 1024)
        status, _ = post(m.url, CHAT, body)
        assert status == 200
        (event,) = m.events(1)
        assert pdk_methods(m.front, "access") == ["kong.request.get_body", "kong.log.set_serialize_value"]
        assert next(c.args for c in m.front.last_request().pdk_calls if c.method == "kong.request.get_body")[2] == 16 * 1024
        assert event.usage_source == pb.USAGE_SOURCE_ESTIMATED
        assert {"body-too-large", "prompt-from-content-length"} <= notes(event)
        exact = expected_usage(body)["prompt_tokens"]
        assert exact / 2 <= event.input_tokens <= exact * 2
        assert event.HasField("output_tokens")  # the answer's bytes give an estimate too


def test_a_chunked_body_without_content_length_is_read_too(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        body = json.dumps(chat(3000)).encode()
        host, port = m.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.putrequest("POST", CHAT)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 1000):
                part = body[i : i + 1000]
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            conn.send(b"0\r\n\r\n")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        (event,) = m.events(1)
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER
        assert event.input_tokens == expected_usage(json.loads(body))["prompt_tokens"]


UNDECODED = ["kong.request.get_body", "kong.log.set_serialize_value"]  # nil back: never buffer a maybe-stream
DECODED = ["kong.request.get_body", "kong.service.request.enable_buffering"]
ESTIMATED_NOT_JSON = (pb.USAGE_SOURCE_ESTIMATED, {"estimated", "body-not-json", "prompt-from-content-length"})


@pytest.mark.parametrize(
    ("body", "content_type", "access", "upstream_status", "usage"),
    [
        # the mock upstream, like a provider, answers 400 to what it cannot parse: never estimated, never billed
        (b"Summarise the ledger, please.", "text/plain", UNDECODED, 400, (pb.USAGE_SOURCE_NONE, {"upstream-error"})),
        (b"null", "application/json", UNDECODED, 400, (pb.USAGE_SOURCE_NONE, {"upstream-error"})),
        # cjson refuses an unpaired surrogate escape (Python's json takes it): estimated from its size, and says why
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}', "application/json",
         UNDECODED, 200, ESTIMATED_NOT_JSON),
        # deeper than cjson's 1000 levels: the same
        (b'{"model": "gpt-4o-mini", "messages": [' + b"[" * 1200 + b"]" * 1200 + b"]}", "application/json",
         UNDECODED, 200, ESTIMATED_NOT_JSON),
        # 1000 levels decode and travel (msgpack's own stack is 1024 deep): the answer is buffered and exact
        (b'{"model": "gpt-4o-mini", "messages": [' + b"[" * 998 + b"]" * 998 + b"]}", "application/json",
         DECODED, 200, (pb.USAGE_SOURCE_PROVIDER, {""})),
        # Lua strings are bytes: Kong sends invalid UTF-8 as msgpack str, which the plugin server decodes with U+FFFD
        (b'{"model": "gpt-4o-\xff", "messages": [{"role": "user", "content": "caf\xe9"}]}', "application/json",
         DECODED, 400, (pb.USAGE_SOURCE_NONE, {"no-usage", "upstream-error"})),
        # an empty Lua table travels as an empty msgpack array: still a decoded body
        (b"{}", "application/json", DECODED, 200, (pb.USAGE_SOURCE_PROVIDER, {""})),
    ],
    ids=["not-json", "null", "lone-surrogate", "too-deep", "1000-deep", "not-utf8", "empty-object"],
)
def test_a_body_kong_cannot_decode_or_decodes_oddly_harms_nothing_and_gives_one_labelled_event(
        tmp_path: Path, body: bytes, content_type: str, access: list[str], upstream_status: int,
        usage: tuple[int, set[str]]) -> None:  # fmt: skip
    with metered_front(tmp_path) as m:
        status, _ = post(m.url, CHAT, body, headers={"Content-Type": content_type})
        assert status == upstream_status  # Kong passed it on as the client sent it
        (event,) = m.events(1)
        assert pdk_methods(m.front, "access") == access
        assert event.usage_source == usage[0]
        assert usage[1] <= notes(event)
        assert m.server.running


def test_buffered_mode_reads_the_raw_bytes_to_rewrite_them(tmp_path: Path) -> None:
    with metered_front(tmp_path, plugin_config={"usage_capture": "buffered"}) as m:
        status, _ = post(m.url, CHAT, chat(100))
        assert status == 200
        m.events(1)
        assert pdk_methods(m.front, "access")[:2] == ["kong.request.get_header", "kong.request.get_raw_body"]


def test_in_buffered_mode_before_kong_shows_its_version_a_spooled_body_is_not_read(tmp_path: Path) -> None:
    with metered_front(tmp_path, plugin_config={"usage_capture": "buffered"}) as m:
        status, _ = post(m.url, CHAT, chat(50 * 1024))
        assert status == 200
        (event,) = m.events(1)
        assert "kong.request.get_raw_body" not in pdk_methods(m.front, "access")  # it could raise: never asked
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER  # the buffered answer still counts it exactly


def test_when_kong_holds_bodies_larger_than_max_body_bytes_in_memory_access_checks_the_length_first(tmp_path: Path) -> None:
    config = {"max_body_bytes": 16 * 1024, "client_body_buffer_size": 64 * 1024}
    with metered_front(tmp_path, plugin_config=config, client_body_buffer_size=64 * 1024) as m:
        status, _ = post(m.url, CHAT, chat(100))
        assert status == 200
        m.events(1)
        assert pdk_methods(m.front, "access") == [
            "kong.request.get_header", "kong.request.get_raw_body", "kong.service.request.enable_buffering"]  # fmt: skip
        body = chat(32 * 1024)  # in Kong's memory, over max_body_bytes: get_body would bring it all
        status, _ = post(m.url, CHAT, body)
        assert status == 200
        _, event = m.events(2)
        assert not m.front.last_request().body_in_file
        assert pdk_methods(m.front, "access") == ["kong.request.get_header", "kong.log.set_serialize_value"]
        assert {"body-too-large", "prompt-from-content-length"} <= notes(event)


# ------------------------------------------------------------ every request that reaches log gives one event


def test_an_unreachable_upstream_gives_one_event_with_status_tries_and_the_reason(tmp_path: Path) -> None:
    with metered_front(tmp_path, upstream=closed_port_url()) as m:
        status, _ = post(m.url, CHAT, chat(100))
        assert status == 502
        (event,) = m.events(1)
        assert (event.http_status, event.upstream_tries) == (502, 1)
        assert event.usage_source == pb.USAGE_SOURCE_NONE
        assert {"upstream-failed", "kong-error-page"} <= notes(event)
        assert event.policy_outcome == pb.POLICY_OUTCOME_UPSTREAM_ERROR
        assert "kong.service.response.get_raw_body" not in pdk_methods(m.front, "log")


def test_a_truncated_buffered_answer_gives_one_event(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        status, _ = post(m.url, CHAT, chat(100), {"x-mock-behavior": "cut"})
        assert status == 502
        (event,) = m.events(1)
        assert event.http_status == 502 and event.usage_source == pb.USAGE_SOURCE_NONE
        assert "kong-error-page" in notes(event)


def test_a_websocket_upgrade_turns_buffering_off_and_still_gives_one_event(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        status, _ = post(m.url, CHAT, chat(100), {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert status == 200
        (event,) = m.events(1)
        assert "kong.service.response.get_raw_body" not in pdk_methods(m.front, "log")
        assert event.usage_source == pb.USAGE_SOURCE_ESTIMATED  # from the answer's bytes, labelled


def test_on_kong_3_7_the_log_phase_asks_for_the_buffering_flag_before_reading_the_body(tmp_path: Path) -> None:
    with metered_front(tmp_path, kong_version="3.7.1", upstream=closed_port_url()) as m:
        status, _ = post(m.url, CHAT, chat(100))
        assert status == 502
        (event,) = m.events(1)
        assert pdk_methods(m.front, "log") == ["kong.log.serialize", "kong.nginx.get_ctx"]
        assert event.http_status == 502 and event.usage_source == pb.USAGE_SOURCE_NONE
    with metered_front(tmp_path / "ok", kong_version="3.7.1") as m:
        post(m.url, CHAT, chat(100))
        (event,) = m.events(1)
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER


def test_a_request_key_auth_refused_gives_one_event_without_usage(tmp_path: Path) -> None:
    with metered_front(tmp_path, key_auth=True) as m:
        status, _ = post(m.url, CHAT, chat(100), {"apikey": "wrong"})
        assert status == 401
        status, _ = post(m.url, CHAT, chat(100), {"apikey": CONSUMER_KEY})
        assert status == 200
        refused, allowed = m.events(2)
        assert refused.policy_outcome == pb.POLICY_OUTCOME_REJECTED_AUTH
        assert refused.usage_source == pb.USAGE_SOURCE_NONE and "not-proxied" in notes(refused)
        assert refused.upstream_tries == 0 and not refused.HasField("latency_upstream_ms")
        assert allowed.team == "payments" and allowed.usage_source == pb.USAGE_SOURCE_PROVIDER


def test_an_answer_of_no_llm_api_is_never_estimated(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        host, port = m.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/llm/v1/models")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        conn.close()
        (event,) = m.events(1)
        assert event.usage_source == pb.USAGE_SOURCE_NONE and "unknown-api" in notes(event)
        assert not event.HasField("output_tokens")


# ------------------------------------------------------------ bytes that are not UTF-8


def test_a_latin1_header_is_kept_as_a_visible_replacement_character(tmp_path: Path) -> None:
    config = {"identity_sources": ["headers"]}
    with metered_front(tmp_path, plugin_config=config) as m:
        status, _ = post(m.url, CHAT, chat(100), {"x-team": "caf\xe9", "traceparent": "t\xff"})  # sent as Latin-1 bytes
        assert status == 200
        (event,) = m.events(1)
        assert event.team == "caf\ufffd" and event.trace_id == "t\ufffd"
        assert event.usage_source == pb.USAGE_SOURCE_PROVIDER


# ------------------------------------------------------------ never a silent $0


def test_a_stream_in_auto_mode_gets_a_labelled_output_estimate_from_kongs_byte_count(tmp_path: Path) -> None:
    with metered_front(tmp_path) as m:
        body = chat(100, stream=True)
        status, _ = post(m.url, CHAT, body, {"x-mock-output-tokens": "200"})
        assert status == 200
        (event,) = m.events(1)
        assert event.usage_source == pb.USAGE_SOURCE_ESTIMATED and event.streaming
        assert {"estimated", "output-from-bytes"} <= notes(event)
        assert any(n.startswith("err<=") for n in notes(event))
        assert 100 <= event.output_tokens <= 400  # 200 real tokens, within the documented bound


def test_ai_proxy_zero_output_for_a_200_answer_with_a_body_is_suspect_labelled_and_estimated(tmp_path: Path) -> None:
    hook = ai_proxy_hook(kong_bugs=("14535",))
    with metered_front(tmp_path, plugin_config={"usage_capture": "ai_proxy"}, serialize_hook=hook) as m:
        status, _ = post(m.url, CHAT, chat(100, stream=True, stream_options={"include_usage": True}),
                         {"x-mock-output-tokens": "150"})  # fmt: skip
        assert status == 200
        (event,) = m.events(1)
        expected = expected_usage(chat(100, stream=True))
        assert event.input_tokens == expected["prompt_tokens"]  # Kong's prompt count is kept
        assert event.usage_source == pb.USAGE_SOURCE_ESTIMATED
        assert {"kong-ai-proxy-zero-output", "output-from-bytes"} <= notes(event)
        assert 75 <= event.output_tokens <= 300
