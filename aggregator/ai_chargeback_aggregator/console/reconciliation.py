"""Reconciliation from the console: provider exports uploaded, matched with the gateway, stored, listed and downloadable.

The same steps as ``chargeback reconcile`` (analytics/reconcile: parse each
export, read the gateway's usage for the exports' period and providers,
match per day x provider x model), and the run is stored like the CLI's
(migration 0022): every finance user and admin sees the history, on every
aggregator behind the store, after restarts. An upload that is too large,
malformed or not a known export is refused whole: nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from ..analytics.reconcile import (
    LINE_COLUMNS,
    ExportError,
    Outcome,
    Reconciliation,
    RunRecord,
    Tolerance,
    run_files,
)
from ..analytics.reports import Runner
from .tables import Column, Table

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FILES = 10
RUNS_PER_PAGE = 25
MAX_PAGES = 40  # history pages reachable by number: 1,000 runs; the CLI lists further


def uploaded_files(content_type: str, body: bytes) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """(fields, [(file name, bytes)]) of a multipart/form-data body."""
    if not content_type.startswith("multipart/form-data"):
        raise ValueError("upload the exports as a form (multipart/form-data)")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise ValueError("malformed upload")
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            if data:
                files.append((Path(filename).name or "export", data))
        elif isinstance(name, str):
            fields[name] = data.decode("utf-8", errors="replace")
    if len(files) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} exports at once")
    return fields, files


def run_reconciliation(runner: Runner, files: list[tuple[str, bytes]], *, tolerance_pct: str = "") -> Outcome:
    if not files:
        raise ExportError("choose at least one provider export")
    if sum(len(data) for _, data in files) > MAX_UPLOAD_BYTES:
        # A body sent without a Content-Length (chunked) is only measured once read.
        raise ExportError(f"the exports are larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    try:
        tolerance = Tolerance(pct=float(tolerance_pct)) if tolerance_pct.strip() else Tolerance()
    except ValueError as exc:
        raise ExportError(f"tolerance: {exc}") from None
    return run_files(runner, files, tolerance=tolerance)


def tables(result: Reconciliation) -> dict[str, Table]:
    columns = [Column(c, c.replace("_", " ")) for c in LINE_COLUMNS]
    found = {"lines": Table("lines", "Gateway against the bill, per day, provider and model", columns, list(result.lines))}
    if result.accounts:
        found["accounts"] = Table("accounts", "Per provider account", columns, list(result.accounts))
    return found


def history_table(records: Sequence[RunRecord], link: Callable[[str], str]) -> Table:
    columns = [Column("ran_at", "Ran at", link="href"), Column("ran_by", "By"), Column("via", "Via"), Column("providers", "Providers", "list"),
               Column("period", "Period"), Column("files", "Files", "list"), Column("verdict", "Verdict"),
               Column("discrepancies", "Lines off", "int"), Column("gateway_cost", "Gateway cost"), Column("bill_cost", "Bill cost"),
               Column("run_id", "Run", "code")]  # fmt: skip
    rows = [{"ran_at": r.ran_at.strftime("%Y-%m-%d %H:%M:%S UTC"), "href": link(r.run_id), "ran_by": r.ran_by, "via": r.via,
             "providers": list(r.providers), "period": period_text(r), "files": [f"{s.name} ({s.sha256[:12]})" for s in r.sources],
             "verdict": r.verdict.label, "discrepancies": r.totals["line_count"] - r.totals["matched_lines"],
             "gateway_cost": r.totals["gateway_cost"], "bill_cost": r.totals["bill_cost"], "run_id": r.run_id} for r in records]  # fmt: skip
    return Table("runs", "Stored reconciliation runs, newest first", columns, rows,
                 empty="No reconciliation stored yet: upload the provider's exports above, or run `chargeback reconcile`.")  # fmt: skip


def sources_table(record: RunRecord) -> Table:
    columns = [Column("name", "File"), Column("format", "Format"), Column("bytes", "Bytes", "int"), Column("sha256", "SHA-256", "code")]
    rows = [{"name": s.name, "format": s.format, "bytes": s.size, "sha256": s.sha256} for s in record.sources]
    return Table("sources", "Exports this run read", columns, rows)


def latest_table(latest: Sequence[dict[str, Any]], link: Callable[[str], str]) -> Table:
    columns = [Column("provider", "Provider"), Column("verdict", "Verdict", link="href"), Column("discrepancies", "Lines off", "int"),
               Column("lines", "Lines", "int"), Column("period", "Period"), Column("ran_at", "Ran at"), Column("ran_by", "By")]  # fmt: skip
    rows = [{**row, "href": link(row["run_id"]), "period": f"{row['period_start']:%Y-%m-%d} .. {row['period_end']:%Y-%m-%d} (excl.)",
             "ran_at": row["ran_at"].strftime("%Y-%m-%d %H:%M UTC")} for row in latest]  # fmt: skip
    return Table("reconciliation", "Provider bills: the latest reconciliation of each provider", columns, rows,
                 empty="No reconciliation stored yet.")  # fmt: skip


def period_text(record: RunRecord) -> str:
    return f"{record.period.start:%Y-%m-%d} .. {record.period.end:%Y-%m-%d} (excl.)"
