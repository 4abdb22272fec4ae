"""Where the plugin server's time goes per request: cProfile around the real `ai-chargeback-pluginserver`
(gevent, so every handler runs on the profiled main thread) behind the Kong harness front, kong.yml's
routes, events to a gRPC sink. Prints the top functions by own time and the per-request figures.

    python bench/profile_plugin.py [--requests 400] [--route openai|plain|tools] [--streaming]

What it showed is in bench/notes.md.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts tests/ on sys.path)
import httpx
from kong_harness import PluginServerProcess, find_console_script
from support.event_sink import EventSink
from support.gateway import PLUGIN, front_for, kong_config_for
from support.mock_llm import MockLLM

PATHS = {"openai": "/openai/v1/chat/completions", "plain": "/vllm/v1/chat/completions",
         "tools": "/tools/openai/v1/chat/completions"}  # fmt: skip
MESSAGES = [{"role": "user", "content": "Give me three reasons to meter LLM traffic at the gateway."}]
WRAPPER = """\
import cProfile, runpy, sys, time
sys.argv[0] = {script!r}
profile = cProfile.Profile(time.thread_time)
try:
    profile.runcall(runpy.run_path, {script!r}, run_name="__main__")
finally:
    profile.dump_stats({out!r})
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--route", choices=sorted(PATHS), default="plain")
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    script = find_console_script("ai-chargeback-pluginserver")
    assert script, "ai-chargeback-pluginserver is not installed"
    prefix = Path(tempfile.mkdtemp(prefix="kong-"))
    out = prefix / "plugin.prof"
    # CPU time of the main thread, where gevent runs every handler: wall time would count the sender
    # thread's turns at the GIL and the other processes on 2 shared cores against whatever was running.
    wrapper = prefix / "profiled_pluginserver.py"
    wrapper.write_text(WRAPPER.format(script=script, out=str(out)), encoding="utf-8")
    server = PluginServerProcess([sys.executable, str(wrapper)], gevent=True, prefix=prefix,
                                 socket_name="ai-chargeback-pluginserver.sock")  # fmt: skip
    server.start()
    body: dict[str, object] = {"model": "gpt-4o-mini", "messages": MESSAGES, **({"stream": True} if args.streaming else {})}
    with EventSink() as sink, MockLLM() as llm:
        config = kong_config_for(sink.address, prefix / "spool", overrides={"usage_capture": "auto"})
        front = front_for(config, {PLUGIN: server}, llm.url)
        try:
            with httpx.Client(base_url=front.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
                for _ in range(args.requests):
                    client.post(PATHS[args.route], json=body).raise_for_status()
            front.wait_for_logs(60)
            sink.wait_for(args.requests, 60)
            stats = front.stats()
        finally:
            front.stop()
    os.kill(server.pid or 0, signal.SIGINT)  # kong-pdk's polite exit: cProfile writes its file
    deadline = time.monotonic() + 20
    while server.running and time.monotonic() < deadline:
        time.sleep(0.1)
    server.stop()
    text = io.StringIO()
    profile = pstats.Stats(str(out), stream=text)
    profile.sort_stats("tottime").print_stats(args.top)
    by_package: dict[str, float] = {}
    for (file, _, name), (_, _, own, _, _) in profile.stats.items():  # type: ignore[attr-defined]
        package = next((p for p in ("ai_chargeback_plugin", "ai_chargeback_proto", "kong_pdk", "gevent", "msgpack", "importlib")
                        if p in file or p in name), "other (builtins, stdlib, socket I/O)")  # fmt: skip
        by_package[package] = by_package.get(package, 0.0) + own
    # Start-up (imports, schema, tokenizer) is in these totals: run twice with different --requests and
    # divide the difference by the difference in requests for the per-request cost.
    print("CPU ms by package (own time, main thread, start-up included):")
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
        print(f"  {package:40s} {seconds * 1e3:9.1f}")
    print(f"  {'total':40s} {sum(by_package.values()) * 1e3:9.1f}")
    print(f"route {args.route}, streaming={args.streaming}, {args.requests} requests; PDK calls per request by phase: "
          f"{stats['pdk_calls_per_request_by_phase']}, RPC round trips per request: {stats['rpc_round_trips_per_request']:.2f}")  # fmt: skip
    print(text.getvalue())


if __name__ == "__main__":
    main()
