"""Every governance check, once: its command, what its options set, what its table shows.

The CLI (``chargeback governance ...``) is built from this list: a subcommand per
entry, its options, whether ``governance all`` runs it. Adding a check is its
module, its SQL file and one entry here (docs/architecture.md). Option defaults
are not written here: help texts read them from the dataclass the option sets,
so the check's default is the only one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, Protocol

from .attribution import IdentityConflicts, IdentitySources, Unattributed
from .base import CheckResult, Runner, Scope
from .bursts import Bursts
from .cache_misses import CacheMisses
from .delivery import Quarantined, ReplayConflicts
from .fan_out import FanOut
from .premium_models import PremiumModels
from .readiness import Readiness, Thresholds
from .retries import Retries
from .shared_credentials import SharedCredentials
from .spend_anomalies import SpendAnomalies


class Check(Protocol):
    def run(self, runner: Runner) -> CheckResult: ...


def share_or_off(text: str) -> float | None:
    """A fraction, or 'off' (None: the criterion is not checked)."""
    return None if text.lower() == "off" else float(text)


def count_or_off(text: str) -> int | None:
    return None if text.lower() == "off" else int(text)


@dataclass(frozen=True, slots=True)
class Option:
    """A command-line option and the parameter it sets (on the check, or on ``Thresholds`` for readiness)."""

    flag: str
    param: str
    help: str
    type: Callable[[str], Any] = float
    repeatable: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def default_text(self, owner: type) -> str:
        for f in fields(owner):
            if f.name == self.param and f.default is not MISSING:
                value = f.default
                if value is None:
                    return "off"
                if isinstance(value, tuple):
                    return ", ".join(map(str, value)) or "none"
                return str(value)
        return ""


Build = Callable[[Scope, Mapping[str, Any]], list[Check]]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    command: str
    summary: str
    check: type  # the check whose NAME keys its result; its dataclass fields hold the defaults
    columns: tuple[str, ...]  # what the human table shows (CSV and JSON carry every column)
    options: tuple[Option, ...] = ()
    listing: bool = False  # lists what it flags; --all lists what was checked too
    in_all: bool = True
    # In `governance all` only when one of these parameters was given (a check that needs configuration).
    all_needs: tuple[str, ...] = ()
    build: Build | None = None
    params_of: type | None = None  # where the options' defaults live, when not on ``check``
    result: str = ""  # the result's check name, when not ``check.NAME``

    @property
    def key(self) -> str:
        return self.result or self.check.NAME

    @property
    def defaults_owner(self) -> type:
        return self.params_of or self.check

    def checks(self, scope: Scope, given: Mapping[str, Any]) -> list[Check]:
        """The checks to run with the options given (unset options keep the defaults)."""
        if self.build is not None:
            return self.build(scope, given)
        return [self.check(scope, **given)]

    def runs_in_all(self, given: Mapping[str, Any]) -> bool:
        return self.in_all and (not self.all_needs or any(given.get(param) for param in self.all_needs))


def _readiness(scope: Scope, given: Mapping[str, Any]) -> list[Check]:
    return [Readiness(scope, Thresholds(**given))]


def _attribution(scope: Scope, given: Mapping[str, Any]) -> list[Check]:
    return [Readiness(scope, Thresholds(**given)), Unattributed(scope), IdentityConflicts(scope), IdentitySources(scope)]


READINESS_OPTIONS = (
    Option("--max-unattributed-share", "max_unattributed_request_share", "max unattributed share of requests"),
    Option("--max-unattributed-cost-share", "max_unattributed_cost_share", "max unattributed share of cost"),
    Option("--max-conflict-share", "max_conflict_share", "max share of requests with identity conflicts"),
    Option("--max-unpriced-share", "max_unpriced_share", "max share of unpriced requests, or 'off'", share_or_off),
    Option("--max-estimated-cost-share", "max_estimated_cost_share", "max share of cost from estimated usage, or 'off'",
           share_or_off),  # fmt: skip
    Option("--max-unmeasured-share", "max_unmeasured_share", "max share of answered requests with no usage at all, or 'off'",
           share_or_off),  # fmt: skip
    Option("--max-header-team-share", "max_header_team_share", "max share of requests whose team came from a header, or 'off'",
           share_or_off),  # fmt: skip
    Option("--min-requests", "min_requests", "fewer requests than this is not ready", int),
    Option("--max-unbilled-share", "max_unbilled_share", "max share of events quarantined or reported lost, or 'off'",
           share_or_off),  # fmt: skip
    Option("--max-replay-conflicts", "max_replay_conflicts", "max replays that conflicted with stored events, or 'off'",
           count_or_off),  # fmt: skip
)

GOVERNANCE_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("readiness", "is showback ready for chargeback? (verdict with reasons)", Readiness,
              ("metric", "value", "limit", "passed", "detail"), READINESS_OPTIONS, build=_readiness, params_of=Thresholds,
              result="readiness"),
    CheckSpec("attribution", "readiness verdict plus unattributed traffic, conflicts and identity sources", Readiness,
              ("metric", "value", "limit", "passed", "detail"), READINESS_OPTIONS, in_all=False, build=_attribution,
              params_of=Thresholds, result="readiness"),
    CheckSpec("unattributed", "unattributed share of requests and cost by service, route and reason", Unattributed,
              ("service", "route", "reason", "unattributed_requests", "route_requests", "request_share", "unattributed_cost",
               "cost_share"), in_all=False),
    CheckSpec("conflicts", "identity headers that disagreed with the resolved identity", IdentityConflicts,
              ("attribute", "header_value", "resolved_value", "consumer", "requests", "cost", "first_seen", "last_seen"),
              in_all=False),
    CheckSpec("identity-sources", "where tenant/team/app/workload attribution came from", IdentitySources,
              ("attribute", "source", "requests", "request_share", "cost", "cost_share"), in_all=False),
    CheckSpec("shared-credentials", "credentials or consumers used by several teams, apps, tenants or many IPs", SharedCredentials,
              ("kind", "identity", "consumer", "teams", "apps", "tenants", "client_ips", "team_list", "requests", "cost",
               "first_seen", "last_seen", "reasons"),
              (Option("--max-teams", "max_teams", "flag above this many teams", int),
               Option("--max-apps", "max_apps", "flag above this many apps", int),
               Option("--max-tenants", "max_tenants", "flag above this many tenants", int),
               Option("--max-client-ips", "max_client_ips", "flag above this many client IPs", int)), listing=True),
    CheckSpec("premium", "premium-model use, by model list or per-request price", PremiumModels,
              ("tenant", "team", "app", "model", "premium_requests", "by_model", "by_price", "premium_cost", "max_request_cost",
               "first_seen", "last_seen"),
              (Option("--model", "models", "premium model; 'prefix*' allowed (repeatable)", str, repeatable=True, metavar="NAME"),
               Option("--min-request-cost", "min_request_cost_usd", "a request costing at least this is premium", metavar="USD")),
              all_needs=("models", "min_request_cost_usd")),
    CheckSpec("cache", "cache-miss ratio per app where caching is expected", CacheMisses,
              ("tenant", "team", "app", "requests", "request_miss_ratio", "token_hit_ratio", "cost", "reasons"),
              (Option("--app", "apps", "app expected to hit the prompt cache (repeatable)", str, repeatable=True, metavar="APP"),
               Option("--min-hit-ratio", "min_hit_ratio", "flag below this cached/input token ratio"),
               Option("--min-cache-requests", "min_requests", "ignore apps with fewer requests", int)),
              listing=True, all_needs=("apps",)),
    CheckSpec("bursts", "requests or tokens per minute above a multiple of the app's baseline", Bursts,
              ("tenant", "team", "app", "minute", "requests", "tokens", "baseline_requests", "baseline_tokens", "reasons"),
              (Option("--multiple", "multiple", "times the app's median minute"),
               Option("--min-rpm", "min_requests_per_minute", "a request burst needs at least this many requests/minute", int),
               Option("--min-tpm", "min_tokens_per_minute", "a token burst needs at least this many tokens/minute", int)),
              listing=True),
    CheckSpec("retries", "retry storms: upstream tries > 1 and client retries", Retries,
              ("tenant", "team", "app", "route", "requests", "upstream_retried", "extra_upstream_tries", "client_retried",
               "retry_share", "error_requests", "reasons"),
              (Option("--max-retry-share", "max_retry_share", "flag above this share of retried requests"),
               Option("--min-retried", "min_retried", "... with at least this many retried requests", int)), listing=True),
    CheckSpec("fan-out", "agent runs: many model calls under one trace id", FanOut,
              ("trace_id", "team", "app", "calls", "models", "cost", "first_seen", "duration_s", "reasons"),
              (Option("--min-calls", "min_calls", "flag traces with at least this many calls", int),), listing=True),
    CheckSpec("anomalies", "daily cost per team/app against a trailing median/MAD baseline", SpendAnomalies,
              ("tenant", "team", "app", "day", "cost", "baseline_median", "baseline_mad", "factor", "robust_z", "reasons"),
              (Option("--baseline-days", "baseline_days", "trailing window in days", int),
               Option("--min-baseline-days", "min_baseline_days", "days with traffic needed in the window", int),
               Option("--min-factor", "min_factor", "cost / median at least"),
               Option("--min-robust-z", "min_robust_z", "modified z-score at least"),
               Option("--min-daily-cost", "min_daily_cost_usd", "ignore days cheaper than this", metavar="USD")), listing=True),
    CheckSpec("replay-conflicts", "replays of stored events with other content (set aside, never billed)", ReplayConflicts,
              ("event_id", "detected_at", "sender_id", "differs", "stored_team", "replay_team", "stored_input_tokens",
               "replay_input_tokens", "stored_output_tokens", "replay_output_tokens", "billed_cost")),
    CheckSpec("quarantine", "events that broke the event contract (kept with the reason, never billed)", Quarantined,
              ("field", "sender_id", "tenant", "team", "app", "events", "input_tokens", "example_reason", "first_seen",
               "last_seen")),
)  # fmt: skip

# What the human table shows per result (keyed by the result's check name).
TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = {spec.key: spec.columns for spec in GOVERNANCE_CHECKS}


def all_options(specs: Sequence[CheckSpec] = GOVERNANCE_CHECKS) -> Sequence[tuple[Option, type]]:
    """Every option of the checks `governance all` may run, once each, with the dataclass holding its default."""
    seen: dict[str, tuple[Option, type]] = {}
    for spec in specs:
        if spec.in_all:
            for option in spec.options:
                seen.setdefault(option.flag, (option, spec.defaults_owner))
    return tuple(seen.values())
