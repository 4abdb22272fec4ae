"""Spend anomalies: a team/app's daily cost against its trailing median and MAD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

DEFAULT_BASELINE_DAYS = 14
DEFAULT_MIN_BASELINE_DAYS = 7
DEFAULT_MIN_FACTOR = 3.0
# Iglewicz and Hoaglin's cut-off for the modified z-score.
DEFAULT_MIN_ROBUST_Z = 3.5
# Pennies tripling are not an anomaly anyone should be paged for.
DEFAULT_MIN_DAILY_COST_USD = 1.0


@dataclass(frozen=True, slots=True)
class SpendAnomalies:
    scope: Scope
    baseline_days: int = DEFAULT_BASELINE_DAYS
    min_baseline_days: int = DEFAULT_MIN_BASELINE_DAYS
    min_factor: float = DEFAULT_MIN_FACTOR
    min_robust_z: float = DEFAULT_MIN_ROBUST_Z
    min_daily_cost_usd: float = DEFAULT_MIN_DAILY_COST_USD
    only_flagged: bool = True
    NAME: ClassVar[str] = "spend_anomalies"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, 1 <= self.baseline_days <= 366, f"baseline_days must be in 1..366, got {self.baseline_days}")
        require(errors, 1 <= self.min_baseline_days <= self.baseline_days,
                f"min_baseline_days must be in 1..baseline_days, got {self.min_baseline_days}")  # fmt: skip
        require(errors, self.min_factor > 1, f"min_factor must be > 1, got {self.min_factor}")
        require(errors, self.min_robust_z >= 0, f"min_robust_z must be >= 0, got {self.min_robust_z}")
        require(errors, self.min_daily_cost_usd >= 0, f"min_daily_cost_usd must be >= 0, got {self.min_daily_cost_usd}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "baseline_days": self.baseline_days,
            "min_baseline_days": self.min_baseline_days,
            "min_factor": float(self.min_factor),
            "min_robust_z": float(self.min_robust_z),
            "min_daily_cost": float(self.min_daily_cost_usd),
            "only_flagged": int(self.only_flagged),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Daily spend anomalies (median/MAD baseline)", what="anomalous days",
                       runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip
