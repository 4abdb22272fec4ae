"""Plugin server process management and raw msgpack-RPC, against real servers."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from kong_harness import (
    LuaBinary,
    MsgpackRpcClient,
    PluginInfoError,
    PluginServerProcess,
    PluginServerStartError,
    RpcError,
    RpcProtocolError,
    parse_dump_output,
)

from .helpers import PROBE_PLUGIN

NOOP_PLUGIN = Path(__file__).resolve().parents[1] / "support" / "noop_plugin.py"


def test_dump_is_parsed_like_kong_and_first_entry_is_used(tmp_path: Path) -> None:
    server = PluginServerProcess.for_script(PROBE_PLUGIN, prefix=tmp_path)
    info = server.dump_info()
    assert info.name == "probe"
    assert set(info.phases) == {"access", "log"}
    assert info.priority == 900
    assert info.version == "1.2.3"
    assert info.config_schema["type"] == "record"
    assert [next(iter(f)) for f in info.config_schema["fields"]] == ["report_dir", "mode", "limits", "note"]

    two = json.dumps([info.raw, dict(info.raw, Name="second")])
    assert parse_dump_output(two).name == "probe"  # Kong 3.9+ reads only dump[1]


@pytest.mark.parametrize(
    "stdout",
    [
        'warning: could not import foo\n[{"Name": "x", "Phases": [], "Priority": 0, "Schema": {}}]',
        '[{"Name": "x", "Phases": [], "Priority": 0, "Schema": {}}]\n[]',
        "{}",
        "[]",
        "",
    ],
)
def test_dump_with_anything_else_on_stdout_fails_loudly(stdout: str) -> None:
    with pytest.raises(PluginInfoError):
        parse_dump_output(stdout)


def test_noisy_query_command_is_rejected(tmp_path: Path) -> None:
    noisy = tmp_path / "noisy_plugin.py"
    noisy.write_text(
        f"import runpy, sys\nprint('DeprecationWarning: something')\n"
        f"sys.argv[0] = {str(NOOP_PLUGIN)!r}\nrunpy.run_path({str(NOOP_PLUGIN)!r}, run_name='__main__')\n"
    )
    with pytest.raises(PluginInfoError, match="not one JSON document"):
        PluginServerProcess.for_script(noisy, prefix=tmp_path).dump_info()


def test_start_owns_and_reaps_the_process_and_captures_its_log(tmp_path: Path) -> None:
    server = PluginServerProcess.for_script(NOOP_PLUGIN, prefix=tmp_path, socket_name="noop.sock")
    server.start()
    pid = server.pid
    assert pid is not None and server.running
    assert os.path.exists(server.socket_path)
    returncode = server.stop()
    assert returncode is not None
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie we forgot
    log = server.read_log()
    assert "--socket-name noop.sock" in log and "--no-lua-style" in log
    assert "server started at path" in log


def test_server_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise SystemExit('plugin module failed to import')\n")
    with pytest.raises(PluginServerStartError, match="failed to import"):
        PluginServerProcess.for_script(broken, prefix=tmp_path).start()


def test_env_passthrough_reaches_dump_and_server(tmp_path: Path) -> None:
    env = {"PROBE_NAME": "probe-env", "PROBE_PHASES": "access,response,log"}
    server = PluginServerProcess.for_script(PROBE_PLUGIN, prefix=tmp_path, env=env)
    info = server.dump_info()
    assert info.name == "probe-env"
    assert set(info.phases) == {"access", "response", "log"}
    with server:
        client = MsgpackRpcClient(server.socket_path)
        status = client.call("plugin.StartInstance", {"Name": "probe-env", "Config": json.dumps({"report_dir": str(tmp_path)})})
        assert status["Name"] == "probe-env"
        client.close()


@pytest.mark.parametrize("gevent", [False, True], ids=["threads", "gevent"])
@pytest.mark.parametrize("lua_style", [False, True], ids=["python-style", "lua-style"])
def test_modes_start_and_flags_reach_the_server(tmp_path: Path, gevent: bool, lua_style: bool) -> None:
    with PluginServerProcess.for_script(NOOP_PLUGIN, prefix=tmp_path, gevent=gevent, lua_style=lua_style) as server:
        assert ("-g" in server.server_args) is gevent
        assert ("--no-lua-style" in server.server_args) is not lua_style
        client = MsgpackRpcClient(server.socket_path)
        status = client.call("plugin.StartInstance", {"Name": "noop", "Config": "{}"})
        reply = client.call("plugin.HandleEvent", {"InstanceId": status["Id"], "EventName": "access"})
        assert reply["Data"] == "ret"
        client.close()
        log = server.read_log()
    assert ("lua-style return values are used" in log) is lua_style
    assert ("(gevent)" in log) is gevent


def test_rpc_errors_counters_and_pool_reuse(noop_plugin_server: PluginServerProcess) -> None:
    client = MsgpackRpcClient(noop_plugin_server.socket_path)
    status = client.call("plugin.StartInstance", {"Name": "noop", "Config": json.dumps({"a": 1})})
    assert status["Config"] == {"a": 1}  # the server json-decodes the Config string
    with pytest.raises(RpcError, match="no plugin instance #4242"):
        client.call("plugin.HandleEvent", {"InstanceId": 4242, "EventName": "access"})
    for _ in range(20):
        assert client.call("plugin.HandleEvent", {"InstanceId": status["Id"], "EventName": "log"})["Data"] == "ret"
    calls = client.calls_by_method
    assert calls == {"plugin.StartInstance": 1, "plugin.HandleEvent": 21}
    assert client.connections_opened == 1  # one keepalive connection served every sequential call
    with pytest.raises(RpcError, match="RPC for nothere is not supported"):
        client.call("nothere.Method")
    client.close()


@pytest.mark.parametrize("gevent", [False, True], ids=["threads", "gevent"])
def test_many_calls_in_flight_from_threads(plugin_server_factory, gevent: bool) -> None:
    server = plugin_server_factory(NOOP_PLUGIN, gevent=gevent)
    client = MsgpackRpcClient(server.socket_path)
    iid = client.call("plugin.StartInstance", {"Name": "noop", "Config": "{}"})["Id"]
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(10):
                assert client.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})["Data"] == "ret"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client.calls_by_method["plugin.HandleEvent"] == 160
    assert 1 <= client.connections_opened <= 16
    client.close()


@pytest.mark.parametrize("lua_style", [False, True], ids=["python-style", "lua-style"])
def test_step_error_reaches_the_plugin_as_kong_pdk_documents(plugin_server_factory, tmp_path: Path, lua_style: bool) -> None:
    """The server side of plugin.StepError: an exception (python style) or
    (None, err) (lua style). Kong's mp_rpc itself never sends it, see
    test_pdk_bridge.py::test_nil_err_from_a_pdk_function_arrives_as_plain_nil."""
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN, lua_style=lua_style)
    client = MsgpackRpcClient(server.socket_path)
    iid = client.call("plugin.StartInstance", {"Name": "probe", "Config": json.dumps({"report_dir": str(report_dir)})})["Id"]
    step = client.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    assert step["Data"] == {"Method": "kong.request.get_header", "Args": ["x-probe-id"]}
    step = client.call("plugin.Step", {"EventId": step["EventId"], "Data": "p1"})
    script = json.dumps([["kong.request.get_body", []]])
    step = client.call("plugin.Step", {"EventId": step["EventId"], "Data": script})
    assert step["Data"]["Method"] == "kong.request.get_body"
    step = client.call("plugin.StepError", {"EventId": step["EventId"], "Data": "missing content type"})
    assert step["Data"] == "ret"
    result = json.loads((report_dir / "p1.access.json").read_text())[0]
    if lua_style:
        assert result["value"] == [None, "missing content type"]
    else:
        assert result["exception"] == "PDKException: exception from kong.request.get_body: missing content type"
    client.close()


def test_raw_bytes_travel_as_msgpack_bin(plugin_server_factory, tmp_path: Path) -> None:
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN)
    client = MsgpackRpcClient(server.socket_path)
    iid = client.call("plugin.StartInstance", {"Name": "probe", "Config": json.dumps({"report_dir": str(report_dir)})})["Id"]
    step = client.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    step = client.call("plugin.Step", {"EventId": step["EventId"], "Data": "b1"})
    step = client.call("plugin.Step", {"EventId": step["EventId"], "Data": json.dumps([["kong.request.get_raw_body", []]])})
    raw = bytes(range(256))
    step = client.call("plugin.Step", {"EventId": step["EventId"], "Data": LuaBinary(raw)})
    assert step["Data"] == "ret"
    result = json.loads((report_dir / "b1.access.json").read_text())[0]
    assert result["type"] == "bytes"
    client.close()


def test_a_lua_string_that_is_not_utf8_kills_kong_pdks_stock_connection(plugin_server_factory, tmp_path: Path) -> None:
    """Kong sends every Lua string as msgpack str, whatever its bytes (lua-MessagePack);
    kong-pdk's listener decodes str as UTF-8 and drops the connection on a Latin-1
    byte, leaving the handler waiting for a Step that can no longer arrive."""
    report_dir = tmp_path / "reports"
    server = plugin_server_factory(PROBE_PLUGIN)
    client = MsgpackRpcClient(server.socket_path)
    iid = client.call("plugin.StartInstance", {"Name": "probe", "Config": json.dumps({"report_dir": str(report_dir)})})["Id"]
    step = client.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    with pytest.raises(RpcProtocolError, match="closed the connection"):
        client.call("plugin.Step", {"EventId": step["EventId"], "Data": b"caf\xe9"})
    client.close()


def test_console_script_lookup_falls_back_to_the_interpreter_dir() -> None:
    from kong_harness import find_console_script

    assert find_console_script("definitely-not-a-real-command-xyz") is None
    pytest_script = find_console_script("pytest")
    assert pytest_script is not None and Path(pytest_script).name == "pytest"
    assert Path(sys.executable).parent.joinpath("pytest").exists()


def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A SIGKILLed test run must not leave plugin servers behind (kong-pdk's
    own orphan watchdog only works in gevent mode)."""
    import signal
    import subprocess
    import time

    tests_dir = Path(__file__).resolve().parents[1]
    script = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(tests_dir)!r})\n"
        "from kong_harness import PluginServerProcess\n"
        f"server = PluginServerProcess.for_script({str(NOOP_PLUGIN)!r}, prefix={str(tmp_path)!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("plugin server outlived its killed parent")


def test_children_forked_next_to_live_grpc_threads_reach_exec() -> None:
    """PluginServerProcess forks with a preexec_fn (PR_SET_PDEATHSIG) from a pytest process in which
    earlier tests left gRPC pollers running. With gRPC's fork support on, its atfork handler aborted
    about 1 child in 20 before exec (SIGABRT, "Epoll1Poller ... epoll_wait error: Bad file descriptor")
    or left it hung there, and the parent with it: tests/conftest.py turns fork support off. Each
    child execs `true` at once, so the test is cheap."""
    import subprocess
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from kong_harness.process import _die_with_parent

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    done = threading.Event()
    calls = 0

    def call_constantly() -> None:  # gRPC's pollers busy, in both directions, during every fork
        nonlocal calls
        check = health_pb2_grpc.HealthStub(channel).Check
        while not done.is_set():
            check(health_pb2.HealthCheckRequest(), timeout=30)
            calls += 1

    failed: list[tuple[int, bytes]] = []

    def fork() -> None:
        for _ in range(100):
            child = subprocess.run(["true"], preexec_fn=_die_with_parent, capture_output=True, timeout=60)
            if child.returncode != 0 or child.stderr:
                failed.append((child.returncode, child.stderr[-300:]))

    caller = threading.Thread(target=call_constantly, daemon=True)
    # A thread: a child stuck before exec blocks Popen with no timeout; the join bounds that hang.
    forker = threading.Thread(target=fork, daemon=True)
    caller.start()
    try:
        forker.start()
        forker.join(120)
        assert not forker.is_alive(), "a child never reached exec (and Popen waits for it forever)"
        assert failed == []
        assert calls > 0
    finally:
        done.set()
        caller.join(30)
        channel.close()
        server.stop(0)
