"""Problem 1 of issue 16: one aggregator serves the whole fleet.

With a thread per open stream, sender number 33 was never served. Here 200
real EventSenders (one per plugin config, as many Kong nodes x configs would
have) keep their streams open to one real `chargeback serve` process at the
same time, and every one of them gets every batch acked. The benchmark
(bench/bench_fleet.py) holds 2,000 streams and measures ack latency.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path

import grpc
from support.aggregator_fixtures import make_event, make_settings, sender_config
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_plugin.sender import EventSender
from ai_chargeback_proto import pb

SENDERS = 200
EVENTS_EACH = 5
WAIT_S = 120.0


def gauge(http_listen: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{http_listen}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_two_hundred_senders_hold_streams_open_and_every_batch_is_acked(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log")
    spool = str(tmp_path / "spool")
    senders = [EventSender(sender_config(settings.grpc_listen, sender_key=f"plugin-{i}", spool_dir=spool, flush_interval_ms=50))
               for i in range(SENDERS)]  # fmt: skip
    try:
        for round_ in range(2):  # the second round goes over streams that sat idle in between
            for i, sender in enumerate(senders):
                for n in range(EVENTS_EACH):
                    sender.offer(make_event(kong_request_id=f"s{i}-r{round_}-{n}"))
            unsettled = [i for i, sender in enumerate(senders) if not sender.flush(WAIT_S)]
            assert not unsettled, f"senders never acked: {unsettled[:10]}..."
        assert [s.counters.sent for s in senders] == [2 * EVENTS_EACH] * SENDERS
        assert gauge(settings.http_listen, "chargeback_streams_open") >= SENDERS  # all open at once, all served
    finally:
        for sender in senders:
            sender.close(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    total = SENDERS * EVENTS_EACH * 2
    assert store_counts(settings.store_dsn) == (total, total, total)


RECONNECTING = 1500  # past gRPC's default queue of 1,000 streams waiting to be taken


def test_a_whole_fleet_reconnecting_at_once_is_served(tmp_path: Path) -> None:
    """After an aggregator restart every gateway reconnects in the same second: no stream may be
    cancelled for arriving in a crowd (gRPC's pending-stream limits, raised by the server)."""
    settings = make_settings(tmp_path)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log")
    outcomes: list[str] = []

    async def fleet() -> None:
        channels = [grpc.aio.insecure_channel(settings.grpc_listen, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(RECONNECTING // 50)]  # fmt: skip

        async def one(index: int) -> None:
            call = channels[index % len(channels)].stream_stream(
                "/chargeback.v1.UsageIngest/StreamUsage", request_serializer=pb.UsageBatch.SerializeToString,
                response_deserializer=pb.BatchAck.FromString)()  # fmt: skip
            try:
                await asyncio.sleep(1.0)  # every stream is open before any sends
                await call.write(pb.UsageBatch(batch_id=f"b{index}", sequence=1, events=[make_event(kong_request_id=f"r{index}")]))
                await call.done_writing()
                outcomes.extend(f"{ack.status}:{ack.events_stored}" for ack in [a async for a in call])
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                outcomes.append(f"failed:{(await call.code()).name}")

        await asyncio.gather(*(one(i) for i in range(RECONNECTING)))
        for channel in channels:
            await channel.close()

    try:
        asyncio.run(fleet())
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert sorted(set(outcomes)) == [f"{pb.BatchAck.STATUS_STORED}:1"] and len(outcomes) == RECONNECTING
    assert store_counts(settings.store_dsn) == (RECONNECTING, RECONNECTING, RECONNECTING)
