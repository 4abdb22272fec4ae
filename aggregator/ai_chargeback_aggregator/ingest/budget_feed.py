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

import hmac
import logging
import threading
import time
from collections.abc import Iterator
from functools import partial

import grpc

from ai_chargeback_proto import pb, pb_grpc

from .. import metrics

log = logging.getLogger(__name__)


class BudgetFeed(pb_grpc.BudgetFeedServicer):
    def __init__(self, *, auth_token: str | None, heartbeat_s: float, aggregator_id: str) -> None:
        self._auth_token = auth_token.encode() if auth_token else None
        self._heartbeat_s = heartbeat_s
        self._aggregator_id = aggregator_id
        self._changed = threading.Condition()
        self._state = pb.BudgetState(evaluated=False)
        self._evaluated_at = time.monotonic()
        self._closed = False
        self.watchers = 0

    def publish(self, state: pb.BudgetState, *, evaluated_at: float | None = None) -> None:
        """A new evaluation (monotonic time of its start); streams send it at once if its version is new."""
        with self._changed:
            self._state = state
            self._evaluated_at = time.monotonic() if evaluated_at is None else evaluated_at
            self._changed.notify_all()

    def close(self) -> None:
        """End every stream now (shutdown): gateways keep their last state and reconnect elsewhere."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

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

    def WatchBudgets(self, request: pb.WatchBudgetsRequest, context: grpc.ServicerContext) -> Iterator[pb.BudgetState]:  # noqa: N802 (gRPC name)
        self._authorize(context)
        context.add_callback(self._wake)
        sent_version: str | None = None
        with self._changed:
            self.watchers += 1
        try:
            while context.is_active():
                with self._changed:
                    if self._closed:
                        return
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
                with self._changed:
                    self._changed.wait_for(partial(self._news, context, sent_version), timeout=self._heartbeat_s)
        finally:
            with self._changed:
                self.watchers -= 1

    def _news(self, context: grpc.ServicerContext, sent_version: str | None) -> bool:
        """Something a stream must act on: shutdown, a gone client, or a version it has not sent (lock held)."""
        return self._closed or not context.is_active() or (self._state.evaluated and self._state.version != sent_version)

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
