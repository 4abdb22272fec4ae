"""/metrics of a running aggregator, scraped over HTTP as Prometheus would, before and after ingest."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from support.aggregator_fixtures import make_event, stub_for

from ai_chargeback_aggregator import __version__, metrics
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_proto import pb

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(agg: Aggregator) -> Samples:
    with urllib.request.urlopen(f"http://{agg.settings.http_listen}/metrics", timeout=5) as answer:
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_ingest(aggregator: Aggregator) -> None:
    before = scrape(aggregator)
    channel, stub = stub_for(aggregator)
    good = [make_event(kong_request_id=f"r{i}") for i in range(40)]
    stats = pb.SenderStats(events_queued=43, events_sent=40, events_spooled=2, events_dropped=1, usage_parse_failures=3)
    batches = [
        pb.UsageBatch(batch_id="m1", sender_id="kong-1/77/abcd", sequence=1, events=good, sender_stats=stats),
        # A resend (same event ids): acknowledged, counted as deduplicated, not stored again.
        pb.UsageBatch(batch_id="m1", sender_id="kong-1/77/abcd", sequence=2, events=good[:10]),
        pb.UsageBatch(batch_id="m2", sender_id="kong-1/77/abcd", sequence=3, events=[make_event(event_id="not-a-uuid")]),
    ]
    acks = list(stub.StreamUsage(iter(batches), timeout=30))
    channel.close()
    assert [a.status for a in acks] == [pb.BatchAck.STATUS_STORED] * 3
    after = scrape(aggregator)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("chargeback_events_received_total") == 51
    assert moved("chargeback_events_stored_total") == 40
    assert moved("chargeback_events_deduplicated_total") == 10
    assert moved("chargeback_events_quarantined_total", field="event_id") == 1
    assert moved("chargeback_batches_total", status="stored") == 3
    assert moved("chargeback_batch_store_seconds_count") >= 2
    assert moved("chargeback_store_inserts_total") >= 1
    assert value(after, "chargeback_pending_events") == 0
    assert moved("chargeback_store_errors_total", operation="insert") == 0  # every insert above succeeded

    reported = {c: value(after, "chargeback_sender_events", sender_id="kong-1/77/abcd", counter=c)
                for c in ("queued", "sent", "spooled", "dropped", "usage_parse_failures")}  # fmt: skip
    assert reported == {"queued": 43, "sent": 40, "spooled": 2, "dropped": 1, "usage_parse_failures": 3}
    last = value(after, "chargeback_sender_last_report_timestamp_seconds", sender_id="kong-1/77/abcd")
    assert time.time() - 60 < last <= time.time()
    assert value(after, "chargeback_build_info", version=__version__) == 1


def test_senders_silent_past_the_ttl_are_dropped_from_the_scrape() -> None:
    """Every plugin server restart brings a new sender id: old series must not pile up forever."""
    t0 = 1_000_000_000.0
    metrics.record_sender("old-worker", {"sent": 5}, now=t0)
    metrics.record_sender("live-worker", {"sent": 7}, now=t0 + metrics.SENDER_TTL_S + 120)
    samples = {
        (s.name, s.labels.get("sender_id")) for f in metrics.REGISTRY.collect() for s in f.samples if "sender_id" in s.labels
    }
    assert ("chargeback_sender_events", "live-worker") in samples
    assert not {name for name, sender in samples if sender == "old-worker"}
