"""The console's runner: within one page request, a query asked twice is sent to the store once.

A page builds several reports over the same window (the overview by team and by
tenant; the team page by app, by model, and apps × models). Each report asks the
store where each hour is read from (rollup_state) and what the period lacks
(losses, quarantine, replay conflicts): the same SQL with the same parameters,
so the same answer within the page. Answering those from a per-request memo
takes them off the page's path without changing a figure; nothing outlives the
request, so the next page reads the store afresh.

It also counts what a page sent to the store (``Server-Timing: store``), so a
test can hold a page to a number of queries and a benchmark can show it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..analytics.reports import Runner
from ..analytics.reports.runner import Rows

Answer = tuple[list[str], Rows]


@dataclass
class PageQueries:
    """What one page asked: ``sent`` reached the store, ``reused`` were answered from the memo."""

    sent: int = 0
    reused: int = 0
    store_ms: float = 0.0
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def server_timing(self) -> str:
        return f'store;dur={self.store_ms:.1f};desc="{self.sent} queries, {self.reused} reused"'


_CURRENT: contextvars.ContextVar[PageQueries | None] = contextvars.ContextVar("console_page_queries", default=None)


class PageRunner:
    """Wraps the console's runner; outside a :meth:`page` block it only passes queries through."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.database = inner.database

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Answer:
        current = _CURRENT.get()
        if current is None:
            return self.inner.query(sql, params)
        key = (sql, _frozen(params))
        if key in current.answers:
            current.reused += 1
            columns, rows = current.answers[key]
            return list(columns), list(rows)  # copies: a caller may change what it got
        started = time.perf_counter()
        columns, rows = self.inner.query(sql, params)
        current.store_ms += (time.perf_counter() - started) * 1000
        current.sent += 1
        current.answers[key] = (list(columns), list(rows))
        return columns, rows

    @contextmanager
    def page(self) -> Iterator[PageQueries]:
        """One page request: its queries share a memo, dropped when the block ends."""
        queries = PageQueries()
        token = _CURRENT.set(queries)
        try:
            yield queries
        finally:
            _CURRENT.reset(token)


def _frozen(params: Mapping[str, Any] | None) -> str:
    # repr of sorted items: parameters are str, int, date/datetime, Decimal and lists of those,
    # whose reprs tell types and values apart (a date is not the same key as its text).
    return repr(sorted((params or {}).items()))
