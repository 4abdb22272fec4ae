"""`chargeback serve` sets the cycle collector for ingest (server/collector.py): a real
process takes 20,000 events while /metrics counts the young collections they caused.

At CPython's default (a young collection every 700 net allocations) this ingest ran
116 of them (measured); with the serve process's setting, 6 for 30,000 events.
"""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import grpc
from support.aggregator_fixtures import make_event, make_settings
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_proto import pb

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"
BATCHES, BATCH = 20, 1_000


def young_collections(http_listen: str) -> float:
    with urllib.request.urlopen(f"http://{http_listen}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('python_gc_collections_total{generation="0"}'):
                return float(line.split()[-1])
    raise AssertionError("python_gc_collections_total not in /metrics")


def test_serve_ingests_without_a_young_collection_every_700_allocations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log")
    batches = [pb.UsageBatch(batch_id=f"b{b}", sequence=b + 1, events=[make_event(kong_request_id=f"{b}-{i}") for i in range(BATCH)])
               .SerializeToString() for b in range(BATCHES)]  # fmt: skip
    try:
        before = young_collections(settings.http_listen)
        with grpc.insecure_channel(settings.grpc_listen) as channel:
            call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=pb.BatchAck.FromString)
            acks = list(call(iter(batches), timeout=120))
        during = young_collections(settings.http_listen) - before
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert sum(a.events_stored for a in acks) == BATCHES * BATCH
    assert store_counts(settings.store_dsn) == (BATCHES * BATCH,) * 3
    assert during < 30, f"{during:.0f} young collections for {BATCHES * BATCH} events: the serve process kept the default threshold"
