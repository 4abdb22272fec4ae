"""An answer the plugin could not count is estimated, labelled, and shown as such in the money views.

The whole path: a streamed answer in ``auto`` mode (not buffered, so the plugin
estimates its output from Kong's byte count) and three plain answers (counted
exactly) through the harness front, the real plugin server, gRPC and the real
aggregator; then the report, the readiness verdict and the FOCUS export read
what was stored.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import openai
from support.gateway import running_gateway

from ai_chargeback_aggregator.analytics.governance import Readiness, Scope
from ai_chargeback_aggregator.analytics.governance.base import Period
from ai_chargeback_aggregator.analytics.reports.focus import export
from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner

MESSAGES = [{"role": "user", "content": "Reconcile the month-end ledger and list the open items."}]


def test_a_stream_estimated_from_its_bytes_shows_as_an_estimated_share_in_report_readiness_and_focus(tmp_path: Path) -> None:
    # internal-vllm: an OpenAI-compatible route without ai-proxy; auto mode leaves streams unbuffered.
    with running_gateway(tmp_path, plugin_overrides={"usage_capture": "auto"}) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/vllm/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
                                                     extra_headers={"x-mock-output-tokens": "300"}))  # fmt: skip
        assert len(chunks) > 2
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        gw.wait_for_events(4)
        sources = gw.query("SELECT usage_source, usage_note FROM chargeback.usage_events FINAL ORDER BY started_at")
        assert [s for s, _ in sources] == ["estimated", "provider", "provider", "provider"]
        assert "output-from-bytes" in sources[0][1].split(",")

        runner = LocalRunner(gw.aggregator.store)
        today = datetime.now(UTC).date()
        report = build_report(runner, first=today, last=today, by="team")
        totals = report.totals
        assert (totals["events"], totals["estimated_events"], totals["unmeasured_events"]) == (4, 1, 0)
        assert totals["estimated_request_share"] == 0.25 and 0 < totals["estimated_cost_share"] < 1
        assert any(w.startswith("ESTIMATED: 1 of 4 request(s)") for w in report.warnings)

        verdict = Readiness(Scope(Period.days(today, today.fromordinal(today.toordinal() + 1)))).run(runner)
        estimated = next(row for row in verdict.rows if row["metric"] == "estimated_cost_share")
        assert round(estimated["value"], 6) == totals["estimated_cost_share"]  # no overrides: list price = contracted
        assert not estimated["passed"]  # a long stream among short answers: far above 5% of the cost

        out = tmp_path / "focus.csv"
        summary = export(runner, first=today, last=today, out=out)
        assert (summary.events, summary.estimated_events) == (4, 1)
        # A group's counts repeat on each of its token-type rows: count each group once.
        groups = {(r["x_Model"], r["x_ServiceTier"], r["x_PriceModelId"], r["x_EstimatedEvents"]) for r in csv.DictReader(out.open())}
        assert sum(int(g[-1]) for g in groups) == 1
