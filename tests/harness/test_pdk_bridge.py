"""The event bridge and PDK, through the front, against a real kong-pdk server."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from kong_harness import KongFront, MsgpackRpcClient

from .helpers import PROBE_PLUGIN, chat_body, decode_value, probe_headers, probe_kong_yml, read_report, request

MODES = [pytest.param(False, id="threads"), pytest.param(True, id="gevent")]


@pytest.fixture(params=MODES)
def probe_front(
    request: pytest.FixtureRequest, tmp_path: Path, plugin_server_factory, kong_front_factory, mock_llm
) -> tuple[KongFront, Path]:
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN, gevent=request.param)
    front = kong_front_factory(probe_kong_yml(report_dir, key_auth=True), {"probe": server}, {"llm": mock_llm.url})
    return front, report_dir


def _values(report: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["method"]: decode_value(item.get("value")) for item in report}


def _steps(front: KongFront, phase: str) -> dict[str, str | None]:
    return {call.method: call.step for call in front.last_request().pdk_calls if call.phase == phase}


def test_typed_steps_and_multimaps(probe_front, mock_llm) -> None:
    front, report_dir = probe_front
    access = [
        ["kong.request.get_headers", []],
        ["kong.request.get_query", []],
        ["kong.request.get_header", ["x-multi"]],
        ["kong.client.get_consumer", []],
        ["kong.client.get_credential", []],
        ["kong.router.get_route", []],
        ["kong.router.get_service", []],
        ["kong.service.request.set_header", ["x-added", "v1"]],
        ["kong.request.get_header", ["X_ADDED"]],
        ["kong.request.get_path", []],
        ["kong.request.get_raw_query", []],
        ["kong.request.get_method", []],
        ["kong.ctx.shared.set", ["k", {"n": 1}]],
        ["kong.ctx.shared.get", ["k"]],
        ["kong.nginx.get_subsystem", []],
    ]
    headers = probe_headers("typed", access=access)
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=20)
    conn.putrequest("POST", "/llm/v1/chat/completions?a=1&a=2&flag&e=")
    for name, value in [*headers.items(), ("apikey", "alice-key"), ("X-Multi", "one"), ("X-Multi", "two"),
                        ("Content-Type", "application/json")]:
        conn.putheader(name, value)
    body = json.dumps(chat_body()).encode()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    assert conn.getresponse().status == 200
    conn.close()

    values = _values(read_report(report_dir, "typed", "access"))
    assert values["kong.request.get_headers"]["x-multi"] == ["one", "two"]
    assert values["kong.request.get_headers"]["apikey"] == ["alice-key"]
    assert values["kong.request.get_query"] == {"a": ["1", "2"], "flag": [], "e": [""]}
    assert values["kong.request.get_header"] == "v1"  # last get_header: the set header, via '_' lookup
    assert values["kong.client.get_consumer"]["username"] == "alice"
    assert values["kong.client.get_credential"]["consumer"] == {"id": values["kong.client.get_consumer"]["id"]}
    assert values["kong.router.get_route"]["name"] == "chat"
    assert values["kong.router.get_service"]["name"] == "llm"
    assert values["kong.request.get_path"] == "/llm/v1/chat/completions"
    assert values["kong.request.get_raw_query"] == "a=1&a=2&flag&e="
    assert values["kong.request.get_method"] == "POST"
    assert values["kong.ctx.shared.get"] == {"n": 1}
    assert values["kong.nginx.get_subsystem"] == "http"

    steps = _steps(front, "access")
    assert steps["kong.request.get_headers"] == "plugin.StepMultiMap"
    assert steps["kong.request.get_query"] == "plugin.StepMultiMap"
    assert steps["kong.client.get_consumer"] == "plugin.StepConsumer"
    assert steps["kong.client.get_credential"] == "plugin.StepCredential"
    assert steps["kong.router.get_route"] == "plugin.StepRoute"
    assert steps["kong.router.get_service"] == "plugin.StepService"
    assert steps["kong.request.get_method"] == "plugin.Step"
    assert mock_llm.last_request().headers["x-added"] == "v1"
    assert mock_llm.last_request().path == "/base/v1/chat/completions?a=1&a=2&flag&e="


def test_bytes_bodies_round_trip(probe_front, mock_llm) -> None:
    front, report_dir = probe_front
    raw = bytes(range(256)) * 4
    replacement = b"\xff\x00binary\x80" * 3
    access = [
        ["kong.request.get_raw_body", []],
        ["kong.service.request.set_raw_body", [{"__bytes__": base64.b64encode(replacement).decode()}]],
        ["kong.request.get_raw_body", []],
    ]
    headers = {**probe_headers("bytes", access=access), "apikey": "alice-key", "Content-Type": "application/octet-stream"}
    request(front.url, "POST", "/llm/v1/chat/completions", body=raw, headers=headers)
    report = read_report(report_dir, "bytes", "access")
    assert decode_value(report[0]["value"]) == raw
    assert report[0]["type"] == "bytes"
    assert decode_value(report[2]["value"]) == replacement  # ngx.req.set_body_data is visible to later reads
    upstream = mock_llm.last_request()
    assert upstream.body == replacement
    assert upstream.headers["content-length"] == str(len(replacement))


def test_exit_short_circuits_with_no_further_step(probe_front, mock_llm) -> None:
    front, report_dir = probe_front
    access = [["kong.request.get_method", []], ["exit", [418, {"error": "teapot", "empty": []}, {"X-Exit": "yes"}]]]
    headers = {**probe_headers("exit", access=access), "apikey": "alice-key"}
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers=headers)
    assert resp.status == 418
    assert resp.json() == {"error": "teapot", "empty": {}}  # cjson: an empty Lua table is an object
    assert resp.header("X-Exit") == "yes"
    assert resp.header("Content-Type") == "application/json; charset=utf-8"
    assert resp.header("Server") == "kong/3.10.0"
    assert resp.header("X-Kong-Response-Latency") is not None
    assert mock_llm.requests == []
    front.wait_for_logs()

    ctx = front.last_request()
    access_calls = [c for c in ctx.pdk_calls if c.phase == "access"]
    assert [c.method for c in access_calls][-1] == "kong.response.exit"
    assert access_calls[-1].step is None
    # get_header x2 + get_method answered in access; nothing after the exit
    assert sum(1 for c in access_calls if c.step) == 3
    assert ctx.rpc_calls["plugin.HandleEvent"] == 2  # access + log
    assert ctx.exit is not None and ctx.exit.source == "kong.response.exit"
    snapshot = ctx.log_snapshot
    assert snapshot["response"]["status"] == 418
    assert snapshot["upstream_status"] == ""
    assert snapshot["latencies"]["proxy"] == -1
    assert snapshot["source"] == "kong"

    # The server's event bookkeeping is intact: the next request works.
    ok = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                 headers={**probe_headers("after", access=[["kong.request.get_method", []]]), "apikey": "alice-key"})
    assert ok.status == 200
    assert _values(read_report(report_dir, "after", "access"))["kong.request.get_method"] == "POST"


def test_response_error_uses_kongs_template_and_accept(probe_front) -> None:
    front, _ = probe_front
    headers = {**probe_headers(access=[["error", [403, "Forbidden by probe"]]]), "apikey": "alice-key",
               "Accept": "text/plain"}
    resp = request(front.url, "GET", "/llm/x", headers=headers)
    assert resp.status == 403
    rid = resp.header("X-Kong-Request-Id")
    assert resp.body == f"Forbidden by probe\nrequest_id: {rid}\n".encode()
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"


def test_unknown_pdk_method_fails_loudly(probe_front) -> None:
    front, report_dir = probe_front
    access = [["kong.request.get_id", []], ["kong.response.set_header", ["x-a", "b"]], ["kong.request.get_method", []]]
    headers = {**probe_headers("unknown", access=access), "apikey": "alice-key"}
    assert request(front.url, "GET", "/llm/x", headers=headers).status == 404  # the mock has no such path
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("could not find pdk method: kong.request.get_id" in f for f in failures)
    assert any("does not implement PDK method kong.response.set_header" in f for f in failures)
    values = _values(read_report(report_dir, "unknown", "access"))
    assert values["kong.request.get_id"] is None  # Kong answers with an empty Step and carries on
    assert values["kong.request.get_method"] == "GET"


def test_phase_check_violation_in_access_is_a_500(probe_front, mock_llm) -> None:
    front, report_dir = probe_front
    headers = {**probe_headers("viol", access=[["kong.log.serialize", []]]), "apikey": "alice-key"}
    resp = request(front.url, "GET", "/llm/x", headers=headers)
    assert resp.status == 500
    assert resp.json()["message"] == "An unexpected error occurred"
    assert mock_llm.requests == []
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("function cannot be called in access phase (only in: log)" in f for f in failures)
    # the handler never got an answer, so it never wrote its report
    assert not (report_dir / "viol.access.json").exists()


def test_log_phase_restrictions_match_kongs_timer(probe_front) -> None:
    front, report_dir = probe_front
    for probe_id, method in (("rawbody", "kong.request.get_raw_body"), ("method", "kong.request.get_method")):
        headers = {**probe_headers(probe_id, log=[[method, []]]), "apikey": "alice-key"}
        assert request(front.url, "GET", "/llm/x", headers=headers).status == 404
    front.wait_for_logs()
    failures = front.take_failures()
    assert any(
        "kong.request.get_raw_body: function cannot be called in log phase "
        "(only in: rewrite, access, response, error, admin_api)" in f
        for f in failures
    )
    # inside the log timer there is no request: anything reading ngx.var/ngx.req fails
    assert any("kong.request.get_method: no request found" in f for f in failures)
    assert not (report_dir / "rawbody.log.json").exists()

    ok_log = [["kong.request.get_header", ["apikey"]], ["kong.response.get_status", []],
              ["kong.response.get_headers", []], ["kong.router.get_route", []], ["kong.client.get_consumer", []]]
    headers = {**probe_headers("oklog", log=ok_log), "apikey": "alice-key"}
    request(front.url, "GET", "/llm/x", headers=headers)
    front.wait_for_logs()
    values = _values(read_report(report_dir, "oklog", "log"))
    assert values["kong.request.get_header"] == "alice-key"
    assert values["kong.response.get_status"] == 404
    assert values["kong.response.get_headers"]["content-type"] == ["application/json"]
    assert values["kong.router.get_route"]["name"] == "chat"
    assert values["kong.client.get_consumer"]["username"] == "alice"


def test_nil_err_from_a_pdk_function_arrives_as_plain_nil(probe_front) -> None:
    """mp_rpc.lua keeps only the first return value of a PDK function, so
    `nil, "missing content type"` reaches Python as None, never as StepError."""
    front, report_dir = probe_front
    headers = {**probe_headers("nilerr", access=[["kong.request.get_body", []]]), "apikey": "alice-key"}
    request(front.url, "GET", "/llm/x", headers=headers)
    result = read_report(report_dir, "nilerr", "access")[0]
    assert result["value"] is None and "exception" not in result
    (call,) = [c for c in front.last_request().pdk_calls if c.method == "kong.request.get_body"]
    assert call.step == "plugin.Step" and call.outcome.startswith("soft-error")


def test_opt_in_step_error_raises_pdk_exception(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    report_dir = tmp_path / "r"
    server = plugin_server_factory(PROBE_PLUGIN)
    front = kong_front_factory(probe_kong_yml(report_dir), {"probe": server}, {"llm": mock_llm.url},
                               send_step_error=True)
    request(front.url, "GET", "/llm/x", headers=probe_headers("se", access=[["kong.request.get_body", []]]))
    result = read_report(report_dir, "se", "access")[0]
    assert result["exception"] == "PDKException: exception from kong.request.get_body: missing content type"


def test_no_plugin_instance_restarts_and_retries(probe_front) -> None:
    front, report_dir = probe_front
    headers = {**probe_headers(access=[]), "apikey": "alice-key"}
    assert request(front.url, "GET", "/llm/x", headers=headers).status == 404
    assert front.wait_for_logs(30)  # the first request's log timer must not meet the closed instance
    plugin = front.external_plugins["probe"]
    (instance_id,) = [iid for iid in plugin.instance_ids().values() if iid is not None]
    # Something else (a plugin server restart, an expiry) drops the instance.
    outside = MsgpackRpcClient(plugin.process.socket_path)
    outside.call("plugin.CloseInstance", instance_id)
    outside.close()

    headers = {**probe_headers("again", access=[["kong.request.get_method", []]]), "apikey": "alice-key"}
    assert request(front.url, "GET", "/llm/x", headers=headers).status == 404
    assert _values(read_report(report_dir, "again", "access"))["kong.request.get_method"] == "GET"
    assert front.wait_for_logs(30)
    assert plugin.instance_restarts == 1
    assert front.rpc_calls_by_method()["plugin.StartInstance"] == 2


def test_start_instance_config_is_a_json_string_with_kong_keys(probe_front) -> None:
    front, report_dir = probe_front
    request(front.url, "GET", "/llm/x", headers={**probe_headers(), "apikey": "alice-key"})
    config = json.loads((report_dir / "instances.jsonl").read_text().splitlines()[0])
    entity = front.config.plugins_named("probe")[0]
    service = front.config.service_by_name("llm")
    assert config["report_dir"] == str(report_dir)
    assert config["mode"] == "script"  # default filled
    assert config["limits"] == {"max_steps": 50, "labels": ["a"]}  # nested record defaults expanded
    assert config["note"] is None  # optional without default: null
    assert config["service_id"] == service["id"]
    assert "route_id" not in config and "consumer_id" not in config  # nil in Lua: absent
    assert config["__plugin_id"] == entity.id
    assert config["__ws_id"] == front.config.workspace_id
    assert config["__key__"] == f"plugins:probe::{service['id']}:::{front.config.workspace_id}"
    assert isinstance(config["__seq__"], int)


def test_one_instance_per_worker(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    report_dir = tmp_path / "r"
    server = plugin_server_factory(PROBE_PLUGIN)
    front = kong_front_factory(probe_kong_yml(report_dir), {"probe": server}, {"llm": mock_llm.url}, workers=2)
    for _ in range(4):  # one connection each: round-robin over the two workers
        request(front.url, "GET", "/llm/x", headers=probe_headers())
    instances = [json.loads(line) for line in (report_dir / "instances.jsonl").read_text().splitlines()]
    assert len(instances) == 2
    assert instances[0]["__seq__"] != instances[1]["__seq__"]
    assert front.rpc_calls_by_method()["plugin.StartInstance"] == 2


def test_lua_style_server_through_the_front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    report_dir = tmp_path / "r"
    server = plugin_server_factory(PROBE_PLUGIN, lua_style=True)
    front = kong_front_factory(probe_kong_yml(report_dir), {"probe": server}, {"llm": mock_llm.url})
    request(front.url, "GET", "/llm/x?q=1", headers=probe_headers("lua", access=[["kong.request.get_query", []]]))
    assert read_report(report_dir, "lua", "access")[0]["value"] == [{"q": ["1"]}, None]


def test_plugin_exception_means_no_answer_and_kong_carries_on(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    report_dir = tmp_path / "r"
    server = plugin_server_factory(PROBE_PLUGIN)
    front = kong_front_factory(probe_kong_yml(report_dir), {"probe": server}, {"llm": mock_llm.url}, rpc_timeout=1.0)
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers=probe_headers(access=[["raise", []]]))
    # Kong logs the socket timeout and proxies anyway.
    assert resp.status == 200
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("RpcTimeout" in f for f in failures)


def test_get_body_decodes_json_like_cjson_and_sends_it_as_lua_would(probe_front) -> None:
    """kong/pdk/request.lua get_body: cjson.safe.decode, then lua-MessagePack: {} is an empty table
    and travels as an empty array, null as nil, integral numbers as integers."""
    front, report_dir = probe_front
    access = [["kong.request.get_body", ["application/json", 100, 0]]]
    body = b'{"model": "m", "empty": {}, "none": null, "t": 1.0, "list": [1, null]}'
    headers = {**probe_headers("getbody", access=access), "apikey": "alice-key", "Content-Type": "text/plain"}
    request(front.url, "POST", "/llm/x", body=body, headers=headers)
    value = _values(read_report(report_dir, "getbody", "access"))["kong.request.get_body"]
    assert value == {"model": "m", "empty": [], "none": None, "t": 1, "list": [1, None]}


@pytest.mark.parametrize("body", [b'{"a": "\\ud800"}', b'{"a": "\\udc00\\ud800"}', b"[" * 1001 + b"]" * 1001, b"", b"null", b"3"])
def test_get_body_gives_nil_for_what_cjson_refuses_or_what_is_no_table(probe_front, body: bytes) -> None:
    front, report_dir = probe_front
    access = [["kong.request.get_body", ["application/json", 100, 0]]]
    headers = {**probe_headers("refused", access=access), "apikey": "alice-key"}
    request(front.url, "POST", "/llm/x", body=body, headers=headers)
    result = read_report(report_dir, "refused", "access")[0]
    assert result["value"] is None and "exception" not in result
    assert not front.take_failures()


def test_a_nil_before_another_pdk_argument_fails_loudly(probe_front) -> None:
    """Lua's unpack() of a table with a hole may stop at it: the arguments after a nil can be lost."""
    front, _ = probe_front
    access = [["kong.request.get_body", ["application/json", None, 0]]]
    request(front.url, "POST", "/llm/x", body=b"{}", headers={**probe_headers("hole", access=access), "apikey": "alice-key"})
    front.wait_for_logs()
    assert any("called with nil before another argument" in f for f in front.take_failures())
