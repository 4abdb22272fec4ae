"""Showback and chargeback reports: one line per dimension value, totals that add up to the cent.

Showback: usage and list cost. Chargeback: contracted model cost, plus the
platform fee, with unattributed usage kept, moved to an owner or split pro
rata (allocation config). Every line carries its event count, tokens, cost,
a drill-down handle, and the usage that could not be priced, which is never
folded into the cost as $0: it is counted and named on the line and in the
totals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ...periods import day_bounds
from .allocation import Line, allocate, round_column, round_lines, to_cents
from .allocation_config import AllocationConfig
from .handle import Handle
from .losses import quarantined_events, replay_conflicts, reported_losses
from .runner import Runner
from .source import RAW_ONLY, plan
from .usage_by import COLUMNS, DIMENSIONS, render_usage_by

MODES = ("showback", "chargeback")
CURRENCY = "USD"
UNATTRIBUTED_LABEL = "(unattributed)"
TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
UNPRICED_FLAG = "UNPRICED"
ESTIMATED_FLAG = "ESTIMATED"
UNMEASURED_FLAG = "UNMEASURED"


@dataclass
class Report:
    mode: str
    by: str
    first: date
    last: date
    start: datetime
    end: datetime
    generated_at: datetime
    sources: dict[str, int]
    policy: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    currency: str = CURRENCY

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "by": self.by,
            "period": {
                "from": self.first.isoformat(),
                "to": self.last.isoformat(),
                "start": _iso(self.start),
                "end_exclusive": _iso(self.end),
            },
            "currency": self.currency,
            "generated_at": _iso(self.generated_at),
            "sources": self.sources,
            "policy": self.policy,
            "lines": self.lines,
            "totals": self.totals,
            "warnings": self.warnings,
        }


def build_report(
    runner: Runner,
    *,
    first: date,
    last: date,
    by: str,
    mode: str = "showback",
    config: AllocationConfig | None = None,
    filters: Mapping[str, str] | None = None,
) -> Report:
    start, end = day_bounds(first, last)
    return build_window_report(runner, start=start, end=end, by=by, mode=mode, config=config, filters=filters)


def build_window_report(
    runner: Runner,
    *,
    start: datetime,
    end: datetime,
    by: str,
    mode: str = "showback",
    config: AllocationConfig | None = None,
    filters: Mapping[str, str] | None = None,
) -> Report:
    """The report over any window [start, end), e.g. a budget period in its own time zone.

    The same query and arithmetic as ``build_report``; a window of whole UTC days is
    exactly ``build_report`` of those days. Lines carry drill-down handles only then
    (a handle addresses UTC days).
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}")
    if by not in DIMENSIONS:
        raise ValueError(f"--by must be one of {', '.join(DIMENSIONS)}")
    config = config or AllocationConfig()
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    source_plan = plan(runner, start, end, filters, raw_only=DIMENSIONS[by][0] in RAW_ONLY)
    fee_starts = config.fee_starts() if mode == "chargeback" else []
    sql, params = render_usage_by(source_plan, runner.database, by, fee_starts)
    _, rows = runner.query(sql, params)
    report = _report_from_rows(rows, start=start, end=end, by=by, mode=mode, config=config, filters=filters, sources=source_plan.describe())
    _delivery_gaps(report, _Gaps.of(runner, start, end))
    return report


def build_whole_and_split_reports(
    runner: Runner,
    *,
    first: date,
    last: date,
    by: str,
    split: str,
    values: Sequence[str],
    mode: str = "showback",
    config: AllocationConfig | None = None,
    whole_config: AllocationConfig | None = None,
    filters: Mapping[str, str] | None = None,
) -> tuple[Report, dict[str, Report]]:
    """``build_report(..., config=whole_config, filters=filters)`` and, for each of ``values``,
    ``build_report(..., filters={**filters, split: value})``: all from one usage query.

    The team page's apps x models asked one report per app (a plan, a usage query and
    three loss queries each). Grouping the same source by ``split`` as well gives each
    value exactly the rows its filtered query would (same source plan: ``split`` is a
    rollup dimension; same row order within a value), and the same arithmetic follows.
    The unsplit report's rows are the split rows of every value together: each line sums
    its rows (sums, and a fee linear in each row's requests and cost, add up across
    values), and its label is ``any()`` of the dimension in both queries (dimensions
    labelled by ``max()`` are refused). ``whole_config`` (default ``config``) may allocate
    differently, not charge fees differently: the fee periods are part of the query.
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}")
    if by not in DIMENSIONS or DIMENSIONS[by][0] in RAW_ONLY:
        raise ValueError(f"cannot split a report by {by!r}")
    if not DIMENSIONS[by][1].startswith("any("):
        raise ValueError(f"a report by {by!r} labels lines by max(): its unsplit lines cannot come from split rows")
    config = config or AllocationConfig()
    whole_config = whole_config or config
    fee_starts = config.fee_starts() if mode == "chargeback" else []
    if mode == "chargeback" and whole_config.fee_starts() != fee_starts:
        raise ValueError("the unsplit report must charge the same platform-fee periods")
    start, end = day_bounds(first, last)
    source_plan = plan(runner, start, end, filters)
    sql, params = render_usage_by(source_plan, runner.database, by, fee_starts, split=split)
    _, rows = runner.query(sql, params)
    per_value: dict[str, list[tuple[Any, ...]]] = {value: [] for value in values}
    for row in rows:
        if str(row[0]) in per_value:
            per_value[str(row[0])].append(row[1:])
    gaps = _Gaps.of(runner, start, end)
    reports = {}
    for value, value_rows in per_value.items():
        value_filters = {**(filters or {}), split: value}
        reports[value] = _report_from_rows(value_rows, start=start, end=end, by=by, mode=mode, config=config, filters=value_filters,
                                           sources=source_plan.describe())  # fmt: skip
        _delivery_gaps(reports[value], gaps)
    whole = _report_from_rows([row[1:] for row in rows], start=start, end=end, by=by, mode=mode, config=whole_config, filters=filters,
                              sources=source_plan.describe())  # fmt: skip
    _delivery_gaps(whole, gaps)
    return whole, reports


def _report_from_rows(rows: Sequence[Sequence[Any]], *, start: datetime, end: datetime, by: str, mode: str, config: AllocationConfig,
                      filters: Mapping[str, str] | None, sources: dict[str, int]) -> Report:  # fmt: skip
    """The report's lines and totals from its usage rows (render_usage_by's COLUMNS, ordered by key, fee period)."""
    first, last = start.date(), (end - timedelta(microseconds=1)).date() if end > start else start.date()
    whole_days = (start, end) == day_bounds(first, last) if end > start else False
    lines: dict[str, Line] = {}
    for row in rows:
        r = dict(zip(COLUMNS, row))
        key = str(r["key"])
        line = lines.get(key)
        if line is None:
            label = UNATTRIBUTED_LABEL if key == "" else str(r["label"] or "") or key
            line = lines[key] = Line(key=key, label=label)
            line.tokens = dict.fromkeys(TOKEN_FIELDS, 0)
        line.events += int(r["events"])
        for name in TOKEN_FIELDS:
            line.tokens[name] += int(r[name])
        line.cost += r["cost"]
        line.list_cost += r["list_cost"]
        line.unpriced_events += int(r["unpriced_events"])
        line.unpriced_tokens += int(r["unpriced_tokens"])
        line.unpriced_models = sorted(set(line.unpriced_models) | set(r["unpriced_models"]))
        line.estimated_events += int(r["estimated_events"])
        line.estimated_cost += r["estimated_cost"]
        line.estimated_list_cost += r["estimated_list_cost"]
        line.unmeasured_events += int(r["unmeasured_events"])
        period = config.fee_period(int(r["fee_period"])) if mode == "chargeback" else None
        if period is not None:
            # Per request only on requests a provider saw: one the gateway refused (auth, budget) is not billed.
            line.fee += Decimal(int(r["fee_events"])) * period.per_request + r["cost"] * period.uplift_percent / Decimal(100)

    ordered = sorted(lines.values(), key=lambda line: (line.key == "", line.key))
    rule = config.rule_for(by)
    if mode == "chargeback":
        ordered = allocate(ordered, strategy=rule.strategy, owner=rule.owner)
    report = Report(
        mode=mode, by=by, first=first, last=last, start=start, end=end, generated_at=datetime.now(UTC),
        sources=sources,
        policy=config.describe() if mode == "chargeback" else {"cost_basis": "list price"},
    )  # fmt: skip
    handles = whole_days
    if mode == "chargeback":
        _chargeback_lines(report, ordered, first, last, by, filters, handles)
    else:
        _showback_lines(report, ordered, first, last, by, filters, handles)
    _unpriced_totals(report, ordered)
    _measurement_totals(report, ordered)
    return report


@dataclass(frozen=True)
class _Gaps:
    """What a window's figures lack (losses.py): asked once per window, however many reports show it."""

    lost: int
    reasons: list[str]
    quarantined: int
    fields: list[str]
    conflicts: int

    @classmethod
    def of(cls, runner: Runner, start: datetime, end: datetime) -> _Gaps:
        lost, reasons = reported_losses(runner, start, end)
        quarantined, fields = quarantined_events(runner, start, end)
        return cls(lost, reasons, quarantined, fields, replay_conflicts(runner, start, end))


def _delivery_gaps(report: Report, gaps: _Gaps) -> None:
    """Events the figures lack, counted in the totals and named in a warning each: never silent."""
    lost, reasons = gaps.lost, gaps.reasons
    report.totals["events_lost_reported"] = lost
    if lost:
        report.warnings.append(
            f"gateways reported {lost} events lost in this period ({', '.join(reasons)}): those requests are not in these figures"
        )
    quarantined, fields = gaps.quarantined, gaps.fields
    report.totals["events_quarantined"] = quarantined
    if quarantined:
        report.warnings.append(
            f"{quarantined} events of this period were quarantined at ingest (they broke the event contract: "
            f"{', '.join(fields)}): those requests are not in these figures; see `chargeback governance quarantine`"
        )
    conflicts = gaps.conflicts
    report.totals["replay_conflicts"] = conflicts
    if conflicts:
        report.warnings.append(
            f"{conflicts} replays conflicted with stored events of this period: the stored versions are billed, "
            "the replays are set aside; see `chargeback governance replay-conflicts`"
        )


def _base(line: Line, first: date, last: date, by: str, filters: Mapping[str, str] | None, handles: bool, *,
          chargeback: bool) -> dict[str, Any]:  # fmt: skip
    return {
        "key": line.key,
        "label": line.label,
        "events": line.events,
        **line.tokens,
        "unpriced_events": line.unpriced_events,
        "unpriced_tokens": line.unpriced_tokens,
        "unpriced_models": line.unpriced_models,
        "flag": UNPRICED_FLAG if line.unpriced_events else "",
        **_measurement(line, chargeback=chargeback),
        # The filters go into the handle: explain then lists exactly this line's events.
        "handle": Handle.of(first, last, by, line.key, filters).encode() if handles else "",
    }


def _showback_lines(report: Report, lines: list[Line], first: date, last: date, by: str, filters: Mapping[str, str] | None,
                    handles: bool) -> None:  # fmt: skip
    cents, total = round_column([line.list_cost for line in lines])
    for line, c in zip(lines, cents):
        report.lines.append({**_base(line, first, last, by, filters, handles, chargeback=False), "list_cost": money_text(c), "list_cost_exact": str(line.list_cost), "cost_exact": str(line.cost)})
    report.totals = {
        **_sum_usage(lines),
        "list_cost": money_text(total),
        "list_cost_exact": str(sum((line.list_cost for line in lines), Decimal(0))),
        "cost_exact": str(sum((line.cost for line in lines), Decimal(0))),
    }


def _chargeback_lines(report: Report, lines: list[Line], first: date, last: date, by: str, filters: Mapping[str, str] | None,
                      handles: bool) -> None:  # fmt: skip
    per_line, total = round_lines(lines)
    source = next((line for line in lines if line.gives), None)
    for line, c in zip(lines, per_line):
        moved_cost, moved_fee = line.allocated_exact(source)
        report.lines.append(
            {
                **_base(line, first, last, by, filters, handles, chargeback=True),
                "model_cost": money_text(c.model_cost),
                "platform_fee": money_text(c.platform_fee),
                "allocated_in": money_text(c.allocated_in),
                "total": money_text(c.total),
                "model_cost_exact": str(line.cost + moved_cost),
                "platform_fee_exact": str(line.fee + moved_fee),
                "note": line.note,
            }
        )
    report.totals = {
        **_sum_usage(lines),
        "model_cost": money_text(total.model_cost),
        "platform_fee": money_text(total.platform_fee),
        "allocated_in": money_text(total.allocated_in),
        "total": money_text(total.total),
        "model_cost_exact": str(sum((line.cost for line in lines), Decimal(0))),
        "platform_fee_exact": str(sum((line.fee for line in lines), Decimal(0))),
    }


def _sum_usage(lines: list[Line]) -> dict[str, Any]:
    return {
        "events": sum(line.events for line in lines),
        **{t: sum(line.tokens.get(t, 0) for line in lines) for t in TOKEN_FIELDS},
    }


def _unpriced_totals(report: Report, lines: list[Line]) -> None:
    events = sum(line.unpriced_events for line in lines)
    tokens = sum(line.unpriced_tokens for line in lines)
    models = sorted({m for line in lines for m in line.unpriced_models})
    report.totals.update(
        {"unpriced_events": events, "unpriced_tokens": tokens, "unpriced_models": models, "flag": UNPRICED_FLAG if events else ""}
    )
    if events:
        report.warnings.append(
            f"{UNPRICED_FLAG}: {events} event(s), {tokens} token(s) have no known price and are NOT in the costs "
            f"(models: {', '.join(models) or '?'}); add a price override and reprice"
        )


def _measurement(line: Line, *, chargeback: bool) -> dict[str, Any]:
    """How much of a line was estimated or could not be measured, as counts and shares.

    Shares are fractions (0.0123 = 1.23%) of the line's requests and of its own
    cost in the report's cost basis (list cost in showback, contracted model cost
    in chargeback; what allocation moves between lines does not change them).
    """
    cost, estimated_cost = (line.cost, line.estimated_cost) if chargeback else (line.list_cost, line.estimated_list_cost)
    return {
        "estimated_events": line.estimated_events,
        "estimated_request_share": _share(Decimal(line.estimated_events), Decimal(line.events)),
        "estimated_cost": money_text(to_cents(estimated_cost)),
        "estimated_cost_share": _share(estimated_cost, cost),
        "unmeasured_events": line.unmeasured_events,
        "unmeasured_request_share": _share(Decimal(line.unmeasured_events), Decimal(line.events)),
    }


def _measurement_totals(report: Report, lines: list[Line]) -> None:
    total = Line(
        key="", label="", events=sum(line.events for line in lines),
        cost=sum((line.cost for line in lines), Decimal(0)), list_cost=sum((line.list_cost for line in lines), Decimal(0)),
        estimated_events=sum(line.estimated_events for line in lines),
        estimated_cost=sum((line.estimated_cost for line in lines), Decimal(0)),
        estimated_list_cost=sum((line.estimated_list_cost for line in lines), Decimal(0)),
        unmeasured_events=sum(line.unmeasured_events for line in lines),
    )  # fmt: skip
    figures = _measurement(total, chargeback=report.mode == "chargeback")
    report.totals.update(figures)
    if total.estimated_events:
        report.warnings.append(
            f"{ESTIMATED_FLAG}: {total.estimated_events} of {total.events} request(s) ({percent_text(figures['estimated_request_share'])}) "
            f"carry estimated usage, {figures['estimated_cost']} of the cost ({percent_text(figures['estimated_cost_share'])}): "
            "labelled estimates, not measured counts"
        )
    if total.unmeasured_events:
        report.warnings.append(
            f"{UNMEASURED_FLAG}: {total.unmeasured_events} answered request(s) ({percent_text(figures['unmeasured_request_share'])}) "
            "could not be measured: their usage and cost are NOT in these figures"
        )


def _share(part: Decimal, whole: Decimal) -> float:
    return round(float(part / whole), 6) if whole else 0.0


def percent_text(share: float) -> str:
    """A share (0.0123) as the reports print it: '1.23%'. Public, like money_text."""
    return f"{share * 100:.2f}%"


def money_text(cents: int) -> str:
    """Cents as the reports print money: '-12.30'. Public so every view of a report prints the same text."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
