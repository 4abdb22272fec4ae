"""`chargeback governance ...`: attribution quality, shared credentials, usage exceptions, spend anomalies.

Every subcommand runs one check from ``aggregator/governance`` (one SQL file
each under ``governance/sql/``) and prints it as a table, CSV or JSON. Exit
codes suit CI: 0 clean / ready, 1 findings / not ready, 2 error.

    chargeback governance readiness --month 2025-03 --max-unattributed-share 0.05
    chargeback governance shared-credentials --days 7 --format json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..aggregator_client import AggregatorError, open_reader
from ..query_source import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    add_period_options,
    add_source_options,
    period_from,
)
from ..render import FORMATS, Report, Section, render

Builder = Callable[[argparse.Namespace, Any], Any]
UNSET = object()

# What the human table shows per check (CSV and JSON carry every column).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "readiness": ("metric", "value", "limit", "passed", "detail"),
    "unattributed": ("service", "route", "reason", "unattributed_requests", "route_requests", "request_share",
                     "unattributed_cost", "cost_share"),
    "identity_conflicts": ("attribute", "header_value", "resolved_value", "consumer", "requests", "cost", "first_seen", "last_seen"),
    "identity_sources": ("attribute", "source", "requests", "request_share", "cost", "cost_share"),
    "shared_credentials": ("kind", "identity", "consumer", "teams", "apps", "tenants", "client_ips", "team_list", "requests",
                           "cost", "first_seen", "last_seen", "reasons"),
    "premium_models": ("tenant", "team", "app", "model", "premium_requests", "by_model", "by_price", "premium_cost",
                       "max_request_cost", "first_seen", "last_seen"),
    "cache_misses": ("tenant", "team", "app", "requests", "request_miss_ratio", "token_hit_ratio", "cost", "reasons"),
    "bursts": ("tenant", "team", "app", "minute", "requests", "tokens", "baseline_requests", "baseline_tokens", "reasons"),
    "retries": ("tenant", "team", "app", "route", "requests", "upstream_retried", "extra_upstream_tries", "client_retried",
                "retry_share", "error_requests", "reasons"),
    "fan_out": ("trace_id", "team", "app", "calls", "models", "cost", "first_seen", "duration_s", "reasons"),
    "spend_anomalies": ("tenant", "team", "app", "day", "cost", "baseline_median", "baseline_mad", "factor", "robust_z", "reasons"),
    "replay_conflicts": ("event_id", "detected_at", "sender_id", "differs", "stored_team", "replay_team", "stored_input_tokens",
                         "replay_input_tokens", "stored_output_tokens", "replay_output_tokens", "billed_cost"),
    "quarantined_events": ("field", "sender_id", "tenant", "team", "app", "events", "input_tokens", "example_reason",
                           "first_seen", "last_seen"),
}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    governance = subparsers.add_parser(
        "governance",
        help="attribution quality, shared credentials, usage exceptions and spend anomalies",
        description="Governance checks over metered AI traffic. Exit 0: clean/ready; 1: findings/not ready; 2: error.",
    )
    checks = governance.add_subparsers(dest="governance_command", metavar="CHECK", required=True)

    p = _check(checks, "readiness", "is showback ready for chargeback? (verdict with reasons)", _readiness)
    _readiness_options(p)
    p = _check(checks, "attribution", "readiness verdict plus unattributed traffic, conflicts and identity sources", _attribution)
    _readiness_options(p)
    _check(
        checks, "unattributed", "unattributed share of requests and cost by service, route and reason", _simple("Unattributed")
    )
    _check(checks, "conflicts", "identity headers that disagreed with the resolved identity", _simple("IdentityConflicts"))
    _check(checks, "identity-sources", "where tenant/team/app/workload attribution came from", _simple("IdentitySources"))

    p = _check(checks, "shared-credentials", "credentials or consumers used by several teams, apps, tenants or many IPs",
               _shared_credentials, listing=True)  # fmt: skip
    _shared_options(p)
    p = _check(checks, "premium", "premium-model use, by model list or per-request price", _premium)
    _premium_options(p)
    p = _check(checks, "cache", "cache-miss ratio per app where caching is expected", _cache, listing=True)
    _cache_options(p)
    p = _check(checks, "bursts", "requests or tokens per minute above a multiple of the app's baseline", _bursts, listing=True)
    _burst_options(p)
    p = _check(checks, "retries", "retry storms: upstream tries > 1 and client retries", _retries, listing=True)
    _retry_options(p)
    p = _check(checks, "fan-out", "agent runs: many model calls under one trace id", _fan_out, listing=True)
    _fan_out_options(p)
    p = _check(checks, "anomalies", "daily cost per team/app against a trailing median/MAD baseline", _anomalies, listing=True)
    _anomaly_options(p)
    _check(checks, "replay-conflicts", "replays of stored events with other content (set aside, never billed)",
           _simple("ReplayConflicts"))  # fmt: skip
    _check(checks, "quarantine", "events that broke the event contract (kept with the reason, never billed)",
           _simple("Quarantined"))  # fmt: skip

    p = _check(checks, "all", "every check at once (premium and cache when configured); exit 1 if any is not clean",
               _all, listing=True)  # fmt: skip
    for add in (_readiness_options, _shared_options, _premium_options, _cache_options, _burst_options, _retry_options,
                _fan_out_options, _anomaly_options):  # fmt: skip
        add(p)
    p.set_defaults(combined=True)


def _shared_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-teams", type=int, help="flag above this many teams (default 1)")
    p.add_argument("--max-apps", type=int, help="flag above this many apps (default 1)")
    p.add_argument("--max-tenants", type=int, help="flag above this many tenants (default 1)")
    p.add_argument("--max-client-ips", type=int, help="flag above this many client IPs (default 50)")


def _premium_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=[], metavar="NAME", help="premium model; 'prefix*' allowed (repeatable)")
    p.add_argument("--min-request-cost", type=float, metavar="USD", help="a request costing at least this is premium")


def _cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", action="append", default=[], metavar="APP", help="app expected to hit the prompt cache (repeatable)")
    p.add_argument("--min-hit-ratio", type=float, help="flag below this cached/input token ratio (default 0.5)")
    p.add_argument(
        "--min-cache-requests", dest="min_requests_cache", type=int, help="ignore apps with fewer requests (default 20)"
    )


def _burst_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--multiple", type=float, help="times the app's median minute (default 5)")
    p.add_argument("--min-rpm", type=int, help="a request burst needs at least this many requests/minute (default 30)")
    p.add_argument("--min-tpm", type=int, help="a token burst needs at least this many tokens/minute (default 100000)")


def _retry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-retry-share", type=float, help="flag above this share of retried requests (default 0.1)")
    p.add_argument("--min-retried", type=int, help="... with at least this many retried requests (default 20)")


def _fan_out_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-calls", type=int, help="flag traces with at least this many calls (default 25)")


def _anomaly_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline-days", type=int, help="trailing window in days (default 14)")
    p.add_argument("--min-baseline-days", type=int, help="days with traffic needed in the window (default 7)")
    p.add_argument("--min-factor", type=float, help="cost / median at least (default 3)")
    p.add_argument("--min-robust-z", type=float, help="modified z-score at least (default 3.5)")
    p.add_argument("--min-daily-cost", type=float, metavar="USD", help="ignore days cheaper than this (default 1)")


def _check(
    checks: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    builder: Builder,
    *,
    listing: bool = False,
) -> argparse.ArgumentParser:
    parser = checks.add_parser(name, help=help_text, description=help_text)
    add_source_options(parser)
    add_period_options(parser)
    parser.add_argument("--tenant", default="", help="only this tenant")
    parser.add_argument("--format", choices=FORMATS, default="table")
    if listing:
        parser.add_argument("--all", action="store_true", help="also list what was checked and not flagged")
    parser.set_defaults(handler=lambda args: run(args, builder))
    return parser


def _readiness_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-unattributed-share", type=float, help="max unattributed share of requests (default 0.02)")
    p.add_argument("--max-unattributed-cost-share", type=float, help="max unattributed share of cost (default 0.02)")
    p.add_argument("--max-conflict-share", type=float, help="max share of requests with identity conflicts (default 0.01)")
    # 'off' is a value here (None), so "not given" needs its own marker.
    p.add_argument(
        "--max-unpriced-share", type=_share_or_off, default=UNSET, help="max share of unpriced requests, or 'off' (default 0.05)"
    )
    p.add_argument(
        "--max-estimated-cost-share",
        type=_share_or_off,
        default=UNSET,
        help="max share of cost from estimated usage, or 'off' (default 0.05)",
    )
    p.add_argument(
        "--max-unmeasured-share",
        type=_share_or_off,
        default=UNSET,
        help="max share of answered requests with no usage at all, or 'off' (default 0.01)",
    )
    p.add_argument("--max-header-team-share", type=_share_or_off, default=UNSET,
                   help="max share of requests whose team came from a header, or 'off' (default off)")  # fmt: skip
    p.add_argument("--min-requests", type=int, help="fewer requests than this is not ready (default 1)")
    p.add_argument(
        "--max-unbilled-share",
        type=_share_or_off,
        default=UNSET,
        help="max share of events quarantined or reported lost, or 'off' (default 0.001)",
    )
    p.add_argument("--max-replay-conflicts", type=_count_or_off, default=UNSET,
                   help="max replays that conflicted with stored events, or 'off' (default 0)")  # fmt: skip


def _share_or_off(text: str) -> float | None:
    return None if text.lower() == "off" else float(text)


def _count_or_off(text: str) -> int | None:
    return None if text.lower() == "off" else int(text)


def _given(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """Keyword arguments for a check from the options the user set (unset ones keep the check's default)."""
    return {param: getattr(args, option) for param, option in names.items() if getattr(args, option, None) is not None}


def _thresholds(args: argparse.Namespace) -> Any:
    from ...analytics.governance import Thresholds

    kwargs = _given(args, max_unattributed_request_share="max_unattributed_share",
                    max_unattributed_cost_share="max_unattributed_cost_share", max_conflict_share="max_conflict_share",
                    min_requests="min_requests")  # fmt: skip
    for param in (
        "max_unpriced_share",
        "max_estimated_cost_share",
        "max_unmeasured_share",
        "max_header_team_share",
        "max_unbilled_share",
        "max_replay_conflicts",
    ):
        if getattr(args, param) is not UNSET:
            kwargs[param] = getattr(args, param)
    return Thresholds(**kwargs)


def _readiness(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import Readiness

    return Readiness(scope, _thresholds(args))


def _attribution(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import (
        IdentityConflicts,
        IdentitySources,
        Readiness,
        Unattributed,
    )

    return [Readiness(scope, _thresholds(args)), Unattributed(scope), IdentityConflicts(scope), IdentitySources(scope)]


def _simple(class_name: str) -> Builder:
    def build(args: argparse.Namespace, scope: Any) -> Any:
        from ...analytics import governance

        return getattr(governance, class_name)(scope)

    return build


def _only_flagged(args: argparse.Namespace) -> dict[str, Any]:
    return {"only_flagged": not getattr(args, "all", False)}


def _shared_credentials(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import SharedCredentials

    return SharedCredentials(scope, **_given(args, max_teams="max_teams", max_apps="max_apps", max_tenants="max_tenants",
                                             max_client_ips="max_client_ips"), **_only_flagged(args))  # fmt: skip


def _premium(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import PremiumModels

    return PremiumModels(scope, models=tuple(args.model), **_given(args, min_request_cost_usd="min_request_cost"))


def _cache(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import CacheMisses

    return CacheMisses(scope, apps=tuple(args.app), **_given(args, min_hit_ratio="min_hit_ratio", min_requests="min_requests_cache"),
                       **_only_flagged(args))  # fmt: skip


def _bursts(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import Bursts

    return Bursts(scope, **_given(args, multiple="multiple", min_requests_per_minute="min_rpm", min_tokens_per_minute="min_tpm"),
                  **_only_flagged(args))  # fmt: skip


def _retries(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import Retries

    return Retries(scope, **_given(args, max_retry_share="max_retry_share", min_retried="min_retried"), **_only_flagged(args))


def _fan_out(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import FanOut

    return FanOut(scope, **_given(args, min_calls="min_calls"), **_only_flagged(args))


def _anomalies(args: argparse.Namespace, scope: Any) -> Any:
    from ...analytics.governance import SpendAnomalies

    return SpendAnomalies(scope, **_given(args, baseline_days="baseline_days", min_baseline_days="min_baseline_days",
                                          min_factor="min_factor", min_robust_z="min_robust_z",
                                          min_daily_cost_usd="min_daily_cost"), **_only_flagged(args))  # fmt: skip


def _all(args: argparse.Namespace, scope: Any) -> Any:
    checks = [_readiness(args, scope), _shared_credentials(args, scope)]
    if args.model or args.min_request_cost:
        checks.append(_premium(args, scope))
    if args.app:
        checks.append(_cache(args, scope))
    checks += [_bursts(args, scope), _retries(args, scope), _fan_out(args, scope), _anomalies(args, scope)]
    checks += [_simple("ReplayConflicts")(args, scope), _simple("Quarantined")(args, scope)]
    return checks


def run(args: argparse.Namespace, builder: Builder) -> int:
    from ...analytics.governance import GovernanceError, Scope
    from ...store.clickhouse import StoreError

    prog = f"chargeback governance {args.governance_command}"
    try:
        period = period_from(args)
        assert period is not None
        with open_reader(args) as runner:
            scope = Scope(period=period, database=runner.database, tenant=args.tenant)
            built = builder(args, scope)
            checks = built if isinstance(built, list) else [built]
            results = [check.run(runner) for check in checks]
    except (AggregatorError, GovernanceError, StoreError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    report = to_report(results, period=str(period), tenant=args.tenant, combined=getattr(args, "combined", False))
    render(report, args.format, sys.stdout)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def to_report(results: Sequence[Any], *, period: str, tenant: str = "", combined: bool = False) -> Report:
    """The first result judges and the others add sections; combined, every result judges."""
    head = results[0]
    sections = [
        Section(
            name=r.check,
            title=r.title,
            columns=r.columns or TABLE_COLUMNS.get(r.check, ()),
            rows=r.rows,
            table_columns=TABLE_COLUMNS.get(r.check),
        )
        for r in results
    ]
    meta: dict[str, Any] = {"check": head.check, "period": period}
    if tenant:
        meta["tenant"] = tenant
    if "summary" in head.extra:
        meta["summary"] = head.extra["summary"]
    notes = [note for r in results for note in r.notes]
    if combined:
        failed = [r for r in results if not r.verdict.ok]
        reasons = [f"{r.check}: {r.verdict.label}" + (f" ({'; '.join(r.verdict.reasons)})" if r.verdict.reasons else "")
                   for r in results]  # fmt: skip
        meta["check"] = "all"
        return Report(title="Governance checks", ok=not failed, verdict="clean" if not failed else f"{len(failed)} of {len(results)} checks not clean",
                      reasons=reasons, sections=sections, notes=notes, meta=meta)  # fmt: skip
    return Report(title=head.title, ok=head.verdict.ok, verdict=head.verdict.label, reasons=head.verdict.reasons,
                  sections=sections, notes=notes, meta=meta)  # fmt: skip
