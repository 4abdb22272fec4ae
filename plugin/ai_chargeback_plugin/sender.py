"""Background delivery of usage events to the aggregator over one gRPC stream.

The request path only calls ``EventSender.offer``: an append to a bounded
queue that wakes nobody. A real OS thread (kong-pdk's gevent mode does not
monkey-patch, so blocking I/O in a handler would stall every request) wakes once
per ``flush_interval_ms``, or as soon as a full batch waits, and drains the
queue into batches, appends each batch to the spool (see spool.py: durable on disk when
``spool_dir`` is set) and streams batches from the spool, at most
``MAX_BATCHES_IN_FLIGHT`` unacked. A batch leaves the spool only when the
aggregator acks it. On a broken stream the sender backs off with jitter, fails
over to the next address and resends every unacked batch in order under the
same batch and event ids (the aggregator deduplicates by event id); while
disconnected, new batches wait in the spool, and a restarted plugin server
sends what the previous one left there.

One sender per plugin config (``SenderConfig.sender_key``: Kong's plugin id),
shared by every instance of that config: its spool is keyed by the gateway
node and that id, never by the addresses, so a config edit (a failover address
added) reconfigures the sender in place and the spool drains to the addresses
configured now. Spools nobody holds are adopted and drained too (spool.py).

Events that can be neither queued nor spooled (queue or spool cap reached) are
counted, logged, and reported to the aggregator as a loss record carried in the
next spooled batch, so the gap shows in reports instead of vanishing. Events
the aggregator quarantines (they broke the contract) or finds conflicting with
a stored event are acked, counted and logged: they are kept there, not here.
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
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .channel import bearer_metadata, open_channel
from .config import SenderConfig
from .ids import uuid7
from .spool import MemorySpool, RecordKey, Spool, SpoolFull, adopt, open_spool, orphans, own_slots

log = logging.getLogger("ai-chargeback.sender")

MAX_BATCHES_IN_FLIGHT = 32
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 10.0
CLOSE_FLUSH_TIMEOUT_S = 5.0
# Spools of other plugin configs are adopted only after this long: a config whose
# instance starts late (on its route's first request) finds its own spool first.
ORPHAN_GRACE_S = 120.0
# One sweep per plugin server process per interval, by whichever sender comes first: a listing
# of the node's spool directory, however many senders (plugin configs) the process has.
ORPHAN_SWEEP_INTERVAL_S = 30.0
# Slots of this sender's own key that another process held at start are retried this often.
OWN_SLOTS_RETRY_INTERVAL_S = 5.0


@dataclass
class SenderCounters:
    queued: int = 0
    sent: int = 0  # acked by the aggregator (stored or already stored)
    spooled: int = 0
    dropped: int = 0
    quarantined: int = 0  # acked as quarantined: broke the event contract, kept by the aggregator with the reason
    conflicting: int = 0  # acked as replays whose content differs from the stored event
    usage_parse_failures: int = 0
    reconnects: int = 0

    def as_proto(self) -> pb.SenderStats:
        return pb.SenderStats(
            events_queued=self.queued,
            events_sent=self.sent,
            events_spooled=self.spooled,
            events_dropped=self.dropped,
            usage_parse_failures=self.usage_parse_failures,
            events_quarantined=self.quarantined,
            events_conflicting=self.conflicting,
        )


@dataclass
class _PendingLoss:
    """Drops not yet written into a batch; once in a spooled batch, the spool keeps them."""

    loss_id: str = ""
    first_ms: int = 0
    last_ms: int = 0
    count: int = 0
    reasons: set[str] = field(default_factory=set)

    def after_reporting(self, reported: int) -> _PendingLoss:
        """What is left once `reported` of these drops went into a batch.

        Other threads drop events while the batch is written: those are not in it,
        so they stay pending, under a new id (the aggregator keeps one record per id).
        """
        if self.count <= reported:
            return _PendingLoss()
        return replace(self, loss_id=uuid7(), count=self.count - reported, reasons=set(self.reasons))


class _Stream:
    """One open StreamUsage call: an outbound queue feeding gRPC, and a thread reading acks."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]], on_ack: Callable[[pb.BatchAck], None],
                 on_broken: Callable[[_Stream, str], None]) -> None:  # fmt: skip
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
        """End the call without waiting: the request thread stops, the ack reader sees CANCELLED."""
        self.outbound.put(None)
        self._responses.cancel()


@dataclass(frozen=True, slots=True)
class _InFlight:
    spool: Spool
    key: RecordKey
    batch: pb.UsageBatch


class EventSender:
    def __init__(self, config: SenderConfig, *, sender_id: str | None = None) -> None:
        self.config = config
        self.sender_id = sender_id or f"{socket.gethostname()}/{os.getpid()}/{uuid7()[-8:]}"
        self.counters = SenderCounters()
        # Appended by the request path under _lock, popped by the sender thread alone. No put wakes
        # the sender thread: a wake per event is a futex call and a GIL handover on the request
        # path's thread, for a batch that waits for flush_interval_ms anyway. _ready is set for a
        # full batch, a close or a new config.
        self._queue: deque[pb.UsageEvent] = deque()
        self._ready = threading.Event()
        # Opened by the sender thread: recovering a large spool must not hold Kong's
        # StartInstance (kong-pdk runs plugin constructors under a global lock).
        self._spool: Spool = MemorySpool(0)
        self._adopted: list[Spool] = []  # orphan spools being drained through this sender
        self._spool_ready = threading.Event()
        # sequence -> what is in flight; sequences are per stream attempt, ids are forever
        self._inflight: OrderedDict[int, _InFlight] = OrderedDict()
        self._lock = threading.Condition()
        self._loss = _PendingLoss()
        # Events offered and not yet in the spool (queued or being batched), and batches
        # between a spool and _inflight: both move under the lock, so flush() never sees an
        # event in none of its places.
        self._unspooled = 0
        self._moving = 0
        self._sequence = 0
        # Start at a random address: gateways sharing one list spread over the aggregators.
        self._address_index = random.randrange(len(config.aggregator_addresses))
        self._stream: _Stream | None = None
        self._channel: grpc.Channel | None = None
        self._next_connect_at = 0.0
        self._acked_since_connect = False
        self._backoff_s = BACKOFF_INITIAL_S
        self._new_config: SenderConfig | None = None
        self._started_at = time.monotonic()
        self._held_own_slots: list[Path] = []  # own slots another process held at start: retried
        self._next_own_retry_at = self._started_at + OWN_SLOTS_RETRY_INTERVAL_S
        self._closed = threading.Event()
        self._close_deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="ai-chargeback-sender", daemon=True)
        self._thread.start()

    # -- request path -------------------------------------------------------
    def offer(self, event: pb.UsageEvent) -> bool:
        """Queue an event without blocking. False: it was dropped (and counted)."""
        config = self.config
        with self._lock:
            queued = len(self._queue)
            if queued < config.queue_max_events:
                self._queue.append(event)
                self._unspooled += 1
                self.counters.queued += 1
        if queued >= config.queue_max_events:
            self._record_loss("sender-queue-full", event.started_at_unix_ms, 1)
            return False
        if queued + 1 >= config.batch_max_events and not self._ready.is_set():
            self._ready.set()
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

    # -- configuration --------------------------------------------------------
    def reconfigure(self, config: SenderConfig) -> None:
        """Take a plugin config's new delivery settings (applied by the sender thread, never blocking)."""
        if config.sender_key != self.config.sender_key:
            raise ValueError("a sender keeps its key: the key names its spool")
        with self._lock:
            self._new_config = config
            self._lock.notify_all()
        self._wake()

    def _apply_config(self) -> None:
        with self._lock:
            config, self._new_config = self._new_config, None
        if config is None or config == self.config:
            return
        old, self.config = self.config, config
        self._spool.max_bytes = config.spool_max_bytes
        if config.spool_dir != old.spool_dir:
            self._move_spool(config)
        destination = ("aggregator_addresses", "aggregator_tls", "aggregator_ca_cert_path", "aggregator_client_cert_path",
                       "aggregator_client_key_path", "aggregator_token")  # fmt: skip
        if any(getattr(config, name) != getattr(old, name) for name in destination):
            log.warning("ai-chargeback: aggregator settings changed; reconnecting to %s", ",".join(config.aggregator_addresses))
            self._drop_stream()
            self._address_index = random.randrange(len(config.aggregator_addresses))
            self._next_connect_at = 0.0
            self._backoff_s = BACKOFF_INITIAL_S

    def _move_spool(self, config: SenderConfig) -> None:
        """A new spool_dir: new batches go there; the old spool is drained like an adopted one."""
        try:
            spool = open_spool(config.spool_dir, config.spool_max_bytes, config.sender_key)
        except OSError as exc:
            log.error("ai-chargeback: cannot open spool in %s (%s); keeping %s", config.spool_dir, exc, self._spool.path)
            return
        with self._lock:
            self._adopted.append(self._spool)
            self._spool = spool

    # -- sender thread --------------------------------------------------------
    def _run(self) -> None:
        try:
            self._open_spools()
            while True:
                self._apply_config()
                connected = self._ensure_stream()
                if self._closed.is_set() and not self._queue and (
                    not connected or self._drained() or time.monotonic() >= self._close_deadline
                ):
                    return
                can_send = connected and len(self._inflight) < MAX_BATCHES_IN_FLIGHT
                backlog = not (can_send and self._acked_since_connect)
                wait_s = 0.0 if can_send and self._has_unsent() else self.config.flush_interval_ms / 1000
                if not connected:
                    wait_s = min(wait_s, max(self._next_connect_at - time.monotonic(), 0.01))
                if self._closed.is_set():
                    wait_s = min(wait_s, max(self._close_deadline - time.monotonic(), 0.0))
                self._spool_events(self._collect(wait_s), backlog=backlog)
                if can_send:
                    self._send_from_spools()
                self._sweep_orphans()
        except Exception:
            log.exception("ai-chargeback: sender thread failed; events stay spooled for the next start")
        finally:
            self._shut_down()

    def _open_spools(self) -> None:
        config = self.config
        try:
            self._spool = open_spool(config.spool_dir, config.spool_max_bytes, config.sender_key)
        except OSError as exc:
            log.error("ai-chargeback: cannot open spool in %s (%s); spooling in memory only", config.spool_dir, exc)
            self._spool = MemorySpool(config.spool_max_bytes)
        # This key's slots left by an earlier process are this sender's to drain, now.
        self._held_own_slots = self._adopt(own_slots(config.spool_dir, config.sender_key))
        self._spool_ready.set()

    def _sweep_orphans(self) -> None:
        if self._closed.is_set() or not self.config.spool_dir:
            return
        now = time.monotonic()
        if self._held_own_slots and now >= self._next_own_retry_at:
            self._next_own_retry_at = now + OWN_SLOTS_RETRY_INTERVAL_S
            self._held_own_slots = self._adopt(self._held_own_slots)
        if now >= self._started_at + ORPHAN_GRACE_S and _claim_orphan_sweep(now):
            self._adopt(orphans(self.config.spool_dir, live=_live_keys()))

    def _adopt(self, paths: list[Path]) -> list[Path]:
        """Drain these spools through this sender; returns those a live process holds."""
        mine = {spool.path for spool in (self._spool, *self._adopted)}
        held: list[Path] = []
        for path in paths:
            if path in mine:
                continue
            try:
                spool = adopt(path, self.config.spool_max_bytes)
            except OSError as exc:
                log.warning("ai-chargeback: cannot adopt spool %s: %s", path, exc)
                continue
            if spool is None:
                held.append(path)  # a live process holds it
                continue
            if not spool.unsent_count:
                spool.remove()  # nothing left in it (its last records were acked before it was closed)
                continue
            with self._lock:
                self._adopted.append(spool)
        return held

    def _shut_down(self) -> None:
        """The sender thread's last act: end the stream, close the channel and the spools (durable as they are)."""
        self._drop_stream()
        with self._lock:
            spools = [self._spool, *self._adopted]
        for spool in spools:
            try:
                spool.close()
            except OSError as exc:
                log.error("ai-chargeback: closing spool %s: %s", spool.path, exc)
        with self._lock:
            self._lock.notify_all()

    def _has_unsent(self) -> bool:
        return bool(self._spool.unsent_count or any(s.unsent_count for s in self._adopted))

    def _drained(self) -> bool:
        with self._lock:
            return not self._inflight and not self._has_unsent() and not self._loss.count

    def _collect(self, wait_s: float) -> list[pb.UsageEvent]:
        """Up to a batch of queued events, after waiting up to `wait_s` for a full batch or a wake."""
        batch_max = self.config.batch_max_events
        if wait_s > 0 and len(self._queue) < batch_max:
            self._ready.wait(wait_s)
        self._ready.clear()  # before the pops: an offer from here on sets it again
        take = min(len(self._queue), batch_max)
        return [self._queue.popleft() for _ in range(take)]

    def _wake(self) -> None:
        self._ready.set()

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
            with self._lock:
                self._unspooled -= len(events)
            if events:
                self._record_loss("spool-full", events[0].started_at_unix_ms, len(events))
            log.error("ai-chargeback: %s", exc)
            return
        except OSError as exc:
            with self._lock:
                self._unspooled -= len(events)
            if events:
                self._record_loss("spool-write-failed", events[0].started_at_unix_ms, len(events))
            log.error("ai-chargeback: cannot write spool: %s", exc)
            return
        with self._lock:
            self._unspooled -= len(events)
            if batch.losses:  # now durable inside the batch
                self._loss = self._loss.after_reporting(batch.losses[0].events_lost)
            if backlog:
                self.counters.spooled += len(events)

    def _next_record(self) -> tuple[Spool, RecordKey, pb.UsageBatch] | None:
        """This sender's own batches first, then those of adopted spools."""
        for spool in (self._spool, *self._adopted):
            record = spool.next_unsent()
            if record is not None:
                return spool, record[0], record[1]
        return None

    def _send_from_spools(self) -> None:
        stream = self._stream
        while stream is not None and not stream.broken.is_set() and len(self._inflight) < MAX_BATCHES_IN_FLIGHT:
            with self._lock:
                self._moving += 1
            record = self._next_record()
            if record is None:
                with self._lock:
                    self._moving -= 1
                return
            spool, key, batch = record
            with self._lock:
                self._moving -= 1
                self._sequence += 1
                batch.sequence = self._sequence
                batch.sender_stats.CopyFrom(self.counters.as_proto())
                self._inflight[batch.sequence] = _InFlight(spool, key, batch)
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

    def _drop_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
            channel, self._channel = self._channel, None
        if stream is not None:
            stream.close()
        if channel is not None:
            channel.close()

    def _connect(self) -> bool:
        addresses = self.config.aggregator_addresses
        address = addresses[self._address_index % len(addresses)]
        self._address_index += 1
        self._drop_stream()  # the broken one: its request thread must not wait forever
        try:
            channel = self._open_channel(address)
            stream = _Stream(channel, bearer_metadata(self.config), self._on_ack, self._on_broken)
        except Exception as exc:
            log.warning("ai-chargeback: cannot open stream to %s: %s", address, exc)
            return False
        with self._lock:
            self._channel, self._stream = channel, stream
            self._acked_since_connect = False
            pending = [entry.batch for entry in self._inflight.values()]
        for batch in pending:  # resend unacked batches in order, same ids
            stream.outbound.put(batch)
        return True

    def _open_channel(self, address: str) -> grpc.Channel:
        return open_channel(self.config, address)

    def _on_ack(self, ack: pb.BatchAck) -> None:
        with self._lock:
            entry = self._inflight.get(ack.sequence)
            if entry is None or entry.batch.batch_id != ack.batch_id:
                return
            if ack.status != pb.BatchAck.STATUS_STORED:
                stream = self._stream
                if stream is not None:
                    stream.outbound.put(entry.batch)  # the aggregator asked for a resend
                return
            del self._inflight[ack.sequence]
            self._acked_since_connect = True
            self._backoff_s = BACKOFF_INITIAL_S
            self.counters.sent += ack.events_stored + ack.events_duplicate
            self.counters.quarantined += ack.events_quarantined or len(ack.rejected)
            self.counters.conflicting += ack.events_conflicting
            self._lock.notify_all()
        entry.spool.ack(entry.key)
        if entry.spool is not self._spool and not entry.spool.unacked_count:
            self._retire(entry.spool)
        if ack.rejected:
            first = ack.rejected[0]
            log.error("ai-chargeback: aggregator quarantined %d event(s) of batch %s (not billed; kept there with the "
                      "reason), e.g. %s: %s", len(ack.rejected), ack.batch_id, first.event_id, first.reason)  # fmt: skip
        if ack.events_conflicting:
            log.error("ai-chargeback: %d event(s) of batch %s replayed a stored event id with other content "
                      "(kept aside by the aggregator, not billed)", ack.events_conflicting, ack.batch_id)  # fmt: skip

    def _retire(self, spool: Spool) -> None:
        """An adopted spool with nothing left: remove it."""
        with self._lock:
            if spool not in self._adopted or spool.unsent_count or spool.unacked_count:
                return
            self._adopted.remove(spool)
        log.warning("ai-chargeback: adopted spool %s delivered; removed", spool.path)
        spool.remove()

    def _on_broken(self, stream: _Stream, reason: str) -> None:
        if not self._closed.is_set() and stream is self._stream:
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
                if (self._spool_ready.is_set() and not self._unspooled and not self._moving and not self._inflight
                        and not self._has_unsent() and not self._loss.count):  # fmt: skip
                    return True
                self._lock.wait(0.05)
        return False

    def close(self, timeout_s: float = CLOSE_FLUSH_TIMEOUT_S) -> None:
        """Stop within ``timeout_s``: deliver what can be delivered by then; the rest stays spooled.

        The sender thread ends the stream and closes the spools itself, so a close that
        runs out of time never races it; events still queued are spooled first.
        """
        self._close_deadline = time.monotonic() + timeout_s
        self._closed.set()
        with self._lock:
            self._lock.notify_all()
        self._wake()
        self._thread.join(max(self._close_deadline - time.monotonic(), 0.0))


_senders: dict[str, EventSender] = {}
_senders_lock = threading.Lock()
_next_orphan_sweep_at = 0.0


def _claim_orphan_sweep(now: float) -> bool:
    """True for the one sender of this process whose turn it is to look for orphan spools."""
    global _next_orphan_sweep_at
    with _senders_lock:
        if now < _next_orphan_sweep_at:
            return False
        _next_orphan_sweep_at = now + ORPHAN_SWEEP_INTERVAL_S
        return True


def _live_keys() -> frozenset[str]:
    with _senders_lock:
        return frozenset(_senders)


def sender_for(config: SenderConfig) -> EventSender:
    """The sender of a plugin config (by its key), shared by every instance of it.

    A new config version of the same plugin reconfigures the running sender: its
    spool and its unacked batches stay, and go to the addresses configured now.
    """
    with _senders_lock:
        sender = _senders.get(config.sender_key)
        if sender is None:
            sender = _senders[config.sender_key] = EventSender(config)
        elif sender.config != config:
            sender.reconfigure(config)
        return sender


@atexit.register
def _close_all() -> None:
    with _senders_lock:
        senders = list(_senders.values())
    deadline = time.monotonic() + CLOSE_FLUSH_TIMEOUT_S
    for sender in senders:
        sender.close(max(deadline - time.monotonic(), 0.0))
