"""Problem 6 of issue 16: memory stays bounded through a burst.

A 1M-event burst used to peak at 2.5 GiB: every received batch was held as
parsed protobuf until stored, and the only cap counted events. Here a real
`chargeback serve` process with a small byte cap takes a burst of large
batches from eight streams at once: what waits for the store (sampled from
/metrics the whole time) never passes the cap, the streams are slowed rather
than refused, and every event is stored once. RSS itself is recorded by
`make bench` (bench_ingest.py: the 1M burst; bench_soak.py: 10 minutes).
"""

from __future__ import annotations

import signal
import threading
import urllib.request
from pathlib import Path

import grpc
from support.aggregator_fixtures import make_event, make_settings
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_proto import pb

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"
CAP_BYTES = 2 << 20  # the smallest cap the settings allow, 1 MiB, twice
STREAMS = 8
BATCHES_PER_STREAM = 6
BATCH = 2_000


def pending_bytes(http_listen: str) -> float:
    with urllib.request.urlopen(f"http://{http_listen}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("chargeback_pending_bytes "):
                return float(line.split()[1])
    raise AssertionError("chargeback_pending_bytes not in /metrics")


def test_a_burst_from_many_streams_never_holds_more_than_the_cap(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log",
                         env={"CHARGEBACK_MAX_PENDING_BYTES": str(CAP_BYTES), "CHARGEBACK_FLUSH_INTERVAL_MS": "300"})  # fmt: skip
    batches = [[pb.UsageBatch(batch_id=f"s{s}-b{b}", sequence=b + 1, events=[make_event(kong_request_id=f"{s}-{b}-{i}")
                                                                             for i in range(BATCH)]).SerializeToString()
                for b in range(BATCHES_PER_STREAM)] for s in range(STREAMS)]  # fmt: skip
    largest_batch = max(len(b) for stream in batches for b in stream)
    acks: list[pb.BatchAck] = []
    errors: list[BaseException] = []
    samples: list[float] = []
    done = threading.Event()

    def stream(index: int) -> None:
        with grpc.insecure_channel(settings.grpc_listen) as channel:
            call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=pb.BatchAck.FromString)
            try:
                acks.extend(call(iter(batches[index]), timeout=300))
            except grpc.RpcError as exc:
                errors.append(exc)

    def sample() -> None:
        while not done.is_set():
            samples.append(pending_bytes(settings.http_listen))

    sampler = threading.Thread(target=sample)
    sampler.start()
    senders = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
    try:
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
    finally:
        done.set()
        sampler.join()
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert errors == []  # slowed down, never refused: the store kept up
    assert [a.status for a in acks] == [pb.BatchAck.STATUS_STORED] * STREAMS * BATCHES_PER_STREAM
    assert max(samples) > 0 and len(samples) > 5  # the sampler saw batches waiting
    # Encoded events only; a batch larger than the whole cap is still taken when nothing waits.
    assert max(samples) <= max(CAP_BYTES, largest_batch)
    total = STREAMS * BATCHES_PER_STREAM * BATCH
    assert store_counts(settings.store_dsn) == (total, total, total)
