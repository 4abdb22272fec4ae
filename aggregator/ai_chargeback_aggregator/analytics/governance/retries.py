"""Retries: upstream tries beyond the first, and client-declared retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

# One request in ten retried is far above a healthy provider's error rate.
DEFAULT_MAX_RETRY_SHARE = 0.10
DEFAULT_MIN_RETRIED = 20


@dataclass(frozen=True, slots=True)
class Retries:
    scope: Scope
    max_retry_share: float = DEFAULT_MAX_RETRY_SHARE
    min_retried: int = DEFAULT_MIN_RETRIED
    only_flagged: bool = True
    NAME: ClassVar[str] = "retries"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, 0 <= self.max_retry_share <= 1, f"max_retry_share must be in 0..1, got {self.max_retry_share}")
        require(errors, self.min_retried >= 1, f"min_retried must be >= 1, got {self.min_retried}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "max_retry_share": float(self.max_retry_share),
            "min_retried": self.min_retried,
            "only_flagged": int(self.only_flagged),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Retries by app and route", what="retry storms",
                       runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip
