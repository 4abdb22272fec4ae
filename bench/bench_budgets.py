"""Budgets at the gateway: what enforcement costs the plugin, and how far a budget overshoots.

Cost: the same harness, real plugin server, aggregator and upstream as
bench_plugin.py (gevent, non-streaming, `auto` capture, one consumer), in
four runs measured back to back:

* ``off``: budget_enforcement false (the plugin as it was);
* ``on_none_exhausted``: enforcement on, enforced budgets loaded, none exhausted (the common path);
* ``on_other_exhausted``: another team's enforced budget exhausted (the request pays get_consumer);
* ``on_refused``: the request's own team is over its budget (429 from the access phase).

Overshoot: one team at 100 requests/s crosses a token budget; measured are
the requests admitted past the limit and the time from the crossing request
to the first 429, against the bound docs/budgets.md states.
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
import bench_plugin  # noqa: F401  (times every phase handler of the harness)
import httpx
from _common import summary_ms
from bench_plugin import MESSAGES, PHASE_ATTR
from kong_harness.front import KongFront
from support.budget_gateway import budget_gateways, tokens_per_request

BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}


def budget(budget_id: str, team: str, amount: int) -> dict[str, Any]:
    return {"id": budget_id, "scope": {"team": team}, "period": "daily", "amount": amount, "unit": "tokens",
            "action": "enforce", "effective_from": "2026-01-01"}  # fmt: skip


def drive(front: KongFront, requests: int, key: str, expect: int) -> dict[str, Any]:
    latencies: list[float] = []
    with httpx.Client(base_url=front.url, headers={"apikey": key}, timeout=30) as client:
        for index in range(requests + 50):
            started = time.perf_counter()
            response = client.post("/openai/v1/chat/completions", json=BODY)
            assert response.status_code == expect, (response.status_code, response.text[:300])
            if index >= 50:  # warm-up excluded
                latencies.append(time.perf_counter() - started)
    front.wait_for_logs(60)
    contexts = list(front.requests)[-requests:]
    phases: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, list[int]] = defaultdict(list)
    for ctx in contexts:
        for phase, seconds in ctx.__dict__.get(PHASE_ATTR, {}).items():
            phases[phase].append(seconds)
        for phase, count in ctx.pdk_calls_by_phase().items():
            calls[phase].append(count)
    return {
        "client_latency": summary_ms(latencies),
        "handler": {phase: summary_ms(values) for phase, values in sorted(phases.items())},
        "pdk_calls_per_request_by_phase": {phase: round(statistics.mean(v), 2) for phase, v in sorted(calls.items())},
    }


def cost(workdir: Path, requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with budget_gateways(workdir / "off", plugin_overrides={"flush_interval_ms": 1000}) as env:
        results["off"] = drive(env.fronts[0], requests, "demo-key-checkout", 200)
    with budget_gateways(workdir / "on", plugin_overrides={"flush_interval_ms": 1000, "budget_enforcement": True}) as env:
        env.load(budget("payments", "payments", 10**12), budget("risk", "risk", 10**12))
        _settle(env)
        results["on_none_exhausted"] = drive(env.fronts[0], requests, "demo-key-checkout", 200)
        env.load(budget("risk", "risk", 1))
        env.request("risk")
        _wait(lambda: env.request("risk").status == 429)
        results["on_other_exhausted"] = drive(env.fronts[0], requests, "demo-key-checkout", 200)
        env.load(budget("payments", "payments", 1))
        _wait(lambda: env.request("payments").status == 429)
        results["on_refused"] = drive(env.fronts[0], requests, "demo-key-checkout", 429)
    base = results["off"]["handler"]["access"]["p50_ms"]
    for name in ("on_none_exhausted", "on_other_exhausted", "on_refused"):
        run = results[name]
        run["access_p50_added_ms"] = round(run["handler"]["access"]["p50_ms"] - base, 3)
        run["ratio_access_handler_p50"] = round(run["handler"]["access"]["p50_ms"] / max(base, 1e-9), 2)
        run["ratio_client_latency_p50"] = round(run["client_latency"]["p50_ms"] / results["off"]["client_latency"]["p50_ms"], 3)
    return results


def overshoot(workdir: Path, seconds: float) -> dict[str, Any]:
    per_request = tokens_per_request()
    limit_requests = 200
    with budget_gateways(workdir / "overshoot", plugin_overrides={"budget_enforcement": True}) as env:
        env.load(budget("payments", "payments", per_request * limit_requests))
        _settle(env)
        count = int(100 * seconds)
        sent = env.drive([("payments", 0, 100.0, count), ("risk", 0, 20.0, int(20 * seconds))], workers=12)
        mine = [s for s in sent if s.team == "payments"]
        admitted = [s for s in mine if s.status == 200]
        refused = [s for s in mine if s.status == 429]
        crossing = admitted[limit_requests - 1] if len(admitted) >= limit_requests else None
        first = min(refused, key=lambda s: s.started) if refused else None
        agg = env.aggregators[0]
        assert agg is not None
        return {
            "rate_req_s": round((len(mine) - 1) / (mine[-1].started - mine[0].started), 1),
            "limit_requests": limit_requests,
            "admitted_past_limit": len(admitted) - limit_requests,
            "crossing_to_first_429_ms": round((first.started - crossing.finished) * 1000) if first and crossing else None,
            "other_team_refused": sum(s.status != 200 for s in sent if s.team == "risk"),
            "longest_evaluation_ms": round(agg.budgets.longest_pass_s * 1000),
            "config": {"plugin_flush_ms": 100, "aggregator_flush_ms": 50, "budget_poll_s": 0.1, "budget_min_interval_s": 0},
        }


def _settle(env: Any) -> None:
    _wait(lambda: all(a.budgets.passes > 1 for a in env.aggregators if a is not None))


def _wait(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-budgets-"))
    try:
        results = {"cost": cost(workdir, 100 if args.quick else args.requests), "overshoot": overshoot(workdir, 3 if args.quick else 6)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
