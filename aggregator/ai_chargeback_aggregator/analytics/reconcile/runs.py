"""Reconciliation runs kept in the store (migration 0022): evidence finance can come back to.

A run is written once (its lines, then its row: a reader that finds the row
finds every line) and read back as the same :class:`Reconciliation` the
matcher returned, so the CLI, the console and a CSV show a stored run exactly
as it was judged. Each source file is named with its SHA-256: a challenged
figure traces back to the exact export, and the same export uploaded again is
recognised (a new run, at a new time, that says which earlier runs read it).

Reads go through a :class:`Runner` (the console's store session, the CLI's
store or a running aggregator's /v1/sql); they touch only the two small run
tables, never usage_events.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from ... import __version__
from ...store.wire import decode, encode
from ..governance.base import Period, Runner, Verdict, run_query
from .detect import parse_export
from .gateway import GatewayUsage
from .lines import ExportError
from .mapping import AccountMapping
from .match import (
    BILL_ONLY,
    DIFFERS,
    GATEWAY_ONLY,
    LINE_COLUMNS,
    MATCHED,
    Reconciliation,
    Tolerance,
    export_period,
    export_providers,
)
from .match import reconcile as match

RUNS_TABLE = "reconcile_runs"
LINES_TABLE = "reconcile_lines"
SECTIONS = ("lines", "accounts")
VIA = ("console", "cli", "api")
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
MAX_LISTED = 200  # one page of history at most: the list reads run rows only
# Stored money has 18 decimals (Decimal(38, 18), like the events' costs): more would be refused by the store.
_SCALE = Decimal(1).scaleb(-18)

_INT_COLUMNS = ("gateway_input_tokens", "gateway_output_tokens", "gateway_tokens", "gateway_requests")
_NULLABLE_INT_COLUMNS = ("bill_input_tokens", "input_diff", "bill_output_tokens", "output_diff", "bill_tokens",
                         "tokens_diff", "bill_requests")  # fmt: skip


class Inserter(Protocol):
    """What saving needs of a store (``store.clickhouse.Store`` is one)."""

    database: str

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One export a run read: the name it was given, its SHA-256, size and detected format."""

    name: str
    sha256: str
    size: int
    format: str = ""


def source_file(name: str, data: bytes, format: str = "") -> SourceFile:
    return SourceFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), format=format)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A stored run's row: who, when, what it read, and what it found."""

    run_id: str
    ran_at: datetime
    ran_by: str
    via: str
    providers: tuple[str, ...]
    period: Period
    sources: tuple[SourceFile, ...]
    tolerance: Tolerance
    mapping_sha256: str
    verdict: Verdict
    notes: tuple[str, ...]
    totals: Mapping[str, Any]  # gateway_cost, bill_cost, cost_diff, *_tokens, line counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "ran_at": self.ran_at, "ran_by": self.ran_by, "via": self.via,
            "providers": list(self.providers), "period_start": self.period.start, "period_end": self.period.end,
            "sources": [{"name": s.name, "sha256": s.sha256, "bytes": s.size, "format": s.format} for s in self.sources],
            "mapping_sha256": self.mapping_sha256,
            "tolerance": {"pct": self.tolerance.pct, "tokens": self.tolerance.tokens, "cost_usd": self.tolerance.cost_usd},
            "verdict": self.verdict.label, "ok": self.verdict.ok, "reasons": list(self.verdict.reasons), "notes": list(self.notes),
            **self.totals,
        }  # fmt: skip


def new_run_id(at: datetime) -> str:
    """Time first, so the table's sort key keeps runs in time order; then random, so two runs never collide."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def who_runs_this() -> str:
    """The CLI's `ran_by`: the operating-system user (what a terminal can honestly say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A reconciliation with what it read: the exports' files and the providers they are about."""

    result: Reconciliation
    sources: tuple[SourceFile, ...]
    providers: tuple[str, ...]
    tolerance: Tolerance


def run_files(
    runner: Runner,
    files: Sequence[tuple[str, bytes]],
    *,
    tolerance: Tolerance | None = None,
    mapping: AccountMapping | None = None,
    period: Period | None = None,
    export_format: str = "auto",
    provider: str = "",
) -> Outcome:
    """Parse each export, read the gateway's side and match them: the steps every entry point takes."""
    if not files:
        raise ExportError("give at least one provider export")
    mapping = mapping or AccountMapping()
    exports, sources = [], []
    for name, data in files:
        export = parse_export(data, name=name, format=export_format, provider=provider, provider_aliases=mapping.providers)
        exports.append(export)
        sources.append(source_file(name, data, export.format))
    period = period or export_period(exports)
    if period is None:
        raise ExportError("the exports hold no usage and no period was given")
    providers = sorted(export_providers(exports, mapping.providers))
    gateway = GatewayUsage(period=period, providers=tuple(providers), database=_db(runner)).run(runner)
    tolerance = tolerance or Tolerance()
    result = match(exports, gateway, period=period, tolerance=tolerance, mapping=mapping)
    return Outcome(result=result, sources=tuple(sources), providers=tuple(providers), tolerance=tolerance)


def record_of(result: Reconciliation, *, sources: Sequence[SourceFile], providers: Sequence[str], ran_by: str, via: str,
              tolerance: Tolerance, mapping_sha256: str = "", at: datetime | None = None) -> RunRecord:  # fmt: skip
    if via not in VIA:
        raise ValueError(f"via must be one of {', '.join(VIA)}")
    ran_at = (at or datetime.now(UTC)).astimezone(UTC)
    ran_at = ran_at.replace(microsecond=ran_at.microsecond // 1000 * 1000)  # the column keeps milliseconds
    providers = sorted({line["provider"] for line in result.lines} | set(providers))
    return RunRecord(run_id=new_run_id(ran_at), ran_at=ran_at, ran_by=ran_by or "unknown", via=via, providers=tuple(providers),
                     period=result.period, sources=tuple(sources), tolerance=tolerance, mapping_sha256=mapping_sha256,
                     verdict=result.verdict, notes=result.notes, totals=_totals(result))  # fmt: skip


def _totals(result: Reconciliation) -> dict[str, Any]:
    lines = result.lines

    def total(column: str) -> Any:
        values = [line[column] for line in lines if line[column] is not None]
        return sum(values) if values else None

    return {
        "gateway_cost": total("gateway_cost"),
        "bill_cost": total("bill_cost"),
        "cost_diff": total("cost_diff"),  # lines with both sides' cost only: usage exports carry none
        "gateway_tokens": total("gateway_tokens"),
        "bill_tokens": total("bill_tokens"),
        "tokens_diff": total("tokens_diff"),
        "line_count": len(lines),
        **{f"{status}_lines": sum(1 for line in lines if line["status"] == status) for status in (MATCHED, DIFFERS, GATEWAY_ONLY, BILL_ONLY)},
        "account_lines": len(result.accounts),
    }


# ---------------------------------------------------------------- writing


def save_run(store: Inserter, record: RunRecord, result: Reconciliation) -> str:
    """Store a run: its lines, then its row (the row is what makes it visible). Returns its id."""
    rows = [(section, i, line) for section in SECTIONS for i, line in enumerate(getattr(result, section))]
    if rows:
        columns: dict[str, list[Any]] = {"run_id": [], "section": [], "line_no": []}
        columns.update({c: [] for c in LINE_COLUMNS})
        for section, i, line in rows:
            columns["run_id"].append(record.run_id)
            columns["section"].append(section)
            columns["line_no"].append(i)
            for c in LINE_COLUMNS:
                columns[c].append(_storable(line[c]))
        store.insert_columns(LINES_TABLE, columns)
    totals = record.totals
    summary = json.dumps(encode(dict(result.summary)), sort_keys=True)
    row: dict[str, Any] = {
        "run_id": record.run_id, "ran_at": record.ran_at, "ran_by": record.ran_by, "via": record.via,
        "providers": list(record.providers), "period_start": record.period.start, "period_end": record.period.end,
        "source_names": [s.name for s in record.sources], "source_sha256": [s.sha256 for s in record.sources],
        "source_bytes": [s.size for s in record.sources], "source_formats": [s.format for s in record.sources],
        "mapping_sha256": record.mapping_sha256, "tolerance_pct": float(record.tolerance.pct),
        "tolerance_tokens": record.tolerance.tokens, "tolerance_cost": _storable(record.tolerance.cost_usd),
        **{k: _storable(totals[k]) for k in ("gateway_cost", "bill_cost", "cost_diff", "gateway_tokens", "bill_tokens", "tokens_diff")},
        **{k: totals[k] for k in ("line_count", "matched_lines", "differs_lines", "gateway_only_lines", "bill_only_lines", "account_lines")},
        "verdict_ok": int(record.verdict.ok), "verdict": record.verdict.label, "reasons": list(record.verdict.reasons),
        "notes": list(record.notes), "summary": summary, "aggregator_version": __version__,
    }  # fmt: skip
    store.insert_columns(RUNS_TABLE, {k: [v] for k, v in row.items()})
    return record.run_id


def _storable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value.quantize(_SCALE)
    return value


# ---------------------------------------------------------------- reading

_RUN_COLUMNS = ("run_id, ran_at, ran_by, via, providers, period_start, period_end, source_names, source_sha256, source_bytes, "
                "source_formats, mapping_sha256, tolerance_pct, tolerance_tokens, tolerance_cost, gateway_cost, bill_cost, "
                "cost_diff, gateway_tokens, bill_tokens, tokens_diff, line_count, matched_lines, differs_lines, "
                "gateway_only_lines, bill_only_lines, account_lines, verdict_ok, verdict, reasons, notes")  # fmt: skip


def valid_run_id(run_id: str) -> bool:
    return bool(RUN_ID.match(run_id))


def list_runs(runner: Runner, *, limit: int = 25, offset: int = 0, provider: str = "") -> list[RunRecord]:
    """Newest first; reads run rows only (a page of history costs a few rows)."""
    limit, offset = max(1, min(int(limit), MAX_LISTED)), max(0, int(offset))
    where = "WHERE has(providers, {provider:String})" if provider else ""
    sql = (f"SELECT {_RUN_COLUMNS} FROM {{db:Identifier}}.{RUNS_TABLE} {where} "
           "ORDER BY ran_at DESC, run_id DESC LIMIT {limit:UInt32} OFFSET {offset:UInt32}")  # fmt: skip
    _, rows = run_query(runner, sql, {"db": _db(runner), "provider": provider, "limit": limit, "offset": offset})
    return [_record(row) for row in rows]


def load_run(runner: Runner, run_id: str) -> tuple[RunRecord, Reconciliation] | None:
    """A stored run as the matcher returned it; None when there is no such run (or the id is malformed)."""
    if not valid_run_id(run_id):
        return None
    params = {"db": _db(runner), "run_id": run_id}
    _, found = run_query(runner, f"SELECT {_RUN_COLUMNS}, summary FROM {{db:Identifier}}.{RUNS_TABLE} "
                                 "WHERE run_id = {run_id:String} LIMIT 1", params)  # fmt: skip
    if not found:
        return None
    record = _record(found[0])
    _, lines = run_query(runner, f"SELECT section, {', '.join(LINE_COLUMNS)} FROM {{db:Identifier}}.{LINES_TABLE} "
                                 "WHERE run_id = {run_id:String} ORDER BY section, line_no", params)  # fmt: skip
    by_section: dict[str, list[dict[str, Any]]] = {s: [] for s in SECTIONS}
    for line in lines:
        by_section.setdefault(line["section"], []).append({c: _line_value(c, line[c]) for c in LINE_COLUMNS})
    summary = decode(json.loads(found[0]["summary"] or "{}"))
    result = Reconciliation(period=record.period, lines=tuple(by_section["lines"]), accounts=tuple(by_section["accounts"]),
                            summary=summary, verdict=record.verdict, notes=record.notes)  # fmt: skip
    return record, result


def same_files(runner: Runner, record: RunRecord, *, limit: int = 10) -> list[dict[str, Any]]:
    """Other runs that read a file with the same content as one of this run's (newest first)."""
    hashes = sorted({s.sha256 for s in record.sources})
    if not hashes:
        return []
    sql = ("SELECT run_id, ran_at, ran_by, source_names, source_sha256 FROM {db:Identifier}." + RUNS_TABLE +
           " WHERE hasAny(source_sha256, {hashes:Array(String)}) AND run_id != {run_id:String} "
           "ORDER BY ran_at DESC, run_id DESC LIMIT {limit:UInt32}")  # fmt: skip
    _, rows = run_query(runner, sql, {"db": _db(runner), "hashes": hashes, "run_id": record.run_id, "limit": limit})
    found = []
    for row in rows:
        names = [n for n, h in zip(row["source_names"], row["source_sha256"]) if h in hashes]
        found.append({"run_id": row["run_id"], "ran_at": row["ran_at"], "ran_by": row["ran_by"], "files": names})
    return found


def latest_by_provider(runner: Runner) -> list[dict[str, Any]]:
    """Per provider, its latest run and that run's verdict for this provider alone (lines of other providers aside)."""
    sql = ("SELECT provider, argMax(run_id, ran_at) AS run_id FROM {db:Identifier}." + RUNS_TABLE +
           " ARRAY JOIN providers AS provider GROUP BY provider ORDER BY provider")  # fmt: skip
    _, latest = run_query(runner, sql, {"db": _db(runner)})
    if not latest:
        return []
    ids = sorted({row["run_id"] for row in latest})
    _, runs = run_query(runner, f"SELECT {_RUN_COLUMNS} FROM {{db:Identifier}}.{RUNS_TABLE} WHERE run_id IN {{ids:Array(String)}}",
                        {"db": _db(runner), "ids": ids})  # fmt: skip
    records = {row["run_id"]: _record(row) for row in runs}
    _, counts = run_query(runner, "SELECT run_id, provider, count() AS lines, sum(status != 'matched') AS off FROM {db:Identifier}."
                          + LINES_TABLE + " WHERE run_id IN {ids:Array(String)} AND section = 'lines' GROUP BY run_id, provider",
                          {"db": _db(runner), "ids": ids})  # fmt: skip
    by_key = {(row["run_id"], row["provider"]): row for row in counts}
    answer = []
    for row in latest:
        record = records.get(row["run_id"])
        if record is None:
            continue
        count = by_key.get((row["run_id"], row["provider"]), {"lines": 0, "off": 0})
        off, lines = int(count["off"]), int(count["lines"])
        verdict = "discrepancies" if off else ("reconciled" if lines else "nothing to reconcile")
        answer.append({"provider": row["provider"], "run_id": record.run_id, "ran_at": record.ran_at, "ran_by": record.ran_by,
                       "period_start": record.period.start, "period_end": record.period.end, "verdict": verdict,
                       "ok": not off, "lines": lines, "discrepancies": off})  # fmt: skip
    return answer


def _db(runner: Runner) -> str:
    return str(getattr(runner, "database", "chargeback"))


def _record(row: Mapping[str, Any]) -> RunRecord:
    sources = tuple(SourceFile(name=n, sha256=h, size=int(b), format=f)
                    for n, h, b, f in zip(row["source_names"], row["source_sha256"], row["source_bytes"], row["source_formats"]))  # fmt: skip
    tolerance = Tolerance(pct=float(row["tolerance_pct"]), tokens=int(row["tolerance_tokens"]), cost_usd=_exact(row["tolerance_cost"]))
    totals = {k: _exact(row[k]) for k in ("gateway_cost", "bill_cost", "cost_diff")}
    totals.update({k: None if row[k] is None else int(row[k]) for k in ("gateway_tokens", "bill_tokens", "tokens_diff")})
    totals.update({k: int(row[k]) for k in ("line_count", "matched_lines", "differs_lines", "gateway_only_lines", "bill_only_lines",
                                            "account_lines")})  # fmt: skip
    return RunRecord(
        run_id=row["run_id"], ran_at=_utc(row["ran_at"]), ran_by=row["ran_by"], via=row["via"], providers=tuple(row["providers"]),
        period=Period(_utc(row["period_start"]), _utc(row["period_end"])), sources=sources, tolerance=tolerance,
        mapping_sha256=row["mapping_sha256"], verdict=Verdict(ok=bool(row["verdict_ok"]), label=row["verdict"], reasons=tuple(row["reasons"])),
        notes=tuple(row["notes"]), totals=totals,
    )  # fmt: skip


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _exact(value: Any) -> Decimal | None:
    """Money as read back: Decimal, with the store's padding zeros dropped (0.031500000000000000 -> 0.0315)."""
    if value is None:
        return None
    text = format(value if isinstance(value, Decimal) else Decimal(str(value)), "f")
    return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)


def _line_value(column: str, value: Any) -> Any:
    if column in ("gateway_cost", "bill_cost", "cost_diff"):
        return _exact(value)
    if column in _INT_COLUMNS:
        return int(value)
    if column in _NULLABLE_INT_COLUMNS:
        return None if value is None else int(value)
    if column == "day" and isinstance(value, str):
        return datetime.fromisoformat(value).date()
    return value
