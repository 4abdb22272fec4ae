"""Governance checks over raw usage events: attribution quality, shared
credentials, usage exceptions, spend anomalies, and delivery findings
(quarantined events, replays that conflicted with stored events).

Each check is a frozen dataclass of parameters rendering ``(sql, params)`` from
``governance/sql/<name>.sql``; ``run(runner)`` returns a :class:`CheckResult`.
"""

from __future__ import annotations

from .attribution import IdentityConflicts, IdentitySources, Unattributed
from .base import DEFAULT_PERIOD_DAYS, CheckResult, GovernanceError, Period, Runner, Scope, Verdict, load_sql
from .bursts import Bursts
from .cache_misses import CacheMisses
from .delivery import Quarantined, ReplayConflicts
from .fan_out import FanOut
from .premium_models import PremiumModels
from .readiness import Readiness, Thresholds
from .registry import GOVERNANCE_CHECKS, TABLE_COLUMNS, CheckSpec, Option, all_options
from .retries import Retries
from .shared_credentials import SharedCredentials
from .spend_anomalies import SpendAnomalies

__all__ = [
    "GOVERNANCE_CHECKS",
    "TABLE_COLUMNS",
    "CheckSpec",
    "Option",
    "all_options",
    "DEFAULT_PERIOD_DAYS",
    "Bursts",
    "CacheMisses",
    "CheckResult",
    "FanOut",
    "GovernanceError",
    "IdentityConflicts",
    "IdentitySources",
    "Period",
    "PremiumModels",
    "Quarantined",
    "Readiness",
    "ReplayConflicts",
    "Retries",
    "Runner",
    "Scope",
    "SharedCredentials",
    "SpendAnomalies",
    "Thresholds",
    "Unattributed",
    "Verdict",
    "load_sql",
]
