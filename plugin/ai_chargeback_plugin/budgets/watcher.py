"""Keeps the latest budget state from an aggregator's budget feed, on a thread of its own.

One watcher per destination (the same aggregator list, TLS and token as the
sender), shared by every plugin instance that enforces budgets. It holds a
``WatchBudgets`` stream, replaces ``snapshot`` on every new version and
refreshes its age on heartbeats. When the stream breaks it reconnects with
jittered backoff to the next address, and keeps the last state meanwhile:
the request path follows it until it is older than the route's
``budget_state_max_age_s``. A new aggregator that has not evaluated yet
(``evaluated = false``) does not wipe it.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading

import grpc

from ai_chargeback_proto import pb, pb_grpc

from ..channel import bearer_metadata, open_channel
from ..config import SenderConfig
from .state import BudgetSnapshot

log = logging.getLogger("ai-chargeback.budgets")

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 10.0


class BudgetWatcher:
    def __init__(self, config: SenderConfig) -> None:
        self.config = config
        self.snapshot: BudgetSnapshot | None = None  # replaced whole, never mutated: read without a lock
        self.updates = 0
        self._closed = threading.Event()
        self._call: grpc.Future | None = None  # type: ignore[type-arg]
        self._lock = threading.Lock()
        self._address_index = random.randrange(len(config.aggregator_addresses))
        self._sender_id = f"{socket.gethostname()}/{os.getpid()}/budgets"
        self._thread = threading.Thread(target=self._run, name="ai-chargeback-budgets", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = BACKOFF_INITIAL_S
        while not self._closed.is_set():
            addresses = self.config.aggregator_addresses
            address = addresses[self._address_index % len(addresses)]
            self._address_index += 1
            try:
                if self._watch(address):
                    backoff = BACKOFF_INITIAL_S
            except grpc.RpcError as exc:
                if not self._closed.is_set():
                    log.warning("ai-chargeback: budget feed from %s broke (%s); keeping the last budget state",
                                address, exc.code().name if hasattr(exc, "code") else exc)  # fmt: skip
            except Exception:
                log.exception("ai-chargeback: budget feed from %s failed", address)
            self._closed.wait(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _watch(self, address: str) -> bool:
        """Follow one stream until it ends; True when it delivered anything."""
        channel = open_channel(self.config, address)
        delivered = False
        try:
            call = pb_grpc.BudgetFeedStub(channel).WatchBudgets(
                pb.WatchBudgetsRequest(sender_id=self._sender_id), metadata=bearer_metadata(self.config) or None
            )
            with self._lock:
                if self._closed.is_set():
                    return False
                self._call = call
            for state in call:
                self._apply(state)
                delivered = True
        finally:
            with self._lock:
                self._call = None
            channel.close()
        return delivered

    def _apply(self, state: pb.BudgetState) -> None:
        if not state.evaluated:
            return  # an aggregator that has not evaluated yet knows less than we do
        current = self.snapshot
        if state.heartbeat:
            if current is not None and current.version == state.version:
                self.snapshot = current.refreshed(state)
            return  # a heartbeat for a version we do not hold: the full state follows
        self.snapshot = BudgetSnapshot.from_wire(state)
        self.updates += 1
        if current is None or {b.budget_id for b in current.exhausted} != {b.budget_id for b in self.snapshot.exhausted}:
            log.info("ai-chargeback: budget state %s: %d enforced, exhausted: %s", state.version, len(self.snapshot.budgets),
                     ", ".join(b.budget_id for b in self.snapshot.exhausted) or "none")  # fmt: skip

    def close(self, timeout_s: float = 2.0) -> None:
        self._closed.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout_s)


_watchers: dict[SenderConfig, BudgetWatcher] = {}
_watchers_lock = threading.Lock()


def watcher_for(config: SenderConfig) -> BudgetWatcher:
    """One watcher per destination, shared by every enforcing plugin instance that names it."""
    with _watchers_lock:
        watcher = _watchers.get(config)
        if watcher is None:
            watcher = _watchers[config] = BudgetWatcher(config)
        return watcher


@atexit.register
def _close_all() -> None:
    with _watchers_lock:
        watchers = list(_watchers.values())
    for watcher in watchers:
        watcher.close()
