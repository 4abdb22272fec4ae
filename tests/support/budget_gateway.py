"""Gateways that enforce budgets, through the real path: Kong harness fronts (kong.yml) with real
ai-chargeback plugin servers, real gRPC to real aggregators (any number, one embedded store), a mock LLM.

Unlike support/gateway.py, aggregators here can be stopped and started again on
the same addresses while the gateways keep running, and several gateways can
each talk to their own aggregator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kong_harness import PluginServerProcess
from kong_harness.front import KongFront

from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.budgets.definitions import parse_records
from ai_chargeback_aggregator.budgets.store import save_budgets
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from support.aggregator_fixtures import free_port
from support.gateway import PLUGIN, front_for, kong_config_for
from support.mock_llm import MockLLM, expected_usage

KEYS = {"payments": "demo-key-checkout", "risk": "demo-key-fraud", "support": "demo-key-support"}
CHAT = "/openai/v1/chat/completions"


def chat_body(model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Reconcile the ledger."}]}


def tokens_per_request(model: str = "gpt-4o-mini") -> int:
    """Input + output tokens the mock answers every chat_body(model) with (the unit a token budget counts)."""
    usage = expected_usage(chat_body(model), {})
    return int(usage["prompt_tokens"] + usage["completion_tokens"])


@dataclass
class Sent:
    team: str
    gateway: int
    index: int
    started: float  # time.monotonic()
    finished: float
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class BudgetGateways:
    settings: list[AggregatorSettings]
    aggregators: list[Aggregator | None]
    fronts: list[KongFront]
    servers: list[PluginServerProcess]
    llm: MockLLM
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> Any:
        agg = next(a for a in self.aggregators if a is not None)
        return agg.store

    def load(self, *records: Mapping[str, Any]) -> None:
        save_budgets(self.store, parse_records([dict(r) for r in records]))
        for agg in self.aggregators:
            if agg is not None:
                agg.budgets.kick()

    def stop_aggregator(self, index: int) -> None:
        agg = self.aggregators[index]
        assert agg is not None
        agg.stop(grace_s=2)
        self.aggregators[index] = None

    def start_aggregator(self, index: int) -> Aggregator:
        agg = Aggregator(self.settings[index])
        agg.start()
        self.aggregators[index] = agg
        return agg

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.store.query(sql, params)[1]

    def runner(self) -> LocalRunner:
        return LocalRunner(self.store)

    def request(self, team: str, *, gateway: int = 0, model: str = "gpt-4o-mini", index: int = 0,
                client: httpx.Client | None = None) -> Sent:  # fmt: skip
        started = time.monotonic()
        own = client is None
        client = client or httpx.Client(timeout=30)
        try:
            answer = client.post(self.fronts[gateway].url + CHAT, json=chat_body(model), headers={"apikey": KEYS[team]})
        finally:
            if own:
                client.close()
        sent = Sent(team, gateway, index, started, time.monotonic(), answer.status_code, dict(answer.headers), answer.content)
        with self._lock:
            self.sent.append(sent)
        return sent

    def drive(self, plan: Sequence[tuple[str, int, float, int]], *, workers: int = 12) -> list[Sent]:
        """Paced load: (team, gateway, requests per second, count) each, all at once; requests are sent at
        their scheduled time (open loop) by a pool of clients; returns what was sent, in start order."""
        t0 = time.monotonic() + 0.2
        schedule = sorted((t0 + i / rate, team, gateway, i) for team, gateway, rate, count in plan for i in range(count))
        clients = threading.local()

        def one(item: tuple[float, str, int, int]) -> Sent:
            due, team, gateway, index = item
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not hasattr(clients, "client"):
                clients.client = httpx.Client(timeout=30)
            return self.request(team, gateway=gateway, index=index, client=clients.client)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, schedule))
        return sorted(results, key=lambda s: s.started)

    def wait_for_events(self, count: int, where: str = "1", timeout_s: float = 120.0) -> int:
        for front in self.fronts:
            front.wait_for_logs(timeout_s)
        deadline = time.monotonic() + timeout_s
        stored = 0
        while time.monotonic() < deadline:
            stored = int(self.query(f"SELECT count() FROM chargeback.usage_events FINAL WHERE {where}")[0][0])
            if stored >= count:
                return stored
            time.sleep(0.1)
        raise TimeoutError(f"{stored} of {count} events ({where}) stored")


@contextmanager
def budget_gateways(workdir: Path, *, aggregators: int = 1, gateways: int = 1, route_to: Sequence[Sequence[int]] | None = None,
                    plugin_overrides: Mapping[str, Any] | None = None, aggregator_settings: Mapping[str, Any] | None = None,
                    start_aggregators: bool = True, gevent: bool = True) -> Iterator[BudgetGateways]:  # fmt: skip
    """``route_to[g]``: the aggregators gateway g lists (default: every one, in order)."""
    settings = [
        AggregatorSettings(store_dsn=f"chdb://{workdir / 'store'}", grpc_listen=f"127.0.0.1:{free_port()}",
                           http_listen=f"127.0.0.1:{free_port()}", flush_interval_ms=50, budget_min_interval_s=0,
                           budget_poll_s=0.1, budget_claim_settle_s=0.1, **dict(aggregator_settings or {}))  # fmt: skip
        for _ in range(aggregators)
    ]
    route_to = route_to or [list(range(aggregators))] * gateways
    with ExitStack() as stack:
        running: list[Aggregator | None] = [None] * aggregators
        llm = MockLLM().start()
        stack.callback(llm.stop)
        env = BudgetGateways(settings, running, [], [], llm)

        def stop_all() -> None:
            for index, agg in enumerate(env.aggregators):
                if agg is not None:
                    agg.stop(grace_s=2)
                    env.aggregators[index] = None

        stack.callback(stop_all)
        if start_aggregators:
            for index in range(aggregators):
                env.start_aggregator(index)
        for g in range(gateways):
            home = workdir / f"kong{g}"
            home.mkdir(parents=True, exist_ok=True)
            server = PluginServerProcess.for_console_script("ai-chargeback-pluginserver", gevent=gevent, prefix=home,
                                                            log_path=workdir / f"pluginserver{g}.log")  # fmt: skip
            stack.callback(server.stop)
            overrides = {"flush_interval_ms": 100, **dict(plugin_overrides or {}),
                         "aggregator_addresses": [settings[a].grpc_listen for a in route_to[g]]}  # fmt: skip
            config = kong_config_for(settings[0].grpc_listen, workdir / f"spool{g}", overrides=overrides)
            front = front_for(config, {PLUGIN: server}, llm.url)
            stack.callback(front.stop)
            env.fronts.append(front)
            env.servers.append(server)
        yield env
        for front in env.fronts:
            front.wait_for_logs(30)
            front.raise_failures()
