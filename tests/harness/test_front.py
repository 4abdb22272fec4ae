"""The HTTP front: routing, key-auth, proxying (streamed and buffered), log
phase timing and the serialize() snapshot, with real plugin servers."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kong_harness import KongFront, ai_proxy_hook
from kong_harness.declarative import Route, RouteMatch, upstream_path
from support.mock_llm import MockLLM

from .helpers import PROBE_PLUGIN, chat_body, decode_value, probe_headers, probe_kong_yml, read_report, request

MODES = [pytest.param(False, id="threads"), pytest.param(True, id="gevent")]


def _front(tmp_path: Path, plugin_server_factory, kong_front_factory, mock_llm: MockLLM, *, gevent: bool = False,
           phases: str = "access,log", **kwargs: Any) -> tuple[KongFront, Path]:
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN, gevent=gevent, env={"PROBE_PHASES": phases})
    yml = kwargs.pop("kong_yml", None) or probe_kong_yml(report_dir, key_auth=True)
    return kong_front_factory(yml, {"probe": server}, {"llm": mock_llm.url}, **kwargs), report_dir


# ------------------------------------------------------------------ key-auth


def test_key_auth_rejections_follow_kong(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm)
    missing = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                      headers=probe_headers("nokey", log=[["kong.client.get_consumer", []]]))
    assert missing.status == 401
    assert missing.json() == {"message": "No API key found in request", "request_id": missing.header("X-Kong-Request-Id")}
    assert missing.header("WWW-Authenticate") == "Key"

    wrong = request(front.url, "GET", "/llm/x", headers={"apikey": "nope"})
    assert wrong.status == 401 and wrong.json()["message"] == "Unauthorized"

    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    conn.putrequest("GET", "/llm/x")
    conn.putheader("apikey", "alice-key")
    conn.putheader("apikey", "alice-key")
    conn.endheaders()
    duplicate = conn.getresponse()
    assert duplicate.status == 401 and json.loads(duplicate.read())["message"] == "Duplicate API key found"
    conn.close()
    assert mock_llm.requests == []

    # the plugin's log phase still runs for rejected requests, without a consumer
    front.wait_for_logs()
    assert read_report(report_dir, "nokey", "log") == [
        {"method": "kong.client.get_consumer", "value": None, "type": "NoneType"}
    ]


def test_key_auth_success_sets_consumer_headers_and_hides_credentials(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    report_dir = tmp_path / "reports"
    yml = probe_kong_yml(report_dir, key_auth=True)
    yml["services"][0]["plugins"][0]["config"] = {"hide_credentials": True, "key_names": ["apikey", "x-api-key"]}
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, kong_yml=yml)
    resp = request(front.url, "POST", "/llm/v1/chat/completions?apikey=alice-key&keep=1", body=chat_body())
    assert resp.status == 200
    upstream = mock_llm.last_request()
    assert upstream.path == "/base/v1/chat/completions?keep=1"
    consumer = front.config.consumer_by_username("alice")
    assert upstream.headers["x-consumer-id"] == consumer["id"]
    assert upstream.headers["x-consumer-username"] == "alice"
    assert upstream.headers["x-consumer-custom-id"] == "team-a"
    assert upstream.headers["x-credential-identifier"] == front.config.credentials["alice-key"]["id"]

    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(), headers={"X-Api-Key": "alice-key"})
    assert resp.status == 200
    assert "x-api-key" not in mock_llm.last_request().headers


def test_consumer_scoped_config_wins_after_authentication(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    report_dir = tmp_path / "reports"
    yml = probe_kong_yml(report_dir, key_auth=True, extra_config={"note": "service"})
    yml["consumers"][0]["plugins"] = [{"name": "probe", "config": {"report_dir": str(report_dir), "note": "alice"}}]
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, kong_yml=yml)
    request(front.url, "GET", "/llm/x", headers={"apikey": "alice-key"})
    request(front.url, "GET", "/llm/x", headers={"apikey": "nobody"})  # 401: only its log phase runs
    front.wait_for_logs()
    notes = [json.loads(line)["note"] for line in (report_dir / "instances.jsonl").read_text().splitlines()]
    assert notes == ["alice", "service"]


# ------------------------------------------------------------------ routing


def test_routing_and_kong_errors(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    report_dir = tmp_path / "reports"
    yml = probe_kong_yml(report_dir)
    yml["services"][0]["routes"] += [
        {"name": "keep", "paths": ["/keep"], "strip_path": False},
        {"name": "models", "paths": [r"~/v\d+/models$"], "methods": ["GET"]},
    ]
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, kong_yml=yml)
    missing = request(front.url, "GET", "/nowhere")
    assert missing.status == 404
    assert missing.json()["message"] == "no Route matched with those values"
    assert request(front.url, "GET", "/keep/v1/models").status == 200
    assert mock_llm.last_request().path == "/base/keep/v1/models"
    assert request(front.url, "GET", "/v2/models").status == 404  # the mock only knows /v1/models
    assert mock_llm.last_request().path == "/base"
    assert front.last_request().route["name"] == "models"
    assert request(front.url, "POST", "/v2/models").status == 404
    assert front.last_request().route is None


@pytest.mark.parametrize(
    ("service_path", "strip", "request_path", "prefix", "expected"),
    [
        (None, True, "/llm/v1/chat", "/llm", "/v1/chat"),
        ("/base", True, "/llm/v1/chat", "/llm", "/base/v1/chat"),
        ("/base/", True, "/llm/v1/chat", "/llm", "/base/v1/chat"),
        ("/base", True, "/llm", "/llm", "/base"),
        ("/base", True, "/llm/", "/llm", "/base/"),
        ("/base", False, "/llm/v1", "/llm", "/base/llm/v1"),
        ("/base/", False, "/llm/v1", "/llm", "/base/llm/v1"),
        (None, True, "/llmx", "/llm", "/x"),
    ],
)
def test_upstream_path_v0(service_path, strip, request_path, prefix, expected) -> None:
    route = Route(record={"strip_path": strip}, service_name="s", prefix_paths=[prefix])
    match = RouteMatch(route, prefix, request_path[len(prefix):])
    service = {"path": service_path} if service_path else {}
    assert upstream_path(route, match, service, request_path) == expected


# ------------------------------------------------------------------ serialize()


def test_serialize_snapshot_content(tmp_path, plugin_server_factory, kong_front_factory, mock_llm) -> None:
    front, report_dir = _front(
        tmp_path, plugin_server_factory, kong_front_factory, mock_llm, serialize_hook=ai_proxy_hook(plugin_id="p-1")
    )
    access = [
        ["kong.log.set_serialize_value", ["chargeback.team", "payments"]],
        ["kong.log.set_serialize_value", ["consumer.username", "renamed", {"mode": "replace"}]],
        ["kong.log.set_serialize_value", ["route.name", "ignored", {"mode": "add"}]],
    ]
    log = [["kong.log.set_serialize_value", ["late", True]], ["kong.log.serialize", []]]
    body = chat_body()
    resp = request(front.url, "POST", "/llm/v1/chat/completions?x=1&x=2&flag", body=body,
                   headers={**probe_headers("ser", access=access, log=log), "apikey": "alice-key",
                            "Authorization": "Bearer sk-secret"})
    assert resp.status == 200
    front.wait_for_logs()
    report = read_report(report_dir, "ser", "log")
    assert report[1]["type"] == "str"  # serialize() crosses the RPC as a JSON string
    snap = json.loads(report[1]["value"])
    ctx = front.last_request()
    rid = resp.header("X-Kong-Request-Id")

    assert snap["request"]["id"] == rid == ctx.request_id
    assert snap["request"]["uri"] == "/llm/v1/chat/completions?x=1&x=2&flag"
    assert snap["request"]["url"] == f"http://127.0.0.1:{front.port}/llm/v1/chat/completions?x=1&x=2&flag"
    assert snap["request"]["method"] == "POST"
    assert snap["request"]["querystring"] == {"x": ["1", "2"], "flag": True}
    assert snap["request"]["headers"]["authorization"] == "REDACTED"
    assert snap["request"]["headers"]["apikey"] == "alice-key"
    assert snap["request"]["size"] > len(json.dumps(body))
    assert snap["upstream_uri"] == "/base/v1/chat/completions?x=1&x=2&flag"
    assert snap["upstream_status"] == "200"
    assert snap["response"]["status"] == 200
    assert snap["response"]["size"] == ctx.bytes_sent
    assert snap["response"]["headers"]["x-kong-request-id"] == rid
    assert set(snap["latencies"]) == {"kong", "proxy", "request", "receive"}
    assert snap["latencies"]["proxy"] >= 0
    assert snap["tries"][0]["ip"] == "127.0.0.1" and snap["tries"][0]["port"] == mock_llm.port
    assert {"balancer_start", "balancer_latency"} <= set(snap["tries"][0])
    consumer = front.config.consumer_by_username("alice")
    assert snap["authenticated_entity"] == {"id": front.config.credentials["alice-key"]["id"], "consumer_id": consumer["id"]}
    assert snap["consumer"] == {**consumer, "username": "renamed"}
    assert snap["consumer"]["tags"] == ["team:a"] and snap["consumer"]["custom_id"] == "team-a"
    assert snap["route"]["name"] == "chat" and snap["route"]["tags"] == ["route-tag"]
    assert snap["service"]["name"] == "llm" and snap["service"]["tags"] == ["tenant:acme", "svc"]
    assert snap["client_ip"] == "127.0.0.1"
    assert snap["started_at"] == round(ctx.started_at_ms) and isinstance(snap["started_at"], int)
    assert snap["workspace"] == front.config.workspace_id and snap["workspace_name"] == "default"
    assert snap["source"] == "upstream"
    assert snap["chargeback"] == {"team": "payments"}
    assert "late" not in snap  # the log-phase snapshot was taken before the timer ran

    expected = MockLLM.expected_usage(body)
    assert snap["ai"]["proxy"]["usage"]["prompt_tokens"] == expected["prompt_tokens"]
    assert snap["ai"]["proxy"]["usage"]["completion_tokens"] == expected["completion_tokens"]
    assert snap["ai"]["proxy"]["usage"]["total_tokens"] == expected["total_tokens"]
    assert snap["ai"]["proxy"]["meta"]["request_model"] == "gpt-4o-mini"
    assert snap["ai"]["proxy"]["meta"]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert snap["ai"]["proxy"]["meta"]["provider_name"] == "openai"
    assert snap["ai"]["proxy"]["meta"]["plugin_id"] == "p-1"


# ------------------------------------------------------------------ streaming vs buffering


def _open_stream(front: KongFront, body: dict[str, Any], headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=20)
    conn.request("POST", "/llm/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json", **headers})
    return conn, conn.getresponse()


@pytest.mark.parametrize("gevent", MODES)
def test_streaming_really_streams_and_log_waits_for_the_end(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm, gevent
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, gevent=gevent)
    body = chat_body(stream=True, stream_options={"include_usage": True})
    conn, resp = _open_stream(front, body, {**probe_headers("st", log=[["kong.response.get_status", []]]),
                                            "apikey": "alice-key", "x-mock-behavior": "hold"})
    try:
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        first = resp.read1(65536)
        assert first.startswith(b"data: {")  # the client has data...
        assert mock_llm.wait_until_held()
        assert mock_llm.completed == 0  # ...while the upstream has not finished
        ctx = front.last_request()
        assert ctx.saved_log is None and not ctx.log_done.is_set()  # no log phase mid-stream
        mock_llm.release()
        rest = resp.read()
    finally:
        conn.close()
    stream = first + rest
    assert stream.rstrip().endswith(b"data: [DONE]")
    assert b'"choices": []' in stream  # the include_usage chunk
    front.wait_for_logs()
    assert ctx.log_done.is_set()
    assert read_report(report_dir, "st", "log")[0]["value"] == 200
    assert ctx.log_snapshot["response"]["size"] == ctx.bytes_sent
    assert ctx.log_snapshot["latencies"]["receive"] >= 0


def test_response_phase_switches_to_buffered_proxying(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm,
                               phases="access,response,log")
    response_script = [["kong.service.response.get_raw_body", []], ["kong.service.response.get_status", []],
                       ["kong.service.response.get_header", ["content-type"]], ["kong.response.get_status", []]]
    conn, resp_holder = None, {}

    def client() -> None:
        c, r = _open_stream(front, chat_body(stream=True),
                            {**probe_headers("buf", response=response_script), "apikey": "alice-key",
                             "x-mock-behavior": "hold"})
        resp_holder["status"] = r.status
        resp_holder["length"] = r.getheader("Content-Length")
        resp_holder["body"] = r.read()
        c.close()

    thread = threading.Thread(target=client)
    thread.start()
    assert mock_llm.wait_until_held()
    ctx = front.last_request()
    assert not ctx.headers_sent  # buffered: the client gets nothing while the upstream streams
    mock_llm.release()
    thread.join(20)
    assert resp_holder["status"] == 200
    assert int(resp_holder["length"]) == len(resp_holder["body"])
    report = read_report(report_dir, "buf", "response")
    assert decode_value(report[0]["value"]) == resp_holder["body"]
    assert report[1]["value"] == 200
    assert report[2]["value"] == "text/event-stream; charset=utf-8"
    assert report[3]["value"] == 200
    assert conn is None


def test_enable_buffering_makes_the_body_readable_in_log(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm)
    log = [["kong.service.response.get_raw_body", []], ["kong.service.response.get_status", []]]
    resp = request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
                   headers={**probe_headers("eb", access=[["kong.service.request.enable_buffering", []]], log=log),
                            "apikey": "alice-key"})
    front.wait_for_logs()
    report = read_report(report_dir, "eb", "log")
    assert decode_value(report[0]["value"]) == resp.body
    assert report[1]["value"] == 200

    # without buffering the same call is a Lua error in Kong
    request(front.url, "POST", "/llm/v1/chat/completions", body=chat_body(),
            headers={**probe_headers("nb", log=log), "apikey": "alice-key"})
    front.wait_for_logs()
    failures = front.take_failures()
    assert any("service body is only available with buffered proxying" in f for f in failures)


# ------------------------------------------------------------------ concurrency and counters


@pytest.mark.parametrize("gevent", MODES)
def test_fifty_concurrent_requests_on_pooled_connections(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm, gevent
) -> None:
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, gevent=gevent)
    access = [["kong.request.get_header", ["x-n"]], ["kong.client.get_consumer", []]]

    def one(n: int) -> tuple[int, bytes]:
        body = chat_body(f"request number {n}", stream=n % 2 == 0)
        resp = request(front.url, "POST", "/llm/v1/chat/completions", body=body,
                       headers={**probe_headers(access=access), "apikey": "alice-key", "x-n": str(n)})
        return resp.status, resp.body

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert all(status == 200 for status, _ in results)
    assert all(body.rstrip().endswith(b"[DONE]") for status, body in results[0::2])
    assert front.wait_for_logs(timeout=30)
    assert front.requests_served == 50
    assert all(ctx.log_done.is_set() for ctx in front.requests)
    calls = front.rpc_calls_by_method()
    assert calls["plugin.HandleEvent"] == 100
    assert calls["plugin.StartInstance"] == 1
    plugin = front.external_plugins["probe"]
    assert plugin.rpc.connections_opened <= 100
    stats = front.stats()
    assert stats["pdk_calls_per_request_by_phase"] == {"access": 4.0, "log": 2.0}
    # 2 HandleEvent + one Step per PDK call
    assert stats["rpc_round_trips_per_request"] == 8.0


def test_noop_plugin_baseline(tmp_path, noop_plugin_server, kong_front_factory, mock_llm) -> None:
    yml = {
        "_format_version": "3.0",
        "services": [{"name": "llm", "url": "http://x.invalid", "routes": [{"paths": ["/"]}],
                      "plugins": [{"name": "noop"}]}],
    }
    front = kong_front_factory(yml, {"noop": noop_plugin_server}, {"llm": mock_llm.url})
    for _ in range(5):
        assert request(front.url, "POST", "/v1/chat/completions", body=chat_body()).status == 200
    front.wait_for_logs()
    stats = front.stats()
    assert stats["rpc_round_trips_per_request"] == 2.0  # HandleEvent access + log
    assert stats["pdk_calls_per_request_by_phase"] == {}


# ------------------------------------------------------------------ broken exchanges


def test_upstream_cut_mid_stream_reaches_the_client_and_the_log(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm)
    conn, resp = _open_stream(front, chat_body(stream=True, stream_options={"include_usage": True}),
                              {"apikey": "alice-key", "x-mock-behavior": "cut"})
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    conn.close()
    assert b"[DONE]" not in cut.value.partial
    front.wait_for_logs()
    ctx = front.last_request()
    assert ctx.upstream_error is not None
    assert ctx.log_done.is_set() and ctx.log_snapshot["upstream_status"] == "200"


def test_client_abort_mid_stream_still_runs_the_log_phase(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    front, report_dir = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm)
    conn, resp = _open_stream(front, chat_body(stream=True),
                              {**probe_headers("abort", log=[["kong.response.get_status", []]]), "apikey": "alice-key",
                               "x-mock-behavior": "hold", "x-mock-output-tokens": "400"})
    resp.read1(65536)
    assert mock_llm.wait_until_held()
    conn.close()  # the client goes away while the answer streams
    mock_llm.release()
    assert front.wait_for_logs(timeout=15)
    ctx = front.last_request()
    assert ctx.client_aborted
    assert read_report(report_dir, "abort", "log")[0]["value"] == 200


def test_unreachable_upstream_is_a_kong_502(tmp_path, plugin_server_factory, kong_front_factory) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = plugin_server_factory(PROBE_PLUGIN)
    front = kong_front_factory(probe_kong_yml(tmp_path / "r"), {"probe": server}, {"llm": dead})
    resp = request(front.url, "GET", "/llm/x")
    assert resp.status == 502
    assert resp.json()["message"] == "An invalid response was received from the upstream server"
    front.wait_for_logs()
    assert front.last_request().log_snapshot["response"]["status"] == 502


def test_rewrite_runs_only_for_global_plugins_and_before_routing(
    tmp_path, plugin_server_factory, kong_front_factory, mock_llm
) -> None:
    report_dir = tmp_path / "reports"
    yml = probe_kong_yml(report_dir)
    yml["plugins"] = yml["services"][0].pop("plugins")  # make the probe global
    front, _ = _front(tmp_path, plugin_server_factory, kong_front_factory, mock_llm, phases="rewrite,access,log",
                      kong_yml=yml)
    resp = request(front.url, "GET", "/unrouted", headers=probe_headers("rw", rewrite=[["kong.request.get_path", []]]))
    assert resp.status == 404  # no route, but the global rewrite handler already ran
    assert read_report(report_dir, "rw", "rewrite")[0]["value"] == "/unrouted"

    resp = request(front.url, "GET", "/llm/x", headers=probe_headers("rw2", rewrite=[["kong.router.get_route", []]]))
    assert resp.status == 500  # get_route is not allowed in rewrite: a Lua error, so Kong answers 500
    front.wait_for_logs()
    assert any("function cannot be called in rewrite phase" in f for f in front.take_failures())

    scoped_dir = tmp_path / "scoped"
    server = plugin_server_factory(PROBE_PLUGIN, env={"PROBE_PHASES": "rewrite,access,log"})
    scoped = kong_front_factory(probe_kong_yml(scoped_dir), {"probe": server}, {"llm": mock_llm.url})
    request(scoped.url, "GET", "/llm/x", headers=probe_headers("rw3", rewrite=[], access=[]))
    assert (scoped_dir / "rw3.access.json").exists()
    assert not (scoped_dir / "rw3.rewrite.json").exists()  # route/service plugins have no rewrite
