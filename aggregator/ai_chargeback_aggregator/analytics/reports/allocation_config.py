"""The allocation config: the one source of truth for chargeback policy.

A YAML file (path in settings.allocation_config_path, env
CHARGEBACK_ALLOCATION_CONFIG_PATH, or ``--config``)::

    platform_fee:                 # policy overhead, reported apart from model cost
      - effective_from: 2026-01-01
        per_request_usd: "0.0004"  # on every metered request a provider saw (not those the gateway refused)
        uplift_percent: "3"        # on the model cost (contracted)
    unattributed:
      strategy: pro_rata           # keep | owner | pro_rata
      owner: platform-team         # with strategy: owner
      dimensions:                  # optional, per --by dimension
        consumer: {strategy: keep}
    billing_account:               # names the FOCUS export's BillingAccount
      id: kong-ai-gateway
      name: Kong AI Gateway

Fees are effective-dated (UTC days; each entry holds until the next one), so
re-running last quarter's report after a fee change gives last quarter's
numbers. Without a file: no fee, unattributed usage kept on its own line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

STRATEGIES = ("keep", "owner", "pro_rata")
DEFAULT_BILLING_ACCOUNT_ID = "kong-ai-gateway"
DEFAULT_BILLING_ACCOUNT_NAME = "Kong AI Gateway"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FeePeriod:
    effective_from: date
    per_request: Decimal = Decimal(0)
    uplift_percent: Decimal = Decimal(0)


@dataclass(frozen=True)
class UnattributedRule:
    strategy: str = "keep"
    owner: str = ""


@dataclass(frozen=True)
class AllocationConfig:
    fees: tuple[FeePeriod, ...] = ()
    unattributed: UnattributedRule = UnattributedRule()
    per_dimension: Mapping[str, UnattributedRule] = field(default_factory=dict)
    billing_account_id: str = DEFAULT_BILLING_ACCOUNT_ID
    billing_account_name: str = DEFAULT_BILLING_ACCOUNT_NAME
    source: str = ""

    def rule_for(self, dimension: str) -> UnattributedRule:
        return self.per_dimension.get(dimension, self.unattributed)

    def fee_starts(self) -> list[date]:
        return [f.effective_from for f in self.fees]

    def fee_period(self, index: int) -> FeePeriod | None:
        """Period ``index`` as counted by SQL: how many fee periods started on or before a day."""
        return self.fees[index - 1] if index > 0 else None

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source or "(defaults)",
            "platform_fee": [
                {"effective_from": f.effective_from.isoformat(), "per_request_usd": str(f.per_request), "uplift_percent": str(f.uplift_percent)}
                for f in self.fees
            ],
            "unattributed": {"strategy": self.unattributed.strategy, "owner": self.unattributed.owner},
        }


def load(path: str | Path | None) -> AllocationConfig:
    if not path:
        return AllocationConfig()
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read allocation config {file}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: expected a mapping")
    return parse(data, source=str(file))


def parse(data: Mapping[str, Any], *, source: str = "") -> AllocationConfig:
    unknown = set(data) - {"platform_fee", "unattributed", "billing_account"}
    if unknown:
        raise ConfigError(f"unknown key(s): {', '.join(sorted(unknown))}")
    fees = tuple(sorted((_fee(entry) for entry in data.get("platform_fee") or []), key=lambda f: f.effective_from))
    if len({f.effective_from for f in fees}) != len(fees):
        raise ConfigError("platform_fee: two entries start on the same day")
    unattributed = data.get("unattributed") or {}
    rule = _rule(unattributed)
    per_dimension = {str(k): _rule(v) for k, v in (unattributed.get("dimensions") or {}).items()}
    account = data.get("billing_account") or {}
    return AllocationConfig(
        fees=fees,
        unattributed=rule,
        per_dimension=per_dimension,
        billing_account_id=str(account.get("id", DEFAULT_BILLING_ACCOUNT_ID)),
        billing_account_name=str(account.get("name", DEFAULT_BILLING_ACCOUNT_NAME)),
        source=source,
    )


def _rule(data: Mapping[str, Any]) -> UnattributedRule:
    strategy = str(data.get("strategy", "keep"))
    if strategy not in STRATEGIES:
        raise ConfigError(f"unattributed.strategy: expected one of {', '.join(STRATEGIES)}")
    owner = str(data.get("owner", "") or "")
    if strategy == "owner" and not owner:
        raise ConfigError("unattributed.owner: required with strategy owner")
    return UnattributedRule(strategy, owner)


def _fee(entry: Mapping[str, Any]) -> FeePeriod:
    try:
        start = entry["effective_from"]
        start = start if isinstance(start, date) else date.fromisoformat(str(start))
        per_request = Decimal(str(entry.get("per_request_usd", "0")))
        uplift = Decimal(str(entry.get("uplift_percent", "0")))
    except (KeyError, ValueError, InvalidOperation, TypeError) as exc:
        raise ConfigError(f"platform_fee entry {dict(entry)!r}: needs effective_from (YYYY-MM-DD) and decimal amounts") from exc
    if per_request < 0 or uplift < 0:
        raise ConfigError("platform_fee: amounts must not be negative")
    return FeePeriod(start, per_request, uplift)
