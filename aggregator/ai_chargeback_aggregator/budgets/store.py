"""Budgets in the store: save a loaded file, read them back (parameterized SQL only).

Reads go through a report ``Runner`` (the store itself or an aggregator's
read-only ``/v1/sql``), so ``budgets list`` and ``budgets status`` work
while an aggregator owns an embedded store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..analytics.reports import Runner
from ..store.clickhouse import Store
from .definitions import Budget, Scope, decimal_text

TABLE = "budgets"
_COLUMNS = (
    "budget_id", "tenant", "team", "app", "workload", "consumer_id", "provider", "model", "period", "timezone", "unit",
    "amount", "cost_basis", "thresholds", "action", "notify", "effective_from", "effective_to", "note", "loaded_from",
    "loaded_at", "version", "is_deleted",
)  # fmt: skip

LIST_SQL = """
SELECT budget_id, tenant, team, app, workload, consumer_id, provider, model, period, timezone, unit, amount,
       cost_basis, thresholds, action, notify, effective_from, effective_to, note, loaded_from, version
FROM {db:Identifier}.budgets FINAL
ORDER BY budget_id
"""


def list_budgets(runner: Runner) -> list[Budget]:
    """Every live budget (deleted ones are dropped by FINAL), in force or not."""
    _, rows = runner.query(LIST_SQL, {"db": runner.database})
    return budgets_from_rows(rows)


def budgets_from_rows(rows: Sequence[Sequence[Any]]) -> list[Budget]:
    result = []
    for row in rows:
        (budget_id, tenant, team, app, workload, consumer_id, provider, model, period, timezone, unit, amount,
         cost_basis, thresholds, action, notify, start, end, note, loaded_from, version) = row  # fmt: skip
        result.append(
            Budget(
                budget_id=budget_id,
                scope=Scope(tenant=tenant, team=team, app=app, workload=workload, consumer=consumer_id, provider=provider,
                            model=model),  # fmt: skip
                period=period, amount=_exact(Decimal(amount)), effective_from=start, unit=unit, timezone=timezone,
                cost_basis=cost_basis, thresholds=tuple(_exact(Decimal(t)) for t in thresholds), action=action,
                notify=tuple(notify), effective_to=end, note=note, loaded_from=loaded_from, version=int(version),
            )  # fmt: skip
        )
    return result


def save_budgets(store: Store, budgets: Sequence[Budget], *, replace: bool = False) -> dict[str, int]:
    """Upsert by id; with replace, ids not in ``budgets`` are deleted. Returns counts."""
    from ..analytics.reports import LocalRunner

    version = time.time_ns()
    now = datetime.now(UTC)
    existing = {b.budget_id: b for b in list_budgets(LocalRunner(store))}
    incoming = {b.budget_id for b in budgets}
    removed = [b for bid, b in existing.items() if bid not in incoming] if replace else []
    rows = [_row(b, now, version, deleted=False) for b in budgets] + [_row(b, now, version, deleted=True) for b in removed]
    if rows:
        store.insert_columns(TABLE, {name: [row[i] for row in rows] for i, name in enumerate(_COLUMNS)})
    return {
        "added": sum(1 for bid in incoming if bid not in existing),
        "updated": sum(1 for bid in incoming if bid in existing),
        "deleted": len(removed),
    }


def _row(b: Budget, now: datetime, version: int, *, deleted: bool) -> list[Any]:
    s = b.scope
    return [
        b.budget_id, s.tenant, s.team, s.app, s.workload, s.consumer, s.provider, s.model, b.period, b.timezone, b.unit,
        b.amount, b.cost_basis, list(b.thresholds), b.action, list(b.notify), b.effective_from, b.effective_to, b.note,
        b.loaded_from, now, version, 1 if deleted else 0,
    ]  # fmt: skip


def _exact(value: Decimal) -> Decimal:
    """Drop the column's padding zeros: 10000.000000000 -> 10000, 2.500000000 -> 2.5."""
    return Decimal(decimal_text(value))
