"""Coalescing writer: batches from every stream become few large inserts, each event once.

ClickHouse wants about one insert per second, not one per event. Streams hand
their admitted batches to ``submit`` and wait on the returned ticket; one
thread flushes everything pending when ``flush_interval_ms`` has passed since
the oldest pending batch (or enough events or bytes wait), and resolves the
tickets only after the store committed every row they account for:

1. loss records (``delivery_losses``) and quarantined events (``quarantined_events``);
2. dedup: each event id is looked up among recently written ids, then in the
   store itself (``usage_events`` is keyed by the id), so "stored once" holds
   for any age and across aggregators, not only inside a memory window (with
   the embedded store, whose only writer this is, a flush of ids above all it
   may hold unremembered needs no store lookup: ``_unremembered_up_to``);
3. a replay whose content differs from the stored event goes to
   ``event_conflicts`` (never billed: the stored version stands);
4. the new events are priced and inserted.

While one flush goes through 2-4, a second thread readies the next one (``ahead.py``:
its batches gathered, priced and framed), so the two overlap on two cores.

Anything the store or the disk does (errors, a full disk, a dropped connection)
fails the attempt, never the thread: the flush is retried with backoff, the
writer reports itself unhealthy (readiness and gRPC health say so) and, when
nothing is pending, probes the store until a write succeeds again. Memory stays
bounded: past ``max_pending_events`` or ``max_pending_bytes`` new batches are
refused (the ingest service waits for room while the store keeps up, and answers
RESOURCE_EXHAUSTED while it does not).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..settings import AggregatorSettings
from ..store.clickhouse import Store
from .admission import Admitted, Quarantined, recheck
from .ahead import Enricher, Prepared, Preparer, gather, same_tickets
from .arrivals import Arrivals
from .content import UNKNOWN_CONTENT_HASH
from .sinks import (
    Candidates,
    Conflict,
    EventSink,
    Found,
    RulesFlagged,
    insert_conflicts,
    insert_losses,
    insert_quarantined,
    sink_for,
)

log = logging.getLogger(__name__)

# The recently written ids spare the store a lookup (and cover a replica that has not caught
# up yet); exactness comes from the lookup, or, with the embedded store, from knowing that no
# id above the largest one forgotten can be stored unremembered. ~200 bytes an id: ~10 MB.
RECENT_IDS_CAPACITY = 50_000
LOSS_IDS_CAPACITY = 100_000
_UINT64 = (1 << 64) - 1
RETRY_BACKOFF_INITIAL_S = 0.05
RETRY_BACKOFF_MAX_S = 5.0
# Flush early once this share of the byte budget waits: admissions blocked on it move, and one
# insert stays small (the embedded engine holds about 3 KB per row of an insert while writing it).
# Events as the plugin sends them (~530 bytes) reach it before flush_max_events: at a quarter
# (~5k events an insert) they ran at 47k events/s, at two fifths (~8k) 57k, with fewer parts to
# merge; the 1M burst of such events peaked at 490 MB against 494-497 (bench/notes.md).
EARLY_FLUSH_BYTES_SHARE = 0.4
_DEFAULTS = AggregatorSettings.model_fields  # the settings hold the defaults (one copy)
_LOOKUP_SECONDS = metrics.STORE_WRITE_SECONDS.labels("lookup")
_INSERT_SECONDS = metrics.STORE_WRITE_SECONDS.labels("insert")
_FLUSH_REASONS = {reason: metrics.FLUSHES.labels(reason) for reason in ("full", "interval", "quiet", "stopping")}

# Called with the inserted key columns only after ClickHouse committed them (the
# rollup maintainer marks the hours they touched as needing a rebuild).
AfterInsert = Callable[[dict[str, list[Any]]], None]


class Backpressure(Exception):
    """No room for the batch now. ``waitable``: the store keeps up, room comes back soon."""

    def __init__(self, message: str, *, waitable: bool) -> None:
        super().__init__(message)
        self.waitable = waitable


@dataclass(slots=True)
class Outcome:
    stored: int = 0
    duplicates: int = 0
    conflicting: int = 0
    quarantined: int = 0


@dataclass(eq=False)
class Ticket:
    admitted: Admitted
    received_at: float = field(default_factory=time.perf_counter)
    outcome: Outcome = field(default_factory=Outcome)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False  # the stream stopped waiting: dropped unless already being written
    on_done: Callable[[Ticket], None] | None = None  # the event loop's waker, set before submit

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)

    def _resolve(self) -> None:
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)


class RecentIds:
    """Ids (with their content hashes) this process wrote or found stored, bounded.

    Two generations of plain dicts: when the young one is full it becomes the old
    one and the previous old one is forgotten, so memory stays within ``capacity``
    entries and every operation is O(1). Keys and values are objects of their own,
    made when remembered: holding on to the strings made at admission would pin the
    memory of everything allocated around them for as long as the id is remembered.
    """

    def __init__(self, capacity: int = RECENT_IDS_CAPACITY) -> None:
        self._generation = max(capacity // 2, 1)
        self._young: dict[bytes, int] = {}
        self._old: dict[bytes, int] = {}
        # The largest encoded id forgotten so far (canonical ids sort as their 128-bit numbers).
        self.forgotten_up_to = b""

    def _rotate(self) -> None:
        if self._old:
            self.forgotten_up_to = max(self.forgotten_up_to, max(self._old))
        self._old, self._young = self._young, {}

    def get(self, key: str) -> int | None:
        encoded = key.encode()
        found = self._young.get(encoded)
        return self._old.get(encoded) if found is None else found

    def __contains__(self, key: str) -> bool:
        encoded = key.encode()
        return encoded in self._young or encoded in self._old

    def add(self, key: str, content_hash: int) -> None:
        if len(self._young) >= self._generation:
            self._rotate()
        self._young[key.encode()] = content_hash & _UINT64  # (a new int, not the admission's)

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def none_of(self, keys: Sequence[bytes]) -> bool:
        """True when no encoded id of ``keys`` is remembered (C-level loops: the common flush)."""
        return not any(map(self._young.__contains__, keys)) and not any(map(self._old.__contains__, keys))

    def add_new(self, keys: Sequence[bytes], content_hashes: Sequence[int]) -> None:
        """Remember encoded ids known to be absent, as ``add`` one by one would (same generations)."""
        start = 0
        while start < len(keys):
            if len(self._young) >= self._generation:
                self._rotate()
            end = start + self._generation - len(self._young)
            self._young.update(zip(keys[start:end], content_hashes[start:end]))
            start = end


@dataclass
class _Flush:
    tickets: list[Ticket]
    ingested_at_ms: int
    side_tables_done: bool = False
    events_done: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    prepared: Prepared | None = None  # readied while the flush before was written (ahead.py)
    # The insert's own rule check refused this flush once: from then on the lookup checks.
    rules_flagged: bool = False


class Writer:
    def __init__(
        self,
        store: Store,
        *,
        flush_interval_ms: int = _DEFAULTS["flush_interval_ms"].default,
        flush_max_events: int = _DEFAULTS["flush_max_events"].default,
        max_pending_events: int = _DEFAULTS["max_pending_events"].default,
        max_pending_bytes: int = _DEFAULTS["max_pending_bytes"].default,
        enrich: Enricher | None = None,
        after_insert: AfterInsert | None = None,
        aggregator_id: str = "aggregator",
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        recent_ids_capacity: int = RECENT_IDS_CAPACITY,
    ) -> None:
        self._store = store
        self._flush_interval_s = flush_interval_ms / 1000
        self._flush_max_events = flush_max_events
        self._max_pending_events = max_pending_events
        self._max_pending_bytes = max_pending_bytes
        self._enrich = enrich
        self._after_insert = after_insert
        self._aggregator_id = aggregator_id
        self._clock_ms = clock_ms
        self._recent = RecentIds(recent_ids_capacity)
        # Every stored id above this one is in self._recent, when only this process writes to
        # the store (embedded): a flush whose ids are all above it needs no dedup lookup.
        # None: the store is shared, or this is not known: every flush is looked up.
        self._unremembered_up_to: bytes | None = None
        self._loss_ids = RecentIds(LOSS_IDS_CAPACITY)
        self._pending: list[Ticket] = []
        self._in_flight: frozenset[int] | None = None  # the flush being written (ids of its tickets)
        self._ahead_requested = False  # the flush after it is being readied
        self._pending_events = 0
        self._pending_bytes = 0
        self._arrivals = Arrivals(self._flush_interval_s)
        self._wakes_at = float("inf")  # when the writer, waiting for a flush to be due, looks again
        self._cond = threading.Condition()
        self._stopping = False
        self._drain_deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="chargeback-writer", daemon=True)
        self._sink: EventSink | None = None
        self._preparer: Preparer | None = None
        self._healthy = True
        self._health_reason = "ok"
        # Hooks the server sets: health changes (gRPC health, readiness) and freed room
        # (admissions waiting for it). Called from the writer thread.
        self.on_health_change: Callable[[bool, str], None] = lambda healthy, reason: None
        self.on_room: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Call after the store's migrations ran."""
        self._sink = sink_for(self._store)
        try:
            newest = self._sink.newest_stored_id()
        except Exception as exc:  # a store that cannot say: look every flush up
            log.warning("could not read the newest stored event id; every flush is looked up: %s", exc)
            newest = None
        self._unremembered_up_to = None if newest is None else newest.encode()
        self._preparer = Preparer(self._sink, self._enrich)
        self._preparer.start()
        self._thread.start()

    # -- state read by the server -------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def health_reason(self) -> str:
        return self._health_reason

    @property
    def checks_in_store(self) -> bool:
        """Whether admission may leave the per-field limits to the store (``sql_validation``)."""
        return self._sink is not None and self._sink.checks_rules

    @property
    def pending_events(self) -> int:
        return self._pending_events

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    # -- streams ------------------------------------------------------------------
    def has_room(self, events: int, nbytes: int) -> bool:
        """Whether a batch this large would be taken now (``submit`` raises Backpressure when not)."""
        with self._cond:
            return self._fits(events, nbytes)

    def _fits(self, events: int, nbytes: int) -> bool:
        """Called with the lock held. One batch is always taken when nothing waits, however large:
        else it never could be."""
        return not self._pending or (self._pending_events + events <= self._max_pending_events
                                     and self._pending_bytes + nbytes <= self._max_pending_bytes)  # fmt: skip

    def submit(self, admitted: Admitted, on_done: Callable[[Ticket], None] | None = None) -> Ticket:
        ticket = Ticket(admitted, on_done=on_done)
        if not admitted.has_work:
            ticket.outcome.quarantined = 0
            ticket._resolve()
            return ticket
        with self._cond:
            if self._stopping:
                raise Backpressure("aggregator is shutting down", waitable=False)
            if not self._fits(admitted.events, admitted.nbytes):
                raise Backpressure(f"{self._pending_events} events ({self._pending_bytes >> 20} MiB) already wait for the store",
                                   waitable=self._healthy)  # fmt: skip
            self._pending.append(ticket)
            self._arrivals.arrived(ticket.received_at)
            self._pending_events += admitted.events
            self._pending_bytes += admitted.nbytes
            self._gauge_pending()
            # Wake the flush thread for the first batch (it then waits out the interval), when
            # enough waits to flush at once, and when batches come faster than it planned for.
            if len(self._pending) == 1 or self._flush_due() or self._arrivals.quiet_at() < self._wakes_at:
                self._cond.notify()
            self._request_ahead()
        return ticket

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Flush what is pending (SIGTERM path), then stop the flush thread."""
        with self._cond:
            self._stopping = True
            self._drain_deadline = time.monotonic() + drain_timeout_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(drain_timeout_s + 1)
        if self._preparer is not None:
            self._preparer.stop()
        if self._sink is not None:
            self._sink.end_attempt(including_ahead=True)

    # -- flush thread --------------------------------------------------------------
    def _flush_due(self) -> bool:
        return (self._pending_events >= self._flush_max_events
                or self._pending_bytes >= self._max_pending_bytes * EARLY_FLUSH_BYTES_SHARE)  # fmt: skip

    def _gauge_pending(self) -> None:
        metrics.PENDING_EVENTS.set(self._pending_events)
        metrics.PENDING_BYTES.set(self._pending_bytes)

    def _run(self) -> None:
        backoff = RETRY_BACKOFF_INITIAL_S
        while True:
            try:
                taken = self._next_flush(backoff)
                if taken is None:
                    return
                if taken:
                    assert self._preparer is not None
                    prepared = self._preparer.claim(taken)
                    with self._cond:
                        self._in_flight, self._ahead_requested = frozenset(map(id, taken)), False
                        self._request_ahead()
                    started = time.perf_counter()
                    try:
                        self._write(taken, prepared)
                    finally:
                        metrics.WRITER_BUSY_SECONDS.inc(time.perf_counter() - started)
                        with self._cond:
                            self._in_flight = None
                    if self._stopping and time.monotonic() >= self._drain_deadline:
                        return  # the store never came back: what is left stays in the senders' spools
                elif not self._healthy:
                    self._probe()
                backoff = RETRY_BACKOFF_INITIAL_S if self._healthy else min(backoff * 2, RETRY_BACKOFF_MAX_S)
            except Exception:  # never let the writer die: log, back off, go on
                log.exception("writer loop failed; retrying in %.2fs", backoff)
                self._set_health(False, "writer error")
                time.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)

    def _next_flush(self, probe_after_s: float) -> list[Ticket] | None:
        """Tickets to write now; [] when it is time to probe an unhealthy store; None to exit."""
        with self._cond:
            while not self._pending and not self._stopping:
                if not self._healthy:
                    self._cond.wait(probe_after_s)
                    if not self._pending:
                        return []
                    break
                self._cond.wait()
            if not self._pending:
                return None  # stopping, nothing left
            # Until the interval is out, a full flush waits, or batches stop coming (arrivals.py).
            deadline = self._pending[0].received_at + self._flush_interval_s
            while not self._stopping and not self._flush_due():
                now, quiet_at = time.perf_counter(), self._arrivals.quiet_at()
                if now >= deadline or now >= quiet_at:
                    _FLUSH_REASONS["interval" if now >= deadline else "quiet"].inc()
                    break
                self._wakes_at = min(deadline, quiet_at)
                self._cond.wait(self._wakes_at - now)
                self._wakes_at = float("inf")
            else:
                _FLUSH_REASONS["stopping" if self._stopping else "full"].inc()
            self._drop_abandoned()
            return self._take()

    def _take(self) -> list[Ticket]:
        """The oldest pending batches, up to one insert's worth (always at least one batch)."""
        return self._one_insert(self._pending)[0]

    def _one_insert(self, tickets: Sequence[Ticket]) -> tuple[list[Ticket], bool]:
        """The first of ``tickets`` up to one insert's worth; True when the next one would not fit."""
        taken: list[Ticket] = []
        events = nbytes = 0
        byte_limit = self._max_pending_bytes * EARLY_FLUSH_BYTES_SHARE
        for ticket in tickets:
            if taken and (events + ticket.admitted.events > self._flush_max_events or nbytes + ticket.admitted.nbytes > byte_limit):
                return taken, True
            taken.append(ticket)
            events += ticket.admitted.events
            nbytes += ticket.admitted.nbytes
        return taken, False

    def _request_ahead(self) -> None:
        """Have the preparer ready the next flush while the one in flight is in the store, once
        that flush is settled: a full insert's worth waits behind the one in flight, so the next
        take picks exactly these (unless a stream abandons one meanwhile, which the preparer's
        claim detects). Until then more batches may join it. Called with the lock held: when a
        flush is taken, and as batches arrive during its write (at a start, or when traffic
        picks up, the backlog fills only then)."""
        if self._in_flight is None or self._ahead_requested or self._preparer is None:
            return
        in_flight = self._in_flight
        following, full = self._one_insert([t for t in self._pending if id(t) not in in_flight])
        if full and not any(ticket.abandoned for ticket in following):
            self._ahead_requested = True
            self._preparer.request(following)

    def _drop_abandoned(self) -> None:
        """Batches whose stream stopped waiting (it answered RETRY) are not written behind its back."""
        kept = [t for t in self._pending if not t.abandoned]
        if len(kept) == len(self._pending):
            return
        for ticket in self._pending:
            if ticket.abandoned:
                ticket._resolve()
        self._pending = kept
        self._recount()

    def _recount(self) -> None:
        self._pending_events = sum(t.admitted.events for t in self._pending)
        self._pending_bytes = sum(t.admitted.nbytes for t in self._pending)
        self._gauge_pending()

    def _write(self, tickets: list[Ticket], prepared: Prepared | None = None) -> None:
        flush = _Flush(tickets, ingested_at_ms=self._clock_ms(), prepared=prepared)
        try:
            self._write_flush(flush)
        finally:
            if flush.prepared is not None and self._sink is not None:  # its events were never written (all abandoned)
                self._sink.discard(flush.prepared.candidates)

    def _write_flush(self, flush: _Flush) -> None:
        backoff = RETRY_BACKOFF_INITIAL_S
        while True:
            try:
                self._attempt(flush)
                break
            except Exception as exc:  # StoreError, OSError (a full disk), anything: retry, never die
                self._unremembered(flush)
                self._end_attempt()
                metrics.STORE_ERRORS.labels("insert").inc()
                self._set_health(False, f"inserts failing ({type(exc).__name__})")
                if self._stopping and time.monotonic() >= self._drain_deadline:
                    log.error("store still failing at shutdown; %d batches stay unacked (their senders resend them): %s",
                              len(flush.tickets), exc)  # fmt: skip
                    return
                log.warning("store write failed, retrying in %.2fs: %s", backoff, exc)
                with self._cond:
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                if not flush.events_done:  # (side-table rows of a dropped batch are idempotent)
                    with self._cond:
                        flush.tickets = [t for t in flush.tickets if not t.abandoned]
                        self._drop_abandoned()
                    if not flush.tickets:
                        return
        self._end_attempt()
        self._set_health(True, "ok")
        self._finish(flush)

    def _unremembered(self, flush: _Flush) -> None:
        """A failed attempt may have stored events it did not remember: its retries look them up."""
        if self._unremembered_up_to is not None:
            largest = [max(t.admitted.ids) for t in flush.tickets if t.admitted.ids]
            if largest:
                self._unremembered_up_to = max(self._unremembered_up_to, max(largest).encode())

    def _maybe_stored_unremembered(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` that may be in the store without being remembered (see
        ``_unremembered_up_to``): the ones not above every id that may be stored and not remembered."""
        if self._unremembered_up_to is None:
            return ids
        bound = max(self._unremembered_up_to, self._recent.forgotten_up_to).decode()
        if min(ids) > bound:
            return []
        return [eid for eid in ids if eid <= bound]

    def _end_attempt(self) -> None:
        if self._sink is not None:
            try:
                self._sink.end_attempt()
            except OSError as exc:
                log.warning("could not remove an insert payload file: %s", exc)

    def _attempt(self, flush: _Flush) -> None:
        assert self._sink is not None
        now_ms = self._clock_ms()
        if not flush.side_tables_done:
            losses = [(loss, t.admitted.sender_id) for t in flush.tickets for loss in t.admitted.losses]
            quarantined = [(q, t.admitted.sender_id, t.admitted.batch_id) for t in flush.tickets for q in t.admitted.quarantined]
            if losses:
                insert_losses(self._store, losses, now_ms)
            if quarantined:
                insert_quarantined(self._store, quarantined, now_ms)
            flush.side_tables_done = True
            self._count_losses(losses)
        if not flush.events_done:
            flush.outcomes = self._write_events(flush, now_ms)
            flush.events_done = True

    def _write_events(self, flush: _Flush, now_ms: int) -> list[Outcome]:
        assert self._sink is not None
        prepared, flush.prepared = flush.prepared, None
        if prepared is not None and not same_tickets(prepared.tickets, flush.tickets):
            self._sink.discard(prepared.candidates)  # batches were dropped since (a retry without the abandoned)
            prepared = None
        if prepared is not None:
            self._sink.adopt(prepared.candidates)
        else:
            prepared = gather(flush.tickets, self._enrich)
            if prepared.candidates.ids:
                self._sink.prepare(prepared.candidates, prepared.columns)
        candidates, columns = prepared.candidates, prepared.columns
        outcomes = [Outcome(quarantined=len(t.admitted.quarantined)) for t in flush.tickets]
        if not candidates.ids:
            return outcomes
        ids, keys = candidates.ids, prepared.keys
        if keys is not None and not flush.rules_flagged and self._recent.none_of(keys):
            if self._insert_if_all_new(flush, candidates, columns, keys, outcomes):
                return outcomes
        # Some ids repeat, are remembered or stored, or the insert's check refused the flush: this
        # lookup checks the rules itself (and sees anything stored meanwhile).
        unknown = [eid for eid in dict.fromkeys(ids) if eid not in self._recent]
        found = Found()
        if unknown or self._sink.checks_rules:
            with _LOOKUP_SECONDS.time():
                found = self._sink.lookup(candidates, unknown)
        if found.suspects and self._quarantine_flagged(flush, candidates, found.suspects, now_ms):
            return self._write_events(flush, now_ms)  # again, without the events just quarantined
        stored = found.stored
        fresh, conflicts, standing = self._classify(candidates, stored, outcomes)
        if conflicts:
            insert_conflicts(self._store, conflicts, now_ms)
        if fresh:
            if len(fresh) == len(candidates):
                new, new_columns = candidates, columns
            else:
                new = candidates.select(fresh)
                new_columns = {name: [values[i] for i in fresh] for name, values in columns.items()}
            with _INSERT_SECONDS.time():
                self._sink.insert(new, new_columns, flush.ingested_at_ms)
            metrics.INSERTS.inc()
            self._after_commit(new_columns)
        for event_id, content_hash in standing.items():
            self._recent.add(event_id, content_hash)
        return outcomes

    def _quarantine_flagged(self, flush: _Flush, candidates: Candidates, suspects: set[tuple[str, int]],
                            now_ms: int) -> bool:  # fmt: skip
        """Events the store's rule check flagged: validated again as admission would have, the
        invalid ones moved to their batch's quarantine (written before anything is acked).
        True when any moved."""
        moved: dict[int, dict[int, Quarantined]] = {}  # ticket -> position in its batch -> record
        position = 0
        for owner, ticket in enumerate(flush.tickets):
            for local in range(ticket.admitted.events):
                if (candidates.ids[position], candidates.hashes[position]) in suspects:
                    record = recheck(ticket.admitted, local)
                    if record is not None:
                        moved.setdefault(owner, {})[local] = record
                position += 1
        if not moved:
            return False
        flush.side_tables_done = False  # a retry writes them again (quarantined_events keeps one row per event)
        late = [(record, flush.tickets[owner].admitted.sender_id, flush.tickets[owner].admitted.batch_id)
                for owner, records in moved.items() for record in records.values()]  # fmt: skip
        for owner, records in moved.items():
            flush.tickets[owner].admitted.quarantine(records)
        insert_quarantined(self._store, late, now_ms)
        flush.side_tables_done = True
        return True

    def _insert_if_all_new(self, flush: _Flush, candidates: Candidates, columns: dict[str, list[Any]],
                           keys: list[bytes], outcomes: list[Outcome]) -> bool:  # fmt: skip
        """The usual flush: no id twice, none remembered. When the store holds none of them either,
        every event is new: they are inserted with no Python step per event, and the insert
        itself checks the rules the store checks (the payload is read once, not twice).
        False, with nothing stored, when the store holds one or the insert's check flags one."""
        assert self._sink is not None
        at_risk = self._maybe_stored_unremembered(candidates.ids)
        if not at_risk:
            metrics.LOOKUPS_SKIPPED.inc()
        else:
            with _LOOKUP_SECONDS.time():
                found = self._sink.lookup(candidates, at_risk, check_rules=False)
            if found.stored:
                return False
        try:
            with _INSERT_SECONDS.time():
                self._sink.insert(candidates, columns, flush.ingested_at_ms, check_rules=True)
        except RulesFlagged:
            metrics.RULE_CHECK_REFUSALS.inc()
            flush.rules_flagged = True  # its retries check in the lookup, which says which events
            return False
        metrics.INSERTS.inc()
        self._after_commit(columns)
        self._recent.add_new(keys, candidates.hashes)
        for outcome, ticket in zip(outcomes, flush.tickets):
            outcome.stored = ticket.admitted.events
        return True

    def _classify(self, candidates: Candidates, stored: dict[str, int],
                  outcomes: list[Outcome]) -> tuple[list[int], list[Conflict], dict[str, int]]:  # fmt: skip
        """Each event is new, a duplicate of the version that stands, or a conflict with it.

        The version that stands is the stored one (recent ids, then the store), else the
        first occurrence in this flush. Stored rows from before content hashes existed
        (hash 0) cannot be compared: a replay of one counts as a duplicate.
        """
        fresh: list[int] = []
        conflicts: list[Conflict] = []
        standing: dict[str, int] = {}
        for i, (event_id, content_hash) in enumerate(zip(candidates.ids, candidates.hashes)):
            outcome = outcomes[candidates.owner[i]]
            reference = standing.get(event_id)
            if reference is None:
                reference = self._recent.get(event_id)
                if reference is None:
                    reference = stored.get(event_id)
                if reference is None:
                    standing[event_id] = content_hash
                    fresh.append(i)
                    outcome.stored += 1
                    continue
                standing[event_id] = reference
            if reference == content_hash or reference == UNKNOWN_CONTENT_HASH:
                outcome.duplicates += 1
            else:
                outcome.conflicting += 1
                conflicts.append(Conflict(candidates.payloads[i], content_hash, reference, candidates.senders[i],
                                          candidates.batch_ids[i]))  # fmt: skip
        return fresh, conflicts, standing

    def _after_commit(self, columns: dict[str, list[Any]]) -> None:
        if self._after_insert is None:
            return
        try:
            self._after_insert(columns)
        except Exception:  # the rows are committed: a hook failure must not make the flush retry
            log.exception("after-insert hook failed (rollups reconcile the hours later)")

    def _count_losses(self, losses: list[tuple[Any, str]]) -> None:
        for loss, sender_id in losses:
            if loss.loss_id in self._loss_ids:
                continue  # a resent batch carries the same loss record
            self._loss_ids.add(loss.loss_id, 1)
            metrics.EVENTS_LOST_REPORTED.labels(loss.reason[:64] or "unknown").inc(loss.events_lost)
            log.error("sender %s reports %d events lost: %s", sender_id, loss.events_lost, loss.reason)

    def _finish(self, flush: _Flush) -> None:
        now = time.perf_counter()
        for ticket, outcome in zip(flush.tickets, flush.outcomes):
            ticket.outcome = outcome
            metrics.EVENTS_STORED.inc(outcome.stored)
            metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
            metrics.EVENTS_CONFLICTING.inc(outcome.conflicting)
            for quarantined in ticket.admitted.quarantined:
                metrics.EVENTS_QUARANTINED.labels(quarantined.field).inc()
            metrics.BATCH_LATENCY.observe(now - ticket.received_at)
        with self._cond:
            written = set(map(id, flush.tickets))
            self._pending = [t for t in self._pending if id(t) not in written]
            self._recount()
        for ticket in flush.tickets:
            ticket.admitted.release_stored()  # its stream may ack it later: meanwhile it holds no events
            ticket._resolve()
        self.on_room()

    def _probe(self) -> None:
        """Nothing pending and the store failing: try a small write; success means healthy again."""
        assert self._sink is not None
        try:
            self._sink.probe(self._aggregator_id)
        except Exception as exc:
            metrics.STORE_ERRORS.labels("probe").inc()
            self._set_health(False, f"inserts failing ({type(exc).__name__})")
            log.info("store write probe failed: %s", exc)
            return
        self._set_health(True, "ok")
        log.info("store write probe succeeded: storing again")

    def _set_health(self, healthy: bool, reason: str) -> None:
        changed = healthy != self._healthy
        self._healthy, self._health_reason = healthy, reason
        metrics.STORE_WRITABLE.set(1 if healthy else 0)
        if changed:
            (log.info if healthy else log.error)("store writes %s", "recovered" if healthy else f"failing: {reason}")
            try:
                self.on_health_change(healthy, reason)
            except Exception:
                log.exception("health hook failed")
