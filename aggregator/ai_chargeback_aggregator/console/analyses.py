"""Slow analyses (readiness, governance checks, statements' raw-event facts) computed off the page's path.

Reports read rollups and answer in tens of milliseconds; governance checks read
raw events and take seconds at ten million of them. A page waits for its
analyses until ``wait_s`` after the page began (its budget, counted from the
start of the request, so a page whose own queries took that long does not wait
at all): then it shows the last result with the time it was computed, or says
it is being computed, while a worker thread (with its own store session, so
page queries are not queued behind it) finishes the work. A fast analysis (a
small store) still shows in the first page. Results are kept for ``fresh_s``,
then recomputed in the background while the old one is still shown.

Some analyses sit beside figures the page already shows from the rollups (the
drill-down's raw recount, a statement's raw-event facts): waiting for them would
only put the page over its time, so the page waits ``side_wait_s`` (none by
default) and shows them once computed.

While an analysis runs, the page's queries come first (``PAGE_SETTINGS``,
``BACKGROUND_SETTINGS``): at 10M events the overview's report query took
97-105 ms (median) beside a running governance check before, 61 ms with the
priorities below, 49-51 ms with the nice value too, 54 ms with no analysis
(load 5 to 6, docs/console.md "Speed").
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..store.clickhouse import Store

log = logging.getLogger(__name__)
MAX_ENTRIES = 512
# Analyses yield to pages. ClickHouse pauses a query of a lower priority (a higher number) at its next
# block read while a query of a higher one runs; priority 0 (the default) takes no part either way, so
# pages must ask for 1: with pages at 0, the analyses' 10 paused nothing (system.events QueryPreempted
# stayed 0). Analyses also run on one thread, and at nice 10 (`os_thread_priority`), which yields the CPU
# to the page's Python work too; ClickHouse applies it only with CAP_SYS_NICE, else it is a no-op.
PAGE_SETTINGS: Mapping[str, Any] = {"priority": 1}
BACKGROUND_SETTINGS: Mapping[str, Any] = {"max_threads": 1, "priority": 10, "os_thread_priority": 10}


class SettingsRunner:
    """A read-only runner on a store's read-only session, each query with these settings."""

    def __init__(self, store: Store, settings: Mapping[str, Any]) -> None:
        self.store = store
        self.database = store.database
        self.settings = settings

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.store.query(sql, params, read_only=True, settings=self.settings)


class PageStoreRunner(SettingsRunner):
    """The pages' runner: their queries come before the analyses'."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, PAGE_SETTINGS)


class BackgroundRunner(SettingsRunner):
    """A read-only runner for analyses: the store's read-only session, at background priority."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, BACKGROUND_SETTINGS)


@dataclass
class PageWait:
    """One page's wait for its analyses: until ``deadline`` (time.monotonic()); ``waited_ms`` is what it spent."""

    deadline: float
    waited_ms: float = 0.0

    def server_timing(self) -> str:
        return f"analyses;dur={self.waited_ms:.1f}"


_PAGE: contextvars.ContextVar[PageWait | None] = contextvars.ContextVar("console_page_wait", default=None)


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


@dataclass
class Started:
    """Analyses a page started: answers it has already, and those still being computed."""

    keys: list[Hashable]
    answers: dict[Hashable, Outcome] = field(default_factory=dict)
    waiting: dict[Hashable, Future[Outcome]] = field(default_factory=dict)


class Analyses:
    def __init__(self, *, wait_s: float, fresh_s: float, workers: int = 1, side_wait_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self.side_wait_s = side_wait_s
        self.fresh_s = fresh_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chargeback-console-analysis")
        self._lock = threading.Lock()
        self._done: dict[Hashable, tuple[Outcome, float]] = {}
        self._running: dict[Hashable, Future[Outcome]] = {}

    @contextmanager
    def page(self) -> Iterator[PageWait]:
        """One page request: its analyses are waited for until ``wait_s`` after this block began, in all.

        The budget is the page's, not each wait's: a fixed quarter second after
        the page's own queries made the overview's first request at 10M events
        take 409 ms (92 ms in the store, 250 ms waiting).
        """
        wait = PageWait(time.monotonic() + self.wait_s)
        token = _PAGE.set(wait)
        try:
            yield wait
        finally:
            _PAGE.reset(token)

    def get(self, key: Hashable, compute: Callable[[], Any], *, beside: bool = False) -> Outcome:
        """``beside``: an analysis beside figures the page has already: wait ``side_wait_s``, not the page's budget."""
        return self.get_all({key: compute}, beside=beside)[key]

    def peek(self, key: Hashable) -> Outcome | None:
        """The last result, or pending while one is computed; None if never asked (or forgotten). Starts nothing."""
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                return done[0]
            return Outcome(pending=True) if key in self._running else None

    def get_all(self, jobs: Mapping[Hashable, Callable[[], Any]], *, beside: bool = False) -> dict[Hashable, Outcome]:
        """Several analyses of one page: all started first, then waited for in one budget (:meth:`wait`).

        One wait per analysis made the governance page (nine checks) wait 9 x 0.25 s
        before answering "being computed".
        """
        return self.wait(self.start(jobs), beside=beside)

    def start(self, jobs: Mapping[Hashable, Callable[[], Any]]) -> Started:
        """Start what is not computed or not fresh, without waiting (:meth:`wait` waits)."""
        now = time.monotonic()
        started = Started(list(jobs))
        with self._lock:
            for key, compute in jobs.items():
                done = self._done.get(key)
                future = self._running.get(key)
                if future is None and (done is None or now - done[1] > self.fresh_s):
                    future = self._running[key] = self._pool.submit(self._run, key, compute)
                if done is not None:
                    started.answers[key] = done[0]
                elif future is not None:
                    started.waiting[key] = future
        return started

    def wait(self, started: Started, *, beside: bool = False) -> dict[Hashable, Outcome]:
        """Outcomes of what a page started: waited for until the page's deadline (outside a page, ``wait_s`` from now;
        ``beside``: ``side_wait_s`` from now)."""
        page = _PAGE.get()
        began = time.monotonic()
        if beside:
            deadline = began + self.side_wait_s
        else:
            deadline = page.deadline if page is not None else began + self.wait_s
        answers = dict(started.answers)
        for key, future in started.waiting.items():
            try:
                answers[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                answers[key] = Outcome(pending=True)
        if page is not None:
            page.waited_ms += (time.monotonic() - began) * 1000
        return {key: answers[key] for key in started.keys}

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

    def prepare(self, open_sessions: Callable[[], Any]) -> Future[Any]:
        """Start the worker thread and run ``open_sessions`` on it now, not within the first page that asks for an analysis."""
        return self._pool.submit(open_sessions)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
