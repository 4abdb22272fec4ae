"""The plugin's sender against a real aggregator over a real gRPC channel."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from support.aggregator_fixtures import count_rows, make_event, make_settings, refusing_address, sender_config

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.metrics import REGISTRY
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_plugin.sender import EventSender
from ai_chargeback_plugin.spool import MemorySpool
from ai_chargeback_proto import pb


def test_events_are_batched_streamed_and_acked(aggregator: Aggregator) -> None:
    sender = EventSender(sender_config(f"127.0.0.1:{aggregator.grpc_port}"))
    try:
        for i in range(1000):
            assert sender.offer(make_event(kong_request_id=f"r{i}"))
        assert sender.flush(30)
        assert count_rows(aggregator) == 1000
        assert (sender.counters.queued, sender.counters.sent, sender.counters.dropped) == (1000, 1000, 0)
    finally:
        sender.close()


def test_a_full_batch_goes_at_once_and_a_partial_one_waits_for_the_interval(aggregator: Aggregator) -> None:
    """An offer wakes nobody (a wake per event costs the request path's thread), except the one that fills a batch."""
    sender = EventSender(sender_config(f"127.0.0.1:{aggregator.grpc_port}", batch_max_events=5, flush_interval_ms=60_000))
    try:
        for batch in range(2):  # the first may be taken before the sender thread first waits; the second is not
            for i in range(5):
                assert sender.offer(make_event(kong_request_id=f"full{batch}-{i}"))
            assert sender.flush(30)  # long before the 60 s interval
            assert count_rows(aggregator) == 5 * (batch + 1)
            time.sleep(0.2)  # the sender thread is back in its 60 s wait
        for i in range(3):
            assert sender.offer(make_event(kong_request_id=f"partial{i}"))
        time.sleep(1.0)
        assert count_rows(aggregator) == 10  # still waiting for its interval: nobody was woken
    finally:
        sender.close(10.0)  # a close wakes the sender, which delivers what is queued
    assert count_rows(aggregator) == 13
    assert (sender.counters.queued, sender.counters.sent, sender.counters.dropped) == (13, 13, 0)


def test_drops_while_a_batch_is_written_get_a_loss_record_of_their_own(aggregator: Aggregator) -> None:
    """A batch carries the drops counted when it was made; drops counted while it is written come next, under a new id."""
    sender = EventSender(sender_config(f"127.0.0.1:{aggregator.grpc_port}"))
    write = sender._spool.append
    during_write = 0

    def append_while_requests_drop(batch: pb.UsageBatch) -> object:
        nonlocal during_write
        if batch.losses and not during_write:
            during_write = 7  # what offer() records on a full queue, from request threads, while this batch is written
            for _ in range(during_write):
                sender._record_loss("sender-queue-full", int(time.time() * 1000), 1)
        return write(batch)

    sender._spool.append = append_while_requests_drop  # type: ignore[method-assign]
    try:
        for _ in range(3):
            sender._record_loss("sender-queue-full", int(time.time() * 1000), 1)
        for i in range(10):
            assert sender.offer(make_event(kong_request_id=f"r{i}"))
        assert sender.flush(30)
    finally:
        sender.close(10.0)
    assert during_write == 7
    _, rows = aggregator.store.query("SELECT count(), sum(events_lost) FROM chargeback.delivery_losses FINAL")
    assert (rows[0][0], rows[0][1]) == (2, 10) and sender.counters.dropped == 10
    assert count_rows(aggregator) == 10


def test_many_threads_offering_at_once_lose_nothing_uncounted(tmp_path: Path) -> None:
    """kong-pdk's threads mode offers from many threads: each event is queued and stored, or dropped and reported."""
    settings = make_settings(tmp_path)
    agg = Aggregator(settings)
    agg.start()
    sender = EventSender(sender_config(settings.grpc_listen, queue_max_events=150, batch_max_events=50))
    per_thread, threads = 600, 8
    accepted: list[int] = []
    try:
        start = threading.Barrier(threads)

        def offer_all(index: int) -> None:
            start.wait()
            accepted.append(sum(sender.offer(make_event(kong_request_id=f"t{index}-{i}")) for i in range(per_thread)))

        workers = [threading.Thread(target=offer_all, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert sender.flush(60)
        taken, dropped = sum(accepted), sender.counters.dropped
        assert taken + dropped == per_thread * threads
        assert sender.counters.queued == taken == sender.counters.sent
        assert count_rows(agg) == taken
        _, rows = agg.store.query("SELECT sum(events_lost) FROM chargeback.delivery_losses FINAL")
        assert (rows[0][0] or 0) == dropped
    finally:
        sender.close(2.0)
        agg.stop(grace_s=2)


def test_fails_over_to_the_next_address_when_the_first_is_dead(aggregator: Aggregator) -> None:
    # Held refused for the whole test: a bare free port can be taken by another server meanwhile.
    with refusing_address() as dead:
        _fails_over(aggregator, dead)


def _fails_over(aggregator: Aggregator, dead: str) -> None:
    seed = next(n for n in range(100) if random.Random(n).randrange(2) == 0)
    random.seed(seed)  # the sender starts at a random address: make it the dead one
    sender = EventSender(sender_config(dead, f"127.0.0.1:{aggregator.grpc_port}"))
    try:
        for _ in range(50):
            sender.offer(make_event())
        assert sender.flush(30)
        assert count_rows(aggregator) == 50
        assert sender.counters.reconnects >= 1
    finally:
        sender.close()


def test_waits_for_an_aggregator_that_starts_late(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sender = EventSender(sender_config(settings.grpc_listen))
    try:
        for _ in range(30):
            sender.offer(make_event())
        assert not sender.flush(1.0)  # nobody listens yet: events wait, none is lost
        agg = Aggregator(settings)
        agg.start()
        try:
            assert sender.flush(30)
            assert count_rows(agg) == 30
        finally:
            agg.stop(grace_s=2)
    finally:
        sender.close()


def test_overflow_is_counted_and_reported_once_to_the_aggregator(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # A spool that holds only a few batches while the aggregator is away: the rest overflows.
    sender = EventSender(sender_config(settings.grpc_listen, queue_max_events=100, batch_max_events=5,
                                       spool_max_bytes=4000))  # fmt: skip
    reason_labels = ("sender-queue-full", "spool-full", "sender-queue-full,spool-full")
    before = {r: REGISTRY.get_sample_value("chargeback_events_lost_reported_total", {"reason": r}) or 0 for r in reason_labels}
    try:
        accepted = sum(sender.offer(make_event()) for _ in range(300))
        assert not sender.flush(1.0)
        dropped = sender.counters.dropped
        assert dropped >= 300 - 100 - 4000 // 100  # most of it could not be kept
        agg = Aggregator(settings)
        agg.start()
        try:
            assert sender.flush(60)
            assert count_rows(agg) == 300 - dropped
            assert accepted >= 300 - dropped
            lost = sum(
                (REGISTRY.get_sample_value("chargeback_events_lost_reported_total", {"reason": r}) or 0) - before[r]
                for r in reason_labels
            )
            assert lost == dropped  # each loss record counted once, though batches may be resent
            # ...and stored, so every report over the period says so.
            _, rows = agg.store.query("SELECT sum(events_lost), groupUniqArray(reason) FROM chargeback.delivery_losses FINAL")
            assert rows[0][0] == dropped
            today = datetime.now(UTC).date()
            report = build_report(LocalRunner(agg.store), first=today, last=today, by="team")
            assert report.totals["events_lost_reported"] == dropped
            assert any(f"reported {dropped} events lost" in warning for warning in report.warnings)
        finally:
            agg.stop(grace_s=2)
    finally:
        sender.close(timeout_s=0.5)


class _SlowHandOver(MemorySpool):
    """A spool whose batches take a while between leaving it and being in flight."""

    def next_unsent(self):  # type: ignore[no-untyped-def]
        record = super().next_unsent()
        if record is not None:
            time.sleep(0.5)
        return record


class _SlowQueue(deque):  # type: ignore[type-arg]
    """A queue whose events take a while between leaving it and being batched."""

    def popleft(self):  # type: ignore[no-untyped-def]
        item = super().popleft()
        time.sleep(0.5)
        return item


def test_flush_never_settles_while_an_event_is_between_two_places(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """flush() is what close and the tests trust: an event on its way from the queue to a batch, or a
    batch on its way from the spool to the stream, is not delivered. With nobody listening, flush must
    never say everything was acked."""
    import ai_chargeback_plugin.sender as sender_module

    monkeypatch.setattr(sender_module, "open_spool", lambda directory, max_bytes, key: _SlowHandOver(max_bytes))
    with refusing_address() as nobody:
        sender = EventSender(sender_config(nobody))
        sender._queue = _SlowQueue()
        try:
            settled = []
            for i in range(3):
                sender.offer(make_event(kong_request_id=f"r{i}"))
                settled.append(sender.flush(0.3))
            settled.append(sender.flush(1.5))
            assert settled == [False] * 4
        finally:
            sender.close(1.0)
