"""No plugin handler waits forever, and nothing piles up, whatever Kong does.

Kong abandons a Python handler whenever a PDK call raises inside it
(mp_rpc.lua bridge_loop has no pcall): kong-pdk keeps that handler and its
channel forever. The plugin calls nothing that can raise (10,000 requests whose
upstream fails leave the plugin server's events in flight, greenlets, threads
and memory where they were), and the plugin server releases a handler Kong
did abandon anyway after AI_CHARGEBACK_ABANDONED_EVENT_S.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kong_pdk.server import MSG_RET
from support.metered_front import metered_front

from ai_chargeback_plugin.pluginserver import ChargebackPluginServer
from ai_chargeback_proto import pb

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Reconcile November."}]}).encode()
FAILING_REQUESTS = 10_000
CLIENTS = 8
# Bounds for "flat": a leaked handler holds a greenlet (and its frames, ~10 kB), so 10,000
# leaks would add 10,000 greenlets and tens of MB. Measured here: RSS settles ~10 MB
# above its warm-up level within the first 8,000 requests, then stays put.
MAX_RSS_GROWTH = 24 * 1024 * 1024
MAX_GREENLET_GROWTH = 8


@contextmanager
def _closed_port_url() -> Iterator[str]:
    """An upstream that refuses every connection for as long as the block runs: bound, never
    listening (a port closed at once can be taken by another server on the machine mid-test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _send(url: str, count: int, statuses: list[int]) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        for _ in range(count):
            conn.request("POST", "/llm/v1/chat/completions", body=BODY, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()


def _burst(url: str, total: int) -> list[int]:
    statuses: list[int] = []
    threads = [threading.Thread(target=_send, args=(url, total // CLIENTS, statuses)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.slow
def test_ten_thousand_failing_upstreams_leave_nothing_behind(tmp_path: Path) -> None:
    with _closed_port_url() as upstream, metered_front(tmp_path, upstream=upstream, keep_requests=100) as m:
        warm = _burst(m.url, 2000)  # sender, channel and allocator warm before the baseline
        m.events(len(warm), timeout_s=120)
        before = m.runtime_stats()
        statuses = _burst(m.url, FAILING_REQUESTS)
        assert statuses == [502] * FAILING_REQUESTS
        events = m.events(len(warm) + FAILING_REQUESTS, timeout_s=300)
        after = m.runtime_stats()
    failed = [e for e in events if e.http_status == 502 and e.upstream_tries == 1 and e.usage_source == pb.USAGE_SOURCE_NONE]
    assert len(failed) == len(events)  # one event per request, each with its status, tries and reason
    assert after["EventsInFlight"] == before["EventsInFlight"] == 0
    assert after["EventsReleased"] == 0  # nothing had to be rescued
    assert after["Threads"] == before["Threads"]
    assert after["Greenlets"] - before["Greenlets"] <= MAX_GREENLET_GROWTH, (before, after)
    assert after["RssBytes"] - before["RssBytes"] <= MAX_RSS_GROWTH, (before, after)


@pytest.mark.parametrize("gevent", [True, False], ids=["gevent", "threads"])
def test_a_handler_kong_abandoned_is_released(tmp_path: Path, gevent: bool) -> None:
    with metered_front(tmp_path, gevent=gevent, server_env={"AI_CHARGEBACK_ABANDONED_EVENT_S": "1"}) as m:
        m.front.inject_lua_error("kong.log.serialize", "injected: a PDK call raised inside Kong")
        status = _burst(m.url, CLIENTS)
        assert status == [200] * CLIENTS  # log runs after the answer: the clients never notice
        m.front.wait_for_logs(30)
        assert len(m.front.take_failures()) == CLIENTS
        stranded = m.runtime_stats()
        # kong-pdk holds each handler as Kong left it, until the abandon timeout releases it
        assert stranded["EventsInFlight"] + stranded["EventsReleased"] == CLIENTS
        deadline = time.monotonic() + 30
        while m.runtime_stats()["EventsInFlight"] and time.monotonic() < deadline:
            time.sleep(0.2)
        released = m.runtime_stats()
        assert (released["EventsInFlight"], released["EventsReleased"]) == (0, CLIENTS)
        m.front.inject_lua_error("kong.log.serialize", None)
        assert _burst(m.url, CLIENTS) == [200] * CLIENTS  # the server still serves
        assert len(m.events(CLIENTS)) == CLIENTS


class _SlowPop(dict):  # type: ignore[type-arg]
    """Events that take a while between leaving the in-flight map and being counted released."""

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        time.sleep(0.3)
        return value


class _ReturnsAtOnce:
    """A handler's channel whose handler returns as soon as it is told the event was abandoned."""

    def put(self, _: Any) -> None:
        pass

    def get(self) -> str:
        return MSG_RET


def test_runtime_stats_see_every_event_in_flight_or_released_while_the_reaper_releases() -> None:
    """In threads mode the reaper is a thread: a stats call must never land between an event leaving
    `events` and its count in `events_released` (the abandoned-handler test above could read 7 or 9 of 8 there)."""
    server = ChargebackPluginServer(use_gevent=False)
    server.events = _SlowPop()
    for eid in range(3):
        server.events[eid] = _ReturnsAtOnce()
        server._touched[eid] = time.monotonic() - 60
    reaper = threading.Thread(target=server.release_abandoned, args=(1.0,))
    reaper.start()
    seen: list[int] = []
    while reaper.is_alive():
        stats = server.get_runtime_stats()
        seen.append(stats["EventsInFlight"] + stats["EventsReleased"])
    reaper.join()
    assert seen and set(seen) == {3}, seen
    assert (len(server.events), server.events_released) == (0, 3)
