"""Budget enforcement through the real path: harness fronts (kong.yml, key-auth consumers) with the
real ai-chargeback plugin servers, real aggregators over one embedded store, the budget feed over gRPC.

Bounds are asserted in requests and logical order, from the configured intervals and the rate the
driver achieved; wall-clock figures are printed for docs/budgets.md, never asserted on.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from support import waiting
from support.budget_gateway import BudgetGateways, Sent, budget_gateways, tokens_per_request

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.budgets import budget_status

FLUSH_S = 0.1  # plugin flush_interval_ms (budget_gateways default)
AGG_FLUSH_S = 0.05  # aggregator flush_interval_ms
POLL_S = 0.1  # budget_poll_s
# Thread scheduling on a shared 2-core machine, everything but the plugin servers in this one process.
SCHEDULING_ALLOWANCE_S = 1.5
WORKERS = 12


def budget(budget_id: str, team: str, amount: int, **fields: Any) -> dict[str, Any]:
    return {"id": budget_id, "scope": {"team": team}, "period": "daily", "amount": amount, "unit": "tokens",
            "action": "enforce", "effective_from": "2026-01-01", **fields}  # fmt: skip


wait_until = functools.partial(waiting.wait_until, timeout_s=60.0)  # gateways, aggregators and budget passes start slowly


def enforcing(env: BudgetGateways, gateway: int = 0) -> bool:
    """The plugin refuses payments now (probe requests are part of the test's traffic)."""
    return env.request("payments", gateway=gateway).status == 429


def bound_requests(env: BudgetGateways, rate: float) -> int:
    """The stated bound (docs/budgets.md) in requests: rate x (F + F_agg + max(poll, min_interval) + 2 evaluations) + in flight."""
    evaluation = max(a.budgets.longest_pass_s for a in env.aggregators if a is not None)
    latency = FLUSH_S + AGG_FLUSH_S + POLL_S + 2 * evaluation + SCHEDULING_ALLOWANCE_S
    return math.ceil(rate * latency) + WORKERS


def check_cut(sent: list[Sent], team: str, limit_requests: int) -> tuple[int, float, Sent]:
    """Requests admitted past the limit, the achieved rate, and the first refusal; checks refusals never lift."""
    mine = [s for s in sent if s.team == team]
    assert {s.status for s in mine} <= {200, 429}, {s.status for s in mine}
    refused = [s for s in mine if s.status == 429]
    assert refused, "the budget was never enforced"
    first = min(refused, key=lambda s: s.started)
    # Spend only grows within a period: once a gateway refused, nothing started there later gets through.
    for gateway in {s.gateway for s in mine}:
        cut = min((s.finished for s in refused if s.gateway == gateway), default=math.inf)
        assert not [s for s in mine if s.gateway == gateway and s.status == 200 and s.started > cut]
    admitted = sum(s.status == 200 for s in mine)
    rate = (len(mine) - 1) / (mine[-1].started - mine[0].started)
    return admitted - limit_requests, rate, first


def test_a_team_at_100_requests_a_second_is_cut_within_the_bound_and_others_are_not(tmp_path: Path) -> None:
    per_request = tokens_per_request()
    limit_requests = 150
    with budget_gateways(tmp_path, plugin_overrides={"budget_enforcement": True}) as env:
        env.load(budget("payments-daily", "payments", per_request * limit_requests),
                 budget("risk-daily", "risk", per_request * 10_000))  # enforced, never reached  # fmt: skip
        wait_until(lambda: env.aggregators[0].budgets.passes > 1, what="first budget passes")  # type: ignore[union-attr]
        sent = env.drive([("payments", 0, 100.0, 500), ("risk", 0, 20.0, 100)], workers=WORKERS)

        risk = [s for s in sent if s.team == "risk"]
        assert [s.status for s in risk] == [200] * 100  # other teams unaffected
        overshoot, rate, first = check_cut(sent, "payments", limit_requests)
        bound = bound_requests(env, rate)
        print(f"\n[overshoot] rate {rate:.0f} req/s, {overshoot} requests ({overshoot * per_request} tokens) past the limit, "
              f"bound {bound}; longest evaluation {env.aggregators[0].budgets.longest_pass_s * 1000:.0f} ms")  # type: ignore[union-attr]  # fmt: skip
        assert 0 <= overshoot <= bound

        body = json.loads(first.body)
        assert first.headers["content-type"] == "application/json" and int(first.headers["retry-after"]) >= 1
        assert body["error"] == "budget_exceeded" and body["budget"]["id"] == "payments-daily"
        assert body["budget"]["scope"] == {"team": "payments"} and body["budget"]["limit"] == str(per_request * limit_requests)
        assert body["budget"]["period"] == "daily" and body["budget"]["resets_at"].endswith("T00:00:00Z")
        assert int(body["budget"]["spend"]) >= per_request * limit_requests

        refusals = sum(s.status == 429 for s in sent)
        env.wait_for_events(600)
        assert env.query("SELECT count(), uniqExact(tags['chargeback.budget_id']), any(tags['chargeback.budget_id']) FROM "
                         "chargeback.usage_events FINAL WHERE policy_outcome = 'budget_exceeded'")[0] == (refusals, 1, "payments-daily")  # fmt: skip
        admitted = sum(s.status == 200 for s in sent if s.team == "payments")
        (status,) = budget_status(env.runner(), scope={"team": "payments"})
        assert status.spend == admitted * per_request  # the spend at the cut: refusals add nothing
        assert status.spend <= per_request * (limit_requests + bound)
        report = build_report(env.runner(), first=status.period_start.date(), last=status.period_start.date(), by="team")
        line = next(line for line in report.lines if line["key"] == "payments")
        assert line["events"] == 500 and line["unpriced_events"] == 0  # refusals are metered, not billed


def test_budget_state_costs_nothing_until_a_budget_is_exhausted(tmp_path: Path) -> None:
    with budget_gateways(tmp_path, plugin_overrides={"budget_enforcement": True}) as env:
        front = env.fronts[0]

        def calls(sent: Sent) -> list[str]:
            return [c.method for c in front.find_request(sent.headers["x-kong-request-id"]).pdk_calls if c.phase == "access"]

        env.request("risk")  # the first request teaches the instance that ai-proxy serves the route (ai_proxy_route.py)
        # ...in its log phase, which Kong runs after the client has the answer: wait for it, or the
        # next request may still pay the unlearned route's access calls.
        assert front.wait_for_logs(60)
        baseline = calls(env.request("risk"))
        env.load(budget("payments-daily", "payments", 1))  # exhausted by the first request
        wait_until(lambda: env.aggregators[0].budgets.passes > 1, what="budget pass")  # type: ignore[union-attr]
        assert calls(env.request("risk")) == baseline  # enforced budgets exist, none exhausted: no extra PDK call
        env.request("payments")
        wait_until(lambda: enforcing(env), what="payments refused")
        assert calls(env.request("risk")) == ["kong.client.get_consumer", *baseline]  # one call, then as before
        refused = env.request("payments")
        assert refused.status == 429
        # Refused before the body is read: no buffering, no body over IPC, never proxied.
        assert calls(refused) == ["kong.client.get_consumer", "kong.log.set_serialize_value", "kong.response.exit"]


def test_a_model_budget_refuses_that_model_family_only(tmp_path: Path) -> None:
    with budget_gateways(tmp_path, plugin_overrides={"budget_enforcement": True}) as env:
        env.load({**budget("payments-4o", "payments", 1), "scope": {"team": "payments", "model": "gpt-4o"}})
        assert env.request("payments", model="gpt-4o").status == 200
        wait_until(lambda: env.request("payments", model="gpt-4o").status == 429, what="gpt-4o refused")
        assert env.request("payments", model="gpt-4o-mini").status == 200
        assert env.request("payments", model="gpt-4o-2024-08-06").status == 429  # a dated snapshot of the family


def test_an_aggregator_restart_keeps_enforcing_and_counts_what_crossed_meanwhile(tmp_path: Path) -> None:
    per_request = tokens_per_request()
    with budget_gateways(tmp_path, plugin_overrides={"budget_enforcement": True}) as env:
        env.load(budget("payments-daily", "payments", per_request * 20))
        for _ in range(10):
            assert env.request("payments").status == 200
        env.wait_for_events(10)
        wait_until(lambda: env.aggregators[0].budgets.last_statuses[0].spend == 10 * per_request, what="10 requests seen")  # type: ignore[union-attr]

        env.stop_aggregator(0)
        # Down: the gateway follows its last state (under the limit) and spools; the team crosses its limit meanwhile.
        assert [env.request("payments").status for _ in range(15)] == [200] * 15
        assert env.request("risk").status == 200
        env.start_aggregator(0)
        # The spooled events arrive, the first pass sees 25 requests: refusals start, nothing was lost.
        wait_until(lambda: enforcing(env), timeout_s=90, what="enforcing after the restart")
        assert env.request("risk").status == 200
        env.stop_aggregator(0)
        assert env.request("payments").status == 429  # down again: the last state (exhausted) still holds
        env.start_aggregator(0)
        env.load(budget("payments-daily", "payments", per_request * 1000))  # raised: lifted without restarting anything
        wait_until(lambda: env.request("payments").status == 200, timeout_s=90, what="lifted after the raise")
        refused = sum(s.status == 429 for s in env.sent)
        env.wait_for_events(len(env.sent))
        assert env.query("SELECT count() FROM chargeback.usage_events FINAL WHERE policy_outcome = 'budget_exceeded'")[0][0] == refused


def test_two_gateways_on_two_aggregators_cut_a_team_together(tmp_path: Path) -> None:
    per_request = tokens_per_request()
    limit_requests = 150
    with budget_gateways(tmp_path, aggregators=2, gateways=2, route_to=[[0], [1]],
                         plugin_overrides={"budget_enforcement": True}) as env:  # fmt: skip
        env.load(budget("payments-daily", "payments", per_request * limit_requests))
        wait_until(lambda: all(a.budgets.passes > 1 for a in env.aggregators if a), what="first passes")
        sent = env.drive([("payments", 0, 50.0, 250), ("payments", 1, 50.0, 250), ("risk", 1, 20.0, 100)], workers=WORKERS)
        assert all(s.status == 200 for s in sent if s.team == "risk")
        overshoot, rate, _ = check_cut(sent, "payments", limit_requests)  # both gateways together: 100 req/s
        for gateway in (0, 1):  # each gateway refuses, whichever aggregator stored the crossing request
            assert env.request("payments", gateway=gateway).status == 429
        bound = bound_requests(env, rate)
        print(f"\n[two aggregators] rate {rate:.0f} req/s over 2 gateways, {overshoot} requests past the limit, bound {bound}")
        assert 0 <= overshoot <= bound
        env.wait_for_events(len(env.sent))
        admitted = sum(s.status == 200 for s in env.sent if s.team == "payments") * per_request

        def agree() -> bool:  # both aggregators read the same spend from the store: every admitted request, once
            running = [a for a in env.aggregators if a is not None]
            for agg in running:
                agg.budgets.kick()
            return all(a.budgets.last_statuses[0].spend == admitted for a in running)

        wait_until(agree, what="both aggregators at the admitted spend")


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_no_budget_state_fails_closed_or_open_as_configured(tmp_path: Path, mode: str) -> None:
    with budget_gateways(tmp_path, start_aggregators=False,
                         plugin_overrides={"budget_enforcement": True, "budget_fail_mode": mode}) as env:  # fmt: skip
        answer = env.request("risk")  # no aggregator yet: the plugin never heard of any budget
        if mode == "open":
            assert answer.status == 200
            return
        assert answer.status == 503 and answer.headers["retry-after"] == "30"
        assert json.loads(answer.body)["error"] == "budget_state_unavailable"
        env.start_aggregator(0)  # no budget loaded: once the state arrives, nothing is refused
        wait_until(lambda: env.request("risk").status == 200, timeout_s=90, what="state arrived")
        unverified = sum(s.status == 503 for s in env.sent)
        env.wait_for_events(len(env.sent))
        assert env.query("SELECT count() FROM chargeback.usage_events FINAL WHERE policy_outcome = 'budget_unverified'")[0][0] == unverified
