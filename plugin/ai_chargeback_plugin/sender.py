"""Background delivery of usage events to the aggregator over one gRPC stream.

The request path only calls ``EventSender.offer``: a non-blocking put on a
bounded queue. A real OS thread (kong-pdk's gevent mode does not monkey-patch,
so blocking I/O in a handler would stall every request) drains the queue into
batches, appends each batch to the spool (see spool.py: durable on disk when
``spool_dir`` is set) and streams batches from the spool, at most
``MAX_BATCHES_IN_FLIGHT`` unacked. A batch leaves the spool only when the
aggregator acks it as stored. On a broken stream the sender backs off with
jitter, fails over to the next address and resends every unacked batch in
order under the same batch and event ids (the aggregator deduplicates by event
id); while disconnected, new batches wait in the spool, and a restarted plugin
server sends what the previous one left there.

Events that can be neither queued nor spooled (queue or spool cap reached) are
counted, logged, and reported to the aggregator as a loss record carried in the
next spooled batch, so the gap shows in reports instead of vanishing.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .channel import bearer_metadata, open_channel
from .config import SenderConfig
from .ids import uuid7
from .spool import MemorySpool, RecordKey, Spool, SpoolFull, open_spool

log = logging.getLogger("ai-chargeback.sender")

MAX_BATCHES_IN_FLIGHT = 32
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 10.0
CLOSE_FLUSH_TIMEOUT_S = 5.0


@dataclass
class SenderCounters:
    queued: int = 0
    sent: int = 0  # acked by the aggregator (stored or already stored)
    spooled: int = 0
    dropped: int = 0
    rejected: int = 0  # refused by aggregator validation
    usage_parse_failures: int = 0
    reconnects: int = 0

    def as_proto(self) -> pb.SenderStats:
        return pb.SenderStats(
            events_queued=self.queued,
            events_sent=self.sent,
            events_spooled=self.spooled,
            events_dropped=self.dropped,
            usage_parse_failures=self.usage_parse_failures,
        )


@dataclass
class _PendingLoss:
    """Drops not yet written into a batch; once in a spooled batch, the spool keeps them."""

    loss_id: str = ""
    first_ms: int = 0
    last_ms: int = 0
    count: int = 0
    reasons: set[str] = field(default_factory=set)


class _Stream:
    """One open StreamUsage call: an outbound queue feeding gRPC, and a thread reading acks."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]], on_ack, on_broken) -> None:  # type: ignore[no-untyped-def]
        self.outbound: queue.Queue[pb.UsageBatch | None] = queue.Queue()
        self.broken = threading.Event()
        self._responses = pb_grpc.UsageIngestStub(channel).StreamUsage(self._requests(), metadata=metadata or None)
        self._on_ack = on_ack
        self._on_broken = on_broken
        threading.Thread(target=self._read_acks, name="ai-chargeback-acks", daemon=True).start()

    def _requests(self) -> Iterator[pb.UsageBatch]:
        while (batch := self.outbound.get()) is not None:
            yield batch

    def _read_acks(self) -> None:
        try:
            for ack in self._responses:
                self._on_ack(ack)
            reason = "stream closed by aggregator"
        except grpc.RpcError as exc:
            reason = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        except Exception as exc:  # never let the ack reader die silently
            reason = f"{type(exc).__name__}: {exc}"
        self.broken.set()
        self._on_broken(self, reason)

    def close(self) -> None:
        self.outbound.put(None)
        self._responses.cancel()


class EventSender:
    def __init__(self, config: SenderConfig, *, sender_id: str | None = None) -> None:
        self.config = config
        self.sender_id = sender_id or f"{socket.gethostname()}/{os.getpid()}/{uuid7()[-8:]}"
        self.counters = SenderCounters()
        self._queue: queue.Queue[pb.UsageEvent] = queue.Queue(maxsize=config.queue_max_events)
        # Opened by the sender thread: recovering a large spool must not hold Kong's
        # StartInstance (kong-pdk runs plugin constructors under a global lock).
        self._spool: Spool = MemorySpool(0)
        self._spool_ready = threading.Event()
        # sequence -> (spool key, batch); sequences are per stream attempt, ids are forever
        self._inflight: OrderedDict[int, tuple[RecordKey, pb.UsageBatch]] = OrderedDict()
        self._lock = threading.Condition()
        self._loss = _PendingLoss()
        self._unbatched = 0  # events taken off the queue, not yet in the spool
        self._sequence = 0
        # Start at a random address: gateways sharing one list spread over the aggregators.
        self._address_index = random.randrange(len(config.aggregator_addresses))
        self._stream: _Stream | None = None
        self._channel: grpc.Channel | None = None
        self._next_connect_at = 0.0
        self._acked_since_connect = False
        self._backoff_s = BACKOFF_INITIAL_S
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ai-chargeback-sender", daemon=True)
        self._thread.start()

    # -- request path -------------------------------------------------------
    def offer(self, event: pb.UsageEvent) -> bool:
        """Queue an event without blocking. False: it was dropped (and counted)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._record_loss("sender-queue-full", event.started_at_unix_ms, 1)
            return False
        with self._lock:
            self.counters.queued += 1
        return True

    def _record_loss(self, reason: str, at_ms: int, count: int) -> None:
        with self._lock:
            loss = self._loss
            if not loss.loss_id:
                loss.loss_id, loss.first_ms = uuid7(), at_ms
                log.error("ai-chargeback: dropping events (%s); a loss record goes to the aggregator", reason)
            loss.first_ms = min(loss.first_ms, at_ms)
            loss.last_ms = max(loss.last_ms, at_ms)
            loss.count += count
            loss.reasons.add(reason)
            self.counters.dropped += count

    # -- sender thread --------------------------------------------------------
    def _run(self) -> None:
        config = self.config
        try:
            self._spool = open_spool(config.spool_dir, config.spool_max_bytes, ",".join(config.aggregator_addresses))
        except OSError as exc:
            log.error("ai-chargeback: cannot open spool %s (%s); spooling in memory only", config.spool_dir, exc)
            self._spool = MemorySpool(config.spool_max_bytes)
        self._spool_ready.set()
        while True:
            connected = self._ensure_stream()
            if self._closed.is_set() and self._queue.empty() and (not connected or self._drained()):
                return
            can_send = connected and len(self._inflight) < MAX_BATCHES_IN_FLIGHT
            backlog = not (can_send and self._acked_since_connect)
            wait_s = 0.0 if can_send and self._spool.unsent_count else self.config.flush_interval_ms / 1000
            if not connected:
                wait_s = min(wait_s, max(self._next_connect_at - time.monotonic(), 0.01))
            self._spool_events(self._collect(wait_s), backlog=backlog)
            if can_send:
                self._send_from_spool()

    def _drained(self) -> bool:
        with self._lock:
            return not self._inflight and not self._spool.unsent_count and not self._loss.count

    def _collect(self, wait_s: float) -> list[pb.UsageEvent]:
        events: list[pb.UsageEvent] = []
        deadline = time.monotonic() + wait_s
        while len(events) < self.config.batch_max_events:
            try:
                remaining = deadline - time.monotonic()
                event = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            events.append(event)
            self._unbatched += 1
        return events

    def _spool_events(self, events: list[pb.UsageEvent], *, backlog: bool) -> None:
        with self._lock:
            has_loss = bool(self._loss.count)
        if not events and not has_loss:
            return
        batch = pb.UsageBatch(batch_id=uuid7(), sender_id=self.sender_id, events=events)
        with self._lock:
            loss = self._loss
            if loss.count:
                batch.losses.append(pb.LossRecord(
                    loss_id=loss.loss_id, first_lost_at_unix_ms=loss.first_ms, last_lost_at_unix_ms=loss.last_ms,
                    events_lost=loss.count, reason=",".join(sorted(loss.reasons)),
                ))  # fmt: skip
        try:
            self._spool.append(batch)
        except SpoolFull as exc:
            self._unbatched -= len(events)
            if events:
                self._record_loss("spool-full", events[0].started_at_unix_ms, len(events))
            log.error("ai-chargeback: %s", exc)
            return
        except OSError as exc:
            self._unbatched -= len(events)
            if events:
                self._record_loss("spool-write-failed", events[0].started_at_unix_ms, len(events))
            log.error("ai-chargeback: cannot write spool: %s", exc)
            return
        with self._lock:
            self._unbatched -= len(events)
            if batch.losses:
                self._loss = _PendingLoss()  # now durable inside the batch
            if backlog:
                self.counters.spooled += len(events)

    def _send_from_spool(self) -> None:
        stream = self._stream
        while stream is not None and not stream.broken.is_set() and len(self._inflight) < MAX_BATCHES_IN_FLIGHT:
            record = self._spool.next_unsent()
            if record is None:
                return
            key, batch = record
            with self._lock:
                self._sequence += 1
                batch.sequence = self._sequence
                batch.sender_stats.CopyFrom(self.counters.as_proto())
                self._inflight[batch.sequence] = (key, batch)
            stream.outbound.put(batch)

    def _ensure_stream(self) -> bool:
        stream = self._stream
        if stream is not None and not stream.broken.is_set():
            return True
        if time.monotonic() < self._next_connect_at:
            return False
        # Streams open lazily, so success shows only in an ack (which resets the
        # backoff); every attempt pushes the next one out, with jitter so many
        # gateway nodes do not reconnect in step.
        self._next_connect_at = time.monotonic() + self._backoff_s * random.uniform(0.5, 1.5)
        self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
        return self._connect()

    def _connect(self) -> bool:
        addresses = self.config.aggregator_addresses
        address = addresses[self._address_index % len(addresses)]
        self._address_index += 1
        try:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._open_channel(address)
            metadata = bearer_metadata(self.config)
            stream = _Stream(self._channel, metadata, self._on_ack, self._on_broken)
        except Exception as exc:
            log.warning("ai-chargeback: cannot open stream to %s: %s", address, exc)
            return False
        with self._lock:
            self._stream = stream
            self._acked_since_connect = False
            pending = [batch for _, batch in self._inflight.values()]
        for batch in pending:  # resend unacked batches in order, same ids
            stream.outbound.put(batch)
        return True

    def _open_channel(self, address: str) -> grpc.Channel:
        return open_channel(self.config, address)

    def _on_ack(self, ack: pb.BatchAck) -> None:
        with self._lock:
            entry = self._inflight.get(ack.sequence)
            if entry is None or entry[1].batch_id != ack.batch_id:
                return
            key, batch = entry
            if ack.status != pb.BatchAck.STATUS_STORED:
                stream = self._stream
                if stream is not None:
                    stream.outbound.put(batch)  # the aggregator asked for a resend
                return
            del self._inflight[ack.sequence]
            self._acked_since_connect = True
            self._backoff_s = BACKOFF_INITIAL_S
            self.counters.sent += ack.events_stored + ack.events_duplicate
            self.counters.rejected += len(ack.rejected)
            self._lock.notify_all()
        self._spool.ack(key)
        for rejection in ack.rejected:
            log.error("ai-chargeback: aggregator rejected event %s: %s", rejection.event_id, rejection.reason)

    def _on_broken(self, stream: _Stream, reason: str) -> None:
        if not self._closed.is_set():
            log.warning("ai-chargeback: stream to aggregator broke (%s); reconnecting", reason)
        with self._lock:
            self.counters.reconnects += 1
            self._lock.notify_all()

    # -- lifecycle --------------------------------------------------------------
    def flush(self, timeout_s: float) -> bool:
        """Wait until everything offered so far is acked or counted as lost (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                # Every queued event is in the queue, being batched, spooled unsent, in flight,
                # acked, or counted lost; only the last two are settled.
                if (self._spool_ready.is_set() and self._queue.empty() and not self._unbatched and not self._inflight
                        and not self._spool.unsent_count and not self._loss.count):  # fmt: skip
                    return True
                self._lock.wait(0.05)
        return False

    def close(self, timeout_s: float = CLOSE_FLUSH_TIMEOUT_S) -> None:
        """Stop: deliver what can be delivered within the timeout; the rest stays spooled."""
        self._closed.set()
        self._spool_ready.wait(timeout_s)
        self._thread.join(timeout_s)
        if self._stream is not None:
            self._stream.close()
        if self._channel is not None:
            self._channel.close()
        self._spool.close()


_senders: dict[SenderConfig, EventSender] = {}
_senders_lock = threading.Lock()


def sender_for(config: SenderConfig) -> EventSender:
    """One sender per destination, shared by every plugin instance that names it."""
    with _senders_lock:
        sender = _senders.get(config)
        if sender is None:
            sender = _senders[config] = EventSender(config)
        return sender


@atexit.register
def _close_all() -> None:
    with _senders_lock:
        senders = list(_senders.values())
    for sender in senders:
        sender.close()
