"""Plugin overhead through the Kong harness: the real ai-chargeback plugin server against a
no-op Python plugin (the floor of any Python Kong plugin), gevent and threading modes,
non-streaming and streaming requests (default `auto` capture), and streaming with Kong's
ai-proxy analytics (`usage_capture: ai_proxy`), same harness, same upstream, same run.

Per configuration: handler time per phase (HandleEvent to "ret", PDK round trips
included), client-observed latency, PDK calls and RPC round trips per request, and
the plugin server's peak RSS. The access phase is on the request path; the log
phase runs after the client has its answer (Kong's log timer).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts tests/ on sys.path)
import httpx
import yaml
from _common import peak_rss_mb, summary_ms
from kong_harness import PluginServerProcess
from kong_harness.ai_proxy import ai_proxy_hook
from kong_harness.bridge import ExternalPlugin
from kong_harness.front import KongFront
from support.gateway import KONG_YML, front_for, running_gateway
from support.mock_llm import MockLLM

MESSAGES = [{"role": "user", "content": "Give me three reasons to meter LLM traffic at the gateway."}]

# Phase durations per request context, recorded around the harness's phase runner.
_phase_s: dict[int, dict[str, float]] = defaultdict(dict)
_original_run_phase = ExternalPlugin.run_phase


def _timed_run_phase(self: ExternalPlugin, ctx: Any, entity: Any, phase: str) -> Any:
    started = time.perf_counter()
    try:
        return _original_run_phase(self, ctx, entity, phase)
    finally:
        _phase_s[id(ctx)][phase] = time.perf_counter() - started


ExternalPlugin.run_phase = _timed_run_phase  # type: ignore[method-assign]


def noop_config() -> dict[str, Any]:
    """kong.yml with every ai-chargeback block replaced by the no-op plugin."""
    config = yaml.safe_load(KONG_YML.read_text())
    for service in config.get("services", []):
        for plugin in service.get("plugins", []):
            if plugin["name"] == "ai-chargeback":
                plugin["name"], plugin["config"] = "noop", {}
    return config


def drive(front: KongFront, requests: int, streaming: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
    if streaming:
        body["stream"] = True
    latencies: list[float] = []
    with httpx.Client(base_url=front.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
        for index in range(requests + 50):
            started = time.perf_counter()
            with client.stream("POST", "/openai/v1/chat/completions", json=body) as response:
                for _ in response.iter_bytes():
                    pass
                assert response.status_code == 200, response.status_code
            if index >= 50:  # warm-up excluded
                latencies.append(time.perf_counter() - started)
    front.wait_for_logs(60)
    contexts = list(front.requests)[-requests:]
    phases: dict[str, list[float]] = defaultdict(list)
    for ctx in contexts:
        for phase, seconds in _phase_s.get(id(ctx), {}).items():
            phases[phase].append(seconds)
    stats = front.stats()
    pdk_per_request = sum(stats["pdk_calls_per_request_by_phase"].values())
    return {
        "client_latency": summary_ms(latencies),
        "handler": {phase: summary_ms(values) for phase, values in sorted(phases.items())},
        "handler_total_p50_ms": round(sum(statistics.median(v) for v in phases.values()) * 1000, 3) if phases else 0.0,
        "pdk_calls_per_request": round(pdk_per_request, 2),
        "pdk_calls_per_request_by_phase": {k: round(v, 2) for k, v in stats["pdk_calls_per_request_by_phase"].items()},
        "rpc_round_trips_per_request": round(stats["rpc_round_trips_per_request"], 2),
    }


def run_noop(workdir: Path, gevent: bool, requests: int, streaming: bool) -> dict[str, Any]:
    (workdir / "noop").mkdir(parents=True, exist_ok=True)
    server = PluginServerProcess.for_script(_common.ROOT / "tests" / "support" / "noop_plugin.py", gevent=gevent,
                                            prefix=workdir / "noop", socket_name="noop.sock", log_path=workdir / "noop.log")  # fmt: skip
    with MockLLM() as llm:
        front = front_for(noop_config(), {"noop": server}, llm.url)
        try:
            result = drive(front, requests, streaming)
            result["plugin_server_peak_rss_mb"] = round(peak_rss_mb(server.pid or 0), 1)
        finally:
            front.stop()
            server.stop()
    return result


def run_chargeback(workdir: Path, gevent: bool, requests: int, streaming: bool, ai_proxy: bool) -> dict[str, Any]:
    overrides = {"usage_capture": "ai_proxy"} if ai_proxy else None
    with running_gateway(workdir, gevent=gevent, plugin_overrides=overrides, serialize_hook=ai_proxy_hook() if ai_proxy else None) as gw:
        result = drive(gw.front, requests, streaming)
        gw.wait_for_events(requests + 50, timeout_s=120)
        result["plugin_server_peak_rss_mb"] = round(peak_rss_mb(gw.plugin_server.pid or 0), 1)
        result["events_stored"] = gw.query("SELECT count() FROM chargeback.usage_events FINAL")[0][0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 100 if args.quick else args.requests
    results: dict[str, Any] = {}
    for mode in ("gevent", "threads"):
        for kind in ("non_streaming", "streaming", "streaming_ai_proxy"):
            streaming = kind != "non_streaming"
            workdir = Path(tempfile.mkdtemp(prefix="bench-plugin-"))
            try:
                noop = run_noop(workdir / "n", mode == "gevent", requests, streaming)
                metered = run_chargeback(workdir / "c", mode == "gevent", requests, streaming, kind.endswith("ai_proxy"))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            access_ratio = metered["handler"]["access"]["p50_ms"] / max(noop["handler"]["access"]["p50_ms"], 1e-9)
            results[f"{mode}/{kind}"] = {
                "ai_chargeback": metered,
                "noop": noop,
                "ratio_access_handler_p50": round(access_ratio, 2),
                "ratio_handler_total_p50": round(metered["handler_total_p50_ms"] / max(noop["handler_total_p50_ms"], 1e-9), 2),
                "ratio_client_latency_p50": round(metered["client_latency"]["p50_ms"] / noop["client_latency"]["p50_ms"], 3),
                "ratio_client_latency_p99": round(metered["client_latency"]["p99_ms"] / noop["client_latency"]["p99_ms"], 3),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
