"""`make demo`: the whole metering path on this machine, no Kong install needed.

Starts the aggregator (embedded ClickHouse in a temp dir), the real
ai-chargeback plugin server, the Kong harness front configured from kong.yml
(routes, key-auth consumers, plugin config) and a mock LLM upstream; sends a
mix of OpenAI and Anthropic requests as several consumers; prints per-team/app
usage read back from ClickHouse by SQL.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Kong harness and the mock LLM are test support

import anthropic  # noqa: E402
import openai  # noqa: E402
from support.gateway import running_gateway  # noqa: E402

CONSUMERS = {"checkout-service": "demo-key-checkout", "fraud-scoring": "demo-key-fraud",
             "support-bot": "demo-key-support", "legacy-batch": "demo-key-legacy"}  # fmt: skip

# The mock answers with as many output tokens as asked: enough for costs to show in cents.
LONG_ANSWER = {"x-mock-output-tokens": "1500"}

USAGE_BY_TEAM_APP = """
SELECT tenant, team, app, team_source AS source, count() AS requests,
       sum(input_tokens) AS input, sum(cached_input_tokens) AS cached, sum(output_tokens) AS output,
       sum(reasoning_tokens) AS reasoning, toDecimal64(sum(cost_total), 6) AS cost_usd,
       countIf(pricing_status = 'unpriced') AS unpriced, groupUniqArray(usage_source) AS usage_sources
FROM chargeback.usage_events FINAL
GROUP BY tenant, team, app, team_source
ORDER BY tenant, team, app
"""


def send_traffic(url: str) -> int:
    sent = 0
    for consumer, key in CONSUMERS.items():
        client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", default_headers={"apikey": key}, max_retries=0)
        for turn in range(3):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"{consumer} question {turn}: summarize our spend"}],
                extra_headers={"x-mock-cached-tokens": "8", "x-mock-reasoning-tokens": str(turn * 5), **LONG_ANSWER},
            )  # fmt: skip
            sent += 1
        for _ in client.chat.completions.create(model="gpt-4o", stream=True,
                                                messages=[{"role": "user", "content": f"{consumer}: stream a haiku"}]):  # fmt: skip
            pass
        sent += 1
    claude = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key="unused",
                                 default_headers={"apikey": CONSUMERS["fraud-scoring"]}, max_retries=0)  # fmt: skip
    for turn in range(4):
        claude.messages.create(model="claude-3-5-sonnet-latest", max_tokens=300,
                               messages=[{"role": "user", "content": f"score transaction {turn}"}],
                               extra_headers={"x-mock-cached-tokens": "6", "x-mock-cache-creation-tokens": "4", **LONG_ANSWER})  # fmt: skip
        sent += 1
    # A spoofed header from an authenticated consumer: recorded as a conflict, not obeyed.
    spoof = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0,
                          default_headers={"apikey": CONSUMERS["support-bot"], "x-team": "payments"})  # fmt: skip
    spoof.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "bill this to payments"}])
    return sent + 1


def table(columns: list[str], rows: list[tuple[object, ...]]) -> str:
    cells = [columns] + [[", ".join(v) if isinstance(v, list) else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_by_team(gw: object) -> None:
    from ai_chargeback_aggregator.analytics.reports.report import build_report
    from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner

    today = datetime.now(UTC).date()
    report = build_report(LocalRunner(gw.aggregator.store), first=today, last=today, by="team")  # type: ignore[attr-defined]
    rows = [(line["label"], line["events"], line.get("list_cost", line.get("cost", "")), line.get("flag", "")) for line in report.lines]
    print(table(["team", "requests", "list cost USD", "flag"], rows))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="chargeback-demo-") as tmp, running_gateway(Path(tmp)) as gw:
        print(f"aggregator gRPC {gw.aggregator.settings.grpc_listen}, Kong harness front {gw.url}, mock LLM {gw.llm.url}")
        sent = send_traffic(gw.url)
        gw.wait_for_events(sent)
        columns, rows = gw.aggregator.store.query(USAGE_BY_TEAM_APP)
        print(f"\n{sent} requests metered through kong.yml's routes; usage by tenant/team/app, read back by SQL:\n")
        print(table(columns, rows))
        conflicts = gw.query("SELECT consumer_username, team, identity_conflicts FROM chargeback.usage_events FINAL "
                             "WHERE notEmpty(identity_conflicts)")  # fmt: skip
        print("\nThe same data as finance sees it: `chargeback report --by team` on this store:\n")
        report_by_team(gw)
        print("\nIdentity conflicts (headers that disagreed with the authenticated consumer):")
        for consumer, team, found in conflicts:
            print(f"  {consumer} (billed to {team}): {'; '.join(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
