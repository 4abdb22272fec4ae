"""A fleet of gateways on one aggregator: thousands of sender streams open at once.

Each stream stands for one plugin config on one Kong node: it stays open for
the whole run and sends a small batch every ``--interval-s`` (jittered), as a
quiet gateway does. ``--processes`` client processes (gateways) hold
``--streams`` between them, a few hundred each, over connections shared by up
to 50 streams (one plugin server's senders). Measured: streams the aggregator
holds at once, the time from sending a batch to its ack (goal: within the flush
interval plus store time), that every batch was acked and stored once, events/s
and the aggregator's peak RSS. Batches are serialized before the start.
tests/aggregator/test_fleet.py does the same with 200 real EventSenders
(three threads each: a real plugin server has tens, not thousands).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import metric, peak_rss_mb, percentile, start_aggregator

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"
STREAMS_PER_CONNECTION = 50


def child(grpc_listen: str, first: int, count: int, batches: int, events: int, interval_s: float, start_at: float) -> None:
    """One gateway process's streams; prints its ack latencies (ms) and failures."""
    import grpc
    from support.aggregator_fixtures import make_event

    from ai_chargeback_proto import pb

    payloads = [[pb.UsageBatch(batch_id=f"s{s}-b{b}", sender_id=f"node-{s // 8}/plugin-{s % 8}", sequence=b + 1,
                               events=[make_event(kong_request_id=f"{s}-{b}-{i}", team=f"team-{s % 50}") for i in range(events)])
                 .SerializeToString() for b in range(batches)] for s in range(first, first + count)]  # fmt: skip
    latencies: list[float] = []
    failures: list[str] = []

    async def run() -> None:
        channels = [grpc.aio.insecure_channel(grpc_listen, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(0, count, STREAMS_PER_CONNECTION)]  # fmt: skip

        async def one(index: int) -> None:
            rng = random.Random(first + index)
            call = channels[index // STREAMS_PER_CONNECTION].stream_stream(
                METHOD, request_serializer=None, response_deserializer=pb.BatchAck.FromString)()
            sent_at: dict[int, float] = {}

            async def acks() -> None:
                async for ack in call:
                    if ack.status != pb.BatchAck.STATUS_STORED:
                        failures.append(f"{first + index}/{ack.sequence}: status {ack.status}")
                    latencies.append((time.perf_counter() - sent_at.pop(ack.sequence)) * 1000)

            reading = asyncio.create_task(acks())
            await asyncio.sleep(rng.uniform(0, interval_s))  # gateways are not in step
            try:
                for sequence, data in enumerate(payloads[index], start=1):
                    sent_at[sequence] = time.perf_counter()
                    await call.write(data)
                    await asyncio.sleep(interval_s * rng.uniform(0.5, 1.5))
                await call.done_writing()
                await reading
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                failures.append(f"{first + index}: {(await call.code()).name} ({type(exc).__name__})")
                reading.cancel()

        await asyncio.sleep(max(start_at - time.time(), 0))
        await asyncio.gather(*(one(i) for i in range(count)))
        for channel in channels:
            await channel.close()

    asyncio.run(run())
    print(json.dumps({"latencies_ms": latencies, "failures": failures}), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        grpc_listen, first, count, batches, events, interval_s, start_at = sys.argv[2:9]
        child(grpc_listen, int(first), int(count), int(batches), int(events), float(interval_s), float(start_at))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2400)
    parser.add_argument("--processes", type=int, default=24)
    parser.add_argument("--batches", type=int, default=12, help="per stream")
    parser.add_argument("--events", type=int, default=5, help="per batch")
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--flush-interval-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.processes, args.batches, args.interval_s = 300, 2, 3, 2.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    process, grpc_listen, http_listen = start_aggregator(workdir / "store", env={"CHARGEBACK_FLUSH_INTERVAL_MS": str(args.flush_interval_ms)})
    sampled_open: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            try:
                sampled_open.append(metric(http_listen, "chargeback_streams_open"))
            except OSError:
                pass

    per = -(-args.streams // args.processes)
    start_at = time.time() + 10 + args.streams / 200  # every child has built its batches by then
    children = [subprocess.Popen([sys.executable, __file__, "--child", grpc_listen, str(first), str(min(per, args.streams - first)),
                                  str(args.batches), str(args.events), str(args.interval_s), str(start_at)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)  # fmt: skip
                for first in range(0, args.streams, per)]
    threading.Thread(target=sample, daemon=True).start()
    reports: list[dict[str, Any]] = []
    try:
        for proc in children:
            out, _ = proc.communicate(timeout=3600)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        elapsed = time.time() - start_at
        stop.set()
        stored = metric(http_listen, "chargeback_events_stored_total")
        rss = peak_rss_mb(process.pid)
    finally:
        stop.set()
        for proc in children:
            if proc.poll() is None:
                proc.kill()
        process.send_signal(signal.SIGTERM)
        process.wait(300)
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = [v for r in reports for v in r["latencies_ms"]]
    total = args.streams * args.batches * args.events
    print(json.dumps({
        "streams": args.streams, "client_processes": args.processes, "batches_per_stream": args.batches,
        "events_per_batch": args.events, "send_interval_s": args.interval_s, "flush_interval_ms": args.flush_interval_ms,
        "streams_open_max": max(sampled_open, default=0), "batches_sent": args.streams * args.batches,
        "batches_acked": len(latencies), "failures": [f for r in reports for f in r["failures"]][:20],
        "events": total, "events_stored": int(stored), "events_per_s": round(total / max(elapsed, 1e-9)),
        "ack_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1),
                   "max": round(max(latencies, default=float("nan")), 1)},
        "aggregator_peak_rss_mb": round(rss, 1), "load_average": os.getloadavg(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
