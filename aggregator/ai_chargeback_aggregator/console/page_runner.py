"""The console's runner: a query asked twice is sent to the store once while the store's data is unchanged.

A page builds several reports over the same window (the overview by team and by
tenant; the team page by app, by model, and apps × models). Each report asks the
store where each hour is read from (rollup_state) and what the period lacks
(losses, quarantine, replay conflicts): the same SQL with the same parameters,
so the same answer within the page. Answering those from a per-request memo
takes them off the page's path without changing a figure.

Across requests, answers are kept while the store's data is unchanged
(``shared``): each page first reads a change marker from ``system.parts`` (a
few milliseconds), and a different marker drops every kept answer. Every
change to what pages read shows in it: an insert adds a part with a block
number above every existing one (the table's maximum rises), a mutation
(DELETE, UPDATE) gives its parts a ``data_version`` above every block, a dropped partition or a merge that
removes rows changes the row count (a merge that keeps every row changes nothing a page
reads, and not the marker either). An event written now therefore shows on
the next page, as before: its insert changes the marker (and so do its hour's
dirty mark, when one is written, and the rollup rebuild after it). The marker sees one server's
parts only, so a cluster-mode console keeps answers for one request only. Under
steady ingest the marker changes with every batch and pages read the store
as before; kept answers pay off between batches and on quiet stores, which is
where people read showback. Answers that depend on the time (budgets' ``at``)
carry it in their parameters, so they are never reused past their moment.
A request with ``Cache-Control: no-cache`` (a browser's hard reload) reads the
store without kept answers.

It also counts what a page sent to the store (``Server-Timing: store``), so a
test can hold a page to a number of queries and a benchmark can show it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..analytics.reports import Runner

Answer = tuple[list[str], list[tuple[Any, ...]]]  # (columns, rows), as Runner.query answers
Key = tuple[str, str]

# One row per table holding parts: a new part, a mutation or removed rows change it (module doc).
# Not the number of parts, nor data_version alone: a merged part's data_version is its lowest block,
# so a background merge that keeps every row would change them, and nothing a page reads.
MARKER_SQL = (
    "SELECT table, max(greatest(max_block_number, data_version)), sum(rows) "
    "FROM system.parts WHERE database = {db:String} AND active GROUP BY table ORDER BY table"
)
KEPT_ANSWERS = 256  # a page asks about ten; this keeps a few dozen pages' worth
KEPT_ROWS = 20_000  # larger answers (a long drill-down) are not kept across requests


@dataclass
class PageQueries:
    """What one page asked: ``sent`` reached the store, ``reused`` were answered from the memo."""

    sent: int = 0
    reused: int = 0
    store_ms: float = 0.0
    answers: dict[Key, Answer] = field(default_factory=dict)
    marker: str | None = None  # the store's change marker when the page began; None: nothing kept across requests
    fresh: bool = False  # read the store, not kept answers (a hard reload: Cache-Control: no-cache); what it reads is kept

    def server_timing(self) -> str:
        return f'store;dur={self.store_ms:.1f};desc="{self.sent} queries, {self.reused} reused"'


_CURRENT: contextvars.ContextVar[PageQueries | None] = contextvars.ContextVar("console_page_queries", default=None)


class PageRunner:
    """Wraps the console's runner; outside a :meth:`page` block it only passes queries through.

    ``shared``: keep answers across requests while the change marker stays the same.
    """

    def __init__(self, inner: Runner, *, shared: bool = True) -> None:
        self.inner = inner
        self.database = inner.database
        self._shared = shared
        self._lock = threading.Lock()
        self._kept_marker: str | None = None
        self._kept: OrderedDict[Key, Answer] = OrderedDict()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Answer:
        current = _CURRENT.get()
        if current is None:
            return self.inner.query(sql, params)
        key = (sql, _frozen(params))
        kept = current.answers.get(key) or (None if current.fresh else self._kept_answer(current.marker, key))
        if kept is not None:
            current.reused += 1
            current.answers[key] = kept
            return list(kept[0]), list(kept[1])  # copies: a caller may change what it got
        columns, rows = self._send(current, sql, params)
        current.answers[key] = (list(columns), list(rows))
        self._keep(current.marker, key, current.answers[key])
        return columns, rows

    def _send(self, current: PageQueries, sql: str, params: Mapping[str, Any] | None) -> Answer:
        started = time.perf_counter()
        try:
            return self.inner.query(sql, params)
        finally:
            current.store_ms += (time.perf_counter() - started) * 1000
            current.sent += 1

    def _kept_answer(self, marker: str | None, key: Key) -> Answer | None:
        with self._lock:
            if marker is None or marker != self._kept_marker or key not in self._kept:
                return None
            self._kept.move_to_end(key)
            return self._kept[key]

    def _keep(self, marker: str | None, key: Key, answer: Answer) -> None:
        if marker is None or len(answer[1]) > KEPT_ROWS:
            return
        with self._lock:
            if marker != self._kept_marker:
                return  # the data changed while this page ran: what it read is not kept
            self._kept[key] = answer
            while len(self._kept) > KEPT_ANSWERS:
                self._kept.popitem(last=False)

    def _marker(self, current: PageQueries) -> str | None:
        """The store's change marker; on a new one, every kept answer is dropped."""
        if not self._shared:
            return None
        _, rows = self._send(current, MARKER_SQL, {"db": self.database})
        marker = repr(rows)
        with self._lock:
            if marker != self._kept_marker:
                self._kept_marker = marker
                self._kept.clear()
        return marker

    @contextmanager
    def page(self, *, fresh: bool = False) -> Iterator[PageQueries]:
        """One page request: its queries share a memo, dropped when the block ends; ``fresh``: no kept answers."""
        queries = PageQueries(fresh=fresh)
        queries.marker = self._marker(queries)
        token = _CURRENT.set(queries)
        try:
            yield queries
        finally:
            _CURRENT.reset(token)


def _frozen(params: Mapping[str, Any] | None) -> str:
    # repr of sorted items: parameters are str, int, date/datetime, Decimal and lists of those,
    # whose reprs tell types and values apart (a date is not the same key as its text).
    return repr(sorted((params or {}).items()))
