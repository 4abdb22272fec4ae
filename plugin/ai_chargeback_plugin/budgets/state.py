"""Budget state as the gateway holds it: an immutable snapshot the request path reads without a lock.

Built from the aggregator's ``BudgetState`` (budgets/feed_state.py there).
Times are the plugin's own monotonic clock: the aggregator sends ages and
durations (``evaluated_age_ms``; ``resets_at - sent_at``), never instants
the two clocks would have to agree on.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ai_chargeback_proto import pb

SCOPE_FIELDS = ("tenant", "team", "app", "workload", "consumer_id", "provider", "model")


@dataclass(frozen=True, slots=True)
class EnforcedBudget:
    budget_id: str
    scope: tuple[tuple[str, str], ...]  # the set dimensions of SCOPE_FIELDS
    exhausted: bool
    resets_at: float  # time.monotonic() when its period ends
    described: dict[str, Any]  # what a refused client is told (JSON)

    def scope_text(self) -> str:
        return ", ".join(f"{'consumer' if name == 'consumer_id' else name}={value}" for name, value in self.scope)


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    version: str
    evaluated_at: float  # time.monotonic() of the evaluation it holds
    budgets: tuple[EnforcedBudget, ...]
    exhausted: tuple[EnforcedBudget, ...]
    snapshot_suffix: re.Pattern[str] | None
    aggregator_id: str

    @classmethod
    def from_wire(cls, state: pb.BudgetState, *, received_at: float | None = None) -> BudgetSnapshot:
        now = time.monotonic() if received_at is None else received_at
        budgets = tuple(_budget(b, now, state.sent_at_unix_ms) for b in state.budgets)
        try:
            suffix = re.compile(state.model_snapshot_pattern) if state.model_snapshot_pattern else None
        except re.error:
            suffix = None  # a model then matches only exactly
        return cls(state.version, now - state.evaluated_age_ms / 1000, budgets, tuple(b for b in budgets if b.exhausted),
                   suffix, state.aggregator_id)  # fmt: skip

    def refreshed(self, state: pb.BudgetState, *, received_at: float | None = None) -> BudgetSnapshot:
        """A heartbeat for this version: the same budgets, a newer evaluation."""
        now = time.monotonic() if received_at is None else received_at
        return replace(self, evaluated_at=now - state.evaluated_age_ms / 1000, aggregator_id=state.aggregator_id)

    def blocking(self, now: float) -> tuple[EnforcedBudget, ...]:
        """Exhausted budgets whose period has not ended (a reset lifts a block before the next evaluation)."""
        return tuple(b for b in self.exhausted if now < b.resets_at)

    def model_in_family(self, model: str, budget_model: str) -> bool:
        """The aggregator's rule: a model, or a dated snapshot of it (gpt-4o-2024-08-06 is gpt-4o)."""
        model = model.lower()
        if model == budget_model:
            return True
        return self.snapshot_suffix is not None and self.snapshot_suffix.sub("", model, count=1) == budget_model


def _budget(wire: pb.EnforcedBudget, now: float, sent_at_ms: int) -> EnforcedBudget:
    scope = tuple((name, value) for name in SCOPE_FIELDS if (value := getattr(wire.scope, name)))
    resets_in_s = (wire.resets_at_unix_ms - sent_at_ms) / 1000 if sent_at_ms else float("inf")
    described = {
        "id": wire.budget_id,
        "scope": {("consumer" if name == "consumer_id" else name): value for name, value in scope},
        "period": wire.period,
        "period_label": wire.period_label,
        "timezone": wire.timezone,
        "unit": wire.unit,
        "limit": wire.limit,
        "spend": wire.spend,
        "resets_at": _iso(wire.resets_at_unix_ms),
    }
    return EnforcedBudget(wire.budget_id, scope, wire.exhausted, now + resets_in_s, described)


def _iso(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if unix_ms else ""
