"""``POST /v1/budgets`` (bearer settings.admin_token): load budgets into the store, in force at the next pass.

The body is a budgets file as JSON: {"budgets": [...], "replace": bool,
"source": "file name"}. Validated whole first (400 with every problem);
then saved and the budget monitor is asked to evaluate at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from ..budgets.definitions import BudgetError, parse_records
from ..budgets.store import save_budgets
from .http_api import Answer, Route, bearer_json_route, json_response

if TYPE_CHECKING:
    from ..budgets.monitor import BudgetMonitor
    from ..settings import AggregatorSettings
    from ..store.clickhouse import Store


class Aggregator(Protocol):
    """What this route uses of the running aggregator (server/app.py)."""

    settings: AggregatorSettings
    store: Store
    budgets: BudgetMonitor

log = logging.getLogger(__name__)

BUDGETS_PATH = "/v1/budgets"


def routes(aggregator: Aggregator) -> dict[str, Route]:
    return {BUDGETS_PATH: bearer_json_route(aggregator.settings.admin_token, "budget loading", lambda body: _load(aggregator, body))}


def _load(aggregator: Aggregator, payload: dict[str, Any]) -> Answer:
    records = payload.get("budgets")
    if not isinstance(records, list):
        return json_response(400, {"error": "budgets: required, a list"})
    try:
        budgets = parse_records(records, loaded_from=str(payload.get("source", "http"))[:256])
    except BudgetError as exc:
        return json_response(400, {"error": str(exc), "problems": exc.problems})
    counts = save_budgets(aggregator.store, budgets, replace=bool(payload.get("replace")))
    aggregator.budgets.kick()
    log.info("budgets loaded over HTTP: %s", counts)
    return json_response(200, counts)
