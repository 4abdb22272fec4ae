"""Burst traffic: an app's requests or tokens per minute far above its own baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

DEFAULT_MULTIPLE = 5.0
# Floors: a burst must be big in absolute terms too, or an app that usually
# sends 1 request a minute would flag at 6.
DEFAULT_MIN_REQUESTS_PER_MINUTE = 30
DEFAULT_MIN_TOKENS_PER_MINUTE = 100_000


@dataclass(frozen=True, slots=True)
class Bursts:
    scope: Scope
    multiple: float = DEFAULT_MULTIPLE
    min_requests_per_minute: int = DEFAULT_MIN_REQUESTS_PER_MINUTE
    min_tokens_per_minute: int = DEFAULT_MIN_TOKENS_PER_MINUTE
    only_flagged: bool = True
    NAME: ClassVar[str] = "bursts"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, self.multiple > 1, f"multiple must be > 1, got {self.multiple}")
        require(errors, self.min_requests_per_minute >= 1, f"min_requests_per_minute must be >= 1, got {self.min_requests_per_minute}")
        require(errors, self.min_tokens_per_minute >= 1, f"min_tokens_per_minute must be >= 1, got {self.min_tokens_per_minute}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "multiple": float(self.multiple),
            "min_requests_per_minute": self.min_requests_per_minute,
            "min_tokens_per_minute": self.min_tokens_per_minute,
            "only_flagged": int(self.only_flagged),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Burst minutes", what="burst minutes",
                       runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip
