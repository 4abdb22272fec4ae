"""The harness fails the way Kong fails: every point of "How Kong fails", on a real kong-pdk server.

Each test drives the scriptable probe plugin (a stock kong-pdk dedicated server)
through the front and checks the outcome Kong's source implies. The plugin-side
consequences (what ai-chargeback must avoid) are tested in tests/plugin/test_under_kong.py.
"""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import pytest
from kong_harness import KongFront, ai_proxy_serialize_values
from kong_harness.context import Headers, RequestContext
from kong_harness.pdk import FIX_RAW_NIL

from .helpers import PROBE_PLUGIN, chat_body, probe_headers, probe_kong_yml, read_report, request

BIG = 9 * 1024  # above Kong's default client_body_buffer_size (8k): nginx spools it to a file


def _front(tmp_path: Path, plugin_server_factory, kong_front_factory, upstream: str, **kwargs: Any) -> tuple[KongFront, Path]:
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN, gevent=True, env={"PROBE_PHASES": "access,log"})
    yml = kwargs.pop("kong_yml", None) or probe_kong_yml(report_dir)
    return kong_front_factory(yml, {"probe": server}, {"llm": upstream}, **kwargs), report_dir


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def _big_body() -> dict[str, Any]:
    return chat_body("x" * BIG)


def _report_exists(report_dir: Path, probe_id: str, phase: str) -> bool:
    return (report_dir / f"{probe_id}.{phase}.json").exists()


# ------------------------------------------------------------ a Lua error inside a PDK call


def test_a_lua_error_in_access_is_an_http_500_and_the_handler_is_never_answered(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    # kong.service.response.* is not callable in access: check_phase raises error()
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers=probe_headers("acc", access=[["kong.service.response.get_status", []]]))  # fmt: skip
    assert resp.status == 500
    assert resp.json()["message"] == "An unexpected error occurred"
    assert mock_llm.requests == []  # never proxied
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("kong.service.response.get_status" in f and "cannot be called in access phase" in f for f in failures)
    assert not _report_exists(report_dir, "acc", "access")  # the probe still waits for its Step


def test_a_lua_error_in_log_abandons_the_event(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    # ngx.req is gone in the log timer: "no request found"
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers=probe_headers("lg", log=[["kong.request.get_method", []], ["kong.log.serialize", []]]))  # fmt: skip
    assert resp.status == 200  # the client has its answer long before
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("kong.request.get_method" in f and "no request found" in f for f in failures)
    assert not _report_exists(report_dir, "lg", "log")


# ------------------------------------------------------------ request bodies nginx spooled to disk


@pytest.mark.parametrize(
    ("args", "status"),
    [
        pytest.param([], 500, id="no-argument:nil"),
        pytest.param([-1], 500, id="negative:nil"),
        pytest.param([BIG // 2], 500, id="file-over-the-limit:nil"),
        pytest.param([0], 200, id="zero:read-the-file"),
        pytest.param([BIG * 4], 200, id="limit-above-size:read-the-file"),
    ],
)
def test_get_raw_body_of_a_spooled_body_is_nil_unless_allowed_to_read_the_file_and_nil_cannot_be_packed(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm, args: list[int], status: int
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    body = _big_body()
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=body,
                   headers=probe_headers("rb", access=[["kong.request.get_raw_body", args]]))  # fmt: skip
    assert resp.status == status
    front.wait_for_logs()
    failures = front.take_failures()
    if status == 500:
        assert any(FIX_RAW_NIL in f for f in failures), failures
        assert mock_llm.requests == []
    else:
        assert failures == []
        (result,) = read_report(report_dir, "rb", "access")
        assert base64.b64decode(result["value"]["__bytes__"]) == mock_llm.last_request().body


def test_a_body_within_client_body_buffer_size_is_in_memory_whatever_the_argument(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body("small"),
                   headers=probe_headers("mem", access=[["kong.request.get_raw_body", []]]))  # fmt: skip
    assert resp.status == 200
    front.wait_for_logs()
    assert read_report(report_dir, "mem", "access")[0]["type"] == "bytes"


def test_kong_before_3_8_cannot_read_a_spooled_body_at_all(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url, kong_version="3.7.1")
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=_big_body(),
                   headers=probe_headers("old", access=[["kong.request.get_raw_body", [0]]]))  # fmt: skip
    assert resp.status == 500  # get_raw_body() had no argument before 3.8: nil for any file
    front.wait_for_logs()
    assert any(FIX_RAW_NIL in f for f in front.take_failures())


def test_client_body_buffer_size_is_a_front_setting(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url, client_body_buffer_size=1 << 20)
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=_big_body(),
                   headers=probe_headers("cbs", access=[["kong.request.get_raw_body", []]]))  # fmt: skip
    assert resp.status == 200  # a 1m buffer holds 9k in memory


def test_client_max_body_size_refuses_the_body_before_any_plugin_runs(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url, client_max_body_size=4096)
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=_big_body(),
                   headers=probe_headers("max", log=[["kong.log.serialize", []]]))  # fmt: skip
    assert resp.status == 413
    front.wait_for_logs()
    assert not _report_exists(report_dir, "max", "log")  # no plugin was collected, no log phase


# ------------------------------------------------------------ kong.service.response.get_raw_body after Kong's error page

BUFFER = [["kong.service.request.enable_buffering", []]]
SERVICE_BODY = [["kong.service.response.get_raw_body", []], ["kong.log.serialize", []]]


def test_an_unreachable_upstream_clears_buffered_proxying_so_the_log_phase_raises(
    tmp_path, plugin_server_factory, kong_front_factory
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, _closed_port_url())
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers=probe_headers("u502", access=BUFFER, log=SERVICE_BODY))  # fmt: skip
    assert resp.status == 502
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("service body is only available with buffered proxying" in f for f in failures), failures
    assert not _report_exists(report_dir, "u502", "log")
    ctx = front.last_request()
    assert ctx.buffered_proxying is False and ctx.log_snapshot["source"] == "kong"
    assert len(ctx.log_snapshot["tries"]) == 1


def test_a_truncated_buffered_answer_goes_through_the_error_handler(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    headers = {**probe_headers("cut", access=BUFFER, log=SERVICE_BODY), "x-mock-behavior": "cut"}
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers=headers)
    assert resp.status == 502  # Kong.response: res.truncated
    front.wait_for_logs()
    assert any("only available with buffered proxying" in f for f in front.take_failures())
    ctx = front.last_request()
    assert ctx.log_snapshot["source"] == "kong" and ctx.log_snapshot["upstream_status"] == "200"


def test_a_websocket_upgrade_turns_buffering_off(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    headers = {**probe_headers("ws", access=BUFFER, log=SERVICE_BODY), "Upgrade": "websocket"}
    request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers=headers)
    front.wait_for_logs()
    assert any("only available with buffered proxying" in f for f in front.take_failures())
    assert front.last_request().log_snapshot["source"] == "upstream"  # an upstream answer, yet not buffered


def test_a_buffered_answer_from_the_upstream_keeps_its_body_for_the_log_phase(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    headers = {**probe_headers("ok", access=BUFFER, log=SERVICE_BODY), "x-mock-behavior": "status:503"}
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers=headers)
    assert resp.status == 503  # the upstream's own error page is an upstream answer
    front.wait_for_logs()
    body_result, serialized = read_report(report_dir, "ok", "log")
    assert base64.b64decode(body_result["value"]["__bytes__"]) == resp.body


# ------------------------------------------------------------ the log phase runs in a timer on saved data


def test_serialize_in_the_log_timer_is_the_saved_one(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    log = [["kong.log.set_serialize_value", ["late", 1]], ["kong.log.serialize", []], ["kong.request.get_header", ["x-probe-id"]]]
    request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
            headers=probe_headers("tm", access=[["kong.log.set_serialize_value", ["early", 1]]], log=log))  # fmt: skip
    front.wait_for_logs()
    _, serialized, header = read_report(report_dir, "tm", "log")
    import json

    doc = json.loads(serialized["value"])
    assert doc["early"] == 1 and "late" not in doc  # plugin.lua saved serialize() before the timer
    assert header["value"] == "tm"  # saved request headers still answer


def test_the_log_phase_runs_for_a_request_key_auth_refused(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    report_dir = tmp_path / "reports"
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url, kong_yml=probe_kong_yml(report_dir, key_auth=True))
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers=probe_headers("refused", log=[["kong.log.serialize", []]]))  # fmt: skip
    assert resp.status == 401
    front.wait_for_logs()
    import json

    doc = json.loads(read_report(report_dir, "refused", "log")[0]["value"])
    assert "consumer" not in doc and "tries" not in doc and doc["latencies"]["proxy"] == -1
    assert doc["response"]["status"] == 401 and doc["source"] == "kong"


# ------------------------------------------------------------ serialize() is bytes, not text


def test_a_latin1_header_makes_serialize_invalid_utf8_and_stock_kong_pdk_drops_it(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm.url)
    headers = {**probe_headers("l1", log=[["kong.log.serialize", []]]), "x-note": "caf\xe9"}  # http.client sends Latin-1
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers=headers)
    assert resp.status == 200
    front.wait_for_logs()
    ctx = front.last_request()
    assert ctx.log_snapshot["request"]["headers"]["x-note"] == b"caf\xe9"  # the byte as the client sent it
    failures = front.take_failures()
    assert any("kong.log.serialize" in f or "closed the connection" in f for f in failures), failures
    assert not _report_exists(report_dir, "l1", "log")


# ------------------------------------------------------------ ai-proxy analytics can be wrong


def _ctx_with_stream(uri: str, body: bytes, sse: bytes) -> RequestContext:
    ctx = RequestContext(request_id="r", worker_id=0, method="POST", request_uri=uri, client_ip="127.0.0.1",
                         client_port=1, server_port=8000, host="kong", headers=Headers(), body=body)  # fmt: skip
    ctx.proxied, ctx.upstream_status, ctx.upstream_uri = True, 200, uri
    ctx.upstream_headers = Headers([("content-type", "text/event-stream")])
    ctx.response_body_capture += sse
    return ctx


def test_ai_proxy_bugs_can_be_switched_on_to_report_zeros_for_200_streams() -> None:
    sse = (b'data: {"choices":[{"delta":{"content":"hi"}}],"model":"gpt-4o"}\n\n'
           b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\ndata: [DONE]\n\n')  # fmt: skip
    ctx = _ctx_with_stream("/v1/chat/completions", b'{"model":"gpt-4o","stream":true}', sse)
    exact = ai_proxy_serialize_values(ctx)["ai.proxy.usage"]
    assert (exact["prompt_tokens"], exact["completion_tokens"]) == (7, 3)
    no_completion = ai_proxy_serialize_values(ctx, kong_bugs=("14535",))["ai.proxy.usage"]
    assert (no_completion["prompt_tokens"], no_completion["completion_tokens"]) == (7, 0)
    responses = _ctx_with_stream("/v1/responses", b'{"model":"gpt-4o","stream":true}', sse)
    zeros = ai_proxy_serialize_values(responses, kong_bugs=("14768",))["ai.proxy.usage"]
    assert (zeros["prompt_tokens"], zeros["completion_tokens"], zeros["total_tokens"]) == (0, 0, 0)
