"""What gateways need to enforce budgets, as the wire message the budget feed pushes to them.

Only enforced budgets in force travel (alert-only ones never refuse a request),
exhausted or not: a plugin set to fail closed refuses what an enforced budget
covers when its state is too old. Amounts are decimal text exactly as
`chargeback budgets status` prints them, for the 429 body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ai_chargeback_proto import pb

from ..analytics.reports import SNAPSHOT_SUFFIX
from .evaluate import BudgetStatus


def enforced_state(statuses: Sequence[BudgetStatus]) -> pb.BudgetState:
    """The enforced budgets of one evaluation; ``version`` names their content (not the time)."""
    budgets = []
    for status in sorted(statuses, key=lambda s: s.budget.budget_id):
        budget = status.budget
        if not budget.enforced:
            continue
        scope = budget.scope
        described = status.to_dict()
        budgets.append(pb.EnforcedBudget(
            budget_id=budget.budget_id,
            scope=pb.BudgetScope(tenant=scope.tenant, team=scope.team, app=scope.app, workload=scope.workload,
                                 consumer_id=scope.consumer, provider=scope.provider, model=scope.model),
            period=budget.period, period_label=status.period_label, timezone=budget.timezone, unit=budget.unit,
            limit=described["limit"], spend=described["spend"], exhausted=status.exhausted,
            period_start_unix_ms=int(status.period_start.timestamp() * 1000),
            resets_at_unix_ms=int(status.period_end.timestamp() * 1000),
        ))  # fmt: skip
    state = pb.BudgetState(budgets=budgets, model_snapshot_pattern=SNAPSHOT_SUFFIX, evaluated=True)
    # The spend of a budget under its limit changes with every request and decides nothing at the
    # gateway: it stays out of the version, so the feed pushes the budgets again only when what a
    # gateway does (or tells a refused client) changes, and heartbeats otherwise.
    versioned = pb.BudgetState()
    versioned.CopyFrom(state)
    for budget in versioned.budgets:
        if not budget.exhausted:
            budget.spend = ""
    state.version = hashlib.sha256(versioned.SerializeToString(deterministic=True)).hexdigest()[:24]
    return state
