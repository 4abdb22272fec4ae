"""Attribution breakdowns: unattributed traffic by route/service/reason, identity
conflicts, and where identity attributes came from.

These list; the judging is in :mod:`.readiness`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, Verdict, listing, load_sql, run_query


@dataclass(frozen=True, slots=True)
class Unattributed:
    """Unattributed requests and cost by service, route and reason."""

    scope: Scope
    NAME: ClassVar[str] = "unattributed"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Unattributed traffic by service, route and reason",
                       what="routes with unattributed traffic", runner=runner, sql=sql, params=params,
                       scope=self.scope)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdentityConflicts:
    """Header claims that disagreed with the resolved identity."""

    scope: Scope
    NAME: ClassVar[str] = "identity_conflicts"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Identity conflicts (header vs resolved identity)",
                       what="identity conflicts", runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdentitySources:
    """Share of each identity source per attribute: informational, never a finding."""

    scope: Scope
    NAME: ClassVar[str] = "identity_sources"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        columns, rows = run_query(runner, sql, params)
        return CheckResult(
            check=self.NAME,
            title="Identity-source mix",
            columns=columns,
            rows=rows,
            verdict=Verdict(ok=True, label="info", reasons=("informational",)),
            scope=self.scope,
        )
