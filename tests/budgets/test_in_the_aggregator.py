"""Budgets inside a running aggregator: loaded over HTTP, spend from events that arrived over gRPC,
alerts to a real webhook, gauges on /metrics, and a second aggregator over the same store agreeing."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from support.aggregator_fixtures import make_event, make_settings, stub_for
from support.webhook_receiver import WebhookReceiver

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_proto import pb

ADMIN = "admin-token"
BUDGET = {"id": "pay", "scope": {"team": "payments"}, "period": "daily", "amount": 1000, "unit": "tokens",
          "thresholds": [50, 100], "action": "enforce", "effective_from": "2026-01-01"}  # fmt: skip


def post_budgets(agg: Aggregator, records: list[dict[str, object]]) -> dict[str, object]:
    request = urllib.request.Request(f"http://{agg.settings.http_listen}/v1/budgets", data=json.dumps({"budgets": records}).encode(),
                                     headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def send(agg: Aggregator, tokens: int, batch_id: str) -> None:
    channel, stub = stub_for(agg)
    try:
        event = make_event(team="payments", input_tokens=tokens, cached_input_tokens=0, output_tokens=0)
        (ack,) = stub.StreamUsage(iter([pb.UsageBatch(batch_id=batch_id, sender_id="kong-1", sequence=1, events=[event])]), timeout=30)
        assert ack.status == pb.BatchAck.STATUS_STORED
    finally:
        channel.close()


def wait(predicate, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def test_the_aggregator_evaluates_after_ingest_and_alerts_once(tmp_path: Path) -> None:
    with WebhookReceiver() as webhooks:
        settings = dict(admin_token=ADMIN, budget_interval_s=3600, budget_min_interval_s=0, budget_claim_settle_s=0.1, budget_poll_s=0.2,
                        budget_webhooks={"ops": {"url": webhooks.url("/ops")}})  # fmt: skip
        first = Aggregator(make_settings(tmp_path, **settings))
        second = Aggregator(make_settings(tmp_path, **settings))
        first.start()
        second.start()
        try:
            assert post_budgets(first, [BUDGET]) == {"added": 1, "updated": 0, "deleted": 0}
            send(first, 600, "b1")  # the writer's after-insert hook kicks a pass: no interval to wait for
            (alert,) = webhooks.wait_for("/ops", 1)
            assert alert.body["threshold_percent"] == "50" and alert.body["spend"] == "600"
            send(second, 500, "b2")  # over the limit, through the other aggregator
            webhooks.wait_for("/ops", 2)
            # The first one saw none of those events arrive and waits an hour between passes: the other
            # aggregator's dirty marks in the store are its news (budget_poll_s), no kick needed.
            # The second learned of the budget (loaded through the first) from the budgets table the same way.
            wait(lambda: all(a.budgets.last_statuses and a.budgets.last_statuses[0].spend == 1100 for a in (first, second)))
            wait(lambda: first.budgets.alerter.idle() and second.budgets.alerter.idle())  # type: ignore[union-attr]
            assert sorted(r.body["threshold_percent"] for r in webhooks.on("/ops")) == ["100", "50"]
            with urllib.request.urlopen(f"http://{first.settings.http_listen}/metrics", timeout=10) as answer:
                scraped = answer.read().decode()
            assert 'chargeback_budget_utilization{action="enforce",budget_id="pay",period="daily",scope="team=payments",unit="tokens"} 1.1' in scraped
        finally:
            second.stop(grace_s=2)
            first.stop(grace_s=2)
