"""The gRPC ingest service (asyncio): admit, hand to the writer, ack what is accounted for.

Streams are coroutines on one event loop, so an idle sender costs a little
memory and no thread: one aggregator keeps thousands of gateways' streams open.
Per stream a reader task takes batches off the wire, admits them (validation,
canonical encoding, quarantine of what breaks the contract) and submits them
while earlier ones are still being written (pipelining); acks go back in batch
order. At most ``MAX_BATCHES_IN_FLIGHT`` batches per stream wait for the store:
past that the reader stops reading, which is gRPC flow control to the sender.

Memory is bounded by the writer's pending caps. While the store keeps up, a
batch that does not fit waits for room (its stream is not read meanwhile), and a
stream's next batch is not read until one as large as its last would fit beside
what other streams claimed (so it waits in its sender's memory, not here); a
stored batch keeps no events while it waits for its ack;
while the store is failing it is refused with RESOURCE_EXHAUSTED, and the
sender keeps it spooled or tries another aggregator.

Acks are built in one place (``_ack``); ``ack_hooks`` may add to an ack before
it is sent (for example a budget state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .. import metrics
from .admission import Admitted, MalformedBatch, admit, check_batch
from .bearer import require_bearer
from .room_claims import RoomClaims
from .writer import Backpressure, Ticket, Writer

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 64
# How often a batch waiting for room looks again, in case a wake-up was missed.
ROOM_RECHECK_S = 0.25
_END = object()

# Called with the admitted batch and its ack (status and counts set) just before the ack is sent.
AckHook = Callable[[Admitted, pb.BatchAck], None]


@dataclass(slots=True)
class _Accepted:
    batch_id: str
    sequence: int
    accepted_at: float
    admitted: Admitted | None = None
    ticket: Ticket | None = None
    stored: asyncio.Future[None] | None = None
    malformed: str = ""
    refused: str = ""


class IngestService(pb_grpc.UsageIngestServicer):
    def __init__(self, writer: Writer, *, auth_token: str | None, store_wait_timeout_s: float = 30.0,
                 ack_hooks: Sequence[AckHook] = ()) -> None:  # fmt: skip
        self._writer = writer
        self._auth_token = auth_token.encode() if auth_token else None
        self._wait_s = store_wait_timeout_s
        self._ack_hooks = tuple(ack_hooks)
        self._room: asyncio.Event | None = None
        self._claims = RoomClaims()

    def room_freed(self) -> None:
        """The writer freed room (called on the event loop): wake every batch waiting for it."""
        if self._room is not None:
            self._room.set()
            self._room = None

    async def _wait_for_room(self, timeout_s: float) -> None:
        if self._room is None:
            self._room = asyncio.Event()
        try:
            await asyncio.wait_for(self._room.wait(), timeout_s)
        except TimeoutError:
            pass

    async def StreamUsage(self, request_iterator: AsyncIterator[pb.UsageBatch],  # noqa: N802 (gRPC name)
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.BatchAck]:  # fmt: skip
        await require_bearer(context, self._auth_token)
        metrics.STREAMS_OPEN.inc()
        accepted: asyncio.Queue[object] = asyncio.Queue(maxsize=MAX_BATCHES_IN_FLIGHT)
        reader = asyncio.get_running_loop().create_task(self._read(request_iterator, accepted))
        try:
            while (item := await accepted.get()) is not _END:
                assert isinstance(item, _Accepted)
                if item.malformed:
                    metrics.BATCHES.labels("invalid_argument").inc()
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.malformed)
                if item.refused:
                    metrics.BATCHES.labels("resource_exhausted").inc()
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, item.refused)
                yield await self._ack(item)
        finally:
            reader.cancel()
            metrics.STREAMS_OPEN.dec()

    async def _read(self, request_iterator: AsyncIterator[pb.UsageBatch], accepted: asyncio.Queue[object]) -> None:
        stream = object()  # this stream's key in the room claims
        try:
            async for batch in request_iterator:
                self._claims.release(stream)  # its batch is here: it fills the room now, or waits for more
                item = self._admit(batch)
                del batch  # the parsed batch is several times its wire size: drop it before any wait
                if item.admitted is not None:
                    await self._submit(item, item.admitted)
                await accepted.put(item)
                if item.malformed or item.refused:
                    return
                if item.admitted is not None:
                    await self._room_for(item.admitted, stream)
        except asyncio.CancelledError:
            raise  # the stream ended; nobody waits for more
        except (grpc.RpcError, grpc.aio.AioRpcError, ConnectionError):
            pass  # the client went away; nothing left to ack
        except Exception:
            log.exception("stream reader failed")
        finally:
            self._claims.release(stream)
        await accepted.put(_END)

    async def _room_for(self, like: Admitted, stream: object) -> None:
        """Before a stream's next batch is read, wait until one as large as its last would be taken,
        beside the room other streams claimed for theirs (``room_claims.py``), then claim it.
        Meanwhile that batch stays with its sender (gRPC's flow control): read, it would be held
        here, admitted, until room came. Not while the store fails, nor past the store wait (a
        store that hangs without failing): the batch is read then, and refused if still no room
        comes, so its sender can go elsewhere."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while self._writer.healthy:
            self._claims.expire(loop.time())
            if self._writer.has_room(like.events + self._claims.events, like.nbytes + self._claims.nbytes):
                self._claims.claim(stream, like.events, like.nbytes, loop.time())
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self._wait_for_room(min(remaining, ROOM_RECHECK_S))

    def _admit(self, batch: pb.UsageBatch) -> _Accepted:
        item = _Accepted(batch.batch_id, batch.sequence, accepted_at=asyncio.get_running_loop().time())
        metrics.EVENTS_RECEIVED.inc(len(batch.events))
        try:
            check_batch(batch)
        except MalformedBatch as exc:
            item.malformed = str(exc)
            return item
        _record_sender_report(batch)
        item.admitted = admit(batch, int(time.time() * 1000), store_checks=self._writer.checks_in_store)
        return item

    async def _submit(self, item: _Accepted, admitted: Admitted) -> None:
        """Hand the batch to the writer, waiting for room while the store keeps up."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()

        def settle(_: Ticket) -> None:
            _call_soon(loop, _set_done, stored)

        deadline = item.accepted_at + self._wait_s
        while True:
            try:
                item.ticket = self._writer.submit(admitted, settle)
                item.stored = stored
                return
            except Backpressure as exc:
                remaining = deadline - loop.time()
                if not exc.waitable or remaining <= 0:
                    item.refused = str(exc)
                    return
                await self._wait_for_room(min(remaining, ROOM_RECHECK_S))

    async def _ack(self, item: _Accepted) -> pb.BatchAck:
        ack = pb.BatchAck(batch_id=item.batch_id, sequence=item.sequence)
        assert item.ticket is not None and item.stored is not None and item.admitted is not None
        remaining = item.accepted_at + self._wait_s - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(asyncio.shield(item.stored), max(remaining, 0.001))
        except TimeoutError:
            item.ticket.abandoned = True  # not written behind the sender's back if not taken yet
            ack.status = pb.BatchAck.STATUS_RETRY
            ack.detail = "store did not confirm in time; resend the batch"
            metrics.BATCHES.labels("retry").inc()
            return ack
        outcome = item.ticket.outcome
        ack.status = pb.BatchAck.STATUS_STORED
        ack.events_stored = outcome.stored
        ack.events_duplicate = outcome.duplicates
        ack.events_conflicting = outcome.conflicting
        ack.events_quarantined = outcome.quarantined
        ack.rejected.extend(q.rejection() for q in item.admitted.quarantined)
        for hook in self._ack_hooks:
            hook(item.admitted, ack)
        metrics.BATCHES.labels("stored").inc()
        return ack


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """From the writer's thread: a loop closed at shutdown has nobody left to tell."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass


_SENDER_COUNTERS = ("events_queued", "events_sent", "events_spooled", "events_dropped", "usage_parse_failures",
                    "events_quarantined", "events_conflicting")  # fmt: skip


def _record_sender_report(batch: pb.UsageBatch) -> None:
    if batch.HasField("sender_stats") and batch.sender_id:
        stats = batch.sender_stats
        metrics.record_sender(batch.sender_id[:128], {name.removeprefix("events_"): getattr(stats, name) for name in _SENDER_COUNTERS})
