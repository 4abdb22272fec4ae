"""Problem 2 of issue 16: an event the plugin accepts but the aggregator cannot store never vanishes.

The upstream reports a count past the contract's limit (150M output tokens). The
client still gets its answer; the real plugin server meters the request as
measured; the aggregator quarantines the event with the raw event and the
reason, acks it as quarantined, counts it in /metrics, and every report and the
readiness verdict over the period say so.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from support.gateway import running_gateway

from ai_chargeback_aggregator.analytics.governance import Period, Quarantined, Readiness, Scope
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.metrics import REGISTRY
from ai_chargeback_proto import pb
from ai_chargeback_proto.limits import MAX_TOKENS

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}


def quarantined_count() -> float:
    return REGISTRY.get_sample_value("chargeback_events_quarantined_total", {"field": "output_tokens"}) or 0.0


def test_a_count_past_the_limit_is_quarantined_acked_counted_and_reported(tmp_path: Path) -> None:
    before = quarantined_count()
    with running_gateway(tmp_path) as gw:
        with httpx.Client(base_url=gw.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
            huge = client.post("/openai/v1/chat/completions", json=BODY, headers={"x-mock-reasoning-tokens": str(MAX_TOKENS + 50_000_000)})
            assert huge.status_code == 200  # the client is never harmed
            client.post("/openai/v1/chat/completions", json=BODY).raise_for_status()
        gw.wait_for_events(1)
        deadline = time.monotonic() + 60
        while not gw.query("SELECT count() FROM chargeback.quarantined_events FINAL")[0][0] and time.monotonic() < deadline:
            time.sleep(0.1)
        ((event_id, field, reason, team, output_tokens, raw),) = gw.query(
            "SELECT event_id, field, reason, team, output_tokens, hex(raw_event) FROM chargeback.quarantined_events FINAL")
        assert (field, team) == ("output_tokens", "payments")
        assert reason == f"output_tokens: above {MAX_TOKENS}" and output_tokens > MAX_TOKENS
        sent = pb.UsageEvent.FromString(bytes.fromhex(raw))  # the raw event, exactly as the plugin sent it
        assert sent.event_id == event_id and sent.output_tokens == output_tokens and sent.reasoning_tokens == MAX_TOKENS + 50_000_000
        assert gw.query("SELECT count() FROM chargeback.usage_events FINAL WHERE event_id = {id:UUID}", {"id": event_id})[0][0] == 0
        # The row is stored before the batch's tickets resolve, and the counter moves when they do.
        deadline = time.monotonic() + 30
        while quarantined_count() - before < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert quarantined_count() - before == 1

        # The plugin's sender counted the quarantine ack and reports it with its next batch.
        with httpx.Client(base_url=gw.url, headers={"apikey": "demo-key-checkout"}, timeout=30) as client:
            deadline = time.monotonic() + 60
            reported = 0.0
            while reported < 1 and time.monotonic() < deadline:
                client.post("/openai/v1/chat/completions", json=BODY).raise_for_status()
                time.sleep(0.2)
                reported = max((s.value for family in REGISTRY.collect() if family.name == "chargeback_sender_events"
                                for s in family.samples if s.labels.get("counter") == "quarantined"), default=0.0)  # fmt: skip
        assert reported == 1

        runner = LocalRunner(gw.aggregator.store)
        today = datetime.now(UTC).date()
        report = build_report(runner, first=today, last=today, by="team")
        assert report.totals["events_quarantined"] == 1
        assert any("1 events of this period were quarantined" in w and "output_tokens" in w for w in report.warnings)
        scope = Scope(period=Period.trailing_days(1))
        listed = Quarantined(scope).run(runner)
        assert [(r["field"], r["team"], r["events"]) for r in listed.rows] == [("output_tokens", "payments", 1)]
        verdict = Readiness(scope).run(runner)
        unbilled = next(m for m in verdict.rows if m["metric"] == "unbilled_share")
        assert not unbilled["passed"] and "1 quarantined" in unbilled["detail"]
        assert not verdict.verdict.ok
