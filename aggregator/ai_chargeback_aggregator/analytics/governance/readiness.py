"""Is showback ready to become chargeback? One verdict with its reasons.

Chargeback bills teams; it is fair only when nearly every request and dollar
ties to an accountable team through an authenticated identity, and when the
figures are whole. The verdict compares the period's attribution summary
(governance/sql/attribution_summary.sql) and its delivery gaps (events
quarantined or reported lost, replays that conflicted with stored events:
governance/sql/delivery_gaps.sql) with thresholds; every threshold that fails
is a reason, explained with the largest contributors so the reader knows what
to fix first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .attribution import IdentityConflicts, Unattributed
from .base import (
    CheckResult,
    GovernanceError,
    Row,
    Runner,
    Scope,
    Verdict,
    check_all,
    load_sql,
    require,
    run_query,
)

# Shares are fractions (0.02 = 2%). Defaults: a few percent of unattributed
# spend is what a finance team can still spread as overhead; conflicts should
# be rare, since each one is a client claiming an identity it was not given.
DEFAULT_MAX_UNATTRIBUTED_REQUEST_SHARE = 0.02
DEFAULT_MAX_UNATTRIBUTED_COST_SHARE = 0.02
DEFAULT_MAX_CONFLICT_SHARE = 0.01
# Unpriced requests have no cost at all, so a bill built on them is short.
DEFAULT_MAX_UNPRICED_SHARE = 0.05
# Estimated usage is labelled, but a bill built mostly on estimates can be challenged; an
# answered request nobody measured has no cost at all. See docs/governance.md.
DEFAULT_MAX_ESTIMATED_COST_SHARE: float | None = 0.05
DEFAULT_MAX_UNMEASURED_SHARE: float | None = 0.01
# Header-sourced teams are only as trustworthy as the client; off by default
# because some deployments attribute by trusted internal headers on purpose.
DEFAULT_MAX_HEADER_TEAM_SHARE: float | None = None
DEFAULT_MIN_REQUESTS = 1
# Events missing from the figures (quarantined or lost) as a share of all the period's events:
# a bill may miss a few in ten thousand, not more.
DEFAULT_MAX_UNBILLED_SHARE = 0.001
# A replay that conflicts with a stored event means two versions of one request's usage: each
# is worth a look before a bill goes out.
DEFAULT_MAX_REPLAY_CONFLICTS = 0
TOP_CONTRIBUTORS = 3

GAPS = "delivery_gaps"
READY = "ready for chargeback"
NOT_READY = "not ready for chargeback"


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_unattributed_request_share: float = DEFAULT_MAX_UNATTRIBUTED_REQUEST_SHARE
    max_unattributed_cost_share: float = DEFAULT_MAX_UNATTRIBUTED_COST_SHARE
    max_conflict_share: float = DEFAULT_MAX_CONFLICT_SHARE
    max_unpriced_share: float | None = DEFAULT_MAX_UNPRICED_SHARE
    max_estimated_cost_share: float | None = DEFAULT_MAX_ESTIMATED_COST_SHARE
    max_unmeasured_share: float | None = DEFAULT_MAX_UNMEASURED_SHARE
    max_header_team_share: float | None = DEFAULT_MAX_HEADER_TEAM_SHARE
    min_requests: int = DEFAULT_MIN_REQUESTS
    max_unbilled_share: float | None = DEFAULT_MAX_UNBILLED_SHARE
    max_replay_conflicts: int | None = DEFAULT_MAX_REPLAY_CONFLICTS

    def validate(self) -> None:
        errors: list[str] = []
        for name in ("max_unattributed_request_share", "max_unattributed_cost_share", "max_conflict_share",
                     "max_unpriced_share", "max_estimated_cost_share", "max_unmeasured_share", "max_header_team_share",
                     "max_unbilled_share"):  # fmt: skip
            value = getattr(self, name)
            require(errors, value is None or 0 <= value <= 1, f"{name} must be a fraction in 0..1, got {value}")
        require(errors, self.min_requests >= 0, f"min_requests must be >= 0, got {self.min_requests}")
        require(errors, self.max_replay_conflicts is None or self.max_replay_conflicts >= 0,
                f"max_replay_conflicts must be >= 0, got {self.max_replay_conflicts}")  # fmt: skip
        check_all(errors)


@dataclass(frozen=True, slots=True)
class Readiness:
    scope: Scope
    thresholds: Thresholds = Thresholds()
    NAME: ClassVar[str] = "attribution_summary"

    def render(self) -> tuple[str, dict[str, Any]]:
        self.thresholds.validate()
        return load_sql(self.NAME), self.scope.params()

    def run(self, runner: Runner) -> CheckResult:
        sql, params = self.render()
        _, rows = run_query(runner, sql, params)
        if len(rows) != 1:
            raise GovernanceError(f"attribution summary returned {len(rows)} rows, expected 1")
        summary = rows[0]
        unattributed = Unattributed(self.scope).run(runner).rows
        conflicts = IdentityConflicts(self.scope).run(runner).rows
        _, gap_rows = run_query(runner, load_sql(GAPS), self.scope.params())
        metrics = judge(summary, self.thresholds, unattributed=unattributed, conflicts=conflicts,
                        gaps=gap_rows[0] if gap_rows else None)  # fmt: skip
        failed = [m for m in metrics if not m["passed"]]
        if failed:
            verdict = Verdict(ok=False, label=NOT_READY, reasons=tuple(m["detail"] for m in failed))
        else:
            verdict = Verdict(ok=True, label=READY, reasons=tuple(m["detail"] for m in metrics))
        return CheckResult(
            check="readiness",
            title=f"Chargeback readiness: {verdict.label}",
            columns=("metric", "value", "limit", "passed", "detail"),
            rows=tuple(metrics),
            verdict=verdict,
            scope=self.scope,
            extra={"summary": {**summary, **(gap_rows[0] if gap_rows else {})}},
        )


def judge(summary: Row, t: Thresholds, *, unattributed: Sequence[Row] = (), conflicts: Sequence[Row] = (),
          gaps: Row | None = None) -> list[Row]:  # fmt: skip
    """One row per criterion: metric, value, limit, passed, detail (a sentence)."""
    requests = int(summary["requests"])
    metrics: list[Row] = []

    def add(metric: str, value: float, limit: float, passed: bool, detail: str) -> None:
        metrics.append({"metric": metric, "value": value, "limit": limit, "passed": passed, "detail": detail})

    add("requests", requests, t.min_requests, requests >= t.min_requests,
        f"{requests} requests in the period" + ("" if requests >= t.min_requests else f", fewer than {t.min_requests}: nothing to charge back"))  # fmt: skip

    share = float(summary["unattributed_request_share"])
    passed = share <= t.max_unattributed_request_share
    detail = (f"unattributed requests {_pct(share)} ({summary['unattributed_requests']} of {requests}) "
              f"{'<=' if passed else '>'} {_pct(t.max_unattributed_request_share)}")  # fmt: skip
    if not passed:
        detail += _top(unattributed, "unattributed_requests", lambda r: f"{r['service']}/{r['route']} ({r['reason']})")
    add("unattributed_request_share", share, t.max_unattributed_request_share, passed, detail)

    share = float(summary["unattributed_cost_share"])
    passed = share <= t.max_unattributed_cost_share
    detail = (f"unattributed cost {_pct(share)} ({_usd(summary['unattributed_cost'])} of {_usd(summary['cost'])}) "
              f"{'<=' if passed else '>'} {_pct(t.max_unattributed_cost_share)}")  # fmt: skip
    if not passed:
        detail += _top(unattributed, "unattributed_cost", lambda r: f"{r['service']}/{r['route']} ({r['reason']})", _usd)
    add("unattributed_cost_share", share, t.max_unattributed_cost_share, passed, detail)

    share = float(summary["conflict_share"])
    passed = share <= t.max_conflict_share
    detail = (f"identity conflicts on {_pct(share)} of requests ({summary['conflict_requests']}) "
              f"{'<=' if passed else '>'} {_pct(t.max_conflict_share)}")  # fmt: skip
    if not passed:
        detail += _top(conflicts, "requests",
                       lambda r: f"{r['consumer'] or 'anonymous'} claimed {r['attribute']}={r['header_value']}, resolved {r['resolved_value'] or '(none)'}")  # fmt: skip
    add("conflict_share", share, t.max_conflict_share, passed, detail)

    def at_most(metric: str, limit: float | None, sentence: Callable[[float], str], why_not: str) -> None:
        """An optional criterion: the summary's ``metric`` share against ``limit`` (None: not checked)."""
        if limit is not None:
            share = float(summary[metric])
            passed = share <= limit
            add(
                metric,
                share,
                limit,
                passed,
                f"{sentence(share)} {'<=' if passed else '>'} {_pct(limit)}" + ("" if passed else f": {why_not}"),
            )

    missing = "their cost is missing from every bill"
    suspect = int(summary["ai_proxy_zero_output_requests"])
    at_most(
        "unpriced_share",
        t.max_unpriced_share,
        lambda share: f"unpriced requests {_pct(share)} ({summary['unpriced_requests']})",
        missing,
    )
    at_most("estimated_cost_share", t.max_estimated_cost_share,
            lambda share: f"estimated usage {_pct(share)} of cost ({_usd(summary['estimated_cost'])}, {summary['estimated_requests']} "
                          f"requests, {_pct(float(summary['estimated_request_share']))} of requests"
                          + (f"; {suspect} of them Kong ai-proxy answers reporting 0 output tokens" if suspect else "") + ")",
            "estimates are labelled, but a bill built on them can be challenged")  # fmt: skip
    at_most(
        "unmeasured_share",
        t.max_unmeasured_share,
        lambda share: f"answered requests without any usage {_pct(share)} ({summary['unmeasured_requests']})",
        missing,
    )
    at_most(
        "header_team_share",
        t.max_header_team_share,
        lambda share: f"teams taken from request headers on {_pct(share)} of requests",
        "a header is only as accountable as the client sending it",
    )

    if gaps is not None and t.max_unbilled_share is not None:
        quarantined, lost = int(gaps["quarantined_events"] or 0), int(gaps["lost_events"] or 0)
        everything = requests + quarantined + lost
        share = (quarantined + lost) / everything if everything else 0.0
        passed = share <= t.max_unbilled_share
        add("unbilled_share", share, t.max_unbilled_share, passed,
            f"events missing from the figures {_pct(share)} ({quarantined} quarantined, {lost} reported lost) "
            f"{'<=' if passed else '>'} {_pct(t.max_unbilled_share)}"
            + ("" if passed else ": see `chargeback governance quarantine` and the gateways' loss records"))  # fmt: skip

    if gaps is not None and t.max_replay_conflicts is not None:
        replays = int(gaps["replay_conflicts"] or 0)
        passed = replays <= t.max_replay_conflicts
        add("replay_conflicts", replays, t.max_replay_conflicts, passed,
            f"{replays} replays conflicted with stored events {'<=' if passed else '>'} {t.max_replay_conflicts}"
            + ("" if passed else ": the stored versions are billed; review `chargeback governance replay-conflicts`"))  # fmt: skip
    return metrics


def _top(rows: Sequence[Row], key: str, label: Callable[[Row], str], fmt: Callable[[Any], str] = str) -> str:
    ranked = sorted(rows, key=lambda r: r[key], reverse=True)[:TOP_CONTRIBUTORS]
    if not ranked:
        return ""
    return "; largest: " + ", ".join(f"{label(r)} {fmt(r[key])}" for r in ranked)


def _pct(share: float) -> str:
    return f"{share * 100:.2f}%"


def _usd(amount: Any) -> str:
    return f"${float(amount):,.2f}"
