"""Threshold alerts: fired once per budget period, whichever aggregator sees them, across restarts.

Claim protocol (the store decides, no aggregator trusts its own clock):

1. An aggregator that sees threshold T of budget B crossed in period P reads
   the claims of alert (B, P, T, limit). Any claim at all: it was fired
   already (by anyone, before any restart); nothing to do.
2. Otherwise it inserts a claim. The store stamps it (``claimed_at`` =
   now64(9) at insert; the claimant never sends a time).
3. After ``settle_s`` it reads the claims back. The first by (claimed_at,
   claimant) fires; every other claimant stands down.

Two aggregators racing both insert, both read both claims, and agree on one
winner. A double firing needs a claim to become visible more than
``settle_s`` after the store stamped it (an insert stalled that long between
stamping and commit): the bound, stated in docs/budgets.md.

Delivery: the winner posts to each target with exponential backoff
(``max_attempts``, then ``failed``), recording every attempt in
``budget_alert_deliveries`` (visible in ``budgets status`` and the metrics).
A winner that dies mid-delivery leaves its rows unchanged; once they are
older than ``lease_s`` by the store clock, any aggregator claims the next
round the same way and resumes the targets not yet delivered.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..analytics.reports import Runner
from ..store.clickhouse import Store, StoreError
from . import metrics
from .definitions import decimal_text
from .evaluate import BudgetStatus
from .webhooks import Attempt, Target, send

log = logging.getLogger(__name__)

ALERT_KIND = "chargeback.budget.threshold_crossed"
CLAIMS_TABLE = "budget_alert_claims"
DELIVERIES_TABLE = "budget_alert_deliveries"
UNCONFIGURED = "webhook not configured on this aggregator (CHARGEBACK_BUDGET_WEBHOOKS)"
STORE_RETRY_S = 5.0
BACKOFF_INITIAL_S = 1.0
# Claims older than this are never taken over: every budget period is shorter.
TAKEOVER_HORIZON_DAYS = 40


def alert_id(budget_id: str, period_start: datetime, threshold: Decimal, limit: Decimal) -> str:
    """Names one firing: this budget, this period, this threshold of this limit (a raised limit fires anew)."""
    key = f"{budget_id}|{period_start.astimezone(UTC).isoformat()}|{decimal_text(threshold)}|{decimal_text(limit)}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    alert_id: str
    budget_id: str
    period_start: datetime
    period_end: datetime
    threshold: Decimal
    limit: Decimal
    unit: str
    spend: Decimal
    targets: tuple[str, ...]
    payload: Mapping[str, Any] = field(hash=False, compare=False)


def alert_for(status: BudgetStatus, threshold: Decimal, targets: Sequence[str], *, detected_at: datetime) -> Alert:
    budget = status.budget
    identifier = alert_id(budget.budget_id, status.period_start, threshold, budget.amount)
    described = status.to_dict()
    payload = {
        "kind": ALERT_KIND,
        "alert_id": identifier,
        "budget_id": budget.budget_id,
        "scope": budget.scope.to_dict(),
        "scope_text": budget.scope.text(),
        "period": budget.period,
        "period_label": status.period_label,
        "timezone": budget.timezone,
        "period_start": described["period_start"],
        "resets_at": described["resets_at"],
        "threshold_percent": str(threshold),
        "unit": budget.unit,
        "cost_basis": budget.cost_basis,
        "limit": described["limit"],
        "spend": described["spend"],
        "utilization_percent": described["utilization_percent"],
        "action": budget.action,
        "state": status.state,
        "forecast": described["forecast"],
        "detected_at": detected_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": budget.note,
    }
    return Alert(identifier, budget.budget_id, status.period_start, status.period_end, threshold, budget.amount, budget.unit,
                 status.spend, tuple(targets), payload)  # fmt: skip


# -- the store side -----------------------------------------------------------------
class ClaimStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _query(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self.store.query(sql, {"db": self.store.database, **params})[1]

    def claimed(self, alert: str) -> bool:
        rows = self._query("SELECT count() FROM {db:Identifier}.budget_alert_claims WHERE alert_id = {a:String}", {"a": alert})
        return bool(rows and rows[0][0])

    def insert(self, alert: Alert, claim_round: int, claimant: str) -> None:
        self.store.insert_columns(CLAIMS_TABLE, {
            "alert_id": [alert.alert_id], "claim_round": [claim_round], "claimant": [claimant],
            "budget_id": [alert.budget_id], "period_start": [alert.period_start], "threshold": [alert.threshold],
            "budget_limit": [alert.limit], "unit": [alert.unit], "spend": [alert.spend], "targets": [list(alert.targets)],
            "payload": [json.dumps(dict(alert.payload), sort_keys=True)],
        })  # fmt: skip

    def first_claimant(self, alert: str, claim_round: int) -> str | None:
        rows = self._query(
            "SELECT claimant FROM {db:Identifier}.budget_alert_claims WHERE alert_id = {a:String} AND claim_round = {r:UInt32} "
            "ORDER BY claimed_at, claimant LIMIT 1",
            {"a": alert, "r": claim_round},
        )
        return str(rows[0][0]) if rows else None

    def attempts(self, alert: str) -> dict[str, tuple[str, int]]:
        """target -> (state, attempts) as last recorded."""
        rows = self._query(
            "SELECT target, state, attempts FROM {db:Identifier}.budget_alert_deliveries FINAL WHERE alert_id = {a:String}",
            {"a": alert},
        )
        return {str(target): (str(state), int(attempts)) for target, state, attempts in rows}

    def record(self, alert: str, target: str, claim_round: int, *, state: str, attempts: int, status: int, error: str,
               next_attempt_at: datetime | None, deliverer: str) -> None:  # fmt: skip
        self.store.insert_columns(DELIVERIES_TABLE, {
            "alert_id": [alert], "target": [target], "claim_round": [claim_round], "state": [state], "attempts": [attempts],
            "last_status": [status], "last_error": [error], "next_attempt_at": [next_attempt_at],
            "delivered_at": [datetime.now(UTC) if state == "delivered" else None], "deliverer": [deliverer],
        })  # fmt: skip

    def stalled(self, lease_s: float) -> list[tuple[Alert, int]]:
        """Alerts whose latest round left targets undelivered and went silent for lease_s (store clock): (alert, round)."""
        rows = self._query(
            """
            SELECT c.alert_id, c.last_round, c.payload, c.targets, c.budget_id, c.period_start, c.threshold, c.budget_limit,
                   c.unit, c.spend, ifNull(d.settled, []) AS settled,
                   (toUnixTimestamp64Milli(now64(3)) - toUnixTimestamp64Milli(greatest(c.last_claimed,
                        ifNull(d.last_update, c.last_claimed)))) / 1000 AS silent_s
            FROM (
                SELECT alert_id, budget_id, period_start, threshold, budget_limit, unit, max(claim_round) AS last_round,
                       argMax(payload, claim_round) AS payload, argMax(targets, claim_round) AS targets,
                       argMax(spend, claim_round) AS spend, max(claimed_at) AS last_claimed
                FROM {db:Identifier}.budget_alert_claims
                WHERE claimed_at >= now64(9) - toIntervalDay({horizon:UInt32})
                GROUP BY alert_id, budget_id, period_start, threshold, budget_limit, unit  -- all named by alert_id
            ) AS c
            LEFT JOIN (
                SELECT alert_id, toNullable(max(updated_at)) AS last_update,
                       groupArrayIf(target, state IN ('delivered', 'failed')) AS settled
                FROM {db:Identifier}.budget_alert_deliveries FINAL
                GROUP BY alert_id
            ) AS d ON c.alert_id = d.alert_id
            """,
            {"horizon": TAKEOVER_HORIZON_DAYS},
        )
        found = []
        for (identifier, last_round, payload, targets, budget_id, period_start, threshold, limit, unit, spend, settled,
             silent_s) in rows:  # fmt: skip
            if not set(targets) - set(settled) or float(silent_s) < lease_s:
                continue
            data = json.loads(payload)
            end = datetime.fromisoformat(data["resets_at"].replace("Z", "+00:00"))
            found.append((Alert(identifier, budget_id, _utc(period_start), end, Decimal(threshold), Decimal(limit), unit,
                                Decimal(spend), tuple(targets), data), int(last_round) + 1))  # fmt: skip
        return found


def alert_history(runner: Runner, budget_ids: Sequence[str], since: datetime) -> dict[str, list[dict[str, Any]]]:
    """budget id -> its alerts fired since ``since``, each with per-target delivery state (for `budgets status`)."""
    if not budget_ids:
        return {}
    _, rows = runner.query(
        """
        SELECT c.budget_id, c.alert_id, c.period_start, c.threshold, c.budget_limit, c.spend, c.first_claimed, c.targets,
               d.target, d.state, d.attempts, d.last_status, d.last_error, d.updated_at
        FROM (
            SELECT alert_id, budget_id, period_start, threshold, budget_limit, argMin(spend, claimed_at) AS spend,
                   min(claimed_at) AS first_claimed, argMax(targets, claim_round) AS targets
            FROM {db:Identifier}.budget_alert_claims
            WHERE budget_id IN {ids:Array(String)} AND period_start >= {since:DateTime('UTC')}
            GROUP BY alert_id, budget_id, period_start, threshold, budget_limit  -- all named by alert_id
        ) AS c
        LEFT JOIN (SELECT * FROM {db:Identifier}.budget_alert_deliveries FINAL) AS d ON c.alert_id = d.alert_id
        ORDER BY c.first_claimed, d.target
        """,
        {"db": runner.database, "ids": list(budget_ids), "since": since},
    )
    by_alert: dict[str, dict[str, Any]] = {}
    result: dict[str, list[dict[str, Any]]] = {}
    for (budget_id, identifier, period_start, threshold, limit, spend, first_claimed, targets, target, state, attempts,
         last_status, last_error, updated_at) in rows:  # fmt: skip
        entry = by_alert.get(identifier)
        if entry is None:
            entry = by_alert[identifier] = {
                "alert_id": identifier, "period_start": _iso(period_start), "threshold_percent": decimal_text(Decimal(threshold)),
                "limit": decimal_text(Decimal(limit)), "spend_at_firing": decimal_text(Decimal(spend)),
                "fired_at": _iso(first_claimed), "deliveries": {name: {"state": "pending"} for name in targets},
            }  # fmt: skip
            result.setdefault(str(budget_id), []).append(entry)
        if target:
            entry["deliveries"][str(target)] = {"state": str(state), "attempts": int(attempts), "last_status": int(last_status),
                                                "last_error": str(last_error), "updated_at": _iso(updated_at)}  # fmt: skip
    return result


# -- the alerter thread -----------------------------------------------------------------------------
@dataclass(order=True)
class _Job:
    due: float
    seq: int
    kind: str = field(compare=False)  # claim | decide | send
    alert: Alert = field(compare=False)
    claim_round: int = field(compare=False, default=0)
    target: str = field(compare=False, default="")
    attempts: int = field(compare=False, default=0)


class Alerter:
    """Claims alerts and delivers them, on one thread that never blocks the budget evaluation."""

    def __init__(self, store: Store, *, claimant: str, targets: Mapping[str, Target], settle_s: float, lease_s: float,
                 max_attempts: int, timeout_s: float, backoff_max_s: float = 60.0,
                 sender: Callable[[Target, Mapping[str, Any], float], Attempt] | None = None) -> None:  # fmt: skip
        self.claims = ClaimStore(store)
        self.claimant = claimant
        self.targets = dict(targets)
        self.settle_s = settle_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_max_s = backoff_max_s
        self._send = sender or (lambda target, payload, timeout: send(target, payload, timeout_s=timeout))
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._offered: dict[str, datetime] = {}  # alert id -> period end (forgotten after it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False

    def targets_for(self, notify: Sequence[str]) -> tuple[str, ...]:
        return tuple(notify) if notify else tuple(sorted(self.targets))

    # -- from the monitor ----------------------------------------------------------------
    def offer(self, alert: Alert, *, now: datetime) -> None:
        """A threshold seen crossed: claim it unless this process already did. Never blocks."""
        with self._wake:
            for identifier in [i for i, end in self._offered.items() if end <= now]:
                del self._offered[identifier]
            if alert.alert_id in self._offered:
                return
            self._offered[alert.alert_id] = alert.period_end
            self._push(_Job(time.monotonic(), next(self._seq), "claim", alert))

    def take_over_stalled(self) -> int:
        """Queue claims for deliveries whose owner went silent; returns how many."""
        stalled = self.claims.stalled(self.lease_s)
        with self._wake:
            for alert, next_round in stalled:
                self._push(_Job(time.monotonic(), next(self._seq), "claim", alert, next_round))
        return len(stalled)

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._jobs, job)
        self._wake.notify()

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chargeback-budget-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def idle(self) -> bool:
        """Nothing queued or running (tests wait for this)."""
        with self._wake:
            return not self._jobs and not self._busy

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                if not self._jobs or self._jobs[0].due > time.monotonic():
                    delay = self._jobs[0].due - time.monotonic() if self._jobs else 1.0
                    self._wake.wait(max(min(delay, 1.0), 0.0))
                    continue
                job = heapq.heappop(self._jobs)
                self._busy = True
            try:
                self._do(job)
            except StoreError as exc:
                log.warning("budget alert %s: store unavailable (%s); retrying", job.alert.alert_id, exc)
                with self._wake:
                    self._push(_Job(time.monotonic() + STORE_RETRY_S, next(self._seq), job.kind, job.alert, job.claim_round,
                                    job.target, job.attempts))  # fmt: skip
            except Exception:
                log.exception("budget alert %s: %s step failed", job.alert.alert_id, job.kind)
            finally:
                with self._wake:
                    self._busy = False

    def _do(self, job: _Job) -> None:
        if job.kind == "claim":
            self._claim(job)
        elif job.kind == "decide":
            self._decide(job)
        else:
            self._deliver(job)

    def _claim(self, job: _Job) -> None:
        if job.claim_round == 0 and self.claims.claimed(job.alert.alert_id):
            return  # fired before (by another aggregator, or before a restart)
        self.claims.insert(job.alert, job.claim_round, self.claimant)
        with self._wake:
            self._push(_Job(time.monotonic() + self.settle_s, next(self._seq), "decide", job.alert, job.claim_round))

    def _decide(self, job: _Job) -> None:
        alert = job.alert
        winner = self.claims.first_claimant(alert.alert_id, job.claim_round)
        if winner != self.claimant:
            metrics.ALERTS.labels("claimed_elsewhere").inc()
            return
        metrics.ALERTS.labels("fired" if job.claim_round == 0 else "taken_over").inc()
        log.warning("budget %s crossed %s%% (%s of %s %s, period from %s): alert %s to %s", alert.budget_id, alert.threshold,
                    alert.spend, alert.limit, alert.unit, alert.period_start, alert.alert_id, ", ".join(alert.targets) or "no webhook")  # fmt: skip
        recorded = self.claims.attempts(alert.alert_id) if job.claim_round else {}
        for target in alert.targets:
            state, attempts = recorded.get(target, ("", 0))
            if state in ("delivered", "failed"):
                continue
            with self._wake:
                self._push(_Job(time.monotonic(), next(self._seq), "send", alert, job.claim_round, target, attempts))

    def _deliver(self, job: _Job) -> None:
        alert, name = job.alert, job.target
        target = self.targets.get(name)
        attempts = job.attempts + 1
        if target is None:
            outcome = Attempt(False, 0, f"{name!r}: {UNCONFIGURED}", False)
        else:
            outcome = self._send(target, alert.payload, self.timeout_s)
        if outcome.ok:
            self.claims.record(alert.alert_id, name, job.claim_round, state="delivered", attempts=attempts, status=outcome.status,
                               error="", next_attempt_at=None, deliverer=self.claimant)  # fmt: skip
            metrics.WEBHOOK_DELIVERIES.labels(name, "delivered").inc()
            return
        if outcome.retryable and attempts < self.max_attempts:
            delay = min(BACKOFF_INITIAL_S * 2 ** (attempts - 1), self.backoff_max_s) * random.uniform(0.8, 1.2)
            self.claims.record(alert.alert_id, name, job.claim_round, state="retrying", attempts=attempts, status=outcome.status,
                               error=outcome.error, next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                               deliverer=self.claimant)  # fmt: skip
            metrics.WEBHOOK_DELIVERIES.labels(name, "retry").inc()
            log.warning("budget alert %s to %s failed (attempt %d: %s); retrying in %.1f s", alert.alert_id, name, attempts,
                        outcome.error, delay)  # fmt: skip
            with self._wake:
                self._push(_Job(time.monotonic() + delay, next(self._seq), "send", alert, job.claim_round, name, attempts))
            return
        self.claims.record(alert.alert_id, name, job.claim_round, state="failed", attempts=attempts, status=outcome.status,
                           error=outcome.error, next_attempt_at=None, deliverer=self.claimant)  # fmt: skip
        metrics.WEBHOOK_DELIVERIES.labels(name, "failed").inc()
        metrics.WEBHOOK_FAILED.labels(name).inc()
        log.error("budget alert %s to %s failed for good after %d attempt(s): %s", alert.alert_id, name, attempts, outcome.error)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
