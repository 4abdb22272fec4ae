"""Prompt-cache misses per app, for the apps expected to cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

# Half the input tokens served from cache is a modest bar for an app built on
# a shared prefix; below it the prefix is likely changing per request.
DEFAULT_MIN_HIT_RATIO = 0.5
# Too few requests say nothing about a cache (the first call always misses).
DEFAULT_MIN_REQUESTS = 20


@dataclass(frozen=True, slots=True)
class CacheMisses:
    scope: Scope
    apps: tuple[str, ...] = ()
    min_hit_ratio: float = DEFAULT_MIN_HIT_RATIO
    min_requests: int = DEFAULT_MIN_REQUESTS
    only_flagged: bool = True
    NAME: ClassVar[str] = "cache_misses"

    def validate(self) -> None:
        errors: list[str] = []
        require(errors, 0 <= self.min_hit_ratio <= 1, f"min_hit_ratio must be in 0..1, got {self.min_hit_ratio}")
        require(errors, self.min_requests >= 0, f"min_requests must be >= 0, got {self.min_requests}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "apps": list(self.apps),
            "min_hit_ratio": float(self.min_hit_ratio),
            "min_requests": self.min_requests,
            "only_flagged": int(self.only_flagged),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        notes = () if self.apps else ("no apps configured as expecting cache hits: nothing checked",)
        return listing(check=self.NAME, title="Cache-miss ratio per app", what="apps missing the cache",
                       runner=runner, sql=sql, params=params, scope=self.scope, notes=notes)  # fmt: skip
