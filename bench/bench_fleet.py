"""A fleet of gateways on one aggregator: thousands of real EventSenders streaming at once.

Each sender stands for one plugin config on one Kong node (its own durable
spool, its own stream, held open for the whole run), as in a plugin server;
``--processes`` plugin-server-like processes hold ``--senders`` between them.
Every sender offers a few events at a time, spread over ``--rounds``, like a
quiet gateway. Measured: how many streams the aggregator holds at once, the
time from a batch's arrival to its ack (``chargeback_batch_store_seconds``:
goal, the flush interval plus store time), that every event was acked and
stored once, and the aggregator's peak RSS. Prints one JSON object.
"""

from __future__ import annotations

import argparse
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
import urllib.request
from pathlib import Path
from typing import Any

from _common import metric, peak_rss_mb, start_aggregator


def child(grpc_listen: str, first: int, count: int, rounds: int, events: int, interval_s: float, spool: str) -> None:
    """One plugin server's worth of senders; prints how many events it had acked."""
    from support.aggregator_fixtures import make_event, sender_config

    from ai_chargeback_plugin.sender import EventSender

    senders = [EventSender(sender_config(grpc_listen, sender_key=f"plugin-{first + i}", spool_dir=spool, flush_interval_ms=1000,
                                         spool_max_bytes=16 << 20), sender_id=f"node-{(first + i) // 8}/{first + i}")
               for i in range(count)]  # fmt: skip
    rng = random.Random(first)
    for round_ in range(rounds):
        for i, sender in enumerate(senders):
            for n in range(events):
                sender.offer(make_event(kong_request_id=f"{first + i}-{round_}-{n}", team=f"team-{(first + i) % 50}"))
        time.sleep(interval_s * rng.uniform(0.8, 1.2))
    settled = sum(sender.flush(300) for sender in senders)
    acked = sum(sender.counters.sent for sender in senders)
    for sender in senders:
        sender.close(0.1)
    print(json.dumps({"senders": count, "settled": settled, "acked": acked}), flush=True)
    os._exit(0)  # the senders' threads are done with; skip interpreter teardown of thousands of them


def histogram(http_listen: str, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a Prometheus histogram."""
    with urllib.request.urlopen(f"http://{http_listen}/metrics", timeout=30) as response:
        text = response.read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return buckets


def quantile_bound(buckets: list[tuple[float, float]], q: float) -> float:
    """The smallest bucket bound holding at least ``q`` of the observations (an upper estimate)."""
    total = buckets[-1][1] if buckets else 0
    return next((bound for bound, count in buckets if count >= q * total), float("nan"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        grpc_listen, first, count, rounds, events, interval_s, spool = sys.argv[2:9]
        child(grpc_listen, int(first), int(count), int(rounds), int(events), float(interval_s), spool)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=2400)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--events", type=int, default=3, help="per sender per round")
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--flush-interval-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.senders, args.processes, args.rounds = 300, 2, 2
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

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    per = -(-args.senders // args.processes)
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, __file__, "--child", grpc_listen, str(first), str(min(per, args.senders - first)),
                                  str(args.rounds), str(args.events), str(args.interval_s), str(workdir / "spool")],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)  # fmt: skip
                for first in range(0, args.senders, per)]
    reports: list[dict[str, Any]] = []
    try:
        for proc in children:
            out, _ = proc.communicate(timeout=1800)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        elapsed = time.perf_counter() - started
        stop.set()
        acked_ms = histogram(http_listen, "chargeback_batch_store_seconds")
        stored = metric(http_listen, "chargeback_events_stored_total")
        rss = peak_rss_mb(process.pid)
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        process.wait(300)
        shutil.rmtree(workdir, ignore_errors=True)
    total = args.senders * args.rounds * args.events
    print(json.dumps({
        "senders": args.senders, "processes": args.processes, "rounds": args.rounds, "events_per_sender_round": args.events,
        "flush_interval_ms": args.flush_interval_ms, "streams_open_max": max(sampled_open, default=0),
        "senders_settled": sum(r["settled"] for r in reports), "events": total,
        "events_acked": sum(r["acked"] for r in reports), "events_stored": int(stored), "seconds": round(elapsed, 1),
        "batch_receipt_to_ack_s": {"p50_at_most": quantile_bound(acked_ms, 0.5), "p99_at_most": quantile_bound(acked_ms, 0.99),
                                   "count": acked_ms[-1][1] if acked_ms else 0},
        "aggregator_peak_rss_mb": round(rss, 1), "load_average": os.getloadavg(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
