"""What a stream holds in the aggregator while the store is busy: real gRPC, real writer, real chDB.

A batch read off the wire is admitted and held until the writer takes it; a stored batch is
held until its stream sends the ack. Neither should hold more than it needs: a stream's next
batch stays with its sender until one as large would fit, and a stored batch keeps no events.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.aggregator_fixtures import make_event, make_settings, stub_for, submit_events, written
from support.waiting import wait_until

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb


def received() -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_events_received_total") or 0.0


def batches_from(outbox: queue.Queue[pb.UsageBatch | None]) -> Iterator[pb.UsageBatch]:
    """A stream's requests as the test puts them in ``outbox``, until None."""
    while (batch := outbox.get()) is not None:
        yield batch


def test_a_streams_next_batch_is_not_read_until_a_batch_as_large_would_fit(tmp_path: Path) -> None:
    agg = Aggregator(make_settings(tmp_path, max_pending_events=50))
    agg.start()
    release = threading.Event()
    marked = agg.rollups.after_insert
    agg.rollups.after_insert = lambda columns: (release.wait(30), marked(columns))  # type: ignore[method-assign]
    outbox: queue.Queue[pb.UsageBatch | None] = queue.Queue()
    channel, stub = stub_for(agg)
    try:
        before = received()
        responses = stub.StreamUsage(batches_from(outbox), timeout=60)
        outbox.put(pb.UsageBatch(batch_id="b1", sequence=1, events=[make_event() for _ in range(40)]))
        wait_until(lambda: agg.writer.pending_events == 40)  # taken, inserted, held before its ack (the hook)
        outbox.put(pb.UsageBatch(batch_id="b2", sequence=2, events=[make_event() for _ in range(40)]))
        time.sleep(0.5)  # 40 + 40 > 50: the reader must leave batch 2 with gRPC
        assert received() - before == 40
        assert agg.writer.pending_events == 40
        release.set()
        acks = [next(responses), next(responses)]
        assert [(a.batch_id, a.status, a.events_stored) for a in acks] == [
            ("b1", pb.BatchAck.STATUS_STORED, 40),
            ("b2", pb.BatchAck.STATUS_STORED, 40),
        ]
        assert received() - before == 80
        outbox.put(None)
    finally:
        release.set()
        channel.close()
        agg.stop(grace_s=2)


class HeldFlushes:
    """An after-insert hook that holds the writer after each committed insert until told."""

    def __init__(self, marked: Any) -> None:
        self.marked = marked
        self.reached = [threading.Event() for _ in range(8)]
        self.release = [threading.Event() for _ in range(8)]
        self.calls = 0

    def __call__(self, columns: dict[str, list[Any]]) -> None:
        call, self.calls = self.calls, self.calls + 1
        if call < len(self.release):
            self.reached[call].set()
            self.release[call].wait(30)
        self.marked(columns)

    def release_all(self) -> None:
        for event in self.release:
            event.set()


def test_streams_that_find_room_for_one_batch_at_once_read_one_batch(tmp_path: Path) -> None:
    """Room for one more batch frees up while two streams wait for it: one reads, the other's
    batch stays with its sender (without claims both were read, and one waited here)."""
    agg = Aggregator(make_settings(tmp_path, max_pending_events=100))
    agg.start()
    hold = HeldFlushes(agg.rollups.after_insert)
    agg.rollups.after_insert = hold  # type: ignore[method-assign]
    outboxes: dict[str, queue.Queue[pb.UsageBatch | None]] = {name: queue.Queue() for name in "abc"}
    channel, stub = stub_for(agg)

    def send(name: str, sequence: int, events: int) -> None:
        outboxes[name].put(pb.UsageBatch(batch_id=f"{name}{sequence}", sequence=sequence, events=[make_event() for _ in range(events)]))

    try:
        before = received()
        acks = {name: stub.StreamUsage(batches_from(outboxes[name]), timeout=60) for name in "abc"}
        send("a", 1, 45)
        assert hold.reached[0].wait(30)  # flush 1 (a1) committed; the writer waits in the hook
        send("b", 1, 30)  # 75 pending: b's next (30) would not fit
        wait_until(lambda: agg.writer.pending_events == 75)
        send("c", 1, 25)  # 100 pending: c's next (25) would not fit
        wait_until(lambda: agg.writer.pending_events == 100)
        send("b", 2, 30)
        send("c", 2, 25)
        time.sleep(0.3)  # (and a's claim, made when a1 was taken, has expired: a sends nothing more)
        assert received() - before == 100  # no room: both second batches stay with their senders
        hold.release[0].set()  # flush 1 ends: b1 + c1 (55) remain, room for b2 or c2, not both
        assert hold.reached[1].wait(30)
        wait_until(lambda: received() - before > 100)
        time.sleep(0.5)
        assert received() - before in (125, 130)  # one of them read; without claims, both were
        hold.release_all()
        for name in "abc":
            outboxes[name].put(None)
        stored = {ack.batch_id: ack.events_stored for name in "abc" for ack in acks[name]}
        assert stored == {"a1": 45, "b1": 30, "b2": 30, "c1": 25, "c2": 25}
    finally:
        hold.release_all()
        for outbox in outboxes.values():
            outbox.put(None)
        channel.close()
        agg.stop(grace_s=2)


def test_a_store_that_hangs_without_failing_still_refuses_the_next_batch_after_the_store_wait(tmp_path: Path) -> None:
    """The wait before reading is bounded like the wait for room: past the store wait the batch is
    read, then refused with RESOURCE_EXHAUSTED, so its sender goes elsewhere instead of waiting on
    a silent stream."""
    agg = Aggregator(make_settings(tmp_path, max_pending_events=50, store_wait_timeout_ms=1000))
    agg.start()
    release = threading.Event()
    marked = agg.rollups.after_insert
    agg.rollups.after_insert = lambda columns: (release.wait(30), marked(columns))  # type: ignore[method-assign]
    channel, stub = stub_for(agg)
    try:
        before = received()
        batches = [pb.UsageBatch(batch_id=f"b{i}", sequence=i, events=[make_event() for _ in range(40)]) for i in (1, 2)]
        started = time.monotonic()
        responses = stub.StreamUsage(iter(batches), timeout=30)
        assert next(responses).status == pb.BatchAck.STATUS_RETRY  # held past the store wait
        with pytest.raises(grpc.RpcError) as refused:
            next(responses)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert received() - before == 80  # batch 2 was read once the wait ran out
        assert time.monotonic() - started < 10
    finally:
        release.set()
        channel.close()
        agg.stop(grace_s=2)


def test_a_stored_batch_keeps_its_quarantine_and_drops_its_events(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    writer = Writer(store, flush_interval_ms=5)
    writer.start()
    try:
        ticket = submit_events(writer, [make_event() for _ in range(3)] + [make_event(event_id="not-a-uuid")], "b1")
        assert written(ticket) == (3, 0)
        admitted = ticket.admitted
        assert (admitted.blob, len(admitted.ends), len(admitted.hashes), admitted.keys) == (b"", 0, 0, {})
        assert [(q.field, q.event_id) for q in admitted.quarantined] == [("event_id", "not-a-uuid")]
        assert ticket.outcome.quarantined == 1
    finally:
        writer.stop()
        store.close()
