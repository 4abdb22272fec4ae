"""Premium-model use: a configured model list, or any request above a price."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

# Off unless configured: which models count as premium is a policy decision.
DEFAULT_PREMIUM_MODELS: tuple[str, ...] = ()
DEFAULT_MIN_REQUEST_COST_USD = 0.0


@dataclass(frozen=True, slots=True)
class PremiumModels:
    scope: Scope
    models: tuple[str, ...] = DEFAULT_PREMIUM_MODELS
    min_request_cost_usd: float = DEFAULT_MIN_REQUEST_COST_USD
    NAME: ClassVar[str] = "premium_models"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, self.min_request_cost_usd >= 0, f"min_request_cost_usd must be >= 0, got {self.min_request_cost_usd}")
        require(errors, all(m.strip() for m in self.models), "premium model names must not be empty")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "premium_models": list(self.models),
            "min_request_cost": float(self.min_request_cost_usd),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        notes = () if self.models or self.min_request_cost_usd else ("no premium models or price threshold configured",)
        return listing(check=self.NAME, title="Premium-model use", what="groups using premium models",
                       runner=runner, sql=sql, params=params, scope=self.scope, notes=notes)  # fmt: skip
