"""Reconciliation of gateway records with provider bills.

Parsers (one module per export format) turn FOCUS, OpenAI and Anthropic
exports into :class:`BillLine` rows; :mod:`.gateway` reads the gateway side;
:mod:`.match` pairs them per day x provider x model and judges each line;
:mod:`.runs` stores each run and its lines (migration 0022) and reads them back.
"""

from __future__ import annotations

from .detect import FORMATS, detect, load_export, parse_export
from .gateway import GatewayLine, GatewayUsage
from .lines import BillLine, ExportError, ProviderExport
from .mapping import AccountMapping, load_mapping, mapping_from_bytes, parse_mapping
from .match import (
    BILL_ONLY,
    DEFAULT_TOLERANCE_COST_USD,
    DEFAULT_TOLERANCE_PCT,
    DEFAULT_TOLERANCE_TOKENS,
    DIFFERS,
    GATEWAY_ONLY,
    LINE_COLUMNS,
    MATCHED,
    Reconciliation,
    Tolerance,
    export_period,
    export_providers,
    reconcile,
)
from .normalize import normalize_model, normalize_provider
from .runs import (
    MAX_LISTED,
    Outcome,
    RunRecord,
    SourceFile,
    latest_by_provider,
    list_runs,
    load_run,
    record_of,
    run_files,
    same_files,
    save_run,
    source_file,
    valid_run_id,
    who_runs_this,
)

__all__ = [
    "BILL_ONLY",
    "DEFAULT_TOLERANCE_COST_USD",
    "DEFAULT_TOLERANCE_PCT",
    "DEFAULT_TOLERANCE_TOKENS",
    "LINE_COLUMNS",
    "MAX_LISTED",
    "DIFFERS",
    "FORMATS",
    "GATEWAY_ONLY",
    "MATCHED",
    "AccountMapping",
    "BillLine",
    "ExportError",
    "GatewayLine",
    "GatewayUsage",
    "Outcome",
    "ProviderExport",
    "Reconciliation",
    "RunRecord",
    "SourceFile",
    "Tolerance",
    "detect",
    "export_period",
    "export_providers",
    "latest_by_provider",
    "list_runs",
    "load_export",
    "load_mapping",
    "load_run",
    "mapping_from_bytes",
    "normalize_model",
    "normalize_provider",
    "parse_export",
    "parse_mapping",
    "reconcile",
    "record_of",
    "run_files",
    "same_files",
    "save_run",
    "source_file",
    "valid_run_id",
    "who_runs_this",
]
