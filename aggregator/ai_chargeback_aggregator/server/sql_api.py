"""HTTP routes for people and tools: read-only SQL, and the two admin writes (prices, reprice).

``POST /v1/sql``      bearer settings.sql_token. One parameterized SELECT over the
                      chargeback database, checked on ClickHouse's parse tree
                      (sql_guard.py) and run in a read-only session of its own
                      with fixed limits (analyst_sql.py, store/read_session.py).
``POST /v1/prices``   bearer settings.admin_token. Loads price overrides (the
                      body of a price file as JSON records) and refreshes the
                      pricer at once.
``POST /v1/reprice``  bearer settings.admin_token. Runs a reprice (reason required).

An endpoint whose token is not configured answers 403 (disabled); a missing or
wrong token answers 401. Bodies and answers are JSON with exact Decimal and
time values (reports/wire.py).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from ..pricing.override_store import save_overrides
from ..pricing.overrides import OverrideError, parse_records
from ..pricing.reprice import RepriceError, reprice
from ..store.engine import EngineMemory
from .analyst_sql import AnalystSql
from .http_api import Answer, Route, bearer_json_route, json_response

if TYPE_CHECKING:
    from ..pricing.pricer import Pricer
    from ..rollups.maintainer import RollupMaintainer
    from ..settings import AggregatorSettings
    from ..store.clickhouse import Store


class Aggregator(Protocol):
    """What these routes use of the running aggregator (server/app.py)."""

    settings: AggregatorSettings
    store: Store
    pricer: Pricer
    rollups: RollupMaintainer

log = logging.getLogger(__name__)

SQL_PATH = "/v1/sql"
PRICES_PATH = "/v1/prices"
REPRICE_PATH = "/v1/reprice"


def routes(aggregator: Aggregator) -> dict[str, Route]:
    settings = aggregator.settings
    sql_store_dsn = settings.sql_store_dsn.get_secret_value() if settings.sql_store_dsn else ""
    analyst = AnalystSql.for_store(settings.store_dsn, database=settings.database, sql_store_dsn=sql_store_dsn,
                                   engine=EngineMemory.from_settings(settings))  # fmt: skip
    return {
        SQL_PATH: bearer_json_route(settings.sql_token, "SQL endpoint", lambda body: _sql(analyst, body)),
        PRICES_PATH: bearer_json_route(settings.admin_token, "price loading", lambda body: _prices(aggregator, body)),
        REPRICE_PATH: bearer_json_route(settings.admin_token, "reprice", lambda body: _reprice(aggregator, body)),
    }


def _sql(analyst: AnalystSql, payload: dict[str, Any]) -> Answer:
    outcome = analyst.run(payload.get("sql"), payload.get("params") or {})
    if outcome.body is not None:
        return 200, "application/json", outcome.body
    return json_response(outcome.status, outcome.error)


def _prices(aggregator: Aggregator, payload: dict[str, Any]) -> Answer:
    try:
        overrides = parse_records(payload.get("overrides") or [], loaded_from=str(payload.get("source", "http")))
    except OverrideError as exc:
        return json_response(400, {"error": str(exc), "problems": exc.problems})
    counts = save_overrides(aggregator.store, overrides, replace=bool(payload.get("replace")))
    aggregator.pricer.refresh(aggregator.store)
    log.info("price overrides loaded over HTTP: %s", counts)
    return json_response(200, {**counts, "active": len(aggregator.pricer.overrides)})


def _reprice(aggregator: Aggregator, payload: dict[str, Any]) -> Answer:
    try:
        first = date.fromisoformat(str(payload.get("from")))
        last = date.fromisoformat(str(payload.get("to")))
        result = reprice(
            aggregator.store, first=first, last=last, reason=str(payload.get("reason") or ""),
            pricer=aggregator.pricer, maintainer=aggregator.rollups, requested_by=str(payload.get("requested_by") or "http"),
        )  # fmt: skip
    except (RepriceError, ValueError) as exc:
        return json_response(400, {"error": str(exc)})
    return json_response(200, result.to_dict())
