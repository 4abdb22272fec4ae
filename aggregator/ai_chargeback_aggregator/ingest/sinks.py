"""What the writer does to the store, one class per kind of store.

Both kinds answer the same two questions for a flush: which of these event ids
are stored already, and with which content hash (``lookup``); and store these
new events (``insert``). The embedded store (chDB) reads the events from one
payload file per flush, for the lookup and the insert alike; a ClickHouse
server gets the ids as query parameters and the rows as columns.

The side tables (quarantine, conflicts, loss records, write probes) are small
and rare: one columnar insert each, the same for both kinds.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ai_chargeback_proto import pb

from ..periods import utc_from_ms
from ..store.clickhouse import Store, StoreError, is_embedded
from .admission import Admitted, Quarantined
from .protobuf_insert import INSERT_REFUSED_MARK, EmbeddedProtobufInserter, distinct_extra, frame, index_values, structure_of
from .rows import EXTRA, empty_keys, events_to_columns, extra_columns
from .sql_validation import CHECKED_FIELDS, INVALID_CONDITION

log = logging.getLogger(__name__)

EVENTS_TABLE = "usage_events"
QUARANTINE_TABLE = "quarantined_events"
CONFLICTS_TABLE = "event_conflicts"
LOSSES_TABLE = "delivery_losses"
PROBES_TABLE = "store_probes"
SERVER_LOOKUP_CHUNK = 2_000  # ids per parameterized lookup: well inside an HTTP request line
PURGE_INTERVAL_S = 1.0
_CHECK_STRUCTURE = structure_of(CHECKED_FIELDS)


@dataclass(slots=True)
class Candidates:
    """Events of one flush, parallel sequences; ``owner`` is the index of each event's ticket.

    Built for one flush and dropped after it: payloads are views into the batches' buffers."""

    ids: list[str] = field(default_factory=list)
    payloads: list[memoryview] = field(default_factory=list)
    hashes: array[int] = field(default_factory=lambda: array("Q"))
    senders: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    keys: dict[str, Any] = field(default_factory=empty_keys)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, admitted: Admitted, owner: int) -> None:
        count = admitted.events
        self.ids += admitted.ids
        self.payloads += admitted.payloads()
        self.hashes += admitted.hashes
        self.senders += [admitted.sender_id] * count
        self.batch_ids += [admitted.batch_id] * count
        self.owner += [owner] * count
        for name, values in admitted.keys.items():
            self.keys[name] += values

    def select(self, indexes: Sequence[int]) -> Candidates:
        picked = Candidates(
            ids=[self.ids[i] for i in indexes], payloads=[self.payloads[i] for i in indexes],
            hashes=array("Q", (self.hashes[i] for i in indexes)), senders=[self.senders[i] for i in indexes],
            batch_ids=[self.batch_ids[i] for i in indexes], owner=[self.owner[i] for i in indexes],
        )  # fmt: skip
        picked.keys = {name: array(values.typecode, (values[i] for i in indexes)) if isinstance(values, array)
                       else [values[i] for i in indexes] for name, values in self.keys.items()}  # fmt: skip
        return picked

    def id_range(self) -> tuple[int, int]:
        return id_range(self.ids)


def id_range(ids: Sequence[str]) -> tuple[int, int]:
    """The smallest and largest id as the 128-bit numbers the table is sorted by."""
    return int(min(ids).replace("-", ""), 16), int(max(ids).replace("-", ""), 16)


@dataclass(slots=True)
class Conflict:
    """A replay whose content differs from the stored event with its id."""

    payload: bytes | memoryview
    content_hash: int
    stored_content_hash: int
    sender_id: str
    batch_id: str


@dataclass(slots=True)
class Found:
    """What a lookup found: stored id -> content hash, and (id, content hash) of candidates
    the store's rule check flagged (``sql_validation``; admission checked the rest)."""

    stored: dict[str, int] = field(default_factory=dict)
    suspects: set[tuple[str, int]] = field(default_factory=set)


class RulesFlagged(Exception):
    """The insert's own rule check flagged an event: nothing was inserted (see ``EventSink.insert``)."""


class EventSink(Protocol):
    # True when the store checks the limits admission leaves to it (``sql_validation``): in the
    # lookup, or in the insert itself.
    checks_rules: bool

    def prepare(self, candidates: Candidates, columns: dict[str, list[Any]], *, ahead: bool = False) -> None:
        """Ready ``candidates`` for lookup and insert. ``ahead``: for a flush not yet taken
        (the writer's preparer), kept by ``end_attempt`` until ``adopt`` or ``discard``."""
        ...

    def adopt(self, candidates: Candidates) -> None:
        """A flush prepared ahead is now the one being written."""
        ...

    def discard(self, candidates: Candidates) -> None: ...

    def lookup(self, candidates: Candidates, ids: list[str], *, check_rules: bool = True) -> Found:
        """Stored id -> content hash, for (at least) ``ids`` among ``candidates``; with
        ``check_rules`` (and ``checks_rules``), the candidates the rule check flags too."""
        ...

    def insert(self, fresh: Candidates, columns: dict[str, list[Any]], ingested_at_ms: int, *,
               check_rules: bool = False) -> None:  # fmt: skip
        """Store ``fresh``. ``check_rules`` (with ``checks_rules``): the insert checks the rules
        itself and raises RulesFlagged, storing nothing, when any event is flagged."""
        ...

    def end_attempt(self, *, including_ahead: bool = False) -> None:
        """Drop what the attempt prepared (and, at shutdown, what was prepared ahead)."""
        ...

    def probe(self, aggregator_id: str) -> None: ...

    def newest_stored_id(self) -> str | None:
        """The largest event id in the store, as a canonical id ("" when none is), if only this
        process writes to it; None when other processes may (nothing can be known then)."""
        ...


def _lookup_sql(database: str, id_filter: str, also: str = "") -> str:
    # The key is toUInt128(event_id) (time order for UUIDv7): the range prunes to the
    # parts and granules that can hold these ids; the IN finds them.
    return (
        f"SELECT toString(event_id), content_hash{also} FROM `{database}`.{EVENTS_TABLE} "
        "WHERE toUInt128(event_id) BETWEEN {lo:UInt128} AND {hi:UInt128} AND " + id_filter
    )


@dataclass(slots=True)
class _Prepared:
    candidates: Candidates
    path: Path
    senders: list[str]
    extra_names: list[str]
    extra_rows: list[tuple[Any, ...]]
    ahead: bool = False


class EmbeddedSink:
    """chDB: one payload file per flush attempt, read by the lookup and, when none of its events
    was stored before (the usual case), by the insert too. The limits admission left to the
    store are checked by the insert of such a flush (one read of the file, not two), else by
    the lookup."""

    checks_rules = True

    def __init__(self, store: Store) -> None:
        self._store = store
        self._inserter = EmbeddedProtobufInserter(store, EVENTS_TABLE)
        # Payload files by the candidates they hold: the flush being written (and any subset of
        # it), plus the next flush, which the writer's preparer readies meanwhile. Keyed by id():
        # each entry holds its candidates, so no other object can take that id while it exists.
        self._prepared: dict[int, _Prepared] = {}
        self._lock = threading.Lock()
        self._purged_at = 0.0

    def prepare(self, candidates: Candidates, columns: dict[str, list[Any]], *, ahead: bool = False) -> None:
        self._prepare(candidates, columns, ahead)

    def _prepare(self, candidates: Candidates, columns: dict[str, list[Any]], ahead: bool) -> _Prepared:
        senders, sender_index = index_values(candidates.senders)
        names, extra_rows, extra_index = distinct_extra(columns.get(EXTRA, []))
        if not names:
            extra_index = [0] * len(candidates)
        path = self._inserter.write_payload(frame(candidates.payloads, candidates.hashes, sender_index, extra_index))
        prepared = _Prepared(candidates, path, senders, names, extra_rows, ahead)
        with self._lock:
            replaced = self._prepared.get(id(candidates))
            self._prepared[id(candidates)] = prepared
        if replaced is not None:
            replaced.path.unlink(missing_ok=True)
        return prepared

    def adopt(self, candidates: Candidates) -> None:
        with self._lock:
            prepared = self._prepared.get(id(candidates))
            if prepared is not None:
                prepared.ahead = False

    def discard(self, candidates: Candidates) -> None:
        with self._lock:
            prepared = self._prepared.pop(id(candidates), None)
        if prepared is not None:
            prepared.path.unlink(missing_ok=True)

    def _for(self, candidates: Candidates, columns: dict[str, list[Any]] | None = None) -> _Prepared:
        with self._lock:
            prepared = self._prepared.get(id(candidates))
        return prepared if prepared is not None else self._prepare(candidates, columns or {}, ahead=False)

    def lookup(self, candidates: Candidates, ids: list[str], *, check_rules: bool = True) -> Found:
        prepared = self._for(candidates)  # every candidate's id is in the file already
        # Within the range of the ids asked for (the writer asks for those it does not remember,
        # or that may be stored unremembered): the range prunes the granules read.
        lo, hi = id_range(ids) if ids else candidates.id_range()
        ids = f"event_id IN (SELECT toUUID(event_id) FROM {self._inserter.id_source(prepared.path)})"
        sql = _lookup_sql(self._store.database, ids, also=", 0")
        if check_rules:  # in the same round trip: the events the rule check flags (kind 1)
            sql += (f" UNION ALL SELECT event_id, x_content_hash, 1 FROM {self._inserter.source(prepared.path, _CHECK_STRUCTURE)} "
                    f"WHERE {INVALID_CONDITION}")  # fmt: skip
        _, rows = self._store.query(sql, {"lo": lo, "hi": hi}, read_only=False, settings=self._inserter.settings)
        found = Found()
        for event_id, content_hash, kind in rows:
            if kind:
                found.suspects.add((event_id, content_hash))
            else:
                found.stored[event_id] = content_hash
        return found

    def insert(self, fresh: Candidates, columns: dict[str, list[Any]], ingested_at_ms: int, *,
               check_rules: bool = False) -> None:  # fmt: skip
        prepared = self._for(fresh, columns)
        try:
            self._inserter.insert(prepared.path, prepared.senders, ingested_at_ms, prepared.extra_names,
                                  prepared.extra_rows, unless=INVALID_CONDITION if check_rules else None)  # fmt: skip
        except StoreError as exc:
            if check_rules and INSERT_REFUSED_MARK in str(exc):
                raise RulesFlagged(str(exc)[:200]) from exc
            raise
        self._release_engine_memory()

    def _release_engine_memory(self) -> None:
        """Give the memory an insert used back to the system: the embedded engine's allocator
        otherwise keeps it, and the aggregator's RSS would ratchet up with the largest insert."""
        now = time.monotonic()
        if now - self._purged_at < PURGE_INTERVAL_S:
            return
        self._purged_at = now
        try:
            self._store.command("SYSTEM JEMALLOC PURGE")
        except StoreError as exc:
            log.debug("allocator purge not available: %s", exc)

    def end_attempt(self, *, including_ahead: bool = False) -> None:
        with self._lock:
            ended = [p for p in self._prepared.values() if including_ahead or not p.ahead]
            for prepared in ended:
                del self._prepared[id(prepared.candidates)]
        for prepared in ended:
            prepared.path.unlink(missing_ok=True)

    def probe(self, aggregator_id: str) -> None:
        path = self._inserter.write_payload(b"\0" * 4096)  # the disk the inserts write to takes a file
        path.unlink(missing_ok=True)
        insert_probe(self._store, aggregator_id)

    def newest_stored_id(self) -> str | None:
        # chDB lets one process open a data directory, so this process is the only writer. The
        # table is sorted by toUInt128(event_id): reading in key order touches each part's end.
        _, rows = self._store.query(
            f"SELECT toUInt128(event_id) AS key FROM `{self._store.database}`.{EVENTS_TABLE} ORDER BY key DESC LIMIT 1"
        )
        return canonical_id(rows[0][0]) if rows else ""


class ServerSink:
    """A ClickHouse server: ids as query parameters, rows as columns (admission checks every rule)."""

    checks_rules = False

    def __init__(self, store: Store) -> None:
        self._store = store

    def prepare(self, candidates: Candidates, columns: dict[str, list[Any]], *, ahead: bool = False) -> None:
        pass

    def adopt(self, candidates: Candidates) -> None:
        pass

    def discard(self, candidates: Candidates) -> None:
        pass

    def lookup(self, candidates: Candidates, ids: list[str], *, check_rules: bool = True) -> Found:
        found: dict[str, int] = {}
        sql = _lookup_sql(self._store.database, "event_id IN {ids:Array(UUID)}")
        for start in range(0, len(ids), SERVER_LOOKUP_CHUNK):
            chunk = ids[start : start + SERVER_LOOKUP_CHUNK]
            lo, hi = id_range(chunk)
            _, rows = self._store.query(sql, {"lo": lo, "hi": hi, "ids": chunk}, read_only=False)
            found.update({event_id: content_hash for event_id, content_hash in rows})
        return Found(stored=found)

    def insert(self, fresh: Candidates, columns: dict[str, list[Any]], ingested_at_ms: int, *,
               check_rules: bool = False) -> None:  # fmt: skip
        events = [pb.UsageEvent.FromString(payload) for payload in fresh.payloads]
        rows = events_to_columns(events, fresh.senders, ingested_at_ms, fresh.hashes)
        rows.update(extra_columns(columns.get(EXTRA, [])))
        self._store.insert_columns(EVENTS_TABLE, rows)

    def end_attempt(self, *, including_ahead: bool = False) -> None:
        pass

    def probe(self, aggregator_id: str) -> None:
        insert_probe(self._store, aggregator_id)

    def newest_stored_id(self) -> str | None:
        return None  # other aggregators write to the same store


def canonical_id(key: int) -> str:
    """An event id as the 128-bit number the table is sorted by, back in its canonical form."""
    return str(uuid.UUID(int=key))


def sink_for(store: Store) -> EventSink:
    return EmbeddedSink(store) if is_embedded(store.dsn) else ServerSink(store)


def _utc(unix_ms: int) -> datetime:
    return utc_from_ms(max(unix_ms, 0))


def insert_quarantined(store: Store, items: Sequence[tuple[Quarantined, str, str]], now_ms: int) -> None:
    """(record, sender id, batch id) -> quarantined_events, before the batch is acked."""
    now = _utc(now_ms)
    store.insert_columns(QUARANTINE_TABLE, {
        "event_id": [q.event_id for q, _, _ in items],
        "content_hash": [q.content_hash for q, _, _ in items],
        "occurred_at": [_utc(q.occurred_at_ms) for q, _, _ in items],
        "quarantined_at": [now] * len(items),
        "sender_id": [sender[:128] for _, sender, _ in items],
        "batch_id": [batch[:128] for _, _, batch in items],
        "field": [q.field for q, _, _ in items],
        "reason": [q.reason for q, _, _ in items],
        "tenant": [q.tenant for q, _, _ in items],
        "team": [q.team for q, _, _ in items],
        "app": [q.app for q, _, _ in items],
        "provider": [q.provider for q, _, _ in items],
        "model": [q.model for q, _, _ in items],
        "input_tokens": [q.input_tokens for q, _, _ in items],
        "output_tokens": [q.output_tokens for q, _, _ in items],
        "raw_event": [q.raw_event for q, _, _ in items],
    })  # fmt: skip


def insert_conflicts(store: Store, conflicts: Sequence[Conflict], now_ms: int) -> None:
    events = [pb.UsageEvent.FromString(c.payload) for c in conflicts]
    now = _utc(now_ms)
    store.insert_columns(CONFLICTS_TABLE, {
        "event_id": [uuid.UUID(e.event_id) for e in events],
        "content_hash": [c.content_hash for c in conflicts],
        "stored_content_hash": [c.stored_content_hash for c in conflicts],
        "detected_at": [now] * len(conflicts),
        "sender_id": [c.sender_id[:128] for c in conflicts],
        "batch_id": [c.batch_id[:128] for c in conflicts],
        "started_at": [_utc(e.started_at_unix_ms) for e in events],
        "tenant": [e.tenant for e in events],
        "team": [e.team for e in events],
        "app": [e.app for e in events],
        "provider": [e.provider for e in events],
        "model": [e.served_model or e.requested_model for e in events],
        "input_tokens": [e.input_tokens for e in events],
        "output_tokens": [e.output_tokens for e in events],
        "raw_event": [bytes(c.payload) for c in conflicts],
    })  # fmt: skip


def insert_losses(store: Store, losses: Sequence[tuple[pb.LossRecord, str]], now_ms: int) -> None:
    """Loss records go to delivery_losses (deduplicated there by loss id) before their batch is acked."""
    now = _utc(now_ms)
    store.insert_columns(LOSSES_TABLE, {
        "loss_id": [loss.loss_id[:64] for loss, _ in losses],
        "sender_id": [sender[:128] for _, sender in losses],
        "first_lost_at": [_utc(loss.first_lost_at_unix_ms) for loss, _ in losses],
        "last_lost_at": [_utc(loss.last_lost_at_unix_ms or loss.first_lost_at_unix_ms) for loss, _ in losses],
        "events_lost": [loss.events_lost for loss, _ in losses],
        "reason": [loss.reason[:128] for loss, _ in losses],
        "reported_at": [now] * len(losses),
    })  # fmt: skip


def insert_probe(store: Store, aggregator_id: str) -> None:
    store.insert_columns(PROBES_TABLE, {"aggregator_id": [aggregator_id], "probed_at": [_utc(int(time.time() * 1000))]})
