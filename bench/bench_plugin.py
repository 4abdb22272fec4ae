"""Plugin overhead through the Kong harness: the real ai-chargeback plugin server against a
no-op Python plugin (the floor of any Python Kong plugin), gevent and threading modes,
non-streaming and streaming requests (default `auto` capture) on kong.yml's OpenAI route
(behind ai-proxy), non-streaming `auto` on the plain route without ai-proxy (/vllm: the
full access work), streaming with Kong's ai-proxy analytics (`usage_capture: ai_proxy`),
same harness, same upstream, same run.

Per configuration: handler time per phase (HandleEvent to "ret", PDK round trips
included), client-observed latency, PDK calls and RPC round trips per request, and
the plugin server's peak RSS. The access phase is on the request path; the log
phase runs after the client has its answer (Kong's log timer). Each configuration is
driven twice: back to back (each access overlaps the previous request's log phase) and
`isolated` (each request waits for the previous log phase: the access handler alone).

`log_only` rows: the log-only plugin `ai-chargeback-log` on kong.yml's openai-tools route
against (a) the same route with no plugin of ours and (b) the no-op plugin, three fronts
alive at once and driven in turn, request by request, in rotating order, so the three see
the same machine (the goal, <= 0.1 ms added at p50, is smaller than the noise between
separate runs).
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
from _common import peak_rss_mb, process_cpu_s, summary_ms
from kong_harness import PluginServerProcess
from kong_harness.ai_proxy import ai_proxy_hook
from kong_harness.bridge import ExternalPlugin
from kong_harness.front import KongFront
from support.gateway import KONG_YML, front_for, running_gateway
from support.mock_llm import MockLLM

from ai_chargeback_aggregator.settings import AggregatorSettings
from ai_chargeback_plugin.schema import defaults as schema_defaults

MESSAGES = [{"role": "user", "content": "Give me three reasons to meter LLM traffic at the gateway."}]

# Phase durations, recorded around the harness's phase runner on the request context itself
# (an id() key would be reused by a later context once an old one is freed).
PHASE_ATTR = "_bench_phase_s"
_original_run_phase = ExternalPlugin.run_phase


def _timed_run_phase(self: ExternalPlugin, ctx: Any, entity: Any, phase: str) -> Any:
    started = time.perf_counter()
    try:
        return _original_run_phase(self, ctx, entity, phase)
    finally:
        ctx.__dict__.setdefault(PHASE_ATTR, {})[phase] = time.perf_counter() - started


ExternalPlugin.run_phase = _timed_run_phase  # type: ignore[method-assign]


LOG_ONLY_GOAL_MS = 0.1
# The shipped flush intervals, not the tests' 50 ms: the aggregator runs in this process, on the
# cores the harness and the plugin servers share (in production it runs elsewhere), and an insert
# every 50 ms took ~40% of a core from the requests measured (our access p99 3.2-4.4 ms against
# 1.1-1.3 with the shipped 1 s).
SHIPPED_INTERVALS = {"plugin": {"flush_interval_ms": schema_defaults()["flush_interval_ms"]},
                     "aggregator": {"flush_interval_ms": AggregatorSettings.model_fields["flush_interval_ms"].default}}  # fmt: skip
PATHS = {"openai": "/openai/v1/chat/completions", "plain": "/vllm/v1/chat/completions",
         "tools": "/tools/openai/v1/chat/completions"}  # fmt: skip
OURS = ("ai-chargeback", "ai-chargeback-log")


def noop_config() -> dict[str, Any]:
    """kong.yml with every ai-chargeback(-log) block replaced by the no-op plugin."""
    config = yaml.safe_load(KONG_YML.read_text())
    for service in config.get("services", []):
        for plugin in service.get("plugins", []):
            if plugin["name"] in OURS:
                plugin["name"], plugin["config"] = "noop", {}
    return config


def bare_config() -> dict[str, Any]:
    """kong.yml with no plugin of ours at all (key-auth and ai-proxy stay)."""
    config = yaml.safe_load(KONG_YML.read_text())
    for service in config.get("services", []):
        service["plugins"] = [p for p in service.get("plugins", []) if p["name"] not in OURS]
    return config


def _body(streaming: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
    if streaming:
        body["stream"] = True
    return body


def _one(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    with client.stream("POST", path, json=body) as response:
        for _ in response.iter_bytes():
            pass
        assert response.status_code == 200, response.status_code
    return time.perf_counter() - started


def measure(front: KongFront, latencies: list[float], requests: int) -> dict[str, Any]:
    """Client latency, handler time per phase and PDK/RPC counts of `front`'s last `requests` requests."""
    front.wait_for_logs(60)
    contexts = list(front.requests)[-requests:]
    phases: dict[str, list[float]] = defaultdict(list)
    for ctx in contexts:
        for phase, seconds in ctx.__dict__.get(PHASE_ATTR, {}).items():
            phases[phase].append(seconds)
    stats = front.stats()
    pdk_per_request = sum(stats["pdk_calls_per_request_by_phase"].values())
    return {
        "client_latency": summary_ms(latencies),
        "handler": {phase: summary_ms(values) for phase, values in sorted(phases.items())},
        "handler_total_p50_ms": round(sum(statistics.median(v) for v in phases.values()) * 1000, 3) if phases else 0.0,
        # Access handlers invoked per request: RPCs into a plugin server before the upstream answers.
        "access_handlers_per_request": round(len(phases.get("access", [])) / max(1, len(contexts)), 2),
        "pdk_calls_per_request": round(pdk_per_request, 2),
        "pdk_calls_per_request_by_phase": {k: round(v, 2) for k, v in stats["pdk_calls_per_request_by_phase"].items()},
        "rpc_round_trips_per_request": round(stats["rpc_round_trips_per_request"], 2),
    }


def drive(front: KongFront, requests: int, streaming: bool, path: str = PATHS["openai"], *,
          isolated: bool = False, server_pid: int | None = None) -> dict[str, Any]:  # fmt: skip
    """`requests` requests one after another (after 50 for warm-up).

    Sent back to back, each request's access overlaps the previous request's log phase (Kong's
    log timer), in the plugin server and in this one-process Python harness alike. `isolated`
    waits for that log phase first: the access handler's own cost, nothing else in flight.
    `server_pid`: also the plugin server's CPU per request (every thread: handlers, RPC, sender).
    """
    latencies: list[float] = []
    cpu_at_start = 0.0
    with httpx.Client(base_url=front.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
        for index in range(requests + 50):
            if isolated or (index == 50 and server_pid):
                front.wait_for_logs(30)
            if index == 50 and server_pid:
                cpu_at_start = process_cpu_s(server_pid)
            took = _one(client, path, _body(streaming))
            if index >= 50:  # warm-up excluded
                latencies.append(took)
    result = measure(front, latencies, requests)
    if server_pid:
        result["plugin_server_cpu_us_per_request"] = round((process_cpu_s(server_pid) - cpu_at_start) / requests * 1e6)
    return result


def drive_both(front: KongFront, requests: int, streaming: bool, path: str, server_pid: int | None) -> dict[str, Any]:
    result = drive(front, requests, streaming, path, server_pid=server_pid)
    isolated = drive(front, requests, streaming, path, isolated=True)
    result["isolated"] = {"client_latency": isolated["client_latency"], "handler": isolated["handler"]}
    return result


def run_noop(workdir: Path, gevent: bool, requests: int, streaming: bool, path: str = PATHS["openai"]) -> dict[str, Any]:
    (workdir / "noop").mkdir(parents=True, exist_ok=True)
    server = PluginServerProcess.for_script(_common.ROOT / "tests" / "support" / "noop_plugin.py", gevent=gevent,
                                            prefix=workdir / "noop", socket_name="noop.sock", log_path=workdir / "noop.log")  # fmt: skip
    with MockLLM() as llm:
        front = front_for(noop_config(), {"noop": server}, llm.url)
        try:
            result = drive_both(front, requests, streaming, path, server.pid)
            result["plugin_server_peak_rss_mb"] = round(peak_rss_mb(server.pid or 0), 1)
        finally:
            front.stop()
            server.stop()
    return result


def run_chargeback(workdir: Path, gevent: bool, requests: int, streaming: bool, ai_proxy: bool,
                   path: str = PATHS["openai"]) -> dict[str, Any]:  # fmt: skip
    overrides = {"usage_capture": "ai_proxy" if ai_proxy else "auto", **SHIPPED_INTERVALS["plugin"]}
    with running_gateway(workdir, gevent=gevent, plugin_overrides=overrides, serialize_hook=ai_proxy_hook() if ai_proxy else None,
                         aggregator_settings=SHIPPED_INTERVALS["aggregator"]) as gw:  # fmt: skip
        result = drive_both(gw.front, requests, streaming, path, gw.plugin_server.pid)
        gw.wait_for_events(2 * (requests + 50), timeout_s=120)
        result["plugin_server_peak_rss_mb"] = round(peak_rss_mb(gw.plugin_server.pid or 0), 1)
        result["events_stored"] = gw.query("SELECT count() FROM chargeback.usage_events FINAL")[0][0]
    return result


def run_log_only(workdir: Path, gevent: bool, requests: int) -> dict[str, Any]:
    """ai-chargeback-log vs no plugin of ours vs the no-op plugin on the openai-tools route, interleaved."""
    (workdir / "noop").mkdir(parents=True, exist_ok=True)
    noop_server = PluginServerProcess.for_script(_common.ROOT / "tests" / "support" / "noop_plugin.py", gevent=gevent,
                                                 prefix=workdir / "noop", socket_name="noop.sock", log_path=workdir / "noop.log")  # fmt: skip
    with running_gateway(workdir / "c", gevent=gevent, plugin_overrides=SHIPPED_INTERVALS["plugin"],
                         aggregator_settings=SHIPPED_INTERVALS["aggregator"]) as gw:  # fmt: skip
        fronts = {"ai_chargeback_log": gw.front}
        try:
            fronts["no_plugin"] = front_for(bare_config(), {}, gw.llm.url)
            fronts["noop"] = front_for(noop_config(), {"noop": noop_server}, gw.llm.url)
            latencies: dict[str, list[float]] = {name: [] for name in fronts}
            clients = {name: httpx.Client(base_url=f.url, headers={"apikey": "demo-key-checkout"}, timeout=30)
                       for name, f in fronts.items()}  # fmt: skip
            try:
                names = list(clients)
                for index in range(requests + 50):
                    # In turn, so the three share every moment of the run; the order rotates, so each one
                    # follows each other one (and its log phase, still running) equally often.
                    for name in names[index % 3:] + names[: index % 3]:
                        took = _one(clients[name], PATHS["tools"], _body(False))
                        if index >= 50:
                            latencies[name].append(took)
            finally:
                for client in clients.values():
                    client.close()
            result = {name: measure(front, latencies[name], requests) for name, front in fronts.items()}
            gw.wait_for_events(requests + 50, timeout_s=120)
            result["ai_chargeback_log"]["events_stored"] = gw.query("SELECT count() FROM chargeback.usage_events FINAL")[0][0]
            result["ai_chargeback_log"]["plugin_server_peak_rss_mb"] = round(peak_rss_mb(gw.plugin_server.pid or 0), 1)
            result["noop"]["plugin_server_peak_rss_mb"] = round(peak_rss_mb(noop_server.pid or 0), 1)
        finally:
            for name in ("no_plugin", "noop"):
                if name in fronts:
                    fronts[name].stop()
            noop_server.stop()
    ours, bare, noop = (result[k]["client_latency"] for k in ("ai_chargeback_log", "no_plugin", "noop"))
    added = round(ours["p50_ms"] - bare["p50_ms"], 3)
    met = added <= LOG_ONLY_GOAL_MS
    access = result["ai_chargeback_log"]["access_handlers_per_request"]
    reason = (f"no access handler ({access}/req): nothing of ours before the upstream answers; the log runs in "
              "Kong's log timer after the answer") if met else (
              f"access handlers {access}/req; the added time is the log timer's CPU (serialize, event, sender) "
              "taking the shared cores from the next request, not a request-path round trip" if access == 0 else
              f"access handlers {access}/req: a request-path round trip")  # fmt: skip
    return {
        **result,
        "added_p50_ms_vs_no_plugin": added,
        "added_p99_ms_vs_no_plugin": round(ours["p99_ms"] - bare["p99_ms"], 3),
        "added_p50_ms_vs_noop": round(ours["p50_ms"] - noop["p50_ms"], 3),
        "added_p99_ms_vs_noop": round(ours["p99_ms"] - noop["p99_ms"], 3),
        "goal_added_p50_ms": LOG_ONLY_GOAL_MS,
        "goal_met": met,
        "reason": reason,
    }


def _ratio(metered: dict[str, Any], noop: dict[str, Any], stat: str) -> float:
    ours, floor = metered["isolated"]["handler"]["access"][stat], noop["isolated"]["handler"]["access"][stat]
    return round(ours / max(floor, 1e-9), 2)


KINDS = {  # kind -> (streaming, ai_proxy capture, path)
    "non_streaming": (False, False, PATHS["openai"]),
    "streaming": (True, False, PATHS["openai"]),
    "non_streaming_plain": (False, False, PATHS["plain"]),
    "streaming_ai_proxy": (True, True, PATHS["openai"]),
}


def _round(workdir: Path, gevent: bool, requests: int, kind: str) -> dict[str, Any]:
    """One no-op run and one of ours, back to back in time: their ratios pair figures of one moment."""
    streaming, ai_proxy, path = KINDS[kind]
    try:
        noop = run_noop(workdir / "n", gevent, requests, streaming, path)
        metered = run_chargeback(workdir / "c", gevent, requests, streaming, ai_proxy, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "ai_chargeback": metered,
        "noop": noop,
        "ratio_access_handler_p50": round(metered["handler"]["access"]["p50_ms"] / max(noop["handler"]["access"]["p50_ms"], 1e-9), 2),
        "ratio_access_handler_p99": round(metered["handler"]["access"]["p99_ms"] / max(noop["handler"]["access"]["p99_ms"], 1e-9), 2),
        "ratio_access_handler_p50_isolated": _ratio(metered, noop, "p50_ms"),
        "ratio_access_handler_p99_isolated": _ratio(metered, noop, "p99_ms"),
        "ratio_handler_total_p50": round(metered["handler_total_p50_ms"] / max(noop["handler_total_p50_ms"], 1e-9), 2),
        "ratio_client_latency_p50": round(metered["client_latency"]["p50_ms"] / noop["client_latency"]["p50_ms"], 3),
        "ratio_client_latency_p99": round(metered["client_latency"]["p99_ms"] / noop["client_latency"]["p99_ms"], 3),
    }


ROUND_RATIOS = ("ratio_access_handler_p50", "ratio_access_handler_p50_isolated", "ratio_client_latency_p50")


def median_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median back-to-back ratio, each goal ratio the median of its own, and every round's ratios.

    One run of a few hundred requests on a shared machine lands on either side of a
    1.5× line by chance; the median of alternated rounds is what the goal is judged on.
    """
    ordered = sorted(rounds, key=lambda r: r["ratio_access_handler_p50"])
    row = dict(ordered[len(ordered) // 2])
    for name in ROUND_RATIOS:
        row[name] = statistics.median(r[name] for r in rounds)
    row["rounds"] = [{name: r[name] for name in ROUND_RATIOS} for r in rounds]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="alternated no-op/ours rounds per row; the median is reported")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 100 if args.quick else args.requests
    rounds = 1 if args.quick else args.rounds
    results: dict[str, Any] = {}
    for mode in ("gevent", "threads"):
        for kind in KINDS:
            runs = [_round(Path(tempfile.mkdtemp(prefix="bench-plugin-")), mode == "gevent", requests, kind) for _ in range(rounds)]
            results[f"{mode}/{kind}"] = median_of_rounds(runs)
        workdir = Path(tempfile.mkdtemp(prefix="bench-plugin-"))
        try:
            results[f"{mode}/log_only"] = run_log_only(workdir, mode == "gevent", requests)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
