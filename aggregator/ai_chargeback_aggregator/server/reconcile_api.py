"""``POST /v1/reconcile-runs`` (bearer settings.admin_token): reconcile exports on this aggregator and store the run.

What `chargeback reconcile` sends while an aggregator holds the store: the
export files themselves (base64), not a result. The aggregator parses them,
reads the gateway's side from its own store and stores the run (migration
0022), so a stored run is always the aggregator's own judgement of the exact
bytes it names by SHA-256. Body: {"files": [{"name", "data"}], "tolerance":
{"pct", "tokens", "cost_usd"}, "mapping": {"name", "data"} | null, "from",
"to" (period bounds, ISO, end exclusive; both or neither), "export_format",
"provider", "ran_by"}. Answer: {"run_id"} (400 with the reason, nothing stored).
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from ..analytics.governance import GovernanceError, Period
from ..analytics.reconcile import (
    AccountMapping,
    ExportError,
    Tolerance,
    mapping_from_bytes,
    record_of,
    run_files,
    save_run,
    source_file,
)
from ..analytics.reports import LocalRunner
from .http_api import Answer, Route, bearer_json_route, json_response

if TYPE_CHECKING:
    from ..settings import AggregatorSettings
    from ..store.clickhouse import Store

log = logging.getLogger(__name__)

RECONCILE_RUNS_PATH = "/v1/reconcile-runs"
MAX_FILES = 20


class Aggregator(Protocol):
    """What this route uses of the running aggregator (server/app.py)."""

    settings: AggregatorSettings
    store: Store


def routes(aggregator: Aggregator) -> dict[str, Route]:
    return {RECONCILE_RUNS_PATH: bearer_json_route(aggregator.settings.admin_token, "reconciliation storage",
                                                   lambda body: _reconcile(aggregator, body))}  # fmt: skip


def _reconcile(aggregator: Aggregator, payload: dict[str, Any]) -> Answer:
    try:
        files = [(_name(f), _bytes(f)) for f in _list(payload.get("files"), "files")]
        if not files or len(files) > MAX_FILES:
            raise ExportError(f"files: 1..{MAX_FILES} exports")
        tolerance = _tolerance(payload.get("tolerance") or {})
        mapping, mapping_sha256 = AccountMapping(), ""
        if payload.get("mapping"):
            raw = payload["mapping"]
            data = _bytes(raw)
            mapping, mapping_sha256 = mapping_from_bytes(data, _name(raw)), source_file(_name(raw), data).sha256
        period = _period(payload.get("from"), payload.get("to"))
        outcome = run_files(LocalRunner(aggregator.store), files, tolerance=tolerance, mapping=mapping, period=period,
                            export_format=str(payload.get("export_format") or "auto"), provider=str(payload.get("provider") or ""))  # fmt: skip
        record = record_of(outcome.result, sources=outcome.sources, providers=outcome.providers,
                           ran_by=str(payload.get("ran_by") or "api")[:256], via="api", tolerance=tolerance,
                           mapping_sha256=mapping_sha256)  # fmt: skip
    except (ExportError, GovernanceError, ValueError, TypeError) as exc:
        return json_response(400, {"error": str(exc)})
    save_run(aggregator.store, record, outcome.result)
    log.info("reconciliation %s stored for %s: %s", record.run_id, record.ran_by, record.verdict.label)
    return json_response(200, {"run_id": record.run_id, "verdict": record.verdict.label, "ok": record.verdict.ok})


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ExportError(f"{what}: required, a list")
    return value


def _name(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        raise ExportError("each file needs a name")
    return entry["name"].replace("\\", "/").rsplit("/", 1)[-1][:256]  # a name, never a path on this host


def _bytes(entry: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(entry.get("data") or ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ExportError(f"{entry.get('name')}: data is not base64") from exc


def _tolerance(raw: Any) -> Tolerance:
    if not isinstance(raw, dict):
        raise ExportError("tolerance: an object")
    defaults = Tolerance()
    try:
        cost = Decimal(str(raw["cost_usd"])) if raw.get("cost_usd") is not None else defaults.cost_usd
    except InvalidOperation as exc:
        raise ExportError(f"tolerance cost_usd: not an amount: {raw.get('cost_usd')!r}") from exc
    return Tolerance(pct=float(raw.get("pct", defaults.pct)), tokens=int(raw.get("tokens", defaults.tokens)), cost_usd=cost)


def _period(start: Any, end: Any) -> Period | None:
    if not start and not end:
        return None
    if not (start and end):
        raise ExportError("from and to go together")
    return Period(datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end)))
