"""Slow analyses (readiness, governance checks, statements' raw-event facts) computed off the page's path.

Reports read rollups and answer in tens of milliseconds; governance checks read
raw events and take seconds at ten million of them. A page never waits longer
than ``wait_s`` for one: it shows the last result with the time it was computed,
or says it is being computed, while a worker thread (with its own store
session, so page queries are not queued behind it) finishes the work. Results
are kept for ``fresh_s``, then recomputed in the background while the old one
is still shown.

Some analyses sit beside figures the page already shows from the rollups (the
drill-down's raw recount, a statement's raw-event facts): waiting for them would
only put the page over its time, so the page waits ``side_wait_s`` (none by
default) and shows them once computed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store.clickhouse import Store

log = logging.getLogger(__name__)
MAX_ENTRIES = 512
# Analyses yield to pages: one thread each, and ClickHouse runs queries of a lower priority
# (a higher number) only while no query of a higher one needs the CPU.
BACKGROUND_SETTINGS: Mapping[str, Any] = {"max_threads": 1, "priority": 10}


class BackgroundRunner:
    """A read-only runner for analyses: the store's read-only session, at background priority."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.database = store.database

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.store.query(sql, params, read_only=True, settings=BACKGROUND_SETTINGS)


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str = ""
    computed_at: datetime | None = None
    seconds: float = 0.0
    pending: bool = False  # no result yet: being computed

    @property
    def ready(self) -> bool:
        return self.computed_at is not None


class Analyses:
    def __init__(self, *, wait_s: float, fresh_s: float, workers: int = 1, side_wait_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self.side_wait_s = side_wait_s
        self.fresh_s = fresh_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chargeback-console-analysis")
        self._lock = threading.Lock()
        self._done: dict[Hashable, tuple[Outcome, float]] = {}
        self._running: dict[Hashable, Future[Outcome]] = {}

    def get(self, key: Hashable, compute: Callable[[], Any], *, beside: bool = False) -> Outcome:
        """``beside``: an analysis beside figures the page has already: wait ``side_wait_s``, not ``wait_s``."""
        return self.get_all({key: compute}, beside=beside)[key]

    def peek(self, key: Hashable) -> Outcome | None:
        """The last result, or pending while one is computed; None if never asked (or forgotten). Starts nothing."""
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                return done[0]
            return Outcome(pending=True) if key in self._running else None

    def get_all(self, jobs: Mapping[Hashable, Callable[[], Any]], *, beside: bool = False) -> dict[Hashable, Outcome]:
        """Several analyses of one page: all started first, then waited for ``wait_s`` in all.

        One wait per analysis made the governance page (nine checks) wait 9 x 0.25 s
        before answering "being computed"; a page's wait is one quarter second.
        """
        now = time.monotonic()
        deadline = now + (self.side_wait_s if beside else self.wait_s)
        answers: dict[Hashable, Outcome] = {}
        waiting: dict[Hashable, Future[Outcome]] = {}
        with self._lock:
            for key, compute in jobs.items():
                done = self._done.get(key)
                future = self._running.get(key)
                if future is None and (done is None or now - done[1] > self.fresh_s):
                    future = self._running[key] = self._pool.submit(self._run, key, compute)
                if done is not None:
                    answers[key] = done[0]
                elif future is not None:
                    waiting[key] = future
        for key, future in waiting.items():
            try:
                answers[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                answers[key] = Outcome(pending=True)
        return {key: answers[key] for key in jobs}

    def _run(self, key: Hashable, compute: Callable[[], Any]) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = Outcome(value=compute(), computed_at=datetime.now(UTC), seconds=time.perf_counter() - started)
        except Exception as exc:  # shown on the page, where the reader can act on it
            log.warning("console analysis %r failed: %s", key, exc)
            outcome = Outcome(error=str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__,
                              computed_at=datetime.now(UTC), seconds=time.perf_counter() - started)  # fmt: skip
        with self._lock:
            self._done[key] = (outcome, time.monotonic())
            self._running.pop(key, None)
            if len(self._done) > MAX_ENTRIES:
                for old in sorted(self._done, key=lambda k: self._done[k][1])[: len(self._done) - MAX_ENTRIES]:
                    self._done.pop(old, None)
        return outcome

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
