"""Delivery findings: events set aside at ingest instead of billed.

Quarantined events broke the event contract and are missing from every figure;
replay conflicts are second versions of stored events (the stored one is
billed). Both list every finding; readiness judges their totals
(``delivery_gaps.sql``) next to the attribution summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, listing, load_sql


@dataclass(frozen=True, slots=True)
class ReplayConflicts:
    """Replays of stored event ids whose content differed, next to the version that stands."""

    scope: Scope
    NAME: ClassVar[str] = "replay_conflicts"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Replays that conflicted with stored events (set aside, not billed)",
                       what="replay conflicts", runner=runner, sql=sql, params=params, scope=self.scope,
                       notes=("The stored version of each event is what reports bill; resend a corrected event under "
                              "a new id if the stored one is wrong.",))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Events that broke the contract, by field, sender and team: unbilled until resent fixed."""

    scope: Scope
    NAME: ClassVar[str] = "quarantined_events"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Quarantined events (broke the event contract, not billed)",
                       what="quarantined event groups", runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip
