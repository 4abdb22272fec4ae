"""What an operator reads to tell whether the store's writes set the ingest rate: the writer's
busy seconds (a rate near 1 means saturated) and the duration of each lookup and insert."""

from __future__ import annotations

import time
from pathlib import Path

from support.aggregator_fixtures import make_event, submit_events, written

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store

SAMPLES = {
    "busy": ("chargeback_writer_busy_seconds_total", {}),
    "inserts": ("chargeback_store_inserts_total", {}),
    "insert_count": ("chargeback_store_write_seconds_count", {"operation": "insert"}),
    "insert_s": ("chargeback_store_write_seconds_sum", {"operation": "insert"}),
    "lookup_count": ("chargeback_store_write_seconds_count", {"operation": "lookup"}),
    "lookup_s": ("chargeback_store_write_seconds_sum", {"operation": "lookup"}),
}


def sampled() -> dict[str, float]:
    return {key: metrics.REGISTRY.get_sample_value(name, labels) or 0.0 for key, (name, labels) in SAMPLES.items()}


def test_the_writer_reports_its_busy_time_and_each_store_call(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    writer = Writer(store, flush_interval_ms=5, flush_max_events=100, enrich=Pricer().enrich)
    writer.start()
    before = sampled()
    started = time.perf_counter()
    first = [make_event() for _ in range(50)]
    assert written(submit_events(writer, first, "new")) == (50, 0)  # inserted without a lookup (nothing stored can match)
    assert written(submit_events(writer, first, "replay")) == (0, 50)  # looked up (and rule-checked), nothing inserted
    assert written(submit_events(writer, first[:10] + [make_event() for _ in range(5)], "mixed")) == (5, 10)  # both
    elapsed = time.perf_counter() - started
    writer.stop()
    store.close()
    spent = {key: value - before[key] for key, value in sampled().items()}
    assert spent["insert_count"] == spent["inserts"] == 2
    assert spent["lookup_count"] == 2
    assert spent["insert_s"] > 0 and spent["lookup_s"] > 0
    # The store calls are part of the writer's busy time, which is part of the time that passed.
    assert spent["insert_s"] + spent["lookup_s"] <= spent["busy"] <= elapsed
