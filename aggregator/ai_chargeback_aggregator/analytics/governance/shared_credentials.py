"""Shared credentials (OWASP NHI-01): one credential or consumer, many teams, apps, tenants or IPs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import CheckResult, Runner, Scope, check_all, listing, load_sql, require

# One accountable owner per credential is the point: more than one team, app
# or tenant is already a finding. Client IPs vary legitimately (autoscaled
# pods, NAT pools), so the IP limit is generous and meant to be tuned.
DEFAULT_MAX_TEAMS = 1
DEFAULT_MAX_APPS = 1
DEFAULT_MAX_TENANTS = 1
DEFAULT_MAX_CLIENT_IPS = 50


@dataclass(frozen=True, slots=True)
class SharedCredentials:
    scope: Scope
    max_teams: int = DEFAULT_MAX_TEAMS
    max_apps: int = DEFAULT_MAX_APPS
    max_tenants: int = DEFAULT_MAX_TENANTS
    max_client_ips: int = DEFAULT_MAX_CLIENT_IPS
    only_flagged: bool = True
    NAME: ClassVar[str] = "shared_credentials"

    def validate(self) -> None:
        errors: list[str] = []
        for name in ("max_teams", "max_apps", "max_tenants", "max_client_ips"):
            require(errors, getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check_all(errors)

    def render(self) -> tuple[str, dict[str, Any]]:
        self.validate()
        return load_sql(self.NAME), {
            **self.scope.params(),
            "max_teams": self.max_teams,
            "max_apps": self.max_apps,
            "max_tenants": self.max_tenants,
            "max_client_ips": self.max_client_ips,
            "only_flagged": int(self.only_flagged),
        }

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        return listing(check=self.NAME, title="Shared credentials and consumers", what="shared identities",
                       runner=runner, sql=sql, params=params, scope=self.scope)  # fmt: skip
