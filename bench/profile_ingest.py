"""Per-event cost of each ingest step, timed in one process over the rows bench_ingest sends.

Steps mirror the aggregator's path (service -> admission -> writer -> sink) but are
called directly, so each one's share shows; gRPC handling is what bench_ingest's
end-to-end time per event leaves after these. Prints one JSON object (µs per event).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402,F401  (puts tests/ on the path)
from bench_ingest import build_batches  # noqa: E402

from ai_chargeback_aggregator.ingest.admission import admit, check_batch  # noqa: E402
from ai_chargeback_aggregator.ingest.rows import EXTRA, price_columns  # noqa: E402
from ai_chargeback_aggregator.ingest.sinks import Candidates, EmbeddedSink  # noqa: E402
from ai_chargeback_aggregator.pricing.pricer import Pricer  # noqa: E402
from ai_chargeback_aggregator.server.collector import tune_for_ingest  # noqa: E402
from ai_chargeback_aggregator.store.clickhouse import Store  # noqa: E402
from ai_chargeback_proto import pb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--insert-events", type=int, default=10_000)
    args = parser.parse_args()
    wire = [b for stream in build_batches(args.events, 1000, 1) for b in stream]
    store = Store(f"chdb://{tempfile.mkdtemp(prefix='profile-ingest-')}")
    store.migrate()
    sink, pricer = EmbeddedSink(store), Pricer()
    # As in a running aggregator: the catalog loaded (its first use costs ~0.2 s, which over 100k
    # events read as ~2 µs an event of pricing) and the collector set as `chargeback serve` sets it.
    warm = price_columns(Candidates().keys)
    pricer.schedule("openai", "gpt-4o-mini", "", "", datetime.now(UTC).date())
    pricer.enrich(warm)
    tune_for_ingest()
    spent: dict[str, float] = dict.fromkeys(("parse", "validate_admit", "gather", "price", "frame_file", "lookup", "insert"), 0.0)
    now_ms = int(time.time() * 1000)
    # As the aggregator admits for the embedded store (an older tree, run for comparison, has no such option).
    checks = {"store_checks": True} if "store_checks" in inspect.signature(admit).parameters else {}
    admitted = []
    for raw in wire:
        t0 = time.perf_counter()
        batch = pb.UsageBatch.FromString(raw)
        t1 = time.perf_counter()
        check_batch(batch)
        admitted.append(admit(batch, now_ms, **checks))
        t2 = time.perf_counter()
        spent["parse"] += t1 - t0
        spent["validate_admit"] += t2 - t1
    per_insert = max(args.insert_events // 1000, 1)
    for start in range(0, len(admitted), per_insert):
        t0 = time.perf_counter()
        candidates = Candidates()
        for owner, item in enumerate(admitted[start : start + per_insert]):
            candidates.add(item, owner)
        t1 = time.perf_counter()
        columns = price_columns(candidates.keys)
        columns[EXTRA] = pricer.enrich(columns)
        t2 = time.perf_counter()
        sink.prepare(candidates, columns)
        t3 = time.perf_counter()
        sink.lookup(candidates, candidates.ids)  # (with the store-side rule check)
        t4 = time.perf_counter()
        sink.insert(candidates, columns, now_ms)
        t5 = time.perf_counter()
        sink.end_attempt()
        for key, value in zip(("gather", "price", "frame_file", "lookup", "insert"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            spent[key] += value
    us = {key: round(value / args.events * 1e6, 2) for key, value in spent.items()}
    us["total"] = round(sum(spent.values()) / args.events * 1e6, 2)
    print(json.dumps({"events": args.events, "us_per_event": us}))


if __name__ == "__main__":
    main()
