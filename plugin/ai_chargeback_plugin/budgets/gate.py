"""Refusing requests whose scope is over an enforced budget, in the access phase, at the cost the issue allows.

PDK round trips, per request on a route with ``budget_enforcement: true``:

* no enforced budget exhausted (and fresh state): **0**. The check reads the
  watcher's snapshot from memory; requests in scopes without an exhausted
  budget pay nothing more than that.
* some enforced budget exhausted: **1**, ``kong.client.get_consumer()``, to
  resolve the request's identity the way the log phase will (only when
  ``consumer`` is an identity source). Route and service tags come from
  memory: the log phase of earlier requests saw them (``learn``).
* a refused request: 2 more, ``kong.log.set_serialize_value`` (so its log
  phase meters it as ``budget_exceeded``) and ``kong.response.exit``; it
  never reaches the upstream.

Identity is resolved with the log phase's precedence (consumer > route tags >
service tags > headers > default). An attribute that would come from a
request header is *unknown* here: a client could change the header to
escape, and budgets are enforced only on identities the gateway
authenticates or configures. A budget whose scope the gate cannot decide for
a request (an unknown attribute, a model the body does not name) is not
enforced on it; that is logged once per budget and reason.

Fail mode: with no state, or one older than ``budget_state_max_age_s``,
``open`` lets requests through and ``closed`` refuses (503) those an
enforced budget covers, every request when no state was ever received.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ai_chargeback_proto import pb

from ..config import PluginConfig
from ..identity import ATTRIBUTES, MAX_VALUE_CHARS, UNATTRIBUTED, tag_values
from ..usage import RequestFacts
from .state import BudgetSnapshot, EnforcedBudget
from .watcher import BudgetWatcher

log = logging.getLogger("ai-chargeback.budgets")

BUDGET_KEY = "ai_chargeback_budget"  # set in access on a refusal, read back from serialize() in log
BUDGET_TAG = "chargeback.budget_id"
UNVERIFIED_RETRY_AFTER_S = 30
UNKNOWN = None  # an attribute the access phase cannot know
_OUTCOMES = {"exceeded": pb.POLICY_OUTCOME_BUDGET_EXCEEDED, "unverified": pb.POLICY_OUTCOME_BUDGET_UNVERIFIED}


@dataclass(frozen=True, slots=True)
class Pending:
    """Budgets a check could not decide before the request body was read (they name a model or provider)."""

    candidates: tuple[EnforcedBudget, ...]
    identity: Mapping[str, str | None]
    snapshot: BudgetSnapshot | None
    mode: str


@dataclass(frozen=True, slots=True)
class Verdict:
    refused: bool
    pending: Pending | None = None


ALLOW = Verdict(False)
REFUSED = Verdict(True)


class TagMemo:
    """Route and service tag values, learned from log phases, for access phases that have no serialize().

    An instance bound to a route always sees one route and service. One bound to
    a service (or global) may see several routes: tags that differ between them
    are unknown in access, never guessed.
    """

    def __init__(self) -> None:
        self.route: dict[str, str] | None = None
        self.service: dict[str, str] | None = None
        self._route_mixed = False
        self._service_mixed = False

    def learn(self, serialized: Mapping[str, Any]) -> None:
        route = tag_values(_mapping(serialized.get("route")).get("tags"))
        service = tag_values(_mapping(serialized.get("service")).get("tags"))
        if self.route is None and not self._route_mixed:
            self.route = route
        elif self.route != route:
            self.route, self._route_mixed = None, True
        if self.service is None and not self._service_mixed:
            self.service = service
        elif self.service != service:
            self.service, self._service_mixed = None, True


class BudgetGate:
    def __init__(self, config: PluginConfig, watcher: BudgetWatcher) -> None:
        self.config = config
        self.watcher = watcher
        self.memo = TagMemo()
        self.max_age_s = float(config.budget_state_max_age_s)
        self._warned: set[tuple[str, str]] = set()

    # -- access ----------------------------------------------------------------------------------
    def check(self, kong: Any, facts: RequestFacts | None = None, pending: Pending | None = None) -> Verdict:
        """Refuse the request (the response is sent) or let it through; ``pending``: ask again with the body's facts."""
        if pending is not None:
            return self._decide(kong, pending.candidates, pending.identity, pending.snapshot, pending.mode, facts, final=True)
        snapshot = self.watcher.snapshot
        now = time.monotonic()
        if snapshot is not None and (self.max_age_s == 0 or now - snapshot.evaluated_at <= self.max_age_s):
            candidates = snapshot.blocking(now)
            if not candidates:
                return ALLOW  # the common path: nothing to enforce, no PDK call
            mode = "exceeded"
        elif self.config.budget_fail_mode == "open":
            return ALLOW
        else:
            mode = "unverified"
            if snapshot is None:
                self._refuse(kong, None, mode, facts)
                return REFUSED
            candidates = snapshot.budgets
            if not candidates:
                return ALLOW  # the last word was: no enforced budget at all
        identity = self._identity(kong, candidates)
        # ai_proxy capture never reads the body: what needs it is decided now, as unknown.
        return self._decide(kong, candidates, identity, snapshot, mode, facts, final=self.config.usage_capture == "ai_proxy")

    def _decide(self, kong: Any, candidates: tuple[EnforcedBudget, ...], identity: Mapping[str, str | None],
                snapshot: BudgetSnapshot | None, mode: str, facts: RequestFacts | None, *, final: bool) -> Verdict:  # fmt: skip
        provider: str | None = self.config.provider if self.config.provider != "auto" else (facts.provider if facts and facts.provider else UNKNOWN)
        model: str | None = facts.requested_model.lower() if facts and facts.requested_model else UNKNOWN
        undecided = []
        for budget in candidates:
            verdict = _matches(budget, identity, provider, model, snapshot)
            if verdict is True:
                self._refuse(kong, budget, mode, facts)
                return REFUSED
            if verdict is UNKNOWN:
                undecided.append(budget)
        if not undecided:
            return ALLOW
        if not final and any(_needs_body(b) for b in undecided):
            return Verdict(False, Pending(tuple(undecided), identity, snapshot, mode))
        for budget in undecided:
            self._warn_once(budget, identity, provider, model)
        return ALLOW

    def _identity(self, kong: Any, candidates: tuple[EnforcedBudget, ...]) -> dict[str, str | None]:
        """tenant, team, app, workload, consumer_id as the log phase would resolve them (None: unknowable here)."""
        config = self.config
        # The consumer id is recorded whether or not the consumer is a trusted identity source.
        wanted = "consumer" in config.identity_sources or any(name == "consumer_id" for b in candidates for name, _ in b.scope)
        consumer = kong.client.get_consumer() if wanted else None  # the one PDK call
        consumer = consumer if isinstance(consumer, Mapping) else None
        if "consumer" not in config.identity_sources:
            consumer_id = _text(consumer.get("id")) if consumer is not None else ("" if wanted else UNKNOWN)
            trusted: Mapping[str, Any] | None = None
        else:
            consumer_id = _text(consumer.get("id")) if consumer is not None else ""
            trusted = consumer
        from_consumer: dict[str, str] = {}
        if trusted is not None:
            from_consumer = tag_values(trusted.get("tags"))
            username, custom_id = _text(trusted.get("username")), _text(trusted.get("custom_id"))
            from_consumer.setdefault("app", username or custom_id)
            from_consumer.setdefault("workload", custom_id or username)
        sources: dict[str, dict[str, str] | None] = {"consumer": from_consumer, "route_tags": self.memo.route,
                                                     "service_tags": self.memo.service}  # fmt: skip
        identity: dict[str, str | None] = {}
        for attribute in ATTRIBUTES:
            value: str | None = ""
            for kind in config.identity_sources:
                if kind == "headers":
                    value = UNKNOWN  # a header could name it: the client's word, not enforceable
                    break
                found = sources.get(kind)
                if found is None:
                    value = UNKNOWN  # tags not learned yet, or different per route
                    break
                if found.get(attribute):
                    value = found[attribute][:MAX_VALUE_CHARS]
                    break
            if value == "" and attribute == "tenant":
                value = config.default_tenant
            if value == "" and attribute == "team":
                value = UNATTRIBUTED
            identity[attribute] = value
        identity["consumer_id"] = consumer_id
        return identity

    def _refuse(self, kong: Any, budget: EnforcedBudget | None, mode: str, facts: RequestFacts | None) -> None:
        provider = self.config.provider if self.config.provider != "auto" else (facts.provider if facts else "")
        kong.log.set_serialize_value(BUDGET_KEY, {
            "outcome": mode, "budget_id": budget.budget_id if budget else "", "provider": provider,
            "model": facts.requested_model if facts else "",
        })  # fmt: skip
        if mode == "exceeded" and budget is not None:
            retry_after = max(1, math.ceil(budget.resets_at - time.monotonic()))
            described = budget.described
            unit = "USD" if described["unit"] == "usd" else "tokens"
            body = {
                "error": "budget_exceeded",
                "message": f"Budget {budget.budget_id} ({budget.scope_text()}) is exhausted for {described['period_label']}: "
                           f"{described['spend']} of {described['limit']} {unit}. Requests in this scope are refused until "
                           f"{described['resets_at']}.",
                "budget": described,
            }  # fmt: skip
            status = 429
        else:
            retry_after = UNVERIFIED_RETRY_AFTER_S
            body = {
                "error": "budget_state_unavailable",
                "message": "This route enforces budgets and the gateway has no current budget state "
                           "(budget_fail_mode: closed). Retry later.",
            }  # fmt: skip
            if budget is not None:
                body["budget"] = budget.described
            status = 503
        kong.response.exit(status, json.dumps(body), {"Content-Type": "application/json", "Retry-After": str(retry_after)})

    def _warn_once(self, budget: EnforcedBudget, identity: Mapping[str, str | None], provider: str | None, model: str | None) -> None:
        unknown = [name for name, _ in budget.scope if _actual(name, identity, provider, model) is UNKNOWN]
        key = (budget.budget_id, ",".join(unknown))
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("ai-chargeback: budget %s is exhausted but cannot be enforced on route %s: %s unknown in the access "
                    "phase (from headers, tags not learned yet or different per route, or not in the request)",
                    budget.budget_id, self.config.route_id or self.config.service_id or "(global)", ", ".join(unknown))  # fmt: skip

    # -- log --------------------------------------------------------------------------------------
    def learn(self, serialized: Mapping[str, Any]) -> None:
        self.memo.learn(serialized)


def annotate(event: pb.UsageEvent, serialized: Mapping[str, Any]) -> None:
    """A request this plugin refused for a budget: meter it as such (log phase; no PDK call)."""
    carried = serialized.get(BUDGET_KEY)
    if not isinstance(carried, Mapping):
        return
    event.policy_outcome = _OUTCOMES.get(str(carried.get("outcome")), pb.POLICY_OUTCOME_BUDGET_EXCEEDED)
    budget_id = _text(carried.get("budget_id"))[:MAX_VALUE_CHARS]
    if budget_id:
        event.tags[BUDGET_TAG] = budget_id
    event.usage_note = f"budget-{carried.get('outcome', 'exceeded')}:{budget_id}"[:MAX_VALUE_CHARS]
    if not event.provider:
        event.provider = _text(carried.get("provider"))[:MAX_VALUE_CHARS]
    if not event.requested_model:
        event.requested_model = _text(carried.get("model"))[:MAX_VALUE_CHARS]


def _matches(budget: EnforcedBudget, identity: Mapping[str, str | None], provider: str | None, model: str | None,
             snapshot: BudgetSnapshot | None) -> bool | None:  # fmt: skip
    """True: the request is in the budget's scope; False: it is not; None: cannot tell here."""
    unknown = False
    for name, value in budget.scope:
        actual = _actual(name, identity, provider, model)
        if actual is UNKNOWN:
            unknown = True
            continue
        if name == "model":
            if not (actual == value or (snapshot is not None and snapshot.model_in_family(actual, value))):
                return False
        elif actual != value:
            return False
    return UNKNOWN if unknown else True


def _actual(name: str, identity: Mapping[str, str | None], provider: str | None, model: str | None) -> str | None:
    if name == "provider":
        return provider
    if name == "model":
        return model
    return identity.get(name, UNKNOWN)


def _needs_body(budget: EnforcedBudget) -> bool:
    return any(name in ("model", "provider") for name, _ in budget.scope)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
