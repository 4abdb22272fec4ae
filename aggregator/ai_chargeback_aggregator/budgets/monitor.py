"""The aggregator's budget loop: evaluate every budget in force, show gauges, fire alerts, feed gateways.

Runs on its own thread and its own store session. Every pass reads the
budgets table (so a loaded file applies without a restart), the allocation
config (same), and the spend from the reports. A pass runs every
``interval_s``; sooner after this aggregator stored usage (the writer's
``kick``), or when the store shows usage stored by another aggregator (the
dirty marks every writer leaves in rollup_state, polled every ``poll_s``,
as is the budgets table, so budgets loaded through another aggregator apply);
never sooner than ``min_interval_s`` after the last pass. That spacing is part
of the gateway's enforcement latency (docs/budgets.md). Every aggregator runs
it over the same store and reaches the same numbers; alerts are claimed
through the store so only one fires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..analytics.reports import LocalRunner, allocation_config
from ..store.clickhouse import Store, StoreError
from . import metrics
from .alerts import Alerter, alert_for
from .evaluate import BudgetStatus, evaluate
from .store import list_budgets

log = logging.getLogger(__name__)

TAKEOVER_SCAN_EVERY_S = 30.0
NEWS_LOOKBACK = timedelta(hours=3)  # marks of older hours (late events) wait for the interval
# News another aggregator may have made: budgets loaded through it (their newest version), and
# usage it stored (the newest dirty mark every writer leaves in rollup_state).
NEWS_SQL = """
SELECT (SELECT max(version) FROM {db:Identifier}.budgets),
       (SELECT max(version) FROM {db:Identifier}.rollup_state
        WHERE grain = 'hour' AND state = 'dirty' AND period_start >= {since:DateTime('UTC')})
"""

# Gets every successful pass: its statuses and when (time.monotonic()) it began reading the store.
Listener = Callable[[list[BudgetStatus], float], None]


def claimant_id() -> str:
    """Names this aggregator process in alert claims."""
    return f"{socket.gethostname()}/{os.getpid()}/{time.time_ns() % 10**9:09d}"


class BudgetMonitor:
    def __init__(self, store: Store, *, interval_s: float, min_interval_s: float, poll_s: float = 0.5, allocation_config_path: str = "",
                 alerter: Alerter | None = None, on_evaluated: Listener | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:  # fmt: skip
        self.store = store
        self.interval_s = interval_s
        self.min_interval_s = min_interval_s
        self.poll_s = poll_s
        self.allocation_config_path = allocation_config_path
        self.alerter = alerter
        self.on_evaluated = on_evaluated
        self.clock = clock
        self.last_statuses: list[BudgetStatus] = []
        self.last_error = ""
        self.passes = 0
        self.longest_pass_s = 0.0  # the evaluation term of the enforcement latency, as measured
        # Until a pass finds a budget in force, stored usage wakes nothing: an aggregator without
        # budgets only watches the budgets table's newest version (one tiny read per poll_s).
        self._in_force = False
        self._kicked = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_run = 0.0
        self._last_takeover_scan = float("-inf")

    def kick(self, *_: object) -> None:
        """Evaluate now (budgets were loaded): never blocks, never raises."""
        self._kicked.set()

    def usage_stored(self, *_: object) -> None:
        """Writer after-insert hook: evaluate soon, when there is a budget in force to evaluate."""
        if self._in_force:
            self._kicked.set()

    def run_once(self) -> list[BudgetStatus] | None:
        """One pass; None when the store could not be read (the previous state stands)."""
        started = time.perf_counter()
        began = time.monotonic()
        at = self.clock()
        try:
            runner = LocalRunner(self.store)
            config = allocation_config.load(self.allocation_config_path)
            statuses = evaluate(runner, list_budgets(runner), at=at, config=config)
        except (StoreError, allocation_config.ConfigError, ValueError) as exc:
            metrics.EVALUATIONS.labels("failed").inc()
            if str(exc) != self.last_error:
                log.error("budget evaluation failed; gateways keep the last state: %s", exc)
            self.last_error = str(exc)
            return None
        self.last_error = ""
        self.passes += 1
        metrics.EVALUATIONS.labels("ok").inc()
        elapsed = time.perf_counter() - started
        self.longest_pass_s = max(self.longest_pass_s, elapsed)
        metrics.EVALUATION_SECONDS.observe(elapsed)
        metrics.LAST_EVALUATION.set(time.time())
        self.last_statuses = statuses
        self._in_force = bool(statuses)
        metrics.show(
            ((s.budget.budget_id, s.budget.scope.text(), s.budget.period, s.budget.unit, s.budget.action), float(s.spend),
             float(s.limit), float(s.utilization), s.period_end.timestamp())
            for s in statuses
        )  # fmt: skip
        if self.on_evaluated is not None:
            try:
                self.on_evaluated(statuses, began)
            except Exception:
                log.exception("budget state listener failed")
        if self.alerter is not None:
            for status in statuses:
                targets = self.alerter.targets_for(status.budget.notify)
                for threshold in status.thresholds_crossed:
                    self.alerter.offer(alert_for(status, threshold, targets, detected_at=at), now=at)
            if time.monotonic() - self._last_takeover_scan >= TAKEOVER_SCAN_EVERY_S:
                self._last_takeover_scan = time.monotonic()
                try:
                    self.alerter.take_over_stalled()
                except StoreError as exc:
                    log.warning("could not scan for stalled alert deliveries: %s", exc)
        return statuses

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.alerter is not None:
            self.alerter.start()
        self._thread = threading.Thread(target=self._run, name="chargeback-budgets", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._kicked.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.alerter is not None:
            self.alerter.stop(timeout_s)

    def _news(self) -> tuple[int, int]:
        """(newest budgets version, newest dirty mark); usage counts only while a budget is in force."""
        since = (self.clock() - NEWS_LOOKBACK).replace(minute=0, second=0, microsecond=0)
        try:
            _, rows = self.store.query(NEWS_SQL, {"db": self.store.database, "since": since})
        except StoreError:
            return (0, 0)
        budgets, usage = rows[0] if rows else (0, 0)
        return int(budgets or 0), int(usage or 0) if self._in_force else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kicked.clear()  # before the pass: a kick during it means new data it may not have read
            seen = self._news()  # likewise: news after this is for the next pass
            self.run_once()
            self._last_run = time.monotonic()
            # Until the interval ends, a kick, or news in the store; never sooner than min_interval_s.
            while not self._kicked.wait(self.poll_s):
                if self._stop.is_set() or time.monotonic() - self._last_run >= self.interval_s:
                    break
                news = self._news()
                if news[0] > seen[0] or news[1] > seen[1]:
                    break
            if self._stop.is_set():
                return
            spacing = self.min_interval_s - (time.monotonic() - self._last_run)
            if spacing > 0:
                self._stop.wait(spacing)
