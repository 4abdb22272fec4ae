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
from collections.abc import Sequence
from typing import Any

from ...analytics.governance import GOVERNANCE_CHECKS, TABLE_COLUMNS, CheckSpec, Option, all_options
from ..aggregator_client import AggregatorError, open_reader
from ..query_source import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, add_period_options, add_source_options, period_from
from ..render import FORMATS, Report, Section, render

UNSET = object()  # 'off' is a value of some options (None), so "not given" needs its own marker
ALL = "all"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """One subcommand per entry of the governance registry, plus `all`."""
    governance = subparsers.add_parser(
        "governance",
        help="attribution quality, shared credentials, usage exceptions and spend anomalies",
        description="Governance checks over metered AI traffic. Exit 0: clean/ready; 1: findings/not ready; 2: error.",
    )
    checks = governance.add_subparsers(dest="governance_command", metavar="CHECK", required=True)
    specs = tuple(GOVERNANCE_CHECKS)
    for spec in specs:
        parser = _subcommand(checks, spec.command, spec.summary, listing=spec.listing, specs=(spec,))
        for option in spec.options:
            _add_option(parser, option, spec.defaults_owner)
    parser = _subcommand(checks, ALL, "every check at once (premium and cache when configured); exit 1 if any is not clean",
                         listing=True, specs=specs)  # fmt: skip
    for option, owner in all_options(specs):
        _add_option(parser, option, owner)


def _subcommand(checks: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, *,
                listing: bool, specs: tuple[CheckSpec, ...]) -> argparse.ArgumentParser:  # fmt: skip
    parser = checks.add_parser(name, help=help_text, description=help_text)
    add_source_options(parser)
    add_period_options(parser)
    parser.add_argument("--tenant", default="", help="only this tenant")
    parser.add_argument("--format", choices=FORMATS, default="table")
    if listing:
        parser.add_argument("--all", action="store_true", help="also list what was checked and not flagged")
    parser.set_defaults(handler=run, governance_specs=specs)
    return parser


def _add_option(parser: argparse.ArgumentParser, option: Option, owner: type) -> None:
    default = option.default_text(owner)
    help_text = option.help + (f" (default {default})" if default else "")
    if option.repeatable:
        parser.add_argument(option.flag, dest=option.dest, action="append", type=option.type, default=None,
                            metavar=option.metavar, help=help_text)  # fmt: skip
    else:
        parser.add_argument(option.flag, dest=option.dest, type=option.type, default=UNSET, metavar=option.metavar,
                            help=help_text)  # fmt: skip


def _given(args: argparse.Namespace, spec: CheckSpec) -> dict[str, Any]:
    """The spec's parameters the user set; the others keep the check's defaults."""
    given: dict[str, Any] = {}
    for option in spec.options:
        value = getattr(args, option.dest, UNSET)
        if option.repeatable and value is not None:
            given[option.param] = tuple(value)
        elif not option.repeatable and value is not UNSET:
            given[option.param] = value
    if spec.listing:
        given["only_flagged"] = not getattr(args, "all", False)
    return given


def _checks(args: argparse.Namespace, scope: Any) -> tuple[list[Any], bool]:
    """The checks the command runs, and whether every one of them judges (``all``)."""
    specs: tuple[CheckSpec, ...] = args.governance_specs
    if args.governance_command != ALL:
        (spec,) = specs
        return spec.checks(scope, _given(args, spec)), False
    checks: list[Any] = []
    for spec in specs:
        given = _given(args, spec)
        if spec.runs_in_all(given):
            checks += spec.checks(scope, given)
    return checks, True


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError, Scope
    from ...store.clickhouse import StoreError

    prog = f"chargeback governance {args.governance_command}"
    try:
        period = period_from(args)
        assert period is not None
        with open_reader(args) as runner:
            scope = Scope(period=period, database=runner.database, tenant=args.tenant)
            checks, combined = _checks(args, scope)
            results = [check.run(runner) for check in checks]
    except (AggregatorError, GovernanceError, StoreError, ValueError, TypeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    report = to_report(results, period=str(period), tenant=args.tenant, combined=combined)
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
