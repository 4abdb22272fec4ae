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

import hmac
import json
import logging
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..pricing.override_store import save_overrides
from ..pricing.overrides import OverrideError, parse_records
from ..pricing.reprice import RepriceError, reprice
from .analyst_sql import AnalystSql
from .http_api import Body, Route, json_response

if TYPE_CHECKING:
    from .app import Aggregator

log = logging.getLogger(__name__)

SQL_PATH = "/v1/sql"
PRICES_PATH = "/v1/prices"
REPRICE_PATH = "/v1/reprice"
Response = tuple[int, str, Body]


def routes(aggregator: Aggregator) -> dict[str, Route]:
    settings = aggregator.settings
    sql_store_dsn = settings.sql_store_dsn.get_secret_value() if settings.sql_store_dsn else ""
    analyst = AnalystSql.for_store(settings.store_dsn, database=settings.database, sql_store_dsn=sql_store_dsn)
    return {
        SQL_PATH: _guarded(settings.sql_token, "SQL endpoint", lambda body: _sql(analyst, body)),
        PRICES_PATH: _guarded(settings.admin_token, "price loading", lambda body: _prices(aggregator, body)),
        REPRICE_PATH: _guarded(settings.admin_token, "reprice", lambda body: _reprice(aggregator, body)),
    }


def _guarded(token: SecretStr | None, what: str, handler: Callable[[dict[str, Any]], Response]) -> Route:
    expected = token.get_secret_value().encode() if token else None

    def route(method: str, headers: dict[str, str], body: bytes) -> Response:
        if method != "POST":
            return json_response(405, {"error": "use POST"})
        if expected is None:
            return json_response(403, {"error": f"{what} disabled: no token configured"})
        presented = headers.get("authorization", "")
        token_bytes = presented[len("Bearer ") :].encode() if presented.startswith("Bearer ") else b""
        if not hmac.compare_digest(token_bytes, expected):
            return json_response(401, {"error": "missing or wrong bearer token"})
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        return handler(payload)

    return route


def _sql(analyst: AnalystSql, payload: dict[str, Any]) -> Response:
    outcome = analyst.run(payload.get("sql"), payload.get("params") or {})
    if outcome.body is not None:
        return 200, "application/json", outcome.body
    return json_response(outcome.status, outcome.error)


def _prices(aggregator: Aggregator, payload: dict[str, Any]) -> Response:
    try:
        overrides = parse_records(payload.get("overrides") or [], loaded_from=str(payload.get("source", "http")))
    except OverrideError as exc:
        return json_response(400, {"error": str(exc), "problems": exc.problems})
    counts = save_overrides(aggregator.store, overrides, replace=bool(payload.get("replace")))
    aggregator.pricer.refresh(aggregator.store)
    log.info("price overrides loaded over HTTP: %s", counts)
    return json_response(200, {**counts, "active": len(aggregator.pricer.overrides)})


def _reprice(aggregator: Aggregator, payload: dict[str, Any]) -> Response:
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
