"""Coalescing writer: batches from every stream become few large inserts.

ClickHouse wants about one insert per second, not one per event. Streams hand
their validated events to ``submit`` and wait on the returned ticket; one
thread flushes everything pending when ``flush_interval_ms`` has passed since
the oldest pending batch or ``flush_max_events`` are waiting, and resolves the
tickets only after the insert committed. A failed insert is retried (the
batches stay pending), so a stream's ack waits; past ``max_pending_events``
new batches are refused so memory stays bounded while the store is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ai_chargeback_proto import pb

from .. import metrics
from ..store.clickhouse import Store, StoreError, is_embedded
from .protobuf_insert import EmbeddedProtobufInserter
from .rows import KEY_COLUMNS, events_to_columns, key_columns

log = logging.getLogger(__name__)

EVENTS_TABLE = "usage_events"
# ~190 bytes an id in memory: 500k ids cost about 95 MB and cover minutes to hours of
# traffic, the window in which senders resend; exactness past it comes from the store.
RECENT_IDS_CAPACITY = 500_000
RECENT_IDS_WINDOW_HOURS = 24
RETRY_BACKOFF_MAX_S = 5.0

Enricher = Callable[[dict[str, list[Any]]], None]
# Called with the inserted columns only after ClickHouse committed them (the
# rollup maintainer marks the hours they touched as needing a rebuild).
AfterInsert = Callable[[dict[str, list[Any]]], None]


class Backpressure(Exception):
    """Too many events are waiting for the store; the sender should back off and resend."""


@dataclass(eq=False)
class Ticket:
    events: Sequence[pb.UsageEvent]
    sender_id: str
    received_at: float = field(default_factory=time.perf_counter)
    stored: int = 0
    duplicates: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False  # the stream stopped waiting; skip if not yet written

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)


class RecentIds:
    """Event ids stored recently by this process: answers 'duplicate' without a query.

    Bounded (oldest forgotten first). It only saves work and makes acks precise:
    exactness in reports comes from the store (ReplacingMergeTree + FINAL), so an
    id forgotten here at worst costs a row that the store collapses.
    """

    def __init__(self, capacity: int = RECENT_IDS_CAPACITY) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add_all(self, event_ids: Sequence[str]) -> None:
        ids = self._ids
        for event_id in event_ids:
            ids[event_id] = None
        while len(ids) > self._capacity:
            ids.popitem(last=False)


class Writer:
    def __init__(
        self,
        store: Store,
        *,
        flush_interval_ms: int = 1000,
        flush_max_events: int = 100_000,
        max_pending_events: int = 1_000_000,
        enrich: Enricher | None = None,
        after_insert: AfterInsert | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._flush_interval_s = flush_interval_ms / 1000
        self._flush_max_events = flush_max_events
        self._max_pending_events = max_pending_events
        self._enrich = enrich
        self._after_insert = after_insert
        self._clock_ms = clock_ms
        self._recent = RecentIds()
        self._pending: list[Ticket] = []
        self._pending_events = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chargeback-writer", daemon=True)
        self._protobuf: EmbeddedProtobufInserter | None = None
        self.store_healthy = True

    def start(self) -> None:
        """Call after the store's migrations ran."""
        if is_embedded(self._store.dsn):
            self._protobuf = EmbeddedProtobufInserter(self._store, EVENTS_TABLE)
        self._remember_recent_ids()
        self._thread.start()

    def _remember_recent_ids(self) -> None:
        """Reload ids stored in the last RECENT_IDS_WINDOW_HOURS, so a restart (even after
        kill -9) still recognizes batches a sender resends because their ack was lost."""
        try:
            _, rows = self._store.query(
                f"SELECT toString(event_id) FROM `{self._store.database}`.{EVENTS_TABLE} "
                "WHERE ingested_at >= now64(3) - toIntervalHour({hours:UInt32}) "
                "ORDER BY ingested_at DESC LIMIT {limit:UInt64}",
                {"hours": RECENT_IDS_WINDOW_HOURS, "limit": RECENT_IDS_CAPACITY},
            )
        except StoreError as exc:
            log.warning("could not reload recent event ids (duplicates still collapse in the store): %s", exc)
            return
        self._recent.add_all([row[0] for row in reversed(rows)])
        if rows:
            log.info("remembered %d recently stored event ids", len(rows))

    @property
    def pending_events(self) -> int:
        return self._pending_events

    def submit(self, events: Sequence[pb.UsageEvent], sender_id: str) -> Ticket:
        ticket = Ticket(events, sender_id)
        if not events:
            ticket.done.set()
            return ticket
        with self._cond:
            if self._stopping:
                raise Backpressure("aggregator is shutting down")
            if self._pending_events + len(events) > self._max_pending_events:
                raise Backpressure(f"{self._pending_events} events already waiting for the store")
            self._pending.append(ticket)
            self._pending_events += len(events)
            metrics.PENDING_EVENTS.set(self._pending_events)
            # Wake the flush thread when the first batch arrives (it then waits out the
            # interval) and when enough events are waiting to flush at once.
            if len(self._pending) == 1 or self._pending_events >= self._flush_max_events:
                self._cond.notify()
        return ticket

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Flush what is pending (SIGTERM path), then stop the flush thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.ident is not None:  # never started (the aggregator failed to start): nothing to drain
            self._thread.join(drain_timeout_s)

    # -- flush thread -----------------------------------------------------
    def _run(self) -> None:
        backoff_s = 0.05
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                deadline = self._pending[0].received_at + self._flush_interval_s
                while (
                    not self._stopping
                    and self._pending_events < self._flush_max_events
                    and (remaining := deadline - time.perf_counter()) > 0
                ):
                    self._cond.wait(remaining)
                taken = [t for t in self._pending if not t.abandoned]
            try:
                self._write(taken)
            except StoreError as exc:
                metrics.STORE_ERRORS.labels("insert").inc()
                self.store_healthy = False
                log.warning("store insert failed, retrying in %.2fs: %s", backoff_s, exc)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_MAX_S)
                continue
            backoff_s = 0.05
            self.store_healthy = True
            with self._cond:
                done = set(map(id, taken))
                abandoned = [t for t in self._pending if t.abandoned and id(t) not in done]
                self._pending = [t for t in self._pending if id(t) not in done and not t.abandoned]
                self._pending_events = sum(len(t.events) for t in self._pending)
                metrics.PENDING_EVENTS.set(self._pending_events)
            for ticket in taken:
                ticket.done.set()
            for ticket in abandoned:
                ticket.done.set()

    def _write(self, tickets: list[Ticket]) -> None:
        fresh: list[pb.UsageEvent] = []
        senders: list[str] = []
        seen_now: set[str] = set()
        for ticket in tickets:
            stored = duplicates = 0
            for event in ticket.events:
                event_id = event.event_id
                if event_id in self._recent or event_id in seen_now:
                    duplicates += 1
                    continue
                seen_now.add(event_id)
                fresh.append(event)
                senders.append(ticket.sender_id)
                stored += 1
            ticket.stored, ticket.duplicates = stored, duplicates
        if fresh:
            ingested_at_ms = self._clock_ms()
            if self._protobuf is not None:
                # The columns the pricer and the rollups read; ClickHouse builds the rest.
                columns = key_columns(fresh)
                if self._enrich is not None:
                    self._enrich(columns)
                extra = {name: values for name, values in columns.items() if name not in KEY_COLUMNS}
                self._protobuf.insert(fresh, senders, ingested_at_ms, extra)
            else:
                columns = events_to_columns(fresh, senders, ingested_at_ms)
                if self._enrich is not None:
                    self._enrich(columns)
                self._store.insert_columns(EVENTS_TABLE, columns)
            metrics.INSERTS.inc()
            if self._after_insert is not None:
                self._after_insert(columns)
            self._recent.add_all([e.event_id for e in fresh])
        now = time.perf_counter()
        for ticket in tickets:
            metrics.EVENTS_STORED.inc(ticket.stored)
            metrics.EVENTS_DUPLICATE.inc(ticket.duplicates)
            metrics.BATCH_LATENCY.observe(now - ticket.received_at)
