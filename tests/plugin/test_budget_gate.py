"""The access-phase budget gate: who is refused, at what PDK cost, and what the client is told.

Kong here is a recorder of PDK calls (the real plugin server and harness run the
same gate in tests/e2e/test_budget_enforcement.py); the state is the wire message
the aggregator pushes, so both ends share one contract.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from support.pdk_recorder import RecordingKong

from ai_chargeback_plugin.budgets.gate import BUDGET_KEY, BUDGET_TAG, BudgetGate, annotate
from ai_chargeback_plugin.budgets.state import BudgetSnapshot
from ai_chargeback_plugin.config import PluginConfig
from ai_chargeback_plugin.usage import RequestFacts
from ai_chargeback_proto import pb

SNAPSHOT_SUFFIX = "-[0-9][0-9][0-9][0-9]-?[0-9][0-9]-?[0-9][0-9]$"
CHECKOUT = {"id": "c-checkout", "username": "checkout-service", "custom_id": "spiffe://acme/payments/checkout",
            "tags": ["tenant:acme", "team:payments", "app:checkout"]}  # fmt: skip
FRAUD = {"id": "c-fraud", "username": "fraud-scoring", "tags": ["tenant:acme", "team:risk"]}
UNTAGGED = {"id": "c-legacy", "username": "legacy-batch", "tags": []}


class Kong(RecordingKong):
    """Records PDK calls as (method, args); answers get_consumer with ``consumer``."""

    def __init__(self, consumer: dict[str, Any] | None = None) -> None:
        super().__init__(answers={"kong.client.get_consumer": consumer})

    @property
    def exit(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        found = [args for method, args in self.calls if method == "kong.response.exit"]
        if not found:
            return None
        status, body, headers = found[0]
        return status, json.loads(body), headers


@dataclass
class Watcher:
    snapshot: BudgetSnapshot | None = None


def config(**fields: Any) -> PluginConfig:
    return PluginConfig.from_kong({"budget_enforcement": True, "provider": "openai", **fields})


def budget(budget_id: str, exhausted: bool = True, resets_in_s: float = 3600, **scope: str) -> pb.EnforcedBudget:
    return pb.EnforcedBudget(budget_id=budget_id, scope=pb.BudgetScope(**scope), period="monthly", period_label="2026-11",
                             timezone="UTC", unit="usd", limit="100.00", spend="100.40" if exhausted else "12.00", exhausted=exhausted,
                             resets_at_unix_ms=1_000_000 + int(resets_in_s * 1000))  # fmt: skip


def snapshot(*budgets: pb.EnforcedBudget, age_s: float = 0.0) -> BudgetSnapshot:
    state = pb.BudgetState(version="v1", evaluated=True, budgets=budgets, model_snapshot_pattern=SNAPSHOT_SUFFIX,
                           sent_at_unix_ms=1_000_000, evaluated_age_ms=int(age_s * 1000))  # fmt: skip
    return BudgetSnapshot.from_wire(state)


def facts(model: str = "gpt-4o-mini", provider: str = "openai") -> RequestFacts:
    return RequestFacts(provider=provider, api_family="openai.chat", requested_model=model, streaming=False,
                        client_requested_usage=False, usage_injected=False)  # fmt: skip


def gate(state: BudgetSnapshot | None, **fields: Any) -> BudgetGate:
    return BudgetGate(config(**fields), Watcher(state))  # type: ignore[arg-type]


def test_nothing_exhausted_costs_no_pdk_call() -> None:
    kong = Kong(CHECKOUT)
    verdict = gate(snapshot(budget("pay", exhausted=False, team="payments"))).check(kong)
    assert not verdict.refused and verdict.pending is None and kong.calls == []


def test_an_exhausted_team_is_refused_with_429_a_json_body_and_retry_after() -> None:
    kong = Kong(CHECKOUT)
    assert gate(snapshot(budget("pay", team="payments", resets_in_s=7200.5))).check(kong).refused
    assert [method for method, _ in kong.calls] == ["kong.client.get_consumer", "kong.log.set_serialize_value", "kong.response.exit"]
    status, body, headers = kong.exit  # type: ignore[misc]
    assert status == 429 and headers["Content-Type"] == "application/json"
    assert 7199 <= int(headers["Retry-After"]) <= 7201
    assert body["error"] == "budget_exceeded"
    assert body["budget"] == {"id": "pay", "scope": {"team": "payments"}, "period": "monthly", "period_label": "2026-11",
                              "timezone": "UTC", "unit": "usd", "limit": "100.00", "spend": "100.40",
                              "resets_at": "1970-01-01T02:16:40Z"}  # fmt: skip
    assert "pay (team=payments)" in body["message"] and "100.40 of 100.00 USD" in body["message"]
    (carried,) = [args for method, args in kong.calls if method == "kong.log.set_serialize_value"]
    assert carried[0] == BUDGET_KEY and carried[1]["budget_id"] == "pay" and carried[1]["outcome"] == "exceeded"


def test_other_teams_pay_one_pdk_call_and_pass() -> None:
    kong = Kong(FRAUD)
    assert not gate(snapshot(budget("pay", team="payments"))).check(kong).refused
    assert [method for method, _ in kong.calls] == ["kong.client.get_consumer"]


@pytest.mark.parametrize(("scope", "consumer", "refused"), [
    ({"tenant": "acme"}, CHECKOUT, True),
    ({"tenant": "acme"}, FRAUD, True),
    ({"tenant": "globex"}, CHECKOUT, False),
    ({"app": "checkout"}, CHECKOUT, True),
    ({"app": "checkout-service"}, CHECKOUT, False),  # the tag wins over the username
    ({"workload": "spiffe://acme/payments/checkout"}, CHECKOUT, True),  # custom_id names the workload
    ({"app": "legacy-batch"}, UNTAGGED, True),  # no app tag: the consumer itself is the app
    ({"consumer_id": "c-fraud"}, FRAUD, True),
    ({"consumer_id": "c-fraud"}, CHECKOUT, False),
    ({"tenant": "default"}, None, True),  # no consumer, no tags: the default tenant
    ({"team": "payments", "app": "checkout"}, CHECKOUT, True),
    ({"team": "payments", "app": "ranker"}, CHECKOUT, False),
])  # fmt: skip
def test_scopes_resolve_as_the_log_phase_does(scope: dict[str, str], consumer: dict[str, Any] | None, refused: bool) -> None:
    g = gate(snapshot(budget("b", **scope)))
    g.learn({"route": {"tags": []}, "service": {"tags": []}})  # the route's tags, as its log phases saw them: none
    assert g.check(Kong(consumer)).refused is refused


def test_a_model_budget_waits_for_the_body_and_covers_dated_snapshots() -> None:
    g = gate(snapshot(budget("4o", team="payments", model="gpt-4o")))
    for model, refused in (("gpt-4o", True), ("gpt-4o-2024-08-06", True), ("GPT-4o", True), ("gpt-4o-mini", False),
                           ("gpt-4o-mini-2024-07-18", False)):  # fmt: skip
        kong = Kong(CHECKOUT)
        first = g.check(kong)
        assert not first.refused and first.pending is not None  # before the body: undecided
        assert g.check(kong, facts(model), first.pending).refused is refused, model
        assert sum(method == "kong.client.get_consumer" for method, _ in kong.calls) == 1  # resolved once per request


def test_a_provider_budget_is_decided_before_the_body_when_the_route_pins_the_provider() -> None:
    kong = Kong(CHECKOUT)
    assert gate(snapshot(budget("oa", team="payments", provider="openai"))).check(kong).refused
    kong = Kong(CHECKOUT)
    assert not gate(snapshot(budget("an", team="payments", provider="anthropic"))).check(kong).refused


def test_headers_are_never_enforced_on(caplog: pytest.LogCaptureFixture) -> None:
    # Team from service tags, app only from a header: the app budget cannot be enforced, the team budget can.
    g = gate(snapshot(budget("app", app="notebook"), budget("team", team="ml-platform", exhausted=False)),
             identity_sources=["service_tags", "headers"])  # fmt: skip
    g.learn({"route": {"tags": []}, "service": {"tags": ["tenant:acme", "team:ml-platform"]}})
    assert not g.check(Kong()).refused
    assert "budget app is exhausted but cannot be enforced" in caplog.text and "app unknown" in caplog.text
    g = gate(snapshot(budget("team", team="ml-platform")), identity_sources=["service_tags", "headers"])
    g.learn({"route": {"tags": []}, "service": {"tags": ["tenant:acme", "team:ml-platform"]}})
    kong = Kong()
    assert g.check(kong).refused
    assert "kong.client.get_consumer" not in [method for method, _ in kong.calls]  # consumer not a source: not asked


def test_route_tags_are_unknown_until_learned_and_when_routes_disagree() -> None:
    g = gate(snapshot(budget("team", team="search")), identity_sources=["consumer", "route_tags"])
    assert not g.check(Kong(UNTAGGED)).refused  # nothing learned yet: unknown, not enforced
    g.learn({"route": {"tags": ["team:search"]}, "service": {}})
    assert g.check(Kong(UNTAGGED)).refused
    assert not g.check(Kong(FRAUD)).refused  # the consumer's own team comes first
    g.learn({"route": {"tags": ["team:other"]}, "service": {}})  # a service-level instance seeing two routes
    assert not g.check(Kong(UNTAGGED)).refused


def test_a_period_reset_lifts_the_block_before_the_next_evaluation() -> None:
    state = snapshot(budget("pay", team="payments", resets_in_s=0.05))
    g = gate(state)
    assert g.check(Kong(CHECKOUT)).refused
    time.sleep(0.1)
    kong = Kong(CHECKOUT)
    assert not g.check(kong).refused and kong.calls == []


@pytest.mark.parametrize(("mode", "state", "consumer", "status"), [
    ("open", None, CHECKOUT, None),
    ("closed", None, FRAUD, 503),  # never heard from an aggregator: every request on the route
    ("open", "stale", CHECKOUT, None),
    ("closed", "stale", CHECKOUT, 503),  # an enforced budget covers payments, exhausted or not
    ("closed", "stale", FRAUD, None),  # no enforced budget covers risk
    ("closed", "fresh", CHECKOUT, None),  # fresh and under the limit
])  # fmt: skip
def test_fail_modes(mode: str, state: str | None, consumer: dict[str, Any], status: int | None) -> None:
    states = {None: None, "stale": snapshot(budget("pay", exhausted=False, team="payments"), age_s=600),
              "fresh": snapshot(budget("pay", exhausted=False, team="payments"), age_s=1)}  # fmt: skip
    kong = Kong(consumer)
    verdict = gate(states[state], budget_fail_mode=mode, budget_state_max_age_s=300).check(kong)
    assert verdict.refused is (status is not None)
    if status is not None:
        got, body, headers = kong.exit  # type: ignore[misc]
        assert (got, body["error"], headers["Retry-After"]) == (503, "budget_state_unavailable", "30")


def test_max_age_zero_follows_the_last_state_for_ever() -> None:
    assert gate(snapshot(budget("pay", team="payments"), age_s=10**6), budget_state_max_age_s=0).check(Kong(CHECKOUT)).refused
    assert not gate(snapshot(budget("pay", team="payments"), age_s=10**6)).check(Kong(CHECKOUT)).refused  # 300 s default: stale, open


def test_a_refused_request_is_metered_as_such() -> None:
    event = pb.UsageEvent(policy_outcome=pb.POLICY_OUTCOME_RATE_LIMITED, usage_note="not-proxied")
    annotate(event, {BUDGET_KEY: {"outcome": "exceeded", "budget_id": "pay", "provider": "openai", "model": "gpt-4o"}})
    assert event.policy_outcome == pb.POLICY_OUTCOME_BUDGET_EXCEEDED and event.tags[BUDGET_TAG] == "pay"
    assert (event.provider, event.requested_model, event.usage_note) == ("openai", "gpt-4o", "budget-exceeded:pay")
    unverified = pb.UsageEvent()
    annotate(unverified, {BUDGET_KEY: {"outcome": "unverified", "budget_id": ""}})
    assert unverified.policy_outcome == pb.POLICY_OUTCOME_BUDGET_UNVERIFIED and BUDGET_TAG not in unverified.tags
    untouched = pb.UsageEvent(policy_outcome=pb.POLICY_OUTCOME_ALLOWED)
    annotate(untouched, {BUDGET_KEY: "garbage"})
    assert untouched.policy_outcome == pb.POLICY_OUTCOME_ALLOWED


def test_enforcement_off_builds_no_gate() -> None:
    from ai_chargeback_plugin.budgets import gate_for

    assert gate_for(PluginConfig.from_kong({})) is None
