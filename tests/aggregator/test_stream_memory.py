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

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb


def received() -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_events_received_total") or 0.0


def wait_until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_streams_next_batch_is_not_read_until_a_batch_as_large_would_fit(tmp_path: Path) -> None:
    agg = Aggregator(make_settings(tmp_path, max_pending_events=50))
    agg.start()
    release = threading.Event()
    marked = agg.rollups.after_insert
    agg.rollups.after_insert = lambda columns: (release.wait(30), marked(columns))  # type: ignore[method-assign]
    outbox: queue.Queue[pb.UsageBatch | None] = queue.Queue()

    def from_outbox() -> Iterator[pb.UsageBatch]:
        while (batch := outbox.get()) is not None:
            yield batch

    channel, stub = stub_for(agg)
    try:
        before = received()
        responses = stub.StreamUsage(from_outbox(), timeout=60)
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
