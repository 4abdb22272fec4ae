"""Prometheus metrics of the aggregator, in one registry served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_RECEIVED = Counter("chargeback_events_received", "Usage events received over gRPC", registry=REGISTRY)
EVENTS_STORED = Counter("chargeback_events_stored", "Usage events newly and durably stored", registry=REGISTRY)
EVENTS_DUPLICATE = Counter(
    "chargeback_events_deduplicated", "Usage events already stored, acknowledged without storing again", registry=REGISTRY
)
EVENTS_REJECTED = Counter(
    "chargeback_events_rejected", "Usage events refused by validation", ["field"], registry=REGISTRY
)
BATCHES = Counter("chargeback_batches", "Batches answered, by ack status", ["status"], registry=REGISTRY)
BATCH_LATENCY = Histogram(
    "chargeback_batch_store_seconds",
    "From batch receipt to durable store",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
INSERTS = Counter("chargeback_store_inserts", "Inserts committed to the store", registry=REGISTRY)
STORE_ERRORS = Counter("chargeback_store_errors", "Failed store operations", ["operation"], registry=REGISTRY)
PENDING_EVENTS = Gauge("chargeback_pending_events", "Events received and waiting for the store", registry=REGISTRY)
AUTH_FAILURES = Counter("chargeback_auth_failures", "Streams refused for a missing or wrong token", registry=REGISTRY)
SENDER_COUNTER = Gauge(
    "chargeback_sender_events",
    "Counters reported by each plugin sender (queued, sent, spooled, dropped, usage_parse_failures)",
    ["sender_id", "counter"],
    registry=REGISTRY,
)
EVENTS_LOST_REPORTED = Counter(
    "chargeback_events_lost_reported", "Events senders reported as lost (overflow), by reason", ["reason"], registry=REGISTRY
)
