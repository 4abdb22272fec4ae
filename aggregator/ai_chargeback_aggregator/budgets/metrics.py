"""Budget metrics, on the aggregator's one registry (served on /metrics).

The gauges let Alertmanager users alert their own way: utilization is spend /
limit (1.0 = 100 %). Series of budgets no longer in force are removed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from ..metrics import REGISTRY

_LABELS = ("budget_id", "scope", "period", "unit", "action")

SPEND = Gauge("chargeback_budget_spend", "Spend of the budget's current period (USD or tokens)", _LABELS, registry=REGISTRY)
LIMIT = Gauge("chargeback_budget_limit", "The budget's limit (USD or tokens)", _LABELS, registry=REGISTRY)
UTILIZATION = Gauge("chargeback_budget_utilization", "Spend / limit of the current period (1 = 100 %)", _LABELS, registry=REGISTRY)
RESETS_AT = Gauge("chargeback_budget_resets_at_timestamp_seconds", "When the current period ends (unix time)", _LABELS,
                  registry=REGISTRY)  # fmt: skip
EVALUATIONS = Counter("chargeback_budget_evaluations", "Budget evaluations, by outcome (ok, failed)", ["outcome"], registry=REGISTRY)
EVALUATION_SECONDS = Histogram(
    "chargeback_budget_evaluation_seconds", "Time to evaluate every budget in force (store reads included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY,
)  # fmt: skip
LAST_EVALUATION = Gauge("chargeback_budget_last_evaluation_timestamp_seconds",
                        "When budgets were last evaluated successfully (unix time)", registry=REGISTRY)  # fmt: skip
ALERTS = Counter(
    "chargeback_budget_alerts", "Threshold alerts by outcome: fired (this aggregator won the claim), "
    "claimed_elsewhere, taken_over (delivery resumed after its owner went silent)", ["outcome"], registry=REGISTRY,
)  # fmt: skip
WEBHOOK_DELIVERIES = Counter(
    "chargeback_budget_webhook_deliveries", "Webhook attempts by target and outcome (delivered, retry, failed)",
    ["target", "outcome"], registry=REGISTRY,
)  # fmt: skip
WEBHOOK_FAILED = Gauge(
    "chargeback_budget_webhook_failed_alerts", "Alerts this aggregator gave up delivering to a target (visible until restart)",
    ["target"], registry=REGISTRY,
)  # fmt: skip

_shown: set[tuple[str, ...]] = set()
_shown_lock = threading.Lock()


def show(series: Iterable[tuple[tuple[str, ...], float, float, float, float]]) -> None:
    """Set the gauges of the budgets in force ((labels, spend, limit, utilization, resets_at) each); drop the rest."""
    current: set[tuple[str, ...]] = set()
    for labels, spend, limit, utilization, resets_at in series:
        SPEND.labels(*labels).set(spend)
        LIMIT.labels(*labels).set(limit)
        UTILIZATION.labels(*labels).set(utilization)
        RESETS_AT.labels(*labels).set(resets_at)
        current.add(labels)
    with _shown_lock:
        gone = _shown - current
        _shown.clear()
        _shown.update(current)
    for labels in gone:
        for gauge in (SPEND, LIMIT, UTILIZATION, RESETS_AT):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
