"""The plugin's sender against a real aggregator over a real gRPC channel."""

from __future__ import annotations

from pathlib import Path

from kong_ai_chargeback.aggregator.app import Aggregator
from kong_ai_chargeback.aggregator.metrics import REGISTRY
from kong_ai_chargeback.plugin.config import SenderConfig
from kong_ai_chargeback.plugin.sender import EventSender
from support.aggregator_fixtures import count_rows, free_port, make_event, make_settings


def sender_config(*addresses: str, **overrides: object) -> SenderConfig:
    values: dict[str, object] = dict(
        aggregator_addresses=addresses, aggregator_tls=False, aggregator_ca_cert_path="", aggregator_token="",
        queue_max_events=10_000, batch_max_events=200, flush_interval_ms=20, spool_dir="", spool_max_bytes=1 << 20,
    )  # fmt: skip
    values.update(overrides)
    return SenderConfig(**values)  # type: ignore[arg-type]


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


def test_fails_over_to_the_next_address_when_the_first_is_dead(aggregator: Aggregator) -> None:
    dead = f"127.0.0.1:{free_port()}"
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


def test_a_full_queue_drops_loudly_and_reports_the_loss_to_the_aggregator(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # One event per batch: at most 32 batches wait unacked, then the queue (100) fills and overflows.
    sender = EventSender(sender_config(settings.grpc_listen, queue_max_events=100, batch_max_events=1))
    lost_before = REGISTRY.get_sample_value("chargeback_events_lost_reported_total", {"reason": "sender-queue-full"}) or 0
    try:
        accepted = sum(sender.offer(make_event()) for _ in range(300))
        assert sender.counters.dropped == 300 - accepted >= 150
        agg = Aggregator(settings)
        agg.start()
        try:
            assert sender.flush(90)
            assert count_rows(agg) == accepted
            lost = REGISTRY.get_sample_value("chargeback_events_lost_reported_total", {"reason": "sender-queue-full"})
            assert lost - lost_before == 300 - accepted
        finally:
            agg.stop(grace_s=2)
    finally:
        sender.close(timeout_s=0.5)
