"""A received batch, made ready for the writer: validated, encoded once, hashed.

Runs on the gRPC event loop for every batch. Valid events keep only what the
writer needs: their canonical encoding (deterministic protobuf, the bytes the
embedded insert frames and the content hash is taken over), the hash, and the
few columns the pricer and the rollups read. The parsed batch is dropped, so a
batch waiting for the store costs about its wire size, not five times that.
A batch keeps its encodings in one buffer and its numbers in arrays, not as an
object per event: memory freed after the insert is freed whole, instead of
pinning the interpreter's small-object arenas until the process ends.

An event that breaks the contract becomes a ``Quarantined`` record: the raw
event, the field and the reason, plus the who/what columns reports need to say
whose traffic is missing. Nothing the sender offered is dropped here.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ai_chargeback_proto import limits, pb

from .content import canonical_encoding, content_hash, content_hashes
from .rows import key_columns
from .validation import Invalid, batch_passes_insert_rules, held_texts_fit, passes_admission_rules, validate_event

QUARANTINE_TEXT_CHARS = 256  # decoded copies of a quarantined event's text; the raw event keeps all of it
_DATETIME64_MAX_MS = 4_102_444_800_000  # 2100-01-01: the quarantine's time column only takes plausible times


@dataclass(slots=True)
class Quarantined:
    event_id: str
    content_hash: int
    raw_event: bytes
    field: str
    reason: str
    occurred_at_ms: int  # started_at as sent when plausible, else when it was received
    tenant: str
    team: str
    app: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int

    @classmethod
    def of(cls, event: pb.UsageEvent, problem: Invalid, received_ms: int, raw: bytes | None = None) -> Quarantined:
        raw = canonical_encoding(event) if raw is None else raw
        started = event.started_at_unix_ms
        cut = QUARANTINE_TEXT_CHARS
        return cls(
            event_id=event.event_id[:cut], content_hash=content_hash(raw), raw_event=raw, field=problem.field,
            reason=str(problem)[:1024], occurred_at_ms=started if 0 < started < _DATETIME64_MAX_MS else received_ms,
            tenant=event.tenant[:cut], team=event.team[:cut], app=event.app[:cut], provider=event.provider[:cut],
            model=(event.served_model or event.requested_model)[:cut], input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
        )  # fmt: skip

    def rejection(self) -> pb.EventRejection:
        return pb.EventRejection(event_id=self.event_id[:64], reason=self.reason, field=self.field)


@dataclass(slots=True)
class Admitted:
    """One batch as the writer takes it; the ingest service keeps the ids it acks with."""

    batch_id: str
    sender_id: str
    ids: list[str] = field(default_factory=list)
    blob: bytes = b""  # the events' canonical encodings, one after the other
    ends: array[int] = field(default_factory=lambda: array("I"))  # where each encoding ends in blob
    hashes: array[int] = field(default_factory=lambda: array("Q"))
    keys: dict[str, Any] = field(default_factory=dict)  # rows.key_columns of the valid events
    quarantined: list[Quarantined] = field(default_factory=list)
    losses: list[pb.LossRecord] = field(default_factory=list)
    nbytes: int = 0
    received_ms: int = 0  # the admission's clock: a later re-validation judges time windows as admission did

    @classmethod
    def of_valid(cls, batch_id: str, sender_id: str, events: Sequence[pb.UsageEvent], *,
                 payloads: Sequence[bytes] | None = None, keys: dict[str, Any] | None = None, **extra: Any) -> Admitted:  # fmt: skip
        """The writer's form of events already validated (``payloads``: their canonical encodings,
        ``keys``: their key columns, if made)."""
        if payloads is None:
            payloads = [canonical_encoding(event) for event in events]
        ends = array("I")
        end = 0
        for payload in payloads:
            end += len(payload)
            ends.append(end)
        admitted = cls(batch_id=batch_id, sender_id=sender_id, ids=[event.event_id for event in events],
                       blob=b"".join(payloads), ends=ends, hashes=content_hashes(payloads),
                       keys=key_columns(events) if keys is None else keys, **extra)  # fmt: skip
        admitted.nbytes = len(admitted.blob) + sum(len(q.raw_event) for q in admitted.quarantined)
        return admitted

    def payloads(self) -> list[memoryview]:
        """Each event's canonical encoding (views into the batch's buffer)."""
        view = memoryview(self.blob)
        starts = [0, *self.ends[:-1]]
        return [view[start:end] for start, end in zip(starts, self.ends)]

    @property
    def events(self) -> int:
        return len(self.ids)

    def quarantine(self, moved: dict[int, Quarantined]) -> None:
        """Move events (by position) to the quarantine: the store found them breaking a rule
        admission left to it. Rare, so the batch's buffers are simply rebuilt without them."""
        kept = [i for i in range(len(self.ids)) if i not in moved]
        payloads = self.payloads()
        blob = b"".join(bytes(payloads[i]) for i in kept)
        ends = array("I")
        end = 0
        for i in kept:
            end += len(payloads[i])
            ends.append(end)
        del payloads
        self.ids = [self.ids[i] for i in kept]
        self.blob, self.ends = blob, ends
        self.hashes = array("Q", (self.hashes[i] for i in kept))
        self.keys = {name: array(values.typecode, (values[i] for i in kept)) if isinstance(values, array)
                     else [values[i] for i in kept] for name, values in self.keys.items()}  # fmt: skip
        self.quarantined += moved.values()

    def release_stored(self) -> None:
        """The events are in the store: drop what only writing them needed. The stream keeps the
        batch until it sends the ack (up to ``MAX_BATCHES_IN_FLIGHT`` of them when the sender reads
        acks slowly), and the ack needs only the quarantine and the losses."""
        self.blob, self.ends, self.hashes, self.keys = b"", array("I"), array("Q"), {}

    @property
    def has_work(self) -> bool:
        return bool(self.ids or self.quarantined or self.losses)


class MalformedBatch(ValueError):
    """The batch as a whole breaks the contract (the stream ends with INVALID_ARGUMENT)."""


def check_batch(batch: pb.UsageBatch) -> None:
    cap = limits.BATCH_ID_MAX_CHARS
    if not batch.batch_id or len(batch.batch_id) > cap or len(batch.sender_id) > cap:
        raise MalformedBatch(f"batch_id must be 1..{cap} characters, sender_id at most {cap}")
    if len(batch.events) > limits.BATCH_MAX_EVENTS:
        raise MalformedBatch(f"more than {limits.BATCH_MAX_EVENTS} events in one batch")


def admit(batch: pb.UsageBatch, now_ms: int, *, store_checks: bool = False) -> Admitted:
    """Validate every event of a well-formed batch (``check_batch`` first).

    Each event is encoded once, before validation: its length spares validation
    upb's ByteSize (which costs twice the encoding), and the bytes are what the
    writer frames and the content hash covers (a quarantined event keeps them too).
    ``store_checks``: the store checks every limit but those the insert depends on and the
    held texts' lengths (``sql_validation``), in the insert or the dedup lookup; those are
    checked here.
    """
    events = batch.events
    encodings = list(map(canonical_encoding, events))
    if store_checks and batch_passes_insert_rules(events, now_ms):
        keys = key_columns(events)  # (after the enum rule: it maps the outcome's value to its word)
        if held_texts_fit(keys):
            return Admitted.of_valid(batch.batch_id, batch.sender_id, events, losses=list(batch.losses),
                                     payloads=encodings, received_ms=now_ms, keys=keys)  # fmt: skip
    valid: list[pb.UsageEvent] = []
    payloads: list[bytes] = []
    quarantined: list[Quarantined] = []
    for event, payload in zip(events, encodings):
        if not store_checks or not passes_admission_rules(event, now_ms, len(payload)):
            try:
                validate_event(event, now_ms, len(payload))
            except Invalid as problem:
                quarantined.append(Quarantined.of(event, problem, now_ms, payload))
                continue
        valid.append(event)
        payloads.append(payload)
    return Admitted.of_valid(batch.batch_id, batch.sender_id, valid, quarantined=quarantined, losses=list(batch.losses),
                             payloads=payloads, received_ms=now_ms)  # fmt: skip


def recheck(admitted: Admitted, position: int) -> Quarantined | None:
    """Validate one event of a batch as admission would have: its quarantine record, or None
    when it is valid after all (the store's check may flag more than the rules reject)."""
    payload = bytes(admitted.payloads()[position])
    event = pb.UsageEvent.FromString(payload)
    try:
        validate_event(event, admitted.received_ms, len(payload))
    except Invalid as problem:
        return Quarantined.of(event, problem, admitted.received_ms, payload)
    return None
