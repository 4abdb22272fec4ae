"""The log phase lets the request path go first (scheduling.py), in a real gevent hub.

The order rules are checked on gevent itself; where the handler yields is checked with
a recorder of PDK calls standing in for Kong, because the rule is about the order of
calls, not their answers: never before the first PDK call (kong-pdk's HandleEvent
still holds its global event lock there), and before each stretch of Python work after one.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import gevent
import gevent.socket
import pytest
from support.pdk_recorder import RecordingKong

from ai_chargeback_plugin import scheduling
from ai_chargeback_plugin.handler import Plugin

YIELD = "scheduling.after_requests"


@pytest.fixture
def gevent_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(scheduling, "_wait", scheduling._wait)  # restored after the test
    scheduling.use_gevent()
    yield


def test_without_gevent_mode_it_waits_for_nothing() -> None:
    assert scheduling._wait is scheduling._no_wait
    order: list[str] = []

    def metering() -> None:
        scheduling.after_requests()
        order.append("metering")

    gevent.joinall([gevent.spawn(metering), gevent.spawn(order.append, "request")])
    assert order == ["metering", "request"]  # spawn order: nothing reordered it


def test_a_ready_greenlet_and_an_arrived_rpc_go_before_the_metering(gevent_mode: None) -> None:
    left, right = socket.socketpair()
    reader = gevent.socket.socket(fileno=right.detach())
    order: list[str] = []

    def access_rpc() -> None:
        reader.recv(16)  # waits in the hub until bytes arrive, like the listener's read of an RPC
        order.append("access rpc")

    def metering() -> None:
        scheduling.after_requests()
        order.append("metering")

    try:
        waiting = gevent.spawn(access_rpc)
        gevent.sleep(0)  # the reader is now parked on its socket
        left.sendall(b"HandleEvent")  # the RPC arrives before the metering runs
        greenlets = [gevent.spawn(metering), gevent.spawn(order.append, "ready"), waiting]
        gevent.joinall(greenlets, timeout=10)
        assert order == ["ready", "access rpc", "metering"]
    finally:
        left.close()
        reader.close()


def test_a_server_never_idle_still_meters(gevent_mode: None) -> None:
    """A hub with always something ready never runs idle watchers: the wait ends at MAX_WAIT_S."""
    busy = True
    spins = 0

    def always_ready() -> None:
        nonlocal spins
        while busy:
            spins += 1
            gevent.sleep(0)

    spinner = gevent.spawn(always_ready)
    try:
        metering = gevent.spawn(scheduling.after_requests)
        metering.join(timeout=10)
        assert metering.successful()
        assert spins > 1  # the busy greenlet did run while the metering waited
    finally:
        busy = False
        spinner.join(timeout=10)


def _serialized() -> str:
    return json.dumps({
        "request": {"id": "r-1", "method": "POST", "headers": {"content-type": "application/json"}, "size": 120},
        "response": {"status": 200, "headers": {"content-type": "application/json"}, "size": 300},
        "upstream_uri": "/v1/chat/completions", "source": "upstream", "tries": [{"ip": "127.0.0.1", "port": 443}],
        "latencies": {"request": 40, "proxy": 35, "kong": 5}, "started_at": int(time.time() * 1000),
        "service": {"host": "api.openai.com", "name": "openai"}, "route": {"name": "chat"},
        "consumer": {"id": "c-1", "username": "checkout", "tags": ["team:payments", "tenant:acme"]},
    })  # fmt: skip


ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}  # fmt: skip


def test_the_log_phase_yields_only_after_its_first_pdk_call_and_before_each_stretch_of_work(monkeypatch: pytest.MonkeyPatch) -> None:
    kong = RecordingKong(answers={"kong.log.serialize": _serialized(),
                                  "kong.service.response.get_raw_body": json.dumps(ANSWER).encode()})  # fmt: skip
    monkeypatch.setattr(scheduling, "_wait", lambda: kong.calls.append((YIELD, ())))
    plugin = Plugin({"aggregator_addresses": ["127.0.0.1:9"], "spool_dir": "", "provider": "openai"})
    assert plugin.sender is not None
    queued = plugin.sender.counters.queued
    try:
        plugin.log(kong)
        assert plugin.sender.counters.queued == queued + 1  # the request was metered
        assert kong.methods == ["kong.log.serialize", YIELD, "kong.service.response.get_raw_body", YIELD]
    finally:
        plugin.sender.close(0.5)
