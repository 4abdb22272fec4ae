"""Delivery guarantees at the aggregator, with real processes, a real store and real gRPC."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.aggregator_fixtures import count_rows, make_event, make_settings, sender_config, stub_for
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_plugin.sender import EventSender
from ai_chargeback_proto import pb


@pytest.mark.slow
def test_kill_9_during_a_20k_stream_then_restart_stores_every_event_exactly_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    dsn, log = settings.store_dsn, tmp_path / "aggregator.log"
    server = start_serve(dsn, settings.grpc_listen, settings.http_listen, log)
    sender = EventSender(sender_config(settings.grpc_listen, spool_dir=str(tmp_path / "spool"), spool_max_bytes=256 << 20,
                                       batch_max_events=200, flush_interval_ms=20))  # fmt: skip
    try:
        for i in range(20_000):
            sender.offer(make_event(kong_request_id=f"r{i}"))
            if i == 8_000:
                time.sleep(0.5)  # let some batches be stored and acked first
                server.send_signal(signal.SIGKILL)
                server.wait(10)
        assert not sender.flush(1.0)  # events wait in the spool: nobody acks them
        server = start_serve(dsn, settings.grpc_listen, settings.http_listen, log)
        assert sender.flush(120), sender.counters
        assert sender.counters.dropped == 0
    finally:
        sender.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    raw, distinct, final = store_counts(dsn)
    assert (distinct, final) == (20_000, 20_000)
    assert raw == 20_000  # the restarted aggregator remembered what it had stored before the kill


def test_sigterm_drains_in_flight_batches_before_exit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "agg.log")
    channel = grpc.insecure_channel(settings.grpc_listen)
    from ai_chargeback_proto import pb_grpc

    stub = pb_grpc.UsageIngestStub(channel)
    batches = [pb.UsageBatch(batch_id=f"b{i}", sequence=i, events=[make_event() for _ in range(100)]) for i in range(1, 21)]

    first_ack = threading.Event()

    def requests():  # type: ignore[no-untyped-def]
        for index, batch in enumerate(batches):
            if index == 10:
                # Mid-stream, once the server holds the stream: a SIGTERM before the server has
                # even seen the call refuses it as a new one (UNAVAILABLE), which proves nothing.
                assert first_ack.wait(30)
                server.send_signal(signal.SIGTERM)
            yield batch

    acks: list[pb.BatchAck] = []
    try:
        for ack in stub.StreamUsage(requests(), timeout=60):
            acks.append(ack)
            first_ack.set()
    except grpc.RpcError as exc:
        # A stream still sending when the grace period ends may be cut; the sender resends.
        assert exc.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), exc
    channel.close()
    assert server.wait(30) == 0
    stored = sum(a.events_stored for a in acks if a.status == pb.BatchAck.STATUS_STORED)
    assert stored == len(acks) * 100 and len(acks) >= 10  # everything received before SIGTERM was acked
    raw, distinct, final = store_counts(settings.store_dsn)
    assert raw == distinct == final >= stored  # every acked event is durable; nothing half-written or doubled


def test_store_outage_then_recovery_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    agg = Aggregator(make_settings(tmp_path, store_wait_timeout_ms=500))
    agg.start()
    sender = EventSender(sender_config(f"127.0.0.1:{agg.grpc_port}", spool_dir=str(tmp_path / "spool")))
    try:
        for _ in range(100):
            sender.offer(make_event())
        assert sender.flush(30)
        agg.store.command("DETACH TABLE chargeback.usage_events")  # the store loses its table
        for _ in range(300):
            sender.offer(make_event())
        time.sleep(2.0)
        ready, checks = agg.readiness()
        assert not ready and checks["store"].startswith("inserts failing")
        assert not sender.flush(0.5)
        agg.store.command("ATTACH TABLE chargeback.usage_events")
        assert sender.flush(60)
        assert count_rows(agg) == 400
        _, rows = agg.store.query("SELECT count(), uniqExact(event_id) FROM chargeback.usage_events")
        assert rows[0] == (400, 400)
        assert agg.readiness()[0]
    finally:
        sender.close()
        agg.stop(grace_s=2)


def test_backpressure_refuses_with_resource_exhausted_when_the_buffer_is_full(tmp_path: Path) -> None:
    # Batch 1 waits in the writer (its ack comes after 3 s); batch 2 is sent once the writer has seen the store fail,
    # so it is refused at once. Sent together, batch 2 could wait for room while the writer had not yet failed, and
    # get it when batch 1 was abandoned (under load, the first failed insert came later than batch 1's deadline).
    agg = Aggregator(make_settings(tmp_path, max_pending_events=50, store_wait_timeout_ms=3000))
    agg.start()
    try:
        agg.store.command("DETACH TABLE chargeback.usage_events")
        channel, stub = stub_for(agg)
        batches = [pb.UsageBatch(batch_id=f"b{i}", sequence=i, events=[make_event() for _ in range(30)]) for i in (1, 2)]

        def sent_in_turn() -> Iterator[pb.UsageBatch]:
            yield batches[0]
            deadline = time.monotonic() + 20
            while agg.writer.healthy and time.monotonic() < deadline:
                time.sleep(0.01)
            yield batches[1]

        responses = stub.StreamUsage(sent_in_turn(), timeout=20)
        first = next(responses)
        assert first.status == pb.BatchAck.STATUS_RETRY  # not stored: the sender must resend
        with pytest.raises(grpc.RpcError) as err:
            next(responses)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()
        agg.store.command("ATTACH TABLE chargeback.usage_events")
        time.sleep(1.0)
        assert count_rows(agg) == 0  # a batch answered RETRY is not stored behind the sender's back
    finally:
        agg.stop(grace_s=2)


def test_the_same_batch_sent_to_two_aggregators_counts_once(tmp_path: Path) -> None:
    # Two aggregators over one store (chDB allows one data path per process, so both
    # live here; on a ClickHouse server they would be separate processes).
    first = Aggregator(make_settings(tmp_path))
    second = Aggregator(make_settings(tmp_path))
    first.start()
    second.start()
    try:
        batch = pb.UsageBatch(batch_id="same", sequence=1, events=[make_event() for _ in range(40)])
        for agg in (first, second):
            channel, stub = stub_for(agg)
            (ack,) = list(stub.StreamUsage(iter([batch]), timeout=20))
            assert ack.status == pb.BatchAck.STATUS_STORED
            channel.close()
        assert count_rows(first) == 40  # FINAL: what every report reads
    finally:
        second.stop(grace_s=2)
        first.stop(grace_s=2)
