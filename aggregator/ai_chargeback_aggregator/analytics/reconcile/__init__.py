"""Reconciliation of gateway records with provider bills.

Parsers (one module per export format) turn FOCUS, OpenAI and Anthropic
exports into :class:`BillLine` rows; :mod:`.gateway` reads the gateway side;
:mod:`.match` pairs them per day x provider x model and judges each line.
"""

from __future__ import annotations

from .detect import FORMATS, detect, load_export
from .gateway import GatewayLine, GatewayUsage
from .lines import BillLine, ExportError, ProviderExport
from .mapping import AccountMapping, load_mapping, parse_mapping
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

__all__ = [
    "BILL_ONLY",
    "DEFAULT_TOLERANCE_COST_USD",
    "DEFAULT_TOLERANCE_PCT",
    "DEFAULT_TOLERANCE_TOKENS",
    "LINE_COLUMNS",
    "DIFFERS",
    "FORMATS",
    "GATEWAY_ONLY",
    "MATCHED",
    "AccountMapping",
    "BillLine",
    "ExportError",
    "GatewayLine",
    "GatewayUsage",
    "ProviderExport",
    "Reconciliation",
    "Tolerance",
    "detect",
    "export_period",
    "export_providers",
    "load_export",
    "load_mapping",
    "normalize_model",
    "normalize_provider",
    "parse_mapping",
    "reconcile",
]
