"""Agent fan-out: many model calls under one W3C trace id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

DEFAULT_MIN_CALLS = 25


@dataclass(frozen=True, slots=True)
class FanOut:
    scope: Scope
    min_calls: int = DEFAULT_MIN_CALLS
    only_flagged: bool = True
    NAME: ClassVar[str] = "fan_out"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, self.min_calls >= 2, f"min_calls must be >= 2, got {self.min_calls}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {**self.scope.params(), "min_calls": self.min_calls, "only_flagged": int(self.only_flagged)}

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Agent fan-out by trace id", what="fanned-out traces",
                       runner=runner, sql=sql, params=params, scope=self.scope,
                       notes=("only requests carrying a traceparent header are counted",))  # fmt: skip
