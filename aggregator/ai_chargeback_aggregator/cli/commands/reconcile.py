"""`chargeback reconcile`: gateway records against provider billing exports.

    chargeback reconcile --provider-export openai-usage.json --provider-export openai-costs.json \\
        [--mapping accounts.yaml] [--tolerance-pct 1] [--tolerance-tokens 100] [--format table|csv|json]

Reads FOCUS (CSV/Parquet), OpenAI usage and costs (API JSON or dashboard CSV)
and Anthropic usage and cost reports (Admin API JSON or Console CSV), matches
them with the gateway per UTC day x provider x model (x account with a
mapping file) and lists every line with both sides and the difference. The
period is what the exports cover unless --from/--to say otherwise.
Exit 0: reconciled; 1: discrepancies; 2: error.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from ..aggregator_client import AggregatorError, open_reader
from ..query_source import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    add_source_options,
    period_from,
)
from ..render import FORMATS, Report, Section, render

TABLE_COLUMNS = (
    "day", "provider", "model", "status", "gateway_input_tokens", "bill_input_tokens", "gateway_output_tokens",
    "bill_output_tokens", "gateway_cost", "bill_cost", "cost_diff", "detail",
)  # fmt: skip
ACCOUNT_TABLE_COLUMNS = ("day", "provider", "model", "account", "status", "gateway_tokens", "bill_tokens", "tokens_diff",
                         "gateway_cost", "bill_cost", "detail")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ...analytics.reconcile import (
        DEFAULT_TOLERANCE_COST_USD,
        DEFAULT_TOLERANCE_PCT,
        DEFAULT_TOLERANCE_TOKENS,
    )
    from ...analytics.reconcile import FORMATS as EXPORT_FORMATS

    parser = subparsers.add_parser(
        "reconcile",
        help="reconcile gateway records with provider billing exports (FOCUS, OpenAI, Anthropic)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--provider-export", action="append", required=True, metavar="FILE",
                        help="a provider export: FOCUS CSV/Parquet, OpenAI usage/costs, Anthropic usage/cost report (repeatable)")  # fmt: skip
    parser.add_argument("--export-format", choices=("auto", *EXPORT_FORMATS), default="auto", help="skip detection")
    parser.add_argument("--provider", default="", help="gateway provider name for FOCUS rows (default: from ProviderName)")
    parser.add_argument("--mapping", metavar="FILE", help="YAML/JSON: provider API keys/projects to Kong consumers, model aliases")
    parser.add_argument("--tolerance-pct", type=float, default=DEFAULT_TOLERANCE_PCT,
                        help=f"allowed difference in percent of the larger side (default {DEFAULT_TOLERANCE_PCT})")  # fmt: skip
    parser.add_argument("--tolerance-tokens", type=int, default=DEFAULT_TOLERANCE_TOKENS,
                        help=f"allowed absolute token difference per line (default {DEFAULT_TOLERANCE_TOKENS})")  # fmt: skip
    parser.add_argument("--tolerance-cost", type=_decimal, default=DEFAULT_TOLERANCE_COST_USD, metavar="USD",
                        help=f"allowed absolute cost difference per line (default {DEFAULT_TOLERANCE_COST_USD})")  # fmt: skip
    parser.add_argument("--only-discrepancies", action="store_true", help="hide matched lines")
    parser.add_argument("--format", choices=FORMATS, default="table")
    group = parser.add_argument_group("period (UTC; default: the days the exports cover)")
    group.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day (inclusive)")
    group.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day (inclusive)")
    add_source_options(parser)
    parser.set_defaults(handler=run)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reconcile import (
        AccountMapping,
        ExportError,
        GatewayUsage,
        Tolerance,
        export_period,
        export_providers,
        load_export,
        load_mapping,
        reconcile,
    )  # fmt: skip
    from ...store.clickhouse import StoreError

    try:
        mapping = load_mapping(args.mapping) if args.mapping else AccountMapping()
        exports = [load_export(path, format=args.export_format, provider=args.provider, provider_aliases=mapping.providers)
                   for path in args.provider_export]  # fmt: skip
        tolerance = Tolerance(pct=args.tolerance_pct, tokens=args.tolerance_tokens, cost_usd=args.tolerance_cost)
        period = period_from(args, default_days=None) or export_period(exports)
        if period is None:
            raise ExportError("the exports hold no usage and no period was given (--from/--to)")
        providers = sorted(export_providers(exports, mapping.providers))
        with open_reader(args) as runner:
            gateway = GatewayUsage(period=period, providers=tuple(providers), database=runner.database).run(runner)
        result = reconcile(exports, gateway, period=period, tolerance=tolerance, mapping=mapping)
    except (AggregatorError, ExportError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    render(to_report(result, only_discrepancies=args.only_discrepancies, tolerance=tolerance), args.format, sys.stdout)
    return EXIT_OK if result.verdict.ok else EXIT_FINDINGS


def to_report(result: Any, *, only_discrepancies: bool = False, tolerance: Any = None) -> Report:
    from ...analytics.reconcile import LINE_COLUMNS, MATCHED

    def keep(rows: Any) -> list[Any]:
        return [r for r in rows if not (only_discrepancies and r["status"] == MATCHED)]

    sections = [Section(name="lines", title="Gateway vs bill per day, provider and model", columns=LINE_COLUMNS,
                        rows=keep(result.lines), table_columns=TABLE_COLUMNS)]  # fmt: skip
    if result.accounts:
        sections.append(Section(name="accounts", title="Per provider account (mapping file)", columns=LINE_COLUMNS,
                                rows=keep(result.accounts), table_columns=ACCOUNT_TABLE_COLUMNS))  # fmt: skip
    meta: dict[str, Any] = {"check": "reconcile", "period": str(result.period), "summary": result.summary}
    if tolerance is not None:
        meta["tolerance"] = {"pct": tolerance.pct, "tokens": tolerance.tokens, "cost_usd": tolerance.cost_usd}
    return Report(title=f"Provider bill reconciliation: {result.verdict.label}", ok=result.verdict.ok,
                  verdict=result.verdict.label, reasons=result.verdict.reasons, sections=sections,
                  notes=result.notes, meta=meta)  # fmt: skip
