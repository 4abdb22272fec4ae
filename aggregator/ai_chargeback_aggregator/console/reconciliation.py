"""Reconciliation from the console: provider exports uploaded, matched with the gateway, shown and downloadable.

The same steps as ``chargeback reconcile`` (analytics/reconcile: load each
export, read the gateway's usage for the exports' period and providers,
match per day x provider x model). Results are kept in memory for their
uploader only, for an hour, so the page and its CSV links can show them again.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from ..analytics.reconcile import (
    LINE_COLUMNS,
    ExportError,
    GatewayUsage,
    Reconciliation,
    Tolerance,
    export_period,
    export_providers,
    load_export,
    reconcile,
)
from ..analytics.reports import Runner
from .tables import Column, Table

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FILES = 10
KEEP_S = 3600.0
KEEP_RUNS = 50


@dataclass(frozen=True)
class Run:
    owner: str
    files: tuple[str, ...]
    result: Reconciliation
    at: float


class Runs:
    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def add(self, run: Run) -> str:
        run_id = secrets.token_urlsafe(12)
        with self._lock:
            now = time.time()
            self._runs = {k: r for k, r in self._runs.items() if now - r.at < KEEP_S}
            while len(self._runs) >= KEEP_RUNS:
                self._runs.pop(min(self._runs, key=lambda k: self._runs[k].at))
            self._runs[run_id] = run
        return run_id

    def get(self, run_id: str, owner: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
        return run if run is not None and run.owner == owner and time.time() - run.at < KEEP_S else None


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


def run_reconciliation(runner: Runner, files: list[tuple[str, bytes]], *, tolerance_pct: str = "") -> Reconciliation:
    if not files:
        raise ExportError("choose at least one provider export")
    tolerance = Tolerance(pct=float(tolerance_pct)) if tolerance_pct else Tolerance()
    with tempfile.TemporaryDirectory(prefix="chargeback-reconcile-") as work:
        exports = []
        for i, (name, data) in enumerate(files):
            path = Path(work) / f"{i}-{name}"
            path.write_bytes(data)
            try:
                exports.append(load_export(path))
            except ExportError as exc:
                raise ExportError(str(exc).replace(str(path), name)) from None
    period = export_period(exports)
    if period is None:
        raise ExportError("the exports hold no usage")
    providers = sorted(export_providers(exports, {}))
    gateway = GatewayUsage(period=period, providers=tuple(providers), database=runner.database).run(runner)
    return reconcile(exports, gateway, period=period, tolerance=tolerance)


def tables(result: Reconciliation) -> dict[str, Table]:
    columns = [Column(c, c.replace("_", " ")) for c in LINE_COLUMNS]
    found = {"lines": Table("lines", "Gateway against the bill, per day, provider and model", columns, list(result.lines))}
    if result.accounts:
        found["accounts"] = Table("accounts", "Per provider account", columns, list(result.accounts))
    return found
