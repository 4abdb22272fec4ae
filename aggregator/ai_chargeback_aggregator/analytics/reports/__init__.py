"""Showback and chargeback reports, drill-down handles and the FOCUS export.

This is the package's public surface: the CLI, the console and the budgets read
reports through these names only (tests/aggregator/test_layers.py holds them to it).
"""

from __future__ import annotations

from . import allocation_config
from .allocation_config import AllocationConfig
from .explain import EVENT_COLUMNS, Explanation, Recount, explain
from .explain import check as check_line
from .focus import default_progress as focus_progress
from .focus import export as export_focus
from .handle import Handle, HandleError
from .report import UNATTRIBUTED_LABEL, Report, build_report, build_window_report, money_text
from .runner import LocalRunner, RemoteRunner, Runner
from .series import daily, day_cents, days_of
from .source import SNAPSHOT_SUFFIX

__all__ = [
    "EVENT_COLUMNS",
    "SNAPSHOT_SUFFIX",
    "UNATTRIBUTED_LABEL",
    "AllocationConfig",
    "Explanation",
    "Handle",
    "HandleError",
    "LocalRunner",
    "Recount",
    "RemoteRunner",
    "Report",
    "Runner",
    "allocation_config",
    "build_report",
    "build_window_report",
    "check_line",
    "daily",
    "day_cents",
    "days_of",
    "explain",
    "export_focus",
    "focus_progress",
    "money_text",
]
