"""One event id, one row, at scale: 5M events, then replays from across the whole range.

Too long for CI (minutes on two cores), so it lives here; the same proof at
70k events is tests/aggregator/test_exactly_once.py.

1. 5M distinct events over ``--streams`` gRPC streams into a real aggregator process.
2. Replays sampled across the whole range: every ``--stride``-th event as it was
   (a duplicate) and every ``--stride``-th + 1 with another team (a conflict),
   far beyond the aggregator's memory of recent ids.
3. The aggregator is restarted (nothing in memory) and the same replays come again.
4. Checked: raw rows, distinct ids and rows after FINAL all equal 5M; each ack's
   duplicate and conflict counts; one conflict row per altered replay.

Events are generated deterministically from their index (so a replay is the same
event, byte for byte) in the sending threads, never held all at once.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from _common import peak_rss_mb, start_aggregator

from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"
TEAMS = ("payments", "risk", "support", "search", "ml-platform", "growth")
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022")


def event_id(index: int, base_ms: int) -> str:
    """A UUIDv7 fixed by the index: 1,000 events per millisecond of its clock."""
    ms = base_ms + index // 1000
    value = (ms << 80) | (0x7 << 76) | ((index & 0xFFF) << 64) | (0b10 << 62) | (index * 0x9E3779B97F4A7C15 & ((1 << 62) - 1))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def event(index: int, base_ms: int, *, team: str | None = None) -> pb.UsageEvent:
    started = base_ms + index // 1000
    return pb.UsageEvent(
        event_id=event_id(index, base_ms), kong_request_id=f"r{index}", started_at_unix_ms=started,
        observed_at_unix_ms=started + 40, gateway_node=f"kong-{index % 8}", tenant="acme",
        tenant_source=pb.IDENTITY_SOURCE_CONSUMER, team=team or TEAMS[index % len(TEAMS)],
        team_source=pb.IDENTITY_SOURCE_CONSUMER, app=f"app-{index % 40}", app_source=pb.IDENTITY_SOURCE_CONSUMER,
        provider="openai", api_family="openai.chat", requested_model="gpt-4o-mini", served_model=MODELS[index % len(MODELS)],
        input_tokens=500 + index % 700, cached_input_tokens=index % 300, output_tokens=200 + index % 90,
        reasoning_tokens=index % 50, usage_source=pb.USAGE_SOURCE_PROVIDER, http_status=200, upstream_tries=1,
        policy_outcome=pb.POLICY_OUTCOME_ALLOWED,
    )  # fmt: skip


def batches(indexes: Iterator[int], base_ms: int, size: int, prefix: str, alter: set[int] | None = None) -> Iterator[bytes]:
    chunk: list[pb.UsageEvent] = []
    sequence = 0
    for index in indexes:
        chunk.append(event(index, base_ms, team="conflicting-team" if alter and index in alter else None))
        if len(chunk) == size:
            sequence += 1
            yield pb.UsageBatch(batch_id=f"{prefix}-{sequence}", sequence=sequence, events=chunk).SerializeToString()
            chunk = []
    if chunk:
        yield pb.UsageBatch(batch_id=f"{prefix}-{sequence + 1}", sequence=sequence + 1, events=chunk).SerializeToString()


def send(grpc_listen: str, streams: list[Iterator[bytes]]) -> dict[str, int]:
    totals = {"stored": 0, "duplicate": 0, "conflicting": 0, "quarantined": 0, "batches": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(requests: Iterator[bytes]) -> None:
        with grpc.insecure_channel(grpc_listen, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=pb.BatchAck.FromString)
            try:
                for ack in call(requests, timeout=7200):
                    if ack.status != pb.BatchAck.STATUS_STORED:
                        raise RuntimeError(f"batch {ack.batch_id}: status {ack.status}")
                    with lock:
                        totals["stored"] += ack.events_stored
                        totals["duplicate"] += ack.events_duplicate
                        totals["conflicting"] += ack.events_conflicting
                        totals["quarantined"] += ack.events_quarantined
                        totals["batches"] += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"stream failed: {errors[0]}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--stride", type=int, default=1_000, help="replay every Nth event (and alter the next)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.stride = 200_000, 500
    total = args.events
    base_ms = int(time.time() * 1000) - total // 1000 - 60_000  # the whole range in the past, inside the window
    workdir = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    store_dir = workdir / "store"
    same = list(range(0, total, args.stride))
    changed = list(range(1, total, args.stride))
    replayed = sorted(same + changed)
    result: dict[str, Any] = {"events": total, "streams": args.streams, "batch_events": args.batch,
                              "replays_identical": len(same), "replays_altered": len(changed)}  # fmt: skip
    try:
        process, grpc_listen, _ = start_aggregator(store_dir)
        try:
            started = time.perf_counter()
            first = send(grpc_listen, [batches(iter(range(s, total, args.streams)), base_ms, args.batch, f"s{s}")
                                       for s in range(args.streams)])  # fmt: skip
            result["first_pass"] = {**first, "seconds": round(time.perf_counter() - started, 1),
                                    "events_per_s": round(total / (time.perf_counter() - started))}  # fmt: skip
            result["replay_before_restart"] = send(grpc_listen, [batches(iter(replayed), base_ms, args.batch, "replay-a", set(changed))])
            result["aggregator_peak_rss_mb"] = round(peak_rss_mb(process.pid), 1)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(300)
        process, grpc_listen, _ = start_aggregator(store_dir)
        try:
            result["replay_after_restart"] = send(grpc_listen, [batches(iter(replayed), base_ms, args.batch, "replay-b", set(changed))])
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(300)
        store = Store(f"chdb://{store_dir}")
        try:
            _, rows = store.query(
                "SELECT (SELECT count() FROM chargeback.usage_events), (SELECT uniqExact(event_id) FROM chargeback.usage_events), "
                "(SELECT count() FROM chargeback.usage_events FINAL), (SELECT count() FROM chargeback.event_conflicts FINAL), "
                "(SELECT countIf(team = 'conflicting-team') FROM chargeback.usage_events FINAL)"
            )
        finally:
            store.close()
        raw, distinct, final, conflicts, billed_altered = rows[0]
        result["counts"] = {"raw": raw, "distinct": distinct, "final": final, "conflict_rows": conflicts,
                            "altered_versions_billed": billed_altered}  # fmt: skip
        expected_acks = {"stored": 0, "duplicate": len(same), "conflicting": len(changed)}
        ok = (raw == distinct == final == total and conflicts == len(changed) and billed_altered == 0
              and all({k: result[p][k] for k in expected_acks} == expected_acks
                      for p in ("replay_before_restart", "replay_after_restart"))
              and result["first_pass"]["stored"] == total)  # fmt: skip
        result["exactly_once"] = ok
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
