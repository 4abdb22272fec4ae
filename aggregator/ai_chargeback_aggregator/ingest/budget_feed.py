"""The budget feed: every gateway holds a stream on which the aggregator pushes the enforced budgets.

The state itself is computed after this layer (budgets/, from the reports) and
handed in by server/app.py through ``publish``; this module only carries it, so
the ingest path never imports analytics. Each stream gets the current state at
once, then every new version as soon as it is published, and a heartbeat (the
version and the evaluation's age, budgets omitted) every ``heartbeat_s`` while
nothing changes, so a gateway can tell a quiet aggregator from a stale one.
Before the first evaluation the stream carries ``evaluated = false``: a
gateway keeps the state it had (an aggregator restart does not wipe it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .bearer import require_bearer


class BudgetFeed(pb_grpc.BudgetFeedServicer):
    """Served on the aggregator's ``grpc.aio`` loop: a watching gateway costs a coroutine, not a thread.

    ``publish`` and ``close`` are called from other threads (the budget monitor, shutdown)
    and reach the streams through the loop."""

    def __init__(self, *, auth_token: str | None, heartbeat_s: float, aggregator_id: str) -> None:
        self._auth_token = auth_token.encode() if auth_token else None
        self._heartbeat_s = heartbeat_s
        self._aggregator_id = aggregator_id
        self._lock = threading.Lock()
        self._state = pb.BudgetState(evaluated=False)
        self._evaluated_at = time.monotonic()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._news: asyncio.Event | None = None
        self.watchers = 0

    def publish(self, state: pb.BudgetState, *, evaluated_at: float | None = None) -> None:
        """A new evaluation (monotonic time of its start); streams send it at once if its version is new."""
        with self._lock:
            self._state = state
            self._evaluated_at = time.monotonic() if evaluated_at is None else evaluated_at
        self._wake()

    def close(self) -> None:
        """End every stream now (shutdown): gateways keep their last state and reconnect elsewhere."""
        with self._lock:
            self._closed = True
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._announce)
            except RuntimeError:  # the loop closed in between: no stream is left to wake
                pass

    def _announce(self) -> None:
        """On the loop: wake every waiting stream, and give later waits a fresh event."""
        if self._news is not None:
            self._news.set()
        self._news = asyncio.Event()

    async def WatchBudgets(self, request: pb.WatchBudgetsRequest,  # noqa: N802 (gRPC name)
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.BudgetState]:  # fmt: skip
        await require_bearer(context, self._auth_token)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._news is None:
            self._news = asyncio.Event()
        sent_version: str | None = None
        self.watchers += 1
        try:
            while not self._closed:
                news = self._news  # taken before the state: a publish after this line sets it
                with self._lock:
                    state, evaluated_at = self._state, self._evaluated_at
                message = pb.BudgetState()
                if state.evaluated and state.version == sent_version:
                    message.version, message.evaluated, message.heartbeat = state.version, True, True
                else:
                    message.CopyFrom(state)
                message.aggregator_id = self._aggregator_id
                message.evaluated_age_ms = int(max(time.monotonic() - evaluated_at, 0.0) * 1000)
                message.sent_at_unix_ms = int(time.time() * 1000)
                yield message
                sent_version = state.version if state.evaluated else None
                await self._wait_for_news(news, sent_version)
        finally:
            self.watchers -= 1

    async def _wait_for_news(self, news: asyncio.Event, sent_version: str | None) -> None:
        """Until shutdown, a version this stream has not sent, or the heartbeat is due."""
        deadline = asyncio.get_running_loop().time() + self._heartbeat_s
        while not self._closed:
            with self._lock:
                if self._state.evaluated and self._state.version != sent_version:
                    return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(news.wait(), remaining)
            except TimeoutError:
                return
            assert self._news is not None
            news = self._news
