"""Threshold alerts through a real local webhook: once per period, across restarts and aggregators, retried, visible."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from support.seed import Seed, usage_event
from support.webhook_receiver import WebhookReceiver

from ai_chargeback_aggregator.budgets import budget_status
from ai_chargeback_aggregator.budgets.alerts import ALERT_KIND, Alerter, ClaimStore, alert_for
from ai_chargeback_aggregator.budgets.definitions import parse_records
from ai_chargeback_aggregator.budgets.monitor import BudgetMonitor
from ai_chargeback_aggregator.budgets.store import save_budgets
from ai_chargeback_aggregator.budgets.webhooks import ALERT_ID_HEADER, Target
from ai_chargeback_aggregator.metrics import REGISTRY
from ai_chargeback_aggregator.store.clickhouse import Store

WAIT_S = 30.0


def budget(budget_id: str = "pay", **fields: Any) -> dict[str, Any]:
    return {"id": budget_id, "scope": {"team": "payments"}, "period": "monthly", "amount": 1000, "unit": "tokens",
            "effective_from": "2026-01-01", **fields}  # fmt: skip


def spend(seed: Seed, tokens: int, *, at: datetime | None = None, team: str = "payments") -> None:
    seed.insert([usage_event(at or datetime.now(UTC) - timedelta(minutes=1), team=team, input_tokens=tokens,
                             cached_input_tokens=0, output_tokens=0)])  # fmt: skip


def wait_idle(*alerters: Alerter) -> None:
    deadline = time.monotonic() + WAIT_S
    while not all(a.idle() for a in alerters):
        if time.monotonic() > deadline:
            raise TimeoutError("alerter still busy")
        time.sleep(0.02)


@contextmanager
def aggregator_budgets(store: Store, webhooks: WebhookReceiver, *, claimant: str, settle_s: float = 0.2, lease_s: float = 3600,
                       max_attempts: int = 4, targets: dict[str, Target] | None = None,
                       clock: Callable[[], datetime] | None = None) -> Iterator[tuple[BudgetMonitor, Alerter]]:  # fmt: skip
    """The budget half of one aggregator: a monitor and its alerter on their own store session."""
    session = Store(store.dsn)
    alerter = Alerter(session, claimant=claimant, settle_s=settle_s, lease_s=lease_s, max_attempts=max_attempts, timeout_s=5,
                      backoff_max_s=0.05, targets=targets if targets is not None else {
                          "hook": Target("hook", webhooks.url("/hook")), "slack": Target("slack", webhooks.url("/slack"), "slack")})  # fmt: skip
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    monitor = BudgetMonitor(session, interval_s=3600, min_interval_s=0, alerter=alerter, **kwargs)
    alerter.start()
    try:
        yield monitor, alerter
    finally:
        alerter.stop()
        session.close()


def test_each_threshold_fires_once_with_a_generic_and_a_slack_body(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(action="enforce", note="FY27")]))
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1") as (monitor, alerter):
        spend(seed, 400)
        monitor.run_once()
        wait_idle(alerter)
        assert webhooks.on("/hook") == []  # 40 %: nothing crossed
        spend(seed, 450)
        monitor.run_once()
        (fifty, eighty) = sorted(webhooks.wait_for("/hook", 2), key=lambda r: float(r.body["threshold_percent"]))
        for _ in range(3):
            monitor.run_once()
        wait_idle(alerter)
        assert len(webhooks.on("/hook")) == 2  # repeated passes fire nothing new
        spend(seed, 200)
        monitor.run_once()
        webhooks.wait_for("/hook", 3)
        webhooks.wait_for("/slack", 3)
        wait_idle(alerter)
    body = eighty.body
    assert body["kind"] == ALERT_KIND and body["budget_id"] == "pay" and body["scope"] == {"team": "payments"}
    assert (body["threshold_percent"], body["spend"], body["limit"], body["unit"]) == ("80", "850", "1000", "tokens")
    assert body["action"] == "enforce" and body["state"] == "warning" and body["note"] == "FY27"
    assert body["resets_at"].endswith("T00:00:00Z") and body["period"] == "monthly" and body["timezone"] == "UTC"
    assert eighty.headers[ALERT_ID_HEADER.lower()] == body["alert_id"] != fifty.body["alert_id"]
    hundred = [r for r in webhooks.on("/hook") if r.body["threshold_percent"] == "100"][0]
    assert hundred.body["state"] == "enforced"
    slack = [r.body for r in webhooks.on("/slack")]
    assert all(set(b) == {"text", "blocks"} for b in slack)
    assert any("refused at the gateway" in b["blocks"][0]["text"]["text"] for b in slack)
    statuses = budget_status(seed.runner)
    assert [a["threshold_percent"] for a in statuses[0].alerts] == ["50", "80", "100"]
    assert all(d["state"] == "delivered" for a in statuses[0].alerts for d in a["deliveries"].values())


def test_a_restarted_aggregator_does_not_fire_again(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget()]))
    spend(seed, 900)
    with aggregator_budgets(seed.store, webhooks, claimant="before-restart") as (monitor, alerter):
        monitor.run_once()
        webhooks.wait_for("/hook", 2)
        wait_idle(alerter)
    with aggregator_budgets(seed.store, webhooks, claimant="after-restart") as (monitor, alerter):
        monitor.run_once()
        wait_idle(alerter)
        assert len(webhooks.on("/hook")) == 2
        spend(seed, 200)
        monitor.run_once()
        webhooks.wait_for("/hook", 3)  # the new threshold does fire, once
        wait_idle(alerter)
    assert sorted(r.body["threshold_percent"] for r in webhooks.on("/hook")) == ["100", "50", "80"]


def test_two_aggregators_over_one_store_fire_each_threshold_once(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(f"b{i}", thresholds=[10, 20, 30, 40, 50]) for i in range(4)]))
    spend(seed, 600)
    with (aggregator_budgets(seed.store, webhooks, claimant="agg-a") as (monitor_a, alerter_a),
          aggregator_budgets(seed.store, webhooks, claimant="agg-b") as (monitor_b, alerter_b)):  # fmt: skip
        for _ in range(3):
            passes = [threading.Thread(target=m.run_once) for m in (monitor_a, monitor_b)]
            for thread in passes:
                thread.start()
            for thread in passes:
                thread.join()
        webhooks.wait_for("/hook", 20)
        wait_idle(alerter_a, alerter_b)
    fired = [(r.body["budget_id"], r.body["threshold_percent"]) for r in webhooks.on("/hook")]
    assert len(fired) == len(set(fired)) == 20


def test_claims_that_race_agree_on_one_winner(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget()]))
    spend(seed, 900)
    (status,) = budget_status(seed.runner)
    alert = alert_for(status, Decimal(50), ("hook",), detected_at=datetime.now(UTC))
    sessions = [Store(seed.store.dsn) for _ in range(3)]
    try:
        claims = [ClaimStore(session) for session in sessions]
        for claimant, store in zip(("c", "a", "b"), claims):
            assert not store.claimed(alert.alert_id) or claimant != "c"
            store.insert(alert, 0, claimant)  # every one inserts before any reads: the worst interleaving
        winners = {store.first_claimant(alert.alert_id, 0) for store in claims}
    finally:
        for session in sessions:
            session.close()
    assert len(winners) == 1 and winners != {None}


def test_a_failing_webhook_is_retried_and_its_failures_are_visible(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(thresholds=[50], notify=["hook"]), budget("gone", thresholds=[50], notify=["nope"]),
                                            budget("refused", thresholds=[50], notify=["refusing"])]))  # fmt: skip
    webhooks.fail("/hook", 500, 503)  # two failures, then it takes it
    webhooks.fail("/refusing", 404)  # a permanent refusal: not retried
    before = _metric("chargeback_budget_webhook_deliveries_total", target="hook", outcome="retry") or 0
    spend(seed, 600)
    targets = {"hook": Target("hook", webhooks.url("/hook")), "refusing": Target("refusing", webhooks.url("/refusing"))}
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1", targets=targets) as (monitor, alerter):
        monitor.run_once()
        webhooks.wait_for("/hook", 1)
        wait_idle(alerter)
    assert [r.status for r in webhooks.on("/hook")] == [500, 503, 200]
    assert [r.status for r in webhooks.on("/refusing")] == [404]
    assert _metric("chargeback_budget_webhook_deliveries_total", target="hook", outcome="retry") - before == 2
    deliveries = {s.budget.budget_id: s.alerts[0]["deliveries"] for s in budget_status(seed.runner)}
    assert deliveries["pay"]["hook"]["state"] == "delivered" and deliveries["pay"]["hook"]["attempts"] == 3
    assert deliveries["gone"]["nope"]["state"] == "failed" and "not configured" in deliveries["gone"]["nope"]["last_error"]
    refused = deliveries["refused"]["refusing"]
    assert (refused["state"], refused["attempts"], refused["last_status"]) == ("failed", 1, 404)


def test_a_webhook_that_never_recovers_fails_after_max_attempts(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(thresholds=[50])]))
    webhooks.fail("/hook", *[502] * 10)
    spend(seed, 600)
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1", max_attempts=3,
                            targets={"hook": Target("hook", webhooks.url("/hook"))}) as (monitor, alerter):  # fmt: skip
        monitor.run_once()
        wait_idle(alerter)
    assert len(webhooks.on("/hook")) == 3
    (status,) = budget_status(seed.runner)
    assert status.alerts[0]["deliveries"]["hook"]["state"] == "failed"
    assert _metric("chargeback_budget_webhook_failed_alerts", target="hook") >= 1


def test_a_delivery_whose_owner_died_is_taken_over_once(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(thresholds=[50])]))
    spend(seed, 600)
    (status,) = budget_status(seed.runner)
    alert = alert_for(status, Decimal(50), ("hook",), detected_at=datetime.now(UTC))
    ClaimStore(seed.store).insert(alert, 0, "died-before-posting")  # won the claim, then kill -9
    with aggregator_budgets(seed.store, webhooks, claimant="agg-2", lease_s=3600) as (monitor, alerter):
        monitor.run_once()
        assert alerter.take_over_stalled() == 0  # within the lease: the owner may still be working
        wait_idle(alerter)
        assert webhooks.on("/hook") == []
    with aggregator_budgets(seed.store, webhooks, claimant="agg-3", lease_s=0) as (monitor, alerter):
        assert alerter.take_over_stalled() == 1
        webhooks.wait_for("/hook", 1)
        wait_idle(alerter)
        assert alerter.take_over_stalled() == 0  # delivered: nothing left to take over
    (received,) = webhooks.on("/hook")
    assert received.body["alert_id"] == alert.alert_id


def test_a_new_period_or_a_new_limit_fires_anew(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget(thresholds=[50])]))
    now = datetime.now(UTC)
    last_month = (now.replace(day=1) - timedelta(days=3)).replace(hour=12)
    spend(seed, 600, at=last_month)
    spend(seed, 600)
    clock = {"at": last_month + timedelta(hours=1)}
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1", clock=lambda: clock["at"]) as (monitor, alerter):
        monitor.run_once()
        webhooks.wait_for("/hook", 1)
        clock["at"] = now
        monitor.run_once()
        webhooks.wait_for("/hook", 2)
        save_budgets(seed.store, parse_records([budget(thresholds=[50], amount=1100)]))  # raised: 600 of 1100 is 54 %
        monitor.run_once()
        webhooks.wait_for("/hook", 3)
        save_budgets(seed.store, parse_records([budget(thresholds=[50], amount=1000)]))  # back: that alert fired already
        monitor.run_once()
        wait_idle(alerter)
    periods = [(r.body["period_label"], r.body["limit"]) for r in webhooks.on("/hook")]
    assert len(periods) == 3 and len(set(periods)) == 3


def test_gauges_follow_the_budgets_in_force(seed: Seed, webhooks: WebhookReceiver) -> None:
    save_budgets(seed.store, parse_records([budget("gauged"), budget("dropped", amount=2000)]))
    spend(seed, 250)
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1") as (monitor, _):
        monitor.run_once()
        assert _metric("chargeback_budget_spend", budget_id="gauged") == 250
        assert _metric("chargeback_budget_limit", budget_id="dropped") == 2000
        assert _metric("chargeback_budget_utilization", budget_id="dropped") == 0.125
        save_budgets(seed.store, parse_records([budget("gauged")]), replace=True)
        monitor.run_once()
        assert _metric("chargeback_budget_limit", budget_id="dropped") is None


def test_a_failed_evaluation_keeps_the_last_state_and_is_counted(seed: Seed, webhooks: WebhookReceiver, tmp_path: Path) -> None:
    save_budgets(seed.store, parse_records([budget()]))
    with aggregator_budgets(seed.store, webhooks, claimant="agg-1") as (monitor, _):
        assert monitor.run_once()
        before = _metric("chargeback_budget_evaluations_total", outcome="failed") or 0
        monitor.allocation_config_path = str(tmp_path / "missing.yaml")
        assert monitor.run_once() is None
        assert len(monitor.last_statuses) == 1 and "missing.yaml" in monitor.last_error
        assert _metric("chargeback_budget_evaluations_total", outcome="failed") == before + 1


def _metric(name: str, **labels: str) -> float | None:
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
