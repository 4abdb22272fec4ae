"""The next flush, readied while the current one is in the store.

Per flush the writer's thread spends about a third of its time in Python (gathering
the batches, pricing, framing the payload file) and the rest waiting on the engine
(the dedup lookup, the insert), while flushes queue behind it (issue 20: 35k events
pending after each take, the writer busy 95% of the run). A second thread readies
flush N+1 while flush N is looked up and inserted, so the two overlap on two cores.

What it does depends on nothing the store holds: dedup (the lookup and the
classification of each event) stays on the writer's thread, in flush order, after
the flush before committed. It is only ever asked for a flush whose batches are
already settled (the next take can only pick exactly these, see ``Writer``); if they
changed anyway (a batch abandoned by its stream meanwhile), the work is discarded
and the writer prepares the flush itself, as it would have without this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import metrics
from .rows import EXTRA, price_columns
from .sinks import Candidates, EventSink

if TYPE_CHECKING:
    from .writer import Ticket

log = logging.getLogger(__name__)

# Given a flush's key columns, one frozen dataclass per event: more of each row's columns
# (the pricer's rates.Price). Kept under rows.EXTRA.
Enricher = Callable[[dict[str, list[Any]]], Sequence[Any]]


@dataclass(eq=False)
class Prepared:
    """A flush's events as the sink takes them: candidates, and their key and price columns."""

    tickets: list[Ticket]
    candidates: Candidates
    columns: dict[str, list[Any]]
    keys: list[bytes] | None  # the encoded ids when none repeats (the writer's fast path), else None


def gather(tickets: Sequence[Ticket], enrich: Enricher | None) -> Prepared:
    """The flush's valid events in ticket order, priced (no columns when there are none)."""
    candidates = Candidates()
    for owner, ticket in enumerate(tickets):
        candidates.add(ticket.admitted, owner)
    columns: dict[str, list[Any]] = {}
    ids = candidates.ids
    if ids:
        columns = price_columns(candidates.keys)
        if enrich is not None:
            columns[EXTRA] = list(enrich(columns))
    keys = list(map(str.encode, ids)) if len(set(ids)) == len(ids) else None
    return Prepared(list(tickets), candidates, columns, keys)


def same_tickets(a: Sequence[Ticket], b: Sequence[Ticket]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


@dataclass(eq=False)
class _Request:
    tickets: list[Ticket]
    done: threading.Event = field(default_factory=threading.Event)
    prepared: Prepared | None = None
    error: BaseException | None = None


class Preparer:
    """One flush ahead at most: ``request`` it, then ``claim`` it when its turn comes."""

    def __init__(self, sink: EventSink, enrich: Enricher | None) -> None:
        self._sink = sink
        self._enrich = enrich
        self._cond = threading.Condition()
        self._queued: _Request | None = None  # not started yet
        self._current: _Request | None = None  # requested and not claimed
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chargeback-writer-prepare", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, tickets: list[Ticket]) -> None:
        """Ready these tickets' flush. Call only after ``claim`` took the previous request."""
        request = _Request(tickets)
        with self._cond:
            self._current = self._queued = request
            self._cond.notify()

    def claim(self, tickets: Sequence[Ticket]) -> Prepared | None:
        """The flush readied for exactly these tickets, or None (then the caller prepares it)."""
        with self._cond:
            request, self._current = self._current, None
            if request is None:
                return None
            if request is self._queued:  # never started: nothing to wait for or clean up
                self._queued = None
                return None
        request.done.wait()
        prepared = request.prepared
        if prepared is None:
            return None
        if request.error is None and same_tickets(prepared.tickets, tickets):
            metrics.FLUSHES_PREPARED_AHEAD.labels("used").inc()
            return prepared
        self._sink.discard(prepared.candidates)
        metrics.FLUSHES_PREPARED_AHEAD.labels("discarded").inc()
        return None

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._queued is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                request, self._queued = self._queued, None
            try:
                assert request is not None
                prepared = gather(request.tickets, self._enrich)
                request.prepared = prepared
                if prepared.candidates.ids:
                    self._sink.prepare(prepared.candidates, prepared.columns, ahead=True)
            except Exception as exc:  # the writer prepares the flush itself and meets the error there
                request.error = exc
                log.debug("preparing a flush ahead failed: %s", exc)
            finally:
                request.done.set()
