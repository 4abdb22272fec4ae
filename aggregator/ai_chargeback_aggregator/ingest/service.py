"""The gRPC ingest service: validate, hand to the writer, ack only what is stored.

Per stream, a reader thread takes batches off the wire and submits them while
earlier ones are still being written (pipelining); acks go back in batch order.
At most ``MAX_BATCHES_IN_FLIGHT`` batches per stream wait for the store: past
that the reader stops reading, which is gRPC flow control back to the sender.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .. import metrics
from ..store.clickhouse import Store, StoreError
from .validation import Invalid, validate_event
from .writer import Backpressure, RecentIds, Ticket, Writer

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 64
_END = object()


MAX_EVENTS_PER_BATCH = 100_000
MAX_ID_CHARS = 128


@dataclass(slots=True)
class _Accepted:
    batch: pb.UsageBatch
    ticket: Ticket | None
    rejected: list[pb.EventRejection] = field(default_factory=list)
    backpressure: str = ""
    malformed: str = ""
    retry: str = ""


class IngestService(pb_grpc.UsageIngestServicer):
    def __init__(self, writer: Writer, *, auth_token: str | None, store_wait_timeout_s: float = 30.0,
                 store: Store | None = None) -> None:  # fmt: skip
        self._writer = writer
        self._store = store
        self._auth_token = auth_token.encode() if auth_token else None
        self._wait_s = store_wait_timeout_s

    def _authorize(self, context: grpc.ServicerContext) -> None:
        if self._auth_token is None:
            return
        presented = b""
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                presented = value[len("Bearer ") :].encode()
        if not hmac.compare_digest(presented, self._auth_token):
            metrics.AUTH_FAILURES.inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    def StreamUsage(self, request_iterator: Iterator[pb.UsageBatch], context: grpc.ServicerContext) -> Iterator[pb.BatchAck]:  # noqa: N802 (gRPC name)
        self._authorize(context)
        accepted: queue.Queue[object] = queue.Queue(maxsize=MAX_BATCHES_IN_FLIGHT)
        reader = threading.Thread(target=self._read, args=(request_iterator, accepted), name="chargeback-stream-reader", daemon=True)
        reader.start()
        while True:
            item = accepted.get()
            if item is _END:
                return
            assert isinstance(item, _Accepted)
            if item.malformed:
                metrics.BATCHES.labels("invalid_argument").inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.malformed)
            if item.backpressure:
                metrics.BATCHES.labels("resource_exhausted").inc()
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, item.backpressure)
            yield self._ack(item)

    def _read(self, request_iterator: Iterator[pb.UsageBatch], accepted: queue.Queue[object]) -> None:
        try:
            for batch in request_iterator:
                item = self._accept(batch)
                accepted.put(item)
                if item.backpressure or item.malformed:
                    return
        except grpc.RpcError:
            pass  # the client went away; nothing left to ack
        except Exception:
            log.exception("stream reader failed")
        finally:
            accepted.put(_END)

    def _accept(self, batch: pb.UsageBatch) -> _Accepted:
        metrics.EVENTS_RECEIVED.inc(len(batch.events))
        if not batch.batch_id or len(batch.batch_id) > MAX_ID_CHARS or len(batch.sender_id) > MAX_ID_CHARS:
            return _Accepted(batch, None, malformed=f"batch_id must be 1..{MAX_ID_CHARS} characters, sender_id at most {MAX_ID_CHARS}")
        if len(batch.events) > MAX_EVENTS_PER_BATCH:
            return _Accepted(batch, None, malformed=f"more than {MAX_EVENTS_PER_BATCH} events in one batch")
        _record_sender_report(batch)
        if batch.losses and self._store is not None:
            try:
                _store_losses(self._store, batch)
            except StoreError as exc:
                metrics.STORE_ERRORS.labels("losses").inc()
                log.warning("could not store loss records; the batch will be resent: %s", exc)
                return _Accepted(batch, None, retry="store did not take the batch's loss records; resend")
        now_ms = int(time.time() * 1000)
        valid: list[pb.UsageEvent] = []
        rejected: list[pb.EventRejection] = []
        for event in batch.events:
            try:
                validate_event(event, now_ms)
            except Invalid as exc:
                metrics.EVENTS_REJECTED.labels(exc.field).inc()
                rejected.append(pb.EventRejection(event_id=event.event_id[:64], reason=str(exc), field=exc.field))
                continue
            valid.append(event)
        try:
            ticket = self._writer.submit(valid, batch.sender_id)
        except Backpressure as exc:
            return _Accepted(batch, None, rejected, backpressure=str(exc))
        return _Accepted(batch, ticket, rejected)

    def _ack(self, item: _Accepted) -> pb.BatchAck:
        ack = pb.BatchAck(batch_id=item.batch.batch_id, sequence=item.batch.sequence, rejected=item.rejected)
        ticket = item.ticket
        if ticket is None:
            ack.status, ack.detail = pb.BatchAck.STATUS_RETRY, item.retry
            metrics.BATCHES.labels("retry").inc()
            return ack
        if not ticket.wait(self._wait_s):
            ticket.abandoned = True
            ack.status = pb.BatchAck.STATUS_RETRY
            ack.detail = "store did not confirm in time; resend the batch"
            metrics.BATCHES.labels("retry").inc()
            return ack
        ack.status = pb.BatchAck.STATUS_STORED
        ack.events_stored = ticket.stored
        ack.events_duplicate = ticket.duplicates
        metrics.BATCHES.labels("stored").inc()
        return ack


_seen_loss_ids = RecentIds(capacity=100_000)
_seen_loss_lock = threading.Lock()


def _store_losses(store: Store, batch: pb.UsageBatch) -> None:
    """Loss records go to delivery_losses (deduplicated there by loss id) before the batch is acked."""
    now = datetime.now(UTC)
    losses = list(batch.losses)
    store.insert_columns("delivery_losses", {
        "loss_id": [loss.loss_id[:64] for loss in losses],
        "sender_id": [batch.sender_id[:128]] * len(losses),
        "first_lost_at": [_utc(loss.first_lost_at_unix_ms) for loss in losses],
        "last_lost_at": [_utc(loss.last_lost_at_unix_ms or loss.first_lost_at_unix_ms) for loss in losses],
        "events_lost": [loss.events_lost for loss in losses],
        "reason": [loss.reason[:128] for loss in losses],
        "reported_at": [now] * len(losses),
    })  # fmt: skip


def _utc(unix_ms: int) -> datetime:
    return datetime.fromtimestamp(max(unix_ms, 0) / 1000, tz=UTC)


def _record_sender_report(batch: pb.UsageBatch) -> None:
    if batch.HasField("sender_stats") and batch.sender_id:
        stats = batch.sender_stats
        fields = ("events_queued", "events_sent", "events_spooled", "events_dropped", "usage_parse_failures")
        metrics.record_sender(batch.sender_id[:128], {name.removeprefix("events_"): getattr(stats, name) for name in fields})
    for loss in batch.losses:
        with _seen_loss_lock:
            if loss.loss_id in _seen_loss_ids:
                continue  # a resent batch carries the same loss record
            _seen_loss_ids.add_all([loss.loss_id])
        metrics.EVENTS_LOST_REPORTED.labels(loss.reason[:64] or "unknown").inc(loss.events_lost)
        log.error("sender %s reports %d events lost: %s", batch.sender_id, loss.events_lost, loss.reason)
