"""`chargeback reconcile`: gateway records against provider billing exports, each run stored as evidence.

    chargeback reconcile --provider-export openai-usage.json --provider-export openai-costs.json \\
        [--mapping accounts.yaml] [--tolerance-pct 1] [--tolerance-tokens 100] [--format table|csv|json] [--no-save]
    chargeback reconcile runs [--provider openai] [--limit 25] [--offset 0] [--format table|csv|json]
    chargeback reconcile show RUN_ID [--only-discrepancies] [--format table|csv|json]

Reads FOCUS (CSV/Parquet), OpenAI usage and costs (API JSON or dashboard CSV)
and Anthropic usage and cost reports (Admin API JSON or Console CSV), matches
them with the gateway per UTC day x provider x model (x account with a
mapping file) and lists every line with both sides and the difference. The
period is what the exports cover unless --from/--to say otherwise.

Every run is stored (migration 0022: who ran it, when, each file's SHA-256,
the tolerance, every line) where the store can be written: straight into a
store this command opens, or, while an aggregator holds it, by that
aggregator itself (POST /v1/reconcile-runs with the admin token: it reads
the same files and stores its own result). Without an admin token the
result is printed and not stored, with a note; --save makes that an error,
--no-save skips storing. `runs` lists stored runs, `show` prints one.
Exit 0: reconciled; 1: discrepancies; 2: error.
"""

from __future__ import annotations

import argparse
import base64
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..aggregator_client import AggregatorError, RequestTooLarge, admin_token, open_reader, post
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
RUN_COLUMNS = (
    "run_id", "ran_at", "ran_by", "via", "providers", "period_start", "period_end", "verdict", "ok", "discrepancy_lines",
    "line_count", "gateway_cost", "bill_cost", "cost_diff", "gateway_tokens", "bill_tokens", "tokens_diff", "files", "tolerance",
    "mapping_sha256",
)  # fmt: skip
RUN_TABLE_COLUMNS = ("run_id", "ran_by", "providers", "period_start", "verdict", "discrepancy_lines", "gateway_cost", "bill_cost", "files")
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
    parser.add_argument("--provider-export", action="append", metavar="FILE",
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
    saving = parser.add_mutually_exclusive_group()
    saving.add_argument("--save", dest="save", action="store_const", const=True, default=None,
                        help="store the run, or fail (default: store it when the store can be written, else say why not)")  # fmt: skip
    saving.add_argument("--no-save", dest="save", action="store_const", const=False, help="do not store this run")
    parser.add_argument("--admin-token", help="bearer token of a running aggregator's admin endpoints, to store the run there "
                                              "(default: $CHARGEBACK_ADMIN_TOKEN)")  # fmt: skip
    add_source_options(parser)
    parser.set_defaults(handler=run, action=None)

    actions = parser.add_subparsers(dest="action", metavar="{runs,show}", required=False)
    runs = actions.add_parser("runs", help="list stored reconciliation runs, newest first")
    runs.add_argument("--provider", default="", help="only runs about this gateway provider")
    runs.add_argument("--limit", type=int, default=25, help="at most this many (default 25, at most 200)")
    runs.add_argument("--offset", type=int, default=0, help="skip the newest N")
    runs.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(runs)
    runs.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="print one stored run: its facts and every line")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--only-discrepancies", action="store_true", help="hide matched lines")
    show.add_argument("--format", choices=FORMATS, default="table")
    add_source_options(show)
    show.set_defaults(handler=run_show)


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
        Tolerance,
        load_run,
        mapping_from_bytes,
        record_of,
        run_files,
        save_run,
        source_file,
        who_runs_this,
    )  # fmt: skip
    from ...store.clickhouse import StoreError

    if not args.provider_export:
        print("chargeback reconcile: give --provider-export FILE (or `reconcile runs`, `reconcile show RUN_ID`)", file=sys.stderr)
        return EXIT_ERROR
    stored = ""
    try:
        files = [(Path(path).name, _read(path)) for path in args.provider_export]
        mapping_file = (Path(args.mapping).name, _read(args.mapping)) if args.mapping else None
        mapping = mapping_from_bytes(mapping_file[1], mapping_file[0]) if mapping_file else AccountMapping()
        tolerance = Tolerance(pct=args.tolerance_pct, tokens=args.tolerance_tokens, cost_usd=args.tolerance_cost)
        period = period_from(args, default_days=None)
        with open_reader(args) as runner:
            remote = bool(getattr(args, "aggregator", None))
            token = admin_token(args) if remote and args.save is not False else ""
            if remote and token:
                # The aggregator reconciles the same bytes on its store and keeps its own result: print what it stored.
                try:
                    answer = post(args.aggregator, "/v1/reconcile-runs", token, _request(files, mapping_file, tolerance, period, args))
                except RequestTooLarge as exc:
                    raise AggregatorError(f"{exc}: upload exports this large in the console's Reconciliation page, "
                                          "or run this command with the aggregator stopped") from exc  # fmt: skip
                found = load_run(runner, str(answer["run_id"]))
                if found is None:
                    raise AggregatorError(f"the aggregator stored run {answer['run_id']} but it cannot be read back")
                record, result = found
                stored = record.run_id
            else:
                if remote and args.save:
                    raise AggregatorError(f"an aggregator holds the store at {args.aggregator}: --save needs its admin token "
                                          "(--admin-token or $CHARGEBACK_ADMIN_TOKEN)")  # fmt: skip
                outcome = run_files(runner, files, tolerance=tolerance, mapping=mapping, period=period,
                                    export_format=args.export_format, provider=args.provider)  # fmt: skip
                result = outcome.result
                if args.save is not False and not remote:
                    store = runner.store  # type: ignore[attr-defined]  # a LocalRunner: this command opened the store
                    store.migrate()  # a store older than this command gets the run tables (idempotent)
                    record = record_of(result, sources=outcome.sources, providers=outcome.providers, ran_by=who_runs_this(), via="cli",
                                       tolerance=tolerance, mapping_sha256=source_file(*mapping_file).sha256 if mapping_file else "")  # fmt: skip
                    stored = save_run(store, record, result)
    except (AggregatorError, ExportError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if stored:
        print(f"stored as reconciliation run {stored} (`chargeback reconcile show {stored}`)", file=sys.stderr)
    elif args.save is not False:
        print("not stored: an aggregator holds the store and no admin token was given (--admin-token, $CHARGEBACK_ADMIN_TOKEN); "
              "--no-save silences this", file=sys.stderr)  # fmt: skip
    report = to_report(result, only_discrepancies=args.only_discrepancies, tolerance=tolerance, run_id=stored)
    render(report, args.format, sys.stdout)
    return EXIT_OK if result.verdict.ok else EXIT_FINDINGS


def _read(path: str) -> bytes:
    from ...analytics.reconcile import ExportError

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc


def _request(files: list[tuple[str, bytes]], mapping_file: tuple[str, bytes] | None, tolerance: Any, period: Any,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    from ...analytics.reconcile import who_runs_this

    def wire(name: str, data: bytes) -> dict[str, str]:
        return {"name": name, "data": base64.b64encode(data).decode("ascii")}

    return {
        "files": [wire(name, data) for name, data in files],
        "mapping": wire(*mapping_file) if mapping_file else None,
        "tolerance": {"pct": tolerance.pct, "tokens": tolerance.tokens, "cost_usd": str(tolerance.cost_usd)},
        "from": period.start.isoformat() if period else None,
        "to": period.end.isoformat() if period else None,
        "export_format": args.export_format,
        "provider": args.provider,
        "ran_by": who_runs_this(),
    }


def run_list(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reconcile import list_runs
    from ...store.clickhouse import StoreError

    try:
        with open_reader(args) as runner:
            records = list_runs(runner, limit=args.limit, offset=args.offset, provider=args.provider)
    except (AggregatorError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback reconcile runs: {_missing_tables(exc)}", file=sys.stderr)
        return EXIT_ERROR
    rows = [{**r.to_dict(), "files": [f"{s.name} sha256:{s.sha256}" for s in r.sources],
             "discrepancy_lines": r.totals["line_count"] - r.totals["matched_lines"]} for r in records]  # fmt: skip
    section = Section(name="runs", title="Stored reconciliation runs, newest first", columns=RUN_COLUMNS, rows=rows,
                      table_columns=RUN_TABLE_COLUMNS, empty_text="(no stored runs)")  # fmt: skip
    render(Report(title="Reconciliation runs", ok=True, verdict=f"{len(rows)} runs", reasons=(), sections=[section],
                  meta={"check": "reconcile-runs", "offset": args.offset}), args.format, sys.stdout)  # fmt: skip
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...analytics.reconcile import load_run, same_files, valid_run_id
    from ...store.clickhouse import StoreError

    if not valid_run_id(args.run_id):
        print(f"chargeback reconcile show: {args.run_id!r} is not a run id (YYYYMMDDTHHMMSSZ-xxxxxxxx)", file=sys.stderr)
        return EXIT_ERROR
    try:
        with open_reader(args) as runner:
            found = load_run(runner, args.run_id)
            same = same_files(runner, found[0]) if found else []
    except (AggregatorError, GovernanceError, StoreError, ValueError) as exc:
        print(f"chargeback reconcile show: {_missing_tables(exc)}", file=sys.stderr)
        return EXIT_ERROR
    if found is None:
        print(f"chargeback reconcile show: no stored run {args.run_id}", file=sys.stderr)
        return EXIT_ERROR
    record, result = found
    report = to_report(result, only_discrepancies=args.only_discrepancies, tolerance=record.tolerance, run_id=record.run_id)
    meta = {**report.meta, "run": record.to_dict(), "same_files": same}
    render(Report(title=f"{report.title} (run {record.run_id}, {record.ran_at:%Y-%m-%d %H:%M:%S} UTC by {record.ran_by})",
                  ok=report.ok, verdict=report.verdict, reasons=report.reasons, sections=report.sections,
                  notes=[*report.notes, *(f"the same export was read by run {s['run_id']} ({', '.join(s['files'])})" for s in same)],
                  meta=meta), args.format, sys.stdout)  # fmt: skip
    return EXIT_OK if result.verdict.ok else EXIT_FINDINGS


def _missing_tables(exc: Exception) -> str:
    text = str(exc)
    if "UNKNOWN_DATABASE" in text or ("reconcile_runs" in text and ("UNKNOWN_TABLE" in text or "does not exist" in text)):
        return "this store holds no reconciliation runs yet (no chargeback database, or one older than migration 0022)"
    return text


def to_report(result: Any, *, only_discrepancies: bool = False, tolerance: Any = None, run_id: str = "") -> Report:
    from ...analytics.reconcile import LINE_COLUMNS, MATCHED

    def keep(rows: Any) -> list[Any]:
        return [r for r in rows if not (only_discrepancies and r["status"] == MATCHED)]

    sections = [Section(name="lines", title="Gateway vs bill per day, provider and model", columns=LINE_COLUMNS,
                        rows=keep(result.lines), table_columns=TABLE_COLUMNS)]  # fmt: skip
    if result.accounts:
        sections.append(Section(name="accounts", title="Per provider account (mapping file)", columns=LINE_COLUMNS,
                                rows=keep(result.accounts), table_columns=ACCOUNT_TABLE_COLUMNS))  # fmt: skip
    meta: dict[str, Any] = {"check": "reconcile", "period": str(result.period), "summary": result.summary}
    if run_id:
        meta["run_id"] = run_id
    if tolerance is not None:
        meta["tolerance"] = {"pct": tolerance.pct, "tokens": tolerance.tokens, "cost_usd": tolerance.cost_usd}
    return Report(title=f"Provider bill reconciliation: {result.verdict.label}", ok=result.verdict.ok,
                  verdict=result.verdict.label, reasons=result.verdict.reasons, sections=sections,
                  notes=result.notes, meta=meta)  # fmt: skip
