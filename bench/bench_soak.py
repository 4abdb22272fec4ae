"""Soak: a steady request rate through the whole path for N minutes, sampling the RSS of the
aggregator process and the plugin server over time. Target: flat, < 500 MB each.
Prints one JSON object. Not run in CI (it takes as long as it says).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (puts tests/ on sys.path)
import httpx
from _common import rss_mb, rss_split_mb, start_aggregator
from kong_harness import PluginServerProcess
from support.gateway import PLUGIN, front_for, kong_config_for
from support.mock_llm import MockLLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--sample-s", type=float, default=10.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    aggregator, grpc_listen, http_listen = start_aggregator(workdir / "store")
    server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=True, prefix=workdir,
                                                    log_path=workdir / "pluginserver.log")  # fmt: skip
    samples: list[dict[str, float]] = []
    sent = errors = 0
    try:
        with MockLLM() as llm:
            config = kong_config_for(grpc_listen, workdir / "spool")
            front = front_for(config, {PLUGIN: server}, llm.url, keep_requests=1000)
            stop = threading.Event()

            def sample() -> None:
                started = time.monotonic()
                while not stop.wait(args.sample_s):
                    split = rss_split_mb(aggregator.pid)
                    samples.append({"t_s": round(time.monotonic() - started, 1), "aggregator_rss_mb": round(split.get("VmRSS", 0.0), 1),
                                    "aggregator_anon_mb": round(split.get("RssAnon", 0.0), 1),
                                    "aggregator_file_mb": round(split.get("RssFile", 0.0), 1),
                                    "pluginserver_rss_mb": round(rss_mb(server.pid or 0), 1)})  # fmt: skip

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deadline = time.monotonic() + args.minutes * 60
            interval = 1.0 / args.rate
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "steady traffic"}]}
            with httpx.Client(base_url=front.url, headers={"apikey": "demo-key-checkout", "x-mock-behavior": "delay-ms:0"},
                              timeout=30) as client:  # fmt: skip
                next_at = time.monotonic()
                while time.monotonic() < deadline:
                    try:
                        client.post("/openai/v1/chat/completions", json=body, params={"n": sent}).raise_for_status()
                    except httpx.HTTPError:
                        errors += 1
                    sent += 1
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
            front.wait_for_logs(60)
            stop.set()
            front.stop()
    finally:
        server.stop()
        aggregator.send_signal(signal.SIGTERM)
        aggregator.wait(60)
        shutil.rmtree(workdir, ignore_errors=True)
    first, last = (samples[0], samples[-1]) if samples else ({}, {})
    print(json.dumps({
        "minutes": args.minutes, "rate_rps": args.rate, "requests": sent, "errors": errors, "samples": samples,
        "aggregator_rss_mb_first_last_max": [first.get("aggregator_rss_mb"), last.get("aggregator_rss_mb"),
                                             max((s["aggregator_rss_mb"] for s in samples), default=None)],
        "aggregator_anon_mb_max": max((s["aggregator_anon_mb"] for s in samples), default=None),
        "pluginserver_rss_mb_first_last_max": [first.get("pluginserver_rss_mb"), last.get("pluginserver_rss_mb"),
                                               max((s["pluginserver_rss_mb"] for s in samples), default=None)],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
