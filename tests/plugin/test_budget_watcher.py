"""The budget feed end to end over real gRPC: the aggregator's BudgetFeed, the plugin's BudgetWatcher.

Pushes on change, heartbeats while unchanged, the last state kept across a broken
stream and a restarted aggregator that has not evaluated yet, failover to the
next address, bearer tokens.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from support.aggregator_fixtures import free_port, sender_config
from support.waiting import wait_until

from ai_chargeback_aggregator.ingest.budget_feed import BudgetFeed
from ai_chargeback_plugin.budgets.watcher import BudgetWatcher
from ai_chargeback_proto import pb, pb_grpc


def state(version: str, *, exhausted: bool = False) -> pb.BudgetState:
    budget = pb.EnforcedBudget(budget_id="pay", scope=pb.BudgetScope(team="payments"), exhausted=exhausted, limit="10.00",
                               spend="12.00" if exhausted else "1.00", resets_at_unix_ms=int(time.time() * 1000) + 3_600_000)  # fmt: skip
    return pb.BudgetState(version=version, evaluated=True, budgets=[budget], model_snapshot_pattern="-[0-9]+$")


@contextmanager
def feed_server(port: int, *, token: str | None = None, heartbeat_s: float = 0.1) -> Iterator[BudgetFeed]:
    """The feed on a ``grpc.aio`` server on a loop thread of its own, as the aggregator serves it (server/app.py)."""
    feed = BudgetFeed(auth_token=token, heartbeat_s=heartbeat_s, aggregator_id=f"agg-{port}")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> grpc.aio.Server:
        server = grpc.aio.server()
        pb_grpc.add_BudgetFeedServicer_to_server(feed, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield feed
    finally:
        feed.close()
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def watch(port: int, token: str = "", count: int = 3) -> list[pb.BudgetState]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        metadata = [("authorization", f"Bearer {token}")] if token else None
        stream = pb_grpc.BudgetFeedStub(channel).WatchBudgets(pb.WatchBudgetsRequest(sender_id="t"), metadata=metadata, timeout=10)
        got = []
        for message in stream:
            got.append(message)
            if len(got) == count:
                stream.cancel()
                break
        return got
    finally:
        channel.close()


def test_the_feed_sends_state_then_heartbeats_then_changes() -> None:
    port = free_port()
    with feed_server(port) as feed:
        assert not watch(port, count=1)[0].evaluated  # before the first evaluation
        feed.publish(state("v1"))
        first, beat, again = watch(port, count=3)
        assert first.version == "v1" and not first.heartbeat and first.budgets[0].budget_id == "pay"
        assert first.aggregator_id == f"agg-{port}" and first.sent_at_unix_ms > 0
        assert beat.heartbeat and beat.version == "v1" and not beat.budgets and beat.evaluated_age_ms >= first.evaluated_age_ms
        assert again.heartbeat
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stream = pb_grpc.BudgetFeedStub(channel).WatchBudgets(pb.WatchBudgetsRequest(), timeout=10)
        assert next(stream).version == "v1"
        feed.publish(state("v2", exhausted=True))
        changed = next(m for m in stream if not m.heartbeat)
        assert changed.version == "v2" and changed.budgets[0].exhausted
        feed.close()  # shutdown ends the stream (else the 10 s deadline would raise here)
        assert all(m.heartbeat for m in stream)
        channel.close()


def test_a_wrong_token_is_refused() -> None:
    port = free_port()
    with feed_server(port, token="s3cret") as feed:
        feed.publish(state("v1"))
        assert watch(port, "s3cret", count=1)[0].version == "v1"
        with pytest.raises(grpc.RpcError) as refused:
            watch(port, "wrong", count=1)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_watcher_keeps_the_last_state_through_an_outage_and_fails_over() -> None:
    first_port, second_port = free_port(), free_port()
    watcher = BudgetWatcher(sender_config(f"127.0.0.1:{first_port}", f"127.0.0.1:{second_port}"))
    try:
        with feed_server(first_port) as first:
            first.publish(state("v1", exhausted=True))
            wait_until(lambda: watcher.snapshot is not None and watcher.snapshot.version == "v1")
            assert [b.budget_id for b in watcher.snapshot.exhausted] == ["pay"]  # type: ignore[union-attr]
            evaluated = watcher.snapshot.evaluated_at  # type: ignore[union-attr]
            wait_until(lambda: watcher.snapshot.evaluated_at > evaluated)  # type: ignore[union-attr]  # heartbeats refresh it
        # The first aggregator is gone: the last state stays.
        time.sleep(0.3)
        assert watcher.snapshot is not None and watcher.snapshot.version == "v1"
        with feed_server(second_port) as second:  # fail over; it has not evaluated yet: nothing is wiped
            time.sleep(0.5)
            assert watcher.snapshot.version == "v1"
            updates = watcher.updates
            second.publish(state("v2"))
            wait_until(lambda: watcher.snapshot.version == "v2")  # type: ignore[union-attr]
            assert watcher.updates == updates + 1 and watcher.snapshot.exhausted == ()  # type: ignore[union-attr]
    finally:
        watcher.close()
