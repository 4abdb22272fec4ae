"""Prometheus metrics of the aggregator, in one registry served on /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram

from . import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
GCCollector(registry=REGISTRY)  # python_gc_*: what the cycle collector costs (server/collector.py)

EVENTS_RECEIVED = Counter("chargeback_events_received", "Usage events received over gRPC", registry=REGISTRY)
EVENTS_STORED = Counter("chargeback_events_stored", "Usage events newly and durably stored", registry=REGISTRY)
EVENTS_DUPLICATE = Counter(
    "chargeback_events_deduplicated", "Usage events already stored, acknowledged without storing again", registry=REGISTRY
)
EVENTS_QUARANTINED = Counter(
    "chargeback_events_quarantined",
    "Usage events that broke the contract: stored in quarantined_events with the reason, never billed",
    ["field"],
    registry=REGISTRY,
)
EVENTS_CONFLICTING = Counter(
    "chargeback_events_conflicting",
    "Replays of a stored event id with different content: kept in event_conflicts, never billed",
    registry=REGISTRY,
)
BATCHES = Counter("chargeback_batches", "Batches answered, by ack status", ["status"], registry=REGISTRY)
BATCH_LATENCY = Histogram(
    "chargeback_batch_store_seconds",
    "From batch receipt to durable store",
    # Fine around the default flush interval (1 s): a batch should be acked within it plus store time.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
INSERTS = Counter("chargeback_store_inserts", "Inserts committed to the store", registry=REGISTRY)
WRITER_BUSY_SECONDS = Counter(
    "chargeback_writer_busy_seconds",
    "Time the writer spent writing flushes, retries included: its rate is the writer's utilization, "
    "and near 1 the store's writes set this aggregator's ingest rate (add an aggregator, or a ClickHouse server)",
    registry=REGISTRY,
)
STORE_WRITE_SECONDS = Histogram(
    "chargeback_store_write_seconds",
    "Duration of the writer's store calls for usage events, by operation (lookup: the dedup lookup; insert)",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
FLUSHES_PREPARED_AHEAD = Counter(
    "chargeback_flushes_prepared_ahead",
    "Flushes readied while the one before was in the store: used, or discarded (its batches changed meanwhile)",
    ["outcome"],
    registry=REGISTRY,
)
FLUSHES = Counter(
    "chargeback_flushes",
    "Flushes the writer took, by what started them: full (an insert's worth waited), interval (the oldest "
    "batch waited flush_interval_ms), quiet (batches stopped coming: ingest/arrivals.py), stopping (shutdown)",
    ["reason"],
    registry=REGISTRY,
)
RULE_CHECK_REFUSALS = Counter(
    "chargeback_store_rule_check_refusals",
    "Inserts the store's rule check refused (an event past a limit admission leaves to the store): "
    "the flush is then looked up with the check, its invalid events quarantined, the rest stored",
    registry=REGISTRY,
)
LOOKUPS_SKIPPED = Counter(
    "chargeback_store_lookups_skipped",
    "Flushes inserted without a dedup lookup: the embedded store is this process's alone, and every "
    "id of the flush is newer than any id it may hold without this process remembering it",
    registry=REGISTRY,
)
STORE_ERRORS = Counter("chargeback_store_errors", "Failed store operations", ["operation"], registry=REGISTRY)
PENDING_EVENTS = Gauge("chargeback_pending_events", "Events received and waiting for the store", registry=REGISTRY)
PENDING_BYTES = Gauge("chargeback_pending_bytes", "Bytes of events received and waiting for the store", registry=REGISTRY)
STORE_WRITABLE = Gauge("chargeback_store_writable", "1 while the last store write succeeded, 0 while writes fail", registry=REGISTRY)
STORE_WRITABLE.set(1)
ENGINE_PAGES_RELEASED = Gauge(
    "chargeback_engine_startup_pages_released_bytes",
    "Pages of the embedded engine's library that only its start used, given back after start (0: none, off, or not possible here)",
    registry=REGISTRY,
)
STREAMS_OPEN = Gauge("chargeback_streams_open", "Sender streams open now", registry=REGISTRY)
AUTH_FAILURES = Counter("chargeback_auth_failures", "Streams refused for a missing or wrong token", registry=REGISTRY)
SQL_QUERIES = Counter(
    "chargeback_sql_queries",
    "Analyst queries on POST /v1/sql, by outcome (ok, refused, rejected, limit, query, unavailable, bad_request)",
    ["outcome"],
    registry=REGISTRY,
)
SENDER_COUNTER = Gauge(
    "chargeback_sender_events",
    "Counters reported by each plugin sender (queued, sent, spooled, dropped, usage_parse_failures)",
    ["sender_id", "counter"],
    registry=REGISTRY,
)
EVENTS_LOST_REPORTED = Counter(
    "chargeback_events_lost_reported", "Events senders reported as lost (overflow), by reason", ["reason"], registry=REGISTRY
)
SENDER_LAST_REPORT = Gauge(
    "chargeback_sender_last_report_timestamp_seconds",
    "When each plugin sender last reported (unix time): alert on a gateway that stops reporting",
    ["sender_id"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge("chargeback_build_info", "The running aggregator's version (value is always 1)", ["version"], registry=REGISTRY)
BUILD_INFO.labels(__version__).set(1)

# A sender id names one plugin server process (host/pid/random), so every restart
# brings a new one: series of senders silent this long are dropped, which keeps
# the label set bounded by the live gateways.
SENDER_TTL_S = 3600.0
_SENDER_SWEEP_EVERY_S = 60.0
_senders_seen: dict[str, tuple[float, tuple[str, ...]]] = {}  # id -> (last report, counter names)
_senders_lock = threading.Lock()
_last_sweep = 0.0


def record_sender(sender_id: str, counters: Mapping[str, int], *, now: float | None = None) -> None:
    """The counters a plugin sender reports with every batch, as per-sender gauges."""
    global _last_sweep
    now = time.time() if now is None else now
    for name, value in counters.items():
        SENDER_COUNTER.labels(sender_id, name).set(value)
    SENDER_LAST_REPORT.labels(sender_id).set(now)
    with _senders_lock:
        _senders_seen[sender_id] = (now, tuple(counters))
        if 0 <= now - _last_sweep < _SENDER_SWEEP_EVERY_S:  # (a clock that went back sweeps now)
            return
        _last_sweep = now
        stale = [s for s, (seen, _) in _senders_seen.items() if now - seen > SENDER_TTL_S]
        for gone in stale:
            _, names = _senders_seen.pop(gone)
            for name in names:
                _remove(SENDER_COUNTER, gone, name)
            _remove(SENDER_LAST_REPORT, gone)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
